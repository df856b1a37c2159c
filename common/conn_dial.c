/*
 * conn_dial: the reverse-proxy's side of an OPEN.  The destination is
 * checked against the allow-list before anything is dialled: an IP literal
 * by the address rules; a name by the name rules, and otherwise each
 * address it resolves to by the address rules, just before that address is
 * dialled (so that DNS cannot lead around the list).  Then each allowed
 * address is tried in turn, connect_timeout seconds each; the first that
 * connects gets OPEN_RESULT ok and the splice (conn.c) starts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>

#include "allow.h"
#include "batch.h"
#include "conn_internal.h"
#include "frame.h"
#include "log.h"
#include "netaddr.h"
#include "wire.h"

static void try_next_address(struct conn *c);
static void open_not_allowed(struct conn *c, const char *why);

/* The destination could not be reached at all: say why, to the log and
 * to the entry-point, and close. */
static void
open_failed(struct conn *c, uint8_t code, const char *why)
{
	char text[OPEN_RESULT_TEXT_MAX + 1];

	snprintf(text, sizeof(text), "%s:%u: %s", c->open.host, c->open.port,
	    why);
	log_info("%s: %s", c->label, why);
	open_result_send(c, code, text);
	conn_close(c, 0, 1);
}

/* The allow-list said no (about address, when it was one of the name's):
 * a warning naming the claimed source, the destination and the rules. */
static void
open_not_allowed(struct conn *c, const char *why)
{
	char rules[512], text[OPEN_RESULT_TEXT_MAX + 1];

	allow_describe(c->allow, rules, sizeof(rules));
	log_warnx("%s: refused: %s (source as the entry-point claims it; "
	    "--allow %s)", c->label, why, rules);
	snprintf(text, sizeof(text), "%s:%u: %s", c->open.host, c->open.port,
	    why);
	open_result_send(c, OPEN_NOT_ALLOWED, text);
	conn_close(c, 0, 1);
}

void
dest_connect_event(struct conn *c, short what, int err)
{
	if (what & BEV_EVENT_CONNECTED) {
		(void)netaddr_set_nodelay(bufferevent_getfd(c->plain));
		bufferevent_set_timeouts(c->plain, NULL, NULL);
		log_debug("%s: connected to %s:%u", c->label, c->open.host,
		    c->open.port);
		open_result_send(c, OPEN_OK, "");
		c->state = CONN_OPEN;
		if (bufferevent_enable(c->plain, EV_WRITE) == -1 ||
		    plain_read_start(c) == -1 ||
		    bufferevent_enable(c->channel, EV_READ) == -1) {
			conn_close(c, 1, 1);
			return;
		}
		channel_process(c);
		return;
	}
	/* This address failed: try the next one, if any. */
	bufferevent_free(c->plain);
	c->plain = NULL;
	c->dial_error = (what & BEV_EVENT_TIMEOUT) ? ETIMEDOUT : err;
	try_next_address(c);
}

/* Every address has been tried or refused: say how the open failed. */
static void
no_address_left(struct conn *c)
{
	if (!c->dialled && c->addrs_refused > 0)
		/* Nothing dialled: every address was refused. */
		open_not_allowed(c, c->addrs_refused == 1 ? "its address is "
		    "not allowed" : "none of its addresses is allowed");
	else if (c->dial_error == ETIMEDOUT)
		open_failed(c, OPEN_UNREACHABLE, "connect timed out");
	else
		/* (A refused connect is never immediate: it comes as an
		 * event.) */
		open_failed(c, c->dial_error == ECONNREFUSED ? OPEN_REFUSED :
		    OPEN_UNREACHABLE, c->dial_error != 0 ?
		    evutil_socket_error_to_string(c->dial_error) :
		    "no address");
}

/* May c dial ai?  Every address is checked unless a name rule allows the
 * name itself, both asked of the list as it is now (a reload may have
 * swapped it while the name resolved). */
static int
address_allowed(struct conn *c, const struct evutil_addrinfo *ai)
{
	char where[NETADDR_STRLEN];

	if (allow_name(c->allow, c->open.host, c->open.port) ||
	    allow_address(c->allow, ai->ai_addr, c->open.port))
		return 1;
	netaddr_format(ai->ai_addr, where);
	log_debug("%s: address %s not allowed", c->label, where);
	c->addrs_refused++;
	return 0;
}

/*
 * Connect to the next allowed address in c->next_addr.  A failure that
 * comes later reaches dest_connect_event, which calls here again for the
 * address after (or for the verdict, when none is left).  bufferevent_socket_connect reports some failures only by
 * returning -1, with no event to follow (socket() out of descriptors,
 * connect() failing at once): those move on to the next address here, and
 * after the last one the open fails.
 */
static void
try_next_address(struct conn *c)
{
	struct timeval tv = { (time_t)c->connect_timeout, 0 };
	struct evutil_addrinfo *ai;

	while ((ai = c->next_addr) != NULL) {
		c->next_addr = ai->ai_next;
		if (!address_allowed(c, ai))
			continue;
		c->dialled = 1;
		c->plain = bufferevent_socket_new(c->base, -1,
		    BEV_OPT_CLOSE_ON_FREE);
		if (c->plain == NULL) {
			open_failed(c, OPEN_UNREACHABLE, "out of memory");
			return;
		}
		bufferevent_setcb(c->plain, NULL, plain_write_cb,
		    plain_event_cb, c);
		bufferevent_set_max_single_write(c->plain, WIRE_HIGH_WATER);
		bufferevent_setwatermark(c->plain, EV_WRITE, WIRE_LOW_WATER,
		    0);
		bufferevent_set_timeouts(c->plain, NULL, &tv);
		if (bufferevent_socket_connect(c->plain, ai->ai_addr,
		    (int)ai->ai_addrlen) == 0)
			return;
		c->dial_error = EVUTIL_SOCKET_ERROR();
		bufferevent_free(c->plain);
		c->plain = NULL;
	}
	no_address_left(c);
}

static void
resolved_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct conn *c = arg;

	if (result == EVUTIL_EAI_CANCEL)
		return;		/* c is being freed */
	c->dns_req = NULL;
	if (c->state != CONN_RESOLVING) {
		/* c closed while the lookup ran (its channel ended, say) and
		 * waits to be freed: the answer has no use. */
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	if (result != 0 || res == NULL) {
		open_failed(c, OPEN_RESOLVE_FAILED, evutil_gai_strerror(
		    result));
		return;
	}
	c->addrs = c->next_addr = res;
	c->state = CONN_CONNECTING;
	try_next_address(c);
}

/* Names under .invalid never resolve (RFC 6761): fail at once. */
static int
name_is_invalid(const char *host)
{
	size_t n = strlen(host);

	if (n > 0 && host[n - 1] == '.')
		n--;
	return (n == 7 && strncasecmp(host, "invalid", 7) == 0) ||
	    (n > 7 && strncasecmp(host + n - 8, ".invalid", 8) == 0);
}

/* The OPEN at the front of the channel's input, decoded into c->open.
 * Returns 0, or -1 when c closed. */
static int
read_open(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->channel);
	uint8_t payload[FRAME_CONTROL_MAX];
	struct frame_header h;
	char err[FRAME_ERRLEN];
	int r;

	/* The pool handed over a channel with a whole frame buffered. */
	if ((r = frame_peek(in, &h, err, sizeof(err))) != 1 ||
	    h.type != FRAME_OPEN) {
		log_warnx("protocol error: relay sent %s where OPEN was "
		    "expected", r == 1 ? frame_type_name(h.type) : "junk");
		conn_close(c, 1, 0);
		return -1;
	}
	(void)evbuffer_drain(in, FRAME_HEADER_LEN);
	if (evbuffer_remove(in, payload, h.length) != (int)h.length ||
	    open_msg_decode(payload, h.length, &c->open, err, sizeof(err)) ==
	    -1) {
		log_warnx("protocol error: %s", err);
		open_result_send(c, OPEN_BAD_REQUEST, err);
		conn_close(c, 0, 0);
		return -1;
	}
	return 0;
}

/*
 * The checks before any lookup or dial.  Returns 1 when c may go on (an
 * allowed literal, or a name: its addresses are checked as they come), 0
 * when c was refused and closed.
 */
static int
destination_check(struct conn *c)
{
	int literal;

	if (allow_literal(c->allow, c->open.host, c->open.port, &literal))
		return 1;
	if (literal) {
		open_not_allowed(c, "not allowed");
		return 0;
	}
	return 1;		/* a name: checked with each address */
}

void
conn_new_reverse(struct event_base *base, struct evdns_base *dns,
    struct bufferevent *channel, const struct allow_list *allow,
    unsigned connect_timeout, conn_end_cb *end_cb, void *end_arg)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	char port[8];
	struct conn *c;

	if ((c = conn_alloc(base, ROLE_REVERSE, 0, end_cb, end_arg)) == NULL) {
		batch_free(channel);
		if (end_cb != NULL)
			end_cb(end_arg, NULL);
		return;
	}
	c->dns = dns;
	c->allow = allow;
	c->connect_timeout = connect_timeout;
	c->state = CONN_RESOLVING;
	channel_setup(c, channel);
	snprintf(c->label, sizeof(c->label), "channel");
	if (read_open(c) == -1)
		return;
	snprintf(c->label, sizeof(c->label), "%s -> %s:%u", c->open.source,
	    c->open.host, c->open.port);
	log_debug("%s: OPEN", c->label);
	/* Data behind OPEN waits in the channel's input until the
	 * destination is connected (channel_process reads nothing before;
	 * the read high-water mark bounds it).  Reading stays on: turning it
	 * off and on costs two epoll_ctl per connection. */
	if (!destination_check(c))
		return;
	if (name_is_invalid(c->open.host)) {
		open_failed(c, OPEN_RESOLVE_FAILED, "name under .invalid");
		return;
	}
	snprintf(port, sizeof(port), "%u", c->open.port);
	if (evutil_getaddrinfo(c->open.host, port, &(struct evutil_addrinfo){
	    .ai_flags = EVUTIL_AI_NUMERICHOST, .ai_socktype = SOCK_STREAM,
	    .ai_protocol = IPPROTO_TCP }, &c->addrs) == 0) {
		c->next_addr = c->addrs;
		c->state = CONN_CONNECTING;
		try_next_address(c);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	/* The callback may run before evdns_getaddrinfo returns. */
	req = evdns_getaddrinfo(dns, c->open.host, port, &hints, resolved_cb,
	    c);
	/* NULL: the callback has run already and c may be gone. */
	if (req != NULL)
		c->dns_req = req;
}
