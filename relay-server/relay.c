#include "relay.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>

#include "batch.h"
#include "daemon.h"
#include "frame.h"
#include "log.h"
#include "netaddr.h"
#include "tls.h"

enum rchan_state {
	R_HANDSHAKE,	/* TLS handshake under way */
	R_AUTH,		/* waiting for AUTH */
	R_IDLE,		/* authenticated, unpaired */
	R_QUEUED,	/* entry: OPEN received, waiting for a peer */
	R_PAIRED,	/* relaying to partner */
	R_CLOSING,	/* flushing before free */
};

struct group;
struct worker;

/*
 * A channel.  It owns its socket and its SSL (its bufferevent does not
 * close them: a channel can move to another worker, which makes a new
 * bufferevent for them).
 */
struct rchan {
	enum rchan_state state;
	struct worker *w;		/* the worker whose loop runs it */
	evutil_socket_t fd;
	SSL *ssl;
	struct bufferevent *bev;
	struct event *timer;		/* handshake, idle or queue deadline */
	uint8_t role;
	struct group *group;
	uint32_t gid;			/* group id, kept while moving */
	struct rchan *partner;
	int paused;			/* reading stopped: partner full */
	int fin;			/* paired: FIN passed on from this side */
	size_t frame_left;		/* paired: bytes of a frame still to pass */
	time_t born;			/* monotonic seconds at accept */
	unsigned long uses;		/* user connections carried */
	int dying;			/* its event callback is closing it */
	char peer[NETADDR_STRLEN];
	char key[17];			/* fingerprint, for logs */
	TAILQ_ENTRY(rchan) qlink;	/* group's idle or waiting list, or
					 * the inbox of the worker it moves to */
	LIST_ENTRY(rchan) link;		/* every channel of its worker */
};

TAILQ_HEAD(rchan_list, rchan);

/* A group as one worker sees it. */
struct group {
	struct worker *w;
	uint32_t id;
	unsigned refs;			/* channels of this group */
	struct rchan_list idle;		/* reverse-proxy channels */
	struct rchan_list waiting;	/* entry-point channels with OPEN */
	unsigned nidle, nwaiting;
	unsigned published;		/* nwaiting, as the exchange knows it */
	unsigned arrived;		/* channels moved here, not yet told */
	LIST_ENTRY(group) link;
};

/*
 * A worker: one event loop (the first one in the main thread, the others
 * in threads of their own), its own listening sockets, its own channels
 * and groups.  Nothing of a worker is touched by another thread except
 * the fields under its lock.
 */
struct worker {
	unsigned id;
	struct event_base *base;
	LIST_HEAD(, rchan) rchans;
	LIST_HEAD(, group) groups;
	time_t last_full_warning;
	int efd;			/* eventfd: wakes the loop */
	struct event *wake;
	pthread_t thread;
	int running;			/* thread started */
	pthread_mutex_t lock;		/* guards the three below */
	struct rchan_list inbox;	/* channels moved here */
	int check;			/* another worker has OPENs waiting */
	int quit;
};

/*
 * The exchange: for every group with OPENs waiting somewhere, how many
 * wait on each worker and how many reverse-proxy channels are on their
 * way there.  Touched only when an OPEN has to wait or a channel moves,
 * never on the data path.
 */
struct xslot {
	unsigned waiting, incoming;
};

struct xgroup {
	uint32_t id;
	LIST_ENTRY(xgroup) link;
	struct xslot slot[];		/* one per worker */
};

static struct relay_config relay_cfg;
static struct worker *workers;
static unsigned nworkers;
static atomic_uint nrchans;		/* all workers */
static pthread_mutex_t xlock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, xgroup) xgroups = LIST_HEAD_INITIALIZER(xgroups);
static atomic_uint xneed;		/* channels wanted, all groups */

static void rchan_read_cb(struct bufferevent *, void *);
static void rchan_write_cb(struct bufferevent *, void *);
static void rchan_event_cb(struct bufferevent *, short, void *);

static const char *
role_name(uint8_t role)
{
	return role == ROLE_ENTRY ? "entry-point" : "reverse-proxy";
}

/* The group with this id, made if needed, with one more reference. */
static struct group *
group_ref(struct worker *w, uint32_t id)
{
	struct group *g;

	LIST_FOREACH(g, &w->groups, link)
		if (g->id == id)
			break;
	if (g == NULL) {
		if ((g = calloc(1, sizeof(*g))) == NULL)
			return NULL;
		g->w = w;
		g->id = id;
		TAILQ_INIT(&g->idle);
		TAILQ_INIT(&g->waiting);
		LIST_INSERT_HEAD(&w->groups, g, link);
	}
	g->refs++;
	return g;
}

static void group_publish(struct group *g);

static void
group_unref(struct group *g)
{
	if (g == NULL || --g->refs > 0)
		return;
	group_publish(g);	/* nothing waits here any more */
	LIST_REMOVE(g, link);
	free(g);
}

/* Take c out of whichever group list its state puts it in. */
static void
group_leave(struct rchan *c)
{
	struct group *g = c->group;

	if (g == NULL)
		return;
	if (c->state == R_IDLE && c->role == ROLE_REVERSE) {
		TAILQ_REMOVE(&g->idle, c, qlink);
		g->nidle--;
	} else if (c->state == R_QUEUED) {
		TAILQ_REMOVE(&g->waiting, c, qlink);
		g->nwaiting--;
	}
}

/* Drop c's bufferevent and timer, keeping its socket and SSL. */
static void
rchan_unhook(struct rchan *c)
{
	if (c->timer != NULL)
		event_free(c->timer);
	c->timer = NULL;
	if (c->bev != NULL) {
		/* Disabled first: a bufferevent freed inside one of its own
		 * callbacks lives on until that returns, and must not read
		 * or write the SSL meanwhile. */
		(void)bufferevent_disable(c->bev, EV_READ | EV_WRITE);
		batch_detach(c->bev);
		bufferevent_free(c->bev);
	}
	c->bev = NULL;
}

/* The one place a channel is freed (one that moves between workers is
 * freed here too, on whichever side it is). */
static void
rchan_free(struct rchan *c)
{
	int queued = c->state == R_QUEUED;

	group_leave(c);
	if (queued)
		group_publish(c->group);
	group_unref(c->group);
	if (c->partner != NULL)
		c->partner->partner = NULL;
	if (c->w != NULL)
		LIST_REMOVE(c, link);
	atomic_fetch_sub(&nrchans, 1);
	rchan_unhook(c);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->fd != -1)
		close(c->fd);
	free(c);
}

static void
closing_write_cb(struct bufferevent *bev, void *arg)
{
	if (batch_unsent(bev) == 0)
		rchan_free(arg);
}

static void
closing_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	rchan_free(arg);
}

/* Close c after what is queued for it has been written (bounded). */
static void
rchan_close_flush(struct rchan *c)
{
	struct timeval tv = { RELAY_FLUSH_TIMEOUT, 0 };
	int queued = c->state == R_QUEUED;

	group_leave(c);
	if (queued)
		group_publish(c->group);
	if (c->partner != NULL) {
		c->partner->partner = NULL;
		c->partner = NULL;
	}
	if (c->timer != NULL)
		event_del(c->timer);
	if (c->state == R_HANDSHAKE || batch_unsent(c->bev) == 0) {
		rchan_free(c);
		return;
	}
	c->state = R_CLOSING;
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_setcb(c->bev, NULL, closing_write_cb, closing_event_cb,
	    c);
	bufferevent_set_timeouts(c->bev, NULL, &tv);
	batch_set_deadline(c->bev, RELAY_FLUSH_TIMEOUT);
	if (bufferevent_enable(c->bev, EV_WRITE) == -1) {
		rchan_free(c);
		return;
	}
	bev_kick_write(c->bev);
}

/* A frame of the relay's own, written in this loop pass (libevent 2.1's
 * bufferevent_openssl would wait for the socket to poll writable: two
 * epoll_ctl and a loop pass more). */
static void
send_frame(struct rchan *c, uint8_t type, const void *payload, size_t len)
{
	(void)frame_write(bufferevent_get_output(c->bev), type, payload, len);
	bev_kick_write(c->bev);
}

static void
auth_reply(struct rchan *c, uint8_t code)
{
	uint8_t payload[2] = { PROTOCOL_VERSION, code };

	send_frame(c, FRAME_AUTH_RESULT, payload, sizeof(payload));
}

static time_t
mono_now(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void rchan_recycle(struct rchan *c);
static void group_match(struct group *g);

/*
 * An idle channel must hear from its client (PINGs) within
 * --idle-timeout; (re)arm its deadline.  The deadline is c->timer, not
 * a bufferevent read timeout: with libevent 2.1.12 such a timeout outlived
 * bufferevent_set_timeouts(NULL, NULL) on channels that were then paired,
 * and cut idle user connections after 30 s.
 */
static int
rchan_idle_deadline(struct rchan *c)
{
	struct timeval tv = { (time_t)relay_cfg.idle_timeout, 0 };

	return evtimer_add(c->timer, &tv);
}

/*
 * The user connection on the pair a-b ended cleanly: FIN went both ways
 * and has been passed on.  Each channel goes back to idle (REUSE tells its
 * client so) unless it is too old, in which case it is closed.
 */
static void
pair_end(struct rchan *a, struct rchan *b)
{
	struct rchan *entry = a->role == ROLE_ENTRY ? a : b;
	struct rchan *reverse = a->role == ROLE_ENTRY ? b : a;
	struct group *g = entry->group;

	a->partner = b->partner = NULL;
	log_debug("group %u: entry-point %s and reverse-proxy %s: connection "
	    "ended cleanly", g->id, entry->peer, reverse->peer);
	g->refs++;		/* g outlives both channels for group_match */
	rchan_recycle(entry);
	rchan_recycle(reverse);
	group_match(g);
	group_unref(g);
}

/*
 * Protocol error on a paired channel: src is closed, its partner gets RST
 * (src's frames stopped at a boundary, so RST is a frame of its own there)
 * and is closed after it.
 */
static void
pair_fail(struct rchan *src, const char *why)
{
	struct rchan *dst = src->partner;

	log_info("%s: protocol error: %s", src->peer, why);
	if (dst != NULL) {
		send_frame(dst, FRAME_RST, NULL, 0);
		rchan_close_flush(dst);
	}
	rchan_free(src);
}

/* Does a frame of this type pass the relay untouched? */
static int
passes(const struct rchan *src, const struct frame_header *h)
{
	switch (h->type) {
	case FRAME_DATA:
		return !src->fin;
	case FRAME_OPEN:
		return src->role == ROLE_ENTRY;
	case FRAME_OPEN_RESULT:
		return src->role == ROLE_REVERSE;
	default:
		return 0;
	}
}

/*
 * Pass what src has read on to its partner.  The relay follows the frame
 * headers but moves the bytes in as few pieces as it can: the run of DATA
 * (and OPEN, OPEN_RESULT) frames up to the next control frame goes in one
 * evbuffer move, chains and all, even when its last frame has not fully
 * arrived.  Control frames: PING and RETIRE that crossed the pairing are
 * dropped; FIN is passed on and noted (both ways: the pair ends and its
 * channels are reused); RST is passed on and closes the pair; anything
 * else is a protocol error.  Stops reading src while the partner's output
 * is full.  Returns -1 when src is gone.
 */
static int
relay_forward(struct rchan *src)
{
	struct rchan *dst = src->partner;
	struct evbuffer *in = bufferevent_get_input(src->bev);
	struct evbuffer *out;
	struct evbuffer_ptr pos;
	struct frame_header h;
	uint8_t hdr[FRAME_HEADER_LEN];
	char err[160];
	size_t len, run, n;
	int r;

	while (dst != NULL && (len = evbuffer_get_length(in)) > 0) {
		out = bufferevent_get_output(dst->bev);
		/* How far the frames that pass untouched go. */
		run = src->frame_left;
		while (run + FRAME_HEADER_LEN <= len) {
			if (evbuffer_ptr_set(in, &pos, run, EVBUFFER_PTR_SET)
			    == -1 || evbuffer_copyout_from(in, &pos, hdr,
			    sizeof(hdr)) != (ev_ssize_t)sizeof(hdr) ||
			    frame_header_decode(hdr, sizeof(hdr), &h, err,
			    sizeof(err)) != 1 || !passes(src, &h))
				break;
			run += FRAME_HEADER_LEN + h.length;
		}
		if (run > 0) {
			n = run < len ? run : len;
			r = n == len ? evbuffer_add_buffer(out, in) :
			    evbuffer_remove_buffer(in, out, n) == (int)n ? 0 :
			    -1;
			if (r == -1) {
				log_warnx("%s: out of memory", src->peer);
				rchan_close_flush(dst);
				rchan_free(src);
				return -1;
			}
			src->frame_left = run - n;
			continue;
		}
		/* A frame that does not pass is at the front. */
		if ((r = frame_peek(in, &h, err, sizeof(err))) == 0)
			break;
		if (r == -1) {
			pair_fail(src, err);
			return -1;
		}
		switch (h.type) {
		case FRAME_PING:
		case FRAME_RETIRE:
			evbuffer_drain(in, FRAME_HEADER_LEN + h.length);
			break;
		case FRAME_FIN:
			if (src->fin)
				goto unexpected;
			evbuffer_drain(in, FRAME_HEADER_LEN);
			send_frame(dst, FRAME_FIN, NULL, 0);
			src->fin = 1;
			if (dst->fin) {
				pair_end(src, dst);
				return 0;
			}
			break;
		case FRAME_RST:
			evbuffer_drain(in, FRAME_HEADER_LEN);
			send_frame(dst, FRAME_RST, NULL, 0);
			log_debug("%s: %s reset the connection", src->peer,
			    role_name(src->role));
			rchan_close_flush(dst);
			rchan_free(src);
			return -1;
		default:
			goto unexpected;
		}
	}
	if (dst != NULL &&
	    evbuffer_get_length(bufferevent_get_output(dst->bev)) >=
	    RELAY_HIGH_WATER) {
		bufferevent_disable(src->bev, EV_READ);
		src->paused = 1;
	}
	/* Records read ahead first, then one write for all of them. */
	if (!tls_kick(src->bev) && dst != NULL)
		bev_kick_write(dst->bev);
	return 0;
unexpected:
	snprintf(err, sizeof(err), "unexpected %s%s from the %s",
	    frame_type_name(h.type), src->fin ? " after FIN" : "",
	    role_name(src->role));
	pair_fail(src, err);
	return -1;
}

/* Pair an entry-point channel (its OPEN still unread in its input) with an
 * idle reverse-proxy channel, and start relaying. */
static void
pair(struct rchan *entry, struct rchan *reverse)
{
	group_leave(entry);
	group_leave(reverse);
	entry->state = reverse->state = R_PAIRED;
	entry->partner = reverse;
	reverse->partner = entry;
	entry->fin = reverse->fin = 0;
	entry->frame_left = reverse->frame_left = 0;
	entry->uses++;
	reverse->uses++;
	/* A user connection may stay quiet for as long as it likes: no
	 * deadline while paired. */
	if (entry->timer != NULL)
		event_del(entry->timer);
	if (reverse->timer != NULL)
		event_del(reverse->timer);
	bufferevent_setwatermark(entry->bev, EV_WRITE, RELAY_LOW_WATER, 0);
	bufferevent_setwatermark(reverse->bev, EV_WRITE, RELAY_LOW_WATER, 0);
	/* TLS reads of whole records, several per pass (see NOTES-io). */
	bufferevent_setwatermark(entry->bev, EV_READ, 0, RELAY_READ_HIGH_WATER);
	bufferevent_setwatermark(reverse->bev, EV_READ, 0,
	    RELAY_READ_HIGH_WATER);
	log_debug("group %u: paired entry-point %s with reverse-proxy %s",
	    entry->group->id, entry->peer, reverse->peer);
	if (bufferevent_enable(entry->bev, EV_READ) == -1 ||
	    bufferevent_enable(reverse->bev, EV_READ) == -1) {
		rchan_close_flush(reverse);
		rchan_free(entry);
		return;
	}
	/* The reverse-proxy's input may hold a PING (dropped) or RETIRE
	 * (ignored: it is in use now) sent before it learned of the pairing. */
	if (relay_forward(entry) == 0 && entry->state == R_PAIRED)
		(void)relay_forward(reverse);
}

/* How many channels the slot still wants. */
static unsigned
xslot_need(const struct xslot *s)
{
	return s->waiting > s->incoming ? s->waiting - s->incoming : 0;
}

/* The exchange's entry for group id (made when create is set); under
 * xlock. */
static struct xgroup *
xgroup_get(uint32_t id, int create)
{
	struct xgroup *xg;

	LIST_FOREACH(xg, &xgroups, link)
		if (xg->id == id)
			return xg;
	if (!create || (xg = calloc(1, sizeof(*xg) +
	    nworkers * sizeof(xg->slot[0]))) == NULL)
		return NULL;
	xg->id = id;
	LIST_INSERT_HEAD(&xgroups, xg, link);
	return xg;
}

/* Forget an entry that says nothing any more; under xlock. */
static void
xgroup_tidy(struct xgroup *xg)
{
	unsigned i;

	for (i = 0; i < nworkers; i++)
		if (xg->slot[i].waiting > 0 || xg->slot[i].incoming > 0)
			return;
	LIST_REMOVE(xg, link);
	free(xg);
}

static void
worker_wake(struct worker *w)
{
	uint64_t one = 1;

	/* A full counter (it cannot be) or EAGAIN still leaves it
	 * readable, which is all that matters. */
	(void)!write(w->efd, &one, sizeof(one));
}

/*
 * Tell the exchange how many OPENs of g wait on this worker, and how many
 * of the channels other workers sent have arrived.  When more are wanted
 * than before, the other workers are asked to look for idle channels.
 */
static void
group_publish(struct group *g)
{
	struct worker *w = g->w;
	struct xgroup *xg;
	struct xslot *s;
	unsigned before, after, i, done;

	if (nworkers == 1 || (g->nwaiting == g->published && g->arrived == 0))
		return;
	pthread_mutex_lock(&xlock);
	if ((xg = xgroup_get(g->id, g->nwaiting > 0)) == NULL) {
		pthread_mutex_unlock(&xlock);
		if (g->nwaiting > 0)
			log_warnx("group %u: out of memory: OPENs wait for "
			    "this worker's channels only", g->id);
		g->published = g->nwaiting;
		g->arrived = 0;
		return;
	}
	s = &xg->slot[w->id];
	before = xslot_need(s);
	s->waiting = g->nwaiting;
	done = g->arrived < s->incoming ? g->arrived : s->incoming;
	s->incoming -= done;
	after = xslot_need(s);
	if (after > before)
		atomic_fetch_add(&xneed, after - before);
	else if (before > after)
		atomic_fetch_sub(&xneed, before - after);
	xgroup_tidy(xg);
	pthread_mutex_unlock(&xlock);
	g->published = g->nwaiting;
	g->arrived = 0;
	if (after <= before)
		return;
	for (i = 0; i < nworkers; i++) {
		if (i == w->id)
			continue;
		pthread_mutex_lock(&workers[i].lock);
		workers[i].check = 1;
		pthread_mutex_unlock(&workers[i].lock);
		worker_wake(&workers[i]);
	}
}

/* Can c move to another worker now: idle, nothing half read or unsent? */
static int
rchan_movable(const struct rchan *c)
{
	return c->state == R_IDLE && !c->paused &&
	    evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
	    batch_unsent(c->bev) == 0;
}

/*
 * Hand the idle reverse-proxy channel c to worker to.  Its bufferevent
 * goes; its socket, SSL (with any records read ahead) and state travel in
 * to's inbox, and to makes a new bufferevent for them in its own loop.
 */
static void
rchan_move(struct rchan *c, struct worker *to)
{
	struct worker *from = c->w;

	group_leave(c);
	group_unref(c->group);
	c->group = NULL;
	LIST_REMOVE(c, link);
	c->w = NULL;
	rchan_unhook(c);
	log_debug("%s: reverse-proxy channel moves from worker %u to %u",
	    c->peer, from->id, to->id);
	pthread_mutex_lock(&to->lock);
	TAILQ_INSERT_TAIL(&to->inbox, c, qlink);
	pthread_mutex_unlock(&to->lock);
	worker_wake(to);
}

/*
 * g has idle reverse-proxy channels and no OPEN waiting: give them to
 * workers where OPENs of g wait, one claimed channel at a time.
 */
static void
group_offer(struct group *g)
{
	struct worker *w = g->w;
	struct xgroup *xg;
	struct rchan *c;
	unsigned i, v;

	g->refs++;		/* moving its channels must not free g */
	while (atomic_load(&xneed) > 0 && g->nwaiting == 0) {
		TAILQ_FOREACH(c, &g->idle, qlink)
			if (rchan_movable(c))
				break;
		if (c == NULL)
			break;
		v = nworkers;
		pthread_mutex_lock(&xlock);
		if ((xg = xgroup_get(g->id, 0)) != NULL) {
			for (i = 1; i < nworkers; i++) {
				struct xslot *s =
				    &xg->slot[(w->id + i) % nworkers];
				if (xslot_need(s) > 0) {
					v = (w->id + i) % nworkers;
					s->incoming++;
					atomic_fetch_sub(&xneed, 1);
					break;
				}
			}
		}
		pthread_mutex_unlock(&xlock);
		if (v == nworkers)
			break;
		rchan_move(c, &workers[v]);
	}
	group_unref(g);
}

/*
 * Pair waiting OPENs of g with idle reverse-proxy channels of g; then
 * tell the exchange what still waits, or offer what is still idle.
 */
static void
group_match(struct group *g)
{
	struct rchan *e, *r;

	g->refs++;		/* pairing may free channels */
	while ((e = TAILQ_FIRST(&g->waiting)) != NULL &&
	    (r = TAILQ_FIRST(&g->idle)) != NULL)
		pair(e, r);
	group_publish(g);
	if (g->nidle > 0 && g->nwaiting == 0)
		group_offer(g);
	group_unref(g);
}

static void
rchan_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rchan *c = arg;
	struct open_result_msg m;
	uint8_t buf[1 + OPEN_RESULT_TEXT_MAX];
	size_t len;

	(void)fd;
	(void)what;
	if (c->state == R_HANDSHAKE || c->state == R_AUTH) {
		log_info("%s: no TLS handshake and AUTH within %u s, closing",
		    c->peer, relay_cfg.handshake_timeout);
		rchan_free(c);
		return;
	}
	if (c->state == R_IDLE) {
		log_info("%s: idle %s channel silent for %u s, closing",
		    c->peer, role_name(c->role), relay_cfg.idle_timeout);
		rchan_free(c);
		return;
	}
	if (c->state != R_QUEUED)
		return;
	log_info("%s: group %u: no reverse-proxy channel within %u s",
	    c->peer, c->group->id, relay_cfg.open_timeout);
	memset(&m, 0, sizeof(m));
	m.code = OPEN_NO_PEER;
	snprintf(m.text, sizeof(m.text), "group %u has no idle reverse-proxy "
	    "channel", c->group->id);
	len = open_result_encode(&m, buf);
	/* Whatever the entry-point sent behind OPEN is dropped with it. */
	evbuffer_drain(bufferevent_get_input(c->bev),
	    evbuffer_get_length(bufferevent_get_input(c->bev)));
	send_frame(c, FRAME_OPEN_RESULT, buf, len);
	rchan_close_flush(c);
}

/* An entry-point's OPEN: pair it now, or queue it for open_timeout. */
static void
entry_open(struct rchan *c)
{
	struct group *g = c->group;
	struct timeval tv = { (time_t)relay_cfg.open_timeout, 0 };

	if (g->nwaiting >= RELAY_WAIT_MAX) {
		log_warnx("%s: group %u: %u OPENs already waiting, refusing",
		    c->peer, g->id, g->nwaiting);
		evbuffer_drain(bufferevent_get_input(c->bev),
		    evbuffer_get_length(bufferevent_get_input(c->bev)));
		{
			uint8_t code = OPEN_NO_PEER;
			send_frame(c, FRAME_OPEN_RESULT, &code, 1);
		}
		rchan_close_flush(c);
		return;
	}
	c->state = R_QUEUED;
	TAILQ_INSERT_TAIL(&g->waiting, c, qlink);
	g->nwaiting++;
	/* Read nothing more until paired: the bytes behind OPEN wait. */
	bufferevent_disable(c->bev, EV_READ);
	if (evtimer_add(c->timer, &tv) == -1) {
		log_warnx("%s: cannot arm the queue timer", c->peer);
		rchan_free(c);
		return;
	}
	group_match(g);
}

/* After a clean end: c is idle again, or closed when it is too old. */
static void
rchan_recycle(struct rchan *c)
{
	time_t age = mono_now() - c->born;

	if (c->dying)
		return;		/* rchan_event_cb frees it */
	if (age >= RELAY_REUSE_MAX_AGE) {
		log_debug("%s: %s channel is %lld s old: closing it rather "
		    "than reusing it", c->peer, role_name(c->role),
		    (long long)age);
		rchan_close_flush(c);
		return;
	}
	c->state = R_IDLE;
	c->fin = 0;
	c->frame_left = 0;
	send_frame(c, FRAME_REUSE, NULL, 0);
	if (rchan_idle_deadline(c) == -1) {
		log_warnx("%s: cannot arm the idle timer", c->peer);
		rchan_close_flush(c);
		return;
	}
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	if (c->role == ROLE_REVERSE) {
		TAILQ_INSERT_TAIL(&c->group->idle, c, qlink);
		c->group->nidle++;
	}
	log_debug("%s: %s channel idle again (%lu connections carried)",
	    c->peer, role_name(c->role), c->uses);
	if (c->paused) {
		c->paused = 0;
		if (bufferevent_enable(c->bev, EV_READ) == -1) {
			rchan_free(c);
			return;
		}
	}
	/* Frames already read wait for no new read event. */
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		bufferevent_trigger(c->bev, EV_READ,
		    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	tls_kick(c->bev);
}

/* Handle AUTH, the first frame.  Returns 0 when c is authenticated. */
static int
handle_auth(struct rchan *c, const struct frame_header *h)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	uint8_t payload[FRAME_CONTROL_MAX];
	uint8_t exporter[AUTH_EXPORTER_LEN];
	struct auth_msg m;
	char err[160];
	uint8_t code;

	if (h->type != FRAME_AUTH) {
		log_info("%s: authentication failed: %s instead of AUTH",
		    c->peer, frame_type_name(h->type));
		auth_reply(c, AUTH_MALFORMED);
		return -1;
	}
	evbuffer_drain(in, FRAME_HEADER_LEN);
	evbuffer_remove(in, payload, h->length);
	if (auth_msg_decode(payload, h->length, &m, err, sizeof(err)) == -1) {
		code = m.version != PROTOCOL_VERSION ? AUTH_BAD_VERSION :
		    AUTH_MALFORMED;
		log_info("%s: authentication failed: %s", c->peer, err);
		auth_reply(c, code);
		return -1;
	}
	auth_fingerprint(m.pubkey, c->key);
	if (!auth_keyset_contains(&relay_cfg.keys, m.pubkey)) {
		log_info("%s: authentication failed: %s (key %s)", c->peer,
		    auth_code_text(AUTH_UNKNOWN_KEY), c->key);
		auth_reply(c, AUTH_UNKNOWN_KEY);
		return -1;
	}
	if (tls_exporter(bufferevent_openssl_get_ssl(c->bev), exporter) ==
	    -1 || auth_verify(m.pubkey, m.role, m.group, exporter, m.sig) !=
	    0) {
		log_info("%s: authentication failed: %s (key %s)", c->peer,
		    auth_code_text(AUTH_BAD_SIGNATURE), c->key);
		auth_reply(c, AUTH_BAD_SIGNATURE);
		return -1;
	}
	if ((c->group = group_ref(c->w, m.group)) == NULL) {
		log_warnx("%s: out of memory", c->peer);
		return -1;
	}
	c->role = m.role;
	c->gid = m.group;
	if (rchan_idle_deadline(c) == -1) {
		log_warnx("%s: cannot arm the idle timer", c->peer);
		return -1;
	}
	auth_reply(c, AUTH_OK);
	log_debug("%s: %s authenticated, group %u, key %s", c->peer,
	    role_name(c->role), m.group, c->key);
	c->state = R_IDLE;
	if (c->role == ROLE_REVERSE) {
		TAILQ_INSERT_TAIL(&c->group->idle, c, qlink);
		c->group->nidle++;
	}
	return 0;
}

static void
rchan_read_cb(struct bufferevent *bev, void *arg)
{
	struct rchan *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct frame_header h;
	char err[160];
	int r = 0;

	if (c->state == R_PAIRED) {
		(void)relay_forward(c);
		return;
	}
	while ((c->state == R_AUTH || c->state == R_IDLE) &&
	    (r = frame_peek(in, &h, err, sizeof(err))) == 1) {
		if (c->state == R_AUTH) {
			if (handle_auth(c, &h) == -1) {
				rchan_close_flush(c);
				return;
			}
			if (c->role == ROLE_REVERSE) {
				struct group *g = c->group;
				group_match(g);
				if (c->state != R_IDLE)
					return;	/* paired, input forwarded */
			}
			continue;
		}
		if (h.type == FRAME_PING) {
			evbuffer_drain(in, FRAME_HEADER_LEN + h.length);
			/* A client that pings but never reads must not make
			 * the relay buffer PONGs without bound. */
			if (evbuffer_get_length(bufferevent_get_output(bev)) >
			    RELAY_PONG_BACKLOG) {
				log_info("%s: PINGs without reading the PONGs, "
				    "closing", c->peer);
				rchan_free(c);
				return;
			}
			send_frame(c, FRAME_PONG, NULL, 0);
			if (rchan_idle_deadline(c) == -1) {
				log_warnx("%s: cannot arm the idle timer",
				    c->peer);
				rchan_free(c);
				return;
			}
			continue;
		}
		if (h.type == FRAME_OPEN && c->role == ROLE_ENTRY) {
			entry_open(c);	/* OPEN stays in the input */
			return;
		}
		if (h.type == FRAME_RETIRE || h.type == FRAME_RST) {
			/* RETIRE: the client's pool has too many.  RST: an
			 * abort that crossed the clean end; the client closes
			 * this channel anyway. */
			log_debug("%s: idle %s channel %s", c->peer,
			    role_name(c->role), h.type == FRAME_RETIRE ?
			    "retired" : "reset");
			rchan_free(c);
			return;
		}
		log_info("%s: protocol error: %s on an idle %s channel",
		    c->peer, frame_type_name(h.type), role_name(c->role));
		rchan_free(c);
		return;
	}
	if ((c->state == R_AUTH || c->state == R_IDLE) && r == -1) {
		log_info("%s: %s: %s", c->peer, c->state == R_AUTH ?
		    "authentication failed" : "protocol error", err);
		if (c->state == R_AUTH) {
			auth_reply(c, AUTH_MALFORMED);
			rchan_close_flush(c);
		} else {
			rchan_free(c);
		}
		return;
	}
	if (c->state == R_AUTH || c->state == R_IDLE)
		tls_kick(bev);
}

static void
rchan_write_cb(struct bufferevent *bev, void *arg)
{
	struct rchan *c = arg;
	struct rchan *p = c->partner;

	/* An idle channel has sent all it had: another worker may want it
	 * (then c moves, and is not touched after). */
	if (c->state == R_IDLE && c->role == ROLE_REVERSE &&
	    atomic_load(&xneed) > 0 && batch_unsent(bev) == 0) {
		group_offer(c->group);
		return;
	}
	/* c's output drained below the low mark: its partner may read. */
	if (c->state == R_PAIRED && p != NULL && p->paused) {
		p->paused = 0;
		if (bufferevent_enable(p->bev, EV_READ) == -1)
			rchan_free(p);
		else
			tls_kick(p->bev);
	}
}

static void
rchan_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct rchan *c = arg;
	struct rchan *p = c->partner;
	unsigned long e;
	char reason[200] = "";

	if (what & BEV_EVENT_CONNECTED) {
		/* TLS handshake done; AUTH must follow within the same
		 * deadline. */
		c->state = R_AUTH;
		if (batch_attach(bev) == -1) {
			log_warnx("%s: cannot set up the write batch",
			    c->peer);
			rchan_free(c);
			return;
		}
		tls_kick(bev);	/* AUTH may have come with the handshake */
		return;
	}
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (reason[0] == '\0')
			ERR_error_string_n(e, reason, sizeof(reason));
	switch (c->state) {
	case R_HANDSHAKE:
		log_info("%s: TLS handshake failed: %s", c->peer,
		    reason[0] ? reason : (what & BEV_EVENT_EOF) ?
		    "connection closed" : evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
		break;
	case R_AUTH:
		log_info("%s: closed before authenticating", c->peer);
		break;
	case R_IDLE:
		log_debug("%s: idle %s channel closed", c->peer,
		    role_name(c->role));
		break;
	case R_PAIRED:
		/* Pass on what was read, then close the partner once it
		 * has that. */
		if (p != NULL) {
			c->dying = 1;
			if (relay_forward(c) == -1)
				return;		/* c is gone, and its pair */
			p = c->partner;
		}
		log_debug("%s: %s channel ended (%s%s%s)", c->peer, role_name(c->role), (what & BEV_EVENT_EOF) ? "eof" : "", (what & BEV_EVENT_ERROR) ? "error " : "", (what & BEV_EVENT_ERROR) ? (reason[0] ? reason : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR())) : "");
		if (p != NULL)
			rchan_close_flush(p);
		break;
	default:
		break;
	}
	rchan_free(c);
}

/* Set up a channel that another worker handed over, as idle here. */
static void
rchan_arrive(struct worker *w, struct rchan *c)
{
	struct group *g;
	int ok;

	c->w = w;
	LIST_INSERT_HEAD(&w->rchans, c, link);
	if ((g = group_ref(w, c->gid)) == NULL) {
		log_warnx("%s: out of memory", c->peer);
		rchan_free(c);
		return;
	}
	c->group = g;
	g->refs++;		/* for group_match below */
	g->arrived++;		/* told to the exchange by group_match */
	c->timer = evtimer_new(w->base, rchan_deadline_cb, c);
	c->bev = bufferevent_openssl_socket_new(w->base, c->fd, c->ssl,
	    BUFFEREVENT_SSL_OPEN, BEV_OPT_DEFER_CALLBACKS);
	c->state = R_IDLE;
	TAILQ_INSERT_TAIL(&g->idle, c, qlink);
	g->nidle++;
	ok = c->timer != NULL && c->bev != NULL && batch_attach(c->bev) == 0 &&
	    rchan_idle_deadline(c) == 0;
	if (ok) {
		bufferevent_setcb(c->bev, rchan_read_cb, rchan_write_cb,
		    rchan_event_cb, c);
		ok = bufferevent_enable(c->bev, EV_READ | EV_WRITE) == 0;
	}
	if (ok) {
		tls_kick(c->bev);	/* records read ahead came too */
	} else {
		log_warnx("%s: cannot take over the channel", c->peer);
		rchan_free(c);
	}
	group_match(g);
	group_unref(g);
}

/* Another thread wrote to w's eventfd: channels arrived, OPENs wait
 * elsewhere, or the relay stops. */
static void
worker_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct rchan_list arrived = TAILQ_HEAD_INITIALIZER(arrived);
	struct group *g, *next;
	struct rchan *c;
	uint64_t n;
	int check, quit;

	(void)what;
	(void)!read(fd, &n, sizeof(n));
	pthread_mutex_lock(&w->lock);
	TAILQ_CONCAT(&arrived, &w->inbox, qlink);
	check = w->check;
	quit = w->quit;
	w->check = 0;
	pthread_mutex_unlock(&w->lock);
	if (quit) {
		/* What arrived is freed with the inbox by relay_shutdown. */
		pthread_mutex_lock(&w->lock);
		TAILQ_CONCAT(&w->inbox, &arrived, qlink);
		pthread_mutex_unlock(&w->lock);
		event_base_loopbreak(w->base);
		return;
	}
	while ((c = TAILQ_FIRST(&arrived)) != NULL) {
		TAILQ_REMOVE(&arrived, c, qlink);
		rchan_arrive(w, c);
	}
	if (!check)
		return;
	for (g = LIST_FIRST(&w->groups); g != NULL; g = next) {
		g->refs++;
		if (g->nidle > 0 && g->nwaiting == 0)
			group_offer(g);
		next = LIST_NEXT(g, link);
		group_unref(g);
	}
}

static int
worker_init(struct worker *w, unsigned id, struct event_base *base)
{
	w->id = id;
	w->efd = -1;
	LIST_INIT(&w->rchans);
	LIST_INIT(&w->groups);
	TAILQ_INIT(&w->inbox);
	if (pthread_mutex_init(&w->lock, NULL) != 0)
		return -1;
	if ((w->base = base) == NULL && (w->base = daemon_loop_new()) == NULL)
		return -1;
	if ((w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		log_warn("eventfd");
		return -1;
	}
	if ((w->wake = event_new(w->base, w->efd, EV_READ | EV_PERSIST,
	    worker_wake_cb, w)) == NULL || event_add(w->wake, NULL) == -1)
		return -1;
	return 0;
}

int
relay_init(struct event_base *base, const struct relay_config *cfg)
{
	unsigned i;

	relay_cfg = *cfg;
	nworkers = cfg->workers > 0 ? cfg->workers : 1;
	if ((workers = calloc(nworkers, sizeof(*workers))) == NULL)
		return -1;
	for (i = 0; i < nworkers; i++)
		if (worker_init(&workers[i], i, i == 0 ? base : NULL) == -1)
			return -1;	/* relay_shutdown frees what was made */
	return 0;
}

struct event_base *
relay_worker_base(unsigned i)
{
	return i < nworkers ? workers[i].base : NULL;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	if (event_base_dispatch(w->base) == -1)
		log_warnx("worker %u: the event loop failed", w->id);
	return NULL;
}

int
relay_run(int (*run)(struct event_base *))
{
	sigset_t all, old;
	unsigned i;
	int rc = 0, e;

	/* Signals are for the main thread's loop (worker 0). */
	(void)sigfillset(&all);
	if ((e = pthread_sigmask(SIG_BLOCK, &all, &old)) != 0) {
		log_warnx("pthread_sigmask: %s", strerror(e));
		return -1;
	}
	for (i = 1; i < nworkers; i++) {
		if ((e = pthread_create(&workers[i].thread, NULL, worker_main,
		    &workers[i])) != 0) {
			log_warnx("cannot start worker %u: %s", i,
			    strerror(e));
			rc = -1;
			break;
		}
		workers[i].running = 1;
	}
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0)
		rc = run(workers[0].base);
	for (i = 1; i < nworkers; i++) {
		if (!workers[i].running)
			continue;
		pthread_mutex_lock(&workers[i].lock);
		workers[i].quit = 1;
		pthread_mutex_unlock(&workers[i].lock);
		worker_wake(&workers[i]);
		(void)pthread_join(workers[i].thread, NULL);
		workers[i].running = 0;
	}
	return rc;
}

void
relay_accept(unsigned worker, evutil_socket_t fd,
    const struct sockaddr *peer)
{
	struct timeval tv = { (time_t)relay_cfg.handshake_timeout, 0 };
	struct worker *w = &workers[worker];
	struct rchan *c;

	if (atomic_load(&nrchans) >= relay_cfg.max_channels) {
		time_t now = time(NULL);
		if (now != w->last_full_warning) {
			char name[NETADDR_STRLEN];
			netaddr_format(peer, name);
			log_warnx("%u channels open (--max-channels): refusing "
			    "%s", atomic_load(&nrchans), name);
			w->last_full_warning = now;
		}
		close(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("calloc");
		close(fd);
		return;
	}
	c->w = w;
	c->fd = fd;
	LIST_INSERT_HEAD(&w->rchans, c, link);
	atomic_fetch_add(&nrchans, 1);
	netaddr_format(peer, c->peer);
	c->state = R_HANDSHAKE;
	c->born = mono_now();
	(void)netaddr_set_nodelay(fd);
	if ((c->ssl = SSL_new(relay_cfg.ssl_ctx)) == NULL) {
		log_warnx_ssl("%s: SSL_new", c->peer);
		rchan_free(c);
		return;
	}
	c->bev = bufferevent_openssl_socket_new(w->base, fd, c->ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_DEFER_CALLBACKS);
	if (c->bev == NULL) {
		log_warnx("%s: cannot set up TLS", c->peer);
		rchan_free(c);
		return;
	}
	c->timer = evtimer_new(w->base, rchan_deadline_cb, c);
	if (c->timer == NULL || evtimer_add(c->timer, &tv) == -1) {
		log_warnx("%s: cannot arm the handshake timer", c->peer);
		rchan_free(c);
		return;
	}
	bufferevent_setcb(c->bev, rchan_read_cb, rchan_write_cb,
	    rchan_event_cb, c);
	if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) == -1) {
		log_warnx("%s: cannot start reading", c->peer);
		rchan_free(c);
		return;
	}
	log_debug("%s: connected (worker %u)", c->peer, w->id);
}

void
relay_shutdown(void)
{
	struct xgroup *xg;
	struct rchan *c;
	unsigned i;

	for (i = 0; workers != NULL && i < nworkers; i++) {
		struct worker *w = &workers[i];

		while ((c = LIST_FIRST(&w->rchans)) != NULL)
			rchan_free(c);
		while ((c = TAILQ_FIRST(&w->inbox)) != NULL) {
			TAILQ_REMOVE(&w->inbox, c, qlink);
			rchan_free(c);
		}
		if (w->wake != NULL)
			event_free(w->wake);
		if (w->efd != -1)
			close(w->efd);
		if (i > 0 && w->base != NULL) {
			/* Let freed bufferevents finish (deferred). */
			(void)event_base_loop(w->base, EVLOOP_NONBLOCK);
			event_base_free(w->base);
		}
		(void)pthread_mutex_destroy(&w->lock);
	}
	while ((xg = LIST_FIRST(&xgroups)) != NULL) {
		LIST_REMOVE(xg, link);
		free(xg);
	}
	free(workers);
	workers = NULL;
	nworkers = 0;
}
