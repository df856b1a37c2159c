"""Hostile load at a relay at its defaults: strangers cost the tunnel nothing.

1. 1,000 silent TCP connections and 300 that send garbage, all from the tunnel's own address
   (loopback), are held at the relay while 4 x 64 MiB are echoed through the tunnel: every
   byte comes back (bench/loadgen checks them), and once the handshake timeout has passed
   (10 s) the relay holds about as many descriptors as it did idle, while the strangers still
   hold their ends open.
   The relay logs less than 100 lines about them all (summaries, not a line each).
2. A slowloris: 500 connections (or twice the per-source budget, if that is more) that each
   send a real TLS ClientHello one byte a second, each one the relay drops replaced within a
   second, for 13 s: the relay drops them at the per-source budget or the handshake timeout,
   and a reverse-proxy started at 3 s and at 9 s has its channel within a second and carries
   a round trip.
"""

import re
import resource
import socket
import ssl
import subprocess
import threading
import time

from conftest import SLOW, connect, free_port, pseudo_random, run_once, open_fds

SILENT = 1000
GARBAGE = 300
SLOW_CLIENTS = 500


def raise_own_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def open_quietly(port, count):
    """count TCP connections to port; the ones the kernel refuses are left out."""
    socks = []
    for _ in range(count):
        try:
            socks.append(connect("127.0.0.1", port, timeout=2))
        except OSError:
            pass
    return socks


@run_once
def test_strangers_held_while_4_x_64_mib_are_echoed(tunnel, bench_tools, bench_echo):
    raise_own_nofile()
    echo_port = bench_echo()
    strangers = []
    try:
        listen = free_port("127.0.0.1")
        t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (listen, echo_port)])
        idle = open_fds(t.relay.pid)
        start = time.monotonic()
        strangers += open_quietly(t.relay_port, SILENT)
        garbage = open_quietly(t.relay_port, GARBAGE)
        strangers += garbage
        for i, s in enumerate(garbage):
            try:
                s.send(pseudo_random("garbage %d" % i, 512 + i))
            except OSError:
                pass            # already closed by the relay
        assert len(strangers) >= (SILENT + GARBAGE) * 9 // 10, len(strangers)
        r = subprocess.run([bench_tools["loadgen"], "tput", "127.0.0.1", str(listen), "4",
                            str(64 * 1024 * 1024)], capture_output=True, text=True,
                           timeout=120 * SLOW)
        print(r.stdout.strip(), r.stderr[-300:])
        assert r.returncode == 0, (r.stdout, r.stderr[-400:])
        m = re.search(r"bytes=(\d+)", r.stdout)
        assert m and int(m.group(1)) >= 4 * 64 * 1024 * 1024, r.stdout
        # The strangers still hold their ends; the relay has let go of them.
        time.sleep(max(0.0, start + 11 - time.monotonic()))
        deadline = time.monotonic() + 6 * SLOW
        while open_fds(t.relay.pid) > idle + 16 and time.monotonic() < deadline:
            time.sleep(0.2)
        held = open_fds(t.relay.pid)
        print("relay descriptors: %d idle, %d after the handshake timeout" % (idle, held))
        assert held <= idle + 16, "the relay holds %d descriptors, %d when idle" % (held, idle)
        assert t.probe()
        relay_log = t.relay.log()
        assert len(relay_log.splitlines()) < 100, "the relay logged %d lines" % len(
            relay_log.splitlines())
    finally:
        for s in strangers:
            s.close()


def client_hello():
    """The bytes of a real TLS ClientHello for localhost (as Python's OpenSSL makes it)."""
    ctx = ssl.create_default_context()
    out, incoming = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def slowloris(port, count, seconds, stop, stats):
    """count connections each sending hello one byte a second; a connection the relay drops
    is replaced at once.  Bounded by seconds (and stop)."""
    hello = client_hello()
    conns = []                  # [socket, bytes sent]
    deadline = time.monotonic() + seconds
    stats.update(opened=0, dropped=0, bytes=0)
    while time.monotonic() < deadline and not stop.is_set():
        while len(conns) < count and not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                break
            s.setblocking(False)
            conns.append([s, 0])
            stats["opened"] += 1
        tick = time.monotonic()
        alive = []
        for c in conns:
            s, sent = c
            try:
                if s.recv(1) == b"":
                    raise ConnectionResetError
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                stats["dropped"] += 1
                continue
            try:
                if sent < len(hello):
                    s.send(hello[sent:sent + 1])
                    c[1] += 1
                    stats["bytes"] += 1
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                stats["dropped"] += 1
                continue
            alive.append(c)
        conns = alive
        stop.wait(max(0.0, tick + 1.0 - time.monotonic()))
    for s, _ in conns:
        s.close()


@run_once
def test_a_slowloris_does_not_keep_an_honest_client_out(tunnel):
    raise_own_nofile()
    t = tunnel()
    # Past the per-source budget whatever the open-file limit made it (156 at 20,000).
    per_source = int(t.relay.wait_log(re.compile(r"\((\d+) from one address\)")).group(1))
    count = max(SLOW_CLIENTS, 2 * per_source + 100)
    stop = threading.Event()
    stats = {}
    began = time.monotonic()
    loris = threading.Thread(target=slowloris, args=(t.relay_port, count, 13, stop, stats))
    loris.start()
    try:
        waits = []
        for when in (3, 9):             # the budget full; then near the handshake timeout
            time.sleep(max(0.0, began + when - time.monotonic()))
            begin = time.monotonic()
            rp = t.start_reverse_proxy(wait_connected=True)
            waits.append(time.monotonic() - begin)
            assert t.probe()
            rp.stop()
        loris.join(30)                  # 13 s: past the handshake timeout
    finally:
        stop.set()
        loris.join(30)
    print("slowloris of %d: %r; an honest reverse-proxy connected in %s" % (
        count, stats, ", ".join("%.0f ms" % (w * 1000) for w in waits)))
    for w in waits:
        assert w < 1.0 * SLOW, "an honest client took %.2f s to get a channel" % w
    assert stats["opened"] > count and stats["dropped"] > 0, stats
    t.relay.wait_log(re.compile(r"unauthenticated connections closed in the last 10 s"),
                     timeout=15)
    assert t.probe()
