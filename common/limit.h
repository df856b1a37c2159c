/*
 * limit: a count of things held at once (channels, say), shared by
 * threads, that never goes past its maximum: taking a unit and checking
 * the maximum are one atomic step, so two threads that take the last
 * unit at the same moment cannot both have it.
 */
#ifndef LIMIT_H
#define LIMIT_H

#include <stdatomic.h>

struct limit {
	atomic_uint used;
	atomic_uint max;
};

/* A limit of max units, none taken. */
void limit_init(struct limit *l, unsigned max);

/* A new maximum (a reload): units taken beyond it stay taken, and no new
 * one is given until the count is below it. */
void limit_set_max(struct limit *l, unsigned max);

/* Take one unit: returns 0, or -1 (nothing taken) when max are taken. */
int limit_take(struct limit *l);

/* Give back a unit that limit_take gave. */
void limit_give(struct limit *l);

/* Units taken now (a snapshot, for log lines). */
unsigned limit_used(struct limit *l);

#endif
