#include "limit.h"

void
limit_init(struct limit *l, unsigned max)
{
	atomic_init(&l->used, 0);
	atomic_init(&l->max, max);
}

void
limit_set_max(struct limit *l, unsigned max)
{
	atomic_store_explicit(&l->max, max, memory_order_relaxed);
}

int
limit_take(struct limit *l)
{
	unsigned n = atomic_load_explicit(&l->used, memory_order_relaxed);
	unsigned max = atomic_load_explicit(&l->max, memory_order_relaxed);

	/* Only a compare-and-swap from a count below max takes a unit: a
	 * load, a check and an add in three steps would let every thread
	 * that loaded max - 1 take one. */
	do {
		if (n >= max)
			return -1;
	} while (!atomic_compare_exchange_weak_explicit(&l->used, &n, n + 1,
	    memory_order_relaxed, memory_order_relaxed));
	return 0;
}

void
limit_give(struct limit *l)
{
	(void)atomic_fetch_sub_explicit(&l->used, 1, memory_order_relaxed);
}

unsigned
limit_used(struct limit *l)
{
	return atomic_load_explicit(&l->used, memory_order_relaxed);
}
