#include "allow.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "allow_internal.h"
#include "cidr.h"
#include "route.h"

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
int
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
