/*
 * fuzz_authkeys: common/authkeys.c's authorized-keys text
 * (authkeys_parse_text), with the options of authkeys_options.c and the
 * checks and descriptions of authkeys_check.c.
 *
 * The input is the file's text (cut at a NUL: authkeys_load refuses a
 * file with one before it is parsed).  A set that loads must hold distinct
 * keys, each found by authkeys_find, allowing what its line says (its own
 * role, first group and first network) and describing itself in any
 * buffer; and written out again as key lines with the same options, it
 * must load into the same keys.
 */
#include "fuzz.h"

#include <netinet/in.h>

#include "authkeys.h"

/* Room for one key line as write_key writes it. */
#define KEY_LINE_MAX (AUTHKEYS_LINE_MAX + 1)

/* The address of network c (its first), as a socket address. */
static void
net_address(const struct cidr *c, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (c->family == AF_INET) {
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, c->addr, 4);
	} else {
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, c->addr, 16);
	}
}

/* Is sa an IPv4-mapped IPv6 address? */
static int
is_mapped(const struct sockaddr *sa)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

	return sa != NULL && sa->sa_family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr);
}

static void
check_key(const struct authkeys *set, const struct authkey *k)
{
	static const size_t sizes[] = { 0, 1, 3, 4, 5, 17, 64, 512 };
	char buf[512];
	struct sockaddr_storage ss;
	const struct sockaddr *src = NULL;
	uint32_t group;
	size_t i;
	uint8_t role;

	FUZZ_CHECK(authkeys_find(set, k->pk) == k);
	FUZZ_CHECK(strncmp(k->fingerprint, "SHA256:", 7) == 0);
	FUZZ_CHECK(k->roles != 0 && (k->roles & ~AUTHKEY_ROLES_ALL) == 0);
	FUZZ_CHECK(k->ngroups <= AUTHKEY_GROUPS_MAX);
	FUZZ_CHECK(k->nfrom <= AUTHKEY_FROM_MAX);
	FUZZ_CHECK(k->max_channels <= AUTHKEY_MAX_CHANNELS_MAX);
	for (i = 0; i < k->ngroups; i++)
		FUZZ_CHECK(k->groups[i].lo <= k->groups[i].hi);

	/* What its line allows, it allows. */
	role = k->roles & (1u << ROLE_ENTRY) ? ROLE_ENTRY : ROLE_REVERSE;
	group = k->ngroups > 0 ? k->groups[0].hi : 12345;
	if (k->nfrom > 0) {
		net_address(&k->from[0], &ss);
		src = (const struct sockaddr *)&ss;
	}
	/* (Except an IPv6 network whose first address is IPv4-mapped: such
	 * a source is judged as IPv4, by the IPv4 networks only; cidr.h.) */
	if (!is_mapped(src))
		FUZZ_CHECK(authkey_check(k, role, group, src) == AUTHKEY_OK);
	FUZZ_CHECK(authkey_check(k, 0, group, src) == AUTHKEY_ROLE);
	FUZZ_CHECK(authkey_check(k, 3, group, src) == AUTHKEY_ROLE);
	if (k->nfrom > 0)
		FUZZ_CHECK(authkey_check(k, role, group, NULL) ==
		    AUTHKEY_SOURCE);
	if (k->ngroups > 0 && k->groups[0].lo > 0 && k->ngroups == 1)
		FUZZ_CHECK(authkey_check(k, role, k->groups[0].lo - 1, src) ==
		    AUTHKEY_GROUP);
	FUZZ_CHECK(authkey_verdict_text(authkey_check(k, ROLE_REVERSE, 0,
	    src)) != NULL);

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memset(buf, 'x', sizeof(buf));
		authkey_describe(k, buf, sizes[i]);
		if (sizes[i] > 0)
			FUZZ_CHECK(FUZZ_TERMINATED(buf, sizes[i]));
		authkey_label(k, buf, sizes[i]);
		if (sizes[i] > 0)
			FUZZ_CHECK(FUZZ_TERMINATED(buf, sizes[i]));
	}
}

/* k as a line of the file, with the same options, into buf (len
 * KEY_LINE_MAX: 32 groups, 32 networks, a key and a comment fit). */
static void
write_key(const struct authkey *k, char *buf, size_t len)
{
	char net[CIDR_TEXT_MAX];
	const char *sep = "";
	size_t used = 0, i;

	buf[0] = '\0';
#define ADD(...) used += (size_t)snprintf(buf + used, len - used, __VA_ARGS__)
	if (k->roles != AUTHKEY_ROLES_ALL) {
		ADD("role=\"%s\"", k->roles == 1u << ROLE_ENTRY ?
		    "entry-point" : "reverse-proxy");
		sep = ",";
	}
	for (i = 0; i < k->ngroups; i++) {
		ADD("%s", i == 0 ? sep : ",");
		if (i == 0)
			ADD("GROUPS=\"");
		if (k->groups[i].lo == k->groups[i].hi)
			ADD("%lu", (unsigned long)k->groups[i].lo);
		else
			ADD("%lu-%lu", (unsigned long)k->groups[i].lo,
			    (unsigned long)k->groups[i].hi);
		sep = ",";
	}
	if (k->ngroups > 0)
		ADD("\"");
	for (i = 0; i < k->nfrom; i++) {
		ADD("%s", i == 0 ? sep : ",");
		if (i == 0)
			ADD("from=\"");
		cidr_format(&k->from[i], net, sizeof(net));
		ADD("%s", net);
		sep = ",";
	}
	if (k->nfrom > 0)
		ADD("\"");
	if (k->max_channels > 0)
		ADD("%smax-channels=\"%u\"", sep, k->max_channels);
	if (used > 0)
		ADD(" ");
#undef ADD
	FUZZ_CHECK(used < len);
	FUZZ_CHECK(sshkey_format(k->pk, k->comment, buf + used,
	    len - used) == 0);
}

static void
check_same(const struct authkey *a, const struct authkey *b)
{
	FUZZ_CHECK(memcmp(a->pk, b->pk, sizeof(a->pk)) == 0);
	FUZZ_CHECK(strcmp(a->comment, b->comment) == 0);
	FUZZ_CHECK(strcmp(a->fingerprint, b->fingerprint) == 0);
	FUZZ_CHECK(a->roles == b->roles);
	FUZZ_CHECK(a->ngroups == b->ngroups && memcmp(a->groups, b->groups,
	    a->ngroups * sizeof(a->groups[0])) == 0);
	FUZZ_CHECK(a->nfrom == b->nfrom && memcmp(a->from, b->from,
	    a->nfrom * sizeof(a->from[0])) == 0);
	FUZZ_CHECK(a->max_channels == b->max_channels);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct authkeys set, again;
	char err[1024], *text, *out = NULL;
	size_t i, used;
	int r;

	if ((text = fuzz_string(data, size)) == NULL)
		return 0;
	err[0] = '\0';
	r = authkeys_parse_text(text, "fuzz", &set, err, sizeof(err));
	FUZZ_CHECK(r == 0 || r == -1);
	if (r == -1) {
		FUZZ_CHECK(FUZZ_TERMINATED(err, sizeof(err)) && err[0] != '\0');
		FUZZ_CHECK(set.n == 0 && set.keys == NULL);
		goto done;
	}
	FUZZ_CHECK(set.n >= 1 && set.n <= AUTH_KEYS_MAX);
	for (i = 0; i < set.n; i++)
		check_key(&set, &set.keys[i]);

	/* Written out again as key lines, the same keys. */
	if ((out = malloc(set.n * KEY_LINE_MAX + 1)) == NULL)
		goto done;
	for (i = 0, used = 0; i < set.n; i++) {
		write_key(&set.keys[i], out + used, KEY_LINE_MAX);
		used += strlen(out + used);
		out[used++] = '\n';
	}
	out[used] = '\0';
	FUZZ_CHECK(authkeys_parse_text(out, "fuzz", &again, err,
	    sizeof(err)) == 0);
	FUZZ_CHECK(again.n == set.n);
	for (i = 0; i < set.n; i++) {
		check_same(&set.keys[i], &again.keys[i]);
		FUZZ_CHECK(again.keys[i].line == i + 1);
	}
	authkeys_free(&again);
done:
	authkeys_free(&set);
	free(out);
	free(text);
	return 0;
}
