/*
 * framescan: which frames of one side of a pair the relay passes on,
 * judged from their headers alone, in input that reads cut anywhere
 * (PROTOCOL.md, "A channel's life", step 4).  relay-server/forward.c keeps
 * the state of each side and does what each verdict says; this module
 * only reads headers and counts, so that it can be tested (and fuzzed)
 * without a channel.  The bytes stay where they are, an evbuffer in the
 * relay, read through a callback.
 *
 * The rules, per side:
 *   - DATA passes until that side's FIN;
 *   - OPEN passes once, from the entry-point; OPEN_RESULT once, from the
 *     reverse-proxy, before its FIN;
 *   - a run of frames that pass goes in one piece, even when its last
 *     frame has not all come (frame_left counts the rest);
 *   - FIN passes once, RST always (then the pair closes); PING and RETIRE
 *     are dropped once they have all come;
 *   - anything else, and a bad header, is a protocol error, known from
 *     the header (the rest of such a frame is never waited for).
 * Nothing passes after a side's FIN but RST, so a side that has sent FIN
 * stopped at a frame boundary.
 */
#ifndef FRAMESCAN_H
#define FRAMESCAN_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

/* One side of a pair, from its pairing on. */
struct framescan {
	uint8_t role;			/* ROLE_ENTRY or ROLE_REVERSE */
	int opened;			/* entry-point: its OPEN passed */
	int answered;			/* reverse-proxy: OPEN_RESULT passed */
	int fin;			/* its FIN passed */
	size_t frame_left;		/* bytes of a frame still to pass */
};

enum framescan_verdict {
	FRAMESCAN_PASS,		/* move the first *n bytes on, untouched */
	FRAMESCAN_MORE,		/* nothing to do before more bytes come */
	FRAMESCAN_DROP,		/* drop the first *n bytes (PING, RETIRE) */
	FRAMESCAN_FIN,		/* a FIN (*n bytes): drop it, send one on */
	FRAMESCAN_RST,		/* an RST (*n bytes): the same, then close */
	FRAMESCAN_ERROR,	/* protocol error (err), known from a header */
};

/*
 * Copy the FRAME_HEADER_LEN bytes at offset off of src into hdr.
 * Returns 0, or -1 when they are not there.
 */
typedef int framescan_read_fn(void *src, size_t off,
    uint8_t hdr[FRAME_HEADER_LEN]);

/* A side just paired: nothing has passed. */
void framescan_start(struct framescan *s, uint8_t role);

/*
 * What to do with the len (> 0) bytes at the front of s's input, read
 * through read(src, ...).  Notes what passes in s; *n is set for PASS,
 * DROP, FIN and RST.  Call it again once the caller has done what it
 * says (and after more bytes come, after MORE).  A control verdict (not
 * PASS or MORE) comes only at a frame boundary (s->frame_left is 0).
 */
enum framescan_verdict framescan_next(struct framescan *s, size_t len,
    framescan_read_fn *read, void *src, size_t *n, char *err, size_t errlen);

/* A framescan_read_fn for src a struct evbuffer *. */
int framescan_evbuffer_read(void *src, size_t off,
    uint8_t hdr[FRAME_HEADER_LEN]);

#endif
