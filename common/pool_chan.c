/*
 * pool_chan: one channel of the pool, from dial to hand-off: TCP connect
 * (from --bind-address when given), TLS, AUTH and its answer, PING while
 * idle, REUSE after a clean end, and the hand-off of an OPEN to the
 * reverse-proxy.  The pool's lists, size and backoff are pool.c's.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/x509.h>

#include "auth.h"
#include "batch.h"
#include "client_metrics.h"
#include "daemon.h"
#include "frame.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "pool_internal.h"
#include "tls.h"

/*
 * An idle channel that is not wanted (demand fell, or the pool drains)
 * goes.  An entry-point closes it; a reverse-proxy asks the relay to,
 * since the relay may be pairing it at this very moment (an OPEN that
 * crossed the RETIRE is served as usual).
 */
void
chan_surplus(struct pool_chan *c)
{
	if (c->pool->cfg.on_open == NULL) {
		chan_close(c);
		return;
	}
	event_del(c->ping);
	chan_unlink(c);
	chan_link(c, CHAN_RETIRING);
	if (frame_write(bufferevent_get_output(c->bev), FRAME_RETIRE,
	    NULL, 0) == -1)
		chan_close(c);
}

static void
ping_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool_chan *c = arg;
	struct pool *p = c->pool;

	(void)fd;
	(void)what;
	/* Demand fell: idle channels above the target go, each at its
	 * ping. */
	if (p->nidle + p->nreturning > pool_target(p)) {
		log_debug("relay %s: closing a surplus idle channel (%u idle)",
		    p->relay_name, p->nidle);
		chan_surplus(c);
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
	if (fresh && (p->failures > 0 || !p->connected_once)) {
		log_info("relay %s: connected (group %u)", p->relay_name,
		    p->cfg.group);
		daemon_ready();		/* it serves: its first channel */
	}
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
struct bufferevent *
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
	int r = chan_ready(c);

	if (r == 0 && p->draining) {
		/* A reverse-proxy's retiring channel still reads: an OPEN
		 * right behind REUSE is served. */
		chan_surplus(c);
		return c->state == CHAN_DEAD;
	}
	if (r == -1 || p->cfg.on_idle != NULL) {
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
	metrics_add(client_metrics.auth_results, version == PROTOCOL_VERSION ?
	    code : AUTH_BAD_VERSION, 1);
	if (version != PROTOCOL_VERSION || code != AUTH_OK) {
		snprintf(why, sizeof(why), "refused authentication: %s (relay "
		    "protocol version %u)", auth_code_text(code), version);
		/* Back off long on a refusal that will not change by
		 * itself; the key's channel limit changes when channels of
		 * the key close (this pool's, or another holder's of the
		 * same key): a middle backoff, up to 10 s.  A busy relay:
		 * the short one. */
		if (version == PROTOCOL_VERSION && code == AUTH_KEY_FULL)
			c->pool->refused = POOL_REFUSED_FULL;
		else if (version == PROTOCOL_VERSION && code == AUTH_STOPPING)
			c->pool->refused = POOL_STOPPING;
		else if (version != PROTOCOL_VERSION || code != AUTH_BUSY)
			c->pool->refused = POOL_REFUSED;
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

void
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
		if (h.type == FRAME_AUTH_RESULT) {
			/* The relay reloaded its keys and this one lost its
			 * rights: a refusal, as at AUTH (c closes). */
			if (chan_auth_result(c, in, &h) == 0)
				chan_protocol_error(c, "AUTH_RESULT ok on an "
				    "authenticated channel");
			return;
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

void
chan_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct pool_chan *c = arg;
	struct pool *p = c->pool;
	uint8_t exporter[AUTH_EXPORTER_LEN];
	uint8_t payload[AUTH_PAYLOAD_LEN];
	struct auth_msg m;
	char why[256];
	int resumed;

	if (what & BEV_EVENT_CONNECTED) {
		/* TCP connected and TLS handshake done. */
		(void)netaddr_set_nodelay(bufferevent_getfd(bev));
		if (batch_attach(bev) == -1) {
			dial_failed(c, "cannot set up the write batch");
			return;
		}
		resumed = SSL_session_reused(bufferevent_openssl_get_ssl(bev));
		metrics_add(client_metrics.handshakes, resumed ?
		    HANDSHAKE_RESUMED : HANDSHAKE_FULL, 1);
		log_debug("relay %s: TLS handshake done (%s)", p->relay_name,
		    resumed ? "session resumed" : "full");
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
		if (p->redials < p->cfg.max)
			p->redials++;
		pool_refill(p);
		return;
	}
	if (c->state == CHAN_AUTH_SENT && (what & BEV_EVENT_EOF))
		snprintf(why, sizeof(why), "closed the channel during "
		    "authentication");
	dial_failed(c, why);
}

/*
 * --bind-address: connect c's socket from the configured local address.
 * bufferevent_socket_connect_hostname cannot bind, so the relay's name is
 * looked up here (in the bind address's family only) and the socket is
 * made, bound and connected here; the TLS bufferevent gets it while the
 * connect is in progress, so it sees it writable only once connected and
 * starts the handshake then, as after bufferevent_socket_connect.
 */
static void
bound_connect(struct pool_chan *c, const struct evutil_addrinfo *ai)
{
	struct pool *p = c->pool;
	char why[256], where[NETADDR_STRLEN];
	int fd;

	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		snprintf(why, sizeof(why), "socket: %s", strerror(errno));
		dial_failed(c, why);
		return;
	}
	if (bind(fd, p->cfg.bind_addr, p->cfg.bind_len) == -1) {
		if (getnameinfo(p->cfg.bind_addr, p->cfg.bind_len, where,
		    sizeof(where), NULL, 0, NI_NUMERICHOST) != 0)
			snprintf(where, sizeof(where), "?");
		snprintf(why, sizeof(why), "cannot bind to %s (--bind-address):"
		    " %s", where, strerror(errno));
		close(fd);
		dial_failed(c, why);
		return;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == -1 &&
	    errno != EINPROGRESS) {
		snprintf(why, sizeof(why), "%s", strerror(errno));
		close(fd);
		dial_failed(c, why);
		return;
	}
	/* From here the bufferevent owns fd (BEV_OPT_CLOSE_ON_FREE). */
	if (bufferevent_setfd(c->bev, fd) == -1) {
		close(fd);
		dial_failed(c, "cannot set up TLS");
	}
}

static void
bound_resolved_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct pool_chan *c = arg;
	char why[256];

	if (result == EVUTIL_EAI_CANCEL)
		return;		/* c is closing */
	c->dns_req = NULL;
	if (result != 0 || res == NULL) {
		snprintf(why, sizeof(why), "cannot resolve: %s",
		    evutil_gai_strerror(result));
		dial_failed(c, why);
	} else {
		bound_connect(c, res);
	}
	if (res != NULL)
		evutil_freeaddrinfo(res);
}

void
chan_cancel_lookup(struct pool_chan *c)
{
	struct evdns_getaddrinfo_request *req = c->dns_req;

	if (req != NULL) {
		c->dns_req = NULL;
		evdns_getaddrinfo_cancel(req);	/* the callback sees CANCEL */
	}
}

static void
bound_dial(struct pool_chan *c)
{
	struct pool *p = c->pool;
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	char port[8];

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = p->cfg.bind_addr->sa_family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	snprintf(port, sizeof(port), "%u", p->cfg.relay_port);
	/* The callback may run (and c close) before this returns: NULL. */
	req = evdns_getaddrinfo(p->cfg.dns, p->cfg.relay_host, port, &hints,
	    bound_resolved_cb, c);
	if (req != NULL)
		c->dns_req = req;
}

void
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
	if (p->redials > 0) {
		p->redials--;
		metrics_add(client_metrics.reconnects, 0, 1);
	}
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
	/* The timeouts cover the lookup too (timers while there is no
	 * socket yet). */
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) == -1) {
		dial_failed(c, "cannot start reading");
		return;
	}
	if (p->cfg.bind_addr != NULL) {
		bound_dial(c);
		return;
	}
	/* On failure libevent reports through chan_event_cb, which frees
	 * c; do not touch it after an error return. */
	(void)bufferevent_socket_connect_hostname(c->bev, p->cfg.dns,
	    AF_UNSPEC, p->cfg.relay_host, p->cfg.relay_port);
}
