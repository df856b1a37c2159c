"""The torture harness: authenticated clients that break the frame rules, beside a
real tunnel (the cases: test_torture_frames.py, test_torture_rules.py,
test_torture_floods.py).

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

The cases, each its own test, are in three files (each docstring lists its own):

  test_torture_frames.py  truncated headers, frame length limits, unknown frame types
  test_torture_rules.py   frames out of place (DATA before OPEN, FIN twice, REUSE and AUTH
                          from a client, OPEN from a reverse-proxy, a second OPEN while
                          paired, an OPEN that waits in vain), and the real daemons as
                          the honest peer
  test_torture_floods.py  10,000 PINGs without reading the PONGs, a reader that never
                          reads

A case gets its tunnel from the arena fixture (each test file imports it by name): an
Arena, with the background stream and the prober running, which makes the raw channels
of the case (Arena.authed, Arena.pair), waits for what the relay logs about them
(Arena.says, Arena.relay_error, Arena.dead) and makes the checks above
(Arena.checkpoint, Arena.finish).

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

from chanpeer import (AUTH, DATA, NAMES, OPEN, OPEN_RESULT, RST, ChanPeer, describe, frame,
                      open_payload, open_result_payload)
from conftest import SANITIZER_REPORT, SLOW, KiB, MiB, connect, free_port, pseudo_random

ROLES = ("entry", "reverse")
ROLE_NAME = {"entry": "entry-point", "reverse": "reverse-proxy"}
OTHER = {"entry": "reverse", "reverse": "entry"}

FD_SLACK = 1                # a connection being accepted, a channel being reaped

# The truncated headers of test_torture_frames.py, and an attack of test_torture_rules.py.
TRUNCATED = bytes([DATA, 0x00, 0x10, 0x41])  # a DATA header (16 bytes announced), 1 byte

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
