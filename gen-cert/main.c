/*
 * gen-cert: makes the key pairs the daemons need.
 *
 *   gen-cert x509 [-o DIR] [-d NAMES] [-i IPS] [--days N] [--force]
 *       DIR/server.crt, DIR/server.key: a self-signed EC P-256 certificate
 *       naming the given DNS names and IP addresses (the relay's TLS key).
 *   gen-cert ed25519 [-o DIR] [--force]
 *       DIR/auth (private, 0600) and DIR/auth.pub: the authentication key.
 *
 * Private key files are created 0600 with O_EXCL; nothing is overwritten
 * unless --force is given.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "auth.h"
#include "daemon.h"
#include "log.h"
#include "opts.h"
#include "route.h"

#define PROGNAME "gen-cert"
#define SAN_MAX 32

struct gen_options {
	const char *dir;
	const char *dns;
	const char *ip;
	unsigned long days;
	int force;
};

/* Paths of the files being written, removed again if anything fails. */
static char *written[2];

static void
usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", PROGNAME);
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(EXIT_USAGE);
}

/* Make dir (one level) if it does not exist.  Returns 0 or -1. */
static int
make_dir(const char *dir)
{
	struct stat st;

	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			log_warnx("%s exists and is not a directory", dir);
			return -1;
		}
		return 0;
	}
	if (mkdir(dir, 0755) == -1) {
		log_warn("%s", dir);
		return -1;
	}
	return 0;
}

/* Refuse to replace path unless --force.  Returns 0 or -1. */
static int
check_free(const char *path, int force)
{
	if (access(path, F_OK) == 0 && !force) {
		log_warnx("%s exists (use --force to replace it)", path);
		return -1;
	}
	return 0;
}

/*
 * Open path for writing, created with mode (0600 for private keys: never
 * readable by others, not even for a moment).  Returns a stream or NULL.
 */
static FILE *
create_file(const char *path, mode_t mode, int slot)
{
	FILE *f;
	int fd;

	if (unlink(path) == -1 && errno != ENOENT) {
		log_warn("%s", path);
		return NULL;
	}
	if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)) ==
	    -1) {
		log_warn("%s", path);
		return NULL;
	}
	if ((written[slot] = strdup(path)) == NULL || (f = fdopen(fd, "w")) ==
	    NULL) {
		log_warn("%s", path);
		close(fd);
		return NULL;
	}
	return f;
}

/* Close f, reporting a write error.  Returns 0 or -1. */
static int
close_file(FILE *f, const char *path)
{
	if (ferror(f) || fclose(f) == EOF) {
		log_warn("%s: write", path);
		return -1;
	}
	return 0;
}

/* Remove whatever was written (after a failure). */
static void
remove_written(void)
{
	size_t i;

	for (i = 0; i < 2; i++) {
		if (written[i] != NULL)
			(void)unlink(written[i]);
		free(written[i]);
		written[i] = NULL;
	}
}

static void
forget_written(void)
{
	free(written[0]);
	free(written[1]);
	written[0] = written[1] = NULL;
}

/*
 * Build "DNS:a,DNS:b,IP:1.2.3.4" from the comma-separated lists, checking
 * every element.  Exits EXIT_USAGE on a bad one.
 */
static void
build_san(const char *dns, const char *ips, char *san, size_t sanlen)
{
	char item[ROUTE_HOST_MAX + 2];
	const char *lists[2] = { dns, ips }, *p, *comma;
	unsigned char addr[16];
	size_t used = 0, len, n = 0;
	int which;

	san[0] = '\0';
	for (which = 0; which < 2; which++) {
		if (lists[which] == NULL)
			continue;
		for (p = lists[which];; p = comma + 1) {
			comma = strchr(p, ',');
			len = comma ? (size_t)(comma - p) : strlen(p);
			if (len == 0 || len >= sizeof(item))
				usage_error(which == 0 ? "--dns: bad name in "
				    "'%s'" : "--ip: bad address in '%s'",
				    lists[which]);
			memcpy(item, p, len);
			item[len] = '\0';
			if (which == 0 && (!route_host_valid(item) ||
			    strchr(item, ':') != NULL))
				usage_error("--dns: '%s' is not a DNS name",
				    item);
			if (which == 1 && inet_pton(AF_INET, item, addr) != 1 &&
			    inet_pton(AF_INET6, item, addr) != 1)
				usage_error("--ip: '%s' is not an IPv4 or IPv6 "
				    "address", item);
			if (++n > SAN_MAX)
				usage_error("more than %s names and addresses",
				    "32");
			used += (size_t)snprintf(san + used, sanlen - used,
			    "%s%s:%s", used ? "," : "", which == 0 ? "DNS" :
			    "IP", item);
			if (used >= sanlen)
				usage_error("%s", "names and addresses too long");
			if (comma == NULL)
				break;
		}
	}
}

/* Add one v3 extension to cert.  Returns 0 or -1. */
static int
add_ext(X509 *cert, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int rc;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL)
		return -1;
	rc = X509_add_ext(cert, ext, -1) == 1 ? 0 : -1;
	X509_EXTENSION_free(ext);
	return rc;
}

/* A self-signed certificate for key, naming san.  NULL on failure. */
static X509 *
make_cert(EVP_PKEY *key, const char *cn, const char *san, unsigned long days)
{
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	X509_NAME *name;
	X509 *cert;

	if ((cert = X509_new()) == NULL)
		return NULL;
	if (RAND_bytes(serial, sizeof(serial)) != 1)
		goto fail;
	serial[0] &= 0x7f;		/* a positive serial number */
	if ((bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) == NULL)
		goto fail;
	if (X509_set_version(cert, 2) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(cert), -3600) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(cert), (int)days, 0, NULL) ==
	    NULL || X509_set_pubkey(cert, key) != 1)
		goto fail;
	name = X509_get_subject_name(cert);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0) != 1 ||
	    X509_set_issuer_name(cert, name) != 1)
		goto fail;
	if (add_ext(cert, NID_basic_constraints, "critical,CA:FALSE") == -1 ||
	    add_ext(cert, NID_key_usage, "critical,digitalSignature") == -1 ||
	    add_ext(cert, NID_ext_key_usage, "serverAuth") == -1 ||
	    add_ext(cert, NID_subject_key_identifier, "hash") == -1 ||
	    add_ext(cert, NID_subject_alt_name, san) == -1)
		goto fail;
	if (X509_sign(cert, key, EVP_sha256()) == 0)
		goto fail;
	BN_free(bn);
	return cert;
fail:
	BN_free(bn);
	X509_free(cert);
	return NULL;
}

static int
gen_x509(const struct gen_options *o)
{
	char san[4096], crt_path[4096], key_path[4096], cn[ROUTE_HOST_MAX + 1];
	const char *dns = o->dns, *ip = o->ip;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	FILE *f;

	if (dns == NULL && ip == NULL) {
		dns = "localhost";
		ip = "127.0.0.1,::1";
		printf("no --dns or --ip given: using --dns %s --ip %s\n", dns,
		    ip);
	}
	build_san(dns, ip, san, sizeof(san));
	/* CN: the first name or address, for people reading the cert. */
	snprintf(cn, sizeof(cn), "%s", strchr(san, ':') + 1);
	cn[strcspn(cn, ",")] = '\0';
	snprintf(crt_path, sizeof(crt_path), "%s/server.crt", o->dir);
	snprintf(key_path, sizeof(key_path), "%s/server.key", o->dir);
	if (make_dir(o->dir) == -1 || check_free(crt_path, o->force) == -1 ||
	    check_free(key_path, o->force) == -1)
		return -1;
	if ((key = EVP_EC_gen("P-256")) == NULL) {
		log_warnx_ssl("cannot make an EC P-256 key");
		return -1;
	}
	if ((cert = make_cert(key, cn, san, o->days)) == NULL) {
		log_warnx_ssl("cannot make the certificate");
		EVP_PKEY_free(key);
		return -1;
	}
	if ((f = create_file(key_path, 0600, 0)) == NULL)
		goto fail;
	if (PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1) {
		log_warnx_ssl("%s: cannot write the key", key_path);
		fclose(f);
		goto fail;
	}
	if (close_file(f, key_path) == -1 ||
	    (f = create_file(crt_path, 0644, 1)) == NULL)
		goto fail;
	if (PEM_write_X509(f, cert) != 1) {
		log_warnx_ssl("%s: cannot write the certificate", crt_path);
		fclose(f);
		goto fail;
	}
	if (close_file(f, crt_path) == -1)
		goto fail;
	forget_written();
	printf("wrote %s (certificate, EC P-256, %s, valid %lu days)\n",
	    crt_path, san, o->days);
	printf("wrote %s (private key, mode 0600)\n", key_path);
	X509_free(cert);
	EVP_PKEY_free(key);
	return 0;
fail:
	remove_written();
	X509_free(cert);
	EVP_PKEY_free(key);
	return -1;
}

static int
gen_ed25519(const struct gen_options *o)
{
	char priv_path[4096], pub_path[4096], fpr[17];
	struct auth_key k;
	FILE *f;

	snprintf(priv_path, sizeof(priv_path), "%s/auth", o->dir);
	snprintf(pub_path, sizeof(pub_path), "%s/auth.pub", o->dir);
	if (make_dir(o->dir) == -1 || check_free(priv_path, o->force) == -1 ||
	    check_free(pub_path, o->force) == -1)
		return -1;
	if (auth_key_generate(&k) == -1) {
		log_warnx("cannot make an ed25519 key");
		return -1;
	}
	if ((f = create_file(priv_path, 0600, 0)) == NULL)
		goto fail;
	if (auth_key_write_private(&k, f) == -1) {
		log_warnx_ssl("%s: cannot write the key", priv_path);
		fclose(f);
		goto fail;
	}
	if (close_file(f, priv_path) == -1 ||
	    (f = create_file(pub_path, 0644, 1)) == NULL)
		goto fail;
	if (auth_key_write_public(&k, f) == -1) {
		log_warnx_ssl("%s: cannot write the key", pub_path);
		fclose(f);
		goto fail;
	}
	if (close_file(f, pub_path) == -1)
		goto fail;
	forget_written();
	auth_fingerprint(k.pk, fpr);
	auth_key_wipe(&k);
	printf("wrote %s (ed25519 private key, mode 0600)\n", priv_path);
	printf("wrote %s (ed25519 public key %s)\n", pub_path, fpr);
	return 0;
fail:
	remove_written();
	auth_key_wipe(&k);
	return -1;
}

int
main(int argc, char **argv)
{
	struct gen_options o = { "cert", NULL, NULL, 3650, 0 };
	const struct opt_spec x509_specs[] = {
		{ 'o', "output", OPT_STRING, &o.dir, 0, 0, "DIR",
		    "output directory (default cert)" },
		{ 'd', "dns", OPT_STRING, &o.dns, 0, 0, "NAMES",
		    "DNS names the certificate names, comma-separated" },
		{ 'i', "ip", OPT_STRING, &o.ip, 0, 0, "IPS",
		    "IP addresses the certificate names, comma-separated" },
		{ 0, "days", OPT_UINT, &o.days, 1, 36500, "N",
		    "validity in days (default 3650)" },
		{ 0, "force", OPT_FLAG, &o.force, 0, 0, NULL,
		    "replace existing files" },
	};
	const struct opt_spec ed_specs[] = {
		{ 'o', "output", OPT_STRING, &o.dir, 0, 0, "DIR",
		    "output directory (default cert)" },
		{ 0, "force", OPT_FLAG, &o.force, 0, 0, NULL,
		    "replace existing files" },
	};
	const char *top = "gen-cert x509 [-o DIR] [-d NAMES] [-i IPS] "
	    "[--days N] [--force]\n       gen-cert ed25519 [-o DIR] [--force]";
	const struct opt_spec *specs;
	size_t nspecs;
	char err[512];
	struct opts opts;
	int rc, is_x509;

	log_init(PROGNAME, LOG_LEVEL_INFO);
	if (argc < 2 || argv[1][0] == '-') {
		/* No subcommand: only --help and --version make sense. */
		rc = opts_parse(&opts, NULL, 0, argc, argv, 1, PROGNAME, top,
		    err, sizeof(err));
		opts_free(&opts);
		if (rc == 1)
			return 0;
		if (rc == 0)
			usage_error("%s", "missing subcommand: x509 or ed25519 "
			    "(see --help)");
		usage_error("%s", err);
	}
	if (strcmp(argv[1], "x509") == 0) {
		is_x509 = 1;
		specs = x509_specs;
		nspecs = sizeof(x509_specs) / sizeof(x509_specs[0]);
	} else if (strcmp(argv[1], "ed25519") == 0) {
		is_x509 = 0;
		specs = ed_specs;
		nspecs = sizeof(ed_specs) / sizeof(ed_specs[0]);
	} else {
		usage_error("unknown subcommand '%s': x509 or ed25519",
		    argv[1]);
	}
	rc = opts_parse(&opts, specs, nspecs, argc, argv, 2, PROGNAME,
	    is_x509 ? "gen-cert x509 [-o DIR] [-d NAMES] [-i IPS] [--days N] "
	    "[--force]" : "gen-cert ed25519 [-o DIR] [--force]", err,
	    sizeof(err));
	if (rc == 1) {
		opts_free(&opts);
		return 0;
	}
	if (rc == -1) {
		opts_free(&opts);
		usage_error("%s", err);
	}
	rc = is_x509 ? gen_x509(&o) : gen_ed25519(&o);
	opts_free(&opts);
	return rc == 0 ? 0 : EXIT_RUNTIME;
}
