/*
 * gen-cert: makes the key pairs the daemons need.
 *
 * One header for the whole program: the options every subcommand reads,
 * then the functions of each file.
 *
 *   main.c     the subcommand and its options
 *   output.c   the files a run writes into DIR: all of them or none
 *   x509.c     DIR/server.crt and DIR/server.key, the relay's TLS identity
 *   ed25519.c  DIR/auth and DIR/auth.pub, the authentication key pair,
 *              and the public line of an existing key (pubkey)
 */
#ifndef GEN_CERT_H
#define GEN_CERT_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#define GEN_CERT_PROGNAME "gen-cert"
#define GEN_CERT_DIR_DEFAULT "cert"
#define GEN_CERT_DAYS_DEFAULT 3650
#define GEN_CERT_DAYS_MAX 36500

/* What the command line asked for.  Strings are owned by struct opts. */
struct gen_options {
	const char *dir;
	const char *dns;	/* comma-separated DNS names, or NULL */
	const char *ip;		/* comma-separated addresses, or NULL */
	unsigned long days;
	int force;
	const char *comment;	/* ed25519, pubkey: -C, or NULL: user@host */
	const char *key;	/* pubkey: -a, the private key file */
};

/* output.c */

#define OUTPUT_FILES_MAX 2

struct output_file {
	char path[PATH_MAX];
	char tmp[PATH_MAX];	/* under force: written here, renamed to path */
	mode_t mode;
	FILE *f;		/* open between output_open and output_close */
	int created;		/* ours: removed again by output_abort */
	int written;		/* closed after a successful write */
	char buf[4096];		/* f's buffer, wiped: it held a key */
};

struct output {
	const char *dir;
	int force;
	int made_dir;		/* dir was made by us: removed on abort */
	size_t n;
	struct output_file file[OUTPUT_FILES_MAX];
};

/* Start an empty set of files to write into dir. */
void output_init(struct output *out, const char *dir, int force);

/*
 * Add dir/name, to be created with mode, as file number out->n.  Returns
 * 0, or -1 (logged) when the path is too long.
 */
int output_add(struct output *out, const char *name, mode_t mode);

/*
 * Make dir if it is missing (its parent must exist), then look at every
 * file: without force, any that exists is a refusal.  Returns 0 or -1
 * (logged; call output_abort).
 */
int output_prepare(struct output *out);

/*
 * Create file i with its mode and return a stream for it, or NULL
 * (logged).  Under force it is created beside the old file under a
 * temporary name, and the old file stays until the run's last close.
 */
FILE *output_open(struct output *out, size_t i);

/*
 * Flush, sync and close file i.  When it is the last of the run to be
 * written, put them all in place (under force, rename each over its old
 * file) and sync dir.  Returns 0 or -1 (logged).
 */
int output_close(struct output *out, size_t i);

/* The path of file i. */
const char *output_path(const struct output *out, size_t i);

/*
 * After a failure: close what is open, remove every file this run
 * created and has not put in place, and dir if it made it.  Safe at any
 * point after output_init.
 */
void output_abort(struct output *out);

/* x509.c */

/*
 * Write DIR/server.key and a self-signed certificate for it, DIR/server.crt.
 * Returns the exit status: 0, EXIT_USAGE for a bad --dns or --ip value,
 * EXIT_RUNTIME for any other failure (each logged).
 */
int x509_run(const struct gen_options *o);

/* ed25519.c */

/*
 * Write a new ed25519 key pair as DIR/auth (PKCS#8 PEM, 0600) and
 * DIR/auth.pub (one OpenSSH line, "ssh-ed25519 BASE64 COMMENT", which the
 * relay's authorized keys and ssh-keygen read).  Returns the exit status:
 * 0, EXIT_USAGE for a bad -C, or EXIT_RUNTIME (logged).
 */
int ed25519_run(const struct gen_options *o);

/*
 * Print the OpenSSH public line of the private key file o->key (for the
 * relay's authorized keys).  Returns the exit status: 0, EXIT_USAGE when
 * the file cannot be used or -C is bad (one line naming it).
 */
int pubkey_run(const struct gen_options *o);

#endif
