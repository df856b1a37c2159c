/*
 * log: the only way the programs speak to the operator.
 *
 * Verbs, after OpenBSD daemons: log_warn (appends strerror(errno)),
 * log_warnx (without errno), log_info, log_debug, fatal/fatalx (log and
 * exit 1), log_errx (a configuration error, before an exit).  Lines go to
 * stderr as "program: message"; systemd's journal adds time and pid, and
 * when stderr is the journal's stream (JOURNAL_STREAM) each line starts
 * with its syslog priority: <3> errors (fatal, log_errx), <4> warnings,
 * <6> log_info, <7> log_debug.  The level decides what is printed:
 *   LOG_LEVEL_QUIET   only warnings and errors      (-q)
 *   LOG_LEVEL_INFO    starts, failures, rejections  (default)
 *   LOG_LEVEL_DEBUG   per-connection events         (-v)
 */
#ifndef LOG_H
#define LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LEVEL_QUIET = 0,
	LOG_LEVEL_INFO = 1,
	LOG_LEVEL_DEBUG = 2,
};

/* Set the program name printed before each line and the level. */
void log_init(const char *progname, enum log_level level);


void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An error the program stops on (a bad option or file); the caller exits. */
void log_errx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * A message at a level chosen by the caller: LOG_LEVEL_QUIET prints it
 * always, as log_warnx does; LOG_LEVEL_INFO as log_info; LOG_LEVEL_DEBUG
 * as log_debug.  For functions that log why on their caller's behalf.
 */
void log_at(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vat(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/*
 * Log a warning followed by what OpenSSL's error queue says (it is
 * emptied, see tls_error_text), so that the operator sees why a TLS call
 * failed.
 */
void log_warnx_ssl(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
