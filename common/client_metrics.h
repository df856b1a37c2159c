/*
 * client_metrics: the series the entry-point and the reverse-proxy share
 * (README, "Metrics"), registered by client_metrics_init when --metrics
 * is on.  The pool (handshakes, AUTH results, reconnects), the conns
 * (connections, bytes, OPEN results, open latency) and the daemons
 * (reloads, limit hits) update them through client_metrics; without
 * --metrics every pointer in it is NULL and each update does nothing.
 */
#ifndef CLIENT_METRICS_H
#define CLIENT_METRICS_H

#include <stdint.h>

struct metric;
struct metrics_labels;
struct pool;

/* Label indexes of the fixed labels. */
enum { METRICS_UPSTREAM, METRICS_DOWNSTREAM };	/* direction */
enum { METRICS_RELOAD_OK, METRICS_RELOAD_FAILED };	/* result */
enum { HANDSHAKE_FULL, HANDSHAKE_RESUMED };	/* kind */

/* direction="upstream" is from the user (the entry-point's source)
 * toward the destination; "downstream" the other way. */
extern const char *const metrics_directions[2];
extern const char *const metrics_reload_results[2];

struct client_metrics {
	struct metrics_labels *routes;	/* entry-point: route; else NULL */
	struct metric *connections_total, *connections_active;
	struct metric *bytes;		/* by direction */
	struct metric *channels;	/* by state: the pool, at each scrape */
	struct metric *handshakes;	/* by kind */
	struct metric *auth_results;	/* by reason: the relay's answers */
	struct metric *open_results;	/* by code */
	struct metric *open_latency;	/* entry-point: OPEN to OPEN_RESULT */
	struct metric *reconnects;
	struct metric *limit_hits;	/* by limit (the daemon's names) */
	struct metric *reloads;		/* by result */
};

extern struct client_metrics client_metrics;

/*
 * Register the shared series.  entry: the entry-point's (connections by
 * route, at most CLIENT_METRICS_ROUTES routes; the open latency).
 * limits[0..nlimits-1]: the names of the daemon's limits (static
 * strings), for limit_hits_total; nlimits 0: none.  Returns 0 or -1.
 */
#define CLIENT_METRICS_ROUTES 256
int client_metrics_init(int entry, const char *const *limits,
    unsigned nlimits);

/* Free every series (metrics_free) and forget them: client_metrics is
 * all NULL again, and updates do nothing. */
void client_metrics_free(void);

/* The pool whose channels are counted at each scrape. */
void client_metrics_watch_pool(struct pool *p);

/* entry-point: OPEN leaves now.  Returns when, for
 * client_metrics_open_result (0: not timed, metrics are off). */
uint64_t client_metrics_open_sent(void);

/* entry-point: the OPEN_RESULT code of an OPEN sent at sent (a
 * client_metrics_open_sent value) arrived. */
void client_metrics_open_result(uint8_t code, uint64_t sent);

#endif
