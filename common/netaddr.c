#include "netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
netaddr_parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;
	size_t i;

	if (s[0] == '\0' || strlen(s) > 5)
		return -1;
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* Where the host and the port are in s: host at *hstart, *hlen bytes
 * (less than hostlen, not 0), the port's text after it.  Returns 0, or -1
 * with a message in err. */
static int
split(const char *s, size_t hostlen, const char **hstart, size_t *hlen,
    const char **port, char *err, size_t errlen)
{
	const char *colon, *hend;

	*hstart = s;
	if (s[0] == '[') {
		if ((hend = strchr(s, ']')) == NULL || hend[1] != ':') {
			snprintf(err, errlen, "'%s': expected [ipv6]:port", s);
			return -1;
		}
		*hstart = s + 1;
		colon = hend + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL) {
			snprintf(err, errlen, "'%s': expected host:port", s);
			return -1;
		}
		if (memchr(s, ':', (size_t)(colon - s)) != NULL) {
			snprintf(err, errlen, "'%s': IPv6 addresses go in "
			    "brackets, [addr]:port", s);
			return -1;
		}
		hend = colon;
	}
	if (strcspn(*hstart, "[]") < (size_t)(hend - *hstart)) {
		snprintf(err, errlen, "'%s': unbalanced brackets", s);
		return -1;
	}
	if (hend == *hstart || (size_t)(hend - *hstart) >= hostlen) {
		snprintf(err, errlen, "'%s': %s host", s, hend == *hstart ?
		    "empty" : "too long a");
		return -1;
	}
	*hlen = (size_t)(hend - *hstart);
	*port = colon + 1;
	return 0;
}

int
netaddr_split_hostport(const char *s, char *host, size_t hostlen,
    const char **port, char *err, size_t errlen)
{
	const char *hstart;
	size_t hlen;

	if (split(s, hostlen, &hstart, &hlen, port, err, errlen) == -1)
		return -1;
	memcpy(host, hstart, hlen);
	host[hlen] = '\0';
	return 0;
}

int
netaddr_parse_hostport(const char *s, char *host, size_t hostlen,
    uint16_t *port, char *err, size_t errlen)
{
	const char *hstart, *port_text;
	size_t hlen;
	uint16_t p;

	if (split(s, hostlen, &hstart, &hlen, &port_text, err, errlen) == -1)
		return -1;
	if (netaddr_parse_port(port_text, &p) == -1 || p == 0) {
		snprintf(err, errlen, "'%s': port is not a number (1-65535)",
		    s);
		return -1;
	}
	memcpy(host, hstart, hlen);
	host[hlen] = '\0';
	*port = p;
	return 0;
}

void
netaddr_format(const struct sockaddr *sa, char buf[NETADDR_STRLEN])
{
	char ip[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(buf, NETADDR_STRLEN, "%s:%u", ip,
		    ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 =
		    (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip,
			    sizeof(ip));
			snprintf(buf, NETADDR_STRLEN, "%s:%u", ip,
			    ntohs(s6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
			snprintf(buf, NETADDR_STRLEN, "[%s]:%u", ip,
			    ntohs(s6->sin6_port));
		}
	} else {
		snprintf(buf, NETADDR_STRLEN, "(family %d)", sa->sa_family);
	}
}

/* A socket bound to sa, listening unless probe is set. */
static int
bound_socket(const struct sockaddr *sa, socklen_t salen, int dual_stack,
    int reuseport, int probe, char *err, size_t errlen)
{
	char name[NETADDR_STRLEN];
	int fd, one = 1, v6only = dual_stack ? 0 : 1;

	netaddr_format(sa, name);
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		snprintf(err, errlen, "%s: socket: %s", name, strerror(errno));
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ==
	    -1)
		goto fail;
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
	    sizeof(one)) == -1)
		goto fail;
	if (sa->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &v6only, sizeof(v6only)) == -1)
		goto fail;
	if (bind(fd, sa, salen) == -1 || (!probe && listen(fd, SOMAXCONN) ==
	    -1))
		goto fail;
	return fd;
fail:
	snprintf(err, errlen, "cannot listen on %s: %s", name,
	    strerror(errno));
	close(fd);
	return -1;
}

int
netaddr_listen(const struct sockaddr *sa, socklen_t salen, int dual_stack,
    char *err, size_t errlen)
{
	return bound_socket(sa, salen, dual_stack, 0, 0, err, errlen);
}

int
netaddr_listen_n(const struct sockaddr *sa, socklen_t salen, int *fds,
    unsigned n, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	unsigned i;
	int fd;

	if (n == 1)
		return (fds[0] = netaddr_listen(sa, salen, 0, err, errlen)) ==
		    -1 ? -1 : 0;
	/* SO_REUSEPORT would let these sockets share the port with any
	 * other program of ours that asks for it too: first make sure that
	 * nothing listens there. */
	if ((fd = bound_socket(sa, salen, 0, 0, 1, err, errlen)) == -1)
		return -1;
	close(fd);
	for (i = 0; i < n; i++) {
		if ((fds[i] = bound_socket(sa, salen, 0, 1, 0, err, errlen)) ==
		    -1) {
			while (i-- > 0)
				close(fds[i]);
			return -1;
		}
		/* Port 0: the others take the port the first one got. */
		if (i == 0 && getsockname(fds[0], (struct sockaddr *)&ss,
		    &sslen) == 0)
			sa = (struct sockaddr *)&ss;
	}
	return 0;
}

int
netaddr_set_nodelay(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void
netaddr_close_reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}
