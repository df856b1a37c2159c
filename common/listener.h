/*
 * listener: a listening socket on the event loop that hands each accepted
 * connection to a callback, and that pauses for a second instead of
 * spinning when accept fails (out of descriptors, say).  Pauses are
 * logged at most once a second for the whole process, however many
 * listeners pause.
 */
#ifndef LISTENER_H
#define LISTENER_H

#include <sys/socket.h>

#include <event2/util.h>

struct event_base;
struct listener;

/* A new connection: fd (non-blocking) is the callee's from now on. */
typedef void listener_accept_fn(evutil_socket_t fd, struct sockaddr *peer,
    void *arg);

/*
 * Start accepting on fd (already listening).  name is for log lines.  On
 * success the listener owns fd; on failure (NULL) fd is closed.
 */
struct listener *listener_new(struct event_base *base, evutil_socket_t fd,
    const char *name, listener_accept_fn *fn, void *arg);

/* Stop, close the socket and free.  NULL is fine. */
void listener_free(struct listener *l);

#endif
