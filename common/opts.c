#include "opts.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "version.h"

#define CONFIG_MAX_BYTES (1024 * 1024)

/* Keep a copy of value for the life of o; NULL when the table is full. */
static char *
opts_keep(struct opts *o, const char *value)
{
	char *copy;

	if (o->nvalues == OPTS_MAX_VALUES)
		return NULL;
	if ((copy = strdup(value)) == NULL)
		return NULL;
	o->values[o->nvalues++] = copy;
	return copy;
}

static int
parse_bool(const char *v, int *out)
{
	static const char *yes[] = { "yes", "true", "on", "1" };
	static const char *no[] = { "no", "false", "off", "0" };
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/* Remember that dest's value came from origin (the last one wins). */
static void
origin_keep(struct opts *o, const void *dest, const char *origin)
{
	char *copy;
	size_t i;

	if ((copy = strdup(origin)) == NULL)
		return;		/* messages fall back to the option's name */
	for (i = 0; i < o->norigins; i++)
		if (o->origins[i].dest == dest) {
			free(o->origins[i].where);
			o->origins[i].where = copy;
			return;
		}
	if (o->norigins == OPTS_MAX_ORIGINS) {
		free(copy);
		return;
	}
	o->origins[o->norigins].dest = dest;
	o->origins[o->norigins].where = copy;
	o->norigins++;
}

const char *
opts_origin(const struct opts *o, const void *dest, const char *fallback)
{
	size_t i;

	for (i = 0; i < o->norigins; i++)
		if (o->origins[i].dest == dest)
			return o->origins[i].where;
	return fallback;
}

static int opt_store(struct opts *o, const struct opt_spec *spec,
    const char *value, const char *origin, char *err, size_t errlen);

/* Store value for spec; origin names where it came from, for messages. */
static int
opt_set(struct opts *o, const struct opt_spec *spec, const char *value,
    const char *origin, char *err, size_t errlen)
{
	if (opt_store(o, spec, value, origin, err, errlen) == -1)
		return -1;
	origin_keep(o, spec->dest, origin);
	return 0;
}

static int
opt_store(struct opts *o, const struct opt_spec *spec, const char *value,
    const char *origin, char *err, size_t errlen)
{
	unsigned long n, min, max;
	char *end;

	switch (spec->kind) {
	case OPT_FLAG:
		if (value == NULL) {
			*(int *)spec->dest = 1;
			return 0;
		}
		if (parse_bool(value, (int *)spec->dest) == -1) {
			snprintf(err, errlen, "%s: '%s' is not yes or no",
			    origin, value);
			return -1;
		}
		return 0;
	case OPT_STRING:
		if (value[0] == '\0') {
			snprintf(err, errlen, "%s: empty value", origin);
			return -1;
		}
		if ((*(const char **)spec->dest = opts_keep(o, value)) ==
		    NULL) {
			snprintf(err, errlen, "%s: too many option values",
			    origin);
			return -1;
		}
		return 0;
	case OPT_UINT:
	case OPT_PORT:
		min = spec->kind == OPT_PORT ? 1 : spec->min;
		max = spec->kind == OPT_PORT ? 65535 : spec->max;
		errno = 0;
		n = strtoul(value, &end, 10);
		if (!isdigit((unsigned char)value[0]) || *end != '\0' ||
		    errno != 0 || n < min || n > max) {
			snprintf(err, errlen, "%s: '%s' is not %s (%lu-%lu)",
			    origin, value, spec->kind == OPT_PORT ?
			    "a port number" : "a number in range", min, max);
			return -1;
		}
		*(unsigned long *)spec->dest = n;
		return 0;
	}
	snprintf(err, errlen, "%s: internal error: unknown option kind",
	    origin);
	return -1;
}

static const struct opt_spec *
find_long(const struct opt_spec *specs, size_t nspecs, const char *name)
{
	size_t i;

	for (i = 0; i < nspecs; i++)
		if (strcmp(specs[i].long_name, name) == 0)
			return &specs[i];
	return NULL;
}

static char *
trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

int
opts_apply_config_text(struct opts *o, const struct opt_spec *specs,
    size_t nspecs, char *text, const char *name, char *err, size_t errlen)
{
	char origin[512];
	char *line, *next, *key, *value, *eq;
	const struct opt_spec *spec;
	unsigned lineno = 0;

	for (line = text; line != NULL; line = next) {
		lineno++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		key = trim(line);
		if (key[0] == '\0' || key[0] == '#')
			continue;
		if ((eq = strchr(key, '=')) == NULL) {
			snprintf(err, errlen, "%s:%u: expected 'option = value'"
			    ", got '%.64s'", name, lineno, key);
			return -1;
		}
		*eq = '\0';
		key = trim(key);
		value = trim(eq + 1);
		snprintf(origin, sizeof(origin), "%s:%u: %s", name, lineno,
		    key);
		if ((spec = find_long(specs, nspecs, key)) == NULL) {
			snprintf(err, errlen, "%s:%u: unknown option '%.64s'",
			    name, lineno, key);
			return -1;
		}
		if (value[0] == '\0') {
			snprintf(err, errlen, "%s: missing value", origin);
			return -1;
		}
		if (opt_set(o, spec, value, origin, err, errlen) == -1)
			return -1;
	}
	return 0;
}

/* Read the whole config file into o->file_text and apply it. */
static int
apply_config_file(struct opts *o, const struct opt_spec *specs,
    size_t nspecs, const char *path, char *err, size_t errlen)
{
	FILE *f;
	size_t len;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "--config: %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if ((o->file_text = malloc(CONFIG_MAX_BYTES + 1)) == NULL) {
		snprintf(err, errlen, "--config: %s: out of memory", path);
		fclose(f);
		return -1;
	}
	len = fread(o->file_text, 1, CONFIG_MAX_BYTES + 1, f);
	if (ferror(f)) {
		snprintf(err, errlen, "--config: %s: read error", path);
		fclose(f);
		return -1;
	}
	fclose(f);
	if (len > CONFIG_MAX_BYTES) {
		snprintf(err, errlen, "--config: %s: larger than %d bytes",
		    path, CONFIG_MAX_BYTES);
		return -1;
	}
	if (memchr(o->file_text, '\0', len) != NULL) {
		snprintf(err, errlen, "--config: %s: not a text file", path);
		return -1;
	}
	o->file_text[len] = '\0';
	return opts_apply_config_text(o, specs, nspecs, o->file_text, path,
	    err, errlen);
}

static void
print_help(const struct opt_spec *specs, size_t nspecs, const char *usage)
{
	char left[64];
	size_t i;

	printf("usage: %s\n\noptions:\n", usage);
	for (i = 0; i < nspecs; i++) {
		const struct opt_spec *s = &specs[i];

		if (s->short_name)
			snprintf(left, sizeof(left), "-%c, --%s%s%s",
			    s->short_name, s->long_name, s->metavar ? " " : "",
			    s->metavar ? s->metavar : "");
		else
			snprintf(left, sizeof(left), "    --%s%s%s",
			    s->long_name, s->metavar ? " " : "",
			    s->metavar ? s->metavar : "");
		printf("  %-32s %s\n", left, s->help);
	}
	printf("  %-32s %s\n", "    --config FILE",
	    "read options from FILE (one 'long-option = value' a line)");
	printf("  %-32s %s\n", "-h, --help", "show this help and exit");
	printf("  %-32s %s\n", "-V, --version", "show the version and exit");
}

#define OPTS_MAX 64		/* option specs a program may have */
/* getopt_long's answer for --config: past every spec's (256 + index), so
 * that a program may use -C for an option of its own. */
#define OPT_CONFIG (256 + OPTS_MAX)

/* getopt_long's tables for specs, plus --config, --help, --version. */
static void
getopt_tables(const struct opt_spec *specs, size_t nspecs,
    struct option longopts[OPTS_MAX + 4], char shortopts[OPTS_MAX * 2 + 8])
{
	size_t nshort = 0, i;

	shortopts[nshort++] = ':';	/* report a missing argument as ':' */
	for (i = 0; i < nspecs; i++) {
		longopts[i].name = specs[i].long_name;
		longopts[i].has_arg = specs[i].kind == OPT_FLAG ?
		    no_argument : required_argument;
		longopts[i].flag = NULL;
		longopts[i].val = 256 + (int)i;
		if (specs[i].short_name) {
			shortopts[nshort++] = (char)specs[i].short_name;
			if (specs[i].kind != OPT_FLAG)
				shortopts[nshort++] = ':';
		}
	}
	longopts[nspecs] = (struct option){ "config", required_argument, NULL,
	    OPT_CONFIG };
	longopts[nspecs + 1] = (struct option){ "help", no_argument, NULL,
	    'h' };
	longopts[nspecs + 2] = (struct option){ "version", no_argument, NULL,
	    'V' };
	longopts[nspecs + 3] = (struct option){ NULL, 0, NULL, 0 };
	shortopts[nshort++] = 'h';
	shortopts[nshort++] = 'V';
	shortopts[nshort] = '\0';
}

/* getopt_long said ':' or '?': say which argument was wrong, and how. */
static void
getopt_error(int c, char **argv, char *err, size_t errlen)
{
	if (c == ':')
		snprintf(err, errlen, "%s: missing value", argv[optind - 1]);
	/* A known long flag given a value (--verbose=yes): getopt sets
	 * optopt to its val, not a character. */
	else if (optopt >= 256 || optopt == 'h' || optopt == 'V')
		snprintf(err, errlen, "%s: option takes no value (see --help)",
		    argv[optind - 1]);
	else if (optopt != 0)
		snprintf(err, errlen, "unknown option '-%c' (see --help)",
		    optopt);
	else
		snprintf(err, errlen, "unknown option '%s' (see --help)",
		    argv[optind - 1]);
}

/* The spec that getopt_long's answer c stands for, or NULL. */
static const struct opt_spec *
spec_of(int c, const struct opt_spec *specs, size_t nspecs)
{
	size_t i;

	if (c >= 256 && c < 256 + (int)nspecs)
		return &specs[c - 256];
	for (i = 0; i < nspecs; i++)
		if (specs[i].short_name == c)
			return &specs[i];
	return NULL;
}

int
opts_parse(struct opts *o, const struct opt_spec *specs, size_t nspecs,
    int argc, char **argv, int first, const char *progname,
    const char *usage, char *err, size_t errlen)
{
	struct option longopts[OPTS_MAX + 4];
	char shortopts[OPTS_MAX * 2 + 8];
	/* Command-line settings, applied after the config file. */
	struct { const struct opt_spec *spec; const char *value; } cmd[256];
	const struct opt_spec *spec;
	size_t ncmd = 0, i;
	const char *config = NULL;
	char origin[80];
	int c, idx;

	memset(o, 0, sizeof(*o));
	if (nspecs > OPTS_MAX) {
		snprintf(err, errlen, "internal error: too many options");
		return -1;
	}
	getopt_tables(specs, nspecs, longopts, shortopts);
	/* getopt keeps global state: parse argv[first - 1 ..] afresh. */
	optind = 0;
	opterr = 0;
	argc -= first - 1;
	argv += first - 1;
	while ((c = getopt_long(argc, argv, shortopts, longopts, &idx)) !=
	    -1) {
		switch (c) {
		case 'h':
			print_help(specs, nspecs, usage);
			return 1;
		case 'V':
			version_print(stdout, progname);
			return 1;
		case OPT_CONFIG:
			config = optarg;
			continue;
		case ':':
		case '?':
			getopt_error(c, argv, err, errlen);
			return -1;
		default:
			break;
		}
		if ((spec = spec_of(c, specs, nspecs)) == NULL ||
		    ncmd == sizeof(cmd) / sizeof(cmd[0])) {
			snprintf(err, errlen, "too many options");
			return -1;
		}
		cmd[ncmd].spec = spec;
		cmd[ncmd].value = spec->kind == OPT_FLAG ? NULL : optarg;
		ncmd++;
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s' (see --help)",
		    argv[optind]);
		return -1;
	}
	if (config != NULL &&
	    apply_config_file(o, specs, nspecs, config, err, errlen) == -1)
		return -1;
	for (i = 0; i < ncmd; i++) {
		snprintf(origin, sizeof(origin), "--%s",
		    cmd[i].spec->long_name);
		if (opt_set(o, cmd[i].spec, cmd[i].value, origin, err,
		    errlen) == -1)
			return -1;
	}
	return 0;
}

void
opts_free(struct opts *o)
{
	size_t i;

	if (o == NULL)
		return;
	for (i = 0; i < o->nvalues; i++)
		free(o->values[i]);
	o->nvalues = 0;
	for (i = 0; i < o->norigins; i++)
		free(o->origins[i].where);
	o->norigins = 0;
	free(o->file_text);
	o->file_text = NULL;
}
