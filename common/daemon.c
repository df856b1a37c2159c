#include "daemon.h"

#include <sys/resource.h>

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "notify.h"

static struct event *sig_int, *sig_term;

void
daemon_parse_options(struct opts *o, const struct opt_spec *specs,
    size_t nspecs, int argc, char **argv, const char *progname,
    const char *usage)
{
	char err[512];

	/* Errors from here on are the program's, in the journal's format
	 * when stderr is the journal (daemon_log_init sets the level). */
	log_init(progname, LOG_LEVEL_INFO);
	switch (opts_parse(o, specs, nspecs, argc, argv, 1, progname, usage,
	    err, sizeof(err))) {
	case 0:
		return;
	case 1:
		opts_free(o);
		exit(0);
	default:
		log_errx("%s", err);
		opts_free(o);
		exit(EXIT_USAGE);
	}
}

void
daemon_log_init(const char *progname, int verbose, int quiet)
{
	log_init(progname, quiet ? LOG_LEVEL_QUIET : verbose ?
	    LOG_LEVEL_DEBUG : LOG_LEVEL_INFO);
}

/* What the daemon says of itself to the service manager (STATUS=). */
static struct {
	void (*fn)(char *buf, size_t len, void *arg);
	void *arg;
	struct event *timer;
} status;

static unsigned drain_left_now(void);
static int drain_under_way(void);

/* SIGHUP (daemon_on_reload). */
static struct {
	int (*cb)(void *arg);
	void *arg;
	int failed;		/* the last one: the status line says so */
} reload;
static struct event *sig_hup;

/* The daemon's status line, or NULL without daemon_on_status.  During a
 * drain it says so, and how many connections are left. */
static const char *
status_text(char *buf, size_t len)
{
	unsigned left;
	size_t used;

	if (status.fn == NULL)
		return NULL;
	if (drain_under_way()) {
		left = drain_left_now();
		snprintf(buf, len, "draining: %u connection%s left", left,
		    left == 1 ? "" : "s");
		return buf;
	}
	buf[0] = '\0';
	if (reload.failed)
		snprintf(buf, len, "last reload failed, running the previous "
		    "configuration; ");
	used = strlen(buf);
	status.fn(buf + used, len - used, status.arg);
	return buf;
}

static void
status_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[256];

	(void)fd;
	(void)what;
	(void)arg;
	if (status_text(buf, sizeof(buf)) != NULL)
		notify_status(buf);
}

void
daemon_on_status(struct event_base *base,
    void (*fn)(char *buf, size_t len, void *arg), void *arg)
{
	struct timeval tv = { DAEMON_STATUS_SECONDS, 0 };

	status.fn = fn;
	status.arg = arg;
	if (getenv("NOTIFY_SOCKET") == NULL || status.timer != NULL)
		return;		/* nobody to tell */
	if ((status.timer = event_new(base, -1, EV_PERSIST, status_cb,
	    NULL)) == NULL || event_add(status.timer, &tv) == -1)
		fatalx("cannot arm the status timer");
}

void
daemon_ready(void)
{
	char buf[256];

	notify_ready(status_text(buf, sizeof(buf)));
}

/* The graceful stop (daemon_on_drain); one per process, like the signals. */
static struct {
	struct daemon_drain d;
	unsigned long timeout;
	int set, draining, ended;
	unsigned waited;		/* in flight when the drain started */
	struct event *poll, *timer;
} drain;

static int
drain_under_way(void)
{
	return drain.draining;
}

static unsigned
drain_left_now(void)
{
	return drain.set ? drain.d.left(drain.d.arg) : 0;
}

void
daemon_stop(struct event_base *base)
{
	event_base_loopbreak(base);
}

int
daemon_draining(void)
{
	return drain.draining;
}

/* The drain is over (done, timed out or cut short): say how it went and
 * end the loop.  What is left is reset by the daemon's teardown. */
static void
drain_end(struct event_base *base)
{
	unsigned left;

	if (drain.ended)
		return;
	drain.ended = 1;
	left = drain.d.left(drain.d.arg);
	log_info("drain over: waited for %u connection%s, %u finished, %u "
	    "reset", drain.waited, drain.waited == 1 ? "" : "s",
	    drain.waited > left ? drain.waited - left : 0, left);
	(void)event_del(drain.poll);
	(void)event_del(drain.timer);
	daemon_stop(base);
}

/* Connections end in many places (in the relay, on every worker's
 * thread): asking a few times a second is simpler than a hook in each. */
static void
drain_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	if (!drain.d.busy(drain.d.arg))
		drain_end(arg);
}

static void
drain_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	log_info("drain: --drain-timeout (%lu s) reached", drain.timeout);
	drain_end(arg);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct event_base *base = arg;
	const char *name = sig == SIGINT ? "interrupted" : "terminated";
	struct timeval poll = { 0, DAEMON_DRAIN_POLL_MS * 1000 };
	struct timeval tv;

	(void)what;
	if (drain.draining) {
		log_info("%s again: stopping at once", name);
		drain_end(base);
		return;
	}
	notify_stopping(drain.set ? drain.timeout : 0);
	if (!drain.set || drain.timeout == 0) {
		if (drain.set)
			log_info("%s, shutting down (--drain-timeout 0: %u "
			    "connection%s reset)", name,
			    drain.d.left(drain.d.arg),
			    drain.d.left(drain.d.arg) == 1 ? "" : "s");
		else
			log_info("%s, shutting down", name);
		daemon_stop(base);
		return;
	}
	drain.draining = 1;
	drain.waited = drain.d.start(drain.d.arg);
	log_info("%s: draining: no new connections, waiting for %u in flight "
	    "(at most %lu s)", name, drain.waited, drain.timeout);
	{
		char msg[128];

		snprintf(msg, sizeof(msg), "draining: waiting for %u "
		    "connection%s (at most %lu s)", drain.waited,
		    drain.waited == 1 ? "" : "s", drain.timeout);
		notify_status(msg);
	}
	tv.tv_sec = (time_t)drain.timeout;
	tv.tv_usec = 0;
	if (event_add(drain.poll, &poll) == -1 ||
	    event_add(drain.timer, &tv) == -1) {
		log_warnx("cannot arm the drain timers: stopping at once");
		drain_end(base);
	}
}

void
daemon_drain_timeout(unsigned long timeout)
{
	drain.timeout = timeout;
}

void
daemon_on_drain(struct event_base *base, const struct daemon_drain *d,
    unsigned long timeout)
{
	drain.d = *d;
	drain.timeout = timeout;
	drain.set = 1;
	if (drain.poll == NULL && ((drain.poll = event_new(base, -1,
	    EV_PERSIST, drain_poll_cb, base)) == NULL ||
	    (drain.timer = evtimer_new(base, drain_timer_cb, base)) == NULL))
		fatalx("cannot set up the drain");
}

static void
hup_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	if (drain.draining) {
		log_info("hangup: draining, not reloading");
		return;
	}
	log_info("hangup: reloading");
	notify_reloading();
	reload.failed = reload.cb(reload.arg) != 0;
	notify_reloaded();
	status_cb(-1, 0, NULL);
}

void
daemon_on_reload(struct event_base *base, int (*cb)(void *arg), void *arg)
{
	reload.cb = cb;
	reload.arg = arg;
	if (sig_hup == NULL && ((sig_hup = evsignal_new(base, SIGHUP, hup_cb,
	    NULL)) == NULL || evsignal_add(sig_hup, NULL) == -1))
		fatalx("cannot set up SIGHUP handling");
}

struct event_base *
daemon_loop_new(void)
{
	struct event_config *cfg;
	struct event_base *base;

	if ((cfg = event_config_new()) == NULL)
		return NULL;
	/* Bufferevents switch their read and write events on and off many
	 * times per loop pass (watermarks, empty output); with the
	 * changelist only the net change reaches epoll_ctl, once per pass.
	 * (Its one caveat, dup()ed descriptors, does not arise here.) */
	(void)event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}

/*
 * Every connection costs one or two descriptors, and the usual soft limit
 * (1,024) is far below what a relay or a client with a large pool holds:
 * use the whole hard limit, as the administrator allows it.
 */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit(RLIMIT_NOFILE)");
		return;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
			log_warn("setrlimit(RLIMIT_NOFILE)");
			return;
		}
		log_debug("open-file limit raised from %llu to %llu",
		    (unsigned long long)was, (unsigned long long)rl.rlim_cur);
	}
}

unsigned long
daemon_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return 1024;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1000000)
		return 1000000;
	return (unsigned long)rl.rlim_cur;
}

/* libevent's own messages, in our format and at their priority (on the
 * journal's stream: <4> and <3>, not untagged lines).  It may call this
 * from any thread; nothing here calls back into libevent. */
static void
libevent_log_cb(int severity, const char *msg)
{
	switch (severity) {
	case EVENT_LOG_DEBUG:
		log_debug("libevent: %s", msg);
		break;
	case EVENT_LOG_MSG:
		log_info("libevent: %s", msg);
		break;
	case EVENT_LOG_WARN:
		log_warnx("libevent: %s", msg);
		break;
	default:
		log_errx("libevent: %s", msg);
		break;
	}
}

struct event_base *
daemon_base_new(void)
{
	struct event_base *base;

	event_set_log_callback(libevent_log_cb);

	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		fatal("signal");
	raise_nofile();
	/* Buffers of a few hundred KiB come and go with every burst of
	 * data: keep them on the heap (not mmap) and do not give the top of
	 * the heap back to the kernel after every free. */
	(void)mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
	(void)mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
	if ((base = daemon_loop_new()) == NULL)
		fatalx("cannot create the event loop");
	sig_int = evsignal_new(base, SIGINT, signal_cb, base);
	sig_term = evsignal_new(base, SIGTERM, signal_cb, base);
	if (sig_int == NULL || sig_term == NULL ||
	    evsignal_add(sig_int, NULL) == -1 ||
	    evsignal_add(sig_term, NULL) == -1)
		fatalx("cannot set up signal handling");
	return base;
}

int
daemon_run(struct event_base *base)
{
	return event_base_dispatch(base) == -1 ? -1 : 0;
}

void
daemon_base_free(struct event_base *base)
{
	if (sig_int != NULL)
		event_free(sig_int);
	if (sig_term != NULL)
		event_free(sig_term);
	if (sig_hup != NULL)
		event_free(sig_hup);
	sig_int = sig_term = sig_hup = NULL;
	if (drain.poll != NULL)
		event_free(drain.poll);
	if (drain.timer != NULL)
		event_free(drain.timer);
	drain.poll = drain.timer = NULL;
	if (status.timer != NULL)
		event_free(status.timer);
	status.timer = NULL;
	status.fn = NULL;
	if (base != NULL) {
		/* Bufferevents freed with deferred callbacks pending are
		 * released only when those run: let them. */
		(void)event_base_loop(base, EVLOOP_NONBLOCK);
		event_base_free(base);
	}
}
