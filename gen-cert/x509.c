/*
 * x509: the relay's TLS identity, DIR/server.crt and DIR/server.key.
 *
 * A self-signed X.509 v3 certificate for a new EC P-256 key.  Clients pin
 * this very certificate (-c) and check that it names the host or address
 * they dialled (-s), so its subjectAltName must list every DNS name and IP
 * address the relay is reached by; the subject's CN is only for people.
 * It is a leaf, not a CA: CA:FALSE, digitalSignature, serverAuth.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "daemon.h"
#include "gen-cert.h"
#include "log.h"

#define SAN_MAX 64
#define DNS_NAME_MAX 253
#define DNS_LABEL_MAX 63
#define CN_MAX 64		/* ub-common-name in RFC 5280 */
#define CN_FALLBACK "tcp-reverse-proxy"

/* Used when neither --dns nor --ip is given: the loopback relay. */
#define DEFAULT_DNS "localhost"
#define DEFAULT_IP "127.0.0.1,::1"

/* Order of the files in struct output: the private key first. */
enum { FILE_KEY, FILE_CERT };

/* One subjectAltName entry. */
struct san {
	int is_ip;
	unsigned char addr[16];		/* is_ip: network order */
	int addrlen;			/* is_ip: 4 or 16 */
	char text[DNS_NAME_MAX + 1];	/* the name, or the address */
};

struct san_list {
	struct san san[SAN_MAX];
	size_t n;
};

/*
 * Is name a DNS name a certificate can carry: dot-separated labels of
 * letters, digits and inner hyphens, 63 at most, not all digits (that is
 * an address), optionally after a "*." wildcard covering one label of a
 * name that has at least two (as X509_check_host understands it)?
 */
static int
dns_name_valid(const char *name)
{
	const char *p;
	size_t label = 0;
	int letter = 0;

	if (strlen(name) > DNS_NAME_MAX)
		return 0;
	if (strncmp(name, "*.", 2) == 0) {
		name += 2;
		if (strchr(name, '.') == NULL)
			return 0;
	}
	for (p = name; *p != '\0'; p++) {
		if (*p == '.') {
			if (label == 0 || p[-1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (*p == '-') {
			if (label == 0)
				return 0;
		} else if (!isalnum((unsigned char)*p)) {
			return 0;
		}
		if (!isdigit((unsigned char)*p))
			letter = 1;
		if (++label > DNS_LABEL_MAX)
			return 0;
	}
	return label > 0 && p[-1] != '-' && letter;
}

/* Check one --dns or --ip item and add it to l.  Returns 0 or -1 (err). */
static int
san_add(struct san_list *l, int is_ip, const char *item, char *err,
    size_t errlen)
{
	struct san *s;
	unsigned char addr[16];

	if (l->n == SAN_MAX) {
		snprintf(err, errlen, "too many names and addresses (at most "
		    "%d)", SAN_MAX);
		return -1;
	}
	s = &l->san[l->n];
	s->is_ip = is_ip;
	if (!is_ip) {
		if (!dns_name_valid(item)) {
			if (inet_pton(AF_INET, item, addr) == 1 ||
			    inet_pton(AF_INET6, item, addr) == 1)
				snprintf(err, errlen, "--dns: '%s' is an IP "
				    "address (give it with --ip)", item);
			else
				snprintf(err, errlen, "--dns: '%s' is not a "
				    "DNS name", item);
			return -1;
		}
		snprintf(s->text, sizeof(s->text), "%s", item);
	} else {
		if (inet_pton(AF_INET, item, s->addr) == 1)
			s->addrlen = 4;
		else if (inet_pton(AF_INET6, item, s->addr) == 1)
			s->addrlen = 16;
		else {
			snprintf(err, errlen, "--ip: '%s' is not an IPv4 or "
			    "IPv6 address", item);
			return -1;
		}
		/* Printed the way TLS clients will compare it. */
		if (inet_ntop(s->addrlen == 4 ? AF_INET : AF_INET6, s->addr,
		    s->text, sizeof(s->text)) == NULL) {
			snprintf(err, errlen, "--ip: '%s': cannot print it",
			    item);
			return -1;
		}
	}
	l->n++;
	return 0;
}

/* Add every item of the comma-separated list to l.  Returns 0 or -1. */
static int
san_add_list(struct san_list *l, int is_ip, const char *list, char *err,
    size_t errlen)
{
	const char *flag = is_ip ? "--ip" : "--dns";
	char item[DNS_NAME_MAX + 1];
	const char *p, *comma;
	size_t len;

	for (p = list;; p = comma + 1) {
		comma = strchr(p, ',');
		len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (len == 0) {
			snprintf(err, errlen, "%s: empty item in '%s'", flag,
			    list);
			return -1;
		}
		if (len >= sizeof(item)) {
			snprintf(err, errlen, "%s: '%.40s...' is longer than "
			    "%d characters", flag, p, DNS_NAME_MAX);
			return -1;
		}
		memcpy(item, p, len);
		item[len] = '\0';
		if (san_add(l, is_ip, item, err, errlen) == -1)
			return -1;
		if (comma == NULL)
			return 0;
	}
}

/* Give cert a fresh random 128-bit serial number.  Returns 0 or -1. */
static int
cert_set_serial(X509 *cert)
{
	BIGNUM *bn;
	int rc = -1;

	if ((bn = BN_new()) == NULL)
		return -1;
	/* Non-negative, at most 17 octets encoded (RFC 5280 allows 20);
	 * zero is not a serial number. */
	do {
		if (BN_rand(bn, 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1)
			goto out;
	} while (BN_is_zero(bn));
	if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) == NULL)
		goto out;
	rc = 0;
out:
	BN_free(bn);
	return rc;
}

/* Subject and issuer: CN = the first entry short enough to be one. */
static int
cert_set_name(X509 *cert, const struct san_list *l)
{
	const char *cn = CN_FALLBACK;
	X509_NAME *name;
	size_t i;

	for (i = 0; i < l->n; i++) {
		if (strlen(l->san[i].text) <= CN_MAX) {
			cn = l->san[i].text;
			break;
		}
	}
	name = X509_get_subject_name(cert);
	if (X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0) != 1)
		return -1;
	return X509_set_issuer_name(cert, name) == 1 ? 0 : -1;
}

/* One subjectAltName entry as OpenSSL's GENERAL_NAME, or NULL. */
static GENERAL_NAME *
san_general_name(const struct san *s)
{
	GENERAL_NAME *gen;
	ASN1_STRING *value;

	value = ASN1_STRING_type_new(s->is_ip ? V_ASN1_OCTET_STRING :
	    V_ASN1_IA5STRING);
	if (value == NULL)
		goto err0;
	if (s->is_ip ? ASN1_STRING_set(value, s->addr, s->addrlen) != 1 :
	    ASN1_STRING_set(value, s->text, -1) != 1)
		goto err1;
	if ((gen = GENERAL_NAME_new()) == NULL)
		goto err1;
	GENERAL_NAME_set0_value(gen, s->is_ip ? GEN_IPADD : GEN_DNS, value);
	return gen;
err1:
	ASN1_STRING_free(value);
err0:
	return NULL;
}

/* The subjectAltName extension, built from the parsed entries (not from
 * a config string, whose syntax a name could otherwise bend). */
static int
cert_add_san(X509 *cert, const struct san_list *l)
{
	GENERAL_NAMES *gens;
	GENERAL_NAME *gen;
	size_t i;
	int rc = -1;

	if ((gens = GENERAL_NAMES_new()) == NULL)
		return -1;
	for (i = 0; i < l->n; i++) {
		if ((gen = san_general_name(&l->san[i])) == NULL)
			goto out;
		if (sk_GENERAL_NAME_push(gens, gen) == 0) {
			GENERAL_NAME_free(gen);
			goto out;
		}
	}
	/* Not critical: the subject is not empty (RFC 5280 4.2.1.6). */
	if (X509_add1_ext_i2d(cert, NID_subject_alt_name, gens, 0,
	    X509V3_ADD_DEFAULT) != 1)
		goto out;
	rc = 0;
out:
	GENERAL_NAMES_free(gens);
	return rc;
}

/* Add one extension given in OpenSSL's config syntax.  Returns 0 or -1. */
static int
cert_add_ext(X509 *cert, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int rc;

	/* Self-signed: cert is its own issuer (the key identifier needs
	 * the subject's public key, already set). */
	X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
	if ((ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value)) == NULL)
		return -1;
	rc = X509_add_ext(cert, ext, -1) == 1 ? 0 : -1;
	X509_EXTENSION_free(ext);
	return rc;
}

/* A self-signed certificate for key naming l, valid days.  NULL on
 * failure (logged). */
static X509 *
cert_new(EVP_PKEY *key, const struct san_list *l, unsigned long days)
{
	time_t now = time(NULL);
	X509 *cert;

	if ((cert = X509_new()) == NULL)
		goto err0;
	/* Valid from an hour ago: a client whose clock is a little behind
	 * must not see a certificate from the future. */
	if (X509_set_version(cert, X509_VERSION_3) != 1 ||
	    cert_set_serial(cert) == -1 ||
	    X509_time_adj(X509_getm_notBefore(cert), -3600, &now) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(cert), (int)days, 0, &now) ==
	    NULL ||
	    X509_set_pubkey(cert, key) != 1 ||
	    cert_set_name(cert, l) == -1)
		goto err1;
	if (cert_add_ext(cert, NID_basic_constraints, "critical,CA:FALSE") ==
	    -1 ||
	    cert_add_ext(cert, NID_key_usage, "critical,digitalSignature") ==
	    -1 ||
	    cert_add_ext(cert, NID_ext_key_usage, "serverAuth") == -1 ||
	    cert_add_ext(cert, NID_subject_key_identifier, "hash") == -1 ||
	    cert_add_san(cert, l) == -1)
		goto err1;
	if (X509_sign(cert, key, EVP_sha256()) <= 0)
		goto err1;
	return cert;
err1:
	X509_free(cert);
err0:
	log_warnx_ssl("cannot make the certificate");
	return NULL;
}

/* "wrote DIR/server.crt (certificate, ..., SAN: DNS:a, IP:b, ...)" */
static void
print_cert_line(const char *path, const struct san_list *l,
    unsigned long days)
{
	size_t i;

	printf("wrote %s (certificate, EC P-256, SAN: ", path);
	for (i = 0; i < l->n; i++)
		printf("%s%s:%s", i > 0 ? ", " : "",
		    l->san[i].is_ip ? "IP" : "DNS", l->san[i].text);
	printf(", valid %lu day%s)\n", days, days == 1 ? "" : "s");
}

/* Make the key and certificate and write both.  Returns 0 or -1. */
static int
x509_write(const struct gen_options *o, const struct san_list *l)
{
	struct output out;
	EVP_PKEY *key;
	X509 *cert;
	FILE *f;

	output_init(&out, o->dir, o->force);
	if (output_add(&out, "server.key", 0600) == -1 ||
	    output_add(&out, "server.crt", 0644) == -1 ||
	    output_prepare(&out) == -1)
		goto err0;

	if ((key = EVP_EC_gen("P-256")) == NULL) {
		log_warnx_ssl("cannot make an EC P-256 key");
		goto err0;
	}
	if ((cert = cert_new(key, l, o->days)) == NULL)
		goto err1;

	/* PKCS#8 PEM ("PRIVATE KEY"), unencrypted: the relay starts
	 * unattended; the file's mode is the protection. */
	if ((f = output_open(&out, FILE_KEY)) == NULL)
		goto err2;
	if (PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1) {
		log_warnx_ssl("cannot write %s", output_path(&out, FILE_KEY));
		goto err2;
	}
	if (output_close(&out, FILE_KEY) == -1)
		goto err2;

	if ((f = output_open(&out, FILE_CERT)) == NULL)
		goto err2;
	if (PEM_write_X509(f, cert) != 1) {
		log_warnx_ssl("cannot write %s", output_path(&out, FILE_CERT));
		goto err2;
	}
	if (output_close(&out, FILE_CERT) == -1)
		goto err2;

	print_cert_line(output_path(&out, FILE_CERT), l, o->days);
	printf("wrote %s (private key, mode 0600)\n",
	    output_path(&out, FILE_KEY));
	X509_free(cert);
	EVP_PKEY_free(key);
	return 0;

err2:
	X509_free(cert);
err1:
	EVP_PKEY_free(key);
err0:
	output_abort(&out);
	return -1;
}

int
x509_run(const struct gen_options *o)
{
	struct san_list l;
	const char *dns = o->dns, *ip = o->ip;
	char err[512];

	if (dns == NULL && ip == NULL) {
		dns = DEFAULT_DNS;
		ip = DEFAULT_IP;
		log_info("no --dns or --ip given: using --dns %s --ip %s", dns,
		    ip);
	}
	l.n = 0;
	if ((dns != NULL && san_add_list(&l, 0, dns, err, sizeof(err)) ==
	    -1) ||
	    (ip != NULL && san_add_list(&l, 1, ip, err, sizeof(err)) == -1)) {
		log_warnx("%s", err);
		return EXIT_USAGE;
	}
	return x509_write(o, &l) == 0 ? 0 : EXIT_RUNTIME;
}
