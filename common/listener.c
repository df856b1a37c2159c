#include "listener.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "netaddr.h"

struct listener {
	struct evconnlistener *evl;
	struct event *resume;
	listener_accept_fn *fn;
	void *arg;
	char name[NETADDR_STRLEN * 2];
};

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *addr, int addrlen, void *arg)
{
	struct listener *l = arg;

	(void)evl;
	(void)addrlen;
	l->fn(fd, addr, l->arg);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	(void)fd;
	(void)what;
	if (evconnlistener_enable(l->evl) == -1)
		log_warnx("%s: cannot resume accepting", l->name);
}

/*
 * Pauses are logged at most once a second for the whole process: out of
 * descriptors, every listener of every worker fails at once, and again
 * after each pause.  The next line says how many pauses went unlogged.
 * The window is a little under a second (950 ms) so that one listener's
 * own pauses, a timer second apart, are each logged.
 */
#define PAUSE_LOG_MS 950

static _Atomic int64_t pause_logged_ms = INT64_MIN / 2;
static atomic_uint pauses_unlogged;

static int64_t
monotonic_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		return 0;
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
accept_error_cb(struct evconnlistener *evl, void *arg)
{
	int saved = errno;	/* accept's, before any other call */
	struct listener *l = arg;
	struct timeval tv = { 1, 0 };
	int64_t now = monotonic_ms(), last;
	unsigned unlogged;

	last = atomic_load(&pause_logged_ms);
	if (now - last >= PAUSE_LOG_MS &&
	    atomic_compare_exchange_strong(&pause_logged_ms, &last, now)) {
		unlogged = atomic_exchange(&pauses_unlogged, 0);
		if (unlogged > 0)
			log_warnx("%s: accept: %s; paused for 1 s (and %u "
			    "more pause%s since the last such line)", l->name,
			    strerror(saved), unlogged, unlogged == 1 ? "" : "s");
		else
			log_warnx("%s: accept: %s; paused for 1 s", l->name,
			    strerror(saved));
	} else
		atomic_fetch_add(&pauses_unlogged, 1);
	evconnlistener_disable(evl);
	/* A second from now, not from the loop's cached time: the window
	 * above is measured with a fresh clock. */
	(void)event_base_update_cache_time(evconnlistener_get_base(evl));
	if (evtimer_add(l->resume, &tv) == -1)
		log_warnx("%s: cannot arm the resume timer", l->name);
}

struct listener *
listener_new(struct event_base *base, evutil_socket_t fd, const char *name,
    listener_accept_fn *fn, void *arg)
{
	struct listener *l;
	socklen_t len = sizeof(int);
	int listening = 0;

	/* evconnlistener_new takes any descriptor (it ignores a failed
	 * epoll_ctl): refuse one that is not a listening socket. */
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) ==
	    -1 || !listening) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		close(fd);
		return NULL;
	}
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->fn = fn;
	l->arg = arg;
	/* Backlog 0: fd is listening already (with SOMAXCONN). */
	l->evl = evconnlistener_new(base, accept_cb, l, LEV_OPT_CLOSE_ON_FREE,
	    0, fd);
	if (l->evl == NULL) {
		close(fd);
		free(l);
		return NULL;
	}
	if ((l->resume = evtimer_new(base, resume_cb, l)) == NULL) {
		listener_free(l);
		return NULL;
	}
	evconnlistener_set_error_cb(l->evl, accept_error_cb);
	return l;
}

void
listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	if (l->resume != NULL)
		event_free(l->resume);
	evconnlistener_free(l->evl);
	free(l);
}
