/*
 * notify: the service manager's readiness protocol (sd_notify(3)), for
 * Type=notify units.  When $NOTIFY_SOCKET names a datagram socket (a path,
 * or "@name" for one in the abstract namespace), each call sends one
 * datagram of "KEY=value" lines to it; without it every call does
 * nothing.  The daemons say READY=1 when they serve (the relay listens; a
 * client has its first authenticated channel, and the entry-point listens
 * on its routes), RELOADING=1 ... READY=1 around a SIGHUP, STOPPING=1 when
 * they stop or drain, and STATUS= with a one-line summary.  STATUS= alone
 * never waits: a full queue at the service manager drops it.  READY=1,
 * RELOADING=1 and STOPPING=1 wait up to NOTIFY_WAIT_SECONDS for room (the
 * daemon's main loop stands still meanwhile), and a READY=1 that found no
 * room goes again with the next STATUS= (every DAEMON_STATUS_SECONDS,
 * without waiting then), one warning said; STOPPING=1 forgets it.  Other
 * failures are ignored (logged with -v): the service manager's business,
 * never a reason to stop serving.  One thread only (the daemon's main
 * loop): the module keeps its socket and state in statics.
 */
#ifndef NOTIFY_H
#define NOTIFY_H

#define NOTIFY_WAIT_SECONDS 2

/* Send state (lines separated by '\n', no trailing newline needed),
 * without waiting. */
void notify_send(const char *state);

/* READY=1 once (later calls do nothing but STATUS= when status is given). */
void notify_ready(const char *status);

/* STATUS=status, on its own. */
void notify_status(const char *status);

/* RELOADING=1 (with MONOTONIC_USEC=, which systemd 253's
 * Type=notify-reload wants and older ones ignore); then, after the
 * reload, READY=1 again if it was ready before. */
void notify_reloading(void);
void notify_reloaded(void);

/* STOPPING=1; with a drain of drain_seconds (0: none), also
 * EXTEND_TIMEOUT_USEC= for the drain and NOTIFY_STOP_MARGIN seconds more,
 * so that a --drain-timeout longer than the unit's TimeoutStopSec= is not
 * cut short by SIGKILL (systemd 236 and later; older ones ignore it). */
#define NOTIFY_STOP_MARGIN 15
void notify_stopping(unsigned long drain_seconds);

#endif
