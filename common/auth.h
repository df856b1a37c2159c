/*
 * auth: ed25519 keys and the AUTH signature.
 *
 * Key files are PEM, readable by OpenSSL's tools: the private key as
 * PKCS#8 ("PRIVATE KEY"), the public key as SubjectPublicKeyInfo ("PUBLIC
 * KEY"); the relay reads its accepted keys with authkeys.c.  Signatures
 * are made and checked with libsodium.
 *
 * The signed message binds the key to this TLS session, the role and the
 * group (see PROTOCOL.md):
 *   "tcp-reverse-proxy auth v1\0" || role (1) || group (4, big-endian)
 *   || public key (32) || TLS exporter (32)
 */
#ifndef AUTH_H
#define AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "frame.h"

#define AUTH_EXPORTER_LEN 32
#define AUTH_EXPORTER_LABEL "EXPORTER-tcp-reverse-proxy-auth"
#define AUTH_KEYS_MAX 1024		/* keys in the relay's -a file */

struct auth_key {
	uint8_t pk[AUTH_PUBKEY_LEN];
	uint8_t sk[64];		/* libsodium secret key: seed || pk */
};

/* Make a new key pair.  Returns 0 or -1. */
int auth_key_generate(struct auth_key *k);

/*
 * Load a private key file.  Refuses a file that others may read (like
 * OpenSSH).  Returns 0, or -1 with a message naming the file in err.
 */
int auth_key_load(const char *path, struct auth_key *k, char *err,
    size_t errlen);

/* Write the private or the public key as PEM to f.  Returns 0 or -1. */
int auth_key_write_private(const struct auth_key *k, FILE *f);
int auth_key_write_public(const struct auth_key *k, FILE *f);

/* Wipe a key from memory. */
void auth_key_wipe(struct auth_key *k);

/* Sign (role, group, exporter) with k into sig.  Returns 0 or -1. */
int auth_sign(const struct auth_key *k, uint8_t role, uint32_t group,
    const uint8_t exporter[AUTH_EXPORTER_LEN], uint8_t sig[AUTH_SIG_LEN]);

/* Check sig by pk over (role, group, exporter).  Returns 0 when valid. */
int auth_verify(const uint8_t pk[AUTH_PUBKEY_LEN], uint8_t role,
    uint32_t group, const uint8_t exporter[AUTH_EXPORTER_LEN],
    const uint8_t sig[AUTH_SIG_LEN]);

#endif
