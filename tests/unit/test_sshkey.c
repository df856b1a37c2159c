/*
 * Unit tests for common/sshkey.c: the OpenSSH one-line public key format
 * for ed25519 keys, and its SHA256 fingerprint.
 *
 * The known answers come from OpenSSH itself (OpenSSH_9.2p1 Debian-2+deb12u10
 * on Debian 12), made once with
 *
 *   ssh-keygen -t ed25519 -N '' -C test@host -f /tmp/k
 *   ssh-keygen -t ed25519 -N '' -C 'alice on laptop' -f /tmp/k2
 *   ssh-keygen -l -f /tmp/k.pub; ssh-keygen -l -f /tmp/k2.pub
 *
 * and recorded here: the .pub lines, what `ssh-keygen -l` printed, and the
 * 32 key bytes (the last 32 bytes of the base64 blob, decoded by Python's
 * base64 module, not by us).  The RSA and ECDSA lines were made the same
 * way (`-t rsa -b 1024`, `-t ecdsa`).  Key data that is wrong on purpose
 * is built here byte by byte.  When ssh-keygen is installed, two tests run
 * it on lines we write and on a key it makes; otherwise they are skipped,
 * with a message.
 *
 * Read top to bottom: the known answers, round trips, what the parser
 * accepts around the key (blanks, line ends, comments), writing lines,
 * then every refusal with its message, then ssh-keygen itself.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "sshkey.h"

/* Fail with the message when err does not contain needle. */
#define assert_err_contains(err, needle) do {				\
	if (strstr((err), (needle)) == NULL)				\
		fail_msg("error \"%s\" does not contain \"%s\"",	\
		    (err), (needle));					\
} while (0)

/* --- known answers (see the top of the file) --- */

static const char k1_line[] = "ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIHio3aQidj9d1r5ce4MkhPF75N5WFy+5FfzIZk1zH4zI "
    "test@host";
static const char k1_keygen_l[] =
    "256 SHA256:WD8TzIwo0wjD0K5WEmSWpcaut7aQgMgafSVsLuBXw+g test@host "
    "(ED25519)";
static const char k1_fingerprint[] =
    "SHA256:WD8TzIwo0wjD0K5WEmSWpcaut7aQgMgafSVsLuBXw+g";
static const uint8_t k1_pk[32] = {
	0x78, 0xa8, 0xdd, 0xa4, 0x22, 0x76, 0x3f, 0x5d, 0xd6, 0xbe, 0x5c,
	0x7b, 0x83, 0x24, 0x84, 0xf1, 0x7b, 0xe4, 0xde, 0x56, 0x17, 0x2f,
	0xb9, 0x15, 0xfc, 0xc8, 0x66, 0x4d, 0x73, 0x1f, 0x8c, 0xc8,
};

static const char k2_line[] = "ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIHuk6sZ3aomi42UdCCv5dHv7BfEdQpfhv3Kdk6OF2A9P "
    "alice on laptop";
static const char k2_fingerprint[] =
    "SHA256:ee0by9Z3WmTw35BCxtUsmLLtAGLJ81ooZRhbvuvdcZg";
static const uint8_t k2_pk[32] = {
	0x7b, 0xa4, 0xea, 0xc6, 0x77, 0x6a, 0x89, 0xa2, 0xe3, 0x65, 0x1d,
	0x08, 0x2b, 0xf9, 0x74, 0x7b, 0xfb, 0x05, 0xf1, 0x1d, 0x42, 0x97,
	0xe1, 0xbf, 0x72, 0x9d, 0x93, 0xa3, 0x85, 0xd8, 0x0f, 0x4f,
};

static const char rsa_line[] = "ssh-rsa "
    "AAAAB3NzaC1yc2EAAAADAQABAAAAgQDpVmCqGwiAXTcym6d9XXyWV9sBqtJgHEDIO6Poo"
    "iA4ECRJ5UsR8mHPbJNWYg69iLMqfJIeQh1PW5yp54LYuFaQDSMslmni+d8/oe+QZg9EAV"
    "AQtDsRLwbyh9ixS7Y4pF2TBvz14jLS3xHgP98j8MnoOO2JG1VdECKDyjggHNiwjw== r";
static const char ecdsa_line[] = "ecdsa-sha2-nistp256 "
    "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLR/vx7aX2AK/CRYS"
    "LK0XWb5SXeXZY67p8nWbUVWgFr4n9ZgXNwwrWfMLaSoX4NHf56y35HKzsWSwUjVjCrc9l"
    "Y= e";

/* Parse line, which must be accepted; comment receives its comment. */
static void
parse_ok(const char *line, uint8_t pk[32], char comment[SSHKEY_COMMENT_MAX
    + 1])
{
	char err[256] = "";

	if (sshkey_parse(line, pk, comment, SSHKEY_COMMENT_MAX + 1, err,
	    sizeof(err)) != 0)
		fail_msg("line '%s' refused: %s", line, err);
}

/* Parse line, which must be refused with a message holding needle, and
 * leave pk as it was. */
static void
parse_fails(const char *line, const char *needle)
{
	static const uint8_t untouched[32] = { 0xaa, 0xaa, 0xaa };
	char err[256] = "", comment[SSHKEY_COMMENT_MAX + 1];
	uint8_t pk[32];

	memcpy(pk, untouched, sizeof(pk));
	if (sshkey_parse(line, pk, comment, sizeof(comment), err,
	    sizeof(err)) != -1)
		fail_msg("line '%s' accepted", line);
	assert_err_contains(err, needle);
	assert_memory_equal(pk, untouched, sizeof(pk));
}

static void
test_known_answer_parse(void **state)
{
	char comment[SSHKEY_COMMENT_MAX + 1];
	uint8_t pk[32];

	(void)state;
	parse_ok(k1_line, pk, comment);
	assert_memory_equal(pk, k1_pk, 32);
	assert_string_equal(comment, "test@host");
	parse_ok(k2_line, pk, comment);
	assert_memory_equal(pk, k2_pk, 32);
	assert_string_equal(comment, "alice on laptop");
}

static void
test_known_answer_format(void **state)
{
	char line[SSHKEY_LINE_MAX];

	(void)state;
	assert_int_equal(sshkey_format(k1_pk, "test@host", line,
	    sizeof(line)), 0);
	assert_string_equal(line, k1_line);
	assert_int_equal(sshkey_format(k2_pk, "alice on laptop", line,
	    sizeof(line)), 0);
	assert_string_equal(line, k2_line);
}

static void
test_known_answer_fingerprint(void **state)
{
	char fp[SSHKEY_FINGERPRINT_LEN], want[SSHKEY_FINGERPRINT_LEN];

	(void)state;
	memset(fp, 'x', sizeof(fp));
	sshkey_fingerprint(k1_pk, fp);
	assert_string_equal(fp, k1_fingerprint);
	assert_int_equal(strlen(fp), SSHKEY_FINGERPRINT_LEN - 1);
	/* ... which is the second word of what ssh-keygen -l printed. */
	assert_int_equal(sscanf(k1_keygen_l, "256 %50s ", want), 1);
	assert_string_equal(fp, want);

	sshkey_fingerprint(k2_pk, fp);
	assert_string_equal(fp, k2_fingerprint);
}

/* --- round trips --- */

static void
test_round_trip_random_keys(void **state)
{
	char line[SSHKEY_LINE_MAX], comment[SSHKEY_COMMENT_MAX + 1];
	char fa[SSHKEY_FINGERPRINT_LEN], fb[SSHKEY_FINGERPRINT_LEN];
	uint8_t pk[32], back[32];
	int i;

	(void)state;
	assert_true(sodium_init() >= 0);
	for (i = 0; i < 200; i++) {
		randombytes_buf(pk, sizeof(pk));
		assert_int_equal(sshkey_format(pk, "user@example.org", line,
		    sizeof(line)), 0);
		parse_ok(line, back, comment);
		assert_memory_equal(back, pk, 32);
		assert_string_equal(comment, "user@example.org");
		sshkey_fingerprint(pk, fa);
		sshkey_fingerprint(back, fb);
		assert_string_equal(fa, fb);
	}
}

static void
test_round_trip_without_comment(void **state)
{
	char line[SSHKEY_LINE_MAX], comment[SSHKEY_COMMENT_MAX + 1];
	uint8_t back[32];

	(void)state;
	assert_int_equal(sshkey_format(k1_pk, NULL, line, sizeof(line)), 0);
	assert_int_equal(strlen(line), strlen("ssh-ed25519 ") +
	    SSHKEY_BASE64_LEN);
	assert_int_equal(strncmp(line, k1_line, strlen(line)), 0);
	memset(comment, 'x', sizeof(comment));
	parse_ok(line, back, comment);
	assert_memory_equal(back, k1_pk, 32);
	assert_string_equal(comment, "");

	/* "" is no comment too: no trailing space. */
	assert_int_equal(sshkey_format(k1_pk, "", line, sizeof(line)), 0);
	assert_int_equal(line[strlen(line) - 1] != ' ', 1);
	assert_int_equal(strlen(line), strlen("ssh-ed25519 ") +
	    SSHKEY_BASE64_LEN);
}

static void
test_round_trip_longest_comment(void **state)
{
	char line[SSHKEY_LINE_MAX], comment[SSHKEY_COMMENT_MAX + 1];
	char back_comment[SSHKEY_COMMENT_MAX + 1];
	uint8_t back[32];

	(void)state;
	memset(comment, 'c', SSHKEY_COMMENT_MAX);
	comment[SSHKEY_COMMENT_MAX] = '\0';
	/* SSHKEY_LINE_MAX is just enough. */
	assert_int_equal(sshkey_format(k2_pk, comment, line, sizeof(line)), 0);
	assert_int_equal(strlen(line), SSHKEY_LINE_MAX - 1);
	parse_ok(line, back, back_comment);
	assert_string_equal(back_comment, comment);
}

/* --- around the key --- */

static void
test_parse_blanks_and_line_ends(void **state)
{
	char line[512], comment[SSHKEY_COMMENT_MAX + 1];
	uint8_t pk[32];
	static const char *const forms[] = {
	    "%s\n", "%s\r\n", "%s\r", "%s   \t \r\n", "  \t%s",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		snprintf(line, sizeof(line), forms[i], k1_line);
		parse_ok(line, pk, comment);
		assert_memory_equal(pk, k1_pk, 32);
		assert_string_equal(comment, "test@host");
	}
	/* Tabs between the fields, several blanks before the comment. */
	parse_ok("ssh-ed25519\tAAAAC3NzaC1lZDI1NTE5AAAAIHio3aQidj9d1r5ce4Mkh"
	    "PF75N5WFy+5FfzIZk1zH4zI \t  two  words\there\n", pk, comment);
	assert_memory_equal(pk, k1_pk, 32);
	assert_string_equal(comment, "two  words\there");
	/* No comment, with and without a line end. */
	parse_ok("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHio3aQidj9d1r5ce4Mkh"
	    "PF75N5WFy+5FfzIZk1zH4zI\r\n", pk, comment);
	assert_string_equal(comment, "");
	parse_ok("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHio3aQidj9d1r5ce4Mkh"
	    "PF75N5WFy+5FfzIZk1zH4zI   ", pk, comment);
	assert_string_equal(comment, "");
}

static void
test_parse_comment_may_be_null(void **state)
{
	char err[256] = "";
	uint8_t pk[32];

	(void)state;
	assert_int_equal(sshkey_parse(k2_line, pk, NULL, 0, err, sizeof(err)),
	    0);
	assert_memory_equal(pk, k2_pk, 32);
}

static void
test_parse_comment_keeps_utf8(void **state)
{
	char line[SSHKEY_LINE_MAX], comment[SSHKEY_COMMENT_MAX + 1];
	uint8_t pk[32];

	(void)state;
	assert_int_equal(sshkey_format(k1_pk, "J\xc3\xa9r\xc3\xb4me #2", line,
	    sizeof(line)), 0);
	parse_ok(line, pk, comment);
	assert_string_equal(comment, "J\xc3\xa9r\xc3\xb4me #2");
}

/* --- writing lines --- */

static void
test_format_refuses_small_buffer(void **state)
{
	char line[SSHKEY_LINE_MAX];
	size_t need = strlen(k1_line) + 1;

	(void)state;
	assert_int_equal(sshkey_format(k1_pk, "test@host", line, need), 0);
	assert_string_equal(line, k1_line);
	assert_int_equal(sshkey_format(k1_pk, "test@host", line, need - 1),
	    -1);
	assert_int_equal(sshkey_format(k1_pk, NULL, line, 20), -1);
	assert_int_equal(sshkey_format(k1_pk, NULL, line, 0), -1);
}

static void
test_format_refuses_bad_comment(void **state)
{
	char line[SSHKEY_LINE_MAX + 8], comment[SSHKEY_COMMENT_MAX + 2];

	(void)state;
	assert_int_equal(sshkey_format(k1_pk, "two\nlines", line,
	    sizeof(line)), -1);
	assert_int_equal(sshkey_format(k1_pk, "cr\r", line, sizeof(line)), -1);
	assert_int_equal(sshkey_format(k1_pk, "esc\x1b[0m", line,
	    sizeof(line)), -1);
	assert_int_equal(sshkey_format(k1_pk, "del\x7f", line, sizeof(line)),
	    -1);
	memset(comment, 'c', SSHKEY_COMMENT_MAX + 1);
	comment[SSHKEY_COMMENT_MAX + 1] = '\0';
	assert_int_equal(sshkey_format(k1_pk, comment, line, sizeof(line)), -1);
}

/* --- refusals --- */

/* Key data laid out by hand: "ssh-ed25519 " + base64(blob). */
static void
line_of_blob(const uint8_t *blob, size_t n, char *line, size_t len)
{
	char b64[512];

	assert_true(sodium_base64_ENCODED_LEN(n,
	    sodium_base64_VARIANT_ORIGINAL) <= sizeof(b64));
	assert_non_null(sodium_bin2base64(b64, sizeof(b64), blob, n,
	    sodium_base64_VARIANT_ORIGINAL));
	assert_true((size_t)snprintf(line, len, "ssh-ed25519 %s c", b64) <
	    len);
}

static size_t
put_string(uint8_t *p, const void *s, uint32_t n)
{
	p[0] = (uint8_t)(n >> 24);
	p[1] = (uint8_t)(n >> 16);
	p[2] = (uint8_t)(n >> 8);
	p[3] = (uint8_t)n;
	memcpy(p + 4, s, n);
	return 4 + (size_t)n;
}

/* The right blob for k1: string "ssh-ed25519", string pk. */
static size_t
good_blob(uint8_t *blob)
{
	size_t n = put_string(blob, "ssh-ed25519", 11);

	return n + put_string(blob + n, k1_pk, 32);
}

static void
test_blob_built_here_is_accepted(void **state)
{
	char line[512], comment[SSHKEY_COMMENT_MAX + 1];
	uint8_t blob[128], pk[32];

	(void)state;
	/* The helpers are right: this is k1's line. */
	line_of_blob(blob, good_blob(blob), line, sizeof(line));
	parse_ok(line, pk, comment);
	assert_memory_equal(pk, k1_pk, 32);
	assert_int_equal(strncmp(line, k1_line, strlen(line) - 2), 0);
}

static void
test_refuses_other_key_types(void **state)
{
	(void)state;
	parse_fails(rsa_line, "ssh-rsa: only ssh-ed25519 keys are accepted");
	parse_fails(ecdsa_line,
	    "ecdsa-sha2-nistp256: only ssh-ed25519 keys are accepted");
	parse_fails("ssh-ed448 AAAA", "ssh-ed448: only ssh-ed25519 keys are "
	    "accepted");
	/* Near misses of the name. */
	parse_fails("SSH-ED25519 AAAAC3NzaC1lZDI1NTE5AAAAIHio3aQidj9d1r5ce4Mk"
	    "hPF75N5WFy+5FfzIZk1zH4zI", "SSH-ED25519: only ssh-ed25519");
	parse_fails("ssh-ed25519AAAAC3NzaC1lZDI1NTE5AAAAIHio3aQidj9d1r5ce4Mk"
	    "hPF75N5WFy+5FfzIZk1zH4zI", "only ssh-ed25519");
	parse_fails("sk-ssh-ed25519@openssh.com AAAA", "sk-ssh-ed25519@openssh"
	    ".com: only ssh-ed25519 keys are accepted");
}

static void
test_refuses_long_type_shortened(void **state)
{
	char line[200], err[256] = "";
	uint8_t pk[32];

	(void)state;
	memset(line, 'x', 150);
	memcpy(line + 150, " AAAA", 6);
	assert_int_equal(sshkey_parse(line, pk, NULL, 0, err, sizeof(err)), -1);
	assert_err_contains(err, "xxx...: only ssh-ed25519 keys are accepted");
	assert_true(strlen(err) < 100);
}

static void
test_refuses_no_key(void **state)
{
	(void)state;
	parse_fails("", "no key");
	parse_fails("  \t \r\n", "no key");
	parse_fails("ssh-ed25519", "ssh-ed25519: no key data after the key "
	    "type");
	parse_fails("ssh-ed25519   \r\n", "ssh-ed25519: no key data after the "
	    "key type");
}

static void
test_refuses_bad_base64(void **state)
{
	(void)state;
	/* A character outside the alphabet. */
	parse_fails("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHio3aQidj9d1r5ce4Mk"
	    "hPF75N5WFy+5FfzIZk1zH4z! c", "ssh-ed25519: key data is not valid "
	    "base64");
	/* URL-safe alphabet is not OpenSSH's. */
	parse_fails("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHio3aQidj9d1r5ce4Mk"
	    "hPF75N5WFy-5FfzIZk1zH4zI c", "key data is not valid base64");
	/* One character short: not a whole number of base64 quanta. */
	parse_fails("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHio3aQidj9d1r5ce4Mk"
	    "hPF75N5WFy+5FfzIZk1zH4z c", "key data is not valid base64");
	/* Padding where none belongs, and missing padding. */
	parse_fails("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHio3aQidj9d1r5ce4Mk"
	    "hPF75N5WFy+5FfzIZk1zH4zI==== c", "key data is not valid base64");
	parse_fails("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA c",
	    "key data is not valid base64");
	parse_fails("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AA c",
	    "key data is not valid base64");
}

static void
test_refuses_too_long_key_data(void **state)
{
	static char line[12 + 4100 + 1];

	(void)state;
	memcpy(line, "ssh-ed25519 ", 12);
	memset(line + 12, 'A', 4097);
	line[12 + 4097] = '\0';
	parse_fails(line, "ssh-ed25519: key data too long (4097 characters; an "
	    "ed25519 key has 68)");
	/* 4096 is decoded, and is simply not an ed25519 key. */
	line[12 + 4096] = '\0';
	parse_fails(line, "ssh-ed25519: key data holds another key type");
}

static void
test_refuses_blob_of_another_type(void **state)
{
	char line[600];
	uint8_t blob[128];
	size_t n;

	(void)state;
	/* The first word says ed25519; the RSA key data says otherwise. */
	snprintf(line, sizeof(line), "ssh-ed25519 %s", rsa_line + 8);
	parse_fails(line, "ssh-ed25519: key data holds a ssh-rsa key");

	n = put_string(blob, "ssh-ed25518", 11);
	n += put_string(blob + n, k1_pk, 32);
	line_of_blob(blob, n, line, sizeof(line));
	parse_fails(line, "key data holds a ssh-ed25518 key");

	/* A type name that is not printable is not printed. */
	n = put_string(blob, "ssh-ed2551\n", 11);
	n += put_string(blob + n, k1_pk, 32);
	line_of_blob(blob, n, line, sizeof(line));
	parse_fails(line, "ssh-ed25519: key data holds another key type");

	/* An empty type name. */
	n = put_string(blob, "", 0);
	n += put_string(blob + n, k1_pk, 32);
	line_of_blob(blob, n, line, sizeof(line));
	parse_fails(line, "key data holds another key type");
}

static void
test_refuses_wrong_key_length(void **state)
{
	uint8_t blob[128], big[33] = { 0 };
	char line[600];
	size_t n;

	(void)state;
	n = put_string(blob, "ssh-ed25519", 11);
	n += put_string(blob + n, k1_pk, 31);
	line_of_blob(blob, n, line, sizeof(line));
	parse_fails(line, "ssh-ed25519: key data holds a key of 31 bytes, "
	    "expected 32");

	n = put_string(blob, "ssh-ed25519", 11);
	n += put_string(blob + n, big, 33);
	line_of_blob(blob, n, line, sizeof(line));
	parse_fails(line, "key data holds a key of 33 bytes, expected 32");

	n = put_string(blob, "ssh-ed25519", 11);
	n += put_string(blob + n, big, 0);
	line_of_blob(blob, n, line, sizeof(line));
	parse_fails(line, "key data holds a key of 0 bytes, expected 32");
}

static void
test_refuses_truncated_blob(void **state)
{
	uint8_t blob[128];
	char line[600];
	size_t n, cut;

	(void)state;
	n = good_blob(blob);
	/* Every length short of the whole blob, from inside the type's
	 * length to one byte short of the key. */
	for (cut = 1; cut < n; cut++) {
		line_of_blob(blob, n - cut, line, sizeof(line));
		parse_fails(line, "ssh-ed25519: key data is truncated");
	}
	/* A type length far past the end. */
	blob[0] = blob[1] = blob[2] = blob[3] = 0xff;
	line_of_blob(blob, n, line, sizeof(line));
	parse_fails(line, "ssh-ed25519: key data is truncated");
	/* Right up to the key length field. */
	n = put_string(blob, "ssh-ed25519", 11);
	line_of_blob(blob, n + 2, line, sizeof(line));
	parse_fails(line, "ssh-ed25519: key data is truncated");
}

static void
test_refuses_trailing_bytes_in_blob(void **state)
{
	uint8_t blob[128];
	char line[600];
	size_t n;

	(void)state;
	n = good_blob(blob);
	blob[n] = 0;
	line_of_blob(blob, n + 1, line, sizeof(line));
	parse_fails(line, "ssh-ed25519: key data has 1 byte after the key");
	memset(blob + n, 0x41, 7);
	line_of_blob(blob, n + 7, line, sizeof(line));
	parse_fails(line, "ssh-ed25519: key data has 7 bytes after the key");
}

static void
test_refuses_control_character_in_comment(void **state)
{
	char line[300];

	(void)state;
	snprintf(line, sizeof(line), "%s\x1b[2J", k1_line);
	parse_fails(line, "ssh-ed25519: control character 0x1b in the comment");
	snprintf(line, sizeof(line), "%s\nssh-ed25519 AAAA", k1_line);
	parse_fails(line, "control character 0x0a in the comment");
	snprintf(line, sizeof(line), "%s\rinjected", k1_line);
	parse_fails(line, "control character 0x0d in the comment");
}

static void
test_refuses_long_comment(void **state)
{
	char line[SSHKEY_LINE_MAX + 16], comment[16], err[256] = "";
	uint8_t pk[32];
	size_t n;

	(void)state;
	n = (size_t)snprintf(line, sizeof(line), "%.80s ", k1_line);
	memset(line + n, 'c', SSHKEY_COMMENT_MAX + 1);
	line[n + SSHKEY_COMMENT_MAX + 1] = '\0';
	parse_fails(line, "ssh-ed25519: comment longer than 255 bytes");
	/* Checked even when the caller does not want the comment. */
	assert_int_equal(sshkey_parse(line, pk, NULL, 0, err, sizeof(err)),
	    -1);
	assert_err_contains(err, "ssh-ed25519: comment longer than 255 bytes");
	/* Within SSHKEY_COMMENT_MAX but beyond the caller's buffer: the 15
	 * bytes of "alice on laptop" need 16. */
	assert_int_equal(sshkey_parse(k2_line, pk, comment, 16, err,
	    sizeof(err)), 0);
	assert_string_equal(comment, "alice on laptop");
	assert_int_equal(sshkey_parse(k2_line, pk, comment, 15, err,
	    sizeof(err)), -1);
	assert_err_contains(err, "ssh-ed25519: comment longer than 14 bytes");
	assert_int_equal(sshkey_parse(k2_line, pk, comment, 1, err,
	    sizeof(err)), -1);
	assert_err_contains(err, "comment longer than 0 bytes");
}

/* --- ssh-keygen itself --- */

#define TEMP_TEMPLATE "/tmp/trp-test-sshkey-XXXXXX"

/* What the running test made: a file, or a directory with a key pair
 * "k" in it; removed after the test, pass or fail. */
static char temp_file[sizeof(TEMP_TEMPLATE)];
static char temp_dir[sizeof(TEMP_TEMPLATE)];

static int
remove_temp(void **state)
{
	char path[sizeof(TEMP_TEMPLATE) + 8];

	(void)state;
	if (temp_file[0] != '\0')
		unlink(temp_file);
	if (temp_dir[0] != '\0') {
		snprintf(path, sizeof(path), "%s/k", temp_dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/k.pub", temp_dir);
		unlink(path);
		rmdir(temp_dir);
	}
	temp_file[0] = temp_dir[0] = '\0';
	return 0;
}

/* Is ssh-keygen on the PATH?  Says so and returns 0 when it is not. */
static int
have_ssh_keygen(void)
{
	int rc = system("command -v ssh-keygen >/dev/null 2>&1");

	if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
		print_message("ssh-keygen is not installed (Debian: "
		    "openssh-client): skipped\n");
		return 0;
	}
	return 1;
}

/* Run cmd and put the first line it prints, without its newline, in out.
 * Fails the test unless it exits 0. */
static void
run_first_line(const char *cmd, char *out, size_t len)
{
	FILE *p;
	int rc;

	assert_non_null(p = popen(cmd, "r"));
	if (fgets(out, (int)len, p) == NULL)
		out[0] = '\0';
	while (fgetc(p) != EOF)
		;
	rc = pclose(p);
	if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0)
		fail_msg("'%s' failed (status %d): %s", cmd, rc, out);
	out[strcspn(out, "\n")] = '\0';
}

static void
test_ssh_keygen_reads_our_line(void **state)
{
	char line[SSHKEY_LINE_MAX], cmd[128], got[512], want[512];
	char fp[SSHKEY_FINGERPRINT_LEN];
	uint8_t pk[32];
	FILE *f;
	int fd;

	(void)state;
	if (!have_ssh_keygen())
		skip();
	assert_true(sodium_init() >= 0);
	randombytes_buf(pk, sizeof(pk));
	assert_int_equal(sshkey_format(pk, "relay test key", line,
	    sizeof(line)), 0);
	memcpy(temp_file, TEMP_TEMPLATE, sizeof(TEMP_TEMPLATE));
	if ((fd = mkstemp(temp_file)) == -1) {
		temp_file[0] = '\0';
		fail_msg("mkstemp failed");
	}
	assert_non_null(f = fdopen(fd, "w"));
	assert_true(fprintf(f, "%s\n", line) > 0);
	assert_int_equal(fclose(f), 0);
	snprintf(cmd, sizeof(cmd), "ssh-keygen -l -f %s 2>&1", temp_file);
	run_first_line(cmd, got, sizeof(got));
	sshkey_fingerprint(pk, fp);
	snprintf(want, sizeof(want), "256 %s relay test key (ED25519)", fp);
	assert_string_equal(got, want);
}

static void
test_ssh_keygen_key_reads_back(void **state)
{
	char cmd[256], publine[512], got[512], want[512], path[64];
	char comment[SSHKEY_COMMENT_MAX + 1], fp[SSHKEY_FINGERPRINT_LEN];
	char line[SSHKEY_LINE_MAX];
	uint8_t pk[32];

	(void)state;
	if (!have_ssh_keygen())
		skip();
	memcpy(temp_dir, TEMP_TEMPLATE, sizeof(TEMP_TEMPLATE));
	if (mkdtemp(temp_dir) == NULL) {
		temp_dir[0] = '\0';
		fail_msg("mkdtemp failed");
	}
	snprintf(path, sizeof(path), "%s/k", temp_dir);
	snprintf(cmd, sizeof(cmd), "ssh-keygen -q -t ed25519 -N '' -C "
	    "fresh@test -f %s </dev/null >/dev/null 2>&1 && cat %s.pub",
	    path, path);
	run_first_line(cmd, publine, sizeof(publine));
	snprintf(cmd, sizeof(cmd), "ssh-keygen -l -f %s.pub 2>&1", path);
	run_first_line(cmd, got, sizeof(got));

	parse_ok(publine, pk, comment);
	assert_string_equal(comment, "fresh@test");
	sshkey_fingerprint(pk, fp);
	snprintf(want, sizeof(want), "256 %s fresh@test (ED25519)", fp);
	assert_string_equal(got, want);
	/* And we write the very line ssh-keygen wrote. */
	assert_int_equal(sshkey_format(pk, comment, line, sizeof(line)), 0);
	assert_string_equal(line, publine);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_answer_parse),
		cmocka_unit_test(test_known_answer_format),
		cmocka_unit_test(test_known_answer_fingerprint),
		cmocka_unit_test(test_round_trip_random_keys),
		cmocka_unit_test(test_round_trip_without_comment),
		cmocka_unit_test(test_round_trip_longest_comment),
		cmocka_unit_test(test_parse_blanks_and_line_ends),
		cmocka_unit_test(test_parse_comment_may_be_null),
		cmocka_unit_test(test_parse_comment_keeps_utf8),
		cmocka_unit_test(test_format_refuses_small_buffer),
		cmocka_unit_test(test_format_refuses_bad_comment),
		cmocka_unit_test(test_blob_built_here_is_accepted),
		cmocka_unit_test(test_refuses_other_key_types),
		cmocka_unit_test(test_refuses_long_type_shortened),
		cmocka_unit_test(test_refuses_no_key),
		cmocka_unit_test(test_refuses_bad_base64),
		cmocka_unit_test(test_refuses_too_long_key_data),
		cmocka_unit_test(test_refuses_blob_of_another_type),
		cmocka_unit_test(test_refuses_wrong_key_length),
		cmocka_unit_test(test_refuses_truncated_blob),
		cmocka_unit_test(test_refuses_trailing_bytes_in_blob),
		cmocka_unit_test(test_refuses_control_character_in_comment),
		cmocka_unit_test(test_refuses_long_comment),
		cmocka_unit_test_teardown(test_ssh_keygen_reads_our_line,
		    remove_temp),
		cmocka_unit_test_teardown(test_ssh_keygen_key_reads_back,
		    remove_temp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
