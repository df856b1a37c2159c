"""The metrics port is a port like any other: what a hostile client does to it stays there.

- Pipelined requests sent without reading the replies: the daemon reads at most a couple of
  requests ahead (the rest wait in the kernel), its memory stays where it was.
- 40 connections that send nothing: at most 16 are open in the daemon at once (the listener
  waits for one to end), the tunnel carries on, and once they are closed a scrape is answered
  at once (the daemon sees each close: it does not wait for their lifetime to end).
- 40 clients that pipeline requests, half-close and read the replies slowly: at most 16 are
  open in the daemon at once; they count until evhttp lets go of them, not until they
  half-close.
- A request trickled in, a header every 2 s (as the first request, or after a whole one): the
  connection is cut 10 s after it was accepted, though evhttp's idle timeout never fires.
- Out of descriptors: a failed accept on the metrics port pauses it for a second, with one log
  line, instead of trying again at once (a busy loop and a line each time); once descriptors
  are back the tunnel and the metrics serve again.

Each of these failed on the first --metrics (unbounded reads, a cap on accepts a second only,
an idle timeout only, no accept error callback): a review reproduced them.
"""

import os
import resource
import socket
import time

import pytest

from conftest import SLOW, KiB, MiB, open_fds, pseudo_random, round_trip, timer_bound
from test_metrics import metered, metrics_port, scrape_soon, silent_connections  # noqa: F401

CONNS = 16       # METRICS_HTTP_CONNS
LIFETIME = 10    # METRICS_HTTP_LIFETIME, seconds


def cpu_seconds(pid):
    """User and system CPU time of process pid (/proc/PID/stat fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assert_within_the_cap(daemon, base, what):
    """daemon holds at most CONNS (and the listener's one, and one of slack) descriptors more
    than base for the metrics connections of what."""
    held = open_fds(daemon.pid) - base
    print("%s: the %s holds %d more descriptors" % (what, daemon.name, held))
    assert held <= CONNS + 2, "%d descriptors for %s" % (held, what)


def assert_the_tunnel_carries(t, label):
    payload = pseudo_random(label, 64 * KiB)
    assert round_trip("127.0.0.1", t.route_port, payload, timeout=10 * SLOW) == payload


def test_pipelined_requests_are_not_read_ahead_without_bound(metered):
    relay = metered.relay
    port = metrics_port(relay)
    before = relay.rss_kib()
    one = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 256
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW) as s:
        s.setblocking(False)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and sent < 256 * MiB:
            try:
                sent += s.send(one)
            except BlockingIOError:
                time.sleep(0.01)
    grew = relay.rss_kib() - before
    print("pipelined: %d KiB taken in 2 s, RSS +%d KiB" % (sent // KiB, grew))
    assert sent < 32 * MiB, "%d MiB of requests read ahead" % (sent // MiB)
    assert grew < 32 * 1024, "RSS grew by %d KiB" % grew
    scrape_soon(port, 5 * SLOW)


def test_at_most_16_metrics_connections_at_once(metered):
    t = metered
    relay = t.relay
    port = metrics_port(relay)
    base = open_fds(relay.pid)
    socks = []
    try:
        socks = silent_connections(port, 40)
        time.sleep(1.5)
        assert_within_the_cap(relay, base, "40 silent connections")
        assert_the_tunnel_carries(t, "beside the flood")
    finally:
        for s in socks:
            s.close()
    # The 24 in the backlog are accepted and seen closed in turn, no lifetime waited out.
    start = time.monotonic()
    took = scrape_soon(port, 5 * SLOW) - start
    print("a scrape answered %.2f s after they closed" % took)
    assert took < LIFETIME / 2, "a scrape waited %.1f s: closes were not seen" % took


def test_half_closed_slow_readers_count_against_the_16(metered):
    """Clients that pipeline requests, shut down their sending side and read the replies a
    trickle at a time: evhttp keeps writing to them, so they stay counted until evhttp lets
    go (or their lifetime ends).  They were counted out at the half-close (EPOLLRDHUP), so
    any number of them held descriptors, past the cap and past the lifetime, until the
    daemon ran out and the tunnel stopped (a review reproduced it)."""
    t = metered
    relay = t.relay
    port = metrics_port(relay)
    base = open_fds(relay.pid)
    requests = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 1500
    socks = []
    try:
        for _ in range(40):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            s.settimeout(5 * SLOW)
            s.connect(("127.0.0.1", port))
            s.setblocking(False)
            try:
                s.send(requests)
            except BlockingIOError:
                pass
            s.shutdown(socket.SHUT_WR)
            socks.append(s)
        for second in range(3):
            time.sleep(1)
            for s in socks:     # a trickle: the replies keep coming, slowly
                try:
                    s.recv(2048)
                except OSError:
                    pass
            assert_within_the_cap(relay, base, "40 half-closed slow readers, %d s"
                                  % (second + 1))
        assert_the_tunnel_carries(t, "beside the slow readers")
    finally:
        for s in socks:
            s.close()
    scrape_soon(port, (LIFETIME + 5) * SLOW)


# (After a whole request, evhttp's close callback is set: the lifetime's end and that callback
# both let go of the connection, which freed its count twice once.)
@timer_bound
@pytest.mark.parametrize("first", [b"", b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"],
                         ids=["first-request", "after-a-request"])
def test_a_trickled_request_is_cut_at_the_lifetime(metered, first):
    port = metrics_port(metered.entry_point)
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW) as s:
        s.sendall(first + b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        s.settimeout(2)
        while True:
            elapsed = time.monotonic() - start
            assert elapsed < LIFETIME + 5 * SLOW, "still open after %.0f s" % elapsed
            try:
                s.sendall(b"X-Slow: y\r\n")
                if s.recv(4096) == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break
    took = time.monotonic() - start
    print("a trickled request was cut after %.1f s" % took)
    assert took >= LIFETIME - 1, "cut after %.1f s, before its lifetime" % took


def test_out_of_descriptors_on_the_metrics_port_pauses_quietly(metered):
    t = metered
    ep = t.entry_point
    port = metrics_port(ep)
    saved = resource.prlimit(ep.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(ep.pid, resource.RLIMIT_NOFILE, (open_fds(ep.pid) + 4, saved[1]))
    socks = []
    try:
        socks = silent_connections(port, 12)
        time.sleep(0.5)
        mark = len(ep.log())
        cpu0 = cpu_seconds(ep.pid)
        time.sleep(2)
        cpu = cpu_seconds(ep.pid) - cpu0
        lines = ep.log()[mark:].splitlines()
        print("out of descriptors for 2 s: %.2f s of CPU, %d log lines" % (cpu, len(lines)))
        assert len(lines) <= 4, lines[:10]
        assert cpu < 0.5 * SLOW, "%.2f s of CPU in 2 s" % cpu
    finally:
        for s in socks:
            s.close()
        resource.prlimit(ep.pid, resource.RLIMIT_NOFILE, saved)
    assert "metrics: accept: Too many open files; paused for 1 s" in ep.log()
    scrape_soon(port, 5 * SLOW)
    assert_the_tunnel_carries(t, "after the shortage")
