/*
 * Unit tests for common/pool.c: the two rules of the pool that need no
 * network, each a pure function.
 *
 * pool_target_size is how many channels a pool keeps idle, returning or
 * dialing: clamp(min + in_use / 2 + waiting, min, max).  pool_backoff_ms
 * is the wait before the next dial after failures in a row: 100 ms
 * doubling to 5 s, times a jitter of 3/4 .. 5/4 whose random part the
 * test passes in.
 *
 * Read top to bottom: the sizing rule (the floor, half the connections in
 * use, waiting connections, the ceiling, min == max, max < min, sums that
 * would overflow); then the backoff (its bounds, the doubling, the cap,
 * many failures, the random part it asks for, the real random source).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>

#include <sodium.h>

#include "pool.h"

/* --- the sizing rule --- */

static void
test_target_floor_when_idle(void **state)
{
	(void)state;
	assert_int_equal(pool_target_size(4, 64, 0, 0), 4);
	assert_int_equal(pool_target_size(1, 64, 0, 0), 1);
	assert_int_equal(pool_target_size(0, 64, 0, 0), 0);
	/* One connection in use is half a channel: rounded down. */
	assert_int_equal(pool_target_size(4, 64, 1, 0), 4);
}

static void
test_target_adds_half_the_connections_in_use(void **state)
{
	(void)state;
	assert_int_equal(pool_target_size(4, 64, 2, 0), 5);
	assert_int_equal(pool_target_size(4, 64, 3, 0), 5);
	assert_int_equal(pool_target_size(4, 64, 10, 0), 9);
	assert_int_equal(pool_target_size(4, 64, 11, 0), 9);
	assert_int_equal(pool_target_size(0, 64, 20, 0), 10);
}

static void
test_target_adds_every_waiting_connection(void **state)
{
	(void)state;
	assert_int_equal(pool_target_size(4, 64, 0, 1), 5);
	assert_int_equal(pool_target_size(4, 64, 0, 7), 11);
	/* Both at once: min + in_use / 2 + waiting. */
	assert_int_equal(pool_target_size(4, 64, 10, 7), 16);
	assert_int_equal(pool_target_size(4, 64, 11, 7), 16);
}

static void
test_target_ceiling(void **state)
{
	(void)state;
	/* Just below, at and past max. */
	assert_int_equal(pool_target_size(4, 64, 0, 59), 63);
	assert_int_equal(pool_target_size(4, 64, 0, 60), 64);
	assert_int_equal(pool_target_size(4, 64, 0, 61), 64);
	assert_int_equal(pool_target_size(4, 64, 118, 0), 63);
	assert_int_equal(pool_target_size(4, 64, 120, 0), 64);
	assert_int_equal(pool_target_size(4, 64, 122, 0), 64);
	assert_int_equal(pool_target_size(4, 64, 100, 10), 64);
	assert_int_equal(pool_target_size(4, 64, 1000, 1000), 64);
}

static void
test_target_min_equals_max(void **state)
{
	(void)state;
	assert_int_equal(pool_target_size(8, 8, 0, 0), 8);
	assert_int_equal(pool_target_size(8, 8, 100, 100), 8);
	assert_int_equal(pool_target_size(0, 0, 0, 0), 0);
	assert_int_equal(pool_target_size(0, 0, 100, 100), 0);
	assert_int_equal(pool_target_size(UINT_MAX, UINT_MAX, UINT_MAX,
	    UINT_MAX), UINT_MAX);
}

/* The options refuse --pool-min above --pool-max; given it anyway, the
 * function lets the ceiling win (pool.h says so). */
static void
test_target_max_below_min_is_max(void **state)
{
	(void)state;
	assert_int_equal(pool_target_size(8, 4, 0, 0), 4);
	assert_int_equal(pool_target_size(8, 4, 100, 100), 4);
	assert_int_equal(pool_target_size(8, 0, 0, 0), 0);
	assert_int_equal(pool_target_size(UINT_MAX, 1, UINT_MAX, UINT_MAX),
	    1);
}

/* Sums past UINT_MAX must not wrap around to a small target. */
static void
test_target_does_not_overflow(void **state)
{
	(void)state;
	assert_int_equal(pool_target_size(4, 64, UINT_MAX, 0), 64);
	assert_int_equal(pool_target_size(4, 64, UINT_MAX - 1, 0), 64);
	assert_int_equal(pool_target_size(4, 64, 0, UINT_MAX), 64);
	assert_int_equal(pool_target_size(4, 64, UINT_MAX, UINT_MAX), 64);
	/* min + waiting is exactly 2^32 (0 after a wrap). */
	assert_int_equal(pool_target_size(4, 64, 0, UINT_MAX - 3), 64);
	/* Near the top of the range, the ceiling itself huge. */
	assert_int_equal(pool_target_size(4, UINT_MAX, UINT_MAX, 0),
	    4 + UINT_MAX / 2);
	assert_int_equal(pool_target_size(4, UINT_MAX, UINT_MAX, UINT_MAX),
	    UINT_MAX);
	assert_int_equal(pool_target_size(UINT_MAX - 1, UINT_MAX, 4, 0),
	    UINT_MAX);
	assert_int_equal(pool_target_size(UINT_MAX - 1, UINT_MAX, 0, 1),
	    UINT_MAX);
	assert_int_equal(pool_target_size(UINT_MAX - 2, UINT_MAX, 2, 0),
	    UINT_MAX - 1);
	assert_int_equal(pool_target_size(UINT_MAX / 2, UINT_MAX, UINT_MAX,
	    1), UINT_MAX);
}

/* --- the backoff --- */

/* Random parts: the smallest, the largest, and one that records what
 * it was asked for. */
static uint32_t last_upper;

static uint32_t
uniform_low(uint32_t upper)
{
	last_upper = upper;
	return 0;
}

static uint32_t
uniform_high(uint32_t upper)
{
	last_upper = upper;
	return upper - 1;
}

/* The delay before jitter, for failures in a row. */
static unsigned long
base_delay(unsigned failures)
{
	unsigned long ms = 100;

	while (failures-- > 1 && ms < 5000)
		ms *= 2;
	return ms < 5000 ? ms : 5000;
}

/* Backoff of failures with each extreme of the random part: within
 * 3/4 .. 5/4 of the delay, and reaching both ends. */
static void
assert_backoff(unsigned failures, unsigned long delay)
{
	unsigned long low = pool_backoff_ms(failures, uniform_low);
	unsigned long high = pool_backoff_ms(failures, uniform_high);

	if (low != delay * 3 / 4 || high != delay * 5 / 4)
		fail_msg("failure %u: backoff %lu .. %lu ms, want %lu .. %lu",
		    failures, low, high, delay * 3 / 4, delay * 5 / 4);
	/* The random part spans the whole jitter, and no more. */
	assert_int_equal(last_upper, delay / 2 + 1);
}

static void
test_backoff_first_failure(void **state)
{
	(void)state;
	assert_backoff(1, 100);		/* 75 .. 125 ms */
	/* No failure yet counts as one (no shift by -1). */
	assert_backoff(0, 100);
}

static void
test_backoff_doubles(void **state)
{
	(void)state;
	assert_backoff(2, 200);
	assert_backoff(3, 400);
	assert_backoff(4, 800);
	assert_backoff(5, 1600);
	assert_backoff(6, 3200);
}

static void
test_backoff_capped_at_5_s(void **state)
{
	unsigned f;

	(void)state;
	assert_backoff(7, 5000);	/* 6400 capped */
	for (f = 7; f <= 100; f++)
		assert_backoff(f, base_delay(f));
	assert_int_equal(base_delay(100), 5000);
}

/* However many failures (the counter is unsigned and may wrap), the delay
 * stays within 3.75 .. 6.25 s: no shift past the width of the type. */
static void
test_backoff_after_many_failures(void **state)
{
	static const unsigned many[] = { 8, 9, 31, 32, 33, 63, 64, 65, 1000,
	    UINT_MAX / 2, UINT_MAX - 1, UINT_MAX };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(many) / sizeof(many[0]); i++)
		assert_backoff(many[i], 5000);
}

/* After a refusal that will not change by itself: from 1 s, doubling,
 * up to 60 s (a client refused for good does not redial every 100 ms). */
static void
test_refused_backoff(void **state)
{
	static const unsigned long want[] = { 1000, 1000, 2000, 4000, 8000,
	    16000, 32000, 60000, 60000 };
	static const unsigned many[] = { 64, 1000, UINT_MAX };
	unsigned long low, high;
	unsigned f;
	size_t i;

	(void)state;
	for (f = 0; f < sizeof(want) / sizeof(want[0]); f++) {
		low = pool_refused_backoff_ms(f, uniform_low);
		high = pool_refused_backoff_ms(f, uniform_high);
		if (low != want[f] * 3 / 4 || high != want[f] * 5 / 4)
			fail_msg("refusal %u: backoff %lu .. %lu ms, want "
			    "%lu .. %lu", f, low, high, want[f] * 3 / 4,
			    want[f] * 5 / 4);
	}
	for (i = 0; i < sizeof(many) / sizeof(many[0]); i++)
		assert_int_equal(pool_refused_backoff_ms(many[i], uniform_high),
		    75000);
	/* The ordinary backoff is unchanged by it. */
	assert_backoff(7, 5000);
}

/* With the real random source, as dial_failed calls it. */
static void
test_backoff_with_randombytes(void **state)
{
	unsigned long ms, lowest = ULONG_MAX, highest = 0;
	unsigned f, i;

	(void)state;
	assert_true(sodium_init() >= 0);
	for (f = 1; f <= 10; f++) {
		for (i = 0; i < 200; i++) {
			ms = pool_backoff_ms(f, randombytes_uniform);
			if (ms < base_delay(f) * 3 / 4 ||
			    ms > base_delay(f) * 5 / 4)
				fail_msg("failure %u: backoff %lu ms, outside "
				    "%lu .. %lu", f, ms, base_delay(f) * 3 / 4,
				    base_delay(f) * 5 / 4);
			if (f == 10) {
				lowest = ms < lowest ? ms : lowest;
				highest = ms > highest ? ms : highest;
			}
		}
	}
	/* 200 draws from 2501 values: they spread (not one fixed delay). */
	assert_true(highest - lowest > 1000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_target_floor_when_idle),
		cmocka_unit_test(test_target_adds_half_the_connections_in_use),
		cmocka_unit_test(test_target_adds_every_waiting_connection),
		cmocka_unit_test(test_target_ceiling),
		cmocka_unit_test(test_target_min_equals_max),
		cmocka_unit_test(test_target_max_below_min_is_max),
		cmocka_unit_test(test_target_does_not_overflow),
		cmocka_unit_test(test_backoff_first_failure),
		cmocka_unit_test(test_backoff_doubles),
		cmocka_unit_test(test_backoff_capped_at_5_s),
		cmocka_unit_test(test_backoff_after_many_failures),
		cmocka_unit_test(test_backoff_with_randombytes),
		cmocka_unit_test(test_refused_backoff),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
