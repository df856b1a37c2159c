#include "log.h"

#include <sys/stat.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls.h"

/* syslog(3) priorities, as the journal reads them from a "<N>" prefix. */
#define PRIO_ERR 3
#define PRIO_WARNING 4
#define PRIO_INFO 6
#define PRIO_DEBUG 7

static const char *log_progname = "tcp-reverse-proxy";
static enum log_level log_level = LOG_LEVEL_INFO;
static int journal = -1;	/* -1: not yet known */

/*
 * Is standard error the journal's stream?  systemd sets JOURNAL_STREAM to
 * "DEVICE:INODE" of the stream it connects to a service's standard error;
 * it is the journal only while stderr is still that file (a shell a unit
 * starts may have redirected it).  Then each line begins with its
 * priority, "<N>", which journald strips and keeps (SyslogLevelPrefix=,
 * on by default).
 */
static int
stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	uintmax_t dev, ino;
	struct stat st;
	char *end;

	if (env == NULL || fstat(STDERR_FILENO, &st) == -1)
		return 0;
	errno = 0;
	dev = strtoumax(env, &end, 10);
	if (errno != 0 || end == env || *end != ':')
		return 0;
	env = end + 1;
	ino = strtoumax(env, &end, 10);
	if (errno != 0 || end == env || *end != '\0')
		return 0;
	return dev == (uintmax_t)st.st_dev && ino == (uintmax_t)st.st_ino;
}

void
log_init(const char *progname, enum log_level level)
{
	log_progname = progname;
	log_level = level;
	journal = stderr_is_journal();
}

/* One line at priority prio: "<N>" first on the journal's stream. */
static void
log_line(int prio, const char *line, const char *suffix)
{
	char tag[8] = "";

	if (journal == -1)
		journal = stderr_is_journal();
	if (journal)
		snprintf(tag, sizeof(tag), "<%d>", prio);
	if (suffix != NULL)
		fprintf(stderr, "%s%s: %s: %s\n", tag, log_progname, line,
		    suffix);
	else
		fprintf(stderr, "%s%s: %s\n", tag, log_progname, line);
}

static void
log_vprint(int prio, const char *suffix, const char *fmt, va_list ap)
{
	char line[1024];

	vsnprintf(line, sizeof(line), fmt, ap);
	log_line(prio, line, suffix);
}

static int
prio_of(enum log_level level)
{
	return level == LOG_LEVEL_QUIET ? PRIO_WARNING : level ==
	    LOG_LEVEL_INFO ? PRIO_INFO : PRIO_DEBUG;
}

void
log_warn(const char *fmt, ...)
{
	va_list ap;
	int saved_errno = errno;

	va_start(ap, fmt);
	log_vprint(PRIO_WARNING, strerror(saved_errno), fmt, ap);
	va_end(ap);
	errno = saved_errno;
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vprint(PRIO_WARNING, NULL, fmt, ap);
	va_end(ap);
}

void
log_errx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vprint(PRIO_ERR, NULL, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	if (log_level < LOG_LEVEL_INFO)
		return;
	va_start(ap, fmt);
	log_vprint(PRIO_INFO, NULL, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (log_level < LOG_LEVEL_DEBUG)
		return;
	va_start(ap, fmt);
	log_vprint(PRIO_DEBUG, NULL, fmt, ap);
	va_end(ap);
}

void
log_vat(enum log_level level, const char *fmt, va_list ap)
{
	if (log_level < level)
		return;
	log_vprint(prio_of(level), NULL, fmt, ap);
}

void
log_at(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vat(level, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;
	int saved_errno = errno;

	va_start(ap, fmt);
	log_vprint(PRIO_ERR, strerror(saved_errno), fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vprint(PRIO_ERR, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}

void
log_warnx_ssl(const char *fmt, ...)
{
	char reasons[TLS_ERRLEN];
	va_list ap;
	char line[1024];

	tls_error_text(NULL, reasons, sizeof(reasons));
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_line(PRIO_WARNING, line, reasons[0] != '\0' ? reasons : NULL);
}
