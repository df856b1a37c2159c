/*
 * gen-cert: makes the key pairs the daemons need.
 *
 *   gen-cert x509 [-o DIR] [-d NAMES] [-i ADDRESSES] [--days N] [--force]
 *   gen-cert ed25519 [-o DIR] [-C COMMENT] [--force]
 *   gen-cert pubkey [-a FILE] [-C COMMENT]
 *
 * main() reads the subcommand (argv[1]) and its options, then hands over
 * to x509.c or ed25519.c.  Exit status: 0, 2 for a usage error (one line
 * naming the bad flag or value), 1 when writing the keys failed.
 */
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "gen-cert.h"
#include "log.h"
#include "opts.h"
#include "version.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char usage_x509[] =
    "gen-cert x509 [-o DIR] [-d NAMES] [-i ADDRESSES] [--days N] [--force]";
static const char usage_ed25519[] =
    "gen-cert ed25519 [-o DIR] [-C COMMENT] [--force]";
static const char usage_pubkey[] =
    "gen-cert pubkey [-a FILE] [-C COMMENT]";

struct subcommand {
	const char *name;
	const char *usage;
	const struct opt_spec *specs;
	size_t nspecs;
	int (*run)(const struct gen_options *);
};

/* gen-cert --help: the subcommands; each lists its own options. */
static void
print_help(void)
{
	printf("usage: %s\n       %s\n       %s\n\n", usage_x509, usage_ed25519,
	    usage_pubkey);
	printf("subcommands:\n"
	    "  x509      the relay's TLS certificate (self-signed, EC P-256) "
	    "and key:\n"
	    "            DIR/server.crt, DIR/server.key\n"
	    "  ed25519   an authentication key pair: DIR/auth, DIR/auth.pub (an\n"
	    "            OpenSSH line for the relay's authorized keys)\n"
	    "  pubkey    print the OpenSSH line of an existing private key\n"
	    "            (default " GEN_CERT_DIR_DEFAULT "/auth)\n"
	    "\n"
	    "DIR is %s unless -o says otherwise.  Existing files are kept "
	    "unless --force.\n"
	    "'gen-cert SUBCOMMAND --help' lists the options of each.\n",
	    GEN_CERT_DIR_DEFAULT);
}

int
main(int argc, char **argv)
{
	struct gen_options o = { GEN_CERT_DIR_DEFAULT, NULL, NULL,
	    GEN_CERT_DAYS_DEFAULT, 0, NULL, GEN_CERT_DIR_DEFAULT "/auth" };
	const struct opt_spec x509_specs[] = {
		{ 'o', "output", OPT_STRING, &o.dir, 0, 0, "DIR",
		    "output directory (default " GEN_CERT_DIR_DEFAULT ")" },
		{ 'd', "dns", OPT_STRING, &o.dns, 0, 0, "NAMES",
		    "DNS names to certify, comma-separated" },
		{ 'i', "ip", OPT_STRING, &o.ip, 0, 0, "ADDRESSES",
		    "IPv4/IPv6 addresses to certify, comma-separated" },
		{ 0, "days", OPT_UINT, &o.days, 1, GEN_CERT_DAYS_MAX, "N",
		    "validity in days (default 3650)" },
		{ 0, "force", OPT_FLAG, &o.force, 0, 0, NULL,
		    "replace existing files" },
	};
	const struct opt_spec ed25519_specs[] = {
		{ 'o', "output", OPT_STRING, &o.dir, 0, 0, "DIR",
		    "output directory (default " GEN_CERT_DIR_DEFAULT ")" },
		{ 'C', "comment", OPT_STRING, &o.comment, 0, 0, "COMMENT",
		    "the public line's comment (default user@host)" },
		{ 0, "force", OPT_FLAG, &o.force, 0, 0, NULL,
		    "replace existing files" },
	};
	const struct opt_spec pubkey_specs[] = {
		{ 'a', "auth-private-key", OPT_STRING, &o.key, 0, 0, "FILE",
		    "the private key (default " GEN_CERT_DIR_DEFAULT "/auth)" },
		{ 'C', "comment", OPT_STRING, &o.comment, 0, 0, "COMMENT",
		    "the line's comment (default user@host)" },
	};
	const struct subcommand subcommands[] = {
		{ "x509", usage_x509, x509_specs, NELEM(x509_specs),
		    x509_run },
		{ "ed25519", usage_ed25519, ed25519_specs,
		    NELEM(ed25519_specs), ed25519_run },
		{ "pubkey", usage_pubkey, pubkey_specs, NELEM(pubkey_specs),
		    pubkey_run },
	};
	const struct subcommand *sub = NULL;
	struct opts opts;
	char err[512];
	size_t i;
	int rc;

	log_init(GEN_CERT_PROGNAME, LOG_LEVEL_INFO);

	/* Without a subcommand only --help and --version make sense. */
	if (argc < 2) {
		log_warnx("missing subcommand: x509, ed25519 or pubkey (see --help)");
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		print_help();
		return 0;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
		version_print(stdout, GEN_CERT_PROGNAME);
		return 0;
	}
	for (i = 0; i < NELEM(subcommands); i++)
		if (strcmp(argv[1], subcommands[i].name) == 0)
			sub = &subcommands[i];
	if (sub == NULL) {
		if (argv[1][0] == '-')
			log_warnx("%s: the subcommand comes first: x509, "
			    "ed25519 or pubkey (see --help)", argv[1]);
		else
			log_warnx("unknown subcommand '%s': x509, ed25519 or "
			    "pubkey (see --help)", argv[1]);
		return EXIT_USAGE;
	}

	rc = opts_parse(&opts, sub->specs, sub->nspecs, argc, argv, 2,
	    GEN_CERT_PROGNAME, sub->usage, err, sizeof(err));
	if (rc == 0) {
		rc = sub->run(&o);
	} else if (rc == 1) {
		rc = 0;
	} else {
		log_warnx("%s", err);
		rc = EXIT_USAGE;
	}
	opts_free(&opts);
	return rc;
}
