/*
 * fuzz_frame: common/frame.c's header decoder and message codecs.
 *
 * The input is read as a stream of frames (each payload through the codec
 * of its type), and every decoder also gets the whole input as a payload.
 * Where there is an encoder, what decodes must encode back to the same
 * bytes (or, for a text made printable, to what was kept) and decode
 * again to the same message.  frame_peek over an evbuffer must agree with
 * frame_header_decode, and frame_write with both.
 */
#include "fuzz.h"

#include <event2/buffer.h>

#include "frame.h"

/* A decoder's error: said, and terminated. */
static void
check_err(const char *err, size_t len)
{
	FUZZ_CHECK(FUZZ_TERMINATED(err, len));
	FUZZ_CHECK(err[0] != '\0');
}

static void
check_header(const uint8_t *p, size_t len)
{
	struct frame_header h, again;
	uint8_t enc[FRAME_HEADER_LEN];
	char err[FRAME_ERRLEN];
	int r;

	r = frame_header_decode(p, len, &h, err, sizeof(err));
	FUZZ_CHECK(r == 1 || r == 0 || r == -1);
	FUZZ_CHECK((r == 0) == (len < FRAME_HEADER_LEN));
	if (r == -1)
		check_err(err, sizeof(err));
	if (r != 1)
		return;
	FUZZ_CHECK(strcmp(frame_type_name(h.type), "unknown") != 0);
	FUZZ_CHECK(h.type != FRAME_DATA || h.length <= FRAME_DATA_MAX);
	FUZZ_CHECK(h.type == FRAME_DATA || h.length <= FRAME_CONTROL_MAX);
	frame_header_encode(enc, h.type, h.length);
	FUZZ_CHECK(memcmp(enc, p, FRAME_HEADER_LEN) == 0);
	FUZZ_CHECK(frame_header_decode(enc, sizeof(enc), &again, err,
	    sizeof(err)) == 1);
	FUZZ_CHECK(again.type == h.type && again.length == h.length);
}

static void
check_auth(const uint8_t *p, size_t len)
{
	struct auth_msg m, again;
	uint8_t enc[AUTH_PAYLOAD_LEN];
	char err[FRAME_ERRLEN];

	if (auth_msg_decode(p, len, &m, err, sizeof(err)) == -1) {
		check_err(err, sizeof(err));
		return;
	}
	FUZZ_CHECK(len == AUTH_PAYLOAD_LEN);
	FUZZ_CHECK(m.version == PROTOCOL_VERSION);
	FUZZ_CHECK(m.role == ROLE_ENTRY || m.role == ROLE_REVERSE);
	FUZZ_CHECK(auth_msg_encode(&m, enc) == AUTH_PAYLOAD_LEN);
	FUZZ_CHECK(memcmp(enc, p, AUTH_PAYLOAD_LEN) == 0);
	FUZZ_CHECK(auth_msg_decode(enc, sizeof(enc), &again, err,
	    sizeof(err)) == 0);
	FUZZ_CHECK(memcmp(&again, &m, sizeof(m)) == 0);
}

static void
check_auth_result(const uint8_t *p, size_t len)
{
	uint8_t enc[AUTH_RESULT_LEN], version, code, v2, c2;
	char err[FRAME_ERRLEN];

	if (auth_result_decode(p, len, &version, &code, err, sizeof(err)) ==
	    -1) {
		check_err(err, sizeof(err));
		return;
	}
	FUZZ_CHECK(len >= AUTH_RESULT_LEN && len <= FRAME_CONTROL_MAX);
	FUZZ_CHECK(version == p[0] && code == p[1]);
	FUZZ_CHECK(auth_code_text(code) != NULL);
	/* The encoder writes our own version: only the code goes round. */
	auth_result_encode(code, enc);
	FUZZ_CHECK(auth_result_decode(enc, sizeof(enc), &v2, &c2, err,
	    sizeof(err)) == 0);
	FUZZ_CHECK(v2 == PROTOCOL_VERSION && c2 == code);
}

static void
check_open(const uint8_t *p, size_t len)
{
	struct open_msg m, again;
	uint8_t enc[4 + OPEN_HOST_MAX + OPEN_SOURCE_MAX];
	char err[FRAME_ERRLEN];
	size_t n;

	if (open_msg_decode(p, len, &m, err, sizeof(err)) == -1) {
		check_err(err, sizeof(err));
		return;
	}
	FUZZ_CHECK(m.port != 0);
	FUZZ_CHECK(strlen(m.host) >= 1 && strlen(m.host) <= OPEN_HOST_MAX);
	FUZZ_CHECK(strlen(m.source) <= OPEN_SOURCE_MAX);
	n = open_msg_encode(&m, enc);
	FUZZ_CHECK(n == len && memcmp(enc, p, len) == 0);
	FUZZ_CHECK(open_msg_decode(enc, n, &again, err, sizeof(err)) == 0);
	FUZZ_CHECK(memcmp(&again, &m, sizeof(m)) == 0);
}

static void
check_open_result(const uint8_t *p, size_t len)
{
	struct open_result_msg m, again;
	uint8_t enc[1 + OPEN_RESULT_TEXT_MAX];
	char err[FRAME_ERRLEN];
	size_t n, i;

	if (open_result_decode(p, len, &m, err, sizeof(err)) == -1) {
		check_err(err, sizeof(err));
		return;
	}
	FUZZ_CHECK(len >= 1 && len <= 1 + OPEN_RESULT_TEXT_MAX);
	FUZZ_CHECK(m.code == p[0] && open_code_text(m.code) != NULL);
	FUZZ_CHECK(strlen(m.text) == len - 1);
	n = open_result_encode(&m, enc);
	FUZZ_CHECK(n == len && enc[0] == p[0]);
	/* The text comes back as kept: printable bytes, '?' for others. */
	for (i = 1; i < len; i++)
		FUZZ_CHECK(enc[i] == ((p[i] >= 0x20 && p[i] <= 0x7e) ? p[i] :
		    '?'));
	FUZZ_CHECK(open_result_decode(enc, n, &again, err, sizeof(err)) == 0);
	FUZZ_CHECK(memcmp(&again, &m, sizeof(m)) == 0);
}

/* A payload through the codec of its frame type. */
static void
check_payload(uint8_t type, const uint8_t *p, size_t len)
{
	switch (type) {
	case FRAME_AUTH:
		check_auth(p, len);
		break;
	case FRAME_AUTH_RESULT:
		check_auth_result(p, len);
		break;
	case FRAME_OPEN:
		check_open(p, len);
		break;
	case FRAME_OPEN_RESULT:
		check_open_result(p, len);
		break;
	default:
		break;
	}
}

/*
 * frame_peek over the input in an evbuffer agrees with the decoder, and a
 * frame that frame_write makes peeks as itself.
 */
static void
check_evbuffer(const uint8_t *data, size_t size)
{
	struct frame_header h, d;
	struct evbuffer *b;
	char err[FRAME_ERRLEN];
	int r, want;

	if ((b = evbuffer_new()) == NULL)
		return;
	if (size > 0 && evbuffer_add(b, data, size) == -1)
		goto done;
	want = frame_header_decode(data, size, &d, err, sizeof(err));
	if (want == 1 && size < (size_t)FRAME_HEADER_LEN + d.length)
		want = 0;
	r = frame_peek(b, &h, err, sizeof(err));
	FUZZ_CHECK(r == want);
	FUZZ_CHECK(r != 1 || (h.type == d.type && h.length == d.length));
	/* Nothing was taken out. */
	FUZZ_CHECK(evbuffer_get_length(b) == size);
	if (want != 1)
		goto done;
	(void)evbuffer_drain(b, size);
	FUZZ_CHECK(frame_write(b, d.type, data + FRAME_HEADER_LEN,
	    d.length) == 0);
	FUZZ_CHECK(frame_peek(b, &h, err, sizeof(err)) == 1);
	FUZZ_CHECK(h.type == d.type && h.length == d.length);
	FUZZ_CHECK(evbuffer_get_length(b) ==
	    (size_t)FRAME_HEADER_LEN + d.length);
done:
	evbuffer_free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct frame_header h;
	char err[FRAME_ERRLEN];
	size_t off = 0;

	/* Every decoder, the whole input as its payload. */
	check_auth(data, size);
	check_auth_result(data, size);
	check_open(data, size);
	check_open_result(data, size);
	check_evbuffer(data, size);

	/* The input as frames: each header, and each payload as its type. */
	for (;;) {
		check_header(data + off, size - off);
		if (frame_header_decode(data + off, size - off, &h, err,
		    sizeof(err)) != 1)
			break;
		off += FRAME_HEADER_LEN;
		if (size - off < h.length)
			break;
		check_payload(h.type, data + off, h.length);
		off += h.length;
	}
	return 0;
}
