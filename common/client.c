#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "daemon.h"
#include "log.h"
#include "netaddr.h"
#include "pool.h"
#include "tls.h"

void
client_option_specs(struct client_options *o,
    struct opt_spec specs[CLIENT_NSPECS])
{
	const struct opt_spec s[CLIENT_NSPECS] = {
		{ 's', "server-address", OPT_STRING, &o->server_address, 0, 0,
		    "HOST:PORT", "relay address (default localhost:4433)" },
		{ 'c', "server-cert", OPT_STRING, &o->server_cert, 0, 0,
		    "FILE", "certificate the relay must present "
		    "(default cert/server.crt)" },
		{ 'a', "auth-private-key", OPT_STRING, &o->auth_key, 0, 0,
		    "FILE", "ed25519 private key (default cert/auth)" },
		{ 'g', "group-id", OPT_UINT, &o->group, 0, 4294967295UL,
		    "N", "only channels of the same group are paired "
		    "(default 0)" },
		{ 0, "pool-min", OPT_UINT, &o->pool_min, 1, 4096, "N",
		    "idle channels kept ready, at least (default 4)" },
		{ 0, "pool-max", OPT_UINT, &o->pool_max, 1, 65536, "N",
		    "idle channels, at most (default 1024)" },
		{ 'v', "verbose", OPT_FLAG, &o->verbose, 0, 0, NULL,
		    "log every connection" },
		{ 'q', "quiet", OPT_FLAG, &o->quiet, 0, 0, NULL,
		    "log only warnings and errors" },
	};

	memset(o, 0, sizeof(*o));
	o->server_address = "localhost:4433";
	o->server_cert = "cert/server.crt";
	o->auth_key = "cert/auth";
	o->group = 0;
	o->pool_min = 4;
	o->pool_max = 1024;
	memcpy(specs, s, sizeof(s));
}

void
client_init(struct client *cl, const struct client_options *o,
    const char *progname, struct event_base *base)
{
	char err[512];

	memset(cl, 0, sizeof(*cl));
	cl->base = base;
	if (o->pool_min > o->pool_max) {
		fprintf(stderr, "%s: --pool-min %lu is larger than --pool-max "
		    "%lu\n", progname, o->pool_min, o->pool_max);
		exit(EXIT_USAGE);
	}
	if (netaddr_parse_hostport(o->server_address, cl->relay_host,
	    sizeof(cl->relay_host), &cl->relay_port, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s: --server-address: %s\n", progname, err);
		exit(EXIT_USAGE);
	}
	if ((cl->ssl_ctx = tls_client_ctx_new(o->server_cert, err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "%s: --server-cert: %s\n", progname, err);
		exit(EXIT_USAGE);
	}
	if (auth_key_load(o->auth_key, &cl->key, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s: --auth-private-key: %s\n", progname, err);
		exit(EXIT_USAGE);
	}
	/* Resolver for the relay's and the destinations' names: the
	 * system's resolv.conf and /etc/hosts. */
	cl->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (cl->dns == NULL) {
		/* No resolv.conf: names still resolve from /etc/hosts. */
		if ((cl->dns = evdns_base_new(base, 0)) == NULL)
			fatalx("cannot create a DNS resolver");
		(void)evdns_base_load_hosts(cl->dns, NULL);
	}
}

void
client_start_pool(struct client *cl, const struct client_options *o,
    struct pool_config *pc)
{
	pc->base = cl->base;
	pc->dns = cl->dns;
	pc->ssl_ctx = cl->ssl_ctx;
	pc->relay_host = cl->relay_host;
	pc->relay_port = cl->relay_port;
	pc->key = &cl->key;
	pc->group = (uint32_t)o->group;
	pc->min = (unsigned)o->pool_min;
	pc->max = (unsigned)o->pool_max;
	if ((cl->pool = pool_new(pc)) == NULL)
		fatalx("cannot start the channel pool");
}

void
client_conn_ended(void *arg, struct bufferevent *channel)
{
	struct client *cl = arg;

	pool_put(cl->pool, channel);
}

void
client_free(struct client *cl)
{
	pool_free(cl->pool);
	cl->pool = NULL;
	if (cl->dns != NULL)
		evdns_base_free(cl->dns, 0);
	cl->dns = NULL;
	SSL_CTX_free(cl->ssl_ctx);
	cl->ssl_ctx = NULL;
	auth_key_wipe(&cl->key);
}
