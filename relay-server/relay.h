/*
 * relay-server: the public meeting point.  It authenticates every channel,
 * keeps reverse-proxy channels idle per group, and when an entry-point
 * channel sends OPEN pairs it with an idle reverse-proxy channel of the
 * same group (or queues it, bounded in number and time), then relays
 * bytes both ways, opaquely, with backpressure.
 *
 * It runs as several workers, each an event loop in a thread with its own
 * SO_REUSEPORT listening sockets, channels and groups.  When an OPEN waits
 * on one worker and an idle reverse-proxy channel of its group sits on
 * another, that channel moves over (see group_offer in relay.c); the data
 * path takes no lock.
 */
#ifndef RELAY_H
#define RELAY_H

#include <openssl/ssl.h>
#include <event2/util.h>

#include "auth.h"

struct event_base;

struct relay_config {
	SSL_CTX *ssl_ctx;
	struct auth_keyset keys;
	unsigned handshake_timeout;	/* seconds: TLS + AUTH */
	unsigned open_timeout;		/* seconds an OPEN waits for a peer */
	unsigned idle_timeout;		/* seconds an idle channel may be silent */
	unsigned max_channels;		/* all workers together */
	unsigned workers;		/* event loops (threads) */
};

#define RELAY_WAIT_MAX 1024		/* OPENs waiting, per group and worker */
#define RELAY_HIGH_WATER (256 * 1024)
#define RELAY_LOW_WATER (64 * 1024)
#define RELAY_READ_HIGH_WATER (64 * 1024)
#define RELAY_FLUSH_TIMEOUT 10
#define RELAY_PONG_BACKLOG 4096		/* bytes of unread PONGs tolerated */
#define RELAY_REUSE_MAX_AGE 3600	/* seconds: older channels are not reused */
#define RELAY_WORKERS_MAX 256

/*
 * Set up cfg->workers workers: worker 0 runs on base (the main thread's
 * loop), the others get loops of their own.  Returns 0 or -1 (call
 * relay_shutdown either way).
 */
int relay_init(struct event_base *base, const struct relay_config *cfg);

/* The event loop of worker i, for its listening sockets. */
struct event_base *relay_worker_base(unsigned i);

/*
 * Start the workers' threads, call run(base) for worker 0 in this thread,
 * and when it returns stop and join the others.  Returns what run
 * returned, or -1 when a thread could not start.
 */
int relay_run(int (*run)(struct event_base *));

/* A new TCP connection on one of worker's listening sockets. */
void relay_accept(unsigned worker, evutil_socket_t fd,
    const struct sockaddr *peer);

/* Close every channel and free the workers (after relay_run). */
void relay_shutdown(void);

#endif
