#include "client.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "client_metrics.h"
#include "daemon.h"
#include "log.h"
#include "netaddr.h"
#include "pool.h"
#include "sshkey.h"
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
		{ 'b', "bind-address", OPT_STRING, &o->bind_address, 0, 0,
		    "ADDRESS", "local address of the channels to the relay "
		    "(an IP address; default: the kernel chooses)" },
		{ 'g', "group-id", OPT_UINT, &o->group, 0, 4294967295UL,
		    "N", "only channels of the same group are paired "
		    "(default 0)" },
		{ 0, "pool-min", OPT_UINT, &o->pool_min, 1, 4096, "N",
		    "idle channels kept ready, at least (default 4)" },
		{ 0, "pool-max", OPT_UINT, &o->pool_max, 1, 65536, "N",
		    "idle channels, at most (default: the open-file limit / "
		    "128, within 16 .. 1024)" },
		{ 0, "metrics", OPT_STRING, &o->metrics, 0, 0,
		    "[ADDRESS:]PORT", "serve Prometheus metrics at "
		    "http://ADDRESS:PORT/metrics (default: off; ADDRESS "
		    "127.0.0.1)" },
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
	o->pool_max = 0;	/* derived: client_pool_max */
	memcpy(specs, s, sizeof(s));
}

unsigned long
client_pool_max(const struct client_options *o)
{
	unsigned long n;

	if (o->pool_max != 0)
		return o->pool_max;
	n = daemon_nofile() / CLIENT_POOL_SHARE;
	return n < CLIENT_POOL_MAX_MIN ? CLIENT_POOL_MAX_MIN :
	    n > CLIENT_POOL_MAX_MAX ? CLIENT_POOL_MAX_MAX : n;
}

/*
 * -b ADDRESS: an IPv4 or IPv6 address (brackets allowed around IPv6), no
 * port, no name (a name could resolve to an address of another host).
 */
static int
bind_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len,
    char *err, size_t errlen)
{
	struct addrinfo hints, *res;
	char host[NETADDR_STRLEN];
	size_t n = strlen(text);
	int r;

	if (n >= 2 && text[0] == '[' && text[n - 1] == ']') {
		text++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(host)) {
		snprintf(err, errlen, "'%s': not an IP address", text);
		return -1;
	}
	memcpy(host, text, n);
	host[n] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	hints.ai_socktype = SOCK_STREAM;
	if ((r = getaddrinfo(host, "0", &hints, &res)) != 0) {
		snprintf(err, errlen, "'%s': not an IP address (%s)", host,
		    gai_strerror(r));
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

void
client_init(struct client *cl, const struct client_options *o,
    struct event_base *base)
{
	char err[512];

	memset(cl, 0, sizeof(*cl));
	cl->base = base;
	cl->group = o->group;
	cl->pool_min = o->pool_min;
	cl->pool_max_given = o->pool_max;
	cl->pool_max = client_pool_max(o);
	if (o->pool_min > cl->pool_max) {
		log_errx("--pool-min %lu is larger than --pool-max "
		    "%lu%s", o->pool_min, cl->pool_max,
		    o->pool_max ? "" : " (from the open-file limit)");
		exit(EXIT_USAGE);
	}
	if (netaddr_parse_hostport(o->server_address, cl->relay_host,
	    sizeof(cl->relay_host), &cl->relay_port, err, sizeof(err)) == -1) {
		log_errx("--server-address: %s", err);
		exit(EXIT_USAGE);
	}
	if (o->bind_address != NULL && bind_parse(o->bind_address,
	    &cl->bind_addr, &cl->bind_len, err, sizeof(err)) == -1) {
		log_errx("--bind-address: %s", err);
		exit(EXIT_USAGE);
	}
	if ((cl->ssl_ctx = tls_client_ctx_new(o->server_cert, err,
	    sizeof(err))) == NULL) {
		log_errx("--server-cert: %s", err);
		exit(EXIT_USAGE);
	}
	if (auth_key_load(o->auth_key, &cl->key, err, sizeof(err)) == -1) {
		log_errx("--auth-private-key: %s", err);
		exit(EXIT_USAGE);
	}
	(void)metrics_http_check(o->metrics, &cl->metrics);
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
	if (cl->bind_len > 0) {
		pc->bind_addr = (const struct sockaddr *)&cl->bind_addr;
		pc->bind_len = cl->bind_len;
	}
	pc->key = &cl->key;
	pc->group = (uint32_t)o->group;
	pc->min = (unsigned)o->pool_min;
	pc->max = (unsigned)cl->pool_max;
	if ((cl->pool = pool_new(pc)) == NULL)
		fatalx("cannot start the channel pool");
	client_metrics_watch_pool(cl->pool);
	cl->metrics_http = metrics_http_serve(cl->base, &cl->metrics);
}

/* Warn about each option of o that differs from what runs: they need a
 * restart. */
static void
warn_fixed_options(const struct client *cl, const struct client_options *o)
{
	struct sockaddr_storage ss;
	struct metrics_addr m;
	char host[256], err[256];
	socklen_t len = 0;
	uint16_t port;

	if (netaddr_parse_hostport(o->server_address, host, sizeof(host),
	    &port, err, sizeof(err)) == -1 || strcmp(host, cl->relay_host) !=
	    0 || port != cl->relay_port)
		log_warnx("reload: --server-address changed: it takes effect "
		    "at the next start");
	if ((o->bind_address != NULL && bind_parse(o->bind_address, &ss,
	    &len, err, sizeof(err)) == -1) || len != cl->bind_len ||
	    (len > 0 && memcmp(&ss, &cl->bind_addr, len) != 0))
		log_warnx("reload: --bind-address changed: it takes effect at "
		    "the next start");
	if (o->group != cl->group)
		log_warnx("reload: --group-id changed: it takes effect at the "
		    "next start");
	if (o->pool_min != cl->pool_min || o->pool_max != cl->pool_max_given)
		log_warnx("reload: --pool-min/--pool-max changed: they take "
		    "effect at the next start");
	if (metrics_http_parse(o->metrics, &m, err, sizeof(err)) == -1 ||
	    !metrics_addr_equal(&m, &cl->metrics))
		log_warnx("reload: --metrics changed: it takes effect at the "
		    "next start");
}

int
client_reload(struct client *cl, const struct client_options *o,
    char *what, size_t whatlen, char *err, size_t errlen)
{
	char fp[SSHKEY_FINGERPRINT_LEN], msg[512];
	struct auth_key key;
	SSL_CTX *ctx;
	int changed;

	if ((ctx = tls_client_ctx_new(o->server_cert, msg, sizeof(msg))) ==
	    NULL) {
		snprintf(err, errlen, "--server-cert: %s", msg);
		return -1;
	}
	if (auth_key_load(o->auth_key, &key, msg, sizeof(msg)) == -1) {
		snprintf(err, errlen, "--auth-private-key: %s", msg);
		SSL_CTX_free(ctx);
		return -1;
	}
	warn_fixed_options(cl, o);
	changed = memcmp(key.pk, cl->key.pk, sizeof(key.pk)) != 0;
	/* The pool signs with *pool_config.key when a dial completes: the
	 * key changes in place, between two callbacks. */
	cl->key = key;
	auth_key_wipe(&key);
	/* A new context holds no session ticket of the old one: the next
	 * dial makes a full handshake, checked against the new pin.
	 * Channels being dialled keep the old context (each SSL holds a
	 * reference to it). */
	pool_set_ssl_ctx(cl->pool, ctx);
	SSL_CTX_free(cl->ssl_ctx);
	cl->ssl_ctx = ctx;
	sshkey_fingerprint(cl->key.pk, fp);
	snprintf(what, whatlen, "key %s%s, certificate %s", fp, changed ?
	    " (new)" : " (unchanged)", o->server_cert);
	return 0;
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
	metrics_http_free(cl->metrics_http);
	cl->metrics_http = NULL;
	pool_free(cl->pool);
	cl->pool = NULL;
	if (cl->dns != NULL)
		evdns_base_free(cl->dns, 0);
	cl->dns = NULL;
	SSL_CTX_free(cl->ssl_ctx);
	cl->ssl_ctx = NULL;
	auth_key_wipe(&cl->key);
	client_metrics_free();	/* the pool counted into it to the end */
}
