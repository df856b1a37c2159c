/*
 * authkeys_check: what a key loaded from the authorized-keys file allows
 * (authkey_check: role, group, source), the verdict as text, and the
 * key's options as text for log lines.
 */
#include "authkeys.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int
source_allowed(const struct authkey *k, const struct sockaddr *source)
{
	size_t i;

	if (k->nfrom == 0)
		return 1;
	for (i = 0; i < k->nfrom; i++)
		if (cidr_match(&k->from[i], source))
			return 1;
	return 0;
}

static int
group_allowed(const struct authkey *k, uint32_t group)
{
	size_t i;

	if (k->ngroups == 0)
		return 1;
	for (i = 0; i < k->ngroups; i++)
		if (group >= k->groups[i].lo && group <= k->groups[i].hi)
			return 1;
	return 0;
}

enum authkey_verdict
authkey_check(const struct authkey *k, uint8_t role, uint32_t group,
    const struct sockaddr *source)
{
	if ((role != ROLE_ENTRY && role != ROLE_REVERSE) ||
	    (k->roles & (1u << role)) == 0)
		return AUTHKEY_ROLE;
	if (!group_allowed(k, group))
		return AUTHKEY_GROUP;
	if (!source_allowed(k, source))
		return AUTHKEY_SOURCE;
	return AUTHKEY_OK;
}

const char *
authkey_verdict_text(enum authkey_verdict v)
{
	switch (v) {
	case AUTHKEY_OK:
		return "ok";
	case AUTHKEY_ROLE:
		return "role not allowed for this key";
	case AUTHKEY_GROUP:
		return "group not allowed for this key";
	case AUTHKEY_SOURCE:
		return "source address not allowed for this key";
	}
	return "unknown verdict";
}

/* A text being written into a fixed buffer; cut records that it did not
 * fit. */
struct out {
	char *buf;
	size_t len, used;
	int cut;
};

static void out_add(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
out_add(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->cut)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->used, o->len - o->used, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->len - o->used) {
		o->cut = 1;
		return;
	}
	o->used += (size_t)n;
}

void
authkey_describe(const struct authkey *k, char *buf, size_t len)
{
	struct out o = { buf, len, 0, 0 };
	char net[CIDR_TEXT_MAX];
	const char *sep = "";
	size_t i;

	if (len == 0)
		return;
	buf[0] = '\0';
	if (k->roles != AUTHKEY_ROLES_ALL) {
		out_add(&o, "role=%s", k->roles == 1u << ROLE_ENTRY ?
		    "entry-point" : k->roles == 1u << ROLE_REVERSE ?
		    "reverse-proxy" : "none");
		sep = " ";
	}
	for (i = 0; i < k->ngroups; i++) {
		out_add(&o, "%s", i == 0 ? sep : ",");
		if (i == 0)
			out_add(&o, "groups=");
		if (k->groups[i].lo == k->groups[i].hi)
			out_add(&o, "%lu", (unsigned long)k->groups[i].lo);
		else
			out_add(&o, "%lu-%lu", (unsigned long)k->groups[i].lo,
			    (unsigned long)k->groups[i].hi);
		sep = " ";
	}
	for (i = 0; i < k->nfrom; i++) {
		out_add(&o, "%s", i == 0 ? sep : ",");
		if (i == 0)
			out_add(&o, "from=");
		cidr_format(&k->from[i], net, sizeof(net));
		out_add(&o, "%s", net);
		sep = " ";
	}
	if (k->max_channels > 0)
		out_add(&o, "%smax-channels=%u", sep, k->max_channels);
	if (o.used == 0 && !o.cut)
		out_add(&o, "no restriction");
	/* Cut: vsnprintf has filled buf; its end says so. */
	if (o.cut && len >= 4)
		memcpy(buf + len - 4, "...", 4);
}
