/*
 * Unit tests for common/netaddr.c: "host:port" parsing, printable
 * addresses, listening sockets and two socket options.
 *
 * Parsing and printing need no socket.  The socket tests use loopback
 * only (127.0.0.1, and ::1 when the machine has it: they skip otherwise)
 * and ports the kernel picks (port 0); every wait for the network is a
 * poll() bounded in time.
 *
 * Read top to bottom: netaddr_parse_hostport (good addresses, then every
 * kind of bad one with the message the operator sees); netaddr_format
 * (IPv4, IPv6, IPv4-mapped IPv6 shown as IPv4); netaddr_listen (a
 * non-blocking listening socket on 127.0.0.1 and ::1, dual stack, a port
 * in use); netaddr_listen_n (sockets sharing one port, port 0 included,
 * refusing a port that something listens on already, even with
 * SO_REUSEPORT); netaddr_set_nodelay; netaddr_close_reset (the peer sees
 * ECONNRESET, where a plain close gives EOF).
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
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netaddr.h"

#define WAIT_MS 5000		/* longest wait for the network */

/* Fail with the message when err does not contain needle. */
#define assert_err_contains(err, needle) do {				\
	if (strstr((err), (needle)) == NULL)				\
		fail_msg("error \"%s\" does not contain \"%s\"",	\
		    (err), (needle));					\
} while (0)

/* --- netaddr_parse_hostport: good addresses --- */

/* Parse s with a host buffer of hostlen bytes; it must split into host
 * and port. */
static void
parse_ok_len(const char *s, size_t hostlen, const char *host, uint16_t port)
{
	char got[300], err[256] = "";
	uint16_t p = 0;

	assert_true(hostlen <= sizeof(got));
	if (netaddr_parse_hostport(s, got, hostlen, &p, err, sizeof(err)) != 0)
		fail_msg("'%s' refused: %s", s, err);
	assert_string_equal(got, host);
	assert_int_equal(p, port);
}

static void
parse_ok(const char *s, const char *host, uint16_t port)
{
	parse_ok_len(s, 256, host, port);
}

static void
test_parse_ipv4(void **state)
{
	(void)state;
	parse_ok("127.0.0.1:4433", "127.0.0.1", 4433);
	parse_ok("0.0.0.0:80", "0.0.0.0", 80);
	parse_ok("203.0.113.7:22", "203.0.113.7", 22);
}

static void
test_parse_names(void **state)
{
	(void)state;
	parse_ok("localhost:4433", "localhost", 4433);
	parse_ok("relay.example.com:443", "relay.example.com", 443);
	parse_ok("a:1", "a", 1);
}

static void
test_parse_bracketed_ipv6(void **state)
{
	(void)state;
	parse_ok("[::1]:4433", "::1", 4433);
	parse_ok("[2001:db8::7]:443", "2001:db8::7", 443);
	parse_ok("[::ffff:10.1.2.3]:80", "::ffff:10.1.2.3", 80);
	parse_ok("[fe80::1%eth0]:22", "fe80::1%eth0", 22);
	parse_ok("[::]:1", "::", 1);
}

static void
test_parse_extreme_ports(void **state)
{
	(void)state;
	parse_ok("h:1", "h", 1);
	parse_ok("h:65535", "h", 65535);
	parse_ok("[::1]:65535", "::1", 65535);
	parse_ok("h:00080", "h", 80);		/* decimal, leading zeros */
}

/* The longest host that fits the buffer (its length + NUL), and one
 * byte more. */
static void
test_parse_host_that_just_fits(void **state)
{
	char name[64], s[80];

	(void)state;
	memset(name, 'a', 15);
	name[15] = '\0';
	snprintf(s, sizeof(s), "%s:80", name);
	parse_ok_len(s, 16, name, 80);
	snprintf(s, sizeof(s), "[%s]:80", "1:2:3:4:5:6:7:8");	/* 15 */
	parse_ok_len(s, 16, "1:2:3:4:5:6:7:8", 80);
}

/* --- netaddr_parse_hostport: bad addresses --- */

/* Parse s, which must be refused with a message holding needle (and the
 * input), and leave host and port alone. */
static void
parse_fails_len(const char *s, size_t hostlen, const char *needle)
{
	char host[300], err[512] = "";
	uint16_t port = 7;

	assert_true(hostlen <= sizeof(host));
	strcpy(host, "untouched");
	if (netaddr_parse_hostport(s, host, hostlen, &port, err, sizeof(err))
	    != -1)
		fail_msg("'%s' accepted: host '%s', port %u", s, host, port);
	assert_err_contains(err, needle);
	assert_err_contains(err, s);
	assert_string_equal(host, "untouched");
	assert_int_equal(port, 7);
}

static void
parse_fails(const char *s, const char *needle)
{
	parse_fails_len(s, 256, needle);
}

static void
test_parse_bad_empty(void **state)
{
	(void)state;
	parse_fails("", "expected host:port");
	parse_fails(":80", "empty host");
	parse_fails("[]:80", "empty host");
	parse_fails(":", "empty host");
}

static void
test_parse_bad_missing_port(void **state)
{
	(void)state;
	parse_fails("localhost", "expected host:port");
	parse_fails("127.0.0.1", "expected host:port");
	parse_fails("localhost:", "port is not a number");
	parse_fails("[::1]", "expected [ipv6]:port");
	parse_fails("[::1]:", "port is not a number");
}

static void
test_parse_bad_ports(void **state)
{
	(void)state;
	parse_fails("h:0", "port is not a number (1-65535)");
	parse_fails("h:00", "port is not a number");
	parse_fails("h:65536", "port is not a number");
	parse_fails("h:99999", "port is not a number");
	parse_fails("h:4294967297", "port is not a number");	/* 2^32+1 */
	parse_fails("h:99999999999999999999999", "port is not a number");
	parse_fails("[::1]:0", "port is not a number");
	parse_fails("[::1]:65536", "port is not a number");
}

/* What strtoul would take but a port is not. */
static void
test_parse_bad_port_junk(void **state)
{
	(void)state;
	parse_fails("h:80x", "port is not a number");
	parse_fails("h:8 0", "port is not a number");
	parse_fails("h: 80", "port is not a number");
	parse_fails("h:+80", "port is not a number");
	parse_fails("h:-1", "port is not a number");
	parse_fails("h:0x50", "port is not a number");
	parse_fails("h:https", "port is not a number");
	parse_fails("h:80 ", "port is not a number");
}

static void
test_parse_bad_unbracketed_ipv6(void **state)
{
	(void)state;
	parse_fails("::1:80", "IPv6 addresses go in brackets");
	parse_fails("2001:db8::7:443", "IPv6 addresses go in brackets");
	parse_fails("a:b:80", "IPv6 addresses go in brackets");
}

static void
test_parse_bad_unbalanced_brackets(void **state)
{
	(void)state;
	parse_fails("[::1:80", "expected [ipv6]:port");
	parse_fails("[::1", "expected [ipv6]:port");
	parse_fails("[", "expected [ipv6]:port");
	parse_fails("::1]:80", "IPv6 addresses go in brackets");
	parse_fails("[::1]]:80", "expected [ipv6]:port");
	parse_fails("[::1]80", "expected [ipv6]:port");
	parse_fails("[::1]x:80", "expected [ipv6]:port");
	parse_fails("x[::1]:80", "IPv6 addresses go in brackets");
	/* A bracket in what would be the host. */
	parse_fails("[[::1]:80", "unbalanced brackets");
	parse_fails("[a[b]:80", "unbalanced brackets");
	parse_fails("relay]:80", "unbalanced brackets");
	parse_fails("re[lay:80", "unbalanced brackets");
	parse_fails("]:80", "unbalanced brackets");
	parse_fails("[:80", "expected [ipv6]:port");
}

static void
test_parse_bad_too_long_host(void **state)
{
	char name[300], s[320];

	(void)state;
	memset(name, 'a', 16);
	name[16] = '\0';
	snprintf(s, sizeof(s), "%s:80", name);
	parse_fails_len(s, 16, "too long a host");
	snprintf(s, sizeof(s), "[%s]:80", "1:2:3:4:5:6:7:8a");	/* 16 */
	parse_fails_len(s, 16, "too long a host");
	/* A name longer than any DNS name, with a big enough buffer for
	 * the message. */
	memset(name, 'b', 299);
	name[299] = '\0';
	snprintf(s, sizeof(s), "%s:80", name);
	parse_fails_len(s, 256, "too long a host");
}

/* --- netaddr_format --- */

static struct sockaddr_in
sin4(const char *ip, uint16_t port)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
	return sin;
}

static struct sockaddr_in6
sin6(const char *ip, uint16_t port)
{
	struct sockaddr_in6 s6;

	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	s6.sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &s6.sin6_addr), 1);
	return s6;
}

static void
format_is(const void *sa, const char *want)
{
	char buf[NETADDR_STRLEN];

	memset(buf, 'x', sizeof(buf));
	netaddr_format(sa, buf);
	assert_string_equal(buf, want);
}

static void
test_format_ipv4(void **state)
{
	struct sockaddr_in a = sin4("127.0.0.1", 4433);
	struct sockaddr_in b = sin4("255.255.255.255", 65535);
	struct sockaddr_in c = sin4("0.0.0.0", 0);

	(void)state;
	format_is(&a, "127.0.0.1:4433");
	format_is(&b, "255.255.255.255:65535");
	format_is(&c, "0.0.0.0:0");
}

static void
test_format_ipv6(void **state)
{
	struct sockaddr_in6 a = sin6("::1", 4433);
	struct sockaddr_in6 b = sin6("2001:0db8:0000:0000:0000:0000:0000:0007",
	    443);
	struct sockaddr_in6 c = sin6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	    65535);
	struct sockaddr_in6 d = sin6("::", 0);

	(void)state;
	format_is(&a, "[::1]:4433");
	format_is(&b, "[2001:db8::7]:443");
	format_is(&c, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
	format_is(&d, "[::]:0");
}

/* What a dual-stack socket's accept() gives for an IPv4 peer. */
static void
test_format_ipv4_mapped_ipv6_as_ipv4(void **state)
{
	struct sockaddr_in6 a = sin6("::ffff:10.1.2.3", 40000);
	struct sockaddr_in6 b = sin6("::ffff:127.0.0.1", 1);
	struct sockaddr_in6 c = sin6("::ffff:255.255.255.255", 65535);
	/* IPv4-compatible (deprecated), not mapped: stays IPv6. */
	struct sockaddr_in6 d = sin6("::10.1.2.3", 80);

	(void)state;
	format_is(&a, "10.1.2.3:40000");
	format_is(&b, "127.0.0.1:1");
	format_is(&c, "255.255.255.255:65535");
	format_is(&d, "[::10.1.2.3]:80");
}

static void
test_format_other_family(void **state)
{
	struct sockaddr sa;

	(void)state;
	memset(&sa, 0, sizeof(sa));
	sa.sa_family = AF_UNIX;
	format_is(&sa, "(family 1)");
}

/* --- sockets: helpers --- */

/* The loopback address of family af, port 0. */
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

static uint16_t
port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static void
set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* The address fd is bound to. */
static struct sockaddr_storage
local_address(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	return ss;
}

/* Skip the test when the machine has no IPv6 loopback. */
static void
need_ipv6_loopback(void)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(AF_INET6, &ss);
	int fd, ok;

	if ((fd = socket(AF_INET6, SOCK_STREAM, 0)) == -1)
		skip();
	ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
	close(fd);
	if (!ok)
		skip();
}

static int
sockopt(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
	return v;
}

/* Wait until fd polls for events; returns the revents (0: timed out). */
static short
wait_for(int fd, short events)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int n;

	do
		n = poll(&pfd, 1, WAIT_MS);
	while (n == -1 && errno == EINTR);
	assert_true(n >= 0);
	return n == 0 ? 0 : pfd.revents;
}

/* A blocking client socket connected to ss. */
static int
connect_to(const struct sockaddr_storage *ss)
{
	socklen_t len = ss->ss_family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	int fd;

	assert_true((fd = socket(ss->ss_family, SOCK_STREAM, 0)) >= 0);
	if (connect(fd, (const struct sockaddr *)ss, len) != 0)
		fail_msg("connect: %s", strerror(errno));
	return fd;
}

/*
 * fd is a listening, non-blocking, close-on-exec TCP socket with
 * SO_REUSEADDR, on a port of its own: accept() says EAGAIN at once when
 * nobody connects.
 */
static void
assert_listen_socket(int fd)
{
	struct sockaddr_storage ss;

	assert_true(fd >= 0);
	ss = local_address(fd);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(sockopt(fd, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
	assert_int_equal(sockopt(fd, SOL_SOCKET, SO_ACCEPTCONN), 1);
	assert_int_equal(sockopt(fd, SOL_SOCKET, SO_REUSEADDR), 1);
	assert_int_not_equal(port_of(&ss), 0);
	assert_int_equal(accept(fd, NULL, NULL), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

/* A connection made to the address fd listens on is accepted on fd. */
static void
assert_accepts(int fd)
{
	struct sockaddr_storage ss = local_address(fd);
	int c, s;

	c = connect_to(&ss);
	assert_true(wait_for(fd, POLLIN) & POLLIN);
	assert_true((s = accept(fd, NULL, NULL)) >= 0);
	close(s);
	close(c);
}

static void
assert_listening(int fd)
{
	assert_listen_socket(fd);
	assert_accepts(fd);
}

/* --- netaddr_listen --- */

static void
test_listen_ipv4_loopback(void **state)
{
	struct sockaddr_storage ss, got;
	socklen_t len = loopback(AF_INET, &ss);
	char err[256] = "";
	int fd;

	(void)state;
	if ((fd = netaddr_listen((struct sockaddr *)&ss, len, 0, err,
	    sizeof(err))) == -1)
		fail_msg("netaddr_listen: %s", err);
	assert_listening(fd);
	got = local_address(fd);
	assert_int_equal(got.ss_family, AF_INET);
	assert_int_equal(((struct sockaddr_in *)&got)->sin_addr.s_addr,
	    htonl(INADDR_LOOPBACK));
	close(fd);
}

static void
test_listen_ipv6_loopback(void **state)
{
	struct sockaddr_storage ss, got;
	socklen_t len = loopback(AF_INET6, &ss);
	char err[256] = "";
	int fd;

	(void)state;
	need_ipv6_loopback();
	if ((fd = netaddr_listen((struct sockaddr *)&ss, len, 0, err,
	    sizeof(err))) == -1)
		fail_msg("netaddr_listen: %s", err);
	assert_listening(fd);
	assert_int_equal(sockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY), 1);
	got = local_address(fd);
	assert_int_equal(got.ss_family, AF_INET6);
	assert_true(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&got)->
	    sin6_addr));
	close(fd);
}

/*
 * dual_stack turns IPV6_V6ONLY off.  Linux sets it again when an IPv6
 * socket binds a specific IPv6 address, so the test binds the IPv4-mapped
 * ::ffff:127.0.0.1 (loopback still), which only a dual-stack socket may:
 * an IPv4 client reaches it, and its address is shown as IPv4.
 */
static void
test_listen_dual_stack_takes_ipv4(void **state)
{
	struct sockaddr_in6 mapped = sin6("::ffff:127.0.0.1", 0);
	struct sockaddr_storage ss, peer;
	struct sockaddr_in to = sin4("127.0.0.1", 0);
	socklen_t plen = sizeof(peer);
	char err[256] = "", name[NETADDR_STRLEN], want[NETADDR_STRLEN];
	int fd, c, s;

	(void)state;
	if ((fd = socket(AF_INET6, SOCK_STREAM, 0)) == -1)
		skip();				/* no IPv6 at all */
	close(fd);
	/* Not dual-stack: IPv6 only, no IPv4-mapped address. */
	assert_int_equal(netaddr_listen((struct sockaddr *)&mapped,
	    sizeof(mapped), 0, err, sizeof(err)), -1);
	assert_err_contains(err, "cannot listen on 127.0.0.1:0: ");

	if ((fd = netaddr_listen((struct sockaddr *)&mapped, sizeof(mapped),
	    1, err, sizeof(err))) == -1)
		fail_msg("netaddr_listen: %s", err);
	assert_listen_socket(fd);
	assert_int_equal(sockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY), 0);
	ss = local_address(fd);
	assert_int_equal(ss.ss_family, AF_INET6);
	to.sin_port = htons(port_of(&ss));

	assert_true((c = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(connect(c, (struct sockaddr *)&to, sizeof(to)), 0);
	assert_true(wait_for(fd, POLLIN) & POLLIN);
	assert_true((s = accept(fd, (struct sockaddr *)&peer, &plen)) >= 0);
	assert_int_equal(peer.ss_family, AF_INET6);
	assert_true(IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&peer)->
	    sin6_addr));
	netaddr_format((struct sockaddr *)&peer, name);
	ss = local_address(c);
	snprintf(want, sizeof(want), "127.0.0.1:%u", port_of(&ss));
	assert_string_equal(name, want);
	close(s);
	close(c);
	close(fd);
}

static void
test_listen_refuses_port_in_use(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(AF_INET, &ss);
	char err[256] = "", want[64];
	int fd, fd2;

	(void)state;
	if ((fd = netaddr_listen((struct sockaddr *)&ss, len, 0, err,
	    sizeof(err))) == -1)
		fail_msg("netaddr_listen: %s", err);
	ss = local_address(fd);
	fd2 = netaddr_listen((struct sockaddr *)&ss, len, 0, err,
	    sizeof(err));
	if (fd2 != -1)
		fail_msg("a second socket listens on port %u", port_of(&ss));
	snprintf(want, sizeof(want), "cannot listen on 127.0.0.1:%u: ",
	    port_of(&ss));
	assert_err_contains(err, want);
	assert_err_contains(err, strerror(EADDRINUSE));
	close(fd);
}

/* An address that is not the machine's (TEST-NET-1: bind only, nothing is
 * sent). */
static void
test_listen_refuses_foreign_address(void **state)
{
	struct sockaddr_in sin = sin4("192.0.2.1", 0);
	char err[256] = "";

	(void)state;
	assert_int_equal(netaddr_listen((struct sockaddr *)&sin, sizeof(sin),
	    0, err, sizeof(err)), -1);
	assert_err_contains(err, "cannot listen on 192.0.2.1:0: ");
	assert_err_contains(err, strerror(EADDRNOTAVAIL));
}

/* --- netaddr_listen_n --- */

#define N_SOCKETS 3

/* Connect to fds[0]'s address count times: every connection is accepted
 * by one of the n sockets. */
static void
assert_group_accepts(const int *fds, unsigned n, int count)
{
	struct sockaddr_storage ss = local_address(fds[0]);
	struct pollfd pfd[N_SOCKETS];
	int c, s, k, accepted;
	unsigned i;

	assert_true(n <= N_SOCKETS);
	for (k = 0; k < count; k++) {
		c = connect_to(&ss);
		for (i = 0; i < n; i++)
			pfd[i] = (struct pollfd){ .fd = fds[i],
			    .events = POLLIN };
		assert_true(poll(pfd, n, WAIT_MS) > 0);
		for (i = 0, accepted = 0; i < n; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			if ((s = accept(fds[i], NULL, NULL)) >= 0) {
				close(s);
				accepted++;
			}
		}
		assert_int_equal(accepted, 1);
		close(c);
	}
}

/* n sockets on ss from netaddr_listen_n: each listening, all on one port
 * (returned), with SO_REUSEPORT when n > 1, and they take connections. */
static uint16_t
listen_n_ok(struct sockaddr_storage *ss, socklen_t len, int *fds, unsigned n)
{
	struct sockaddr_storage got;
	char err[256] = "";
	uint16_t port = 0;
	unsigned i;

	if (netaddr_listen_n((struct sockaddr *)ss, len, fds, n, err,
	    sizeof(err)) != 0)
		fail_msg("netaddr_listen_n(%u): %s", n, err);
	for (i = 0; i < n; i++) {
		assert_listen_socket(fds[i]);
		got = local_address(fds[i]);
		assert_int_equal(got.ss_family, ss->ss_family);
		if (i == 0)
			port = port_of(&got);
		else if (port_of(&got) != port)
			fail_msg("socket %u listens on port %u, socket 0 on "
			    "%u", i, port_of(&got), port);
		if (n > 1)
			assert_int_equal(sockopt(fds[i], SOL_SOCKET,
			    SO_REUSEPORT), 1);
		if (ss->ss_family == AF_INET6)
			assert_int_equal(sockopt(fds[i], IPPROTO_IPV6,
			    IPV6_V6ONLY), 1);
	}
	assert_group_accepts(fds, n, 8);
	return port;
}

/* A port the kernel picks (port 0), free again: the test binds and
 * closes a socket on it. */
static uint16_t
free_port(int af)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(af, &ss);
	uint16_t port;
	int fd;

	assert_true((fd = socket(af, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
	ss = local_address(fd);
	port = port_of(&ss);
	close(fd);
	return port;
}

static void
close_all(int *fds, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		close(fds[i]);
}

static void
test_listen_n_one_socket(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(AF_INET, &ss);
	int fd;

	(void)state;
	(void)listen_n_ok(&ss, len, &fd, 1);
	close(fd);
}

static void
test_listen_n_share_a_port_ipv4(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(AF_INET, &ss);
	uint16_t port = free_port(AF_INET);
	int fds[N_SOCKETS];

	(void)state;
	set_port(&ss, port);
	assert_int_equal(listen_n_ok(&ss, len, fds, N_SOCKETS), port);
	close_all(fds, N_SOCKETS);
}

static void
test_listen_n_share_a_port_ipv6(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(AF_INET6, &ss);
	uint16_t port;
	int fds[N_SOCKETS];

	(void)state;
	need_ipv6_loopback();
	port = free_port(AF_INET6);
	set_port(&ss, port);
	assert_int_equal(listen_n_ok(&ss, len, fds, N_SOCKETS), port);
	close_all(fds, N_SOCKETS);
}

/* Port 0: the kernel picks one port, which every socket shares. */
static void
test_listen_n_port_zero_shares_one_port(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(AF_INET, &ss);
	int fds[N_SOCKETS];

	(void)state;
	assert_int_not_equal(listen_n_ok(&ss, len, fds, N_SOCKETS), 0);
	close_all(fds, N_SOCKETS);
}

/* Something listens on the port already: n sockets are refused, and so
 * is one. */
static void
test_listen_n_refuses_port_in_use(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(AF_INET, &ss);
	char err[256] = "", want[64];
	int fd, fds[N_SOCKETS];

	(void)state;
	if ((fd = netaddr_listen((struct sockaddr *)&ss, len, 0, err,
	    sizeof(err))) == -1)
		fail_msg("netaddr_listen: %s", err);
	ss = local_address(fd);
	snprintf(want, sizeof(want), "cannot listen on 127.0.0.1:%u: ",
	    port_of(&ss));
	err[0] = '\0';
	assert_int_equal(netaddr_listen_n((struct sockaddr *)&ss, len, fds,
	    N_SOCKETS, err, sizeof(err)), -1);
	assert_err_contains(err, want);
	assert_err_contains(err, strerror(EADDRINUSE));
	err[0] = '\0';
	assert_int_equal(netaddr_listen_n((struct sockaddr *)&ss, len, fds, 1,
	    err, sizeof(err)), -1);
	assert_err_contains(err, strerror(EADDRINUSE));
	close(fd);
}

/*
 * The case the probe is there for: another program listens on the port
 * with SO_REUSEPORT (another relay, say).  Sockets with SO_REUSEPORT
 * could join it and share its connections; netaddr_listen_n refuses.
 */
static void
test_listen_n_refuses_port_shared_with_reuseport(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(AF_INET, &ss);
	char err[256] = "";
	int fd, one = 1, fds[N_SOCKETS];

	(void)state;
	assert_true((fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof(one)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
	    sizeof(one)), 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
	assert_int_equal(listen(fd, 16), 0);
	ss = local_address(fd);
	if (netaddr_listen_n((struct sockaddr *)&ss, len, fds, N_SOCKETS, err,
	    sizeof(err)) != -1) {
		close_all(fds, N_SOCKETS);
		close(fd);
		fail_msg("%u sockets joined a port another program listens "
		    "on with SO_REUSEPORT", N_SOCKETS);
	}
	assert_err_contains(err, strerror(EADDRINUSE));
	close(fd);
}

/* --- netaddr_set_nodelay --- */

static void
test_set_nodelay(void **state)
{
	int fd, p[2];

	(void)state;
	assert_true((fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_NODELAY), 0);
	assert_int_equal(netaddr_set_nodelay(fd), 0);
	assert_int_not_equal(sockopt(fd, IPPROTO_TCP, TCP_NODELAY), 0);
	close(fd);
	/* Not a TCP socket: -1. */
	assert_int_equal(pipe(p), 0);
	assert_int_equal(netaddr_set_nodelay(p[0]), -1);
	close(p[0]);
	close(p[1]);
	assert_int_equal(netaddr_set_nodelay(-1), -1);
}

/* --- netaddr_close_reset --- */

/* A connected pair over 127.0.0.1; *a is the accepted end. */
static void
tcp_pair(int *a, int *b)
{
	struct sockaddr_storage ss;
	socklen_t len = loopback(AF_INET, &ss);
	char err[256] = "";
	int lfd;

	if ((lfd = netaddr_listen((struct sockaddr *)&ss, len, 0, err,
	    sizeof(err))) == -1)
		fail_msg("netaddr_listen: %s", err);
	ss = local_address(lfd);
	*b = connect_to(&ss);
	assert_true(wait_for(lfd, POLLIN) & POLLIN);
	assert_true((*a = accept(lfd, NULL, NULL)) >= 0);
	close(lfd);
}

/* What the peer's next recv() says once the other end is closed: 0 for
 * an orderly end, else -errno. */
static int
peer_sees(int fd)
{
	char c;
	ssize_t n;

	if (wait_for(fd, POLLIN) == 0)
		fail_msg("the peer heard nothing in %d ms", WAIT_MS);
	n = recv(fd, &c, 1, MSG_DONTWAIT);
	assert_true(n <= 0);
	return n == 0 ? 0 : -errno;
}

static void
test_close_reset_peer_sees_econnreset(void **state)
{
	int a, b;

	(void)state;
	tcp_pair(&a, &b);
	netaddr_close_reset(a);
	assert_int_equal(peer_sees(b), -ECONNRESET);
	close(b);

	/* The other way round: the connecting end resets. */
	tcp_pair(&a, &b);
	netaddr_close_reset(b);
	assert_int_equal(peer_sees(a), -ECONNRESET);
	close(a);
}

/* The contrast: a plain close() is an orderly end. */
static void
test_plain_close_peer_sees_eof(void **state)
{
	int a, b;

	(void)state;
	tcp_pair(&a, &b);
	close(a);
	assert_int_equal(peer_sees(b), 0);
	close(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_ipv4),
		cmocka_unit_test(test_parse_names),
		cmocka_unit_test(test_parse_bracketed_ipv6),
		cmocka_unit_test(test_parse_extreme_ports),
		cmocka_unit_test(test_parse_host_that_just_fits),
		cmocka_unit_test(test_parse_bad_empty),
		cmocka_unit_test(test_parse_bad_missing_port),
		cmocka_unit_test(test_parse_bad_ports),
		cmocka_unit_test(test_parse_bad_port_junk),
		cmocka_unit_test(test_parse_bad_unbracketed_ipv6),
		cmocka_unit_test(test_parse_bad_unbalanced_brackets),
		cmocka_unit_test(test_parse_bad_too_long_host),
		cmocka_unit_test(test_format_ipv4),
		cmocka_unit_test(test_format_ipv6),
		cmocka_unit_test(test_format_ipv4_mapped_ipv6_as_ipv4),
		cmocka_unit_test(test_format_other_family),
		cmocka_unit_test(test_listen_ipv4_loopback),
		cmocka_unit_test(test_listen_ipv6_loopback),
		cmocka_unit_test(test_listen_dual_stack_takes_ipv4),
		cmocka_unit_test(test_listen_refuses_port_in_use),
		cmocka_unit_test(test_listen_refuses_foreign_address),
		cmocka_unit_test(test_listen_n_one_socket),
		cmocka_unit_test(test_listen_n_share_a_port_ipv4),
		cmocka_unit_test(test_listen_n_share_a_port_ipv6),
		cmocka_unit_test(test_listen_n_port_zero_shares_one_port),
		cmocka_unit_test(test_listen_n_refuses_port_in_use),
		cmocka_unit_test(test_listen_n_refuses_port_shared_with_reuseport),
		cmocka_unit_test(test_set_nodelay),
		cmocka_unit_test(test_close_reset_peer_sees_econnreset),
		cmocka_unit_test(test_plain_close_peer_sees_eof),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
