/*
 * wire: what the relay and both end points do alike with a channel, the
 * TLS bufferevent that carries frames: write a frame of their own in this
 * loop pass, answer AUTH and OPEN, the watermarks of a splice, and close a
 * channel after a bounded flush.
 *
 * Nothing here owns the bufferevent; the caller does, and frees it.
 */
#ifndef WIRE_H
#define WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <event2/bufferevent.h>

/*
 * Backpressure of every splice (PROTOCOL.md, "Backpressure"): reading one
 * side stops while the other side's output holds WIRE_HIGH_WATER bytes or
 * more, and starts again when it has drained to WIRE_LOW_WATER.  Channels
 * read whole TLS records, several per pass, up to WIRE_READ_HIGH_WATER
 * (see common/NOTES.md on libevent's TLS reads).
 */
#define WIRE_HIGH_WATER (256 * 1024)
#define WIRE_LOW_WATER (64 * 1024)
#define WIRE_READ_HIGH_WATER (64 * 1024)
#define WIRE_FLUSH_TIMEOUT 10		/* seconds to flush a closing side */

/*
 * Append a frame of our own to bev's output and write it in this pass of
 * the loop: libevent 2.1.12's bufferevent_openssl would otherwise wait for
 * the socket to poll writable (two epoll_ctl and one more pass per frame).
 * Returns 0 or -1 (out of memory).
 */
int wire_send(struct bufferevent *bev, uint8_t type, const void *payload,
    size_t len);

/* AUTH_RESULT with our protocol version and code; 0 or -1. */
int wire_send_auth_result(struct bufferevent *bev, uint8_t code);

/* OPEN_RESULT with code and text (cut to fit; "" for none); 0 or -1. */
int wire_send_open_result(struct bufferevent *bev, uint8_t code,
    const char *text);

/*
 * Close bev once what it holds has left (its output and its write batch),
 * within seconds: reading stops, and from now on writecb runs as the
 * output drains (it calls wire_flushed and frees when that says so) and
 * eventcb runs on an error or when time is up (it frees).  Returns 0 when
 * the flush is under way, 1 when there was nothing to flush and -1 when
 * it could not start: in both cases the caller frees at once.
 */
int wire_close_after_flush(struct bufferevent *bev, int seconds,
    bufferevent_data_cb writecb, bufferevent_event_cb eventcb, void *arg);

/* Has everything bev held left the process?  1 or 0. */
int wire_flushed(struct bufferevent *bev);

/*
 * Set the watermarks of a channel that carries a user connection (write:
 * the low mark wakes the writer; read: whole records, several a pass), or
 * of a channel that goes idle again (write: none, so that its write
 * callback says when all has left; the read mark stays, harmless).
 */
void wire_watermarks_splice(struct bufferevent *bev);
void wire_watermarks_idle(struct bufferevent *bev);

#endif
