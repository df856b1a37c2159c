"""A destination that cannot be reached: the user is told at once by a closed connection.

- refused: the route names a local port where nothing listens;
- not resolvable: the route names a host under `.invalid` (RFC 6761: never resolves);
- no descriptor: the reverse-proxy is at its open-file limit and cannot open a socket.

The user connects, sends a little, and must see its connection closed (EOF or reset) within one
second of connecting (two under the sanitizer), with no data.  The tunnel keeps working.
"""

import os
import resource
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


def lowest_free_fd(pid):
    used = {int(n) for n in os.listdir("/proc/%d/fd" % pid)}
    fd = 0
    while fd in used:
        fd += 1
    return fd


def test_no_descriptor_for_the_destination_closes_the_user_connection(tunnel, echo_server):
    """The reverse-proxy cannot open a socket to the destination (its open-file limit is
    reached): the open fails at once with a clear log line, the user's connection is closed,
    and the channel is not left waiting for a connect that was never started."""
    echo = echo_server()
    port = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)],
               rp_args=["--pool-min", "1", "--pool-max", "1"])
    pid = t.reverse_proxy.pid
    # Room for what is open now and nothing more: the next socket() fails with EMFILE.
    limit = lowest_free_fd(pid)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    data, how, elapsed = closed_without_data(port)
    assert how in ("eof", "reset"), "still open after %.1f s" % elapsed
    assert data == b""
    t.reverse_proxy.wait_log("Too many open files", timeout=5 * SLOW)
