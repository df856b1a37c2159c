#include "metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"

/* A connection evhttp accepted, counted until evhttp closes it or its
 * lifetime ends.  It holds a reference on the bufferevent, so the pointer
 * (and the descriptor, closed with the bufferevent's last reference) stays
 * valid for as long as the entry lives, whoever freed the connection. */
struct mconn {
	struct metrics_http *h;
	struct bufferevent *bev;
	struct event *deadline;		/* first at once (arm), then the end */
	int armed;
	LIST_ENTRY(mconn) link;
};

struct metrics_http {
	struct evhttp *http;
	struct evconnlistener *listener;	/* the evhttp's (it frees it) */
	struct event *resume;		/* after an accept error: again */
	LIST_HEAD(, mconn) conns;
	unsigned nconns;		/* on conns */
	int full;			/* nconns reached the cap: paused */
	int erred;			/* accept failed: paused a second */
	int closing;			/* metrics_http_free: evhttp_free runs */
	int listed;			/* on servers */
	time_t error_logged;
	LIST_ENTRY(metrics_http) link;	/* on servers */
};

/* Every server started (the daemon's main thread only): the listener's
 * error callback gets evhttp's argument, not ours, and finds its server
 * here. */
static LIST_HEAD(, metrics_http) servers = LIST_HEAD_INITIALIZER(servers);

int
metrics_http_parse(const char *text, struct metrics_addr *a, char *err,
    size_t errlen)
{
	char host[NETADDR_STRLEN];
	const char *port_text;
	struct addrinfo hints, *res;
	struct in6_addr probe;		/* room for either family */
	uint16_t port;
	int r;

	memset(a, 0, sizeof(*a));
	if (text == NULL)
		return 0;
	if (strchr(text, ':') == NULL) {	/* a bare port: loopback */
		snprintf(host, sizeof(host), "127.0.0.1");
		port_text = text;
	} else if (netaddr_split_hostport(text, host, sizeof(host),
	    &port_text, err, errlen) == -1)
		return -1;
	if (netaddr_parse_port(port_text, &port) == -1) {
		snprintf(err, errlen, "'%s': not [ADDRESS:]PORT (a port "
		    "0..65535, an IP address, IPv6 in brackets)", text);
		return -1;
	}
	/* Dotted quads only (getaddrinfo would take inet_aton's "0", "1"
	 * or octal "017.0.0.1"); IPv6 only in brackets. */
	if (inet_pton(text[0] == '[' ? AF_INET6 : AF_INET, host, &probe) !=
	    1) {
		snprintf(err, errlen, "'%s': '%s' is not an %s address", text,
		    host, text[0] == '[' ? "IPv6" : "IPv4 (a.b.c.d)");
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_NUMERICHOST;
	hints.ai_socktype = SOCK_STREAM;
	if ((r = getaddrinfo(host, NULL, &hints, &res)) != 0) {
		snprintf(err, errlen, "'%s': '%s' is not an IP address (%s)",
		    text, host, gai_strerror(r));
		return -1;
	}
	memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
	a->len = res->ai_addrlen;
	freeaddrinfo(res);
	if (a->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
	return 0;
}

int
metrics_addr_equal(const struct metrics_addr *a, const struct metrics_addr *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(&a->ss, &b->ss,
	    a->len) == 0);
}

static void
reply(struct evhttp_request *req)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evbuffer *body;
	char length[32];

	if (path == NULL || strcmp(path, "/metrics") != 0) {
		evhttp_send_error(req, HTTP_NOTFOUND, "Not Found");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		/* (evhttp_send_error would drop the Allow header.) */
		if (evhttp_add_header(headers, "Allow", "GET, HEAD") == -1 ||
		    evhttp_add_header(headers, "Connection", "close") == -1)
			evhttp_send_error(req, HTTP_BADMETHOD, NULL);
		else
			evhttp_send_reply(req, HTTP_BADMETHOD,
			    "Method Not Allowed", NULL);
		return;
	}
	if ((body = evbuffer_new()) == NULL || metrics_render(body) == -1 ||
	    evhttp_add_header(headers, "Content-Type",
	    METRICS_CONTENT_TYPE) == -1) {
		log_warnx("metrics: out of memory");
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
	} else if (cmd == EVHTTP_REQ_HEAD) {
		/* 2.1.12 would send the body after a HEAD's headers: the
		 * length only. */
		snprintf(length, sizeof(length), "%zu",
		    evbuffer_get_length(body));
		if (evhttp_add_header(headers, "Content-Length", length) == -1)
			evhttp_send_error(req, HTTP_INTERNAL, NULL);
		else
			evhttp_send_reply(req, HTTP_OK, "OK", NULL);
	} else {
		evhttp_send_reply(req, HTTP_OK, "OK", body);
	}
	if (body != NULL)
		evbuffer_free(body);
}

static void
listener_update(struct metrics_http *h)
{
	if (h->closing)
		return;		/* evhttp_free has freed the listener */
	if (h->full || h->erred)
		(void)evconnlistener_disable(h->listener);
	else if (evconnlistener_enable(h->listener) == -1)
		log_warnx("metrics: cannot accept again");
}

/* The connection is no longer counted: its reference goes (the last one
 * when evhttp is done with it: the descriptor closes then). */
static void
mconn_release(struct mconn *m)
{
	struct metrics_http *h = m->h;

	LIST_REMOVE(m, link);
	h->nconns--;
	event_free(m->deadline);
	bufferevent_decref(m->bev);
	free(m);
	if (h->full && h->nconns < METRICS_HTTP_CONNS) {
		h->full = 0;
		listener_update(h);
	}
}

static struct mconn *
mconn_of(struct metrics_http *h, struct bufferevent *bev)
{
	struct mconn *m;

	LIST_FOREACH(m, &h->conns, link)
		if (m->bev == bev)
			return m;
	return NULL;
}

/* evhttp frees a connection (any: the callback is set when it is
 * armed, and again at each request). */
static void
closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct metrics_http *h = arg;
	struct mconn *m = mconn_of(h, evhttp_connection_get_bufferevent(evcon));

	if (m != NULL)
		mconn_release(m);
}

/*
 * evhttp's connection of bev, or NULL once evhttp has let go of it.
 * libevent 2.1.12 has no callback at accept that names the connection;
 * but evhttp gives each bufferevent of its connections the connection as
 * its callbacks' argument (http.c, evhttp_connection_base_bufferevent_new
 * and evhttp_start_read_), and bufferevent_free clears the callbacks.
 */
static struct evhttp_connection *
evcon_of(struct bufferevent *bev)
{
	bufferevent_event_cb eventcb = NULL;
	void *cbarg = NULL;

	bufferevent_getcb(bev, NULL, NULL, &eventcb, &cbarg);
	return eventcb != NULL ? cbarg : NULL;
}

/*
 * First, on the loop's next turn (evhttp has made the connection by
 * then): its close callback, so that the count ends when evhttp frees it,
 * and the lifetime.  Not the client's close: one that half-closes and
 * reads its replies slowly keeps evhttp writing, and must stay counted
 * (counting it out at EPOLLRDHUP let any number of them hold descriptors).
 * Then, METRICS_HTTP_LIFETIME seconds after the accept (evhttp's own
 * timeout is reset by every byte, so a request trickled in, or replies
 * read a trickle at a time, would keep the connection for hours): evhttp
 * is told of an end of file, as if the client had closed, and frees the
 * connection; one it freed already has no callbacks left and hears
 * nothing.
 */
static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mconn *m = arg;
	struct timeval life = { METRICS_HTTP_LIFETIME, 0 };
	struct evhttp_connection *evcon;
	struct bufferevent *bev;

	(void)fd;
	(void)what;
	if (!m->armed) {
		m->armed = 1;
		if ((evcon = evcon_of(m->bev)) == NULL) {
			mconn_release(m);	/* evhttp is done with it */
			return;
		}
		evhttp_connection_set_closecb(evcon, closed_cb, m->h);
		if (evtimer_add(m->deadline, &life) == 0)
			return;
	}
	/* Released first: the end of file may make evhttp free the
	 * connection at once, and its close callback (set when it was armed)
	 * would release m too.  A reference of its own keeps bev alive. */
	bev = m->bev;
	bufferevent_incref(bev);
	mconn_release(m);
	bufferevent_trigger_event(bev, BEV_EVENT_EOF | BEV_EVENT_READING, 0);
	bufferevent_decref(bev);
}

static void
request_cb(struct evhttp_request *req, void *arg)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);

	if (evcon != NULL)
		evhttp_connection_set_closecb(evcon, closed_cb, arg);
	reply(req);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_http *h = arg;

	(void)fd;
	(void)what;
	h->erred = 0;
	listener_update(h);
}

/* accept failed (out of descriptors, most likely): pause a second, as
 * common/listener.c does, instead of trying again at once forever. */
static void
accept_error_cb(struct evconnlistener *evl, void *arg)
{
	int saved = errno;
	struct metrics_http *h;
	struct timeval tv = { 1, 0 };
	time_t now = time(NULL);

	(void)arg;		/* evhttp's */
	LIST_FOREACH(h, &servers, link)
		if (h->listener == evl)
			break;
	if (h == NULL) {
		(void)evconnlistener_disable(evl);	/* cannot be */
		return;
	}
	if (now - h->error_logged >= 10) {
		h->error_logged = now;
		log_warnx("metrics: accept: %s; paused for 1 s",
		    strerror(saved));
	}
	h->erred = 1;
	listener_update(h);
	if (evtimer_add(h->resume, &tv) == -1) {
		h->erred = 0;
		listener_update(h);
	}
}

/*
 * evhttp asks for the bufferevent of each connection it accepts: the
 * place to count them.  At METRICS_HTTP_CONNS the listener pauses until
 * one ends (the kernel's backlog holds the rest).  The read high
 * watermark keeps evhttp from reading more than a request's worth ahead
 * while a reply is queued (pipelined requests would pile up otherwise).
 */
static struct bufferevent *
bev_cb(struct event_base *base, void *arg)
{
	struct metrics_http *h = arg;
	struct timeval now = { 0, 0 };
	struct bufferevent *bev;
	struct mconn *m;

	if ((bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)) ==
	    NULL)
		return NULL;
	bufferevent_setwatermark(bev, EV_READ, 0, 2 * METRICS_HTTP_HEADERS_MAX);
	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (m->deadline = evtimer_new(base, deadline_cb, m)) == NULL ||
	    evtimer_add(m->deadline, &now) == -1) {
		/* Not counted, and no deadline of ours: evhttp's timeout
		 * still holds.  (Out of memory only.) */
		log_warnx("metrics: out of memory");
		if (m != NULL && m->deadline != NULL)
			event_free(m->deadline);
		free(m);
		return bev;
	}
	m->h = h;
	m->bev = bev;
	bufferevent_incref(bev);
	LIST_INSERT_HEAD(&h->conns, m, link);
	if (++h->nconns >= METRICS_HTTP_CONNS && !h->full) {
		h->full = 1;
		listener_update(h);
		log_debug("metrics: %u connections open: accepting again when "
		    "one ends", h->nconns);
	}
	return bev;
}

struct metrics_http *
metrics_http_start(struct event_base *base, const struct metrics_addr *a,
    char *err, size_t errlen)
{
	struct evhttp_bound_socket *bound;
	struct sockaddr_storage ss;
	char name[NETADDR_STRLEN];
	struct metrics_http *h;
	socklen_t len = sizeof(ss);
	int fd;

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((h->http = evhttp_new(base)) == NULL ||
	    (h->resume = evtimer_new(base, resume_cb, h)) == NULL) {
		snprintf(err, errlen, "cannot set up the HTTP server");
		goto err1;
	}
	if ((fd = netaddr_listen((const struct sockaddr *)&a->ss, a->len, 0,
	    err, errlen)) == -1)
		goto err1;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		memcpy(&ss, &a->ss, a->len);
	if ((h->listener = evconnlistener_new(base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd)) == NULL) {
		close(fd);
		snprintf(err, errlen, "cannot set up the listener");
		goto err1;
	}
	evconnlistener_set_error_cb(h->listener, accept_error_cb);
	if ((bound = evhttp_bind_listener(h->http, h->listener)) == NULL) {
		evconnlistener_free(h->listener);
		snprintf(err, errlen, "cannot set up the HTTP server");
		goto err1;
	}
	evhttp_set_max_headers_size(h->http, METRICS_HTTP_HEADERS_MAX);
	evhttp_set_max_body_size(h->http, METRICS_HTTP_BODY_MAX);
	evhttp_set_timeout(h->http, METRICS_HTTP_TIMEOUT);
	/* Every method reaches request_cb, which answers 405 itself
	 * (evhttp would say 501 for the ones it was not told of). */
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
	    EVHTTP_REQ_PATCH);
	evhttp_set_gencb(h->http, request_cb, h);
	evhttp_set_bevcb(h->http, bev_cb, h);
	LIST_INSERT_HEAD(&servers, h, link);
	h->listed = 1;
	netaddr_format((const struct sockaddr *)&ss, name);
	log_info("metrics: serving http://%s/metrics", name);
	return h;
err1:
	metrics_http_free(h);
	return NULL;
}

void
metrics_http_free(struct metrics_http *h)
{
	if (h == NULL)
		return;
	h->closing = 1;
	if (h->listed)
		LIST_REMOVE(h, link);
	if (h->http != NULL)
		evhttp_free(h->http);	/* its listener too */
	while (!LIST_EMPTY(&h->conns))
		mconn_release(LIST_FIRST(&h->conns));
	if (h->resume != NULL)
		event_free(h->resume);
	free(h);
}

int
metrics_http_check(const char *text, struct metrics_addr *a)
{
	char err[512];

	if (metrics_http_parse(text, a, err, sizeof(err)) == -1) {
		log_errx("--metrics: %s", err);
		exit(EXIT_USAGE);
	}
	return a->len > 0;
}

struct metrics_http *
metrics_http_serve(struct event_base *base, const struct metrics_addr *a)
{
	struct metrics_http *h;
	char err[512];

	if (a->len == 0)
		return NULL;
	if ((h = metrics_http_start(base, a, err, sizeof(err))) == NULL)
		fatalx("--metrics: %s", err);
	return h;
}
