/*
 * fuzz_sshkey: common/sshkey.c's one-line public key parser.
 *
 * The input is the line (cut at a NUL).  A line that parses must format
 * back (sshkey_format) into a line that parses to the same key and
 * comment; parsing without a comment buffer, or with a smaller one, must
 * agree with parsing with a whole one.
 */
#include "fuzz.h"

#include "sshkey.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t pk[SSHKEY_PK_LEN], pk2[SSHKEY_PK_LEN];
	char comment[SSHKEY_COMMENT_MAX + 1], comment2[SSHKEY_COMMENT_MAX + 1];
	char line[SSHKEY_LINE_MAX], fp[SSHKEY_FINGERPRINT_LEN];
	char err[512], *text;
	size_t small;
	int r;

	if ((text = fuzz_string(data, size)) == NULL)
		return 0;
	err[0] = '\0';
	r = sshkey_parse(text, pk, comment, sizeof(comment), err, sizeof(err));
	FUZZ_CHECK(r == 0 || r == -1);
	if (r == -1)
		FUZZ_CHECK(FUZZ_TERMINATED(err, sizeof(err)) && err[0] != '\0');

	/* Without a comment buffer: the same verdict and key. */
	FUZZ_CHECK(sshkey_parse(text, pk2, NULL, 0, err, sizeof(err)) == r);
	FUZZ_CHECK(r == -1 || memcmp(pk2, pk, sizeof(pk)) == 0);

	/* A smaller buffer (its size from the input): refused just when the
	 * comment does not fit. */
	small = size > 0 ? data[size - 1] % (sizeof(comment2) + 1) : 0;
	FUZZ_CHECK(sshkey_parse(text, pk2, comment2, small, err,
	    sizeof(err)) == (r == 0 && strlen(comment) < small ? 0 : -1));
	if (r == -1)
		goto done;
	FUZZ_CHECK(strlen(comment) <= SSHKEY_COMMENT_MAX);
	if (strlen(comment) < small)
		FUZZ_CHECK(strcmp(comment2, comment) == 0);

	sshkey_fingerprint(pk, fp);
	FUZZ_CHECK(strncmp(fp, "SHA256:", 7) == 0 && strlen(fp) == 7 + 43);

	/* Formatted and parsed again: the same key and comment. */
	FUZZ_CHECK(sshkey_format(pk, comment, line, sizeof(line)) == 0);
	FUZZ_CHECK(sshkey_parse(line, pk2, comment2, sizeof(comment2), err,
	    sizeof(err)) == 0);
	FUZZ_CHECK(memcmp(pk2, pk, sizeof(pk)) == 0);
	FUZZ_CHECK(strcmp(comment2, comment) == 0);
	/* One byte short, the line does not fit. */
	FUZZ_CHECK(sshkey_format(pk, comment, line, strlen(line)) == -1);
done:
	free(text);
	return 0;
}
