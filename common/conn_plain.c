/*
 * conn_plain: a conn's plain socket (the source, or the destination): our
 * own reads into whole DATA frames on the channel, its writes and events,
 * EOF (FIN to the far end), shutdown of its write side after the far
 * end's FIN, and closing it.  The conn's life and its channel are conn.c's.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "client_metrics.h"
#include "conn_internal.h"
#include "frame.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"
#include "wire.h"

/* Free the plain socket's events and close it (with a reset: the peer sees
 * that the connection did not end well). */
void
plain_release(struct conn *c, int reset)
{
	evutil_socket_t fd;

	if (c->plain_rd != NULL) {
		event_free(c->plain_rd);
		c->plain_rd = NULL;
	}
	if (c->plain == NULL)
		return;
	fd = bufferevent_getfd(c->plain);
	if (reset && fd >= 0) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	bufferevent_free(c->plain);
	c->plain = NULL;
}

void
plain_shutdown(struct conn *c)
{
	if (c->plain_shut ||
	    evbuffer_get_length(bufferevent_get_output(c->plain)) != 0)
		return;
	if (shutdown(bufferevent_getfd(c->plain), SHUT_WR) == -1 &&
	    errno != ENOTCONN)
		log_debug("%s: shutdown: %s", c->label, strerror(errno));
	c->plain_shut = 1;
	conn_check_done(c);
}

/*
 * plain -> channel.  The plain socket is read here, not by its bufferevent:
 * libevent 2.1.12 reads sockets 4 KiB at a time, which would make 4 KiB TLS
 * records on every hop.  One readv fills up to CONN_READ_FRAMES whole DATA
 * frames laid out back to back in the channel's output, each of exactly
 * one TLS record (FRAME_RECORD bytes, header included), so the TLS layer
 * writes full records and no byte is copied on the way.
 */
#define CONN_READ_FRAMES 15	/* 240 KiB: one 256 KiB chain with its header */

static void plain_eof(struct conn *c);

static void
plain_readable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *out;
	struct evbuffer_iovec vec;
	struct iovec iov[CONN_READ_FRAMES];
	uint8_t *base;
	size_t i, full, rest;
	ssize_t n;

	(void)what;
	if (c->state != CONN_OPEN)
		return;
	out = bufferevent_get_output(c->channel);
	if (evbuffer_reserve_space(out, CONN_READ_FRAMES * FRAME_RECORD, &vec,
	    1) != 1) {
		log_warnx("%s: out of memory", c->label);
		conn_close(c, 1, 1);
		return;
	}
	base = vec.iov_base;
	for (i = 0; i < CONN_READ_FRAMES; i++) {
		iov[i].iov_base = base + i * FRAME_RECORD + FRAME_HEADER_LEN;
		iov[i].iov_len = FRAME_RECORD - FRAME_HEADER_LEN;
	}
	n = readv(fd, iov, CONN_READ_FRAMES);
	if (n == 0) {
		plain_eof(c);
		return;
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		log_debug("%s: %s: %s", c->label, c->role == ROLE_ENTRY ?
		    "source" : "destination", strerror(errno));
		conn_close(c, 1, 1);
		return;
	}
	full = (size_t)n / (FRAME_RECORD - FRAME_HEADER_LEN);
	rest = (size_t)n % (FRAME_RECORD - FRAME_HEADER_LEN);
	for (i = 0; i < full; i++)
		frame_header_encode(base + i * FRAME_RECORD, FRAME_DATA,
		    FRAME_RECORD - FRAME_HEADER_LEN);
	vec.iov_len = full * FRAME_RECORD;
	if (rest > 0) {
		frame_header_encode(base + full * FRAME_RECORD, FRAME_DATA,
		    (uint16_t)rest);
		vec.iov_len += FRAME_HEADER_LEN + rest;
	}
	if (evbuffer_commit_space(out, &vec, 1) == -1) {
		conn_close(c, 1, 1);
		return;
	}
	c->bytes_out += (uint64_t)n;
	metrics_add(client_metrics.bytes, c->dir_out, (int64_t)n);
	bev_kick_write(c->channel);
	if (evbuffer_get_length(out) >= WIRE_HIGH_WATER) {
		event_del(c->plain_rd);
		c->plain_paused = 1;
	}
}

/* Start reading the plain socket.  Returns 0 or -1. */
int
plain_read_start(struct conn *c)
{
	if (c->plain_rd == NULL) {
		c->plain_rd = event_new(c->base, bufferevent_getfd(c->plain),
		    EV_READ | EV_PERSIST, plain_readable_cb, c);
		if (c->plain_rd == NULL)
			return -1;
	}
	return event_add(c->plain_rd, NULL);
}

void
plain_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (c->state != CONN_OPEN)
		return;
	if (c->channel_paused && c->channel != NULL) {
		c->channel_paused = 0;
		if (bufferevent_enable(c->channel, EV_READ) == -1) {
			conn_close(c, 1, 1);
			return;
		}
		channel_process(c);	/* frames may wait in its input */
		if (c->state != CONN_OPEN)
			return;
	}
	if (c->fin_received)
		plain_shutdown(c);
}

void
plain_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	int err = EVUTIL_SOCKET_ERROR();

	(void)bev;
	if (c->state == CONN_CONNECTING) {
		dest_connect_event(c, what, err);
		return;
	}
	if (c->state != CONN_OPEN)
		return;
	log_debug("%s: %s: %s", c->label, c->role == ROLE_ENTRY ?
	    "source" : "destination", (what & BEV_EVENT_TIMEOUT) ?
	    "timed out" : evutil_socket_error_to_string(err));
	conn_close(c, 1, 1);
}

/* The plain socket's peer is done sending: FIN.  Reading stops; writing
 * goes on (half-close). */
static void
plain_eof(struct conn *c)
{
	event_del(c->plain_rd);
	if (channel_frame(c, FRAME_FIN, NULL, 0) == -1) {
		conn_close(c, 1, 1);
		return;
	}
	c->fin_sent = 1;
	log_debug("%s: %s closed its side", c->label, c->role == ROLE_ENTRY ?
	    "source" : "destination");
	if (c->fin_received)
		channel_detach(c);
	conn_check_done(c);
}
