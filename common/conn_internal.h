/*
 * conn_internal: what conn.c (one user connection: its life, its
 * teardown, its channel side), conn_plain.c (its plain socket side) and
 * conn_dial.c (the reverse-proxy's side of OPEN: the allow-list, the
 * lookup, the connect to each address in turn) share.  Not for use
 * outside those three files.
 */
#ifndef CONN_INTERNAL_H
#define CONN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/util.h>

#include "conn.h"
#include "frame.h"

struct allow_list;
struct bufferevent;
struct evdns_getaddrinfo_request;

enum conn_state {
	CONN_WAIT_CHANNEL,	/* entry: source accepted, no channel yet */
	CONN_RESOLVING,		/* reverse: looking up the destination */
	CONN_CONNECTING,	/* reverse: connecting to the destination */
	CONN_OPEN,		/* splicing */
	CONN_CLOSING,		/* flushing the channel before freeing it */
};

struct conn {
	enum conn_state state;
	enum channel_role role;
	struct event_base *base;
	struct evdns_base *dns;
	struct bufferevent *plain;	/* source or destination: writes */
	struct event *plain_rd;		/* its reads: our own, see below */
	struct bufferevent *channel;	/* framed, through the relay */
	int had_channel;
	int fin_sent;			/* plain read side ended */
	int fin_received;		/* channel said FIN */
	int plain_shut;			/* shutdown(SHUT_WR) done */
	int result_received;		/* entry: OPEN_RESULT seen */
	int plain_paused, channel_paused;	/* backpressure */
	struct open_msg open;		/* where to (both sides) */
	unsigned connect_timeout;
	struct evutil_addrinfo *addrs, *next_addr;
	struct evdns_getaddrinfo_request *dns_req;
	/* reverse: the destination allow-list (the daemon's, read at each
	 * check, so a reload applies at once) and what it said so far. */
	const struct allow_list *allow;
	unsigned addrs_refused;		/* resolved addresses not allowed */
	int dialled;			/* an address was tried */
	int dial_error;			/* how the last one failed: errno */
	uint64_t bytes_out, bytes_in;	/* plain -> channel, channel -> plain */
	/* Metrics (client_metrics.h): the series of its route (entry-point;
	 * 0 on the reverse-proxy), the direction of bytes_out, and when
	 * OPEN left (entry-point, microseconds; 0: not timed). */
	unsigned metrics_label;
	unsigned dir_out;
	uint64_t open_sent_us;
	char label[320];		/* for log lines */
	conn_end_cb *end_cb;
	void *end_arg;
	int reaping;			/* on the graveyard list */
	LIST_ENTRY(conn) link;		/* every conn */
	TAILQ_ENTRY(conn) grave;	/* conns to free from the loop */
};

/* conn.c */
struct conn *conn_alloc(struct event_base *base, enum channel_role role,
    unsigned metrics_label, conn_end_cb *end_cb, void *end_arg);
/* End c (send_rst: tell the far end; reset_plain: reset the plain
 * socket); c is freed from the loop, later. */
void conn_close(struct conn *c, int send_rst, int reset_plain);
/* Both directions have ended (FIN sent, plain side shut): close c cleanly. */
void conn_check_done(struct conn *c);
void channel_setup(struct conn *c, struct bufferevent *channel);
void channel_process(struct conn *c);
/* A frame of our own for the channel, sent in this loop pass: 0 or -1. */
int channel_frame(struct conn *c, uint8_t type, const void *payload,
    size_t len);
/* FIN both ways: give the channel back to the owner through end_cb. */
void channel_detach(struct conn *c);
void open_result_send(struct conn *c, uint8_t code, const char *text);

/* conn_plain.c */
/* Free the plain socket's events and close it (reset: with a reset). */
void plain_release(struct conn *c, int reset);
/* Shut down the plain write side once its output is empty (after FIN). */
void plain_shutdown(struct conn *c);
/* Start reading the plain socket.  Returns 0 or -1. */
int plain_read_start(struct conn *c);
/* The plain socket's output drained: resume the channel, or shut down. */
void plain_write_cb(struct bufferevent *bev, void *arg);
/* The plain socket's error, timeout, or connect (while CONN_CONNECTING). */
void plain_event_cb(struct bufferevent *bev, short what, void *arg);

/* conn_dial.c */
/* The destination socket's event while connecting (err: the socket
 * error at the time of the event). */
void dest_connect_event(struct conn *c, short what, int err);

#endif
