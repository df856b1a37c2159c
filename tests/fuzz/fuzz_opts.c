/*
 * fuzz_opts: common/opts.c's config file text (opts_apply_config_text),
 * against a table with options of every kind.
 *
 * The input is the file's text (cut at a NUL: a config file with one is
 * refused before it is parsed).  Every value stored must be within its
 * option's limits and say where it came from; and when the text applies,
 * the values written out again as "option = value" lines must apply to
 * the same values.
 */
#include "fuzz.h"

#include <limits.h>

#include "opts.h"

#define NAME "fuzz.conf"
#define UNSET 7777777UL		/* no option of the table takes it */

struct values {
	int flag, flag2;
	const char *string, *string2;
	unsigned long number, port, wide;
};

/* The table, storing into v. */
static size_t
make_specs(struct opt_spec *specs, struct values *v)
{
	const struct opt_spec table[] = {
		{ 'f', "flag", OPT_FLAG, &v->flag, 0, 0, NULL, "a flag" },
		{ 0, "no-short", OPT_FLAG, &v->flag2, 0, 0, NULL, "a flag" },
		{ 's', "string", OPT_STRING, &v->string, 0, 0, "S", "text" },
		{ 0, "allow", OPT_STRING, &v->string2, 0, 0, "RULES", "text" },
		{ 'n', "number", OPT_UINT, &v->number, 1, 100, "N", "1-100" },
		{ 'p', "port", OPT_PORT, &v->port, 0, 0, "PORT", "a port" },
		{ 0, "wide", OPT_UINT, &v->wide, 0, ULONG_MAX, "N", "any" },
	};

	memcpy(specs, table, sizeof(table));
	v->flag = v->flag2 = -1;
	v->string = v->string2 = NULL;
	v->number = v->port = v->wide = UNSET;
	return sizeof(table) / sizeof(table[0]);
}

/* Was dest set, and if so, does its origin say the file and a line? */
static void
check_origin(const struct opts *o, const void *dest, int set)
{
	const char *where = opts_origin(o, dest, NULL);

	if (!set)
		return;
	/* (Past OPTS_MAX_ORIGINS options an origin may be missing.) */
	if (where != NULL)
		FUZZ_CHECK(strncmp(where, NAME ":", strlen(NAME ":")) == 0);
}

static void
check_values(const struct opts *o, const struct values *v)
{
	FUZZ_CHECK(v->flag >= -1 && v->flag <= 1);
	FUZZ_CHECK(v->flag2 >= -1 && v->flag2 <= 1);
	FUZZ_CHECK(v->string == NULL || v->string[0] != '\0');
	FUZZ_CHECK(v->string2 == NULL || v->string2[0] != '\0');
	FUZZ_CHECK(v->number == UNSET ||
	    (v->number >= 1 && v->number <= 100));
	FUZZ_CHECK(v->port == UNSET || (v->port >= 1 && v->port <= 65535));
	check_origin(o, &v->flag, v->flag != -1);
	check_origin(o, &v->flag2, v->flag2 != -1);
	check_origin(o, &v->string, v->string != NULL);
	check_origin(o, &v->string2, v->string2 != NULL);
	check_origin(o, &v->number, v->number != UNSET);
	check_origin(o, &v->port, v->port != UNSET);
	check_origin(o, &v->wide, v->wide != UNSET);
}

/* v as a config file, into buf: 256 bytes and the strings are room. */
static void
write_config(const struct values *v, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
#define ADD(...) used += (size_t)snprintf(buf + used, len - used, __VA_ARGS__)
	if (v->flag != -1)
		ADD("flag = %s\n", v->flag ? "yes" : "no");
	if (v->flag2 != -1)
		ADD("  no-short=%s\n", v->flag2 ? "On" : "Off");
	if (v->string != NULL)
		ADD("string = %s\n", v->string);
	if (v->string2 != NULL)
		ADD("# a comment\n\nallow =\t%s\r\n", v->string2);
	if (v->number != UNSET)
		ADD("number = %lu\n", v->number);
	if (v->port != UNSET)
		ADD("port = %lu\n", v->port);
	if (v->wide != UNSET)
		ADD("wide = %lu", v->wide);
#undef ADD
	FUZZ_CHECK(used < len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct opt_spec specs[8], specs2[8];
	struct values v, v2;
	struct opts o, o2;
	char err[1024], *text, *again = NULL;
	size_t nspecs, len;
	int r;

	if ((text = fuzz_string(data, size)) == NULL)
		return 0;
	nspecs = make_specs(specs, &v);
	memset(&o, 0, sizeof(o));
	err[0] = '\0';
	r = opts_apply_config_text(&o, specs, nspecs, text, NAME, err,
	    sizeof(err));
	FUZZ_CHECK(r == 0 || r == -1);
	if (r == -1)
		FUZZ_CHECK(FUZZ_TERMINATED(err, sizeof(err)) && err[0] != '\0');
	check_values(&o, &v);
	if (r == -1)
		goto done;

	/* Written out again, the values read back as themselves. */
	len = 256 + (v.string != NULL ? strlen(v.string) : 0) +
	    (v.string2 != NULL ? strlen(v.string2) : 0);
	if ((again = malloc(len)) == NULL)
		goto done;
	write_config(&v, again, len);
	(void)make_specs(specs2, &v2);
	memset(&o2, 0, sizeof(o2));
	FUZZ_CHECK(opts_apply_config_text(&o2, specs2, nspecs, again, NAME,
	    err, sizeof(err)) == 0);
	FUZZ_CHECK(v2.flag == v.flag && v2.flag2 == v.flag2);
	FUZZ_CHECK((v2.string == NULL) == (v.string == NULL));
	FUZZ_CHECK(v.string == NULL || strcmp(v2.string, v.string) == 0);
	FUZZ_CHECK((v2.string2 == NULL) == (v.string2 == NULL));
	FUZZ_CHECK(v.string2 == NULL || strcmp(v2.string2, v.string2) == 0);
	FUZZ_CHECK(v2.number == v.number && v2.port == v.port &&
	    v2.wide == v.wide);
	check_values(&o2, &v2);
	opts_free(&o2);
done:
	opts_free(&o);
	free(again);
	free(text);
	return 0;
}
