#include "daemon.h"

#include <sys/resource.h>

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"

static struct event *sig_int, *sig_term;

void
daemon_parse_options(struct opts *o, const struct opt_spec *specs,
    size_t nspecs, int argc, char **argv, const char *progname,
    const char *usage)
{
	char err[512];

	switch (opts_parse(o, specs, nspecs, argc, argv, 1, progname, usage,
	    err, sizeof(err))) {
	case 0:
		return;
	case 1:
		opts_free(o);
		exit(0);
	default:
		fprintf(stderr, "%s: %s\n", progname, err);
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

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct event_base *base = arg;

	(void)what;
	log_info("%s, shutting down", sig == SIGINT ? "interrupted" :
	    "terminated");
	event_base_loopbreak(base);
}

struct reload {
	void (*cb)(void *arg);
	void *arg;
};

static struct event *sig_hup;
static struct reload reload;

static void
hup_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	log_info("hangup: reloading");
	reload.cb(reload.arg);
}

void
daemon_on_reload(struct event_base *base, void (*cb)(void *arg), void *arg)
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

struct event_base *
daemon_base_new(void)
{
	struct event_base *base;

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
	if (base != NULL) {
		/* Bufferevents freed with deferred callbacks pending are
		 * released only when those run: let them. */
		(void)event_base_loop(base, EVLOOP_NONBLOCK);
		event_base_free(base);
	}
}
