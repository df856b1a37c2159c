/*
 * relay-server: the public meeting point.  It authenticates every channel,
 * keeps reverse-proxy channels idle per group, and when an entry-point
 * channel sends OPEN pairs it with an idle reverse-proxy channel of the
 * same group (or queues it, bounded in number and time), then relays
 * bytes both ways, opaquely, with backpressure.
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
	unsigned max_channels;
};

#define RELAY_IDLE_TIMEOUT 30		/* seconds without PING: drop */
#define RELAY_WAIT_MAX 1024		/* OPENs waiting, per group */
#define RELAY_HIGH_WATER (256 * 1024)
#define RELAY_LOW_WATER (64 * 1024)
#define RELAY_READ_HIGH_WATER (64 * 1024)
#define RELAY_FLUSH_TIMEOUT 10
#define RELAY_PONG_BACKLOG 4096		/* bytes of unread PONGs tolerated */
#define RELAY_REUSE_MAX_AGE 3600	/* seconds: older channels are not reused */

/* Set up the relay's state on base.  Returns 0 or -1. */
int relay_init(struct event_base *base, const struct relay_config *cfg);

/* A new TCP connection on a listening socket. */
void relay_accept(evutil_socket_t fd, const struct sockaddr *peer);

/* Close every channel and free the relay's state. */
void relay_shutdown(void);

#endif
