/*
 * teardown: how a relay channel ends, the one way for every channel.
 *
 * rchan_close logs why, takes the channel out of its pair and off the
 * list its state puts it on (R_DEAD puts it on its worker's dead list),
 * silences its bufferevent and timer, and wakes the reaper; its partner,
 * if it had one, is closed after a flush.  rchan_close_flush first writes
 * what is queued for the channel (R_CLOSING, bounded by
 * WIRE_FLUSH_TIMEOUT), then does the same.  The reaper (rchan_reap, an
 * event of the worker's loop) is the one place channels and groups are
 * freed, so no callback frees what its caller still uses.
 */
#include "relay.h"

#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "batch.h"
#include "frame.h"
#include "wire.h"

void
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

void
rchan_free(struct rchan *c)
{
	if (c->list != NULL)
		TAILQ_REMOVE(c->list, c, qlink);
	if (c->w != NULL)
		LIST_REMOVE(c, link);
	group_unref(c->group);
	if (c->key_slot != NULL)
		limit_give(c->key_slot);
	keyset_release(c->keyset);	/* after the slot: it lives there */
	if (c->has_slot)
		relay_slot_give(c->role);
	if (c->w != NULL)
		stranger_leave(c);	/* (rchan_set_state did, as a rule) */
	rchan_unhook(c);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->fd != -1)
		close(c->fd);
	free(c);
}

void
rchan_reap(struct worker *w)
{
	struct rchan *c;
	struct group *g;

	while ((c = TAILQ_FIRST(&w->dead)) != NULL)
		rchan_free(c);
	while ((g = TAILQ_FIRST(&w->unused)) != NULL)
		group_free(g);
}

/* Take c out of its pair and of its state's list, into state to; returns
 * its partner (now without one). */
static struct rchan *
rchan_leave(struct rchan *c, enum rchan_state to)
{
	struct rchan *p = c->partner;
	int queued = c->state == R_QUEUED;

	if (p != NULL)
		p->partner = c->partner = NULL;
	rchan_set_state(c, to);
	if (queued)
		group_publish(c->group);	/* one OPEN less waits */
	return p;
}

static void
rchan_vclose(struct rchan *c, enum log_level level, const char *fmt,
    va_list ap)
{
	struct rchan *p;

	if (c->state == R_DEAD)
		return;
	if (fmt != NULL)
		log_vat(level, fmt, ap);
	p = rchan_leave(c, R_DEAD);
	if (c->timer != NULL)
		event_del(c->timer);
	if (c->bev != NULL) {
		bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
		(void)bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	}
	event_active(c->w->reaper, EV_TIMEOUT, 0);
	if (p != NULL)
		rchan_close_flush(p, LOG_LEVEL_DEBUG, NULL);
}

void
rchan_close(struct rchan *c, enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rchan_vclose(c, level, fmt, ap);
	va_end(ap);
}

static void
closing_write_cb(struct bufferevent *bev, void *arg)
{
	if (wire_flushed(bev))
		rchan_close(arg, LOG_LEVEL_DEBUG, NULL);
}

static void
closing_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	rchan_close(arg, LOG_LEVEL_DEBUG, NULL);
}

void
rchan_close_flush(struct rchan *c, enum log_level level, const char *fmt,
    ...)
{
	struct rchan *p;
	va_list ap;

	if (c->state == R_DEAD || c->state == R_CLOSING)
		return;
	va_start(ap, fmt);
	if (c->state == R_HANDSHAKE || c->bev == NULL) {
		rchan_vclose(c, level, fmt, ap);	/* nothing of ours to send */
		va_end(ap);
		return;
	}
	if (fmt != NULL)
		log_vat(level, fmt, ap);
	va_end(ap);
	p = rchan_leave(c, R_CLOSING);
	if (c->timer != NULL)
		event_del(c->timer);
	if (wire_close_after_flush(c->bev, WIRE_FLUSH_TIMEOUT,
	    closing_write_cb, closing_event_cb, c) != 0)
		rchan_close(c, LOG_LEVEL_DEBUG, NULL);
	if (p != NULL)
		rchan_close_flush(p, LOG_LEVEL_DEBUG, NULL);
}

/* Does c's input begin with an OPEN (an entry-point's, on an idle
 * channel, not read yet)? */
static int
open_pending(struct rchan *c)
{
	struct frame_header h;
	char err[FRAME_ERRLEN];

	return c->role == ROLE_ENTRY && frame_peek(bufferevent_get_input(
	    c->bev), &h, err, sizeof(err)) == 1 && h.type == FRAME_OPEN;
}

/* The relay stops: refuse the OPEN at the front of c's input. */
static void
refuse_open(struct rchan *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	/* Whatever the entry-point sent behind OPEN goes with it. */
	(void)evbuffer_drain(in, evbuffer_get_length(in));
	(void)wire_send_open_result(c->bev, OPEN_NO_PEER, "relay stopping");
	relay_metrics_open(OPEN_NO_PEER);
	rchan_close_flush(c, LOG_LEVEL_DEBUG, "%s: the relay stops: refusing "
	    "an OPEN", c->peer);
}

void
rchan_drain(struct rchan *c)
{
	switch (c->state) {
	case R_HANDSHAKE:
	case R_AUTH:
		rchan_close(c, LOG_LEVEL_DEBUG, "%s: the relay stops: closing "
		    "a channel not yet authenticated", c->peer);
		break;
	case R_IDLE:
		if (open_pending(c)) {
			refuse_open(c);
			break;
		}
		(void)wire_send_auth_result(c->bev, AUTH_STOPPING);
		relay_metrics_auth(AUTH_STOPPING);
		rchan_close_flush(c, LOG_LEVEL_DEBUG, "%s: the relay stops: "
		    "closing an idle %s channel", c->peer, role_name(c->role));
		break;
	case R_QUEUED:
		refuse_open(c);
		break;
	default:	/* paired: it finishes; closing or moving: it goes */
		break;
	}
}
