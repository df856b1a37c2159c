"""Channel reuse: a channel whose user connection ended cleanly goes back to its pool.

- 1,000 sequential connections, each content-checked, ride on far fewer channels than
  connections: the relay's -v log counts the channels it authenticated and the pairs that
  ended cleanly.
- A connection that ends with an error (the destination resets it) closes its two channels:
  neither is paired again.
- After a burst, the pools give their surplus channels back (the reverse-proxy with RETIRE):
  the relay's channel count falls back.
"""

import re
import socket
import struct
import time

from conftest import (connect, pseudo_random, read_until_closed, recv_exactly, free_port,
                      KiB, SLOW)

PAIRED = re.compile(r"entry-point (\S+) key \S+(?: \([^)]*\))? paired with "
                    r"reverse-proxy (\S+)")


def count(log, pattern):
    return len(re.findall(pattern, log))


def echo_once(port, payload, timeout):
    """Send payload, half-close, read the whole echo until EOF."""
    with connect("127.0.0.1", port, timeout=timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data, how, _ = read_until_closed(s, timeout=timeout)
    assert how == "eof", "connection ended with %s" % how
    return data


def test_sequential_connections_reuse_channels(tunnel, echo_server):
    echo = echo_server()
    port = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)],
               relay_args=["-v"])
    relay = t.relay
    before = relay.log()
    ended_before = count(before, r"connection ended cleanly")
    n = 1000
    for i in range(n):
        payload = pseudo_random("reuse %d" % i, 1 + (i * 37) % (4 * KiB))
        assert echo_once(port, payload, 10 * SLOW) == payload, "connection %d: bytes differ" % i
    assert echo.accepted >= n
    # Every clean end is logged by the relay (the last one may trail the user's EOF).
    deadline = time.monotonic() + 10 * SLOW
    while count(relay.log(), r"connection ended cleanly") - ended_before < n:
        assert time.monotonic() < deadline, "the relay logged %d clean ends of %d" % (
            count(relay.log(), r"connection ended cleanly") - ended_before, n)
        time.sleep(0.05)
    log = relay.log()
    channels = count(log, r"entry-point authenticated")
    assert channels < n // 10, "%d entry-point channels for %d connections" % (channels, n)
    rp_channels = count(log, r"reverse-proxy authenticated")
    assert rp_channels < n // 10, "%d reverse-proxy channels for %d connections" % (
        rp_channels, n)
    assert count(log, r"entry-point channel idle again") >= n
    assert count(log, r"reverse-proxy channel idle again") >= n


def reset_handler(conn, server):
    """Read a little, then close with a reset (SO_LINGER 0)."""
    try:
        conn.settimeout(5)
        conn.recv(1024)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    finally:
        conn.close()


def test_channel_of_a_reset_connection_is_not_reused(tunnel, echo_server, tcp_server):
    echo = echo_server()
    resetter = tcp_server(reset_handler)
    good = free_port("127.0.0.1")
    bad = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (good, echo.port),
                       "127.0.0.1:%d:127.0.0.1:%d" % (bad, resetter.port)],
               relay_args=["-v"])
    relay = t.relay
    # Warm up: channels get reused.
    for i in range(20):
        payload = pseudo_random("warm %d" % i, 2 * KiB)
        assert echo_once(good, payload, 10 * SLOW) == payload

    mark = len(relay.log())
    with connect("127.0.0.1", bad, timeout=10 * SLOW) as s:
        s.sendall(b"hello, then reset\n")
        data, how, _ = read_until_closed(s, timeout=10 * SLOW)
    assert how in ("reset", "eof")
    assert data == b""
    m = relay.wait_log(PAIRED, since=mark)
    entry_peer, reverse_peer = m.group(1), m.group(2)
    relay.wait_log("%s: reverse-proxy reset the connection" % reverse_peer, since=mark)

    # Many more connections: the two channels of the reset one are never paired again.
    for i in range(40):
        payload = pseudo_random("after %d" % i, 2 * KiB)
        assert echo_once(good, payload, 10 * SLOW) == payload
    after = relay.log()[mark:]
    pairs = PAIRED.findall(after)
    assert len(pairs) >= 41
    assert pairs[0] == (entry_peer, reverse_peer)
    for e, r in pairs[1:]:
        assert e != entry_peer, "entry-point channel %s reused after a reset" % entry_peer
        assert r != reverse_peer, "reverse-proxy channel %s reused after a reset" % reverse_peer
    assert "%s: entry-point channel idle again" % entry_peer not in after
    assert "%s: reverse-proxy channel idle again" % reverse_peer not in after


def test_pools_give_back_surplus_channels(tunnel, echo_server):
    echo = echo_server()
    port = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)],
               relay_args=["-v"])
    relay = t.relay
    # 60 connections at once: both pools grow.
    socks = []
    try:
        for i in range(60):
            socks.append(connect("127.0.0.1", port, timeout=10 * SLOW))
        for i, s in enumerate(socks):
            payload = pseudo_random("burst %d" % i, 1 * KiB)
            s.sendall(payload)
            assert recv_exactly(s, len(payload), 10 * SLOW) == payload
    finally:
        for s in socks:
            s.close()
    grown = count(relay.log(), r"reverse-proxy authenticated")
    assert grown >= 30, "only %d reverse-proxy channels for 60 connections at once" % grown
    # Within a few ping rounds (5 s each), the reverse-proxy retires its surplus and the
    # entry-point closes its own.
    relay.wait_log(re.compile(r"idle reverse-proxy channel retired"), timeout=20)
    deadline = time.monotonic() + 30 * SLOW
    while count(relay.log(), r"idle reverse-proxy channel retired") < grown // 2:
        assert time.monotonic() < deadline, "only %d of %d reverse-proxy channels retired" % (
            count(relay.log(), r"idle reverse-proxy channel retired"), grown)
        time.sleep(0.2)
    # The tunnel still works after shrinking.
    payload = pseudo_random("after shrink", 8 * KiB)
    assert echo_once(port, payload, 10 * SLOW) == payload


def test_pool_refills_resume_the_tls_session(tunnel, echo_server):
    """Channels dialled after the first handshake resume its TLS session (ticket), and the
    connections on them are as good as any."""
    echo = echo_server()
    port = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)],
               rp_args=["-v"], ep_args=["-v"])
    # Connections held open at once use up the pools: refills follow.
    socks = [connect("127.0.0.1", port, timeout=10 * SLOW) for _ in range(12)]
    try:
        for i, s in enumerate(socks):
            payload = pseudo_random("resume %d" % i, 1000)
            s.sendall(payload)
            assert recv_exactly(s, len(payload), 10 * SLOW) == payload
    finally:
        for s in socks:
            s.close()
    for daemon in (t.reverse_proxy, t.entry_point):
        deadline = time.monotonic() + 10 * SLOW
        while count(daemon.log(), r"TLS handshake done \(session resumed\)") == 0:
            assert time.monotonic() < deadline, "no resumed TLS session:\n" + daemon.log_tail()
            time.sleep(0.05)
        assert count(daemon.log(), r"TLS handshake done \(full\)") >= 1


def test_resumption_survives_closed_channels(tunnel, echo_server):
    """Channels that close (here: the surplus after a burst, closed without TLS close_notify,
    as every channel ends) leave the newest ticket usable: every later refill resumes."""
    echo = echo_server()
    port = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)],
               relay_args=["-v"], rp_args=["-v"], ep_args=["-v"])

    def burst(tag, n):
        socks = []
        try:
            for i in range(n):
                socks.append(connect("127.0.0.1", port, timeout=10 * SLOW))
            for i, s in enumerate(socks):
                payload = pseudo_random("%s %d" % (tag, i), 1 * KiB)
                s.sendall(payload)
                assert recv_exactly(s, len(payload), 10 * SLOW) == payload
        finally:
            for s in socks:
                s.close()

    burst("grow", 40)
    # The surplus goes: both clients close idle channels (the reverse-proxy retires its own).
    t.relay.wait_log(re.compile(r"idle reverse-proxy channel retired"), timeout=20 * SLOW)
    deadline = time.monotonic() + 20 * SLOW
    while count(t.entry_point.log(), r"closing a surplus idle channel") < 10:
        assert time.monotonic() < deadline, "the entry-point kept its surplus channels"
        time.sleep(0.2)
    time.sleep(1)
    full_before = {d.name: count(d.log(), r"TLS handshake done \(full\)")
                   for d in (t.reverse_proxy, t.entry_point)}
    resumed_before = {d.name: count(d.log(), r"TLS handshake done \(session resumed\)")
                      for d in (t.reverse_proxy, t.entry_point)}
    burst("again", 40)
    for d in (t.reverse_proxy, t.entry_point):
        log = d.log()
        assert count(log, r"TLS handshake done \(session resumed\)") > resumed_before[d.name], \
            "%s dialled no new channel" % d.name
        assert count(log, r"TLS handshake done \(full\)") == full_before[d.name], \
            "%s made full handshakes after its channels closed:\n%s" % (d.name, d.log_tail())
