/*
 * forward: the splice of a pair.  What one channel reads goes to its
 * partner's output.  The relay follows the frame headers but moves the
 * bytes in as few pieces as it can: the run of frames that pass untouched
 * (DATA, the entry-point's OPEN, the reverse-proxy's OPEN_RESULT) up to the
 * next control frame goes in one evbuffer move, chains and all, even when
 * its last frame has not fully arrived (frame_left counts the rest).
 * Which frames pass, and where a run ends, is common/framescan.c's (no
 * I/O of its own: fuzzed by tests/fuzz/fuzz_framestream.c); this file
 * does what it says.
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

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "frame.h"
#include "framescan.h"
#include "tls.h"
#include "wire.h"

void
forward_start(struct rchan *c)
{
	c->opened = c->answered = c->fin = 0;
	c->frame_left = 0;
}

/* Ask framescan what to do with src's input (len bytes).  Its state is
 * kept in src's own fields, which group.c reads too. */
static enum framescan_verdict
scan_next(struct rchan *src, struct evbuffer *in, size_t len, size_t *n,
    char *err, size_t errlen)
{
	struct framescan s = { src->role, src->opened, src->answered,
	    src->fin, src->frame_left };
	enum framescan_verdict v;

	v = framescan_next(&s, len, framescan_evbuffer_read, in, n, err,
	    errlen);
	src->opened = s.opened;
	src->answered = s.answered;
	src->fin = s.fin;
	src->frame_left = s.frame_left;
	return v;
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
 * Pass on what src has read, as framescan says: runs of frames that pass
 * in one move; a frame that does not is refused on its header alone (the
 * relay never waits for the rest of a frame it will not take), and a PING
 * or RETIRE is dropped once it has all come.
 */
void
relay_forward(struct rchan *src, int last)
{
	struct evbuffer *in = bufferevent_get_input(src->bev);
	struct evbuffer *out;
	struct rchan *dst;
	char err[FRAME_ERRLEN];
	size_t len, n;
	int r;

	while (src->state == R_PAIRED && (len = evbuffer_get_length(in)) > 0) {
		dst = src->partner;
		switch (scan_next(src, in, len, &n, err, sizeof(err))) {
		case FRAMESCAN_PASS:
			out = bufferevent_get_output(dst->bev);
			r = n == len ? evbuffer_add_buffer(out, in) :
			    evbuffer_remove_buffer(in, out, n) == (int)n ?
			    0 : -1;
			if (r == -1) {
				rchan_close(src, LOG_LEVEL_QUIET, "%s: out of "
				    "memory", src->peer);
				return;
			}
			relay_metrics_bytes(src->role, n);
			continue;
		case FRAMESCAN_MORE:
			break;
		case FRAMESCAN_DROP:
			(void)evbuffer_drain(in, n);
			continue;
		case FRAMESCAN_FIN:
			(void)evbuffer_drain(in, n);
			(void)wire_send(dst->bev, FRAME_FIN, NULL, 0);
			if (!dst->fin)
				continue;
			pair_end(src, dst, last ? src : NULL);
			break;
		case FRAMESCAN_RST:
			(void)evbuffer_drain(in, n);
			(void)wire_send(dst->bev, FRAME_RST, NULL, 0);
			rchan_close(src, LOG_LEVEL_DEBUG, "%s: %s reset the "
			    "connection", src->peer, role_name(src->role));
			break;
		case FRAMESCAN_ERROR:
			pair_fail(src, err);
			break;
		}
		break;		/* more must come, or the pair is over */
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
