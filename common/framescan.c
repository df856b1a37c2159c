#include "framescan.h"

#include <stdio.h>

#include <event2/buffer.h>

void
framescan_start(struct framescan *s, uint8_t role)
{
	s->role = role;
	s->opened = s->answered = s->fin = 0;
	s->frame_left = 0;
}

/* Does a frame of this type pass from s untouched?  If so, it is noted
 * as passed (the caller moves it). */
static int
passes(struct framescan *s, const struct frame_header *h)
{
	switch (h->type) {
	case FRAME_DATA:
		return !s->fin;
	case FRAME_OPEN:
		if (s->role != ROLE_ENTRY || s->opened)
			return 0;
		s->opened = 1;
		return 1;
	case FRAME_OPEN_RESULT:
		if (s->role != ROLE_REVERSE || s->answered || s->fin)
			return 0;
		s->answered = 1;
		return 1;
	default:
		return 0;
	}
}

/* How many of the len bytes at the front pass untouched: the rest of a
 * frame under way, then every frame whose header passes. */
static size_t
run_length(struct framescan *s, size_t len, framescan_read_fn *read,
    void *src)
{
	uint8_t hdr[FRAME_HEADER_LEN];
	struct frame_header h;
	char err[FRAME_ERRLEN];
	size_t run = s->frame_left;

	while (run + FRAME_HEADER_LEN <= len) {
		/* A bad header stops the run; it is dealt with at the front. */
		if (read(src, run, hdr) == -1 || frame_header_decode(hdr,
		    sizeof(hdr), &h, err, sizeof(err)) != 1 || !passes(s, &h))
			break;
		run += FRAME_HEADER_LEN + h.length;
	}
	return run;
}

/* (As the relay names roles in its logs.) */
static const char *
side_name(uint8_t role)
{
	return role == ROLE_ENTRY ? "entry-point" : "reverse-proxy";
}

enum framescan_verdict
framescan_next(struct framescan *s, size_t len, framescan_read_fn *read,
    void *src, size_t *n, char *err, size_t errlen)
{
	uint8_t hdr[FRAME_HEADER_LEN];
	struct frame_header h;
	size_t run;
	int whole;

	if (len == 0)
		return FRAMESCAN_MORE;
	if ((run = run_length(s, len, read, src)) > 0) {
		*n = run < len ? run : len;
		s->frame_left = run - *n;
		return FRAMESCAN_PASS;
	}
	/* A frame that does not pass is at the front.  Its header is enough
	 * to refuse it. */
	if (len < FRAME_HEADER_LEN || read(src, 0, hdr) == -1)
		return FRAMESCAN_MORE;
	if (frame_header_decode(hdr, sizeof(hdr), &h, err, errlen) == -1)
		return FRAMESCAN_ERROR;
	whole = len >= (size_t)FRAME_HEADER_LEN + h.length;
	switch (h.type) {
	case FRAME_PING:
	case FRAME_RETIRE:
		if (!whole)
			return FRAMESCAN_MORE;
		*n = FRAME_HEADER_LEN + h.length;
		return FRAMESCAN_DROP;
	case FRAME_FIN:		/* (empty: whole with its header) */
		if (s->fin)
			break;
		s->fin = 1;
		*n = FRAME_HEADER_LEN;
		return FRAMESCAN_FIN;
	case FRAME_RST:		/* (empty too) */
		*n = FRAME_HEADER_LEN;
		return FRAMESCAN_RST;
	default:
		break;
	}
	snprintf(err, errlen, "unexpected %s%s from the %s",
	    frame_type_name(h.type), s->fin ? " after FIN" :
	    (h.type == FRAME_OPEN && s->opened) ||
	    (h.type == FRAME_OPEN_RESULT && s->answered) ? " again" : "",
	    side_name(s->role));
	return FRAMESCAN_ERROR;
}

int
framescan_evbuffer_read(void *src, size_t off, uint8_t hdr[FRAME_HEADER_LEN])
{
	struct evbuffer *in = src;
	struct evbuffer_ptr pos;

	if (evbuffer_ptr_set(in, &pos, off, EVBUFFER_PTR_SET) == -1 ||
	    evbuffer_copyout_from(in, &pos, hdr, FRAME_HEADER_LEN) !=
	    (ev_ssize_t)FRAME_HEADER_LEN)
		return -1;
	return 0;
}
