/*
 * reverse-proxy: runs inside the private network.  It keeps a pool of idle,
 * authenticated channels open to the relay; when the relay pairs one with
 * an entry-point's connection, an OPEN arrives on it, and the
 * reverse-proxy connects to the destination it names and splices.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "client.h"
#include "conn.h"
#include "daemon.h"
#include "frame.h"
#include "log.h"
#include "pool.h"

#define PROGNAME "reverse-proxy"

static struct client client;
static unsigned long connect_timeout = 10;

/* The relay paired one of our channels: an OPEN waits in its input. */
static void
channel_opened(struct bufferevent *bev, void *arg)
{
	(void)arg;
	conn_new_reverse(client.base, client.dns, bev,
	    (unsigned)connect_timeout, client_conn_ended, &client);
}

int
main(int argc, char **argv)
{
	struct client_options copts;
	struct opt_spec specs[CLIENT_NSPECS + 1];
	struct pool_config pc;
	struct event_base *base;
	struct opts o;
	int rc;

	client_option_specs(&copts, specs);
	specs[CLIENT_NSPECS] = (struct opt_spec){ 0, "connect-timeout",
	    OPT_UINT, &connect_timeout, 1, 3600, "SECONDS",
	    "time to connect to a destination (default 10)" };
	daemon_parse_options(&o, specs, CLIENT_NSPECS + 1, argc, argv,
	    PROGNAME, PROGNAME " [-s HOST:PORT] [-c CERT] [-a KEY] [-g GROUP] "
	    "[options]");
	daemon_log_init(PROGNAME, copts.verbose, copts.quiet);

	base = daemon_base_new();
	client_init(&client, &copts, PROGNAME, base);
	memset(&pc, 0, sizeof(pc));
	pc.role = ROLE_REVERSE;
	pc.on_open = channel_opened;
	client_start_pool(&client, &copts, &pc);
	log_info("relay %s, group %lu: keeping %lu idle channels ready",
	    copts.server_address, copts.group, copts.pool_min);

	rc = daemon_run(base);

	conn_free_all();
	client_free(&client);
	daemon_base_free(base);
	opts_free(&o);
	return rc == 0 ? 0 : EXIT_RUNTIME;
}
