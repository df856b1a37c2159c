/*
 * Unit tests for common/batch.c: the write batch of a TLS bufferevent.
 *
 * Nothing is mocked: every test has a TCP connection over 127.0.0.1, a
 * TLS 1.3 handshake (with a throwaway self-signed certificate made here)
 * and a libevent loop that drives both ends, every wait bounded in loop
 * passes and in time.  The TLS server end is the writer: it writes through
 * a batch, attached once its handshake is done, as the daemons do.  The
 * client end is the reader: it checks every byte it gets against the
 * pattern that was written.  Socket buffers are made small, so the socket
 * fills early and the same way whatever the machine's TCP settings.
 *
 * Read top to bottom: the bytes written and checked, the connection, the
 * loop; then the tests: bytes arrive intact; a full socket holds bytes
 * back without losing any; the write callback hears that a batch has
 * left; a batch that waits too long for the socket gives up; a socket
 * that fails is an error; a channel moves to another bufferevent and
 * event loop, idle or with bytes still in its batch.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "batch.h"
#include "tls.h"

#define SOCK_BUF (64 * 1024)	/* SO_SNDBUF, SO_RCVBUF (the kernel doubles) */
#define CHUNK_MAX (100 * 1024)	/* largest single bufferevent_write */
#define WAIT_MAX 5.0		/* seconds any wait may take */
#define PASSES_MAX 1000000L	/* loop passes any wait may take */
#define TICK_USEC 2000		/* a loop pass blocks at most this long */
#define MIB (1024 * 1024)

/* --- the bytes written and checked --- */

/* Byte off of the stream: a hash of its position, so a byte lost, doubled
 * or out of order shows. */
static void
pattern_fill(uint8_t *buf, size_t off, size_t n)
{
	uint64_t x;
	size_t i;

	for (i = 0; i < n; i++, off++) {
		x = (uint64_t)(off / 8) * 0x9e3779b97f4a7c15ULL;
		x = (x ^ (x >> 31)) * 0xbf58476d1ce4e5b9ULL;
		x ^= x >> 27;
		buf[i] = (uint8_t)(x >> (8 * (off % 8)));
	}
}

/* The next chunk size, 1 byte to 100 KiB: tiny, small, record-sized and
 * large chunks about equally often. */
static size_t
next_chunk(uint32_t *seed)
{
	static const size_t top[] = { 16, 2048, 20 * 1024, CHUNK_MAX };
	uint32_t r;

	*seed = *seed * 1664525u + 1013904223u;
	r = *seed >> 8;
	return 1 + (r >> 2) % top[r & 3];
}

/* --- the connection --- */

struct pair;

/* One end of the connection. */
struct end {
	struct pair *pair;
	int fd;
	SSL *ssl;
	struct bufferevent *bev;
	int connected;		/* the handshake is done */
	short events;		/* BEV_EVENT_* heard after the handshake */
	double error_at;	/* when BEV_EVENT_ERROR came (now()) */
	/* the writer */
	int attached;		/* batch_attach's result; 1: not called */
	size_t written;		/* bytes given to bufferevent_write */
	int flushed_cbs;	/* write callbacks that saw nothing unsent */
	/* the reader */
	size_t received;	/* bytes read (and checked) */
	size_t bad_at;		/* first byte not as written, or SIZE_MAX */
};

struct pair {
	struct event_base *base[2];	/* [1]: where the writer may move */
	struct event *tick[2];
	SSL_CTX *server_ctx, *client_ctx;
	struct end writer;		/* TLS server, writes through a batch */
	struct end reader;		/* TLS client */
};

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
small_buffers(int fd)
{
	int size = SOCK_BUF;

	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size,
	    sizeof(size)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size,
	    sizeof(size)), 0);
}

static void
nonblocking_nodelay(int fd)
{
	int one = 1;

	assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK),
	    0);
	assert_int_equal(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
	    sizeof(one)), 0);
}

/* A TCP connection over 127.0.0.1 (a listener on port 0, then closed). */
static void
tcp_pair(int *server_fd, int *client_fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int lfd, cfd, sfd;

	assert_true((lfd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_true((cfd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	small_buffers(lfd);		/* the accepted socket inherits them */
	small_buffers(cfd);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	assert_int_equal(connect(cfd, (struct sockaddr *)&sin, sizeof(sin)),
	    0);
	assert_true((sfd = accept(lfd, NULL, NULL)) >= 0);
	close(lfd);
	nonblocking_nodelay(sfd);
	nonblocking_nodelay(cfd);
	*server_fd = sfd;
	*client_fd = cfd;
}

/* A throwaway P-256 key and a self-signed certificate for it. */
static void
self_signed(EVP_PKEY **keyp, X509 **certp)
{
	EVP_PKEY *key;
	X509 *cert;
	X509_NAME *name;

	assert_non_null(key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
	assert_non_null(cert = X509_new());
	assert_int_equal(X509_set_version(cert, X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(cert), 1), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(cert), -60));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(cert), 3600));
	name = X509_get_subject_name(cert);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)"test-batch", -1, -1, 0), 1);
	assert_int_equal(X509_set_issuer_name(cert, name), 1);
	assert_int_equal(X509_set_pubkey(cert, key), 1);
	assert_true(X509_sign(cert, key, EVP_sha256()) > 0);
	*keyp = key;
	*certp = cert;
}

/* TLS 1.3 only, idle connections hold no record buffers: as common/tls.c
 * (but no read-ahead, which would need tls_kick on the reader). */
static SSL_CTX *
tls13_ctx(const SSL_METHOD *method)
{
	SSL_CTX *ctx;

	assert_non_null(ctx = SSL_CTX_new(method));
	assert_int_equal(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION),
	    1);
	assert_int_equal(SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION),
	    1);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

/* Bytes the writer's batch holds (not in its bufferevent's output). */
static size_t
batch_held(struct bufferevent *bev)
{
	return batch_unsent(bev) -
	    evbuffer_get_length(bufferevent_get_output(bev));
}

/* The SSL no longer writes to its socket BIO (it writes to the batch). */
static int
writes_through_batch(SSL *ssl)
{
	BIO *w = SSL_get_wbio(ssl);

	return w != NULL && w != SSL_get_rbio(ssl) &&
	    BIO_method_type(w) != BIO_TYPE_SOCKET;
}

/*
 * Bytes in the kernel between the ends: sent by the writer's socket and
 * not yet acknowledged, plus waiting in the reader's socket.  A byte may
 * count twice (received, its ACK not yet seen), never zero times.
 */
static size_t
kernel_bytes(const struct pair *p)
{
	int outq = 0, inq = 0;

	assert_int_equal(ioctl(p->writer.fd, SIOCOUTQ, &outq), 0);
	assert_int_equal(ioctl(p->reader.fd, SIOCINQ, &inq), 0);
	return (size_t)outq + (size_t)inq;
}

/* --- callbacks (they only record: assertions stay out of libevent) --- */

static void
end_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct end *e = arg;

	if (what & BEV_EVENT_CONNECTED) {
		e->connected = 1;
		if (e == &e->pair->writer)
			e->attached = batch_attach(bev);
		return;
	}
	if ((what & BEV_EVENT_ERROR) && !(e->events & BEV_EVENT_ERROR))
		e->error_at = now();
	e->events |= what;
}

static void
writer_write_cb(struct bufferevent *bev, void *arg)
{
	struct end *w = arg;

	if (batch_unsent(bev) == 0)
		w->flushed_cbs++;
}

static void
reader_read_cb(struct bufferevent *bev, void *arg)
{
	static uint8_t got[64 * 1024], want[64 * 1024];
	struct end *r = arg;
	size_t i;
	int n;

	while ((n = evbuffer_remove(bufferevent_get_input(bev), got,
	    sizeof(got))) > 0) {
		pattern_fill(want, r->received, (size_t)n);
		if (r->bad_at == SIZE_MAX && memcmp(got, want, (size_t)n)) {
			for (i = 0; got[i] == want[i]; i++)
				;
			r->bad_at = r->received + i;
		}
		r->received += (size_t)n;
	}
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* An event loop whose passes block at most a tick. */
static void
add_base(struct pair *p, int k)
{
	struct timeval tick = { 0, TICK_USEC };

	assert_non_null(p->base[k] = event_base_new());
	assert_non_null(p->tick[k] = event_new(p->base[k], -1, EV_PERSIST,
	    tick_cb, NULL));
	assert_int_equal(event_add(p->tick[k], &tick), 0);
}

/* --- the loop --- */

/* One pass of each event loop. */
static void
loop_pass(struct pair *p)
{
	int k;

	for (k = 0; k < 2; k++)
		if (p->base[k] != NULL)
			(void)event_base_loop(p->base[k], EVLOOP_ONCE);
}

/* Run the loops until done(p), for at most seconds; returns done(p). */
static int
loop_until(struct pair *p, int (*done)(struct pair *), double seconds)
{
	double end = now() + seconds;
	long passes;

	for (passes = 0; passes < PASSES_MAX && !done(p) && now() < end;
	    passes++)
		loop_pass(p);
	return done(p);
}

static int
both_connected(struct pair *p)
{
	return p->writer.connected && p->reader.connected;
}

static int
all_arrived(struct pair *p)
{
	return p->reader.received == p->writer.written;
}

static int
flushed_and_arrived(struct pair *p)
{
	return p->writer.flushed_cbs > 0 && all_arrived(p);
}

static int
write_failed(struct pair *p)
{
	return (p->writer.events & BEV_EVENT_ERROR) != 0;
}

/* Write n more bytes of the pattern to the writer, in chunks. */
static void
write_pattern(struct pair *p, size_t n)
{
	static uint8_t chunk[CHUNK_MAX];
	struct end *w = &p->writer;
	size_t k;

	while (n > 0) {
		k = n < CHUNK_MAX ? n : CHUNK_MAX;
		pattern_fill(chunk, w->written, k);
		assert_int_equal(bufferevent_write(w->bev, chunk, k), 0);
		w->written += k;
		n -= k;
	}
}

/* Wait for every byte written to arrive, intact, and leave the writer. */
static void
assert_all_arrived(struct pair *p)
{
	if (!loop_until(p, all_arrived, WAIT_MAX))
		fail_msg("%zu of %zu bytes arrived", p->reader.received,
		    p->writer.written);
	if (p->reader.bad_at != SIZE_MAX)
		fail_msg("byte %zu of %zu arrived wrong", p->reader.bad_at,
		    p->writer.written);
	assert_int_equal(batch_unsent(p->writer.bev), 0);
	assert_int_equal(p->writer.events & BEV_EVENT_ERROR, 0);
}

/*
 * The reader does not read: write 4 KiB at a time until the socket is full
 * and the last bytes wait in the batch, the bufferevent's output empty
 * (the batch takes up to BATCH_MAX, so 4 KiB always fits).  Each write is
 * kicked out in the same pass (bev_kick_write, as the daemons' splices
 * do): epoll calls a socket writable only once a third of its buffer is
 * free, and libevent would wait for that instead of handing the 4 KiB to
 * the batch.  Returns the bytes the batch holds.
 */
static size_t
fill_until_batch_waits(struct pair *p)
{
	struct bufferevent *bev = p->writer.bev;
	double end = now() + WAIT_MAX;
	long passes;
	int still = 0;

	for (passes = 0; passes < PASSES_MAX && now() < end; passes++) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
			bev_kick_write(bev);
			still = 0;
		} else if (batch_held(bev) == 0) {
			write_pattern(p, 4096);
			bev_kick_write(bev);
			still = 0;
		} else if (++still == 20) {	/* 20 passes, no change */
			return batch_held(bev);
		}
		loop_pass(p);
	}
	fail_msg("the socket did not fill (%zu bytes written)",
	    p->writer.written);
	return 0;
}

/*
 * Hand the writer's socket and SSL to a new bufferevent on a second event
 * loop, as the relay hands a channel to another worker: the old one is
 * freed (it does not own them), the new one takes the batch over.
 */
static void
move_writer(struct pair *p)
{
	struct end *w = &p->writer;

	assert_int_equal(bufferevent_disable(w->bev, EV_READ | EV_WRITE), 0);
	batch_detach(w->bev);
	bufferevent_free(w->bev);
	w->bev = NULL;
	add_base(p, 1);
	assert_non_null(w->bev = bufferevent_openssl_socket_new(p->base[1],
	    w->fd, w->ssl, BUFFEREVENT_SSL_OPEN, BEV_OPT_DEFER_CALLBACKS));
	assert_int_equal(batch_attach(w->bev), 0);
	bufferevent_setcb(w->bev, NULL, writer_write_cb, end_event_cb, w);
	assert_int_equal(bufferevent_enable(w->bev, EV_READ | EV_WRITE), 0);
}

/* Every test starts here: both ends connected, the writer's batch on. */
static int
pair_open(void **state)
{
	struct pair *p;
	EVP_PKEY *key;
	X509 *cert;

	assert_non_null(p = calloc(1, sizeof(*p)));
	*state = p;
	p->writer.pair = p->reader.pair = p;
	p->writer.fd = p->reader.fd = -1;
	p->writer.attached = 1;
	p->writer.bad_at = p->reader.bad_at = SIZE_MAX;
	add_base(p, 0);

	self_signed(&key, &cert);
	p->server_ctx = tls13_ctx(TLS_server_method());
	assert_int_equal(SSL_CTX_use_certificate(p->server_ctx, cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(p->server_ctx, key), 1);
	X509_free(cert);
	EVP_PKEY_free(key);
	p->client_ctx = tls13_ctx(TLS_client_method());
	SSL_CTX_set_verify(p->client_ctx, SSL_VERIFY_NONE, NULL);

	tcp_pair(&p->writer.fd, &p->reader.fd);
	assert_non_null(p->writer.ssl = SSL_new(p->server_ctx));
	assert_non_null(p->reader.ssl = SSL_new(p->client_ctx));
	/* Not BEV_OPT_CLOSE_ON_FREE: the test owns sockets and SSLs. */
	assert_non_null(p->writer.bev = bufferevent_openssl_socket_new(
	    p->base[0], p->writer.fd, p->writer.ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_DEFER_CALLBACKS));
	assert_non_null(p->reader.bev = bufferevent_openssl_socket_new(
	    p->base[0], p->reader.fd, p->reader.ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_DEFER_CALLBACKS));
	bufferevent_setcb(p->writer.bev, NULL, writer_write_cb, end_event_cb,
	    &p->writer);
	bufferevent_setcb(p->reader.bev, reader_read_cb, NULL, end_event_cb,
	    &p->reader);
	assert_int_equal(bufferevent_enable(p->writer.bev, EV_READ | EV_WRITE),
	    0);
	assert_int_equal(bufferevent_enable(p->reader.bev, EV_READ | EV_WRITE),
	    0);

	if (!loop_until(p, both_connected, WAIT_MAX))
		fail_msg("TLS handshake not done");
	assert_int_equal(p->writer.attached, 0);
	assert_true(writes_through_batch(p->writer.ssl));
	assert_int_equal(batch_unsent(p->writer.bev), 0);
	return 0;
}

static int
pair_close(void **state)
{
	struct pair *p = *state;
	int i, k;

	if (p->writer.bev != NULL)
		batch_free(p->writer.bev);
	if (p->reader.bev != NULL)
		bufferevent_free(p->reader.bev);
	/* Let the freed bufferevents finish (deferred callbacks). */
	for (i = 0; i < 10; i++)
		for (k = 0; k < 2; k++)
			if (p->base[k] != NULL)
				(void)event_base_loop(p->base[k],
				    EVLOOP_NONBLOCK);
	SSL_free(p->writer.ssl);
	SSL_free(p->reader.ssl);
	for (k = 0; k < 2; k++) {
		if (p->tick[k] != NULL)
			event_free(p->tick[k]);
		if (p->base[k] != NULL)
			event_base_free(p->base[k]);
	}
	SSL_CTX_free(p->server_ctx);
	SSL_CTX_free(p->client_ctx);
	if (p->writer.fd != -1)
		close(p->writer.fd);
	if (p->reader.fd != -1)
		close(p->reader.fd);
	free(p);
	return 0;
}

/* --- bytes arrive intact --- */

static void
test_bytes_arrive_intact_and_in_order(void **state)
{
	struct pair *p = *state;
	uint32_t seed = 1;
	size_t n;

	/* The extremes first, then a mix; now and then the loop runs
	 * between writes, so batches end at every sort of place. */
	write_pattern(p, 1);
	write_pattern(p, CHUNK_MAX);
	while (p->writer.written < 4 * MIB) {
		n = next_chunk(&seed);
		if (n > 4 * MIB - p->writer.written)
			n = 4 * MIB - p->writer.written;
		write_pattern(p, n);
		if (seed % 3 == 0)
			(void)event_base_loop(p->base[0], EVLOOP_NONBLOCK);
	}
	assert_all_arrived(p);
	assert_int_equal(p->reader.received, 4 * MIB);
}

/* --- a full socket holds bytes back, without losing any --- */

/* What the writer holds while the reader does not read. */
static struct {
	size_t min_unsent, max_unsent, max_held;
	int read;			/* the reader got bytes meanwhile */
} held_back;

static int
watch_held_back(struct pair *p)
{
	size_t unsent = batch_unsent(p->writer.bev);
	size_t held = batch_held(p->writer.bev);

	if (unsent < held_back.min_unsent)
		held_back.min_unsent = unsent;
	if (unsent > held_back.max_unsent)
		held_back.max_unsent = unsent;
	if (held > held_back.max_held)
		held_back.max_held = held;
	held_back.read |= p->reader.received > 0;
	return 0;			/* watch to the end */
}

static void
test_full_socket_holds_bytes_back_without_loss(void **state)
{
	struct pair *p = *state;
	size_t unsent, left;

	assert_int_equal(bufferevent_disable(p->reader.bev, EV_READ), 0);
	write_pattern(p, 8 * MIB);
	held_back.min_unsent = SIZE_MAX;
	held_back.max_unsent = held_back.max_held = 0;
	held_back.read = 0;
	(void)loop_until(p, watch_held_back, 0.3);

	/* 8 MiB cannot all have left into a few hundred KiB of socket
	 * buffers: the rest is still counted, and no more than was written;
	 * the batch holds at most BATCH_MAX of it. */
	assert_false(held_back.read);
	assert_true(held_back.min_unsent > 0);
	assert_true(held_back.max_unsent <= p->writer.written);
	assert_true(held_back.max_held <= BATCH_MAX);
	/* The socket is full and bytes wait in the batch. */
	unsent = batch_unsent(p->writer.bev);
	assert_true(batch_held(p->writer.bev) > 0);
	assert_true(unsent < p->writer.written);	/* some did leave */
	/* What left the process is in the kernel (TLS adds, never takes). */
	left = p->writer.written - unsent;
	if (kernel_bytes(p) < left)
		fail_msg("%zu bytes left the writer, the kernel has %zu", left,
		    kernel_bytes(p));
	assert_int_equal(p->writer.events & BEV_EVENT_ERROR, 0);

	assert_int_equal(bufferevent_enable(p->reader.bev, EV_READ), 0);
	assert_all_arrived(p);
	assert_int_equal(p->reader.received, 8 * MIB);
}

/* --- the write callback hears that a batch has left --- */

static void
test_write_callback_after_batch_left(void **state)
{
	struct pair *p = *state;

	write_pattern(p, 100);
	if (!loop_until(p, flushed_and_arrived, WAIT_MAX))
		fail_msg("write callback with nothing unsent: %d runs; %zu "
		    "bytes arrived", p->writer.flushed_cbs,
		    p->reader.received);
	assert_int_equal(p->reader.received, 100);
	assert_int_equal(p->reader.bad_at, SIZE_MAX);
}

/*
 * The bufferevent's output emptied into a batch that then waited for the
 * socket: libevent has nothing more to write and does not call the write
 * callback again.  The batch does, once it has left.
 */
static void
test_write_callback_after_batch_waited_for_socket(void **state)
{
	struct pair *p = *state;

	assert_int_equal(bufferevent_disable(p->reader.bev, EV_READ), 0);
	assert_true(fill_until_batch_waits(p) > 0);
	assert_int_equal(evbuffer_get_length(bufferevent_get_output(
	    p->writer.bev)), 0);
	/* Earlier 4 KiB writes all left: from here on, only the batch's
	 * leaving can call the write callback with nothing unsent (whether
	 * the socket takes it once the reader reads, or at a late ACK). */
	p->writer.flushed_cbs = 0;

	assert_int_equal(bufferevent_enable(p->reader.bev, EV_READ), 0);
	if (!loop_until(p, flushed_and_arrived, WAIT_MAX))
		fail_msg("write callback with nothing unsent: %d runs; %zu of "
		    "%zu bytes arrived", p->writer.flushed_cbs,
		    p->reader.received, p->writer.written);
	assert_all_arrived(p);
}

/* --- a batch that waits too long gives up --- */

static void
test_deadline_ends_a_wait_for_the_socket(void **state)
{
	struct pair *p = *state;
	double set_at, waited;

	assert_int_equal(bufferevent_disable(p->reader.bev, EV_READ), 0);
	write_pattern(p, 2 * MIB);
	(void)loop_until(p, write_failed, 0.2);
	assert_false(write_failed(p));		/* no deadline yet */
	assert_true(batch_held(p->writer.bev) > 0);	/* a batch waits */

	batch_set_deadline(p->writer.bev, 1);
	set_at = now();
	if (!loop_until(p, write_failed, 3.0))
		fail_msg("no error 3 s after a 1 s deadline");
	waited = p->writer.error_at - set_at;
	assert_true(p->writer.events & BEV_EVENT_WRITING);
	if (waited < 0.9)
		fail_msg("deadline of 1 s ended the wait after %.3f s",
		    waited);
	/* The batch's bytes are dropped (the output may still hold some). */
	assert_int_equal(batch_held(p->writer.bev), 0);
}

/* A closing channel: the deadline is set first, the wait comes after. */
static void
test_deadline_set_before_the_wait(void **state)
{
	struct pair *p = *state;
	double set_at, waited;

	assert_int_equal(bufferevent_disable(p->reader.bev, EV_READ), 0);
	batch_set_deadline(p->writer.bev, 1);
	set_at = now();
	write_pattern(p, 2 * MIB);
	if (!loop_until(p, write_failed, 3.0))
		fail_msg("no error 3 s after a 1 s deadline");
	waited = p->writer.error_at - set_at;
	assert_true(p->writer.events & BEV_EVENT_WRITING);
	if (waited < 0.9)
		fail_msg("deadline of 1 s ended the wait after %.3f s",
		    waited);
	assert_int_equal(batch_held(p->writer.bev), 0);
}

/* A deadline of 0 is none (as before any call), whether or not a batch
 * waits when it is set. */
static void
test_deadline_zero_is_none(void **state)
{
	struct pair *p = *state;

	assert_int_equal(bufferevent_disable(p->reader.bev, EV_READ), 0);
	write_pattern(p, 2 * MIB);
	(void)loop_until(p, write_failed, 0.2);
	assert_true(batch_held(p->writer.bev) > 0);	/* a batch waits */
	batch_set_deadline(p->writer.bev, 0);
	(void)loop_until(p, write_failed, 0.5);
	assert_false(write_failed(p));
}

static struct bufferevent *deadline_bev;

static void
set_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	batch_set_deadline(deadline_bev, 1);
}

/*
 * A deadline set in the pass that starts a batch (a close path does so
 * right after its last frame) leaves the batch's flush for this pass as it
 * is.  Made visible with a socket that has room but is more than two
 * thirds full: epoll does not call it writable, so a flush turned into a
 * wait for the socket would hold the bytes until the deadline failed them.
 */
static void
test_deadline_set_in_the_pass_of_a_batch(void **state)
{
	static char junk[64 * 1024];
	struct pair *p = *state;
	struct pollfd pfd;
	struct event *ev;
	int outq = 0, sndbuf, i;
	socklen_t len = sizeof(sndbuf);

	assert_int_equal(bufferevent_disable(p->reader.bev, EV_READ), 0);
	for (i = 0; i < 2; i++) {
		while (send(p->writer.fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
			;
		usleep(100000);
	}
	/* A send buffer a little larger than what is queued: room for a
	 * record, but less than a third of it free. */
	assert_int_equal(ioctl(p->writer.fd, SIOCOUTQ, &outq), 0);
	sndbuf = outq * 6 / 10;		/* the kernel doubles it */
	assert_int_equal(setsockopt(p->writer.fd, SOL_SOCKET, SO_SNDBUF,
	    &sndbuf, sizeof(sndbuf)), 0);
	assert_int_equal(getsockopt(p->writer.fd, SOL_SOCKET, SO_SNDBUF,
	    &sndbuf, &len), 0);
	pfd.fd = p->writer.fd;
	pfd.events = POLLOUT;
	pfd.revents = 0;
	assert_int_equal(poll(&pfd, 1, 0) >= 0, 1);
	if ((pfd.revents & POLLOUT) || sndbuf - outq < 4096)
		skip();		/* this kernel sizes buffers otherwise */

	deadline_bev = p->writer.bev;
	assert_non_null(ev = event_new(p->base[0], -1, 0, set_deadline_cb,
	    NULL));
	write_pattern(p, 100);
	bev_kick_write(p->writer.bev);		/* SSL_write starts a batch */
	event_active(ev, EV_TIMEOUT, 1);	/* then the deadline is set */
	for (i = 0; i < 50; i++)
		loop_pass(p);
	event_free(ev);
	assert_int_equal(batch_held(p->writer.bev), 0);
	assert_false(write_failed(p));
}

/* --- a socket that fails --- */

static void
test_reset_by_peer_is_a_write_error(void **state)
{
	struct pair *p = *state;
	struct linger reset = { .l_onoff = 1, .l_linger = 0 };

	/* The writer only writes, so it hears of the reset from a write.
	 * The daemons ignore SIGPIPE, and so does this test. */
	assert_true(signal(SIGPIPE, SIG_IGN) != SIG_ERR);
	assert_int_equal(bufferevent_disable(p->writer.bev, EV_READ), 0);
	bufferevent_free(p->reader.bev);
	p->reader.bev = NULL;
	assert_int_equal(setsockopt(p->reader.fd, SOL_SOCKET, SO_LINGER,
	    &reset, sizeof(reset)), 0);
	assert_int_equal(close(p->reader.fd), 0);
	p->reader.fd = -1;

	write_pattern(p, MIB);
	if (!loop_until(p, write_failed, WAIT_MAX))
		fail_msg("no error writing to a reset connection");
	assert_true(p->writer.events & BEV_EVENT_WRITING);
	assert_int_equal(batch_held(p->writer.bev), 0);
}

/* --- a channel moves to another bufferevent and event loop --- */

static void
test_detach_and_attach_to_a_new_bufferevent(void **state)
{
	struct pair *p = *state;
	uint32_t seed = 7;

	write_pattern(p, 256 * 1024);
	assert_all_arrived(p);			/* the batch is empty */

	move_writer(p);
	assert_true(writes_through_batch(p->writer.ssl));
	assert_int_equal(batch_unsent(p->writer.bev), 0);
	while (p->writer.written < 256 * 1024 + MIB)
		write_pattern(p, next_chunk(&seed));
	assert_all_arrived(p);
}

/*
 * Bytes a batch holds when its bufferevent goes wait for the next one,
 * which counts them and sends them on its own (nothing new written), and
 * then what it is given after them.
 */
static void
test_move_keeps_bytes_waiting_in_the_batch(void **state)
{
	struct pair *p = *state;
	size_t held;

	assert_int_equal(bufferevent_disable(p->reader.bev, EV_READ), 0);
	held = fill_until_batch_waits(p);
	assert_true(held > 0);

	move_writer(p);
	assert_int_equal(batch_unsent(p->writer.bev), held);
	assert_int_equal(bufferevent_enable(p->reader.bev, EV_READ), 0);
	assert_all_arrived(p);

	write_pattern(p, 256 * 1024);
	assert_all_arrived(p);
}

/* Every test runs on a fresh connection, freed after it. */
#define TEST(f) cmocka_unit_test_setup_teardown(f, pair_open, pair_close)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_bytes_arrive_intact_and_in_order),
		TEST(test_full_socket_holds_bytes_back_without_loss),
		TEST(test_write_callback_after_batch_left),
		TEST(test_write_callback_after_batch_waited_for_socket),
		TEST(test_deadline_ends_a_wait_for_the_socket),
		TEST(test_deadline_set_before_the_wait),
		TEST(test_deadline_zero_is_none),
		TEST(test_deadline_set_in_the_pass_of_a_batch),
		TEST(test_reset_by_peer_is_a_write_error),
		TEST(test_detach_and_attach_to_a_new_bufferevent),
		TEST(test_move_keeps_bytes_waiting_in_the_batch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
