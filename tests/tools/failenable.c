/*
 * failenable: a fault-injection shim for the relay's integration tests.
 *
 *   LD_PRELOAD=.../libfailenable.so TRP_FAIL_ENABLE_FILE=PATH relay-server ...
 *
 * It interposes libevent's bufferevent_enable().  When the file named by
 * TRP_FAIL_ENABLE_FILE exists and a call asks for EV_READ alone, it removes
 * the file and fails that one call (returns -1, as libevent does when it
 * cannot add an event, which in practice means ENOMEM); every other call
 * goes to libevent.  A test creates the file right before the moment it
 * wants to fail, and checks that the file is gone afterwards (else the
 * failure it meant to test never happened).  Under AddressSanitizer add
 * verify_asan_link_order=0 to ASAN_OPTIONS: this library then comes before
 * ASan's runtime.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

typedef int (*enable_fn)(struct bufferevent *, short);

static enable_fn real_enable;

/* Looked up once, before main (and so before the relay's threads). */
__attribute__((constructor)) static void
failenable_init(void)
{
	if ((real_enable = (enable_fn)dlsym(RTLD_NEXT,
	    "bufferevent_enable")) == NULL) {
		fprintf(stderr, "failenable: no bufferevent_enable to wrap\n");
		abort();
	}
}

int
bufferevent_enable(struct bufferevent *bev, short event)
{
	const char *path;

	/* unlink() succeeds for one caller only: one failure per file. */
	if (event == EV_READ &&
	    (path = getenv("TRP_FAIL_ENABLE_FILE")) != NULL &&
	    unlink(path) == 0) {
		fprintf(stderr, "failenable: bufferevent_enable(EV_READ) "
		    "fails once, as %s asked\n", path);
		errno = ENOMEM;
		return -1;
	}
	return real_enable(bev, event);
}
