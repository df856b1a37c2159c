/*
 * workers: the relay's event loops, one per thread, and what passes
 * between them.  Every lock of the relay is in this file.
 *
 * Each worker has its own SO_REUSEPORT listening sockets (main.c), so the
 * kernel spreads new channels over the workers, and each channel stays on
 * its worker.  The one thing that crosses: when OPENs of a group wait on
 * one worker and idle reverse-proxy channels of that group sit on
 * another, those channels move over.  The exchange (xgroups, under xlock)
 * says, for every group with OPENs waiting somewhere, how many wait on
 * each worker and how many channels are already on their way there; it is
 * touched only when an OPEN has to wait or a channel moves, never on the
 * data path.  A channel moves as its socket and SSL (with any records read
 * ahead) into the other worker's inbox (under that worker's lock), and the
 * other worker makes a new bufferevent for it (channel.c, rchan_arrive).
 * Workers wake each other through an eventfd each.
 */
#include "relay.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "daemon.h"
#include "wire.h"

struct xslot {
	unsigned waiting, incoming;
};

struct xgroup {
	uint32_t id;
	LIST_ENTRY(xgroup) link;
	struct xslot slot[];		/* one per worker */
};

struct relay_config relay_cfg;
static struct worker *workers;
static unsigned nworkers;
static pthread_mutex_t xlock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, xgroup) xgroups = LIST_HEAD_INITIALIZER(xgroups);
static atomic_uint xneed;		/* channels wanted, all groups */

/* The graceful stop (relay_drain). */
static atomic_int draining;
static atomic_uint drained;		/* workers whose pass is done */
static void (*drain_listeners)(unsigned worker);

int
relay_draining(void)
{
	return atomic_load(&draining);
}

int
relay_drain_busy(void)
{
	return atomic_load(&drained) < nworkers || relay_channels_busy();
}

int
relay_wanted(void)
{
	return atomic_load(&xneed) > 0;
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

/* Ask every worker but w to look for idle channels that others want. */
static void
workers_ask(const struct worker *w)
{
	unsigned i;

	for (i = 0; i < nworkers; i++) {
		if (i == w->id)
			continue;
		pthread_mutex_lock(&workers[i].lock);
		workers[i].check = 1;
		pthread_mutex_unlock(&workers[i].lock);
		worker_wake(&workers[i]);
	}
}

/*
 * Tell the exchange how many OPENs of g wait on this worker, and how many
 * of the channels other workers sent have arrived.  When more are wanted
 * than before, the other workers are asked to look for idle channels.
 */
void
group_publish(struct group *g)
{
	struct worker *w = g->w;
	struct xgroup *xg;
	struct xslot *s;
	unsigned before, after, done;

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
	if (after > before)
		workers_ask(w);
}

/* Can c move to another worker now: idle, nothing half read or unsent? */
static int
rchan_movable(const struct rchan *c)
{
	return c->state == R_IDLE && !c->paused &&
	    evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
	    wire_flushed(c->bev);
}

/*
 * Hand the idle reverse-proxy channel c to worker to.  Its bufferevent
 * goes; its socket, SSL (with any records read ahead) and state travel in
 * to's inbox.
 */
static void
rchan_move(struct rchan *c, struct worker *to)
{
	struct worker *from = c->w;

	rchan_set_state(c, R_MOVING);
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

/* A worker after w's that wants a channel of group id, claimed (one on
 * its way there); NULL when none does. */
static struct worker *
group_claim(const struct worker *w, uint32_t id)
{
	struct worker *to = NULL;
	struct xgroup *xg;
	struct xslot *s;
	unsigned i;

	pthread_mutex_lock(&xlock);
	if ((xg = xgroup_get(id, 0)) != NULL) {
		for (i = 1; i < nworkers && to == NULL; i++) {
			s = &xg->slot[(w->id + i) % nworkers];
			if (xslot_need(s) > 0) {
				to = &workers[(w->id + i) % nworkers];
				s->incoming++;
				atomic_fetch_sub(&xneed, 1);
			}
		}
	}
	pthread_mutex_unlock(&xlock);
	return to;
}

void
group_offer(struct group *g)
{
	struct worker *to;
	struct rchan *c;

	/* Moving a channel drops its reference to g; the reaper, not this
	 * loop, frees a group left without any. */
	while (relay_wanted() && g->nwaiting == 0) {
		TAILQ_FOREACH(c, &g->idle, qlink)
			if (rchan_movable(c))
				break;
		if (c == NULL || (to = group_claim(g->w, g->id)) == NULL)
			break;
		rchan_move(c, to);
	}
}

unsigned
relay_drain(void (*stop_listening)(unsigned worker))
{
	unsigned i;

	drain_listeners = stop_listening;	/* before any worker reads it */
	atomic_store(&draining, 1);
	for (i = 0; i < nworkers; i++) {
		pthread_mutex_lock(&workers[i].lock);
		workers[i].drain = 1;
		pthread_mutex_unlock(&workers[i].lock);
		worker_wake(&workers[i]);
	}
	return relay_pairs();
}

/* The relay stops: w's listening sockets close, then every channel of w
 * but those in use.  A closed channel stays on w's list until the reaper:
 * the walk is safe. */
static void
worker_drain(struct worker *w)
{
	struct rchan *c;

	if (drain_listeners != NULL)
		drain_listeners(w->id);
	LIST_FOREACH(c, &w->rchans, link)
		rchan_drain(c);
	w->drained = 1;
	atomic_fetch_add(&drained, 1);
}

void
relay_recheck(void)
{
	unsigned i;

	for (i = 0; i < nworkers; i++) {
		pthread_mutex_lock(&workers[i].lock);
		workers[i].recheck = 1;
		pthread_mutex_unlock(&workers[i].lock);
		worker_wake(&workers[i]);
	}
}

/* After a reload: every idle channel of w (and every entry-point channel
 * whose OPEN waits) is admitted again under the new keys (closed, and told why, when its key lost its rights).  A
 * closed channel stays on w's list until the reaper: the walk is safe. */
static void
worker_recheck(struct worker *w)
{
	struct rchan *c;

	LIST_FOREACH(c, &w->rchans, link)
		if (c->state == R_IDLE || c->state == R_QUEUED)
			(void)admit_recheck(c);
}

/* Another thread wrote to w's eventfd: channels arrived, OPENs wait
 * elsewhere, keys were reloaded, or the relay stops. */
static void
worker_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct rchan_list arrived = TAILQ_HEAD_INITIALIZER(arrived);
	struct group *g;
	struct rchan *c;
	uint64_t n;
	int check, quit, recheck, drain;

	(void)what;
	(void)!read(fd, &n, sizeof(n));
	pthread_mutex_lock(&w->lock);
	quit = w->quit;
	check = w->check;
	w->check = 0;
	recheck = w->recheck;
	w->recheck = 0;
	drain = w->drain;
	w->drain = 0;
	if (!quit)	/* else what arrived is freed by relay_shutdown */
		TAILQ_CONCAT(&arrived, &w->inbox, qlink);
	pthread_mutex_unlock(&w->lock);
	if (quit) {
		event_base_loopbreak(w->base);
		return;
	}
	while ((c = TAILQ_FIRST(&arrived)) != NULL) {
		TAILQ_REMOVE(&arrived, c, qlink);
		rchan_arrive(w, c);
		/* Sent before this worker's drain pass reached the sender. */
		if (w->drained)
			rchan_drain(c);
	}
	if (drain)
		worker_drain(w);
	if (recheck && !w->drained)
		worker_recheck(w);
	if (!check || w->drained)
		return;
	LIST_FOREACH(g, &w->groups, link)
		if (g->nidle > 0 && g->nwaiting == 0)
			group_offer(g);
}

static void
reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	rchan_reap(arg);
}

static int
worker_init(struct worker *w, unsigned id, struct event_base *base)
{
	unsigned i;

	w->id = id;
	w->efd = -1;
	LIST_INIT(&w->rchans);
	LIST_INIT(&w->groups);
	TAILQ_INIT(&w->dead);
	TAILQ_INIT(&w->unused);
	TAILQ_INIT(&w->inbox);
	TAILQ_INIT(&w->strangers);
	for (i = 0; i < 3; i++)
		TAILQ_INIT(&w->idle[i]);
	for (i = 0; i < RELAY_SOURCE_BUCKETS; i++)
		LIST_INIT(&w->sources[i]);
	if (pthread_mutex_init(&w->lock, NULL) != 0)
		return -1;
	w->lock_made = 1;
	if ((w->base = base) == NULL && (w->base = daemon_loop_new()) == NULL)
		return -1;
	if ((w->reaper = event_new(w->base, -1, 0, reaper_cb, w)) == NULL)
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

static struct event *summary_timer;

static void
summary_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	stranger_summary();
}

int
relay_init(struct event_base *base, const struct relay_config *cfg)
{
	unsigned i;

	relay_cfg = *cfg;
	relay_slots_init(cfg->max_channels);
	nworkers = cfg->workers > 0 ? cfg->workers : 1;
	if ((workers = calloc(nworkers, sizeof(*workers))) == NULL)
		return -1;
	for (i = 0; i < nworkers; i++)
		workers[i].efd = -1;	/* for relay_shutdown, whatever fails */
	for (i = 0; i < nworkers; i++)
		if (worker_init(&workers[i], i, i == 0 ? base : NULL) == -1)
			return -1;	/* relay_shutdown frees what was made */
	if ((summary_timer = event_new(base, -1, EV_PERSIST, summary_cb,
	    NULL)) == NULL || event_add(summary_timer, &(struct timeval){
	    STRANGER_LOG_SECONDS, 0 }) == -1)
		return -1;
	return 0;
}

struct event_base *
relay_worker_base(unsigned i)
{
	return i < nworkers ? workers[i].base : NULL;
}

void
relay_accept(unsigned i, evutil_socket_t fd, const struct sockaddr *peer)
{
	rchan_accept(&workers[i], fd, peer);
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
		log_errx("pthread_sigmask: %s", strerror(e));
		return -1;
	}
	for (i = 1; i < nworkers; i++) {
		if ((e = pthread_create(&workers[i].thread, NULL, worker_main,
		    &workers[i])) != 0) {
			log_errx("cannot start worker %u: %s", i,
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
relay_shutdown(void)
{
	struct xgroup *xg;
	struct rchan *c;
	unsigned i;

	for (i = 0; workers != NULL && i < nworkers; i++) {
		struct worker *w = &workers[i];

		/* Every channel closes (the list keeps them until they are
		 * reaped), then the reaper frees them and their groups. */
		LIST_FOREACH(c, &w->rchans, link)
			rchan_close(c, LOG_LEVEL_DEBUG, NULL);
		rchan_reap(w);
		while ((c = TAILQ_FIRST(&w->inbox)) != NULL) {
			TAILQ_REMOVE(&w->inbox, c, qlink);
			rchan_free(c);
		}
		if (w->reaper != NULL)
			event_free(w->reaper);
		if (w->wake != NULL)
			event_free(w->wake);
		if (w->efd != -1)
			close(w->efd);
		if (i > 0 && w->base != NULL) {
			/* Let freed bufferevents finish (deferred). */
			(void)event_base_loop(w->base, EVLOOP_NONBLOCK);
			event_base_free(w->base);
		}
		if (w->lock_made)
			(void)pthread_mutex_destroy(&w->lock);
	}
	while ((xg = LIST_FIRST(&xgroups)) != NULL) {
		LIST_REMOVE(xg, link);
		free(xg);
	}
	if (summary_timer != NULL)
		event_free(summary_timer);
	summary_timer = NULL;
	free(workers);
	workers = NULL;
	nworkers = 0;
}
