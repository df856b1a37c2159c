#include "auth.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>

#include "keyfile.h"

#define AUTH_CONTEXT "tcp-reverse-proxy auth v1"

static int
sodium_ready(void)
{
	return sodium_init() >= 0 ? 0 : -1;
}

int
auth_key_generate(struct auth_key *k)
{
	if (sodium_ready() == -1)
		return -1;
	return crypto_sign_keypair(k->pk, k->sk) == 0 ? 0 : -1;
}

void
auth_key_wipe(struct auth_key *k)
{
	sodium_memzero(k, sizeof(*k));
}

int
auth_key_load(const char *path, struct auth_key *k, char *err, size_t errlen)
{
	uint8_t seed[crypto_sign_SEEDBYTES];
	size_t seedlen = sizeof(seed);
	EVP_PKEY *pkey = NULL;
	FILE *f;
	int rc = -1;

	if (sodium_ready() == -1) {
		snprintf(err, errlen, "libsodium failed to start");
		return -1;
	}
	if ((f = keyfile_open(path, err, errlen)) == NULL)
		return -1;
	if ((pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL ||
	    EVP_PKEY_id(pkey) != EVP_PKEY_ED25519 ||
	    EVP_PKEY_get_raw_private_key(pkey, seed, &seedlen) != 1 ||
	    seedlen != sizeof(seed)) {
		snprintf(err, errlen, "%s: not an ed25519 private key in PEM "
		    "(make one with 'gen-cert ed25519')", path);
		goto out;
	}
	if (crypto_sign_seed_keypair(k->pk, k->sk, seed) != 0) {
		snprintf(err, errlen, "%s: cannot derive the key pair", path);
		goto out;
	}
	rc = 0;
out:
	sodium_memzero(seed, sizeof(seed));
	EVP_PKEY_free(pkey);
	fclose(f);
	return rc;
}

int
auth_key_write_private(const struct auth_key *k, FILE *f)
{
	EVP_PKEY *pkey;
	int rc;

	/* The first 32 bytes of libsodium's secret key are the seed, which
	 * is what RFC 8410 calls the private key. */
	pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, k->sk,
	    crypto_sign_SEEDBYTES);
	if (pkey == NULL)
		return -1;
	rc = PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) == 1 ?
	    0 : -1;
	EVP_PKEY_free(pkey);
	return rc;
}

int
auth_key_write_public(const struct auth_key *k, FILE *f)
{
	EVP_PKEY *pkey;
	int rc;

	pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, k->pk,
	    AUTH_PUBKEY_LEN);
	if (pkey == NULL)
		return -1;
	rc = PEM_write_PUBKEY(f, pkey) == 1 ? 0 : -1;
	EVP_PKEY_free(pkey);
	return rc;
}

#define AUTH_SIGNED_LEN (sizeof(AUTH_CONTEXT) + 1 + 4 + AUTH_PUBKEY_LEN + \
    AUTH_EXPORTER_LEN)

static void
signed_message(uint8_t *msg, uint8_t role, uint32_t group,
    const uint8_t *pk, const uint8_t *exporter)
{
	size_t off = sizeof(AUTH_CONTEXT);	/* with its NUL */

	memcpy(msg, AUTH_CONTEXT, sizeof(AUTH_CONTEXT));
	msg[off++] = role;
	msg[off++] = (uint8_t)(group >> 24);
	msg[off++] = (uint8_t)(group >> 16);
	msg[off++] = (uint8_t)(group >> 8);
	msg[off++] = (uint8_t)group;
	memcpy(msg + off, pk, AUTH_PUBKEY_LEN);
	off += AUTH_PUBKEY_LEN;
	memcpy(msg + off, exporter, AUTH_EXPORTER_LEN);
}

int
auth_sign(const struct auth_key *k, uint8_t role, uint32_t group,
    const uint8_t exporter[AUTH_EXPORTER_LEN], uint8_t sig[AUTH_SIG_LEN])
{
	uint8_t msg[AUTH_SIGNED_LEN];

	if (sodium_ready() == -1)
		return -1;
	signed_message(msg, role, group, k->pk, exporter);
	return crypto_sign_detached(sig, NULL, msg, sizeof(msg), k->sk) == 0 ?
	    0 : -1;
}

int
auth_verify(const uint8_t pk[AUTH_PUBKEY_LEN], uint8_t role, uint32_t group,
    const uint8_t exporter[AUTH_EXPORTER_LEN], const uint8_t sig[AUTH_SIG_LEN])
{
	uint8_t msg[AUTH_SIGNED_LEN];

	if (sodium_ready() == -1)
		return -1;
	signed_message(msg, role, group, pk, exporter);
	return crypto_sign_verify_detached(sig, msg, sizeof(msg), pk) == 0 ?
	    0 : -1;
}
