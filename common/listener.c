#include "listener.h"

#include <stdio.h>
#include <stdlib.h>
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

static void
accept_error_cb(struct evconnlistener *evl, void *arg)
{
	struct listener *l = arg;
	struct timeval tv = { 1, 0 };

	log_warn("%s: accept", l->name);
	evconnlistener_disable(evl);
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
