/*
 * Unit tests for common/opts.c: command-line and --config file options.
 *
 * Read top to bottom: the table the tests use, the command line (forms,
 * then errors, then --help and --version), config text, and --config FILE
 * through opts_parse (a temporary file, removed after each test).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opts.h"
#include "version.h"

/* Fail with the message when err does not contain needle. */
#define assert_err_contains(err, needle) do {				\
	if (strstr((err), (needle)) == NULL)				\
		fail_msg("error \"%s\" does not contain \"%s\"",	\
		    (err), (needle));					\
} while (0)

/* The option table, as a program would declare it, and its values. */
static int verbose;
static const char *name;
static const char *host;
static unsigned long count;
static unsigned long port;

static const struct opt_spec specs[] = {
	{ 'v', "verbose", OPT_FLAG, &verbose, 0, 0, NULL, "say more" },
	{ 'n', "name", OPT_STRING, &name, 0, 0, "NAME", "a name" },
	{ 0, "host", OPT_STRING, &host, 0, 0, "HOST", "long form only" },
	{ 'c', "count", OPT_UINT, &count, 1, 100, "N", "between 1 and 100" },
	{ 'p', "port", OPT_PORT, &port, 0, 0, "PORT", "a port" },
};
#define NSPECS (sizeof(specs) / sizeof(specs[0]))

#define USAGE "prog [options]"

#define TEMP_TEMPLATE "/tmp/trp-test-opts-XXXXXX"

static struct opts o;
static char err[512];
static char config_path[sizeof(TEMP_TEMPLATE)];	/* "": none written */

/* Before each test: the program's defaults, a clean error. */
static int
set_defaults(void **state)
{
	(void)state;
	verbose = 0;
	name = "default";
	host = NULL;
	count = 5;
	port = 4433;
	err[0] = '\0';
	return 0;
}

/* After each test: what opts_parse kept is released, the file removed. */
static int
free_opts(void **state)
{
	(void)state;
	opts_free(&o);
	if (config_path[0] != '\0')
		unlink(config_path);
	config_path[0] = '\0';
	return 0;
}

/* opts_parse on "prog" and the NULL-terminated arguments after it. */
static int
parse(const char *arg, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)"prog";
	va_start(ap, arg);
	for (; arg != NULL; arg = va_arg(ap, const char *)) {
		assert_true(argc < 31);
		argv[argc++] = (char *)arg;
	}
	va_end(ap);
	argv[argc] = NULL;
	opts_free(&o);		/* a test may parse more than once */
	return opts_parse(&o, specs, NSPECS, argc, argv, 1, "prog", USAGE,
	    err, sizeof(err));
}

/* Run parse() on one argument with stdout captured into out. */
static int
parse_capturing_stdout(const char *arg, char *out, size_t outlen)
{
	FILE *tmp = tmpfile();
	int saved, rc;
	size_t n;

	assert_non_null(tmp);
	fflush(stdout);
	assert_true((saved = dup(STDOUT_FILENO)) != -1);
	assert_int_equal(dup2(fileno(tmp), STDOUT_FILENO), STDOUT_FILENO);
	rc = parse(arg, NULL);
	fflush(stdout);
	assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(out, 1, outlen - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
	return rc;
}

/* Apply config text (copied: it is modified in place) as "test.conf". */
static int
apply(const char *text)
{
	static char copy[1024];

	assert_true(strlen(text) < sizeof(copy));
	strcpy(copy, text);
	return opts_apply_config_text(&o, specs, NSPECS, copy, "test.conf",
	    err, sizeof(err));
}

/* Write text to a new temporary config file; returns its name. */
static const char *
write_config(const char *text)
{
	FILE *f;
	int fd;

	memcpy(config_path, TEMP_TEMPLATE, sizeof(TEMP_TEMPLATE));
	if ((fd = mkstemp(config_path)) == -1)
		fail_msg("mkstemp failed");
	assert_non_null(f = fdopen(fd, "w"));
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
	return config_path;
}

/* --- the command line --- */

static void
test_no_arguments_keeps_defaults(void **state)
{
	(void)state;
	assert_int_equal(parse(NULL), 0);
	assert_int_equal(verbose, 0);
	assert_string_equal(name, "default");
	assert_null(host);
	assert_int_equal(count, 5);
	assert_int_equal(port, 4433);
}

static void
test_short_forms(void **state)
{
	(void)state;
	assert_int_equal(parse("-v", "-n", "alpha", "-c", "7", "-p", "8080",
	    NULL), 0);
	assert_int_equal(verbose, 1);
	assert_string_equal(name, "alpha");
	assert_int_equal(count, 7);
	assert_int_equal(port, 8080);
}

static void
test_short_forms_attached_and_grouped(void **state)
{
	(void)state;
	assert_int_equal(parse("-vp8080", "-c100", NULL), 0);
	assert_int_equal(verbose, 1);
	assert_int_equal(port, 8080);
	assert_int_equal(count, 100);
}

static void
test_long_forms(void **state)
{
	(void)state;
	assert_int_equal(parse("--verbose", "--name", "alpha", "--count=1",
	    "--port=65535", "--host", "db.internal", NULL), 0);
	assert_int_equal(verbose, 1);
	assert_string_equal(name, "alpha");
	assert_string_equal(host, "db.internal");
	assert_int_equal(count, 1);
	assert_int_equal(port, 65535);
}

static void
test_last_value_wins(void **state)
{
	(void)state;
	assert_int_equal(parse("-p", "1000", "--port", "2000", NULL), 0);
	assert_int_equal(port, 2000);
}

static void
test_string_value_outlives_argv(void **state)
{
	char value[] = "alpha";
	char *argv[] = { (char *)"prog", (char *)"-n", value, NULL };

	(void)state;
	assert_int_equal(opts_parse(&o, specs, NSPECS, 3, argv, 1, "prog",
	    USAGE, err, sizeof(err)), 0);
	value[0] = 'X';			/* the caller reuses its buffer */
	assert_string_equal(name, "alpha");
}

static void
test_arguments_after_a_subcommand(void **state)
{
	char *argv[] = { (char *)"gen-cert", (char *)"x509", (char *)"-p",
	    (char *)"22", NULL };

	(void)state;
	assert_int_equal(opts_parse(&o, specs, NSPECS, 4, argv, 2, "prog",
	    USAGE, err, sizeof(err)), 0);
	assert_int_equal(port, 22);
}

static void
test_bad_port(void **state)
{
	(void)state;
	assert_int_equal(parse("--port", "0", NULL), -1);
	assert_err_contains(err, "--port: '0' is not a port number (1-65535)");
	assert_int_equal(parse("-p", "65536", NULL), -1);
	assert_err_contains(err, "--port: '65536' is not a port number");
	assert_int_equal(parse("--port", "http", NULL), -1);
	assert_err_contains(err, "--port: 'http'");
	assert_int_equal(parse("--port", "-1", NULL), -1);
	assert_err_contains(err, "--port: '-1'");
	assert_int_equal(parse("--port", "80 ", NULL), -1);
	assert_err_contains(err, "--port: '80 '");
	assert_int_equal(port, 4433);		/* never half-set */
}

static void
test_number_out_of_range(void **state)
{
	(void)state;
	assert_int_equal(parse("--count", "101", NULL), -1);
	assert_err_contains(err,
	    "--count: '101' is not a number in range (1-100)");
	assert_int_equal(parse("-c", "0", NULL), -1);
	assert_err_contains(err, "--count: '0'");
	assert_int_equal(parse("-c", "99999999999999999999999", NULL), -1);
	assert_err_contains(err, "--count: '99999999999999999999999'");
	assert_int_equal(count, 5);
}

static void
test_empty_string_value(void **state)
{
	(void)state;
	assert_int_equal(parse("--name", "", NULL), -1);
	assert_err_contains(err, "--name: empty value");
}

static void
test_unknown_option(void **state)
{
	(void)state;
	assert_int_equal(parse("--bogus", NULL), -1);
	assert_err_contains(err, "unknown option '--bogus'");
	assert_int_equal(parse("-z", NULL), -1);
	assert_err_contains(err, "unknown option '-z'");
	assert_int_equal(parse("-vz", NULL), -1);
	assert_err_contains(err, "unknown option '-z'");
}

static void
test_flag_given_a_value(void **state)
{
	(void)state;
	assert_int_equal(parse("--verbose=yes", NULL), -1);
	assert_err_contains(err, "--verbose=yes");
	assert_err_contains(err, "takes no value");
	assert_int_equal(parse("--help=1", NULL), -1);
	assert_err_contains(err, "--help=1");
}

static void
test_missing_value(void **state)
{
	(void)state;
	assert_int_equal(parse("--port", NULL), -1);
	assert_err_contains(err, "--port: missing value");
	assert_int_equal(parse("-v", "-n", NULL), -1);
	assert_err_contains(err, "-n: missing value");
	assert_int_equal(parse("--config", NULL), -1);
	assert_err_contains(err, "--config: missing value");
}

static void
test_stray_positional_argument(void **state)
{
	(void)state;
	assert_int_equal(parse("-v", "extra", NULL), -1);
	assert_err_contains(err, "unexpected argument 'extra'");
	/* Also before the options (getopt moves it to the end). */
	assert_int_equal(parse("extra", "-p", "22", NULL), -1);
	assert_err_contains(err, "unexpected argument 'extra'");
	assert_int_equal(parse("--", "-p", NULL), -1);
	assert_err_contains(err, "unexpected argument '-p'");
}

static void
test_help(void **state)
{
	char out[4096];

	(void)state;
	assert_int_equal(parse_capturing_stdout("--help", out, sizeof(out)),
	    1);
	assert_non_null(strstr(out, "usage: " USAGE "\n"));
	assert_non_null(strstr(out, "-p, --port PORT"));
	assert_non_null(strstr(out, "    --host HOST"));
	assert_non_null(strstr(out, "-v, --verbose "));
	assert_non_null(strstr(out, "--config FILE"));
	assert_int_equal(parse_capturing_stdout("-h", out, sizeof(out)), 1);
	assert_non_null(strstr(out, "usage: " USAGE "\n"));
}

static void
test_version(void **state)
{
	char out[256];

	(void)state;
	assert_int_equal(parse_capturing_stdout("--version", out, sizeof(out)),
	    1);
	/* The version and commit, then the libraries it runs with. */
	assert_memory_equal(out, "prog " TRP_VERSION " (commit ",
	    strlen("prog " TRP_VERSION " (commit "));
	assert_non_null(strstr(out, ")\nOpenSSL 3."));
	assert_non_null(strstr(out, ", libevent 2.1."));
	assert_non_null(strstr(out, ", libsodium "));
	assert_int_equal(parse_capturing_stdout("-V", out, sizeof(out)), 1);
	assert_memory_equal(out, "prog " TRP_VERSION " (commit ",
	    strlen("prog " TRP_VERSION " (commit "));
}

/* --- config text --- */

static void
test_config_text(void **state)
{
	(void)state;
	assert_int_equal(apply(
	    "# a comment\n"
	    "\n"
	    "   \n"
	    "verbose = yes\n"
	    "  # an indented comment\n"
	    "name=alpha beta\n"
	    "\tcount   =   9  \n"
	    "port= 2222\r\n"
	    "host =db.internal"), 0);	/* no newline at the end */
	assert_int_equal(verbose, 1);
	assert_string_equal(name, "alpha beta");
	assert_int_equal(count, 9);
	assert_int_equal(port, 2222);
	assert_string_equal(host, "db.internal");
}

static void
test_config_flag_yes_and_no(void **state)
{
	static const char *yes[] = { "yes", "true", "on", "1", "YES" };
	static const char *no[] = { "no", "false", "off", "0", "No" };
	char line[64];
	size_t i;

	(void)state;
	for (i = 0; i < 5; i++) {
		verbose = 0;
		snprintf(line, sizeof(line), "verbose = %s\n", yes[i]);
		assert_int_equal(apply(line), 0);
		assert_int_equal(verbose, 1);
		snprintf(line, sizeof(line), "verbose = %s\n", no[i]);
		assert_int_equal(apply(line), 0);
		assert_int_equal(verbose, 0);
	}
}

static void
test_config_flag_bad_value(void **state)
{
	(void)state;
	assert_int_equal(apply("verbose = maybe\n"), -1);
	assert_err_contains(err,
	    "test.conf:1: verbose: 'maybe' is not yes or no");
}

static void
test_config_unknown_option(void **state)
{
	(void)state;
	assert_int_equal(apply("name = a\n\nbogus = 1\n"), -1);
	assert_err_contains(err, "test.conf:3: unknown option 'bogus'");
}

static void
test_config_short_name_is_not_an_option(void **state)
{
	(void)state;
	assert_int_equal(apply("p = 22\n"), -1);
	assert_err_contains(err, "test.conf:1: unknown option 'p'");
}

static void
test_config_missing_equals(void **state)
{
	(void)state;
	assert_int_equal(apply("# comment\nverbose\n"), -1);
	assert_err_contains(err, "test.conf:2: expected 'option = value'");
	assert_err_contains(err, "'verbose'");
}

static void
test_config_missing_value(void **state)
{
	(void)state;
	assert_int_equal(apply("port =\n"), -1);
	assert_err_contains(err, "test.conf:1: port: missing value");
	assert_int_equal(apply("\n\nname =   \n"), -1);
	assert_err_contains(err, "test.conf:3: name: missing value");
}

static void
test_config_bad_value_names_the_line(void **state)
{
	(void)state;
	assert_int_equal(apply("port = 22\ncount = 500\n"), -1);
	assert_err_contains(err,
	    "test.conf:2: count: '500' is not a number in range (1-100)");
}

/* --- --config FILE through opts_parse --- */

static void
test_config_file(void **state)
{
	const char *path;

	(void)state;
	path = write_config("name = from-file\nport = 1111\nverbose = yes\n");
	assert_int_equal(parse("--config", path, NULL), 0);
	assert_string_equal(name, "from-file");
	assert_int_equal(port, 1111);
	assert_int_equal(verbose, 1);
	assert_int_equal(count, 5);		/* not in the file */
}

static void
test_config_file_command_line_wins(void **state)
{
	const char *path;

	(void)state;
	path = write_config("name = from-file\nport = 1111\ncount = 3\n");
	/* Before --config or after it, the command line wins. */
	assert_int_equal(parse("--port", "2222", "--config", path, "-n",
	    "from-argv", NULL), 0);
	assert_int_equal(port, 2222);
	assert_string_equal(name, "from-argv");
	assert_int_equal(count, 3);		/* only in the file */
}

/* Where each value came from, for messages the program makes later. */
static void
test_origin_names_flag_or_file_and_line(void **state)
{
	const char *path;
	char want[64];

	(void)state;
	path = write_config("# a comment\nname = from-file\n\nport = 1111\n");
	assert_int_equal(parse("--config", path, "--port", "2222", NULL), 0);
	snprintf(want, sizeof(want), "%s:2: name", path);
	assert_string_equal(opts_origin(&o, &name, "x"), want);
	/* The command line won for --port: its origin is the flag. */
	assert_string_equal(opts_origin(&o, &port, "x"), "--port");
	/* Not set anywhere: the fallback. */
	assert_string_equal(opts_origin(&o, &count, "--count"), "--count");
}

static void
test_config_file_error_names_file_and_line(void **state)
{
	const char *path;
	char want[64];

	(void)state;
	path = write_config("port = 22\n# two\nbogus = 1\n");
	assert_int_equal(parse("--config", path, NULL), -1);
	snprintf(want, sizeof(want), "%s:3: unknown option 'bogus'", path);
	assert_err_contains(err, want);
}

/* A program's own -C (gen-cert's --comment) is its option, not --config. */
static void
test_short_c_is_the_programs_own(void **state)
{
	const char *comment = NULL;
	const struct opt_spec own[] = {
		{ 'C', "comment", OPT_STRING, &comment, 0, 0, "TEXT", "a comment" },
	};
	char *argv[] = { "prog", "-C", "hello", NULL };

	(void)state;
	assert_int_equal(opts_parse(&o, own, 1, 3, argv, 1, "prog", USAGE, err,
	    sizeof(err)), 0);
	assert_non_null(comment);
	assert_string_equal(comment, "hello");
}

static void
test_config_file_missing(void **state)
{
	(void)state;
	assert_int_equal(parse("--config", "/nonexistent/trp.conf", NULL), -1);
	assert_err_contains(err, "--config: /nonexistent/trp.conf");
	assert_err_contains(err, "No such file");
}

static void
test_config_file_not_text(void **state)
{
	const char *path;
	FILE *f;

	(void)state;
	path = write_config("");
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(fwrite("port = 22\n\0\1", 1, 12, f), 12);
	fclose(f);
	assert_int_equal(parse("--config", path, NULL), -1);
	assert_err_contains(err, "not a text file");
}

static void
test_free_twice_and_null(void **state)
{
	(void)state;
	assert_int_equal(parse("-n", "alpha", NULL), 0);
	assert_int_equal(o.nvalues, 1);
	opts_free(&o);
	assert_int_equal(o.nvalues, 0);
	assert_null(o.file_text);
	opts_free(&o);
	opts_free(NULL);
}

/* Every test starts from the defaults and frees what it parsed. */
#define TEST(f) cmocka_unit_test_setup_teardown(f, set_defaults, free_opts)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_no_arguments_keeps_defaults),
		TEST(test_short_forms),
		TEST(test_short_forms_attached_and_grouped),
		TEST(test_long_forms),
		TEST(test_last_value_wins),
		TEST(test_string_value_outlives_argv),
		TEST(test_arguments_after_a_subcommand),
		TEST(test_bad_port),
		TEST(test_number_out_of_range),
		TEST(test_empty_string_value),
		TEST(test_unknown_option),
		TEST(test_flag_given_a_value),
		TEST(test_missing_value),
		TEST(test_stray_positional_argument),
		TEST(test_help),
		TEST(test_version),
		TEST(test_config_text),
		TEST(test_config_flag_yes_and_no),
		TEST(test_config_flag_bad_value),
		TEST(test_config_unknown_option),
		TEST(test_config_short_name_is_not_an_option),
		TEST(test_config_missing_equals),
		TEST(test_config_missing_value),
		TEST(test_config_bad_value_names_the_line),
		TEST(test_config_file),
		TEST(test_config_file_command_line_wins),
		TEST(test_config_file_error_names_file_and_line),
		TEST(test_origin_names_flag_or_file_and_line),
		TEST(test_short_c_is_the_programs_own),
		TEST(test_config_file_missing),
		TEST(test_config_file_not_text),
		TEST(test_free_twice_and_null),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
