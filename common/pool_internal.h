/*
 * pool_internal: what pool.c (the pool: its lists, its size, its backoff)
 * and pool_chan.c (one channel's life: dial, TLS, AUTH, ping, REUSE,
 * hand-off) share.  Not for use outside those two files.
 *
 * Every channel is on exactly one list, the one its state names; only
 * chan_link and chan_unlink change state and list, together.  A channel
 * is freed only by the reaper (chan_close puts it on the dead list), so no
 * callback up the stack holds a freed channel.
 */
#ifndef POOL_INTERNAL_H
#define POOL_INTERNAL_H

#include <sys/queue.h>
#include <time.h>

#include "netaddr.h"
#include "pool.h"

struct evdns_getaddrinfo_request;

enum chan_state {
	CHAN_DIALING,		/* TCP connect and TLS handshake */
	CHAN_AUTH_SENT,		/* waiting for AUTH_RESULT */
	CHAN_IDLE,		/* ready, pinging */
	CHAN_RETURNING,		/* back after a clean end, waiting for REUSE */
	CHAN_RETIRING,		/* reverse-proxy: RETIRE sent, closing */
	CHAN_DEAD,		/* closed, for the reaper to free */
};

struct pool_chan {
	struct pool *pool;
	struct bufferevent *bev;
	struct event *ping;
	/* --bind-address: our own lookup of the relay's name, in flight. */
	struct evdns_getaddrinfo_request *dns_req;
	enum chan_state state;
	TAILQ_ENTRY(pool_chan) link;
};

TAILQ_HEAD(chan_list, pool_chan);

struct pool {
	struct pool_config cfg;
	char relay_name[NETADDR_STRLEN + 8];
	struct chan_list dialing;	/* CHAN_DIALING and CHAN_AUTH_SENT */
	struct chan_list idle;
	struct chan_list back;		/* CHAN_RETURNING and CHAN_RETIRING */
	struct chan_list dead;		/* CHAN_DEAD */
	struct event *reaper;		/* frees the dead, from the loop */
	unsigned ndialing, nidle, nreturning, nback, in_use, waiting;
	unsigned failures;		/* dials failed in a row */
	unsigned redials;		/* channels lost or dials failed, not
					 * yet dialled again (reconnects) */
	enum {
		POOL_FAILED,		/* a failure like any (short backoff) */
		POOL_REFUSED_FULL,	/* the key's channel limit */
		POOL_REFUSED,		/* refused for good */
		POOL_STOPPING,		/* the relay stops: no fault */
	} refused;			/* what this failure was */
	struct event *retry;		/* backoff timer */
	int retry_pending;
	int connected_once;
	int draining;			/* pool_drain: no more dials */
	char last_error[256];		/* to log a repeated failure once */
	int ceiling_said;		/* "at --pool-max" logged once, */
	time_t ceiling_said_at;		/* at this CLOCK_MONOTONIC second */
};

/* pool.c */
void chan_unlink(struct pool_chan *c);
void chan_link(struct pool_chan *c, enum chan_state state);
void chan_close(struct pool_chan *c);
void dial_failed(struct pool_chan *c, const char *why);
void pool_refill(struct pool *p);
unsigned pool_target(const struct pool *p);

/* pool_chan.c */
void chan_dial(struct pool *p);
void chan_surplus(struct pool_chan *c);
struct bufferevent *chan_hand_off(struct pool_chan *c);
void chan_read_cb(struct bufferevent *bev, void *arg);
void chan_event_cb(struct bufferevent *bev, short what, void *arg);
/* Cancel c's lookup of the relay's name, if one is in flight. */
void chan_cancel_lookup(struct pool_chan *c);

#endif
