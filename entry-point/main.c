/*
 * entry-point: runs near the users.  It listens on one port per route;
 * each accepted connection takes an idle channel from the pool (or waits,
 * bounded in number and time, for one), sends OPEN naming the route's
 * destination, and splices.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "client.h"
#include "conn.h"
#include "daemon.h"
#include "listener.h"
#include "frame.h"
#include "log.h"
#include "netaddr.h"
#include "pool.h"
#include "route.h"

#define PROGNAME "entry-point"
/* Built-in limits (README, "entry-point"); past them a new user
 * connection is reset at once. */
#define WAIT_MAX 4096		/* connections waiting for a channel */
#define WAIT_TIMEOUT 10		/* seconds one may wait */
#define CONNS_MAX 20000		/* live connections */

struct route_listener {
	struct route route;
	struct listener *listener;
};

struct waiter {
	struct conn *conn;
	time_t since;
	TAILQ_ENTRY(waiter) link;
};

static struct client client;
static struct route_listener listeners[ROUTE_MAX];
static size_t nlisteners;
static TAILQ_HEAD(, waiter) waiters = TAILQ_HEAD_INITIALIZER(waiters);
static unsigned nwaiters;
static struct event *wait_timer;

/* Hand idle channels to waiting connections, oldest first. */
static void
serve_waiters(void *arg)
{
	struct bufferevent *bev;
	struct waiter *w;

	(void)arg;
	while ((w = TAILQ_FIRST(&waiters)) != NULL &&
	    (bev = pool_take(client.pool)) != NULL) {
		TAILQ_REMOVE(&waiters, w, link);
		nwaiters--;
		conn_attach_channel(w->conn, bev);
		free(w);
	}
	pool_set_waiting(client.pool, nwaiters);
}

/* Every second: give up on connections that waited too long. */
static void
wait_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	time_t now = time(NULL);
	struct waiter *w;

	(void)fd;
	(void)what;
	(void)arg;
	while ((w = TAILQ_FIRST(&waiters)) != NULL &&
	    now - w->since >= WAIT_TIMEOUT) {
		TAILQ_REMOVE(&waiters, w, link);
		nwaiters--;
		log_warnx("no channel to relay %s within %d s: closing a "
		    "connection", pool_relay_name(client.pool), WAIT_TIMEOUT);
		conn_abort(w->conn);
		free(w);
	}
	pool_set_waiting(client.pool, nwaiters);
}

static void
accept_cb(evutil_socket_t fd, struct sockaddr *addr, void *arg)
{
	struct route_listener *l = arg;
	char src[NETADDR_STRLEN], label[ROUTE_HOST_MAX * 2 + 16];
	struct bufferevent *bev;
	struct waiter *w;
	struct conn *c;

	netaddr_format(addr, src);
	if (!route_source_allowed(&l->route, addr)) {
		log_info("route '%s': refused connection from %s (source "
		    "filter)", l->route.text, src);
		netaddr_close_reset(fd);
		return;
	}
	if (conn_count() >= CONNS_MAX || nwaiters >= WAIT_MAX) {
		log_warnx("route '%s': refused connection from %s (%s)",
		    l->route.text, src, nwaiters >= WAIT_MAX ?
		    "too many waiting for a channel" : "too many connections");
		netaddr_close_reset(fd);
		return;
	}
	snprintf(label, sizeof(label), "route '%s'", l->route.text);
	c = conn_new_source(client.base, fd, addr, label, l->route.dest_host,
	    l->route.dest_port, client_conn_ended, &client);
	if (c == NULL)
		return;
	log_debug("route '%s': connection from %s", l->route.text, src);
	if (TAILQ_EMPTY(&waiters) && (bev = pool_take(client.pool)) != NULL) {
		conn_attach_channel(c, bev);
		return;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		log_warn("calloc");
		conn_abort(c);
		return;
	}
	w->conn = c;
	w->since = time(NULL);
	TAILQ_INSERT_TAIL(&waiters, w, link);
	nwaiters++;
	pool_set_waiting(client.pool, nwaiters);
}

static void
listener_start(struct route_listener *l, struct event_base *base)
{
	char err[512], where[NETADDR_STRLEN], name[ROUTE_HOST_MAX * 2 + 16];
	struct route *r = &l->route;
	int fd;

	fd = netaddr_listen((struct sockaddr *)&r->listen, r->listen_len,
	    r->listen_dual_stack, err, sizeof(err));
	if (fd == -1 && r->listen_dual_stack && errno == EAFNOSUPPORT) {
		/* No IPv6 here: the IPv4 wildcard does the same job. */
		struct sockaddr_in *sin = (struct sockaddr_in *)&r->listen;
		memset(&r->listen, 0, sizeof(r->listen));
		sin->sin_family = AF_INET;
		sin->sin_port = htons(r->listen_port);
		r->listen_len = sizeof(*sin);
		fd = netaddr_listen((struct sockaddr *)&r->listen,
		    r->listen_len, 0, err, sizeof(err));
	}
	if (fd == -1)
		fatalx("route '%s': %s", r->text, err);
	netaddr_format((struct sockaddr *)&r->listen, where);
	snprintf(name, sizeof(name), "route '%s'", r->text);
	if ((l->listener = listener_new(base, fd, name, accept_cb, l)) == NULL)
		fatalx("route '%s': cannot start the listener", r->text);
	log_info("route '%s' listening on %s%s", r->text, where,
	    r->listen_dual_stack ? " (IPv4 and IPv6)" : "");
}

int
main(int argc, char **argv)
{
	struct client_options copts;
	struct opt_spec specs[CLIENT_NSPECS + 1];
	struct route routes[ROUTE_MAX];
	struct timeval second = { 1, 0 };
	const char *routes_text = NULL;
	struct pool_config pc;
	struct event_base *base;
	struct waiter *w;
	char err[512];
	struct opts o;
	size_t n, i;
	int rc;

	client_option_specs(&copts, specs);
	specs[CLIENT_NSPECS] = (struct opt_spec){ 'r', "routes", OPT_STRING,
	    &routes_text, 0, 0, "ROUTES", "comma-separated routes: port:port, "
	    "ip:port:port, port:host:port, ip:port:host:port (required)" };
	daemon_parse_options(&o, specs, CLIENT_NSPECS + 1, argc, argv,
	    PROGNAME, PROGNAME " -r ROUTES [-s HOST:PORT] [-c CERT] [-a KEY] "
	    "[-g GROUP] [options]");
	daemon_log_init(PROGNAME, copts.verbose, copts.quiet);
	if (routes_text == NULL) {
		fprintf(stderr, "%s: --routes is required (for example "
		    "-r 5001:5001)\n", PROGNAME);
		opts_free(&o);
		return EXIT_USAGE;
	}
	if (route_parse_list(routes_text, routes, ROUTE_MAX, &n, err,
	    sizeof(err)) == -1) {
		fprintf(stderr, "%s: --routes: %s\n", PROGNAME, err);
		opts_free(&o);
		return EXIT_USAGE;
	}

	base = daemon_base_new();
	client_init(&client, &copts, PROGNAME, base);
	for (i = 0; i < n; i++) {
		listeners[i].route = routes[i];
		listener_start(&listeners[i], base);
		nlisteners++;
	}
	memset(&pc, 0, sizeof(pc));
	pc.role = ROLE_ENTRY;
	pc.on_idle = serve_waiters;
	client_start_pool(&client, &copts, &pc);
	if ((wait_timer = event_new(base, -1, EV_PERSIST, wait_timer_cb,
	    NULL)) == NULL || event_add(wait_timer, &second) == -1)
		fatalx("cannot arm the wait timer");

	rc = daemon_run(base);

	while ((w = TAILQ_FIRST(&waiters)) != NULL) {
		TAILQ_REMOVE(&waiters, w, link);
		free(w);
	}
	conn_free_all();
	for (i = 0; i < nlisteners; i++)
		listener_free(listeners[i].listener);
	event_free(wait_timer);
	client_free(&client);
	daemon_base_free(base);
	opts_free(&o);
	return rc == 0 ? 0 : EXIT_RUNTIME;
}
