/*
 * sshkey: the OpenSSH one-line public key format, for ed25519 keys only.
 *
 *   ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... comment
 *
 * The base64 part is the key's wire blob (RFC 8709, RFC 4253 section 6.6):
 * uint32 length "ssh-ed25519", uint32 length 32, the 32-byte public key,
 * lengths big-endian.  The fingerprint is what `ssh-keygen -l` prints:
 * "SHA256:" and the SHA-256 of the wire blob in base64 without padding.
 * This module owns that text and that blob; it does no I/O.
 */
#ifndef SSHKEY_H
#define SSHKEY_H

#include <stddef.h>
#include <stdint.h>

#define SSHKEY_TYPE "ssh-ed25519"
#define SSHKEY_PK_LEN 32
/* The wire blob: 4 + 11 + 4 + 32 bytes. */
#define SSHKEY_BLOB_LEN (4 + sizeof(SSHKEY_TYPE) - 1 + 4 + SSHKEY_PK_LEN)
/* Its base64 (68 characters), without the NUL. */
#define SSHKEY_BASE64_LEN (4 * ((SSHKEY_BLOB_LEN + 2) / 3))
/* Longest comment, in bytes, without the NUL. */
#define SSHKEY_COMMENT_MAX 255
/* Longest line sshkey_format writes, with the NUL. */
#define SSHKEY_LINE_MAX (sizeof(SSHKEY_TYPE) + SSHKEY_BASE64_LEN + 1 + \
    SSHKEY_COMMENT_MAX + 1)
/* "SHA256:" + 43 characters of base64 + NUL. */
#define SSHKEY_FINGERPRINT_LEN (7 + 43 + 1)

/*
 * Write "ssh-ed25519 BASE64 comment" (without a newline) into buf; no
 * comment part when comment is NULL or "".  Returns 0, or -1 when buf is
 * too small or the comment is longer than SSHKEY_COMMENT_MAX or holds a
 * control character (it would not read back as the same line).
 */
int sshkey_format(const uint8_t pk[SSHKEY_PK_LEN], const char *comment,
    char *buf, size_t len);

/*
 * Parse "ssh-ed25519 BASE64 [comment]" (spaces or tabs between the
 * fields, leading ones skipped) into pk, and the rest of the line after
 * the blob into comment (inner spaces kept, a trailing newline, CR and
 * blanks stripped; "" when there is none).  comment may be NULL (then
 * commentlen is ignored and the comment is only checked).  Refuses another
 * key type, bad base64, a blob that is not an ed25519 key of the right
 * length or has bytes after the key, and a comment with a control
 * character or too long for commentlen.  Returns 0, or -1 with a message
 * in err.
 */
int sshkey_parse(const char *line, uint8_t pk[SSHKEY_PK_LEN], char *comment,
    size_t commentlen, char *err, size_t errlen);

/* The key's fingerprint as `ssh-keygen -l` prints it, NUL-terminated. */
void sshkey_fingerprint(const uint8_t pk[SSHKEY_PK_LEN],
    char buf[SSHKEY_FINGERPRINT_LEN]);

#endif
