/*
 * route: the entry-point's -r/--routes list.
 *
 *   port:port              listen on port, anyone,   to 127.0.0.1:port
 *   ip:port:port           listen on port, only ip,  to 127.0.0.1:port
 *   port:host:port         listen on port, anyone,   to host:port
 *   ip:port:host:port      listen on port, only ip,  to host:port
 *
 * ip is an IPv4 literal or an IPv6 literal in brackets; host is an IP
 * literal (IPv6 in brackets) or a DNS name, resolved by the reverse-proxy.
 * Where the source filter is a loopback address the listener binds to it;
 * otherwise to the wildcard address of the filter's family, or to the
 * dual-stack wildcard when there is no filter.
 */
#ifndef ROUTE_H
#define ROUTE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ROUTE_HOST_MAX 253	/* longest DNS name */
#define ROUTE_MAX 64		/* routes in one list */

struct route {
	char text[2 * ROUTE_HOST_MAX];	/* as given, for log lines */
	int has_source;			/* source filter present */
	struct sockaddr_storage source;	/* filter address, port 0 */
	struct sockaddr_storage listen;	/* where to listen, with port */
	socklen_t listen_len;
	int listen_dual_stack;		/* listen is [::], accept IPv4 too */
	uint16_t listen_port;
	char dest_host[ROUTE_HOST_MAX + 1];	/* without brackets */
	uint16_t dest_port;
};

/*
 * Parse one route.  Returns 0, or -1 with a message naming what is wrong
 * in err.
 */
int route_parse(const char *text, struct route *r, char *err, size_t errlen);

/*
 * Parse a comma-separated list into routes[0..*n-1] (at most max).
 * Refuses an empty list, an empty element and two routes on one port.
 * Returns 0 or -1 (err).
 */
int route_parse_list(const char *list, struct route *routes, size_t max,
    size_t *n, char *err, size_t errlen);

/*
 * Is addr (as accepted, IPv4-mapped IPv6 counts as IPv4) allowed by r's
 * source filter?  Returns 1 or 0.
 */
int route_source_allowed(const struct route *r, const struct sockaddr *addr);

/*
 * Is name a valid destination host: a DNS name (letters, digits, '-',
 * dots, labels of 1-63 characters, not all digits) or an IP literal
 * without brackets?  Returns 1 or 0.
 */
int route_host_valid(const char *name);

#endif
