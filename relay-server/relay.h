/*
 * relay-server: the public meeting point.  It authenticates every channel,
 * keeps reverse-proxy channels idle per group, and when an entry-point
 * channel sends OPEN pairs it with an idle reverse-proxy channel of the
 * same group (or queues it, bounded in number and time), then relays
 * bytes both ways, opaquely, with backpressure.
 *
 * The files, in the order a channel lives (README, "Reading the code", has the map):
 *   main.c     options, keys, listening sockets
 *   limits.c   --max-channels and --max-handshakes from the open-file limit
 *   reload.c   SIGHUP: certificate, key and authorized keys read again
 *   creds.c    the TLS context and the authorized keys in force
 *   channel.c  a channel's life: accept, TLS handshake, the idle frames,
 *              deadlines; its state machine
 *   stranger.c connections not yet authenticated: their budget (in all and
 *              per source, the oldest evicted), the bytes they may send,
 *              their rate-limited log lines
 *   admit.c    AUTH against the authorized keys: who may do what
 *   teardown.c how every channel ends: rchan_close, the reaper, and
 *              rchan_drain when the relay stops (SIGTERM)
 *   group.c    groups: idle reverse-proxy channels, the queue of OPENs,
 *              pairing, the clean end of a pair and reuse
 *   forward.c  the splice of a pair: frames passed on, FIN and RST,
 *              backpressure
 *   workers.c  the event loops (one per thread), the exchange that moves
 *              idle channels between them, wake-ups; every lock is there
 *
 * Teardown has one idiom: rchan_close() (or rchan_close_flush(), which
 * writes what is queued first) logs why, takes the channel off every list,
 * silences it and puts it on its worker's reaper list; the reaper frees it
 * when the loop comes round.  So a callback never frees what its caller
 * still uses: after any call, a channel is still valid memory, and its
 * state says whether it is R_DEAD.  Closing one channel of a pair closes
 * the other too (after a flush).  Groups are freed by the reaper as well.
 *
 * Nothing of a worker is touched by another thread except the fields
 * under its lock (workers.c).
 */
#ifndef RELAY_H
#define RELAY_H

#include <sys/queue.h>

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>
#include <event2/util.h>

#include "auth.h"
#include "authkeys.h"
#include "limit.h"
#include "log.h"
#include "netaddr.h"
#include "opts.h"

struct bufferevent;
struct event;
struct event_base;

/*
 * The authorized keys (-a) as one reload read them (creds.c).  A key's
 * count of channels (max-channels=) belongs to the key, not to the set:
 * it outlives reloads, so that channels admitted before a reload still
 * count after it; the set points at it.
 */
struct keyset {
	struct authkeys keys;		/* who may do what */
	struct limit **slots;		/* keys.n: each key's channel count */
	unsigned long generation;	/* which reload made it */
	unsigned refs;			/* under creds.c's lock */
};

struct relay_config {
	unsigned max_handshakes;	/* not yet authenticated, all workers */
	unsigned max_handshakes_source;	/* the same, from one address */
	unsigned handshake_timeout;	/* seconds: TLS + AUTH */
	unsigned open_timeout;		/* seconds an OPEN waits for a peer */
	unsigned idle_timeout;		/* seconds an idle channel may be silent */
	unsigned max_channels;		/* authenticated, all workers */
	unsigned workers;		/* event loops (threads) */
};

#define RELAY_WAIT_MAX 1024		/* OPENs waiting, per group and worker */
#define RELAY_PONG_BACKLOG 4096		/* bytes of unread PONGs tolerated */
/* ... and in the kernel's queue to the client (SIOCOUTQ: not yet
 * acknowledged).  An idle channel has nothing else queued when a PING
 * comes (the client read the end of its last connection before it went
 * back to its pool), so more means a client that pings and never reads:
 * without it, such a client made the kernel hold megabytes of PONGs
 * (its autotuned send buffer) before the relay's own output grew.
 * Such a client can also stall its own PINGs: out of receive memory, its
 * kernel drops PONGs its window had room for, then discards the relay's
 * ACKs (their sequence numbers lie past its closed window), and its PINGs
 * wait unacknowledged on its side.  The relay reads nothing more, holds
 * less than this, and the idle timeout closes the channel. */
#define RELAY_PONG_KERNEL_MAX (64 * 1024)
#define RELAY_REUSE_MAX_AGE 3600	/* seconds: older channels are not reused */
#define RELAY_WORKERS_MAX 256
#define RELAY_WORKERS_DEFAULT_MAX 64	/* --workers default: cores, up to this */
/* Bytes a client may send before it has authenticated: a ClientHello is
 * about 300 bytes (600 with a session ticket), AUTH 114; OpenSSL would
 * buffer a ClientHello of up to about 128 KiB. */
#define RELAY_PREAUTH_BYTES 8192
#define RELAY_SOURCE_BUCKETS 256	/* per worker */

/*
 * A channel's states, and the list each one puts it on (besides its
 * worker's list of every channel, while it has a worker):
 *   R_HANDSHAKE  TLS handshake under way                     -
 *   R_AUTH       waiting for AUTH                            -
 *   R_IDLE       authenticated, unpaired     reverse-proxy: group idle
 *   R_QUEUED     entry-point: OPEN received, waiting         group waiting
 *   R_PAIRED     relaying to its partner                     -
 *   R_CLOSING    writing what it holds, then closed          -
 *   R_MOVING     on its way to another worker                that's inbox
 *   R_DEAD       closed, to be freed by the reaper           worker dead
 */
enum rchan_state {
	R_HANDSHAKE,
	R_AUTH,
	R_IDLE,
	R_QUEUED,
	R_PAIRED,
	R_CLOSING,
	R_MOVING,
	R_DEAD,
};

struct group;
struct worker;

TAILQ_HEAD(rchan_list, rchan);

/* An address with channels not yet authenticated on one worker. */
struct source {
	struct sockaddr_storage addr;	/* port 0 */
	unsigned n;
	struct rchan_list conns;	/* oldest first, on srclink */
	LIST_ENTRY(source) link;	/* its hash bucket */
};

/*
 * A channel.  It owns its socket and its SSL (its bufferevent does not
 * close them: a channel can move to another worker, which makes a new
 * bufferevent for them).
 */
struct rchan {
	enum rchan_state state;		/* changed by rchan_set_state only */
	struct rchan_list *list;	/* the list its state puts it on */
	struct worker *w;		/* the worker whose loop runs it */
	evutil_socket_t fd;
	SSL *ssl;
	struct bufferevent *bev;
	struct event *timer;		/* handshake, idle or queue deadline */
	uint8_t role;
	struct group *group;
	uint32_t gid;			/* group id, kept while moving */
	struct rchan *partner;		/* R_PAIRED: its partner's points back */
	unsigned mgroup;		/* entry-point, paired: group label */
	/* Paired: what has passed from this side in this pairing. */
	int paused;			/* reading stopped: partner full */
	int opened;			/* entry-point: its OPEN passed */
	int answered;			/* reverse-proxy: its OPEN_RESULT passed */
	int fin;			/* its FIN passed */
	size_t frame_left;		/* bytes of a frame still to pass */
	time_t born;			/* monotonic seconds at accept */
	unsigned long uses;		/* user connections carried */
	struct sockaddr_storage addr;	/* the client's address */
	char peer[NETADDR_STRLEN];	/* the same, for logs */
	/* Once authenticated: the key set it was admitted under (one
	 * reference), its key's line there, the max-channels= slot it
	 * holds there (NULL: the line has no limit). */
	struct keyset *keyset;
	const struct authkey *key;
	struct limit *key_slot;
	int has_slot;			/* holds one of --max-channels */
	/* Not yet authenticated (R_HANDSHAKE, R_AUTH): on its worker's
	 * strangers and its source's list (stranger.c). */
	struct source *src;
	size_t preauth_bytes;		/* read from it so far */
	TAILQ_ENTRY(rchan) slink, srclink;
	TAILQ_ENTRY(rchan) ilink;	/* R_IDLE: its worker's idle[role] */
	TAILQ_ENTRY(rchan) qlink;	/* on c->list */
	LIST_ENTRY(rchan) link;		/* every channel of its worker */
};

/* A group as one worker sees it. */
struct group {
	struct worker *w;
	uint32_t id;
	unsigned refs;			/* channels of this group */
	struct rchan_list idle;		/* reverse-proxy channels */
	struct rchan_list waiting;	/* entry-point channels with OPEN */
	unsigned nidle, nwaiting;
	unsigned nidle_role[3];		/* R_IDLE channels, by role */
	unsigned published;		/* nwaiting, as the exchange knows it */
	unsigned arrived;		/* channels moved here, not yet told */
	unsigned mlabel;		/* its label in the metrics */
	int unused;			/* on its worker's unused list */
	LIST_ENTRY(group) link;		/* every group of its worker */
	TAILQ_ENTRY(group) unused_link;
};

/*
 * A worker: one event loop (the first one in the main thread, the others
 * in threads of their own), its own listening sockets, its own channels
 * and groups.  Only the fields under lock are touched by other threads.
 */
struct worker {
	unsigned id;
	struct event_base *base;
	LIST_HEAD(, rchan) rchans;
	LIST_HEAD(, group) groups;
	struct rchan_list dead;		/* R_DEAD, for the reaper */
	struct rchan_list idle[3];	/* R_IDLE by role, oldest first */
	struct rchan_list strangers;	/* not yet authenticated, oldest first */
	unsigned nstrangers;
	LIST_HEAD(, source) sources[RELAY_SOURCE_BUCKETS];
	TAILQ_HEAD(, group) unused;	/* groups without channels */
	struct event *reaper;
	time_t last_full_warning;
	int efd;			/* eventfd: wakes the loop */
	struct event *wake;
	pthread_t thread;
	int running;			/* thread started */
	int lock_made;			/* lock initialised */
	pthread_mutex_t lock;		/* guards the four below */
	struct rchan_list inbox;	/* R_MOVING channels moved here */
	int check;			/* another worker has OPENs waiting */
	int recheck;			/* keys reloaded: admit idle again */
	int drain;			/* the relay stops: close what is idle */
	int quit;
	int drained;			/* its drain pass is done (own thread) */
};

extern struct relay_config relay_cfg;

/* --- main.c: options --- */

/* The relay's options, with their defaults. */
struct relay_options {
	const char *host, *cert, *key, *pub;
	unsigned long port, handshake_timeout, open_timeout, idle_timeout;
	unsigned long max_channels, workers;	/* 0: derived (limits.c) */
	unsigned long drain_timeout;
	unsigned long max_handshakes, max_handshakes_source;	/* the same */
	const char *metrics;			/* --metrics: NULL, off */
	int verbose, quiet;
};

#define RELAY_NSPECS 16
#define RELAY_USAGE "relay-server [-p PORT] [--host ADDR] [-c CERT] " \
    "[-k KEY] [-a PUBKEYS] [options]"

/* The option table, pointing into o (defaults filled in). */
void option_specs(struct relay_options *o,
    struct opt_spec specs[RELAY_NSPECS]);

/* --- limits.c: the limits that follow the machine --- */

/*
 * --max-channels, --max-handshakes and --max-handshakes-per-source into
 * cfg: as given, or derived from the open-file limit (raised already) so
 * that together they fit it.
 */
void limits_derive(struct relay_config *cfg, const struct relay_options *o);

/* Say what they are and from what (and warn when they do not fit). */
void limits_log(const struct relay_config *cfg, const struct relay_options *o);

/* --- reload.c: SIGHUP --- */

/*
 * Reload on SIGHUP from now on: the options again from argv and the
 * --config file, then the certificate and key (new handshakes) and the
 * authorized keys (idle channels are admitted again; connections in
 * flight go on).  ro and o are what runs (o's storage passes to
 * reload.c).
 */
void reload_setup(struct event_base *base, int argc, char **argv,
    const struct relay_options *ro, struct opts *o);

/* Remember ctx's certificate, to say later whether a reload changed it. */
void reload_remember_cert(SSL_CTX *ctx);

/* Free what reload_setup kept. */
void reload_free(void);

/* --- channel.c: a channel's life; teardown.c: its end --- */

/* A new TCP connection on one of worker w's listening sockets. */
void rchan_accept(struct worker *w, evutil_socket_t fd,
    const struct sockaddr *peer);

/*
 * Set up a channel that another worker handed over (socket, SSL and
 * state, no bufferevent) as idle on w.
 */
void rchan_arrive(struct worker *w, struct rchan *c);

/*
 * The one place a channel's state changes: off the list of its old state,
 * onto the list of the new one (logged at -v).
 */
void rchan_set_state(struct rchan *c, enum rchan_state to);

/* Check a channel's invariants (assert; nothing in NDEBUG builds). */
void rchan_check(const struct rchan *c);

/*
 * Close c now: log fmt at level (unless fmt is NULL), take it off every
 * list and the pair, silence it, and leave it to the reaper.  Its partner,
 * if any, is closed after a flush (queue an RST for it first if it should
 * get one).  Nothing happens to a channel already R_DEAD.
 */
void rchan_close(struct rchan *c, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same, after what is queued for c has been written (bounded). */
void rchan_close_flush(struct rchan *c, enum log_level level,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* R_IDLE: read PING, an entry-point's OPEN, RETIRE; anything else
 * closes. */
void rchan_idle_read(struct rchan *c);

/* (Re)arm an idle channel's deadline (--idle-timeout).  0 or -1. */
int rchan_idle_deadline(struct rchan *c);

/* Drop c's bufferevent and timer, keeping its socket and SSL. */
void rchan_unhook(struct rchan *c);

/*
 * The relay stops: c goes unless it carries a user connection (R_PAIRED)
 * or is closing already.  An idle channel is told AUTH_RESULT "relay
 * stopping" (its client redials with backoff, as after any outage), a
 * queued OPEN (or one just read on an idle channel) OPEN_RESULT 4; one
 * not yet authenticated just closes.
 */
void rchan_drain(struct rchan *c);

/* Free c: the reaper's job (and relay_shutdown's, for the inbox). */
void rchan_free(struct rchan *c);

/* Free w's dead channels and unused groups (the reaper's event). */
void rchan_reap(struct worker *w);

const char *role_name(uint8_t role);
time_t mono_now(void);

/* --- stranger.c: connections not yet authenticated --- */

/* Why a stranger's connection ended, for the rate-limited log. */
enum stranger_end {
	STRANGER_TIMEOUT,		/* no handshake and AUTH in time */
	STRANGER_TLS,			/* TLS failed, or it closed */
	STRANGER_AUTH,			/* a bad AUTH: malformed, key, signature */
	STRANGER_EVICTED,		/* the budget was full: it was oldest */
	STRANGER_TOO_MUCH,		/* sent more than RELAY_PREAUTH_BYTES */
	STRANGER_NKINDS
};

/*
 * A new connection c (its address set, its SSL not yet made) counts
 * against w's budget of strangers: when its source's or the worker's
 * budget is full, the oldest stranger of that source (or of all) is
 * closed to make room.  Returns 0, or -1 when out of memory.
 */
int stranger_admit(struct worker *w, struct rchan *c);

/* c's TLS is set up: count what it sends until it authenticates. */
void stranger_watch(struct rchan *c);

/* c is no stranger any more (authenticated, or closing): off the lists,
 * its bytes no longer counted.  Nothing happens when it was not one. */
void stranger_leave(struct rchan *c);

/* Close stranger c for why, logging fmt only as the first of its kind in
 * STRANGER_LOG_SECONDS; the rest are counted and summed up later. */
void stranger_close(struct rchan *c, enum stranger_end why, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

/* The summary of what was not logged one by one (a timer calls it). */
void stranger_summary(void);

#define STRANGER_LOG_SECONDS 10

/* --- admit.c: AUTH --- */

/* R_AUTH: the first frame must be AUTH, checked against the authorized
 * keys; the client may have pipelined more behind it (idle frames). */
void rchan_auth_read(struct rchan *c);

/*
 * c is authenticated under an older key set than the current one (after a
 * reload): admit it again under the current set, as if it sent its AUTH
 * now.  Returns 0 (c holds the current set now, or already did), or -1
 * when its key lost its rights: c was told why (AUTH_RESULT) and closes.
 */
int admit_recheck(struct rchan *c);

/* --- creds.c: the TLS context and the key set in force --- */

/* Read an authorized-keys file into a new set (one reference, the
 * caller's).  0, or -1 with err ("path:LINE: ..."). */
int keyset_load(const char *path, struct keyset **out, char *err,
    size_t errlen);

/* The current set, with a reference for the caller (NULL: none). */
struct keyset *keyset_acquire(void);

/* Is ks the current set?  (Moments later it may not be.)  Lock-free:
 * it is asked at every pairing. */
int keyset_is_current(const struct keyset *ks);

/* Drop a reference; the last one frees the set.  NULL is fine. */
void keyset_release(struct keyset *ks);

/* Make ctx and ks current (the caller's references pass to creds.c) and
 * drop the references to the ones they replace. */
void creds_install(SSL_CTX *ctx, struct keyset *ks);

/* An SSL for a new channel, from the current context; NULL on failure. */
SSL *creds_ssl_new(void);

/* Drop the current context and set (at exit). */
void creds_free(void);

/* --- group.c: groups, the open queue, pairing, reuse --- */

/* The group with this id on w (made if needed), with one more reference;
 * NULL when out of memory. */
struct group *group_ref(struct worker *w, uint32_t id);

/* The group with this id on w, or NULL (no reference taken). */
struct group *group_find(struct worker *w, uint32_t id);

/* One reference less; a group without any is freed by the reaper. */
void group_unref(struct group *g);

/* Free g (the reaper, for a group that has no references). */
void group_free(struct group *g);

/* An entry-point's OPEN is at the front of c's input: pair, or queue. */
void group_open(struct rchan *c);

/* c's OPEN waited --open-timeout for a reverse-proxy channel: refuse it. */
void group_open_expired(struct rchan *c);

/* Pair waiting OPENs of g with idle reverse-proxy channels of g, and tell
 * the exchange what still waits. */
void group_pair(struct group *g);

/* group_pair, then offer the channels still idle to other workers (which
 * may move any of them: call it only where no idle channel of g is
 * looked at afterwards). */
void group_match(struct group *g);

/*
 * The user connection on the pair of a and b ended cleanly (FIN both
 * ways, passed on).  Each channel goes back to idle with REUSE, except
 * one that is too old, that still holds bytes (they are the old pairing's)
 * or whose socket has ended (last: it is closed by the caller).
 */
void pair_end(struct rchan *a, struct rchan *b, struct rchan *last);

/* --- forward.c: the splice of a pair --- */

/* Frame rules a pair starts with (nothing passed yet). */
void forward_start(struct rchan *c);

/*
 * Pass on what c has read to its partner (see forward.c).  last: c's
 * socket has ended (it is then never reused).
 */
void relay_forward(struct rchan *c, int last);

/* c's output drained below its low mark: its partner may read again. */
void forward_resume(struct rchan *c);

/* --- workers.c: event loops, the exchange, wake-ups --- */

/* Tell the exchange how many OPENs of g wait on g's worker. */
void group_publish(struct group *g);

/* g has idle channels and no OPEN waiting: give them to workers where
 * OPENs of g wait. */
void group_offer(struct group *g);

/* Is any OPEN waiting on another worker for a channel?  (A hint.) */
int relay_wanted(void);

/* slots.c: the counts shared by the workers, lock-free.  relay_init calls
 * relay_slots_init first. */
void relay_slots_init(unsigned max_channels);

/* A channel slot of --max-channels for a channel of role: 0, or -1 when
 * all are taken. */
int relay_slot_take(uint8_t role);
void relay_slot_give(uint8_t role);
unsigned relay_slots_used(void);
/* Slots held by channels of role now (a snapshot). */
unsigned relay_slots_of(uint8_t role);
/* A slot passes from a channel of role from to one of role to (the total
 * stays: an eviction that makes room). */
void relay_slot_pass(uint8_t from, uint8_t to);

/*
 * Set up cfg->workers workers: worker 0 runs on base (the main thread's
 * loop), the others get loops of their own.  Returns 0 or -1 (call
 * relay_shutdown either way).
 */
int relay_init(struct event_base *base, const struct relay_config *cfg);

/* The event loop of worker i, for its listening sockets. */
struct event_base *relay_worker_base(unsigned i);

/*
 * Start the workers' threads, call run(base) for worker 0 in this thread,
 * and when it returns stop and join the others.  Returns what run
 * returned, or -1 when a thread could not start.
 */
int relay_run(int (*run)(struct event_base *));

/* A new TCP connection on one of worker i's listening sockets. */
void relay_accept(unsigned i, evutil_socket_t fd, const struct sockaddr *peer);

/* A reload installed new keys: every worker admits its idle channels
 * again (admit_recheck), from its own loop. */
void relay_recheck(void);

/*
 * A graceful stop: from now on no channel is accepted or reused, and
 * every worker, from its own loop, calls stop_listening(its id) (to close
 * its listening sockets) and then rchan_drain for each of its channels.
 * Returns the user connections in flight (pairs).
 */
unsigned relay_drain(void (*stop_listening)(unsigned worker));

/* Is the relay stopping?  (Lock-free: asked at every accept and reuse.) */
int relay_draining(void);

/* The pairs in flight now (a snapshot). */
unsigned relay_pairs(void);

/* Is anything of the drain still to finish: a worker's pass, a pair, or
 * a channel writing what it holds before it closes? */
int relay_drain_busy(void);

/* rchan_set_state says so: counts the states relay_drain_busy asks. */
void relay_state_changed(enum rchan_state from, enum rchan_state to);

/* Is a channel paired, or closing with something still to write? */
int relay_channels_busy(void);

/* --- metrics.c: the relay's series (--metrics) --- */

#define RELAY_METRICS_GROUPS 64		/* group labels; the rest "other" */

enum relay_limit {
	RELAY_LIMIT_CHANNELS,		/* --max-channels */
	RELAY_LIMIT_HANDSHAKES,		/* --max-handshakes */
	RELAY_LIMIT_HANDSHAKES_SOURCE,	/* --max-handshakes-per-source */
	RELAY_LIMIT_WAITING,		/* RELAY_WAIT_MAX OPENs queued */
	RELAY_LIMIT_OPEN_TIMEOUT,	/* --open-timeout */
	RELAY_LIMIT_N
};

/* Register the series (before the workers run); 0 or -1.  Free them
 * (after the workers are gone): every call below does nothing again. */
int relay_metrics_init(void);
void relay_metrics_free(void);
/* The label of group id (claimed if new; any thread). */
unsigned relay_metrics_group(uint32_t id);
/* A TCP connection accepted (a channel in R_HANDSHAKE). */
void relay_metrics_accepted(void);
/* c goes from one state to another (rchan_set_state). */
void relay_metrics_state(struct rchan *c, enum rchan_state from,
    enum rchan_state to);
/* n bytes passed from a channel of role to its partner. */
void relay_metrics_bytes(uint8_t role, size_t n);
/* A TLS handshake done on ssl (full or resumed). */
void relay_metrics_handshake(SSL *ssl);
/* An AUTH_RESULT code sent; an OPEN_RESULT code sent by the relay. */
void relay_metrics_auth(uint8_t code);
void relay_metrics_open(uint8_t code);
/* A stranger closed, and why. */
void relay_metrics_stranger(enum stranger_end why);
/* A limit refused or closed something. */
void relay_metrics_limit(enum relay_limit limit);
/* A reload worked (ok 1) or failed. */
void relay_metrics_reload(int ok);

/* Close every channel and free the workers (after relay_run). */
void relay_shutdown(void);

#endif
