/*
 * What every fuzz target shares: libFuzzer's entry point and a check
 * that crashes on a broken invariant (libFuzzer then keeps the input).
 * Targets print nothing otherwise, keep no state between inputs, and
 * free everything (LeakSanitizer fails the run on a leak).
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void __attribute__((noreturn))
fuzz_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
	abort();
}

#define FUZZ_CHECK(cond) do {						\
	if (!(cond))							\
		fuzz_fail(__FILE__, __LINE__, #cond);			\
} while (0)

/* Is s terminated within its len bytes (what every err buffer must be)? */
#define FUZZ_TERMINATED(s, len) (memchr((s), '\0', (len)) != NULL)

/*
 * data[0..size-1] as a malloc'ed string, cut at its first NUL (as a C
 * caller would see it).  NULL when out of memory: skip the input.
 */
static inline char *
fuzz_string(const uint8_t *data, size_t size)
{
	const uint8_t *nul = size > 0 ? memchr(data, '\0', size) : NULL;
	size_t len = nul != NULL ? (size_t)(nul - data) : size;
	char *s;

	if ((s = malloc(len + 1)) == NULL)
		return NULL;
	if (len > 0)
		memcpy(s, data, len);
	s[len] = '\0';
	return s;
}

#endif
