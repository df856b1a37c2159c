/*
 * Unit tests for common/listener.c: a listening socket on a libevent loop
 * that hands each accepted connection to a callback, and pauses for a
 * second instead of spinning when accept fails.
 *
 * Nothing is mocked: the listener listens on 127.0.0.1 (or ::1, skipped
 * when the machine has none) on a port the kernel picks, clients connect
 * with plain sockets, and a real event loop runs, every wait bounded in
 * loop passes and in time.  To make accept fail, the test lowers
 * RLIMIT_NOFILE to the descriptors already open (and restores it); it
 * counts the accept errors by the warnings the listener logs, with stderr
 * sent to a file meanwhile.
 *
 * Read top to bottom: the clients and the loop; then the tests:
 * connections reach the callback with the peer's address (IPv4, IPv6);
 * out of descriptors, the listener pauses about a second between tries,
 * in a few loop passes, and accepts again once descriptors are free;
 * several listeners out of descriptors log once a second in all;
 * freeing stops it and closes the socket; listener_free(NULL); a
 * descriptor that is not a listening socket is refused (NULL, closed).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "listener.h"
#include "netaddr.h"

#define WAIT_MAX 5.0		/* seconds any wait may take */
#define PASSES_MAX 100000L	/* loop passes any wait may take */
#define TICK_USEC 2000		/* with a tick, a pass blocks at most this */
#define CONNS_MAX 8
#define ERRORS_MAX 64		/* accept errors timed */

/* --- what the callback saw --- */

struct accepted {
	int n;
	int fd[CONNS_MAX];
	int nonblocking[CONNS_MAX];
	struct sockaddr_storage peer[CONNS_MAX];
	double at;		/* when the first one came (now()) */
};

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Records only: assertions stay out of libevent. */
static void
on_accept(evutil_socket_t fd, struct sockaddr *peer, void *arg)
{
	struct accepted *a = arg;
	size_t len = peer->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

	if (a->n == 0)
		a->at = now();
	if (a->n == CONNS_MAX) {
		close(fd);
		return;
	}
	a->fd[a->n] = fd;
	a->nonblocking[a->n] = (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
	memset(&a->peer[a->n], 0, sizeof(a->peer[a->n]));
	memcpy(&a->peer[a->n], peer, len);
	a->n++;
}

static void
accepted_close(struct accepted *a)
{
	int i;

	for (i = 0; i < a->n; i++)
		close(a->fd[i]);
	a->n = 0;
}

/* --- the clients --- */

static socklen_t
loopback(int af, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (af == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		return sizeof(*sin);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		return sizeof(*s6);
	}
}

static socklen_t
sslen(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6);
}

static struct sockaddr_storage
local_address(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	return ss;
}

/* Same family, address and port (what netaddr_format prints). */
static void
assert_same_address(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b)
{
	char sa[NETADDR_STRLEN], sb[NETADDR_STRLEN];

	netaddr_format((const struct sockaddr *)a, sa);
	netaddr_format((const struct sockaddr *)b, sb);
	assert_int_equal(a->ss_family, b->ss_family);
	assert_string_equal(sa, sb);
}

/* A listening socket on the loopback address of af, port 0; -1 when the
 * machine has no such address. */
static int
listen_loopback(int af)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(af, &ss);
	char err[256];

	return netaddr_listen((struct sockaddr *)&ss, len, 0, err,
	    sizeof(err));
}

/* A blocking client connected to the address lfd listens on (the kernel
 * completes the handshake; the listener need not have accepted). */
static int
connect_to(int lfd)
{
	struct sockaddr_storage ss = local_address(lfd);
	int fd;

	assert_true((fd = socket(ss.ss_family, SOCK_STREAM, 0)) >= 0);
	if (connect(fd, (struct sockaddr *)&ss, sslen(&ss)) != 0)
		fail_msg("connect: %s", strerror(errno));
	return fd;
}

/* --- the loop --- */

struct loop {
	struct event_base *base;
	struct event *tick;
};

static void
noop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

static void
flag_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

static int
loop_open(void **state)
{
	struct loop *lp;

	assert_non_null(lp = calloc(1, sizeof(*lp)));
	assert_non_null(lp->base = event_base_new());
	assert_non_null(lp->tick = event_new(lp->base, -1, EV_PERSIST,
	    noop_cb, NULL));
	*state = lp;
	return 0;
}

static int
loop_close(void **state)
{
	struct loop *lp = *state;

	event_free(lp->tick);
	event_base_free(lp->base);
	free(lp);
	return 0;
}

/* Run the loop, a pass blocking at most a tick, until *count >= want, for
 * at most seconds; returns *count >= want. */
static int
loop_until(struct loop *lp, const int *count, int want, double seconds)
{
	struct timeval tick = { 0, TICK_USEC };
	double end = now() + seconds;
	long passes;

	assert_int_equal(event_add(lp->tick, &tick), 0);
	for (passes = 0; passes < PASSES_MAX && *count < want && now() < end;
	    passes++)
		(void)event_base_loop(lp->base, EVLOOP_ONCE);
	assert_int_equal(event_del(lp->tick), 0);
	return *count >= want;
}

/* --- connections reach the callback with the peer's address --- */

static void
accepts_with_peer_address(struct loop *lp, int lfd)
{
	struct accepted a = { 0 };
	struct sockaddr_storage client[3], peer;
	socklen_t plen;
	struct listener *l;
	int c[3], i;

	assert_non_null(l = listener_new(lp->base, lfd, "test", on_accept,
	    &a));
	for (i = 0; i < 3; i++) {
		c[i] = connect_to(lfd);
		client[i] = local_address(c[i]);
	}
	if (!loop_until(lp, &a.n, 3, WAIT_MAX))
		fail_msg("%d of 3 connections accepted", a.n);
	for (i = 0; i < 3; i++) {
		/* The callback's peer is the client, and so is the
		 * descriptor's (in the order they connected). */
		assert_same_address(&a.peer[i], &client[i]);
		plen = sizeof(peer);
		memset(&peer, 0, sizeof(peer));
		assert_int_equal(getpeername(a.fd[i], (struct sockaddr *)&peer,
		    &plen), 0);
		assert_same_address(&peer, &client[i]);
		assert_true(a.nonblocking[i]);
		/* A byte from the client arrives on that descriptor. */
		assert_int_equal(send(c[i], "x", 1, 0), 1);
		close(c[i]);
	}
	for (i = 0; i < 3; i++) {
		char b = 0;

		assert_true(fcntl(a.fd[i], F_SETFL, 0) == 0);	/* blocking */
		assert_int_equal(recv(a.fd[i], &b, 1, 0), 1);
		assert_int_equal(b, 'x');
	}
	accepted_close(&a);
	listener_free(l);
}

static void
test_accepts_ipv4_with_peer_address(void **state)
{
	int lfd;

	assert_true((lfd = listen_loopback(AF_INET)) >= 0);
	accepts_with_peer_address(*state, lfd);
}

static void
test_accepts_ipv6_with_peer_address(void **state)
{
	int lfd;

	if ((lfd = listen_loopback(AF_INET6)) == -1)
		skip();			/* no ::1 on this machine */
	accepts_with_peer_address(*state, lfd);
}

/* --- out of descriptors: pause, then accept again --- */

/* stderr goes to a file while accept fails: the listener's warnings. */
struct capture {
	int saved;		/* the real stderr */
	int fd;			/* the file */
};

static void
capture_start(struct capture *cap)
{
	char path[] = "/tmp/test_listener.XXXXXX";

	assert_true((cap->fd = mkstemp(path)) >= 0);
	assert_int_equal(unlink(path), 0);
	fflush(stderr);
	assert_true((cap->saved = dup(STDERR_FILENO)) >= 0);
	assert_int_equal(dup2(cap->fd, STDERR_FILENO), STDERR_FILENO);
}

static off_t
capture_size(const struct capture *cap)
{
	struct stat st;

	return fstat(cap->fd, &st) == 0 ? st.st_size : -1;
}

/* Back to the real stderr; returns what was written (free it). */
static char *
capture_end(struct capture *cap)
{
	off_t size;
	char *text;

	fflush(stderr);
	assert_int_equal(dup2(cap->saved, STDERR_FILENO), STDERR_FILENO);
	close(cap->saved);
	assert_true((size = lseek(cap->fd, 0, SEEK_END)) >= 0);
	assert_non_null(text = calloc(1, (size_t)size + 1));
	assert_int_equal(pread(cap->fd, text, (size_t)size, 0), size);
	close(cap->fd);
	return text;
}

/* Lines of text holding needle. */
static int
count_lines(const char *text, const char *needle)
{
	const char *line, *nl;
	int n = 0;
	char buf[1024];
	size_t len;

	for (line = text; *line != '\0'; line = nl + 1) {
		if ((nl = strchr(line, '\n')) == NULL)
			nl = line + strlen(line);
		len = (size_t)(nl - line);
		if (len >= sizeof(buf))
			len = sizeof(buf) - 1;
		memcpy(buf, line, len);
		buf[len] = '\0';
		if (strstr(buf, needle) != NULL)
			n++;
		if (*nl == '\0')
			break;
	}
	return n;
}

/* What happened while no descriptor was left. */
struct starved {
	long passes;		/* loop passes */
	int errors;		/* passes after which the log grew */
	double error_at[ERRORS_MAX];
};

/*
 * Run the loop for seconds with no tick: a pass blocks until something
 * happens (the listener, its resume timer, or the end of the time), so
 * a listener that spun on a failing accept would make many passes.  Nor
 * may anything here assert or print: the log is captured, and no
 * descriptor is left to report with.
 */
static void
run_starved(struct loop *lp, const struct capture *cap, double seconds,
    struct starved *s)
{
	struct timeval tv;
	struct event *end;
	int over = 0;
	off_t size, seen = capture_size(cap);
	double t0 = now();

	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	end = evtimer_new(lp->base, flag_cb, &over);
	if (end == NULL || evtimer_add(end, &tv) == -1) {
		s->passes = -1;
		if (end != NULL)
			event_free(end);
		return;
	}
	for (s->passes = 0; s->passes < PASSES_MAX && !over &&
	    now() < t0 + seconds + 1; s->passes++) {
		(void)event_base_loop(lp->base, EVLOOP_ONCE);
		fflush(stderr);
		if ((size = capture_size(cap)) > seen) {
			if (s->errors < ERRORS_MAX)
				s->error_at[s->errors] = now() - t0;
			s->errors++;
			seen = size;
		}
	}
	event_free(end);
}

/* The lowest descriptor number free now: with RLIMIT_NOFILE set to it,
 * no new descriptor can be made. */
static int
lowest_free_fd(void)
{
	int fd;

	assert_true((fd = dup(STDIN_FILENO)) >= 0);
	close(fd);
	return fd;
}

static void
test_pauses_when_out_of_descriptors(void **state)
{
	struct loop *lp = *state;
	struct accepted a = { 0 };
	struct starved s = { 0 };
	struct capture cap;
	struct rlimit saved, low;
	struct sockaddr_storage client;
	struct listener *l;
	double restored_at;
	char *log;
	int lfd, c, i, lowered;

	assert_true((lfd = listen_loopback(AF_INET)) >= 0);
	assert_non_null(l = listener_new(lp->base, lfd, "test-listener",
	    on_accept, &a));
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	capture_start(&cap);
	c = connect_to(lfd);		/* waits in the backlog */

	/* 1.8 s without a descriptor to accept with: tries at 0 and 1 s. */
	low = saved;
	low.rlim_cur = (rlim_t)lowest_free_fd();
	lowered = setrlimit(RLIMIT_NOFILE, &low) == 0;
	if (lowered)
		run_starved(lp, &cap, 1.8, &s);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	restored_at = now();
	log = capture_end(&cap);
	assert_true(lowered);
	assert_true(s.passes >= 0);

	assert_int_equal(a.n, 0);
	if (s.passes > 10 || s.errors > 3)
		fail_msg("out of descriptors for 1.8 s: %ld loop passes, the "
		    "log grew %d times: the listener spins", s.passes,
		    s.errors);
	/* The error path ran at once, then again a second later. */
	if (s.errors < 2)
		fail_msg("out of descriptors for 1.8 s: accept failed %d "
		    "times, want 2 (at 0 and 1 s)", s.errors);
	assert_true(s.error_at[0] < 0.3);
	if (s.error_at[1] - s.error_at[0] < 0.9 ||
	    s.error_at[1] - s.error_at[0] > 1.6)
		fail_msg("accept tried again %.3f s after it failed, not 1 s",
		    s.error_at[1] - s.error_at[0]);
	assert_int_equal(count_lines(log, "accept"), s.errors);
	assert_int_equal(count_lines(log, strerror(EMFILE)), s.errors);
	assert_int_equal(count_lines(log, "test-listener: accept"), s.errors);
	free(log);

	/* Descriptors again: the waiting connection is taken at the next
	 * try, within a second. */
	if (!loop_until(lp, &a.n, 1, WAIT_MAX))
		fail_msg("no connection accepted %.1f s after descriptors "
		    "were free again", WAIT_MAX);
	if (a.at - restored_at > 1.2)
		fail_msg("accepted %.3f s after descriptors were free again",
		    a.at - restored_at);
	client = local_address(c);
	assert_same_address(&a.peer[0], &client);
	/* And it goes on accepting as usual. */
	for (i = 0; i < 2; i++)
		close(connect_to(lfd));
	if (!loop_until(lp, &a.n, 3, WAIT_MAX))
		fail_msg("%d of 3 connections accepted", a.n);
	close(c);
	accepted_close(&a);
	listener_free(l);
}

/*
 * Every listener of a process runs out of descriptors at once (a relay
 * has one per worker and address): the pauses are logged at most once a
 * second in all, a line saying how many went unlogged.
 */
#define NLISTENERS 4

static void
test_many_listeners_log_once_a_second(void **state)
{
	struct loop *lp = *state;
	struct accepted a = { 0 };
	struct starved s = { 0 };
	struct capture cap;
	struct rlimit saved, low;
	struct listener *l[NLISTENERS];
	int lfd[NLISTENERS], c[NLISTENERS], i, lowered, lines;
	char *log;

	for (i = 0; i < NLISTENERS; i++) {
		assert_true((lfd[i] = listen_loopback(AF_INET)) >= 0);
		assert_non_null(l[i] = listener_new(lp->base, lfd[i],
		    "test-many", on_accept, &a));
	}
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	capture_start(&cap);
	for (i = 0; i < NLISTENERS; i++)
		c[i] = connect_to(lfd[i]);
	/* 2.5 s: each listener tries at 0, 1 and 2 s, 12 pauses in all. */
	low = saved;
	low.rlim_cur = (rlim_t)lowest_free_fd();
	lowered = setrlimit(RLIMIT_NOFILE, &low) == 0;
	if (lowered)
		run_starved(lp, &cap, 2.5, &s);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	log = capture_end(&cap);
	assert_true(lowered);
	assert_int_equal(a.n, 0);
	lines = count_lines(log, "test-many: accept");
	if (lines < 2 || lines > 3)
		fail_msg("%d listeners out of descriptors for 2.5 s logged %d "
		    "lines, want 2 or 3 (once a second):\n%s", NLISTENERS,
		    lines, log);
	assert_int_equal(count_lines(log, strerror(EMFILE)), lines);
	if (count_lines(log, "since the last such line") < 1)
		fail_msg("no line counts the pauses not logged:\n%s", log);
	free(log);
	if (!loop_until(lp, &a.n, NLISTENERS, WAIT_MAX))
		fail_msg("%d of %d connections accepted after the pause",
		    a.n, NLISTENERS);
	for (i = 0; i < NLISTENERS; i++) {
		close(c[i]);
		listener_free(l[i]);
	}
	accepted_close(&a);
}

/* --- freeing --- */

static void
test_free_closes_the_socket(void **state)
{
	struct loop *lp = *state;
	struct accepted a = { 0 };
	struct sockaddr_storage ss;
	struct listener *l;
	int lfd, c;

	assert_true((lfd = listen_loopback(AF_INET)) >= 0);
	ss = local_address(lfd);
	assert_non_null(l = listener_new(lp->base, lfd, "test", on_accept,
	    &a));
	listener_free(l);
	/* The listener owned the socket: closed, so the port is too. */
	assert_int_equal(fcntl(lfd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	assert_true((c = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(connect(c, (struct sockaddr *)&ss, sslen(&ss)), -1);
	assert_int_equal(errno, ECONNREFUSED);
	close(c);
	/* And the loop has nothing left of it to run. */
	assert_int_equal(event_base_loop(lp->base, EVLOOP_NONBLOCK), 1);
	assert_int_equal(a.n, 0);
}

static void
test_free_null(void **state)
{
	(void)state;
	listener_free(NULL);
}

/* --- what is not a listening socket is refused --- */

/* listener_new(fd) must fail: NULL, and fd closed. */
static void
new_fails(struct loop *lp, int fd, const char *what)
{
	struct accepted a = { 0 };
	struct listener *l;

	if ((l = listener_new(lp->base, fd, "test", on_accept, &a)) != NULL) {
		listener_free(l);
		fail_msg("listener_new accepted %s", what);
	}
	if (fd >= 0 && fcntl(fd, F_GETFD) != -1)
		fail_msg("listener_new left %s open", what);
}

static void
test_new_refuses_bad_descriptor(void **state)
{
	struct loop *lp = *state;
	int fd;

	/* A descriptor number that is not open. */
	assert_true((fd = dup(STDIN_FILENO)) >= 0);
	close(fd);
	new_fails(lp, fd, "a closed descriptor");
	new_fails(lp, -1, "descriptor -1");
}

static void
test_new_refuses_socket_not_listening(void **state)
{
	struct loop *lp = *state;
	int p[2], fd;

	assert_true((fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	new_fails(lp, fd, "a socket that does not listen");
	assert_int_equal(pipe(p), 0);
	close(p[1]);
	new_fails(lp, p[0], "a pipe");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_accepts_ipv4_with_peer_address, loop_open,
		    loop_close),
		cmocka_unit_test_setup_teardown(
		    test_accepts_ipv6_with_peer_address, loop_open,
		    loop_close),
		cmocka_unit_test_setup_teardown(
		    test_pauses_when_out_of_descriptors, loop_open,
		    loop_close),
		cmocka_unit_test_setup_teardown(
		    test_many_listeners_log_once_a_second, loop_open,
		    loop_close),
		cmocka_unit_test_setup_teardown(test_free_closes_the_socket,
		    loop_open, loop_close),
		cmocka_unit_test(test_free_null),
		cmocka_unit_test_setup_teardown(
		    test_new_refuses_bad_descriptor, loop_open, loop_close),
		cmocka_unit_test_setup_teardown(
		    test_new_refuses_socket_not_listening, loop_open,
		    loop_close),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
