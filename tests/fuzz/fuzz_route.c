/*
 * fuzz_route: common/route.c, the entry-point's -r list.
 *
 * The input is the list (cut at a NUL).  A list that parses must hold
 * routes that parse again, each alone from its own text, into the same
 * route; that listen on distinct ports; whose source filter admits its
 * own address (and the IPv4-mapped form of an IPv4 one), and other
 * routes' addresses just when they are the same; and whose listening
 * address follows the filter.
 */
#include "fuzz.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "route.h"

/* sin as an IPv4-mapped IPv6 address. */
static void
mapped(const struct sockaddr_in *sin, struct sockaddr_in6 *sin6)
{
	memset(sin6, 0, sizeof(*sin6));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_addr.s6_addr[10] = 0xff;
	sin6->sin6_addr.s6_addr[11] = 0xff;
	memcpy(&sin6->sin6_addr.s6_addr[12], &sin->sin_addr, 4);
}

/* Is ss an IPv4-mapped IPv6 address? */
static int
is_mapped(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(
	    &((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/* Should a filter on address f admit a connection from a (port 0)?  An
 * IPv4-mapped a counts as IPv4 (route.h). */
static int
admits(const struct sockaddr_storage *f, const struct sockaddr_storage *a)
{
	const uint8_t *a6 = ((const struct sockaddr_in6 *)a)->sin6_addr.s6_addr;

	if (is_mapped(a))
		return f->ss_family == AF_INET && memcmp(a6 + 12,
		    &((const struct sockaddr_in *)f)->sin_addr, 4) == 0;
	if (a->ss_family != f->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
		    &((const struct sockaddr_in *)f)->sin_addr, 4) == 0;
	return memcmp(a6, ((const struct sockaddr_in6 *)f)->sin6_addr.s6_addr,
	    16) == 0;
}

static void
check_route(const struct route *r, char *err, size_t errlen)
{
	const struct sockaddr_in *lsin = (const struct sockaddr_in *)&r->listen;
	const struct sockaddr_in6 *lsin6 =
	    (const struct sockaddr_in6 *)&r->listen;
	struct sockaddr_in6 m;
	struct route again;

	FUZZ_CHECK(r->listen_port != 0 && r->dest_port != 0);
	FUZZ_CHECK(strlen(r->dest_host) >= 1 &&
	    strlen(r->dest_host) <= ROUTE_HOST_MAX);
	FUZZ_CHECK(route_host_valid(r->dest_host));
	/* Its own text, alone, is the same route. */
	FUZZ_CHECK(route_parse(r->text, &again, err, errlen) == 0);
	FUZZ_CHECK(memcmp(&again, r, sizeof(again)) == 0);
	/* A filter admits itself (an IPv4-mapped one, which admitted
	 * nobody, is refused since: tests/fuzz/README.md, "Findings"). */
	FUZZ_CHECK(!r->has_source || !is_mapped(&r->source));
	if (r->has_source) {
		FUZZ_CHECK(route_source_allowed(r,
		    (const struct sockaddr *)&r->source) == 1);
		if (r->source.ss_family == AF_INET) {
			mapped((const struct sockaddr_in *)&r->source, &m);
			FUZZ_CHECK(route_source_allowed(r,
			    (const struct sockaddr *)&m) == 1);
		}
	}
	if (r->has_source && r->source.ss_family == AF_INET) {
		FUZZ_CHECK(r->listen.ss_family == AF_INET);
		FUZZ_CHECK(r->listen_len == sizeof(struct sockaddr_in));
		FUZZ_CHECK(ntohs(lsin->sin_port) == r->listen_port);
		FUZZ_CHECK(!r->listen_dual_stack);
	} else {
		FUZZ_CHECK(r->listen.ss_family == AF_INET6);
		FUZZ_CHECK(r->listen_len == sizeof(struct sockaddr_in6));
		FUZZ_CHECK(ntohs(lsin6->sin6_port) == r->listen_port);
		FUZZ_CHECK(r->listen_dual_stack == !r->has_source);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct route *routes;
	char err[512], *text;
	size_t n = 0, i, j;
	int r;

	if ((text = fuzz_string(data, size)) == NULL)
		return 0;
	if ((routes = calloc(ROUTE_MAX, sizeof(*routes))) == NULL) {
		free(text);
		return 0;
	}
	(void)route_host_valid(text);
	err[0] = '\0';
	r = route_parse_list(text, routes, ROUTE_MAX, &n, err, sizeof(err));
	FUZZ_CHECK(r == 0 || r == -1);
	if (r == -1) {
		FUZZ_CHECK(FUZZ_TERMINATED(err, sizeof(err)) && err[0] != '\0');
		goto done;
	}
	FUZZ_CHECK(n >= 1 && n <= ROUTE_MAX);
	for (i = 0; i < n; i++) {
		check_route(&routes[i], err, sizeof(err));
		for (j = 0; j < n; j++) {
			if (j == i)
				continue;
			FUZZ_CHECK(routes[i].listen_port !=
			    routes[j].listen_port);
			if (routes[i].has_source && routes[j].has_source)
				FUZZ_CHECK(route_source_allowed(&routes[i],
				    (const struct sockaddr *)&routes[j].source)
				    == admits(&routes[i].source,
				    &routes[j].source));
		}
	}
done:
	free(routes);
	free(text);
	return 0;
}
