/*
 * group: the channels of one group as one worker sees them.  Idle
 * reverse-proxy channels wait in a FIFO (g->idle); an entry-point's OPEN
 * pairs with the first of them, or waits in the group's queue (g->waiting,
 * at most RELAY_WAIT_MAX, for --open-timeout).  When a pair's user
 * connection ends cleanly, both channels come back here to be reused.
 *
 *   group_open ── queued (R_QUEUED) ── group_match ── pair ── forward.c
 *   ── pair_end ── rchan_recycle (REUSE, idle again) ── group_pair
 *
 * A group lives as long as it has channels (refs); the reaper frees it.
 */
#include "relay.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "frame.h"
#include "sshkey.h"
#include "tls.h"
#include "wire.h"

struct group *
group_find(struct worker *w, uint32_t id)
{
	struct group *g;

	LIST_FOREACH(g, &w->groups, link)
		if (g->id == id)
			return g;
	return NULL;
}

struct group *
group_ref(struct worker *w, uint32_t id)
{
	struct group *g;

	LIST_FOREACH(g, &w->groups, link)
		if (g->id == id)
			break;
	if (g == NULL) {
		if ((g = calloc(1, sizeof(*g))) == NULL)
			return NULL;
		g->w = w;
		g->id = id;
		g->mlabel = relay_metrics_group(id);
		TAILQ_INIT(&g->idle);
		TAILQ_INIT(&g->waiting);
		LIST_INSERT_HEAD(&w->groups, g, link);
	}
	if (g->unused) {
		TAILQ_REMOVE(&w->unused, g, unused_link);
		g->unused = 0;
	}
	g->refs++;
	return g;
}

void
group_unref(struct group *g)
{
	if (g == NULL || --g->refs > 0)
		return;
	/* Freed by the reaper, not now: a caller may be going through the
	 * group's lists (group_offer moves its channels away one by one). */
	g->unused = 1;
	TAILQ_INSERT_TAIL(&g->w->unused, g, unused_link);
	event_active(g->w->reaper, EV_TIMEOUT, 0);
}

void
group_free(struct group *g)
{
	assert(g->refs == 0 && g->nidle == 0 && g->nwaiting == 0);
	if (g->unused)
		TAILQ_REMOVE(&g->w->unused, g, unused_link);
	group_publish(g);	/* nothing waits here any more */
	LIST_REMOVE(g, link);
	free(g);
}

/*
 * One line for each pairing, at the default level: both channels, both
 * keys and the group, so that every user connection can be traced to the
 * keys that carried it; and what the OPEN asks (the destination, and the
 * source address, which only the entry-point vouches for).
 */
static void
log_pairing(const struct rchan *entry, const struct rchan *reverse)
{
	struct evbuffer *in = bufferevent_get_input(entry->bev);
	uint8_t buf[FRAME_HEADER_LEN + FRAME_CONTROL_MAX];
	char ek[SSHKEY_COMMENT_MAX + SSHKEY_FINGERPRINT_LEN + 4];
	char rk[sizeof(ek)], open[OPEN_HOST_MAX + OPEN_SOURCE_MAX + 64];
	char err[FRAME_ERRLEN];
	struct frame_header h;
	struct open_msg m;

	authkey_label(entry->key, ek, sizeof(ek));
	authkey_label(reverse->key, rk, sizeof(rk));
	snprintf(open, sizeof(open), "OPEN not read yet");
	if (frame_peek(in, &h, err, sizeof(err)) == 1 &&
	    h.type == FRAME_OPEN && evbuffer_copyout(in, buf,
	    FRAME_HEADER_LEN + h.length) == (ev_ssize_t)(FRAME_HEADER_LEN +
	    h.length) && open_msg_decode(buf + FRAME_HEADER_LEN, h.length, &m,
	    err, sizeof(err)) == 0)
		snprintf(open, sizeof(open), "to %s:%u for %s (source as the "
		    "entry-point claims it)", m.host, m.port, m.source);
	log_info("group %u: entry-point %s key %s paired with reverse-proxy "
	    "%s key %s: %s", entry->group->id, entry->peer, ek, reverse->peer,
	    rk, open);
}

/* Pair an entry-point channel (its OPEN still unread in its input) with an
 * idle reverse-proxy channel, and start relaying. */
static void
pair(struct rchan *entry, struct rchan *reverse)
{
	entry->partner = reverse;
	reverse->partner = entry;
	rchan_set_state(entry, R_PAIRED);
	rchan_set_state(reverse, R_PAIRED);
	forward_start(entry);
	forward_start(reverse);
	entry->uses++;
	reverse->uses++;
	/* A user connection may stay quiet for as long as it likes: no
	 * deadline while paired. */
	event_del(entry->timer);
	event_del(reverse->timer);
	wire_watermarks_splice(entry->bev);
	wire_watermarks_splice(reverse->bev);
	log_pairing(entry, reverse);
	if (bufferevent_enable(entry->bev, EV_READ) == -1 ||
	    bufferevent_enable(reverse->bev, EV_READ) == -1) {
		rchan_close(entry, LOG_LEVEL_DEBUG, "%s: cannot start reading",
		    entry->peer);
		return;
	}
	/* The reverse-proxy's input may hold a PING (dropped) or RETIRE
	 * (ignored: it is in use now) sent before it learned of the pairing. */
	relay_forward(entry, 0);
	if (entry->state == R_PAIRED)
		relay_forward(reverse, 0);
}

void
group_pair(struct group *g)
{
	struct rchan *e, *r;

	while ((e = TAILQ_FIRST(&g->waiting)) != NULL &&
	    (r = TAILQ_FIRST(&g->idle)) != NULL) {
		/* Keys reloaded since either was admitted: admit it again
		 * (refused, it is closed and off its list). */
		if (admit_recheck(e) == -1 || admit_recheck(r) == -1)
			continue;
		pair(e, r);
	}
	group_publish(g);
}

void
group_match(struct group *g)
{
	group_pair(g);
	if (g->nidle > 0 && g->nwaiting == 0)
		group_offer(g);
}

void
group_open(struct rchan *c)
{
	struct group *g = c->group;
	struct timeval tv = { (time_t)relay_cfg.open_timeout, 0 };
	struct evbuffer *in = bufferevent_get_input(c->bev);

	if (g->nwaiting >= RELAY_WAIT_MAX) {
		(void)evbuffer_drain(in, evbuffer_get_length(in));
		(void)wire_send_open_result(c->bev, OPEN_NO_PEER, "");
		relay_metrics_open(OPEN_NO_PEER);
		relay_metrics_limit(RELAY_LIMIT_WAITING);
		rchan_close_flush(c, LOG_LEVEL_QUIET, "%s: group %u: %u OPENs "
		    "already waiting, refusing", c->peer, g->id, g->nwaiting);
		return;
	}
	if (evtimer_add(c->timer, &tv) == -1) {
		rchan_close(c, LOG_LEVEL_QUIET, "%s: cannot arm the queue timer",
		    c->peer);
		return;
	}
	rchan_set_state(c, R_QUEUED);
	/* Read nothing more until paired: the bytes behind OPEN wait. */
	(void)bufferevent_disable(c->bev, EV_READ);
	group_match(g);
}

void
group_open_expired(struct rchan *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	char text[OPEN_RESULT_TEXT_MAX + 1];

	log_info("%s: group %u: no reverse-proxy channel within %u s",
	    c->peer, c->group->id, relay_cfg.open_timeout);
	snprintf(text, sizeof(text), "group %u has no idle reverse-proxy "
	    "channel", c->group->id);
	/* Whatever the entry-point sent behind OPEN is dropped with it. */
	(void)evbuffer_drain(in, evbuffer_get_length(in));
	(void)wire_send_open_result(c->bev, OPEN_NO_PEER, text);
	relay_metrics_open(OPEN_NO_PEER);
	relay_metrics_limit(RELAY_LIMIT_OPEN_TIMEOUT);
	rchan_close_flush(c, LOG_LEVEL_DEBUG, NULL);
}

/*
 * After a clean end: c is idle again, or closed.  last: its socket has
 * ended.  A channel that still holds bytes is not reused either: its
 * client sends nothing after its FIN until it sees REUSE, so they belong
 * to the pairing that just ended (an RST that crossed the end, or junk),
 * and the next pairing must never see a byte of the last one.
 */
static void
rchan_recycle(struct rchan *c, int last)
{
	time_t age = mono_now() - c->born;
	struct evbuffer *in = bufferevent_get_input(c->bev);

	if (last) {
		rchan_close(c, LOG_LEVEL_DEBUG, NULL);
		return;
	}
	if (age >= RELAY_REUSE_MAX_AGE) {
		rchan_close_flush(c, LOG_LEVEL_DEBUG, "%s: %s channel is %lld s "
		    "old: closing it rather than reusing it", c->peer,
		    role_name(c->role), (long long)age);
		return;
	}
	if (evbuffer_get_length(in) > 0 || SSL_has_pending(c->ssl)) {
		/* What the partner sent last is still written. */
		rchan_close_flush(c, LOG_LEVEL_DEBUG, "%s: %s channel sent more "
		    "after its FIN: closing it rather than reusing it", c->peer,
		    role_name(c->role));
		return;
	}
	/* The relay stops: the client is told, as on an idle channel. */
	if (relay_draining()) {
		(void)wire_send_auth_result(c->bev, AUTH_STOPPING);
		relay_metrics_auth(AUTH_STOPPING);
		rchan_close_flush(c, LOG_LEVEL_DEBUG, "%s: the relay stops: "
		    "closing the %s channel rather than reusing it", c->peer,
		    role_name(c->role));
		return;
	}
	/* The keys may have been reloaded while it was in use: a channel
	 * whose key lost its rights is told so instead of REUSE. */
	if (admit_recheck(c) == -1)
		return;
	/* REUSE stays queued until this callback is over, so the channel
	 * cannot move to another worker before (group_offer wants it
	 * flushed): whoever called here may still look at it. */
	if (wire_send(c->bev, FRAME_REUSE, NULL, 0) == -1) {
		rchan_close(c, LOG_LEVEL_QUIET, "%s: out of memory", c->peer);
		return;
	}
	if (rchan_idle_deadline(c) == -1) {
		rchan_close_flush(c, LOG_LEVEL_QUIET, "%s: cannot arm the idle "
		    "timer", c->peer);
		return;
	}
	wire_watermarks_idle(c->bev);
	rchan_set_state(c, R_IDLE);
	log_debug("%s: %s channel idle again (%lu connections carried)",
	    c->peer, role_name(c->role), c->uses);
	if (c->paused) {
		c->paused = 0;
		if (bufferevent_enable(c->bev, EV_READ) == -1) {
			rchan_close(c, LOG_LEVEL_DEBUG, NULL);
			return;
		}
	}
	tls_kick(c->bev);
}

void
pair_end(struct rchan *a, struct rchan *b, struct rchan *last)
{
	struct rchan *entry = a->role == ROLE_ENTRY ? a : b;
	struct rchan *reverse = a->role == ROLE_ENTRY ? b : a;
	struct group *g = entry->group;

	/* Both stopped at a frame boundary: their FINs came as frames of
	 * their own, and nothing passes from a side after its FIN. */
	assert(a->frame_left == 0 && b->frame_left == 0);
	a->partner = b->partner = NULL;
	log_debug("group %u: entry-point %s and reverse-proxy %s: connection "
	    "ended cleanly", g->id, entry->peer, reverse->peer);
	rchan_recycle(entry, entry == last);
	rchan_recycle(reverse, reverse == last);
	/* Pair only: the reverse-proxy channel is offered to other workers
	 * by its write callback, once REUSE has left. */
	group_pair(g);
}
