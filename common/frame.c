#include "frame.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

/* Per-type payload limits: [min, max]. */
static const struct {
	const char *name;
	uint16_t min, max;
} frame_limits[] = {
	[FRAME_AUTH] = { "AUTH", 1, FRAME_CONTROL_MAX },
	[FRAME_AUTH_RESULT] = { "AUTH_RESULT", 2, FRAME_CONTROL_MAX },
	[FRAME_PING] = { "PING", 0, 8 },
	[FRAME_PONG] = { "PONG", 0, 8 },
	[FRAME_OPEN] = { "OPEN", 4, 4 + OPEN_HOST_MAX + OPEN_SOURCE_MAX },
	[FRAME_OPEN_RESULT] = { "OPEN_RESULT", 1, 1 + OPEN_RESULT_TEXT_MAX },
	[FRAME_DATA] = { "DATA", 1, FRAME_DATA_MAX },
	[FRAME_FIN] = { "FIN", 0, 0 },
	[FRAME_RST] = { "RST", 0, 0 },
	[FRAME_REUSE] = { "REUSE", 0, 0 },
	[FRAME_RETIRE] = { "RETIRE", 0, 0 },
};
#define FRAME_TYPE_LAST FRAME_RETIRE

const char *
frame_type_name(uint8_t type)
{
	if (type == 0 || type > FRAME_TYPE_LAST)
		return "unknown";
	return frame_limits[type].name;
}

const char *
open_code_text(uint8_t code)
{
	switch (code) {
	case OPEN_OK: return "ok";
	case OPEN_REFUSED: return "destination refused the connection";
	case OPEN_UNREACHABLE: return "destination unreachable";
	case OPEN_RESOLVE_FAILED: return "destination name not resolved";
	case OPEN_NO_PEER: return "no reverse-proxy available in this group";
	case OPEN_BAD_REQUEST: return "malformed OPEN";
	case OPEN_NOT_ALLOWED: return "destination not allowed by the "
	    "reverse-proxy";
	default: return "unknown error";
	}
}

const char *
auth_code_text(uint8_t code)
{
	switch (code) {
	case AUTH_OK: return "ok";
	case AUTH_BAD_VERSION: return "protocol version not supported";
	case AUTH_MALFORMED: return "malformed AUTH";
	case AUTH_UNKNOWN_KEY: return "public key not accepted";
	case AUTH_BAD_SIGNATURE: return "bad signature";
	case AUTH_BUSY: return "relay busy (at its channel limit)";
	case AUTH_ROLE_DENIED: return "role not allowed for this key";
	case AUTH_GROUP_DENIED: return "group not allowed for this key";
	case AUTH_SOURCE_DENIED: return "source address not allowed for this key";
	case AUTH_KEY_FULL: return "this key's channel limit reached";
	case AUTH_STOPPING: return "relay stopping";
	default: return "unknown error";
	}
}

const char *
open_code_name(uint8_t code)
{
	switch (code) {
	case OPEN_OK: return "ok";
	case OPEN_REFUSED: return "refused";
	case OPEN_UNREACHABLE: return "unreachable";
	case OPEN_RESOLVE_FAILED: return "resolve_failed";
	case OPEN_NO_PEER: return "no_peer";
	case OPEN_BAD_REQUEST: return "bad_request";
	case OPEN_NOT_ALLOWED: return "not_allowed";
	default: return "unknown";
	}
}

const char *
auth_code_name(uint8_t code)
{
	switch (code) {
	case AUTH_OK: return "ok";
	case AUTH_BAD_VERSION: return "bad_version";
	case AUTH_MALFORMED: return "malformed";
	case AUTH_UNKNOWN_KEY: return "unknown_key";
	case AUTH_BAD_SIGNATURE: return "bad_signature";
	case AUTH_BUSY: return "busy";
	case AUTH_ROLE_DENIED: return "role_denied";
	case AUTH_GROUP_DENIED: return "group_denied";
	case AUTH_SOURCE_DENIED: return "source_denied";
	case AUTH_KEY_FULL: return "key_full";
	case AUTH_STOPPING: return "stopping";
	default: return "unknown";
	}
}

int
frame_header_decode(const uint8_t *buf, size_t len, struct frame_header *h,
    char *err, size_t errlen)
{
	uint8_t type;
	uint16_t length;

	if (len < FRAME_HEADER_LEN)
		return 0;
	type = buf[0];
	length = (uint16_t)((buf[1] << 8) | buf[2]);
	if (type == 0 || type > FRAME_TYPE_LAST) {
		snprintf(err, errlen, "unknown frame type %u", type);
		return -1;
	}
	if (length < frame_limits[type].min ||
	    length > frame_limits[type].max) {
		snprintf(err, errlen, "%s frame of %u bytes (allowed %u-%u)",
		    frame_limits[type].name, length, frame_limits[type].min,
		    frame_limits[type].max);
		return -1;
	}
	h->type = type;
	h->length = length;
	return 1;
}

void
frame_header_encode(uint8_t *buf, uint8_t type, uint16_t length)
{
	buf[0] = type;
	buf[1] = (uint8_t)(length >> 8);
	buf[2] = (uint8_t)length;
}

int
frame_peek(struct evbuffer *in, struct frame_header *h, char *err,
    size_t errlen)
{
	uint8_t buf[FRAME_HEADER_LEN];
	size_t avail = evbuffer_get_length(in);
	int r;

	if (avail < FRAME_HEADER_LEN)
		return 0;
	if (evbuffer_copyout(in, buf, sizeof(buf)) != (ev_ssize_t)sizeof(buf))
		return 0;
	if ((r = frame_header_decode(buf, sizeof(buf), h, err, errlen)) != 1)
		return r;
	return avail >= (size_t)FRAME_HEADER_LEN + h->length ? 1 : 0;
}

int
frame_write(struct evbuffer *out, uint8_t type, const void *payload,
    size_t len)
{
	uint8_t hdr[FRAME_HEADER_LEN];

	if (len > FRAME_DATA_MAX)
		return -1;
	frame_header_encode(hdr, type, (uint16_t)len);
	if (evbuffer_add(out, hdr, sizeof(hdr)) == -1)
		return -1;
	if (len > 0 && evbuffer_add(out, payload, len) == -1)
		return -1;
	return 0;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

size_t
auth_msg_encode(const struct auth_msg *m, uint8_t *buf)
{
	buf[0] = m->version;
	buf[1] = m->role;
	put32(buf + 2, m->group);
	memcpy(buf + 6, m->pubkey, AUTH_PUBKEY_LEN);
	memcpy(buf + 6 + AUTH_PUBKEY_LEN, m->sig, AUTH_SIG_LEN);
	return AUTH_PAYLOAD_LEN;
}

int
auth_msg_decode(const uint8_t *buf, size_t len, struct auth_msg *m,
    char *err, size_t errlen)
{
	memset(m, 0, sizeof(*m));
	if (len < 1) {
		snprintf(err, errlen, "empty AUTH");
		return -1;
	}
	/* The version comes first so that any future AUTH can be refused
	 * with a clear "version" error, whatever its length. */
	m->version = buf[0];
	if (m->version != PROTOCOL_VERSION) {
		snprintf(err, errlen, "protocol version %u (this is version "
		    "%u)", m->version, PROTOCOL_VERSION);
		return -1;
	}
	if (len != AUTH_PAYLOAD_LEN) {
		snprintf(err, errlen, "AUTH of %zu bytes (expected %d)", len,
		    AUTH_PAYLOAD_LEN);
		return -1;
	}
	m->role = buf[1];
	if (m->role != ROLE_ENTRY && m->role != ROLE_REVERSE) {
		snprintf(err, errlen, "unknown role %u", m->role);
		return -1;
	}
	m->group = get32(buf + 2);
	memcpy(m->pubkey, buf + 6, AUTH_PUBKEY_LEN);
	memcpy(m->sig, buf + 6 + AUTH_PUBKEY_LEN, AUTH_SIG_LEN);
	return 0;
}

size_t
open_msg_encode(const struct open_msg *m, uint8_t *buf)
{
	size_t hl = strnlen(m->host, OPEN_HOST_MAX);
	size_t sl = strnlen(m->source, OPEN_SOURCE_MAX);
	size_t off = 0;

	buf[off++] = (uint8_t)(m->port >> 8);
	buf[off++] = (uint8_t)m->port;
	buf[off++] = (uint8_t)hl;
	memcpy(buf + off, m->host, hl);
	off += hl;
	buf[off++] = (uint8_t)sl;
	memcpy(buf + off, m->source, sl);
	off += sl;
	return off;
}

/* Printable ASCII only: these strings end up in log lines. */
static int
printable(const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return 0;
	return 1;
}

int
open_msg_decode(const uint8_t *buf, size_t len, struct open_msg *m,
    char *err, size_t errlen)
{
	size_t hl, sl;

	memset(m, 0, sizeof(*m));
	if (len < 4)
		goto short_frame;
	m->port = (uint16_t)(buf[0] << 8 | buf[1]);
	hl = buf[2];
	if (len < 3 + hl + 1)
		goto short_frame;
	sl = buf[3 + hl];
	if (len != 4 + hl + sl) {
		snprintf(err, errlen, "OPEN lengths do not add up");
		return -1;
	}
	if (m->port == 0 || hl == 0 || hl > OPEN_HOST_MAX ||
	    sl > OPEN_SOURCE_MAX || !printable(buf + 3, hl) ||
	    !printable(buf + 4 + hl, sl)) {
		snprintf(err, errlen, "OPEN with a bad host, port or source");
		return -1;
	}
	memcpy(m->host, buf + 3, hl);
	memcpy(m->source, buf + 4 + hl, sl);
	return 0;
short_frame:
	snprintf(err, errlen, "OPEN truncated");
	return -1;
}

void
auth_result_encode(uint8_t code, uint8_t buf[AUTH_RESULT_LEN])
{
	buf[0] = PROTOCOL_VERSION;
	buf[1] = code;
}

int
auth_result_decode(const uint8_t *buf, size_t len, uint8_t *version,
    uint8_t *code, char *err, size_t errlen)
{
	/* Later versions may append fields: only the first two are ours. */
	if (len < AUTH_RESULT_LEN || len > FRAME_CONTROL_MAX) {
		snprintf(err, errlen, "AUTH_RESULT of %zu bytes", len);
		return -1;
	}
	*version = buf[0];
	*code = buf[1];
	return 0;
}

size_t
open_result_encode(const struct open_result_msg *m, uint8_t *buf)
{
	size_t tl = strnlen(m->text, OPEN_RESULT_TEXT_MAX);

	buf[0] = m->code;
	memcpy(buf + 1, m->text, tl);
	return 1 + tl;
}

int
open_result_decode(const uint8_t *buf, size_t len,
    struct open_result_msg *m, char *err, size_t errlen)
{
	size_t i;

	memset(m, 0, sizeof(*m));
	if (len < 1 || len > 1 + OPEN_RESULT_TEXT_MAX) {
		snprintf(err, errlen, "OPEN_RESULT of %zu bytes", len);
		return -1;
	}
	m->code = buf[0];
	/* The text is only for logs: keep it, made printable. */
	for (i = 1; i < len; i++)
		m->text[i - 1] = (buf[i] >= 0x20 && buf[i] <= 0x7e) ?
		    (char)buf[i] : '?';
	return 0;
}
