/*
 * reload: SIGHUP.  The options are read again (command line and --config
 * file); the certificate, its key and the authorized keys are loaded
 * aside; only when all of them load are they installed (creds.c), so a
 * reload that fails changes nothing.  New handshakes then use the new
 * certificate; every worker admits its idle channels again under the new
 * keys (admit_recheck: a key removed, or no longer allowed its role, group
 * or source, is told why and closed); channels carrying a connection
 * finish it and are checked when they are idle again.  One line says what
 * changed.  Options that only a restart can change are named in a warning.
 */
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "daemon.h"
#include "metrics_http.h"
#include "tls.h"

#define DIFF_LIST_MAX 600	/* characters of fingerprints in the line */

static int saved_argc;
static char **saved_argv;
/* The options as started, for warn_fixed (their strings live in
 * started_opts): what the fixed ones run with, whatever reloads said. */
static struct relay_options started;
static struct opts started_opts;
static unsigned char cert_digest[EVP_MAX_MD_SIZE];
static unsigned cert_digest_len;

static void
digest_of(SSL_CTX *ctx, unsigned char *md, unsigned *len)
{
	X509 *cert = SSL_CTX_get0_certificate(ctx);

	*len = 0;
	if (cert == NULL || X509_digest(cert, EVP_sha256(), md, len) != 1)
		*len = 0;
}

void
reload_remember_cert(SSL_CTX *ctx)
{
	digest_of(ctx, cert_digest, &cert_digest_len);
}

/* Append "label" to a list in buf ("a, b"), as long as it fits. */
static void
list_add(char *buf, size_t len, const char *label)
{
	size_t used = strlen(buf);

	if (used + strlen(label) + 8 >= len) {
		if (used + 5 < len && strstr(buf, ", ...") == NULL)
			snprintf(buf + used, len - used, ", ...");
		return;
	}
	snprintf(buf + used, len - used, "%s%s", used > 0 ? ", " : "",
	    label);
}

/* What changed from old to new: "keys 3 (added ...; removed ...;
 * rights changed ...)" or "keys 3 (unchanged)". */
static void
describe_keys(const struct keyset *old, const struct keyset *new,
    char *buf, size_t len)
{
	char added[DIFF_LIST_MAX] = "", removed[DIFF_LIST_MAX] = "";
	char changed[DIFF_LIST_MAX] = "", label[SSHKEY_FINGERPRINT_LEN +
	    SSHKEY_COMMENT_MAX + 4], a[256], b[256];
	const struct authkey *k, *o;
	size_t i;

	for (i = 0; i < new->keys.n; i++) {
		k = &new->keys.keys[i];
		authkey_label(k, label, sizeof(label));
		if ((o = old != NULL ? authkeys_find(&old->keys, k->pk) :
		    NULL) == NULL) {
			list_add(added, sizeof(added), label);
			continue;
		}
		authkey_describe(o, a, sizeof(a));
		authkey_describe(k, b, sizeof(b));
		if (strcmp(a, b) != 0)
			list_add(changed, sizeof(changed), label);
	}
	for (i = 0; old != NULL && i < old->keys.n; i++) {
		k = &old->keys.keys[i];
		if (authkeys_find(&new->keys, k->pk) != NULL)
			continue;
		authkey_label(k, label, sizeof(label));
		list_add(removed, sizeof(removed), label);
	}
	if (added[0] == '\0' && removed[0] == '\0' && changed[0] == '\0') {
		snprintf(buf, len, "keys %zu (unchanged)", new->keys.n);
		return;
	}
	snprintf(buf, len, "keys %zu (%s%s%s%s%s%s%s%s%s)", new->keys.n,
	    added[0] ? "added " : "", added,
	    added[0] && (removed[0] || changed[0]) ? "; " : "",
	    removed[0] ? "removed " : "", removed,
	    removed[0] && changed[0] ? "; " : "",
	    changed[0] ? "rights changed for " : "", changed, "");
}

/* Warn about options that differ from what runs (as started): they need
 * a restart. */
static void
warn_fixed(const struct relay_options *o)
{
	struct metrics_addr ma, mb;
	const char *names[8];
	char list[256] = "", err[256];
	size_t n = 0, i;

	if (o->port != started.port)
		names[n++] = "--port";
	if ((o->host == NULL) != (started.host == NULL) || (o->host != NULL &&
	    strcmp(o->host, started.host) != 0))
		names[n++] = "--host";
	if (o->workers != started.workers)
		names[n++] = "--workers";
	if (o->max_channels != started.max_channels ||
	    o->max_handshakes != started.max_handshakes ||
	    o->max_handshakes_source != started.max_handshakes_source)
		names[n++] = "--max-channels/--max-handshakes";
	if (o->handshake_timeout != started.handshake_timeout ||
	    o->open_timeout != started.open_timeout ||
	    o->idle_timeout != started.idle_timeout)
		names[n++] = "the timeouts";
	if (metrics_http_parse(o->metrics, &ma, err, sizeof(err)) == -1 ||
	    metrics_http_parse(started.metrics, &mb, err, sizeof(err)) == -1 ||
	    !metrics_addr_equal(&ma, &mb))
		names[n++] = "--metrics";
	if (o->verbose != started.verbose || o->quiet != started.quiet)
		names[n++] = "-v/-q";
	for (i = 0; i < n; i++)
		list_add(list, sizeof(list), names[i]);
	if (n > 0)
		log_warnx("reload: %s changed: %s at the next start", list,
		    n == 1 ? "it takes effect" : "they take effect");
}

static int
reload(void *arg)
{
	struct opt_spec specs[RELAY_NSPECS];
	unsigned char md[EVP_MAX_MD_SIZE];
	char err[1024], msg[512], keys[2048];
	struct relay_options ro;
	struct keyset *ks, *old;
	struct opts o;
	unsigned mdlen;
	SSL_CTX *ctx;

	(void)arg;
	option_specs(&ro, specs);
	err[0] = '\0';
	if (opts_parse(&o, specs, RELAY_NSPECS, saved_argc, saved_argv, 1,
	    "relay-server", RELAY_USAGE, err, sizeof(err)) != 0) {
		log_warnx("reload failed: %s; still running the previous "
		    "configuration", err);
		opts_free(&o);
		relay_metrics_reload(0);
		return -1;
	}
	if ((ctx = tls_server_ctx_new(ro.cert, ro.key, msg, sizeof(msg))) ==
	    NULL) {
		log_warnx("reload failed: %s; still running the previous "
		    "configuration", msg);
		opts_free(&o);
		relay_metrics_reload(0);
		return -1;
	}
	if (keyset_load(ro.pub, &ks, msg, sizeof(msg)) == -1) {
		log_warnx("reload failed: --auth-public-key: %s; still running "
		    "the previous configuration", msg);
		SSL_CTX_free(ctx);
		opts_free(&o);
		relay_metrics_reload(0);
		return -1;
	}
	warn_fixed(&ro);
	old = keyset_acquire();
	describe_keys(old, ks, keys, sizeof(keys));
	keyset_release(old);
	digest_of(ctx, md, &mdlen);
	log_info("reload: %s; certificate %s (%s)", keys, ro.cert,
	    mdlen == cert_digest_len && memcmp(md, cert_digest, mdlen) == 0 ?
	    "unchanged" : "new");
	memcpy(cert_digest, md, mdlen);
	cert_digest_len = mdlen;
	creds_install(ctx, ks);
	relay_recheck();
	daemon_drain_timeout(ro.drain_timeout);
	opts_free(&o);
	relay_metrics_reload(1);
	return 0;
}

void
reload_setup(struct event_base *base, int argc, char **argv,
    const struct relay_options *ro, struct opts *o)
{
	saved_argc = argc;
	saved_argv = argv;
	started = *ro;
	started_opts = *o;
	memset(o, 0, sizeof(*o));
	daemon_on_reload(base, reload, NULL);
}

void
reload_free(void)
{
	opts_free(&started_opts);
}
