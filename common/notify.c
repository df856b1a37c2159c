#include "notify.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static int fd = -1;
static int unusable;		/* no $NOTIFY_SOCKET, or a bad one */
static int can_wait;		/* SO_SNDTIMEO is set */
static int ready;
static int ready_owed;		/* READY=1 found the queue full: say it again */
static struct sockaddr_un addr;
static socklen_t addrlen;

/* The socket, opened at first use; -1 when there is none to speak to. */
static int
notify_socket(void)
{
	const char *path;
	size_t len = 0;

	if (fd != -1 || unusable)
		return fd;
	path = getenv("NOTIFY_SOCKET");
	if (path == NULL || path[0] == '\0')
		unusable = 1;
	else if ((path[0] != '/' && path[0] != '@') || (len = strlen(path)) <
	    2 || len >= sizeof(addr.sun_path)) {
		log_debug("notify: NOTIFY_SOCKET %s: not a path or an @name "
		    "of AF_UNIX (ignored)", path);
		unusable = 1;
	}
	if (unusable)
		return -1;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	memcpy(addr.sun_path, path, len);
	if (path[0] == '@')		/* the abstract namespace: a NUL first */
		addr.sun_path[0] = '\0';
	addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
	    (path[0] == '@' ? 0 : 1));
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1) {
		log_debug("notify: socket: %s", strerror(errno));
		unusable = 1;
		return -1;
	}
	{
		struct timeval tv = { NOTIFY_WAIT_SECONDS, 0 };

		if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv,
		    sizeof(tv)) == 0)
			can_wait = 1;
		else
			log_debug("notify: SO_SNDTIMEO: %s", strerror(errno));
	}
	return fd;
}

/*
 * One datagram: 0 when sent or when there is nobody to tell, -1 with errno
 * when it was not.  A full queue at the service manager (its one socket
 * serves every unit) drops a datagram sent without waiting; with wait, the
 * send waits up to NOTIFY_WAIT_SECONDS for room, as libsystemd's blocking
 * sd_notify would (without end).
 */
static int
send_msg(const char *msg, int wait)
{
	int s = notify_socket(), flags = MSG_NOSIGNAL, tries = 0;
	ssize_t n;

	if (s == -1)
		return 0;
	if (!wait || !can_wait)
		flags |= MSG_DONTWAIT;
	do			/* a signal cuts a wait short: once again */
		n = sendto(s, msg, strlen(msg), flags,
		    (struct sockaddr *)&addr, addrlen);
	while (n == -1 && errno == EINTR && ++tries < 2);
	if (n == -1) {
		int e = errno;

		log_debug("notify: %s: %s", getenv("NOTIFY_SOCKET"),
		    strerror(e));
		errno = e;
		return -1;
	}
	return 0;
}

void
notify_send(const char *state)
{
	(void)send_msg(state, 0);
}

/* READY=1 (with the status line), waiting for room (a READY=1 that is
 * owed already does not wait again: the next status line tries anew); a
 * queue that stays full leaves it owed to the next status line. */
static void
send_ready(const char *status)
{
	char msg[512];

	if (status != NULL)
		snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
	else
		snprintf(msg, sizeof(msg), "READY=1");
	if (send_msg(msg, !ready_owed) == -1 && (errno == EAGAIN ||
	    errno == EWOULDBLOCK || errno == EINTR)) {
		if (!ready_owed && errno == EINTR)
			log_warnx("notify: no room at the service manager "
			    "(interrupted): READY=1 again with the next status");
		else if (!ready_owed)
			log_warnx("notify: no room at the service manager (its "
			    "queue stayed full for %d s): READY=1 again with "
			    "the next status", can_wait ? NOTIFY_WAIT_SECONDS : 0);
		ready_owed = 1;
		return;
	}
	/* Sent, or an error that waiting would not mend. */
	ready_owed = 0;
	ready = 1;
}

void
notify_status(const char *status)
{
	char msg[512];

	if (ready_owed) {
		send_ready(status);
		return;
	}
	snprintf(msg, sizeof(msg), "STATUS=%s", status);
	notify_send(msg);
}

void
notify_ready(const char *status)
{
	if (ready || ready_owed) {
		if (status != NULL)
			notify_status(status);
		return;
	}
	send_ready(status);
}

void
notify_reloading(void)
{
	struct timespec ts;
	char msg[96];

	if (!ready)		/* nothing to reload from, for the manager */
		return;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		ts.tv_sec = ts.tv_nsec = 0;
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL);
	(void)send_msg(msg, 1);
}

/* (A READY=1 that finds no room is owed, as at the start: the manager
 * waits for it to end the reload.) */
void
notify_reloaded(void)
{
	if (ready)	/* else READY=1 comes when the daemon serves */
		send_ready(NULL);
}

void
notify_stopping(unsigned long drain_seconds)
{
	char msg[96];

	ready_owed = 0;		/* a daemon that stops owes no READY=1 */
	if (drain_seconds == 0) {
		(void)send_msg("STOPPING=1", 1);
		return;
	}
	snprintf(msg, sizeof(msg), "STOPPING=1\nEXTEND_TIMEOUT_USEC=%llu",
	    ((unsigned long long)drain_seconds + NOTIFY_STOP_MARGIN) * 1000000ULL);
	(void)send_msg(msg, 1);
}
