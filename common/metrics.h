/*
 * metrics: a small registry of counters, gauges and histograms, and its
 * rendering as Prometheus text exposition (format 0.0.4), which
 * metrics_http.c serves at /metrics (--metrics).
 *
 * Every name is prefixed with METRICS_PREFIX.  A metric has at most one
 * label, whose values come from a struct metrics_labels: fixed (a list
 * known at start: "direction", "reason") or bounded (values claimed at
 * run time, a group id or a route, up to a cap; what comes past the cap
 * is counted under the value "other", so that a client cannot grow the
 * exposition without bound).  A metric without a label has one series,
 * index 0.
 *
 * Metrics and labels are registered at start, before any thread runs
 * that updates them; the registry owns them and metrics_free releases
 * them all.  Updates (metrics_add, metrics_set, metrics_observe) and
 * label claims (metrics_label) are relaxed C11 atomics, from any thread:
 * the data path takes no lock, and a reader sees each value whole (a
 * histogram's buckets, count and sum are read one by one, so a scrape in
 * the middle of an observation may see them one observation apart, as
 * Prometheus allows).  Every update takes a NULL metric and does
 * nothing: a daemon without --metrics registers nothing and pays a test.
 */
#ifndef METRICS_H
#define METRICS_H

#include <stdint.h>

struct evbuffer;
struct metric;
struct metrics_labels;

#define METRICS_PREFIX "tcp_reverse_proxy_"
#define METRICS_LABEL_LEN 128		/* a label value, cut to fit */
#define METRICS_OTHER "other"
#define METRICS_MAX 64			/* metrics registered, at most */
#define METRICS_LABELS_MAX 32		/* label sets, at most */
/* Histogram buckets: upper bounds in seconds (and +Inf). */
#define METRICS_BUCKETS 13
#define METRICS_BUCKET_BOUNDS { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, \
    0.1, 0.25, 0.5, 1, 2.5, 5, 10 }

enum metric_type {
	METRIC_COUNTER,
	METRIC_GAUGE,
	METRIC_HISTOGRAM,
};

/*
 * A label named name whose values are values[0..n-1] (not copied: static
 * strings), series i for values[i].  NULL on failure (logged).
 */
struct metrics_labels *metrics_labels_fixed(const char *name,
    const char *const *values, unsigned n);

/*
 * A label named name whose values are claimed by metrics_label, at most
 * cap of them; series cap is "other".  NULL on failure (logged).
 */
struct metrics_labels *metrics_labels_bounded(const char *name, unsigned cap);

/*
 * The series index of value in l: for a bounded label, claimed if it is
 * new (lock-free, any thread), or the index of "other" when cap values
 * are claimed; for a fixed one, its index, or an index past the last
 * (updates ignore it) when value is not in the list.  l NULL: 0.
 */
unsigned metrics_label(struct metrics_labels *l, const char *value);

/*
 * Register a metric: name without the prefix (with the unit and _total
 * as the conventions say), help a line of text, labels NULL for a single
 * series (a histogram takes none).  NULL on failure (logged).
 */
struct metric *metrics_new(enum metric_type type, const char *name,
    const char *help, struct metrics_labels *labels);

/* Add n (may be negative for a gauge) to series label of m.  An index
 * past the last series and a NULL m are ignored. */
void metrics_add(struct metric *m, unsigned label, int64_t n);

/* Set series label of gauge m to v. */
void metrics_set(struct metric *m, unsigned label, int64_t v);

/* Count one observation of seconds in histogram m. */
void metrics_observe(struct metric *m, double seconds);

/* The value of series label (a histogram's count), for tests; 0 for a
 * NULL m or an index past the last. */
int64_t metrics_value(const struct metric *m, unsigned label);

/*
 * Call fn(arg) before each rendering, from the thread that renders: to
 * set gauges that are cheaper to read than to follow (pool sizes).  One
 * such function; a second call replaces it.
 */
void metrics_on_collect(void (*fn)(void *arg), void *arg);

/* Append the exposition of every metric to out.  Returns 0, or -1 when
 * out of memory. */
int metrics_render(struct evbuffer *out);

/* Free every metric and label set (at exit); the registry is empty again. */
void metrics_free(void);

#endif
