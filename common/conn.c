#include "conn.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>

#include "batch.h"
#include "client_metrics.h"
#include "conn_internal.h"
#include "frame.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "tls.h"
#include "wire.h"

static LIST_HEAD(, conn) conns = LIST_HEAD_INITIALIZER(conns);
static TAILQ_HEAD(, conn) graveyard = TAILQ_HEAD_INITIALIZER(graveyard);
static struct event *reaper;
static unsigned nconns;

unsigned
conn_count(void)
{
	return nconns;
}

/* The one place a conn and everything it holds is freed. */
static void
conn_free(struct conn *c)
{
	conn_end_cb *cb = c->end_cb;
	void *arg = c->end_arg;
	int had = c->had_channel;

	LIST_REMOVE(c, link);
	nconns--;
	metrics_add(client_metrics.connections_active, c->metrics_label, -1);
	if (c->reaping)
		TAILQ_REMOVE(&graveyard, c, grave);
	if (c->dns_req != NULL) {
		struct evdns_getaddrinfo_request *req = c->dns_req;
		c->dns_req = NULL;
		evdns_getaddrinfo_cancel(req);	/* callback sees CANCEL */
	}
	if (c->addrs != NULL)
		evutil_freeaddrinfo(c->addrs);
	plain_release(c, 0);
	if (c->channel != NULL)
		batch_free(c->channel);
	free(c);
	if (cb != NULL && had)
		cb(arg, NULL);
}

static void
reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c;

	(void)fd;
	(void)what;
	(void)arg;
	while ((c = TAILQ_FIRST(&graveyard)) != NULL)
		conn_free(c);
}

/*
 * Free c from the event loop, not now: conn_close is called from deep in
 * callbacks (frame loops, connect attempts) that look at c again after it
 * returns.  c stays valid, and silent, until the loop comes round.
 */
static void
conn_reap(struct conn *c)
{
	if (c->reaping)
		return;
	c->reaping = 1;
	if (c->plain != NULL) {
		bufferevent_setcb(c->plain, NULL, NULL, NULL, NULL);
		bufferevent_disable(c->plain, EV_READ | EV_WRITE);
	}
	if (c->plain_rd != NULL)
		event_del(c->plain_rd);
	if (c->channel != NULL) {
		bufferevent_setcb(c->channel, NULL, NULL, NULL, NULL);
		bufferevent_disable(c->channel, EV_READ | EV_WRITE);
	}
	TAILQ_INSERT_TAIL(&graveyard, c, grave);
	event_active(reaper, EV_TIMEOUT, 0);
}

struct conn *
conn_alloc(struct event_base *base, enum channel_role role,
    unsigned metrics_label, conn_end_cb *end_cb, void *end_arg)
{
	struct conn *c;

	if (reaper == NULL &&
	    (reaper = event_new(base, -1, 0, reaper_cb, NULL)) == NULL) {
		log_warnx("cannot create the reaper event");
		return NULL;
	}

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("calloc");
		return NULL;
	}
	c->base = base;
	c->role = role;
	c->end_cb = end_cb;
	c->end_arg = end_arg;
	c->metrics_label = metrics_label;
	c->dir_out = role == ROLE_ENTRY ? METRICS_UPSTREAM :
	    METRICS_DOWNSTREAM;
	LIST_INSERT_HEAD(&conns, c, link);
	nconns++;
	metrics_add(client_metrics.connections_total, metrics_label, 1);
	metrics_add(client_metrics.connections_active, metrics_label, 1);
	return c;
}

static void
channel_flushed_cb(struct bufferevent *bev, void *arg)
{
	if (wire_flushed(bev))
		conn_free(arg);
}

static void
channel_closing_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	conn_free(arg);
}

/*
 * End the conn.  send_rst: tell the far end with RST.  reset_plain: the
 * plain socket is closed with a reset (the connection did not end well).
 * The channel is flushed (bounded by WIRE_FLUSH_TIMEOUT), then freed.
 */
void
conn_close(struct conn *c, int send_rst, int reset_plain)
{
	if (c->state == CONN_CLOSING)
		return;
	c->state = CONN_CLOSING;
	log_debug("%s: closed (%llu bytes out, %llu in)%s", c->label,
	    (unsigned long long)c->bytes_out, (unsigned long long)c->bytes_in,
	    reset_plain ? ", reset" : "");
	plain_release(c, reset_plain);
	if (c->channel == NULL) {
		conn_reap(c);
		return;
	}
	if (send_rst)
		(void)frame_write(bufferevent_get_output(c->channel), FRAME_RST,
		    NULL, 0);
	if (wire_close_after_flush(c->channel, WIRE_FLUSH_TIMEOUT,
	    channel_flushed_cb, channel_closing_event_cb, c) != 0)
		conn_reap(c);
}

void
conn_abort(struct conn *c)
{
	conn_close(c, 1, 1);
}

/* Both directions have ended: a clean close. */
void
conn_check_done(struct conn *c)
{
	if (c->fin_sent && c->plain_shut)
		conn_close(c, 0, 0);
}

/* A frame of our own for the channel, sent in this loop pass. */
int
channel_frame(struct conn *c, uint8_t type, const void *payload, size_t len)
{
	return wire_send(c->channel, type, payload, len);
}

void
open_result_send(struct conn *c, uint8_t code, const char *text)
{
	(void)wire_send_open_result(c->channel, code, text);
	metrics_add(client_metrics.open_results, code, 1);
}

/*
 * FIN has gone both ways: the channel's part is over, at a frame boundary
 * (what follows in its input is the relay's, REUSE first).  The channel
 * goes back to the owner to be reused; the conn goes on writing what it
 * holds to the plain side (bounded by a write timeout), then ends.
 */
void
channel_detach(struct conn *c)
{
	struct timeval flush = { WIRE_FLUSH_TIMEOUT, 0 };
	struct bufferevent *ch = c->channel;

	bufferevent_setcb(ch, NULL, NULL, NULL, NULL);
	c->channel = NULL;
	c->had_channel = 0;
	c->channel_paused = 0;
	log_debug("%s: ended cleanly (%llu bytes out, %llu in), channel kept",
	    c->label, (unsigned long long)c->bytes_out,
	    (unsigned long long)c->bytes_in);
	if (c->plain != NULL)
		bufferevent_set_timeouts(c->plain, NULL, &flush);
	if (c->end_cb != NULL)
		c->end_cb(c->end_arg, ch);
	else
		batch_free(ch);
}

/* entry-point: the reverse-proxy's answer to OPEN, whole at the front of
 * in.  Returns 0 when it is OK (the splice goes on), -1 when c closed. */
static int
channel_open_result(struct conn *c, struct evbuffer *in,
    const struct frame_header *h)
{
	uint8_t payload[FRAME_CONTROL_MAX];
	struct open_result_msg result;
	char err[FRAME_ERRLEN];

	(void)evbuffer_drain(in, FRAME_HEADER_LEN);
	if (evbuffer_remove(in, payload, h->length) != (int)h->length)
		snprintf(err, sizeof(err), "OPEN_RESULT truncated");
	else if (open_result_decode(payload, h->length, &result, err,
	    sizeof(err)) == 0)
		err[0] = '\0';
	if (err[0] != '\0') {
		log_warnx("%s: protocol error: %s", c->label, err);
		conn_close(c, 1, 1);
		return -1;
	}
	client_metrics_open_result(result.code, c->open_sent_us);
	if (result.code != OPEN_OK) {
		log_info("%s: cannot open: %s%s%s", c->label,
		    open_code_text(result.code), result.text[0] ? ": " : "",
		    result.text);
		conn_close(c, 0, 1);
		return -1;
	}
	c->result_received = 1;
	log_debug("%s: open", c->label);
	return 0;
}

/*
 * entry-point: the relay reloaded its keys and refused this channel's
 * (AUTH_RESULT instead of an answer to OPEN: the key lost its rights
 * while the channel was idle or the OPEN waited).  The user is reset; the
 * pool learns of the refusal at its next dial.
 */
static void
channel_refused(struct conn *c, struct evbuffer *in,
    const struct frame_header *h)
{
	uint8_t payload[FRAME_CONTROL_MAX], version = 0, code = 0;
	char err[FRAME_ERRLEN];

	(void)evbuffer_drain(in, FRAME_HEADER_LEN);
	if (evbuffer_remove(in, payload, h->length) != (int)h->length ||
	    auth_result_decode(payload, h->length, &version, &code, err,
	    sizeof(err)) == -1 || code == AUTH_OK) {
		log_warnx("%s: protocol error: AUTH_RESULT on a used channel",
		    c->label);
		conn_close(c, 1, 1);
		return;
	}
	log_info("%s: cannot open: the relay refused the channel's key: %s",
	    c->label, auth_code_text(code));
	conn_close(c, 0, 1);
}

/* Is a frame of this type, from the channel, out of place now? */
static int
channel_unexpected(const struct conn *c, uint8_t type)
{
	switch (type) {
	case FRAME_DATA:
	case FRAME_FIN:
		return c->fin_received ||
		    (c->role == ROLE_ENTRY && !c->result_received);
	case FRAME_OPEN_RESULT:
	case FRAME_AUTH_RESULT:
		return c->role != ROLE_ENTRY || c->result_received;
	case FRAME_RST:
	case FRAME_PING:
	case FRAME_PONG:
		return 0;
	default:
		return 1;
	}
}

/* channel -> plain, frame by frame, as far as the input goes. */
void
channel_process(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->channel);
	struct frame_header h;
	char err[FRAME_ERRLEN];
	int r;

	while (c->state == CONN_OPEN && c->channel != NULL &&
	    (r = frame_peek(in, &h, err, sizeof(err))) == 1) {
		if (channel_unexpected(c, h.type)) {
			log_warnx("%s: protocol error: unexpected %s", c->label,
			    frame_type_name(h.type));
			conn_close(c, 1, 1);
			return;
		}
		switch (h.type) {
		case FRAME_DATA:
			(void)evbuffer_drain(in, FRAME_HEADER_LEN);
			if (evbuffer_remove_buffer(in, bufferevent_get_output(
			    c->plain), h.length) != (int)h.length) {
				conn_close(c, 1, 1);
				return;
			}
			c->bytes_in += h.length;
			metrics_add(client_metrics.bytes, !c->dir_out, h.length);
			break;
		case FRAME_FIN:
			(void)evbuffer_drain(in, FRAME_HEADER_LEN);
			c->fin_received = 1;
			if (c->fin_sent)
				channel_detach(c);	/* input stays as is */
			plain_shutdown(c);
			break;
		case FRAME_RST:
			(void)evbuffer_drain(in, FRAME_HEADER_LEN);
			log_debug("%s: reset by the far end", c->label);
			conn_close(c, 0, 1);
			return;
		case FRAME_OPEN_RESULT:
			if (channel_open_result(c, in, &h) == -1)
				return;
			break;
		case FRAME_AUTH_RESULT:
			channel_refused(c, in, &h);
			return;
		default:
			/* PING, PONG: keepalives that crossed the pairing, no
			 * meaning end to end. */
			(void)evbuffer_drain(in, FRAME_HEADER_LEN + h.length);
			break;
		}
	}
	if (c->state != CONN_OPEN || c->channel == NULL)
		return;
	if (r == -1) {
		log_warnx("%s: protocol error: %s", c->label, err);
		conn_close(c, 1, 1);
		return;
	}
	if (evbuffer_get_length(bufferevent_get_output(c->plain)) >=
	    WIRE_HIGH_WATER) {
		bufferevent_disable(c->channel, EV_READ);
		c->channel_paused = 1;
	}
	/* Records read ahead first, then one write for all of them (the
	 * plain write event stays armed meanwhile). */
	if (!tls_kick(c->channel))
		bev_kick_write(c->plain);
}

static void
channel_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	channel_process(arg);
}

static void
channel_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (c->state == CONN_OPEN && c->plain_paused && !c->fin_sent) {
		c->plain_paused = 0;
		if (event_add(c->plain_rd, NULL) == -1)
			conn_close(c, 1, 1);
	}
}

static void
channel_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	batch_free(c->channel);
	c->channel = NULL;
	/* The relay or the far end went away without FIN or RST: what the
	 * plain side got may be incomplete, so it gets a reset. */
	log_debug("%s: channel %s", c->label, (what & BEV_EVENT_EOF) ?
	    "closed" : (what & BEV_EVENT_TIMEOUT) ? "timed out" : "failed");
	conn_close(c, 0, 1);
}

void
channel_setup(struct conn *c, struct bufferevent *channel)
{
	c->channel = channel;
	c->had_channel = 1;
	bufferevent_setcb(channel, channel_read_cb, channel_write_cb,
	    channel_event_cb, c);
	wire_watermarks_splice(channel);
	bufferevent_set_timeouts(channel, NULL, NULL);
}

struct conn *
conn_new_source(struct event_base *base, evutil_socket_t fd,
    const struct sockaddr *source, const char *label, unsigned metrics_label,
    const char *dest_host, uint16_t dest_port, conn_end_cb *end_cb,
    void *end_arg)
{
	char src[NETADDR_STRLEN];
	struct conn *c;

	if ((c = conn_alloc(base, ROLE_ENTRY, metrics_label, end_cb,
	    end_arg)) == NULL) {
		close(fd);
		return NULL;
	}
	netaddr_format(source, src);
	snprintf(c->label, sizeof(c->label), "%s: %s", label, src);
	snprintf(c->open.host, sizeof(c->open.host), "%s", dest_host);
	snprintf(c->open.source, sizeof(c->open.source), "%s", src);
	c->open.port = dest_port;
	c->state = CONN_WAIT_CHANNEL;
	(void)netaddr_set_nodelay(fd);
	c->plain = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->plain == NULL) {
		close(fd);
		c->end_cb = NULL;	/* the caller sees NULL instead */
		conn_free(c);
		return NULL;
	}
	bufferevent_setcb(c->plain, NULL, plain_write_cb, plain_event_cb, c);
	bufferevent_set_max_single_write(c->plain, WIRE_HIGH_WATER);
	bufferevent_setwatermark(c->plain, EV_WRITE, WIRE_LOW_WATER, 0);
	return c;
}

void
conn_attach_channel(struct conn *c, struct bufferevent *channel)
{
	uint8_t buf[FRAME_CONTROL_MAX];
	size_t len;

	channel_setup(c, channel);
	len = open_msg_encode(&c->open, buf);
	if (channel_frame(c, FRAME_OPEN, buf, len) == -1) {
		conn_close(c, 1, 1);
		return;
	}
	log_debug("%s: OPEN %s:%u", c->label, c->open.host, c->open.port);
	c->open_sent_us = client_metrics_open_sent();
	c->state = CONN_OPEN;
	if (bufferevent_enable(c->plain, EV_WRITE) == -1 ||
	    plain_read_start(c) == -1 ||
	    bufferevent_enable(channel, EV_READ | EV_WRITE) == -1) {
		conn_close(c, 1, 1);
		return;
	}
	channel_process(c);
}

void
conn_free_all(void)
{
	struct conn *c;

	while ((c = LIST_FIRST(&conns)) != NULL) {
		c->end_cb = NULL;
		conn_free(c);
	}
	if (reaper != NULL)
		event_free(reaper);
	reaper = NULL;
}
