"""Out of descriptors: a daemon stops accepting for a second at a time, logs it at most once a
second however many listeners pause, goes on carrying the connections it has, and accepts
again by itself once descriptors are free.

The test lowers a running daemon's open-file limit (prlimit) to a few descriptors above what
it holds, then opens more connections than fit: the first ones take the last descriptors and
the rest wait in the listen backlog, where accept(2) fails with EMFILE.  Raising the limit
again is "descriptors are free": nothing is restarted.
"""

import re
import resource
import time

from conftest import SLOW, connect, free_port, round_trip, run_once, open_fds

PAUSE_LINE = re.compile(r"accept: Too many open files; paused for 1 s")


def lower_nofile(pid, room):
    """Set pid's soft open-file limit to its open descriptors + room; returns the old limit."""
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds(pid) + room, old[1]))
    return old


@run_once
def test_the_relay_pauses_accepting_and_serves_its_channels(tunnel):
    t = tunnel()
    relay = t.relay
    old = lower_nofile(relay.pid, 4)
    start = time.monotonic()
    held = [connect("127.0.0.1", t.relay_port) for _ in range(40)]
    try:
        relay.wait_log(PAUSE_LINE, timeout=5)
        # The pooled channels carry traffic meanwhile (their replacements wait).
        for _ in range(3):
            assert t.probe()
        time.sleep(max(0.0, start + 3.5 - time.monotonic()))
        lines = len(PAUSE_LINE.findall(relay.log()))
        seconds = time.monotonic() - start
        assert 1 <= lines <= seconds + 1, "%d pause lines in %.1f s" % (lines, seconds)
    finally:
        for s in held:
            s.close()
        resource.prlimit(relay.pid, resource.RLIMIT_NOFILE, old)
    # Free again: new channels are accepted within a pause; a new client gets one.
    t.start_reverse_proxy(wait_connected=True)
    for _ in range(10):
        assert t.probe()


@run_once
def test_the_entry_point_pauses_accepting_and_keeps_its_connections(tunnel, echo_server):
    echo = echo_server()
    listen = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (listen, echo.port)])
    ep = t.entry_point
    # Two connections through the new entry-point, open before its descriptors run out.
    kept = [connect("127.0.0.1", listen) for _ in range(2)]
    for i, s in enumerate(kept):
        s.sendall(b"before %d" % i)
        assert s.recv(64) == b"before %d" % i
    old = lower_nofile(ep.pid, 2)
    start = time.monotonic()
    waiting = []
    try:
        for _ in range(20):
            waiting.append(connect("127.0.0.1", listen))
        ep.wait_log(PAUSE_LINE, timeout=5)
        time.sleep(max(0.0, start + 3.5 - time.monotonic()))
        lines = len(PAUSE_LINE.findall(ep.log()))
        seconds = time.monotonic() - start
        assert 1 <= lines <= seconds + 1, "%d pause lines in %.1f s" % (lines, seconds)
        # The connections it had go on.
        for i, s in enumerate(kept):
            s.sendall(b"during %d" % i)
            assert s.recv(64) == b"during %d" % i
    finally:
        for s in waiting:
            s.close()
        resource.prlimit(ep.pid, resource.RLIMIT_NOFILE, old)
    for s in kept:
        s.close()
    # Free again: it accepts by itself within a pause.
    deadline = time.monotonic() + 10 * SLOW
    while True:
        try:
            if round_trip("127.0.0.1", listen, b"after", timeout=3 * SLOW) == b"after":
                break
        except (OSError, EOFError, TimeoutError, AssertionError):
            pass
        assert time.monotonic() < deadline, "no round trip after the limit was raised"
        time.sleep(0.2)
