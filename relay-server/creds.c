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
 * when it is next idle (admit.c, admit_recheck).  One mutex guards the
 * current pointers and the counts: it is taken once per accept and per
 * AUTH, never on the data path.
 */
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t creds_lock = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *current_ctx;		/* one reference: ours */
static struct keyset *current_set;	/* one reference: ours */

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
		limit_init(&ks->slots[i], ks->keys.keys[i].max_channels);
	ks->refs = 1;
	*out = ks;
	return 0;
}

static void
keyset_free(struct keyset *ks)
{
	free(ks->slots);
	authkeys_free(&ks->keys);
	free(ks);
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
	int yes;

	pthread_mutex_lock(&creds_lock);
	yes = ks == current_set;
	pthread_mutex_unlock(&creds_lock);
	return yes;
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

	pthread_mutex_lock(&creds_lock);
	old_ctx = current_ctx;
	old_set = current_set;
	current_ctx = ctx;
	current_set = ks;
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
	creds_install(NULL, NULL);
}
