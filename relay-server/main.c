/*
 * relay-server: options, key loading and listening sockets (reload.c:
 * SIGHUP); the channels
 * themselves are in channel.c, group.c, forward.c and workers.c (relay.h
 * says which holds what).
 */
#include <sys/resource.h>

#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth.h"
#include "daemon.h"
#include "listener.h"
#include "log.h"
#include "metrics_http.h"
#include "netaddr.h"
#include "relay.h"
#include "tls.h"

#define PROGNAME "relay-server"

/* Each listener runs on one worker's loop: only that worker frees it
 * during the run (relay_drain), main() the rest at exit. */
struct relay_listener {
	struct listener *l;
	unsigned worker;
};

static struct relay_listener *listeners;
static size_t nlisteners, listeners_cap;

static void
accept_cb(evutil_socket_t fd, struct sockaddr *peer, void *arg)
{
	relay_accept((unsigned)(uintptr_t)arg, fd, peer);
}

/* Listen on one address, one socket per worker.  Returns 0, or -1 with
 * err set. */
static int
listen_on(unsigned nworkers, const struct sockaddr *sa, socklen_t salen,
    char *err, size_t errlen)
{
	char name[NETADDR_STRLEN];
	int fds[RELAY_WORKERS_MAX];
	unsigned i;

	if (nlisteners + nworkers > listeners_cap) {
		size_t cap = listeners_cap * 2 + nworkers;
		struct relay_listener *l = reallocarray(listeners, cap,
		    sizeof(*l));
		if (l == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		listeners = l;
		listeners_cap = cap;
	}
	if (netaddr_listen_n(sa, salen, fds, nworkers, err, errlen) == -1)
		return -1;
	netaddr_format(sa, name);
	for (i = 0; i < nworkers; i++) {
		/* listener_new closes the socket when it fails. */
		listeners[nlisteners].worker = i;
		if ((listeners[nlisteners].l = listener_new(relay_worker_base(i),
		    fds[i], name, accept_cb, (void *)(uintptr_t)i)) == NULL) {
			while (++i < nworkers)
				close(fds[i]);
			snprintf(err, errlen, "%s: cannot start the listener",
			    name);
			return -1;
		}
		nlisteners++;
	}
	log_info("listening on %s", name);
	return 0;
}

/*
 * Listen on every address of host (all addresses, IPv4 and IPv6, when
 * host is NULL).  Exits when none can be used.
 */
static void
listen_all(unsigned nworkers, const char *host, unsigned long port)
{
	struct addrinfo hints, *res, *ai;
	char portstr[8], err[512] = "", one[512] = "";
	unsigned nfailed = 0;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(portstr, sizeof(portstr), "%lu", port);
	if ((rc = getaddrinfo(host, portstr, &hints, &res)) != 0) {
		log_errx("--host: %s: %s", host,
		    gai_strerror(rc));
		exit(EXIT_USAGE);
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (listen_on(nworkers, ai->ai_addr, ai->ai_addrlen, one,
		    sizeof(one)) == 0)
			continue;
		/* A machine without IPv6 still serves IPv4 on the default
		 * addresses: that failure is no news. */
		if (host == NULL && ai->ai_family == AF_INET6)
			log_debug("%s", one);
		else if (nfailed++ == 0)
			snprintf(err, sizeof(err), "%s", one);
		else
			log_warnx("%s", one);
	}
	freeaddrinfo(res);
	if (nlisteners == 0)
		fatalx("%s", err[0] ? err : one[0] ? one :
		    "no address to listen on");
	if (nfailed > 0)
		log_warnx("%s", err);
}

/* The number of cores, for --workers. */
static unsigned long
default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > RELAY_WORKERS_DEFAULT_MAX ?
	    RELAY_WORKERS_DEFAULT_MAX : (unsigned long)n;
}


void
option_specs(struct relay_options *o, struct opt_spec specs[RELAY_NSPECS])
{
	const struct opt_spec table[RELAY_NSPECS] = {
		{ 'p', "port", OPT_PORT, &o->port, 0, 0, "PORT",
		    "TLS listen port (default 4433)" },
		{ 0, "host", OPT_STRING, &o->host, 0, 0, "ADDR",
		    "listen address (default: all, IPv4 and IPv6)" },
		{ 'c', "server-cert", OPT_STRING, &o->cert, 0, 0, "FILE",
		    "TLS certificate (default cert/server.crt)" },
		{ 'k', "server-key", OPT_STRING, &o->key, 0, 0, "FILE",
		    "TLS private key (default cert/server.key)" },
		{ 'a', "auth-public-key", OPT_STRING, &o->pub, 0, 0, "FILE",
		    "authorized keys: who may do what (default cert/auth.pub)" },
		{ 0, "handshake-timeout", OPT_UINT, &o->handshake_timeout, 1,
		    3600, "SECONDS", "time for TLS and AUTH (default 10)" },
		{ 0, "open-timeout", OPT_UINT, &o->open_timeout, 1, 3600,
		    "SECONDS", "time an OPEN waits for a reverse-proxy "
		    "channel (default 10)" },
		{ 0, "idle-timeout", OPT_UINT, &o->idle_timeout, 10, 3600,
		    "SECONDS", "an idle channel silent this long (clients PING "
		    "every 5 s) is dropped (default 30)" },
		{ 0, "max-channels", OPT_UINT, &o->max_channels, 1, 1000000,
		    "N", "authenticated channels open at once, at most "
		    "(default: from the open-file limit)" },
		{ 0, "max-handshakes", OPT_UINT, &o->max_handshakes, 1,
		    100000, "N", "connections not yet authenticated, at most; "
		    "past it a new one evicts the oldest (default: from the "
		    "open-file limit)" },
		{ 0, "max-handshakes-per-source", OPT_UINT,
		    &o->max_handshakes_source, 1, 100000, "N", "the same, from "
		    "one address (default: half of --max-handshakes, at least "
		    "128)" },
		{ 0, "workers", OPT_UINT, &o->workers, 1, RELAY_WORKERS_MAX, "N",
		    "event loops, in threads (default: the number of cores)" },
		{ 0, "drain-timeout", OPT_UINT, &o->drain_timeout, 0, 3600,
		    "SECONDS", "on SIGTERM or SIGINT, how long the connections "
		    "in flight may take to finish (default 30; 0: stop at "
		    "once)" },
		{ 0, "metrics", OPT_STRING, &o->metrics, 0, 0,
		    "[ADDRESS:]PORT", "serve Prometheus metrics at "
		    "http://ADDRESS:PORT/metrics (default: off; ADDRESS "
		    "127.0.0.1)" },
		{ 'v', "verbose", OPT_FLAG, &o->verbose, 0, 0, NULL,
		    "log every channel" },
		{ 'q', "quiet", OPT_FLAG, &o->quiet, 0, 0, NULL,
		    "log only warnings and errors" },
	};

	*o = (struct relay_options){ .cert = "cert/server.crt",
	    .key = "cert/server.key", .pub = "cert/auth.pub", .port = 4433,
	    .handshake_timeout = 10, .open_timeout = 10, .idle_timeout = 30,
	    .workers = default_workers(),
	    .drain_timeout = DAEMON_DRAIN_DEFAULT };
	memcpy(specs, table, sizeof(table));
}

/*
 * Load the certificate, its key and the authorized keys, and make them
 * current (creds.c); the rest of the options into cfg.  Returns 0, or -1
 * after printing one line that names the bad file.
 */
static int
config_load(struct relay_config *cfg, const struct relay_options *o,
    size_t *nkeys)
{
	struct keyset *ks;
	SSL_CTX *ctx;
	char err[512];

	memset(cfg, 0, sizeof(*cfg));
	if ((ctx = tls_server_ctx_new(o->cert, o->key, err, sizeof(err))) ==
	    NULL) {
		log_errx("%s", err);
		return -1;
	}
	if (keyset_load(o->pub, &ks, err, sizeof(err)) == -1) {
		log_errx("--auth-public-key: %s", err);
		SSL_CTX_free(ctx);
		return -1;
	}
	*nkeys = ks->keys.n;
	reload_remember_cert(ctx);
	creds_install(ctx, ks);
	cfg->handshake_timeout = (unsigned)o->handshake_timeout;
	cfg->open_timeout = (unsigned)o->open_timeout;
	cfg->idle_timeout = (unsigned)o->idle_timeout;
	cfg->workers = (unsigned)o->workers;
	return 0;
}

/* Worker w's listening sockets close (from w's own loop). */
static void
stop_listening(unsigned w)
{
	size_t i;

	for (i = 0; i < nlisteners; i++) {
		if (listeners[i].worker != w)
			continue;
		listener_free(listeners[i].l);
		listeners[i].l = NULL;
	}
}

/* SIGTERM or SIGINT: stop accepting, close the idle channels (each
 * worker from its own loop), let the pairs finish. */
static unsigned
drain_start(void *arg)
{
	(void)arg;
	return relay_drain(stop_listening);
}

static unsigned
drain_left(void *arg)
{
	(void)arg;
	return relay_pairs();
}

static int
drain_busy(void *arg)
{
	(void)arg;
	return relay_drain_busy();
}

/* STATUS= for the service manager. */
static void
relay_status(char *buf, size_t len, void *arg)
{
	unsigned pairs = relay_pairs(), open = relay_slots_used();

	(void)arg;
	snprintf(buf, len, "%u channel%s open, %u connection%s", open,
	    open == 1 ? "" : "s", pairs, pairs == 1 ? "" : "s");
}

/* The main loop, once every worker runs: the relay listens and serves. */
static int
run_ready(struct event_base *base)
{
	daemon_ready();
	return daemon_run(base);
}

int
main(int argc, char **argv)
{
	struct opt_spec specs[RELAY_NSPECS];
	struct relay_options ro;
	struct metrics_http *metrics = NULL;
	struct metrics_addr maddr;
	struct relay_config cfg;
	struct event_base *base;
	struct opts o;
	size_t i, nkeys;
	int rc;

	option_specs(&ro, specs);
	daemon_parse_options(&o, specs, RELAY_NSPECS, argc, argv, PROGNAME,
	    RELAY_USAGE);
	daemon_log_init(PROGNAME, ro.verbose, ro.quiet);
	if (metrics_http_check(ro.metrics, &maddr) &&
	    relay_metrics_init() == -1)
		fatalx("cannot set up the metrics");
	if (config_load(&cfg, &ro, &nkeys) == -1) {
		opts_free(&o);
		return EXIT_USAGE;
	}

	base = daemon_base_new();
	limits_derive(&cfg, &ro);	/* the open-file limit is raised now */
	if (relay_init(base, &cfg) == -1)
		fatalx("cannot start the relay's workers");
	listen_all(cfg.workers, ro.host, ro.port);
	/* On worker 0's loop: a scrape reads atomics, no worker waits. */
	metrics = metrics_http_serve(base, &maddr);
	limits_log(&cfg, &ro);
	daemon_on_status(base, relay_status, NULL);
	reload_setup(base, argc, argv, &ro, &o);
	daemon_on_drain(base, &(struct daemon_drain){ drain_start, drain_left,
	    drain_busy, NULL }, ro.drain_timeout);
	log_info("accepting %zu key(s); handshake timeout %lu s, open timeout "
	    "%lu s; %lu worker%s", nkeys, ro.handshake_timeout,
	    ro.open_timeout, ro.workers, ro.workers == 1 ? "" : "s");

	rc = relay_run(run_ready);

	for (i = 0; i < nlisteners; i++)
		listener_free(listeners[i].l);
	free(listeners);
	relay_shutdown();
	metrics_http_free(metrics);
	relay_metrics_free();
	daemon_base_free(base);
	creds_free();
	reload_free();
	return rc == 0 ? 0 : EXIT_RUNTIME;
}
