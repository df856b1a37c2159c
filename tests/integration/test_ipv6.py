"""IPv6 on loopback: [::1] on the entry side, on the destination side, and for the relay.

Skipped only when this machine cannot bind ::1.
"""

import pytest

from conftest import free_port, has_ipv6_loopback, pseudo_random, round_trip, KiB, SLOW

pytestmark = pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1 on this machine")


def test_entry_side_ipv6_source_filter(tunnel, echo_server):
    """Route [::1]:P:D: the listener is on ::1 and a client connecting to ::1 gets through."""
    echo = echo_server("127.0.0.1")
    port = free_port("::1")
    route = "[::1]:%d:%d" % (port, echo.port)
    t = tunnel(routes=[route])

    t.entry_point.wait_log("route '%s' listening on [::1]:%d" % (route, port))
    payload = pseudo_random("ipv6 entry", 128 * KiB)
    assert round_trip("::1", port, payload, timeout=10 * SLOW) == payload


def test_destination_side_ipv6(tunnel, echo_server):
    """Route P:[::1]:D: the reverse-proxy dials the destination on ::1."""
    echo = echo_server("::1")
    port = free_port()  # no source filter: the route listens on [::], IPv4 and IPv6
    route = "%d:[::1]:%d" % (port, echo.port)
    tunnel(routes=[route])

    for client in ("127.0.0.1", "::1"):
        payload = pseudo_random("ipv6 destination from %s" % client, 128 * KiB)
        assert round_trip(client, port, payload, timeout=10 * SLOW) == payload
    assert echo.accepted == 2 and all(peer[0] == "::1" for peer in echo.peers)


def test_relay_on_ipv6(tunnel, echo_server):
    """The relay listens on ::1 and both clients dial it as -s [::1]:PORT."""
    echo = echo_server("::1")
    port = free_port("::1")
    route = "[::1]:%d:[::1]:%d" % (port, echo.port)
    t = tunnel(routes=[route], host="::1")

    t.relay.wait_log("listening on [::1]:%d" % t.relay_port)
    payload = pseudo_random("ipv6 relay", 128 * KiB)
    assert round_trip("::1", port, payload, timeout=10 * SLOW) == payload
