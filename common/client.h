/*
 * client: what the entry-point and the reverse-proxy share — the options
 * that name the relay, the certificate and the key; loading them; and the
 * pool of channels to the relay.
 */
#ifndef CLIENT_H
#define CLIENT_H

#include <stdint.h>

#include <openssl/ssl.h>

#include "auth.h"
#include "opts.h"

struct bufferevent;
struct event_base;
struct evdns_base;
struct pool;
struct pool_config;

struct client_options {
	const char *server_address;	/* -s */
	const char *server_cert;	/* -c */
	const char *auth_key;		/* -a */
	unsigned long group;		/* -g */
	unsigned long pool_min, pool_max;
	int verbose, quiet;
};

/* The option table entries both clients have; CLIENT_NSPECS of them. */
#define CLIENT_NSPECS 8
void client_option_specs(struct client_options *o,
    struct opt_spec specs[CLIENT_NSPECS]);

struct client {
	struct event_base *base;
	struct evdns_base *dns;
	SSL_CTX *ssl_ctx;
	struct auth_key key;
	char relay_host[256];
	uint16_t relay_port;
	struct pool *pool;
};

/*
 * Check the options and load the certificate and the key.  On a bad value
 * or file prints one line and exits EXIT_USAGE.
 */
void client_init(struct client *cl, const struct client_options *o,
    const char *progname, struct event_base *base);

/* Start the pool (role, callbacks in pc; the rest filled in here). */
void client_start_pool(struct client *cl, const struct client_options *o,
    struct pool_config *pc);

/*
 * conn_end_cb for the client's connections (arg: the struct client): a
 * channel that came from the pool comes back to it (or has closed: NULL).
 */
void client_conn_ended(void *arg, struct bufferevent *channel);

/* Free everything client_init and client_start_pool made. */
void client_free(struct client *cl);

#endif
