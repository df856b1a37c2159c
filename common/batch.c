#include "batch.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/bio.h>

#define BATCH_SEGS 16		/* pieces in one batch */

/*
 * glibc 2.36 copies blocks over about 2 KiB with "rep movsb", which on the
 * AMD EPYC machines we measure on runs some 20 times slower (2 GB/s instead
 * of 40) when the destination lies 1 to 31 bytes past the source modulo
 * 4 KiB.  Records are copied to an address with the same offset modulo 64
 * as their source, which never falls there (and is the fastest case).
 */
#define BATCH_ALIGN_FROM 2048

struct batch {
	int fd;
	struct event *flush;		/* end of pass, or socket writable */
	struct bufferevent *bev;	/* NULL while detached */
	struct timeval deadline;	/* for a wait; 0 s: none */
	int waiting;			/* flush added, for the socket */
	uint8_t *buf;			/* BATCH_MAX bytes, or NULL */
	size_t used;			/* bytes of buf taken */
	struct iovec seg[BATCH_SEGS];	/* seg[first..nseg): to write */
	int first, nseg;
	size_t unsent;			/* bytes in seg[first..nseg) */
	int error;			/* errno of a failed write */
};

static BIO_METHOD *batch_method;
static int batch_type;
static pthread_once_t batch_once = PTHREAD_ONCE_INIT;

static void
batch_empty(struct batch *t)
{
	t->used = 0;
	t->first = t->nseg = 0;
	t->unsent = 0;
}

/* Drop whatever is still to write, and the buffer. */
static void
batch_drop(struct batch *t)
{
	batch_empty(t);
	free(t->buf);
	t->buf = NULL;
}

/*
 * One writev of what is unsent.  Returns 0 (all or part written, or the
 * socket is full) or -1 (the socket failed: the batch is dropped, errno
 * kept in t->error for OpenSSL's next write).
 */
static int
batch_send(struct batch *t)
{
	struct iovec *s;
	ssize_t n;
	size_t done;

	if (t->unsent == 0)
		return 0;
	do
		n = writev(t->fd, t->seg + t->first, t->nseg - t->first);
	while (n == -1 && errno == EINTR);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		t->error = errno;
		batch_drop(t);
		return -1;
	}
	t->unsent -= (size_t)n;
	if (t->unsent == 0) {
		batch_empty(t);
		return 0;
	}
	for (done = (size_t)n; done > 0; ) {
		s = &t->seg[t->first];
		if (done >= s->iov_len) {
			done -= s->iov_len;
			t->first++;
		} else {
			s->iov_base = (uint8_t *)s->iov_base + done;
			s->iov_len -= done;
			done = 0;
		}
	}
	return 0;
}

/* Wait for the socket to take the rest. */
static void
batch_wait(struct batch *t)
{
	if (t->flush == NULL || event_pending(t->flush, EV_WRITE, NULL))
		return;
	if (event_add(t->flush, t->deadline.tv_sec > 0 ? &t->deadline :
	    NULL) == 0)
		t->waiting = 1;
}

static void
batch_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct batch *t = arg;
	struct bufferevent *bev = t->bev;

	(void)fd;
	t->waiting = 0;
	if (what & EV_TIMEOUT) {
		t->error = ETIMEDOUT;
		batch_drop(t);
	} else if (batch_send(t) == 0 && t->unsent > 0) {
		batch_wait(t);
		return;
	}
	if (t->error != 0) {
		if (bev != NULL)
			bufferevent_trigger_event(bev, BEV_EVENT_WRITING |
			    BEV_EVENT_ERROR, BEV_TRIG_DEFER_CALLBACKS);
		return;
	}
	/* All gone: an idle channel holds no buffer, and whoever waits for
	 * the channel to be flushed hears it. */
	batch_drop(t);
	if (bev != NULL &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_trigger(bev, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS |
		    BEV_TRIG_DEFER_CALLBACKS);
}

/* Where a copy of n bytes from data goes in the buffer. */
static size_t
batch_place(const struct batch *t, const void *data, size_t n)
{
	size_t at = t->used, skew;

	if (n >= BATCH_ALIGN_FROM) {
		skew = ((uintptr_t)t->buf + at - (uintptr_t)data) & 63;
		if (skew != 0)
			at += 64 - skew;
	}
	return at;
}

/* OpenSSL writes a record (or part of one, or a handshake flight). */
static int
batch_bio_write(BIO *b, const char *data, int len)
{
	struct batch *t = BIO_get_data(b);
	struct iovec *last;
	size_t n, at;
	int was_empty;

	BIO_clear_retry_flags(b);
	if (t->error != 0) {
		errno = t->error;
		return -1;
	}
	if (len <= 0)
		return 0;
	n = (size_t)len;
	if (t->buf == NULL && (t->buf = malloc(BATCH_MAX)) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	at = batch_place(t, data, n);
	if (t->unsent > 0 && (at + n > BATCH_MAX || t->nseg == BATCH_SEGS)) {
		/* A full batch leaves now. */
		if (batch_send(t) == -1) {
			errno = t->error;
			return -1;
		}
		if (t->unsent > 0) {
			batch_wait(t);
			BIO_set_retry_write(b);
			return -1;
		}
		at = batch_place(t, data, n);
	}
	if (at + n > BATCH_MAX)		/* longer than a batch: a part */
		n = BATCH_MAX - at;
	memcpy(t->buf + at, data, n);
	last = t->nseg > 0 ? &t->seg[t->nseg - 1] : NULL;
	if (last != NULL &&
	    (uint8_t *)last->iov_base + last->iov_len == t->buf + at) {
		last->iov_len += n;
	} else {
		t->seg[t->nseg].iov_base = t->buf + at;
		t->seg[t->nseg].iov_len = n;
		t->nseg++;
	}
	t->used = at + n;
	was_empty = t->unsent == 0;
	t->unsent += n;
	if (was_empty && t->flush != NULL &&
	    !event_pending(t->flush, EV_WRITE, NULL))
		event_active(t->flush, EV_WRITE, 1);
	return (int)n;
}

static long
batch_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct batch *t = BIO_get_data(b);

	(void)num;
	switch (cmd) {
	case BIO_C_GET_FD:
		if (ptr != NULL)
			*(int *)ptr = t->fd;
		return t->fd;
	case BIO_CTRL_WPENDING:
		return (long)t->unsent;
	case BIO_CTRL_FLUSH:
		BIO_clear_retry_flags(b);
		if (batch_send(t) == -1)
			return -1;
		if (t->unsent > 0) {
			batch_wait(t);
			BIO_set_retry_write(b);
			return -1;
		}
		return 1;
	case BIO_CTRL_DUP:
		return 1;
	default:
		return 0;
	}
}

static int
batch_bio_destroy(BIO *b)
{
	struct batch *t = BIO_get_data(b);

	if (t != NULL) {
		if (t->flush != NULL)
			event_free(t->flush);
		free(t->buf);
		free(t);
		BIO_set_data(b, NULL);
	}
	return 1;
}

static void
batch_method_init(void)
{
	BIO_METHOD *m;
	int type = BIO_get_new_index();

	if (type == -1)
		return;
	type |= BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR;
	if ((m = BIO_meth_new(type, "channel write batch")) == NULL)
		return;
	if (BIO_meth_set_write(m, batch_bio_write) != 1 ||
	    BIO_meth_set_ctrl(m, batch_bio_ctrl) != 1 ||
	    BIO_meth_set_destroy(m, batch_bio_destroy) != 1) {
		BIO_meth_free(m);
		return;
	}
	batch_type = type;
	batch_method = m;
}

/* The batch behind ssl's write side, or NULL. */
static struct batch *
batch_of(SSL *ssl)
{
	BIO *b = ssl != NULL ? SSL_get_wbio(ssl) : NULL;

	if (b == NULL || pthread_once(&batch_once, batch_method_init) != 0 ||
	    batch_method == NULL || BIO_method_type(b) != batch_type)
		return NULL;
	return BIO_get_data(b);
}

int
batch_attach(struct bufferevent *bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	struct event_base *base = bufferevent_get_base(bev);
	evutil_socket_t fd = bufferevent_getfd(bev);
	struct event *flush;
	struct batch *t;
	BIO *b;

	if (ssl == NULL || fd < 0 || pthread_once(&batch_once,
	    batch_method_init) != 0 || batch_method == NULL)
		return -1;
	if ((t = batch_of(ssl)) != NULL) {
		if (t->flush == NULL && (t->flush = event_new(base, fd,
		    EV_WRITE, batch_flush_cb, t)) == NULL)
			return -1;
		t->bev = bev;
		if (t->unsent > 0)
			event_active(t->flush, EV_WRITE, 1);
		return 0;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return -1;
	t->fd = fd;
	if ((flush = event_new(base, fd, EV_WRITE, batch_flush_cb, t)) ==
	    NULL || (b = BIO_new(batch_method)) == NULL) {
		if (flush != NULL)
			event_free(flush);
		free(t);
		return -1;
	}
	t->flush = flush;
	t->bev = bev;
	BIO_set_data(b, t);
	BIO_set_init(b, 1);
	SSL_set0_wbio(ssl, b);		/* the socket BIO stays for reading */
	return 0;
}

void
batch_detach(struct bufferevent *bev)
{
	struct batch *t = batch_of(bufferevent_openssl_get_ssl(bev));

	if (t == NULL)
		return;
	if (t->flush != NULL)
		event_free(t->flush);
	t->flush = NULL;
	t->waiting = 0;
	t->bev = NULL;
}

void
batch_free(struct bufferevent *bev)
{
	batch_detach(bev);
	bufferevent_free(bev);
}

size_t
batch_unsent(struct bufferevent *bev)
{
	struct batch *t = batch_of(bufferevent_openssl_get_ssl(bev));

	return evbuffer_get_length(bufferevent_get_output(bev)) +
	    (t != NULL ? t->unsent : 0);
}

void
batch_set_deadline(struct bufferevent *bev, int seconds)
{
	struct batch *t = batch_of(bufferevent_openssl_get_ssl(bev));

	if (t == NULL)
		return;
	t->deadline.tv_sec = seconds > 0 ? seconds : 0;
	t->deadline.tv_usec = 0;
	/* A wait for the socket takes the new deadline (event_add with no
	 * timeout would keep the old one: delete first).  A flush made
	 * active for this pass is left alone: deleting it would wait for
	 * the socket to poll writable, which a socket more than two thirds
	 * full does not, even with room; it waits with the new deadline
	 * itself if it has to. */
	if (t->flush != NULL && t->waiting) {
		(void)event_del(t->flush);
		t->waiting = 0;
		batch_wait(t);
	}
}
