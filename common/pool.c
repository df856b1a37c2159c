#include "pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "auth.h"
#include "batch.h"
#include "frame.h"
#include "log.h"
#include "netaddr.h"
#include "pool_internal.h"
#include "tls.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* After a refusal that will not change by itself (see chan_auth_result). */
#define REFUSED_BACKOFF_MIN_MS 1000
#define REFUSED_BACKOFF_MAX_MS 60000
/* After the key's channel limit: from 1 s to 10 s. */
#define FULL_BACKOFF_MAX_MS 10000

const char *
pool_relay_name(const struct pool *p)
{
	return p->relay_name;
}

/* Take c off the list its state puts it on. */
void
chan_unlink(struct pool_chan *c)
{
	struct pool *p = c->pool;

	switch (c->state) {
	case CHAN_IDLE:
		TAILQ_REMOVE(&p->idle, c, link);
		p->nidle--;
		break;
	case CHAN_RETURNING:
	case CHAN_RETIRING:
		TAILQ_REMOVE(&p->back, c, link);
		p->nback--;
		if (c->state == CHAN_RETURNING)
			p->nreturning--;
		break;
	case CHAN_DEAD:
		TAILQ_REMOVE(&p->dead, c, link);
		break;
	default:
		TAILQ_REMOVE(&p->dialing, c, link);
		p->ndialing--;
		break;
	}
}

/* Put c, off every list, on the list of state. */
void
chan_link(struct pool_chan *c, enum chan_state state)
{
	struct pool *p = c->pool;

	c->state = state;
	switch (state) {
	case CHAN_IDLE:
		TAILQ_INSERT_TAIL(&p->idle, c, link);
		p->nidle++;
		break;
	case CHAN_RETURNING:
	case CHAN_RETIRING:
		TAILQ_INSERT_TAIL(&p->back, c, link);
		p->nback++;
		if (state == CHAN_RETURNING)
			p->nreturning++;
		break;
	case CHAN_DEAD:
		TAILQ_INSERT_TAIL(&p->dead, c, link);
		break;
	default:
		TAILQ_INSERT_TAIL(&p->dialing, c, link);
		p->ndialing++;
		break;
	}
}

/* Free a channel: the reaper's job (and pool_free's). */
static void
chan_free(struct pool_chan *c)
{
	chan_unlink(c);
	chan_cancel_lookup(c);
	if (c->ping != NULL)
		event_free(c->ping);
	if (c->bev != NULL)
		batch_free(c->bev);
	free(c);
}

/*
 * Close c: off its list, silent (its bufferevent and ping timer), freed by
 * the reaper when the loop comes round, so that no caller up the stack
 * holds a freed channel (the teardown of conn.c and of the relay).
 */
void
chan_close(struct pool_chan *c)
{
	struct pool *p = c->pool;

	if (c->state == CHAN_DEAD)
		return;
	chan_unlink(c);
	chan_link(c, CHAN_DEAD);
	chan_cancel_lookup(c);
	if (c->ping != NULL)
		event_del(c->ping);
	if (c->bev != NULL) {
		bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
		(void)bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	}
	event_active(p->reaper, EV_TIMEOUT, 0);
}

static void
reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool *p = arg;
	struct pool_chan *c;

	(void)fd;
	(void)what;
	while ((c = TAILQ_FIRST(&p->dead)) != NULL)
		chan_free(c);
}

/* From min_ms, doubling with each failure, up to max_ms, with jitter. */
static unsigned long
backoff(unsigned failures, unsigned long min_ms, unsigned long max_ms,
    uint32_t (*uniform)(uint32_t upper))
{
	unsigned long ms;
	unsigned shift;

	shift = failures > 10 ? 10 : failures > 0 ? failures - 1 : 0;
	ms = min_ms << shift;
	if (ms > max_ms)
		ms = max_ms;
	/* Jitter: between 3/4 and 5/4 of the delay. */
	return ms * 3 / 4 + uniform((uint32_t)(ms / 2 + 1));
}

unsigned long
pool_backoff_ms(unsigned failures, uint32_t (*uniform)(uint32_t upper))
{
	return backoff(failures, BACKOFF_MIN_MS, BACKOFF_MAX_MS, uniform);
}

unsigned long
pool_refused_backoff_ms(unsigned failures, uint32_t (*uniform)(uint32_t upper))
{
	return backoff(failures, REFUSED_BACKOFF_MIN_MS, REFUSED_BACKOFF_MAX_MS,
	    uniform);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool *p = arg;

	(void)fd;
	(void)what;
	p->retry_pending = 0;
	pool_refill(p);
}

/* A dial failed: log why (once while it keeps failing the same way) and
 * schedule the next try with exponential backoff and jitter. */
void
dial_failed(struct pool_chan *c, const char *why)
{
	struct pool *p = c->pool;
	unsigned long ms;
	struct timeval tv;

	if (p->refused == POOL_STOPPING) {
		/* A graceful stop, not a fault: redial as after any outage
		 * (every idle channel hears it: one line). */
		if (strcmp(why, p->last_error) != 0)
			log_info("relay %s is stopping: dialing again with "
			    "backoff", p->relay_name);
		snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	} else if (strcmp(why, p->last_error) != 0) {
		/* "relay H:P refused authentication: ...", "relay H:P: ..." */
		log_warnx("relay %s%s%s", p->relay_name,
		    strncmp(why, "refused ", 8) == 0 ? " " : ": ", why);
		snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	} else {
		log_debug("relay %s: %s (again)", p->relay_name, why);
	}
	chan_close(c);
	p->failures++;
	if (p->redials < p->cfg.max)
		p->redials++;
	ms = p->refused == POOL_REFUSED ? pool_refused_backoff_ms(p->failures,
	    randombytes_uniform) : p->refused == POOL_REFUSED_FULL ?
	    backoff(p->failures, REFUSED_BACKOFF_MIN_MS, FULL_BACKOFF_MAX_MS,
	    randombytes_uniform) : pool_backoff_ms(p->failures,
	    randombytes_uniform);
	p->refused = POOL_FAILED;	/* said again by the next refusal */
	if (!p->retry_pending) {
		tv.tv_sec = (time_t)(ms / 1000);
		tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
		if (evtimer_add(p->retry, &tv) == 0)
			p->retry_pending = 1;
		else
			log_warnx("relay %s: cannot arm the retry timer",
			    p->relay_name);
	}
}


unsigned
pool_target_size(unsigned min, unsigned max, unsigned in_use,
    unsigned waiting)
{
	unsigned half = in_use / 2;

	if (max <= min)
		return max;
	/* min + half + waiting, stopping at max before it can wrap. */
	if (half >= max - min || waiting >= max - min - half)
		return max;
	return min + half + waiting;
}

unsigned
pool_target(const struct pool *p)
{
	return pool_target_size(p->cfg.min, p->cfg.max, p->in_use,
	    p->waiting);
}

/*
 * Demand asks for more idle channels than --pool-max allows: say so, at
 * most once every POOL_CEILING_LOG_SECONDS (the limit is reached while
 * connections go on being served, by the channels there are).
 */
static void
pool_note_ceiling(struct pool *p)
{
	unsigned long long want = (unsigned long long)p->cfg.min +
	    p->in_use / 2 + p->waiting;
	struct timespec now;

	if (want <= p->cfg.max || clock_gettime(CLOCK_MONOTONIC, &now) == -1)
		return;
	if (p->ceiling_said && now.tv_sec - p->ceiling_said_at <
	    POOL_CEILING_LOG_SECONDS)
		return;
	p->ceiling_said = 1;
	p->ceiling_said_at = now.tv_sec;
	log_info("relay %s: at --pool-max (%u idle channels at most; %u in "
	    "use, %u connection%s waiting for one)", p->relay_name,
	    p->cfg.max, p->in_use, p->waiting, p->waiting == 1 ? "" : "s");
}

void
pool_refill(struct pool *p)
{
	unsigned target, inflight_max;

	if (p->retry_pending || p->draining)
		return;
	pool_note_ceiling(p);
	target = pool_target(p);
	/* After a failure, probe with one dial at a time. */
	inflight_max = p->failures > 0 ? 1 : POOL_DIALS_MAX;
	while (p->nidle + p->nreturning + p->ndialing < target &&
	    p->ndialing < inflight_max &&
	    !p->retry_pending)
		chan_dial(p);
}

struct pool *
pool_new(const struct pool_config *config)
{
	struct pool *p;
	char host[NETADDR_STRLEN];

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->cfg = *config;
	TAILQ_INIT(&p->dialing);
	TAILQ_INIT(&p->idle);
	TAILQ_INIT(&p->back);
	TAILQ_INIT(&p->dead);
	if (strchr(config->relay_host, ':') != NULL)
		snprintf(host, sizeof(host), "[%s]", config->relay_host);
	else
		snprintf(host, sizeof(host), "%s", config->relay_host);
	snprintf(p->relay_name, sizeof(p->relay_name), "%s:%u", host,
	    config->relay_port);
	if ((p->retry = evtimer_new(config->base, retry_cb, p)) == NULL) {
		free(p);
		return NULL;
	}
	if ((p->reaper = event_new(config->base, -1, 0, reaper_cb, p)) ==
	    NULL) {
		event_free(p->retry);
		free(p);
		return NULL;
	}
	pool_refill(p);
	return p;
}

void
pool_get_counts(const struct pool *p, struct pool_counts *counts)
{
	counts->idle = p->nidle;
	counts->in_use = p->in_use;
	counts->returning = p->nback;
	counts->dialing = p->ndialing;
}

void
pool_set_ssl_ctx(struct pool *p, SSL_CTX *ctx)
{
	p->cfg.ssl_ctx = ctx;
}

struct bufferevent *
pool_take(struct pool *p)
{
	struct pool_chan *c = TAILQ_FIRST(&p->idle);
	struct bufferevent *bev;

	if (c == NULL)
		return NULL;
	bev = chan_hand_off(c);
	pool_refill(p);
	return bev;
}

void
pool_set_waiting(struct pool *p, unsigned waiting)
{
	p->waiting = waiting;
	pool_refill(p);
}

void
pool_put(struct pool *p, struct bufferevent *bev)
{
	struct timeval dead = { POOL_DEAD_AFTER, 0 };
	struct pool_chan *c;
	short want;

	if (p->in_use > 0)
		p->in_use--;
	if (bev == NULL) {
		pool_refill(p);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("relay %s: calloc", p->relay_name);
		batch_free(bev);
		pool_refill(p);
		return;
	}
	c->pool = p;
	c->bev = bev;
	chan_link(c, CHAN_RETURNING);
	bufferevent_setcb(bev, chan_read_cb, NULL, chan_event_cb, c);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(bev, &dead, NULL);
	/* Enabling writing again would make bufferevent_openssl wait for the
	 * socket to poll writable even with nothing to write. */
	want = (EV_READ | EV_WRITE) & ~bufferevent_get_enabled(bev);
	if (want != 0 && bufferevent_enable(bev, want) == -1) {
		chan_close(c);
		pool_refill(p);
		return;
	}
	bev_kick_write(bev);
	/* REUSE may be in the input already: no read event would say so. */
	if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
		bufferevent_trigger(bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS |
		    BEV_TRIG_DEFER_CALLBACKS);
	tls_kick(bev);
}

void
pool_drain(struct pool *p)
{
	struct pool_chan *c;

	p->draining = 1;
	if (p->retry_pending) {
		(void)evtimer_del(p->retry);
		p->retry_pending = 0;
	}
	while ((c = TAILQ_FIRST(&p->dialing)) != NULL)
		chan_close(c);
	while ((c = TAILQ_FIRST(&p->idle)) != NULL)
		chan_surplus(c);
}

unsigned
pool_pending(const struct pool *p)
{
	return p->nback;
}

void
pool_free(struct pool *p)
{
	struct pool_chan *c;

	if (p == NULL)
		return;
	while ((c = TAILQ_FIRST(&p->idle)) != NULL)
		chan_free(c);
	while ((c = TAILQ_FIRST(&p->back)) != NULL)
		chan_free(c);
	while ((c = TAILQ_FIRST(&p->dialing)) != NULL)
		chan_free(c);
	while ((c = TAILQ_FIRST(&p->dead)) != NULL)
		chan_free(c);
	event_free(p->reaper);
	event_free(p->retry);
	free(p);
}
