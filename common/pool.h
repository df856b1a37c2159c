/*
 * pool: the entry-point's and reverse-proxy's pool of idle, authenticated
 * channels to the relay.
 *
 * The pool dials channels (TCP, TLS 1.3, AUTH), keeps them alive with
 * PING while idle, and replaces each one it hands out at once.  Its size
 * follows demand between a floor and a ceiling:
 *     target idle = clamp(min + in_use / 2 + waiting, min, max)
 * with at most POOL_DIALS_MAX handshakes in flight.  When demand falls, each
 * surplus idle channel goes at its next ping: an entry-point's pool closes
 * it; a reverse-proxy's asks the relay to (RETIRE), since the relay may be
 * pairing it at that very moment.  When dials fail it backs off
 * exponentially (100 ms .. 5 s, with jitter) and probes with one dial at a
 * time until one succeeds.
 *
 * A channel that leaves the pool is a bufferevent that the caller owns
 * from then on; the caller gives it back with pool_put() when its user
 * connection ended cleanly (the pool waits for the relay's REUSE, then
 * the channel is idle again), or reports with pool_put(NULL) that it
 * closed.
 */
#ifndef POOL_H
#define POOL_H

#include <stdint.h>

#include <sys/socket.h>

#include <openssl/ssl.h>

struct bufferevent;
struct event_base;
struct evdns_base;
struct auth_key;
struct pool;

#define POOL_DIALS_MAX 32		/* handshakes in flight at once */
#define POOL_PING_INTERVAL 5		/* seconds between PINGs when idle */
#define POOL_DEAD_AFTER 15		/* seconds of silence: channel dead */
#define POOL_CEILING_LOG_SECONDS 60	/* "at --pool-max", at most this often */
#define POOL_DIAL_TIMEOUT 10		/* seconds for TCP + TLS + AUTH */

struct pool_config {
	struct event_base *base;
	struct evdns_base *dns;
	SSL_CTX *ssl_ctx;
	const char *relay_host;		/* name or IP the cert must match */
	uint16_t relay_port;
	/* The local address of every channel (--bind-address), or NULL. */
	const struct sockaddr *bind_addr;
	socklen_t bind_len;
	const struct auth_key *key;
	uint8_t role;			/* ROLE_ENTRY or ROLE_REVERSE */
	uint32_t group;
	unsigned min, max;
	/*
	 * entry-point: a channel became idle (call pool_take to use it).
	 * reverse-proxy: NULL.
	 */
	void (*on_idle)(void *arg);
	/*
	 * reverse-proxy: an idle channel received a frame other than PONG
	 * (an OPEN, still unread in its input): the caller now owns bev.
	 * entry-point: NULL.
	 */
	void (*on_open)(struct bufferevent *bev, void *arg);
	void *arg;
};

/* Start a pool (dialing begins at once).  NULL on failure. */
struct pool *pool_new(const struct pool_config *config);

/*
 * Take an idle channel out of the pool: the caller owns it and must call
 * pool_put() when it ends.  NULL when none is idle (a refill is under
 * way; on_idle says when one is ready).
 */
struct bufferevent *pool_take(struct pool *p);

/* entry-point: this many connections are waiting for a channel. */
void pool_set_waiting(struct pool *p, unsigned waiting);

/*
 * A channel taken from (or handed out by) the pool has ended: bev is the
 * channel back after a clean end (the pool owns it again), or NULL when it
 * was closed.
 */
void pool_put(struct pool *p, struct bufferevent *bev);

/*
 * The sizing rule, on its own: the channels a pool keeps idle, returning
 * or dialing with min and max configured, in_use handed out and waiting
 * connections queued,
 *     clamp(min + in_use / 2 + waiting, min, max),
 * computed without overflow (a sum past max is max).  When max < min (the
 * options refuse it) the ceiling wins: max.
 */
unsigned pool_target_size(unsigned min, unsigned max, unsigned in_use,
    unsigned waiting);

/*
 * The backoff after the failures-th dial failed in a row (0 counts as 1):
 * 100 ms doubling to at most 5 s, times a jitter of 3/4 .. 5/4.  uniform
 * is the random part (randombytes_uniform): a number below its argument.
 * Returns milliseconds (at most 6250).
 */
unsigned long pool_backoff_ms(unsigned failures,
    uint32_t (*uniform)(uint32_t upper));

/*
 * The same after a refusal that will not change by itself (the relay does
 * not accept this key, or not for this role, group or address): from 1 s
 * doubling to at most 60 s, times the same jitter (at most 75000 ms).
 */
unsigned long pool_refused_backoff_ms(unsigned failures,
    uint32_t (*uniform)(uint32_t upper));

/* The pool's channels by state now, for metrics. */
struct pool_counts {
	unsigned idle;			/* ready */
	unsigned in_use;		/* handed out: carrying a connection */
	unsigned returning;		/* back, waiting for REUSE (or RETIRE) */
	unsigned dialing;		/* TCP, TLS or AUTH under way */
};
void pool_get_counts(const struct pool *p, struct pool_counts *counts);

/* SIGHUP: dial the next channels with ctx (the caller keeps its own
 * reference and frees the old context when it likes: every SSL made from
 * it holds one). */
void pool_set_ssl_ctx(struct pool *p, SSL_CTX *ctx);

/* "host:port" of the relay, for log lines. */
const char *pool_relay_name(const struct pool *p);

/*
 * A graceful stop: no more dials from now on; the dialing channels close,
 * and every idle channel goes the way a surplus one does (an
 * entry-point's closes, a reverse-proxy's says RETIRE, so that an OPEN
 * that crossed it is still served), now and when one comes back with
 * REUSE.
 */
void pool_drain(struct pool *p);

/* Channels that may still bring an OPEN (RETIRE sent, or waiting for
 * REUSE): a reverse-proxy waits for them before it stops. */
unsigned pool_pending(const struct pool *p);

/* Close every idle and dialing channel and free the pool.  NULL is fine. */
void pool_free(struct pool *p);

#endif
