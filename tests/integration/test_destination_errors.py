"""A destination that cannot be reached: the user is told at once by a closed connection.

- refused: the route names a local port where nothing listens;
- not resolvable: the route names a host under `.invalid` (RFC 6761: never resolves).

The user connects, sends a little, and must see its connection closed (EOF or reset) within one
second of connecting (two under the sanitizer), with no data.  The tunnel keeps working.
"""

import time

import pytest

from conftest import connect, free_port, read_until_closed, SLOW, scaled

LIMIT = scaled(1.0, 2.0)


def closed_without_data(port):
    """Connect to 127.0.0.1:port, send a line; return (data, how, seconds since connect)."""
    start = time.monotonic()
    try:
        with connect("127.0.0.1", port, timeout=5 * SLOW) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data, how, _ = read_until_closed(s, timeout=10 * SLOW)
    except (ConnectionResetError, BrokenPipeError):
        data, how = b"", "reset"  # reset before the write (or even the connect) returned
    return data, how, time.monotonic() - start


@pytest.mark.parametrize("kind", ["refused", "unresolvable"])
def test_destination_error_closes_the_user_connection(kind, tunnel):
    port = free_port("127.0.0.1")
    if kind == "refused":
        route = "127.0.0.1:%d:127.0.0.1:%d" % (port, free_port("127.0.0.1"))
    else:
        route = "127.0.0.1:%d:nothing.invalid:%d" % (port, 80)
    t = tunnel(routes=[route], rp_args=["-v"], ep_args=["-v"])

    for attempt in range(3):
        data, how, elapsed = closed_without_data(port)
        print("%s, attempt %d: %s after %.3f s" % (kind, attempt, how, elapsed))
        assert how in ("eof", "reset"), "still open after %.1f s" % elapsed
        assert data == b"", "got data: %r" % data[:200]
        assert elapsed < LIMIT, "closed only after %.2f s" % elapsed

    # The tunnel is still fine.
    assert t.probe(), "the tunnel stopped working after the destination errors"
