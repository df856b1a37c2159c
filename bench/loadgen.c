/*
 * loadgen: the benchmark's client.  Every mode checks every byte that comes
 * back and prints one machine-readable result line on stdout (key=value).
 *
 *   loadgen tput    HOST PORT CONNS BYTES_PER_CONN
 *   loadgen latency HOST PORT COUNT SIZE
 *   loadgen rate    HOST PORT PARALLEL SECONDS [MAX_CONNS]
 *   loadgen burst   HOST PORT N
 *   loadgen hold    HOST PORT N HOLD_SECONDS [SETUP_CAP_SECONDS]
 *
 * Exit status: 0 when the run finished and every byte that came back was the
 * byte sent; 1 on a byte mismatch (the first one is printed on stderr) or
 * when the tool itself could not do its job (tput and latency: any
 * connection error); 2 on a usage error.  In rate, burst and hold a failed
 * connection (refused, reset, closed early, timed out) is a counted failure,
 * not an error.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)      /* tput write size */
#define MSG 16                  /* rate, burst and hold message size */

static struct sockaddr_storage peer;
static socklen_t peerlen;
static atomic_int mismatches;

/* ---- helpers ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("loadgen: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void usage(void)
{
	fputs("usage: loadgen tput HOST PORT CONNS BYTES_PER_CONN\n"
	    "       loadgen latency HOST PORT COUNT SIZE\n"
	    "       loadgen rate HOST PORT PARALLEL SECONDS [MAX_CONNS]\n"
	    "       loadgen burst HOST PORT N\n"
	    "       loadgen hold HOST PORT N HOLD_SECONDS [SETUP_CAP_SECONDS]\n",
	    stderr);
	exit(2);
}

static uint64_t parse_u64(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end != '\0' || s[0] == '-') {
		fprintf(stderr, "loadgen: %s: '%s' is not a number\n", what, s);
		exit(2);
	}
	return v;
}

static void resolve(const char *host, const char *port)
{
	struct addrinfo hints, *res;
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "loadgen: %s:%s: %s\n", host, port,
		    gai_strerror(rc));
		exit(2);
	}
	memcpy(&peer, res->ai_addr, res->ai_addrlen);
	peerlen = res->ai_addrlen;
	freeaddrinfo(res);
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			perror("loadgen: setrlimit");
	}
}

static void set_timeouts(int fd, int secs)
{
	struct timeval tv = { .tv_sec = secs, .tv_usec = 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Blocking connect with timeouts set first (SO_SNDTIMEO bounds connect). */
static int connect_blocking(int secs, int nodelay)
{
	int fd = socket(peer.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	set_timeouts(fd, secs);
	if (nodelay)
		set_nodelay(fd);
	if (connect(fd, (struct sockaddr *)&peer, peerlen) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* xorshift64*: deterministic pseudo-random bytes, one stream per seed. */
struct rng {
	uint64_t s;
};

static void rng_seed(struct rng *r, uint64_t seed)
{
	/* splitmix64 of the seed, never zero */
	uint64_t z = seed + 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	r->s = z ? z : 1;
}

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t x = r->s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* Fills len bytes; the stream depends on the sequence of lengths asked. */
static void rng_fill(struct rng *r, unsigned char *p, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v = rng_next(r);
		memcpy(p + i, &v, 8);
	}
	if (i < len) {
		uint64_t v = rng_next(r);
		memcpy(p + i, &v, len - i);
	}
}

static ssize_t write_all(int fd, const void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t w = send(fd, (const char *)buf + done, len - done,
		    MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)w;
	}
	return (ssize_t)done;
}

/* Reads exactly len bytes; returns len, or the count read before EOF/error. */
static size_t read_exact(int fd, void *buf, size_t len, int *err)
{
	size_t done = 0;
	*err = 0;
	while (done < len) {
		ssize_t r = read(fd, (char *)buf + done, len - done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			*err = errno;
			break;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return done;
}

static void report_mismatch(const char *mode, const char *who, uint64_t off,
    const unsigned char *got, const unsigned char *want, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (got[i] != want[i]) {
			fprintf(stderr, "loadgen %s: BYTE MISMATCH on %s at "
			    "offset %" PRIu64 ": got 0x%02x, expected 0x%02x\n",
			    mode, who, off + i, got[i], want[i]);
			break;
		}
	}
	atomic_fetch_add(&mismatches, 1);
}

/* ---- tput ---- */

struct tconn {
	int fd;
	int idx;
	uint64_t bytes;
	uint64_t received;
	char err[256];
	pthread_t wr, rd;
};

static void *tput_writer(void *arg)
{
	struct tconn *c = arg;
	unsigned char *buf = malloc(CHUNK);
	struct rng r;
	if (buf == NULL)
		die("out of memory");
	rng_seed(&r, 1000 + (uint64_t)c->idx);
	for (uint64_t sent = 0; sent < c->bytes;) {
		size_t n = c->bytes - sent < CHUNK ? (size_t)(c->bytes - sent)
		    : CHUNK;
		rng_fill(&r, buf, n);
		if (write_all(c->fd, buf, n) < 0) {
			snprintf(c->err, sizeof c->err, "connection %d: write "
			    "after %" PRIu64 " bytes: %s", c->idx, sent,
			    errno == EAGAIN ? "timed out (30 s)" : strerror(errno));
			break;
		}
		sent += n;
	}
	free(buf);
	return NULL;
}

static void *tput_reader(void *arg)
{
	struct tconn *c = arg;
	unsigned char *buf = malloc(CHUNK), *exp = malloc(CHUNK);
	struct rng r;
	size_t exp_len = 0, exp_pos = 0;
	uint64_t exp_base = 0;  /* stream offset of exp[0] */
	char who[64];
	if (buf == NULL || exp == NULL)
		die("out of memory");
	snprintf(who, sizeof who, "connection %d", c->idx);
	rng_seed(&r, 1000 + (uint64_t)c->idx);
	while (c->received < c->bytes) {
		uint64_t left = c->bytes - c->received;
		ssize_t n = read(c->fd, buf, left < CHUNK ? (size_t)left : CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (c->err[0] == '\0')
				snprintf(c->err, sizeof c->err, "connection %d: "
				    "read after %" PRIu64 " of %" PRIu64
				    " bytes: %s", c->idx, c->received, c->bytes,
				    n == 0 ? "closed by peer" : errno == EAGAIN ?
				    "no data for 30 s" : strerror(errno));
			break;
		}
		size_t at = 0;
		while (at < (size_t)n) {
			if (exp_pos == exp_len) {
				exp_base += exp_len;
				uint64_t rem = c->bytes - exp_base;
				exp_len = rem < CHUNK ? (size_t)rem : CHUNK;
				rng_fill(&r, exp, exp_len);
				exp_pos = 0;
			}
			size_t k = (size_t)n - at;
			if (k > exp_len - exp_pos)
				k = exp_len - exp_pos;
			if (memcmp(buf + at, exp + exp_pos, k) != 0) {
				report_mismatch("tput", who,
				    exp_base + exp_pos, buf + at,
				    exp + exp_pos, k);
				snprintf(c->err, sizeof c->err,
				    "connection %d: byte mismatch", c->idx);
				goto out;
			}
			at += k;
			exp_pos += k;
		}
		c->received += (uint64_t)n;
	}
out:
	free(buf);
	free(exp);
	return NULL;
}

static int mode_tput(int argc, char **argv)
{
	if (argc != 6)
		usage();
	resolve(argv[2], argv[3]);
	int conns = (int)parse_u64(argv[4], "CONNS");
	uint64_t bytes = parse_u64(argv[5], "BYTES_PER_CONN");
	if (conns < 1 || conns > 1024)
		die("CONNS must be 1..1024");
	struct tconn *c = calloc((size_t)conns, sizeof *c);
	if (c == NULL)
		die("out of memory");
	for (int i = 0; i < conns; i++) {
		c[i].idx = i;
		c[i].bytes = bytes;
		c[i].fd = connect_blocking(30, 0);
		if (c[i].fd < 0)
			die("tput: connect %d: %s", i, strerror(errno));
	}
	uint64_t t0 = now_ns();
	for (int i = 0; i < conns; i++) {
		if (pthread_create(&c[i].rd, NULL, tput_reader, &c[i]) != 0 ||
		    pthread_create(&c[i].wr, NULL, tput_writer, &c[i]) != 0)
			die("pthread_create failed");
	}
	uint64_t total = 0;
	int errors = 0;
	for (int i = 0; i < conns; i++) {
		pthread_join(c[i].rd, NULL);
		if (c[i].err[0] != '\0') {
			/* unblock the writer if it is stuck */
			shutdown(c[i].fd, SHUT_RDWR);
		}
		pthread_join(c[i].wr, NULL);
		total += c[i].received;
	}
	uint64_t t1 = now_ns();
	for (int i = 0; i < conns; i++) {
		if (c[i].err[0] != '\0') {
			fprintf(stderr, "loadgen tput: %s\n", c[i].err);
			errors++;
		}
		close(c[i].fd);
	}
	double secs = (double)(t1 - t0) / 1e9;
	printf("tput mbps=%.1f bytes=%" PRIu64 " secs=%.3f conns=%d errors=%d\n",
	    (double)total / secs / 1e6, total, secs, conns, errors);
	free(c);
	return errors || atomic_load(&mismatches) ? 1 : 0;
}

/* ---- latency ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

#define WARMUP 10

static int mode_latency(int argc, char **argv)
{
	if (argc != 6)
		usage();
	resolve(argv[2], argv[3]);
	uint64_t count = parse_u64(argv[4], "COUNT");
	size_t size = (size_t)parse_u64(argv[5], "SIZE");
	if (count < 1 || count > 10000000 || size < 1 || size > (1 << 24))
		die("latency: COUNT or SIZE out of range");
	int fd = connect_blocking(10, 1);
	if (fd < 0)
		die("latency: connect: %s", strerror(errno));
	unsigned char *out = malloc(size), *in = malloc(size);
	uint64_t *t = malloc(count * sizeof *t);
	if (out == NULL || in == NULL || t == NULL)
		die("out of memory");
	struct rng r;
	rng_seed(&r, 7);
	/* The first WARMUP echoes (connection set-up, TLS handshakes, pool
	 * pairing) are checked but not timed. */
	for (uint64_t i = 0; i < count + WARMUP; i++) {
		rng_fill(&r, out, size);
		uint64_t a = now_ns();
		if (write_all(fd, out, size) < 0)
			die("latency: write (echo %" PRIu64 "): %s", i,
			    strerror(errno));
		int err;
		size_t got = read_exact(fd, in, size, &err);
		uint64_t b = now_ns();
		if (got < size)
			die("latency: echo %" PRIu64 ": got %zu of %zu bytes: %s",
			    i, got, size, err == EAGAIN ? "timed out (10 s)" :
			    err ? strerror(err) : "closed by peer");
		if (memcmp(in, out, size) != 0) {
			char who[64];
			snprintf(who, sizeof who, "echo %" PRIu64, i);
			report_mismatch("latency", who, 0, in, out, size);
			return 1;
		}
		if (i >= WARMUP)
			t[i - WARMUP] = b - a;
	}
	close(fd);
	uint64_t sum = 0;
	for (uint64_t i = 0; i < count; i++)
		sum += t[i];
	qsort(t, count, sizeof *t, cmp_u64);
	uint64_t p50 = t[(count - 1) * 50 / 100], p99 = t[(count - 1) * 99 / 100];
	printf("latency p50_us=%.1f p99_us=%.1f mean_us=%.1f count=%" PRIu64
	    " size=%zu errors=0\n", (double)p50 / 1e3, (double)p99 / 1e3,
	    (double)sum / (double)count / 1e3, count, size);
	return 0;
}

/* ---- rate ---- */

/* rate: connections left to make (MAX_CONNS), or -1 for no bound */
static atomic_llong rate_left = -1;

/* One more connection may be made: within MAX_CONNS, if given. */
static int rate_take(void)
{
	long long left = atomic_load(&rate_left);
	while (left != -1) {
		if (left == 0)
			return 0;
		if (atomic_compare_exchange_weak(&rate_left, &left, left - 1))
			return 1;
	}
	return 1;
}

struct rarg {
	int idx;
	uint64_t end_ns;
	uint64_t ok, fail;
	char firsterr[160];
};

static void *rate_thread(void *arg)
{
	struct rarg *a = arg;
	struct rng r;
	unsigned char out[MSG], in[MSG];
	rng_seed(&r, 5000 + (uint64_t)a->idx);
	/* bounded by time: each pass is itself bounded by 3 x 5 s timeouts */
	while (now_ns() < a->end_ns && rate_take()) {
		const char *why = NULL;
		int fd = connect_blocking(5, 1);
		if (fd < 0) {
			why = "connect";
		} else {
			rng_fill(&r, out, MSG);
			int err = 0;
			if (write_all(fd, out, MSG) < 0) {
				why = "write";
				err = errno;
			} else {
				size_t got = read_exact(fd, in, MSG, &err);
				if (got < MSG)
					why = "short echo";
				else if (memcmp(in, out, MSG) != 0) {
					report_mismatch("rate", "a connection",
					    0, in, out, MSG);
					why = "wrong echo";
				}
			}
			if (why != NULL)
				errno = err;
			close(fd);
		}
		if (why == NULL) {
			a->ok++;
		} else {
			if (a->fail++ == 0)
				snprintf(a->firsterr, sizeof a->firsterr,
				    "%s: %s", why, errno == EAGAIN ?
				    "timed out (5 s)" : errno ? strerror(errno)
				    : "closed by peer");
			/* do not spin on a refusing server */
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

static int mode_rate(int argc, char **argv)
{
	if (argc != 6 && argc != 7)
		usage();
	resolve(argv[2], argv[3]);
	int par = (int)parse_u64(argv[4], "PARALLEL");
	uint64_t secs = parse_u64(argv[5], "SECONDS");
	if (par < 1 || par > 1024 || secs < 1 || secs > 3600)
		die("rate: PARALLEL or SECONDS out of range");
	if (argc == 7) {
		uint64_t max = parse_u64(argv[6], "MAX_CONNS");
		if (max < 1 || max > 100000000)
			die("rate: MAX_CONNS out of range");
		atomic_store(&rate_left, (long long)max);
	}
	struct rarg *a = calloc((size_t)par, sizeof *a);
	pthread_t *th = calloc((size_t)par, sizeof *th);
	if (a == NULL || th == NULL)
		die("out of memory");
	uint64_t t0 = now_ns();
	for (int i = 0; i < par; i++) {
		a[i].idx = i;
		a[i].end_ns = t0 + secs * 1000000000ull;
		if (pthread_create(&th[i], NULL, rate_thread, &a[i]) != 0)
			die("pthread_create failed");
	}
	uint64_t ok = 0, fail = 0;
	const char *firsterr = NULL;
	for (int i = 0; i < par; i++) {
		pthread_join(th[i], NULL);
		ok += a[i].ok;
		fail += a[i].fail;
		if (firsterr == NULL && a[i].fail)
			firsterr = a[i].firsterr;
	}
	double el = (double)(now_ns() - t0) / 1e9;
	if (firsterr != NULL)
		fprintf(stderr, "loadgen rate: %" PRIu64 " failures, first: %s\n",
		    fail, firsterr);
	printf("rate cps=%.1f ok=%" PRIu64 " failures=%" PRIu64
	    " secs=%.3f parallel=%d\n", (double)ok / el, ok, fail, el, par);
	return atomic_load(&mismatches) ? 1 : 0;
}

/* ---- burst and hold: many non-blocking connections on one epoll ---- */

enum { S_IDLE, S_CONNECTING, S_ECHO, S_HELD, S_DONE, S_FAILED };

struct econn {
	int fd;
	int state;
	unsigned sent, got;
	uint64_t start_ns;
	unsigned char out[MSG], in[MSG];
};

struct pool {
	int ep;
	struct econn *c;
	size_t n;
	struct rng r;
	const char *mode;
	char firsterr[160];
	uint64_t failures;
};

static void econn_fail(struct pool *p, struct econn *c, const char *why,
    int err)
{
	if (p->failures++ == 0)
		snprintf(p->firsterr, sizeof p->firsterr, "%s: %s", why,
		    err ? strerror(err) : "closed by peer");
	if (c->fd >= 0) {
		epoll_ctl(p->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
	c->state = S_FAILED;
}

static void econn_start(struct pool *p, struct econn *c)
{
	c->start_ns = now_ns();
	c->fd = socket(peer.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		econn_fail(p, c, "socket", errno);
		return;
	}
	set_nodelay(c->fd);
	if (connect(c->fd, (struct sockaddr *)&peer, peerlen) != 0 &&
	    errno != EINPROGRESS) {
		econn_fail(p, c, "connect", errno);
		return;
	}
	c->state = S_CONNECTING;
	struct epoll_event e = { .events = EPOLLOUT, .data.ptr = c };
	if (epoll_ctl(p->ep, EPOLL_CTL_ADD, c->fd, &e) != 0)
		econn_fail(p, c, "epoll_ctl", errno);
}

/* Sends a fresh 16-byte message and waits for its echo (state S_ECHO). */
static void econn_send(struct pool *p, struct econn *c)
{
	rng_fill(&p->r, c->out, MSG);
	c->sent = c->got = 0;
	ssize_t w = send(c->fd, c->out, MSG, MSG_NOSIGNAL);
	if (w != MSG) {
		/* 16 bytes into an empty socket buffer: all or an error */
		econn_fail(p, c, "write", w < 0 ? errno : EAGAIN);
		return;
	}
	c->sent = MSG;
	c->state = S_ECHO;
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
	if (epoll_ctl(p->ep, EPOLL_CTL_MOD, c->fd, &e) != 0)
		econn_fail(p, c, "epoll_ctl", errno);
}

/* Returns 1 when c reached its end state for this phase (echoed or failed). */
static int econn_event(struct pool *p, struct econn *c, uint32_t ev)
{
	if (c->state == S_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof err;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0 || (ev & (EPOLLERR | EPOLLHUP))) {
			econn_fail(p, c, "connect", err ? err : ECONNRESET);
			return 1;
		}
		econn_send(p, c);
		return c->state == S_FAILED;
	}
	if (c->state == S_HELD && (ev & (EPOLLERR | EPOLLHUP))) {
		/* a held connection broke while idle: it no longer counts */
		econn_fail(p, c, "held connection closed", ECONNRESET);
		return 0;
	}
	if (c->state != S_ECHO)
		return 0;
	ssize_t r = read(c->fd, c->in + c->got, MSG - c->got);
	if (r < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		econn_fail(p, c, "read", errno);
		return 1;
	}
	if (r == 0) {
		econn_fail(p, c, "short echo", 0);
		return 1;
	}
	c->got += (unsigned)r;
	if (c->got < MSG)
		return 0;
	if (memcmp(c->in, c->out, MSG) != 0) {
		report_mismatch(p->mode, "a connection", 0, c->in, c->out, MSG);
		econn_fail(p, c, "wrong echo", 0);
		return 1;
	}
	c->state = S_HELD;
	struct epoll_event e = { .events = 0, .data.ptr = c };
	epoll_ctl(p->ep, EPOLL_CTL_MOD, c->fd, &e);
	return 1;
}

/* Fails every connection still in flight (the phase's time is up). */
static size_t fail_inflight(struct pool *p, const char *why)
{
	size_t k = 0;
	for (size_t i = 0; i < p->n; i++) {
		struct econn *c = &p->c[i];
		if (c->state == S_CONNECTING || c->state == S_ECHO) {
			econn_fail(p, c, why, ETIMEDOUT);
			k++;
		}
	}
	return k;
}

static void pool_init(struct pool *p, size_t n, const char *mode)
{
	memset(p, 0, sizeof *p);
	p->mode = mode;
	p->n = n;
	p->c = calloc(n, sizeof *p->c);
	p->ep = epoll_create1(EPOLL_CLOEXEC);
	if (p->c == NULL || p->ep < 0)
		die("out of memory");
	for (size_t i = 0; i < n; i++)
		p->c[i].fd = -1;
	rng_seed(&p->r, 9000);
}

static void pool_close(struct pool *p)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->c[i].fd >= 0)
			close(p->c[i].fd);
	close(p->ep);
	free(p->c);
}

static int mode_burst(int argc, char **argv)
{
	if (argc != 5)
		usage();
	resolve(argv[2], argv[3]);
	size_t n = (size_t)parse_u64(argv[4], "N");
	if (n < 1 || n > 100000)
		die("burst: N out of range");
	struct pool p;
	pool_init(&p, n, "burst");
	uint64_t t0 = now_ns(), deadline = t0 + 30000000000ull;
	size_t pending = n;
	for (size_t i = 0; i < n; i++) {
		econn_start(&p, &p.c[i]);
		if (p.c[i].state == S_FAILED)
			pending--;
	}
	struct epoll_event evs[512];
	uint64_t last = t0;
	while (pending > 0) {
		uint64_t now = now_ns();
		if (now >= deadline) {
			fail_inflight(&p, "timed out (30 s)");
			last = now;
			break;
		}
		int k = epoll_wait(p.ep, evs, 512,
		    (int)((deadline - now) / 1000000) + 1);
		if (k < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < k; i++) {
			if (econn_event(&p, evs[i].data.ptr, evs[i].events)) {
				pending--;
				last = now_ns();
			}
		}
	}
	size_t ok = 0;
	for (size_t i = 0; i < n; i++)
		ok += p.c[i].state == S_HELD;
	if (p.failures)
		fprintf(stderr, "loadgen burst: %" PRIu64 " failures, first: %s\n",
		    p.failures, p.firsterr);
	printf("burst ms=%.1f n=%zu ok=%zu failures=%" PRIu64 "\n",
	    (double)(last - t0) / 1e6, n, ok, p.failures);
	pool_close(&p);
	return atomic_load(&mismatches) ? 1 : 0;
}

#define HOLD_INFLIGHT 500
#define HOLD_CONN_TIMEOUT_NS 10000000000ull   /* per connection, set-up */

static int mode_hold(int argc, char **argv)
{
	if (argc != 6 && argc != 7)
		usage();
	resolve(argv[2], argv[3]);
	size_t n = (size_t)parse_u64(argv[4], "N");
	uint64_t hold = parse_u64(argv[5], "HOLD_SECONDS");
	uint64_t cap = argc == 7 ? parse_u64(argv[6], "SETUP_CAP_SECONDS") : 60;
	if (n < 1 || n > 1000000 || hold > 3600 || cap < 1 || cap > 3600)
		die("hold: N, HOLD_SECONDS or SETUP_CAP_SECONDS out of range");
	struct pool p;
	pool_init(&p, n, "hold");
	struct epoll_event evs[512];

	/* Phase 1: open N connections, at most HOLD_INFLIGHT in flight, each
	 * echoes 16 bytes.  Each has 10 s; the whole phase has cap s. */
	uint64_t t0 = now_ns(), deadline = t0 + cap * 1000000000ull;
	size_t next = 0, inflight = 0, resolved = 0;
	uint64_t last_scan = t0;
	while (resolved < n) {
		while (next < n && inflight < HOLD_INFLIGHT) {
			econn_start(&p, &p.c[next]);
			if (p.c[next].state == S_FAILED)
				resolved++;
			else
				inflight++;
			next++;
		}
		uint64_t now = now_ns();
		if (now >= deadline) {
			size_t k = fail_inflight(&p, "set-up phase cap");
			resolved += k;
			/* never started: failures too */
			for (; next < n; next++) {
				p.c[next].state = S_FAILED;
				p.failures++;
				resolved++;
			}
			fprintf(stderr, "loadgen hold: set-up stopped after "
			    "%" PRIu64 " s (cap)\n", cap);
			break;
		}
		int k = epoll_wait(p.ep, evs, 512, 100);
		if (k < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < k; i++) {
			if (econn_event(&p, evs[i].data.ptr, evs[i].events)) {
				resolved++;
				inflight--;
			}
		}
		now = now_ns();
		if (now - last_scan > 100000000ull) {  /* per-conn timeouts */
			last_scan = now;
			for (size_t i = 0; i < next; i++) {
				struct econn *c = &p.c[i];
				if ((c->state == S_CONNECTING ||
				    c->state == S_ECHO) &&
				    now - c->start_ns > HOLD_CONN_TIMEOUT_NS) {
					econn_fail(&p, c, "timed out (10 s)",
					    ETIMEDOUT);
					resolved++;
					inflight--;
				}
			}
		}
	}
	size_t held = 0;
	for (size_t i = 0; i < n; i++)
		held += p.c[i].state == S_HELD;
	uint64_t setup_fail = p.failures;
	double setup_s = (double)(now_ns() - t0) / 1e9;
	printf("held n=%zu failures=%" PRIu64 " setup_secs=%.2f\n", held,
	    setup_fail, setup_s);
	fflush(stdout);
	if (p.failures)
		fprintf(stderr, "loadgen hold: %" PRIu64 " set-up failures, "
		    "first: %s\n", p.failures, p.firsterr);

	struct timespec ts = { (time_t)hold, 0 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;

	/* Phase 2: every held connection echoes 16 bytes again (20 s). */
	p.failures = 0;
	p.firsterr[0] = '\0';
	size_t pending = 0;
	for (size_t i = 0; i < n; i++) {
		struct econn *c = &p.c[i];
		if (c->state != S_HELD)
			continue;
		econn_send(&p, c);
		if (c->state == S_ECHO)
			pending++;
	}
	deadline = now_ns() + 20000000000ull;
	while (pending > 0) {
		uint64_t now = now_ns();
		if (now >= deadline) {
			fail_inflight(&p, "second echo timed out (20 s)");
			break;
		}
		int k = epoll_wait(p.ep, evs, 512,
		    (int)((deadline - now) / 1000000) + 1);
		if (k < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < k; i++)
			if (econn_event(&p, evs[i].data.ptr, evs[i].events))
				pending--;
	}
	size_t ok = 0;
	for (size_t i = 0; i < n; i++)
		ok += p.c[i].state == S_HELD;
	if (p.failures)
		fprintf(stderr, "loadgen hold: %" PRIu64 " failures after the "
		    "hold, first: %s\n", p.failures, p.firsterr);
	printf("hold n=%zu held=%zu ok=%zu failures=%" PRIu64
	    " setup_failures=%" PRIu64 "\n", n, held, ok, p.failures,
	    setup_fail);
	pool_close(&p);
	return atomic_load(&mismatches) ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	const char *m = argv[1];
	if (strcmp(m, "tput") == 0)
		return mode_tput(argc, argv);
	if (strcmp(m, "latency") == 0)
		return mode_latency(argc, argv);
	if (strcmp(m, "rate") == 0)
		return mode_rate(argc, argv);
	if (strcmp(m, "burst") == 0)
		return mode_burst(argc, argv);
	if (strcmp(m, "hold") == 0)
		return mode_hold(argc, argv);
	usage();
	return 2;
}
