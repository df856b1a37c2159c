/*
 * Unit tests for common/authkeys.c: the relay's authorized-keys file and
 * the rules each key carries.
 *
 * Files are mostly given as text (authkeys_parse_text, named "keys" in
 * messages); the tests of authkeys_load write real temporary files,
 * removed after each test.  Keys are the two ed25519 keys that
 * ssh-keygen made for test_sshkey.c (their .pub lines are copied here),
 * fresh random ones written with sshkey_format, and PEM keys written by
 * auth_key_write_public, which is what gen-cert has written until now.
 * The RSA PEM key is that test's RSA key exported by `ssh-keygen -e -m
 * PKCS8`; the ed448 one came from `openssl genpkey -algorithm ed448 |
 * openssl pkey -pubout`.  Sources are sockaddrs built here.
 *
 * Read top to bottom: lines without options, comments and line ends, PEM
 * keys and the two forms mixed; each option and what authkey_check makes
 * of it (roles, groups and ranges, networks v4 and v6 at their edges,
 * IPv4-mapped sources), verdict texts and descriptions; then every
 * malformed file with its exact message, duplicates, limits; then real
 * files.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#include "auth.h"
#include "authkeys.h"
#include "sshkey.h"

/* From test_sshkey.c: made by ssh-keygen -t ed25519. */
#define K1_LINE "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHio3aQidj9d1r5ce4Mkh" \
    "PF75N5WFy+5FfzIZk1zH4zI test@host"
#define K1_FINGERPRINT "SHA256:WD8TzIwo0wjD0K5WEmSWpcaut7aQgMgafSVsLuBXw+g"
#define K2_LINE "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHuk6sZ3aomi42UdCCv5d" \
    "Hv7BfEdQpfhv3Kdk6OF2A9P alice on laptop"
#define K2_FINGERPRINT "SHA256:ee0by9Z3WmTw35BCxtUsmLLtAGLJ81ooZRhbvuvdcZg"

static const uint8_t k1_pk[32] = {
	0x78, 0xa8, 0xdd, 0xa4, 0x22, 0x76, 0x3f, 0x5d, 0xd6, 0xbe, 0x5c,
	0x7b, 0x83, 0x24, 0x84, 0xf1, 0x7b, 0xe4, 0xde, 0x56, 0x17, 0x2f,
	0xb9, 0x15, 0xfc, 0xc8, 0x66, 0x4d, 0x73, 0x1f, 0x8c, 0xc8,
};
static const uint8_t k2_pk[32] = {
	0x7b, 0xa4, 0xea, 0xc6, 0x77, 0x6a, 0x89, 0xa2, 0xe3, 0x65, 0x1d,
	0x08, 0x2b, 0xf9, 0x74, 0x7b, 0xfb, 0x05, 0xf1, 0x1d, 0x42, 0x97,
	0xe1, 0xbf, 0x72, 0x9d, 0x93, 0xa3, 0x85, 0xd8, 0x0f, 0x4f,
};

#define RSA_PEM "-----BEGIN PUBLIC KEY-----\n" \
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDpVmCqGwiAXTcym6d9XXyWV9sB\n" \
    "qtJgHEDIO6PooiA4ECRJ5UsR8mHPbJNWYg69iLMqfJIeQh1PW5yp54LYuFaQDSMs\n" \
    "lmni+d8/oe+QZg9EAVAQtDsRLwbyh9ixS7Y4pF2TBvz14jLS3xHgP98j8MnoOO2J\n" \
    "G1VdECKDyjggHNiwjwIDAQAB\n" \
    "-----END PUBLIC KEY-----\n"
#define ED448_PEM "-----BEGIN PUBLIC KEY-----\n" \
    "MEMwBQYDK2VxAzoABkhmAaRKFD/gFbY25XHY7TnWffnk314zYL8vVVEUiJBSwIWS\n" \
    "HR1bW6K15EUVhY9ZxIsh5cpkK7AA\n" \
    "-----END PUBLIC KEY-----\n"

#define NAME "keys"
#define ERRLEN 512

/* Fail with the message when err does not contain needle. */
#define assert_err_contains(err, needle) do {				\
	if (strstr((err), (needle)) == NULL)				\
		fail_msg("error \"%s\" does not contain \"%s\"",	\
		    (err), (needle));					\
} while (0)

/* Parse text, which must be a good file. */
static void
parse_ok(const char *text, struct authkeys *set)
{
	char err[ERRLEN] = "";

	if (authkeys_parse_text(text, NAME, set, err, sizeof(err)) != 0)
		fail_msg("refused: %s\n--- text:\n%s", err, text);
}

/* Parse text, which must be refused with exactly want, leaving the set
 * empty. */
static void
parse_fails(const char *text, const char *want)
{
	char err[ERRLEN] = "";
	struct authkeys set;

	if (authkeys_parse_text(text, NAME, &set, err, sizeof(err)) != -1)
		fail_msg("accepted:\n%s", text);
	assert_string_equal(err, want);
	assert_int_equal(set.n, 0);
	assert_null(set.keys);
}

/* Parse "OPTIONS K1_LINE", which must be a good file of one key; *k
 * receives it. */
static void
options_ok(const char *options, struct authkey *k)
{
	char text[AUTHKEYS_LINE_MAX + 1];
	struct authkeys set;

	assert_true((size_t)snprintf(text, sizeof(text), "%s %s\n", options,
	    K1_LINE) < sizeof(text));
	parse_ok(text, &set);
	assert_int_equal(set.n, 1);
	*k = set.keys[0];
	authkeys_free(&set);
	assert_memory_equal(k->pk, k1_pk, 32);
	assert_string_equal(k->comment, "test@host");
}

/* Parse "OPTIONS K1_LINE" on line 1, which must be refused with exactly
 * "keys:1: " + want. */
static void
options_fail(const char *options, const char *want)
{
	char text[AUTHKEYS_LINE_MAX + 1], full[ERRLEN];

	assert_true((size_t)snprintf(text, sizeof(text), "%s %s\n", options,
	    K1_LINE) < sizeof(text));
	snprintf(full, sizeof(full), NAME ":1: %s", want);
	parse_fails(text, full);
}

/* The PEM text gen-cert writes for pk, in a malloc'ed string. */
static char *
pem_of(const uint8_t pk[32])
{
	struct auth_key k;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	memset(&k, 0, sizeof(k));
	memcpy(k.pk, pk, 32);
	assert_non_null(f = open_memstream(&text, &len));
	assert_int_equal(auth_key_write_public(&k, f), 0);
	assert_int_equal(fclose(f), 0);
	return text;
}

/* A random key's line with comment. */
static void
random_line(uint8_t pk[32], const char *comment, char line[SSHKEY_LINE_MAX])
{
	randombytes_buf(pk, 32);
	assert_int_equal(sshkey_format(pk, comment, line, SSHKEY_LINE_MAX), 0);
}

/* Sources. */
static struct sockaddr_storage source_ss;

static const struct sockaddr *
v4(const char *ip)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&source_ss;

	memset(&source_ss, 0, sizeof(source_ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(50000);
	if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1)
		fail_msg("bad IPv4 literal in the test: %s", ip);
	return (const struct sockaddr *)&source_ss;
}

static const struct sockaddr *
v6(const char *ip)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&source_ss;

	memset(&source_ss, 0, sizeof(source_ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(50000);
	if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) != 1)
		fail_msg("bad IPv6 literal in the test: %s", ip);
	return (const struct sockaddr *)&source_ss;
}

/* Is a source allowed by k (as an entry-point in group 0)? */
static int
from_ok(const struct authkey *k, const struct sockaddr *sa)
{
	enum authkey_verdict v = authkey_check(k, ROLE_ENTRY, 0, sa);

	assert_true(v == AUTHKEY_OK || v == AUTHKEY_SOURCE);
	return v == AUTHKEY_OK;
}

/* Is group g allowed by k (as an entry-point from anywhere)? */
static int
group_ok(const struct authkey *k, uint32_t g)
{
	enum authkey_verdict v = authkey_check(k, ROLE_ENTRY, g, NULL);

	assert_true(v == AUTHKEY_OK || v == AUTHKEY_GROUP);
	return v == AUTHKEY_OK;
}

/* --- lines without options --- */

static void
test_one_line_no_options(void **state)
{
	struct authkeys set;
	const struct authkey *k;
	char desc[128];

	(void)state;
	parse_ok(K1_LINE "\n", &set);
	assert_int_equal(set.n, 1);
	k = &set.keys[0];
	assert_memory_equal(k->pk, k1_pk, 32);
	assert_string_equal(k->comment, "test@host");
	assert_string_equal(k->fingerprint, K1_FINGERPRINT);
	assert_int_equal(k->line, 1);
	assert_int_equal(k->roles, (1u << ROLE_ENTRY) | (1u << ROLE_REVERSE));
	assert_int_equal(k->ngroups, 0);
	assert_int_equal(k->nfrom, 0);
	assert_int_equal(k->max_channels, 0);
	/* No restriction: any role, any group, any source, or none. */
	assert_int_equal(authkey_check(k, ROLE_ENTRY, 0, NULL), AUTHKEY_OK);
	assert_int_equal(authkey_check(k, ROLE_REVERSE, 0xffffffff,
	    v6("2001:db8::1")), AUTHKEY_OK);
	assert_int_equal(authkey_check(k, ROLE_ENTRY, 7, v4("192.0.2.1")),
	    AUTHKEY_OK);
	authkey_describe(k, desc, sizeof(desc));
	assert_string_equal(desc, "no restriction");
	authkeys_free(&set);
	assert_int_equal(set.n, 0);
	assert_null(set.keys);
}

static void
test_comments_and_blank_lines(void **state)
{
	struct authkeys set;

	(void)state;
	parse_ok("# relay keys\n"
	    "\n"
	    "   \n"
	    "\t# indented comment\n"
	    K1_LINE " # not a comment: part of the key's\n"
	    "#" K2_LINE "\n"
	    "  \t" K2_LINE "  \n"
	    "\n", &set);
	assert_int_equal(set.n, 2);
	assert_int_equal(set.keys[0].line, 5);
	assert_string_equal(set.keys[0].comment,
	    "test@host # not a comment: part of the key's");
	assert_int_equal(set.keys[1].line, 7);
	assert_memory_equal(set.keys[1].pk, k2_pk, 32);
	assert_string_equal(set.keys[1].comment, "alice on laptop");
	assert_string_equal(set.keys[1].fingerprint, K2_FINGERPRINT);
	authkeys_free(&set);

	/* The last line needs no newline; a key needs no comment. */
	parse_ok("# x\n" "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHio3aQidj9d1r5c"
	    "e4MkhPF75N5WFy+5FfzIZk1zH4zI", &set);
	assert_int_equal(set.n, 1);
	assert_int_equal(set.keys[0].line, 2);
	assert_string_equal(set.keys[0].comment, "");
	authkeys_free(&set);
}

static void
test_crlf_line_ends(void **state)
{
	struct authkeys set;
	char *pem = pem_of(k2_pk), text[2048], *p, *q;

	(void)state;
	/* The PEM block with CRLF too. */
	q = text;
	q += sprintf(q, "# windows\r\n\r\nrole=\"entry-point\" %s\r\n",
	    K1_LINE);
	for (p = pem; *p != '\0'; p++) {
		if (*p == '\n')
			*q++ = '\r';
		*q++ = *p;
	}
	*q = '\0';
	free(pem);
	parse_ok(text, &set);
	assert_int_equal(set.n, 2);
	assert_string_equal(set.keys[0].comment, "test@host");
	assert_int_equal(set.keys[0].line, 3);
	assert_int_equal(set.keys[0].roles, 1u << ROLE_ENTRY);
	assert_memory_equal(set.keys[1].pk, k2_pk, 32);
	assert_int_equal(set.keys[1].line, 4);
	authkeys_free(&set);
}

/* --- PEM keys --- */

static void
test_pem_only_file_as_gen_cert_writes_it(void **state)
{
	char *a = pem_of(k1_pk), *b = pem_of(k2_pk), text[1024];
	struct authkeys set;
	char desc[64];

	(void)state;
	snprintf(text, sizeof(text), "%s%s", a, b);
	free(a);
	free(b);
	parse_ok(text, &set);
	assert_int_equal(set.n, 2);
	assert_memory_equal(set.keys[0].pk, k1_pk, 32);
	assert_memory_equal(set.keys[1].pk, k2_pk, 32);
	assert_int_equal(set.keys[0].line, 1);
	assert_int_equal(set.keys[1].line, 4);	/* a block is 3 lines */
	assert_string_equal(set.keys[0].comment, "");
	assert_string_equal(set.keys[0].fingerprint, K1_FINGERPRINT);
	assert_int_equal(set.keys[1].roles, AUTHKEY_ROLES_ALL);
	assert_int_equal(set.keys[1].ngroups, 0);
	assert_int_equal(set.keys[1].nfrom, 0);
	assert_int_equal(set.keys[1].max_channels, 0);
	authkey_describe(&set.keys[1], desc, sizeof(desc));
	assert_string_equal(desc, "no restriction");
	authkeys_free(&set);
}

static void
test_pem_and_lines_mixed(void **state)
{
	char *pk1 = pem_of(k1_pk), line[SSHKEY_LINE_MAX], text[2048];
	uint8_t r[32];
	struct authkeys set;

	(void)state;
	random_line(r, "rnd", line);
	snprintf(text, sizeof(text),
	    "# mixed\n"				/* 1 */
	    "%s"				/* 2-4 */
	    "\n"				/* 5 */
	    "groups=\"3\" %s\n"			/* 6 */
	    "   -----BEGIN PUBLIC KEY-----  \n"	/* 7-9, indented */
	    "   MCowBQYDK2VwAyEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
	    "   -----END PUBLIC KEY-----\n"
	    "%s\n",				/* 10 */
	    pk1, K2_LINE, line);
	free(pk1);
	parse_ok(text, &set);
	assert_int_equal(set.n, 4);
	assert_memory_equal(set.keys[0].pk, k1_pk, 32);
	assert_int_equal(set.keys[0].line, 2);
	assert_memory_equal(set.keys[1].pk, k2_pk, 32);
	assert_int_equal(set.keys[1].line, 6);
	assert_int_equal(set.keys[1].ngroups, 1);
	assert_int_equal(set.keys[2].line, 7);
	{
		static const uint8_t zero[32];
		assert_memory_equal(set.keys[2].pk, zero, 32);
	}
	assert_memory_equal(set.keys[3].pk, r, 32);
	assert_int_equal(set.keys[3].line, 10);
	assert_string_equal(set.keys[3].comment, "rnd");
	assert_ptr_equal(authkeys_find(&set, k1_pk), &set.keys[0]);
	assert_ptr_equal(authkeys_find(&set, r), &set.keys[3]);
	authkeys_free(&set);
}

/* --- options --- */

static void
test_option_role(void **state)
{
	struct authkey k;
	char desc[64];

	(void)state;
	options_ok("role=\"entry-point\"", &k);
	assert_int_equal(k.roles, 1u << ROLE_ENTRY);
	assert_int_equal(authkey_check(&k, ROLE_ENTRY, 0, NULL), AUTHKEY_OK);
	assert_int_equal(authkey_check(&k, ROLE_REVERSE, 0, NULL),
	    AUTHKEY_ROLE);
	authkey_describe(&k, desc, sizeof(desc));
	assert_string_equal(desc, "role=entry-point");

	options_ok("role=\"reverse-proxy\"", &k);
	assert_int_equal(k.roles, 1u << ROLE_REVERSE);
	assert_int_equal(authkey_check(&k, ROLE_REVERSE, 0, NULL), AUTHKEY_OK);
	assert_int_equal(authkey_check(&k, ROLE_ENTRY, 0, NULL), AUTHKEY_ROLE);
	authkey_describe(&k, desc, sizeof(desc));
	assert_string_equal(desc, "role=reverse-proxy");

	/* Roles that do not exist are never allowed, not even without
	 * role=. */
	options_ok("groups=\"1\"", &k);
	assert_int_equal(authkey_check(&k, 0, 1, NULL), AUTHKEY_ROLE);
	assert_int_equal(authkey_check(&k, 3, 1, NULL), AUTHKEY_ROLE);
	assert_int_equal(authkey_check(&k, 31, 1, NULL), AUTHKEY_ROLE);
	assert_int_equal(authkey_check(&k, 255, 1, NULL), AUTHKEY_ROLE);

	/* Option names, as in OpenSSH, in any case; values exactly. */
	options_ok("ROLE=\"entry-point\"", &k);
	assert_int_equal(k.roles, 1u << ROLE_ENTRY);
}

static void
test_option_groups(void **state)
{
	struct authkey k;
	char desc[64];

	(void)state;
	options_ok("groups=\"0,3,10-20\"", &k);
	assert_int_equal(k.ngroups, 3);
	assert_int_equal(k.groups[0].lo, 0);
	assert_int_equal(k.groups[0].hi, 0);
	assert_int_equal(k.groups[1].lo, 3);
	assert_int_equal(k.groups[2].lo, 10);
	assert_int_equal(k.groups[2].hi, 20);
	assert_true(group_ok(&k, 0));
	assert_false(group_ok(&k, 1));
	assert_false(group_ok(&k, 2));
	assert_true(group_ok(&k, 3));
	assert_false(group_ok(&k, 4));
	assert_false(group_ok(&k, 9));
	assert_true(group_ok(&k, 10));
	assert_true(group_ok(&k, 15));
	assert_true(group_ok(&k, 20));
	assert_false(group_ok(&k, 21));
	assert_false(group_ok(&k, 0xffffffff));
	authkey_describe(&k, desc, sizeof(desc));
	assert_string_equal(desc, "groups=0,3,10-20");

	/* The edges of uint32, a range of one, overlapping entries. */
	options_ok("groups=\"4294967295\"", &k);
	assert_true(group_ok(&k, 0xffffffff));
	assert_false(group_ok(&k, 0xfffffffe));
	assert_false(group_ok(&k, 0));
	options_ok("groups=\"0-4294967295\"", &k);
	assert_true(group_ok(&k, 0));
	assert_true(group_ok(&k, 0xffffffff));
	options_ok("groups=\"7-7,5-9,007\"", &k);
	assert_int_equal(k.ngroups, 3);
	assert_false(group_ok(&k, 4));
	assert_true(group_ok(&k, 5));
	assert_true(group_ok(&k, 7));
	assert_true(group_ok(&k, 9));
	assert_false(group_ok(&k, 10));
	authkey_describe(&k, desc, sizeof(desc));
	assert_string_equal(desc, "groups=7,5-9,7");
}

static void
test_option_from_ipv4(void **state)
{
	struct authkey k;
	char desc[128];

	(void)state;
	options_ok("from=\"203.0.113.0/24,198.51.100.7\"", &k);
	assert_int_equal(k.nfrom, 2);
	assert_true(from_ok(&k, v4("203.0.113.0")));
	assert_true(from_ok(&k, v4("203.0.113.255")));
	assert_false(from_ok(&k, v4("203.0.114.0")));
	assert_false(from_ok(&k, v4("203.0.112.255")));
	assert_true(from_ok(&k, v4("198.51.100.7")));	/* bare: /32 */
	assert_false(from_ok(&k, v4("198.51.100.6")));
	assert_false(from_ok(&k, v4("198.51.100.8")));
	assert_false(from_ok(&k, v6("2001:db8::1")));
	authkey_describe(&k, desc, sizeof(desc));
	assert_string_equal(desc, "from=203.0.113.0/24,198.51.100.7");

	options_ok("from=\"10.0.0.0/8\"", &k);
	assert_true(from_ok(&k, v4("10.0.0.0")));
	assert_true(from_ok(&k, v4("10.255.255.255")));
	assert_false(from_ok(&k, v4("11.0.0.1")));
	assert_false(from_ok(&k, v4("9.255.255.255")));

	/* /0: every IPv4 source, no IPv6 one. */
	options_ok("from=\"0.0.0.0/0\"", &k);
	assert_true(from_ok(&k, v4("0.0.0.0")));
	assert_true(from_ok(&k, v4("255.255.255.255")));
	assert_true(from_ok(&k, v4("127.0.0.1")));
	assert_false(from_ok(&k, v6("::1")));
	assert_false(from_ok(&k, v6("2001:db8::1")));

	/* /1: the upper half. */
	options_ok("from=\"128.0.0.0/1\"", &k);
	assert_true(from_ok(&k, v4("128.0.0.0")));
	assert_true(from_ok(&k, v4("255.255.255.255")));
	assert_false(from_ok(&k, v4("127.255.255.255")));
	assert_false(from_ok(&k, v4("0.0.0.0")));

	/* /32 written out. */
	options_ok("from=\"192.0.2.1/32\"", &k);
	assert_true(from_ok(&k, v4("192.0.2.1")));
	assert_false(from_ok(&k, v4("192.0.2.0")));
	assert_false(from_ok(&k, v4("192.0.2.2")));
	authkey_describe(&k, desc, sizeof(desc));
	assert_string_equal(desc, "from=192.0.2.1");

	/* A prefix that is not on a byte boundary: 192.168.4.0-7.255. */
	options_ok("from=\"192.168.4.0/22\"", &k);
	assert_false(from_ok(&k, v4("192.168.3.255")));
	assert_true(from_ok(&k, v4("192.168.4.0")));
	assert_true(from_ok(&k, v4("192.168.5.17")));
	assert_true(from_ok(&k, v4("192.168.7.255")));
	assert_false(from_ok(&k, v4("192.168.8.0")));
	options_ok("from=\"172.16.0.0/12\"", &k);
	assert_true(from_ok(&k, v4("172.31.255.255")));
	assert_false(from_ok(&k, v4("172.32.0.0")));
	assert_false(from_ok(&k, v4("172.15.255.255")));
	options_ok("from=\"198.51.100.6/31\"", &k);
	assert_true(from_ok(&k, v4("198.51.100.6")));
	assert_true(from_ok(&k, v4("198.51.100.7")));
	assert_false(from_ok(&k, v4("198.51.100.8")));
	assert_false(from_ok(&k, v4("198.51.100.5")));
}

static void
test_option_from_ipv6(void **state)
{
	struct authkey k;
	char desc[128];

	(void)state;
	options_ok("from=\"2001:db8::/32\"", &k);
	assert_true(from_ok(&k, v6("2001:db8::")));
	assert_true(from_ok(&k, v6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
	assert_false(from_ok(&k, v6("2001:db9::")));
	assert_false(from_ok(&k, v6("2001:db7:ffff::")));
	assert_false(from_ok(&k, v4("32.1.13.184")));	/* same first bytes */
	authkey_describe(&k, desc, sizeof(desc));
	assert_string_equal(desc, "from=2001:db8::/32");

	/* ::/0: every IPv6 source, no IPv4 one. */
	options_ok("from=\"::/0\"", &k);
	assert_true(from_ok(&k, v6("::")));
	assert_true(from_ok(&k, v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
	assert_false(from_ok(&k, v4("10.0.0.1")));

	/* A bare address is /128, and so is /128. */
	options_ok("from=\"::1\"", &k);
	assert_true(from_ok(&k, v6("::1")));
	assert_false(from_ok(&k, v6("::2")));
	assert_false(from_ok(&k, v6("::")));
	assert_false(from_ok(&k, v4("127.0.0.1")));
	options_ok("from=\"2001:db8::5/128\"", &k);
	assert_true(from_ok(&k, v6("2001:db8::5")));
	assert_false(from_ok(&k, v6("2001:db8::4")));
	authkey_describe(&k, desc, sizeof(desc));
	assert_string_equal(desc, "from=2001:db8::5");

	/* /1 and prefixes off the byte boundary. */
	options_ok("from=\"8000::/1\"", &k);
	assert_true(from_ok(&k, v6("8000::")));
	assert_true(from_ok(&k, v6("ffff::1")));
	assert_false(from_ok(&k, v6("7fff:ffff::")));
	options_ok("from=\"2001:db8:8000::/33\"", &k);
	assert_true(from_ok(&k, v6("2001:db8:8000::")));
	assert_true(from_ok(&k, v6("2001:db8:ffff:ffff::1")));
	assert_false(from_ok(&k, v6("2001:db8:7fff:ffff::")));
	options_ok("from=\"fc00::/7\"", &k);
	assert_true(from_ok(&k, v6("fd12:3456::1")));
	assert_true(from_ok(&k, v6("fc00::")));
	assert_false(from_ok(&k, v6("fe00::")));
	assert_false(from_ok(&k, v6("fb00::")));
	options_ok("from=\"2001:db8::4/127\"", &k);
	assert_true(from_ok(&k, v6("2001:db8::4")));
	assert_true(from_ok(&k, v6("2001:db8::5")));
	assert_false(from_ok(&k, v6("2001:db8::6")));

	/* Both families in one list. */
	options_ok("from=\"10.0.0.0/8,2001:db8::/32\"", &k);
	assert_true(from_ok(&k, v4("10.1.2.3")));
	assert_true(from_ok(&k, v6("2001:db8::1")));
	assert_false(from_ok(&k, v4("11.1.2.3")));
	assert_false(from_ok(&k, v6("2001:db9::1")));
}

static void
test_from_ipv4_mapped_sources(void **state)
{
	struct authkey k;
	char desc[128];

	(void)state;
	/* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d. */
	options_ok("from=\"10.0.0.0/8,198.51.100.7\"", &k);
	assert_true(from_ok(&k, v6("::ffff:10.1.2.3")));
	assert_true(from_ok(&k, v6("::ffff:198.51.100.7")));
	assert_false(from_ok(&k, v6("::ffff:11.0.0.1")));
	assert_false(from_ok(&k, v6("::ffff:198.51.100.8")));
	/* ... and not as IPv6 to IPv6 rules. */
	options_ok("from=\"::/0\"", &k);
	assert_false(from_ok(&k, v6("::ffff:10.1.2.3")));
	options_ok("from=\"0.0.0.0/0\"", &k);
	assert_true(from_ok(&k, v6("::ffff:10.1.2.3")));
	/* Not mapped: ::10.1.2.3 (IPv4-compatible) is plain IPv6. */
	options_ok("from=\"10.0.0.0/8\"", &k);
	assert_false(from_ok(&k, v6("::10.1.2.3")));

	/* Written mapped in from=, it is the IPv4 network. */
	options_ok("from=\"::ffff:10.0.0.0/104,::ffff:192.0.2.1\"", &k);
	assert_int_equal(k.from[0].family, AF_INET);
	assert_int_equal(k.from[0].prefix, 8);
	assert_true(from_ok(&k, v4("10.9.9.9")));
	assert_true(from_ok(&k, v6("::ffff:10.9.9.9")));
	assert_false(from_ok(&k, v4("11.0.0.0")));
	assert_true(from_ok(&k, v4("192.0.2.1")));
	assert_false(from_ok(&k, v4("192.0.2.2")));
	authkey_describe(&k, desc, sizeof(desc));
	assert_string_equal(desc, "from=10.0.0.0/8,192.0.2.1");
}

static void
test_from_other_sources(void **state)
{
	struct sockaddr_un un;
	struct authkey with, without;

	(void)state;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	options_ok("from=\"0.0.0.0/0,::/0\"", &with);
	options_ok("groups=\"0\"", &without);
	/* No source or one of another family: only without from=. */
	assert_int_equal(authkey_check(&with, ROLE_ENTRY, 0, NULL),
	    AUTHKEY_SOURCE);
	assert_int_equal(authkey_check(&with, ROLE_ENTRY, 0,
	    (const struct sockaddr *)&un), AUTHKEY_SOURCE);
	assert_int_equal(authkey_check(&without, ROLE_ENTRY, 0, NULL),
	    AUTHKEY_OK);
	assert_int_equal(authkey_check(&without, ROLE_ENTRY, 0,
	    (const struct sockaddr *)&un), AUTHKEY_OK);
}

static void
test_option_max_channels(void **state)
{
	struct authkey k;
	char desc[64];

	(void)state;
	options_ok("max-channels=\"3\"", &k);
	assert_int_equal(k.max_channels, 3);
	authkey_describe(&k, desc, sizeof(desc));
	assert_string_equal(desc, "max-channels=3");
	options_ok("max-channels=\"1\"", &k);
	assert_int_equal(k.max_channels, 1);
	options_ok("max-channels=\"1000000\"", &k);
	assert_int_equal(k.max_channels, 1000000);
	/* It is counted by the relay: authkey_check does not look. */
	assert_int_equal(authkey_check(&k, ROLE_REVERSE, 9, v4("192.0.2.1")),
	    AUTHKEY_OK);
}

static void
test_all_options_together(void **state)
{
	struct authkey k;
	char desc[256];

	(void)state;
	options_ok("role=\"reverse-proxy\",groups=\"1,5-9\",from=\"10.0.0.0/8,"
	    "2001:db8::/32,192.0.2.1\",max-channels=\"3\"", &k);
	assert_int_equal(k.roles, 1u << ROLE_REVERSE);
	assert_int_equal(k.ngroups, 2);
	assert_int_equal(k.nfrom, 3);
	assert_int_equal(k.max_channels, 3);
	authkey_describe(&k, desc, sizeof(desc));
	assert_string_equal(desc, "role=reverse-proxy groups=1,5-9 "
	    "from=10.0.0.0/8,2001:db8::/32,192.0.2.1 max-channels=3");
	/* Options in another order, a tab before the key. */
	{
		struct authkeys set;

		parse_ok("max-channels=\"2\",from=\"::1\",Groups=\"4\",role="
		    "\"entry-point\"\t" K2_LINE "\n", &set);
		assert_int_equal(set.n, 1);
		authkey_describe(&set.keys[0], desc, sizeof(desc));
		assert_string_equal(desc, "role=entry-point groups=4 from=::1 "
		    "max-channels=2");
		assert_string_equal(set.keys[0].comment, "alice on laptop");
		authkeys_free(&set);
	}
}

/* --- verdicts and descriptions --- */

static void
test_check_says_which_rule(void **state)
{
	struct authkey k;

	(void)state;
	options_ok("role=\"entry-point\",groups=\"1\",from=\"10.0.0.0/8\"",
	    &k);
	assert_int_equal(authkey_check(&k, ROLE_ENTRY, 1, v4("10.0.0.1")),
	    AUTHKEY_OK);
	/* Role first, then group, then source. */
	assert_int_equal(authkey_check(&k, ROLE_REVERSE, 2, v4("11.0.0.1")),
	    AUTHKEY_ROLE);
	assert_int_equal(authkey_check(&k, ROLE_ENTRY, 2, v4("11.0.0.1")),
	    AUTHKEY_GROUP);
	assert_int_equal(authkey_check(&k, ROLE_ENTRY, 1, v4("11.0.0.1")),
	    AUTHKEY_SOURCE);
	assert_int_equal(authkey_check(&k, ROLE_REVERSE, 1, v4("10.0.0.1")),
	    AUTHKEY_ROLE);
	assert_int_equal(authkey_check(&k, ROLE_ENTRY, 0, v4("10.0.0.1")),
	    AUTHKEY_GROUP);
}

static void
test_verdict_texts(void **state)
{
	(void)state;
	assert_string_equal(authkey_verdict_text(AUTHKEY_OK), "ok");
	assert_string_equal(authkey_verdict_text(AUTHKEY_ROLE),
	    "role not allowed for this key");
	assert_string_equal(authkey_verdict_text(AUTHKEY_GROUP),
	    "group not allowed for this key");
	assert_string_equal(authkey_verdict_text(AUTHKEY_SOURCE),
	    "source address not allowed for this key");
	assert_string_equal(authkey_verdict_text((enum authkey_verdict)99),
	    "unknown verdict");
}

static void
test_describe_is_cut_to_fit(void **state)
{
	char opts[AUTHKEYS_LINE_MAX], desc[40], big[4096], *p;
	struct authkey k;
	int i;

	(void)state;
	/* The longest there is: every entry of both lists. */
	p = opts + sprintf(opts, "role=\"entry-point\",groups=\"");
	for (i = 0; i < AUTHKEY_GROUPS_MAX; i++)
		p += sprintf(p, "%s%d-4294967295", i ? "," : "",
		    1000000000 + i);
	p += sprintf(p, "\",from=\"");
	for (i = 0; i < AUTHKEY_FROM_MAX; i++)
		p += sprintf(p, "%sffff:ffff:ffff:ffff:ffff:ffff:ffff:%x",
		    i ? "," : "", 0xff00 + i);
	sprintf(p, "\",max-channels=\"1000000\"");
	options_ok(opts, &k);
	authkey_describe(&k, big, sizeof(big));
	assert_true(strlen(big) < sizeof(big) - 1);
	assert_non_null(strstr(big, " max-channels=1000000"));

	memset(desc, 'x', sizeof(desc));
	authkey_describe(&k, desc, sizeof(desc));
	assert_int_equal(strlen(desc), sizeof(desc) - 1);
	assert_string_equal(desc + sizeof(desc) - 4, "...");
	assert_int_equal(strncmp(desc, big, sizeof(desc) - 4), 0);

	/* Tiny buffers: still a string, never past the end. */
	memset(desc, 'x', sizeof(desc));
	authkey_describe(&k, desc, 4);
	assert_string_equal(desc, "...");
	authkey_describe(&k, desc, 2);
	assert_int_equal(strlen(desc), 1);
	authkey_describe(&k, desc, 1);
	assert_string_equal(desc, "");
	desc[0] = 'x';
	authkey_describe(&k, desc, 0);
	assert_int_equal(desc[0], 'x');
}

static void
test_find(void **state)
{
	struct authkeys set, empty = { NULL, 0 };
	uint8_t stranger[32];

	(void)state;
	memcpy(stranger, k1_pk, 32);
	stranger[31] ^= 1;
	parse_ok(K1_LINE "\n" K2_LINE "\n", &set);
	assert_ptr_equal(authkeys_find(&set, k1_pk), &set.keys[0]);
	assert_ptr_equal(authkeys_find(&set, k2_pk), &set.keys[1]);
	assert_null(authkeys_find(&set, stranger));
	assert_null(authkeys_find(&empty, k1_pk));
	assert_null(authkeys_find(NULL, k1_pk));
	authkeys_free(&set);
	authkeys_free(&set);			/* twice is fine */
	authkeys_free(&empty);
	authkeys_free(NULL);
}

/* --- malformed options --- */

static void
test_refuses_unknown_option(void **state)
{
	(void)state;
	options_fail("permitopen=\"10.0.0.1:22\"", "unknown option "
	    "\"permitopen\" (known: role, groups, from, max-channels)");
	options_fail("no-pty", "unknown option \"no-pty\" (known: role, "
	    "groups, from, max-channels)");
	options_fail("role=\"entry-point\",command=\"x\"", "unknown option "
	    "\"command\" (known: role, groups, from, max-channels)");
	options_fail("roles=\"entry-point\"", "unknown option \"roles\" "
	    "(known: role, groups, from, max-channels)");
}

static void
test_refuses_repeated_option(void **state)
{
	(void)state;
	options_fail("role=\"entry-point\",role=\"reverse-proxy\"",
	    "option role given twice");
	options_fail("groups=\"1\",from=\"::1\",GROUPS=\"2\"",
	    "option groups given twice");
	options_fail("max-channels=\"1\",max-channels=\"1\"",
	    "option max-channels given twice");
	options_fail("from=\"::1\",from=\"::2\"", "option from given twice");
}

static void
test_refuses_empty_and_unquoted_values(void **state)
{
	(void)state;
	options_fail("groups=\"\"", "option groups: empty value");
	options_fail("role=\"\"", "option role: empty value");
	options_fail("from=\"\",role=\"entry-point\"",
	    "option from: empty value");
	options_fail("max-channels=\"\"", "option max-channels: empty value");
	options_fail("role=entry-point", "option role: the value goes in "
	    "double quotes (role=\"...\")");
	options_fail("max-channels=3", "option max-channels: the value goes "
	    "in double quotes (max-channels=\"...\")");
	options_fail("role=", "option role: the value goes in double quotes "
	    "(role=\"...\")");
	options_fail("role", "option role has no value (role=\"...\")");
	options_fail("groups,role=\"entry-point\"",
	    "option groups has no value (groups=\"...\")");
}

static void
test_refuses_missing_quote(void **state)
{
	(void)state;
	/* The open quote swallows the rest of the line. */
	options_fail("from=\"10.0.0.1", "option from: no closing quote");
	options_fail("role=\"entry-point\",groups=\"1",
	    "option groups: no closing quote");
	options_fail("role=\"entry-point\"x", "option role: expected ',' "
	    "after the closing quote");
	options_fail("role=\"entry-point\"\"", "option role: expected ',' "
	    "after the closing quote");
}

static void
test_refuses_empty_options(void **state)
{
	(void)state;
	/* A space after the comma ends the options there. */
	options_fail("role=\"entry-point\", groups=\"1\"", "empty option "
	    "(options are separated by ',' with no spaces)");
	options_fail("role=\"entry-point\",", "empty option (options are "
	    "separated by ',' with no spaces)");
	options_fail(",role=\"entry-point\"", "empty option (options are "
	    "separated by ',' with no spaces)");
	options_fail("role=\"entry-point\",,groups=\"1\"", "empty option "
	    "(options are separated by ',' with no spaces)");
	options_fail("=\"x\"", "empty option (options are separated by ',' "
	    "with no spaces)");
}

static void
test_refuses_bad_role(void **state)
{
	char opts[200], want[200];

	(void)state;
	options_fail("role=\"admin\"", "role: \"admin\" is not entry-point or "
	    "reverse-proxy");
	options_fail("role=\"Entry-Point\"", "role: \"Entry-Point\" is not "
	    "entry-point or reverse-proxy");
	options_fail("role=\"entry-point,reverse-proxy\"", "role: \"entry-"
	    "point,reverse-proxy\" is not entry-point or reverse-proxy");
	options_fail("role=\" entry-point\"", "role: \" entry-point\" is not "
	    "entry-point or reverse-proxy");
	/* A long value is shown cut to 64 characters and "...". */
	memset(opts, 0, sizeof(opts));
	memcpy(opts, "role=\"", 6);
	memset(opts + 6, 'r', 100);
	opts[106] = '"';
	memset(want, 0, sizeof(want));
	memcpy(want, "role: \"", 7);
	memset(want + 7, 'r', 64);
	strcat(want, "...\" is not entry-point or reverse-proxy");
	options_fail(opts, want);
	/* 64 are shown whole. */
	opts[6 + 64] = '"';
	opts[6 + 65] = '\0';
	want[7 + 64] = '\0';
	strcat(want, "\" is not entry-point or reverse-proxy");
	options_fail(opts, want);
}

static void
test_refuses_bad_groups(void **state)
{
	(void)state;
	options_fail("groups=\"a\"", "groups: \"a\" is not a group "
	    "(0-4294967295) or a range of groups N-M");
	options_fail("groups=\"1,x2\"", "groups: \"x2\" is not a group "
	    "(0-4294967295) or a range of groups N-M");
	options_fail("groups=\"4294967296\"", "groups: \"4294967296\" is not "
	    "a group (0-4294967295) or a range of groups N-M");
	options_fail("groups=\"99999999999999999999999\"", "groups: "
	    "\"99999999999999999999999\" is not a group (0-4294967295) or a "
	    "range of groups N-M");
	options_fail("groups=\"-1\"", "groups: \"-1\" is not a group "
	    "(0-4294967295) or a range of groups N-M");
	options_fail("groups=\"+1\"", "groups: \"+1\" is not a group "
	    "(0-4294967295) or a range of groups N-M");
	options_fail("groups=\"1-\"", "groups: \"1-\" is not a group "
	    "(0-4294967295) or a range of groups N-M");
	options_fail("groups=\"1-2-3\"", "groups: \"1-2-3\" is not a group "
	    "(0-4294967295) or a range of groups N-M");
	options_fail("groups=\"1 \"", "groups: \"1 \" is not a group "
	    "(0-4294967295) or a range of groups N-M");
	options_fail("groups=\"5-3\"", "groups: range \"5-3\" runs backwards "
	    "(N-M needs N <= M)");
	options_fail("groups=\"1,,2\"", "groups: empty entry in \"1,,2\"");
	options_fail("groups=\"1,\"", "groups: empty entry in \"1,\"");
	options_fail("groups=\",1\"", "groups: empty entry in \",1\"");
}

static void
test_refuses_bad_from(void **state)
{
	(void)state;
	options_fail("from=\"10.0.0.0/33\"", "from: \"10.0.0.0/33\": the "
	    "prefix must be a number from 0 to 32");
	options_fail("from=\"::/129\"", "from: \"::/129\": the prefix must be "
	    "a number from 0 to 128");
	options_fail("from=\"10.0.0.0/\"", "from: \"10.0.0.0/\": the prefix "
	    "must be a number from 0 to 32");
	options_fail("from=\"10.0.0.0/-1\"", "from: \"10.0.0.0/-1\": the "
	    "prefix must be a number from 0 to 32");
	options_fail("from=\"10.0.0.0/8/8\"", "from: \"10.0.0.0/8/8\": the "
	    "prefix must be a number from 0 to 32");
	options_fail("from=\"10.0.0.1/8\"", "from: \"10.0.0.1/8\" has bits "
	    "set past its /8 prefix (the network is 10.0.0.0/8)");
	options_fail("from=\"192.168.5.0/22\"", "from: \"192.168.5.0/22\" has "
	    "bits set past its /22 prefix (the network is 192.168.4.0/22)");
	options_fail("from=\"1.0.0.0/0\"", "from: \"1.0.0.0/0\" has bits set "
	    "past its /0 prefix (the network is 0.0.0.0/0)");
	options_fail("from=\"2001:db8::1/32\"", "from: \"2001:db8::1/32\" has "
	    "bits set past its /32 prefix (the network is 2001:db8::/32)");
	options_fail("from=\"::ffff:10.0.0.1/104\"", "from: "
	    "\"::ffff:10.0.0.1/104\" has bits set past its /104 prefix (the "
	    "network is ::ffff:10.0.0.0/104)");
	options_fail("from=\"example.com\"", "from: \"example.com\" is not an "
	    "IP address or network (ADDRESS or ADDRESS/PREFIX, IPv4 or IPv6)");
	options_fail("from=\"10.0.0.256\"", "from: \"10.0.0.256\" is not an IP "
	    "address or network (ADDRESS or ADDRESS/PREFIX, IPv4 or IPv6)");
	options_fail("from=\"10.0.0\"", "from: \"10.0.0\" is not an IP "
	    "address or network (ADDRESS or ADDRESS/PREFIX, IPv4 or IPv6)");
	options_fail("from=\"[::1]\"", "from: \"[::1]\" is not an IP "
	    "address or network (ADDRESS or ADDRESS/PREFIX, IPv4 or IPv6)");
	options_fail("from=\"fe80::1%eth0\"", "from: \"fe80::1%eth0\" is not "
	    "an IP address or network (ADDRESS or ADDRESS/PREFIX, IPv4 or "
	    "IPv6)");
	options_fail("from=\"!10.0.0.1\"", "from: \"!10.0.0.1\" is not an IP "
	    "address or network (ADDRESS or ADDRESS/PREFIX, IPv4 or IPv6)");
	options_fail("from=\"/8\"", "from: \"/8\" is not an IP address or "
	    "network (ADDRESS or ADDRESS/PREFIX, IPv4 or IPv6)");
	options_fail("from=\"10.0.0.1, 10.0.0.2\"", "from: \" 10.0.0.2\" is "
	    "not an IP address or network (ADDRESS or ADDRESS/PREFIX, IPv4 or "
	    "IPv6)");
	options_fail("from=\"10.0.0.1,\"", "from: empty entry in "
	    "\"10.0.0.1,\"");
}

static void
test_refuses_bad_max_channels(void **state)
{
	(void)state;
	options_fail("max-channels=\"0\"", "max-channels: \"0\" is not a "
	    "number from 1 to 1000000");
	options_fail("max-channels=\"1000001\"", "max-channels: \"1000001\" "
	    "is not a number from 1 to 1000000");
	options_fail("max-channels=\"-1\"", "max-channels: \"-1\" is not a "
	    "number from 1 to 1000000");
	options_fail("max-channels=\"3x\"", "max-channels: \"3x\" is not a "
	    "number from 1 to 1000000");
	options_fail("max-channels=\"0x10\"", "max-channels: \"0x10\" is not "
	    "a number from 1 to 1000000");
}

/* --- malformed lines and files --- */

static void
test_refuses_options_without_key(void **state)
{
	(void)state;
	parse_fails("role=\"entry-point\"\n", NAME ":1: options but no key");
	parse_fails("# c\nrole=\"entry-point\"   \r\n",
	    NAME ":2: options but no key");
	parse_fails(K1_LINE "\ngroups=\"1\",from=\"::1\"",
	    NAME ":2: options but no key");
}

static void
test_refuses_bad_key_on_a_line(void **state)
{
	(void)state;
	parse_fails(K1_LINE "\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDp r\n",
	    NAME ":2: ssh-rsa: only ssh-ed25519 keys are accepted");
	parse_fails("role=\"entry-point\" ecdsa-sha2-nistp256 AAAA e\n",
	    NAME ":1: ecdsa-sha2-nistp256: only ssh-ed25519 keys are "
	    "accepted");
	parse_fails("no-pty ssh-rsa AAAA\n", NAME ":1: unknown option "
	    "\"no-pty\" (known: role, groups, from, max-channels)");
	parse_fails("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHio3aQidj9d1r5ce4"
	    "MkhPF75N5WFy+5FfzIZk1zH4z! x\n", NAME ":1: ssh-ed25519: key "
	    "data is not valid base64");
	parse_fails("\n\nssh-ed25519\n", NAME ":3: ssh-ed25519: no key data "
	    "after the key type");
	parse_fails("hello world\n", NAME ":1: hello: only ssh-ed25519 keys "
	    "are accepted");
	parse_fails("role=\"entry-point\" ssh-ed25519\n", NAME ":1: "
	    "ssh-ed25519: no key data after the key type");
}

static void
test_refuses_control_characters(void **state)
{
	(void)state;
	parse_fails(K1_LINE "\x01\n", NAME ":1: control character 0x01");
	parse_fails("# fine\n" K1_LINE "\rinjected\r\n",
	    NAME ":2: control character 0x0d");
	parse_fails("# \x1b[31m\n" K1_LINE "\n",
	    NAME ":1: control character 0x1b");
	parse_fails(K1_LINE "\x7f\n", NAME ":1: control character 0x7f");
}

static void
test_line_length_limit(void **state)
{
	char text[AUTHKEYS_LINE_MAX + 64];
	struct authkeys set;
	size_t n;

	(void)state;
	/* Exactly the limit (trailing blanks), then one byte more. */
	n = (size_t)snprintf(text, sizeof(text), "%s", K1_LINE);
	memset(text + n, ' ', AUTHKEYS_LINE_MAX - n);
	memcpy(text + AUTHKEYS_LINE_MAX, "\r\n", 3);
	parse_ok(text, &set);
	assert_int_equal(set.n, 1);
	assert_string_equal(set.keys[0].comment, "test@host");
	authkeys_free(&set);

	memcpy(text + AUTHKEYS_LINE_MAX, " \n", 3);
	parse_fails(text, NAME ":1: line longer than 4096 bytes");
	/* A comment line is bounded too. */
	memset(text, '#', AUTHKEYS_LINE_MAX + 1);
	text[AUTHKEYS_LINE_MAX + 1] = '\0';
	parse_fails(text, NAME ":1: line longer than 4096 bytes");
}

static void
test_refuses_bad_pem(void **state)
{
	char *pem = pem_of(k1_pk), text[1024], *nl;

	(void)state;
	/* BEGIN with no END. */
	nl = strstr(pem, "-----END");
	assert_non_null(nl);
	snprintf(text, sizeof(text), "# c\n%.*s", (int)(nl - pem), pem);
	parse_fails(text, NAME ":2: -----BEGIN PUBLIC KEY----- with no "
	    "-----END PUBLIC KEY----- line after it");
	/* A damaged body. */
	snprintf(text, sizeof(text), "%s", pem);
	text[30] = text[30] == 'A' ? 'B' : 'A';
	text[31] = '!';
	parse_fails(text, NAME ":1: not a public key in PEM");
	/* Another type of key. */
	parse_fails(K2_LINE "\n" RSA_PEM, NAME ":2: a PEM public key of type "
	    "RSA: only ed25519 keys are accepted");
	parse_fails(ED448_PEM, NAME ":1: a PEM public key of type ED448: only "
	    "ed25519 keys are accepted");
	/* A private key, an END alone, another PEM type. */
	parse_fails("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n"
	    "-----END PRIVATE KEY-----\n", NAME ":1: a private key: this file "
	    "takes public keys only");
	parse_fails(K1_LINE "\n-----END PUBLIC KEY-----\n", NAME ":2: \"-----"
	    "END PUBLIC KEY-----\" out of place (a PEM key starts with "
	    "-----BEGIN PUBLIC KEY-----)");
	parse_fails("-----BEGIN CERTIFICATE-----\nMIIB\n-----END "
	    "CERTIFICATE-----\n", NAME ":1: \"-----BEGIN CERTIFICATE-----\" "
	    "out of place (a PEM key starts with -----BEGIN PUBLIC KEY-----)");
	/* Options do not go on a PEM key. */
	snprintf(text, sizeof(text), "role=\"entry-point\" %s", pem);
	parse_fails(text, NAME ":1: options cannot go on a PEM key (write "
	    "the key as an ssh-ed25519 line)");
	free(pem);
}

static void
test_error_line_numbers_count_pem_lines(void **state)
{
	char *pem = pem_of(k2_pk), text[1024];

	(void)state;
	snprintf(text, sizeof(text), "# 1\n%s\n%s\n# 7\nrole=\"x\" %s\n",
	    pem, K1_LINE, K1_LINE);
	free(pem);
	/* PEM on 2-4, blank 5, key 6, comment 7, the bad line 8. */
	parse_fails(text, NAME ":8: role: \"x\" is not entry-point or "
	    "reverse-proxy");
}

static void
test_refuses_duplicate_keys(void **state)
{
	char *pem = pem_of(k1_pk), text[1024];

	(void)state;
	parse_fails("# keys\n" K1_LINE "\n" K2_LINE "\n\n"
	    "role=\"entry-point\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHio3aQi"
	    "dj9d1r5ce4MkhPF75N5WFy+5FfzIZk1zH4zI other comment\n",
	    NAME ":5: the same key as on line 2 (" K1_FINGERPRINT ")");
	/* The same key in both forms. */
	snprintf(text, sizeof(text), "%s%s\n", pem, K1_LINE);
	parse_fails(text, NAME ":4: the same key as on line 1 ("
	    K1_FINGERPRINT ")");
	snprintf(text, sizeof(text), K2_LINE "\n%s%s", pem, pem);
	parse_fails(text, NAME ":5: the same key as on line 2 ("
	    K1_FINGERPRINT ")");
	free(pem);
}

static void
test_refuses_empty_file(void **state)
{
	(void)state;
	parse_fails("", NAME ": no public key in it (make one with 'gen-cert "
	    "ed25519')");
	parse_fails("\n\n  \r\n", NAME ": no public key in it (make one with "
	    "'gen-cert ed25519')");
	parse_fails("# " K1_LINE "\n# nothing else\n", NAME ": no public key "
	    "in it (make one with 'gen-cert ed25519')");
}

/* --- limits --- */

/* n keys, one a line, with random keys; the caller frees the text. */
static char *
many_keys(size_t n)
{
	char line[SSHKEY_LINE_MAX], *text, *p;
	uint8_t pk[32];
	size_t i;

	assert_non_null(text = malloc(n * (SSHKEY_LINE_MAX + 1) + 1));
	p = text;
	for (i = 0; i < n; i++) {
		random_line(pk, "many", line);
		p += sprintf(p, "%s\n", line);
	}
	*p = '\0';
	return text;
}

static void
test_key_count_limit(void **state)
{
	char err[ERRLEN] = "", want[64], *text;
	struct authkeys set;

	(void)state;
	assert_true(sodium_init() >= 0);
	text = many_keys(AUTH_KEYS_MAX);
	parse_ok(text, &set);
	assert_int_equal(set.n, AUTH_KEYS_MAX);
	assert_int_equal(set.keys[AUTH_KEYS_MAX - 1].line, AUTH_KEYS_MAX);
	authkeys_free(&set);
	free(text);

	text = many_keys(AUTH_KEYS_MAX + 1);
	assert_int_equal(authkeys_parse_text(text, NAME, &set, err,
	    sizeof(err)), -1);
	snprintf(want, sizeof(want), NAME ":%d: more than %d keys",
	    AUTH_KEYS_MAX + 1, AUTH_KEYS_MAX);
	assert_string_equal(err, want);
	assert_int_equal(set.n, 0);
	assert_null(set.keys);
	free(text);
}

static void
test_groups_and_from_limits(void **state)
{
	char opts[AUTHKEYS_LINE_MAX], *p;
	struct authkey k;
	int i;

	(void)state;
	p = opts + sprintf(opts, "groups=\"");
	for (i = 0; i < AUTHKEY_GROUPS_MAX; i++)
		p += sprintf(p, "%s%d", i ? "," : "", 10 * i);
	sprintf(p, "\"");
	options_ok(opts, &k);
	assert_int_equal(k.ngroups, AUTHKEY_GROUPS_MAX);
	assert_true(group_ok(&k, 10 * (AUTHKEY_GROUPS_MAX - 1)));
	assert_false(group_ok(&k, 5));
	sprintf(p, ",999\"");
	options_fail(opts, "groups: more than 32 entries");

	p = opts + sprintf(opts, "from=\"");
	for (i = 0; i < AUTHKEY_FROM_MAX; i++)
		p += sprintf(p, "%s10.0.%d.0/24", i ? "," : "", i);
	sprintf(p, "\"");
	options_ok(opts, &k);
	assert_int_equal(k.nfrom, AUTHKEY_FROM_MAX);
	assert_true(from_ok(&k, v4("10.0.31.200")));
	assert_false(from_ok(&k, v4("10.0.32.1")));
	sprintf(p, ",::1\"");
	options_fail(opts, "from: more than 32 entries");
}

/* --- real files --- */

#define TEMP_TEMPLATE "/tmp/trp-test-authkeys-XXXXXX"
#define TEMP_FILES_MAX 4

/* Files made by the running test, removed after it (pass or fail). */
static char temp_paths[TEMP_FILES_MAX][sizeof(TEMP_TEMPLATE)];
static size_t temp_count;

static int
remove_temp_files(void **state)
{
	(void)state;
	while (temp_count > 0)
		unlink(temp_paths[--temp_count]);
	return 0;
}

/* A temporary file holding len bytes of data; path receives its name. */
static void
temp_file(const void *data, size_t len, char path[sizeof(TEMP_TEMPLATE)])
{
	FILE *f;
	int fd;

	memcpy(path, TEMP_TEMPLATE, sizeof(TEMP_TEMPLATE));
	if ((fd = mkstemp(path)) == -1)
		fail_msg("mkstemp failed");
	assert_true(temp_count < TEMP_FILES_MAX);
	memcpy(temp_paths[temp_count++], path, sizeof(TEMP_TEMPLATE));
	assert_non_null(f = fdopen(fd, "w"));
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void
test_load_real_file(void **state)
{
	char path[sizeof(TEMP_TEMPLATE)], err[ERRLEN] = "", *pem, text[2048];
	struct authkeys set;

	(void)state;
	pem = pem_of(k2_pk);
	snprintf(text, sizeof(text), "# relay\nrole=\"reverse-proxy\","
	    "groups=\"1\" %s\r\n%s", K1_LINE, pem);
	free(pem);
	temp_file(text, strlen(text), path);
	if (authkeys_load(path, &set, err, sizeof(err)) != 0)
		fail_msg("load: %s", err);
	assert_int_equal(set.n, 2);
	assert_int_equal(set.keys[0].line, 2);
	assert_int_equal(set.keys[0].roles, 1u << ROLE_REVERSE);
	assert_string_equal(set.keys[0].comment, "test@host");
	assert_memory_equal(set.keys[1].pk, k2_pk, 32);
	assert_int_equal(set.keys[1].line, 3);
	authkeys_free(&set);
}

static void
test_load_errors_name_the_file(void **state)
{
	char path[sizeof(TEMP_TEMPLATE)], err[ERRLEN] = "", want[ERRLEN];
	static const char with_nul[] = K1_LINE "\n# a\0b\n";
	struct authkeys set;

	(void)state;
	assert_int_equal(authkeys_load("/nonexistent/trp/auth.pub", &set, err,
	    sizeof(err)), -1);
	assert_string_equal(err, "/nonexistent/trp/auth.pub: No such file or "
	    "directory");
	assert_int_equal(set.n, 0);
	assert_null(set.keys);

	assert_int_equal(authkeys_load("/tmp", &set, err, sizeof(err)), -1);
	assert_string_equal(err, "/tmp: Is a directory");

	/* A malformed line: PATH:LINE. */
	temp_file("# ok\n" K1_LINE "\ngroups=\"2-1\" " K2_LINE "\n",
	    strlen("# ok\n" K1_LINE "\ngroups=\"2-1\" " K2_LINE "\n"), path);
	assert_int_equal(authkeys_load(path, &set, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:3: groups: range \"2-1\" runs "
	    "backwards (N-M needs N <= M)", path);
	assert_string_equal(err, want);
	assert_int_equal(set.n, 0);
	assert_null(set.keys);

	/* Empty. */
	temp_file("", 0, path);
	assert_int_equal(authkeys_load(path, &set, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: no public key in it (make one with "
	    "'gen-cert ed25519')", path);
	assert_string_equal(err, want);

	/* A NUL byte would cut the text short: refused where it is. */
	temp_file(with_nul, sizeof(with_nul) - 1, path);
	assert_int_equal(authkeys_load(path, &set, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2: NUL byte", path);
	assert_string_equal(err, want);
}

static void
test_load_refuses_huge_file(void **state)
{
	char path[sizeof(TEMP_TEMPLATE)], err[ERRLEN] = "", want[ERRLEN];
	struct authkeys set;
	char *text;
	size_t n = AUTHKEYS_FILE_MAX + 1, i;

	(void)state;
	/* Blank lines: nothing wrong but the size. */
	assert_non_null(text = malloc(n));
	for (i = 0; i < n; i++)
		text[i] = i % 64 == 63 ? '\n' : ' ';
	temp_file(text, n, path);
	assert_int_equal(authkeys_load(path, &set, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: larger than %d bytes", path,
	    AUTHKEYS_FILE_MAX);
	assert_string_equal(err, want);
	/* One byte less is read (and has no key). */
	temp_file(text, n - 1, path);
	assert_int_equal(authkeys_load(path, &set, err, sizeof(err)), -1);
	assert_err_contains(err, "no public key in it");
	free(text);
}

/* Every test runs with the temporary files removed after it. */
#define TEST(f) cmocka_unit_test_teardown(f, remove_temp_files)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_one_line_no_options),
		TEST(test_comments_and_blank_lines),
		TEST(test_crlf_line_ends),
		TEST(test_pem_only_file_as_gen_cert_writes_it),
		TEST(test_pem_and_lines_mixed),
		TEST(test_option_role),
		TEST(test_option_groups),
		TEST(test_option_from_ipv4),
		TEST(test_option_from_ipv6),
		TEST(test_from_ipv4_mapped_sources),
		TEST(test_from_other_sources),
		TEST(test_option_max_channels),
		TEST(test_all_options_together),
		TEST(test_check_says_which_rule),
		TEST(test_verdict_texts),
		TEST(test_describe_is_cut_to_fit),
		TEST(test_find),
		TEST(test_refuses_unknown_option),
		TEST(test_refuses_repeated_option),
		TEST(test_refuses_empty_and_unquoted_values),
		TEST(test_refuses_missing_quote),
		TEST(test_refuses_empty_options),
		TEST(test_refuses_bad_role),
		TEST(test_refuses_bad_groups),
		TEST(test_refuses_bad_from),
		TEST(test_refuses_bad_max_channels),
		TEST(test_refuses_options_without_key),
		TEST(test_refuses_bad_key_on_a_line),
		TEST(test_refuses_control_characters),
		TEST(test_line_length_limit),
		TEST(test_refuses_bad_pem),
		TEST(test_error_line_numbers_count_pem_lines),
		TEST(test_refuses_duplicate_keys),
		TEST(test_refuses_empty_file),
		TEST(test_key_count_limit),
		TEST(test_groups_and_from_limits),
		TEST(test_load_real_file),
		TEST(test_load_errors_name_the_file),
		TEST(test_load_refuses_huge_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
