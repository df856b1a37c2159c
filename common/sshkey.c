#include "sshkey.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#define TYPE_LEN (sizeof(SSHKEY_TYPE) - 1)
/* Key data longer than this is refused before it is decoded (enough
 * for any other key type's blob, so that it can be named). */
#define BASE64_MAX 4096
#define DECODED_MAX (BASE64_MAX / 4 * 3)

static int
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* A byte that may not appear in a comment (it would break a line or a
 * log line). */
static int
is_control(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

static void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* The wire blob of pk. */
static void
make_blob(const uint8_t pk[SSHKEY_PK_LEN], uint8_t blob[SSHKEY_BLOB_LEN])
{
	put_u32(blob, (uint32_t)TYPE_LEN);
	memcpy(blob + 4, SSHKEY_TYPE, TYPE_LEN);
	put_u32(blob + 4 + TYPE_LEN, SSHKEY_PK_LEN);
	memcpy(blob + 8 + TYPE_LEN, pk, SSHKEY_PK_LEN);
}

int
sshkey_format(const uint8_t pk[SSHKEY_PK_LEN], const char *comment,
    char *buf, size_t len)
{
	uint8_t blob[SSHKEY_BLOB_LEN];
	char b64[SSHKEY_BASE64_LEN + 1];
	const char *p;
	int n;

	if (comment != NULL) {
		if (strlen(comment) > SSHKEY_COMMENT_MAX)
			return -1;
		for (p = comment; *p != '\0'; p++)
			if (is_control((unsigned char)*p))
				return -1;
	}
	make_blob(pk, blob);
	if (sodium_bin2base64(b64, sizeof(b64), blob, sizeof(blob),
	    sodium_base64_VARIANT_ORIGINAL) == NULL)
		return -1;
	if (comment == NULL || comment[0] == '\0')
		n = snprintf(buf, len, "%s %s", SSHKEY_TYPE, b64);
	else
		n = snprintf(buf, len, "%s %s %s", SSHKEY_TYPE, b64, comment);
	if (n < 0 || (size_t)n >= len)
		return -1;
	return 0;
}

/*
 * Check the decoded blob (n bytes) and take the key out of it.  Returns 0,
 * or -1 with err set.
 */
static int
parse_blob(const uint8_t *blob, size_t n, uint8_t pk[SSHKEY_PK_LEN],
    char *err, size_t errlen)
{
	uint32_t tlen, klen;
	size_t off, i;
	int printable;

	if (n < 4 || (tlen = get_u32(blob)) > n - 4) {
		snprintf(err, errlen, "%s: key data is truncated",
		    SSHKEY_TYPE);
		return -1;
	}
	if (tlen != TYPE_LEN || memcmp(blob + 4, SSHKEY_TYPE, TYPE_LEN) != 0) {
		printable = tlen > 0 && tlen <= 40;
		for (i = 0; printable && i < tlen; i++)
			if (blob[4 + i] <= 0x20 || blob[4 + i] >= 0x7f)
				printable = 0;
		if (printable)
			snprintf(err, errlen, "%s: key data holds a %.*s key",
			    SSHKEY_TYPE, (int)tlen, (const char *)blob + 4);
		else
			snprintf(err, errlen, "%s: key data holds another key "
			    "type", SSHKEY_TYPE);
		return -1;
	}
	off = 4 + TYPE_LEN;
	if (n - off < 4) {
		snprintf(err, errlen, "%s: key data is truncated",
		    SSHKEY_TYPE);
		return -1;
	}
	klen = get_u32(blob + off);
	off += 4;
	if (klen != SSHKEY_PK_LEN) {
		snprintf(err, errlen, "%s: key data holds a key of %lu bytes, "
		    "expected %d", SSHKEY_TYPE, (unsigned long)klen,
		    SSHKEY_PK_LEN);
		return -1;
	}
	if (n - off < SSHKEY_PK_LEN) {
		snprintf(err, errlen, "%s: key data is truncated",
		    SSHKEY_TYPE);
		return -1;
	}
	off += SSHKEY_PK_LEN;
	if (off != n) {
		snprintf(err, errlen, "%s: key data has %zu byte%s after the "
		    "key", SSHKEY_TYPE, n - off, n - off == 1 ? "" : "s");
		return -1;
	}
	memcpy(pk, blob + 4 + TYPE_LEN + 4, SSHKEY_PK_LEN);
	return 0;
}

/*
 * The comment: s up to its end, less a trailing newline, CR and blanks.
 * Returns 0, or -1 with err set.
 */
static int
parse_comment(const char *s, char *comment, size_t commentlen, char *err,
    size_t errlen)
{
	size_t n = strlen(s), i;

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' ||
	    is_blank(s[n - 1])))
		n--;
	for (i = 0; i < n; i++) {
		if (is_control((unsigned char)s[i])) {
			snprintf(err, errlen, "%s: control character 0x%02x in "
			    "the comment", SSHKEY_TYPE, (unsigned char)s[i]);
			return -1;
		}
	}
	if (n > SSHKEY_COMMENT_MAX || (comment != NULL && n >= commentlen)) {
		snprintf(err, errlen, "%s: comment longer than %zu bytes",
		    SSHKEY_TYPE, n > SSHKEY_COMMENT_MAX || commentlen == 0 ?
		    (size_t)SSHKEY_COMMENT_MAX : commentlen - 1);
		return -1;
	}
	if (comment != NULL) {
		memcpy(comment, s, n);
		comment[n] = '\0';
	}
	return 0;
}

int
sshkey_parse(const char *line, uint8_t pk[SSHKEY_PK_LEN], char *comment,
    size_t commentlen, char *err, size_t errlen)
{
	uint8_t blob[DECODED_MAX], key[SSHKEY_PK_LEN];
	const char *type, *b64, *p = line;
	size_t typelen, b64len, bloblen;

	while (is_blank(*p))
		p++;
	type = p;
	while (*p != '\0' && !is_blank(*p) && *p != '\n' && *p != '\r')
		p++;
	typelen = (size_t)(p - type);
	if (typelen == 0) {
		snprintf(err, errlen, "no key");
		return -1;
	}
	if (typelen != TYPE_LEN || memcmp(type, SSHKEY_TYPE, TYPE_LEN) != 0) {
		snprintf(err, errlen, "%.*s%s: only %s keys are accepted",
		    typelen > 40 ? 40 : (int)typelen, type,
		    typelen > 40 ? "..." : "", SSHKEY_TYPE);
		return -1;
	}
	while (is_blank(*p))
		p++;
	b64 = p;
	while (*p != '\0' && !is_blank(*p) && *p != '\n' && *p != '\r')
		p++;
	b64len = (size_t)(p - b64);
	if (b64len == 0) {
		snprintf(err, errlen, "%s: no key data after the key type",
		    SSHKEY_TYPE);
		return -1;
	}
	if (b64len > BASE64_MAX) {
		snprintf(err, errlen, "%s: key data too long (%zu characters; "
		    "an ed25519 key has %zu)", SSHKEY_TYPE, b64len,
		    (size_t)SSHKEY_BASE64_LEN);
		return -1;
	}
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium failed to start");
		return -1;
	}
	if (sodium_base642bin(blob, sizeof(blob), b64, b64len, NULL, &bloblen,
	    NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
		snprintf(err, errlen, "%s: key data is not valid base64",
		    SSHKEY_TYPE);
		return -1;
	}
	if (parse_blob(blob, bloblen, key, err, errlen) == -1)
		return -1;
	while (is_blank(*p))
		p++;
	if (parse_comment(p, comment, commentlen, err, errlen) == -1)
		return -1;
	memcpy(pk, key, SSHKEY_PK_LEN);
	return 0;
}

void
sshkey_fingerprint(const uint8_t pk[SSHKEY_PK_LEN],
    char buf[SSHKEY_FINGERPRINT_LEN])
{
	uint8_t blob[SSHKEY_BLOB_LEN], hash[crypto_hash_sha256_BYTES];
	char b64[sodium_base64_ENCODED_LEN(crypto_hash_sha256_BYTES,
	    sodium_base64_VARIANT_ORIGINAL_NO_PADDING)];

	make_blob(pk, blob);
	if (sodium_init() < 0 ||
	    crypto_hash_sha256(hash, blob, sizeof(blob)) != 0 ||
	    sodium_bin2base64(b64, sizeof(b64), hash, sizeof(hash),
	    sodium_base64_VARIANT_ORIGINAL_NO_PADDING) == NULL) {
		/* Not seen: libsodium's SHA-256 and base64 cannot fail. */
		snprintf(buf, SSHKEY_FINGERPRINT_LEN, "SHA256:?");
		return;
	}
	snprintf(buf, SSHKEY_FINGERPRINT_LEN, "SHA256:%s", b64);
}
