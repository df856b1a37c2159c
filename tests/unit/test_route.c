/*
 * Unit tests for common/route.c: the entry-point's -r/--routes list.
 *
 * Read top to bottom: the four formats, IPv6 and host names, where the
 * listener binds, the source filter, lists, and then every kind of bad
 * route with the message the operator sees.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "route.h"

/* Fail with the message when err does not contain needle. */
#define assert_err_contains(err, needle) do {				\
	if (strstr((err), (needle)) == NULL)				\
		fail_msg("error \"%s\" does not contain \"%s\"",	\
		    (err), (needle));					\
} while (0)

/* Parse text, which must be a good route. */
static void
parse_ok(const char *text, struct route *r)
{
	char err[256] = "";

	if (route_parse(text, r, err, sizeof(err)) != 0)
		fail_msg("route '%s' refused: %s", text, err);
	assert_string_equal(r->text, text);
}

/* Parse text, which must be refused with a message holding needle. */
static void
parse_fails(const char *text, const char *needle)
{
	struct route r;
	char err[512] = "";

	if (route_parse(text, &r, err, sizeof(err)) != -1)
		fail_msg("route '%s' accepted", text);
	assert_err_contains(err, needle);
}

/* The listen address of r, printed without the port. */
static const char *
listen_address(const struct route *r)
{
	static char buf[INET6_ADDRSTRLEN];
	const void *addr;

	if (r->listen.ss_family == AF_INET)
		addr = &((const struct sockaddr_in *)&r->listen)->sin_addr;
	else
		addr = &((const struct sockaddr_in6 *)&r->listen)->sin6_addr;
	assert_non_null(inet_ntop(r->listen.ss_family, addr, buf,
	    sizeof(buf)));
	return buf;
}

static uint16_t
listen_port(const struct route *r)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&r->listen;
	const struct sockaddr_in6 *sin6 =
	    (const struct sockaddr_in6 *)&r->listen;

	if (r->listen.ss_family == AF_INET)
		return ntohs(sin->sin_port);
	return ntohs(sin6->sin6_port);
}

/* The source filter of r, printed. */
static const char *
source_address(const struct route *r)
{
	static char buf[INET6_ADDRSTRLEN];
	const void *addr;

	if (r->source.ss_family == AF_INET)
		addr = &((const struct sockaddr_in *)&r->source)->sin_addr;
	else
		addr = &((const struct sockaddr_in6 *)&r->source)->sin6_addr;
	assert_non_null(inet_ntop(r->source.ss_family, addr, buf,
	    sizeof(buf)));
	return buf;
}

/* Peers, as accept() would give them. */
static struct sockaddr_in
peer4(const char *ip)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(40000);
	assert_int_equal(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
	return sin;
}

static struct sockaddr_in6
peer6(const char *ip)
{
	struct sockaddr_in6 sin6;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(40000);
	assert_int_equal(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
	return sin6;
}

/* A valid host name of exactly ROUTE_HOST_MAX characters. */
static void
longest_host(char buf[ROUTE_HOST_MAX + 1])
{
	memset(buf, 'a', ROUTE_HOST_MAX);
	buf[63] = buf[127] = buf[191] = '.';	/* labels of 63, 63, 63, 61 */
	buf[ROUTE_HOST_MAX] = '\0';
}

/* --- the four formats --- */

static void
test_port_port(void **state)
{
	struct route r;

	(void)state;
	parse_ok("8080:22", &r);
	assert_int_equal(r.has_source, 0);
	assert_int_equal(r.listen_port, 8080);
	assert_string_equal(r.dest_host, "127.0.0.1");
	assert_int_equal(r.dest_port, 22);
}

static void
test_ip_port_port(void **state)
{
	struct route r;

	(void)state;
	parse_ok("10.1.2.3:8080:22", &r);
	assert_int_equal(r.has_source, 1);
	assert_int_equal(r.source.ss_family, AF_INET);
	assert_string_equal(source_address(&r), "10.1.2.3");
	assert_int_equal(r.listen_port, 8080);
	assert_string_equal(r.dest_host, "127.0.0.1");
	assert_int_equal(r.dest_port, 22);
}

static void
test_port_host_port(void **state)
{
	struct route r;

	(void)state;
	parse_ok("8080:10.0.0.5:5432", &r);
	assert_int_equal(r.has_source, 0);
	assert_int_equal(r.listen_port, 8080);
	assert_string_equal(r.dest_host, "10.0.0.5");
	assert_int_equal(r.dest_port, 5432);
}

static void
test_ip_port_host_port(void **state)
{
	struct route r;

	(void)state;
	parse_ok("192.0.2.7:2222:10.0.0.5:22", &r);
	assert_int_equal(r.has_source, 1);
	assert_string_equal(source_address(&r), "192.0.2.7");
	assert_int_equal(r.listen_port, 2222);
	assert_string_equal(r.dest_host, "10.0.0.5");
	assert_int_equal(r.dest_port, 22);
}

static void
test_extreme_ports(void **state)
{
	struct route r;

	(void)state;
	parse_ok("1:65535", &r);
	assert_int_equal(r.listen_port, 1);
	assert_int_equal(r.dest_port, 65535);
}

/* --- IPv6 and host names --- */

static void
test_ipv6_source_and_destination(void **state)
{
	struct route r;

	(void)state;
	parse_ok("[::1]:8080:[fd00::5]:22", &r);
	assert_int_equal(r.has_source, 1);
	assert_int_equal(r.source.ss_family, AF_INET6);
	assert_string_equal(source_address(&r), "::1");
	assert_int_equal(r.listen_port, 8080);
	assert_string_equal(r.dest_host, "fd00::5");	/* no brackets */
	assert_int_equal(r.dest_port, 22);
}

static void
test_ipv6_source_with_local_destination(void **state)
{
	struct route r;

	(void)state;
	parse_ok("[2001:db8::7]:8080:22", &r);
	assert_int_equal(r.has_source, 1);
	assert_string_equal(source_address(&r), "2001:db8::7");
	assert_string_equal(r.dest_host, "127.0.0.1");
	assert_int_equal(r.dest_port, 22);
}

static void
test_ipv6_destination_without_source(void **state)
{
	struct route r;

	(void)state;
	parse_ok("8080:[fd00::5]:443", &r);
	assert_int_equal(r.has_source, 0);
	assert_string_equal(r.dest_host, "fd00::5");
	assert_int_equal(r.dest_port, 443);
}

static void
test_host_names(void **state)
{
	char host[ROUTE_HOST_MAX + 1], text[ROUTE_HOST_MAX + 16];
	struct route r;

	(void)state;
	parse_ok("8080:db.internal:5432", &r);
	assert_string_equal(r.dest_host, "db.internal");
	parse_ok("10.0.0.1:8080:localhost:80", &r);
	assert_string_equal(r.dest_host, "localhost");
	parse_ok("8080:web-1.example.com:80", &r);
	assert_string_equal(r.dest_host, "web-1.example.com");

	longest_host(host);
	snprintf(text, sizeof(text), "8080:%s:22", host);
	parse_ok(text, &r);
	assert_string_equal(r.dest_host, host);
}

/* --- where the listener binds --- */

static void
test_listen_loopback_ipv4_filter_binds_it(void **state)
{
	struct route r;

	(void)state;
	parse_ok("127.0.0.2:8080:22", &r);
	assert_int_equal(r.listen.ss_family, AF_INET);
	assert_string_equal(listen_address(&r), "127.0.0.2");
	assert_int_equal(listen_port(&r), 8080);
	assert_int_equal(r.listen_len, sizeof(struct sockaddr_in));
	assert_int_equal(r.listen_dual_stack, 0);
}

static void
test_listen_loopback_ipv6_filter_binds_it(void **state)
{
	struct route r;

	(void)state;
	parse_ok("[::1]:8080:22", &r);
	assert_int_equal(r.listen.ss_family, AF_INET6);
	assert_string_equal(listen_address(&r), "::1");
	assert_int_equal(listen_port(&r), 8080);
	assert_int_equal(r.listen_len, sizeof(struct sockaddr_in6));
	assert_int_equal(r.listen_dual_stack, 0);
}

static void
test_listen_other_ipv4_filter_binds_wildcard(void **state)
{
	struct route r;

	(void)state;
	parse_ok("192.0.2.7:8080:22", &r);
	assert_int_equal(r.listen.ss_family, AF_INET);
	assert_string_equal(listen_address(&r), "0.0.0.0");
	assert_int_equal(listen_port(&r), 8080);
	assert_int_equal(r.listen_len, sizeof(struct sockaddr_in));
	assert_int_equal(r.listen_dual_stack, 0);
}

static void
test_listen_other_ipv6_filter_binds_wildcard(void **state)
{
	struct route r;

	(void)state;
	parse_ok("[2001:db8::7]:8080:22", &r);
	assert_int_equal(r.listen.ss_family, AF_INET6);
	assert_string_equal(listen_address(&r), "::");
	assert_int_equal(listen_port(&r), 8080);
	assert_int_equal(r.listen_dual_stack, 0);	/* IPv6 only */
}

static void
test_listen_no_filter_binds_dual_stack(void **state)
{
	struct route r;

	(void)state;
	parse_ok("9000:db.internal:5432", &r);
	assert_int_equal(r.listen.ss_family, AF_INET6);
	assert_string_equal(listen_address(&r), "::");
	assert_int_equal(listen_port(&r), 9000);
	assert_int_equal(r.listen_len, sizeof(struct sockaddr_in6));
	assert_int_equal(r.listen_dual_stack, 1);
}

/* --- the source filter --- */

static void
test_source_allowed_without_filter(void **state)
{
	struct sockaddr_in a4 = peer4("198.51.100.1");
	struct sockaddr_in6 a6 = peer6("2001:db8::1");
	struct route r;

	(void)state;
	parse_ok("8080:22", &r);
	assert_int_equal(route_source_allowed(&r, (struct sockaddr *)&a4), 1);
	assert_int_equal(route_source_allowed(&r, (struct sockaddr *)&a6), 1);
}

static void
test_source_allowed_ipv4_filter(void **state)
{
	struct sockaddr_in same = peer4("10.1.2.3"), other = peer4("10.1.2.4");
	struct sockaddr_in6 v6 = peer6("2001:db8::1");
	struct route r;

	(void)state;
	parse_ok("10.1.2.3:8080:22", &r);
	assert_int_equal(route_source_allowed(&r, (struct sockaddr *)&same), 1);
	assert_int_equal(route_source_allowed(&r, (struct sockaddr *)&other),
	    0);
	assert_int_equal(route_source_allowed(&r, (struct sockaddr *)&v6), 0);
}

static void
test_source_allowed_ipv4_mapped_peer(void **state)
{
	struct sockaddr_in6 same = peer6("::ffff:10.1.2.3");
	struct sockaddr_in6 other = peer6("::ffff:10.1.2.4");
	struct route r;

	(void)state;
	parse_ok("10.1.2.3:8080:22", &r);
	assert_int_equal(route_source_allowed(&r, (struct sockaddr *)&same), 1);
	assert_int_equal(route_source_allowed(&r, (struct sockaddr *)&other),
	    0);
}

static void
test_source_allowed_ipv6_filter(void **state)
{
	struct sockaddr_in6 same = peer6("2001:db8::7");
	struct sockaddr_in6 other = peer6("2001:db8::8");
	struct sockaddr_in6 mapped = peer6("::ffff:127.0.0.1");
	struct sockaddr_in v4 = peer4("127.0.0.1");
	struct route r;

	(void)state;
	parse_ok("[2001:db8::7]:8080:22", &r);
	assert_int_equal(route_source_allowed(&r, (struct sockaddr *)&same), 1);
	assert_int_equal(route_source_allowed(&r, (struct sockaddr *)&other),
	    0);

	/* An IPv6 filter never lets an IPv4 peer in, mapped or not. */
	parse_ok("[::1]:8080:22", &r);
	assert_int_equal(route_source_allowed(&r, (struct sockaddr *)&mapped),
	    0);
	assert_int_equal(route_source_allowed(&r, (struct sockaddr *)&v4), 0);
}

/* --- lists --- */

static void
test_list_of_several_routes(void **state)
{
	struct route routes[ROUTE_MAX];
	char err[256] = "";
	size_t n = 0;

	(void)state;
	if (route_parse_list("8080:22,127.0.0.1:9090:db.internal:5432,"
	    "[::1]:7070:[fd00::1]:443", routes, ROUTE_MAX, &n, err,
	    sizeof(err)) != 0)
		fail_msg("list refused: %s", err);
	assert_int_equal(n, 3);
	assert_string_equal(routes[0].text, "8080:22");
	assert_int_equal(routes[0].listen_port, 8080);
	assert_int_equal(routes[0].dest_port, 22);
	assert_string_equal(routes[1].text, "127.0.0.1:9090:db.internal:5432");
	assert_int_equal(routes[1].has_source, 1);
	assert_string_equal(routes[1].dest_host, "db.internal");
	assert_int_equal(routes[1].dest_port, 5432);
	assert_int_equal(routes[2].listen_port, 7070);
	assert_string_equal(routes[2].dest_host, "fd00::1");
}

static void
test_list_of_one_route(void **state)
{
	struct route routes[ROUTE_MAX];
	char err[256] = "";
	size_t n = 0;

	(void)state;
	assert_int_equal(route_parse_list("8080:22", routes, ROUTE_MAX, &n,
	    err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(routes[0].listen_port, 8080);
}

static void
test_list_refuses_two_routes_on_one_port(void **state)
{
	struct route routes[ROUTE_MAX];
	char err[256] = "";
	size_t n = 0;

	(void)state;
	assert_int_equal(route_parse_list("8080:22,9090:23,10.0.0.1:8080:24",
	    routes, ROUTE_MAX, &n, err, sizeof(err)), -1);
	assert_err_contains(err, "both listen on port 8080");
	assert_err_contains(err, "'8080:22'");
	assert_err_contains(err, "'10.0.0.1:8080:24'");
}

static void
test_list_refuses_empty_element(void **state)
{
	struct route routes[ROUTE_MAX];
	char err[256] = "";
	size_t n = 0;

	(void)state;
	assert_int_equal(route_parse_list("8080:22,,9090:22", routes,
	    ROUTE_MAX, &n, err, sizeof(err)), -1);
	assert_err_contains(err, "empty route");

	err[0] = '\0';
	assert_int_equal(route_parse_list("8080:22,", routes, ROUTE_MAX, &n,
	    err, sizeof(err)), -1);
	assert_err_contains(err, "empty route");

	err[0] = '\0';
	assert_int_equal(route_parse_list(",8080:22", routes, ROUTE_MAX, &n,
	    err, sizeof(err)), -1);
	assert_err_contains(err, "empty route");
}

static void
test_list_refuses_empty_list(void **state)
{
	struct route routes[ROUTE_MAX];
	char err[256] = "";
	size_t n = 0;

	(void)state;
	assert_int_equal(route_parse_list("", routes, ROUTE_MAX, &n, err,
	    sizeof(err)), -1);
	assert_err_contains(err, "no routes");
}

static void
test_list_refuses_more_than_max(void **state)
{
	struct route routes[2];
	char err[256] = "";
	size_t n = 0;

	(void)state;
	assert_int_equal(route_parse_list("1:22,2:22,3:22", routes, 2, &n, err,
	    sizeof(err)), -1);
	assert_err_contains(err, "more than 2 routes");
}

static void
test_list_reports_the_bad_route(void **state)
{
	struct route routes[ROUTE_MAX];
	char err[256] = "";
	size_t n = 0;

	(void)state;
	assert_int_equal(route_parse_list("8080:22,9090:0", routes, ROUTE_MAX,
	    &n, err, sizeof(err)), -1);
	assert_err_contains(err, "route '9090:0'");
	assert_err_contains(err, "destination port '0'");
}

/* --- bad routes, each with its message --- */

static void
test_bad_empty(void **state)
{
	(void)state;
	parse_fails("", "empty route");
}

static void
test_bad_port_zero(void **state)
{
	(void)state;
	parse_fails("0:22", "listen port '0' is not a port number");
	parse_fails("8080:0", "destination port '0' is not a port number");
	parse_fails("8080:db.internal:0", "destination port '0'");
}

static void
test_bad_port_too_large(void **state)
{
	(void)state;
	parse_fails("65536:22", "listen port '65536' is not a port number");
	parse_fails("8080:65536", "destination port '65536'");
	parse_fails("8080:100000", "destination port '100000'");
}

static void
test_bad_port_not_a_number(void **state)
{
	(void)state;
	parse_fails("http:22", "listen port 'http' is not a port number");
	parse_fails("8080:ssh", "destination port 'ssh'");
	parse_fails("10.0.0.1:80a:22", "listen port '80a'");
	parse_fails("8080:-22", "destination port '-22'");
}

static void
test_bad_missing_parts(void **state)
{
	(void)state;
	parse_fails("8080:", "empty part 2");
	parse_fails(":22", "empty part 1");
	parse_fails("10.0.0.1::22", "empty part 2");
	parse_fails("8080", "expected port:port, ip:port:port");
}

static void
test_bad_junk(void **state)
{
	(void)state;
	parse_fails("abc", "expected port:port");
	parse_fails("1:2:3:4:5", "too many ':' parts");
	parse_fails("8080:22 ", "destination port '22 '");
}

static void
test_bad_unbracketed_ipv6(void **state)
{
	(void)state;
	parse_fails("::1:8080:22", "IPv6 addresses go in brackets");
	parse_fails("8080:fd00::5:22", "IPv6 addresses go in brackets");
	parse_fails("[::1]:8080:fd00::5:22", "IPv6 addresses go in brackets");
}

static void
test_bad_brackets(void **state)
{
	(void)state;
	parse_fails("[::1:8080:22", "missing ']'");
	parse_fails("[::1]8080:22", "expected ':' after ']'");
	parse_fails("[8080]:22", "brackets around a port");
	parse_fails("8080:[fd00::5]:[22]", "brackets around a port");
}

static void
test_bad_ipv4_source(void **state)
{
	(void)state;
	parse_fails("10.0.0.256:8080:22", "source '10.0.0.256' is not an IPv4");
	/* Found by fuzz_route: an IPv4-mapped filter admitted nobody. */
	parse_fails("[::ffff:127.0.0.1]:18080:80", "source '::ffff:127.0.0.1' is "
	    "not an IPv6 (for an IPv4-mapped one, write the IPv4 address)");
	parse_fails("10.0.0:8080:22", "source '10.0.0' is not an IPv4");
	parse_fails("localhost:8080:db.internal:22",
	    "source 'localhost' is not an IPv4");
}

static void
test_bad_brackets_around_non_ipv6(void **state)
{
	(void)state;
	parse_fails("8080:[db.internal]:22",
	    "'[db.internal]' is not an IPv6 address");
	parse_fails("8080:[10.0.0.5]:22", "'[10.0.0.5]' is not an IPv6");
	parse_fails("[10.0.0.1]:8080:22", "source '10.0.0.1' is not an IPv6");
}

static void
test_bad_all_digit_host(void **state)
{
	(void)state;
	parse_fails("8080:123:22", "destination '123' is not a host name");
	parse_fails("8080:10.0.0:22", "destination '10.0.0' is not a host");
}

static void
test_bad_host_name(void **state)
{
	char text[128];

	(void)state;
	parse_fails("8080:-db:22", "destination '-db'");
	parse_fails("8080:db-.internal:22", "destination 'db-.internal'");
	parse_fails("8080:db..internal:22", "destination 'db..internal'");
	parse_fails("8080:db_1:22", "destination 'db_1'");

	/* A label of 64 characters is one too many. */
	snprintf(text, sizeof(text), "8080:%.64s.internal:22",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	parse_fails(text, "is not a host name");
}

static void
test_bad_over_long_host(void **state)
{
	char host[ROUTE_HOST_MAX + 2], text[ROUTE_HOST_MAX + 16];

	(void)state;
	longest_host(host);
	host[ROUTE_HOST_MAX] = 'a';		/* 254 characters */
	host[ROUTE_HOST_MAX + 1] = '\0';
	snprintf(text, sizeof(text), "8080:%s:22", host);
	parse_fails(text, "longer than 253 characters");
}

static void
test_bad_over_long_route(void **state)
{
	char text[2 * ROUTE_HOST_MAX + 8];

	(void)state;
	memset(text, '1', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	parse_fails(text, "is too long");
}

static void
test_host_valid(void **state)
{
	(void)state;
	assert_int_equal(route_host_valid("db.internal"), 1);
	assert_int_equal(route_host_valid("localhost"), 1);
	assert_int_equal(route_host_valid("10.0.0.5"), 1);
	assert_int_equal(route_host_valid("fd00::5"), 1);
	assert_int_equal(route_host_valid("0x1f.example"), 1);
	assert_int_equal(route_host_valid(""), 0);
	assert_int_equal(route_host_valid("123"), 0);
	assert_int_equal(route_host_valid("1.2.3"), 0);
	assert_int_equal(route_host_valid(".internal"), 0);
	assert_int_equal(route_host_valid("[fd00::5]"), 0);
	assert_int_equal(route_host_valid("db internal"), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_port_port),
		cmocka_unit_test(test_ip_port_port),
		cmocka_unit_test(test_port_host_port),
		cmocka_unit_test(test_ip_port_host_port),
		cmocka_unit_test(test_extreme_ports),
		cmocka_unit_test(test_ipv6_source_and_destination),
		cmocka_unit_test(test_ipv6_source_with_local_destination),
		cmocka_unit_test(test_ipv6_destination_without_source),
		cmocka_unit_test(test_host_names),
		cmocka_unit_test(test_listen_loopback_ipv4_filter_binds_it),
		cmocka_unit_test(test_listen_loopback_ipv6_filter_binds_it),
		cmocka_unit_test(test_listen_other_ipv4_filter_binds_wildcard),
		cmocka_unit_test(test_listen_other_ipv6_filter_binds_wildcard),
		cmocka_unit_test(test_listen_no_filter_binds_dual_stack),
		cmocka_unit_test(test_source_allowed_without_filter),
		cmocka_unit_test(test_source_allowed_ipv4_filter),
		cmocka_unit_test(test_source_allowed_ipv4_mapped_peer),
		cmocka_unit_test(test_source_allowed_ipv6_filter),
		cmocka_unit_test(test_list_of_several_routes),
		cmocka_unit_test(test_list_of_one_route),
		cmocka_unit_test(test_list_refuses_two_routes_on_one_port),
		cmocka_unit_test(test_list_refuses_empty_element),
		cmocka_unit_test(test_list_refuses_empty_list),
		cmocka_unit_test(test_list_refuses_more_than_max),
		cmocka_unit_test(test_list_reports_the_bad_route),
		cmocka_unit_test(test_bad_empty),
		cmocka_unit_test(test_bad_port_zero),
		cmocka_unit_test(test_bad_port_too_large),
		cmocka_unit_test(test_bad_port_not_a_number),
		cmocka_unit_test(test_bad_missing_parts),
		cmocka_unit_test(test_bad_junk),
		cmocka_unit_test(test_bad_unbracketed_ipv6),
		cmocka_unit_test(test_bad_brackets),
		cmocka_unit_test(test_bad_ipv4_source),
		cmocka_unit_test(test_bad_brackets_around_non_ipv6),
		cmocka_unit_test(test_bad_all_digit_host),
		cmocka_unit_test(test_bad_host_name),
		cmocka_unit_test(test_bad_over_long_host),
		cmocka_unit_test(test_bad_over_long_route),
		cmocka_unit_test(test_host_valid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
