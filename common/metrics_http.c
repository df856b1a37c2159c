#include "metrics_http.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

struct metrics_http {
	struct evhttp *http;
	struct evconnlistener *listener;	/* the evhttp's (it frees it) */
	struct event *resume;		/* the next second: accept again */
	time_t second;			/* the second accepts are counted in */
	unsigned accepts;		/* in it */
	int paused;
};

/* A port: 1 to 5 digits, 0..65535.  Returns 0 or -1. */
static int
port_parse(const char *s, uint16_t *port)
{
	unsigned long n = 0;
	size_t i;

	if (s[0] == '\0' || strlen(s) > 5)
		return -1;
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		n = n * 10 + (unsigned long)(s[i] - '0');
	}
	if (n > 65535)
		return -1;
	*port = (uint16_t)n;
	return 0;
}

int
metrics_http_parse(const char *text, struct metrics_addr *a, char *err,
    size_t errlen)
{
	char host[NETADDR_STRLEN];
	const char *port_text, *colon;
	struct addrinfo hints, *res;
	uint16_t port;
	size_t hlen;
	int r;

	memset(a, 0, sizeof(*a));
	if (text == NULL)
		return 0;
	if (text[0] == '[') {
		if ((colon = strstr(text, "]:")) == NULL)
			goto bad;
		hlen = (size_t)(colon - text - 1);
		memcpy(host, text + 1, hlen < sizeof(host) ? hlen : 0);
		port_text = colon + 2;
	} else if ((colon = strrchr(text, ':')) != NULL) {
		hlen = (size_t)(colon - text);
		if (memchr(text, ':', hlen) != NULL) {
			snprintf(err, errlen, "'%s': an IPv6 address goes in "
			    "brackets ([::1]:PORT)", text);
			return -1;
		}
		memcpy(host, text, hlen < sizeof(host) ? hlen : 0);
		port_text = colon + 1;
	} else {
		hlen = strlen("127.0.0.1");
		memcpy(host, "127.0.0.1", hlen);
		port_text = text;
	}
	if (hlen == 0 || hlen >= sizeof(host) || port_parse(port_text,
	    &port) == -1)
		goto bad;
	host[hlen] = '\0';
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
bad:
	snprintf(err, errlen, "'%s': not [ADDRESS:]PORT (a port 0..65535, "
	    "an IP address, IPv6 in brackets)", text);
	return -1;
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
request_cb(struct evhttp_request *req, void *arg)
{
	(void)arg;
	reply(req);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_http *h = arg;

	(void)fd;
	(void)what;
	h->paused = 0;
	if (evconnlistener_enable(h->listener) == -1)
		log_warnx("metrics: cannot accept again");
}

/*
 * evhttp asks for the bufferevent of each connection it accepts: the
 * place to count them.  Past METRICS_HTTP_ACCEPTS in one second the
 * listener pauses until the next (the kernel's backlog holds the rest).
 */
static struct bufferevent *
bev_cb(struct event_base *base, void *arg)
{
	struct metrics_http *h = arg;
	struct timeval next = { 1, 0 };
	time_t now = time(NULL);

	if (now != h->second) {
		h->second = now;
		h->accepts = 0;
	}
	if (++h->accepts >= METRICS_HTTP_ACCEPTS && !h->paused) {
		if (evconnlistener_disable(h->listener) == 0 &&
		    evtimer_add(h->resume, &next) == 0) {
			h->paused = 1;
			log_debug("metrics: %d connections this second: "
			    "accepting again in a second", METRICS_HTTP_ACCEPTS);
		} else {
			(void)evconnlistener_enable(h->listener);
		}
	}
	return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
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
	if (h->http != NULL)
		evhttp_free(h->http);	/* its listener too */
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
