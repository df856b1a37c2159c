/*
 * authkeys: the relay's authorized-keys file (-a), and what each key in it
 * may do.
 *
 * One key a line, OpenSSH-style; blank lines and lines starting with '#'
 * are ignored:
 *
 *   [options] ssh-ed25519 BASE64 [comment]
 *
 * options is a comma-separated list without spaces outside its quotes:
 *
 *   role="entry-point" | role="reverse-proxy"   absent: either role
 *   groups="0,3,10-20"                          absent: any group
 *   from="203.0.113.0/24,2001:db8::/32,198.51.100.7"
 *                                               absent: any source
 *   max-channels="N"                            absent: no per-key limit
 *
 * Each option at most once, every value in double quotes (a quoted value
 * may hold commas), names case-insensitive as in OpenSSH.  A from= address
 * without a prefix is one host (/32, /128); a network must have no bits set
 * past its prefix.  A source that is an IPv4-mapped IPv6 address is checked
 * against the IPv4 networks.
 *
 * PEM public keys (-----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY-----,
 * what gen-cert wrote before) are accepted too, anywhere among the lines,
 * and have no restriction and no comment.
 *
 * Anything malformed fails the whole load with "FILE:LINE: what is wrong".
 * This module owns the parsing and the rules, in three files: authkeys.c
 * reads the file (lines, key lines, PEM blocks) into a set,
 * authkeys_options.c the options of one key, authkeys_check.c what a
 * loaded key allows and how it is described; the networks of from= are
 * cidr's (cidr.h).  The relay counts channels against max-channels and
 * does the rest.
 */
#ifndef AUTHKEYS_H
#define AUTHKEYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "auth.h"
#include "cidr.h"
#include "frame.h"
#include "sshkey.h"

#define AUTHKEYS_LINE_MAX 4096		/* bytes in one line, without '\n' */
#define AUTHKEYS_FILE_MAX (8 << 20)	/* bytes in the whole file */
#define AUTHKEY_GROUPS_MAX 32		/* entries in one groups= */
#define AUTHKEY_FROM_MAX 32		/* entries in one from= */
#define AUTHKEY_MAX_CHANNELS_MAX 1000000	/* as relay --max-channels */
/* Keys in one file: AUTH_KEYS_MAX (auth.h). */

#define AUTHKEY_ROLES_ALL ((1u << ROLE_ENTRY) | (1u << ROLE_REVERSE))

/* Groups lo..hi, both included. */
struct authkey_range {
	uint32_t lo, hi;
};

struct authkey {
	uint8_t pk[AUTH_PUBKEY_LEN];
	char comment[SSHKEY_COMMENT_MAX + 1];	/* "" for PEM keys */
	char fingerprint[SSHKEY_FINGERPRINT_LEN];	/* "SHA256:..." */
	unsigned line;			/* in the file, for messages */
	unsigned roles;			/* bits 1 << ROLE_ENTRY, ROLE_REVERSE */
	struct authkey_range groups[AUTHKEY_GROUPS_MAX];
	size_t ngroups;			/* 0: any group */
	struct cidr from[AUTHKEY_FROM_MAX];	/* networks, cidr.h */
	size_t nfrom;			/* 0: any source */
	unsigned max_channels;		/* 0: no per-key limit */
};

struct authkeys {
	struct authkey *keys;		/* owned; in file order */
	size_t n;
};

enum authkey_verdict {
	AUTHKEY_OK,
	AUTHKEY_ROLE,			/* role not in role= */
	AUTHKEY_GROUP,			/* group not in groups= */
	AUTHKEY_SOURCE,			/* source address not in from= */
};

/*
 * Read the authorized-keys file path into set (which owns its keys until
 * authkeys_free).  Returns 0, or -1 with "path: ..." or "path:LINE: ..."
 * in err and set empty, when the file cannot be read, is malformed
 * anywhere, or holds no key.
 */
int authkeys_load(const char *path, struct authkeys *set, char *err,
    size_t errlen);

/*
 * The same for text already in memory (what authkeys_load uses); name
 * stands for the file in messages.  Returns 0 or -1 (err, set empty).
 */
int authkeys_parse_text(const char *text, const char *name,
    struct authkeys *set, char *err, size_t errlen);

/*
 * Parse the options s[0..n-1] of one key line (no blanks outside quotes;
 * what authkeys_parse_text uses) into k, which starts with no restriction.
 * Returns 0, or -1 with what is wrong in err ("from: ...", without file
 * and line).
 */
int authkey_parse_options(const char *s, size_t n, struct authkey *k,
    char *err, size_t errlen);

/* The entry of set for pk, or NULL.  set may be NULL. */
const struct authkey *authkeys_find(const struct authkeys *set,
    const uint8_t pk[AUTH_PUBKEY_LEN]);

/*
 * May k authenticate as role (ROLE_ENTRY or ROLE_REVERSE) in group from
 * source?  Checks role, then group, then source, and says which rule
 * refuses.  source may be NULL, or of another family than IPv4 and IPv6,
 * which passes only a key without from=.  max-channels is the relay's to
 * count.
 */
enum authkey_verdict authkey_check(const struct authkey *k, uint8_t role,
    uint32_t group, const struct sockaddr *source);

/* "ok", "role not allowed for this key", ... for log lines. */
const char *authkey_verdict_text(enum authkey_verdict v);

/*
 * k's options as text for log lines, as "role=entry-point groups=0,3,10-20
 * from=203.0.113.0/24 max-channels=3" (only those it has), or "no
 * restriction".  Cut with "..." when buf is too small.
 */
void authkey_describe(const struct authkey *k, char *buf, size_t len);

/* Release set's keys.  NULL or an empty set is fine. */
void authkeys_free(struct authkeys *set);

/* "SHA256:... (comment)", or the fingerprint alone for a key without a
 * comment, for log lines. */
void authkey_label(const struct authkey *k, char *buf, size_t len);

#endif
