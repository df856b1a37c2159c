"""Torture, floods: PINGs without reading the PONGs, a reader that never reads.

The harness -- a real tunnel with its traffic checked throughout, the raw channels, what is
checked for every case -- is torture.py.  The cases, each its own test (parametrised ones
run their variants side by side):

  10,000 PINGs           without reading the PONGs (RELAY_PONG_KERNEL_MAX, RELAY_PONG_BACKLOG)
  a reader that never reads while its partner floods (backpressure): relay RSS bounded

Run with -s (or -rP) to see what each case observed.
"""

import re
import threading
import time

import pytest

from chanpeer import DATA, FIN, OPEN, OPEN_RESULT, PING, PONG, REUSE, frame, open_payload
from conftest import SLOW, KiB, MiB, scaled
from torture import (ROLES, observe, pattern, run_all, sha256_hex,
                     until_closed)
from torture import arena  # noqa: F401 - the fixture, which pytest finds by its name

# Under AddressSanitizer freed memory sits in a quarantine; a small one keeps RSS about
# the relay's buffers (as test_backpressure.py does).
SANITIZER_ENV = {"ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:quarantine_size_mb=4"}
MAX_RSS_GROWTH_KIB = scaled(4, 24) * 1024
RELAY_IDLE_TIMEOUT = 30  # seconds: relay-server's --idle-timeout default


# ---------------------------------------------------------------------------------------------
# PINGs without reading the PONGs


def test_ping_flood_one_per_record_without_reading(arena):
    """A channel of each role stops reading (4 KiB receive buffer) and sends PINGs, each in
    its own TLS record, up to 10,000.  The relay answers each with a PONG record of its own
    (25 bytes on the wire) and closes the channel once the PONGs pile up unread: more than
    RELAY_PONG_KERNEL_MAX (64 KiB) in the kernel's queue to the client, about 2,600 PONGs,
    or more than RELAY_PONG_BACKLOG (4 KiB) in its own output: "PINGs without reading the
    PONGs, closing".  (Before RELAY_PONG_KERNEL_MAX, the kernel held megabytes of them, its
    send buffer autotuned, before the relay's output grew: over 200,000 PINGs, and on a
    loaded machine the relay could take minutes to close.)

    Or the client's own TCP stalls first, a few times in a hundred on a loaded machine: its
    kernel, out of receive memory (a 4 KiB buffer, 25-byte segments), drops PONGs that its
    window had room for, so the relay's sequence numbers run past the client's closed
    window and the client discards every ACK the relay sends after them (RFC 9293,
    3.10.7.4: with a zero window only a segment at RCV.NXT is acceptable).  Its PINGs then stay unacknowledged in its
    own kernel, the relay receives no more of them, with fewer than 64 KiB of PONGs queued,
    and the idle timeout closes the channel: "idle ... channel silent for 30 s".  Seen in
    `ss -tnoi` during a CI failure: client Send-Q 242,725 with its retransmission timer
    backing off; relay Recv-Q 0, Send-Q 56,175.  Either way the relay closes it.

    The relay's memory stays flat; an innocent idle channel, pinging every 5 s as a client
    does, gets its PONG throughout, and the tunnel's traffic goes on."""
    a = arena(env=scaled(None, SANITIZER_ENV))
    innocent = a.authed("entry")
    flooders = {role: a.authed(role, rcvbuf=4096) for role in ROLES}
    for p in flooders.values():
        p.pause()
    rss0 = a.relay.rss_kib()
    closing = (r"(PINGs without reading the PONGs|idle (?:entry-point|reverse-proxy) "
               r"channel silent for %d s), closing" % RELAY_IDLE_TIMEOUT)

    def flood(role):
        p = flooders[role]
        written = p.repeat(10000, frame(PING), timeout=60)
        # 10 s (scaled) for the PONG check, or the idle timeout after a stall.
        why = a.says(p, closing, max(10, (RELAY_IDLE_TIMEOUT + 10) / SLOW)).group(1)
        a.dead(p)
        p.resume()
        until_closed(p, 10)
        observe("%s: closed by the relay after %d PINGs written (one per record): %s" % (
            role, written, a.line(p, re.escape(why))))

    with Keepalive(innocent, every=5):
        run_all(flood, ROLES)
    rss1 = a.relay.rss_kib()
    assert rss1 - rss0 < MAX_RSS_GROWTH_KIB, "the relay grew by %d KiB" % (rss1 - rss0)
    innocent.send(frame(PING))
    innocent.expect_frame(PONG)
    a.checkpoint("after: 2 PING floods closed")
    a.finish()


class Keepalive:
    """A PING on channel p every `every` seconds, each answered by a PONG, while the block
    runs (the relay closes an idle channel silent for RELAY_IDLE_TIMEOUT); a missing PONG
    fails the block's end."""

    def __init__(self, p, every):
        self.p = p
        self.every = every
        self.stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            while not self.stop.wait(self.every):
                self.p.send(frame(PING))
                self.p.expect_frame(PONG)
        except BaseException as e:  # noqa: BLE001 - pytest.fail raises a BaseException
            self.error = e

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30 * SLOW)
        if self.error is not None and exc[0] is None:
            raise AssertionError("the innocent channel: %s" % self.error)
        return False


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
