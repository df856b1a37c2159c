#include "route.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netaddr.h"

#define ROUTE_PARTS_MAX 4

/*
 * Split text at ':' into at most ROUTE_PARTS_MAX parts, keeping bracketed
 * IPv6 literals whole (brackets are removed, *bracketed records which).
 * Returns the number of parts or -1 (err).
 */
static int
split_parts(const char *text, char parts[][ROUTE_HOST_MAX + 3],
    int bracketed[], char *err, size_t errlen)
{
	const char *p = text, *end;
	int n = 0;
	size_t len;

	for (;;) {
		if (n == ROUTE_PARTS_MAX) {
			snprintf(err, errlen, "route '%s': too many ':' parts"
			    " (IPv6 addresses go in brackets)", text);
			return -1;
		}
		bracketed[n] = 0;
		if (*p == '[') {
			if ((end = strchr(p, ']')) == NULL) {
				snprintf(err, errlen, "route '%s': missing ']'",
				    text);
				return -1;
			}
			p++;
			bracketed[n] = 1;
		} else {
			end = strchr(p, ':');
			if (end == NULL)
				end = p + strlen(p);
		}
		len = (size_t)(end - p);
		if (len > ROUTE_HOST_MAX) {
			snprintf(err, errlen, "route '%.40s...': part longer "
			    "than %d characters", text, ROUTE_HOST_MAX);
			return -1;
		}
		memcpy(parts[n], p, len);
		parts[n][len] = '\0';
		n++;
		if (bracketed[n - 1])
			end++;		/* past ']' */
		if (*end == '\0')
			return n;
		if (*end != ':') {
			snprintf(err, errlen, "route '%s': expected ':' after"
			    " ']'", text);
			return -1;
		}
		p = end + 1;
	}
}

/* A route's ports: 1..65535. */
static int
parse_port(const char *s, uint16_t *port)
{
	return netaddr_parse_port(s, port) == -1 || *port == 0 ? -1 : 0;
}

static int
all_digits(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

int
route_host_valid(const char *name)
{
	struct in6_addr a6;
	size_t label = 0, len = strlen(name);
	const char *p;
	int letter = 0;

	if (len == 0 || len > ROUTE_HOST_MAX)
		return 0;
	if (inet_pton(AF_INET6, name, &a6) == 1)
		return 1;
	for (p = name; *p != '\0'; p++) {
		if (*p == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)*p) && *p != '-')
			return 0;
		if (*p == '-' && (label == 0 || p[1] == '.' || p[1] == '\0'))
			return 0;
		if (isalpha((unsigned char)*p) || *p == '-')
			letter = 1;
		if (++label > 63)
			return 0;
	}
	if (letter)
		return 1;
	/* All digits and dots: only a complete dotted-quad IPv4. */
	{
		struct in_addr a4;
		return inet_pton(AF_INET, name, &a4) == 1;
	}
}

/* Parse a source filter literal into ss (port 0). */
static int
parse_source(const char *s, int bracketed, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (bracketed) {
		/* An IPv4-mapped filter ([::ffff:a.b.c.d]) would admit
		 * nobody: IPv4 clients meet an IPv6-only listener, and a
		 * mapped peer counts as IPv4 (route_source_allowed).  The
		 * filter for them is a.b.c.d. */
		if (inet_pton(AF_INET6, s, &sin6->sin6_addr) != 1 ||
		    IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			return -1;
		sin6->sin6_family = AF_INET6;
		return 0;
	}
	if (inet_pton(AF_INET, s, &sin->sin_addr) != 1)
		return -1;
	sin->sin_family = AF_INET;
	return 0;
}

static void
set_listen(struct route *r)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&r->listen;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&r->listen;

	memset(&r->listen, 0, sizeof(r->listen));
	r->listen_dual_stack = 0;
	if (r->has_source && r->source.ss_family == AF_INET) {
		const struct sockaddr_in *src =
		    (const struct sockaddr_in *)&r->source;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(r->listen_port);
		if ((ntohl(src->sin_addr.s_addr) >> 24) == 127)
			sin->sin_addr = src->sin_addr;
		else
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
		r->listen_len = sizeof(*sin);
		return;
	}
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(r->listen_port);
	r->listen_len = sizeof(*sin6);
	if (r->has_source) {
		const struct sockaddr_in6 *src =
		    (const struct sockaddr_in6 *)&r->source;
		if (IN6_IS_ADDR_LOOPBACK(&src->sin6_addr))
			sin6->sin6_addr = src->sin6_addr;
		else
			sin6->sin6_addr = in6addr_any;
		return;
	}
	sin6->sin6_addr = in6addr_any;
	r->listen_dual_stack = 1;
}

/* A route's parts by what they mean (NULL source: anyone may connect). */
struct route_fields {
	const char *source, *listen, *host, *dport;
	int source_bracketed, host_bracketed;
};

/*
 * Say which of the n parts is which: port:port, ip:port:port,
 * port:host:port or ip:port:host:port (a first part of digits only is a
 * port).  Returns 0, or -1 with err set.
 */
static int
route_fields(const char *text, char parts[][ROUTE_HOST_MAX + 3],
    const int *bracketed, int n, struct route_fields *f, char *err,
    size_t errlen)
{
	int i;

	memset(f, 0, sizeof(*f));
	f->host = "127.0.0.1";
	switch (n) {
	case 2:
		f->listen = parts[0];
		f->dport = parts[1];
		break;
	case 3:
		if (!bracketed[0] && all_digits(parts[0])) {
			f->listen = parts[0];	/* port:host:port */
			f->host = parts[1];
			f->host_bracketed = bracketed[1];
		} else {
			f->source = parts[0];	/* ip:port:port */
			f->source_bracketed = bracketed[0];
			f->listen = parts[1];
		}
		f->dport = parts[2];
		break;
	case 4:
		f->source = parts[0];
		f->source_bracketed = bracketed[0];
		f->listen = parts[1];
		f->host = parts[2];
		f->host_bracketed = bracketed[2];
		f->dport = parts[3];
		break;
	default:
		snprintf(err, errlen, "route '%s': expected port:port, "
		    "ip:port:port, port:host:port or ip:port:host:port", text);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (bracketed[i] && parts[i] != f->source &&
		    parts[i] != f->host) {
			snprintf(err, errlen, "route '%s': brackets around a "
			    "port", text);
			return -1;
		}
	}
	return 0;
}

/* Check the destination host (a name, an IPv4 or a bracketed IPv6
 * literal).  Returns 0, or -1 with err set. */
static int
check_destination(const char *text, const struct route_fields *f, char *err,
    size_t errlen)
{
	struct in6_addr a6;

	if (f->host_bracketed) {
		if (inet_pton(AF_INET6, f->host, &a6) != 1) {
			snprintf(err, errlen, "route '%s': '[%s]' is not an IPv6 "
			    "address", text, f->host);
			return -1;
		}
	} else if (!route_host_valid(f->host)) {
		snprintf(err, errlen, "route '%s': destination '%s' is not a "
		    "host name or IP address", text, f->host);
		return -1;
	}
	return 0;
}

int
route_parse(const char *text, struct route *r, char *err, size_t errlen)
{
	char parts[ROUTE_PARTS_MAX][ROUTE_HOST_MAX + 3];
	int bracketed[ROUTE_PARTS_MAX];
	struct route_fields f;
	int n, i;

	memset(r, 0, sizeof(*r));
	if (text[0] == '\0') {
		snprintf(err, errlen, "empty route");
		return -1;
	}
	if (strlen(text) >= sizeof(r->text)) {
		snprintf(err, errlen, "route '%.40s...' is too long", text);
		return -1;
	}
	snprintf(r->text, sizeof(r->text), "%s", text);
	if ((n = split_parts(text, parts, bracketed, err, errlen)) == -1)
		return -1;
	for (i = 0; i < n; i++) {
		if (parts[i][0] == '\0') {
			snprintf(err, errlen, "route '%s': empty part %d",
			    text, i + 1);
			return -1;
		}
	}
	if (route_fields(text, parts, bracketed, n, &f, err, errlen) == -1)
		return -1;
	if (f.source != NULL) {
		if (parse_source(f.source, f.source_bracketed, &r->source) ==
		    -1) {
			snprintf(err, errlen, "route '%s': source '%s' is not "
			    "an %s address", text, f.source,
			    f.source_bracketed ? "IPv6 (for an IPv4-mapped one, "
			    "write the IPv4 address)" : "IPv4 (or [IPv6])");
			return -1;
		}
		r->has_source = 1;
	}
	if (parse_port(f.listen, &r->listen_port) == -1) {
		snprintf(err, errlen, "route '%s': listen port '%s' is not a "
		    "port number (1-65535)", text, f.listen);
		return -1;
	}
	if (check_destination(text, &f, err, errlen) == -1)
		return -1;
	if (parse_port(f.dport, &r->dest_port) == -1) {
		snprintf(err, errlen, "route '%s': destination port '%s' is "
		    "not a port number (1-65535)", text, f.dport);
		return -1;
	}
	/* <= ROUTE_HOST_MAX: split_parts bounds every part. */
	memcpy(r->dest_host, f.host, strlen(f.host) + 1);
	set_listen(r);
	return 0;
}

int
route_parse_list(const char *list, struct route *routes, size_t max,
    size_t *n, char *err, size_t errlen)
{
	char one[2 * ROUTE_HOST_MAX];
	const char *p = list, *comma;
	size_t len, i, count = 0;

	if (list[0] == '\0') {
		snprintf(err, errlen, "no routes given");
		return -1;
	}
	for (;;) {
		comma = strchr(p, ',');
		len = comma ? (size_t)(comma - p) : strlen(p);
		if (len >= sizeof(one)) {
			snprintf(err, errlen, "route '%.40s...' is too long", p);
			return -1;
		}
		memcpy(one, p, len);
		one[len] = '\0';
		if (len == 0) {
			snprintf(err, errlen, "empty route in '%s'", list);
			return -1;
		}
		if (count == max) {
			snprintf(err, errlen, "more than %zu routes", max);
			return -1;
		}
		if (route_parse(one, &routes[count], err, errlen) == -1)
			return -1;
		for (i = 0; i < count; i++) {
			if (routes[i].listen_port ==
			    routes[count].listen_port) {
				snprintf(err, errlen, "routes '%s' and '%s' "
				    "both listen on port %u", routes[i].text,
				    one, routes[count].listen_port);
				return -1;
			}
		}
		count++;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	*n = count;
	return 0;
}

int
route_source_allowed(const struct route *r, const struct sockaddr *addr)
{
	const struct sockaddr_in *want4 =
	    (const struct sockaddr_in *)&r->source;
	const struct sockaddr_in6 *want6 =
	    (const struct sockaddr_in6 *)&r->source;

	if (!r->has_source)
		return 1;
	if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a6 =
		    (const struct sockaddr_in6 *)addr;
		if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
			if (r->source.ss_family != AF_INET)
				return 0;
			return memcmp(&a6->sin6_addr.s6_addr[12],
			    &want4->sin_addr, 4) == 0;
		}
		return r->source.ss_family == AF_INET6 &&
		    IN6_ARE_ADDR_EQUAL(&a6->sin6_addr, &want6->sin6_addr);
	}
	if (addr->sa_family == AF_INET)
		return r->source.ss_family == AF_INET &&
		    ((const struct sockaddr_in *)addr)->sin_addr.s_addr ==
		    want4->sin_addr.s_addr;
	return 0;
}
