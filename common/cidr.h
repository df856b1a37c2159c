/*
 * cidr: an IP network (ADDRESS[/PREFIX], IPv4 or IPv6): parse, match,
 * print.  Shared by allow (the reverse-proxy's --allow rules) and
 * authkeys (the relay's from= option); each says in its own words what is
 * wrong with a network, from the reason cidr_parse returns.
 *
 *   10.0.0.0/8   192.0.2.7 (a /32)   2001:db8::/32   ::1 (a /128)
 *
 * The address is what inet_pton reads (a.b.c.d; IPv6 without brackets or
 * %scope); the prefix is decimal digits, 0-32 or 0-128.  A network has
 * no bits set past its prefix: 10.0.0.1/8 is refused (10.0.0.0/8 meant).
 *
 * IPv4-mapped IPv6 (::ffff:a.b.c.d): a network written that way, with a
 * prefix of 96 or more, is the IPv4 network a.b.c.d/(prefix - 96) (or is
 * refused, when the caller asks); an address that way is matched as the
 * IPv4 address, against IPv4 networks only, so that no IPv6 network, not
 * even ::/0, covers it.  IPv4-compatible (::a.b.c.d) and NAT64
 * (64:ff9b::a.b.c.d) addresses are plain IPv6.
 *
 * This module owns that syntax and those semantics; it keeps no state and
 * writes no messages.
 */
#ifndef CIDR_H
#define CIDR_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest cidr_format text, with the NUL: an IPv6 address and "/128". */
#define CIDR_TEXT_MAX (INET6_ADDRSTRLEN + 4)

/* A network: the first prefix bits of addr (4 bytes used for AF_INET). */
struct cidr {
	int family;			/* AF_INET or AF_INET6 */
	unsigned prefix;		/* 0-32 or 0-128 */
	uint8_t addr[16];		/* bits past prefix are zero */
};

/* What cidr_parse found wrong, in the order it looks. */
enum cidr_error {
	CIDR_OK = 0,
	CIDR_ERR_ADDRESS,	/* no address (of the family asked for) */
	CIDR_ERR_PREFIX_NUMBER,	/* after '/': not digits only, or none */
	CIDR_ERR_PREFIX_RANGE,	/* a number past 32 (IPv4) or 128 (IPv6) */
	CIDR_ERR_MAPPED,	/* IPv4-mapped, refused (CIDR_REFUSE_MAPPED) */
	CIDR_ERR_HOST_BITS,	/* bits set past the prefix */
};

/* cidr_parse's flags. */
#define CIDR_REFUSE_MAPPED 0x1	/* ::ffff:a.b.c.d/96+: CIDR_ERR_MAPPED */

/*
 * Parse the network s[0..n-1] (no brackets, no blanks, not necessarily
 * NUL-terminated) into c.  family: AF_INET or AF_INET6 takes only that
 * family; AF_UNSPEC takes IPv6 when the address has a ':', IPv4 otherwise.
 * Without a prefix, the network is one address (/32, /128).  An IPv4-mapped
 * network is turned into IPv4 (see above), or with CIDR_REFUSE_MAPPED in
 * flags refused.  Returns CIDR_OK, or the first thing wrong; c->family is
 * set on every return but CIDR_ERR_ADDRESS, and on CIDR_ERR_HOST_BITS c is
 * the network meant (the bits past the prefix cleared), for a hint.
 */
enum cidr_error cidr_parse(const char *s, size_t n, int family,
    unsigned flags, struct cidr *c);

/*
 * Is the address of sa (AF_INET or AF_INET6; the port is not looked at)
 * in c?  An IPv4-mapped IPv6 address is judged as its IPv4 address.
 * Returns 1 or 0 (also for NULL or another family).
 */
int cidr_match(const struct cidr *c, const struct sockaddr *sa);

/*
 * c as text, always terminated: "10.0.0.0/8", "2001:db8::/32", and a
 * single address without its prefix ("192.0.2.7", "::1").  No brackets.
 * CIDR_TEXT_MAX bytes are enough; less is cut.
 */
void cidr_format(const struct cidr *c, char *buf, size_t len);

#endif
