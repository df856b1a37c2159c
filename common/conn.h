/*
 * conn: one user connection, end to end, as the entry-point or the
 * reverse-proxy sees it: a plain TCP socket (the source, or the
 * destination) spliced to a channel that speaks frames through the relay.
 *
 *   plain  --read-->  DATA frames  --> channel
 *   plain  <--write-- DATA frames  <-- channel
 *
 * Each direction has its own end: EOF on the plain socket sends FIN; a FIN
 * from the channel shuts down the plain socket's write side once what is
 * buffered has been written (half-close).  The connection ends cleanly
 * when both directions have ended, and at once on RST, on a protocol
 * error or when either socket fails (the other side then gets RST).
 * Backpressure: when one side's output passes WIRE_HIGH_WATER, reading the
 * other side stops until the output drains to WIRE_LOW_WATER (wire.h).
 *
 * A conn owns both bufferevents and frees them in one place, except a
 * channel that ended cleanly: that one goes back to the owner through
 * end_cb, to be reused, while the conn finishes writing to the plain side.
 */
#ifndef CONN_H
#define CONN_H

#include <stdint.h>

#include <event2/util.h>

struct bufferevent;
struct event_base;
struct evdns_base;
struct allow_list;
struct conn;

/*
 * The conn is done with the channel it had (called once, only for a conn
 * that had one).  channel: the user connection ended cleanly (FIN both
 * ways) and the channel stopped at a frame boundary; the callee owns it now
 * and may reuse it once the relay says REUSE.  NULL: the channel was closed.
 */
typedef void conn_end_cb(void *arg, struct bufferevent *channel);

/*
 * entry-point: a new source connection (fd accepted, non-blocking) that
 * will be carried to dest_host:dest_port.  It does nothing until
 * conn_attach_channel.  label names it in log lines (the route);
 * metrics_label is its route's series (client_metrics.h).
 * Returns NULL (fd closed) on failure.
 */
struct conn *conn_new_source(struct event_base *base, evutil_socket_t fd,
    const struct sockaddr *source, const char *label, unsigned metrics_label,
    const char *dest_host, uint16_t dest_port, conn_end_cb *end_cb,
    void *end_arg);

/*
 * entry-point: give the source its channel: sends OPEN and starts the
 * splice (the source's data follows OPEN at once).
 */
void conn_attach_channel(struct conn *c, struct bufferevent *channel);

/*
 * reverse-proxy: a channel whose input begins with OPEN.  Checks the
 * destination against allow (allow.h: a literal by the address rules, a
 * name by the name rules or else each address it resolves to), resolves
 * and connects to it (each allowed address in turn, connect_timeout
 * seconds each), answers OPEN_RESULT, then splices.  allow is read at
 * each check, not copied: it must stay valid (its contents may change
 * between two callbacks, as a reload swaps them) while conns live.
 */
void conn_new_reverse(struct event_base *base, struct evdns_base *dns,
    struct bufferevent *channel, const struct allow_list *allow,
    unsigned connect_timeout, conn_end_cb *end_cb, void *end_arg);

/* Close c at once (the source or destination sees a reset). */
void conn_abort(struct conn *c);

/* Close every conn (at exit). */
void conn_free_all(void);

/* Number of live conns. */
unsigned conn_count(void);

#endif
