/*
 * daemon: what every daemon's main() does around its event loop —
 * SIGPIPE ignored, SIGINT/SIGTERM ending the loop (at once, or after a
 * drain: the graceful stop), SIGHUP calling the daemon's reload, the log
 * level from -v/-q, and the option-parsing exit codes.
 */
#ifndef DAEMON_H
#define DAEMON_H

#include <stddef.h>

#include "opts.h"

struct event_base;

/* Exit codes of every program. */
#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

/*
 * Parse options like opts_parse and act on the result: print err and exit
 * EXIT_USAGE on a usage error, exit 0 after --help/--version.  Returns
 * only when the program should run.
 */
void daemon_parse_options(struct opts *o, const struct opt_spec *specs,
    size_t nspecs, int argc, char **argv, const char *progname,
    const char *usage);

/* Set the log level from the -v and -q flags. */
void daemon_log_init(const char *progname, int verbose, int quiet);

/* An event base as every loop of ours wants it (no signals); NULL on
 * failure. */
struct event_base *daemon_loop_new(void);

/*
 * An event base with SIGINT and SIGTERM ending its loop and SIGPIPE
 * ignored; the open-file limit raised to its hard limit.  Exits
 * EXIT_RUNTIME on failure.
 */
struct event_base *daemon_base_new(void);

/*
 * Call cb(arg) from the loop on each SIGHUP (a reload); it returns 0, or
 * -1 when the reload failed and the previous configuration still runs
 * (the status line then says so until a reload succeeds).  Without it
 * SIGHUP ends the process.  Exits EXIT_RUNTIME on failure.
 */
void daemon_on_reload(struct event_base *base, int (*cb)(void *arg),
    void *arg);

/*
 * A graceful stop.  With it, the first SIGINT or SIGTERM calls
 * start(arg): the daemon stops accepting, closes what is idle and returns
 * how many connections it waits for.  The loop ends when busy(arg) says
 * nothing is left (asked every DAEMON_DRAIN_POLL_MS), or timeout seconds
 * after the signal, or at a second signal; what is left then is reset by
 * the daemon's usual teardown after daemon_run returns.  left(arg): the
 * connections still in flight, for the log lines.  timeout 0: the first
 * signal ends the loop at once.  Without it, SIGINT and SIGTERM end the
 * loop at once.  Exits EXIT_RUNTIME on failure.
 */
struct daemon_drain {
	unsigned (*start)(void *arg);
	unsigned (*left)(void *arg);
	int (*busy)(void *arg);
	void *arg;
};

#define DAEMON_DRAIN_POLL_MS 20
#define DAEMON_DRAIN_DEFAULT 30	/* --drain-timeout, seconds */

void daemon_on_drain(struct event_base *base, const struct daemon_drain *d,
    unsigned long timeout);

/* A reload's --drain-timeout, for the next signal. */
void daemon_drain_timeout(unsigned long timeout);

/* Is a drain under way?  (A reload is refused then.) */
int daemon_draining(void);

/*
 * The service manager (notify.h): fn(buf, len, arg) writes a one-line
 * summary of the daemon (channels, connections) into buf; it is sent as
 * STATUS= with READY=1, after a reload and every DAEMON_STATUS_SECONDS
 * while $NOTIFY_SOCKET is set.  Exits EXIT_RUNTIME on failure.
 */
#define DAEMON_STATUS_SECONDS 10
void daemon_on_status(struct event_base *base,
    void (*fn)(char *buf, size_t len, void *arg), void *arg);

/* The daemon serves: READY=1 (once) with its status.  RELOADING=1 and
 * READY=1 around SIGHUP and STOPPING=1 at SIGINT/SIGTERM are sent here,
 * by the signal handling. */
void daemon_ready(void);

/* End the loop now: what daemon_run was waiting for. */
void daemon_stop(struct event_base *base);

/* The open-file limit in force (after daemon_base_new raised it), at most
 * 1,000,000; 1,024 when it cannot be read. */
unsigned long daemon_nofile(void);

/* Run the loop until a signal (and the drain); returns 0, or -1 if the loop failed. */
int daemon_run(struct event_base *base);

/* Free the signal events and the base.  NULL is fine. */
void daemon_base_free(struct event_base *base);

#endif
