/*
 * allow_internal: what allow.c (judging a destination by the rules, the
 * default list, describing a list) and allow_parse.c (the text of --allow
 * RULES into rules) share.  Not for use outside those two files.
 */
#ifndef ALLOW_INTERNAL_H
#define ALLOW_INTERNAL_H

#include <stdint.h>
#include <sys/socket.h>

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

/* allow.c */
/* Is host an IP literal (see allow.h)?  Fills ss (port 0): 1, else 0. */
int literal_parse(const char *host, struct sockaddr_storage *ss);

#endif
