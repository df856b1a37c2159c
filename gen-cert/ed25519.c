/*
 * ed25519: the authentication key pair, DIR/auth and DIR/auth.pub, and
 * the public line of an existing key.
 *
 * entry-point and reverse-proxy sign their AUTH message with DIR/auth
 * (PKCS#8 PEM, 0600, as common/auth.c reads it); the relay accepts the
 * keys of its authorized-keys file (-a), to which the line in
 * DIR/auth.pub is appended, options in front if the key is to be limited.
 * That line is OpenSSH's format (common/sshkey.c): ssh-keygen -l prints
 * its fingerprint, the same the relay logs.
 */
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "daemon.h"
#include "gen-cert.h"
#include "log.h"
#include "sshkey.h"

/* Order of the files in struct output: the private key first. */
enum { FILE_PRIVATE, FILE_PUBLIC };

/* The comment of a new line: -C, or user@host as ssh-keygen makes it. */
static void
line_comment(const struct gen_options *o, char *buf, size_t len)
{
	const struct passwd *pw = getpwuid(geteuid());
	char host[256];

	if (o->comment != NULL) {
		snprintf(buf, len, "%s", o->comment);
		return;
	}
	if (gethostname(host, sizeof(host)) == -1)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(buf, len, "%s@%s", pw != NULL ? pw->pw_name : "user", host);
}

/* k's OpenSSH line into buf; -1 (logged) when the comment cannot be
 * used. */
static int
public_line(const struct gen_options *o, const struct auth_key *k, char *buf,
    size_t len)
{
	char comment[SSHKEY_COMMENT_MAX + 2];

	line_comment(o, comment, sizeof(comment));
	if (sshkey_format(k->pk, comment, buf, len) == 0)
		return 0;
	if (o->comment != NULL) {
		log_warnx("-C: a comment is at most %d printable bytes",
		    SSHKEY_COMMENT_MAX);
		return -1;
	}
	/* user@host itself cannot be a comment (a control byte in the host
	 * name, say): say so, and write the line without one. */
	log_warnx("the default comment (user@host) cannot be used; the line "
	    "has none (give -C to set one)");
	return sshkey_format(k->pk, NULL, buf, len);
}

int
ed25519_run(const struct gen_options *o)
{
	char line[SSHKEY_LINE_MAX], fpr[SSHKEY_FINGERPRINT_LEN];
	struct output out;
	struct auth_key k;
	FILE *f;

	output_init(&out, o->dir, o->force);
	if (auth_key_generate(&k) == -1) {
		log_warnx("cannot make an ed25519 key (libsodium failed)");
		return EXIT_RUNTIME;
	}
	if (public_line(o, &k, line, sizeof(line)) == -1) {
		auth_key_wipe(&k);
		return EXIT_USAGE;
	}
	if (output_add(&out, "auth", 0600) == -1 ||
	    output_add(&out, "auth.pub", 0644) == -1 ||
	    output_prepare(&out) == -1)
		goto err1;

	if ((f = output_open(&out, FILE_PRIVATE)) == NULL)
		goto err1;
	if (auth_key_write_private(&k, f) == -1) {
		log_warnx_ssl("cannot write %s",
		    output_path(&out, FILE_PRIVATE));
		goto err1;
	}
	if (output_close(&out, FILE_PRIVATE) == -1)
		goto err1;

	if ((f = output_open(&out, FILE_PUBLIC)) == NULL)
		goto err1;
	if (fprintf(f, "%s\n", line) < 0) {
		log_warn("cannot write %s", output_path(&out, FILE_PUBLIC));
		goto err1;
	}
	if (output_close(&out, FILE_PUBLIC) == -1)
		goto err1;

	/* The same fingerprint the relay logs for the key. */
	sshkey_fingerprint(k.pk, fpr);
	auth_key_wipe(&k);
	printf("wrote %s (ed25519 private key, mode 0600)\n",
	    output_path(&out, FILE_PRIVATE));
	printf("wrote %s (ed25519 public key, fingerprint %s)\n",
	    output_path(&out, FILE_PUBLIC), fpr);
	return 0;

err1:
	auth_key_wipe(&k);
	output_abort(&out);
	return EXIT_RUNTIME;
}

int
pubkey_run(const struct gen_options *o)
{
	char line[SSHKEY_LINE_MAX], err[512];
	struct auth_key k;
	int rc = 0;

	if (auth_key_load(o->key, &k, err, sizeof(err)) == -1) {
		log_warnx("-a: %s", err);
		return EXIT_USAGE;
	}
	if (public_line(o, &k, line, sizeof(line)) == -1)
		rc = EXIT_USAGE;
	else if (printf("%s\n", line) < 0 || fflush(stdout) == EOF)
		rc = EXIT_RUNTIME;
	auth_key_wipe(&k);
	return rc;
}
