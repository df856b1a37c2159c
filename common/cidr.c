#include "cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#define PREFIX_CAP 999		/* prefixes past this are read as this + 1 */

/* The bits of family's addresses: 32, 128, or 0 for another family. */
static unsigned
family_bits(int family)
{
	return family == AF_INET ? 32 : family == AF_INET6 ? 128 : 0;
}

/* Do the first prefix bits of a and net agree? */
static int
prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;
	uint8_t mask;

	if (memcmp(a, net, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (uint8_t)(0xff << (8 - rest));
	return (a[full] & mask) == (net[full] & mask);
}

/* Clear the bits of c->addr past c->prefix.  Returns 1 if any was set. */
static int
clear_host_bits(struct cidr *c)
{
	unsigned bits = family_bits(c->family), i;
	int was_set = 0;

	for (i = c->prefix; i < bits; i++) {
		uint8_t bit = (uint8_t)(0x80 >> (i % 8));

		if (c->addr[i / 8] & bit) {
			c->addr[i / 8] &= (uint8_t)~bit;
			was_set = 1;
		}
	}
	return was_set;
}

/* Is the IPv6 address a (16 bytes) IPv4-mapped, ::ffff:a.b.c.d? */
static int
is_mapped(const uint8_t *a)
{
	static const uint8_t head[12] = { [10] = 0xff, [11] = 0xff };

	return memcmp(a, head, sizeof(head)) == 0;
}

/* The prefix s[0..n-1] (after the '/'), at most max, into *prefix. */
static enum cidr_error
parse_prefix(const char *s, size_t n, unsigned max, unsigned *prefix)
{
	unsigned long v = 0;
	size_t i;

	if (n == 0)
		return CIDR_ERR_PREFIX_NUMBER;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return CIDR_ERR_PREFIX_NUMBER;
		v = v * 10 + (unsigned long)(s[i] - '0');
		if (v > PREFIX_CAP)
			v = PREFIX_CAP + 1;
	}
	if (v > max)
		return CIDR_ERR_PREFIX_RANGE;
	*prefix = (unsigned)v;
	return CIDR_OK;
}

enum cidr_error
cidr_parse(const char *s, size_t n, int family, unsigned flags,
    struct cidr *c)
{
	char text[INET6_ADDRSTRLEN];
	const char *slash = memchr(s, '/', n);
	size_t alen = slash != NULL ? (size_t)(slash - s) : n;
	enum cidr_error e;

	memset(c, 0, sizeof(*c));
	if (alen == 0 || alen >= sizeof(text) || memchr(s, '\0', alen))
		return CIDR_ERR_ADDRESS;
	memcpy(text, s, alen);
	text[alen] = '\0';
	if (family == AF_UNSPEC)
		family = memchr(text, ':', alen) != NULL ? AF_INET6 : AF_INET;
	if (family_bits(family) == 0 || inet_pton(family, text, c->addr) != 1)
		return CIDR_ERR_ADDRESS;
	c->family = family;
	c->prefix = family_bits(family);
	if (slash != NULL && (e = parse_prefix(slash + 1, n - alen - 1,
	    family_bits(family), &c->prefix)) != CIDR_OK)
		return e;
	if (family == AF_INET6 && c->prefix >= 96 && is_mapped(c->addr)) {
		if (flags & CIDR_REFUSE_MAPPED)
			return CIDR_ERR_MAPPED;
		if (clear_host_bits(c))
			return CIDR_ERR_HOST_BITS;
		/* ::ffff:a.b.c.d/96+N is the IPv4 network a.b.c.d/N. */
		memmove(c->addr, c->addr + 12, 4);
		memset(c->addr + 4, 0, 12);
		c->family = AF_INET;
		c->prefix -= 96;
		return CIDR_OK;
	}
	return clear_host_bits(c) ? CIDR_ERR_HOST_BITS : CIDR_OK;
}

int
cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	const uint8_t *a;
	int family;

	if (sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		memcpy(&sin, sa, sizeof(sin));
		a = (const uint8_t *)&sin.sin_addr;
		family = AF_INET;
	} else if (sa->sa_family == AF_INET6) {
		memcpy(&sin6, sa, sizeof(sin6));
		a = sin6.sin6_addr.s6_addr;
		family = AF_INET6;
		if (is_mapped(a)) {
			a += 12;	/* judged as the IPv4 address */
			family = AF_INET;
		}
	} else
		return 0;
	return c->family == family && c->prefix <= family_bits(family) &&
	    prefix_match(a, c->addr, c->prefix);
}

void
cidr_format(const struct cidr *c, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (len == 0)
		return;
	if (inet_ntop(c->family, c->addr, ip, sizeof(ip)) == NULL)
		snprintf(ip, sizeof(ip), "?");
	if (c->prefix == family_bits(c->family))
		snprintf(buf, len, "%s", ip);
	else
		snprintf(buf, len, "%s/%u", ip, c->prefix);
}
