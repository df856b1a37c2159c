/*
 * metrics: the entry-point's series, beside the ones it shares with the
 * reverse-proxy (common/client_metrics.c): connections by route, the
 * open latency, and its limits (README, "Metrics").
 */
#include "entry.h"

#include "client_metrics.h"
#include "metrics.h"

/* limit_hits_total{limit=...}, in the order of enum entry_limit. */
static const char *const limits[] = { "max_connections", "max_waiting",
    "wait_timeout" };

int
entry_metrics_init(void)
{
	return client_metrics_init(1, limits, sizeof(limits) /
	    sizeof(limits[0]));
}

void
entry_metrics_limit(enum entry_limit limit, unsigned n)
{
	metrics_add(client_metrics.limit_hits, limit, n);
}

void
entry_metrics_reload(int ok)
{
	metrics_add(client_metrics.reloads, ok ? METRICS_RELOAD_OK :
	    METRICS_RELOAD_FAILED, 1);
}
