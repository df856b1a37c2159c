/*
 * Unit tests for common/auth.c: ed25519 keys, key files and the AUTH
 * signature.
 *
 * Read top to bottom: keys, the signature and what it binds, private key
 * files.  Key files are written to temporary files, removed after each
 * test.  (The relay's accepted keys and fingerprints: test_authkeys.c and
 * test_sshkey.c.)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "auth.h"

/* Fail with the message when err does not contain needle. */
#define assert_err_contains(err, needle) do {				\
	if (strstr((err), (needle)) == NULL)				\
		fail_msg("error \"%s\" does not contain \"%s\"",	\
		    (err), (needle));					\
} while (0)

#define TEMP_TEMPLATE "/tmp/trp-test-auth-XXXXXX"
#define TEMP_FILES_MAX 8

/* Files made by the running test, removed after it (pass or fail). */
static char temp_paths[TEMP_FILES_MAX][sizeof(TEMP_TEMPLATE)];
static size_t temp_count;

static int
remove_temp_files(void **state)
{
	(void)state;
	while (temp_count > 0)
		unlink(temp_paths[--temp_count]);
	return 0;
}

/* A temporary file, opened for writing; path receives its name. */
static FILE *
temp_file(char path[sizeof(TEMP_TEMPLATE)])
{
	FILE *f;
	int fd;

	memcpy(path, TEMP_TEMPLATE, sizeof(TEMP_TEMPLATE));
	if ((fd = mkstemp(path)) == -1)
		fail_msg("mkstemp failed");
	assert_true(temp_count < TEMP_FILES_MAX);
	memcpy(temp_paths[temp_count++], path, sizeof(TEMP_TEMPLATE));
	if ((f = fdopen(fd, "w")) == NULL)
		fail_msg("fdopen failed");
	return f;
}

/* Close f, giving its file mode (private keys load only at 0600). */
static void
close_with_mode(FILE *f, mode_t mode)
{
	assert_int_equal(fchmod(fileno(f), mode), 0);
	assert_int_equal(fclose(f), 0);
}

/* Write k's private key to a new file of the given mode. */
static void
write_private(const struct auth_key *k, mode_t mode,
    char path[sizeof(TEMP_TEMPLATE)])
{
	FILE *f = temp_file(path);

	assert_int_equal(auth_key_write_private(k, f), 0);
	close_with_mode(f, mode);
}

/* Write text to a new file of the given mode. */
static void
write_text(const char *text, mode_t mode, char path[sizeof(TEMP_TEMPLATE)])
{
	FILE *f = temp_file(path);

	assert_int_equal(fputs(text, f) >= 0, 1);
	close_with_mode(f, mode);
}

/* An exporter value, as TLS would give one; seed makes it differ. */
static void
exporter_value(uint8_t exporter[AUTH_EXPORTER_LEN], uint8_t seed)
{
	size_t i;

	for (i = 0; i < AUTH_EXPORTER_LEN; i++)
		exporter[i] = (uint8_t)(seed + i * 13);
}

/* --- keys --- */

static void
test_key_generate(void **state)
{
	struct auth_key a, b;
	static const uint8_t zero[AUTH_PUBKEY_LEN];

	(void)state;
	assert_int_equal(auth_key_generate(&a), 0);
	assert_int_equal(auth_key_generate(&b), 0);
	assert_memory_not_equal(a.pk, zero, AUTH_PUBKEY_LEN);
	assert_memory_not_equal(a.pk, b.pk, AUTH_PUBKEY_LEN);
	/* libsodium's secret key is seed || public key. */
	assert_memory_equal(a.sk + 32, a.pk, AUTH_PUBKEY_LEN);
	assert_memory_equal(b.sk + 32, b.pk, AUTH_PUBKEY_LEN);
}

static void
test_key_wipe(void **state)
{
	struct auth_key k;
	static const uint8_t zero[sizeof(k)];

	(void)state;
	assert_int_equal(auth_key_generate(&k), 0);
	auth_key_wipe(&k);
	assert_memory_equal(&k, zero, sizeof(k));
}

/* --- the signature --- */

static void
test_sign_then_verify_accepts(void **state)
{
	uint8_t exporter[AUTH_EXPORTER_LEN], sig[AUTH_SIG_LEN];
	struct auth_key k;

	(void)state;
	assert_int_equal(auth_key_generate(&k), 0);
	exporter_value(exporter, 1);
	assert_int_equal(auth_sign(&k, ROLE_ENTRY, 42, exporter, sig), 0);
	assert_int_equal(auth_verify(k.pk, ROLE_ENTRY, 42, exporter, sig), 0);
	assert_int_equal(auth_sign(&k, ROLE_REVERSE, 0xffffffff, exporter,
	    sig), 0);
	assert_int_equal(auth_verify(k.pk, ROLE_REVERSE, 0xffffffff, exporter,
	    sig), 0);
}

static void
test_verify_rejects_another_key(void **state)
{
	uint8_t exporter[AUTH_EXPORTER_LEN], sig[AUTH_SIG_LEN];
	struct auth_key k, other;

	(void)state;
	assert_int_equal(auth_key_generate(&k), 0);
	assert_int_equal(auth_key_generate(&other), 0);
	exporter_value(exporter, 1);
	assert_int_equal(auth_sign(&k, ROLE_ENTRY, 42, exporter, sig), 0);
	assert_int_equal(auth_verify(other.pk, ROLE_ENTRY, 42, exporter, sig),
	    -1);
}

static void
test_verify_rejects_another_exporter(void **state)
{
	uint8_t exporter[AUTH_EXPORTER_LEN], sig[AUTH_SIG_LEN];
	struct auth_key k;

	(void)state;
	assert_int_equal(auth_key_generate(&k), 0);
	exporter_value(exporter, 1);
	assert_int_equal(auth_sign(&k, ROLE_ENTRY, 42, exporter, sig), 0);
	/* Another TLS session: the signature cannot be replayed there. */
	exporter[AUTH_EXPORTER_LEN - 1] ^= 1;
	assert_int_equal(auth_verify(k.pk, ROLE_ENTRY, 42, exporter, sig), -1);
}

static void
test_verify_rejects_another_role(void **state)
{
	uint8_t exporter[AUTH_EXPORTER_LEN], sig[AUTH_SIG_LEN];
	struct auth_key k;

	(void)state;
	assert_int_equal(auth_key_generate(&k), 0);
	exporter_value(exporter, 1);
	assert_int_equal(auth_sign(&k, ROLE_ENTRY, 42, exporter, sig), 0);
	assert_int_equal(auth_verify(k.pk, ROLE_REVERSE, 42, exporter, sig),
	    -1);
}

static void
test_verify_rejects_another_group(void **state)
{
	uint8_t exporter[AUTH_EXPORTER_LEN], sig[AUTH_SIG_LEN];
	struct auth_key k;

	(void)state;
	assert_int_equal(auth_key_generate(&k), 0);
	exporter_value(exporter, 1);
	assert_int_equal(auth_sign(&k, ROLE_REVERSE, 42, exporter, sig), 0);
	assert_int_equal(auth_verify(k.pk, ROLE_REVERSE, 43, exporter, sig),
	    -1);
	assert_int_equal(auth_verify(k.pk, ROLE_REVERSE, 42 | 0x01000000,
	    exporter, sig), -1);
}

static void
test_verify_rejects_flipped_signature_bit(void **state)
{
	uint8_t exporter[AUTH_EXPORTER_LEN], sig[AUTH_SIG_LEN];
	struct auth_key k;
	size_t bit;

	(void)state;
	assert_int_equal(auth_key_generate(&k), 0);
	exporter_value(exporter, 1);
	assert_int_equal(auth_sign(&k, ROLE_ENTRY, 7, exporter, sig), 0);
	for (bit = 0; bit < AUTH_SIG_LEN * 8; bit++) {
		sig[bit / 8] ^= (uint8_t)(1 << (bit % 8));
		if (auth_verify(k.pk, ROLE_ENTRY, 7, exporter, sig) != -1)
			fail_msg("signature with bit %zu flipped accepted",
			    bit);
		sig[bit / 8] ^= (uint8_t)(1 << (bit % 8));
	}
	assert_int_equal(auth_verify(k.pk, ROLE_ENTRY, 7, exporter, sig), 0);
}

/* --- private key files --- */

static void
test_private_key_file_round_trip(void **state)
{
	char path[sizeof(TEMP_TEMPLATE)], err[512] = "";
	struct auth_key k, loaded;

	(void)state;
	assert_int_equal(auth_key_generate(&k), 0);
	write_private(&k, 0600, path);
	if (auth_key_load(path, &loaded, err, sizeof(err)) != 0)
		fail_msg("load: %s", err);
	assert_memory_equal(loaded.pk, k.pk, AUTH_PUBKEY_LEN);
	assert_memory_equal(loaded.sk, k.sk, sizeof(k.sk));
}

static void
test_private_key_file_is_pkcs8_pem(void **state)
{
	char path[sizeof(TEMP_TEMPLATE)], text[256];
	struct auth_key k;
	FILE *f;
	size_t n;

	(void)state;
	assert_int_equal(auth_key_generate(&k), 0);
	write_private(&k, 0600, path);
	assert_non_null(f = fopen(path, "r"));
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	assert_non_null(strstr(text, "-----BEGIN PRIVATE KEY-----\n"));
	assert_non_null(strstr(text, "-----END PRIVATE KEY-----\n"));
}

static void
test_private_key_load_refuses_open_permissions(void **state)
{
	char path[sizeof(TEMP_TEMPLATE)], err[512] = "";
	struct auth_key k, loaded;

	(void)state;
	assert_int_equal(auth_key_generate(&k), 0);
	write_private(&k, 0644, path);
	assert_int_equal(auth_key_load(path, &loaded, err, sizeof(err)), -1);
	assert_err_contains(err, path);
	assert_err_contains(err, "permissions 0644");

	err[0] = '\0';
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(auth_key_load(path, &loaded, err, sizeof(err)), -1);
	assert_err_contains(err, "permissions 0640");
}

static void
test_private_key_load_refuses_not_a_key(void **state)
{
	char path[sizeof(TEMP_TEMPLATE)], err[512] = "";
	struct auth_key loaded;

	(void)state;
	write_text("this is not a key\n", 0600, path);
	assert_int_equal(auth_key_load(path, &loaded, err, sizeof(err)), -1);
	assert_err_contains(err, path);
	assert_err_contains(err, "not an ed25519 private key");
}

static void
test_private_key_load_refuses_public_key(void **state)
{
	char path[sizeof(TEMP_TEMPLATE)], err[512] = "";
	struct auth_key k, loaded;
	FILE *f;

	(void)state;
	assert_int_equal(auth_key_generate(&k), 0);
	f = temp_file(path);
	assert_int_equal(auth_key_write_public(&k, f), 0);
	close_with_mode(f, 0600);
	assert_int_equal(auth_key_load(path, &loaded, err, sizeof(err)), -1);
	assert_err_contains(err, "not an ed25519 private key");
}

static void
test_private_key_load_missing_file(void **state)
{
	char err[512] = "";
	struct auth_key loaded;

	(void)state;
	assert_int_equal(auth_key_load("/nonexistent/trp/auth", &loaded, err,
	    sizeof(err)), -1);
	assert_err_contains(err, "/nonexistent/trp/auth");
	assert_err_contains(err, "No such file");
}

/* --- public key files --- */

/* Every test runs with the temporary files removed after it. */
#define TEST(f) cmocka_unit_test_teardown(f, remove_temp_files)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_key_generate),
		TEST(test_key_wipe),
		TEST(test_sign_then_verify_accepts),
		TEST(test_verify_rejects_another_key),
		TEST(test_verify_rejects_another_exporter),
		TEST(test_verify_rejects_another_role),
		TEST(test_verify_rejects_another_group),
		TEST(test_verify_rejects_flipped_signature_bit),
		TEST(test_private_key_file_round_trip),
		TEST(test_private_key_file_is_pkcs8_pem),
		TEST(test_private_key_load_refuses_open_permissions),
		TEST(test_private_key_load_refuses_not_a_key),
		TEST(test_private_key_load_refuses_public_key),
		TEST(test_private_key_load_missing_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
