"""A raw channel to the relay for tests: tests/tools/chanpeer driven from Python.

ChanPeer starts the tool (built by `make` into TRP_BIN_DIR/tests/tools/chanpeer), writes its
commands to its standard input and collects what it prints in a queue, read by a thread:

    p = ChanPeer(relay_port, keys, "entry", group=7)
    assert p.wait_auth() == 0
    p.send(frame(OPEN, open_payload(80, "127.0.0.1")))
    ev = p.expect_frame(OPEN_RESULT, timeout=5)
    p.wait_closed(timeout=5)

Every event is an Event(kind, type, length, payload, line); kind is "connected", "auth",
"frame", "flooded", "repeated", "partial", "digest", "write-error", "aborted",
"closed" or "timeout".  p.events keeps all the
events seen so far, in order.  Every wait has a timeout (scaled by conftest.SLOW); the process
is bounded by its own --timeout too, and close() ends it (stdin closed, then killed).
"""

import queue
import struct
import subprocess
import threading
import time
from collections import namedtuple

import pytest

from conftest import BIN_DIR, SLOW

CHANPEER = BIN_DIR / "tests" / "tools" / "chanpeer"
FAILENABLE = BIN_DIR / "tests" / "tools" / "libfailenable.so"

# Frame types (common/frame.h).
AUTH, AUTH_RESULT, PING, PONG, OPEN, OPEN_RESULT, DATA, FIN, RST, REUSE, RETIRE = range(1, 12)
NAMES = {1: "AUTH", 2: "AUTH_RESULT", 3: "PING", 4: "PONG", 5: "OPEN", 6: "OPEN_RESULT",
         7: "DATA", 8: "FIN", 9: "RST", 10: "REUSE", 11: "RETIRE"}

Event = namedtuple("Event", "kind type length payload line")


def frame(ftype, payload=b""):
    """A frame on the wire: type (1), length (2, big-endian), payload."""
    return struct.pack(">BH", ftype, len(payload)) + payload


def open_payload(port, host, source=""):
    """OPEN: port (2) hostlen (1) host srclen (1) source."""
    h, s = host.encode(), source.encode()
    return struct.pack(">HB", port, len(h)) + h + bytes([len(s)]) + s


def open_result_payload(code=0, text=""):
    """OPEN_RESULT: code (1) and a text for logs."""
    return bytes([code]) + text.encode()


def describe(events):
    """Events as short text, for assertion messages (repeats counted: "DATA(16381) x40")."""
    out = []
    for e in events:
        text = ("%s(%d)" % (NAMES.get(e.type, e.type), e.length) if e.kind == "frame"
                else e.line)
        if out and out[-1][0] == text:
            out[-1][1] += 1
        else:
            out.append([text, 1])
    return ", ".join(t if n == 1 else "%s x%d" % (t, n) for t, n in out) or "(nothing)"


def _parse(line):
    words = line.split(" ")
    kind = words[0]
    if kind == "frame":
        hexpart = words[3].rstrip(".") if len(words) > 3 else ""
        return Event("frame", int(words[1]), int(words[2]), bytes.fromhex(hexpart), line)
    if kind == "auth":
        return Event("auth", None, None, None, line)
    return Event(kind, None, None, None, line)


class ChanPeer:
    """One chanpeer process: a channel in role "entry" or "reverse" of group."""

    def __init__(self, relay_port, keys, role, group, after_auth=b"", hold=False,
                 host="127.0.0.1", life=60, rcvbuf=None, sndbuf=None, hex_max=None,
                 priv=None, bind=None):
        if not CHANPEER.exists():
            pytest.fail("%s is missing: build it with `make %s`" % (CHANPEER, CHANPEER))
        cmd = [str(CHANPEER), "-s", "%s:%d" % (host, relay_port), "-c", str(keys.cert),
               "-a", str(priv or keys.priv), "--role", role, "-g", str(group),
               "--timeout", str(int(life * SLOW))]
        if after_auth:
            cmd += ["--after-auth", after_auth.hex()]
        if hold:
            cmd.append("--hold")
        if rcvbuf:
            cmd += ["--rcvbuf", str(rcvbuf)]
        if sndbuf:
            cmd += ["--sndbuf", str(sndbuf)]
        if hex_max is not None:
            cmd += ["--hex-max", str(hex_max)]
        if bind:
            cmd += ["-b", bind]
        self.role = role
        self.events = []
        self.stderr = []
        self._queue = queue.Queue()
        self._eof = False
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._threads:
            t.start()
        self.local = self.expect(lambda e: e.kind == "connected", 10,
                                 "the TCP connect").line.split(" ", 1)[1]

    def __repr__(self):
        return "<chanpeer %s %s>" % (self.role, getattr(self, "local", "?"))

    def _read_stdout(self):
        for line in self.proc.stdout:
            self._queue.put(_parse(line.rstrip("\n")))
        self._queue.put(None)  # the process ended

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    # -- commands

    def command(self, line):
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # it exited (the channel closed): its events say why

    def go(self):
        """With hold: go on with the TLS handshake and AUTH."""
        self.command("go")

    def send(self, data):
        """Raw bytes, in one SSL_write (one TLS record up to 16 KiB)."""
        self.command("send " + data.hex())

    def send_frame(self, ftype, payload=b""):
        self.command("frame %d %s" % (ftype, payload.hex()))

    def repeat(self, count, data, timeout=60):
        """data (raw bytes) count times, one SSL_write (one TLS record) each; returns how
        many writes were done (fewer than count when a write failed)."""
        self.command("repeat %d %s" % (count, data.hex()))
        ev = self.expect(lambda e: e.kind == "repeated", timeout, "the end of the repeat")
        return int(ev.line.split()[1])

    def shutdown(self):
        """close_notify, then shutdown(SHUT_WR): a clean end of the channel's writes."""
        self.command("shutdown")

    def abort(self):
        """Close the socket with SO_LINGER 0 (TCP RST, no close_notify); the tool exits."""
        self.command("abort")

    def quit(self):
        """Exit at once: the kernel closes the socket (TCP FIN, no close_notify)."""
        self.command("quit")

    def pause(self):
        """Stop reading the socket (the relay's writes to it back up); returns when it has."""
        self.command("pause")
        self.expect(lambda e: e.kind == "paused", 10, "'paused'")

    def resume(self):
        self.command("resume")
        self.expect(lambda e: e.kind == "resumed", 10, "'resumed'")

    def flood(self, max_bytes, stall_ms):
        """DATA until max_bytes are written or writes stall for stall_ms; the Event."""
        self.command("flood %d %d" % (max_bytes, stall_ms))
        return self.expect(lambda e: e.kind == "flooded", 60, "the end of the flood")

    def partial(self, timeout=5):
        """Bytes received of a frame not yet complete (only while the channel is open)."""
        self.command("partial")
        ev = self.expect(lambda e: e.kind in ("partial", "closed"), timeout,
                         "the partial frame")
        words = ev.line.split(" ")
        return bytes.fromhex(words[1]) if ev.kind == "partial" and len(words) > 1 else b""

    def digest(self, timeout=10):
        """(bytes, sha256 hex) of every DATA payload received so far, in order."""
        self.command("digest")
        ev = self.expect(lambda e: e.kind in ("digest", "closed"), timeout, "the digest")
        if ev.kind != "digest":
            pytest.fail("%r closed before the digest: %s" % (self, describe(self.events)))
        words = ev.line.split()
        return int(words[1]), words[2]

    # -- events

    def _get(self, seconds):
        if self._eof:
            return None
        try:
            ev = self._queue.get(timeout=max(0.0, seconds))
        except queue.Empty:
            return None
        if ev is None:
            self._eof = True  # the tool exited
            return None
        self.events.append(ev)
        return ev

    def next_event(self, timeout):
        """The next event within timeout (scaled), or None when there is none."""
        return self._get(timeout * SLOW)

    def expect(self, predicate, timeout, what="the event", hint=None):
        """The first new event that matches predicate within timeout; fails otherwise.

        hint: a callable whose text is added to the failure message.
        """
        deadline = time.monotonic() + timeout * SLOW
        while True:
            ev = self._get(deadline - time.monotonic())
            if ev is not None and predicate(ev):
                return ev
            if ev is None:
                pytest.fail("%r: no %s %s; it saw: %s%s" % (
                    self, what, "before it exited" if self._eof else
                    "within %.1f s" % (timeout * SLOW),
                    describe(self.events),
                    "; stderr: " + " | ".join(self.stderr) if self.stderr else "")
                    + ("; " + hint() if hint else ""))

    def wait_auth(self, timeout=10):
        """The AUTH_RESULT code."""
        return int(self.expect(lambda e: e.kind == "auth", timeout, "AUTH_RESULT")
                   .line.split()[1])

    def expect_frame(self, ftype, timeout=10, hint=None):
        return self.expect(lambda e: e.kind == "frame" and e.type == ftype, timeout,
                           NAMES.get(ftype, str(ftype)), hint)

    def wait_closed(self, timeout=10, what="close by the relay", hint=None):
        """The 'closed' event: the relay closed the channel."""
        return self.expect(lambda e: e.kind == "closed", timeout, what, hint)

    def frames(self, ftype=None):
        """Frames seen so far (of one type)."""
        return [e for e in self.events if e.kind == "frame" and
                (ftype is None or e.type == ftype)]

    def closed(self):
        return any(e.kind == "closed" for e in self.events)

    def drain(self, seconds=0.0):
        """Collect the events printed so far (waiting up to seconds for each one more)."""
        while self._get(seconds) is not None:
            pass

    def close(self):
        """Close stdin (the tool exits), kill it if it does not; join the readers."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for t in self._threads:
            t.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
