/*
 * Unit tests for common/allow.c: the reverse-proxy's destination
 * allow-list (--allow RULES).
 *
 * Nothing here touches the network: addresses are made with inet_pton,
 * and the one call to getaddrinfo is AI_NUMERICHOST (no DNS), to check
 * that allow_literal takes for a literal exactly what the reverse-proxy
 * would dial without asking DNS.
 *
 * Read top to bottom: every form of rule and how allow_describe writes it
 * back; ports (N, N-M, *); IPv4 and IPv6 prefixes with addresses just
 * inside and just outside; IPv4-mapped, IPv4-compatible and NAT64
 * addresses; host names and "*." names; the default list (link-local
 * refused) and an explicit list that allows link-local; IP literals,
 * in every form glibc reads; allow_describe; the limits; and then every
 * kind of bad rule with the exact message the operator sees.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "allow.h"

/* Parse text, which must be a good rule list. */
static void
parse_ok(const char *text, struct allow_list *l)
{
	char err[512] = "";

	if (allow_parse(text, l, err, sizeof(err)) != 0)
		fail_msg("rules '%s' refused: %s", text, err);
}

/* Parse text, which must be refused with exactly the message want, and
 * leave a list that allows nothing. */
static void
parse_fails(const char *text, const char *want)
{
	struct allow_list l;
	char err[512] = "";

	if (allow_parse(text, &l, err, sizeof(err)) != -1) {
		allow_free(&l);
		fail_msg("rules '%.60s' accepted", text);
	}
	if (strcmp(err, want) != 0)
		fail_msg("rules '%.60s': error \"%s\", expected \"%s\"", text,
		    err, want);
	assert_null(l.rules);
	assert_int_equal(l.n, 0);
	assert_int_equal(l.is_default, 0);
}

/* The list's description (a static buffer). */
static const char *
describe(const struct allow_list *l)
{
	static char buf[4096];

	allow_describe(l, buf, sizeof(buf));
	return buf;
}

/* Parse text and check that it is described as want. */
static void
canonical(const char *text, const char *want)
{
	struct allow_list l;

	parse_ok(text, &l);
	if (strcmp(describe(&l), want) != 0)
		fail_msg("rules '%s' described as '%s', expected '%s'", text,
		    describe(&l), want);
	allow_free(&l);
}

/* allow_address on ip (IPv6 when it has a ':'), port. */
static int
check_ip(const struct allow_list *l, const char *ip, uint16_t port)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	if (strchr(ip, ':') != NULL) {
		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons(9);	/* not looked at */
		if (inet_pton(AF_INET6, ip, &sin6.sin6_addr) != 1)
			fail_msg("bad test address %s", ip);
		return allow_address(l, (struct sockaddr *)&sin6, port);
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(9);
	if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1)
		fail_msg("bad test address %s", ip);
	return allow_address(l, (struct sockaddr *)&sin, port);
}

/* The address ip, port must be allowed (want 1) or refused (want 0). */
static void
expect_ip(const struct allow_list *l, const char *ip, uint16_t port,
    int want)
{
	int got = check_ip(l, ip, port);

	if (got != want)
		fail_msg("%s port %u %s by '%s', expected %s", ip, port,
		    got ? "allowed" : "refused", describe(l),
		    want ? "allowed" : "refused");
}

/* The same for a host name and allow_name. */
static void
expect_name(const struct allow_list *l, const char *host, uint16_t port,
    int want)
{
	int got = allow_name(l, host, port);

	if (got != want)
		fail_msg("name '%s' port %u %s by '%s', expected %s", host,
		    port, got ? "allowed" : "not allowed", describe(l),
		    want ? "allowed" : "not allowed");
}

/* The same for allow_literal: want_literal, and if so, its verdict. */
static void
expect_literal(const struct allow_list *l, const char *host, uint16_t port,
    int want_literal, int want)
{
	int is_literal = -1, got = allow_literal(l, host, port, &is_literal);

	if (is_literal != want_literal)
		fail_msg("'%s': is_literal %d, expected %d", host, is_literal,
		    want_literal);
	if (got != want)
		fail_msg("literal '%s' port %u: %d by '%s', expected %d", host,
		    port, got, describe(l), want);
}

/* --- every form, written back --- */

static void
test_forms_and_canonical_text(void **state)
{
	(void)state;
	canonical("10.0.0.0/8:22", "10.0.0.0/8:22");
	canonical("192.0.2.7", "192.0.2.7");
	canonical("192.0.2.7/32", "192.0.2.7");
	canonical("[fd00::/8]:22", "[fd00::/8]:22");
	canonical("[::1]", "[::1]");
	canonical("[::1/128]", "[::1]");
	canonical("[fd00::1]:443", "[fd00::1]:443");
	canonical("[FD00:0:0::1]:443", "[fd00::1]:443");
	canonical("db.internal:5432", "db.internal:5432");
	canonical("DB.Internal.:5432", "db.internal:5432");
	canonical("*.Corp.Example:443", "*.corp.example:443");
	canonical("host:*", "host");
	canonical("host:1-65535", "host");
	canonical("host:7-7", "host:7");
	canonical("10.0.0.0/8:1000-2000", "10.0.0.0/8:1000-2000");
	canonical("0.0.0.0/0,[::/0]", "0.0.0.0/0,[::/0]");
	canonical("10.0.0.0/8:22,db.internal:5432,[fd00::/8]",
	    "10.0.0.0/8:22,db.internal:5432,[fd00::/8]");
}

/* --- ports --- */

static void
test_ports(void **state)
{
	struct allow_list l;

	(void)state;
	parse_ok("10.0.0.1:22", &l);
	expect_ip(&l, "10.0.0.1", 22, 1);
	expect_ip(&l, "10.0.0.1", 21, 0);
	expect_ip(&l, "10.0.0.1", 23, 0);
	allow_free(&l);

	parse_ok("10.0.0.1:1000-2000", &l);
	expect_ip(&l, "10.0.0.1", 1000, 1);
	expect_ip(&l, "10.0.0.1", 2000, 1);
	expect_ip(&l, "10.0.0.1", 999, 0);
	expect_ip(&l, "10.0.0.1", 2001, 0);
	allow_free(&l);

	/* "*" and no ports at all: 1-65535, never 0. */
	parse_ok("10.0.0.1:*,10.0.0.2", &l);
	expect_ip(&l, "10.0.0.1", 1, 1);
	expect_ip(&l, "10.0.0.1", 65535, 1);
	expect_ip(&l, "10.0.0.2", 1, 1);
	expect_ip(&l, "10.0.0.2", 65535, 1);
	expect_ip(&l, "10.0.0.1", 0, 0);
	expect_ip(&l, "10.0.0.2", 0, 0);
	allow_free(&l);

	parse_ok("10.0.0.1:1,10.0.0.1:65535", &l);
	expect_ip(&l, "10.0.0.1", 1, 1);
	expect_ip(&l, "10.0.0.1", 65535, 1);
	expect_ip(&l, "10.0.0.1", 2, 0);
	expect_ip(&l, "10.0.0.1", 65534, 0);
	allow_free(&l);
}

static void
test_port_refused_in_allowed_network(void **state)
{
	struct allow_list l;

	(void)state;
	parse_ok("10.0.0.0/8:22,[fd00::/8]:443", &l);
	expect_ip(&l, "10.9.8.7", 22, 1);
	expect_ip(&l, "10.9.8.7", 443, 0);
	expect_ip(&l, "fd12::1", 443, 1);
	expect_ip(&l, "fd12::1", 22, 0);
	allow_free(&l);
}

/* --- prefixes --- */

static void
test_ipv4_prefixes(void **state)
{
	struct allow_list l;

	(void)state;
	parse_ok("0.0.0.0/0", &l);
	expect_ip(&l, "0.0.0.0", 80, 1);
	expect_ip(&l, "255.255.255.255", 80, 1);
	expect_ip(&l, "::1", 80, 0);		/* no IPv6 in an IPv4 rule */
	allow_free(&l);

	parse_ok("128.0.0.0/1", &l);
	expect_ip(&l, "128.0.0.0", 80, 1);
	expect_ip(&l, "255.255.255.255", 80, 1);
	expect_ip(&l, "127.255.255.255", 80, 0);
	expect_ip(&l, "0.0.0.0", 80, 0);
	allow_free(&l);

	parse_ok("10.0.0.0/8", &l);
	expect_ip(&l, "10.0.0.0", 80, 1);
	expect_ip(&l, "10.255.255.255", 80, 1);
	expect_ip(&l, "9.255.255.255", 80, 0);
	expect_ip(&l, "11.0.0.0", 80, 0);
	allow_free(&l);

	parse_ok("192.0.2.4/31", &l);
	expect_ip(&l, "192.0.2.4", 80, 1);
	expect_ip(&l, "192.0.2.5", 80, 1);
	expect_ip(&l, "192.0.2.3", 80, 0);
	expect_ip(&l, "192.0.2.6", 80, 0);
	allow_free(&l);

	parse_ok("192.0.2.7/32", &l);
	expect_ip(&l, "192.0.2.7", 80, 1);
	expect_ip(&l, "192.0.2.6", 80, 0);
	expect_ip(&l, "192.0.2.8", 80, 0);
	allow_free(&l);

	/* A bare address is a /32. */
	parse_ok("192.0.2.7", &l);
	expect_ip(&l, "192.0.2.7", 80, 1);
	expect_ip(&l, "192.0.2.6", 80, 0);
	expect_ip(&l, "192.0.2.8", 80, 0);
	allow_free(&l);
}

static void
test_ipv6_prefixes(void **state)
{
	struct allow_list l;

	(void)state;
	parse_ok("[::/0]", &l);
	expect_ip(&l, "::", 80, 1);
	expect_ip(&l, "2001:db8::1", 80, 1);
	expect_ip(&l, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80, 1);
	expect_ip(&l, "10.0.0.1", 80, 0);	/* no IPv4 in an IPv6 rule */
	allow_free(&l);

	parse_ok("[fe80::/10]", &l);
	expect_ip(&l, "fe80::", 80, 1);
	expect_ip(&l, "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80, 1);
	expect_ip(&l, "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80, 0);
	expect_ip(&l, "fec0::", 80, 0);
	allow_free(&l);

	parse_ok("[2001:db8:1:2::/64]", &l);
	expect_ip(&l, "2001:db8:1:2::", 80, 1);
	expect_ip(&l, "2001:db8:1:2:ffff:ffff:ffff:ffff", 80, 1);
	expect_ip(&l, "2001:db8:1:1:ffff:ffff:ffff:ffff", 80, 0);
	expect_ip(&l, "2001:db8:1:3::", 80, 0);
	allow_free(&l);

	parse_ok("[2001:db8::2/127]", &l);
	expect_ip(&l, "2001:db8::2", 80, 1);
	expect_ip(&l, "2001:db8::3", 80, 1);
	expect_ip(&l, "2001:db8::1", 80, 0);
	expect_ip(&l, "2001:db8::4", 80, 0);
	allow_free(&l);

	parse_ok("[2001:db8::7/128]", &l);
	expect_ip(&l, "2001:db8::7", 80, 1);
	expect_ip(&l, "2001:db8::6", 80, 0);
	expect_ip(&l, "2001:db8::8", 80, 0);
	allow_free(&l);

	/* A bare address is a /128. */
	parse_ok("[2001:db8::7]", &l);
	expect_ip(&l, "2001:db8::7", 80, 1);
	expect_ip(&l, "2001:db8::6", 80, 0);
	expect_ip(&l, "2001:db8::8", 80, 0);
	allow_free(&l);
}

/* --- IPv4 inside IPv6 --- */

static void
test_ipv4_mapped_judged_as_ipv4(void **state)
{
	struct allow_list l;

	(void)state;
	parse_ok("10.0.0.0/8:22", &l);
	expect_ip(&l, "::ffff:10.1.2.3", 22, 1);
	expect_ip(&l, "::ffff:10.1.2.3", 23, 0);
	expect_ip(&l, "::ffff:11.0.0.1", 22, 0);
	allow_free(&l);

	/* No IPv6 rule lets an IPv4 destination through, mapped or not. */
	parse_ok("[::/0],[::/80]", &l);
	expect_ip(&l, "::ffff:10.1.2.3", 22, 0);
	expect_ip(&l, "::ffff:169.254.169.254", 80, 0);
	expect_ip(&l, "2001:db8::1", 22, 1);
	allow_free(&l);
}

static void
test_ipv4_compatible_and_nat64_judged_as_ipv6(void **state)
{
	struct allow_list l;

	(void)state;
	parse_ok("10.0.0.0/8", &l);
	expect_ip(&l, "::10.1.2.3", 80, 0);
	expect_ip(&l, "64:ff9b::10.1.2.3", 80, 0);
	allow_free(&l);

	parse_ok("[64:ff9b::/96],[::/96]", &l);
	expect_ip(&l, "64:ff9b::10.1.2.3", 80, 1);
	expect_ip(&l, "::10.1.2.3", 80, 1);
	expect_ip(&l, "10.1.2.3", 80, 0);
	allow_free(&l);
}

/* --- names --- */

static void
test_names(void **state)
{
	struct allow_list l;

	(void)state;
	parse_ok("db.internal:5432,db:22", &l);
	expect_name(&l, "db.internal", 5432, 1);
	expect_name(&l, "DB.Internal", 5432, 1);
	expect_name(&l, "db.internal.", 5432, 1);
	expect_name(&l, "db.internal", 5433, 0);
	expect_name(&l, "db.internal2", 5432, 0);
	expect_name(&l, "xdb.internal", 5432, 0);
	expect_name(&l, "a.db.internal", 5432, 0);
	expect_name(&l, "db", 22, 1);
	expect_name(&l, "DB.", 22, 1);
	expect_name(&l, "db2", 22, 0);
	expect_name(&l, "d", 22, 0);
	expect_name(&l, "db", 0, 0);
	/* Not host names: never allowed by name. */
	expect_name(&l, "", 22, 0);
	expect_name(&l, ".", 22, 0);
	expect_name(&l, "db..", 22, 0);
	expect_name(&l, "db.internal..", 5432, 0);
	expect_name(&l, "db_internal", 5432, 0);
	allow_free(&l);

	/* Name rules and address rules do not answer for each other. */
	parse_ok("10.0.0.0/8,db.internal", &l);
	expect_name(&l, "10.0.0.1", 80, 0);
	expect_ip(&l, "10.0.0.1", 80, 1);
	allow_free(&l);
}

static void
test_names_under(void **state)
{
	struct allow_list l;

	(void)state;
	parse_ok("*.corp.example:443", &l);
	expect_name(&l, "a.corp.example", 443, 1);
	expect_name(&l, "a.b.corp.example", 443, 1);
	expect_name(&l, "A.CORP.Example.", 443, 1);
	expect_name(&l, "a.corp.example", 80, 0);
	expect_name(&l, "corp.example", 443, 0);
	expect_name(&l, "corp.example.", 443, 0);
	expect_name(&l, "xcorp.example", 443, 0);
	expect_name(&l, "a.xcorp.example", 443, 0);
	expect_name(&l, "a.corp.example.org", 443, 0);
	expect_name(&l, ".corp.example", 443, 0);
	allow_free(&l);
}

/* --- the default list --- */

static void
test_default_refuses_link_local_only(void **state)
{
	struct allow_list l;

	(void)state;
	allow_default(&l);
	expect_ip(&l, "169.254.169.254", 80, 0);
	expect_ip(&l, "169.254.0.0", 443, 0);
	expect_ip(&l, "169.254.255.255", 22, 0);
	expect_ip(&l, "fe80::1", 80, 0);
	expect_ip(&l, "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80, 0);
	expect_ip(&l, "::ffff:169.254.169.254", 80, 0);
	expect_ip(&l, "::169.254.169.254", 80, 0);
	expect_ip(&l, "64:ff9b::169.254.169.254", 80, 0);

	expect_ip(&l, "169.253.255.255", 80, 1);
	expect_ip(&l, "169.255.0.0", 80, 1);
	expect_ip(&l, "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 80, 1);
	expect_ip(&l, "fec0::1", 80, 1);
	expect_ip(&l, "10.0.0.1", 22, 1);
	expect_ip(&l, "127.0.0.1", 5432, 1);
	expect_ip(&l, "::1", 80, 1);
	expect_ip(&l, "8.8.8.8", 53, 1);
	expect_ip(&l, "::ffff:8.8.8.8", 53, 1);
	expect_ip(&l, "64:ff9b::8.8.8.8", 53, 1);
	expect_ip(&l, "8.8.8.8", 65535, 1);
	expect_ip(&l, "8.8.8.8", 0, 0);

	/* No name rules: a name's addresses are checked instead. */
	expect_name(&l, "metadata.google.internal", 80, 0);
	expect_name(&l, "db.internal", 5432, 0);
	allow_free(&l);
	assert_int_equal(l.is_default, 0);
}

static void
test_explicit_rules_may_allow_link_local(void **state)
{
	struct allow_list l;

	(void)state;
	parse_ok("169.254.169.254:80", &l);
	expect_ip(&l, "169.254.169.254", 80, 1);
	expect_ip(&l, "169.254.169.253", 80, 0);
	allow_free(&l);

	parse_ok("0.0.0.0/0,[::/0]", &l);
	expect_ip(&l, "169.254.169.254", 80, 1);
	expect_ip(&l, "fe80::1", 80, 1);
	allow_free(&l);

	parse_ok("10.0.0.0/8", &l);
	expect_ip(&l, "169.254.169.254", 80, 0);
	expect_ip(&l, "8.8.8.8", 80, 0);
	allow_free(&l);
}

static void
test_empty_list_allows_nothing(void **state)
{
	struct allow_list l;
	struct sockaddr sa;
	int is_literal;

	(void)state;
	memset(&l, 0, sizeof(l));
	expect_ip(&l, "10.0.0.1", 80, 0);
	expect_ip(&l, "::1", 80, 0);
	expect_name(&l, "db.internal", 80, 0);
	assert_int_equal(allow_literal(&l, "10.0.0.1", 80, &is_literal), 0);
	assert_int_equal(is_literal, 1);
	allow_free(&l);		/* harmless on an empty list */

	/* A family that is neither IPv4 nor IPv6 is never allowed. */
	allow_default(&l);
	memset(&sa, 0, sizeof(sa));
	sa.sa_family = AF_UNIX;
	assert_int_equal(allow_address(&l, &sa, 80), 0);
}

/* --- IP literals as the OPEN's host --- */

static void
test_literal(void **state)
{
	struct allow_list l;

	(void)state;
	parse_ok("10.0.0.0/8:22,[fd00::/8],db.internal", &l);
	expect_literal(&l, "10.1.2.3", 22, 1, 1);
	expect_literal(&l, "10.1.2.3", 23, 1, 0);
	expect_literal(&l, "11.0.0.1", 22, 1, 0);
	expect_literal(&l, "fd00::5", 80, 1, 1);
	expect_literal(&l, "FD00::5", 80, 1, 1);
	expect_literal(&l, "fd00::5%eth0", 80, 1, 1);
	expect_literal(&l, "fe80::5%eth0", 80, 1, 0);
	expect_literal(&l, "::ffff:10.1.2.3", 22, 1, 1);
	expect_literal(&l, "::ffff:10.1.2.3", 23, 1, 0);
	expect_literal(&l, "db.internal", 80, 0, 0);
	expect_literal(&l, "10.1.2.3.example", 22, 0, 0);
	/* The old numeric forms count, as the address they stand for. */
	expect_literal(&l, "10.1", 22, 1, 1);		/* 10.0.0.1 */
	expect_literal(&l, "167772161", 22, 1, 1);	/* 10.0.0.1 */
	expect_literal(&l, "0xa.0.0.1", 22, 1, 1);
	expect_literal(&l, "012.0.0.1", 22, 1, 1);	/* octal 10 */
	expect_literal(&l, "010.0.0.1", 22, 1, 0);	/* 8.0.0.1 */
	/* What getaddrinfo(AI_NUMERICHOST) refuses is not a literal. */
	expect_literal(&l, "10.1.2.3 ", 22, 0, 0);
	expect_literal(&l, "10.1.2.3 x", 22, 0, 0);
	expect_literal(&l, " 10.1.2.3", 22, 0, 0);
	expect_literal(&l, "10.1.2.3.", 22, 0, 0);
	expect_literal(&l, "fd00::5%", 80, 0, 0);
	expect_literal(&l, "", 80, 0, 0);
	/* A literal is never allowed by name. */
	expect_name(&l, "10.1.2.3", 22, 0);
	allow_free(&l);

	/* The metadata address in every spelling, against the default. */
	allow_default(&l);
	expect_literal(&l, "169.254.169.254", 80, 1, 0);
	expect_literal(&l, "2852039166", 80, 1, 0);
	expect_literal(&l, "0xa9.0xfe.0xa9.0xfe", 80, 1, 0);
	expect_literal(&l, "0251.0376.0251.0376", 80, 1, 0);
	expect_literal(&l, "169.254.43518", 80, 1, 0);
	expect_literal(&l, "169.16689662", 80, 1, 0);
	expect_literal(&l, "::ffff:169.254.169.254", 80, 1, 0);
	expect_literal(&l, "::ffff:a9fe:a9fe", 80, 1, 0);
	expect_literal(&l, "fe80::1%1", 80, 1, 0);
	expect_literal(&l, "127.1", 80, 1, 1);
	expect_literal(&l, "8.8.8.8", 80, 1, 1);
	expect_literal(&l, "metadata.google.internal", 80, 0, 0);
	allow_free(&l);
}

/*
 * allow_literal takes for a literal what getaddrinfo(AI_NUMERICHOST) --
 * what conn.c dials without asking DNS -- reads, and as the same address.
 * (It is stricter only with an unknown %scope, which it still judges by
 * its address.)
 */
static void
test_literal_agrees_with_getaddrinfo(void **state)
{
	static const char *hosts[] = {
		"10.1.2.3", "10.1", "167772161", "0xa.0.0.1", "010.0.0.1",
		"0xa9.0xfe.0xa9.0xfe", "169.254.43518", "4294967295",
		"4294967296", "256.0.0.1", "1.2.3.4.", "1.2.3.4 ", " 1.2.3.4",
		"1.2.3.4x", "0x", "1..2", "::1", "fd00::5", "::ffff:1.2.3.4",
		"fe80::1%1", "fe80::1%lo", "fd00::5%", "[::1]", "fd00::5::1",
		"db.internal", "localhost", "", "-1", "1e3",
	};
	struct allow_list l;
	size_t i;

	(void)state;
	parse_ok("0.0.0.0/0,[::/0]", &l);
	for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		struct addrinfo hints, *res = NULL;
		int is_literal = -1, gai;

		memset(&hints, 0, sizeof(hints));
		hints.ai_flags = AI_NUMERICHOST;
		hints.ai_socktype = SOCK_STREAM;
		gai = getaddrinfo(hosts[i], "80", &hints, &res);
		(void)allow_literal(&l, hosts[i], 80, &is_literal);
		if (is_literal != (gai == 0))
			fail_msg("'%s': is_literal %d, getaddrinfo %d",
			    hosts[i], is_literal, gai);
		if (gai == 0) {
			struct allow_list one;
			char rule[INET6_ADDRSTRLEN + 8], ip[INET6_ADDRSTRLEN];
			int lit = -1;

			/* The literal is allowed by a rule of exactly the
			 * address getaddrinfo gives. */
			if (res->ai_family == AF_INET)
				assert_non_null(inet_ntop(AF_INET,
				    &((struct sockaddr_in *)res->ai_addr)->
				    sin_addr, ip, sizeof(ip)));
			else
				assert_non_null(inet_ntop(AF_INET6,
				    &((struct sockaddr_in6 *)res->ai_addr)->
				    sin6_addr, ip, sizeof(ip)));
			if (strncmp(ip, "::ffff:", 7) == 0)
				snprintf(rule, sizeof(rule), "%s", ip + 7);
			else if (res->ai_family == AF_INET)
				snprintf(rule, sizeof(rule), "%s", ip);
			else
				snprintf(rule, sizeof(rule), "[%s]", ip);
			parse_ok(rule, &one);
			if (allow_literal(&one, hosts[i], 80, &lit) != 1 ||
			    lit != 1)
				fail_msg("'%s' is not allowed by '%s'",
				    hosts[i], rule);
			allow_free(&one);
			freeaddrinfo(res);
		}
	}
	allow_free(&l);
}

/* --- allow_describe --- */

static void
test_describe(void **state)
{
	struct allow_list l;
	char buf[64];

	(void)state;
	allow_default(&l);
	assert_string_equal(describe(&l), "default: any destination but "
	    "link-local (169.254.0.0/16, [fe80::/10])");
	memset(&l, 0, sizeof(l));
	assert_string_equal(describe(&l), "no rules");

	/* Whole rules only, then ",..."; always terminated. */
	parse_ok("10.0.0.0/8:22,db.internal:5432,[fd00::/8]", &l);
	allow_describe(&l, buf, 40);
	assert_string_equal(buf, "10.0.0.0/8:22,db.internal:5432,...");
	allow_describe(&l, buf, 35);
	assert_string_equal(buf, "10.0.0.0/8:22,db.internal:5432,...");
	allow_describe(&l, buf, 34);
	assert_string_equal(buf, "10.0.0.0/8:22,...");
	allow_describe(&l, buf, 42);
	assert_string_equal(buf, "10.0.0.0/8:22,db.internal:5432,[fd00::/8]");
	allow_describe(&l, buf, 41);
	assert_string_equal(buf, "10.0.0.0/8:22,db.internal:5432,...");
	allow_describe(&l, buf, 10);
	assert_string_equal(buf, "...");
	allow_describe(&l, buf, 2);
	assert_string_equal(buf, ".");
	allow_describe(&l, buf, 1);
	assert_string_equal(buf, "");
	buf[0] = 'x';
	allow_describe(&l, buf, 0);
	assert_int_equal(buf[0], 'x');
	allow_free(&l);
}

/* --- limits --- */

/* n rules "10.0.0.1:1", ..., "10.0.0.1:n" (caller frees). */
static char *
many_rules(unsigned n)
{
	char *text = malloc((size_t)n * 16 + 1);
	size_t used = 0;
	unsigned i;

	assert_non_null(text);
	text[0] = '\0';
	for (i = 1; i <= n; i++)
		used += (size_t)sprintf(text + used, "%s10.0.0.1:%u",
		    i > 1 ? "," : "", i);
	return text;
}

static void
test_limits(void **state)
{
	char name[300], rule[400], want[512], *text;
	struct allow_list l;

	(void)state;
	text = many_rules(ALLOW_MAX);
	parse_ok(text, &l);
	assert_int_equal(l.n, ALLOW_MAX);
	expect_ip(&l, "10.0.0.1", 1, 1);
	expect_ip(&l, "10.0.0.1", ALLOW_MAX, 1);
	expect_ip(&l, "10.0.0.1", ALLOW_MAX + 1, 0);
	allow_free(&l);
	free(text);

	text = many_rules(ALLOW_MAX + 1);
	parse_fails(text, "more than 256 rules");
	free(text);

	/* The longest name (253), with and without a trailing dot. */
	memset(name, 'a', 253);
	name[63] = name[127] = name[191] = '.';
	name[253] = '\0';
	parse_ok(name, &l);
	expect_name(&l, name, 80, 1);
	allow_free(&l);
	snprintf(rule, sizeof(rule), "%s.:80", name);
	parse_ok(rule, &l);
	expect_name(&l, name, 80, 1);
	allow_free(&l);

	/* One more: 254. */
	snprintf(rule, sizeof(rule), "%sa", name);
	snprintf(want, sizeof(want), "'%s': not an address or host name",
	    rule);
	parse_fails(rule, want);

	/* A rule longer than ALLOW_RULE_MAX. */
	memset(rule, 'b', ALLOW_RULE_MAX + 1);
	rule[ALLOW_RULE_MAX + 1] = '\0';
	parse_fails(rule, "'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb...': "
	    "longer than 300 characters");
	/* ... and one of exactly ALLOW_RULE_MAX is judged as a rule. */
	rule[ALLOW_RULE_MAX] = '\0';
	snprintf(want, sizeof(want), "'%s': not an address or host name",
	    rule);
	parse_fails(rule, want);
}

/* --- bad rules --- */

static void
test_bad_lists(void **state)
{
	(void)state;
	parse_fails("", "no rules given");
	parse_fails(",", "empty rule in ','");
	parse_fails("10.0.0.0/8,,db", "empty rule in '10.0.0.0/8,,db'");
	parse_fails("db,", "empty rule in 'db,'");
	parse_fails(",db", "empty rule in ',db'");
	/* The message names the rule that is wrong, not the first. */
	parse_fails("10.0.0.0/8,db.internal:0,[::1]",
	    "'db.internal:0': port 0 out of range (1-65535)");
}

static void
test_bad_prefixes(void **state)
{
	(void)state;
	parse_fails("10.0.0.0/33", "'10.0.0.0/33': prefix longer than 32");
	parse_fails("10.0.0.0/100", "'10.0.0.0/100': prefix longer than 32");
	parse_fails("[fd00::/129]", "'[fd00::/129]': prefix longer than 128");
	parse_fails("[fd00::/99999999999]",
	    "'[fd00::/99999999999]': prefix longer than 128");
	/* 2^64 + 8: no wrap-around into a prefix. */
	parse_fails("10.0.0.0/18446744073709551624",
	    "'10.0.0.0/18446744073709551624': prefix longer than 32");
	parse_fails("10.0.0.0/", "'10.0.0.0/': prefix '' is not a number");
	parse_fails("10.0.0.0/x", "'10.0.0.0/x': prefix 'x' is not a number");
	parse_fails("10.0.0.0/-1",
	    "'10.0.0.0/-1': prefix '-1' is not a number");
	parse_fails("10.0.0.0/8/8",
	    "'10.0.0.0/8/8': prefix '8/8' is not a number");
	parse_fails("[fd00::/]", "'[fd00::/]': prefix '' is not a number");
	parse_fails("10.0.0.1/8", "'10.0.0.1/8': address has bits set past "
	    "the /8 prefix (10.0.0.0/8?)");
	parse_fails("192.0.2.5/31", "'192.0.2.5/31': address has bits set "
	    "past the /31 prefix (192.0.2.4/31?)");
	parse_fails("0.0.0.1/0", "'0.0.0.1/0': address has bits set past "
	    "the /0 prefix (0.0.0.0/0?)");
	parse_fails("[fd00::1/8]", "'[fd00::1/8]': address has bits set past "
	    "the /8 prefix ([fd00::/8]?)");
	parse_fails("[fe80::/8]", "'[fe80::/8]': address has bits set past "
	    "the /8 prefix ([fe00::/8]?)");
	parse_fails("[2001:db8::3/127]", "'[2001:db8::3/127]': address has "
	    "bits set past the /127 prefix ([2001:db8::2/127]?)");
	parse_fails("db.internal/8", "'db.internal/8': a prefix on a host "
	    "name");
	parse_fails("db.internal/8:22", "'db.internal/8:22': a prefix on a "
	    "host name");
	parse_fails("*.corp.example/16", "'*.corp.example/16': a prefix on a "
	    "host name");
	parse_fails("/8", "'/8': no address or host name");
}

static void
test_bad_ports(void **state)
{
	(void)state;
	parse_fails("host:0", "'host:0': port 0 out of range (1-65535)");
	parse_fails("host:70000", "'host:70000': port 70000 out of range "
	    "(1-65535)");
	parse_fails("host:65536", "'host:65536': port 65536 out of range "
	    "(1-65535)");
	parse_fails("host:99999999999999999999999", "'host:"
	    "99999999999999999999999': port 99999999999999999999999 out of "
	    "range (1-65535)");
	/* 2^64 + 22: no wrap-around into a port. */
	parse_fails("host:18446744073709551638", "'host:18446744073709551638': "
	    "port 18446744073709551638 out of range (1-65535)");
	parse_fails("host:0-5", "'host:0-5': port 0 out of range (1-65535)");
	parse_fails("host:5-70000", "'host:5-70000': port 70000 out of range "
	    "(1-65535)");
	parse_fails("host:5-2", "'host:5-2': port range 5-2 backwards");
	parse_fails("host:", "'host:': empty port");
	parse_fails("[::1]:", "'[::1]:': empty port");
	parse_fails("host:http", "'host:http': port 'http' is not a number "
	    "(ports are N, N-M or *)");
	parse_fails("host:1-", "'host:1-': port '' is not a number (ports "
	    "are N, N-M or *)");
	parse_fails("host:-5", "'host:-5': port '' is not a number (ports "
	    "are N, N-M or *)");
	parse_fails("host:1-2-3", "'host:1-2-3': port '2-3' is not a number "
	    "(ports are N, N-M or *)");
	parse_fails("host:1-*", "'host:1-*': port '*' is not a number (ports "
	    "are N, N-M or *)");
	parse_fails("host:**", "'host:**': port '**' is not a number (ports "
	    "are N, N-M or *)");
	parse_fails("host: 22", "'host: 22': port ' 22' is not a number "
	    "(ports are N, N-M or *)");
	parse_fails("host:+22", "'host:+22': port '+22' is not a number "
	    "(ports are N, N-M or *)");
	parse_fails(":22", "':22': no address or host name");
}

static void
test_bad_ipv6(void **state)
{
	(void)state;
	parse_fails("[fd00::", "'[fd00::': missing ']'");
	parse_fails("[fd00::/8:22", "'[fd00::/8:22': missing ']'");
	parse_fails("[fd00::]x", "'[fd00::]x': expected ':' after ']'");
	parse_fails("[fd00::]]", "'[fd00::]]': expected ':' after ']'");
	parse_fails("[fd00::]/8", "'[fd00::]/8': the prefix goes inside the "
	    "brackets ([fd00::/8])");
	parse_fails("[fd00::]/8:22", "'[fd00::]/8:22': the prefix goes inside "
	    "the brackets ([fd00::/8])");
	parse_fails("[10.0.0.1]", "'[10.0.0.1]': '10.0.0.1' is not an IPv6 "
	    "address");
	parse_fails("[db.internal]:22", "'[db.internal]:22': 'db.internal' is "
	    "not an IPv6 address");
	parse_fails("[]", "'[]': '' is not an IPv6 address");
	parse_fails("[fe80::1%eth0]", "'[fe80::1%eth0]': 'fe80::1%eth0' is "
	    "not an IPv6 address");
	parse_fails("fd00::1", "'fd00::1': IPv6 addresses go in brackets "
	    "([fd00::1]:443)");
	parse_fails("fd00::/8:22", "'fd00::/8:22': IPv6 addresses go in "
	    "brackets ([fd00::1]:443)");
	parse_fails("::1", "'::1': IPv6 addresses go in brackets "
	    "([fd00::1]:443)");
	parse_fails("[::ffff:10.0.0.0/104]", "'[::ffff:10.0.0.0/104]': an "
	    "IPv4-mapped address: write it as IPv4 (a.b.c.d[/prefix])");
	parse_fails("[::ffff:10.0.0.1]:22", "'[::ffff:10.0.0.1]:22': an "
	    "IPv4-mapped address: write it as IPv4 (a.b.c.d[/prefix])");
	parse_fails("[::ffff:0:0/96]", "'[::ffff:0:0/96]': an IPv4-mapped "
	    "address: write it as IPv4 (a.b.c.d[/prefix])");
}

static void
test_bad_names(void **state)
{
	(void)state;
	parse_fails("db_x", "'db_x': not an address or host name");
	parse_fails("-db", "'-db': not an address or host name");
	parse_fails("db-", "'db-': not an address or host name");
	parse_fails("db..internal", "'db..internal': not an address or host "
	    "name");
	parse_fails("db.internal..", "'db.internal..': not an address or host "
	    "name");
	parse_fails(".", "'.': not an address or host name");
	parse_fails(" db", "' db': not an address or host name");
	parse_fails("*", "'*': not an address or host name");
	parse_fails("*:22", "'*:22': not an address or host name");
	parse_fails("*.", "'*.': not an address or host name");
	parse_fails("*.*.example", "'*.*.example': not an address or host "
	    "name");
	parse_fails("a.*.example", "'a.*.example': not an address or host "
	    "name");
	parse_fails("**.example", "'**.example': not an address or host "
	    "name");
	parse_fails("*example", "'*example': not an address or host name");
	/* "*." then an address is no name either. */
	parse_fails("*.10.0.0.1", "'*.10.0.0.1': not an address or host name");
	parse_fails("*.0xfe", "'*.0xfe': not an address or host name");
	/* Numbers: a.b.c.d only, no shorthand that would never match. */
	parse_fails("10.0.0.256", "'10.0.0.256': not an address or host name");
	parse_fails("10.0.0.1.", "'10.0.0.1.': not an address or host name");
	parse_fails("127.1", "'127.1': write IPv4 addresses as a.b.c.d");
	parse_fails("10.0.0/8", "'10.0.0/8': write IPv4 addresses as a.b.c.d");
	parse_fails("0x7f.0.0.1", "'0x7f.0.0.1': write IPv4 addresses as "
	    "a.b.c.d");
	parse_fails("2130706433:22", "'2130706433:22': write IPv4 addresses "
	    "as a.b.c.d");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forms_and_canonical_text),
		cmocka_unit_test(test_ports),
		cmocka_unit_test(test_port_refused_in_allowed_network),
		cmocka_unit_test(test_ipv4_prefixes),
		cmocka_unit_test(test_ipv6_prefixes),
		cmocka_unit_test(test_ipv4_mapped_judged_as_ipv4),
		cmocka_unit_test(test_ipv4_compatible_and_nat64_judged_as_ipv6),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_names_under),
		cmocka_unit_test(test_default_refuses_link_local_only),
		cmocka_unit_test(test_explicit_rules_may_allow_link_local),
		cmocka_unit_test(test_empty_list_allows_nothing),
		cmocka_unit_test(test_literal),
		cmocka_unit_test(test_literal_agrees_with_getaddrinfo),
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_bad_lists),
		cmocka_unit_test(test_bad_prefixes),
		cmocka_unit_test(test_bad_ports),
		cmocka_unit_test(test_bad_ipv6),
		cmocka_unit_test(test_bad_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
