/*
 * Unit tests for common/limit.c: a count that never passes its maximum,
 * even when threads take units at the same moment (the relay's workers
 * share --max-channels this way).
 *
 * Read top to bottom: one thread takes up to the maximum and no further,
 * and units given back can be taken again; then the race: threads take
 * and give back as fast as they can against a maximum of one or two, and
 * each counts, while it holds a unit, how many holders there are.  A
 * check of the maximum that is separate from the increment lets two
 * threads through at once within a few thousand rounds on two cores.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "limit.h"

#define THREADS 4
#define ROUNDS 200000		/* per thread */
#define SECONDS_MAX 20		/* the race stops by itself after this */

static void
test_takes_up_to_max(void **state)
{
	struct limit l;
	unsigned i;

	(void)state;
	limit_init(&l, 3);
	for (i = 0; i < 3; i++)
		assert_int_equal(limit_take(&l), 0);
	assert_int_equal(limit_take(&l), -1);
	assert_int_equal(limit_used(&l), 3);
	limit_give(&l);
	assert_int_equal(limit_used(&l), 2);
	assert_int_equal(limit_take(&l), 0);
	assert_int_equal(limit_take(&l), -1);
}

static void
test_zero_takes_nothing(void **state)
{
	struct limit l;

	(void)state;
	limit_init(&l, 0);
	assert_int_equal(limit_take(&l), -1);
	assert_int_equal(limit_used(&l), 0);
}

struct race {
	struct limit l;
	atomic_uint holders;		/* threads holding a unit now */
	atomic_uint most;		/* the most seen at once */
	atomic_uint over;		/* times limit_used said > max */
	atomic_ulong taken;
	time_t deadline;
};

static void *
racer(void *arg)
{
	struct race *r = arg;
	unsigned h, m;
	long i;

	for (i = 0; i < ROUNDS; i++) {
		if ((i & 1023) == 0 && time(NULL) > r->deadline)
			break;
		if (limit_take(&r->l) == -1)
			continue;
		h = atomic_fetch_add(&r->holders, 1) + 1;
		m = atomic_load(&r->most);
		while (h > m && !atomic_compare_exchange_weak(&r->most, &m, h))
			;
		if (limit_used(&r->l) > r->l.max)
			atomic_fetch_add(&r->over, 1);
		atomic_fetch_add(&r->taken, 1);
		atomic_fetch_sub(&r->holders, 1);
		limit_give(&r->l);
	}
	return NULL;
}

static void
race(unsigned max)
{
	static struct race r;
	pthread_t t[THREADS];
	unsigned i;

	limit_init(&r.l, max);
	atomic_init(&r.holders, 0);
	atomic_init(&r.most, 0);
	atomic_init(&r.over, 0);
	atomic_init(&r.taken, 0);
	r.deadline = time(NULL) + SECONDS_MAX;
	for (i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, racer, &r), 0);
	for (i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	print_message("max %u: %lu units taken, at most %u held at once\n",
	    max, (unsigned long)atomic_load(&r.taken), atomic_load(&r.most));
	assert_true(atomic_load(&r.taken) > 0);
	assert_true(atomic_load(&r.most) <= max);
	assert_int_equal(atomic_load(&r.over), 0);
	assert_int_equal(limit_used(&r.l), 0);
}

static void
test_race_max_one(void **state)
{
	(void)state;
	race(1);
}

static void
test_race_max_two(void **state)
{
	(void)state;
	race(2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_takes_up_to_max),
		cmocka_unit_test(test_zero_takes_nothing),
		cmocka_unit_test(test_race_max_one),
		cmocka_unit_test(test_race_max_two),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
