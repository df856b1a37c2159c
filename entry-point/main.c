/*
 * entry-point: runs near the users.  It listens on one port per route;
 * each accepted connection takes an idle channel from the pool (or waits,
 * bounded in number and time, for one), sends OPEN naming the route's
 * destination, and splices.  SIGHUP reloads the routes (from the --config
 * file), the key and the pinned certificate.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "client.h"
#include "conn.h"
#include "daemon.h"
#include "metrics_http.h"
#include "entry.h"
#include "frame.h"
#include "log.h"
#include "netaddr.h"
#include "pool.h"
#include "route.h"

#define PROGNAME "entry-point"
#define NSPECS (CLIENT_NSPECS + 5)
#define USAGE PROGNAME " -r ROUTES [-s HOST:PORT] [-c CERT] [-a KEY] " \
    "[-g GROUP] [options]"
/*
 * Limits (README, "entry-point"); past them a new user connection is
 * reset at once.  Not given, --max-connections follows the open-file
 * limit: each connection holds two descriptors (its source and its
 * channel), and the pool's idle channels and the process need the rest.
 */
#define WAITING_DEFAULT_MAX 4096	/* --max-waiting, at most */
#define RESERVE_FILES 64		/* listeners, the process, the log */

/* What the options say; a reload parses a new one beside the running. */
struct settings {
	struct client_options client;
	const char *routes_text;	/* -r, or routes = in the file */
	unsigned long max_connections;	/* 0: derived */
	unsigned long max_waiting;	/* 0: derived */
	unsigned long wait_timeout;
	unsigned long drain_timeout;
	struct opts opts;		/* storage behind the strings */
};

/* The limits in force (from the running settings, derived where not
 * given). */
static unsigned long conns_max, waiting_max, wait_timeout;

struct waiter {
	struct conn *conn;
	uint64_t since;		/* when it began to wait, monotonic_ms() */
	TAILQ_ENTRY(waiter) link;
};

static struct client client;
static struct settings *running;
static struct event_base *base;
static int saved_argc;
static char **saved_argv;
static TAILQ_HEAD(, waiter) waiters = TAILQ_HEAD_INITIALIZER(waiters);
static unsigned nwaiters;
static struct event *wait_timer;

/* Milliseconds of CLOCK_MONOTONIC: waits are timed in it (not in the
 * wall clock's whole seconds, which a clock step moves and which made
 * --wait-timeout T anything from T-1 to T+1 s). */
static uint64_t
monotonic_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		return 0;
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

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
	uint64_t now = monotonic_ms();
	struct waiter *w;
	unsigned closed = 0;

	(void)fd;
	(void)what;
	(void)arg;
	while ((w = TAILQ_FIRST(&waiters)) != NULL &&
	    now - w->since >= (uint64_t)wait_timeout * 1000) {
		TAILQ_REMOVE(&waiters, w, link);
		nwaiters--;
		conn_abort(w->conn);
		free(w);
		closed++;
	}
	/* One line a pass (a second) however many gave up: a relay out of
	 * reach with --max-waiting connections waiting is no log flood. */
	entry_metrics_limit(ENTRY_LIMIT_WAIT_TIMEOUT, closed);
	if (closed > 0)
		log_warnx("no channel to relay %s within %lu s (--wait-timeout):"
		    " closing %u connection%s", pool_relay_name(client.pool),
		    wait_timeout, closed, closed == 1 ? "" : "s");
	pool_set_waiting(client.pool, nwaiters);
}

/* A connection refused at a limit: one warning a second at most, with the
 * count of the others. */
static void
limit_refusal(const struct route_listener *l, const char *src)
{
	static time_t last;
	static unsigned more;
	time_t now = time(NULL);

	/* Both may be reached: --max-connections is named first. */
	int waiting = conn_count() < conns_max;

	entry_metrics_limit(waiting ? ENTRY_LIMIT_WAITING :
	    ENTRY_LIMIT_CONNECTIONS, 1);
	if (now == last) {
		more++;
		return;
	}
	log_warnx("route '%s': refused connection from %s (%s%lu)%s", l->route.text,
	    src, waiting ? "waiting for a channel: "
	    "--max-waiting " : "--max-connections ", waiting ?
	    waiting_max : conns_max, more > 0 ? "; and others in the second "
	    "before" : "");
	last = now;
	more = 0;
}

void
entry_accept(evutil_socket_t fd, struct sockaddr *addr, void *arg)
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
	if (conn_count() >= conns_max || nwaiters >= waiting_max) {
		limit_refusal(l, src);
		netaddr_close_reset(fd);
		return;
	}
	snprintf(label, sizeof(label), "route '%s'", l->route.text);
	c = conn_new_source(client.base, fd, addr, label, l->metrics_label,
	    l->route.dest_host, l->route.dest_port, client_conn_ended,
	    &client);
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
	w->since = monotonic_ms();
	TAILQ_INSERT_TAIL(&waiters, w, link);
	nwaiters++;
	pool_set_waiting(client.pool, nwaiters);
}

/* The option table, storing into s; defaults set. */
static void
settings_specs(struct settings *s, struct opt_spec specs[NSPECS])
{
	client_option_specs(&s->client, specs);
	s->routes_text = NULL;
	s->max_connections = s->max_waiting = 0;
	s->wait_timeout = 10;
	s->drain_timeout = DAEMON_DRAIN_DEFAULT;
	specs[CLIENT_NSPECS] = (struct opt_spec){ 'r', "routes", OPT_STRING,
	    &s->routes_text, 0, 0, "ROUTES", "comma-separated routes: "
	    "port:port, ip:port:port, port:host:port, ip:port:host:port "
	    "(required)" };
	specs[CLIENT_NSPECS + 1] = (struct opt_spec){ 0, "max-connections",
	    OPT_UINT, &s->max_connections, 1, 1000000, "N", "user connections "
	    "at once, at most (default: from the open-file limit)" };
	specs[CLIENT_NSPECS + 2] = (struct opt_spec){ 0, "max-waiting",
	    OPT_UINT, &s->max_waiting, 1, 1000000, "N", "of them waiting for a "
	    "channel, at most (default: --max-connections, up to 4096)" };
	specs[CLIENT_NSPECS + 3] = (struct opt_spec){ 0, "wait-timeout",
	    OPT_UINT, &s->wait_timeout, 1, 3600, "SECONDS", "how long one may "
	    "wait for a channel (default 10)" };
	specs[CLIENT_NSPECS + 4] = (struct opt_spec){ 0, "drain-timeout",
	    OPT_UINT, &s->drain_timeout, 0, 3600, "SECONDS", "on SIGTERM or "
	    "SIGINT, how long the connections in flight may take to finish "
	    "(default 30; 0: stop at once)" };
}

/* The limits s says, derived where not given (the pool's ceiling is
 * known: client_init ran); logs them with from, when from is not NULL. */
static void
limits_apply(const struct settings *s, const char *from)
{
	unsigned long files = daemon_nofile(), pool = client.pool_max, n;
	/* With --metrics: its listener and connections (metrics_http.h). */
	unsigned long reserve = RESERVE_FILES + (client.metrics.len > 0 ?
	    METRICS_HTTP_CONNS + 1 : 0);

	n = files > reserve + pool + 2 ? (files - reserve - pool) / 2 : 1;
	conns_max = s->max_connections ? s->max_connections : n;
	waiting_max = s->max_waiting ? s->max_waiting : conns_max <
	    WAITING_DEFAULT_MAX ? conns_max : WAITING_DEFAULT_MAX;
	wait_timeout = s->wait_timeout;
	if (from != NULL)
		log_info("%slimits: --max-connections %lu%s, --max-waiting %lu "
		    "for %lu s, --pool-max %lu%s, from the open-file limit %lu",
		    from, conns_max, s->max_connections ? " (given)" : "",
		    waiting_max, wait_timeout, pool, client.pool_max_given ?
		    " (given)" : "", files);
}

static void
settings_free(struct settings *s)
{
	if (s == NULL)
		return;
	opts_free(&s->opts);
	free(s);
}

/* The routes that s names, into routes[0..*n-1] (ROUTE_MAX of them).
 * Returns 0 or -1 (err). */
static int
settings_routes(const struct settings *s, struct route *routes, size_t *n,
    char *err, size_t errlen)
{
	char why[512];

	if (s->routes_text == NULL) {
		snprintf(err, errlen, "--routes is required (for example "
		    "-r 5001:5001)");
		return -1;
	}
	if (route_parse_list(s->routes_text, routes, ROUTE_MAX, n, why,
	    sizeof(why)) == -1) {
		/* "--routes: ..." or "FILE:LINE: routes: ...". */
		snprintf(err, errlen, "%s: %s", opts_origin(&s->opts,
		    &s->routes_text, "--routes"), why);
		return -1;
	}
	return 0;
}

/*
 * SIGHUP: the options again (the --config file may have changed), the
 * routes, the key and the certificate.  All or nothing: the new routes'
 * ports are opened first, and on any error they are closed again and the
 * running configuration stays as it is.
 */
static int
reload(void *arg)
{
	char err[1024], what[512], changes[1024];
	struct opt_spec specs[NSPECS];
	struct routes_change ch;
	struct route *routes;
	struct settings *next;
	size_t n;
	int rc;

	(void)arg;
	/* ROUTE_MAX routes are 65 KiB: not for the stack of a callback. */
	next = calloc(1, sizeof(*next));
	routes = calloc(ROUTE_MAX, sizeof(*routes));
	if (next == NULL || routes == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	settings_specs(next, specs);
	err[0] = '\0';
	if ((rc = opts_parse(&next->opts, specs, NSPECS, saved_argc,
	    saved_argv, 1, PROGNAME, USAGE, err, sizeof(err))) != 0) {
		if (rc == 1)	/* --help, -V: main() exited on them */
			snprintf(err, sizeof(err), "unexpected --help");
		goto fail;
	}
	if (settings_routes(next, routes, &n, err, sizeof(err)) == -1 ||
	    routes_prepare(base, routes, n, &ch, err, sizeof(err)) == -1)
		goto fail;
	if (client_reload(&client, &next->client, what, sizeof(what), err,
	    sizeof(err)) == -1) {
		routes_cancel(&ch);
		goto fail;
	}
	routes_commit(&ch, changes, sizeof(changes));
	settings_free(running);
	running = next;
	limits_apply(running, NULL);	/* the numbers apply at once */
	daemon_drain_timeout(running->drain_timeout);
	free(routes);
	log_info("reload: %s, %s", changes, what);
	entry_metrics_reload(1);
	return 0;
fail:
	log_warnx("reload failed: %s; still running the previous "
	    "configuration", err);
	entry_metrics_reload(0);
	settings_free(next);
	free(routes);
	return -1;
}

/*
 * SIGTERM or SIGINT: the route listeners close, the connections waiting
 * for a channel are reset, the pool dials no more and closes its idle
 * channels; the connections with a channel may finish.
 */
static unsigned
drain_start(void *arg)
{
	struct waiter *w;
	unsigned reset = 0;

	(void)arg;
	routes_free_all();
	while ((w = TAILQ_FIRST(&waiters)) != NULL) {
		TAILQ_REMOVE(&waiters, w, link);
		nwaiters--;
		conn_abort(w->conn);
		free(w);
		reset++;
	}
	if (reset > 0)
		log_info("drain: %u connection%s waiting for a channel reset",
		    reset, reset == 1 ? "" : "s");
	pool_drain(client.pool);
	/* The aborted ones are freed when the loop comes round. */
	return conn_count() - reset;
}

/* STATUS= for the service manager. */
static void
entry_status(char *buf, size_t len, void *arg)
{
	unsigned n = conn_count();

	(void)arg;
	snprintf(buf, len, "%u connection%s, %u waiting for a channel; relay %s",
	    n, n == 1 ? "" : "s", nwaiters, pool_relay_name(client.pool));
}

static unsigned
drain_left(void *arg)
{
	(void)arg;
	return conn_count();
}

static int
drain_busy(void *arg)
{
	(void)arg;
	return conn_count() > 0;
}

int
main(int argc, char **argv)
{
	struct opt_spec specs[NSPECS];
	struct route routes[ROUTE_MAX];
	struct timeval second = { 1, 0 };
	struct routes_change ch;
	struct pool_config pc;
	struct waiter *w;
	char err[1024];
	size_t n;
	int rc;

	saved_argc = argc;
	saved_argv = argv;
	log_init(PROGNAME, LOG_LEVEL_INFO);	/* the options set the level */
	if ((running = calloc(1, sizeof(*running))) == NULL) {
		log_errx("out of memory");
		return EXIT_RUNTIME;
	}
	settings_specs(running, specs);
	daemon_parse_options(&running->opts, specs, NSPECS, argc, argv,
	    PROGNAME, USAGE);
	daemon_log_init(PROGNAME, running->client.verbose,
	    running->client.quiet);
	if (settings_routes(running, routes, &n, err, sizeof(err)) == -1) {
		log_errx("%s", err);
		settings_free(running);
		return EXIT_USAGE;
	}

	base = daemon_base_new();
	client_init(&client, &running->client, base);
	if (client.metrics.len > 0 && entry_metrics_init() == -1)
		fatalx("cannot set up the metrics");
	if (routes_prepare(base, routes, n, &ch, err, sizeof(err)) == -1)
		fatalx("%s", err);
	routes_commit(&ch, err, sizeof(err));	/* the summary: unused */
	limits_apply(running, "");
	memset(&pc, 0, sizeof(pc));
	pc.role = ROLE_ENTRY;
	pc.on_idle = serve_waiters;
	client_start_pool(&client, &running->client, &pc);
	if ((wait_timer = event_new(base, -1, EV_PERSIST, wait_timer_cb,
	    NULL)) == NULL || event_add(wait_timer, &second) == -1)
		fatalx("cannot arm the wait timer");
	daemon_on_reload(base, reload, NULL);
	daemon_on_drain(base, &(struct daemon_drain){ drain_start, drain_left,
	    drain_busy, NULL }, running->drain_timeout);
	daemon_on_status(base, entry_status, NULL);

	rc = daemon_run(base);

	while ((w = TAILQ_FIRST(&waiters)) != NULL) {
		TAILQ_REMOVE(&waiters, w, link);
		free(w);
	}
	conn_free_all();
	routes_free_all();
	event_free(wait_timer);
	client_free(&client);
	daemon_base_free(base);
	settings_free(running);
	return rc == 0 ? 0 : EXIT_RUNTIME;
}
