/*
 * metrics: the relay's series (--metrics; README, "Metrics").  Every
 * worker updates them from its own thread with relaxed atomics (metrics.h):
 * no lock on the data path.  Without --metrics nothing is registered and
 * every call here is a test of a NULL pointer.
 *
 * Channels by state are counted where a state changes (rchan_set_state,
 * and rchan_accept for the first); a user connection is an entry-point
 * channel paired, counted under its group's label (at most
 * RELAY_METRICS_GROUPS groups, the rest under "other").
 */
#include "relay.h"

#include <stdio.h>
#include <string.h>

#include <openssl/ssl.h>

#include "client_metrics.h"
#include "frame.h"
#include "metrics.h"

static const char *const states[] = {
	[R_HANDSHAKE] = "handshake", [R_AUTH] = "auth", [R_IDLE] = "idle",
	[R_QUEUED] = "queued", [R_PAIRED] = "paired",
	[R_CLOSING] = "closing", [R_MOVING] = "moving",
};
static const char *const kinds[] = { "full", "resumed" };
static const char *const stranger_reasons[STRANGER_NKINDS] = {
	[STRANGER_TIMEOUT] = "timeout", [STRANGER_TLS] = "tls",
	[STRANGER_AUTH] = "auth", [STRANGER_EVICTED] = "evicted",
	[STRANGER_TOO_MUCH] = "too_much",
};
static const char *const limits[RELAY_LIMIT_N] = {
	[RELAY_LIMIT_CHANNELS] = "max_channels",
	[RELAY_LIMIT_HANDSHAKES] = "max_handshakes",
	[RELAY_LIMIT_HANDSHAKES_SOURCE] = "max_handshakes_per_source",
	[RELAY_LIMIT_WAITING] = "open_queue",
	[RELAY_LIMIT_OPEN_TIMEOUT] = "open_timeout",
};
static const char *auth_reasons[AUTH_STOPPING + 1];
static const char *open_codes[OPEN_NOT_ALLOWED + 1];

static struct {
	struct metrics_labels *groups;
	struct metric *conns_total, *conns_active, *bytes, *channels;
	struct metric *accepted, *handshakes, *auth, *strangers, *open;
	struct metric *limit_hits, *reloads;
} m;

#define FIXED(name, list, n) metrics_labels_fixed(name, list, n)

int
relay_metrics_init(void)
{
	unsigned i;

	for (i = 0; i <= AUTH_STOPPING; i++)
		auth_reasons[i] = auth_code_name((uint8_t)i);
	for (i = 0; i <= OPEN_NOT_ALLOWED; i++)
		open_codes[i] = open_code_name((uint8_t)i);
	if ((m.groups = metrics_labels_bounded("group",
	    RELAY_METRICS_GROUPS)) == NULL ||
	    (m.conns_total = metrics_new(METRIC_COUNTER, "connections_total",
	    "User connections (pairs made), by group.", m.groups)) == NULL ||
	    (m.conns_active = metrics_new(METRIC_GAUGE, "connections_active",
	    "User connections relayed now, by group.", m.groups)) == NULL ||
	    (m.bytes = metrics_new(METRIC_COUNTER, "bytes_total", "Bytes "
	    "relayed, frames included (upstream: from the entry-points).",
	    FIXED("direction", metrics_directions, 2))) == NULL ||
	    (m.channels = metrics_new(METRIC_GAUGE, "channels", "Channels, by "
	    "state.", FIXED("state", states, R_DEAD))) == NULL ||
	    (m.accepted = metrics_new(METRIC_COUNTER, "channels_accepted_total",
	    "TCP connections accepted.", NULL)) == NULL ||
	    (m.handshakes = metrics_new(METRIC_COUNTER, "handshakes_total",
	    "TLS handshakes done, full or resumed.", FIXED("kind", kinds,
	    2))) == NULL ||
	    (m.auth = metrics_new(METRIC_COUNTER, "auth_results_total",
	    "AUTH_RESULT answers sent, by reason.", FIXED("reason",
	    auth_reasons, AUTH_STOPPING + 1))) == NULL ||
	    (m.strangers = metrics_new(METRIC_COUNTER,
	    "unauthenticated_closed_total", "Connections closed before they "
	    "authenticated, by reason.", FIXED("reason", stranger_reasons,
	    STRANGER_NKINDS))) == NULL ||
	    (m.open = metrics_new(METRIC_COUNTER, "open_results_total",
	    "OPEN_RESULT answers the relay sent itself, by code.",
	    FIXED("code", open_codes, OPEN_NOT_ALLOWED + 1))) == NULL ||
	    (m.limit_hits = metrics_new(METRIC_COUNTER, "limit_hits_total",
	    "Channels or OPENs refused or closed at a limit, by limit.",
	    FIXED("limit", limits, RELAY_LIMIT_N))) == NULL ||
	    (m.reloads = metrics_new(METRIC_COUNTER, "reloads_total",
	    "Reloads (SIGHUP), by result.", FIXED("result",
	    metrics_reload_results, 2))) == NULL)
		return -1;
	return 0;
}

void
relay_metrics_free(void)
{
	metrics_free();
	memset(&m, 0, sizeof(m));
}

unsigned
relay_metrics_group(uint32_t id)
{
	char text[16];

	if (m.groups == NULL)
		return 0;
	snprintf(text, sizeof(text), "%u", id);
	return metrics_label(m.groups, text);
}

void
relay_metrics_accepted(void)
{
	metrics_add(m.accepted, 0, 1);
	metrics_add(m.channels, R_HANDSHAKE, 1);
}

void
relay_metrics_state(struct rchan *c, enum rchan_state from,
    enum rchan_state to)
{
	metrics_add(m.channels, from, -1);
	metrics_add(m.channels, to, 1);
	if (c->role != ROLE_ENTRY)
		return;
	if (to == R_PAIRED) {
		c->mgroup = c->group != NULL ? c->group->mlabel :
		    relay_metrics_group(c->gid);
		metrics_add(m.conns_total, c->mgroup, 1);
		metrics_add(m.conns_active, c->mgroup, 1);
	} else if (from == R_PAIRED) {
		metrics_add(m.conns_active, c->mgroup, -1);
	}
}

void
relay_metrics_bytes(uint8_t role, size_t n)
{
	metrics_add(m.bytes, role == ROLE_ENTRY ? METRICS_UPSTREAM :
	    METRICS_DOWNSTREAM, (int64_t)n);
}

void
relay_metrics_handshake(SSL *ssl)
{
	metrics_add(m.handshakes, SSL_session_reused(ssl) ? 1 : 0, 1);
}

void
relay_metrics_auth(uint8_t code)
{
	metrics_add(m.auth, code, 1);
}

void
relay_metrics_stranger(enum stranger_end why)
{
	metrics_add(m.strangers, why, 1);
}

void
relay_metrics_open(uint8_t code)
{
	metrics_add(m.open, code, 1);
}

void
relay_metrics_limit(enum relay_limit limit)
{
	metrics_add(m.limit_hits, limit, 1);
}

void
relay_metrics_reload(int ok)
{
	metrics_add(m.reloads, ok ? METRICS_RELOAD_OK : METRICS_RELOAD_FAILED,
	    1);
}
