"""Torture: authenticated clients that break the frame rules, beside a real tunnel.

Issue 11, item 6.  Every case starts a real tunnel (relay-server -v, reverse-proxy -v and
entry-point -v in group 0, an echo server behind it) and keeps two kinds of traffic going
through it while it runs:

- a background echo stream (16 KiB blocks, about 4 MB/s) whose bytes are checked block by
  block against the SHA-256 of everything sent so far; "checkpoints" before, during and
  after each case wait until all that was sent by then has come back intact;
- a prober that makes a new round trip through the tunnel every 100 ms: new user
  connections keep working (a single failure fails the case).

Beside it, raw authenticated channels (tests/tools/chanpeer, driven by chanpeer.py) break
the rules of common/PROTOCOL.md, in other groups (or in group 0, where the honest peer is
the real reverse-proxy).  For every case:

- the relay logs the documented line about the offending channel (its address first), and
  closes it;
- the honest peer -- a raw channel, or the real reverse-proxy or entry-point where the case
  says so -- receives what PROTOCOL.md says: RST and a close, a close alone, OPEN_RESULT,
  or the frame itself when it is allowed;
- at the end every raw channel is "-> dead" in the relay's log, the relay holds no more
  descriptors besides its open channels than before the case (no leak), the relay's
  protocol-error lines name raw channels only, and the daemons of the tunnel log no
  protocol error but those a case expects.

The cases, each its own test (parametrised ones run their variants side by side):

  truncated headers      1-4 bytes of a header, then nothing, then a close (three ways),
                         idle and paired, both roles; idle and silent: the idle timeout
  frame length limits    each type at and past its limits (common/frame.c frame_limits),
                         both roles, idle and paired
  unknown frame types    0, 12 and 255, idle and paired, both roles
  DATA before OPEN       and DATA before OPEN_RESULT (which the relay passes: end points
                         check it)
  FIN twice              in one record, in two, and after the partner's FIN
  REUSE and AUTH         sent by a client, idle and paired
  OPEN from a reverse-proxy
  a second OPEN while paired
  an OPEN that waits     in a group without reverse-proxy, garbage behind it: OPEN_RESULT 4
  real honest peers      the same attacks with the real reverse-proxy, and a real
                         entry-point, on the other side
  10,000 PINGs           without reading the PONGs (RELAY_PONG_BACKLOG)
  a reader that never reads while its partner floods (backpressure): relay RSS bounded

Run with -s (or -rP) to see what each case observed.
"""

import concurrent.futures
import hashlib
import itertools
import os
import re
import socket
import struct
import threading
import time

import pytest

from chanpeer import (AUTH, AUTH_RESULT, DATA, FIN, NAMES, OPEN, OPEN_RESULT, PING, PONG,
                      REUSE, RETIRE, RST, ChanPeer, describe, frame, open_payload,
                      open_result_payload)
from conftest import (SANITIZER_REPORT, SLOW, KiB, MiB, connect, free_port, pseudo_random,
                      read_until_closed, scaled)

ROLES = ("entry", "reverse")
ROLE_NAME = {"entry": "entry-point", "reverse": "reverse-proxy"}
OTHER = {"entry": "reverse", "reverse": "entry"}

# Payload limits of each type: common/frame.c, frame_limits (PROTOCOL.md, "Frames").
LIMITS = {AUTH: (1, 1024), AUTH_RESULT: (2, 1024), PING: (0, 8), PONG: (0, 8),
          OPEN: (4, 321), OPEN_RESULT: (1, 201), DATA: (1, 16384), FIN: (0, 0),
          RST: (0, 0), REUSE: (0, 0), RETIRE: (0, 0)}

IDLE_TIMEOUT = 10           # the relay's smallest --idle-timeout
# Under AddressSanitizer freed memory sits in a quarantine; a small one keeps RSS about
# the relay's buffers (as test_backpressure.py does).
SANITIZER_ENV = {"ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:quarantine_size_mb=4"}
MAX_RSS_GROWTH_KIB = scaled(4, 24) * 1024
FD_SLACK = 1                # a connection being accepted, a channel being reaped

OBSERVED = []               # what the cases saw, printed at the end of each


def observe(text):
    """Note what a case saw; printed when it ends (pytest -s or -rP shows it)."""
    OBSERVED.append(text)


# ---------------------------------------------------------------------------------------------
# Helpers


def run_all(fn, items, width=16):
    """fn(item) for every item, width at a time in threads; fails with every error."""
    errors = []

    def work(item):
        try:
            fn(item)
        except BaseException as e:  # noqa: BLE001 - pytest.fail raises a BaseException
            errors.append("%r: %s" % (item, str(e).strip()[:2000]))

    with concurrent.futures.ThreadPoolExecutor(max_workers=width) as pool:
        list(pool.map(work, items))
    if errors:
        pytest.fail("%d of %d failed:\n%s" % (len(errors), len(items), "\n".join(errors)),
                    pytrace=False)


def pattern(n):
    """The bytes of a chanpeer flood (and of the fountain): byte k is k mod 256."""
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def open_of_length(n, port=9):
    """An OPEN payload of exactly n bytes (4 or 7-321): port, host, source."""
    if n == 4:      # port, host length 1, host; no source length (malformed, in limits)
        return struct.pack(">HB", port, 1) + b"h"
    s = min(64, n - 5)
    return open_payload(port, "a" * (n - 4 - s), "s" * s)


def payload_of(ftype, n):
    """A payload of n bytes for a frame of type ftype."""
    if ftype == OPEN:
        return open_of_length(n)
    if ftype == OPEN_RESULT:
        return open_result_payload(0, "t" * (n - 1))
    if ftype == AUTH:
        return (bytes([3, 1]) + os.urandom(n))[:n]
    return bytes((i * 7 + 1) & 0xFF for i in range(n))


def auth_payload(role=1, group=0):
    """A well-formed AUTH payload (version 3) with a random key and signature."""
    return bytes([3, role]) + struct.pack(">I", group) + os.urandom(32) + os.urandom(64)


def until_closed(p, timeout=5.0, what="close by the relay"):
    """p's 'closed' event: seen already, or the next one within timeout."""
    for e in p.events:
        if e.kind == "closed":
            return e
    return p.wait_closed(timeout, what)


def frames_after(p, mark):
    """The frames p received after its event mark (len(p.events) at the time)."""
    return [e for e in p.events[mark:] if e.kind == "frame"]


def behind_auth(p):
    """A channel whose AUTH carried a bad frame in its record: the relay closes it in the
    same pass as it answers the AUTH, and what it queued (AUTH_RESULT) goes with it: the
    client sees its AUTH_RESULT or, as observed, only the close.  Returns what it saw."""
    ev = p.expect(lambda e: e.kind in ("auth", "closed"), 10, "AUTH_RESULT or a close")
    if ev.kind == "auth":
        assert ev.line == "auth 0", ev.line
    return ev.line


def relay_fds(daemon):
    return len(os.listdir("/proc/%d/fd" % daemon.pid))


def relay_send_queue(relay_port, peer_port):
    """Bytes the kernel holds in the relay's socket to peer_port, not yet acknowledged."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(name).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            w = line.split()
            local, remote = int(w[1].split(":")[-1], 16), int(w[2].split(":")[-1], 16)
            if local == relay_port and remote == peer_port:
                return int(w[4].split(":")[0], 16)
    return None


class LogView:
    """A daemon's log, read incrementally (many threads wait on it at once)."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.lock = threading.Lock()
        self.text = ""
        self.pos = 0

    def read(self):
        with self.lock:
            try:
                with open(self.daemon.log_path, "rb") as f:
                    f.seek(self.pos)
                    new = f.read()
            except FileNotFoundError:
                new = b""
            # Only whole lines: a line being written is read next time.
            cut = new.rfind(b"\n") + 1
            self.pos += cut
            self.text += new[:cut].decode(errors="replace")
            return self.text

    def wait(self, regex, since=0, timeout=5.0, what=None):
        deadline = time.monotonic() + timeout * SLOW
        while True:
            m = regex.search(self.read(), since)
            if m:
                return m
            if not self.daemon.alive():
                pytest.fail("%s died (status %s) before logging %r\n%s" % (
                    self.daemon.name, self.daemon.proc.poll(), regex.pattern,
                    self.daemon.log_tail(40)))
            if time.monotonic() > deadline:
                pytest.fail("%s did not log %s within %.1f s" % (
                    self.daemon.name, what or repr(regex.pattern), timeout * SLOW))
            time.sleep(0.02)


class EchoStream:
    """One connection through the tunnel carrying a steady echoed stream, checked block by
    block: after each 16 KiB block the SHA-256 of everything received must equal that of
    everything sent up to there."""

    BLOCK = 16 * KiB

    def __init__(self, port):
        self.sock = connect("127.0.0.1", port, timeout=30 * SLOW)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.sent = 0
        self.received = 0
        self.verified = 0
        self.expected = {}  # offset of a block's end -> sha256 of the stream up to it
        self.final_sent = self.final_received = None
        self.error = None
        self.eof = False
        self._sent_hash = hashlib.sha256()
        self._recv_hash = hashlib.sha256()
        self.threads = [threading.Thread(target=self._send, daemon=True),
                        threading.Thread(target=self._receive, daemon=True)]
        for t in self.threads:
            t.start()

    def _send(self):
        try:
            i = 0
            while not self.stop.is_set():
                block = pseudo_random("torture stream %d" % i, self.BLOCK)
                self._sent_hash.update(block)
                with self.lock:
                    self.expected[self.sent + len(block)] = self._sent_hash.hexdigest()
                self.sock.sendall(block)
                with self.lock:
                    self.sent += len(block)
                i += 1
                self.stop.wait(0.004)
            self.final_sent = self._sent_hash.hexdigest()
            self.sock.shutdown(socket.SHUT_WR)
        except Exception as e:  # noqa: BLE001 - reported by check()
            self.error = self.error or "send after %d bytes: %r" % (self.sent, e)

    def _receive(self):
        try:
            while True:
                data = self.sock.recv(256 * KiB)
                if not data:
                    self.eof = True
                    break
                pos = 0
                while pos < len(data):
                    room = self.BLOCK - self.received % self.BLOCK
                    piece = data[pos:pos + room]
                    self._recv_hash.update(piece)
                    self.received += len(piece)
                    pos += len(piece)
                    if self.received % self.BLOCK == 0:
                        with self.lock:
                            want = self.expected.pop(self.received, None)
                        if want != self._recv_hash.hexdigest():
                            self.error = self.error or (
                                "the echo differs from what was sent in the block ending "
                                "at byte %d" % self.received)
                            return
                        self.verified = self.received
            self.final_received = self._recv_hash.hexdigest()
        except Exception as e:  # noqa: BLE001 - reported by check()
            self.error = self.error or "receive after %d bytes: %r" % (self.received, e)

    def check(self, label, timeout=15.0):
        """Everything sent until now comes back intact; returns the bytes verified."""
        with self.lock:
            target = self.sent
        deadline = time.monotonic() + timeout * SLOW
        while self.verified < target and self.error is None:
            if time.monotonic() > deadline:
                pytest.fail("%s: the background stream stalled: %d of %d bytes echoed" % (
                    label, self.verified, target))
            time.sleep(0.01)
        assert self.error is None, "%s: background stream: %s" % (label, self.error)
        return self.verified

    def finish(self):
        """Stop sending, read the echo to its end; everything sent came back intact."""
        self.stop.set()
        for t in self.threads:
            t.join(30 * SLOW)
        self.sock.close()
        assert self.error is None, "background stream: %s" % self.error
        assert self.eof, "background stream: no end of the echo"
        assert self.received == self.sent, "background stream: %d bytes sent, %d echoed" % (
            self.sent, self.received)
        assert self.final_received == self.final_sent
        return self.sent

    def close(self):
        self.stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for t in self.threads:
            t.join(5)
        self.sock.close()


class Prober:
    """A new round trip through the tunnel every 100 ms, each one checked."""

    def __init__(self, tunnel):
        self.tunnel = tunnel
        self.ok = 0
        self.failures = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            if self.tunnel.probe(timeout=5.0):
                self.ok += 1
            else:
                self.failures.append(time.monotonic())
            self.stop.wait(0.1)

    def check(self, label, timeout=15.0):
        n = self.ok
        deadline = time.monotonic() + timeout * SLOW
        while self.ok <= n and not self.failures:
            assert time.monotonic() < deadline, "%s: no round trip through the tunnel" % label
            time.sleep(0.01)
        assert not self.failures, "%s: %d round trips through the tunnel failed" % (
            label, len(self.failures))

    def close(self):
        self.stop.set()
        self.thread.join(30 * SLOW)


class Arena:
    """The tunnel, its traffic, and the raw channels of one case."""

    def __init__(self, tunnel, keys, stream_port):
        self.t = tunnel
        self.relay = tunnel.relay
        self.keys = keys
        self.rlog = LogView(self.relay)
        self.rplog = LogView(tunnel.reverse_proxy)
        self.eplog = LogView(tunnel.entry_point)
        self.peers = []
        self.lock = threading.Lock()
        self.groups = itertools.count(1000)
        self.client_errors = []  # protocol-error lines a case expects of the tunnel's daemons
        self.extra_logs = []     # LogView of daemons a case adds
        self.stream = EchoStream(stream_port)
        self.prober = Prober(tunnel)
        self.finished = False
        self.checkpoint("before")
        self.fds = self.fds_besides_channels()
        self.start = len(self.rlog.read())

    def fds_besides_channels(self):
        """The relay's descriptors less its open channels (accepted, "connected (worker
        N)" in its log, and not yet "-> dead"): constant unless a channel leaks."""
        text = self.rlog.read()
        channels = (len(re.findall(r": connected \(worker \d+\)", text)) -
                    len(re.findall(r" channel: \w+ -> dead", text)))
        return relay_fds(self.relay) - channels

    # -- raw channels

    def group(self):
        with self.lock:
            return next(self.groups)

    def peer(self, role, group, **kw):
        since = len(self.rlog.read())
        p = ChanPeer(self.t.relay_port, self.keys, role, group, **kw)
        p.since = since
        with self.lock:
            self.peers.append(p)
        return p

    def worker_of(self, p):
        return int(self.says(p, r"connected \(worker (\d+)\)").group(1))

    def peer_on_worker(self, worker, role, group, **kw):
        """A channel accepted by that worker (dialled again until the kernel puts it
        there), its TLS handshake and AUTH under way."""
        for _ in range(40):
            p = self.peer(role, group, hold=True, **kw)
            if self.worker_of(p) == worker:
                p.go()
                return p
            p.close()
        pytest.fail("40 connections, none accepted by worker %d" % worker)

    def authed(self, role, group=None, **kw):
        p = self.peer(role, self.group() if group is None else group, **kw)
        assert p.wait_auth() == 0, describe(p.events)
        return p

    def pair(self, group=None, entry_kw=None, reverse_kw=None, answer=True):
        """A raw entry and reverse channel, paired: OPEN passed (and OPEN_RESULT 0)."""
        g = self.group() if group is None else group
        reverse = self.authed("reverse", g, **(reverse_kw or {}))
        entry = self.authed("entry", g, **(entry_kw or {}))
        entry.send(frame(OPEN, open_payload(9, "127.0.0.1", "torture")))
        reverse.expect_frame(OPEN)
        if answer:
            reverse.send(frame(OPEN_RESULT, open_result_payload(0)))
            entry.expect_frame(OPEN_RESULT)
        return entry, reverse

    # -- what the relay says

    def says(self, p, text, timeout=5.0):
        """The relay logs 'PEER: text' about p (text: a regular expression)."""
        return self.rlog.wait(re.compile(re.escape(p.local) + ": " + text), p.since, timeout,
                              "%r about %s" % (text, p.local))

    def dead(self, p, timeout=5.0):
        """The relay has closed p's channel ('... -> dead')."""
        return self.says(p, r"(?:entry-point|reverse-proxy|new) channel: \w+ -> dead", timeout)

    def line(self, p, text):
        """The relay's first line about p that matches text, for the report."""
        m = re.compile(re.escape(p.local) + ": " + text + ".*").search(self.rlog.read(),
                                                                        p.since)
        return m.group(0) if m else None

    def relay_error(self, p, text, timeout=5.0):
        """The relay logs 'PEER: protocol error: text' and closes p."""
        m = self.says(p, "protocol error: " + text, timeout)
        self.dead(p)
        return m

    # -- outcomes

    def offender_closed(self, p, mark=None, timeout=5.0):
        """p (the offender) is closed by the relay and received no frame after mark."""
        until_closed(p, timeout)
        if mark is not None:
            got = frames_after(p, mark)
            assert not got, "%r received %s before its close" % (p, describe(got))

    def partner_reset(self, p, mark, timeout=5.0, before=()):
        """p (the honest partner) receives the frames in before, then RST, then is closed;
        its channel is dead in the relay."""
        until_closed(p, timeout, "RST and close of the honest partner")
        got = [e.type for e in frames_after(p, mark)]
        want = list(before) + [RST]
        assert got == want, "%r: received %s, expected %s, then a close" % (
            p, describe(frames_after(p, mark)), "+".join(NAMES[t] for t in want))
        self.dead(p)

    def checkpoint(self, label):
        """The tunnel's traffic is intact and flowing; the relay is alive."""
        assert self.relay.alive(), "%s: the relay died:\n%s" % (label, self.relay.log_tail(40))
        self.stream.check(label)
        self.prober.check(label)
        m = SANITIZER_REPORT.search(self.rlog.read())
        assert m is None, "%s: sanitizer report in the relay's log:\n%s" % (
            label, self.relay.log_tail(60))

    def finish(self):
        """The end of a case: traffic intact; every raw channel dead in the relay, which
        holds no more descriptors besides its channels than before; no stray protocol
        errors."""
        self.checkpoint("after")
        for p in self.peers:
            p.close()
        for p in self.peers:
            self.dead(p, 10)
        deadline = time.monotonic() + 10 * SLOW
        while self.fds_besides_channels() > self.fds + FD_SLACK:
            assert time.monotonic() < deadline, (
                "the relay holds %d descriptors besides its open channels, %d before the "
                "case" % (self.fds_besides_channels(), self.fds))
            time.sleep(0.05)
        sent = self.stream.finish()
        self.prober.close()
        assert not self.prober.failures, "%d round trips failed" % len(self.prober.failures)
        locals_ = {p.local for p in self.peers}
        for line in self.rlog.read()[self.start:].splitlines():
            if "protocol error" in line:
                who = line.split(": ")[1]
                assert who in locals_, "a protocol error of a tunnel channel: %s" % line
        for view in [self.rplog, self.eplog] + self.extra_logs:
            for line in view.read().splitlines():
                if "protocol error" in line:
                    assert any(e in line for e in self.client_errors), (
                        "unexpected in the log of %s: %s" % (view.daemon.name, line))
        assert self.relay.alive()
        assert SANITIZER_REPORT.search(self.rlog.read()) is None
        print("background stream: %.1f MiB echoed intact; %d round trips; %d raw channels"
              % (sent / MiB, self.prober.ok, len(self.peers)))
        self.finished = True

    def close(self):
        for p in self.peers:
            p.close()
        if not self.finished:
            self.stream.close()
            self.prober.close()


@pytest.fixture
def arena(tunnel, echo_server, keys):
    """arena(relay_args=(), env=None) -> Arena: a tunnel in group 0 with its traffic."""
    made = []

    def make(relay_args=(), env=None):
        echo = echo_server()
        port = free_port("127.0.0.1")
        t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)],
                   relay_args=["-v"] + list(relay_args), rp_args=["-v"], ep_args=["-v"],
                   env=env)
        a = Arena(t, keys, port)
        made.append(a)
        return a

    del OBSERVED[:]
    yield make
    for a in made:
        a.close()
    if OBSERVED:
        print("\n".join(["", "== observed"] + OBSERVED))


# ---------------------------------------------------------------------------------------------
# Truncated headers

TRUNCATED = bytes([DATA, 0x00, 0x10, 0x41])  # a DATA header (16 bytes announced), 1 byte
CLOSES = ("shutdown", "quit", "abort")


def close_by(p, how):
    """End a raw channel: close_notify + FIN (shutdown), FIN alone (quit), or RST (abort)."""
    if how == "shutdown":
        p.shutdown()
    elif how == "quit":
        p.quit()
    else:
        p.abort()


def test_truncated_header_on_idle_channels(arena):
    """1-4 bytes of a header (a DATA header announcing 16 bytes, then its first byte) on an
    idle channel of each role, then nothing.  The relay cannot judge a header it does not
    have (and does not read a payload it has not got): it waits, saying nothing, for 1 s.
    Then the channel closes (close_notify and FIN, FIN alone, or RST): "idle ROLE channel
    closed".  Channels that stay silent are dropped by the idle timeout (--idle-timeout 10,
    the bytes do not count as a PING): "idle ROLE channel silent for 10 s, closing"."""
    a = arena(relay_args=["--idle-timeout", str(IDLE_TIMEOUT)])
    cases = [(role, n, how) for role in ROLES for n in (1, 2, 3, 4)
             for how in CLOSES + ("silent",)]
    peers = {}

    def setup(c):
        p = a.authed(c[0])
        p.send(TRUNCATED[:c[1]])
        peers[c] = p

    run_all(setup, cases)
    time.sleep(1.0)
    for c, p in peers.items():
        p.drain()
        assert not p.closed(), "%r: closed after a truncated header: %s" % (c, describe(p.events))
        assert a.line(p, "protocol error") is None
    a.checkpoint("during: %d idle channels hold a truncated header" % len(peers))

    def close(c):
        role, n, how = c
        p = peers[c]
        if how == "silent":
            return
        close_by(p, how)
        if how == "shutdown":
            until_closed(p, 5)
        a.says(p, "idle %s channel closed" % ROLE_NAME[role])
        a.dead(p)

    run_all(close, cases)
    a.checkpoint("after the closes")

    def silent(c):
        role, n, how = c
        if how != "silent":
            return
        p = peers[c]
        until_closed(p, IDLE_TIMEOUT + 5)
        a.says(p, "idle %s channel silent for %d s, closing" % (ROLE_NAME[role], IDLE_TIMEOUT))
        a.dead(p)

    run_all(silent, cases)
    p = peers[("entry", 4, "shutdown")]
    observe("idle, truncated header then close: %s" % a.line(p, "idle"))
    p = peers[("reverse", 2, "silent")]
    observe("idle, truncated header then silence: %s; the peer saw %s" % (
        a.line(p, "idle"), p.events[-1].line))
    a.finish()


def test_truncated_header_on_paired_channels(arena):
    """The same on a pair (OPEN and OPEN_RESULT passed), from either side.  1-2 bytes stay in
    the relay; from 3 bytes on, the DATA header passes at once, and the payload byte with
    it (the relay passes a frame on as it comes): the partner holds an unfinished frame.
    Nothing else happens until the offender closes; then the relay logs "ROLE channel ended
    (...)" and closes the partner after writing what it holds: no RST (PROTOCOL.md, "A
    channel's life" 5: a close without FIN/RST, which an end point answers with a reset)."""
    a = arena()
    cases = [(off, n, how) for off in ROLES for n in (1, 2, 3, 4) for how in CLOSES]
    pairs = {}

    def setup(c):
        entry, reverse = a.pair()
        off, partner = (entry, reverse) if c[0] == "entry" else (reverse, entry)
        mark = len(partner.events)
        off.send(TRUNCATED[:c[1]])
        pairs[c] = (off, partner, mark)

    run_all(setup, cases)
    time.sleep(0.5)

    def held(c):
        off, partner, mark = pairs[c]
        n = c[1]
        got = partner.partial()
        assert got == (TRUNCATED[:n] if n >= 3 else b""), (
            "%r: the partner holds %s" % (c, got.hex()))
        assert not off.closed() and not partner.closed()
        assert not frames_after(partner, mark)

    run_all(held, cases)
    a.checkpoint("during: %d pairs hold a truncated header" % len(pairs))

    def close(c):
        off, partner, mark = pairs[c]
        close_by(off, c[2])
        if c[2] == "shutdown":
            until_closed(off, 5)
        a.says(off, r"%s channel ended \(" % ROLE_NAME[c[0]])
        a.dead(off)
        ev = until_closed(partner, 5, "the close of the partner")
        assert not frames_after(partner, mark), describe(frames_after(partner, mark))
        if c[1] >= 3:
            assert TRUNCATED[:c[1]].hex() in ev.line, ev.line
        a.says(partner, r"%s channel: paired -> closing" % ROLE_NAME[OTHER[c[0]]])
        a.dead(partner)

    run_all(close, cases)
    for how in CLOSES:
        off, partner, _ = pairs[("entry", 4, how)]
        observe("paired, 4 bytes then %s: relay: %s; the partner saw: %s" % (
            how, a.line(off, "entry-point channel ended"), partner.events[-1].line))
    a.finish()


# ---------------------------------------------------------------------------------------------
# Lengths at and past each type's limits


def length_cases():
    out = []
    for ftype, (lo, hi) in sorted(LIMITS.items()):
        if lo > 0:
            out.append((ftype, lo - 1, "past"))
        out.append((ftype, lo, "at"))
        if hi != lo:
            out.append((ftype, hi, "at"))
        out.append((ftype, hi + 1, "past"))
    return out


def idle_expectation(role, ftype):
    """What the relay does with a frame (within its limits) on an idle channel of role."""
    if ftype == PING:
        return "pong", None
    if ftype == OPEN and role == "entry":
        return "pairs", None
    if ftype in (RST, RETIRE):
        return "closed", "idle %s channel %s" % (ROLE_NAME[role],
                                                 "reset" if ftype == RST else "retired")
    return "error", "%s on an idle %s channel" % (NAMES[ftype], ROLE_NAME[role])


def paired_expectation(role, ftype):
    """What the relay does with a frame (within its limits) from role on a pair whose OPEN
    and OPEN_RESULT have passed."""
    if ftype in (DATA, FIN):
        return "passes", None
    if ftype in (PING, RETIRE):
        return "dropped", None
    if ftype == RST:
        return "reset", "%s reset the connection" % ROLE_NAME[role]
    again = ((ftype == OPEN and role == "entry") or
             (ftype == OPEN_RESULT and role == "reverse"))
    return "error", "unexpected %s%s from the %s" % (NAMES[ftype], " again" if again else "",
                                                     ROLE_NAME[role])


@pytest.mark.parametrize("state", ["idle", "paired"])
@pytest.mark.parametrize("role", ROLES)
def test_frame_length_limits(arena, role, state):
    """Every type at its payload limits (common/frame.c) and one byte past them, from one
    role, on an idle channel or a pair.  Past a limit only the header is sent: the relay
    must refuse it from the header alone ("protocol error: TYPE frame of N bytes (allowed
    LO-HI)"), and on a pair the partner gets RST.  At the limits the frame is judged by
    its type: idle, PING is answered with PONG, an entry-point's OPEN is paired (the raw
    reverse channel waiting in the group receives it byte for byte), RST and RETIRE close
    quietly, anything else is "TYPE on an idle ROLE channel"; paired, DATA and FIN pass
    byte for byte, PING and RETIRE are dropped, RST passes and ends the pair, anything else
    is "unexpected TYPE from the ROLE" and the partner gets RST."""
    a = arena()
    seen = []

    def idle_case(c):
        ftype, n, kind = c
        g = a.group()
        waiting = a.authed("reverse", g) if (role == "entry" and ftype == OPEN) else None
        p = a.authed(role, g)
        mark = len(p.events)
        body = payload_of(ftype, n)
        if kind == "past":
            p.send(struct.pack(">BH", ftype, n))
            a.relay_error(p, r"%s frame of %d bytes \(allowed %d-%d\)" % (
                (NAMES[ftype], n) + LIMITS[ftype]))
            a.offender_closed(p, mark)
            seen.append("%s %d: protocol error, closed" % (NAMES[ftype], n))
            return
        p.send(frame(ftype, body))
        what, text = idle_expectation(role, ftype)
        if what == "pong":
            assert p.expect_frame(PONG).length == 0
            assert not p.closed()
        elif what == "pairs":
            got = waiting.expect_frame(OPEN)
            assert got.payload == body
            a.says(p, "entry-point channel: queued -> paired")
        elif what == "closed":
            a.says(p, text)
            a.dead(p)
            a.offender_closed(p, mark)
        else:
            a.relay_error(p, text)
            a.offender_closed(p, mark)
        seen.append("%s %d: %s" % (NAMES[ftype], n, text or what))

    def paired_case(c):
        ftype, n, kind = c
        entry, reverse = a.pair()
        off, partner = (entry, reverse) if role == "entry" else (reverse, entry)
        mark, omark = len(partner.events), len(off.events)
        body = payload_of(ftype, n)
        if kind == "past":
            off.send(struct.pack(">BH", ftype, n))
            a.relay_error(off, r"%s frame of %d bytes \(allowed %d-%d\)" % (
                (NAMES[ftype], n) + LIMITS[ftype]))
            a.offender_closed(off, omark)
            a.partner_reset(partner, mark)
            seen.append("%s %d: protocol error, partner RST" % (NAMES[ftype], n))
            return
        off.send(frame(ftype, body))
        what, text = paired_expectation(role, ftype)
        if what == "passes":
            got = partner.expect_frame(ftype)
            assert (got.length, got.payload) == (n, body)
            # The pair goes on (after a FIN, the other way).
            src, dst = (off, partner) if ftype == DATA else (partner, off)
            src.send(frame(DATA, b"still paired"))
            assert dst.expect_frame(DATA).payload == b"still paired"
        elif what == "dropped":
            off.send(frame(DATA, b"after the dropped frame"))
            got = partner.expect_frame(DATA)
            assert got.payload == b"after the dropped frame"
            assert [e.type for e in frames_after(partner, mark)] == [DATA], describe(
                frames_after(partner, mark))
        elif what == "reset":
            a.says(off, text)
            a.offender_closed(off, omark)
            a.partner_reset(partner, mark)
            a.dead(off)
        else:
            a.relay_error(off, text)
            a.offender_closed(off, omark)
            a.partner_reset(partner, mark)
        seen.append("%s %d: %s" % (NAMES[ftype], n, text or what))

    cases = length_cases()
    run_all(idle_case if state == "idle" else paired_case, cases)
    a.checkpoint("after %d frames at and past the limits" % len(cases))
    observe("%s %s: %s" % (role, state, "; ".join(sorted(seen))))
    if state == "idle" and role == "entry":
        for m in re.finditer(r"group (\d+): entry-point \S+ key \S+(?: \([^)]*\))? paired "
                             r"with reverse-proxy \S+ key \S+(?: \([^)]*\))?: (.*)",
                             a.rlog.read()[a.start:]):
            if int(m.group(1)) >= 1000:
                observe("pairing line of an OPEN at its limits: ...: %s" % m.group(2)[:120])
    a.finish()


# ---------------------------------------------------------------------------------------------
# Unknown types


UNKNOWN = (0, 12, 255)


@pytest.mark.parametrize("state", ["idle", "paired"])
def test_unknown_frame_types(arena, state):
    """Types 0, 12 and 255 (empty, and with 5 bytes of payload), from both roles: "protocol
    error: unknown frame type N", the channel closed; on a pair the partner gets RST.  On a
    pair, an unknown type right behind a DATA frame in the same record: the DATA passes
    first, then the RST."""
    a = arena()
    cases = [(role, t, n, behind) for role in ROLES for t in UNKNOWN for n in (0, 5)
             for behind in ((False, True) if state == "paired" else (False,))]

    def case(c):
        role, ftype, n, behind = c
        bad = struct.pack(">BH", ftype, n) + b"\x01" * n
        if state == "idle":
            p = a.authed(role)
            mark = len(p.events)
            p.send(bad)
            a.relay_error(p, "unknown frame type %d" % ftype)
            a.offender_closed(p, mark)
            return
        entry, reverse = a.pair()
        off, partner = (entry, reverse) if role == "entry" else (reverse, entry)
        mark, omark = len(partner.events), len(off.events)
        off.send((frame(DATA, b"before it") if behind else b"") + bad)
        a.relay_error(off, "unknown frame type %d" % ftype)
        a.offender_closed(off, omark)
        a.partner_reset(partner, mark, before=(DATA,) if behind else ())

    run_all(case, cases)
    observe("unknown types, %s: e.g. %s" % (state, re.search(
        r"protocol error: unknown frame type 255", a.rlog.read()).group(0)))
    a.finish()


# ---------------------------------------------------------------------------------------------
# Frames out of place


def test_data_before_open(arena):
    """DATA on an idle channel, from both roles, alone or in the AUTH's own record: "DATA on
    an idle ROLE channel", closed.  DATA from the reverse side before its OPEN_RESULT is
    not the relay's to refuse (PROTOCOL.md, Errors: the end points check DATA before
    OPEN_RESULT): it passes to the entry side.  DATA right behind OPEN, while the OPEN
    waits for a reverse-proxy channel, is allowed and passes once paired."""
    a = arena()

    def idle(c):
        role, behind = c
        if behind:
            p = a.peer(role, a.group(), after_auth=frame(DATA, b"early"))
            saw = behind_auth(p)
            observe("DATA behind AUTH (%s): the client saw '%s'" % (role, saw))
        else:
            p = a.authed(role)
            p.send(frame(DATA, b"early"))
        mark = len(p.events)
        a.relay_error(p, "DATA on an idle %s channel" % ROLE_NAME[role])
        a.offender_closed(p, mark)

    run_all(idle, [(r, b) for r in ROLES for b in (False, True)])

    entry, reverse = a.pair(answer=False)
    reverse.send(frame(DATA, b"before the result"))
    assert entry.expect_frame(DATA).payload == b"before the result"
    assert not entry.closed() and a.line(reverse, "protocol error") is None
    observe("DATA from the reverse side before OPEN_RESULT: passed to the entry side "
            "(the relay leaves that check to the end points)")

    g = a.group()
    entry = a.authed("entry", g)
    entry.send(frame(PING) + frame(OPEN, open_payload(9, "127.0.0.1", "q")) +
               frame(DATA, b"behind the OPEN"))
    entry.expect_frame(PONG)
    a.says(entry, "entry-point channel: idle -> queued")
    reverse = a.authed("reverse", g)
    reverse.expect_frame(OPEN)
    assert reverse.expect_frame(DATA).payload == b"behind the OPEN"
    a.finish()


def test_fin_twice(arena):
    """A side sends FIN twice.  In one record, or in two: the first passes, the second is
    "unexpected FIN after FIN from the ROLE": the partner gets FIN, then RST.  After the
    partner's own FIN, the first FIN ends the pair cleanly: the partner gets FIN and REUSE
    and is idle again (it answers PING), while the offender, whose input still holds the
    second FIN in the same record, is closed without REUSE ("sent more after its FIN:
    closing it rather than reusing it"); a second FIN in a record of its own, after the
    offender got its REUSE, is "FIN on an idle ROLE channel"."""
    a = arena()

    def case(c):
        role, how = c
        entry, reverse = a.pair()
        off, partner = (entry, reverse) if role == "entry" else (reverse, entry)
        if how.startswith("after the partner's FIN"):
            partner.send(frame(FIN))
            off.expect_frame(FIN)
        mark, omark = len(partner.events), len(off.events)
        if how.endswith("one record"):
            off.send(frame(FIN) + frame(FIN))
        else:
            off.send(frame(FIN))
            if how == "two records":
                partner.expect_frame(FIN)
                mark = len(partner.events)
            else:
                off.expect_frame(REUSE)
            off.send(frame(FIN))
        if how.startswith("after the partner's FIN"):
            partner.expect_frame(FIN)
            partner.expect_frame(REUSE)
            if how.endswith("one record"):
                a.says(off, "%s channel sent more after its FIN: closing it rather than "
                       "reusing" % ROLE_NAME[role])
                a.dead(off)
                until_closed(off, 5)
                assert REUSE not in [e.type for e in frames_after(off, omark)]
            else:
                a.relay_error(off, "FIN on an idle %s channel" % ROLE_NAME[role])
                until_closed(off, 5)
            partner.send(frame(PING))
            partner.expect_frame(PONG)
            assert not partner.closed()
            a.says(partner, "%s channel idle again" % ROLE_NAME[OTHER[role]])
            return
        a.relay_error(off, "unexpected FIN after FIN from the %s" % ROLE_NAME[role])
        a.offender_closed(off, omark)
        a.partner_reset(partner, mark, before=(FIN,) if how == "one record" else ())

    run_all(case, [(r, h) for r in ROLES for h in (
        "one record", "two records", "after the partner's FIN, one record",
        "after the partner's FIN, two records")])
    a.finish()


def test_reuse_and_auth_sent_by_a_client(arena):
    """REUSE (a relay's frame) and AUTH (again) from a client: idle, "REUSE / AUTH on an idle
    ROLE channel", closed (AUTH also in the record of the first AUTH); paired, "unexpected
    REUSE / AUTH from the ROLE", the partner gets RST."""
    a = arena()

    def case(c):
        role, ftype, state = c
        body = auth_payload(1 if role == "entry" else 2) if ftype == AUTH else b""
        if state == "behind AUTH":
            p = a.peer(role, a.group(), after_auth=frame(ftype, body))
            behind_auth(p)
            mark = len(p.events)
            a.relay_error(p, "%s on an idle %s channel" % (NAMES[ftype], ROLE_NAME[role]))
            a.offender_closed(p, mark)
        elif state == "idle":
            p = a.authed(role)
            mark = len(p.events)
            p.send(frame(ftype, body))
            a.relay_error(p, "%s on an idle %s channel" % (NAMES[ftype], ROLE_NAME[role]))
            a.offender_closed(p, mark)
        else:
            entry, reverse = a.pair()
            off, partner = (entry, reverse) if role == "entry" else (reverse, entry)
            mark, omark = len(partner.events), len(off.events)
            off.send(frame(ftype, body))
            a.relay_error(off, "unexpected %s from the %s" % (NAMES[ftype], ROLE_NAME[role]))
            a.offender_closed(off, omark)
            a.partner_reset(partner, mark)

    run_all(case, [(r, t, s) for r in ROLES for t in (REUSE, AUTH)
                   for s in ("idle", "behind AUTH", "paired")])
    a.finish()


def test_open_from_a_reverse_proxy(arena):
    """A reverse-proxy channel sends OPEN: idle, "OPEN on an idle reverse-proxy channel";
    paired (after the entry's OPEN, before or after its own OPEN_RESULT), "unexpected OPEN
    from the reverse-proxy" and the entry side gets RST; and an OPEN right behind its AUTH
    while an entry-point's OPEN waits in the group: the relay pairs the new channel during
    its AUTH, then meets its OPEN: the same error, and the entry side gets RST (the
    RST-behind-AUTH path of test_relay_regressions, with OPEN)."""
    a = arena()

    def case(how):
        if how == "idle":
            p = a.authed("reverse")
            mark = len(p.events)
            p.send(frame(OPEN, open_payload(9, "127.0.0.1", "rp")))
            a.relay_error(p, "OPEN on an idle reverse-proxy channel")
            a.offender_closed(p, mark)
            return
        if how == "behind AUTH":
            g = a.group()
            entry = a.authed("entry", g)
            entry.send(frame(PING) + frame(OPEN, open_payload(9, "127.0.0.1", "wait")))
            entry.expect_frame(PONG)
            a.says(entry, "entry-point channel: idle -> queued")
            mark = len(entry.events)
            # On the OPEN's worker, so that the AUTH finds the OPEN waiting there.
            reverse = a.peer_on_worker(a.worker_of(entry), "reverse", g,
                                       after_auth=frame(OPEN, open_payload(9, "h", "x")))
            saw = behind_auth(reverse)
            a.relay_error(reverse, "unexpected OPEN from the reverse-proxy")
            until_closed(reverse)
            line = a.line(reverse, "protocol error")
            a.partner_reset(entry, mark)
            observe("OPEN behind a reverse-proxy's AUTH, an OPEN waiting: %s; the reverse "
                    "channel saw '%s'; the entry channel: %s" % (
                        line, saw, describe(frames_after(entry, mark))))
            return
        entry, reverse = a.pair(answer=(how == "after OPEN_RESULT"))
        mark, omark = len(entry.events), len(reverse.events)
        reverse.send(frame(OPEN, open_payload(9, "127.0.0.1", "rp")))
        a.relay_error(reverse, "unexpected OPEN from the reverse-proxy")
        a.offender_closed(reverse, omark)
        a.partner_reset(entry, mark)

    run_all(case, ["idle", "before OPEN_RESULT", "after OPEN_RESULT", "behind AUTH"])
    a.finish()


def test_second_open_while_paired(arena):
    """The entry side sends a second OPEN: after the OPEN_RESULT, before it, or in the same
    record as the first while that one waits for a reverse-proxy channel: "unexpected OPEN
    again from the entry-point"; the reverse side receives the first OPEN only, then RST."""
    a = arena()

    def case(how):
        second = frame(OPEN, open_payload(9, "127.0.0.1", "second"))
        if how == "queued":
            g = a.group()
            entry = a.authed("entry", g)
            omark = len(entry.events)
            entry.send(frame(PING) + frame(OPEN, open_payload(9, "127.0.0.1", "first")) +
                       second)
            entry.expect_frame(PONG)
            a.says(entry, "entry-point channel: idle -> queued")
            reverse = a.authed("reverse", g)
            mark = len(reverse.events)
            a.relay_error(entry, "unexpected OPEN again from the entry-point")
            a.offender_closed(entry, omark + 1)
            a.partner_reset(reverse, mark, before=(OPEN,))
            assert reverse.frames(OPEN)[0].payload == open_payload(9, "127.0.0.1", "first")
            return
        entry, reverse = a.pair(answer=(how == "after OPEN_RESULT"))
        mark, omark = len(reverse.events), len(entry.events)
        entry.send(second)
        a.relay_error(entry, "unexpected OPEN again from the entry-point")
        a.offender_closed(entry, omark)
        a.partner_reset(reverse, mark)

    run_all(case, ["after OPEN_RESULT", "before OPEN_RESULT", "queued"])
    a.finish()


def test_open_that_waits_in_vain_with_garbage_behind_it(arena):
    """An OPEN in a group without any reverse-proxy channel waits (--open-timeout 1) and
    the relay reads nothing more from that channel meanwhile: whatever follows the OPEN --
    a second OPEN, an unknown type, a header past DATA's limit -- is never judged; after
    1 s the relay answers OPEN_RESULT 4 ("no reverse-proxy in this group") and closes:
    "group G: no reverse-proxy channel within 1 s".  An entry channel that closes while
    its OPEN waits is not noticed before then either (the relay does not read it)."""
    a = arena(relay_args=["--open-timeout", "1"])
    behind = {"second OPEN": frame(OPEN, open_payload(9, "127.0.0.1", "2")),
              "unknown type 255": frame(255, b"x"),
              "DATA header of 16385 bytes": struct.pack(">BH", DATA, 16385),
              "nothing, then the client closes": b""}

    def case(name):
        g = a.group()
        p = a.authed("entry", g)
        mark = len(p.events)
        p.send(frame(PING) + frame(OPEN, open_payload(9, "127.0.0.1", "lonely")) +
               behind[name])
        p.expect_frame(PONG)
        a.says(p, "entry-point channel: idle -> queued")
        start = time.monotonic()
        if name.endswith("closes"):
            p.quit()
        a.says(p, "group %d: no reverse-proxy channel within 1 s" % g, 10)
        waited = time.monotonic() - start
        a.dead(p)
        assert a.line(p, "protocol error") is None
        if not name.endswith("closes"):
            until_closed(p, 5)
            got = frames_after(p, mark)
            assert [e.type for e in got] == [PONG, OPEN_RESULT], describe(got)
            assert got[1].payload[:1] == b"\x04", got[1].payload
            observe("OPEN waiting in vain, %s behind it: after %.1f s OPEN_RESULT %d '%s', "
                    "then %s" % (name, waited, got[1].payload[0],
                                 got[1].payload[1:].decode(errors="replace"),
                                 p.events[-1].line))
        else:
            observe("OPEN waiting in vain, the client closed at once: the relay noticed "
                    "after %.1f s (its --open-timeout)" % waited)

    run_all(case, list(behind))
    a.finish()


# ---------------------------------------------------------------------------------------------
# The real daemons as the honest peer


class Witness:
    """A destination that records what each connection brought and how it ended."""

    def __init__(self, tcp_server):
        self.results = []
        self.server = tcp_server(self._handle)
        self.port = self.server.port

    def _handle(self, conn, server):
        data, how = b"", "eof"
        conn.settimeout(30 * SLOW)
        try:
            while True:
                chunk = conn.recv(64 * KiB)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            how = "reset"
        except socket.timeout:
            how = "timeout"
        self.results.append((data, how))

    def wait(self, tag, timeout=10.0):
        deadline = time.monotonic() + timeout * SLOW
        while True:
            for data, how in self.results:
                if data.startswith(tag):
                    return data, how
            assert time.monotonic() < deadline, "no connection with %r reached the end" % tag
            time.sleep(0.02)


REAL_RP_ATTACKS = [
    # (name, bytes after OPEN_RESULT, the relay's error (None: no error), the rp's outcome)
    ("second OPEN", frame(OPEN, open_payload(9, "127.0.0.1", "again")),
     "unexpected OPEN again from the entry-point", "reset by the far end"),
    ("FIN twice", frame(FIN) + frame(FIN), "unexpected FIN after FIN from the entry-point",
     "reset by the far end"),
    ("unknown type 12", frame(12, b"?"), "unknown frame type 12", "reset by the far end"),
    ("DATA of 16385 bytes", struct.pack(">BH", DATA, 16385),
     r"DATA frame of 16385 bytes \(allowed 1-16384\)", "reset by the far end"),
    ("REUSE", frame(REUSE), "unexpected REUSE from the entry-point", "reset by the far end"),
    ("PONG", frame(PONG), "unexpected PONG from the entry-point", "reset by the far end"),
    ("truncated header, then RST", TRUNCATED, None, "channel closed"),
]


def test_real_reverse_proxy_as_the_honest_peer(arena, tcp_server):
    """A raw entry channel in the tunnel's group 0 opens a connection through the real
    reverse-proxy to a witness server, sends a tag, gets OPEN_RESULT 0, then attacks.  The
    relay logs its error and closes the raw channel; the reverse-proxy gets RST (it logs
    "reset by the far end"; after the truncated header and an abort it logs "channel
    closed") and resets the destination connection: the witness got the tag, then a reset
    (after FIN twice: the FIN came first, so an end of data)."""
    a = arena()
    witness = Witness(tcp_server)
    for i, (name, attack, error, rp_says) in enumerate(REAL_RP_ATTACKS):
        tag = b"torture %d: %s\n" % (i, name.encode())
        source = "192.0.2.1:%d" % (1000 + i)
        p = a.authed("entry", 0)
        omark = len(p.events)
        p.send(frame(OPEN, open_payload(witness.port, "127.0.0.1", source)) + frame(DATA, tag))
        got = p.expect_frame(OPEN_RESULT)
        assert got.payload[:1] == b"\x00", describe(p.events)
        a.rplog.wait(re.compile(re.escape(source) + r" -> 127\.0\.0\.1:%d: connected to" %
                                witness.port))
        p.send(attack)
        if error is None:
            time.sleep(0.2)
            p.abort()
            a.says(p, r"entry-point channel ended \(")
        else:
            a.relay_error(p, error)
            until_closed(p, 5)
            assert [e.type for e in frames_after(p, omark)] == [OPEN_RESULT], describe(
                frames_after(p, omark))
        a.dead(p)
        m = a.rplog.wait(re.compile(re.escape(source) + r" -> \S+: " + rp_says))
        data, how = witness.wait(tag)
        assert data == tag, "%s: the destination got %r" % (name, data[:80])
        assert how == ("eof" if name == "FIN twice" else "reset"), "%s: %s" % (name, how)
        observe("real reverse-proxy, %s: relay: %s; reverse-proxy: %s; destination: %s" % (
            name, a.line(p, "protocol error") or a.line(p, "entry-point channel ended"),
            m.group(0), how))
    a.checkpoint("after the attacks")
    a.finish()


REAL_EP_ATTACKS = [
    # (name, bytes sent on OPEN, the relay's error (None: none), how the user sees the end,
    #  what the entry-point logs, whether the raw channel gets an RST from the entry-point)
    ("OPEN from the reverse side", frame(OPEN, open_payload(9, "127.0.0.1", "rp")),
     "unexpected OPEN from the reverse-proxy", "reset", "reset by the far end"),
    ("second OPEN_RESULT", frame(OPEN_RESULT, b"\x00") + frame(OPEN_RESULT, b"\x00"),
     "unexpected OPEN_RESULT again from the reverse-proxy", "reset", "reset by the far end"),
    ("unknown type 255", frame(OPEN_RESULT, b"\x00") + frame(255),
     "unknown frame type 255", "reset", "reset by the far end"),
    ("OPEN_RESULT of 202 bytes", struct.pack(">BH", OPEN_RESULT, 202),
     r"OPEN_RESULT frame of 202 bytes \(allowed 1-201\)", "reset", "reset by the far end"),
    ("FIN twice", frame(OPEN_RESULT, b"\x00") + frame(FIN) + frame(FIN),
     "unexpected FIN after FIN from the reverse-proxy", "eof", "reset by the far end"),
    ("AUTH", frame(OPEN_RESULT, b"\x00") + frame(AUTH, auth_payload(2)),
     "unexpected AUTH from the reverse-proxy", "reset", "reset by the far end"),
    ("DATA before OPEN_RESULT", frame(DATA, b"too early"), None, "reset",
     "protocol error: unexpected DATA"),
]


def test_real_entry_point_as_the_honest_peer(arena):
    """A second real entry-point, in a group of its own, with a route; a raw reverse channel
    is the only reverse-proxy channel of that group.  A user connects, the entry-point sends
    OPEN, the relay pairs it with the raw channel, which attacks.  The relay logs its error
    and closes the raw channel; the entry-point gets RST and resets the user ("reset by the
    far end"; after FIN twice the user has seen the end of data first).  DATA before
    OPEN_RESULT passes the relay: the entry-point itself finds it
    out of place ("protocol error: unexpected DATA"), resets the user and sends RST, which
    the relay passes to the raw channel ("entry-point reset the connection")."""
    a = arena()
    g = a.group()
    route_port = free_port("127.0.0.1")
    route = "127.0.0.1:%d:127.0.0.1:9" % route_port
    ep = a.t.start_entry_point([route], group=g, extra=["-v"], wait_connected=True)
    eplog = LogView(ep)
    a.extra_logs.append(eplog)
    a.client_errors.append("protocol error: unexpected DATA")
    for name, attack, error, user_sees, ep_says in REAL_EP_ATTACKS:
        raw = a.authed("reverse", g)
        omark = len(raw.events)
        user = connect("127.0.0.1", route_port, timeout=10 * SLOW)
        try:
            src = "%s:%d" % user.getsockname()
            user.sendall(b"hello from the user")
            got = raw.expect_frame(OPEN)
            assert b"127.0.0.1" in got.payload
            raw.send(attack)
            data, how, _ = read_until_closed(user, timeout=10 * SLOW)
        finally:
            user.close()
        assert how == user_sees, "%s: the user saw %s (after %r)" % (name, how, data[:40])
        m = eplog.wait(re.compile(re.escape(src) + ": " + ep_says))
        if error is not None:
            a.relay_error(raw, error)
        else:
            a.says(raw, "reverse-proxy channel: paired -> closing")
            a.rlog.wait(re.compile(r"entry-point reset the connection"), raw.since)
        until_closed(raw, 5)
        got = [e.type for e in frames_after(raw, omark)]
        if error is None:
            assert got[-1] == RST, describe(frames_after(raw, omark))
        else:
            assert RST not in got, describe(frames_after(raw, omark))
        a.dead(raw)
        observe("real entry-point, %s: relay: %s; entry-point: %s; user: %s" % (
            name, a.line(raw, "protocol error") or "RST passed to the raw channel",
            m.group(0), how))
    a.finish()


# ---------------------------------------------------------------------------------------------
# PINGs without reading the PONGs


def test_ping_flood_one_per_record_without_reading(arena):
    """A channel of each role stops reading (4 KiB receive buffer) and sends 10,000 PINGs,
    each in its own TLS record.  The relay answers each with a PONG record of its own (25
    bytes on the wire); 10,000 of them fit in the kernel's socket buffers on loopback, so
    the relay's own output never holds more than RELAY_PONG_BACKLOG and it does not close
    the channel after 10,000 (its memory stays flat).  The channel goes on pinging (up to
    1,000,000) until the kernel's buffers are full and the relay's output passes the
    backlog: "PINGs without reading the PONGs, closing".  An innocent idle channel gets its
    PONG throughout, and the tunnel's traffic goes on."""
    a = arena(env=scaled(None, SANITIZER_ENV))
    innocent = a.authed("entry")
    flooders = {role: a.authed(role, rcvbuf=4096) for role in ROLES}
    for p in flooders.values():
        p.pause()
    rss0 = a.relay.rss_kib()

    def first(role):
        assert flooders[role].repeat(10000, frame(PING), timeout=60) == 10000

    run_all(first, ROLES)
    time.sleep(0.3)
    rss1 = a.relay.rss_kib()
    for role, p in flooders.items():
        queued = relay_send_queue(a.t.relay_port, int(p.local.rsplit(":", 1)[1]))
        observe("%s after 10,000 PINGs one per record: closed by the relay: %s; relay RSS "
                "%+d KiB; the kernel holds %s bytes of PONGs in the relay's socket" % (
                    role, a.line(p, "PINGs without reading") is not None, rss1 - rss0,
                    queued))
    assert rss1 - rss0 < MAX_RSS_GROWTH_KIB, "the relay grew by %d KiB" % (rss1 - rss0)
    innocent.send(frame(PING))
    innocent.expect_frame(PONG)
    a.checkpoint("during: 2 x 10,000 PINGs unread")

    def more(role):
        p = flooders[role]
        total = 10000
        while a.line(p, "PINGs without reading") is None and total < 1000000:
            n = p.repeat(20000, frame(PING), timeout=120)
            total += n
            if n < 20000:
                break
        a.says(p, "PINGs without reading the PONGs, closing", 10)
        a.dead(p)
        p.resume()
        until_closed(p, 10)
        observe("%s: closed after about %d PINGs (one per record): %s" % (
            role, total, a.line(p, "PINGs without")))

    run_all(more, ROLES)
    rss2 = a.relay.rss_kib()
    assert rss2 - rss0 < MAX_RSS_GROWTH_KIB, "the relay grew by %d KiB" % (rss2 - rss0)
    innocent.send(frame(PING))
    innocent.expect_frame(PONG)
    a.finish()


def test_ping_flood_in_one_burst(arena):
    """10,000 PINGs in one write (30,000 bytes, two TLS records), from a channel that does
    not read and from one that does: the relay reads them in one pass, its output passes
    RELAY_PONG_BACKLOG (4096 bytes: 1366 PONGs) before any of it is written, and it closes
    the channel -- whether or not the client reads.  An innocent channel is unharmed."""
    a = arena()
    innocent = a.authed("reverse")

    def case(c):
        role, reads = c
        p = a.authed(role)
        if not reads:
            p.pause()
        p.send(frame(PING) * 10000)
        a.says(p, "PINGs without reading the PONGs, closing")
        a.dead(p)
        if not reads:
            p.resume()
        ev = until_closed(p, 10)
        if reads:
            observe("%s, reading, 10,000 PINGs in one write: %s; it received %d PONGs, "
                    "then %s" % (role, a.line(p, "PINGs without"), len(p.frames(PONG)),
                                 ev.line))

    run_all(case, [(r, reads) for r in ROLES for reads in (False, True)])
    innocent.send(frame(PING))
    innocent.expect_frame(PONG)
    a.finish()


# ---------------------------------------------------------------------------------------------
# A reader that never reads


class Fountain:
    """A destination that sends pattern() bytes as fast as the connection takes them."""

    def __init__(self, tcp_server, limit=512 * MiB):
        self.sent = 0
        self.limit = limit
        self.ended = None
        self.server = tcp_server(self._handle)
        self.port = self.server.port

    def _handle(self, conn, server):
        block = pattern(256 * KiB)  # 256 KiB: a multiple of 256, the pattern goes on
        try:
            while self.sent < self.limit and not server.stopping.is_set():
                conn.sendall(block)
                self.sent += len(block)
            self.ended = "limit"
        except OSError as e:
            self.ended = repr(e)

    def wait_stalled(self, quiet=1.0, timeout=60.0):
        """Wait until nothing more is sent for quiet seconds; return the bytes sent."""
        deadline = time.monotonic() + timeout * SLOW
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            if self.sent != last:
                last, since = self.sent, time.monotonic()
            elif time.monotonic() - since >= quiet * SLOW:
                return last
            time.sleep(0.05)
        pytest.fail("the fountain never stalled (%d bytes sent)" % self.sent)


@pytest.mark.parametrize("who", ["entry floods", "reverse floods", "real reverse-proxy floods"])
def test_reader_that_never_reads(arena, tcp_server, who):
    """One side of a pair stops reading (64 KiB socket buffers) while the other sends DATA
    as fast as it can: the relay stops reading the sender once its output to the reader
    holds 256 KiB, TCP carries the stall back, and the sender stalls.  The relay's RSS
    stays within a few MiB of its baseline, a fresh pair beside it still exchanges data,
    and the tunnel's traffic goes on.  Then the reader reads again: every byte arrives in
    order (SHA-256 of the DATA payloads against the flood's pattern), and the pair ends
    cleanly (FIN both ways, REUSE to both).  With the real reverse-proxy as the sender (a
    raw entry channel in group 0, the destination a fountain), the fountain stops once
    the reader reads again and closes, and the connection ends cleanly the same way."""
    a = arena(env=scaled(None, SANITIZER_ENV))
    bufs = dict(rcvbuf=64 * KiB, sndbuf=64 * KiB, hex_max=0)
    rss0 = a.relay.rss_kib()
    if who == "real reverse-proxy floods":
        fountain = Fountain(tcp_server)
        reader = a.authed("entry", 0, **bufs)
        reader.send(frame(OPEN, open_payload(fountain.port, "127.0.0.1", "192.0.2.2:1")))
        reader.pause()
        a.rplog.wait(re.compile(r"192\.0\.2\.2:1 -> \S+: connected to"))
        accepted = fountain.wait_stalled()
    else:
        entry, reverse = a.pair(entry_kw=bufs, reverse_kw=bufs)
        sender, reader = (entry, reverse) if who == "entry floods" else (reverse, entry)
        reader.pause()
        ev = sender.flood(1024 * MiB, 1000 * SLOW)
        words = ev.line.split()
        assert words[2] == "stalled", "the relay took %s bytes without stalling" % words[1]
        accepted = int(words[1])
    rss1 = a.relay.rss_kib()
    observe("%s: the sender stalled after %.1f MiB; relay RSS %+d KiB over its baseline "
            "(%d KiB)" % (who, accepted / MiB, rss1 - rss0, rss0))
    assert accepted < 256 * MiB
    assert rss1 - rss0 < MAX_RSS_GROWTH_KIB, "the relay grew by %d KiB" % (rss1 - rss0)
    # Other pairs keep flowing meanwhile.
    e2, r2 = a.pair()
    e2.send(frame(DATA, b"x" * 10000))
    assert r2.expect_frame(DATA).payload == b"x" * 10000
    r2.send(frame(DATA, b"y" * 10000))
    assert e2.expect_frame(DATA).payload == b"y" * 10000
    a.checkpoint("during: a reader stalled for %.1f MiB" % (accepted / MiB))
    assert a.relay.rss_kib() - rss0 < MAX_RSS_GROWTH_KIB

    reader.resume()
    if who == "real reverse-proxy floods":
        # The fountain sends what is under way and closes: the reverse-proxy sends FIN.
        fountain.limit = 0
        reader.expect_frame(OPEN_RESULT, 10)
        reader.expect_frame(FIN, 60)
        n, digest = reader.digest()
        assert fountain.ended == "limit", fountain.ended
        assert n == fountain.sent, "%d bytes sent, %d arrived" % (fountain.sent, n)
        assert digest == sha256_hex(pattern(n)), "the %d bytes that arrived differ" % n
        reader.send(frame(FIN))
        reader.expect_frame(REUSE)
        a.rplog.wait(re.compile(r"192\.0\.2\.2:1 -> \S+: ended cleanly"))
        observe("%s: %.1f MiB arrived intact after the reader resumed; the connection "
                "ended cleanly (REUSE)" % (who, n / MiB))
    else:
        sender.send(frame(FIN))
        reader.expect_frame(FIN, 60)
        n, digest = reader.digest()
        assert accepted <= n <= accepted + 16381, (accepted, n)
        assert digest == sha256_hex(pattern(n)), "the %d bytes that arrived differ" % n
        reader.send(frame(FIN))
        sender.expect_frame(FIN)
        sender.expect_frame(REUSE)
        reader.expect_frame(REUSE)
        observe("%s: %.1f MiB arrived intact; the pair ended cleanly (REUSE both ways)"
                % (who, n / MiB))
    assert a.relay.rss_kib() - rss0 < MAX_RSS_GROWTH_KIB
    a.finish()
