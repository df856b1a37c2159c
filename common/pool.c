#include "pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "auth.h"
#include "batch.h"
#include "frame.h"
#include "log.h"
#include "netaddr.h"
#include "tls.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* After a refusal that will not change by itself (see chan_auth_result). */
#define REFUSED_BACKOFF_MIN_MS 1000
#define REFUSED_BACKOFF_MAX_MS 60000

enum chan_state {
	CHAN_DIALING,		/* TCP connect and TLS handshake */
	CHAN_AUTH_SENT,		/* waiting for AUTH_RESULT */
	CHAN_IDLE,		/* ready, pinging */
	CHAN_RETURNING,		/* back after a clean end, waiting for REUSE */
	CHAN_RETIRING,		/* reverse-proxy: RETIRE sent, closing */
	CHAN_DEAD,		/* closed, for the reaper to free */
};

struct pool_chan {
	struct pool *pool;
	struct bufferevent *bev;
	struct event *ping;
	enum chan_state state;
	TAILQ_ENTRY(pool_chan) link;
};

TAILQ_HEAD(chan_list, pool_chan);

struct pool {
	struct pool_config cfg;
	char relay_name[NETADDR_STRLEN + 8];
	struct chan_list dialing;	/* CHAN_DIALING and CHAN_AUTH_SENT */
	struct chan_list idle;
	struct chan_list back;		/* CHAN_RETURNING and CHAN_RETIRING */
	struct chan_list dead;		/* CHAN_DEAD */
	struct event *reaper;		/* frees the dead, from the loop */
	unsigned ndialing, nidle, nreturning, nback, in_use, waiting;
	unsigned failures;		/* dials failed in a row */
	int refused;			/* this failure: refused for good */
	struct event *retry;		/* backoff timer */
	int retry_pending;
	int connected_once;
	char last_error[256];		/* to log a repeated failure once */
};

static void pool_refill(struct pool *p);
static unsigned pool_target(const struct pool *p);

const char *
pool_relay_name(const struct pool *p)
{
	return p->relay_name;
}

/* Take c off the list its state puts it on. */
static void
chan_unlink(struct pool_chan *c)
{
	struct pool *p = c->pool;

	switch (c->state) {
	case CHAN_IDLE:
		TAILQ_REMOVE(&p->idle, c, link);
		p->nidle--;
		break;
	case CHAN_RETURNING:
	case CHAN_RETIRING:
		TAILQ_REMOVE(&p->back, c, link);
		p->nback--;
		if (c->state == CHAN_RETURNING)
			p->nreturning--;
		break;
	case CHAN_DEAD:
		TAILQ_REMOVE(&p->dead, c, link);
		break;
	default:
		TAILQ_REMOVE(&p->dialing, c, link);
		p->ndialing--;
		break;
	}
}

/* Put c, off every list, on the list of state. */
static void
chan_link(struct pool_chan *c, enum chan_state state)
{
	struct pool *p = c->pool;

	c->state = state;
	switch (state) {
	case CHAN_IDLE:
		TAILQ_INSERT_TAIL(&p->idle, c, link);
		p->nidle++;
		break;
	case CHAN_RETURNING:
	case CHAN_RETIRING:
		TAILQ_INSERT_TAIL(&p->back, c, link);
		p->nback++;
		if (state == CHAN_RETURNING)
			p->nreturning++;
		break;
	case CHAN_DEAD:
		TAILQ_INSERT_TAIL(&p->dead, c, link);
		break;
	default:
		TAILQ_INSERT_TAIL(&p->dialing, c, link);
		p->ndialing++;
		break;
	}
}

/* Free a channel: the reaper's job (and pool_free's). */
static void
chan_free(struct pool_chan *c)
{
	chan_unlink(c);
	if (c->ping != NULL)
		event_free(c->ping);
	if (c->bev != NULL)
		batch_free(c->bev);
	free(c);
}

/*
 * Close c: off its list, silent (its bufferevent and ping timer), freed by
 * the reaper when the loop comes round, so that no caller up the stack
 * holds a freed channel (the teardown of conn.c and of the relay).
 */
static void
chan_close(struct pool_chan *c)
{
	struct pool *p = c->pool;

	if (c->state == CHAN_DEAD)
		return;
	chan_unlink(c);
	chan_link(c, CHAN_DEAD);
	if (c->ping != NULL)
		event_del(c->ping);
	if (c->bev != NULL) {
		bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
		(void)bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	}
	event_active(p->reaper, EV_TIMEOUT, 0);
}

static void
reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool *p = arg;
	struct pool_chan *c;

	(void)fd;
	(void)what;
	while ((c = TAILQ_FIRST(&p->dead)) != NULL)
		chan_free(c);
}

/* From min_ms, doubling with each failure, up to max_ms, with jitter. */
static unsigned long
backoff(unsigned failures, unsigned long min_ms, unsigned long max_ms,
    uint32_t (*uniform)(uint32_t upper))
{
	unsigned long ms;
	unsigned shift;

	shift = failures > 10 ? 10 : failures > 0 ? failures - 1 : 0;
	ms = min_ms << shift;
	if (ms > max_ms)
		ms = max_ms;
	/* Jitter: between 3/4 and 5/4 of the delay. */
	return ms * 3 / 4 + uniform((uint32_t)(ms / 2 + 1));
}

unsigned long
pool_backoff_ms(unsigned failures, uint32_t (*uniform)(uint32_t upper))
{
	return backoff(failures, BACKOFF_MIN_MS, BACKOFF_MAX_MS, uniform);
}

unsigned long
pool_refused_backoff_ms(unsigned failures, uint32_t (*uniform)(uint32_t upper))
{
	return backoff(failures, REFUSED_BACKOFF_MIN_MS, REFUSED_BACKOFF_MAX_MS,
	    uniform);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool *p = arg;

	(void)fd;
	(void)what;
	p->retry_pending = 0;
	pool_refill(p);
}

/* A dial failed: log why (once while it keeps failing the same way) and
 * schedule the next try with exponential backoff and jitter. */
static void
dial_failed(struct pool_chan *c, const char *why)
{
	struct pool *p = c->pool;
	unsigned long ms;
	struct timeval tv;

	if (strcmp(why, p->last_error) != 0) {
		/* "relay H:P refused authentication: ...", "relay H:P: ..." */
		log_warnx("relay %s%s%s", p->relay_name,
		    strncmp(why, "refused ", 8) == 0 ? " " : ": ", why);
		snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	} else {
		log_debug("relay %s: %s (again)", p->relay_name, why);
	}
	chan_close(c);
	p->failures++;
	ms = p->refused ? pool_refused_backoff_ms(p->failures,
	    randombytes_uniform) : pool_backoff_ms(p->failures,
	    randombytes_uniform);
	p->refused = 0;		/* said again by the next refusal */
	if (!p->retry_pending) {
		tv.tv_sec = (time_t)(ms / 1000);
		tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
		if (evtimer_add(p->retry, &tv) == 0)
			p->retry_pending = 1;
		else
			log_warnx("relay %s: cannot arm the retry timer",
			    p->relay_name);
	}
}

static void
ping_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool_chan *c = arg;
	struct pool *p = c->pool;

	(void)fd;
	(void)what;
	/*
	 * Demand fell: idle channels above the target go, each at its ping.
	 * An entry-point closes it; a reverse-proxy asks the relay to, since
	 * the relay may be pairing it at this very moment (an OPEN that
	 * crossed the RETIRE is served as usual).
	 */
	if (p->nidle + p->nreturning > pool_target(p)) {
		log_debug("relay %s: closing a surplus idle channel (%u idle)",
		    p->relay_name, p->nidle);
		if (p->cfg.on_open == NULL) {
			chan_close(c);
			return;
		}
		event_del(c->ping);
		chan_unlink(c);
		chan_link(c, CHAN_RETIRING);
		if (frame_write(bufferevent_get_output(c->bev), FRAME_RETIRE,
		    NULL, 0) == -1)
			chan_close(c);
		return;
	}
	if (frame_write(bufferevent_get_output(c->bev), FRAME_PING, NULL, 0)
	    == -1) {
		log_warnx("relay %s: cannot queue a PING", p->relay_name);
		chan_close(c);
		pool_refill(p);
	}
}

/* The channel is authenticated: it joins the idle list.  Returns 0, or -1
 * when it had to be closed. */
static int
chan_ready(struct pool_chan *c)
{
	struct pool *p = c->pool;
	struct timeval ping = { POOL_PING_INTERVAL, 0 };
	struct timeval dead = { POOL_DEAD_AFTER, 0 };

	int fresh = c->state != CHAN_RETURNING;

	chan_unlink(c);
	chan_link(c, CHAN_IDLE);
	if (fresh && (p->failures > 0 || !p->connected_once))
		log_info("relay %s: connected (group %u)", p->relay_name,
		    p->cfg.group);
	if (fresh) {
		p->failures = 0;
		p->connected_once = 1;
		p->last_error[0] = '\0';
	}
	bufferevent_set_timeouts(c->bev, &dead, NULL);
	if (c->ping == NULL)
		c->ping = event_new(p->cfg.base, -1, EV_PERSIST, ping_cb, c);
	if (c->ping == NULL || event_add(c->ping, &ping) == -1) {
		log_warnx("relay %s: cannot arm the ping timer",
		    p->relay_name);
		chan_close(c);
		return -1;
	}
	return 0;
}

/* Hand c's bufferevent to the caller; the pool forgets the channel (c
 * itself goes to the reaper). */
static struct bufferevent *
chan_hand_off(struct pool_chan *c)
{
	struct bufferevent *bev = c->bev;
	struct pool *p = c->pool;

	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	bufferevent_set_timeouts(bev, NULL, NULL);
	c->bev = NULL;
	chan_close(c);
	p->in_use++;
	return bev;
}

/*
 * The channel is idle (again): tell the owner.  Returns 1 when the caller
 * must stop reading (c may be closed or handed off), 0 to go on.
 */
static int
chan_became_idle(struct pool_chan *c)
{
	struct pool *p = c->pool;

	if (chan_ready(c) == -1 || p->cfg.on_idle != NULL) {
		/* on_idle may take c out of the pool: leave anything further
		 * to its new owner. */
		if (p->cfg.on_idle != NULL)
			p->cfg.on_idle(p->cfg.arg);
		pool_refill(p);
		return 1;
	}
	pool_refill(p);
	return 0;
}

/* The relay's answer to AUTH, whole at the front of in.  Returns 0 when
 * the channel is in (the caller makes it idle), -1 when it failed (c is
 * closed). */
static int
chan_auth_result(struct pool_chan *c, struct evbuffer *in,
    const struct frame_header *h)
{
	uint8_t payload[FRAME_CONTROL_MAX];
	uint8_t version, code;
	char err[FRAME_ERRLEN], why[256];

	if (h->type != FRAME_AUTH_RESULT) {
		snprintf(why, sizeof(why), "protocol error: %s before "
		    "AUTH_RESULT", frame_type_name(h->type));
		dial_failed(c, why);
		return -1;
	}
	(void)evbuffer_drain(in, FRAME_HEADER_LEN);
	if (evbuffer_remove(in, payload, h->length) != (int)h->length ||
	    auth_result_decode(payload, h->length, &version, &code, err,
	    sizeof(err)) == -1) {
		dial_failed(c, "protocol error: bad AUTH_RESULT");
		return -1;
	}
	if (version != PROTOCOL_VERSION || code != AUTH_OK) {
		snprintf(why, sizeof(why), "refused authentication: %s (relay "
		    "protocol version %u)", auth_code_text(code), version);
		/* Only the key's channel limit (and a busy relay) can change
		 * by itself: back off long on anything else. */
		c->pool->refused = version != PROTOCOL_VERSION ||
		    (code != AUTH_KEY_FULL && code != AUTH_BUSY);
		dial_failed(c, why);
		return -1;
	}
	return 0;
}

/* A channel is gone after a protocol error: say why, free, refill. */
static void
chan_protocol_error(struct pool_chan *c, const char *why)
{
	struct pool *p = c->pool;

	log_warnx("relay %s: protocol error: %s", p->relay_name, why);
	chan_close(c);
	pool_refill(p);
}

static void
chan_read_cb(struct bufferevent *bev, void *arg)
{
	struct pool_chan *c = arg;
	struct pool *p = c->pool;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct frame_header h;
	char err[FRAME_ERRLEN], why[256];
	int r;

	while ((r = frame_peek(in, &h, err, sizeof(err))) == 1) {
		if (c->state == CHAN_AUTH_SENT) {
			if (chan_auth_result(c, in, &h) == -1 ||
			    chan_became_idle(c))
				return;
			continue;
		}
		if (h.type == FRAME_PONG) {
			(void)evbuffer_drain(in, FRAME_HEADER_LEN + h.length);
			continue;
		}
		if (c->state == CHAN_RETURNING && h.type == FRAME_REUSE) {
			(void)evbuffer_drain(in, FRAME_HEADER_LEN);
			if (chan_became_idle(c))
				return;
			continue;
		}
		if (p->cfg.on_open != NULL && (c->state == CHAN_IDLE ||
		    c->state == CHAN_RETIRING)) {
			/* An OPEN for the reverse-proxy: the caller reads
			 * it, and whatever follows, from here on. */
			bev = chan_hand_off(c);
			p->cfg.on_open(bev, p->cfg.arg);
			pool_refill(p);
			return;
		}
		snprintf(why, sizeof(why), "unexpected %s on an idle channel",
		    frame_type_name(h.type));
		chan_protocol_error(c, why);
		return;
	}
	if (r == -1) {
		if (c->state == CHAN_DIALING || c->state == CHAN_AUTH_SENT) {
			snprintf(why, sizeof(why), "protocol error: %s", err);
			dial_failed(c, why);
		} else {
			chan_protocol_error(c, err);
		}
		return;
	}
	/* An idle channel holds no record buffers.  SSL_MODE_RELEASE_BUFFERS
	 * does not cover one case: reading the relay's session ticket makes
	 * OpenSSL 3.0 set up a write buffer (16 KiB) that stays until the
	 * next write. */
	if (c->state == CHAN_IDLE && evbuffer_get_length(in) == 0)
		(void)SSL_free_buffers(bufferevent_openssl_get_ssl(bev));
	tls_kick(bev);
}

/* Describe why a channel failed, from the TLS, socket and DNS layers. */
static void
describe_error(struct bufferevent *bev, short what, char *buf, size_t len)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	long verify;
	int dns_err, sock_err = EVUTIL_SOCKET_ERROR();
	char reason[TLS_ERRLEN];

	if (what & BEV_EVENT_TIMEOUT) {
		snprintf(buf, len, "timed out");
		return;
	}
	if ((dns_err = bufferevent_socket_get_dns_error(bev)) != 0) {
		snprintf(buf, len, "cannot resolve: %s",
		    evutil_gai_strerror(dns_err));
		return;
	}
	if (ssl != NULL && (verify = SSL_get_verify_result(ssl)) !=
	    X509_V_OK) {
		snprintf(buf, len, "TLS handshake failed: certificate verify "
		    "failed: %s", X509_verify_cert_error_string(verify));
		tls_error_text(bev, reason, sizeof(reason));	/* emptied */
		return;
	}
	tls_error_text(bev, reason, sizeof(reason));
	if (sock_err != 0 && sock_err != EAGAIN && sock_err != EINPROGRESS)
		snprintf(buf, len, "%s", evutil_socket_error_to_string(
		    sock_err));
	else if (reason[0] != '\0')
		snprintf(buf, len, "TLS failed: %s", reason);
	else if (what & BEV_EVENT_EOF)
		snprintf(buf, len, "connection closed by the relay");
	else
		snprintf(buf, len, "connection failed");
}

static void
chan_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct pool_chan *c = arg;
	struct pool *p = c->pool;
	uint8_t exporter[AUTH_EXPORTER_LEN];
	uint8_t payload[AUTH_PAYLOAD_LEN];
	struct auth_msg m;
	char why[256];

	if (what & BEV_EVENT_CONNECTED) {
		/* TCP connected and TLS handshake done. */
		(void)netaddr_set_nodelay(bufferevent_getfd(bev));
		if (batch_attach(bev) == -1) {
			dial_failed(c, "cannot set up the write batch");
			return;
		}
		log_debug("relay %s: TLS handshake done (%s)", p->relay_name,
		    SSL_session_reused(bufferevent_openssl_get_ssl(bev)) ?
		    "session resumed" : "full");
		m.version = PROTOCOL_VERSION;
		m.role = p->cfg.role;
		m.group = p->cfg.group;
		memcpy(m.pubkey, p->cfg.key->pk, AUTH_PUBKEY_LEN);
		if (tls_exporter(bufferevent_openssl_get_ssl(bev), exporter) ==
		    -1 || auth_sign(p->cfg.key, m.role, m.group, exporter,
		    m.sig) == -1) {
			dial_failed(c, "cannot sign AUTH");
			return;
		}
		auth_msg_encode(&m, payload);
		if (frame_write(bufferevent_get_output(bev), FRAME_AUTH,
		    payload, sizeof(payload)) == -1) {
			dial_failed(c, "cannot queue AUTH");
			return;
		}
		c->state = CHAN_AUTH_SENT;
		tls_kick(bev);
		return;
	}
	describe_error(bev, what, why, sizeof(why));
	if (c->state == CHAN_RETURNING || c->state == CHAN_RETIRING) {
		/* The relay closed it rather than reuse it, or as asked. */
		log_debug("relay %s: %s channel closed: %s", p->relay_name,
		    c->state == CHAN_RETIRING ? "retired" : "used", why);
		chan_close(c);
		pool_refill(p);
		return;
	}
	if (c->state == CHAN_IDLE) {
		/* An idle channel went away: say so once, then redial. */
		if (what & BEV_EVENT_TIMEOUT)
			log_warnx("relay %s: idle channel silent for %d s, "
			    "closing it", p->relay_name, POOL_DEAD_AFTER);
		else
			log_debug("relay %s: idle channel closed: %s",
			    p->relay_name, why);
		chan_close(c);
		pool_refill(p);
		return;
	}
	if (c->state == CHAN_AUTH_SENT && (what & BEV_EVENT_EOF))
		snprintf(why, sizeof(why), "closed the channel during "
		    "authentication");
	dial_failed(c, why);
}

static void
chan_dial(struct pool *p)
{
	struct timeval tv = { POOL_DIAL_TIMEOUT, 0 };
	struct pool_chan *c;
	SSL *ssl;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("relay %s: calloc", p->relay_name);
		return;
	}
	c->pool = p;
	chan_link(c, CHAN_DIALING);
	if ((ssl = tls_client_ssl_new(p->cfg.ssl_ctx, p->cfg.relay_host)) ==
	    NULL) {
		dial_failed(c, "cannot set up TLS");
		return;
	}
	c->bev = bufferevent_openssl_socket_new(p->cfg.base, -1, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE |
	    BEV_OPT_DEFER_CALLBACKS);
	if (c->bev == NULL) {
		SSL_free(ssl);
		dial_failed(c, "cannot set up TLS");
		return;
	}
	bufferevent_setcb(c->bev, chan_read_cb, NULL, chan_event_cb, c);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) == -1) {
		dial_failed(c, "cannot start reading");
		return;
	}
	/* On failure libevent reports through chan_event_cb, which frees
	 * c; do not touch it after an error return. */
	(void)bufferevent_socket_connect_hostname(c->bev, p->cfg.dns,
	    AF_UNSPEC, p->cfg.relay_host, p->cfg.relay_port);
}

unsigned
pool_target_size(unsigned min, unsigned max, unsigned in_use,
    unsigned waiting)
{
	unsigned half = in_use / 2;

	if (max <= min)
		return max;
	/* min + half + waiting, stopping at max before it can wrap. */
	if (half >= max - min || waiting >= max - min - half)
		return max;
	return min + half + waiting;
}

static unsigned
pool_target(const struct pool *p)
{
	return pool_target_size(p->cfg.min, p->cfg.max, p->in_use,
	    p->waiting);
}

static void
pool_refill(struct pool *p)
{
	unsigned target, inflight_max;

	if (p->retry_pending)
		return;
	target = pool_target(p);
	/* After a failure, probe with one dial at a time. */
	inflight_max = p->failures > 0 ? 1 : POOL_DIALS_MAX;
	while (p->nidle + p->nreturning + p->ndialing < target &&
	    p->ndialing < inflight_max &&
	    !p->retry_pending)
		chan_dial(p);
}

struct pool *
pool_new(const struct pool_config *config)
{
	struct pool *p;
	char host[NETADDR_STRLEN];

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->cfg = *config;
	TAILQ_INIT(&p->dialing);
	TAILQ_INIT(&p->idle);
	TAILQ_INIT(&p->back);
	TAILQ_INIT(&p->dead);
	if (strchr(config->relay_host, ':') != NULL)
		snprintf(host, sizeof(host), "[%s]", config->relay_host);
	else
		snprintf(host, sizeof(host), "%s", config->relay_host);
	snprintf(p->relay_name, sizeof(p->relay_name), "%s:%u", host,
	    config->relay_port);
	if ((p->retry = evtimer_new(config->base, retry_cb, p)) == NULL) {
		free(p);
		return NULL;
	}
	if ((p->reaper = event_new(config->base, -1, 0, reaper_cb, p)) ==
	    NULL) {
		event_free(p->retry);
		free(p);
		return NULL;
	}
	pool_refill(p);
	return p;
}

struct bufferevent *
pool_take(struct pool *p)
{
	struct pool_chan *c = TAILQ_FIRST(&p->idle);
	struct bufferevent *bev;

	if (c == NULL)
		return NULL;
	bev = chan_hand_off(c);
	pool_refill(p);
	return bev;
}

void
pool_set_waiting(struct pool *p, unsigned waiting)
{
	p->waiting = waiting;
	pool_refill(p);
}

void
pool_put(struct pool *p, struct bufferevent *bev)
{
	struct timeval dead = { POOL_DEAD_AFTER, 0 };
	struct pool_chan *c;
	short want;

	if (p->in_use > 0)
		p->in_use--;
	if (bev == NULL) {
		pool_refill(p);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("relay %s: calloc", p->relay_name);
		batch_free(bev);
		pool_refill(p);
		return;
	}
	c->pool = p;
	c->bev = bev;
	chan_link(c, CHAN_RETURNING);
	bufferevent_setcb(bev, chan_read_cb, NULL, chan_event_cb, c);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(bev, &dead, NULL);
	/* Enabling writing again would make bufferevent_openssl wait for the
	 * socket to poll writable even with nothing to write. */
	want = (EV_READ | EV_WRITE) & ~bufferevent_get_enabled(bev);
	if (want != 0 && bufferevent_enable(bev, want) == -1) {
		chan_close(c);
		pool_refill(p);
		return;
	}
	bev_kick_write(bev);
	/* REUSE may be in the input already: no read event would say so. */
	if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
		bufferevent_trigger(bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS |
		    BEV_TRIG_DEFER_CALLBACKS);
	tls_kick(bev);
}

void
pool_free(struct pool *p)
{
	struct pool_chan *c;

	if (p == NULL)
		return;
	while ((c = TAILQ_FIRST(&p->idle)) != NULL)
		chan_free(c);
	while ((c = TAILQ_FIRST(&p->back)) != NULL)
		chan_free(c);
	while ((c = TAILQ_FIRST(&p->dialing)) != NULL)
		chan_free(c);
	while ((c = TAILQ_FIRST(&p->dead)) != NULL)
		chan_free(c);
	event_free(p->reaper);
	event_free(p->retry);
	free(p);
}
