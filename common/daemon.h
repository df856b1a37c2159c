/*
 * daemon: what every daemon's main() does around its event loop —
 * SIGPIPE ignored, SIGINT/SIGTERM ending the loop cleanly, SIGHUP calling
 * the daemon's reload, the log level from -v/-q, and the option-parsing
 * exit codes.
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
 * Call cb(arg) from the loop on each SIGHUP (a reload).  Without it SIGHUP
 * ends the process.  Exits EXIT_RUNTIME on failure.
 */
void daemon_on_reload(struct event_base *base, void (*cb)(void *arg),
    void *arg);

/* The open-file limit in force (after daemon_base_new raised it), at most
 * 1,000,000; 1,024 when it cannot be read. */
unsigned long daemon_nofile(void);

/* Run the loop until a signal; returns 0, or -1 if the loop failed. */
int daemon_run(struct event_base *base);

/* Free the signal events and the base.  NULL is fine. */
void daemon_base_free(struct event_base *base);

#endif
