"""The seed's Usage flow, for each route format.

relay-server, reverse-proxy and entry-point are started as in the README (with this session's
keys); a user then fetches a page from a real HTTP server and exchanges bytes with an echo
server through the entry-point.  `port:port` means destination 127.0.0.1:port, dialled by the
reverse-proxy.
"""

import urllib.request

import pytest

from conftest import HTTP_PAGE, free_port, has_ipv6_loopback, pseudo_random, round_trip, KiB, SLOW

# Each format as a function of (listen port, destination port).
ROUTE_FORMATS = {
    "port:port": lambda lp, dp: "%d:%d" % (lp, dp),
    "ip:port:port": lambda lp, dp: "127.0.0.1:%d:%d" % (lp, dp),
    "port:ip:port": lambda lp, dp: "%d:127.0.0.1:%d" % (lp, dp),
    "ip:port:ip:port": lambda lp, dp: "127.0.0.1:%d:127.0.0.1:%d" % (lp, dp),
}


def http_get(url, timeout):
    # No proxy from the environment: the request must go to the entry-point itself.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as reply:
        assert reply.status == 200
        return reply.read()


@pytest.mark.parametrize("fmt", list(ROUTE_FORMATS))
def test_usage_flow(fmt, tunnel, http_server, echo_server):
    web = http_server()
    echo = echo_server()
    make_route = ROUTE_FORMATS[fmt]
    # A route without a source filter listens on [::] (IPv4 too): pick a port free on both.
    unfiltered = fmt.startswith("port")
    web_port = free_port(None if unfiltered else "127.0.0.1")
    echo_port = free_port(None if unfiltered else "127.0.0.1")
    tunnel(routes=[make_route(web_port, web.port), make_route(echo_port, echo.port)])

    # A page over HTTP, byte for byte.
    assert http_get("http://127.0.0.1:%d/index.html" % web_port, 10 * SLOW) == HTTP_PAGE
    assert http_get("http://127.0.0.1:%d/big.bin" % web_port, 10 * SLOW) == web.files["big.bin"]

    # Bytes to the echo server and back, a few times over new connections.
    for i in range(3):
        payload = pseudo_random("usage %s %d" % (fmt, i), 256 * KiB)
        assert round_trip("127.0.0.1", echo_port, payload, timeout=10 * SLOW) == payload

    # Without a source filter the route listens on [::], IPv6 as well as IPv4.
    over_ipv6 = unfiltered and has_ipv6_loopback()
    if over_ipv6:
        payload = pseudo_random("usage %s over IPv6" % fmt, 64 * KiB)
        assert round_trip("::1", echo_port, payload, timeout=10 * SLOW) == payload

    # The reverse-proxy dialled the echo destination on 127.0.0.1, once per connection.
    assert echo.accepted == (4 if over_ipv6 else 3)
    assert all(peer[0] == "127.0.0.1" for peer in echo.peers)
