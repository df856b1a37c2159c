#include "allow.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cidr.h"
#include "route.h"

enum allow_kind {
	ALLOW_NET,	/* net (IPv4 or IPv6) */
	ALLOW_NAME,	/* name exactly */
	ALLOW_UNDER	/* any name ending in "." name */
};

struct allow_rule {
	enum allow_kind kind;
	struct cidr net;
	uint16_t port_lo, port_hi;
	char name[ROUTE_HOST_MAX + 1];	/* lower case, no trailing dot */
};

/* The default list's deny prefixes (see allow.h). */
static const struct cidr link_local[] = {
	{ AF_INET, 16, { 169, 254 } },
	{ AF_INET6, 10, { 0xfe, 0x80 } },
	{ AF_INET6, 112, { [12] = 169, [13] = 254 } },		/* ::a.b.c.d */
	{ AF_INET6, 112, { 0x00, 0x64, 0xff, 0x9b, [12] = 169, [13] = 254 } },
};

#define DEFAULT_TEXT "default: any destination but link-local " \
	"(169.254.0.0/16, [fe80::/10])"

/*
 * An IPv4 address as glibc's getaddrinfo(AI_NUMERICHOST) reads it: what
 * inet_aton takes, without the trailing white space and junk that
 * inet_aton alone lets through.  Returns 1 or 0.
 */
static int
numeric_v4(const char *s, struct in_addr *a)
{
	const char *p;

	for (p = s; *p != '\0'; p++)
		if (isspace((unsigned char)*p))
			return 0;
	return inet_aton(s, a) != 0;
}

/*
 * Is host an IP literal (see allow.h)?  Fills ss (port 0) and returns 1,
 * or returns 0.
 */
static int
literal_parse(const char *host, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	char head[INET6_ADDRSTRLEN];
	const char *pct;
	size_t len;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1 ||
	    numeric_v4(host, &sin->sin_addr)) {
		sin->sin_family = AF_INET;
		return 1;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		return 1;
	}
	/* "fe80::1%eth0": the scope does not change what the address is. */
	if ((pct = strchr(host, '%')) == NULL || pct[1] == '\0')
		return 0;
	len = (size_t)(pct - host);
	if (len >= sizeof(head))
		return 0;
	memcpy(head, host, len);
	head[len] = '\0';
	if (inet_pton(AF_INET6, head, &sin6->sin6_addr) != 1)
		return 0;
	sin6->sin6_family = AF_INET6;
	return 1;
}

/*
 * Digits only, at least one, into *v (values past cap are cap + 1).
 * Returns 0, or -1 when s is not a number.
 */
static int
parse_number(const char *s, unsigned long cap, unsigned long *v)
{
	unsigned long n = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		n = n * 10 + (unsigned long)(*s - '0');
		if (n > cap)
			n = cap + 1;
	}
	*v = n;
	return 0;
}

/* One port of a PORTS field.  Returns 0 or -1 (err). */
static int
parse_one_port(const char *rule, const char *s, uint16_t *port, char *err,
    size_t errlen)
{
	unsigned long v;

	if (parse_number(s, 65535, &v) == -1) {
		snprintf(err, errlen, "'%s': port '%s' is not a number (ports "
		    "are N, N-M or *)", rule, s);
		return -1;
	}
	if (v < 1 || v > 65535) {
		snprintf(err, errlen, "'%s': port %s out of range (1-65535)",
		    rule, s);
		return -1;
	}
	*port = (uint16_t)v;
	return 0;
}

/* PORTS: N, N-M or * (s is writable: the '-' is cut).  0 or -1 (err). */
static int
parse_ports(const char *rule, char *s, struct allow_rule *r, char *err,
    size_t errlen)
{
	char *dash;

	if (*s == '\0') {
		snprintf(err, errlen, "'%s': empty port", rule);
		return -1;
	}
	if (strcmp(s, "*") == 0) {
		r->port_lo = 1;
		r->port_hi = 65535;
		return 0;
	}
	if ((dash = strchr(s, '-')) != NULL)
		*dash = '\0';
	if (parse_one_port(rule, s, &r->port_lo, err, errlen) == -1)
		return -1;
	r->port_hi = r->port_lo;
	if (dash == NULL)
		return 0;
	if (parse_one_port(rule, dash + 1, &r->port_hi, err, errlen) == -1)
		return -1;
	if (r->port_hi < r->port_lo) {
		snprintf(err, errlen, "'%s': port range %s-%s backwards", rule,
		    s, dash + 1);
		return -1;
	}
	return 0;
}

/*
 * The network s[0..n-1] (family AF_INET, or AF_INET6 between brackets)
 * into r, as cidr_parse reads it, with the message of what is wrong.
 * Returns 0, -1 (err), or 1 when s is no address of that family (nothing
 * said yet: the caller knows what else it might be).
 */
static int
parse_net(const char *rule, const char *s, size_t n, int family,
    struct allow_rule *r, char *err, size_t errlen)
{
	const char *slash = memchr(s, '/', n);
	char hint[CIDR_TEXT_MAX];
	int v6 = family == AF_INET6;

	r->kind = ALLOW_NET;
	switch (cidr_parse(s, n, family, CIDR_REFUSE_MAPPED, &r->net)) {
	case CIDR_OK:
		return 0;
	case CIDR_ERR_ADDRESS:
		return 1;
	case CIDR_ERR_PREFIX_NUMBER:
		snprintf(err, errlen, "'%s': prefix '%.*s' is not a number",
		    rule, (int)(n - (size_t)(slash - s) - 1), slash + 1);
		return -1;
	case CIDR_ERR_PREFIX_RANGE:
		snprintf(err, errlen, "'%s': prefix longer than %u", rule,
		    v6 ? 128 : 32);
		return -1;
	case CIDR_ERR_MAPPED:
		snprintf(err, errlen, "'%s': an IPv4-mapped address: write it "
		    "as IPv4 (a.b.c.d[/prefix])", rule);
		return -1;
	case CIDR_ERR_HOST_BITS:
		cidr_format(&r->net, hint, sizeof(hint));
		snprintf(err, errlen, "'%s': address has bits set past the /%u "
		    "prefix (%s%s%s?)", rule, r->net.prefix, v6 ? "[" : "",
		    hint, v6 ? "]" : "");
		return -1;
	}
	snprintf(err, errlen, "'%s': not an address", rule);
	return -1;
}

/* "[v6[/prefix]]" (inner: between the brackets).  0 or -1 (err). */
static int
parse_v6(const char *rule, const char *inner, struct allow_rule *r,
    char *err, size_t errlen)
{
	size_t n = strlen(inner);
	const char *slash = memchr(inner, '/', n);
	int rc = parse_net(rule, inner, n, AF_INET6, r, err, errlen);

	if (rc == 1) {
		snprintf(err, errlen, "'%s': '%.*s' is not an IPv6 address",
		    rule, (int)(slash != NULL ? (size_t)(slash - inner) : n),
		    inner);
		return -1;
	}
	return rc;
}

/* A name, or "*." and a name, into r.  0 or -1 (err). */
static int
parse_name(const char *rule, const char *s, struct allow_rule *r, char *err,
    size_t errlen)
{
	char name[ROUTE_HOST_MAX + 2];
	struct sockaddr_storage ss;
	struct in_addr a4;
	size_t len, i;
	int under = 0;

	if (strncmp(s, "*.", 2) == 0) {
		under = 1;
		s += 2;
	}
	len = strlen(s);
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0 || len > ROUTE_HOST_MAX)
		goto bad;
	memcpy(name, s, len);
	name[len] = '\0';
	if (literal_parse(name, &ss)) {
		/* "0x7f.1", "127.1": numeric, but not as the rules write it. */
		if (!under && ss.ss_family == AF_INET &&
		    inet_pton(AF_INET, name, &a4) != 1) {
			snprintf(err, errlen, "'%s': write IPv4 addresses as "
			    "a.b.c.d", rule);
			return -1;
		}
		goto bad;
	}
	if (!route_host_valid(name) || name[len - 1] == '.')
		goto bad;
	for (i = 0; i < len; i++)
		r->name[i] = (char)tolower((unsigned char)name[i]);
	r->name[len] = '\0';
	r->kind = under ? ALLOW_UNDER : ALLOW_NAME;
	return 0;
bad:
	snprintf(err, errlen, "'%s': not an address or host name", rule);
	return -1;
}

/* An unbracketed ADDRESS[/PREFIX] or [*.]HOSTNAME.  0 or -1 (err). */
static int
parse_v4_or_name(const char *rule, char *s, struct allow_rule *r, char *err,
    size_t errlen)
{
	char *slash = strchr(s, '/');
	int rc;

	if (*s == '\0' || s == slash) {
		snprintf(err, errlen, "'%s': no address or host name", rule);
		return -1;
	}
	if ((rc = parse_net(rule, s, strlen(s), AF_INET, r, err, errlen)) !=
	    1)
		return rc;
	memset(r, 0, sizeof(*r));
	if (slash != NULL)
		*slash = '\0';
	if (parse_name(rule, s, r, err, errlen) == -1)
		return -1;
	if (slash != NULL) {
		snprintf(err, errlen, "'%s': a prefix on a host name", rule);
		return -1;
	}
	return 0;
}

/* One rule (not empty, shorter than ALLOW_RULE_MAX).  0 or -1 (err). */
static int
parse_rule(const char *rule, struct allow_rule *r, char *err, size_t errlen)
{
	char buf[ALLOW_RULE_MAX + 1], *ports = NULL, *end;

	memset(r, 0, sizeof(*r));
	snprintf(buf, sizeof(buf), "%s", rule);
	if (buf[0] == '[') {
		if ((end = strchr(buf, ']')) == NULL) {
			snprintf(err, errlen, "'%s': missing ']'", rule);
			return -1;
		}
		*end++ = '\0';
		if (*end == '/') {
			snprintf(err, errlen, "'%s': the prefix goes inside "
			    "the brackets ([fd00::/8])", rule);
			return -1;
		}
		if (*end == ':')
			ports = end + 1;
		else if (*end != '\0') {
			snprintf(err, errlen, "'%s': expected ':' after ']'",
			    rule);
			return -1;
		}
		if (parse_v6(rule, buf + 1, r, err, errlen) == -1)
			return -1;
	} else {
		if ((ports = strchr(buf, ':')) != NULL) {
			if (strchr(ports + 1, ':') != NULL) {
				snprintf(err, errlen, "'%s': IPv6 addresses go "
				    "in brackets ([fd00::1]:443)", rule);
				return -1;
			}
			*ports++ = '\0';
		}
		if (parse_v4_or_name(rule, buf, r, err, errlen) == -1)
			return -1;
	}
	r->port_lo = 1;
	r->port_hi = 65535;
	if (ports != NULL)
		return parse_ports(rule, ports, r, err, errlen);
	return 0;
}

int
allow_parse(const char *text, struct allow_list *l, char *err, size_t errlen)
{
	char one[ALLOW_RULE_MAX + 1];
	const char *p, *comma;
	size_t n = 1, len;

	memset(l, 0, sizeof(*l));
	if (text[0] == '\0') {
		snprintf(err, errlen, "no rules given");
		return -1;
	}
	for (p = text; *p != '\0'; p++)
		if (*p == ',')
			n++;
	if (n > ALLOW_MAX) {
		snprintf(err, errlen, "more than %d rules", ALLOW_MAX);
		return -1;
	}
	if ((l->rules = calloc(n, sizeof(*l->rules))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (p = text;; p = comma + 1) {
		comma = strchr(p, ',');
		len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (len == 0) {
			snprintf(err, errlen, "empty rule in '%s'", text);
			goto fail;
		}
		if (len > ALLOW_RULE_MAX) {
			snprintf(err, errlen, "'%.40s...': longer than %d "
			    "characters", p, ALLOW_RULE_MAX);
			goto fail;
		}
		memcpy(one, p, len);
		one[len] = '\0';
		if (parse_rule(one, &l->rules[l->n], err, errlen) == -1)
			goto fail;
		l->n++;
		if (comma == NULL)
			break;
	}
	return 0;
fail:
	allow_free(l);
	return -1;
}

void
allow_default(struct allow_list *l)
{
	memset(l, 0, sizeof(*l));
	l->is_default = 1;
}

void
allow_free(struct allow_list *l)
{
	free(l->rules);
	memset(l, 0, sizeof(*l));
}

/* The default list's verdict on the address sa (IPv4 or IPv6). */
static int
default_allows(const struct sockaddr *sa)
{
	size_t i;

	for (i = 0; i < sizeof(link_local) / sizeof(link_local[0]); i++)
		if (cidr_match(&link_local[i], sa))
			return 0;
	return 1;
}

int
allow_address(const struct allow_list *l, const struct sockaddr *sa,
    uint16_t port)
{
	size_t i;

	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return 0;
	if (port == 0)
		return 0;
	if (l->is_default)
		return default_allows(sa);
	for (i = 0; i < l->n; i++) {
		const struct allow_rule *r = &l->rules[i];
		if (r->kind == ALLOW_NET && port >= r->port_lo &&
		    port <= r->port_hi && cidr_match(&r->net, sa))
			return 1;
	}
	return 0;
}

/* Does name (lower or upper case, no trailing dot) match rule r? */
static int
name_matches(const struct allow_rule *r, const char *name, size_t len)
{
	size_t rl = strlen(r->name);

	if (r->kind == ALLOW_NAME)
		return len == rl && strncasecmp(name, r->name, len) == 0;
	/* ALLOW_UNDER: at least one label, then ".", then r->name. */
	return len > rl + 1 && name[len - rl - 1] == '.' &&
	    strncasecmp(name + len - rl, r->name, rl) == 0;
}

int
allow_name(const struct allow_list *l, const char *host, uint16_t port)
{
	char name[ROUTE_HOST_MAX + 1];
	struct sockaddr_storage ss;
	size_t len = strlen(host), i;

	if (port == 0 || l->is_default)
		return 0;
	if (len > 0 && host[len - 1] == '.')
		len--;
	if (len == 0 || len > ROUTE_HOST_MAX)
		return 0;
	memcpy(name, host, len);
	name[len] = '\0';
	/* (No rule allow_parse takes matches a literal: this is in case.) */
	if (literal_parse(name, &ss) || !route_host_valid(name) ||
	    name[len - 1] == '.')
		return 0;
	for (i = 0; i < l->n; i++) {
		const struct allow_rule *r = &l->rules[i];
		if ((r->kind == ALLOW_NAME || r->kind == ALLOW_UNDER) &&
		    port >= r->port_lo && port <= r->port_hi &&
		    name_matches(r, name, len))
			return 1;
	}
	return 0;
}

int
allow_literal(const struct allow_list *l, const char *host, uint16_t port,
    int *is_literal)
{
	struct sockaddr_storage ss;

	if (!literal_parse(host, &ss)) {
		*is_literal = 0;
		return 0;
	}
	*is_literal = 1;
	return allow_address(l, (const struct sockaddr *)&ss, port);
}

/* Rule r in canonical form into buf. */
static void
rule_format(const struct allow_rule *r, char *buf, size_t len)
{
	char what[ROUTE_HOST_MAX + CIDR_TEXT_MAX + 8], ports[16] = "";
	char net[CIDR_TEXT_MAX];

	switch (r->kind) {
	case ALLOW_NET:
		cidr_format(&r->net, net, sizeof(net));
		if (r->net.family == AF_INET6)
			snprintf(what, sizeof(what), "[%s]", net);
		else
			snprintf(what, sizeof(what), "%s", net);
		break;
	case ALLOW_NAME:
		snprintf(what, sizeof(what), "%s", r->name);
		break;
	case ALLOW_UNDER:
		snprintf(what, sizeof(what), "*.%s", r->name);
		break;
	}
	if (r->port_lo == r->port_hi)
		snprintf(ports, sizeof(ports), ":%u", r->port_lo);
	else if (r->port_lo != 1 || r->port_hi != 65535)
		snprintf(ports, sizeof(ports), ":%u-%u", r->port_lo,
		    r->port_hi);
	snprintf(buf, len, "%s%s", what, ports);
}

void
allow_describe(const struct allow_list *l, char *buf, size_t len)
{
	char one[ROUTE_HOST_MAX + CIDR_TEXT_MAX + 32];
	size_t used = 0, i, need;

	if (len == 0)
		return;
	buf[0] = '\0';
	if (l->is_default) {
		snprintf(buf, len, "%s", DEFAULT_TEXT);
		return;
	}
	if (l->n == 0) {
		snprintf(buf, len, "no rules");
		return;
	}
	for (i = 0; i < l->n; i++) {
		rule_format(&l->rules[i], one, sizeof(one));
		need = (i > 0) + strlen(one);
		/* Room for this rule, and for ",..." if the next won't fit. */
		if (used + need + (i + 1 < l->n ? 4 : 0) >= len) {
			if (used > 0)	/* room kept for it */
				snprintf(buf + used, len - used, ",...");
			else
				snprintf(buf, len, "...");
			return;
		}
		snprintf(buf + used, len - used, "%s%s", i > 0 ? "," : "",
		    one);
		used += need;
	}
}
