"""The source filter of a route (ip:port:port).

Route 127.0.0.2:P:D listens on 127.0.0.2 only.  A user whose source address is 127.0.0.3 is
closed at once without data and the entry-point logs it; a user from 127.0.0.2 gets through.
"""

import re
import socket
import time

from conftest import (free_port, pseudo_random, read_until_closed, round_trip, KiB,
                      SLOW)


def test_source_filter(tunnel, echo_server):
    echo = echo_server()
    port = free_port("127.0.0.2")
    route = "127.0.0.2:%d:%d" % (port, echo.port)
    t = tunnel(routes=[route])
    t.entry_point.wait_log("route '%s' listening on 127.0.0.2:%d" % (route, port))

    # From 127.0.0.3: closed at once, nothing comes back, nothing reaches the destination.
    # (The reset can be so quick that connect() itself reports it.)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.3", 0))
        source_port = s.getsockname()[1]
        s.settimeout(5 * SLOW)
        start = time.monotonic()
        try:
            s.connect(("127.0.0.2", port))
            s.sendall(b"let me in\n")
            data, how, _ = read_until_closed(s, timeout=5 * SLOW)
        except (ConnectionResetError, BrokenPipeError):
            data, how = b"", "reset"
        elapsed = time.monotonic() - start
    assert how in ("eof", "reset"), "connection from 127.0.0.3 still open after %.1f s" % elapsed
    assert data == b""
    assert elapsed < 1.0 * SLOW, "closed only after %.2f s" % elapsed
    t.entry_point.wait_log(re.compile(
        r"route '%s': refused connection from 127\.0\.0\.3:%d \(source filter\)"
        % (re.escape(route), source_port)))

    # From 127.0.0.2: through the tunnel, bytes intact.
    payload = pseudo_random("source filter", 64 * KiB)
    assert round_trip("127.0.0.2", port, payload, timeout=10 * SLOW, source="127.0.0.2") == payload
    assert echo.accepted == 1
