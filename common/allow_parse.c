/*
 * allow_parse: the text of --allow RULES (allow.h) into a list of rules:
 * each rule's address and prefix, host name or "*." name, and ports, with
 * a message naming the rule that is wrong.  Judging a destination by the
 * rules, the default list and describing a list are allow.c's.
 */
#include "allow.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "allow_internal.h"
#include "cidr.h"
#include "route.h"

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
