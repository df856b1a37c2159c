"""Fair at the limit, and each limit reached says so while the daemon keeps serving.

1. Relay --max-channels 40, a hold of 15 user connections (30 channels, and both pools want
   idle channels beside them, 52 in all): every one gets through.  The budget is shared: a
   role under half of it takes the oldest idle channel of the other, whose client is told
   "relay busy" and backs off.
2. Two groups at the relay's limit: group 1's pools fill it first; group 2's tunnel, started
   after, still gets channels (a group with fewer idle channels takes the oldest idle channel
   of a group with two more) and carries traffic.
3. The entry-point's --max-connections: past it a new user connection is reset at once, with
   one warning a second at most, and the connections it holds keep echoing.
4. Its --max-waiting and --wait-timeout, with the relay out of reach: past the first a new
   connection is reset at once; the waiting ones are closed at the second, in one line a
   second; the route works again once the relay is back.
5. A pool at --pool-max while connections wait: one line says so, and every connection is
   served by the channels there are.
"""

import re
import subprocess
import time

from conftest import SLOW, connect, free_port, read_until_closed, round_trip, run_once


def hold(bench_tools, port, n, seconds=3):
    r = subprocess.run([bench_tools["loadgen"], "hold", "127.0.0.1", str(port), str(n),
                        str(seconds), "30"], capture_output=True, text=True,
                       timeout=120 * SLOW)
    m = re.search(r"hold n=(\d+) held=(\d+) ok=(\d+)", r.stdout)
    assert m, (r.returncode, r.stdout, r.stderr[-400:])
    return int(m.group(2)), int(m.group(3))


def test_a_hold_of_15_at_max_channels_40_gets_all_through(tunnel, bench_tools, bench_echo):
    echo_port = bench_echo()
    listen = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (listen, echo_port)],
               relay_args=["--max-channels", "40", "-v"])
    held, ok = hold(bench_tools, listen, 15)
    assert (held, ok) == (15, 15), "held %d, %d echoed after the hold" % (held, ok)
    assert "closed to make room (--max-channels)" in t.relay.log()
    assert t.probe()


def test_a_group_at_the_limit_does_not_starve_another(tunnel, echo_server):
    t = tunnel(relay_args=["--max-channels", "24", "--workers", "1", "-v"],
               rp_args=["--pool-min", "8"], ep_args=["--pool-min", "8"])
    # Group 0 (the tunnel) wants 16 idle channels and more; fill the rest with its demand.
    time.sleep(1)
    echo = echo_server()
    listen = free_port("127.0.0.1")
    t.start_reverse_proxy(group=2, extra=["--pool-min", "4"])
    t.start_entry_point(["127.0.0.1:%d:127.0.0.1:%d" % (listen, echo.port)], group=2,
                        extra=["--pool-min", "4"])
    payload = b"group 2 gets through" * 100
    deadline = time.monotonic() + 15 * SLOW
    while True:
        try:
            if round_trip("127.0.0.1", listen, payload, timeout=3 * SLOW) == payload:
                break
        except (OSError, EOFError, TimeoutError, AssertionError):
            pass
        assert time.monotonic() < deadline, "group 2 got no round trip at the relay's limit"
        time.sleep(0.2)
    assert re.search(r"idle \S+ channel of group 0 closed to make room \(--max-channels\) "
                     r"for a \S+ of group 2", t.relay.log())
    assert t.probe(), "group 0 stopped"


def test_entry_point_max_connections(tunnel, echo_server):
    echo = echo_server()
    listen = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (listen, echo.port)],
               ep_args=["--max-connections", "4"])
    t.entry_point.wait_log("limits: --max-connections 4 (given)")
    # The probe route's connection is not counted while it is not open: hold 4.
    held = [connect("127.0.0.1", listen, timeout=5 * SLOW) for _ in range(4)]
    for s in held:
        s.sendall(b"ping")
    for s in held:
        assert s.recv(4) == b"ping"
    refused = 0
    for _ in range(6):
        try:
            with connect("127.0.0.1", listen, timeout=5 * SLOW) as s:
                s.sendall(b"x")
                data, how, elapsed = read_until_closed(s, 5 * SLOW)
                if data == b"" and how in ("reset", "eof") and elapsed < 1 * SLOW:
                    refused += 1
        except (ConnectionResetError, BrokenPipeError):
            refused += 1
    assert refused == 6
    lines = re.findall(r"refused connection from \S+ \(--max-connections 4\)",
                       t.entry_point.log())
    assert 1 <= len(lines) <= 3, lines
    for s in held:
        s.sendall(b"pong")
        assert s.recv(4) == b"pong"
        s.close()


@run_once
def test_entry_point_max_waiting_and_wait_timeout(tunnel, echo_server):
    """With its relay out of reach, the entry-point's connections wait for a channel: past
    --max-waiting a new one is reset at once, the waiting ones are closed after --wait-timeout
    (one line a second, whatever their number), and once the relay is back the route works."""
    t = tunnel(reverse_proxy=False, entry_point=False, ready=False)
    assert t.relay.stop() == 0          # its port refuses: no channel for anyone
    echo = echo_server()
    listen = free_port("127.0.0.1")
    ep = t.start_entry_point(routes=["127.0.0.1:%d:127.0.0.1:%d" % (listen, echo.port)],
                             extra=["--max-waiting", "3", "--wait-timeout", "2"])
    ep.wait_log("--max-waiting 3 for 2 s")
    waiting = [connect("127.0.0.1", listen, timeout=5 * SLOW) for _ in range(3)]
    for s in waiting:
        s.sendall(b"x")
    time.sleep(0.3)
    refused = 0
    for _ in range(5):
        try:
            with connect("127.0.0.1", listen, timeout=5 * SLOW) as s:
                data, how, elapsed = read_until_closed(s, 3 * SLOW)
                if data == b"" and how in ("reset", "eof") and elapsed < 1 * SLOW:
                    refused += 1
        except (ConnectionResetError, BrokenPipeError):
            refused += 1
    assert refused == 5
    lines = re.findall(r"refused connection from \S+ \(waiting for a channel: --max-waiting 3\)",
                       ep.log())
    assert 1 <= len(lines) <= 3, lines
    for s in waiting:
        data, how, elapsed = read_until_closed(s, 5 * SLOW)
        assert data == b"" and how in ("reset", "eof"), (data, how)
        s.close()
    deadline = time.monotonic() + 3 * SLOW
    while True:
        gave_up = re.findall(r"within 2 s \(--wait-timeout\): closing (\d+) connections?",
                             ep.log())
        if sum(map(int, gave_up)) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert sum(map(int, gave_up)) == 3 and len(gave_up) <= 2, gave_up
    t.start_relay(name="relay-server-2")
    t.start_reverse_proxy(wait_connected=True)
    t.wait_ready(timeout=20)
    assert round_trip("127.0.0.1", listen, b"back", timeout=5 * SLOW) == b"back"


def test_pool_max_reached_logs_and_every_connection_is_served(tunnel, echo_server):
    """The entry-point's pool at --pool-max 2 with 12 connections at once: it says it is at
    its ceiling (once), and every connection is served by the channels there are."""
    echo = echo_server()
    listen = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (listen, echo.port)],
               ep_args=["--pool-min", "1", "--pool-max", "2"])
    t.entry_point.wait_log("--pool-max 2 (given)")
    socks = []
    try:
        for i in range(12):
            s = connect("127.0.0.1", listen, timeout=10 * SLOW)
            s.sendall(b"hello %02d" % i)
            socks.append(s)
        for i, s in enumerate(socks):
            s.settimeout(10 * SLOW)
            got = b""
            while len(got) < 8:
                chunk = s.recv(8 - len(got))
                assert chunk, "connection %d closed after %r" % (i, got)
                got += chunk
            assert got == b"hello %02d" % i
    finally:
        for s in socks:
            s.close()
    line = t.entry_point.wait_log(re.compile(r"relay \S+: at --pool-max \(2 idle channels at "
                                             r"most; \d+ in use, \d+ connections? waiting"))
    assert len(re.findall(r"at --pool-max", t.entry_point.log())) == 1, line.group(0)
    assert t.probe()
