"""Connections that have not authenticated are cheap, bounded, and never lock anyone out.

The relay keeps them apart from --max-channels, in a budget of their own (--max-handshakes,
and --max-handshakes-per-source from one address); when a budget is full, a new connection
evicts the oldest stranger.  So:

1. Silent connections, as many as --max-channels and more, cost the honest clients nothing:
   a tunnel started meanwhile gets its channels and carries traffic.
2. A flood of silent connections from the honest clients' own address (loopback here, a NAT
   gateway in life), far past the budget, only evicts strangers: a tunnel started meanwhile
   gets its channels within a second or two, and the log says what happened in a summary,
   not a line per connection.
3. A stranger that sends more than 8 KiB before authenticating (most of a 131,000-byte
   ClientHello, say) is closed at once, and 400 of them cost the relay little memory.
4. Authenticated channels past --max-channels are refused with "relay busy" (AUTH_RESULT 5),
   logged at most once a second, and the tunnel goes on with the channels it has.
"""

import re
import struct
import threading
import time

import pytest

from conftest import SANITIZE, SLOW, connect, read_until_closed


def silent_flood(host, port, count, seconds, stop):
    """Keep count silent TCP connections open for at most seconds, reopening each one the
    relay closes; returns (opened, closed by the relay)."""
    socks, opened, closed = [], 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        while len(socks) < count:
            try:
                socks.append(connect(host, port, timeout=2))
                opened += 1
            except OSError:
                break
        alive = []
        for s in socks:
            s.setblocking(False)
            try:
                gone = s.recv(1) == b""
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if gone:
                s.close()
                closed += 1
            else:
                alive.append(s)
        socks = alive
        time.sleep(0.05)
    for s in socks:
        s.close()
    return opened, closed


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_silent_connections_do_not_take_the_channels(tunnel):
    t = tunnel(relay_args=["--max-channels", "12"], reverse_proxy=False, entry_point=False,
               ready=False)
    held = [connect("127.0.0.1", t.relay_port) for _ in range(30)]
    t.start_reverse_proxy(extra=["--pool-min", "2"])
    t.start_entry_point(extra=["--pool-min", "2"])
    t.wait_ready(timeout=10)
    for _ in range(5):
        assert t.probe()
    for s in held:
        s.close()


def test_a_flood_from_the_same_address_only_evicts_strangers(tunnel):
    t = tunnel(relay_args=["--max-handshakes", "32", "--max-handshakes-per-source", "16"],
               reverse_proxy=False, entry_point=False, ready=False)
    stop = threading.Event()
    result = {}
    flood = threading.Thread(target=lambda: result.update(
        counts=silent_flood("127.0.0.1", t.relay_port, 100, 12 * SLOW, stop)))
    flood.start()
    try:
        time.sleep(1)           # the budget is full and the flood keeps it so
        start = time.monotonic()
        t.start_reverse_proxy(wait_connected=True)
        t.start_entry_point(wait_connected=True)
        ready = t.wait_ready(timeout=10)
        took = time.monotonic() - start
        for _ in range(5):
            assert t.probe()
    finally:
        stop.set()
        flood.join(30)
    opened, closed = result["counts"]
    assert closed > 0 and opened > 100, result
    assert took < 5 * SLOW, "the tunnel took %.1f s to come up under the flood" % took
    assert ready is not None
    relay = t.relay
    relay.wait_log("evicted: the budget of unauthenticated connections")
    summary = relay.wait_log(re.compile(r"unauthenticated connections closed in the last 10 s: "
                                        r"(\d+) \([^)]*evicted[^)]*\)"), timeout=15)
    assert int(summary.group(1)) > 50, summary.group(0)
    evicted_lines = len(re.findall(r"evicted: the budget", relay.log()))
    assert evicted_lines <= 3, "%d eviction lines" % evicted_lines


def client_hello_flood(host, port, size):
    """A TLS record claiming a ClientHello of size bytes, sent as far as the relay takes it;
    returns (bytes sent, how it ended, seconds)."""
    s = connect(host, port, timeout=5 * SLOW)
    body = bytes([1]) + size.to_bytes(3, "big")   # handshake: ClientHello, its length
    chunk = b"\x16\x03\x01" + struct.pack(">H", 16384) + body + b"\x00" * (16384 - 4)
    sent = 0
    start = time.monotonic()
    try:
        while sent < size:
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    _, how, _ = read_until_closed(s, 5 * SLOW)
    elapsed = time.monotonic() - start
    s.close()
    return sent, how, elapsed


def test_a_stranger_that_sends_too_much_is_closed(tunnel):
    t = tunnel()
    sent, how, elapsed = client_hello_flood("127.0.0.1", t.relay_port, 131000)
    assert how in ("eof", "reset"), how
    assert elapsed < 2 * SLOW, "closed after %.1f s" % elapsed
    t.relay.wait_log("sent more than 8192 bytes before authenticating, closing")
    assert t.probe()


@pytest.mark.skipif(SANITIZE, reason="AddressSanitizer keeps freed memory in quarantine "
                    "(and pads each block): the RSS says nothing there")
def test_400_large_client_hellos_cost_little_memory(tunnel):
    t = tunnel(relay_args=["--workers", "1"])
    before = rss_kib(t.relay.pid)
    results = []

    def one():
        try:
            results.append(client_hello_flood("127.0.0.1", t.relay_port, 131000))
        except OSError as e:
            results.append((0, repr(e), 0))

    threads = []
    for _ in range(400):
        th = threading.Thread(target=one)
        th.start()
        threads.append(th)
    peak = before
    while any(th.is_alive() for th in threads):
        peak = max(peak, rss_kib(t.relay.pid))
        time.sleep(0.01)
    for th in threads:
        th.join(30)
    peak = max(peak, rss_kib(t.relay.pid))
    grew = peak - before
    print("relay RSS %d KiB before, %d KiB at the peak: %.1f KiB per connection"
          % (before, peak, grew / 400))
    assert grew < 400 * 16, "the relay grew by %d KiB for 400 connections" % grew
    assert t.probe()


def test_channels_past_max_channels_are_refused_as_busy(tunnel):
    t = tunnel(relay_args=["--max-channels", "6"], rp_args=["--pool-min", "4"],
               ep_args=["--pool-min", "4"])
    t.relay.wait_log("channels open (--max-channels): refusing")
    t.entry_point.wait_log("relay busy (at its channel limit)") if "relay busy" in \
        t.entry_point.log() else t.reverse_proxy.wait_log("relay busy (at its channel limit)")
    time.sleep(2)
    lines = len(re.findall(r"channels open \(--max-channels\): refusing", t.relay.log()))
    assert lines <= 6, "%d refusal lines in about 3 s" % lines
    for _ in range(3):
        assert t.probe()
