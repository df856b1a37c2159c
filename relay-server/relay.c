#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
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

/* Pass whatever src has read to its partner; stop reading src while the
 * partner's output is full. */
static void
relay_forward(struct rchan *src)
{
	struct rchan *dst = src->partner;
	struct evbuffer *out;

	if (dst == NULL)
		return;
	out = bufferevent_get_output(dst->bev);
	if (evbuffer_add_buffer(out, bufferevent_get_input(src->bev)) == -1) {
		log_warnx("%s: out of memory", src->peer);
		rchan_close_flush(dst);
		rchan_free(src);
		return;
	}
	if (evbuffer_get_length(out) >= RELAY_HIGH_WATER) {
		bufferevent_disable(src->bev, EV_READ);
		src->paused = 1;
	}
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
	relay_forward(entry);
	if (reverse->partner != NULL)
		relay_forward(reverse);
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
		relay_forward(c);
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
	}
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
			relay_forward(c);
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
