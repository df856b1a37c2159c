#include "metrics.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "log.h"

/* A claimed value of a bounded label: free, being written, ready. */
enum { SLOT_FREE, SLOT_WRITING, SLOT_READY };

struct label_slot {
	atomic_uint state;
	char text[METRICS_LABEL_LEN];
};

struct metrics_labels {
	const char *name;
	const char *const *fixed;	/* fixed values, or NULL */
	unsigned n;			/* series: fixed values, or cap + 1 */
	unsigned cap;			/* bounded: claimable values */
	struct label_slot *slots;	/* bounded: cap of them */
	atomic_int overflowed;		/* bounded: "other" was used */
};

/* A histogram's series: a count per bucket (not cumulative; the last is
 * +Inf), then the count and the sum in microseconds. */
#define HIST_SERIES (METRICS_BUCKETS + 3)
#define HIST_COUNT (METRICS_BUCKETS + 1)
#define HIST_SUM_US (METRICS_BUCKETS + 2)

struct metric {
	enum metric_type type;
	const char *name, *help;
	struct metrics_labels *labels;	/* NULL: one series */
	unsigned n;			/* series */
	atomic_llong *v;		/* n of them */
};

static const double bounds[METRICS_BUCKETS] = METRICS_BUCKET_BOUNDS;
static struct metric *metrics[METRICS_MAX];
static unsigned nmetrics;
static struct metrics_labels *labelsets[METRICS_LABELS_MAX];
static unsigned nlabelsets;
static void (*collect_fn)(void *);
static void *collect_arg;

static struct metrics_labels *
labels_add(struct metrics_labels *l)
{
	if (nlabelsets == METRICS_LABELS_MAX) {
		log_warnx("metrics: more than %d label sets", METRICS_LABELS_MAX);
		free(l->slots);
		free(l);
		return NULL;
	}
	labelsets[nlabelsets++] = l;
	return l;
}

struct metrics_labels *
metrics_labels_fixed(const char *name, const char *const *values, unsigned n)
{
	struct metrics_labels *l;

	if ((l = calloc(1, sizeof(*l))) == NULL) {
		log_warn("metrics: calloc");
		return NULL;
	}
	l->name = name;
	l->fixed = values;
	l->n = n;
	return labels_add(l);
}

struct metrics_labels *
metrics_labels_bounded(const char *name, unsigned cap)
{
	struct metrics_labels *l;
	unsigned i;

	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (l->slots = calloc(cap > 0 ? cap : 1, sizeof(*l->slots))) == NULL) {
		log_warn("metrics: calloc");
		free(l);
		return NULL;
	}
	for (i = 0; i < cap; i++)
		atomic_init(&l->slots[i].state, SLOT_FREE);
	atomic_init(&l->overflowed, 0);
	l->name = name;
	l->cap = cap;
	l->n = cap + 1;
	return labels_add(l);
}

unsigned
metrics_label(struct metrics_labels *l, const char *value)
{
	struct label_slot *s;
	unsigned i, st, expect;

	if (l == NULL)
		return 0;
	if (l->fixed != NULL) {
		for (i = 0; i < l->n; i++)
			if (strcmp(l->fixed[i], value) == 0)
				return i;
		return l->n;
	}
	/* Slots are claimed in order: the first free one ends the search. */
	for (i = 0; i < l->cap; i++) {
		s = &l->slots[i];
		st = atomic_load_explicit(&s->state, memory_order_acquire);
		if (st == SLOT_FREE) {
			expect = SLOT_FREE;
			if (atomic_compare_exchange_strong_explicit(&s->state,
			    &expect, SLOT_WRITING, memory_order_acq_rel,
			    memory_order_acquire)) {
				snprintf(s->text, sizeof(s->text), "%s", value);
				atomic_store_explicit(&s->state, SLOT_READY,
				    memory_order_release);
				return i;
			}
			st = expect;
		}
		/* Another thread claims this slot: a few instructions. */
		while (st == SLOT_WRITING) {
			sched_yield();
			st = atomic_load_explicit(&s->state,
			    memory_order_acquire);
		}
		if (strncmp(s->text, value, sizeof(s->text) - 1) == 0)
			return i;
	}
	atomic_store_explicit(&l->overflowed, 1, memory_order_relaxed);
	return l->cap;
}

struct metric *
metrics_new(enum metric_type type, const char *name, const char *help,
    struct metrics_labels *labels)
{
	struct metric *m;
	unsigned i;

	if (nmetrics == METRICS_MAX) {
		log_warnx("metrics: more than %d metrics", METRICS_MAX);
		return NULL;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		log_warn("metrics: calloc");
		return NULL;
	}
	m->type = type;
	m->name = name;
	m->help = help;
	m->labels = type == METRIC_HISTOGRAM ? NULL : labels;
	m->n = type == METRIC_HISTOGRAM ? HIST_SERIES : labels != NULL ?
	    labels->n : 1;
	if ((m->v = calloc(m->n, sizeof(*m->v))) == NULL) {
		log_warn("metrics: calloc");
		free(m);
		return NULL;
	}
	for (i = 0; i < m->n; i++)
		atomic_init(&m->v[i], 0);
	metrics[nmetrics++] = m;
	return m;
}

void
metrics_add(struct metric *m, unsigned label, int64_t n)
{
	if (m == NULL || label >= m->n)
		return;
	atomic_fetch_add_explicit(&m->v[label], n, memory_order_relaxed);
}

void
metrics_set(struct metric *m, unsigned label, int64_t v)
{
	if (m == NULL || label >= m->n)
		return;
	atomic_store_explicit(&m->v[label], v, memory_order_relaxed);
}

void
metrics_observe(struct metric *m, double seconds)
{
	unsigned i;

	if (m == NULL || m->type != METRIC_HISTOGRAM)
		return;
	if (!(seconds >= 0))		/* NaN too */
		seconds = 0;
	for (i = 0; i < METRICS_BUCKETS && seconds > bounds[i]; i++)
		;
	atomic_fetch_add_explicit(&m->v[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->v[HIST_COUNT], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->v[HIST_SUM_US], seconds < 1e9 ?
	    (long long)(seconds * 1e6 + 0.5) : (long long)1e15,
	    memory_order_relaxed);
}

int64_t
metrics_value(const struct metric *m, unsigned label)
{
	if (m == NULL)
		return 0;
	if (m->type == METRIC_HISTOGRAM)
		label = HIST_COUNT;
	if (label >= m->n)
		return 0;
	return atomic_load_explicit(&m->v[label], memory_order_relaxed);
}

void
metrics_on_collect(void (*fn)(void *arg), void *arg)
{
	collect_fn = fn;
	collect_arg = arg;
}

/* Append s to out with the escapes of a label value (\\, \", \n), or of
 * a HELP text (quote as it is). */
static int
add_escaped(struct evbuffer *out, const char *s, int quote)
{
	const char *p;
	int r = 0;

	for (p = s; *p != '\0' && r == 0; p++) {
		if (*p == '\\')
			r = evbuffer_add(out, "\\\\", 2);
		else if (*p == '\n')
			r = evbuffer_add(out, "\\n", 2);
		else if (*p == '"' && quote)
			r = evbuffer_add(out, "\\\"", 2);
		else
			r = evbuffer_add(out, p, 1);
	}
	return r;
}

/* The text of series i of label set l, or NULL when it is not shown (a
 * bounded value not claimed, "other" never used). */
static const char *
label_text(struct metrics_labels *l, unsigned i)
{
	if (l->fixed != NULL)
		return l->fixed[i];
	if (i == l->cap)
		return atomic_load_explicit(&l->overflowed,
		    memory_order_relaxed) ? METRICS_OTHER : NULL;
	if (atomic_load_explicit(&l->slots[i].state, memory_order_acquire) !=
	    SLOT_READY)
		return NULL;
	return l->slots[i].text;
}

static int
render_histogram(struct evbuffer *out, const struct metric *m)
{
	long long cumulative = 0, sum;
	unsigned i;

	for (i = 0; i <= METRICS_BUCKETS; i++) {
		cumulative += atomic_load_explicit(&m->v[i],
		    memory_order_relaxed);
		if (i < METRICS_BUCKETS ? evbuffer_add_printf(out,
		    METRICS_PREFIX "%s_bucket{le=\"%g\"} %lld\n", m->name,
		    bounds[i], cumulative) < 0 : evbuffer_add_printf(out,
		    METRICS_PREFIX "%s_bucket{le=\"+Inf\"} %lld\n", m->name,
		    cumulative) < 0)
			return -1;
	}
	sum = atomic_load_explicit(&m->v[HIST_SUM_US], memory_order_relaxed);
	/* The count is the +Inf bucket's, so that the two always agree. */
	if (evbuffer_add_printf(out, METRICS_PREFIX "%s_sum %lld.%06lld\n"
	    METRICS_PREFIX "%s_count %lld\n", m->name, sum / 1000000,
	    sum % 1000000, m->name, cumulative) < 0)
		return -1;
	return 0;
}

static int
render_one(struct evbuffer *out, const struct metric *m)
{
	static const char *const types[] = { "counter", "gauge", "histogram" };
	const char *text;
	unsigned i;

	if (evbuffer_add_printf(out, "# HELP " METRICS_PREFIX "%s ",
	    m->name) < 0 || add_escaped(out, m->help, 0) == -1 ||
	    evbuffer_add_printf(out, "\n# TYPE " METRICS_PREFIX "%s %s\n",
	    m->name, types[m->type]) < 0)
		return -1;
	if (m->type == METRIC_HISTOGRAM)
		return render_histogram(out, m);
	if (m->labels == NULL)
		return evbuffer_add_printf(out, METRICS_PREFIX "%s %lld\n",
		    m->name, (long long)atomic_load_explicit(&m->v[0],
		    memory_order_relaxed)) < 0 ? -1 : 0;
	for (i = 0; i < m->n; i++) {
		if ((text = label_text(m->labels, i)) == NULL)
			continue;
		if (evbuffer_add_printf(out, METRICS_PREFIX "%s{%s=\"",
		    m->name, m->labels->name) < 0 ||
		    add_escaped(out, text, 1) == -1 ||
		    evbuffer_add_printf(out, "\"} %lld\n",
		    (long long)atomic_load_explicit(&m->v[i],
		    memory_order_relaxed)) < 0)
			return -1;
	}
	return 0;
}

int
metrics_render(struct evbuffer *out)
{
	unsigned i;

	if (collect_fn != NULL)
		collect_fn(collect_arg);
	for (i = 0; i < nmetrics; i++)
		if (render_one(out, metrics[i]) == -1)
			return -1;
	return 0;
}

void
metrics_free(void)
{
	unsigned i;

	for (i = 0; i < nmetrics; i++) {
		free(metrics[i]->v);
		free(metrics[i]);
		metrics[i] = NULL;
	}
	nmetrics = 0;
	for (i = 0; i < nlabelsets; i++) {
		free(labelsets[i]->slots);
		free(labelsets[i]);
		labelsets[i] = NULL;
	}
	nlabelsets = 0;
	collect_fn = NULL;
	collect_arg = NULL;
}
