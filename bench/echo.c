/*
 * echo: the benchmark's destination.  Echoes every byte it receives.
 *
 *   echo PORT
 *
 * Listens on 127.0.0.1:PORT with two threads, each with its own
 * SO_REUSEPORT listening socket and its own epoll (the kernel spreads new
 * connections over the two).  Non-blocking, level-triggered.  Output that
 * the peer does not take at once waits in a per-connection buffer of at most
 * 256 KiB; while that buffer is full the connection is not read (the sender
 * is throttled by TCP), and reading resumes on EPOLLOUT once it drains.  The
 * buffer is freed whenever it is empty, so an idle connection costs only a
 * small struct.  On EOF from the peer the pending output is flushed, then the
 * connection is closed.  Prints nothing except errors; runs until killed.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define CAP (256 * 1024)   /* per-connection pending output, at most */
#define SCRATCH (256 * 1024)
#define MAXEV 256

struct conn {
	int fd;
	int eof;            /* peer sent FIN: flush, then close */
	uint32_t events;    /* what epoll currently watches */
	char *buf;          /* pending output, NULL when empty */
	size_t off, len;
};

static int port;

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			perror("echo: setrlimit");
	}
}

static int make_listener(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("echo: socket");
		exit(1);
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
		perror("echo: SO_REUSEPORT");
		exit(1);
	}
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		fprintf(stderr, "echo: bind 127.0.0.1:%d: %s\n", port,
		    strerror(errno));
		exit(1);
	}
	if (listen(fd, 65535) != 0) {
		perror("echo: listen");
		exit(1);
	}
	return fd;
}

static void conn_close(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->buf);
	free(c);
}

static void set_events(int ep, struct conn *c, uint32_t ev)
{
	if (ev == c->events)
		return;
	struct epoll_event e = { .events = ev, .data.ptr = c };
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) != 0)
		perror("echo: epoll_ctl");
	c->events = ev;
}

/* Writes pending output.  Returns -1 if the connection failed. */
static int flush_pending(struct conn *c)
{
	while (c->len > 0) {
		ssize_t w = write(c->fd, c->buf + c->off, c->len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return -1;
		}
		c->off += (size_t)w;
		c->len -= (size_t)w;
	}
	free(c->buf);
	c->buf = NULL;
	c->off = 0;
	return 0;
}

/* Appends data to the pending buffer (which has room: callers check). */
static void add_pending(struct conn *c, const char *p, size_t n)
{
	if (c->buf == NULL) {
		c->buf = malloc(CAP);
		if (c->buf == NULL) {
			fprintf(stderr, "echo: out of memory\n");
			exit(1);
		}
		c->off = c->len = 0;
	}
	if (c->off + c->len + n > CAP) {
		memmove(c->buf, c->buf + c->off, c->len);
		c->off = 0;
	}
	memcpy(c->buf + c->off + c->len, p, n);
	c->len += n;
}

/* Handles readable/writable; returns -1 when the connection is to close. */
static int service(struct conn *c, uint32_t ev, char *scratch)
{
	if (ev & EPOLLOUT) {
		if (flush_pending(c) < 0)
			return -1;
	}
	if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->eof) {
		/* A few reads per wakeup, for fairness between connections. */
		for (int i = 0; i < 4 && c->len < CAP; i++) {
			size_t room = c->len == 0 ? SCRATCH : CAP - c->len;
			ssize_t r = read(c->fd, scratch, room);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN)
					break;
				return -1;
			}
			if (r == 0) {
				c->eof = 1;
				break;
			}
			size_t n = (size_t)r, done = 0;
			if (c->len == 0) {
				while (done < n) {
					ssize_t w = write(c->fd, scratch + done,
					    n - done);
					if (w < 0) {
						if (errno == EINTR)
							continue;
						if (errno == EAGAIN)
							break;
						return -1;
					}
					done += (size_t)w;
				}
			}
			if (done < n)
				add_pending(c, scratch + done, n - done);
			if ((size_t)r < room)
				break;  /* socket drained */
		}
	}
	if (c->eof && c->len == 0)
		return -1;
	return 0;
}

static void *worker(void *arg)
{
	(void)arg;
	int lfd = make_listener();
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) {
		perror("echo: epoll_create1");
		exit(1);
	}
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e);
	char *scratch = malloc(SCRATCH);
	struct epoll_event evs[MAXEV];
	if (scratch == NULL) {
		fprintf(stderr, "echo: out of memory\n");
		exit(1);
	}
	int emfile_logged = 0;
	for (;;) {
		int n = epoll_wait(ep, evs, MAXEV, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("echo: epoll_wait");
			exit(1);
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c == NULL) {
				for (int k = 0; k < 256; k++) {
					int fd = accept4(lfd, NULL, NULL,
					    SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (fd < 0) {
						if (errno == EMFILE ||
						    errno == ENFILE) {
							if (!emfile_logged++)
								perror("echo: accept");
						} else if (errno != EAGAIN &&
						    errno != EINTR &&
						    errno != ECONNABORTED)
							perror("echo: accept");
						break;
					}
					int one = 1;
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY,
					    &one, sizeof one);
					struct conn *nc = calloc(1, sizeof *nc);
					if (nc == NULL) {
						fprintf(stderr, "echo: out of memory\n");
						exit(1);
					}
					nc->fd = fd;
					nc->events = EPOLLIN;
					struct epoll_event ce = {
						.events = EPOLLIN, .data.ptr = nc };
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd,
					    &ce) != 0) {
						perror("echo: epoll_ctl");
						close(fd);
						free(nc);
					}
				}
				continue;
			}
			if (service(c, evs[i].events, scratch) < 0) {
				conn_close(ep, c);
				continue;
			}
			uint32_t want = 0;
			if (c->len > 0)
				want |= EPOLLOUT;
			if (c->len < CAP && !c->eof)
				want |= EPOLLIN;
			set_events(ep, c, want);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
		fprintf(stderr, "usage: echo PORT\n");
		return 2;
	}
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	pthread_t t;
	if (pthread_create(&t, NULL, worker, NULL) != 0) {
		fprintf(stderr, "echo: pthread_create failed\n");
		return 1;
	}
	worker(NULL);
	return 0;
}
