"""A destination given as a host name is resolved by the reverse-proxy.

The route names `localhost`; the echo server listens on 127.0.0.1 only.  Whatever order the
resolver returns the addresses in (::1 first is common), the reverse-proxy tries each address
in turn until one accepts.
"""

from conftest import free_port, pseudo_random, round_trip, KiB, SLOW


def test_destination_localhost(tunnel, echo_server):
    echo = echo_server("127.0.0.1")
    port = free_port("127.0.0.1")
    route = "127.0.0.1:%d:localhost:%d" % (port, echo.port)
    tunnel(routes=[route])

    for i in range(3):
        payload = pseudo_random("hostname %d" % i, 64 * KiB)
        assert round_trip("127.0.0.1", port, payload, timeout=10 * SLOW) == payload
    assert echo.accepted == 3

