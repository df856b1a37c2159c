/*
 * tls: the TLS 1.3 contexts of the relay (server) and of its clients.
 *
 * Clients trust exactly one certificate, the relay's (-c), and check that
 * it names the host or IP address they dialled.  Every channel carries
 * its own end in frames (FIN/RST), so a TCP close without close_notify is
 * not a truncation attack here: SSL_OP_IGNORE_UNEXPECTED_EOF is set and a
 * peer's plain close reads as EOF.
 *
 * Every TLS bufferevent is made with BEV_OPT_DEFER_CALLBACKS: libevent
 * 2.1.12 runs the EOF event callback from inside its read loop *before* it
 * commits the bytes read in the same pass, so a synchronous callback that
 * closes on EOF loses the last records (a FIN, say).  Deferred, the read
 * callback runs first.
 *
 * Read-ahead is on (TLS_READ_BUFFER bytes) on the clients' channels, and
 * on the relay's once the client has authenticated (tls_read_ahead: a
 * stranger gets no 64 KiB buffer): OpenSSL then takes several
 * records per read(), but records it holds undecrypted are invisible to
 * epoll and to libevent 2.1.12 (which only asks SSL_pending).  Whoever
 * reads a TLS bufferevent calls tls_kick() after draining its input, and
 * after enabling reading again.
 */
#ifndef TLS_H
#define TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

struct bufferevent;

#define TLS_READ_BUFFER (64 * 1024 + 512)	/* four records and change */
#define TLS_TICKET_LIFETIME 3600	/* seconds a resumption ticket is good */
#define TLS_ERRLEN 256			/* room for tls_error_text */

/*
 * Load and check the relay's certificate and key.  Returns a context or
 * NULL with a message naming the file in err.
 */
SSL_CTX *tls_server_ctx_new(const char *cert_path, const char *key_path,
    char *err, size_t errlen);

/* Read ahead on ssl from its next read (the relay, after AUTH). */
void tls_read_ahead(SSL *ssl);

/*
 * A client context trusting only the certificate in cert_path.  It keeps
 * the newest session ticket the relay sent, and tls_client_ssl_new offers
 * it: pool refills resume (PSK with a fresh X25519 exchange, so forward
 * secrecy stays) instead of signing and verifying a certificate again.
 * Returns a context or NULL (err).
 */
SSL_CTX *tls_client_ctx_new(const char *cert_path, char *err, size_t errlen);

/*
 * A client SSL for one channel to host (a DNS name or an IP literal, which
 * the relay's certificate must name).  Returns NULL on failure.
 */
SSL *tls_client_ssl_new(SSL_CTX *ctx, const char *host);

/*
 * What OpenSSL says went wrong: the first error queued on bev (libevent
 * keeps them newest first) or, when bev is NULL, on this thread's queue
 * (oldest first: the cause), leaving out bare system-call markers
 * ("lib(0)") that tell nothing; the queue is emptied either way, so that
 * no stale error misleads the next call.  buf is "" when there was none.
 * Returns buf.
 */
const char *tls_error_text(struct bufferevent *bev, char *buf, size_t len);

/* The 32-byte AUTH exporter value of an established session; 0 or -1. */
int tls_exporter(SSL *ssl, uint8_t out[32]);

/*
 * If OpenSSL holds records that it read ahead and reading is enabled, make
 * libevent read the bufferevent again (as if its socket were readable).
 * Returns 1 if it did, else 0.  A splice that got a kick leaves its write
 * for after the last of those records (see bev_kick_write): the records
 * then leave together, in one system call instead of one each.
 */
int tls_kick(struct bufferevent *bev);

/*
 * bev (TLS or plain) has output to send: write it in this pass of the
 * loop rather than the next.  A bufferevent whose output was empty only
 * adds its write event, so every hop would otherwise cost one more trip
 * through epoll_wait before the bytes leave.  If the socket cannot take
 * them, the write event waits as usual.
 */
void bev_kick_write(struct bufferevent *bev);

#endif
