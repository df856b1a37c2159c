/*
 * authkeys: reading the authorized-keys file (see authkeys.h): its lines,
 * ssh-ed25519 key lines and PEM blocks, into a set of keys.  The options
 * in front of a key are authkeys_options.c's; what a loaded key allows is
 * authkeys_check.c's.
 */
#include "authkeys.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>

_Static_assert(SSHKEY_PK_LEN == AUTH_PUBKEY_LEN, "one key length");

#define PEM_BEGIN "-----BEGIN PUBLIC KEY-----"
#define PEM_END "-----END PUBLIC KEY-----"
#define SHOW_MAX 64		/* characters of a bad value in a message */
#define MSG_MAX 512

/* One load: where it is, for messages, and what it has made so far. */
struct parser {
	const char *name;
	struct authkeys *set;
	size_t cap;			/* entries allocated in set->keys */
	char *err;
	size_t errlen;
};

/* Say "NAME:LINE: message" in ps->err.  Returns -1. */
static int parse_error(struct parser *ps, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
parse_error(struct parser *ps, unsigned line, const char *fmt, ...)
{
	char msg[MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(ps->err, ps->errlen, "%s:%u: %s", ps->name, line, msg);
	return -1;
}

static int
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* The arguments for "%.*s%s": s, cut with "..." when long. */
#define SHOWN(s) (strlen(s) > SHOW_MAX ? SHOW_MAX : (int)strlen(s)), (s), \
    strlen(s) > SHOW_MAX ? "..." : ""

/* --- keys --- */

/* Could s (up to a blank or the end) name a key type, as in OpenSSH? */
static int
looks_like_key_type(const char *s)
{
	static const char *const prefixes[] = { "ssh-", "ecdsa-", "sk-" };
	size_t i;

	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
			return 1;
	return 0;
}

/* Add k to the set, refusing a second copy of a key and one key too
 * many.  Returns 0 or -1 (ps->err). */
static int
add_key(struct parser *ps, struct authkey *k)
{
	struct authkeys *set = ps->set;
	const struct authkey *twin;
	struct authkey *grown;
	size_t cap;

	sshkey_fingerprint(k->pk, k->fingerprint);
	if ((twin = authkeys_find(set, k->pk)) != NULL)
		return parse_error(ps, k->line, "the same key as on line %u "
		    "(%s)", twin->line, k->fingerprint);
	if (set->n == AUTH_KEYS_MAX)
		return parse_error(ps, k->line, "more than %d keys",
		    AUTH_KEYS_MAX);
	if (set->n == ps->cap) {
		cap = ps->cap == 0 ? 16 : 2 * ps->cap;
		if (cap > AUTH_KEYS_MAX)
			cap = AUTH_KEYS_MAX;
		if ((grown = realloc(set->keys, cap * sizeof(*grown))) == NULL)
			return parse_error(ps, k->line, "out of memory");
		set->keys = grown;
		ps->cap = cap;
	}
	set->keys[set->n++] = *k;
	return 0;
}

/* A new entry for line: no restriction yet. */
static void
key_init(struct authkey *k, unsigned line)
{
	memset(k, 0, sizeof(*k));
	k->line = line;
	k->roles = AUTHKEY_ROLES_ALL;
}

/*
 * One line "[options] ssh-ed25519 BASE64 [comment]" (no newline, blanks
 * already skipped at its start).  Returns 0 or -1 (ps->err).
 */
static int
parse_key_line(struct parser *ps, unsigned line, const char *s)
{
	char msg[MSG_MAX];
	const char *p = s, *key, *c;
	struct authkey k;
	int quoted = 0;

	key_init(&k, line);
	/* The first word, blanks inside quotes included. */
	while (*p != '\0' && (quoted || !is_blank(*p))) {
		if (*p == '"')
			quoted = !quoted;
		p++;
	}
	key = p;
	while (is_blank(*key))
		key++;
	/* The first word is options when it has their characters, or when
	 * a key type follows it ("no-pty ssh-ed25519 ...": an unknown
	 * option, not an unknown key type). */
	c = strpbrk(s, "=\",");
	if ((c != NULL && c < p) ||
	    (!looks_like_key_type(s) && looks_like_key_type(key))) {
		if (authkey_parse_options(s, (size_t)(p - s), &k, msg,
		    sizeof(msg)) == -1)
			return parse_error(ps, line, "%s", msg);
		if (*key == '\0')
			return parse_error(ps, line, "options but no key");
		if (strncmp(key, "-----BEGIN", 10) == 0)
			return parse_error(ps, line, "options cannot go on a "
			    "PEM key (write the key as an ssh-ed25519 line)");
	} else
		key = s;
	if (sshkey_parse(key, k.pk, k.comment, sizeof(k.comment), msg,
	    sizeof(msg)) == -1)
		return parse_error(ps, line, "%s", msg);
	return add_key(ps, &k);
}

/*
 * The PEM block text[0..n-1] (lines from BEGIN to END, blanks and CRs
 * trimmed) that started on line.  Returns 0 or -1 (ps->err).
 */
static int
parse_pem(struct parser *ps, unsigned line, const char *text, size_t n)
{
	size_t pklen;
	struct authkey k;
	EVP_PKEY *pkey;
	BIO *bio;
	int id;

	key_init(&k, line);
	if (n > INT_MAX || (bio = BIO_new_mem_buf(text, (int)n)) == NULL)
		return parse_error(ps, line, "out of memory");
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL) {
		ERR_clear_error();
		return parse_error(ps, line, "not a public key in PEM");
	}
	if ((id = EVP_PKEY_get_id(pkey)) != EVP_PKEY_ED25519) {
		const char *type = EVP_PKEY_get0_type_name(pkey);

		parse_error(ps, line, "a PEM public key of type %s: only "
		    "ed25519 keys are accepted", type != NULL ? type : "?");
		EVP_PKEY_free(pkey);
		return -1;
	}
	pklen = sizeof(k.pk);
	if (EVP_PKEY_get_raw_public_key(pkey, k.pk, &pklen) != 1 ||
	    pklen != sizeof(k.pk)) {
		ERR_clear_error();
		EVP_PKEY_free(pkey);
		return parse_error(ps, line, "not an ed25519 public key in "
		    "PEM");
	}
	EVP_PKEY_free(pkey);
	return add_key(ps, &k);
}

/* One line of the text: where it starts, its length without "\r\n". */
struct text_line {
	const char *s;
	size_t len;
	const char *next;		/* the line after it, or NULL */
};

static void
next_line(const char *p, struct text_line *l)
{
	const char *nl = strchr(p, '\n');

	l->s = p;
	l->len = nl != NULL ? (size_t)(nl - p) : strlen(p);
	l->next = nl != NULL ? nl + 1 : NULL;
	if (l->len > 0 && p[l->len - 1] == '\r')
		l->len--;
}

/* l with blanks trimmed at both ends, into buf (AUTHKEYS_LINE_MAX + 1). */
static void
trimmed(const struct text_line *l, char *buf)
{
	size_t a = 0, b = l->len;

	while (a < b && is_blank(l->s[a]))
		a++;
	while (b > a && is_blank(l->s[b - 1]))
		b--;
	memcpy(buf, l->s + a, b - a);
	buf[b - a] = '\0';
}

/*
 * Check a line's length and characters (tabs are the only control
 * characters allowed; the CR of CRLF is already gone).  Returns 0 or -1.
 */
static int
check_line(struct parser *ps, unsigned line, const struct text_line *l)
{
	size_t i;

	if (l->len > AUTHKEYS_LINE_MAX)
		return parse_error(ps, line, "line longer than %d bytes",
		    AUTHKEYS_LINE_MAX);
	for (i = 0; i < l->len; i++) {
		unsigned char c = (unsigned char)l->s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return parse_error(ps, line, "control character 0x%02x",
			    c);
	}
	return 0;
}

/*
 * The PEM block whose BEGIN line is *l (line *line): gather its lines,
 * trimmed, up to END, and parse it.  Leaves *l and *line on the END line.
 * Returns 0 or -1 (ps->err).
 */
static int
read_pem_block(struct parser *ps, unsigned *line, struct text_line *l)
{
	char buf[AUTHKEYS_LINE_MAX + 1];
	unsigned first = *line;
	char *block = NULL, *grown;
	size_t used = 0, cap = 0, n;
	int rc;

	for (;;) {
		if (check_line(ps, *line, l) == -1)
			goto fail;
		trimmed(l, buf);
		n = strlen(buf);
		if (used + n + 2 > cap) {
			cap = used + n + 2 + 256;
			if ((grown = realloc(block, cap)) == NULL) {
				parse_error(ps, first, "out of memory");
				goto fail;
			}
			block = grown;
		}
		memcpy(block + used, buf, n);
		used += n;
		block[used++] = '\n';
		block[used] = '\0';
		if (strcmp(buf, PEM_END) == 0)
			break;
		if (l->next == NULL) {
			parse_error(ps, first, "%s with no %s line after it",
			    PEM_BEGIN, PEM_END);
			goto fail;
		}
		next_line(l->next, l);
		(*line)++;
	}
	rc = parse_pem(ps, first, block, used);
	free(block);
	return rc;
fail:
	free(block);
	return -1;
}

int
authkeys_parse_text(const char *text, const char *name,
    struct authkeys *set, char *err, size_t errlen)
{
	char buf[AUTHKEYS_LINE_MAX + 1];
	struct parser ps = { name, set, 0, err, errlen };
	struct text_line l;
	unsigned line = 1;

	memset(set, 0, sizeof(*set));
	for (next_line(text, &l); ; next_line(l.next, &l), line++) {
		if (check_line(&ps, line, &l) == -1)
			goto fail;
		trimmed(&l, buf);
		if (buf[0] == '\0' || buf[0] == '#')
			;
		else if (strcmp(buf, PEM_BEGIN) == 0) {
			if (read_pem_block(&ps, &line, &l) == -1)
				goto fail;
		} else if (strncmp(buf, "-----BEGIN ", 11) == 0 &&
		    strstr(buf, "PRIVATE KEY") != NULL) {
			parse_error(&ps, line, "a private key: this file takes "
			    "public keys only");
			goto fail;
		} else if (strncmp(buf, "-----", 5) == 0) {
			parse_error(&ps, line, "\"%.*s%s\" out of place (a PEM "
			    "key starts with %s)", SHOWN(buf),
			    PEM_BEGIN);
			goto fail;
		} else if (parse_key_line(&ps, line, buf) == -1)
			goto fail;
		if (l.next == NULL)
			break;
	}
	if (set->n == 0) {
		snprintf(err, errlen, "%s: no public key in it (make one with "
		    "'gen-cert ed25519')", name);
		goto fail;
	}
	return 0;
fail:
	authkeys_free(set);
	return -1;
}

int
authkeys_load(const char *path, struct authkeys *set, char *err,
    size_t errlen)
{
	char *text = NULL, *grown, *nul;
	size_t used = 0, cap = 0, got;
	unsigned line;
	FILE *f;
	int rc;

	memset(set, 0, sizeof(*set));
	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (cap - used < 2) {
			cap = cap == 0 ? 4096 : 2 * cap;
			if ((grown = realloc(text, cap)) == NULL) {
				snprintf(err, errlen, "%s: out of memory",
				    path);
				goto fail;
			}
			text = grown;
		}
		got = fread(text + used, 1, cap - used - 1, f);
		used += got;
		if (used > AUTHKEYS_FILE_MAX) {
			snprintf(err, errlen, "%s: larger than %d bytes", path,
			    AUTHKEYS_FILE_MAX);
			goto fail;
		}
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	fclose(f);
	f = NULL;
	text[used] = '\0';
	if ((nul = memchr(text, '\0', used)) != NULL) {
		char *p;

		for (line = 1, p = text; p < nul; p++)
			if (*p == '\n')
				line++;
		snprintf(err, errlen, "%s:%u: NUL byte", path, line);
		goto fail;
	}
	rc = authkeys_parse_text(text, path, set, err, errlen);
	free(text);
	return rc;
fail:
	if (f != NULL)
		fclose(f);
	free(text);
	return -1;
}

const struct authkey *
authkeys_find(const struct authkeys *set, const uint8_t pk[AUTH_PUBKEY_LEN])
{
	size_t i;

	if (set == NULL)
		return NULL;
	for (i = 0; i < set->n; i++)
		if (sodium_memcmp(set->keys[i].pk, pk, AUTH_PUBKEY_LEN) == 0)
			return &set->keys[i];
	return NULL;
}

void
authkeys_free(struct authkeys *set)
{
	if (set == NULL)
		return;
	free(set->keys);
	set->keys = NULL;
	set->n = 0;
}

void
authkey_label(const struct authkey *k, char *buf, size_t len)
{
	if (k->comment[0] != '\0')
		snprintf(buf, len, "%s (%s)", k->fingerprint, k->comment);
	else
		snprintf(buf, len, "%s", k->fingerprint);
}
