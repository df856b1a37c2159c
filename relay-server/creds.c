/*
 * creds: what the relay trusts and shows, in force now — the TLS context
 * (certificate and key) and the authorized keys with their per-key channel
 * counts — swapped whole by a reload (SIGHUP), from the main thread, while
 * the workers' threads keep using them.
 *
 * A key set is shared: the relay holds one reference while it is the
 * current set, and every authenticated channel holds one to the set it
 * was admitted under (its key and its max-channels= slot point into it).
 * A set no longer current lives until its last channel is freed, so a
 * connection in flight never sees its key freed under it; a channel
 * admitted under an older set is admitted again under the current one
 * when it is next idle, or before it is paired (admit.c, admit_recheck).
 * A key's channel count is the key's, kept across reloads.  One mutex
 * guards the current pointers and the reference counts: it is taken once
 * per accept and per AUTH, never on the data path; whether a set is still
 * current is one atomic load (its generation).
 */
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

/* A key's channel count, kept across reloads (found by public key). */
struct keycount {
	uint8_t pk[AUTH_PUBKEY_LEN];
	struct limit count;
	struct keycount *next;
};

static pthread_mutex_t creds_lock = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *current_ctx;		/* one reference: ours */
static struct keyset *current_set;	/* one reference: ours */
static _Atomic unsigned long current_generation;
static unsigned long generations;	/* sets loaded; main thread only */
/* Every key ever loaded (few: one per line of -a), freed at exit. */
static struct keycount *keycounts;

/* pk's count (made, unlimited, when new).  Main thread only, like every
 * change to the list; workers only follow pointers to its entries. */
static struct limit *
keycount_of(const uint8_t pk[AUTH_PUBKEY_LEN])
{
	struct keycount *kc;

	for (kc = keycounts; kc != NULL; kc = kc->next)
		if (memcmp(kc->pk, pk, AUTH_PUBKEY_LEN) == 0)
			return &kc->count;
	if ((kc = calloc(1, sizeof(*kc))) == NULL)
		return NULL;
	memcpy(kc->pk, pk, AUTH_PUBKEY_LEN);
	limit_init(&kc->count, 0);
	pthread_mutex_lock(&creds_lock);
	kc->next = keycounts;
	keycounts = kc;
	pthread_mutex_unlock(&creds_lock);
	return &kc->count;
}

static void
keyset_free(struct keyset *ks)
{
	free(ks->slots);
	authkeys_free(&ks->keys);
	free(ks);
}

int
keyset_load(const char *path, struct keyset **out, char *err, size_t errlen)
{
	struct keyset *ks;
	size_t i;

	if ((ks = calloc(1, sizeof(*ks))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	if (authkeys_load(path, &ks->keys, err, errlen) == -1) {
		free(ks);
		return -1;
	}
	if ((ks->slots = calloc(ks->keys.n, sizeof(*ks->slots))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		authkeys_free(&ks->keys);
		free(ks);
		return -1;
	}
	for (i = 0; i < ks->keys.n; i++)
		if ((ks->slots[i] = keycount_of(ks->keys.keys[i].pk)) == NULL) {
			snprintf(err, errlen, "%s: out of memory", path);
			keyset_free(ks);
			return -1;
		}
	ks->generation = ++generations;
	ks->refs = 1;
	*out = ks;
	return 0;
}

struct keyset *
keyset_acquire(void)
{
	struct keyset *ks;

	pthread_mutex_lock(&creds_lock);
	if ((ks = current_set) != NULL)
		ks->refs++;
	pthread_mutex_unlock(&creds_lock);
	return ks;
}

int
keyset_is_current(const struct keyset *ks)
{
	return ks->generation == atomic_load(&current_generation);
}

void
keyset_release(struct keyset *ks)
{
	int last;

	if (ks == NULL)
		return;
	pthread_mutex_lock(&creds_lock);
	last = --ks->refs == 0;
	pthread_mutex_unlock(&creds_lock);
	if (last)
		keyset_free(ks);
}

void
creds_install(SSL_CTX *ctx, struct keyset *ks)
{
	SSL_CTX *old_ctx;
	struct keyset *old_set;
	size_t i;

	/* The new maximums apply from now (a count above one stays, and
	 * no channel more is admitted until it is below). */
	for (i = 0; ks != NULL && i < ks->keys.n; i++)
		limit_set_max(ks->slots[i], ks->keys.keys[i].max_channels);
	pthread_mutex_lock(&creds_lock);
	old_ctx = current_ctx;
	old_set = current_set;
	current_ctx = ctx;
	current_set = ks;
	atomic_store(&current_generation, ks != NULL ? ks->generation : 0);
	pthread_mutex_unlock(&creds_lock);
	/* Handshakes under way hold references of their own (SSL_new). */
	SSL_CTX_free(old_ctx);
	keyset_release(old_set);
}

SSL *
creds_ssl_new(void)
{
	SSL *ssl;

	pthread_mutex_lock(&creds_lock);
	ssl = current_ctx != NULL ? SSL_new(current_ctx) : NULL;
	pthread_mutex_unlock(&creds_lock);
	return ssl;
}

void
creds_free(void)
{
	struct keycount *kc;

	creds_install(NULL, NULL);
	while ((kc = keycounts) != NULL) {
		keycounts = kc->next;
		free(kc);
	}
}
