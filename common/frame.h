/*
 * frame: the wire format of every message (see common/PROTOCOL.md).
 *
 * A frame is a 3-byte header, type (1 byte) and payload length (2 bytes,
 * big-endian), followed by the payload.  Each type has its own payload
 * limits; a header that breaks them is refused before any payload is read.
 * This module has no I/O of its own besides moving bytes between evbuffers.
 */
#ifndef FRAME_H
#define FRAME_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define PROTOCOL_VERSION 3

#define FRAME_HEADER_LEN 3
#define FRAME_DATA_MAX 16384		/* largest DATA payload */
#define FRAME_CONTROL_MAX 1024		/* largest payload of other types */
/* What senders put in one DATA frame, header included: one TLS record. */
#define FRAME_RECORD 16384
#define FRAME_ERRLEN 160		/* room for any error message of ours */

enum frame_type {
	FRAME_AUTH = 1,		/* client -> relay, first frame */
	FRAME_AUTH_RESULT = 2,	/* relay -> client */
	FRAME_PING = 3,		/* client -> relay while idle */
	FRAME_PONG = 4,		/* relay -> client */
	FRAME_OPEN = 5,		/* entry-point -> reverse-proxy */
	FRAME_OPEN_RESULT = 6,	/* reverse-proxy (or relay) -> entry-point */
	FRAME_DATA = 7,		/* either way, after OPEN */
	FRAME_FIN = 8,		/* no more DATA this way (half-close) */
	FRAME_RST = 9,		/* abort the connection */
	FRAME_REUSE = 10,	/* relay -> client: the channel is idle again */
	FRAME_RETIRE = 11,	/* client -> relay: close this idle channel */
};

/* Roles in AUTH. */
enum channel_role {
	ROLE_ENTRY = 1,
	ROLE_REVERSE = 2,
};

/* AUTH_RESULT codes. */
enum auth_code {
	AUTH_OK = 0,
	AUTH_BAD_VERSION = 1,	/* relay speaks another protocol version */
	AUTH_MALFORMED = 2,	/* AUTH frame could not be parsed */
	AUTH_UNKNOWN_KEY = 3,	/* public key not in the relay's list */
	AUTH_BAD_SIGNATURE = 4,	/* signature does not verify */
	AUTH_BUSY = 5,		/* relay at its channel limit */
	/* Version 3: the key is known and the signature good, but its line
	 * in the relay's authorized keys does not allow this. */
	AUTH_ROLE_DENIED = 6,	/* role= */
	AUTH_GROUP_DENIED = 7,	/* groups= */
	AUTH_SOURCE_DENIED = 8,	/* from= */
	AUTH_KEY_FULL = 9,	/* max-channels= reached */
	/* Unasked, on an idle channel: the relay stops (a graceful stop);
	 * dial again with the short backoff, as after any outage. */
	AUTH_STOPPING = 10,
};

/* OPEN_RESULT codes. */
enum open_code {
	OPEN_OK = 0,
	OPEN_REFUSED = 1,	/* destination refused the connection */
	OPEN_UNREACHABLE = 2,	/* no route, timeout, other connect error */
	OPEN_RESOLVE_FAILED = 3,/* destination name did not resolve */
	OPEN_NO_PEER = 4,	/* relay: no reverse-proxy in this group */
	OPEN_BAD_REQUEST = 5,	/* OPEN frame malformed */
	OPEN_NOT_ALLOWED = 6,	/* reverse-proxy: not in its --allow list */
};

struct frame_header {
	uint8_t type;
	uint16_t length;
};

#define AUTH_PUBKEY_LEN 32
#define AUTH_SIG_LEN 64
#define AUTH_PAYLOAD_LEN (1 + 1 + 4 + AUTH_PUBKEY_LEN + AUTH_SIG_LEN)
#define AUTH_RESULT_LEN 2		/* version, code */

struct auth_msg {
	uint8_t version;
	uint8_t role;
	uint32_t group;
	uint8_t pubkey[AUTH_PUBKEY_LEN];
	uint8_t sig[AUTH_SIG_LEN];
};

#define OPEN_HOST_MAX 253
#define OPEN_SOURCE_MAX 64

struct open_msg {
	uint16_t port;
	char host[OPEN_HOST_MAX + 1];		/* NUL-terminated */
	char source[OPEN_SOURCE_MAX + 1];	/* "ip:port", for logs */
};

#define OPEN_RESULT_TEXT_MAX 200

struct open_result_msg {
	uint8_t code;
	char text[OPEN_RESULT_TEXT_MAX + 1];	/* why, for logs */
};

/* Name of a frame type for messages ("DATA"), or "unknown". */
const char *frame_type_name(uint8_t type);

/* Text for an OPEN_RESULT or AUTH_RESULT code. */
const char *open_code_text(uint8_t code);
const char *auth_code_text(uint8_t code);

/* Short names of the same codes, for metric labels ("unknown_key",
 * "no_peer"): lower case, "unknown" for a code we do not know. */
const char *open_code_name(uint8_t code);
const char *auth_code_name(uint8_t code);

/*
 * Decode a header from buf[0..len-1].  Returns 1 when a valid header was
 * read into h, 0 when more bytes are needed, -1 when the header is invalid
 * (unknown type or a length outside the type's limits; err says which).
 */
int frame_header_decode(const uint8_t *buf, size_t len,
    struct frame_header *h, char *err, size_t errlen);

/* Write a 3-byte header for (type, length) into buf. */
void frame_header_encode(uint8_t *buf, uint8_t type, uint16_t length);

/*
 * Peek at the next frame in in: returns 1 when a whole valid frame is
 * buffered (header in h, nothing removed), 0 when more bytes are needed,
 * -1 when the header is invalid (err).
 */
int frame_peek(struct evbuffer *in, struct frame_header *h, char *err,
    size_t errlen);

/* Append a frame with payload[0..len-1] to out.  Returns 0 or -1. */
int frame_write(struct evbuffer *out, uint8_t type, const void *payload,
    size_t len);

/* Payload codecs.  encode returns the payload length; decode 0 or -1. */
size_t auth_msg_encode(const struct auth_msg *m, uint8_t *buf);
int auth_msg_decode(const uint8_t *buf, size_t len, struct auth_msg *m,
    char *err, size_t errlen);
size_t open_msg_encode(const struct open_msg *m, uint8_t *buf);
int open_msg_decode(const uint8_t *buf, size_t len, struct open_msg *m,
    char *err, size_t errlen);
void auth_result_encode(uint8_t code, uint8_t buf[AUTH_RESULT_LEN]);
int auth_result_decode(const uint8_t *buf, size_t len, uint8_t *version,
    uint8_t *code, char *err, size_t errlen);
size_t open_result_encode(const struct open_result_msg *m, uint8_t *buf);
int open_result_decode(const uint8_t *buf, size_t len,
    struct open_result_msg *m, char *err, size_t errlen);

#endif
