/*
 * Unit tests for common/metrics.c: the registry and its Prometheus text.
 *
 * Read top to bottom: a counter and a gauge without labels render with
 * their HELP and TYPE lines; a fixed label shows every value, zeros too,
 * and ignores an index past its list; a bounded label claims values up to
 * its cap and counts the rest under "other" (shown only once used); label
 * values and HELP text are escaped; a histogram's buckets are cumulative
 * and its count is the +Inf bucket's; threads that add at once lose no
 * update; a NULL metric is ignored everywhere.  Last, --metrics values
 * (metrics_http.c): a bare port is on 127.0.0.1, an address is numeric
 * and IPv6 goes in brackets, and the rest is refused with the value named.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>

#include "metrics.h"
#include "metrics_http.h"

/* The whole exposition, as a string the caller frees. */
static char *
render(void)
{
	struct evbuffer *out = evbuffer_new();
	size_t len;
	char *s;

	assert_non_null(out);
	assert_int_equal(metrics_render(out), 0);
	len = evbuffer_get_length(out);
	s = malloc(len + 1);
	assert_non_null(s);
	assert_int_equal(evbuffer_remove(out, s, len), (int)len);
	s[len] = '\0';
	evbuffer_free(out);
	return s;
}

static int
teardown(void **state)
{
	(void)state;
	metrics_free();
	return 0;
}

static void
test_counter_and_gauge(void **state)
{
	struct metric *c, *g;
	char *s;

	(void)state;
	c = metrics_new(METRIC_COUNTER, "reloads_total", "Reloads.", NULL);
	g = metrics_new(METRIC_GAUGE, "things", "Things now.", NULL);
	assert_non_null(c);
	assert_non_null(g);
	metrics_add(c, 0, 3);
	metrics_add(g, 0, 5);
	metrics_add(g, 0, -2);
	s = render();
	assert_string_equal(s,
	    "# HELP tcp_reverse_proxy_reloads_total Reloads.\n"
	    "# TYPE tcp_reverse_proxy_reloads_total counter\n"
	    "tcp_reverse_proxy_reloads_total 3\n"
	    "# HELP tcp_reverse_proxy_things Things now.\n"
	    "# TYPE tcp_reverse_proxy_things gauge\n"
	    "tcp_reverse_proxy_things 3\n");
	free(s);
	metrics_set(g, 0, 42);
	assert_int_equal(metrics_value(g, 0), 42);
}

static void
test_fixed_label(void **state)
{
	static const char *const dirs[] = { "upstream", "downstream" };
	struct metrics_labels *l;
	struct metric *m;
	char *s;

	(void)state;
	l = metrics_labels_fixed("direction", dirs, 2);
	m = metrics_new(METRIC_COUNTER, "bytes_total", "Bytes.", l);
	assert_int_equal(metrics_label(l, "downstream"), 1);
	assert_int_equal(metrics_label(l, "sideways"), 2);
	metrics_add(m, 1, 100);
	metrics_add(m, 2, 7);		/* past the list: ignored */
	s = render();
	assert_non_null(strstr(s,
	    "tcp_reverse_proxy_bytes_total{direction=\"upstream\"} 0\n"
	    "tcp_reverse_proxy_bytes_total{direction=\"downstream\"} 100\n"));
	free(s);
}

static void
test_bounded_label(void **state)
{
	struct metrics_labels *l;
	struct metric *m;
	char *s;

	(void)state;
	l = metrics_labels_bounded("group", 2);
	m = metrics_new(METRIC_COUNTER, "connections_total", "Conns.", l);
	assert_int_equal(metrics_label(l, "7"), 0);
	s = render();
	assert_null(strstr(s, "other"));
	free(s);
	assert_int_equal(metrics_label(l, "9"), 1);
	assert_int_equal(metrics_label(l, "7"), 0);
	assert_int_equal(metrics_label(l, "11"), 2);	/* "other" */
	assert_int_equal(metrics_label(l, "12"), 2);
	metrics_add(m, metrics_label(l, "9"), 1);
	metrics_add(m, metrics_label(l, "13"), 4);
	s = render();
	assert_non_null(strstr(s,
	    "tcp_reverse_proxy_connections_total{group=\"7\"} 0\n"
	    "tcp_reverse_proxy_connections_total{group=\"9\"} 1\n"
	    "tcp_reverse_proxy_connections_total{group=\"other\"} 4\n"));
	free(s);
}

static void
test_escapes(void **state)
{
	struct metrics_labels *l;
	struct metric *m;
	char *s;

	(void)state;
	l = metrics_labels_bounded("route", 4);
	m = metrics_new(METRIC_GAUGE, "odd", "A \\ and\na line.", l);
	metrics_add(m, metrics_label(l, "a\"b\\c\nd"), 1);
	s = render();
	assert_non_null(strstr(s, "# HELP tcp_reverse_proxy_odd A \\\\ and\\na "
	    "line.\n"));
	assert_non_null(strstr(s,
	    "tcp_reverse_proxy_odd{route=\"a\\\"b\\\\c\\nd\"} 1\n"));
	free(s);
}

static void
test_histogram(void **state)
{
	struct metric *h;
	char *s;

	(void)state;
	h = metrics_new(METRIC_HISTOGRAM, "open_latency_seconds",
	    "Latency.", NULL);
	metrics_observe(h, 0.0005);	/* 1 ms bucket */
	metrics_observe(h, 0.001);	/* still 1 ms: le is inclusive */
	metrics_observe(h, 0.2);	/* 0.25 */
	metrics_observe(h, 60);		/* +Inf */
	metrics_observe(h, -1);		/* counted as 0 */
	assert_int_equal(metrics_value(h, 0), 5);
	s = render();
	assert_non_null(strstr(s,
	    "# TYPE tcp_reverse_proxy_open_latency_seconds histogram\n"
	    "tcp_reverse_proxy_open_latency_seconds_bucket{le=\"0.001\"} 3\n"
	    "tcp_reverse_proxy_open_latency_seconds_bucket{le=\"0.0025\"} 3\n"));
	assert_non_null(strstr(s,
	    "tcp_reverse_proxy_open_latency_seconds_bucket{le=\"0.1\"} 3\n"
	    "tcp_reverse_proxy_open_latency_seconds_bucket{le=\"0.25\"} 4\n"));
	assert_non_null(strstr(s,
	    "tcp_reverse_proxy_open_latency_seconds_bucket{le=\"10\"} 4\n"
	    "tcp_reverse_proxy_open_latency_seconds_bucket{le=\"+Inf\"} 5\n"
	    "tcp_reverse_proxy_open_latency_seconds_sum 60.201500\n"
	    "tcp_reverse_proxy_open_latency_seconds_count 5\n"));
	free(s);
}

#define THREADS 4
#define ROUNDS 100000

struct adder {
	struct metric *m;
	struct metrics_labels *l;
	char name[8];
};

static void *
add_many(void *arg)
{
	struct adder *a = arg;
	unsigned i, idx;

	for (i = 0; i < ROUNDS; i++) {
		idx = metrics_label(a->l, a->name);
		metrics_add(a->m, idx, 1);
		metrics_add(a->m, metrics_label(a->l, "shared"), 1);
	}
	return NULL;
}

static void
test_threads_lose_nothing(void **state)
{
	struct adder a[THREADS];
	pthread_t t[THREADS];
	struct metrics_labels *l;
	struct metric *m;
	int64_t total = 0;
	unsigned i;

	(void)state;
	l = metrics_labels_bounded("group", 3);	/* "shared" and two more */
	m = metrics_new(METRIC_COUNTER, "c_total", "C.", l);
	/* "shared" first: were it claimed last, the threads' own names
	 * could have taken both other slots, and it would count as "other". */
	(void)metrics_label(l, "shared");
	for (i = 0; i < THREADS; i++) {
		a[i].m = m;
		a[i].l = l;
		snprintf(a[i].name, sizeof(a[i].name), "t%u", i);
		assert_int_equal(pthread_create(&t[i], NULL, add_many, &a[i]), 0);
	}
	for (i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (i = 0; i <= 3; i++)
		total += metrics_value(m, i);
	assert_int_equal(total, 2 * THREADS * ROUNDS);
	assert_int_equal(metrics_value(m, metrics_label(l, "shared")),
	    THREADS * ROUNDS);
}

static void
test_null_is_ignored(void **state)
{
	(void)state;
	metrics_add(NULL, 0, 1);
	metrics_set(NULL, 0, 1);
	metrics_observe(NULL, 1.0);
	assert_int_equal(metrics_value(NULL, 0), 0);
	assert_int_equal(metrics_label(NULL, "x"), 0);
}

static void
test_parse_metrics_address(void **state)
{
	static const char *const bad[] = { "", "x", "65536", "123456", "::1:80",
	    "0:9100", "1:9100", "017.0.0.1:80", "127.1:80", "[1.2.3.4]:80",
	    "localhost:80", "1.2.3.4:", "[::1]", "[::1]:x", ":80", "[]:80",
	    "1.2.3.4:-1", "300.1.1.1:80" };
	struct metrics_addr a, b;
	struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;
	char err[256];
	size_t i;

	(void)state;
	assert_int_equal(metrics_http_parse("9100", &a, err, sizeof(err)), 0);
	assert_int_equal(a.ss.ss_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 9100);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	assert_int_equal(metrics_http_parse("127.0.0.1:9100", &b, err,
	    sizeof(err)), 0);
	assert_true(metrics_addr_equal(&a, &b));
	assert_int_equal(metrics_http_parse("0", &a, err, sizeof(err)), 0);
	assert_int_equal(ntohs(sin->sin_port), 0);
	assert_false(metrics_addr_equal(&a, &b));
	assert_int_equal(metrics_http_parse("10.1.2.3:80", &a, err,
	    sizeof(err)), 0);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x0a010203);
	assert_int_equal(metrics_http_parse("[::1]:9100", &a, err,
	    sizeof(err)), 0);
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_int_equal(ntohs(sin6->sin6_port), 9100);
	assert_int_equal(metrics_http_parse(NULL, &a, err, sizeof(err)), 0);
	assert_int_equal(a.len, 0);
	memset(&b, 0, sizeof(b));
	assert_true(metrics_addr_equal(&a, &b));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(metrics_http_parse(bad[i], &a, err,
		    sizeof(err)), -1);
		assert_non_null(strstr(err, bad[i]));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_counter_and_gauge, teardown),
		cmocka_unit_test_teardown(test_fixed_label, teardown),
		cmocka_unit_test_teardown(test_bounded_label, teardown),
		cmocka_unit_test_teardown(test_escapes, teardown),
		cmocka_unit_test_teardown(test_histogram, teardown),
		cmocka_unit_test_teardown(test_threads_lose_nothing, teardown),
		cmocka_unit_test_teardown(test_null_is_ignored, teardown),
		cmocka_unit_test(test_parse_metrics_address),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
