/*
 * forward: the splice of a pair.  What one channel reads goes to its
 * partner's output.  The relay follows the frame headers but moves the
 * bytes in as few pieces as it can: the run of frames that pass untouched
 * (DATA, the entry-point's OPEN, the reverse-proxy's OPEN_RESULT) up to the
 * next control frame goes in one evbuffer move, chains and all, even when
 * its last frame has not fully arrived (frame_left counts the rest).
 *
 * The rules of a pairing, per side (PROTOCOL.md, "Relaying"):
 *   - OPEN passes once, from the entry-point: the first frame of a
 *     pairing (group.c pairs a channel whose input starts with it);
 *   - OPEN_RESULT passes once, from the reverse-proxy, before its FIN;
 *   - DATA passes until that side's FIN;
 *   - FIN passes once; when it has passed both ways the pair ends cleanly
 *     (group.c's pair_end) and both channels are reused;
 *   - RST passes and closes the pair; PING and RETIRE that crossed the
 *     pairing are dropped; anything else is a protocol error: the sender
 *     is closed and its partner gets RST.
 * Nothing passes from a side after its FIN, so both sides of a pair that
 * ends cleanly stopped at a frame boundary.
 *
 * Backpressure: reading a channel stops while its partner's output holds
 * WIRE_HIGH_WATER or more, and starts again (forward_resume) when that has
 * drained to WIRE_LOW_WATER.
 */
#include "relay.h"

#include <stdio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "frame.h"
#include "tls.h"
#include "wire.h"

void
forward_start(struct rchan *c)
{
	c->opened = c->answered = c->fin = 0;
	c->frame_left = 0;
}

/* Does a frame of this type pass from src untouched?  If so, it is noted
 * as passed (the caller moves it). */
static int
passes(struct rchan *src, const struct frame_header *h)
{
	switch (h->type) {
	case FRAME_DATA:
		return !src->fin;
	case FRAME_OPEN:
		if (src->role != ROLE_ENTRY || src->opened)
			return 0;
		src->opened = 1;
		return 1;
	case FRAME_OPEN_RESULT:
		if (src->role != ROLE_REVERSE || src->answered || src->fin)
			return 0;
		src->answered = 1;
		return 1;
	default:
		return 0;
	}
}

/* How many of the len bytes at the front of in pass untouched: the rest
 * of a frame under way, then every frame whose header passes. */
static size_t
forward_run(struct rchan *src, struct evbuffer *in, size_t len)
{
	uint8_t hdr[FRAME_HEADER_LEN];
	struct evbuffer_ptr pos;
	struct frame_header h;
	char err[FRAME_ERRLEN];
	size_t run = src->frame_left;

	while (run + FRAME_HEADER_LEN <= len) {
		/* A bad header stops the run; it is dealt with at the front. */
		if (evbuffer_ptr_set(in, &pos, run, EVBUFFER_PTR_SET) == -1 ||
		    evbuffer_copyout_from(in, &pos, hdr, sizeof(hdr)) !=
		    (ev_ssize_t)sizeof(hdr) || frame_header_decode(hdr,
		    sizeof(hdr), &h, err, sizeof(err)) != 1 || !passes(src, &h))
			break;
		run += FRAME_HEADER_LEN + h.length;
	}
	return run;
}

/* Protocol error on src: it is closed, its partner gets RST (src's frames
 * stopped at a boundary, so RST is a frame of its own there). */
static void
pair_fail(struct rchan *src, const char *why)
{
	(void)wire_send(src->partner->bev, FRAME_RST, NULL, 0);
	rchan_close(src, LOG_LEVEL_INFO, "%s: protocol error: %s", src->peer,
	    why);
}

/*
 * A frame that does not pass is at the front of src's input: act on it.
 * Its header is enough to refuse it (the relay never waits for the rest
 * of a frame it will not take); a PING or RETIRE is dropped once it has
 * all come.  Returns 1 to go on with the input, 0 to stop (more must
 * come, the pair ended, or it is closed).
 */
static int
forward_control(struct rchan *src, int last)
{
	struct evbuffer *in = bufferevent_get_input(src->bev);
	struct rchan *dst = src->partner;
	struct frame_header h;
	char err[FRAME_ERRLEN];
	int r;

	if ((r = frame_peek(in, &h, err, sizeof(err))) == -1) {
		pair_fail(src, err);
		return 0;
	}
	if (r == 0 && evbuffer_get_length(in) < FRAME_HEADER_LEN)
		return 0;
	switch (h.type) {
	case FRAME_PING:
	case FRAME_RETIRE:
		if (r == 0)
			return 0;
		(void)evbuffer_drain(in, FRAME_HEADER_LEN + h.length);
		return 1;
	case FRAME_FIN:		/* (empty: whole with its header) */
		if (src->fin)
			break;
		(void)evbuffer_drain(in, FRAME_HEADER_LEN);
		(void)wire_send(dst->bev, FRAME_FIN, NULL, 0);
		src->fin = 1;
		if (!dst->fin)
			return 1;
		pair_end(src, dst, last ? src : NULL);
		return 0;
	case FRAME_RST:		/* (empty too) */
		(void)evbuffer_drain(in, FRAME_HEADER_LEN);
		(void)wire_send(dst->bev, FRAME_RST, NULL, 0);
		rchan_close(src, LOG_LEVEL_DEBUG, "%s: %s reset the connection",
		    src->peer, role_name(src->role));
		return 0;
	default:
		break;
	}
	snprintf(err, sizeof(err), "unexpected %s%s from the %s",
	    frame_type_name(h.type), src->fin ? " after FIN" :
	    (h.type == FRAME_OPEN && src->opened) ||
	    (h.type == FRAME_OPEN_RESULT && src->answered) ? " again" : "",
	    role_name(src->role));
	pair_fail(src, err);
	return 0;
}

void
relay_forward(struct rchan *src, int last)
{
	struct evbuffer *in = bufferevent_get_input(src->bev);
	struct evbuffer *out;
	struct rchan *dst;
	size_t len, run, n;
	int r;

	while (src->state == R_PAIRED && (len = evbuffer_get_length(in)) > 0) {
		dst = src->partner;
		if ((run = forward_run(src, in, len)) == 0) {
			if (!forward_control(src, last))
				break;
			continue;
		}
		out = bufferevent_get_output(dst->bev);
		n = run < len ? run : len;
		r = n == len ? evbuffer_add_buffer(out, in) :
		    evbuffer_remove_buffer(in, out, n) == (int)n ? 0 : -1;
		if (r == -1) {
			rchan_close(src, LOG_LEVEL_QUIET, "%s: out of memory",
			    src->peer);
			return;
		}
		src->frame_left = run - n;
	}
	if (src->state != R_PAIRED)
		return;
	dst = src->partner;
	if (evbuffer_get_length(bufferevent_get_output(dst->bev)) >=
	    WIRE_HIGH_WATER) {
		(void)bufferevent_disable(src->bev, EV_READ);
		src->paused = 1;
	}
	/* Records read ahead first, then one write for all of them. */
	if (!tls_kick(src->bev))
		bev_kick_write(dst->bev);
}

void
forward_resume(struct rchan *c)
{
	struct rchan *p = c->partner;

	if (!p->paused)
		return;
	p->paused = 0;
	if (bufferevent_enable(p->bev, EV_READ) == -1) {
		/* Both go: c has nobody left to write for. */
		rchan_close(p, LOG_LEVEL_DEBUG, "%s: cannot read again",
		    p->peer);
		return;
	}
	tls_kick(p->bev);
}
