/*
 * fuzz_allow: common/allow.c, the reverse-proxy's --allow list: the
 * parser, and the matchers on destinations the fuzzer picks.
 *
 * Input (cut at a NUL): the first line is RULES; each further line is a
 * destination "PORT HOST" (PORT decimal, taken modulo 65536), or a HOST
 * alone (port 443).  Each destination is judged by the list parsed, by
 * that list described and parsed again (the description is canonical: it
 * must parse, describe the same and judge the same), and by the default
 * list.  allow_literal must agree with allow_address on what inet_pton
 * reads; a literal is never a name; a name is judged the same in upper
 * case and with a trailing dot; port 0 is never allowed.
 */
#include "fuzz.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>

#include "allow.h"
#include "route.h"

/* Room for allow_describe of n rules, whole, and of the fixed texts. */
#define DESCRIBE_ROOM(n) (((n) + 1) * (ALLOW_RULE_MAX + 64))

/* The verdicts on one destination. */
struct verdict {
	int literal, is_literal, name;
};

static void
judge(const struct allow_list *l, const char *host, uint16_t port,
    struct verdict *v)
{
	v->literal = allow_literal(l, host, port, &v->is_literal);
	v->name = allow_name(l, host, port);
	FUZZ_CHECK(v->literal == 0 || v->literal == 1);
	FUZZ_CHECK(v->name == 0 || v->name == 1);
	FUZZ_CHECK(v->is_literal == 0 || v->is_literal == 1);
	/* Not a literal: no address verdict.  A literal: never a name. */
	FUZZ_CHECK(v->is_literal || v->literal == 0);
	FUZZ_CHECK(!v->is_literal || v->name == 0);
	if (port == 0)
		FUZZ_CHECK(v->literal == 0 && v->name == 0);
}

/* Is sa in 169.254.0.0/16 or fe80::/10 (or IPv4-mapped 169.254/16)? */
static int
link_local(const struct sockaddr_storage *ss)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	const uint8_t *a;

	if (ss->ss_family == AF_INET) {
		a = (const uint8_t *)&sin->sin_addr;
		return a[0] == 169 && a[1] == 254;
	}
	a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return 1;
	return a[12] == 169 && a[13] == 254 &&
	    (memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0 ||
	    memcmp(a, "\0\0\0\0\0\0\0\0\0\0\0\0", 12) == 0 ||
	    memcmp(a, "\0\x64\xff\x9b\0\0\0\0\0\0\0\0", 12) == 0);
}

/* One destination against l, l described and parsed again (l2, NULL if
 * its description was cut), and the default list. */
static void
check_destination(const struct allow_list *l, const struct allow_list *l2,
    const struct allow_list *def, const char *host, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	struct verdict v, w;
	char name[ROUTE_HOST_MAX + 2];
	size_t len = strlen(host), i;
	int pton = 0;

	judge(l, host, port, &v);
	if (l2 != NULL) {
		judge(l2, host, port, &w);
		FUZZ_CHECK(memcmp(&v, &w, sizeof(v)) == 0);
	}
	judge(def, host, port, &w);
	FUZZ_CHECK(w.name == 0 && w.is_literal == v.is_literal);

	/* What inet_pton reads is a literal, judged as its address. */
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		pton = 1;
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		pton = 1;
	}
	if (pton) {
		FUZZ_CHECK(v.is_literal);
		FUZZ_CHECK(allow_address(l, (struct sockaddr *)&ss, port) ==
		    v.literal);
		FUZZ_CHECK(allow_address(def, (struct sockaddr *)&ss, port) ==
		    (port != 0 && !link_local(&ss)));
		FUZZ_CHECK(w.literal == (port != 0 && !link_local(&ss)));
	}

	/* Names: case does not matter, nor one trailing dot. */
	if (v.is_literal || len == 0 || len > ROUTE_HOST_MAX ||
	    host[len - 1] == '.')
		return;
	for (i = 0; i < len; i++)
		name[i] = (char)toupper((unsigned char)host[i]);
	name[len] = '\0';
	judge(l, name, port, &w);
	FUZZ_CHECK(w.name == v.name);
	name[len] = '.';
	name[len + 1] = '\0';
	judge(l, name, port, &w);
	FUZZ_CHECK(w.name == v.name);
}

/* Described in a buffer of each size: terminated, inside it. */
static void
check_describe(const struct allow_list *l, char *buf)
{
	static const size_t sizes[] = { 1, 2, 4, 5, 9, 16, 40, 100, 301 };
	size_t i;

	allow_describe(l, buf, 0);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memset(buf, 'x', sizes[i]);
		allow_describe(l, buf, sizes[i]);
		FUZZ_CHECK(FUZZ_TERMINATED(buf, sizes[i]));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct allow_list l, l2, def;
	char err[1024], *text, *desc = NULL, *desc2 = NULL, *line, *next;
	char *sp, *host;
	unsigned long port;
	size_t room;
	int r, lit, again = 0;

	if ((text = fuzz_string(data, size)) == NULL)
		return 0;
	if ((next = strchr(text, '\n')) != NULL)
		*next++ = '\0';
	allow_default(&def);
	err[0] = '\0';
	r = allow_parse(text, &l, err, sizeof(err));
	room = DESCRIBE_ROOM(l.n);
	if ((desc = malloc(room)) == NULL || (desc2 = malloc(room)) == NULL) {
		allow_free(&l);
		goto done;
	}
	check_describe(&def, desc);
	FUZZ_CHECK(r == 0 || r == -1);
	if (r == -1) {
		FUZZ_CHECK(FUZZ_TERMINATED(err, sizeof(err)) && err[0] != '\0');
		/* Left empty: allows nothing. */
		FUZZ_CHECK(l.n == 0 && l.rules == NULL && !l.is_default);
	} else
		FUZZ_CHECK(l.n >= 1 && l.n <= ALLOW_MAX && !l.is_default);
	check_describe(&l, desc);

	/* The description, in full, is a list of the same rules. */
	allow_describe(&l, desc, room);
	FUZZ_CHECK(strlen(desc) < room - 1);
	if (r == 0) {
		FUZZ_CHECK(strstr(desc, "...") == NULL);
		FUZZ_CHECK(allow_parse(desc, &l2, err, sizeof(err)) == 0);
		again = 1;
		FUZZ_CHECK(l2.n == l.n);
		allow_describe(&l2, desc2, room);
		FUZZ_CHECK(strcmp(desc2, desc) == 0);
	}

	for (line = next; line != NULL; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		port = 443;
		host = line;
		if ((sp = strchr(line, ' ')) != NULL) {
			*sp = '\0';
			port = strtoul(line, NULL, 10) % 65536;
			host = sp + 1;
		}
		check_destination(&l, again ? &l2 : NULL, &def, host,
		    (uint16_t)port);
		if (r == -1) {
			FUZZ_CHECK(allow_name(&l, host, (uint16_t)port) == 0);
			FUZZ_CHECK(allow_literal(&l, host, (uint16_t)port,
			    &lit) == 0);
		}
	}
	if (again)
		allow_free(&l2);
	allow_free(&l);
	allow_free(&def);
done:
	free(desc);
	free(desc2);
	free(text);
	return 0;
}
