#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>

#include "frame.h"
#include "log.h"
#include "netaddr.h"
#include "tls.h"

enum rchan_state {
	R_HANDSHAKE,	/* TLS handshake under way */
	R_AUTH,		/* waiting for AUTH */
	R_IDLE,		/* authenticated, unpaired */
	R_QUEUED,	/* entry: OPEN received, waiting for a peer */
	R_PAIRED,	/* relaying to partner */
	R_CLOSING,	/* flushing before free */
};

struct group;

struct rchan {
	enum rchan_state state;
	struct bufferevent *bev;
	struct event *timer;		/* handshake or queue deadline */
	uint8_t role;
	struct group *group;
	struct rchan *partner;
	int paused;			/* reading stopped: partner full */
	int fin;			/* paired: FIN passed on from this side */
	size_t frame_left;		/* paired: bytes of a frame still to pass */
	time_t born;			/* monotonic seconds at accept */
	unsigned long uses;		/* user connections carried */
	int dying;			/* its event callback is closing it */
	char peer[NETADDR_STRLEN];
	char key[17];			/* fingerprint, for logs */
	TAILQ_ENTRY(rchan) qlink;	/* group's idle or waiting list */
	LIST_ENTRY(rchan) link;		/* every channel */
};

TAILQ_HEAD(rchan_list, rchan);

struct group {
	uint32_t id;
	unsigned refs;			/* channels of this group */
	struct rchan_list idle;		/* reverse-proxy channels */
	struct rchan_list waiting;	/* entry-point channels with OPEN */
	unsigned nidle, nwaiting;
	LIST_ENTRY(group) link;
};

static struct event_base *relay_base;
static struct relay_config relay_cfg;
static LIST_HEAD(, rchan) rchans = LIST_HEAD_INITIALIZER(rchans);
static LIST_HEAD(, group) groups = LIST_HEAD_INITIALIZER(groups);
static unsigned nrchans;
static time_t last_full_warning;

static void rchan_read_cb(struct bufferevent *, void *);
static void rchan_write_cb(struct bufferevent *, void *);
static void rchan_event_cb(struct bufferevent *, short, void *);

static const char *
role_name(uint8_t role)
{
	return role == ROLE_ENTRY ? "entry-point" : "reverse-proxy";
}

/* The group with this id, made if needed, with one more reference. */
static struct group *
group_ref(uint32_t id)
{
	struct group *g;

	LIST_FOREACH(g, &groups, link)
		if (g->id == id)
			break;
	if (g == NULL) {
		if ((g = calloc(1, sizeof(*g))) == NULL)
			return NULL;
		g->id = id;
		TAILQ_INIT(&g->idle);
		TAILQ_INIT(&g->waiting);
		LIST_INSERT_HEAD(&groups, g, link);
	}
	g->refs++;
	return g;
}

static void
group_unref(struct group *g)
{
	if (g == NULL || --g->refs > 0)
		return;
	LIST_REMOVE(g, link);
	free(g);
}

/* Take c out of whichever group list its state puts it in. */
static void
group_leave(struct rchan *c)
{
	struct group *g = c->group;

	if (g == NULL)
		return;
	if (c->state == R_IDLE && c->role == ROLE_REVERSE) {
		TAILQ_REMOVE(&g->idle, c, qlink);
		g->nidle--;
	} else if (c->state == R_QUEUED) {
		TAILQ_REMOVE(&g->waiting, c, qlink);
		g->nwaiting--;
	}
}

/* The one place a channel is freed. */
static void
rchan_free(struct rchan *c)
{
	group_leave(c);
	group_unref(c->group);
	if (c->partner != NULL)
		c->partner->partner = NULL;
	LIST_REMOVE(c, link);
	nrchans--;
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	free(c);
}

static void
closing_write_cb(struct bufferevent *bev, void *arg)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		rchan_free(arg);
}

static void
closing_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	rchan_free(arg);
}

/* Close c after what is queued for it has been written (bounded). */
static void
rchan_close_flush(struct rchan *c)
{
	struct timeval tv = { RELAY_FLUSH_TIMEOUT, 0 };

	group_leave(c);
	if (c->partner != NULL) {
		c->partner->partner = NULL;
		c->partner = NULL;
	}
	if (c->timer != NULL)
		event_del(c->timer);
	if (c->state == R_HANDSHAKE ||
	    evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
		rchan_free(c);
		return;
	}
	c->state = R_CLOSING;
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_setcb(c->bev, NULL, closing_write_cb, closing_event_cb,
	    c);
	bufferevent_set_timeouts(c->bev, NULL, &tv);
	if (bufferevent_enable(c->bev, EV_WRITE) == -1)
		rchan_free(c);
}

static void
send_frame(struct rchan *c, uint8_t type, const void *payload, size_t len)
{
	(void)frame_write(bufferevent_get_output(c->bev), type, payload, len);
}

static void
auth_reply(struct rchan *c, uint8_t code)
{
	uint8_t payload[2] = { PROTOCOL_VERSION, code };

	send_frame(c, FRAME_AUTH_RESULT, payload, sizeof(payload));
}

static time_t
mono_now(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void rchan_recycle(struct rchan *c);
static void group_match(struct group *g);

/*
 * The user connection on the pair a-b ended cleanly: FIN went both ways
 * and has been passed on.  Each channel goes back to idle (REUSE tells its
 * client so) unless it is too old, in which case it is closed.
 */
static void
pair_end(struct rchan *a, struct rchan *b)
{
	struct rchan *entry = a->role == ROLE_ENTRY ? a : b;
	struct rchan *reverse = a->role == ROLE_ENTRY ? b : a;
	struct group *g = entry->group;

	a->partner = b->partner = NULL;
	log_debug("group %u: entry-point %s and reverse-proxy %s: connection "
	    "ended cleanly", g->id, entry->peer, reverse->peer);
	g->refs++;		/* g outlives both channels for group_match */
	rchan_recycle(entry);
	rchan_recycle(reverse);
	group_match(g);
	group_unref(g);
}

/*
 * Protocol error on a paired channel: src is closed, its partner gets RST
 * (src's frames stopped at a boundary, so RST is a frame of its own there)
 * and is closed after it.
 */
static void
pair_fail(struct rchan *src, const char *why)
{
	struct rchan *dst = src->partner;

	log_info("%s: protocol error: %s", src->peer, why);
	if (dst != NULL) {
		send_frame(dst, FRAME_RST, NULL, 0);
		rchan_close_flush(dst);
	}
	rchan_free(src);
}

/* Does a frame of this type pass the relay untouched? */
static int
passes(const struct rchan *src, const struct frame_header *h)
{
	switch (h->type) {
	case FRAME_DATA:
		return !src->fin;
	case FRAME_OPEN:
		return src->role == ROLE_ENTRY;
	case FRAME_OPEN_RESULT:
		return src->role == ROLE_REVERSE;
	default:
		return 0;
	}
}

/*
 * Pass what src has read on to its partner.  The relay follows the frame
 * headers but moves the bytes in as few pieces as it can: the run of DATA
 * (and OPEN, OPEN_RESULT) frames up to the next control frame goes in one
 * evbuffer move, chains and all, even when its last frame has not fully
 * arrived.  Control frames: PING and RETIRE that crossed the pairing are
 * dropped; FIN is passed on and noted (both ways: the pair ends and its
 * channels are reused); RST is passed on and closes the pair; anything
 * else is a protocol error.  Stops reading src while the partner's output
 * is full.  Returns -1 when src is gone.
 */
static int
relay_forward(struct rchan *src)
{
	struct rchan *dst = src->partner;
	struct evbuffer *in = bufferevent_get_input(src->bev);
	struct evbuffer *out;
	struct evbuffer_ptr pos;
	struct frame_header h;
	uint8_t hdr[FRAME_HEADER_LEN];
	char err[160];
	size_t len, run, n;
	int r;

	while (dst != NULL && (len = evbuffer_get_length(in)) > 0) {
		out = bufferevent_get_output(dst->bev);
		/* How far the frames that pass untouched go. */
		run = src->frame_left;
		while (run + FRAME_HEADER_LEN <= len) {
			if (evbuffer_ptr_set(in, &pos, run, EVBUFFER_PTR_SET)
			    == -1 || evbuffer_copyout_from(in, &pos, hdr,
			    sizeof(hdr)) != (ev_ssize_t)sizeof(hdr) ||
			    frame_header_decode(hdr, sizeof(hdr), &h, err,
			    sizeof(err)) != 1 || !passes(src, &h))
				break;
			run += FRAME_HEADER_LEN + h.length;
		}
		if (run > 0) {
			n = run < len ? run : len;
			r = n == len ? evbuffer_add_buffer(out, in) :
			    evbuffer_remove_buffer(in, out, n) == (int)n ? 0 :
			    -1;
			if (r == -1) {
				log_warnx("%s: out of memory", src->peer);
				rchan_close_flush(dst);
				rchan_free(src);
				return -1;
			}
			src->frame_left = run - n;
			continue;
		}
		/* A frame that does not pass is at the front. */
		if ((r = frame_peek(in, &h, err, sizeof(err))) == 0)
			break;
		if (r == -1) {
			pair_fail(src, err);
			return -1;
		}
		switch (h.type) {
		case FRAME_PING:
		case FRAME_RETIRE:
			evbuffer_drain(in, FRAME_HEADER_LEN + h.length);
			break;
		case FRAME_FIN:
			if (src->fin)
				goto unexpected;
			evbuffer_drain(in, FRAME_HEADER_LEN);
			send_frame(dst, FRAME_FIN, NULL, 0);
			src->fin = 1;
			if (dst->fin) {
				pair_end(src, dst);
				return 0;
			}
			break;
		case FRAME_RST:
			evbuffer_drain(in, FRAME_HEADER_LEN);
			send_frame(dst, FRAME_RST, NULL, 0);
			log_debug("%s: %s reset the connection", src->peer,
			    role_name(src->role));
			rchan_close_flush(dst);
			rchan_free(src);
			return -1;
		default:
			goto unexpected;
		}
	}
	if (dst != NULL && evbuffer_get_length(bufferevent_get_output(
	    dst->bev)) >= RELAY_HIGH_WATER) {
		bufferevent_disable(src->bev, EV_READ);
		src->paused = 1;
	}
	tls_kick(src->bev);
	return 0;
unexpected:
	snprintf(err, sizeof(err), "unexpected %s%s from the %s",
	    frame_type_name(h.type), src->fin ? " after FIN" : "",
	    role_name(src->role));
	pair_fail(src, err);
	return -1;
}

/* Pair an entry-point channel (its OPEN still unread in its input) with an
 * idle reverse-proxy channel, and start relaying. */
static void
pair(struct rchan *entry, struct rchan *reverse)
{
	group_leave(entry);
	group_leave(reverse);
	if (entry->timer != NULL)
		event_del(entry->timer);
	entry->state = reverse->state = R_PAIRED;
	entry->partner = reverse;
	reverse->partner = entry;
	entry->fin = reverse->fin = 0;
	entry->frame_left = reverse->frame_left = 0;
	entry->uses++;
	reverse->uses++;
	/* A user connection may stay quiet for as long as it likes. */
	bufferevent_set_timeouts(entry->bev, NULL, NULL);
	bufferevent_set_timeouts(reverse->bev, NULL, NULL);
	bufferevent_setwatermark(entry->bev, EV_WRITE, RELAY_LOW_WATER, 0);
	bufferevent_setwatermark(reverse->bev, EV_WRITE, RELAY_LOW_WATER, 0);
	/* TLS reads of whole records, several per pass (see NOTES-io). */
	bufferevent_setwatermark(entry->bev, EV_READ, 0, RELAY_READ_HIGH_WATER);
	bufferevent_setwatermark(reverse->bev, EV_READ, 0,
	    RELAY_READ_HIGH_WATER);
	log_debug("group %u: paired entry-point %s with reverse-proxy %s",
	    entry->group->id, entry->peer, reverse->peer);
	if (bufferevent_enable(entry->bev, EV_READ) == -1 ||
	    bufferevent_enable(reverse->bev, EV_READ) == -1) {
		rchan_close_flush(reverse);
		rchan_free(entry);
		return;
	}
	/* The reverse-proxy's input may hold a PING (dropped) or RETIRE
	 * (ignored: it is in use now) sent before it learned of the pairing. */
	if (relay_forward(entry) == 0 && entry->state == R_PAIRED)
		(void)relay_forward(reverse);
}

/* Pair waiting OPENs of g with idle reverse-proxy channels of g. */
static void
group_match(struct group *g)
{
	struct rchan *e, *r;

	while ((e = TAILQ_FIRST(&g->waiting)) != NULL &&
	    (r = TAILQ_FIRST(&g->idle)) != NULL)
		pair(e, r);
}

static void
queue_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rchan *c = arg;
	struct open_result_msg m;
	uint8_t buf[1 + OPEN_RESULT_TEXT_MAX];
	size_t len;

	(void)fd;
	(void)what;
	if (c->state == R_HANDSHAKE || c->state == R_AUTH) {
		log_info("%s: no TLS handshake and AUTH within %u s, closing",
		    c->peer, relay_cfg.handshake_timeout);
		rchan_free(c);
		return;
	}
	if (c->state != R_QUEUED)
		return;
	log_info("%s: group %u: no reverse-proxy channel within %u s",
	    c->peer, c->group->id, relay_cfg.open_timeout);
	memset(&m, 0, sizeof(m));
	m.code = OPEN_NO_PEER;
	snprintf(m.text, sizeof(m.text), "group %u has no idle reverse-proxy "
	    "channel", c->group->id);
	len = open_result_encode(&m, buf);
	/* Whatever the entry-point sent behind OPEN is dropped with it. */
	evbuffer_drain(bufferevent_get_input(c->bev),
	    evbuffer_get_length(bufferevent_get_input(c->bev)));
	send_frame(c, FRAME_OPEN_RESULT, buf, len);
	rchan_close_flush(c);
}

/* An entry-point's OPEN: pair it now, or queue it for open_timeout. */
static void
entry_open(struct rchan *c)
{
	struct group *g = c->group;
	struct timeval tv = { (time_t)relay_cfg.open_timeout, 0 };

	if (g->nwaiting >= RELAY_WAIT_MAX) {
		log_warnx("%s: group %u: %u OPENs already waiting, refusing",
		    c->peer, g->id, g->nwaiting);
		evbuffer_drain(bufferevent_get_input(c->bev),
		    evbuffer_get_length(bufferevent_get_input(c->bev)));
		{
			uint8_t code = OPEN_NO_PEER;
			send_frame(c, FRAME_OPEN_RESULT, &code, 1);
		}
		rchan_close_flush(c);
		return;
	}
	c->state = R_QUEUED;
	TAILQ_INSERT_TAIL(&g->waiting, c, qlink);
	g->nwaiting++;
	/* Read nothing more until paired: the bytes behind OPEN wait. */
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_set_timeouts(c->bev, NULL, NULL);
	if (evtimer_add(c->timer, &tv) == -1) {
		log_warnx("%s: cannot arm the queue timer", c->peer);
		rchan_free(c);
		return;
	}
	group_match(g);
}

/* After a clean end: c is idle again, or closed when it is too old. */
static void
rchan_recycle(struct rchan *c)
{
	struct timeval idle = { RELAY_IDLE_TIMEOUT, 0 };
	time_t age = mono_now() - c->born;

	if (c->dying)
		return;		/* rchan_event_cb frees it */
	if (age >= RELAY_REUSE_MAX_AGE) {
		log_debug("%s: %s channel is %lld s old: closing it rather "
		    "than reusing it", c->peer, role_name(c->role),
		    (long long)age);
		rchan_close_flush(c);
		return;
	}
	c->state = R_IDLE;
	c->fin = 0;
	c->frame_left = 0;
	send_frame(c, FRAME_REUSE, NULL, 0);
	bufferevent_set_timeouts(c->bev, &idle, NULL);
	if (c->role == ROLE_REVERSE) {
		TAILQ_INSERT_TAIL(&c->group->idle, c, qlink);
		c->group->nidle++;
	}
	log_debug("%s: %s channel idle again (%lu connections carried)",
	    c->peer, role_name(c->role), c->uses);
	if (c->paused) {
		c->paused = 0;
		if (bufferevent_enable(c->bev, EV_READ) == -1) {
			rchan_free(c);
			return;
		}
	}
	/* Frames already read wait for no new read event. */
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		bufferevent_trigger(c->bev, EV_READ,
		    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	tls_kick(c->bev);
}

/* Handle AUTH, the first frame.  Returns 0 when c is authenticated. */
static int
handle_auth(struct rchan *c, const struct frame_header *h)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	uint8_t payload[FRAME_CONTROL_MAX];
	uint8_t exporter[AUTH_EXPORTER_LEN];
	struct timeval idle = { RELAY_IDLE_TIMEOUT, 0 };
	struct auth_msg m;
	char err[160];
	uint8_t code;

	if (h->type != FRAME_AUTH) {
		log_info("%s: authentication failed: %s instead of AUTH",
		    c->peer, frame_type_name(h->type));
		auth_reply(c, AUTH_MALFORMED);
		return -1;
	}
	evbuffer_drain(in, FRAME_HEADER_LEN);
	evbuffer_remove(in, payload, h->length);
	if (auth_msg_decode(payload, h->length, &m, err, sizeof(err)) == -1) {
		code = m.version != PROTOCOL_VERSION ? AUTH_BAD_VERSION :
		    AUTH_MALFORMED;
		log_info("%s: authentication failed: %s", c->peer, err);
		auth_reply(c, code);
		return -1;
	}
	auth_fingerprint(m.pubkey, c->key);
	if (!auth_keyset_contains(&relay_cfg.keys, m.pubkey)) {
		log_info("%s: authentication failed: %s (key %s)", c->peer,
		    auth_code_text(AUTH_UNKNOWN_KEY), c->key);
		auth_reply(c, AUTH_UNKNOWN_KEY);
		return -1;
	}
	if (tls_exporter(bufferevent_openssl_get_ssl(c->bev), exporter) ==
	    -1 || auth_verify(m.pubkey, m.role, m.group, exporter, m.sig) !=
	    0) {
		log_info("%s: authentication failed: %s (key %s)", c->peer,
		    auth_code_text(AUTH_BAD_SIGNATURE), c->key);
		auth_reply(c, AUTH_BAD_SIGNATURE);
		return -1;
	}
	if ((c->group = group_ref(m.group)) == NULL) {
		log_warnx("%s: out of memory", c->peer);
		return -1;
	}
	c->role = m.role;
	event_del(c->timer);
	auth_reply(c, AUTH_OK);
	log_debug("%s: %s authenticated, group %u, key %s", c->peer,
	    role_name(c->role), m.group, c->key);
	c->state = R_IDLE;
	bufferevent_set_timeouts(c->bev, &idle, NULL);
	if (c->role == ROLE_REVERSE) {
		TAILQ_INSERT_TAIL(&c->group->idle, c, qlink);
		c->group->nidle++;
	}
	return 0;
}

static void
rchan_read_cb(struct bufferevent *bev, void *arg)
{
	struct rchan *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct frame_header h;
	char err[160];
	int r = 0;

	if (c->state == R_PAIRED) {
		(void)relay_forward(c);
		return;
	}
	while ((c->state == R_AUTH || c->state == R_IDLE) &&
	    (r = frame_peek(in, &h, err, sizeof(err))) == 1) {
		if (c->state == R_AUTH) {
			if (handle_auth(c, &h) == -1) {
				rchan_close_flush(c);
				return;
			}
			if (c->role == ROLE_REVERSE) {
				struct group *g = c->group;
				group_match(g);
				if (c->state != R_IDLE)
					return;	/* paired, input forwarded */
			}
			continue;
		}
		if (h.type == FRAME_PING) {
			evbuffer_drain(in, FRAME_HEADER_LEN + h.length);
			/* A client that pings but never reads must not make
			 * the relay buffer PONGs without bound. */
			if (evbuffer_get_length(bufferevent_get_output(bev)) >
			    RELAY_PONG_BACKLOG) {
				log_info("%s: PINGs without reading the PONGs, "
				    "closing", c->peer);
				rchan_free(c);
				return;
			}
			send_frame(c, FRAME_PONG, NULL, 0);
			continue;
		}
		if (h.type == FRAME_OPEN && c->role == ROLE_ENTRY) {
			entry_open(c);	/* OPEN stays in the input */
			return;
		}
		if (h.type == FRAME_RETIRE || h.type == FRAME_RST) {
			/* RETIRE: the client's pool has too many.  RST: an
			 * abort that crossed the clean end; the client closes
			 * this channel anyway. */
			log_debug("%s: idle %s channel %s", c->peer,
			    role_name(c->role), h.type == FRAME_RETIRE ?
			    "retired" : "reset");
			rchan_free(c);
			return;
		}
		log_info("%s: protocol error: %s on an idle %s channel",
		    c->peer, frame_type_name(h.type), role_name(c->role));
		rchan_free(c);
		return;
	}
	if ((c->state == R_AUTH || c->state == R_IDLE) && r == -1) {
		log_info("%s: %s: %s", c->peer, c->state == R_AUTH ?
		    "authentication failed" : "protocol error", err);
		if (c->state == R_AUTH) {
			auth_reply(c, AUTH_MALFORMED);
			rchan_close_flush(c);
		} else {
			rchan_free(c);
		}
		return;
	}
	if (c->state == R_AUTH || c->state == R_IDLE)
		tls_kick(bev);
}

static void
rchan_write_cb(struct bufferevent *bev, void *arg)
{
	struct rchan *c = arg;
	struct rchan *p = c->partner;

	(void)bev;
	/* c's output drained below the low mark: its partner may read. */
	if (c->state == R_PAIRED && p != NULL && p->paused) {
		p->paused = 0;
		if (bufferevent_enable(p->bev, EV_READ) == -1)
			rchan_free(p);
		else
			tls_kick(p->bev);
	}
}

static void
rchan_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct rchan *c = arg;
	struct rchan *p = c->partner;
	unsigned long e;
	char reason[200] = "";

	if (what & BEV_EVENT_CONNECTED) {
		/* TLS handshake done; AUTH must follow within the same
		 * deadline. */
		c->state = R_AUTH;
		tls_kick(bev);	/* AUTH may have come with the handshake */
		return;
	}
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (reason[0] == '\0')
			ERR_error_string_n(e, reason, sizeof(reason));
	switch (c->state) {
	case R_HANDSHAKE:
		log_info("%s: TLS handshake failed: %s", c->peer,
		    reason[0] ? reason : (what & BEV_EVENT_EOF) ?
		    "connection closed" : evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
		break;
	case R_AUTH:
		log_info("%s: closed before authenticating", c->peer);
		break;
	case R_IDLE:
		if (what & BEV_EVENT_TIMEOUT)
			log_info("%s: idle %s channel silent for %d s, "
			    "closing", c->peer, role_name(c->role),
			    RELAY_IDLE_TIMEOUT);
		else
			log_debug("%s: idle %s channel closed", c->peer,
			    role_name(c->role));
		break;
	case R_PAIRED:
		/* Pass on what was read, then close the partner once it
		 * has that. */
		if (p != NULL) {
			c->dying = 1;
			if (relay_forward(c) == -1)
				return;		/* c is gone, and its pair */
			p = c->partner;
		}
		log_debug("%s: %s channel ended (%s%s%s)", c->peer, role_name(c->role), (what & BEV_EVENT_EOF) ? "eof" : "", (what & BEV_EVENT_ERROR) ? "error " : "", (what & BEV_EVENT_ERROR) ? (reason[0] ? reason : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR())) : "");
		if (p != NULL)
			rchan_close_flush(p);
		break;
	default:
		break;
	}
	rchan_free(c);
}

int
relay_init(struct event_base *base, const struct relay_config *cfg)
{
	relay_base = base;
	relay_cfg = *cfg;
	return 0;
}

void
relay_accept(evutil_socket_t fd, const struct sockaddr *peer)
{
	struct timeval tv = { (time_t)relay_cfg.handshake_timeout, 0 };
	struct rchan *c;
	SSL *ssl;

	if (nrchans >= relay_cfg.max_channels) {
		time_t now = time(NULL);
		if (now != last_full_warning) {
			char name[NETADDR_STRLEN];
			netaddr_format(peer, name);
			log_warnx("%u channels open (--max-channels): refusing "
			    "%s", nrchans, name);
			last_full_warning = now;
		}
		close(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("calloc");
		close(fd);
		return;
	}
	LIST_INSERT_HEAD(&rchans, c, link);
	nrchans++;
	netaddr_format(peer, c->peer);
	c->state = R_HANDSHAKE;
	c->born = mono_now();
	(void)netaddr_set_nodelay(fd);
	if ((ssl = SSL_new(relay_cfg.ssl_ctx)) == NULL) {
		log_warnx_ssl("%s: SSL_new", c->peer);
		close(fd);
		rchan_free(c);
		return;
	}
	c->bev = bufferevent_openssl_socket_new(relay_base, fd, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE |
	    BEV_OPT_DEFER_CALLBACKS);
	if (c->bev == NULL) {
		log_warnx("%s: cannot set up TLS", c->peer);
		SSL_free(ssl);
		close(fd);
		rchan_free(c);
		return;
	}
	c->timer = evtimer_new(relay_base, queue_timeout_cb, c);
	if (c->timer == NULL || evtimer_add(c->timer, &tv) == -1) {
		log_warnx("%s: cannot arm the handshake timer", c->peer);
		rchan_free(c);
		return;
	}
	bufferevent_setcb(c->bev, rchan_read_cb, rchan_write_cb,
	    rchan_event_cb, c);
	if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) == -1) {
		log_warnx("%s: cannot start reading", c->peer);
		rchan_free(c);
		return;
	}
	log_debug("%s: connected", c->peer);
}

void
relay_shutdown(void)
{
	struct rchan *c;

	while ((c = LIST_FIRST(&rchans)) != NULL)
		rchan_free(c);
}
