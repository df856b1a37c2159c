/*
 * entry-point: what main.c and routes.c share.
 *
 * Each route listens through a route_listener of its own, allocated
 * apart from the others so that a reload that adds or removes routes
 * never moves one that stays (its listener's accept callback holds a
 * pointer to it).
 */
#ifndef ENTRY_H
#define ENTRY_H

#include <stddef.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/util.h>

#include "netaddr.h"
#include "route.h"

struct event_base;
struct listener;

struct route_listener {
	struct route route;		/* as parsed, the listen address too */
	struct listener *listener;
	char where[NETADDR_STRLEN];	/* the address it is bound to */
	int dual_stack;			/* where is [::], IPv4 too */
	unsigned metrics_label;		/* its route's series (metrics.c) */
	TAILQ_ENTRY(route_listener) link;
};

TAILQ_HEAD(route_list, route_listener);

/* A new route list, its new listeners opened but not yet serving. */
struct routes_change {
	const struct route *routes;	/* the new list (the caller's) */
	size_t n;
	struct route_list added;
};

/* main.c: a connection accepted on a route (arg: its route_listener). */
void entry_accept(evutil_socket_t fd, struct sockaddr *addr, void *arg);

/*
 * Open listeners for the routes of routes[0..n-1] that are new: those
 * whose listen address no running route has.  routes must stay until
 * routes_commit or routes_cancel.  Returns 0, or -1 with err naming the
 * route, nothing changed.
 */
int routes_prepare(struct event_base *base, const struct route *routes,
    size_t n, struct routes_change *ch, char *err, size_t errlen);

/* Close the listeners routes_prepare opened. */
void routes_cancel(struct routes_change *ch);

/*
 * Make ch's list the running one: the added routes start serving, the
 * removed ones stop listening (their connections go on), the others keep
 * their listeners and take the new route's fields.  what: a summary
 * ("routes +1 -1 (added '5003:5003'; removed '5001:5001')").
 */
void routes_commit(struct routes_change *ch, char *what, size_t whatlen);

/* Close every route's listener (at exit). */
void routes_free_all(void);

/* metrics.c: the entry-point's series (--metrics); 0 or -1. */
enum entry_limit {
	ENTRY_LIMIT_CONNECTIONS,	/* --max-connections */
	ENTRY_LIMIT_WAITING,		/* --max-waiting */
	ENTRY_LIMIT_WAIT_TIMEOUT,	/* --wait-timeout */
};
int entry_metrics_init(void);

/* A user connection refused or closed at limit (n of them). */
void entry_metrics_limit(enum entry_limit limit, unsigned n);

/* A reload worked (ok 1) or failed. */
void entry_metrics_reload(int ok);

#endif
