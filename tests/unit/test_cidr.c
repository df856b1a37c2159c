/*
 * Unit tests for common/cidr.c: an IP network (ADDRESS[/PREFIX]) parsed,
 * matched against addresses, and printed.
 *
 * Nothing here touches the network: addresses are made with inet_pton.
 *
 * Read top to bottom: IPv4 and IPv6 networks that parse, with their
 * edges; text that is no network, with the reason cidr_parse gives;
 * bits set past the prefix and the network suggested; IPv4-mapped
 * networks, turned into IPv4 or refused; matching at the prefix lengths
 * where off-by-one mistakes live (/0 /1 /31 /32 /127 /128), and
 * IPv4-mapped sources judged as IPv4; and the text cidr_format writes.
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
#include <sys/un.h>

#include "cidr.h"

/* s (all of it) must parse, as family (AF_UNSPEC: either), into c. */
static void
parse_ok(const char *s, int family, unsigned flags, struct cidr *c)
{
	enum cidr_error e = cidr_parse(s, strlen(s), family, flags, c);

	if (e != CIDR_OK)
		fail_msg("'%s' refused (reason %d)", s, (int)e);
}

/* s must parse into the network that cidr_format writes as want. */
static void
parse_is(const char *s, int family, const char *want)
{
	char text[CIDR_TEXT_MAX];
	struct cidr c;

	parse_ok(s, family, 0, &c);
	cidr_format(&c, text, sizeof(text));
	if (strcmp(text, want) != 0)
		fail_msg("'%s' read as '%s', expected '%s'", s, text, want);
}

/* s must be refused, for reason want. */
static void
parse_fails(const char *s, int family, unsigned flags, enum cidr_error want)
{
	enum cidr_error e;
	struct cidr c;

	e = cidr_parse(s, strlen(s), family, flags, &c);
	if (e != want)
		fail_msg("'%s': reason %d, expected %d", s, (int)e, (int)want);
}

/* s must be refused for its host bits, suggesting the network want. */
static void
host_bits(const char *s, const char *want)
{
	char text[CIDR_TEXT_MAX];
	struct cidr c;

	assert_int_equal(cidr_parse(s, strlen(s), AF_UNSPEC, 0, &c),
	    CIDR_ERR_HOST_BITS);
	cidr_format(&c, text, sizeof(text));
	if (strcmp(text, want) != 0)
		fail_msg("'%s' suggests '%s', expected '%s'", s, text, want);
}

/* An address as a sockaddr (IPv4 or IPv6, by its text), port 9. */
static const struct sockaddr *
addr(const char *text, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(9);
	} else if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(9);
	} else
		fail_msg("bad test address '%s'", text);
	return (const struct sockaddr *)ss;
}

/* Is the address text in the network net (which must parse)? */
static int
in(const char *net, const char *text)
{
	struct sockaddr_storage ss;
	struct cidr c;

	parse_ok(net, AF_UNSPEC, 0, &c);
	return cidr_match(&c, addr(text, &ss));
}

/* --- parsing --- */

static void
test_parse_ipv4(void **state)
{
	static const uint8_t ten[16] = { 10 };
	struct cidr c;

	(void)state;
	parse_ok("10.0.0.0/8", AF_UNSPEC, 0, &c);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 8);
	assert_memory_equal(c.addr, ten, 16);
	parse_ok("10.0.0.0/8", AF_INET, 0, &c);
	assert_int_equal(c.prefix, 8);
	/* No prefix: one address. */
	parse_ok("192.0.2.7", AF_UNSPEC, 0, &c);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 32);
	parse_is("192.0.2.7", AF_UNSPEC, "192.0.2.7");
	parse_is("192.0.2.7/32", AF_UNSPEC, "192.0.2.7");
	parse_is("0.0.0.0/0", AF_UNSPEC, "0.0.0.0/0");
	parse_is("255.255.255.255/32", AF_INET, "255.255.255.255");
	parse_is("255.255.255.254/31", AF_INET, "255.255.255.254/31");
	parse_is("128.0.0.0/1", AF_INET, "128.0.0.0/1");
	parse_is("10.0.0.0/7", AF_INET, "10.0.0.0/7");
	/* Leading zeros in the prefix are its digits. */
	parse_is("10.0.0.0/008", AF_INET, "10.0.0.0/8");
	/* Only n characters are read: no NUL needed. */
	assert_int_equal(cidr_parse("10.0.0.0/8 junk", 10, AF_UNSPEC, 0, &c),
	    CIDR_OK);
	assert_int_equal(c.prefix, 8);
	assert_int_equal(cidr_parse("128.0.0.0/16", 11, AF_UNSPEC, 0, &c),
	    CIDR_OK);
	assert_int_equal(c.prefix, 1);
	assert_int_equal(cidr_parse("192.0.2.77", 9, AF_UNSPEC, 0, &c),
	    CIDR_OK);
	assert_int_equal(c.prefix, 32);
	assert_int_equal(c.addr[3], 7);
}

static void
test_parse_ipv6(void **state)
{
	static const uint8_t db8[16] = { 0x20, 0x01, 0x0d, 0xb8 };
	struct cidr c;

	(void)state;
	parse_ok("2001:db8::/32", AF_UNSPEC, 0, &c);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 32);
	assert_memory_equal(c.addr, db8, 16);
	parse_ok("::1", AF_INET6, 0, &c);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 128);
	parse_is("::/0", AF_UNSPEC, "::/0");
	parse_is("::", AF_UNSPEC, "::");
	parse_is("8000::/1", AF_INET6, "8000::/1");
	parse_is("2001:DB8:0:0:0:0:0:2/127", AF_INET6, "2001:db8::2/127");
	parse_is("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", AF_INET6,
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	parse_is("fe80::/10", AF_UNSPEC, "fe80::/10");
	/* IPv4-compatible and NAT64 are IPv6. */
	parse_is("::10.0.0.0/104", AF_UNSPEC, "::10.0.0.0/104");
	parse_ok("64:ff9b::/96", AF_UNSPEC, 0, &c);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 96);
}

static void
test_parse_refuses_non_addresses(void **state)
{
	static const char nul[] = "10.0.0.1\0/8";
	struct cidr c;

	(void)state;
	parse_fails("", AF_UNSPEC, 0, CIDR_ERR_ADDRESS);
	parse_fails("/8", AF_UNSPEC, 0, CIDR_ERR_ADDRESS);
	parse_fails("10.0.0", AF_UNSPEC, 0, CIDR_ERR_ADDRESS);
	parse_fails("10.0.0.256", AF_UNSPEC, 0, CIDR_ERR_ADDRESS);
	parse_fails("010.0.0.1", AF_UNSPEC, 0, CIDR_ERR_ADDRESS);
	parse_fails("0x7f.0.0.1", AF_UNSPEC, 0, CIDR_ERR_ADDRESS);
	parse_fails(" 10.0.0.1", AF_UNSPEC, 0, CIDR_ERR_ADDRESS);
	parse_fails("10.0.0.1 /8", AF_UNSPEC, 0, CIDR_ERR_ADDRESS);
	parse_fails("example.com", AF_UNSPEC, 0, CIDR_ERR_ADDRESS);
	parse_fails("[::1]", AF_UNSPEC, 0, CIDR_ERR_ADDRESS);
	parse_fails("fe80::1%eth0", AF_UNSPEC, 0, CIDR_ERR_ADDRESS);
	parse_fails("2001:db8::1::2", AF_UNSPEC, 0, CIDR_ERR_ADDRESS);
	parse_fails("0000:0000:0000:0000:0000:0000:0000:0000:0000/8",
	    AF_UNSPEC, 0, CIDR_ERR_ADDRESS);
	/* The family asked for, only. */
	parse_fails("10.0.0.1", AF_INET6, 0, CIDR_ERR_ADDRESS);
	parse_fails("::1", AF_INET, 0, CIDR_ERR_ADDRESS);
	parse_fails("::ffff:10.0.0.1", AF_INET, 0, CIDR_ERR_ADDRESS);
	parse_fails("10.0.0.1", AF_UNIX, 0, CIDR_ERR_ADDRESS);
	/* A NUL inside the n characters is not the end of the address. */
	assert_int_equal(cidr_parse(nul, sizeof(nul) - 1, AF_UNSPEC, 0, &c),
	    CIDR_ERR_ADDRESS);
}

static void
test_parse_refuses_bad_prefixes(void **state)
{
	struct cidr c;

	(void)state;
	parse_fails("10.0.0.0/", AF_UNSPEC, 0, CIDR_ERR_PREFIX_NUMBER);
	parse_fails("10.0.0.0/x", AF_UNSPEC, 0, CIDR_ERR_PREFIX_NUMBER);
	parse_fails("10.0.0.0/-1", AF_UNSPEC, 0, CIDR_ERR_PREFIX_NUMBER);
	parse_fails("10.0.0.0/+8", AF_UNSPEC, 0, CIDR_ERR_PREFIX_NUMBER);
	parse_fails("10.0.0.0/ 8", AF_UNSPEC, 0, CIDR_ERR_PREFIX_NUMBER);
	parse_fails("10.0.0.0/8 ", AF_UNSPEC, 0, CIDR_ERR_PREFIX_NUMBER);
	parse_fails("10.0.0.0/8/8", AF_UNSPEC, 0, CIDR_ERR_PREFIX_NUMBER);
	parse_fails("::/", AF_UNSPEC, 0, CIDR_ERR_PREFIX_NUMBER);
	parse_fails("10.0.0.0/33", AF_UNSPEC, 0, CIDR_ERR_PREFIX_RANGE);
	parse_fails("::/129", AF_UNSPEC, 0, CIDR_ERR_PREFIX_RANGE);
	parse_fails("::/99999999999", AF_UNSPEC, 0, CIDR_ERR_PREFIX_RANGE);
	/* No wrap-around into a prefix: 1008, 10^21 + 64, 2^64 + 8. */
	parse_fails("10.0.0.0/1008", AF_UNSPEC, 0, CIDR_ERR_PREFIX_RANGE);
	parse_fails("::/1000000000000000000064", AF_UNSPEC, 0,
	    CIDR_ERR_PREFIX_RANGE);
	parse_fails("10.0.0.0/18446744073709551624", AF_UNSPEC, 0,
	    CIDR_ERR_PREFIX_RANGE);
	/* The family is known by then (the caller's message names 32). */
	assert_int_equal(cidr_parse("10.0.0.0/33", 11, AF_UNSPEC, 0, &c),
	    CIDR_ERR_PREFIX_RANGE);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(cidr_parse("::/x", 4, AF_UNSPEC, 0, &c),
	    CIDR_ERR_PREFIX_NUMBER);
	assert_int_equal(c.family, AF_INET6);
}

static void
test_parse_refuses_host_bits(void **state)
{
	(void)state;
	host_bits("10.0.0.1/8", "10.0.0.0/8");
	host_bits("192.168.5.0/22", "192.168.4.0/22");
	host_bits("192.0.2.5/31", "192.0.2.4/31");
	host_bits("11.0.0.0/7", "10.0.0.0/7");
	host_bits("0.0.0.1/0", "0.0.0.0/0");
	host_bits("128.0.0.1/1", "128.0.0.0/1");
	host_bits("255.255.255.255/31", "255.255.255.254/31");
	host_bits("2001:db8::1/32", "2001:db8::/32");
	host_bits("fe80::/8", "fe00::/8");
	host_bits("2001:db8::3/127", "2001:db8::2/127");
	host_bits("::1/0", "::/0");
	host_bits("c000::/1", "8000::/1");
	host_bits("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/127",
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127");
}

static void
test_parse_mapped_networks(void **state)
{
	static const uint8_t ten[16] = { 10 };
	struct cidr c;

	(void)state;
	/* ::ffff:a.b.c.d/96+N is the IPv4 network a.b.c.d/N. */
	parse_ok("::ffff:10.0.0.0/104", AF_UNSPEC, 0, &c);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 8);
	assert_memory_equal(c.addr, ten, 16);
	parse_is("::ffff:192.0.2.1", AF_UNSPEC, "192.0.2.1");
	parse_is("::ffff:0:0/96", AF_INET6, "0.0.0.0/0");
	parse_is("::ffff:c000:201/128", AF_INET6, "192.0.2.1");
	/* Bits past the prefix: the network meant, as written (IPv6). */
	host_bits("::ffff:10.0.0.1/104", "::ffff:10.0.0.0/104");
	/* Refused when the caller asks, before the host bits. */
	parse_fails("::ffff:10.0.0.0/104", AF_INET6, CIDR_REFUSE_MAPPED,
	    CIDR_ERR_MAPPED);
	parse_fails("::ffff:10.0.0.1/104", AF_INET6, CIDR_REFUSE_MAPPED,
	    CIDR_ERR_MAPPED);
	parse_fails("::ffff:10.0.0.1", AF_UNSPEC, CIDR_REFUSE_MAPPED,
	    CIDR_ERR_MAPPED);
	parse_fails("::ffff:0:0/96", AF_INET6, CIDR_REFUSE_MAPPED,
	    CIDR_ERR_MAPPED);
	/* Under /96 it covers more than IPv4-mapped: plain IPv6. */
	host_bits("::ffff:0:0/95", "::fffe:0:0/95");
	parse_ok("::fffe:0:0/95", AF_INET6, CIDR_REFUSE_MAPPED, &c);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 95);
	parse_ok("::/80", AF_INET6, CIDR_REFUSE_MAPPED, &c);
	assert_int_equal(c.family, AF_INET6);
	/* The flag says nothing about other addresses. */
	parse_ok("10.0.0.0/8", AF_INET, CIDR_REFUSE_MAPPED, &c);
	parse_ok("::10.0.0.0/104", AF_INET6, CIDR_REFUSE_MAPPED, &c);
	assert_int_equal(c.family, AF_INET6);
}

/* --- matching --- */

static void
test_match_ipv4_edges(void **state)
{
	(void)state;
	/* /0: every IPv4 address, no IPv6 one. */
	assert_true(in("0.0.0.0/0", "0.0.0.0"));
	assert_true(in("0.0.0.0/0", "255.255.255.255"));
	assert_false(in("0.0.0.0/0", "::"));
	assert_false(in("0.0.0.0/0", "2001:db8::1"));
	/* /1: the upper half. */
	assert_true(in("128.0.0.0/1", "128.0.0.0"));
	assert_true(in("128.0.0.0/1", "255.255.255.255"));
	assert_false(in("128.0.0.0/1", "127.255.255.255"));
	assert_true(in("0.0.0.0/1", "127.255.255.255"));
	assert_false(in("0.0.0.0/1", "128.0.0.0"));
	/* Off the byte boundary: 192.168.4.0-192.168.7.255. */
	assert_true(in("192.168.4.0/22", "192.168.4.0"));
	assert_true(in("192.168.4.0/22", "192.168.7.255"));
	assert_false(in("192.168.4.0/22", "192.168.3.255"));
	assert_false(in("192.168.4.0/22", "192.168.8.0"));
	/* /31: two addresses. */
	assert_true(in("192.0.2.4/31", "192.0.2.4"));
	assert_true(in("192.0.2.4/31", "192.0.2.5"));
	assert_false(in("192.0.2.4/31", "192.0.2.3"));
	assert_false(in("192.0.2.4/31", "192.0.2.6"));
	/* /32: one. */
	assert_true(in("192.0.2.7", "192.0.2.7"));
	assert_false(in("192.0.2.7", "192.0.2.6"));
	assert_false(in("192.0.2.7", "192.0.2.8"));
	assert_false(in("192.0.2.7", "64:ff9b::192.0.2.7"));
}

static void
test_match_ipv6_edges(void **state)
{
	(void)state;
	/* /0: every IPv6 address but the IPv4-mapped ones; no IPv4. */
	assert_true(in("::/0", "::"));
	assert_true(in("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
	assert_true(in("::/0", "::10.1.2.3"));
	assert_true(in("::/0", "64:ff9b::10.1.2.3"));
	assert_false(in("::/0", "10.1.2.3"));
	assert_false(in("::/0", "::ffff:10.1.2.3"));
	/* /1 */
	assert_true(in("8000::/1", "8000::"));
	assert_true(in("8000::/1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
	assert_false(in("8000::/1", "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
	/* /32 */
	assert_true(in("2001:db8::/32", "2001:db8:ffff:ffff::1"));
	assert_false(in("2001:db8::/32", "2001:db9::"));
	assert_false(in("2001:db8::/32", "2001:db7:ffff::"));
	/* /127: two addresses. */
	assert_true(in("2001:db8::2/127", "2001:db8::2"));
	assert_true(in("2001:db8::2/127", "2001:db8::3"));
	assert_false(in("2001:db8::2/127", "2001:db8::1"));
	assert_false(in("2001:db8::2/127", "2001:db8::4"));
	/* /128: one. */
	assert_true(in("2001:db8::1", "2001:db8::1"));
	assert_false(in("2001:db8::1", "2001:db8::"));
	assert_false(in("2001:db8::1", "2001:db8::2"));
	assert_false(in("::1", "127.0.0.1"));
}

static void
test_match_mapped_sources(void **state)
{
	(void)state;
	/* A dual-stack socket sees IPv4 peers as ::ffff:a.b.c.d. */
	assert_true(in("10.0.0.0/8", "::ffff:10.1.2.3"));
	assert_false(in("10.0.0.0/8", "::ffff:11.0.0.1"));
	assert_true(in("192.0.2.7", "::ffff:192.0.2.7"));
	assert_false(in("192.0.2.7", "::ffff:192.0.2.8"));
	assert_true(in("0.0.0.0/0", "::ffff:0.0.0.0"));
	/* ... judged as IPv4 only: no IPv6 network covers them. */
	assert_false(in("::/0", "::ffff:10.1.2.3"));
	assert_false(in("::/80", "::ffff:10.1.2.3"));
	assert_false(in("::fffe:0:0/95", "::ffff:10.1.2.3"));
	assert_true(in("::fffe:0:0/95", "::fffe:10.1.2.3"));
	/* A mapped network is IPv4, so it takes both forms. */
	assert_true(in("::ffff:10.0.0.0/104", "10.9.9.9"));
	assert_true(in("::ffff:10.0.0.0/104", "::ffff:10.9.9.9"));
	assert_false(in("::ffff:10.0.0.0/104", "11.0.0.0"));
	/* IPv4-compatible and NAT64 are not mapped. */
	assert_false(in("10.0.0.0/8", "::10.1.2.3"));
	assert_false(in("10.0.0.0/8", "64:ff9b::10.1.2.3"));
	assert_true(in("::10.0.0.0/104", "::10.1.2.3"));
}

static void
test_match_other_sources(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_un sun;
	struct cidr c;

	(void)state;
	parse_ok("0.0.0.0/0", AF_UNSPEC, 0, &c);
	assert_int_equal(cidr_match(&c, NULL), 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_int_equal(cidr_match(&c, (const struct sockaddr *)&sun), 0);
	parse_ok("::/0", AF_UNSPEC, 0, &c);
	assert_int_equal(cidr_match(&c, (const struct sockaddr *)&sun), 0);
	/* The port is not looked at. */
	parse_ok("192.0.2.7", AF_UNSPEC, 0, &c);
	addr("192.0.2.7", &ss);
	((struct sockaddr_in *)&ss)->sin_port = 0;
	assert_int_equal(cidr_match(&c, (const struct sockaddr *)&ss), 1);
}

/* --- text --- */

static void
test_format(void **state)
{
	static const char *const round[] = {
		"10.0.0.0/8", "192.0.2.7", "0.0.0.0/0", "255.255.255.254/31",
		"2001:db8::/32", "::1", "::/0", "fe80::/10",
		"2001:db8::2/127", "::10.0.0.0/104",
	};
	struct cidr c = { AF_INET6, 127, { 0 } }, back;
	char text[CIDR_TEXT_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(round) / sizeof(round[0]); i++)
		parse_is(round[i], AF_UNSPEC, round[i]);
	/* What cidr_format writes reads back as the same network. */
	memset(c.addr, 0xff, 15);
	c.addr[15] = 0xfe;
	cidr_format(&c, text, sizeof(text));
	assert_string_equal(text,
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127");
	assert_int_equal(cidr_parse(text, strlen(text), AF_UNSPEC, 0, &back),
	    CIDR_OK);
	assert_int_equal(back.family, c.family);
	assert_int_equal(back.prefix, c.prefix);
	assert_memory_equal(back.addr, c.addr, 16);
	/* Cut to the buffer, always terminated; nothing for no buffer. */
	parse_ok("10.0.0.0/8", AF_UNSPEC, 0, &c);
	memset(text, 'x', sizeof(text));
	cidr_format(&c, text, 5);
	assert_string_equal(text, "10.0");
	memset(text, 'x', sizeof(text));
	cidr_format(&c, text, 0);
	assert_int_equal(text[0], 'x');
	/* A family it does not know: "?", not a crash. */
	c.family = AF_UNIX;
	cidr_format(&c, text, sizeof(text));
	assert_string_equal(text, "?/8");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_ipv4),
		cmocka_unit_test(test_parse_ipv6),
		cmocka_unit_test(test_parse_refuses_non_addresses),
		cmocka_unit_test(test_parse_refuses_bad_prefixes),
		cmocka_unit_test(test_parse_refuses_host_bits),
		cmocka_unit_test(test_parse_mapped_networks),
		cmocka_unit_test(test_match_ipv4_edges),
		cmocka_unit_test(test_match_ipv6_edges),
		cmocka_unit_test(test_match_mapped_sources),
		cmocka_unit_test(test_match_other_sources),
		cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
