/*
 * ed25519: the authentication key pair, DIR/auth and DIR/auth.pub.
 *
 * entry-point and reverse-proxy sign their AUTH message with DIR/auth
 * (PKCS#8 PEM, 0600); the relay accepts the public keys listed in its -a
 * file, to which DIR/auth.pub (SubjectPublicKeyInfo PEM) can be appended.
 * The formats are common/auth.c's, and OpenSSL's tools read both.
 */
#include <stdio.h>

#include "auth.h"
#include "daemon.h"
#include "gen-cert.h"
#include "log.h"
#include "sshkey.h"

/* Order of the files in struct output: the private key first. */
enum { FILE_PRIVATE, FILE_PUBLIC };

int
ed25519_run(const struct gen_options *o)
{
	struct output out;
	struct auth_key k;
	char fpr[SSHKEY_FINGERPRINT_LEN];
	FILE *f;

	output_init(&out, o->dir, o->force);
	if (output_add(&out, "auth", 0600) == -1 ||
	    output_add(&out, "auth.pub", 0644) == -1 ||
	    output_prepare(&out) == -1)
		goto err0;

	if (auth_key_generate(&k) == -1) {
		log_warnx("cannot make an ed25519 key (libsodium failed)");
		goto err0;
	}

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
	if (auth_key_write_public(&k, f) == -1) {
		log_warnx_ssl("cannot write %s",
		    output_path(&out, FILE_PUBLIC));
		goto err1;
	}
	if (output_close(&out, FILE_PUBLIC) == -1)
		goto err1;

	/* The same fingerprint the relay logs for a key it refuses. */
	sshkey_fingerprint(k.pk, fpr);
	auth_key_wipe(&k);
	printf("wrote %s (ed25519 private key, mode 0600)\n",
	    output_path(&out, FILE_PRIVATE));
	printf("wrote %s (ed25519 public key, fingerprint %s)\n",
	    output_path(&out, FILE_PUBLIC), fpr);
	return 0;

err1:
	auth_key_wipe(&k);
err0:
	output_abort(&out);
	return EXIT_RUNTIME;
}
