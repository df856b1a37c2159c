/*
 * batch: the TLS records that one pass of the event loop makes for a
 * channel leave in one system call.
 *
 * OpenSSL hands every record (at most 16 KiB of data) to its write BIO on
 * its own, and a socket BIO makes each one a write(2).  On loopback every
 * write also runs the receiver's TCP input and wake-up, so a bulk splice
 * paid that once per 16 KiB on every hop.  batch_attach() puts a batch BIO
 * in its place: records are copied into one buffer (up to BATCH_MAX bytes)
 * and written with one writev(2) when the pass is done -- an event made
 * active when the batch starts, which runs after the events that were
 * already active, the splice that made the records among them.  A full
 * batch is written at once.  When the socket cannot take it all, the rest
 * waits for the socket to become writable, and OpenSSL is told to retry
 * (so SSL_write sees the socket's backpressure as before).
 *
 * Bytes in a batch have left the bufferevent's output but not the process:
 * code that waits for a channel to be flushed asks batch_unsent(), and the
 * bufferevent's write callback runs again once a batch has left.  An idle
 * channel holds no batch buffer.
 */
#ifndef BATCH_H
#define BATCH_H

#include <stddef.h>

#include <openssl/ssl.h>

struct bufferevent;

/* A TLS 1.3 record's ciphertext is at most 2^14 + 256 bytes (RFC 8446,
 * section 5.2); a batch holds four of the largest. */
#define BATCH_RECORD_MAX (16384 + 256)
#define BATCH_MAX (4 * BATCH_RECORD_MAX)

/*
 * Make the TLS bufferevent bev (handshake done) write through a batch, or
 * move an SSL that already has one to bev (a channel handed to another
 * event loop).  Returns 0 or -1.
 */
int batch_attach(struct bufferevent *bev);

/*
 * bev is about to be freed: its batch forgets bev and its event loop (call
 * it before bufferevent_free, which may close the socket first).  If the
 * SSL lives on, bytes the batch still holds wait for the next
 * batch_attach; otherwise they go with the SSL.
 */
void batch_detach(struct bufferevent *bev);

/* batch_detach, then bufferevent_free: how a client frees a channel. */
void batch_free(struct bufferevent *bev);

/* Bytes not yet handed to the kernel: bev's output and its batch. */
size_t batch_unsent(struct bufferevent *bev);

/*
 * From now on, a batch that waits more than seconds for the socket gives
 * up: its bytes are dropped and bev's event callback gets BEV_EVENT_ERROR.
 * For channels that are closing; a channel in use waits as long as its
 * peer does.
 */
void batch_set_deadline(struct bufferevent *bev, int seconds);

#endif
