/*
 * netaddr: addresses and sockets — "host:port" parsing, printable
 * addresses for log lines, and listening sockets.
 */
#ifndef NETADDR_H
#define NETADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest printable "[v6%scope]:port". */
#define NETADDR_STRLEN 80

/*
 * Split "host:port" or "[v6]:port" into host (brackets removed) and port.
 * Returns 0, or -1 with a message in err.
 */
int netaddr_parse_hostport(const char *s, char *host, size_t hostlen,
    uint16_t *port, char *err, size_t errlen);

/* The same split, the port left as text (*port points into s).  Returns
 * 0, or -1 with a message in err. */
int netaddr_split_hostport(const char *s, char *host, size_t hostlen,
    const char **port, char *err, size_t errlen);

/* A port in decimal, 1 to 5 digits, 0..65535 (callers that dial or
 * listen on a fixed port refuse 0 themselves).  Returns 0 or -1. */
int netaddr_parse_port(const char *s, uint16_t *port);

/* "a.b.c.d:port" or "[v6]:port" (IPv4-mapped IPv6 shown as IPv4). */
void netaddr_format(const struct sockaddr *sa, char buf[NETADDR_STRLEN]);

/*
 * A non-blocking listening socket on sa (with SO_REUSEADDR; IPV6_V6ONLY
 * off when dual_stack, on for other IPv6 addresses; backlog SOMAXCONN).
 * Returns the descriptor, or -1 with a message in err.
 */
int netaddr_listen(const struct sockaddr *sa, socklen_t salen, int dual_stack,
    char *err, size_t errlen);

/*
 * n listening sockets on sa (IPv6 only for IPv6 addresses), sharing the
 * port with SO_REUSEPORT when n > 1 (after checking that nothing else
 * listens there).  Fills fds; returns 0, or -1 with a message in err.
 */
int netaddr_listen_n(const struct sockaddr *sa, socklen_t salen, int *fds,
    unsigned n, char *err, size_t errlen);

/* Set TCP_NODELAY on fd; returns 0 or -1. */
int netaddr_set_nodelay(int fd);

/* Close fd so that the peer sees a reset, not an orderly end. */
void netaddr_close_reset(int fd);

#endif
