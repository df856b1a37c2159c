/*
 * reverse-proxy: runs inside the private network.  It keeps a pool of idle,
 * authenticated channels open to the relay; when the relay pairs one with
 * an entry-point's connection, an OPEN arrives on it, and the
 * reverse-proxy checks the destination against its allow-list, connects
 * to it and splices.  SIGHUP reloads the allow-list, the key and the
 * pinned certificate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "allow.h"
#include "client.h"
#include "client_metrics.h"
#include "conn.h"
#include "daemon.h"
#include "frame.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"

#define PROGNAME "reverse-proxy"
#define NSPECS (CLIENT_NSPECS + 3)
#define USAGE PROGNAME " [-s HOST:PORT] [-c CERT] [-a KEY] [-g GROUP] " \
    "[--allow RULES] [options]"

/* What the options say; a reload parses a new one beside the running. */
struct settings {
	struct client_options client;
	unsigned long connect_timeout;
	const char *allow_text;
	unsigned long drain_timeout;
	struct opts opts;		/* storage behind the strings */
};

static struct client client;
static struct settings running;
/* Read by every conn at each check: a reload swaps the contents, in
 * place, between two callbacks. */
static struct allow_list allow;
static int saved_argc;
static char **saved_argv;

/* The option table, storing into s; defaults set. */
static void
settings_specs(struct settings *s, struct opt_spec specs[NSPECS])
{
	client_option_specs(&s->client, specs);
	s->connect_timeout = 10;
	s->allow_text = NULL;
	s->drain_timeout = DAEMON_DRAIN_DEFAULT;
	specs[CLIENT_NSPECS] = (struct opt_spec){ 0, "connect-timeout",
	    OPT_UINT, &s->connect_timeout, 1, 3600, "SECONDS",
	    "time to connect to a destination (default 10)" };
	specs[CLIENT_NSPECS + 1] = (struct opt_spec){ 0, "allow",
	    OPT_STRING, &s->allow_text, 0, 0, "RULES",
	    "destinations the entry-points may name, comma-separated: "
	    "ADDRESS[/PREFIX][:PORTS] or HOSTNAME[:PORTS], PORTS N, N-M or * "
	    "(default: any but link-local)" };
	specs[CLIENT_NSPECS + 2] = (struct opt_spec){ 0, "drain-timeout",
	    OPT_UINT, &s->drain_timeout, 0, 3600, "SECONDS", "on SIGTERM or "
	    "SIGINT, how long the connections in flight may take to finish "
	    "(default 30; 0: stop at once)" };
}

/* The allow-list that s names, into l.  Returns 0 or -1 (err). */
static int
settings_allow(const struct settings *s, struct allow_list *l, char *err,
    size_t errlen)
{
	char why[512];

	if (s->allow_text == NULL) {
		allow_default(l);
		return 0;
	}
	if (allow_parse(s->allow_text, l, why, sizeof(why)) == -1) {
		/* "--allow: ..." or "FILE:LINE: allow: ..." */
		snprintf(err, errlen, "%s: %s", opts_origin(&s->opts,
		    &s->allow_text, "--allow"), why);
		return -1;
	}
	return 0;
}

/* The relay paired one of our channels: an OPEN waits in its input. */
static void
channel_opened(struct bufferevent *bev, void *arg)
{
	(void)arg;
	conn_new_reverse(client.base, client.dns, bev, &allow,
	    (unsigned)running.connect_timeout, client_conn_ended, &client);
}

/* Say what the allow-list is, once at start. */
static void
log_allow(const char *when)
{
	char rules[1024];

	if (allow.is_default) {
		log_info("%sno --allow: any destination the entry-points name, "
		    "but link-local addresses (169.254.0.0/16, fe80::/10)",
		    when);
		return;
	}
	allow_describe(&allow, rules, sizeof(rules));
	log_info("%sdestinations allowed: %s", when, rules);
}

/*
 * SIGHUP: the options again (the --config file may have changed), the
 * allow-list, the key and the certificate.  All or nothing: on any error
 * the running configuration stays as it is.
 */
static int
reload(void *arg)
{
	struct opt_spec specs[NSPECS];
	struct settings *next;
	struct allow_list list;
	char err[1024], what[512], before[1024], after[1024];

	(void)arg;
	memset(&list, 0, sizeof(list));
	if ((next = calloc(1, sizeof(*next))) == NULL) {
		log_warn("reload failed: calloc");
		metrics_add(client_metrics.reloads, METRICS_RELOAD_FAILED, 1);
		return -1;
	}
	settings_specs(next, specs);
	err[0] = '\0';
	if (opts_parse(&next->opts, specs, NSPECS, saved_argc,
	    saved_argv, 1, PROGNAME, USAGE, err, sizeof(err)) != 0 ||
	    settings_allow(next, &list, err, sizeof(err)) == -1 ||
	    client_reload(&client, &next->client, what, sizeof(what), err,
	    sizeof(err)) == -1) {
		log_warnx("reload failed: %s; still running the previous "
		    "configuration", err);
		metrics_add(client_metrics.reloads, METRICS_RELOAD_FAILED, 1);
		allow_free(&list);
		opts_free(&next->opts);
		free(next);
		return -1;
	}
	allow_describe(&allow, before, sizeof(before));
	allow_describe(&list, after, sizeof(after));
	allow_free(&allow);
	allow = list;
	opts_free(&running.opts);
	running = *next;
	free(next);
	daemon_drain_timeout(running.drain_timeout);
	log_info("reload: allow-list %s, %s", strcmp(before, after) == 0 ?
	    "unchanged" : "changed", what);
	metrics_add(client_metrics.reloads, METRICS_RELOAD_OK, 1);
	if (strcmp(before, after) != 0)
		log_allow("reload: ");
	return 0;
}

/*
 * SIGTERM or SIGINT: the pool dials no more and RETIREs its idle channels
 * (an OPEN that crossed a RETIRE is still served); the connections in
 * flight may finish.
 */
static unsigned
drain_start(void *arg)
{
	(void)arg;
	pool_drain(client.pool);
	return conn_count();
}

/* STATUS= for the service manager. */
static void
reverse_status(char *buf, size_t len, void *arg)
{
	unsigned n = conn_count();

	(void)arg;
	snprintf(buf, len, "%u connection%s; relay %s", n, n == 1 ? "" : "s",
	    pool_relay_name(client.pool));
}

static unsigned
drain_left(void *arg)
{
	(void)arg;
	return conn_count();
}

/* Busy too while a retired channel may still bring an OPEN. */
static int
drain_busy(void *arg)
{
	(void)arg;
	return conn_count() > 0 || pool_pending(client.pool) > 0;
}

int
main(int argc, char **argv)
{
	struct opt_spec specs[NSPECS];
	struct pool_config pc;
	struct event_base *base;
	char err[1024];
	int rc;

	saved_argc = argc;
	saved_argv = argv;
	settings_specs(&running, specs);
	daemon_parse_options(&running.opts, specs, NSPECS, argc, argv,
	    PROGNAME, USAGE);
	daemon_log_init(PROGNAME, running.client.verbose,
	    running.client.quiet);
	if (settings_allow(&running, &allow, err, sizeof(err)) == -1) {
		log_errx("%s", err);
		opts_free(&running.opts);
		return EXIT_USAGE;
	}

	base = daemon_base_new();
	client_init(&client, &running.client, base);
	/* No limits of its own: the pool's size is its only one. */
	if (client.metrics.len > 0 && client_metrics_init(0, NULL, 0) == -1)
		fatalx("cannot set up the metrics");
	memset(&pc, 0, sizeof(pc));
	pc.role = ROLE_REVERSE;
	pc.on_open = channel_opened;
	client_start_pool(&client, &running.client, &pc);
	daemon_on_reload(base, reload, NULL);
	daemon_on_drain(base, &(struct daemon_drain){ drain_start, drain_left,
	    drain_busy, NULL }, running.drain_timeout);
	daemon_on_status(base, reverse_status, NULL);
	log_info("relay %s, group %lu: keeping %lu idle channels ready",
	    running.client.server_address, running.client.group,
	    running.client.pool_min);
	log_info("limits: --pool-max %lu%s, from the open-file limit %lu",
	    client.pool_max, client.pool_max_given ? " (given)" : "",
	    daemon_nofile());
	log_allow("");

	rc = daemon_run(base);

	conn_free_all();
	client_free(&client);
	daemon_base_free(base);
	allow_free(&allow);
	opts_free(&running.opts);
	return rc == 0 ? 0 : EXIT_RUNTIME;
}
