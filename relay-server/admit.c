/*
 * admit: who gets in.  A channel's first frame is AUTH (PROTOCOL.md): the
 * key must be one of the relay's authorized keys (-a, common/authkeys.c),
 * the signature must cover this TLS session, and the key's line must
 * allow the role, the group and the client's address it asks with, and
 * have room under its max-channels=.  Anything else is answered with the
 * reason's AUTH_RESULT code and one log line, and the channel closes.
 *
 * The signature is checked before the key's rights, so that nobody
 * without the key learns what its line allows.  After a reload, a channel
 * admitted under the old keys is admitted again when it is next idle
 * (admit_recheck): refused, it gets the same AUTH_RESULT codes.
 */
#include "relay.h"

#include <sys/ioctl.h>

#include <stdarg.h>
#include <stdio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "frame.h"
#include "tls.h"
#include "wire.h"

/* Refuse AUTH: answer code, log why, close after the answer. */
static void
auth_refuse(struct rchan *c, uint8_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
auth_refuse(struct rchan *c, uint8_t code, const char *fmt, ...)
{
	char why[FRAME_ERRLEN + 2 * SSHKEY_COMMENT_MAX + 256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	(void)wire_send_auth_result(c->bev, code);
	relay_metrics_auth(code);
	/* A stranger without a known key (or without the key's signature)
	 * is anyone: rate-limited.  A refusal of a key's rights is its
	 * owner's business: logged each time (the client backs off). */
	if (c->src != NULL && code < AUTH_ROLE_DENIED && code != AUTH_BUSY)
		stranger_close(c, STRANGER_AUTH, "%s: authentication failed: "
		    "%s", c->peer, why);
	else
		rchan_close_flush(c, LOG_LEVEL_INFO, "%s: authentication %s: "
		    "%s", c->peer, code >= AUTH_ROLE_DENIED ? "refused" :
		    "failed", why);
}

/* The AUTH_RESULT code of a refusal (a switch, so that a new verdict
 * without a code is a compiler warning, never an OK sent by mistake). */
static uint8_t
verdict_code(enum authkey_verdict v)
{
	switch (v) {
	case AUTHKEY_ROLE:
		return AUTH_ROLE_DENIED;
	case AUTHKEY_GROUP:
		return AUTH_GROUP_DENIED;
	case AUTHKEY_SOURCE:
		return AUTH_SOURCE_DENIED;
	case AUTHKEY_OK:
		break;
	}
	return AUTH_MALFORMED;	/* not reached: the caller refuses only */
}

/* Does k's line allow role and group from c's address?  Returns 0, or
 * -1 after refusing (when: "" or "after a reload: ", for the log). */
static int
rights_check(struct rchan *c, const struct authkey *k, uint8_t role,
    uint32_t group, const char *when)
{
	char label[SSHKEY_FINGERPRINT_LEN + SSHKEY_COMMENT_MAX + 4];
	char rules[256];
	enum authkey_verdict v;

	v = authkey_check(k, role, group, (struct sockaddr *)&c->addr);
	if (v == AUTHKEY_OK)
		return 0;
	authkey_label(k, label, sizeof(label));
	authkey_describe(k, rules, sizeof(rules));
	auth_refuse(c, verdict_code(v), "%s%s: key %s asked to be %s in group "
	    "%u; line %u of its file allows %s", when, authkey_verdict_text(v),
	    label, role_name(role), group, k->line, rules);
	return -1;
}

/* Take one of the key's channels (max-channels=) for c, unless c holds
 * one already (the count is the key's, across reloads).  0, or -1 after
 * refusing. */
static int
slot_take(struct rchan *c, struct keyset *ks, const struct authkey *k,
    const char *when)
{
	struct limit *slot = ks->slots[k - ks->keys.keys];
	char label[SSHKEY_FINGERPRINT_LEN + SSHKEY_COMMENT_MAX + 4];

	if (k->max_channels == 0) {
		if (c->key_slot != NULL)	/* the line lost its limit */
			limit_give(c->key_slot);
		c->key_slot = NULL;
		return 0;
	}
	if (c->key_slot != NULL)
		return 0;		/* the same key, the same count */
	if (limit_take(slot) == -1) {
		authkey_label(k, label, sizeof(label));
		auth_refuse(c, AUTH_KEY_FULL, "%s%s: key %s holds %u channels "
		    "(max-channels=%u, line %u)", when,
		    auth_code_text(AUTH_KEY_FULL), label, limit_used(slot),
		    k->max_channels, k->line);
		return -1;
	}
	c->key_slot = slot;		/* given back by rchan_free */
	return 0;
}

/*
 * Has v's client sent what the relay has not read yet: an OPEN on its way
 * (the entry-point took v while the relay chose it, often: both take the
 * oldest)?  Closing it would cost that user connection ("relay busy").
 */
static int
about_to_be_used(const struct rchan *v)
{
	int unread = 0;

	if (evbuffer_get_length(bufferevent_get_input(v->bev)) > 0 ||
	    (v->ssl != NULL && SSL_has_pending(v->ssl)))
		return 1;
	return ioctl(bufferevent_getfd(v->bev), FIONREAD, &unread) == 0 &&
	    unread > 0;
}

/*
 * At --max-channels: the idle channel to close so that a channel of role
 * in group gid gets its slot, or NULL.  The budget is shared fairly, so
 * that idle pool channels never starve the other role or another group:
 * a role that holds less than half of it takes the oldest idle channel of
 * the other role; within a role, a group takes the oldest idle channel of
 * a group that has at least two idle channels more than it; never one
 * its client is using already (about_to_be_used).  Only this worker's
 * channels are looked at (SO_REUSEPORT spreads clients evenly).
 */
static struct rchan *
fair_victim(struct worker *w, uint8_t role, uint32_t gid)
{
	uint8_t other = role == ROLE_ENTRY ? ROLE_REVERSE : ROLE_ENTRY;
	struct group *mine = group_find(w, gid);
	unsigned have = mine != NULL ? mine->nidle_role[role] : 0;
	struct rchan *v;

	if (relay_slots_of(role) < relay_cfg.max_channels / 2)
		TAILQ_FOREACH(v, &w->idle[other], ilink)
			if (!about_to_be_used(v))
				return v;
	TAILQ_FOREACH(v, &w->idle[role], ilink)
		if (v->group != mine && v->group->nidle_role[role] >= have + 2 &&
		    !about_to_be_used(v))
			return v;
	return NULL;
}

/* One of --max-channels for c, now that it is authenticated (strangers
 * have a budget of their own), as role in group gid: taken, or passed
 * from an idle channel closed to make room (fair_victim).  0, or -1 after
 * refusing (relay busy). */
static int
channel_slot_take(struct rchan *c, uint8_t role, uint32_t gid)
{
	struct rchan *v;
	time_t now;

	if (relay_slot_take(role) == 0) {
		c->has_slot = 1;	/* given back by rchan_free */
		return 0;
	}
	if ((v = fair_victim(c->w, role, gid)) != NULL) {
		v->has_slot = 0;
		relay_slot_pass(v->role, role);
		c->has_slot = 1;
		/* Its client takes it as a refusal and backs off. */
		(void)wire_send_auth_result(v->bev, AUTH_BUSY);
		relay_metrics_auth(AUTH_BUSY);
		relay_metrics_limit(RELAY_LIMIT_CHANNELS);
		rchan_close_flush(v, LOG_LEVEL_DEBUG, "%s: idle %s channel of "
		    "group %u closed to make room (--max-channels) for a %s "
		    "of group %u", v->peer, role_name(v->role), v->gid,
		    role_name(role), gid);
		return 0;
	}
	now = mono_now();
	if (now != c->w->last_full_warning) {
		log_warnx("%u channels open (--max-channels): refusing %s",
		    relay_slots_used(), c->peer);
		c->w->last_full_warning = now;
	}
	(void)wire_send_auth_result(c->bev, AUTH_BUSY);
	relay_metrics_auth(AUTH_BUSY);
	relay_metrics_limit(RELAY_LIMIT_CHANNELS);
	rchan_close_flush(c, LOG_LEVEL_DEBUG, NULL);
	return -1;
}

int
admit_recheck(struct rchan *c)
{
	char fpr[SSHKEY_FINGERPRINT_LEN + SSHKEY_COMMENT_MAX + 4];
	const char *when = "after a reload: ";
	const struct authkey *k;
	struct keyset *ks;

	if (c->keyset == NULL || keyset_is_current(c->keyset))
		return 0;
	if ((ks = keyset_acquire()) == NULL)
		return 0;		/* exiting */
	if ((k = authkeys_find(&ks->keys, c->key->pk)) == NULL) {
		authkey_label(c->key, fpr, sizeof(fpr));
		keyset_release(ks);
		auth_refuse(c, AUTH_UNKNOWN_KEY, "%skey %s is no longer in the "
		    "authorized keys", when, fpr);
		return -1;
	}
	if (rights_check(c, k, c->role, c->gid, when) == -1 ||
	    slot_take(c, ks, k, when) == -1) {
		keyset_release(ks);
		return -1;
	}
	/* Admitted again, under the current set. */
	keyset_release(c->keyset);
	c->keyset = ks;
	c->key = k;
	return 0;
}

/* AUTH, whole at the front of c's input.  Returns 0 when c is now
 * authenticated and idle, -1 when it was refused (and closes). */
static int
auth_check(struct rchan *c, const struct frame_header *h)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	uint8_t payload[FRAME_CONTROL_MAX];
	uint8_t exporter[AUTH_EXPORTER_LEN];
	char fpr[SSHKEY_FINGERPRINT_LEN];
	char label[SSHKEY_FINGERPRINT_LEN + SSHKEY_COMMENT_MAX + 4];
	char err[FRAME_ERRLEN];
	const struct authkey *k;
	struct keyset *ks;
	struct auth_msg m;

	if (h->type != FRAME_AUTH) {
		auth_refuse(c, AUTH_MALFORMED, "%s instead of AUTH",
		    frame_type_name(h->type));
		return -1;
	}
	(void)evbuffer_drain(in, FRAME_HEADER_LEN);
	if (evbuffer_remove(in, payload, h->length) != (int)h->length) {
		auth_refuse(c, AUTH_MALFORMED, "AUTH truncated");
		return -1;
	}
	if (auth_msg_decode(payload, h->length, &m, err, sizeof(err)) == -1) {
		auth_refuse(c, m.version != PROTOCOL_VERSION ?
		    AUTH_BAD_VERSION : AUTH_MALFORMED, "%s", err);
		return -1;
	}
	if ((ks = keyset_acquire()) == NULL ||
	    (k = authkeys_find(&ks->keys, m.pubkey)) == NULL) {
		keyset_release(ks);
		sshkey_fingerprint(m.pubkey, fpr);
		auth_refuse(c, AUTH_UNKNOWN_KEY, "%s (key %s)",
		    auth_code_text(AUTH_UNKNOWN_KEY), fpr);
		return -1;
	}
	authkey_label(k, label, sizeof(label));
	if (tls_exporter(c->ssl, exporter) == -1 || auth_verify(m.pubkey,
	    m.role, m.group, exporter, m.sig) != 0) {
		keyset_release(ks);
		auth_refuse(c, AUTH_BAD_SIGNATURE, "%s (key %s)",
		    auth_code_text(AUTH_BAD_SIGNATURE), label);
		return -1;
	}
	c->role = m.role;		/* the slot counts by role */
	if (rights_check(c, k, m.role, m.group, "") == -1 ||
	    channel_slot_take(c, m.role, m.group) == -1 ||
	    slot_take(c, ks, k, "") == -1) {
		keyset_release(ks);
		return -1;
	}
	c->keyset = ks;		/* released by rchan_free */
	c->key = k;
	if ((c->group = group_ref(c->w, m.group)) == NULL) {
		rchan_close_flush(c, LOG_LEVEL_QUIET, "%s: out of memory",
		    c->peer);
		return -1;
	}
	c->role = m.role;
	c->gid = m.group;
	if (rchan_idle_deadline(c) == -1) {
		rchan_close_flush(c, LOG_LEVEL_QUIET, "%s: cannot arm the idle "
		    "timer", c->peer);
		return -1;
	}
	/* The answer stays queued until this callback is over, so the
	 * channel cannot move to another worker meanwhile (see
	 * rchan_auth_read). */
	if (wire_send_auth_result(c->bev, AUTH_OK) == -1) {
		rchan_close(c, LOG_LEVEL_QUIET, "%s: out of memory", c->peer);
		return -1;
	}
	relay_metrics_auth(AUTH_OK);
	log_debug("%s: %s authenticated, group %u, key %s", c->peer,
	    role_name(c->role), m.group, label);
	rchan_set_state(c, R_IDLE);	/* no stranger any more */
	tls_read_ahead(c->ssl);
	return 0;
}

void
rchan_auth_read(struct rchan *c)
{
	struct frame_header h;
	char err[FRAME_ERRLEN];
	int r;

	r = frame_peek(bufferevent_get_input(c->bev), &h, err, sizeof(err));
	if (r == 0) {
		tls_kick(c->bev);
		return;
	}
	if (r == -1) {
		auth_refuse(c, AUTH_MALFORMED, "%s", err);
		return;
	}
	if (auth_check(c, &h) == -1)
		return;
	if (c->role == ROLE_REVERSE) {
		/* An OPEN may wait for it.  Pair only: offering it to another
		 * worker is for its write callback, once AUTH_RESULT has left;
		 * it stays on this worker while this callback looks at it. */
		group_pair(c->group);
		if (c->state != R_IDLE)
			return;		/* paired (or closed): forwarded */
	}
	rchan_idle_read(c);
}
