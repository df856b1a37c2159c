/*
 * slots: what the relay counts across its workers without a lock: the
 * --max-channels slots (all workers share one limit), the slots held by
 * each role, and the channels paired or closing (for the drain, the
 * status line and relay_pairs).  Every counter is an atomic touched by
 * whichever worker's thread changes what it counts; readers get a
 * snapshot.
 */
#include "relay.h"

#include <stdatomic.h>

static struct limit slots;		/* --max-channels, all workers */
static atomic_uint role_slots[3];	/* of slots, by role */
static atomic_uint npaired, nclosing;	/* channels in those states */

void
relay_slots_init(unsigned max_channels)
{
	limit_init(&slots, max_channels);
}

void
relay_state_changed(enum rchan_state from, enum rchan_state to)
{
	if (from == R_PAIRED)
		atomic_fetch_sub(&npaired, 1);
	else if (from == R_CLOSING)
		atomic_fetch_sub(&nclosing, 1);
	if (to == R_PAIRED)
		atomic_fetch_add(&npaired, 1);
	else if (to == R_CLOSING)
		atomic_fetch_add(&nclosing, 1);
}

unsigned
relay_pairs(void)
{
	/* Odd only for a moment, while a pair is made or unmade. */
	return (atomic_load(&npaired) + 1) / 2;
}

int
relay_channels_busy(void)
{
	return atomic_load(&npaired) > 0 || atomic_load(&nclosing) > 0;
}

int
relay_slot_take(uint8_t role)
{
	if (limit_take(&slots) == -1)
		return -1;
	atomic_fetch_add(&role_slots[role % 3], 1);
	return 0;
}

void
relay_slot_give(uint8_t role)
{
	atomic_fetch_sub(&role_slots[role % 3], 1);
	limit_give(&slots);
}

unsigned
relay_slots_of(uint8_t role)
{
	return atomic_load(&role_slots[role % 3]);
}

void
relay_slot_pass(uint8_t from, uint8_t to)
{
	atomic_fetch_sub(&role_slots[from % 3], 1);
	atomic_fetch_add(&role_slots[to % 3], 1);
}

unsigned
relay_slots_used(void)
{
	return limit_used(&slots);
}
