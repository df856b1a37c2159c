/*
 * client: what the entry-point and the reverse-proxy share — the options
 * that name the relay, the certificate and the key; loading them; and the
 * pool of channels to the relay.
 */
#ifndef CLIENT_H
#define CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "auth.h"
#include "metrics_http.h"
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
	const char *bind_address;	/* -b: NULL, the kernel chooses */
	const char *metrics;		/* --metrics: NULL, off */
	unsigned long group;		/* -g */
	unsigned long pool_min, pool_max;	/* pool_max 0: derived */
	int verbose, quiet;
};

/*
 * --pool-max when not given: the open-file limit / CLIENT_POOL_SHARE,
 * within CLIENT_POOL_MAX_MIN .. CLIENT_POOL_MAX_MAX (156 at 20,000
 * descriptors), so that idle channels never take the room of the user
 * connections (two descriptors each) the limit allows, here or at a relay
 * with the same limit.
 */
#define CLIENT_POOL_SHARE 128
#define CLIENT_POOL_MAX_MIN 16
#define CLIENT_POOL_MAX_MAX 1024
unsigned long client_pool_max(const struct client_options *o);

/* The option table entries both clients have; CLIENT_NSPECS of them. */
#define CLIENT_NSPECS 10
void client_option_specs(struct client_options *o,
    struct opt_spec specs[CLIENT_NSPECS]);

struct client {
	struct event_base *base;
	struct evdns_base *dns;
	SSL_CTX *ssl_ctx;
	struct auth_key key;
	char relay_host[256];
	uint16_t relay_port;
	struct sockaddr_storage bind_addr;	/* -b */
	socklen_t bind_len;			/* 0: none */
	unsigned long group, pool_min;	/* as started */
	unsigned long pool_max;		/* in force (derived when not given) */
	unsigned long pool_max_given;	/* --pool-max, 0: derived */
	struct metrics_addr metrics;	/* --metrics, as started */
	struct metrics_http *metrics_http;
	struct pool *pool;
};

/*
 * Check the options and load the certificate and the key.  On a bad value
 * or file prints one line and exits EXIT_USAGE.  With --metrics
 * (cl->metrics.len > 0), the daemon registers its series
 * (client_metrics_init) before client_start_pool.
 */
void client_init(struct client *cl, const struct client_options *o,
    struct event_base *base);

/* Start the pool (role, callbacks in pc; the rest filled in here), and
 * serve /metrics with --metrics (exits EXIT_RUNTIME when it cannot
 * listen). */
void client_start_pool(struct client *cl, const struct client_options *o,
    struct pool_config *pc);

/*
 * conn_end_cb for the client's connections (arg: the struct client): a
 * channel that came from the pool comes back to it (or has closed: NULL).
 */
void client_conn_ended(void *arg, struct bufferevent *channel);

/*
 * SIGHUP: load the key and the pinned certificate named in o again (the
 * files may have new contents, or o may name new files) for the channels
 * dialled from now on; channels already up keep theirs.  The other
 * options of o cannot change without a restart: one that differs from
 * what runs is named in a warning and ignored.  Returns 0 and a summary
 * of what changed in what ("key SHA256:... (changed), certificate
 * cert/server.crt"), or -1 with err (the file) and nothing changed.
 */
int client_reload(struct client *cl, const struct client_options *o,
    char *what, size_t whatlen, char *err,
    size_t errlen);

/* Free everything client_init and client_start_pool made. */
void client_free(struct client *cl);

#endif
