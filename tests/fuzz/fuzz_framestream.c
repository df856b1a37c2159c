/*
 * fuzz_framestream: the relay's frame stream of one side of a pair
 * (common/framescan.c, as relay-server/forward.c drives it), fed in reads
 * that the fuzzer cuts.
 *
 * Input:
 *   byte 0        flags: 0x01 the side is the reverse-proxy (else the
 *                 entry-point); 0x02 its partner has sent FIN already (so
 *                 a FIN ends the pair); 0x04 reads are added as references
 *                 (one evbuffer chain each) instead of copied
 *   byte 1        k, the number of cuts (at most MAX_CUTS)
 *   k bytes       the length of each read: v, or (v & 0x7f) * 256 when
 *                 v & 0x80; what is left after them is the last read
 *   the rest      the bytes the side sends
 *
 * Each read is appended to an evbuffer, then framescan_next is asked and
 * obeyed the way relay_forward does (PASS moves bytes to the partner's
 * evbuffer, DROP/FIN drain, RST/ERROR and a FIN that ends the pair stop)
 * until it says MORE.  A model that reads the whole stream one frame at a
 * time must agree on everything: each control verdict and where it came,
 * the bytes passed, how it ended, and the state left.  So a read may be
 * cut anywhere without changing what the relay does.
 */
#include "fuzz.h"

#include <event2/buffer.h>

#include "framescan.h"

#define MAX_CUTS 64

enum end {
	END_MORE,		/* waiting for more bytes */
	END_PAIR,		/* FIN both ways: the pair ended cleanly */
	END_RST,		/* RST: closed */
	END_ERROR,		/* protocol error: closed */
};

/* A control verdict, at an offset in the stream. */
struct event {
	enum framescan_verdict v;
	size_t off, n;
};

/* What a run makes of the stream. */
struct outcome {
	struct event *events;		/* room for total / 3 + 1 of them */
	size_t nevents;
	uint8_t *passed;		/* the bytes passed, in order */
	size_t npassed;
	size_t consumed;		/* bytes taken from the input */
	enum end end;
	struct framescan state;
};

/* The model: the whole stream, one frame at a time, the rules as
 * PROTOCOL.md words them. */
static void
model(const uint8_t *p, size_t total, uint8_t role, int partner_fin,
    struct outcome *o)
{
	struct framescan *s = &o->state;
	struct frame_header h;
	char err[FRAME_ERRLEN];
	size_t off = 0, flen, take;
	int pass;

	framescan_start(s, role);
	o->end = END_MORE;
	for (;;) {
		if (total - off < FRAME_HEADER_LEN)
			break;
		if (frame_header_decode(p + off, total - off, &h, err,
		    sizeof(err)) == -1) {
			o->events[o->nevents++] = (struct event){
			    FRAMESCAN_ERROR, off, 0 };
			o->end = END_ERROR;
			break;
		}
		flen = FRAME_HEADER_LEN + (size_t)h.length;
		pass = 0;
		if (h.type == FRAME_DATA && !s->fin)
			pass = 1;
		else if (h.type == FRAME_OPEN && role == ROLE_ENTRY &&
		    !s->opened)
			pass = s->opened = 1;
		else if (h.type == FRAME_OPEN_RESULT && role == ROLE_REVERSE &&
		    !s->answered && !s->fin)
			pass = s->answered = 1;
		if (pass) {
			take = flen < total - off ? flen : total - off;
			memcpy(o->passed + o->npassed, p + off, take);
			o->npassed += take;
			off += take;
			if (take < flen) {
				s->frame_left = flen - take;
				break;
			}
			continue;
		}
		if (h.type == FRAME_PING || h.type == FRAME_RETIRE) {
			if (total - off < flen)
				break;
			o->events[o->nevents++] = (struct event){
			    FRAMESCAN_DROP, off, flen };
			off += flen;
			continue;
		}
		if (h.type == FRAME_FIN && !s->fin) {
			s->fin = 1;
			o->events[o->nevents++] = (struct event){
			    FRAMESCAN_FIN, off, flen };
			off += flen;
			if (partner_fin) {
				o->end = END_PAIR;
				break;
			}
			continue;
		}
		if (h.type == FRAME_RST) {
			o->events[o->nevents++] = (struct event){
			    FRAMESCAN_RST, off, flen };
			off += flen;
			o->end = END_RST;
			break;
		}
		o->events[o->nevents++] = (struct event){ FRAMESCAN_ERROR, off,
		    0 };
		o->end = END_ERROR;
		break;
	}
	o->consumed = off;
}

/* Add one read to in. */
static void
add_read(struct evbuffer *in, const uint8_t *p, size_t n, int by_reference)
{
	if (n == 0)
		return;
	if (by_reference)
		FUZZ_CHECK(evbuffer_add_reference(in, p, n, NULL, NULL) == 0);
	else
		FUZZ_CHECK(evbuffer_add(in, p, n) == 0);
}

/* What relay_forward does with the input so far.  Returns 1 to go on
 * reading, 0 when the side is done (o->end says how). */
static int
relay(struct framescan *s, struct evbuffer *in, struct evbuffer *out,
    int partner_fin, struct outcome *o)
{
	enum framescan_verdict v;
	char err[FRAME_ERRLEN];
	size_t len, n;
	int r;

	while ((len = evbuffer_get_length(in)) > 0) {
		n = 0;
		err[0] = '\0';
		v = framescan_next(s, len, framescan_evbuffer_read, in, &n,
		    err, sizeof(err));
		if (v == FRAMESCAN_PASS) {
			/* Always progress, never past what is there. */
			FUZZ_CHECK(n > 0 && n <= len);
			r = n == len ? evbuffer_add_buffer(out, in) :
			    evbuffer_remove_buffer(in, out, n) == (int)n ?
			    0 : -1;
			FUZZ_CHECK(r == 0);
			o->consumed += n;
			continue;
		}
		if (v == FRAMESCAN_MORE)
			return 1;
		/* A control verdict: at a frame boundary, whole frames. */
		FUZZ_CHECK(s->frame_left == 0);
		if (v == FRAMESCAN_ERROR) {
			FUZZ_CHECK(FUZZ_TERMINATED(err, sizeof(err)) &&
			    err[0] != '\0');
			n = 0;
		} else {
			FUZZ_CHECK(n >= FRAME_HEADER_LEN && n <= len);
			FUZZ_CHECK(v == FRAMESCAN_DROP || n ==
			    FRAME_HEADER_LEN);
		}
		o->events[o->nevents++] = (struct event){ v, o->consumed, n };
		if (n > 0)
			FUZZ_CHECK(evbuffer_drain(in, n) == 0);
		o->consumed += n;
		switch (v) {
		case FRAMESCAN_FIN:
			FUZZ_CHECK(s->fin);
			if (!partner_fin)
				continue;
			o->end = END_PAIR;
			return 0;
		case FRAMESCAN_RST:
			o->end = END_RST;
			return 0;
		case FRAMESCAN_ERROR:
			o->end = END_ERROR;
			return 0;
		default:
			continue;
		}
	}
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome want, got;
	struct evbuffer *in = NULL, *out = NULL;
	const uint8_t *cuts, *p;
	size_t ncuts, total, off, n, i, maxev;
	uint8_t flags, role;
	int partner_fin, by_reference;

	if (size < 2)
		return 0;
	flags = data[0];
	role = flags & 0x01 ? ROLE_REVERSE : ROLE_ENTRY;
	partner_fin = (flags & 0x02) != 0;
	by_reference = (flags & 0x04) != 0;
	ncuts = data[1] % (MAX_CUTS + 1);
	if (size - 2 < ncuts)
		ncuts = size - 2;
	cuts = data + 2;
	p = cuts + ncuts;
	total = size - 2 - ncuts;

	memset(&want, 0, sizeof(want));
	memset(&got, 0, sizeof(got));
	maxev = total / FRAME_HEADER_LEN + 1;
	if ((want.events = calloc(maxev, sizeof(struct event))) == NULL ||
	    (got.events = calloc(maxev, sizeof(struct event))) == NULL ||
	    (want.passed = malloc(total + 1)) == NULL ||
	    (in = evbuffer_new()) == NULL || (out = evbuffer_new()) == NULL)
		goto done;

	model(p, total, role, partner_fin, &want);

	framescan_start(&got.state, role);
	got.end = END_MORE;
	for (i = 0, off = 0; i <= ncuts && off <= total; i++) {
		if (i < ncuts)
			n = cuts[i] & 0x80 ? (size_t)(cuts[i] & 0x7f) * 256 :
			    cuts[i];
		else
			n = total - off;	/* the rest */
		if (n > total - off)
			n = total - off;
		add_read(in, p + off, n, by_reference);
		off += n;
		if (!relay(&got.state, in, out, partner_fin, &got))
			break;
		if (off == total)
			break;
	}

	FUZZ_CHECK(got.end == want.end);
	FUZZ_CHECK(got.consumed == want.consumed);
	FUZZ_CHECK(got.nevents == want.nevents);
	for (i = 0; i < want.nevents; i++)
		FUZZ_CHECK(got.events[i].v == want.events[i].v &&
		    got.events[i].off == want.events[i].off &&
		    got.events[i].n == want.events[i].n);
	FUZZ_CHECK(evbuffer_get_length(out) == want.npassed);
	if (want.npassed > 0)
		FUZZ_CHECK(memcmp(evbuffer_pullup(out, -1), want.passed,
		    want.npassed) == 0);
	FUZZ_CHECK(got.state.role == want.state.role);
	FUZZ_CHECK(got.state.opened == want.state.opened);
	FUZZ_CHECK(got.state.answered == want.state.answered);
	FUZZ_CHECK(got.state.fin == want.state.fin);
	/* Ended cleanly: at a boundary, as pair_end asserts. */
	FUZZ_CHECK(got.end != END_PAIR || got.state.frame_left == 0);
	if (got.end == END_MORE)
		FUZZ_CHECK(got.state.frame_left == want.state.frame_left);
	/* What is left unread is what came and was not taken. */
	FUZZ_CHECK(evbuffer_get_length(in) == off - got.consumed);
done:
	if (in != NULL)
		evbuffer_free(in);
	if (out != NULL)
		evbuffer_free(out);
	free(want.events);
	free(got.events);
	free(want.passed);
	return 0;
}
