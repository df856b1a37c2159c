/*
 * stranger: the relay's connections that have not authenticated yet
 * (R_HANDSHAKE, R_AUTH).  They are anyone's: scanners, floods, slowloris.
 *
 * - A budget of their own, apart from --max-channels, so that they can
 *   never take the room of authenticated channels: --max-handshakes in
 *   all and --max-handshakes-per-source from one address, split evenly
 *   between the workers (SO_REUSEPORT spreads connections evenly).  When
 *   a budget is full, a new connection evicts the oldest stranger of its
 *   source (or of all): a flood then only shortens every stranger's grace
 *   time, while an honest client, whose handshake takes milliseconds,
 *   still gets through.  (OpenSSH's MaxStartups drops new connections at
 *   random instead, which lets a flood from the honest clients' own
 *   address, a NAT gateway, shut them out.)
 * - Bounded memory: no read-ahead buffer until AUTH succeeds (tls.c,
 *   tls_read_ahead), and a stranger that sends more than
 *   RELAY_PREAUTH_BYTES is closed (a BIO callback counts what OpenSSL
 *   reads from its socket; it is removed at AUTH, off the data path).
 * - Log lines that a flood cannot multiply: the first end of each kind in
 *   STRANGER_LOG_SECONDS is logged in full, the others are counted, and
 *   stranger_summary says how many there were.
 *
 * Everything here but the counters of the log belongs to one worker and
 * is touched by its thread only.
 */
#include "relay.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>

static atomic_uint ends[STRANGER_NKINDS];	/* since the last summary */
static atomic_uint logged[STRANGER_NKINDS];	/* of them, logged one by one */
static _Atomic time_t last_logged[STRANGER_NKINDS];

static const char *const end_names[STRANGER_NKINDS] = {
	[STRANGER_TIMEOUT] = "timed out",
	[STRANGER_TLS] = "failed or closed in TLS",
	[STRANGER_AUTH] = "failed AUTH",
	[STRANGER_EVICTED] = "evicted (budget full)",
	[STRANGER_TOO_MUCH] = "sent too much",
};

/* The address of sa without its port, for comparisons. */
static void
source_key(const struct sockaddr_storage *sa, struct sockaddr_storage *key)
{
	memset(key, 0, sizeof(*key));
	key->ss_family = sa->ss_family;
	if (sa->ss_family == AF_INET6)
		memcpy(&((struct sockaddr_in6 *)key)->sin6_addr,
		    &((const struct sockaddr_in6 *)sa)->sin6_addr,
		    sizeof(struct in6_addr));
	else
		memcpy(&((struct sockaddr_in *)key)->sin_addr,
		    &((const struct sockaddr_in *)sa)->sin_addr,
		    sizeof(struct in_addr));
}

static unsigned
source_bucket(const struct sockaddr_storage *key)
{
	const unsigned char *p = (const unsigned char *)key;
	unsigned h = 2166136261u;	/* FNV-1a over the address */
	size_t i;

	for (i = 0; i < sizeof(*key); i++)
		h = (h ^ p[i]) * 16777619u;
	return h % RELAY_SOURCE_BUCKETS;
}

static struct source *
source_get(struct worker *w, const struct sockaddr_storage *addr)
{
	struct sockaddr_storage key;
	struct source *s;
	unsigned b;

	source_key(addr, &key);
	b = source_bucket(&key);
	LIST_FOREACH(s, &w->sources[b], link)
		if (memcmp(&s->addr, &key, sizeof(key)) == 0)
			return s;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->addr = key;
	TAILQ_INIT(&s->conns);
	LIST_INSERT_HEAD(&w->sources[b], s, link);
	return s;
}

/* This worker's share of a budget of n (at least 1). */
static unsigned
share(unsigned n)
{
	unsigned workers = relay_cfg.workers > 0 ? relay_cfg.workers : 1;

	return n / workers > 0 ? n / workers : 1;
}

int
stranger_admit(struct worker *w, struct rchan *c)
{
	struct source *s;
	struct rchan *old;

	const char *which = NULL;
	enum relay_limit hit = RELAY_LIMIT_N;

	if ((s = source_get(w, &c->addr)) == NULL)
		return -1;
	if (s->n >= share(relay_cfg.max_handshakes_source)) {
		old = TAILQ_FIRST(&s->conns);
		which = "--max-handshakes-per-source";
		hit = RELAY_LIMIT_HANDSHAKES_SOURCE;
	} else if (w->nstrangers >= share(relay_cfg.max_handshakes)) {
		old = TAILQ_FIRST(&w->strangers);
		which = "--max-handshakes";
		hit = RELAY_LIMIT_HANDSHAKES;
	} else {
		old = NULL;
	}
	/* c joins first, so that s outlives the eviction of its oldest. */
	c->src = s;
	s->n++;
	TAILQ_INSERT_TAIL(&s->conns, c, srclink);
	TAILQ_INSERT_TAIL(&w->strangers, c, slink);
	w->nstrangers++;
	if (old != NULL) {
		relay_metrics_limit(hit);
		stranger_close(old, STRANGER_EVICTED, "%s: evicted: the budget "
		    "of unauthenticated connections (%s) is full and it was "
		    "the oldest", old->peer, which);
	}
	return 0;
}

/*
 * Count what OpenSSL reads from a stranger's socket; past the limit the
 * read fails (EMSGSIZE), so the handshake or AUTH fails and c closes.
 */
static long
preauth_cb(BIO *b, int oper, const char *argp, size_t len, int argi,
    long argl, int ret, size_t *processed)
{
	struct rchan *c = (struct rchan *)BIO_get_callback_arg(b);

	(void)argp;
	(void)len;
	(void)argi;
	(void)argl;
	if (oper != (BIO_CB_READ | BIO_CB_RETURN) || ret <= 0 ||
	    processed == NULL || c == NULL)
		return ret;
	c->preauth_bytes += *processed;
	if (c->preauth_bytes <= RELAY_PREAUTH_BYTES)
		return ret;
	BIO_clear_retry_flags(b);
	errno = EMSGSIZE;
	return -1;
}

void
stranger_watch(struct rchan *c)
{
	BIO *rbio = SSL_get_rbio(c->ssl);

	if (rbio == NULL)
		return;
	BIO_set_callback_arg(rbio, (char *)c);
	BIO_set_callback_ex(rbio, preauth_cb);
}

void
stranger_leave(struct rchan *c)
{
	struct source *s = c->src;
	BIO *rbio;

	if (s == NULL)
		return;
	TAILQ_REMOVE(&s->conns, c, srclink);
	TAILQ_REMOVE(&c->w->strangers, c, slink);
	c->w->nstrangers--;
	c->src = NULL;
	if (--s->n == 0) {
		LIST_REMOVE(s, link);
		free(s);
	}
	if (c->ssl != NULL && (rbio = SSL_get_rbio(c->ssl)) != NULL) {
		BIO_set_callback_ex(rbio, NULL);
		BIO_set_callback_arg(rbio, NULL);
	}
}

void
stranger_close(struct rchan *c, enum stranger_end why, const char *fmt, ...)
{
	time_t now = mono_now(), last;
	va_list ap;

	atomic_fetch_add(&ends[why], 1);
	relay_metrics_stranger(why);
	last = atomic_load(&last_logged[why]);
	if ((last == 0 || now - last >= STRANGER_LOG_SECONDS) &&
	    atomic_compare_exchange_strong(&last_logged[why], &last, now)) {
		atomic_fetch_add(&logged[why], 1);
		va_start(ap, fmt);
		log_vat(LOG_LEVEL_INFO, fmt, ap);
		va_end(ap);
	}
	if (why == STRANGER_AUTH)	/* the AUTH_RESULT queued goes first */
		rchan_close_flush(c, LOG_LEVEL_DEBUG, NULL);
	else
		rchan_close(c, LOG_LEVEL_DEBUG, NULL);
}

void
stranger_summary(void)
{
	unsigned n[STRANGER_NKINDS], total = 0, quiet = 0, i;
	char line[512];
	size_t used = 0;

	for (i = 0; i < STRANGER_NKINDS; i++) {
		n[i] = atomic_exchange(&ends[i], 0);
		quiet += n[i] - atomic_exchange(&logged[i], 0);
		total += n[i];
	}
	if (quiet == 0)
		return;		/* every one was logged already */
	line[0] = '\0';
	for (i = 0; i < STRANGER_NKINDS; i++)
		if (n[i] > 0 && used < sizeof(line))
			used += (size_t)snprintf(line + used, sizeof(line) - used,
			    "%s%u %s", used > 0 ? ", " : "", n[i],
			    end_names[i]);
	log_info("unauthenticated connections closed in the last %d s: %u "
	    "(%s); %u of them not logged one by one", STRANGER_LOG_SECONDS,
	    total, line, quiet);
}
