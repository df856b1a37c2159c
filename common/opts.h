/*
 * opts: command-line and --config file options, shared by every program.
 *
 * A program describes its options in a table of struct opt_spec; opts_parse
 * reads argv (and the file named by --config, if any) and stores each value
 * where the table says.  The command line wins over the file.  -h/--help,
 * -V/--version and --config are handled here for every program.
 *
 * Config file: one "long-option = value" a line; blank lines and lines
 * starting with '#' are ignored; a flag takes yes/no, true/false, on/off
 * or 1/0.
 *
 * String values point into storage owned by struct opts; opts_free()
 * releases it, after which those strings must no longer be used.
 */
#ifndef OPTS_H
#define OPTS_H

#include <stddef.h>

enum opt_kind {
	OPT_FLAG,	/* int *: set to 1 (or 0 from a file's "no") */
	OPT_STRING,	/* const char **: the value */
	OPT_UINT,	/* unsigned long *: decimal within [min, max] */
	OPT_PORT,	/* unsigned long *: 1..65535 */
};

struct opt_spec {
	int short_name;		/* 0: long form only */
	const char *long_name;
	enum opt_kind kind;
	void *dest;
	unsigned long min, max;	/* OPT_UINT only */
	const char *metavar;	/* shown in --help; NULL for flags */
	const char *help;
};

#define OPTS_MAX_VALUES 128
#define OPTS_MAX_ORIGINS 64

struct opts_origin {
	const void *dest;		/* a spec's dest */
	char *where;			/* owned: "--allow", "FILE:3: allow" */
};

struct opts {
	char *values[OPTS_MAX_VALUES];	/* owned copies of string values */
	size_t nvalues;
	char *file_text;		/* owned text of the config file */
	struct opts_origin origins[OPTS_MAX_ORIGINS];
	size_t norigins;
};

/*
 * Parse argv[first..argc-1] against specs[0..nspecs-1].  usage is the
 * synopsis line printed by --help.  Returns 0 when the program should run,
 * 1 when --help or --version was printed (exit 0), -1 on a usage or
 * configuration error (a one-line message naming the flag, value or file
 * is in err; exit 2).  Positional arguments are refused.
 */
int opts_parse(struct opts *o, const struct opt_spec *specs, size_t nspecs,
    int argc, char **argv, int first, const char *progname,
    const char *usage, char *err, size_t errlen);

/*
 * Apply the text of a config file (name is used in messages).  Exposed for
 * the unit tests; opts_parse calls it for --config.  Returns 0 or -1 (err).
 * The text is modified in place and must outlive the parsed strings.
 */
int opts_apply_config_text(struct opts *o, const struct opt_spec *specs,
    size_t nspecs, char *text, const char *name, char *err, size_t errlen);

/*
 * Where the value stored at dest came from, for a message about it that
 * the program finds later (a rule inside --allow, say): "--allow" or
 * "FILE:LINE: allow".  fallback when it was not set (its default).
 */
const char *opts_origin(const struct opts *o, const void *dest,
    const char *fallback);

/* Release the storage behind string values.  opts_free(NULL) is a no-op. */
void opts_free(struct opts *o);

#endif
