/*
 * relay-server: options, key loading and listening sockets; the channels
 * themselves are in relay.c.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth.h"
#include "daemon.h"
#include "listener.h"
#include "log.h"
#include "netaddr.h"
#include "relay.h"
#include "tls.h"

#define PROGNAME "relay-server"
#define LISTENERS_MAX 16

static struct listener *listeners[LISTENERS_MAX];
static size_t nlisteners;

static void
accept_cb(evutil_socket_t fd, struct sockaddr *peer, void *arg)
{
	(void)arg;
	relay_accept(fd, peer);
}

/* Listen on one address.  Returns 0, or -1 with err set. */
static int
listen_on(struct event_base *base, const struct sockaddr *sa,
    socklen_t salen, char *err, size_t errlen)
{
	char name[NETADDR_STRLEN];
	int fd;

	if (nlisteners == LISTENERS_MAX) {
		snprintf(err, errlen, "too many addresses");
		return -1;
	}
	if ((fd = netaddr_listen(sa, salen, 0, err, errlen)) == -1)
		return -1;
	netaddr_format(sa, name);
	if ((listeners[nlisteners] = listener_new(base, fd, name, accept_cb,
	    NULL)) == NULL) {
		snprintf(err, errlen, "%s: cannot start the listener", name);
		return -1;
	}
	nlisteners++;
	log_info("listening on %s", name);
	return 0;
}

/*
 * Listen on every address of host (all addresses, IPv4 and IPv6, when
 * host is NULL).  Exits when none can be used.
 */
static void
listen_all(struct event_base *base, const char *host, unsigned long port)
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
		fprintf(stderr, "%s: --host: %s: %s\n", PROGNAME, host,
		    gai_strerror(rc));
		exit(EXIT_USAGE);
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (listen_on(base, ai->ai_addr, ai->ai_addrlen, one,
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

int
main(int argc, char **argv)
{
	const char *host = NULL, *cert = "cert/server.crt";
	const char *key = "cert/server.key", *pub = "cert/auth.pub";
	unsigned long port = 4433, handshake_timeout = 10, open_timeout = 10;
	unsigned long max_channels = 10000;
	int verbose = 0, quiet = 0;
	const struct opt_spec specs[] = {
		{ 'p', "port", OPT_PORT, &port, 0, 0, "PORT",
		    "TLS listen port (default 4433)" },
		{ 0, "host", OPT_STRING, &host, 0, 0, "ADDR",
		    "listen address (default: all, IPv4 and IPv6)" },
		{ 'c', "server-cert", OPT_STRING, &cert, 0, 0, "FILE",
		    "TLS certificate (default cert/server.crt)" },
		{ 'k', "server-key", OPT_STRING, &key, 0, 0, "FILE",
		    "TLS private key (default cert/server.key)" },
		{ 'a', "auth-public-key", OPT_STRING, &pub, 0, 0, "FILE",
		    "accepted ed25519 public key(s) (default cert/auth.pub)" },
		{ 0, "handshake-timeout", OPT_UINT, &handshake_timeout, 1, 3600,
		    "SECONDS", "time for TLS and AUTH (default 10)" },
		{ 0, "open-timeout", OPT_UINT, &open_timeout, 1, 3600,
		    "SECONDS", "time an OPEN waits for a reverse-proxy "
		    "channel (default 10)" },
		{ 0, "max-channels", OPT_UINT, &max_channels, 1, 1000000, "N",
		    "channels open at once, at most (default 10000)" },
		{ 'v', "verbose", OPT_FLAG, &verbose, 0, 0, NULL,
		    "log every channel" },
		{ 'q', "quiet", OPT_FLAG, &quiet, 0, 0, NULL,
		    "log only warnings and errors" },
	};
	struct relay_config cfg;
	struct event_base *base;
	char err[512];
	struct opts o;
	size_t i;
	int rc;

	daemon_parse_options(&o, specs, sizeof(specs) / sizeof(specs[0]),
	    argc, argv, PROGNAME, PROGNAME " [-p PORT] [--host ADDR] "
	    "[-c CERT] [-k KEY] [-a PUBKEYS] [options]");
	daemon_log_init(PROGNAME, verbose, quiet);

	memset(&cfg, 0, sizeof(cfg));
	if ((cfg.ssl_ctx = tls_server_ctx_new(cert, key, err, sizeof(err))) ==
	    NULL) {
		fprintf(stderr, "%s: %s\n", PROGNAME, err);
		opts_free(&o);
		return EXIT_USAGE;
	}
	if (auth_keyset_load(pub, &cfg.keys, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s: --auth-public-key: %s\n", PROGNAME, err);
		SSL_CTX_free(cfg.ssl_ctx);
		opts_free(&o);
		return EXIT_USAGE;
	}
	cfg.handshake_timeout = (unsigned)handshake_timeout;
	cfg.open_timeout = (unsigned)open_timeout;
	cfg.max_channels = (unsigned)max_channels;

	base = daemon_base_new();
	if (relay_init(base, &cfg) == -1)
		fatalx("cannot start the relay");
	listen_all(base, host, port);
	log_info("accepting %zu key(s); handshake timeout %lu s, open timeout "
	    "%lu s", cfg.keys.n, handshake_timeout, open_timeout);

	rc = daemon_run(base);

	relay_shutdown();
	for (i = 0; i < nlisteners; i++)
		listener_free(listeners[i]);
	daemon_base_free(base);
	auth_keyset_free(&cfg.keys);
	SSL_CTX_free(cfg.ssl_ctx);
	opts_free(&o);
	return rc == 0 ? 0 : EXIT_RUNTIME;
}
