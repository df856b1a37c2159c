#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "auth.h"
#include "keyfile.h"

const char *
tls_error_text(struct bufferevent *bev, char *buf, size_t len)
{
	unsigned long e;

	if (len > 0)
		buf[0] = '\0';
	while ((e = bev != NULL ? bufferevent_get_openssl_error(bev) :
	    ERR_get_error()) != 0)
		if (len > 0 && buf[0] == '\0' && ERR_GET_LIB(e) != 0)
			ERR_error_string_n(e, buf, len);
	return buf;
}

/* Describe the OpenSSL error queue (emptied) after prefix, into err. */
static void
ssl_error(char *err, size_t errlen, const char *prefix)
{
	char reason[TLS_ERRLEN];

	tls_error_text(NULL, reason, sizeof(reason));
	snprintf(err, errlen, "%s: %s", prefix, reason[0] ? reason :
	    "unknown error");
}

static SSL_CTX *
ctx_new(const SSL_METHOD *method)
{
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(method)) == NULL)
		return NULL;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* AES-128-GCM first: with AES-NI the cheapest AEAD here. */
	if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:"
	    "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384") != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
	    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	/* Idle channels hold no record buffers. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

void
tls_read_ahead(SSL *ssl)
{
	/* One read() takes several records instead of two read()s per
	 * record (header, then body).  See tls_kick.  The buffer is made
	 * at the next read (SSL_MODE_RELEASE_BUFFERS frees it when idle). */
	SSL_set_read_ahead(ssl, 1);
	SSL_set_default_read_buffer_len(ssl, TLS_READ_BUFFER);
}

SSL_CTX *
tls_server_ctx_new(const char *cert_path, const char *key_path, char *err,
    size_t errlen)
{
	char prefix[512];
	EVP_PKEY *pkey;
	SSL_CTX *ctx;
	FILE *f;

	if ((ctx = ctx_new(TLS_server_method())) == NULL) {
		ssl_error(err, errlen, "TLS context");
		return NULL;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		snprintf(prefix, sizeof(prefix), "--server-cert: %s: cannot "
		    "load certificate", cert_path);
		goto fail;
	}
	/* The key is read from the descriptor keyfile_open checked, not
	 * opened again by name (SSL_CTX_use_PrivateKey_file). */
	if ((f = keyfile_open(key_path, prefix, sizeof(prefix))) == NULL) {
		snprintf(err, errlen, "--server-key: %s", prefix);
		SSL_CTX_free(ctx);
		return NULL;
	}
	pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	(void)fclose(f);	/* read only: nothing to lose */
	if (pkey == NULL || SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
		EVP_PKEY_free(pkey);
		snprintf(prefix, sizeof(prefix), "--server-key: %s: cannot "
		    "load private key", key_path);
		goto fail;
	}
	EVP_PKEY_free(pkey);	/* ctx holds its own reference */
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(prefix, sizeof(prefix), "--server-key: %s does not "
		    "match %s", key_path, cert_path);
		goto fail;
	}
	/* One stateless ticket per handshake: clients resume with it when
	 * they refill their pools (no certificate to sign or verify).  The
	 * ticket key lives in ctx, shared by every worker; no server-side
	 * cache. */
	if (SSL_CTX_set_num_tickets(ctx, 1) != 1) {
		snprintf(prefix, sizeof(prefix), "TLS tickets");
		goto fail;
	}
	(void)SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	(void)SSL_CTX_set_timeout(ctx, TLS_TICKET_LIFETIME);
	return ctx;
fail:
	ssl_error(err, errlen, prefix);
	SSL_CTX_free(ctx);
	return NULL;
}

/*
 * Client side of resumption: ctx keeps the newest session (ticket) the
 * relay gave, in its ex_data, and every new channel offers it.  It keeps a
 * copy, and each channel gets a copy of that: OpenSSL marks a connection's
 * own session unresumable when the connection is freed without sending
 * close_notify (as every channel of ours ends), which would spoil the
 * shared ticket for all the dials that follow until a new one arrives.
 */
static int session_index = -1;

static void
session_slot_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
    long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	SSL_SESSION_free(ptr);
}

static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
	SSL_SESSION *old = SSL_CTX_get_ex_data(ctx, session_index);
	SSL_SESSION *copy;

	if ((copy = SSL_SESSION_dup(sess)) == NULL)
		return 0;
	if (SSL_CTX_set_ex_data(ctx, session_index, copy) != 1) {
		SSL_SESSION_free(copy);
		return 0;
	}
	SSL_SESSION_free(old);
	return 0;		/* sess itself stays the connection's */
}

SSL_CTX *
tls_client_ctx_new(const char *cert_path, char *err, size_t errlen)
{
	char prefix[512];
	X509_STORE *store;
	X509 *cert = NULL;
	SSL_CTX *ctx;
	FILE *f;

	if ((f = fopen(cert_path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", cert_path, strerror(errno));
		return NULL;
	}
	cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (cert == NULL) {
		snprintf(prefix, sizeof(prefix), "%s: not a PEM certificate",
		    cert_path);
		ssl_error(err, errlen, prefix);
		return NULL;
	}
	if ((ctx = ctx_new(TLS_client_method())) == NULL) {
		ssl_error(err, errlen, "TLS context");
		X509_free(cert);
		return NULL;
	}
	/* The store holds only the pinned certificate; PARTIAL_CHAIN lets a
	 * self-signed leaf be its own trust anchor. */
	store = SSL_CTX_get_cert_store(ctx);
	if (X509_STORE_add_cert(store, cert) != 1 ||
	    X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN) != 1) {
		snprintf(prefix, sizeof(prefix), "%s: cannot trust it",
		    cert_path);
		ssl_error(err, errlen, prefix);
		X509_free(cert);
		SSL_CTX_free(ctx);
		return NULL;
	}
	X509_free(cert);
	/* The relay is authenticated by the handshake: read ahead from
	 * the start (the relay waits for the client's AUTH, tls_read_ahead). */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, TLS_READ_BUFFER);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (session_index == -1)
		session_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
		    session_slot_free);
	if (session_index != -1) {
		(void)SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
		    SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	}
	return ctx;
}

SSL *
tls_client_ssl_new(SSL_CTX *ctx, const char *host)
{
	unsigned char addr[16];
	SSL *ssl;
	int is_ip;

	if ((ssl = SSL_new(ctx)) == NULL)
		return NULL;
	is_ip = inet_pton(AF_INET, host, addr) == 1 ||
	    inet_pton(AF_INET6, host, addr) == 1;
	if (is_ip) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) !=
		    1)
			goto fail;
	} else {
		if (SSL_set1_host(ssl, host) != 1 ||
		    SSL_set_tlsext_host_name(ssl, host) != 1)
			goto fail;
	}
	/* Resume the newest session if it is still good (a failure only
	 * means a full handshake). */
	if (session_index != -1) {
		SSL_SESSION *sess = SSL_CTX_get_ex_data(ctx, session_index);
		SSL_SESSION *copy;

		if (sess != NULL && SSL_SESSION_is_resumable(sess) &&
		    (copy = SSL_SESSION_dup(sess)) != NULL) {
			(void)SSL_set_session(ssl, copy);
			SSL_SESSION_free(copy);		/* ssl holds it */
		}
	}
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

int
tls_exporter(SSL *ssl, uint8_t out[32])
{
	return SSL_export_keying_material(ssl, out, AUTH_EXPORTER_LEN,
	    AUTH_EXPORTER_LABEL, strlen(AUTH_EXPORTER_LABEL), NULL, 0, 0) == 1 ?
	    0 : -1;
}

int
tls_kick(struct bufferevent *bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	evutil_socket_t fd = bufferevent_getfd(bev);

	if (ssl == NULL || fd < 0 || !SSL_has_pending(ssl) ||
	    !(bufferevent_get_enabled(bev) & EV_READ))
		return 0;
	event_base_active_by_fd(bufferevent_get_base(bev), fd, EV_READ);
	return 1;
}

void
bev_kick_write(struct bufferevent *bev)
{
	evutil_socket_t fd = bufferevent_getfd(bev);

	if (fd >= 0 && evbuffer_get_length(bufferevent_get_output(bev)) > 0 &&
	    (bufferevent_get_enabled(bev) & EV_WRITE))
		event_base_active_by_fd(bufferevent_get_base(bev), fd,
		    EV_WRITE);
}
