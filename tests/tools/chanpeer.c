/*
 * chanpeer: one raw, authenticated channel to the relay, driven line by
 * line from standard input.  A test tool: the integration tests use it
 * (through tests/integration/chanpeer.py) to play an entry-point or a
 * reverse-proxy that sends exactly the bytes a test wants, in the TLS
 * records it wants, which the real daemons never would.
 *
 *   chanpeer -s HOST:PORT -c CERT -a PRIVKEY --role entry|reverse -g GROUP
 *       [--after-auth HEX] [--timeout SECONDS] [--hold]
 *       [--rcvbuf BYTES] [--sndbuf BYTES] [--hex-max N] [-b ADDR]
 *
 *   -s HOST:PORT       the relay ("[v6]:port" for IPv6)
 *   -c CERT            the relay's certificate, the only one trusted; it must
 *                      name HOST, as the daemons check
 *   -a PRIVKEY         ed25519 private key (PEM, mode 0600), as the daemons'
 *   --role R           entry or reverse: the role in AUTH
 *   -g GROUP           the group in AUTH
 *   --after-auth HEX   bytes sent right behind AUTH in the same SSL_write,
 *                      so in the same TLS record
 *   --timeout SECONDS  the whole life of the tool (default 30); when it is
 *                      up it prints "timeout" and exits 3
 *   --hold             after the TCP connect, wait for a line "go" before
 *                      the TLS handshake (so that a test can look where the
 *                      relay put the connection first)
 *   --rcvbuf, --sndbuf SO_RCVBUF / SO_SNDBUF of the socket, set before
 *                      connecting (0: the system's default)
 *   --hex-max N        print at most N payload bytes of a frame (default:
 *                      all); a cut payload ends in "..."
 *   -b ADDR            connect from this local address (an IP literal of
 *                      the relay's family, e.g. 127.0.0.2 on loopback)
 *
 * What it does: connects, prints "connected LOCAL" (its own address as
 * the relay logs it, "127.0.0.1:PORT"), completes TLS 1.3, sends AUTH
 * signed over the TLS exporter (as common/pool.c does) with --after-auth
 * appended, then runs commands from standard input, one per line, in
 * order (a command that writes waits until the write before it is done):
 *
 *   send HEX           raw bytes, one SSL_write
 *   frame TYPE HEX     one frame (type as a decimal number, payload in hex,
 *                      which may be empty), one SSL_write
 *   flood BYTES MS     DATA frames of 16381 bytes, one SSL_write each, until
 *                      BYTES payload bytes are written ("flooded N done") or
 *                      no write completed for MS milliseconds ("flooded N
 *                      stalled": the relay stopped reading; the frame being
 *                      written stays pending and goes out when it can)
 *   repeat COUNT HEX   the raw bytes HEX COUNT times, one SSL_write each
 *                      (so one TLS record each, up to 16 KiB); then prints
 *                      "repeated N" (N: the writes done, fewer than COUNT
 *                      when a write failed)
 *   shutdown           close_notify, then shutdown(SHUT_WR)
 *   abort              close the socket with SO_LINGER 0 (a TCP RST, no
 *                      close_notify), print "aborted" and exit 0
 *   pause, resume      stop / start reading the socket (no SSL_read while
 *                      paused, so the peer's writes back up)
 *   partial            print "partial HEX": received bytes of a frame not
 *                      yet complete
 *   digest             print "digest N SHA256": the number of DATA payload
 *                      bytes received so far and the SHA-256 of them all,
 *                      in order (with --hex-max 0, a long stream is checked
 *                      without printing it)
 *   quit               exit 0
 *
 * It prints one line per event on standard output (line-buffered):
 *
 *   connected LOCAL     TCP connected
 *   auth CODE           the AUTH_RESULT (its code: 0 is ok)
 *   frame TYPE LEN HEX  every other whole frame received (no HEX when empty)
 *   flooded N done|stalled
 *   repeated N
 *   aborted
 *   paused, resumed     a pause or resume command took effect
 *   partial HEX
 *   digest N SHA256
 *   write-error REASON  a write failed (later writes are dropped; reading
 *                       goes on, to see how the relay closed)
 *   closed REASON       the relay closed the channel: "eof", "reset", or an
 *                       error; then the tool exits 0.  If part of a frame was
 *                       left, "(N bytes of an unfinished frame: HEX)" follows.
 *   timeout             --timeout passed; exit 3
 *
 * It exits 0 when standard input ends (once the commands before the end
 * are done) or the channel closes, 1
 * when it cannot connect or authenticate, 2 on a bad option.  Messages go
 * to standard error.  Plain non-blocking OpenSSL with poll(); every wait
 * ends at the deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "auth.h"
#include "frame.h"
#include "netaddr.h"
#include "tls.h"

#define PROG "chanpeer"
#define FLOOD_CHUNK 16381		/* DATA payload of one whole record */
#define INBUF_SIZE (256 * 1024)		/* > the largest frame, 3 + 65535 */
#define LINE_MAX_LEN (2 * 70000)	/* a command: hex of a big frame */
#define UNIT_MAX (FRAME_HEADER_LEN + 65535 + 70000)

static SSL *ssl;
static int fd = -1;
static double deadline;
static long hex_max = -1;		/* -1: all */

/* Received bytes not yet printed as frames. */
static uint8_t inbuf[INBUF_SIZE];
static size_t inlen;
static int got_auth;
/* Every DATA payload received, hashed in order (the digest command). */
static crypto_hash_sha256_state data_hash;
static unsigned long long data_bytes;

/* Standard input, split into lines. */
static char lines[LINE_MAX_LEN + 1];
static size_t linelen;
static int stdin_eof;

/* The one write in progress: SSL_write must be retried with the same
 * buffer until it is done. */
static uint8_t unit[UNIT_MAX];
static size_t unit_len;
static int unit_pending;
static int unit_is_flood;
static int unit_is_repeat;
static int write_dead;		/* a write failed: drop the others */
static int shut_pending;		/* "shutdown" waits for the unit */

static int reading = 1;
static int flooding;
static unsigned long long flood_goal, flood_sent;
static double flood_stall, flood_last;
static int repeating;
static unsigned long long repeat_left, repeat_done;

static void die(const char *, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void closed(const char *) __attribute__((noreturn));
static void usage(void) __attribute__((noreturn));

static void
usage(void)
{
	fprintf(stderr, "usage: " PROG " -s HOST:PORT -c CERT -a PRIVKEY "
	    "--role entry|reverse -g GROUP [--after-auth HEX]\n"
	    "       [--timeout SECONDS] [--hold] [--rcvbuf BYTES] "
	    "[--sndbuf BYTES] [--hex-max N] [-b ADDR]\n");
	exit(2);
}

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs(PROG ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

/* One event line on stdout; a reader that went away ends the tool. */
static void
emit(const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vprintf(fmt, ap);
	va_end(ap);
	if (r < 0 || putchar('\n') == EOF || fflush(stdout) == EOF)
		exit(1);
}

static void
emit_hex_part(const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char buf[512];
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		buf[k++] = digits[p[i] >> 4];
		buf[k++] = digits[p[i] & 15];
		if (k == sizeof(buf)) {
			if (fwrite(buf, 1, k, stdout) != k)
				exit(1);
			k = 0;
		}
	}
	if (k > 0 && fwrite(buf, 1, k, stdout) != k)
		exit(1);
}

/* "WORD HEX" (HEX cut at --hex-max) and a newline. */
static void
emit_with_hex(const char *word, const uint8_t *p, size_t n, int cut)
{
	size_t shown = n;

	if (cut && hex_max >= 0 && (size_t)hex_max < n)
		shown = (size_t)hex_max;
	if (fputs(word, stdout) == EOF)
		exit(1);
	if (n > 0 && putchar(' ') == EOF)
		exit(1);
	emit_hex_part(p, shown);
	if (shown < n && fputs("...", stdout) == EOF)
		exit(1);
	if (putchar('\n') == EOF || fflush(stdout) == EOF)
		exit(1);
}

static double
now(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		die("clock_gettime: %s", strerror(errno));
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
check_deadline(void)
{
	if (now() >= deadline) {
		emit("timeout");
		exit(3);
	}
}

/* Milliseconds left, for poll (at least 1 so that it does not spin). */
static int
ms_left(double until)
{
	double left = (until - now()) * 1000.0;

	if (left < 1)
		return 1;
	if (left > 60000)
		return 60000;
	return (int)left;
}

static const char *
ssl_reason(void)
{
	static char buf[256];
	unsigned long e = ERR_get_error();

	if (e == 0)
		return "unknown TLS error";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode hex s into out (room for max).  Returns the length or -1. */
static long
hex_decode(const char *s, uint8_t *out, size_t max)
{
	size_t n = strlen(s), i;
	int hi, lo;

	if (n % 2 != 0 || n / 2 > max)
		return -1;
	for (i = 0; i < n / 2; i++) {
		if ((hi = hexval((unsigned char)s[2 * i])) == -1 ||
		    (lo = hexval((unsigned char)s[2 * i + 1])) == -1)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return (long)(n / 2);
}

static int
parse_ulong(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	unsigned long long v;

	if (*s == '\0' || *s == '-')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = v;
	return 0;
}

/* ---- the channel ---------------------------------------------------- */

/* Print every whole frame in inbuf, keep the rest. */
static void
parse_frames(void)
{
	size_t off = 0, len;
	char word[64];

	while (inlen - off >= FRAME_HEADER_LEN) {
		uint8_t type = inbuf[off];
		len = (size_t)inbuf[off + 1] << 8 | inbuf[off + 2];
		if (inlen - off < FRAME_HEADER_LEN + len)
			break;
		if (type == FRAME_AUTH_RESULT && !got_auth) {
			got_auth = 1;
			emit("auth %d", len >= 2 ? inbuf[off + 4] : -1);
		} else {
			if (type == FRAME_DATA) {
				(void)crypto_hash_sha256_update(&data_hash,
				    inbuf + off + FRAME_HEADER_LEN, len);
				data_bytes += len;
			}
			snprintf(word, sizeof(word), "frame %u %zu", type, len);
			emit_with_hex(word, inbuf + off + FRAME_HEADER_LEN,
			    len, 1);
		}
		off += FRAME_HEADER_LEN + len;
	}
	if (off > 0) {
		memmove(inbuf, inbuf + off, inlen - off);
		inlen -= off;
	}
}

static void
closed(const char *why)
{
	if (inlen > 0) {
		if (printf("closed %s (%zu bytes of an unfinished frame: ",
		    why, inlen) < 0)
			exit(1);
		emit_hex_part(inbuf, inlen);
		emit(")");
	} else {
		emit("closed %s", why);
	}
	exit(0);
}

/* Read what the socket has (and OpenSSL holds), print the frames. */
static void
channel_read(void)
{
	int n, e;

	while (reading) {
		n = SSL_read(ssl, inbuf + inlen, (int)(sizeof(inbuf) - inlen));
		if (n > 0) {
			inlen += (size_t)n;
			parse_frames();
			continue;
		}
		e = SSL_get_error(ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return;
		if (e == SSL_ERROR_ZERO_RETURN)
			closed("eof");
		if (e == SSL_ERROR_SYSCALL) {
			int err = errno;
			ERR_clear_error();
			if (n == 0 || err == 0)
				closed("eof");
			closed(err == ECONNRESET ? "reset" : strerror(err));
		}
		{
			char why[300];
			snprintf(why, sizeof(why), "tls error: %s",
			    ssl_reason());
			closed(why);
		}
	}
}

/* Try the pending write.  Returns the poll events it waits for. */
static short
channel_write(void)
{
	int n, e;

	if (!unit_pending)
		return 0;
	if (write_dead) {
		unit_pending = 0;
		return 0;
	}
	n = SSL_write(ssl, unit, (int)unit_len);
	if (n > 0) {
		unit_pending = 0;
		if (unit_is_flood) {
			flood_sent += unit_len - FRAME_HEADER_LEN;
			flood_last = now();
		}
		if (unit_is_repeat)
			repeat_done++;
		return 0;
	}
	e = SSL_get_error(ssl, n);
	if (e == SSL_ERROR_WANT_WRITE)
		return POLLOUT;
	if (e == SSL_ERROR_WANT_READ)
		return POLLIN;
	if (e == SSL_ERROR_SYSCALL) {
		int err = errno;
		ERR_clear_error();
		emit("write-error %s", err == 0 ? "eof" : strerror(err));
	} else {
		emit("write-error tls: %s", ssl_reason());
	}
	write_dead = 1;
	unit_pending = 0;
	return 0;
}

static void
queue_unit(const uint8_t *p, size_t n, int flood)
{
	if (n > sizeof(unit))
		die("write too long");
	memcpy(unit, p, n);
	unit_len = n;
	unit_pending = !write_dead;
	unit_is_flood = flood;
	unit_is_repeat = 0;
}

static void
do_shutdown(void)
{
	int r, e;

	shut_pending = 0;
	if (write_dead)
		return;
	for (;;) {
		check_deadline();
		if ((r = SSL_shutdown(ssl)) >= 0)
			break;
		e = SSL_get_error(ssl, r);
		if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) {
			ERR_clear_error();
			emit("write-error shutdown");
			write_dead = 1;
			return;
		}
		{
			struct pollfd p = { fd, e == SSL_ERROR_WANT_WRITE ?
			    POLLOUT : POLLIN, 0 };
			if (poll(&p, 1, ms_left(deadline)) == -1 &&
			    errno != EINTR)
				die("poll: %s", strerror(errno));
		}
	}
	if (shutdown(fd, SHUT_WR) == -1)
		emit("write-error shutdown: %s", strerror(errno));
	write_dead = 1;		/* nothing more goes out */
}

/* ---- commands ------------------------------------------------------- */

static void
command(char *line)
{
	static uint8_t buf[UNIT_MAX];
	char *word, *arg1, *arg2, *save = NULL;
	unsigned long long type, a, b;
	long n;

	if ((word = strtok_r(line, " \t\r", &save)) == NULL)
		return;
	arg1 = strtok_r(NULL, " \t\r", &save);
	arg2 = strtok_r(NULL, " \t\r", &save);
	if (strcmp(word, "send") == 0 && arg1 != NULL) {
		if ((n = hex_decode(arg1, buf, sizeof(buf))) <= 0)
			die("send: bad hex");
		queue_unit(buf, (size_t)n, 0);
	} else if (strcmp(word, "frame") == 0 && arg1 != NULL) {
		if (parse_ulong(arg1, 255, &type) == -1)
			die("frame: bad type '%s'", arg1);
		n = 0;
		if (arg2 != NULL && (n = hex_decode(arg2,
		    buf + FRAME_HEADER_LEN, 65535)) == -1)
			die("frame: bad hex");
		frame_header_encode(buf, (uint8_t)type, (uint16_t)n);
		queue_unit(buf, FRAME_HEADER_LEN + (size_t)n, 0);
	} else if (strcmp(word, "flood") == 0 && arg1 != NULL &&
	    arg2 != NULL) {
		if (parse_ulong(arg1, 1ULL << 40, &a) == -1 ||
		    parse_ulong(arg2, 600000, &b) == -1)
			die("flood: bad numbers");
		flooding = 1;
		flood_goal = a;
		flood_sent = 0;
		flood_stall = (double)b / 1000.0;
		flood_last = now();
	} else if (strcmp(word, "repeat") == 0 && arg1 != NULL &&
	    arg2 != NULL) {
		if (parse_ulong(arg1, 1ULL << 32, &a) == -1)
			die("repeat: bad count '%s'", arg1);
		if ((n = hex_decode(arg2, buf, sizeof(buf))) <= 0)
			die("repeat: bad hex");
		queue_unit(buf, (size_t)n, 0);
		unit_pending = 0;	/* repeat_step sends it */
		repeating = 1;
		repeat_left = a;
		repeat_done = 0;
	} else if (strcmp(word, "shutdown") == 0) {
		shut_pending = 1;
	} else if (strcmp(word, "abort") == 0) {
		struct linger lg = { 1, 0 };
		if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg,
		    sizeof(lg)) == -1)
			die("setsockopt SO_LINGER: %s", strerror(errno));
		if (close(fd) == -1)
			die("close: %s", strerror(errno));
		emit("aborted");
		exit(0);
	} else if (strcmp(word, "pause") == 0) {
		reading = 0;
		emit("paused");
	} else if (strcmp(word, "resume") == 0) {
		reading = 1;
		emit("resumed");
	} else if (strcmp(word, "partial") == 0) {
		emit_with_hex("partial", inbuf, inlen, 0);
	} else if (strcmp(word, "digest") == 0) {
		crypto_hash_sha256_state st = data_hash;
		uint8_t md[crypto_hash_sha256_BYTES];
		char hex[2 * crypto_hash_sha256_BYTES + 1];
		(void)crypto_hash_sha256_final(&st, md);
		(void)sodium_bin2hex(hex, sizeof(hex), md, sizeof(md));
		emit("digest %llu %s", data_bytes, hex);
	} else if (strcmp(word, "quit") == 0) {
		exit(0);
	} else {
		die("unknown command '%s'", word);
	}
}

/* Is the tool free to take the next command? */
static int
idle(void)
{
	return !unit_pending && !flooding && !repeating && !shut_pending;
}

/* Run the complete lines read so far, while nothing is in progress. */
static void
run_commands(void)
{
	char *nl;
	size_t n;

	while (idle() && (nl = memchr(lines, '\n', linelen)) != NULL) {
		*nl = '\0';
		n = (size_t)(nl - lines) + 1;
		command(lines);
		memmove(lines, lines + n, linelen - n);
		linelen -= n;
	}
	if (idle() && stdin_eof)
		exit(0);
}

static void
read_stdin(void)
{
	ssize_t n;

	if (linelen == LINE_MAX_LEN)
		die("command line too long");
	n = read(STDIN_FILENO, lines + linelen, LINE_MAX_LEN - linelen);
	if (n == -1) {
		if (errno == EINTR || errno == EAGAIN)
			return;
		die("stdin: %s", strerror(errno));
	}
	if (n == 0)
		stdin_eof = 1;
	linelen += (size_t)n;
}

/* The next write of a repeat, or its end. */
static void
repeat_step(void)
{
	if (!repeating || unit_pending)
		return;
	if (repeat_left == 0 || write_dead) {
		repeating = 0;
		emit("repeated %llu", repeat_done);
		return;
	}
	repeat_left--;
	unit_pending = 1;
	unit_is_repeat = 1;
}

/* The next DATA frame of a flood, or its end. */
static void
flood_step(void)
{
	static uint8_t chunk[FRAME_HEADER_LEN + FLOOD_CHUNK];
	unsigned long long left;
	size_t i, n;

	if (!flooding || unit_pending)
		return;
	left = flood_goal - flood_sent;
	if (left == 0 || write_dead) {
		flooding = 0;
		emit("flooded %llu done", flood_sent);
		return;
	}
	n = left < FLOOD_CHUNK ? (size_t)left : FLOOD_CHUNK;
	for (i = 0; i < n; i++)
		chunk[FRAME_HEADER_LEN + i] = (uint8_t)(flood_sent + i);
	frame_header_encode(chunk, FRAME_DATA, (uint16_t)n);
	queue_unit(chunk, FRAME_HEADER_LEN + n, 1);
}

static void
main_loop(void)
{
	struct pollfd p[2];
	short want;
	int nfds, timeout;
	double until;

	for (;;) {
		check_deadline();
		run_commands();
		flood_step();
		repeat_step();
		want = channel_write();
		if (!unit_pending && shut_pending)
			do_shutdown();
		if (!unit_pending && (flooding || repeating || shut_pending))
			continue;	/* next frame, or the shutdown */
		if (idle() && (stdin_eof || memchr(lines, '\n', linelen)))
			continue;	/* the next command */
		if (flooding && now() - flood_last >= flood_stall) {
			flooding = 0;
			emit("flooded %llu stalled", flood_sent);
		}
		if (reading)
			channel_read();	/* until OpenSSL wants the socket */
		/* While paused, a hung-up socket is only seen on resume. */
		nfds = 0;
		p[nfds].events = (short)(want | (reading ? POLLIN : 0));
		p[nfds].fd = p[nfds].events != 0 ? fd : -1;
		p[nfds++].revents = 0;
		if (!stdin_eof) {
			p[nfds].fd = STDIN_FILENO;
			p[nfds].events = POLLIN;
			p[nfds++].revents = 0;
		}
		until = deadline;
		if (flooding && flood_last + flood_stall < until)
			until = flood_last + flood_stall;
		timeout = ms_left(until);
		if (poll(p, (nfds_t)nfds, timeout) == -1) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (!stdin_eof && (p[nfds - 1].revents &
		    (POLLIN | POLLHUP | POLLERR)))
			read_stdin();
	}
}

/* ---- setup ---------------------------------------------------------- */

/* Wait for fd to be ready for events, until the deadline. */
static void
wait_fd(int wfd, short events)
{
	struct pollfd p = { wfd, events, 0 };

	for (;;) {
		check_deadline();
		if (poll(&p, 1, ms_left(deadline)) >= 0)
			return;
		if (errno != EINTR)
			die("poll: %s", strerror(errno));
	}
}

/* Bind sock to the address bind_addr (port 0), or die. */
static void
bind_local(int sock, int family, const char *bind_addr)
{
	struct addrinfo hints, *res;
	int r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
	if ((r = getaddrinfo(bind_addr, "0", &hints, &res)) != 0)
		die("-b %s: %s", bind_addr, gai_strerror(r));
	if (bind(sock, res->ai_addr, res->ai_addrlen) == -1)
		die("-b %s: bind: %s", bind_addr, strerror(errno));
	freeaddrinfo(res);
}

static void
tcp_connect(const char *host, uint16_t port, int rcvbuf, int sndbuf,
    const char *bind_addr)
{
	struct addrinfo hints, *res, *ai;
	struct sockaddr_storage local;
	socklen_t slen = sizeof(local);
	char portstr[8], name[NETADDR_STRLEN];
	int r, err = 0, flags;
	socklen_t elen = sizeof(err);

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%u", port);
	if ((r = getaddrinfo(host, portstr, &hints, &res)) != 0)
		die("%s: %s", host, gai_strerror(r));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, SOCK_STREAM, 0)) == -1)
			continue;
		if (bind_addr != NULL)
			bind_local(fd, ai->ai_family, bind_addr);
		if ((rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF,
		    &rcvbuf, sizeof(rcvbuf)) == -1) || (sndbuf > 0 &&
		    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf,
		    sizeof(sndbuf)) == -1))
			die("setsockopt: %s", strerror(errno));
		if ((flags = fcntl(fd, F_GETFL)) == -1 ||
		    fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1)
			die("fcntl: %s", strerror(errno));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			wait_fd(fd, POLLOUT);
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) ==
			    -1)
				die("getsockopt: %s", strerror(errno));
			if (err == 0)
				break;
			errno = err;
		}
		fprintf(stderr, PROG ": connect %s:%u: %s\n", host, port,
		    strerror(errno));
		if (close(fd) == -1)
			die("close: %s", strerror(errno));
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1)
		die("cannot connect to %s:%u", host, port);
	if (getsockname(fd, (struct sockaddr *)&local, &slen) == -1)
		die("getsockname: %s", strerror(errno));
	netaddr_format((struct sockaddr *)&local, name);
	emit("connected %s", name);
}

/* --hold: wait for "go" (or "quit", or the end of stdin). */
static void
hold(void)
{
	char *nl;

	for (;;) {
		while ((nl = memchr(lines, '\n', linelen)) != NULL) {
			size_t n = (size_t)(nl - lines) + 1;
			*nl = '\0';
			if (strcmp(lines, "go") == 0) {
				memmove(lines, lines + n, linelen - n);
				linelen -= n;
				return;
			}
			if (strcmp(lines, "quit") == 0)
				exit(0);
			die("--hold: expected 'go', got '%s'", lines);
		}
		if (stdin_eof)
			exit(0);
		wait_fd(STDIN_FILENO, POLLIN);
		read_stdin();
	}
}

static void
tls_handshake(const char *cert, const char *host)
{
	SSL_CTX *ctx;
	char err[512];
	int r, e;

	if ((ctx = tls_client_ctx_new(cert, err, sizeof(err))) == NULL)
		die("%s", err);
	if ((ssl = tls_client_ssl_new(ctx, host)) == NULL)
		die("cannot set up TLS for %s: %s", host, ssl_reason());
	SSL_CTX_free(ctx);	/* ssl holds a reference */
	if (SSL_set_fd(ssl, fd) != 1)
		die("SSL_set_fd: %s", ssl_reason());
	for (;;) {
		if ((r = SSL_connect(ssl)) == 1)
			return;
		e = SSL_get_error(ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			wait_fd(fd, POLLIN);
		else if (e == SSL_ERROR_WANT_WRITE)
			wait_fd(fd, POLLOUT);
		else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
			die("TLS handshake: %s", errno == 0 ?
			    "connection closed" : strerror(errno));
		else
			die("TLS handshake: %s", ssl_reason());
	}
}

/* AUTH, signed over this session's exporter, and the bytes behind it. */
static void
send_auth(const char *keypath, uint8_t role, uint32_t group,
    const uint8_t *after, size_t afterlen)
{
	static uint8_t buf[FRAME_HEADER_LEN + AUTH_PAYLOAD_LEN + 16384];
	uint8_t exporter[AUTH_EXPORTER_LEN];
	struct auth_key key;
	struct auth_msg m;
	char err[512];

	if (afterlen > sizeof(buf) - FRAME_HEADER_LEN - AUTH_PAYLOAD_LEN)
		die("--after-auth: too long");
	if (auth_key_load(keypath, &key, err, sizeof(err)) == -1)
		die("%s", err);
	memset(&m, 0, sizeof(m));
	m.version = PROTOCOL_VERSION;
	m.role = role;
	m.group = group;
	memcpy(m.pubkey, key.pk, AUTH_PUBKEY_LEN);
	if (tls_exporter(ssl, exporter) == -1 ||
	    auth_sign(&key, role, group, exporter, m.sig) == -1)
		die("cannot sign AUTH");
	auth_key_wipe(&key);
	frame_header_encode(buf, FRAME_AUTH, AUTH_PAYLOAD_LEN);
	if (auth_msg_encode(&m, buf + FRAME_HEADER_LEN) != AUTH_PAYLOAD_LEN)
		die("cannot encode AUTH");
	memcpy(buf + FRAME_HEADER_LEN + AUTH_PAYLOAD_LEN, after, afterlen);
	queue_unit(buf, FRAME_HEADER_LEN + AUTH_PAYLOAD_LEN + afterlen, 0);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "server-address", required_argument, NULL, 's' },
		{ "server-cert", required_argument, NULL, 'c' },
		{ "auth-private-key", required_argument, NULL, 'a' },
		{ "group-id", required_argument, NULL, 'g' },
		{ "role", required_argument, NULL, 'r' },
		{ "after-auth", required_argument, NULL, 'A' },
		{ "timeout", required_argument, NULL, 't' },
		{ "hold", no_argument, NULL, 'H' },
		{ "rcvbuf", required_argument, NULL, 'R' },
		{ "sndbuf", required_argument, NULL, 'S' },
		{ "hex-max", required_argument, NULL, 'x' },
		{ "bind-address", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	static uint8_t after[16384];
	const char *server = NULL, *cert = NULL, *keypath = NULL;
	const char *bind_addr = NULL;
	char host[256], err[256];
	unsigned long long v, group = 0, timeout = 30, rcvbuf = 0, sndbuf = 0;
	long afterlen = 0;
	uint16_t port;
	int c, role = 0, do_hold = 0, have_group = 0;

	while ((c = getopt_long(argc, argv, "s:c:a:g:b:", longopts, NULL)) !=
	    -1) {
		switch (c) {
		case 'b':
			bind_addr = optarg;
			break;
		case 's':
			server = optarg;
			break;
		case 'c':
			cert = optarg;
			break;
		case 'a':
			keypath = optarg;
			break;
		case 'g':
			if (parse_ulong(optarg, UINT32_MAX, &group) == -1)
				usage();
			have_group = 1;
			break;
		case 'r':
			if (strcmp(optarg, "entry") == 0)
				role = ROLE_ENTRY;
			else if (strcmp(optarg, "reverse") == 0)
				role = ROLE_REVERSE;
			else
				usage();
			break;
		case 'A':
			if ((afterlen = hex_decode(optarg, after,
			    sizeof(after))) == -1)
				usage();
			break;
		case 't':
			if (parse_ulong(optarg, 86400, &timeout) == -1 ||
			    timeout == 0)
				usage();
			break;
		case 'H':
			do_hold = 1;
			break;
		case 'R':
		case 'S':
			if (parse_ulong(optarg, 1 << 30, &v) == -1)
				usage();
			if (c == 'R')
				rcvbuf = v;
			else
				sndbuf = v;
			break;
		case 'x':
			if (parse_ulong(optarg, 1 << 20, &v) == -1)
				usage();
			hex_max = (long)v;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || server == NULL || cert == NULL ||
	    keypath == NULL || role == 0 || !have_group)
		usage();
	if (netaddr_parse_hostport(server, host, sizeof(host), &port, err,
	    sizeof(err)) == -1)
		die("-s: %s", err);
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		die("signal: %s", strerror(errno));
	if (setvbuf(stdout, NULL, _IOLBF, 0) != 0)
		die("setvbuf failed");
	deadline = now() + (double)timeout;
	if (sodium_init() < 0)
		die("sodium_init failed");
	(void)crypto_hash_sha256_init(&data_hash);

	tcp_connect(host, port, (int)rcvbuf, (int)sndbuf, bind_addr);
	if (do_hold)
		hold();
	tls_handshake(cert, host);
	send_auth(keypath, (uint8_t)role, (uint32_t)group, after,
	    (size_t)afterlen);
	main_loop();
	return 0;
}
