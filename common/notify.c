#include "notify.h"

#include <sys/socket.h>
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
static int ready;
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
	}
	return fd;
}

void
notify_send(const char *state)
{
	int s = notify_socket();

	if (s == -1)
		return;
	/* Never wait for the service manager: a full queue drops it. */
	if (sendto(s, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT,
	    (struct sockaddr *)&addr, addrlen) == -1)
		log_debug("notify: %s: %s", getenv("NOTIFY_SOCKET"),
		    strerror(errno));
}

void
notify_status(const char *status)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "STATUS=%s", status);
	notify_send(msg);
}

void
notify_ready(const char *status)
{
	char msg[512];

	if (ready) {
		if (status != NULL)
			notify_status(status);
		return;
	}
	ready = 1;
	if (status != NULL)
		snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
	else
		snprintf(msg, sizeof(msg), "READY=1");
	notify_send(msg);
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
	notify_send(msg);
}

void
notify_reloaded(void)
{
	if (ready)	/* else READY=1 comes when the daemon serves */
		notify_send("READY=1");
}

void
notify_stopping(unsigned long drain_seconds)
{
	char msg[96];

	if (drain_seconds == 0) {
		notify_send("STOPPING=1");
		return;
	}
	snprintf(msg, sizeof(msg), "STOPPING=1\nEXTEND_TIMEOUT_USEC=%llu",
	    ((unsigned long long)drain_seconds + NOTIFY_STOP_MARGIN) * 1000000ULL);
	notify_send(msg);
}
