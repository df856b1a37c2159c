/*
 * Unit tests for common/frame.c: the wire format (see common/PROTOCOL.md).
 *
 * Read top to bottom: headers, frame_peek on an evbuffer, the AUTH, OPEN
 * and OPEN_RESULT payloads, and frames written through real evbuffers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "frame.h"

/* Fail with the message when err does not contain needle. */
#define assert_err_contains(err, needle) do {				\
	if (strstr((err), (needle)) == NULL)				\
		fail_msg("error \"%s\" does not contain \"%s\"",	\
		    (err), (needle));					\
} while (0)

/* Largest OPEN payload: port, host length, host, source length, source. */
#define OPEN_PAYLOAD_MAX (4 + OPEN_HOST_MAX + OPEN_SOURCE_MAX)

/* Decode a header that must be refused with a message holding needle. */
static void
header_refused(uint8_t type, uint16_t length, const char *needle)
{
	struct frame_header h;
	uint8_t buf[FRAME_HEADER_LEN];
	char err[256] = "";

	frame_header_encode(buf, type, length);
	if (frame_header_decode(buf, sizeof(buf), &h, err, sizeof(err)) != -1)
		fail_msg("type %u length %u accepted", type, length);
	assert_err_contains(err, needle);
}

/* --- headers --- */

static void
test_header_round_trip_every_type(void **state)
{
	static const struct {
		uint8_t type;
		uint16_t length;
	} cases[] = {
		{ FRAME_AUTH, AUTH_PAYLOAD_LEN },
		{ FRAME_AUTH_RESULT, 2 },
		{ FRAME_PING, 8 },
		{ FRAME_PONG, 0 },
		{ FRAME_OPEN, 4 + 9 + 15 },
		{ FRAME_OPEN_RESULT, 1 + OPEN_RESULT_TEXT_MAX },
		{ FRAME_DATA, FRAME_DATA_MAX },
		{ FRAME_FIN, 0 },
		{ FRAME_RST, 0 },
		{ FRAME_REUSE, 0 },
		{ FRAME_RETIRE, 0 },
	};
	struct frame_header h;
	uint8_t buf[FRAME_HEADER_LEN];
	char err[256] = "";
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		frame_header_encode(buf, cases[i].type, cases[i].length);
		memset(&h, 0xaa, sizeof(h));
		if (frame_header_decode(buf, sizeof(buf), &h, err,
		    sizeof(err)) != 1)
			fail_msg("type %u: %s", cases[i].type, err);
		assert_int_equal(h.type, cases[i].type);
		assert_int_equal(h.length, cases[i].length);
	}
}

static void
test_header_is_type_then_big_endian_length(void **state)
{
	uint8_t buf[FRAME_HEADER_LEN];
	const uint8_t want[FRAME_HEADER_LEN] = { FRAME_DATA, 0x12, 0x34 };

	(void)state;
	frame_header_encode(buf, FRAME_DATA, 0x1234);
	assert_memory_equal(buf, want, sizeof(want));
}

static void
test_header_needs_three_bytes(void **state)
{
	struct frame_header h;
	uint8_t buf[FRAME_HEADER_LEN];
	char err[256] = "";
	size_t len;

	(void)state;
	frame_header_encode(buf, FRAME_PING, 0);
	for (len = 0; len < FRAME_HEADER_LEN; len++)
		assert_int_equal(frame_header_decode(buf, len, &h, err,
		    sizeof(err)), 0);
}

static void
test_header_data_too_long(void **state)
{
	(void)state;
	header_refused(FRAME_DATA, FRAME_DATA_MAX + 1,
	    "DATA frame of 16385 bytes (allowed 1-16384)");
	header_refused(FRAME_DATA, 0xffff, "DATA frame of 65535 bytes");
}

static void
test_header_data_empty(void **state)
{
	(void)state;
	header_refused(FRAME_DATA, 0, "DATA frame of 0 bytes");
}

static void
test_header_control_too_long(void **state)
{
	(void)state;
	header_refused(FRAME_AUTH, FRAME_CONTROL_MAX + 1,
	    "AUTH frame of 1025 bytes");
	header_refused(FRAME_AUTH_RESULT, FRAME_CONTROL_MAX + 1,
	    "AUTH_RESULT frame of 1025 bytes");
	header_refused(FRAME_PING, 9, "PING frame of 9 bytes (allowed 0-8)");
	header_refused(FRAME_PONG, 9, "PONG frame of 9 bytes");
	header_refused(FRAME_OPEN, OPEN_PAYLOAD_MAX + 1,
	    "OPEN frame of 322 bytes (allowed 4-321)");
	header_refused(FRAME_OPEN_RESULT, 2 + OPEN_RESULT_TEXT_MAX,
	    "OPEN_RESULT frame of 202 bytes");
	header_refused(FRAME_FIN, 1, "FIN frame of 1 bytes (allowed 0-0)");
	header_refused(FRAME_RST, 1, "RST frame of 1 bytes");
	header_refused(FRAME_AUTH, 0xffff, "AUTH frame of 65535 bytes");
}

static void
test_header_control_too_short(void **state)
{
	(void)state;
	header_refused(FRAME_AUTH, 0, "AUTH frame of 0 bytes");
	header_refused(FRAME_AUTH_RESULT, 1, "AUTH_RESULT frame of 1 bytes");
	header_refused(FRAME_OPEN, 3, "OPEN frame of 3 bytes");
	header_refused(FRAME_OPEN_RESULT, 0, "OPEN_RESULT frame of 0 bytes");
}

static void
test_header_unknown_type(void **state)
{
	(void)state;
	header_refused(0, 0, "unknown frame type 0");
	header_refused(12, 0, "unknown frame type 12");
	header_refused(FRAME_REUSE, 1, "REUSE frame of 1 bytes");
	header_refused(FRAME_RETIRE, 1, "RETIRE frame of 1 bytes");
	header_refused(200, 1, "unknown frame type 200");
	header_refused(255, 1, "unknown frame type 255");
}

static void
test_type_names(void **state)
{
	(void)state;
	assert_string_equal(frame_type_name(FRAME_AUTH), "AUTH");
	assert_string_equal(frame_type_name(FRAME_DATA), "DATA");
	assert_string_equal(frame_type_name(FRAME_RST), "RST");
	assert_string_equal(frame_type_name(FRAME_REUSE), "REUSE");
	assert_string_equal(frame_type_name(FRAME_RETIRE), "RETIRE");
	assert_string_equal(frame_type_name(12), "unknown");
	assert_string_equal(frame_type_name(0), "unknown");
	assert_string_equal(frame_type_name(200), "unknown");
	assert_string_equal(open_code_text(OPEN_NO_PEER),
	    "no reverse-proxy available in this group");
	assert_string_equal(open_code_text(OPEN_NOT_ALLOWED),
	    "destination not allowed by the reverse-proxy");
	assert_string_equal(open_code_text(7), "unknown error");
	assert_string_equal(auth_code_text(AUTH_BAD_VERSION),
	    "protocol version not supported");
	assert_string_equal(auth_code_text(AUTH_STOPPING), "relay stopping");
	assert_string_equal(auth_code_text(99), "unknown error");
}

/* --- frame_peek --- */

static void
test_peek_partial_header(void **state)
{
	struct evbuffer *in = evbuffer_new();
	struct frame_header h;
	uint8_t hdr[FRAME_HEADER_LEN];
	char err[256] = "";

	(void)state;
	assert_non_null(in);
	frame_header_encode(hdr, FRAME_PING, 4);
	assert_int_equal(frame_peek(in, &h, err, sizeof(err)), 0);
	evbuffer_add(in, hdr, 2);
	assert_int_equal(frame_peek(in, &h, err, sizeof(err)), 0);
	assert_int_equal(evbuffer_get_length(in), 2);
	evbuffer_free(in);
}

static void
test_peek_partial_payload(void **state)
{
	struct evbuffer *in = evbuffer_new();
	struct frame_header h;
	uint8_t frame[FRAME_HEADER_LEN + 4] = { 0, 0, 0, 'a', 'b', 'c', 'd' };
	char err[256] = "";

	(void)state;
	assert_non_null(in);
	frame_header_encode(frame, FRAME_PING, 4);
	evbuffer_add(in, frame, FRAME_HEADER_LEN + 3);	/* one byte short */
	assert_int_equal(frame_peek(in, &h, err, sizeof(err)), 0);
	assert_int_equal(evbuffer_get_length(in), FRAME_HEADER_LEN + 3);
	evbuffer_free(in);
}

static void
test_peek_whole_frame_removes_nothing(void **state)
{
	struct evbuffer *in = evbuffer_new();
	struct frame_header h;
	uint8_t frame[FRAME_HEADER_LEN + 4] = { 0, 0, 0, 'a', 'b', 'c', 'd' };
	uint8_t copy[sizeof(frame)];
	char err[256] = "";

	(void)state;
	assert_non_null(in);
	frame_header_encode(frame, FRAME_PING, 4);
	evbuffer_add(in, frame, sizeof(frame));
	assert_int_equal(frame_peek(in, &h, err, sizeof(err)), 1);
	assert_int_equal(h.type, FRAME_PING);
	assert_int_equal(h.length, 4);
	assert_int_equal(evbuffer_get_length(in), sizeof(frame));
	assert_int_equal(evbuffer_copyout(in, copy, sizeof(copy)),
	    sizeof(copy));
	assert_memory_equal(copy, frame, sizeof(frame));

	/* Bytes of the next frame behind it change nothing. */
	evbuffer_add(in, frame, 2);
	assert_int_equal(frame_peek(in, &h, err, sizeof(err)), 1);
	assert_int_equal(h.length, 4);
	assert_int_equal(evbuffer_get_length(in), sizeof(frame) + 2);
	evbuffer_free(in);
}

static void
test_peek_empty_frame(void **state)
{
	struct evbuffer *in = evbuffer_new();
	struct frame_header h;
	uint8_t hdr[FRAME_HEADER_LEN];
	char err[256] = "";

	(void)state;
	assert_non_null(in);
	frame_header_encode(hdr, FRAME_FIN, 0);
	evbuffer_add(in, hdr, sizeof(hdr));
	assert_int_equal(frame_peek(in, &h, err, sizeof(err)), 1);
	assert_int_equal(h.type, FRAME_FIN);
	assert_int_equal(h.length, 0);
	evbuffer_free(in);
}

static void
test_peek_invalid_header(void **state)
{
	struct evbuffer *in = evbuffer_new();
	struct frame_header h;
	uint8_t hdr[FRAME_HEADER_LEN];
	char err[256] = "";

	(void)state;
	assert_non_null(in);
	/* Refused from the header alone, before any payload arrives. */
	frame_header_encode(hdr, FRAME_DATA, FRAME_DATA_MAX + 1);
	evbuffer_add(in, hdr, sizeof(hdr));
	assert_int_equal(frame_peek(in, &h, err, sizeof(err)), -1);
	assert_err_contains(err, "DATA frame of 16385 bytes");

	evbuffer_drain(in, evbuffer_get_length(in));
	frame_header_encode(hdr, 200, 1);
	evbuffer_add(in, hdr, sizeof(hdr));
	assert_int_equal(frame_peek(in, &h, err, sizeof(err)), -1);
	assert_err_contains(err, "unknown frame type 200");
	evbuffer_free(in);
}

/* --- AUTH --- */

static void
sample_auth(struct auth_msg *m)
{
	size_t i;

	memset(m, 0, sizeof(*m));
	m->version = PROTOCOL_VERSION;
	m->role = ROLE_REVERSE;
	m->group = 0x01020304;
	for (i = 0; i < AUTH_PUBKEY_LEN; i++)
		m->pubkey[i] = (uint8_t)(i + 1);
	for (i = 0; i < AUTH_SIG_LEN; i++)
		m->sig[i] = (uint8_t)(0xff - i);
}

static void
test_auth_round_trip(void **state)
{
	struct auth_msg m, back;
	uint8_t buf[AUTH_PAYLOAD_LEN];
	char err[256] = "";

	(void)state;
	sample_auth(&m);
	assert_int_equal(auth_msg_encode(&m, buf), AUTH_PAYLOAD_LEN);
	assert_int_equal(buf[0], PROTOCOL_VERSION);
	assert_int_equal(buf[1], ROLE_REVERSE);
	assert_int_equal(buf[2], 0x01);		/* group, big-endian */
	assert_int_equal(buf[5], 0x04);
	if (auth_msg_decode(buf, sizeof(buf), &back, err, sizeof(err)) != 0)
		fail_msg("decode: %s", err);
	assert_int_equal(back.version, PROTOCOL_VERSION);
	assert_int_equal(back.role, ROLE_REVERSE);
	assert_int_equal(back.group, 0x01020304);
	assert_memory_equal(back.pubkey, m.pubkey, AUTH_PUBKEY_LEN);
	assert_memory_equal(back.sig, m.sig, AUTH_SIG_LEN);

	m.role = ROLE_ENTRY;
	m.group = 0xffffffff;
	auth_msg_encode(&m, buf);
	assert_int_equal(auth_msg_decode(buf, sizeof(buf), &back, err,
	    sizeof(err)), 0);
	assert_int_equal(back.role, ROLE_ENTRY);
	assert_int_equal(back.group, 0xffffffff);
}

static void
test_auth_other_version(void **state)
{
	struct auth_msg m, back;
	uint8_t buf[AUTH_PAYLOAD_LEN + 10];
	char err[256] = "";

	(void)state;
	sample_auth(&m);
	m.version = PROTOCOL_VERSION + 1;
	auth_msg_encode(&m, buf);
	assert_int_equal(auth_msg_decode(buf, AUTH_PAYLOAD_LEN, &back, err,
	    sizeof(err)), -1);
	assert_err_contains(err, "version 3");
	assert_int_equal(back.version, PROTOCOL_VERSION + 1);

	/* Whatever the length, the version is what is reported. */
	err[0] = '\0';
	assert_int_equal(auth_msg_decode(buf, 1, &back, err, sizeof(err)), -1);
	assert_err_contains(err, "version");
	assert_int_equal(back.version, PROTOCOL_VERSION + 1);
	err[0] = '\0';
	assert_int_equal(auth_msg_decode(buf, sizeof(buf), &back, err,
	    sizeof(err)), -1);
	assert_err_contains(err, "version");
	assert_int_equal(back.version, PROTOCOL_VERSION + 1);

	/* Version 1 (before channel reuse) is another version too. */
	m.version = 1;
	auth_msg_encode(&m, buf);
	err[0] = '\0';
	assert_int_equal(auth_msg_decode(buf, AUTH_PAYLOAD_LEN, &back, err,
	    sizeof(err)), -1);
	assert_err_contains(err, "version 1");
}

static void
test_auth_wrong_length(void **state)
{
	struct auth_msg m, back;
	uint8_t buf[AUTH_PAYLOAD_LEN + 1];
	char err[256] = "";

	(void)state;
	sample_auth(&m);
	auth_msg_encode(&m, buf);
	buf[AUTH_PAYLOAD_LEN] = 0;
	assert_int_equal(auth_msg_decode(buf, AUTH_PAYLOAD_LEN - 1, &back, err,
	    sizeof(err)), -1);
	assert_err_contains(err, "AUTH of 101 bytes (expected 102)");
	assert_int_equal(auth_msg_decode(buf, AUTH_PAYLOAD_LEN + 1, &back, err,
	    sizeof(err)), -1);
	assert_err_contains(err, "AUTH of 103 bytes");
	assert_int_equal(auth_msg_decode(buf, 0, &back, err, sizeof(err)), -1);
	assert_err_contains(err, "empty AUTH");
}

static void
test_auth_unknown_role(void **state)
{
	struct auth_msg m, back;
	uint8_t buf[AUTH_PAYLOAD_LEN];
	char err[256] = "";

	(void)state;
	sample_auth(&m);
	m.role = 3;
	auth_msg_encode(&m, buf);
	assert_int_equal(auth_msg_decode(buf, sizeof(buf), &back, err,
	    sizeof(err)), -1);
	assert_err_contains(err, "unknown role 3");
	m.role = 0;
	auth_msg_encode(&m, buf);
	assert_int_equal(auth_msg_decode(buf, sizeof(buf), &back, err,
	    sizeof(err)), -1);
	assert_err_contains(err, "unknown role 0");
}

/* --- OPEN --- */

/* Encode m, decode it back into back; both must succeed. */
static size_t
open_round_trip(const struct open_msg *m, struct open_msg *back)
{
	uint8_t buf[OPEN_PAYLOAD_MAX];
	char err[256] = "";
	size_t len;

	len = open_msg_encode(m, buf);
	assert_in_range(len, 4, OPEN_PAYLOAD_MAX);
	if (open_msg_decode(buf, len, back, err, sizeof(err)) != 0)
		fail_msg("decode: %s", err);
	return len;
}

static void
test_open_round_trip_ipv6(void **state)
{
	struct open_msg m, back;
	uint8_t buf[OPEN_PAYLOAD_MAX];

	(void)state;
	memset(&m, 0, sizeof(m));
	m.port = 2222;
	snprintf(m.host, sizeof(m.host), "fd00::5");
	snprintf(m.source, sizeof(m.source), "[2001:db8::1]:40000");
	assert_int_equal(open_round_trip(&m, &back), 4 + 7 + 19);
	assert_int_equal(back.port, 2222);
	assert_string_equal(back.host, "fd00::5");
	assert_string_equal(back.source, "[2001:db8::1]:40000");

	/* Layout: port (big-endian), host length, host, source length. */
	open_msg_encode(&m, buf);
	assert_int_equal(buf[0], 2222 >> 8);
	assert_int_equal(buf[1], 2222 & 0xff);
	assert_int_equal(buf[2], 7);
	assert_memory_equal(buf + 3, "fd00::5", 7);
	assert_int_equal(buf[10], 19);
}

static void
test_open_round_trip_longest_host(void **state)
{
	struct open_msg m, back;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.port = 65535;
	memset(m.host, 'h', OPEN_HOST_MAX);		/* 253 characters */
	memset(m.source, '9', OPEN_SOURCE_MAX);	/* 64 characters */
	assert_int_equal(open_round_trip(&m, &back), OPEN_PAYLOAD_MAX);
	assert_int_equal(back.port, 65535);
	assert_int_equal(strlen(back.host), OPEN_HOST_MAX);
	assert_string_equal(back.host, m.host);
	assert_string_equal(back.source, m.source);
}

static void
test_open_round_trip_without_source(void **state)
{
	struct open_msg m, back;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.port = 22;
	snprintf(m.host, sizeof(m.host), "db.internal");
	assert_int_equal(open_round_trip(&m, &back), 4 + 11);
	assert_string_equal(back.host, "db.internal");
	assert_string_equal(back.source, "");
}

static void
test_open_truncated(void **state)
{
	struct open_msg m, back;
	uint8_t buf[OPEN_PAYLOAD_MAX];
	char err[256] = "";
	size_t len, cut;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.port = 22;
	snprintf(m.host, sizeof(m.host), "db.internal");
	snprintf(m.source, sizeof(m.source), "10.0.0.1:5555");
	len = open_msg_encode(&m, buf);

	assert_int_equal(open_msg_decode(buf, 3, &back, err, sizeof(err)), -1);
	assert_err_contains(err, "OPEN truncated");
	/* Cut inside the host: the source length is not even there. */
	err[0] = '\0';
	assert_int_equal(open_msg_decode(buf, 3 + 5, &back, err, sizeof(err)),
	    -1);
	assert_err_contains(err, "OPEN truncated");
	/* Every shorter prefix is refused. */
	for (cut = 0; cut < len; cut++)
		assert_int_equal(open_msg_decode(buf, cut, &back, err,
		    sizeof(err)), -1);
}

static void
test_open_lengths_do_not_add_up(void **state)
{
	struct open_msg m, back;
	uint8_t buf[OPEN_PAYLOAD_MAX + 1];
	char err[256] = "";
	size_t len;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.port = 22;
	snprintf(m.host, sizeof(m.host), "db.internal");
	snprintf(m.source, sizeof(m.source), "10.0.0.1:5555");
	len = open_msg_encode(&m, buf);

	buf[len] = 'x';				/* one byte too many */
	assert_int_equal(open_msg_decode(buf, len + 1, &back, err,
	    sizeof(err)), -1);
	assert_err_contains(err, "OPEN lengths do not add up");

	err[0] = '\0';
	buf[3 + 11] = 14;			/* source claims one more */
	assert_int_equal(open_msg_decode(buf, len, &back, err, sizeof(err)),
	    -1);
	assert_err_contains(err, "OPEN lengths do not add up");
}

/* Decode buf, which must be refused as a bad host, port or source. */
static void
open_refused(const uint8_t *buf, size_t len)
{
	struct open_msg back;
	char err[256] = "";

	assert_int_equal(open_msg_decode(buf, len, &back, err, sizeof(err)),
	    -1);
	assert_err_contains(err, "OPEN with a bad host, port or source");
}

static void
test_open_non_printable_host(void **state)
{
	struct open_msg m;
	uint8_t buf[OPEN_PAYLOAD_MAX];
	size_t len;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.port = 22;
	snprintf(m.host, sizeof(m.host), "db.internal");
	len = open_msg_encode(&m, buf);
	buf[3 + 2] = '\n';
	open_refused(buf, len);
	buf[3 + 2] = ' ';
	open_refused(buf, len);
	buf[3 + 2] = 0x80;
	open_refused(buf, len);
}

static void
test_open_non_printable_source(void **state)
{
	struct open_msg m;
	uint8_t buf[OPEN_PAYLOAD_MAX];
	size_t len;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.port = 22;
	snprintf(m.host, sizeof(m.host), "db.internal");
	snprintf(m.source, sizeof(m.source), "10.0.0.1:5555");
	len = open_msg_encode(&m, buf);
	buf[len - 1] = 0x1b;			/* ESC in a log line */
	open_refused(buf, len);
}

static void
test_open_port_zero(void **state)
{
	struct open_msg m;
	uint8_t buf[OPEN_PAYLOAD_MAX];

	(void)state;
	memset(&m, 0, sizeof(m));
	m.port = 0;
	snprintf(m.host, sizeof(m.host), "db.internal");
	open_refused(buf, open_msg_encode(&m, buf));
}

static void
test_open_empty_host(void **state)
{
	const uint8_t buf[4] = { 0, 22, 0, 0 };

	(void)state;
	open_refused(buf, sizeof(buf));
}

/* --- OPEN_RESULT --- */

static void
test_open_result_round_trip(void **state)
{
	struct open_result_msg m, back;
	uint8_t buf[1 + OPEN_RESULT_TEXT_MAX];
	char err[256] = "";
	size_t len;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.code = OPEN_REFUSED;
	snprintf(m.text, sizeof(m.text), "connect to db.internal:5432: "
	    "Connection refused");
	len = open_result_encode(&m, buf);
	assert_int_equal(len, 1 + strlen(m.text));
	assert_int_equal(buf[0], OPEN_REFUSED);
	if (open_result_decode(buf, len, &back, err, sizeof(err)) != 0)
		fail_msg("decode: %s", err);
	assert_int_equal(back.code, OPEN_REFUSED);
	assert_string_equal(back.text, m.text);

	/* The shortest: a code alone. */
	m.code = OPEN_OK;
	m.text[0] = '\0';
	assert_int_equal(open_result_encode(&m, buf), 1);
	assert_int_equal(open_result_decode(buf, 1, &back, err, sizeof(err)),
	    0);
	assert_int_equal(back.code, OPEN_OK);
	assert_string_equal(back.text, "");
}

static void
test_open_result_longest_text(void **state)
{
	struct open_result_msg m, back;
	uint8_t buf[1 + OPEN_RESULT_TEXT_MAX];
	char err[256] = "";

	(void)state;
	memset(&m, 0, sizeof(m));
	m.code = OPEN_UNREACHABLE;
	memset(m.text, 't', OPEN_RESULT_TEXT_MAX);
	assert_int_equal(open_result_encode(&m, buf), 1 + OPEN_RESULT_TEXT_MAX);
	assert_int_equal(open_result_decode(buf, sizeof(buf), &back, err,
	    sizeof(err)), 0);
	assert_string_equal(back.text, m.text);
}

static void
test_open_result_text_sanitised(void **state)
{
	const uint8_t buf[] = { OPEN_UNREACHABLE, 'n', 'o', '\n', 'r', 0x00,
	    'u', 0x7f, 't', 0xff, 'e', ' ', '!' };
	struct open_result_msg back;
	char err[256] = "";

	(void)state;
	assert_int_equal(open_result_decode(buf, sizeof(buf), &back, err,
	    sizeof(err)), 0);
	assert_int_equal(back.code, OPEN_UNREACHABLE);
	assert_string_equal(back.text, "no?r?u?t?e !");
}

static void
test_open_result_bad_length(void **state)
{
	uint8_t buf[2 + OPEN_RESULT_TEXT_MAX];
	struct open_result_msg back;
	char err[256] = "";

	(void)state;
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(open_result_decode(buf, 0, &back, err, sizeof(err)),
	    -1);
	assert_err_contains(err, "OPEN_RESULT of 0 bytes");
	assert_int_equal(open_result_decode(buf, sizeof(buf), &back, err,
	    sizeof(err)), -1);
	assert_err_contains(err, "OPEN_RESULT of 202 bytes");
}

/* --- frames through evbuffers --- */

static void
test_write_control_frames(void **state)
{
	struct evbuffer *out = evbuffer_new();
	const uint8_t want[] = { FRAME_PING, 0, 4, 'p', 'i', 'n', 'g',
	    FRAME_FIN, 0, 0 };
	uint8_t got[sizeof(want)];

	(void)state;
	assert_non_null(out);
	assert_int_equal(frame_write(out, FRAME_PING, "ping", 4), 0);
	assert_int_equal(frame_write(out, FRAME_FIN, NULL, 0), 0);
	assert_int_equal(evbuffer_get_length(out), sizeof(want));
	assert_int_equal(evbuffer_remove(out, got, sizeof(got)), sizeof(got));
	assert_memory_equal(got, want, sizeof(want));
	evbuffer_free(out);
}

static void
test_write_refuses_oversized_payload(void **state)
{
	struct evbuffer *out = evbuffer_new();
	uint8_t *big = calloc(1, FRAME_DATA_MAX + 1);

	(void)state;
	assert_non_null(out);
	assert_non_null(big);
	assert_int_equal(frame_write(out, FRAME_DATA, big, FRAME_DATA_MAX + 1),
	    -1);
	assert_int_equal(evbuffer_get_length(out), 0);
	assert_int_equal(frame_write(out, FRAME_DATA, big, FRAME_DATA_MAX), 0);
	assert_int_equal(evbuffer_get_length(out),
	    FRAME_HEADER_LEN + FRAME_DATA_MAX);
	free(big);
	evbuffer_free(out);
}

/* AUTH_RESULT: version, then code. */
static void
test_auth_result_round_trip(void **state)
{
	uint8_t buf[AUTH_RESULT_LEN];
	uint8_t version = 0, code = 0;
	char err[FRAME_ERRLEN];

	(void)state;
	auth_result_encode(AUTH_UNKNOWN_KEY, buf);
	assert_int_equal(buf[0], PROTOCOL_VERSION);
	assert_int_equal(buf[1], AUTH_UNKNOWN_KEY);
	assert_int_equal(auth_result_decode(buf, sizeof(buf), &version, &code,
	    err, sizeof(err)), 0);
	assert_int_equal(version, PROTOCOL_VERSION);
	assert_int_equal(code, AUTH_UNKNOWN_KEY);
}

static void
test_auth_result_bad_length(void **state)
{
	uint8_t buf[FRAME_CONTROL_MAX + 1] = { 7, 0, 1 };
	uint8_t version = 9, code = 9;
	char err[FRAME_ERRLEN] = "";

	(void)state;
	assert_int_equal(auth_result_decode(buf, 1, &version, &code, err,
	    sizeof(err)), -1);
	assert_string_equal(err, "AUTH_RESULT of 1 bytes");
	assert_int_equal(auth_result_decode(buf, sizeof(buf), &version, &code,
	    err, sizeof(err)), -1);
	/* A later version's longer answer: the first two bytes count. */
	assert_int_equal(auth_result_decode(buf, 3, &version, &code, err,
	    sizeof(err)), 0);
	assert_int_equal(version, 7);
	assert_int_equal(code, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_round_trip_every_type),
		cmocka_unit_test(test_header_is_type_then_big_endian_length),
		cmocka_unit_test(test_header_needs_three_bytes),
		cmocka_unit_test(test_header_data_too_long),
		cmocka_unit_test(test_header_data_empty),
		cmocka_unit_test(test_header_control_too_long),
		cmocka_unit_test(test_header_control_too_short),
		cmocka_unit_test(test_header_unknown_type),
		cmocka_unit_test(test_type_names),
		cmocka_unit_test(test_peek_partial_header),
		cmocka_unit_test(test_peek_partial_payload),
		cmocka_unit_test(test_peek_whole_frame_removes_nothing),
		cmocka_unit_test(test_peek_empty_frame),
		cmocka_unit_test(test_peek_invalid_header),
		cmocka_unit_test(test_auth_round_trip),
		cmocka_unit_test(test_auth_other_version),
		cmocka_unit_test(test_auth_wrong_length),
		cmocka_unit_test(test_auth_unknown_role),
		cmocka_unit_test(test_open_round_trip_ipv6),
		cmocka_unit_test(test_open_round_trip_longest_host),
		cmocka_unit_test(test_open_round_trip_without_source),
		cmocka_unit_test(test_open_truncated),
		cmocka_unit_test(test_open_lengths_do_not_add_up),
		cmocka_unit_test(test_open_non_printable_host),
		cmocka_unit_test(test_open_non_printable_source),
		cmocka_unit_test(test_open_port_zero),
		cmocka_unit_test(test_open_empty_host),
		cmocka_unit_test(test_open_result_round_trip),
		cmocka_unit_test(test_open_result_longest_text),
		cmocka_unit_test(test_open_result_text_sanitised),
		cmocka_unit_test(test_open_result_bad_length),
		cmocka_unit_test(test_write_control_frames),
		cmocka_unit_test(test_write_refuses_oversized_payload),
		cmocka_unit_test(test_auth_result_round_trip),
		cmocka_unit_test(test_auth_result_bad_length),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
