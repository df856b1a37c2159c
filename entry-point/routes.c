/*
 * The running routes and their listeners, and a change of them on a
 * reload: the new listeners open first, and only when everything else of
 * the reload has worked do the old ones close.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client_metrics.h"
#include "entry.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"

static struct route_list running = TAILQ_HEAD_INITIALIZER(running);

/* Same socket: same listen address, port and dual-stack setting. */
static int
same_listen(const struct route *a, const struct route *b)
{
	/* route_parse zeroes the whole route, padding too. */
	return a->listen_len == b->listen_len &&
	    a->listen_dual_stack == b->listen_dual_stack &&
	    memcmp(&a->listen, &b->listen, a->listen_len) == 0;
}

/* Same route: same socket, source filter and destination (the text may
 * differ: "5001:5001" is "5001:127.0.0.1:5001"). */
static int
same_route(const struct route *a, const struct route *b)
{
	return same_listen(a, b) && a->has_source == b->has_source &&
	    memcmp(&a->source, &b->source, sizeof(a->source)) == 0 &&
	    strcmp(a->dest_host, b->dest_host) == 0 &&
	    a->dest_port == b->dest_port;
}

/* The running route listening where r would, or NULL. */
static struct route_listener *
running_on(const struct route *r)
{
	struct route_listener *rl;

	TAILQ_FOREACH(rl, &running, link)
		if (same_listen(&rl->route, r))
			return rl;
	return NULL;
}

/* The route of ch listening where rl does, or NULL: rl is removed. */
static const struct route *
new_on(const struct routes_change *ch, const struct route_listener *rl)
{
	size_t i;

	for (i = 0; i < ch->n; i++)
		if (same_listen(&ch->routes[i], &rl->route))
			return &ch->routes[i];
	return NULL;
}

static void
route_listener_free(struct route_listener *rl)
{
	listener_free(rl->listener);
	free(rl);
}

/* A listener for r, accepting from now on.  Returns 0 or -1 (err). */
static int
route_listener_open(struct event_base *base, const struct route *r,
    struct route_listener **out, char *err, size_t errlen)
{
	char msg[512], name[ROUTE_HOST_MAX * 2 + 16];
	struct sockaddr_storage ss = r->listen;
	socklen_t len = r->listen_len;
	struct route_listener *rl, *holder;
	int fd;

	fd = netaddr_listen((struct sockaddr *)&ss, len, r->listen_dual_stack,
	    msg, sizeof(msg));
	if (fd == -1 && r->listen_dual_stack && errno == EAFNOSUPPORT) {
		/* No IPv6 here: the IPv4 wildcard does the same job. */
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		memset(&ss, 0, sizeof(ss));
		sin->sin_family = AF_INET;
		sin->sin_port = htons(r->listen_port);
		len = sizeof(*sin);
		fd = netaddr_listen((struct sockaddr *)&ss, len, 0, msg,
		    sizeof(msg));
	}
	if (fd == -1) {
		/* Moving a port to another listen address may not work
		 * with both bound at once: say how to do it. */
		holder = NULL;
		if (errno == EADDRINUSE)
			TAILQ_FOREACH(holder, &running, link)
				if (holder->route.listen_port ==
				    r->listen_port)
					break;
		if (holder != NULL)
			snprintf(err, errlen, "route '%s': %s (route '%s' "
			    "holds the port: remove it in one reload, add "
			    "this one in the next)", r->text, msg,
			    holder->route.text);
		else
			snprintf(err, errlen, "route '%s': %s", r->text, msg);
		return -1;
	}
	if ((rl = calloc(1, sizeof(*rl))) == NULL) {
		close(fd);
		snprintf(err, errlen, "route '%s': out of memory", r->text);
		return -1;
	}
	rl->route = *r;
	rl->metrics_label = metrics_label(client_metrics.routes, r->text);
	netaddr_format((struct sockaddr *)&ss, rl->where);
	rl->dual_stack = r->listen_dual_stack && ss.ss_family == AF_INET6;
	snprintf(name, sizeof(name), "route '%s'", r->text);
	if ((rl->listener = listener_new(base, fd, name, entry_accept, rl)) ==
	    NULL) {
		free(rl);
		snprintf(err, errlen, "route '%s': cannot start the listener",
		    r->text);
		return -1;
	}
	*out = rl;
	return 0;
}

int
routes_prepare(struct event_base *base, const struct route *routes,
    size_t n, struct routes_change *ch, char *err, size_t errlen)
{
	struct route_listener *rl;
	size_t i;

	ch->routes = routes;
	ch->n = n;
	TAILQ_INIT(&ch->added);
	for (i = 0; i < n; i++) {
		if (running_on(&routes[i]) != NULL)
			continue;
		if (route_listener_open(base, &routes[i], &rl, err, errlen) ==
		    -1) {
			routes_cancel(ch);
			return -1;
		}
		TAILQ_INSERT_TAIL(&ch->added, rl, link);
	}
	return 0;
}

void
routes_cancel(struct routes_change *ch)
{
	struct route_listener *rl;

	while ((rl = TAILQ_FIRST(&ch->added)) != NULL) {
		TAILQ_REMOVE(&ch->added, rl, link);
		route_listener_free(rl);
	}
}

/* Append to buf what fmt says, cut short when buf is full. */
static void __attribute__((format(printf, 3, 4)))
appendf(char *buf, size_t len, const char *fmt, ...)
{
	size_t used = strlen(buf);
	va_list ap;

	if (used + 1 >= len)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
}

/* The summary of ch, before it is applied. */
static void
describe(const struct routes_change *ch, char *what, size_t whatlen)
{
	size_t nadded = 0, nremoved = 0, nchanged = 0;
	const struct route_listener *rl;
	const struct route *r;
	const char *sep;

	TAILQ_FOREACH(rl, &ch->added, link)
		nadded++;
	TAILQ_FOREACH(rl, &running, link) {
		if ((r = new_on(ch, rl)) == NULL)
			nremoved++;
		else if (!same_route(&rl->route, r))
			nchanged++;
	}
	what[0] = '\0';
	if (nadded + nremoved + nchanged == 0) {
		appendf(what, whatlen, "nothing changed in routes");
		return;
	}
	appendf(what, whatlen, "routes +%zu -%zu", nadded, nremoved);
	if (nchanged > 0)
		appendf(what, whatlen, " ~%zu", nchanged);
	sep = " (";
	if (nadded > 0) {
		appendf(what, whatlen, "%sadded", sep);
		sep = " ";
		TAILQ_FOREACH(rl, &ch->added, link) {
			appendf(what, whatlen, "%s'%s'", sep, rl->route.text);
			sep = ", ";
		}
		sep = "; ";
	}
	if (nremoved > 0) {
		appendf(what, whatlen, "%sremoved", sep);
		sep = " ";
		TAILQ_FOREACH(rl, &running, link) {
			if (new_on(ch, rl) != NULL)
				continue;
			appendf(what, whatlen, "%s'%s'", sep, rl->route.text);
			sep = ", ";
		}
		sep = "; ";
	}
	if (nchanged > 0) {
		appendf(what, whatlen, "%schanged", sep);
		sep = " ";
		TAILQ_FOREACH(rl, &running, link) {
			if ((r = new_on(ch, rl)) == NULL ||
			    same_route(&rl->route, r))
				continue;
			appendf(what, whatlen, "%s'%s' to '%s'", sep,
			    rl->route.text, r->text);
			sep = ", ";
		}
	}
	appendf(what, whatlen, ")");
}

void
routes_commit(struct routes_change *ch, char *what, size_t whatlen)
{
	struct route_listener *rl, *next;
	const struct route *r;

	describe(ch, what, whatlen);
	for (rl = TAILQ_FIRST(&running); rl != NULL; rl = next) {
		next = TAILQ_NEXT(rl, link);
		if ((r = new_on(ch, rl)) != NULL) {
			/* Its connections keep copies of what they need;
			 * new ones get the new source filter and
			 * destination. */
			rl->route = *r;
			rl->metrics_label = metrics_label(
			    client_metrics.routes, r->text);
			continue;
		}
		/* The port stops accepting now; the connections accepted
		 * on it, waiting or spliced, hold nothing of rl. */
		TAILQ_REMOVE(&running, rl, link);
		route_listener_free(rl);
	}
	while ((rl = TAILQ_FIRST(&ch->added)) != NULL) {
		TAILQ_REMOVE(&ch->added, rl, link);
		TAILQ_INSERT_TAIL(&running, rl, link);
		log_info("route '%s' listening on %s%s", rl->route.text,
		    rl->where, rl->dual_stack ? " (IPv4 and IPv6)" : "");
	}
}

void
routes_free_all(void)
{
	struct route_listener *rl;

	while ((rl = TAILQ_FIRST(&running)) != NULL) {
		TAILQ_REMOVE(&running, rl, link);
		route_listener_free(rl);
	}
}
