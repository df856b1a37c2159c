/*
 * channel: a relay channel's life, from accept to the reaper.
 *
 *   rchan_accept ── TLS handshake (R_HANDSHAKE) ── handshake_done ── AUTH
 *   (R_AUTH, admit.c) ── idle (R_IDLE, rchan_idle_read: PING, OPEN, RETIRE)
 *   ── group.c pairs it ── forward.c relays ── group.c reuses it (idle
 *   again) or it closes (teardown.c: rchan_close ── R_DEAD ── the reaper)
 *
 * rchan_set_state is the one place a state changes, and moves the channel
 * between the lists its states put it on (relay.h lists them).  Each
 * callback checks the channel's invariants, then dispatches on its state.
 */
#include "relay.h"

#include <sys/ioctl.h>

#include <linux/sockios.h>

#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "batch.h"
#include "frame.h"
#include "tls.h"
#include "wire.h"

static void rchan_read_cb(struct bufferevent *, void *);
static void rchan_write_cb(struct bufferevent *, void *);
static void rchan_event_cb(struct bufferevent *, short, void *);

const char *
role_name(uint8_t role)
{
	return role == ROLE_ENTRY ? "entry-point" : "reverse-proxy";
}

time_t
mono_now(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static const char *
state_name(enum rchan_state s)
{
	static const char *const names[] = {
		[R_HANDSHAKE] = "handshake", [R_AUTH] = "auth",
		[R_IDLE] = "idle", [R_QUEUED] = "queued",
		[R_PAIRED] = "paired", [R_CLOSING] = "closing",
		[R_MOVING] = "moving", [R_DEAD] = "dead",
	};

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

/* The list state s puts c on (R_MOVING: the inbox, which workers.c keeps
 * under its lock, so none here). */
static struct rchan_list *
state_list(const struct rchan *c, enum rchan_state s)
{
	switch (s) {
	case R_IDLE:
		return c->role == ROLE_REVERSE ? &c->group->idle : NULL;
	case R_QUEUED:
		return &c->group->waiting;
	case R_DEAD:
		return &c->w->dead;
	default:
		return NULL;
	}
}

void
rchan_check(const struct rchan *c)
{
	assert(c->state == R_MOVING || c->w != NULL);
	assert(c->list == state_list(c, c->state));
	assert((c->state == R_PAIRED) == (c->partner != NULL));
	assert(c->partner == NULL || c->partner->partner == c);
	(void)c;
}

/* One more (up) or one less on l, if l is one of g's lists. */
static void
group_count(struct group *g, const struct rchan_list *l, int up)
{
	unsigned *n;

	if (g == NULL)
		return;
	n = l == &g->idle ? &g->nidle : l == &g->waiting ? &g->nwaiting :
	    NULL;
	if (n != NULL)
		*n = up ? *n + 1 : *n - 1;
}

void
rchan_set_state(struct rchan *c, enum rchan_state to)
{
	assert(c->state != R_DEAD);
	if (c->state == R_IDLE && c->w != NULL) {
		TAILQ_REMOVE(&c->w->idle[c->role % 3], c, ilink);
		if (c->group != NULL)
			c->group->nidle_role[c->role % 3]--;
	}
	if (c->list != NULL) {
		TAILQ_REMOVE(c->list, c, qlink);
		group_count(c->group, c->list, 0);
	}
	log_debug("%s: %s channel: %s -> %s", c->peer, c->role == 0 ? "new" :
	    role_name(c->role), state_name(c->state), state_name(to));
	if (to != R_AUTH)
		stranger_leave(c);	/* authenticated, or closing */
	relay_state_changed(c->state, to);
	relay_metrics_state(c, c->state, to);
	c->state = to;
	if (to == R_IDLE) {
		TAILQ_INSERT_TAIL(&c->w->idle[c->role % 3], c, ilink);
		if (c->group != NULL)
			c->group->nidle_role[c->role % 3]++;
	}
	if ((c->list = state_list(c, to)) != NULL) {
		TAILQ_INSERT_TAIL(c->list, c, qlink);
		group_count(c->group, c->list, 1);
	}
	rchan_check(c);
}

/*
 * An idle channel must hear from its client (PINGs) within
 * --idle-timeout; (re)arm its deadline.  The deadline is c->timer, not
 * a bufferevent read timeout: with libevent 2.1.12 such a timeout outlived
 * bufferevent_set_timeouts(NULL, NULL) on channels that were then paired,
 * and cut idle user connections after 30 s.
 */
int
rchan_idle_deadline(struct rchan *c)
{
	struct timeval tv = { (time_t)relay_cfg.idle_timeout, 0 };

	return evtimer_add(c->timer, &tv);
}

static void
rchan_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rchan *c = arg;

	(void)fd;
	(void)what;
	rchan_check(c);
	switch (c->state) {
	case R_HANDSHAKE:
	case R_AUTH:
		stranger_close(c, STRANGER_TIMEOUT, "%s: no TLS handshake and "
		    "AUTH within %u s, closing", c->peer,
		    relay_cfg.handshake_timeout);
		break;
	case R_IDLE:
		rchan_close(c, LOG_LEVEL_INFO, "%s: idle %s channel silent for "
		    "%u s, closing", c->peer, role_name(c->role),
		    relay_cfg.idle_timeout);
		break;
	case R_QUEUED:
		group_open_expired(c);
		break;
	default:
		break;
	}
}

/* PONGs left unread: more than RELAY_PONG_BACKLOG in c's output, or more
 * than RELAY_PONG_KERNEL_MAX in the kernel's queue to its client. */
static int
pongs_piled_up(const struct rchan *c)
{
	int queued;

	if (evbuffer_get_length(bufferevent_get_output(c->bev)) >
	    RELAY_PONG_BACKLOG)
		return 1;
	return ioctl(bufferevent_getfd(c->bev), SIOCOUTQ, &queued) == 0 &&
	    queued > RELAY_PONG_KERNEL_MAX;
}

void
rchan_idle_read(struct rchan *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct frame_header h;
	char err[FRAME_ERRLEN];
	int r;

	while (c->state == R_IDLE &&
	    (r = frame_peek(in, &h, err, sizeof(err))) == 1) {
		switch (h.type) {
		case FRAME_PING:
			(void)evbuffer_drain(in, FRAME_HEADER_LEN + h.length);
			/* A client that pings but never reads must not make
			 * the relay (or its kernel) buffer PONGs. */
			if (pongs_piled_up(c)) {
				rchan_close(c, LOG_LEVEL_INFO, "%s: PINGs "
				    "without reading the PONGs, closing",
				    c->peer);
				return;
			}
			(void)wire_send(c->bev, FRAME_PONG, NULL, 0);
			if (rchan_idle_deadline(c) == -1) {
				rchan_close(c, LOG_LEVEL_QUIET, "%s: cannot "
				    "arm the idle timer", c->peer);
				return;
			}
			continue;
		case FRAME_OPEN:
			if (c->role != ROLE_ENTRY)
				break;
			group_open(c);	/* OPEN stays in the input */
			return;
		case FRAME_RETIRE:
		case FRAME_RST:
			/* RETIRE: the client's pool has too many.  RST: an
			 * abort that crossed the clean end; the client closes
			 * this channel anyway. */
			rchan_close(c, LOG_LEVEL_DEBUG, "%s: idle %s channel %s",
			    c->peer, role_name(c->role), h.type ==
			    FRAME_RETIRE ? "retired" : "reset");
			return;
		default:
			break;
		}
		rchan_close(c, LOG_LEVEL_INFO, "%s: protocol error: %s on an "
		    "idle %s channel", c->peer, frame_type_name(h.type),
		    role_name(c->role));
		return;
	}
	if (c->state != R_IDLE)
		return;
	if (r == -1) {
		rchan_close(c, LOG_LEVEL_INFO, "%s: protocol error: %s",
		    c->peer, err);
		return;
	}
	tls_kick(c->bev);
}

static void
rchan_read_cb(struct bufferevent *bev, void *arg)
{
	struct rchan *c = arg;

	(void)bev;
	rchan_check(c);
	switch (c->state) {
	case R_AUTH:
		rchan_auth_read(c);
		break;
	case R_IDLE:
		rchan_idle_read(c);
		break;
	case R_PAIRED:
		relay_forward(c, 0);
		break;
	default:
		break;		/* R_QUEUED reads nothing until it is paired */
	}
}

static void
rchan_write_cb(struct bufferevent *bev, void *arg)
{
	struct rchan *c = arg;

	rchan_check(c);
	switch (c->state) {
	case R_IDLE:
		/* All sent: another worker may want this channel (it moves,
		 * and is not touched here after). */
		if (c->role == ROLE_REVERSE && relay_wanted() &&
		    wire_flushed(bev))
			group_offer(c->group);
		break;
	case R_PAIRED:
		forward_resume(c);
		break;
	default:
		break;
	}
}

/* TLS handshake done; AUTH must follow within the same deadline. */
static void
handshake_done(struct rchan *c)
{
	relay_metrics_handshake(c->ssl);
	rchan_set_state(c, R_AUTH);
	if (batch_attach(c->bev) == -1) {
		rchan_close(c, LOG_LEVEL_QUIET, "%s: cannot set up the write "
		    "batch", c->peer);
		return;
	}
	tls_kick(c->bev);	/* AUTH may have come with the handshake */
}

static void
rchan_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct rchan *c = arg;
	char reason[TLS_ERRLEN];
	int err = EVUTIL_SOCKET_ERROR();

	rchan_check(c);
	if (what & BEV_EVENT_CONNECTED) {
		handshake_done(c);
		return;
	}
	tls_error_text(bev, reason, sizeof(reason));
	switch (c->state) {
	case R_HANDSHAKE:
	case R_AUTH:
		if (c->preauth_bytes > RELAY_PREAUTH_BYTES)
			stranger_close(c, STRANGER_TOO_MUCH, "%s: sent more "
			    "than %d bytes before authenticating, closing",
			    c->peer, RELAY_PREAUTH_BYTES);
		else if (c->state == R_HANDSHAKE)
			stranger_close(c, STRANGER_TLS, "%s: TLS handshake "
			    "failed: %s", c->peer, reason[0] ? reason :
			    (what & BEV_EVENT_EOF) ? "connection closed" :
			    evutil_socket_error_to_string(err));
		else
			stranger_close(c, STRANGER_TLS, "%s: closed before "
			    "authenticating", c->peer);
		break;
	case R_IDLE:
		rchan_close(c, LOG_LEVEL_DEBUG, "%s: idle %s channel closed",
		    c->peer, role_name(c->role));
		break;
	case R_PAIRED:
		log_debug("%s: %s channel ended (%s%s%s)", c->peer,
		    role_name(c->role), (what & BEV_EVENT_EOF) ? "eof" : "",
		    (what & BEV_EVENT_ERROR) ? "error " : "",
		    (what & BEV_EVENT_ERROR) ? (reason[0] ? reason :
		    evutil_socket_error_to_string(err)) : "");
		/* Pass on what was read; the partner is closed once it has
		 * written that. */
		relay_forward(c, 1);
		rchan_close(c, LOG_LEVEL_DEBUG, NULL);
		break;
	default:
		rchan_close(c, LOG_LEVEL_DEBUG, NULL);
		break;
	}
}

void
rchan_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *peer)
{
	struct timeval tv = { (time_t)relay_cfg.handshake_timeout, 0 };
	struct rchan *c;

	/* Accepted just before this worker closed its listening sockets. */
	if (relay_draining()) {
		close(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("calloc");
		close(fd);
		return;
	}
	c->w = w;
	c->fd = fd;
	c->state = R_HANDSHAKE;
	relay_metrics_accepted();
	LIST_INSERT_HEAD(&w->rchans, c, link);
	netaddr_format(peer, c->peer);
	c->born = mono_now();
	memcpy(&c->addr, peer, peer->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	if (stranger_admit(w, c) == -1) {
		rchan_close(c, LOG_LEVEL_QUIET, "%s: out of memory", c->peer);
		return;
	}
	(void)netaddr_set_nodelay(fd);
	if ((c->ssl = creds_ssl_new()) == NULL) {
		log_warnx_ssl("%s: SSL_new", c->peer);
		rchan_close(c, LOG_LEVEL_DEBUG, NULL);
		return;
	}
	c->bev = bufferevent_openssl_socket_new(w->base, fd, c->ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_DEFER_CALLBACKS);
	if (c->bev == NULL) {
		rchan_close(c, LOG_LEVEL_QUIET, "%s: cannot set up TLS",
		    c->peer);
		return;
	}
	stranger_watch(c);
	c->timer = evtimer_new(w->base, rchan_deadline_cb, c);
	if (c->timer == NULL || evtimer_add(c->timer, &tv) == -1) {
		rchan_close(c, LOG_LEVEL_QUIET, "%s: cannot arm the handshake "
		    "timer", c->peer);
		return;
	}
	bufferevent_setcb(c->bev, rchan_read_cb, rchan_write_cb,
	    rchan_event_cb, c);
	if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) == -1) {
		rchan_close(c, LOG_LEVEL_QUIET, "%s: cannot start reading",
		    c->peer);
		return;
	}
	log_debug("%s: connected (worker %u)", c->peer, w->id);
}

void
rchan_arrive(struct worker *w, struct rchan *c)
{
	struct group *g;
	int ok;

	c->w = w;
	LIST_INSERT_HEAD(&w->rchans, c, link);
	if ((g = c->group = group_ref(w, c->gid)) == NULL) {
		rchan_close(c, LOG_LEVEL_QUIET, "%s: out of memory", c->peer);
		return;
	}
	g->arrived++;		/* told to the exchange by group_match */
	c->timer = evtimer_new(w->base, rchan_deadline_cb, c);
	c->bev = bufferevent_openssl_socket_new(w->base, c->fd, c->ssl,
	    BUFFEREVENT_SSL_OPEN, BEV_OPT_DEFER_CALLBACKS);
	ok = c->timer != NULL && c->bev != NULL && batch_attach(c->bev) == 0 &&
	    rchan_idle_deadline(c) == 0;
	if (ok) {
		bufferevent_setcb(c->bev, rchan_read_cb, rchan_write_cb,
		    rchan_event_cb, c);
		ok = bufferevent_enable(c->bev, EV_READ | EV_WRITE) == 0;
	}
	if (ok) {
		rchan_set_state(c, R_IDLE);
		/* A reload may have happened on the way. */
		if (admit_recheck(c) == 0)
			tls_kick(c->bev);	/* records read ahead came too */
	} else {
		rchan_close(c, LOG_LEVEL_QUIET, "%s: cannot take over the "
		    "channel", c->peer);
	}
	group_match(g);
}
