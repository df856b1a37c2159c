/*
 * metrics_http: --metrics [ADDRESS:]PORT, the HTTP endpoint that serves
 * the registry (metrics.h) as Prometheus text at /metrics, with
 * libevent's evhttp on the daemon's main event loop.
 *
 * GET and HEAD /metrics answer 200 with the exposition; any other path
 * 404, any other method on /metrics 405.  A scraper is a client like any
 * other, so the server is fenced (common/NOTES.md, "Metrics"): headers
 * of at most METRICS_HTTP_HEADERS_MAX bytes, a body of at most
 * METRICS_HTTP_BODY_MAX, read at most two headers' worth ahead (pipelined
 * requests wait in the kernel), METRICS_HTTP_TIMEOUT seconds idle and
 * METRICS_HTTP_LIFETIME seconds in all per connection (bytes trickled in
 * do not keep it), at most METRICS_HTTP_CONNS connections at once (the
 * listener pauses until one ends), and a second's pause after a failed
 * accept: a flood of scrapers holds at most METRICS_HTTP_CONNS + 1
 * descriptors (the daemons keep that many apart from their limits when
 * --metrics is on) and never starves the tunnel.
 */
#ifndef METRICS_HTTP_H
#define METRICS_HTTP_H

#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct metrics_http;

#define METRICS_HTTP_HEADERS_MAX 8192
#define METRICS_HTTP_BODY_MAX 1024
#define METRICS_HTTP_TIMEOUT 10
#define METRICS_HTTP_CONNS 16	/* open at once; past it accept waits */
#define METRICS_HTTP_LIFETIME 10	/* seconds a connection may live */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Where --metrics serves (len 0: it is off). */
struct metrics_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/*
 * Parse --metrics: "PORT" (on 127.0.0.1), "ADDRESS:PORT" or
 * "[IPV6]:PORT", numeric addresses only, PORT 0..65535 (0: the kernel
 * chooses; the log line says which).  text NULL: off.  Returns 0, or -1
 * with err ("'x': ...").
 */
int metrics_http_parse(const char *text, struct metrics_addr *a, char *err,
    size_t errlen);

/* Do a and b name the same address (both off counts as the same)? */
int metrics_addr_equal(const struct metrics_addr *a,
    const struct metrics_addr *b);

/*
 * Serve /metrics at a on base, and log "metrics: serving
 * http://ADDRESS:PORT/metrics" with the port bound.  Returns the server,
 * or NULL with err (the address and why) when it cannot listen.
 */
struct metrics_http *metrics_http_start(struct event_base *base,
    const struct metrics_addr *a, char *err, size_t errlen);

/* Stop serving and free h.  NULL is fine. */
void metrics_http_free(struct metrics_http *h);

/*
 * What each daemon does with its --metrics value: parse it (a bad one:
 * a line naming the flag and the value, exit EXIT_USAGE), or nothing
 * when it is NULL.  Returns 1 when metrics are on.
 */
int metrics_http_check(const char *text, struct metrics_addr *a);

/* ... and start serving (exit EXIT_RUNTIME when it cannot listen);
 * NULL when a is off. */
struct metrics_http *metrics_http_serve(struct event_base *base,
    const struct metrics_addr *a);

#endif
