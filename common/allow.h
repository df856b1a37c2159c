/*
 * allow: the reverse-proxy's destination allow-list (--allow RULES).
 *
 * RULES is a comma-separated list, no spaces, of
 *
 *   ADDRESS[/PREFIX][:PORTS]    10.0.0.0/8:22, 192.0.2.7, [fd00::/8]:22,
 *                               [::1], [fd00::1]:443
 *   HOSTNAME[:PORTS]            db.internal:5432, DB.Internal.:5432
 *   *.HOSTNAME[:PORTS]          *.corp.example:443
 *
 *   PORTS is N, N-M (N <= M) or * (1-65535); absent means *.
 *   IPv6 goes in brackets, the prefix inside them: [fd00::/8]:22.  A bare
 *   IPv4 address is a /32, a bare IPv6 address a /128.  The address of a
 *   prefix has no bits set beyond it (10.0.0.1/8 is refused: 10.0.0.0/8).
 *   IPv4 is written as a.b.c.d, not as [::ffff:a.b.c.d].
 *   A host name is letters, digits, '-' and dots (route_host_valid),
 *   matched without regard to case, one trailing dot ignored.  "*.NAME"
 *   matches every name under NAME, at any depth, but not NAME itself
 *   (*.example.com: a.example.com and a.b.example.com, not example.com
 *   nor badexample.com).  No other wildcard.
 *
 * What an OPEN's host is judged by:
 *   - an IP literal: the address rules only (allow_literal), never the
 *     name rules.  A literal is whatever glibc's getaddrinfo with
 *     AI_NUMERICHOST dials without asking DNS: a.b.c.d, IPv6 (with or
 *     without a %scope: any scope, where getaddrinfo wants a known
 *     interface), and the old inet_aton forms ("127.1",
 *     "2130706433", "0x7f.0.0.1", "010.0.0.1" = 8.0.0.1), each judged
 *     as the address it stands for;
 *   - a name: allowed by a name rule (allow_name) means "dial its
 *     addresses", whatever they are.  Otherwise resolve it, and check
 *     each address with allow_address before dialling it, so that DNS
 *     cannot lead around the address rules.
 *   The caller should check every address before it dials it (literal or
 *   resolved) unless allow_name said 1.
 *
 * Addresses: an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is an IPv4
 * destination (a dual-stack socket sends it as IPv4) and is judged by the
 * IPv4 rules only; no IPv6 rule covers it, not even [::/0].  IPv4-
 * compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) addresses are IPv6
 * destinations, judged by the IPv6 rules; a rule such as [::/0] or
 * [64:ff9b::/96] therefore lets a NAT64 gateway reach what it reaches.
 *
 * The default list (allow_default, for a reverse-proxy without --allow)
 * allows every destination, name or address, except link-local addresses,
 * where cloud metadata services answer: 169.254.0.0/16 and fe80::/10, and
 * 169.254.0.0/16 in the IPv4-compatible and NAT64 forms (::169.254.0.0/112,
 * 64:ff9b::169.254.0.0/112).  Names have no name rule there: their
 * addresses are checked.  That deny list is the default's only: with
 * --allow, the rules given are the whole truth, and a rule that covers a
 * link-local address (169.254.0.0/16, 0.0.0.0/0) allows it.
 *
 * A list with no rules (all zeroes, or what allow_parse leaves on failure)
 * allows nothing.  Port 0 is never allowed.  No global state: each list
 * belongs to its caller (a reload parses a new one, then swaps).
 */
#ifndef ALLOW_H
#define ALLOW_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ALLOW_MAX 256		/* rules in one list */
#define ALLOW_RULE_MAX 300	/* characters in one rule */

struct allow_rule;		/* allow_internal.h */

struct allow_list {
	struct allow_rule *rules;	/* n of them, malloc'ed */
	size_t n;
	int is_default;			/* allow_default: all but link-local */
};

/*
 * Parse RULES into l (overwritten: free what it held first).  Returns 0,
 * or -1 with a message naming the rule in err ("'10.0.0.0/33': prefix
 * longer than 32"; the caller puts "--allow: " or the file and line in
 * front) and l left empty (allowing nothing).  Refuses an empty text, an
 * empty rule, more than ALLOW_MAX rules, and every malformed rule.
 */
int allow_parse(const char *text, struct allow_list *l, char *err,
    size_t errlen);

/* The list without --allow: everything but link-local (see above).
 * Allocates nothing. */
void allow_default(struct allow_list *l);

/*
 * Is the destination address sa (AF_INET or AF_INET6; its own port is
 * not looked at), port allowed by l's address rules?  Returns 1 or 0.
 */
int allow_address(const struct allow_list *l, const struct sockaddr *sa,
    uint16_t port);

/*
 * Is host:port allowed by one of l's name rules?  1: dial the addresses
 * host resolves to without checking them.  0: check each address with
 * allow_address before dialling it.  Always 0 for an IP literal (see
 * allow_literal) and for what is not a valid host name.
 */
int allow_name(const struct allow_list *l, const char *host, uint16_t port);

/*
 * If host is an IP literal (see above), set *is_literal to 1 and return
 * allow_address's verdict on that address; otherwise set *is_literal to
 * 0 and return 0 (then ask allow_name).
 */
int allow_literal(const struct allow_list *l, const char *host,
    uint16_t port, int *is_literal);

/*
 * The rule set as text for log lines, canonical and always terminated:
 * "10.0.0.0/8:22,db.internal:5432,[fd00::/8]", or "default: any
 * destination but link-local (169.254.0.0/16, [fe80::/10])", or "no
 * rules".  What does not fit in len ends as whole rules and ",...".
 */
void allow_describe(const struct allow_list *l, char *buf, size_t len);

/* Free l's rules and leave it empty (allowing nothing). */
void allow_free(struct allow_list *l);

#endif
