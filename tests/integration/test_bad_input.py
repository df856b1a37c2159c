"""Bad input never crashes the relay and never disturbs another connection.

The relay runs with --handshake-timeout 2.  While a tunnel connection carries data (checked
byte for byte at the end), the relay is fed:

(a) 4 KiB of garbage on a raw TCP connection: dropped promptly (well before the timeout);
(b) a silent TCP connection: dropped after about 2 s;
(c) real TLS 1.3 connections (trusting the relay's certificate) that then send a malformed
    first frame: an unknown type, an AUTH with a huge length, a frame other than AUTH, an AUTH
    of another version, an AUTH with an unknown key: each is answered or dropped promptly;
    a truncated AUTH is dropped by the handshake timeout;
(d) a TLS 1.2 client: the handshake fails (TLS 1.3 only).

At the end the relay is alive, the data connection's bytes are intact, and a new round trip
works.  The relay logs the first bad connection of each kind in full and counts the others in
a summary line (every 10 s), so that a flood of them cannot flood the log.
"""

import hashlib
import os
import re
import socket
import ssl
import struct
import threading
import time

import pytest

from conftest import (connect, free_port, pseudo_random, read_until_closed, timer_bound, KiB,
                      MiB, SLOW)

HANDSHAKE_TIMEOUT = 2


class BackgroundStream:
    """A connection through the tunnel carrying a steady, throttled flow of echoed data."""

    def __init__(self, port):
        self.sock = connect("127.0.0.1", port, timeout=30 * SLOW)
        self.stop = threading.Event()
        self.sent = hashlib.sha256()
        self.echoed = hashlib.sha256()
        self.sent_bytes = self.echoed_bytes = 0
        self.error = None
        self.threads = [threading.Thread(target=self._send, daemon=True),
                        threading.Thread(target=self._receive, daemon=True)]
        for t in self.threads:
            t.start()

    def _send(self):
        try:
            deadline = time.monotonic() + 120 * SLOW
            i = 0
            while not self.stop.is_set() and time.monotonic() < deadline and i < 20000:
                chunk = pseudo_random("background %d" % i, 32 * KiB)
                self.sock.sendall(chunk)
                self.sent.update(chunk)
                self.sent_bytes += len(chunk)
                i += 1
                self.stop.wait(0.005)
            self.sock.shutdown(socket.SHUT_WR)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = self.error or "send: %r" % e

    def _receive(self):
        try:
            while True:
                data = self.sock.recv(256 * KiB)
                if not data:
                    return
                self.echoed.update(data)
                self.echoed_bytes += len(data)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = self.error or "receive: %r" % e

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60 * SLOW)
        self.sock.close()


def tls_client(cert, tls13=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(cert))
    if tls13:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tls_read_until_closed(tls, timeout):
    """Read a TLS socket until the relay closes it: (data, seconds)."""
    start = time.monotonic()
    deadline = start + timeout
    data = b""
    while time.monotonic() < deadline:
        tls.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = tls.recv(64 * KiB)
        except socket.timeout:
            break
        except (ssl.SSLError, OSError):
            return data, time.monotonic() - start  # closed without close_notify, or reset
        if not chunk:
            return data, time.monotonic() - start
        data += chunk
    pytest.fail("the relay kept a bad TLS client for %.1f s (got %r)" % (timeout, data[:64]))


PROTOCOL_VERSION = 3  # common/frame.h


def auth_frame(version=PROTOCOL_VERSION, role=1, group=0, key=None, signature=None):
    payload = (bytes([version, role]) + struct.pack(">I", group)
               + (key or os.urandom(32)) + (signature or os.urandom(64)))
    return bytes([1]) + struct.pack(">H", len(payload)) + payload


# (name, bytes sent after the TLS handshake, dropped at once (True) or by the timeout (False))
BAD_FRAMES = [
    ("unknown type 0xFF", b"\xff\x00\x00", True),
    ("AUTH with length 0xFFFF", b"\x01\xff\xff" + b"A" * 100, True),
    ("DATA instead of AUTH", b"\x07\x00\x05hello", True),
    ("AUTH of version 9", auth_frame(version=9), True),
    ("AUTH of version 1 (no channel reuse)", auth_frame(version=1), True),
    ("AUTH of version 2 (no rights per key)", auth_frame(version=2), True),
    ("AUTH with an unknown key", auth_frame(), True),
    ("AUTH with a bad role", auth_frame(role=7), True),
    ("truncated AUTH, then silence", auth_frame()[:20], False),
]


@timer_bound
def test_bad_input_is_dropped_and_others_are_unharmed(tunnel, echo_server, keys):
    echo = echo_server()
    port = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)],
               relay_args=["--handshake-timeout", str(HANDSHAKE_TIMEOUT)])
    relay_addr = ("127.0.0.1", t.relay_port)
    bad_sources = []  # (what, source port): the relay must log something about each
    stream = BackgroundStream(port)
    try:
        # (a) Garbage that is not TLS: dropped at once.
        garbage = b"\x00" + pseudo_random("garbage", 4 * KiB - 1)
        with connect(*relay_addr, timeout=5 * SLOW) as s:
            bad_sources.append(("garbage", s.getsockname()[1]))
            try:
                s.sendall(garbage)
            except (ConnectionResetError, BrokenPipeError):
                pass
            data, how, elapsed = read_until_closed(s, timeout=10 * SLOW)
        assert how in ("eof", "reset"), "garbage connection still open after %.1f s" % elapsed
        assert elapsed < 1.5, "garbage connection dropped only after %.2f s" % elapsed

        # (b) A silent client: dropped by the handshake timeout, about 2 s.
        with connect(*relay_addr, timeout=5 * SLOW) as s:
            bad_sources.append(("silent", s.getsockname()[1]))
            data, how, elapsed = read_until_closed(s, timeout=10 * SLOW)
        assert how in ("eof", "reset"), "silent connection still open after %.1f s" % elapsed
        assert data == b""
        assert 1.5 <= elapsed <= 5.0, "silent connection dropped after %.2f s" % elapsed

        # (c) TLS done right, then a bad first frame.
        for name, frame, prompt in BAD_FRAMES:
            raw = connect(*relay_addr, timeout=5 * SLOW)
            bad_sources.append((name, raw.getsockname()[1]))
            with tls_client(keys.cert).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() == "TLSv1.3"
                handshake_done = time.monotonic()
                tls.sendall(frame)
                data, elapsed = tls_read_until_closed(tls, timeout=10 * SLOW)
                elapsed = time.monotonic() - handshake_done
            if prompt:
                assert elapsed < 1.5, "%s: dropped only after %.2f s" % (name, elapsed)
            else:
                assert 1.0 <= elapsed <= 5.0, "%s: dropped after %.2f s" % (name, elapsed)
            # Whatever the relay answered, it is never an AUTH_RESULT "ok".
            assert not data.startswith(b"\x02\x00\x02" + bytes([PROTOCOL_VERSION, 0])), "%s: accepted!" % name
            if data:
                assert data[0] == 2, "%s: answered with frame type %d" % (name, data[0])
                assert data[4] != 0, "%s: AUTH_RESULT ok" % name

        # (d) TLS 1.2 is refused.
        raw = connect(*relay_addr, timeout=5 * SLOW)
        bad_sources.append(("TLS 1.2", raw.getsockname()[1]))
        try:
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                tls_client(keys.cert, tls13=False).wrap_socket(raw, server_hostname="127.0.0.1")
        finally:
            raw.close()
    finally:
        stream.finish()

    assert t.relay.alive(), "the relay died"
    assert stream.error is None, stream.error
    assert stream.sent_bytes > 1 * MiB, "the data connection hardly ran"
    assert stream.echoed_bytes == stream.sent_bytes
    assert stream.echoed.hexdigest() == stream.sent.hexdigest()
    assert t.probe(), "no round trip after the bad input"

    # The first bad connection of each kind got a log line naming it; the others are
    # counted in the summary that follows (rate-limited: a flood cannot multiply lines).
    t.relay.wait_log(re.compile(r"127\.0\.0\.1:%d: TLS handshake failed" % bad_sources[0][1]))
    t.relay.wait_log(re.compile(r"127\.0\.0\.1:%d: no TLS handshake and AUTH within 2 s"
                                % bad_sources[1][1]))
    t.relay.wait_log("authentication failed")
    summary = t.relay.wait_log(re.compile(
        r"unauthenticated connections closed in the last 10 s: (\d+) \(([^)]*)\); (\d+) of "
        r"them not logged one by one"), timeout=15)
    assert int(summary.group(1)) >= len(bad_sources) - 1, summary.group(0)
    logged = len(re.findall(r"127\.0\.0\.1:\d+: (?:TLS handshake failed|no TLS handshake|"
                            r"authentication failed|closed before authenticating)",
                            t.relay.log()))
    assert logged <= 6, "%d lines for %d bad connections" % (logged, len(bad_sources))
