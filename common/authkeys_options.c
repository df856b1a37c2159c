/*
 * authkeys_options: the options in front of a key in the authorized-keys
 * file (role=, groups=, from=, max-channels=; see authkeys.h), read into
 * the key's entry.  The networks of from= are cidr's; the file, its lines
 * and its keys are authkeys.c's.
 */
#include "authkeys.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cidr.h"

#define SHOW_MAX 64		/* characters of a bad value in a message */
#define PREFIX_DIGITS_MAX 20	/* a from= prefix of more digits is refused */

/* Where a message about the options goes. */
struct msg {
	char *buf;
	size_t len;
};

/* Say what is wrong in m.  Returns -1. */
static int say(struct msg *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
say(struct msg *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m->buf, m->len, fmt, ap);
	va_end(ap);
	return -1;
}

/* Is s[0..n-1] digits only, of at most max of them? */
static int
digits(const char *s, size_t n, size_t max)
{
	size_t i;

	if (n == 0 || n > max)
		return 0;
	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/* The decimal s[0..n-1] as a number no larger than max.  Returns 0 or -1. */
static int
parse_number(const char *s, size_t n, unsigned long long max,
    unsigned long long *v)
{
	unsigned long long x = 0;
	size_t i;

	if (!digits(s, n, 20))
		return -1;
	for (i = 0; i < n; i++) {
		x = x * 10 + (unsigned long long)(s[i] - '0');
		if (x > max)
			return -1;
	}
	*v = x;
	return 0;
}

/* How much of a value's text a message shows. */
static int
shown(size_t n)
{
	return n > SHOW_MAX ? SHOW_MAX : (int)n;
}

/* The arguments for "%.*s%s": s[0..n-1], cut with "..." when long. */
#define SHOWN(s, n) shown(n), (s), (n) > SHOW_MAX ? "..." : ""

/* One entry of a list, e[0..n-1], added to k.  Returns 0 or -1 (m). */
typedef int entry_fn(struct msg *m, const char *e, size_t n,
    struct authkey *k);

/*
 * The comma-separated list v[0..n-1] of option what: each entry through
 * entry, which adds it to k and so to *count, at most max of them.
 * Returns 0 or -1 (m).
 */
static int
parse_list(struct msg *m, const char *what, const char *v, size_t n,
    const size_t *count, size_t max, entry_fn *entry, struct authkey *k)
{
	const char *p = v, *end = v + n, *comma;
	size_t len;

	for (;;) {
		comma = memchr(p, ',', (size_t)(end - p));
		len = comma != NULL ? (size_t)(comma - p) : (size_t)(end - p);
		if (len == 0)
			return say(m, "%s: empty entry in \"%.*s%s\"", what,
			    SHOWN(v, n));
		if (*count == max)
			return say(m, "%s: more than %zu entries", what, max);
		if (entry(m, p, len, k) == -1)
			return -1;
		if (comma == NULL)
			return 0;
		p = comma + 1;
	}
}

/* --- option values --- */

static int
parse_role(struct msg *m, const char *v, size_t n, struct authkey *k)
{
	if (n == strlen("entry-point") && memcmp(v, "entry-point", n) == 0)
		k->roles = 1u << ROLE_ENTRY;
	else if (n == strlen("reverse-proxy") &&
	    memcmp(v, "reverse-proxy", n) == 0)
		k->roles = 1u << ROLE_REVERSE;
	else
		return say(m, "role: \"%.*s%s\" is not entry-point or "
		    "reverse-proxy", SHOWN(v, n));
	return 0;
}

/* One entry of groups=, "N" or "N-M", added to k. */
static int
parse_range(struct msg *m, const char *e, size_t n, struct authkey *k)
{
	struct authkey_range *r = &k->groups[k->ngroups];
	unsigned long long lo, hi;
	const char *dash = memchr(e, '-', n);

	if (dash == NULL) {
		if (parse_number(e, n, UINT32_MAX, &lo) == -1)
			goto bad;
		hi = lo;
	} else if (parse_number(e, (size_t)(dash - e), UINT32_MAX, &lo) ==
	    -1 || parse_number(dash + 1, n - (size_t)(dash - e) - 1,
	    UINT32_MAX, &hi) == -1)
		goto bad;
	if (lo > hi)
		return say(m, "groups: range \"%.*s%s\" runs backwards (N-M "
		    "needs N <= M)", SHOWN(e, n));
	r->lo = (uint32_t)lo;
	r->hi = (uint32_t)hi;
	k->ngroups++;
	return 0;
bad:
	return say(m, "groups: \"%.*s%s\" is not a group (0-%lu) or a range "
	    "of groups N-M", SHOWN(e, n), (unsigned long)UINT32_MAX);
}

static int
parse_groups(struct msg *m, const char *v, size_t n, struct authkey *k)
{
	return parse_list(m, "groups", v, n, &k->ngroups, AUTHKEY_GROUPS_MAX,
	    parse_range, k);
}

/* One entry of from=, an address or a network ADDR/PREFIX, added to k. */
static int
parse_net(struct msg *m, const char *e, size_t n, struct authkey *k)
{
	struct cidr *net = &k->from[k->nfrom];
	const char *slash = memchr(e, '/', n);
	size_t alen = slash != NULL ? (size_t)(slash - e) : n;
	unsigned max = memchr(e, ':', alen) != NULL ? 128 : 32;
	char hint[CIDR_TEXT_MAX];
	enum cidr_error why = cidr_parse(e, n, AF_UNSPEC, 0, net);

	/* As ever, a prefix of more digits (leading zeros) is refused. */
	if (why != CIDR_ERR_ADDRESS && slash != NULL &&
	    n - alen - 1 > PREFIX_DIGITS_MAX)
		why = CIDR_ERR_PREFIX_NUMBER;
	switch (why) {
	case CIDR_OK:
		k->nfrom++;
		return 0;
	case CIDR_ERR_PREFIX_NUMBER:
	case CIDR_ERR_PREFIX_RANGE:
		goto bad_prefix;
	case CIDR_ERR_HOST_BITS:
		cidr_format(net, hint, sizeof(hint));
		return say(m, "from: \"%.*s%s\" has bits set past its /%u "
		    "prefix (the network is %s)", SHOWN(e, n), net->prefix,
		    hint);
	case CIDR_ERR_ADDRESS:
	case CIDR_ERR_MAPPED:		/* (not asked for) */
		break;
	}
	return say(m, "from: \"%.*s%s\" is not an IP address or network "
	    "(ADDRESS or ADDRESS/PREFIX, IPv4 or IPv6)", SHOWN(e, n));
bad_prefix:
	return say(m, "from: \"%.*s%s\": the prefix must be a number from 0 "
	    "to %u", SHOWN(e, n), max);
}

static int
parse_from(struct msg *m, const char *v, size_t n, struct authkey *k)
{
	return parse_list(m, "from", v, n, &k->nfrom, AUTHKEY_FROM_MAX,
	    parse_net, k);
}

static int
parse_max_channels(struct msg *m, const char *v, size_t n,
    struct authkey *k)
{
	unsigned long long x;

	if (parse_number(v, n, AUTHKEY_MAX_CHANNELS_MAX, &x) == -1 || x == 0)
		return say(m, "max-channels: \"%.*s%s\" is not a number from 1 "
		    "to %d", SHOWN(v, n), AUTHKEY_MAX_CHANNELS_MAX);
	k->max_channels = (unsigned)x;
	return 0;
}

/* --- options --- */

static const struct option {
	const char *name;
	entry_fn *parse;
} options[] = {
	{ "role", parse_role },
	{ "groups", parse_groups },
	{ "from", parse_from },
	{ "max-channels", parse_max_channels },
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

/* The option called s[0..n-1] (any case), or -1. */
static int
find_option(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < NOPTIONS; i++)
		if (strlen(options[i].name) == n &&
		    strncasecmp(options[i].name, s, n) == 0)
			return (int)i;
	return -1;
}

int
authkey_parse_options(const char *s, size_t n, struct authkey *k, char *err,
    size_t errlen)
{
	const char *p = s, *end = s + n, *name, *v, *q;
	struct msg m = { err, errlen };
	int seen[NOPTIONS] = { 0 }, o;
	size_t namelen;

	for (;;) {
		name = p;
		while (p < end && *p != '=' && *p != ',')
			p++;
		namelen = (size_t)(p - name);
		if (namelen == 0)
			return say(&m, "empty option (options are separated by "
			    "',' with no spaces)");
		if ((o = find_option(name, namelen)) == -1)
			return say(&m, "unknown option \"%.*s%s\" (known: role, "
			    "groups, from, max-channels)", SHOWN(name, namelen));
		if (seen[o])
			return say(&m, "option %s given twice", options[o].name);
		seen[o] = 1;
		if (p == end || *p != '=')
			return say(&m, "option %s has no value (%s=\"...\")",
			    options[o].name, options[o].name);
		p++;
		if (p == end || *p != '"')
			return say(&m, "option %s: the value goes in double "
			    "quotes (%s=\"...\")", options[o].name,
			    options[o].name);
		v = ++p;
		if ((q = memchr(v, '"', (size_t)(end - v))) == NULL)
			return say(&m, "option %s: no closing quote",
			    options[o].name);
		if (q == v)
			return say(&m, "option %s: empty value",
			    options[o].name);
		if (options[o].parse(&m, v, (size_t)(q - v), k) == -1)
			return -1;
		p = q + 1;
		if (p == end)
			return 0;
		if (*p != ',')
			return say(&m, "option %s: expected ',' after the "
			    "closing quote", options[o].name);
		p++;
	}
}
