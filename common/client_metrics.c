#include "client_metrics.h"

#include <string.h>
#include <time.h>

#include "frame.h"
#include "metrics.h"
#include "pool.h"

struct client_metrics client_metrics;

const char *const metrics_directions[2] = { "upstream", "downstream" };
const char *const metrics_reload_results[2] = { "ok", "failed" };

static const char *const channel_states[] = { "idle", "paired", "returning",
    "dialling" };
static const char *const handshake_kinds[] = { "full", "resumed" };
static const char *auth_reasons[AUTH_STOPPING + 1];
static const char *open_codes[OPEN_NOT_ALLOWED + 1];
static struct pool *watched;

static void
collect(void *arg)
{
	struct pool_counts n;

	(void)arg;
	if (watched == NULL)
		return;
	pool_get_counts(watched, &n);
	metrics_set(client_metrics.channels, 0, n.idle);
	metrics_set(client_metrics.channels, 1, n.in_use);
	metrics_set(client_metrics.channels, 2, n.returning);
	metrics_set(client_metrics.channels, 3, n.dialing);
}

int
client_metrics_init(int entry, const char *const *limits, unsigned nlimits)
{
	struct client_metrics *m = &client_metrics;
	struct metrics_labels *route = NULL;
	unsigned i;

	for (i = 0; i <= AUTH_STOPPING; i++)
		auth_reasons[i] = auth_code_name((uint8_t)i);
	for (i = 0; i <= OPEN_NOT_ALLOWED; i++)
		open_codes[i] = open_code_name((uint8_t)i);
	if (entry && (route = m->routes = metrics_labels_bounded("route",
	    CLIENT_METRICS_ROUTES)) == NULL)
		return -1;
	if ((m->connections_total = metrics_new(METRIC_COUNTER,
	    "connections_total", entry ? "User connections accepted, by "
	    "route." : "User connections the relay brought (OPENs read).",
	    route)) == NULL ||
	    (m->connections_active = metrics_new(METRIC_GAUGE,
	    "connections_active", entry ? "User connections open now, by "
	    "route." : "User connections open now.", route)) == NULL ||
	    (m->bytes = metrics_new(METRIC_COUNTER, "bytes_total", "Bytes of "
	    "user data carried (upstream: from the user toward the "
	    "destination).", metrics_labels_fixed("direction",
	    metrics_directions, 2))) == NULL ||
	    (m->channels = metrics_new(METRIC_GAUGE, "channels", "Channels to "
	    "the relay, by state (paired: carrying a connection).",
	    metrics_labels_fixed("state", channel_states, 4))) == NULL ||
	    (m->handshakes = metrics_new(METRIC_COUNTER, "handshakes_total",
	    "TLS handshakes with the relay, full or resumed.",
	    metrics_labels_fixed("kind", handshake_kinds, 2))) == NULL ||
	    (m->auth_results = metrics_new(METRIC_COUNTER, "auth_results_total",
	    "The relay's answers to AUTH, by reason.",
	    metrics_labels_fixed("reason", auth_reasons,
	    AUTH_STOPPING + 1))) == NULL ||
	    (m->open_results = metrics_new(METRIC_COUNTER, "open_results_total",
	    entry ? "OPEN_RESULT codes received, by code." : "OPEN_RESULT "
	    "codes sent, by code.", metrics_labels_fixed("code", open_codes,
	    OPEN_NOT_ALLOWED + 1))) == NULL ||
	    (entry && (m->open_latency = metrics_new(METRIC_HISTOGRAM,
	    "open_latency_seconds", "Time from OPEN sent to OPEN_RESULT "
	    "received.", NULL)) == NULL) ||
	    (m->reconnects = metrics_new(METRIC_COUNTER, "reconnects_total",
	    "Dials to the relay that replace a channel lost while idle or "
	    "a dial that failed.", NULL)) == NULL ||
	    (nlimits > 0 && (m->limit_hits = metrics_new(METRIC_COUNTER,
	    "limit_hits_total", "User connections refused or closed at a "
	    "limit, by limit.", metrics_labels_fixed("limit", limits,
	    nlimits))) == NULL) ||
	    (m->reloads = metrics_new(METRIC_COUNTER, "reloads_total",
	    "Reloads (SIGHUP), by result.", metrics_labels_fixed("result",
	    metrics_reload_results, 2))) == NULL)
		return -1;
	metrics_on_collect(collect, NULL);
	return 0;
}

void
client_metrics_free(void)
{
	metrics_free();
	memset(&client_metrics, 0, sizeof(client_metrics));
	watched = NULL;
}

void
client_metrics_watch_pool(struct pool *p)
{
	watched = p;
}

/* Microseconds of CLOCK_MONOTONIC (0 when it cannot be read). */
static uint64_t
now_us(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t
client_metrics_open_sent(void)
{
	return client_metrics.open_latency != NULL ? now_us() : 0;
}

void
client_metrics_open_result(uint8_t code, uint64_t sent)
{
	uint64_t now;

	metrics_add(client_metrics.open_results, code, 1);
	if (sent != 0 && (now = now_us()) >= sent)
		metrics_observe(client_metrics.open_latency,
		    (double)(now - sent) / 1e6);
}
