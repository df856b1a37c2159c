"""Regressions of the relay found by a security review, each played with raw channels.

A raw channel is tests/tools/chanpeer (see chanpeer.py): a real TLS 1.3 channel with a real
AUTH, that then sends exactly the frames a test gives it, in the records it is given, and
prints every frame it receives.  The relay runs with -v: its log says where each channel
landed (which worker) and which channels it paired.

1. A reverse-proxy channel whose AUTH carries an RST right behind it, in the same record,
   while an OPEN waits in its group: the relay pairs, meets the RST and frees the channel
   in the middle of reading it (use after free).
2. The end of a pair: an OPEN after the entry's own FIN, a second OPEN_RESULT, an RST behind
   the reverse side's FIN: none of them may poison a channel that the relay reuses.
3. A paused channel whose reading cannot be re-enabled: both channels of the pair close
   (a fault-injection shim makes bufferevent_enable fail once).

The relay runs with the suite's TRP_RELAY_WORKERS; where a scenario needs two channels on
the same worker, the second one is dialled (and held before its TLS handshake) until it
lands there.
"""

import os
import re
import time

import pytest

from chanpeer import (DATA, FAILENABLE, FIN, OPEN, OPEN_RESULT, PING, PONG, REUSE, RST,
                      ChanPeer, describe, frame, open_payload, open_result_payload)
from conftest import (RELAY_WORKERS, SANITIZE, SANITIZER_REPORT, SLOW, KiB, MiB, free_port,
                      round_trip)

PAIRED = re.compile(r"entry-point (\S+) key \S+(?: \([^)]*\))? paired with "
                    r"reverse-proxy (\S+)")


class Relay:
    """A relay-server and the raw channels the test opens to it."""

    def __init__(self, daemon, port, keys):
        self.daemon = daemon
        self.port = port
        self.keys = keys
        self.peers = []

    def log(self):
        return self.daemon.log()

    def peer(self, role, group, **kw):
        p = ChanPeer(self.port, self.keys, role, group, **kw)
        self.peers.append(p)
        return p

    def authed(self, role, group, **kw):
        """A channel that the relay has authenticated."""
        p = self.peer(role, group, **kw)
        assert p.wait_auth() == 0, describe(p.events)
        return p

    def worker_of(self, p):
        m = self.daemon.wait_log(re.compile(re.escape(p.local) + r": connected \(worker (\d+)\)"))
        return int(m.group(1))

    def peer_on_worker(self, worker, role, group, **kw):
        """A channel accepted by worker (dialled again until the kernel puts it there)."""
        for _ in range(40):
            p = self.peer(role, group, hold=True, **kw)
            if self.worker_of(p) == worker:
                p.go()
                return p
            p.close()
        pytest.fail("40 connections, none accepted by worker %d" % worker)

    def queue_open(self, entry, *frames):
        """entry sends PING, then OPEN and frames in the same record; returns once the
        relay has answered the PING: it read the OPEN in the same pass, so the OPEN is
        paired or queued."""
        entry.send(frame(PING) + b"".join(frames))
        entry.expect_frame(PONG)

    def pairs(self):
        return PAIRED.findall(self.log())

    def close(self):
        for p in self.peers:
            p.close()


@pytest.fixture
def relay(start_daemon, keys):
    """relay(extra=(), env=None) -> Relay on 127.0.0.1 with -v; its raw channels are closed
    at teardown (before start_daemon stops the relay and checks its exit and log)."""
    made = []

    def start(extra=(), env=None):
        port = free_port("127.0.0.1")
        args = ["-p", port, "--host", "127.0.0.1", "-c", keys.cert, "-k", keys.key,
                "-a", keys.pub, "-v"] + list(extra)
        if RELAY_WORKERS:
            args += ["--workers", RELAY_WORKERS]
        d = start_daemon("relay-server", args, env=env)
        d.wait_log("listening on 127.0.0.1:%d" % port)
        r = Relay(d, port, keys)
        made.append(r)
        return r

    yield start
    for r in made:
        r.close()


def assert_relay_healthy(relay):
    assert relay.daemon.alive(), "the relay died (status %s):\n%s" % (
        relay.daemon.proc.poll(), relay.daemon.log_tail(60))
    m = SANITIZER_REPORT.search(relay.log())
    assert m is None, "sanitizer report in the relay's log:\n%s" % relay.daemon.log_tail(60)


def check_fresh_pair(relay, group, tag):
    """A new entry/reverse pair in group carries frames both ways."""
    reverse = relay.authed("reverse", group)
    entry = relay.authed("entry", group)
    entry.send(frame(OPEN, open_payload(7, "127.0.0.1", "127.0.0.1:1")) +
               frame(DATA, b"to the reverse side " + tag))
    reverse.expect_frame(OPEN)
    got = reverse.expect_frame(DATA)
    assert got.payload == b"to the reverse side " + tag
    reverse.send(frame(OPEN_RESULT, open_result_payload(0)) +
                 frame(DATA, b"to the entry side " + tag))
    entry.expect_frame(OPEN_RESULT)
    got = entry.expect_frame(DATA)
    assert got.payload == b"to the entry side " + tag
    assert not entry.frames(RST) and not reverse.frames(RST)


# ---------------------------------------------------------------------------------------------
# 1. AUTH with RST behind it, while an OPEN waits


@pytest.mark.parametrize("behind", [RST, REUSE], ids=["RST", "REUSE"])
def test_frame_behind_auth_that_frees_the_channel_while_an_open_waits(relay, behind):
    """An entry-point channel sends OPEN in group 11, where no reverse-proxy channel is
    idle: the relay queues it.  Then a reverse-proxy channel authenticates in group 11
    with an RST right behind its AUTH, in the same TLS record.  The relay's read callback
    handles AUTH, pairs the new channel with the waiting OPEN at once, and relay_forward
    meets the RST: it passes RST to the entry side and frees the reverse channel, still
    inside that read callback, which then looked at the freed channel (use after free:
    AddressSanitizer's report, the relay dies; the normal build does not show it).  A
    REUSE there instead (a protocol error from a reverse-proxy) frees it the same way.

    Expected: the relay stays alive with nothing to report, the entry channel receives RST
    and is closed, and a fresh pair in the group still works."""
    r = relay()
    entry = r.authed("entry", 11)
    worker = r.worker_of(entry)
    r.queue_open(entry, frame(OPEN, open_payload(7, "127.0.0.1", "127.0.0.1:1")))
    # On the OPEN's worker, so that the AUTH finds the OPEN waiting there.
    reverse = r.peer_on_worker(worker, "reverse", 11, after_auth=frame(behind))
    r.daemon.wait_log(re.compile(r"entry-point %s key .* paired with reverse-proxy %s "
                                 % (re.escape(entry.local), re.escape(reverse.local))))
    entry.expect_frame(RST, 10)
    entry.wait_closed(10)
    reverse.wait_closed(10)
    assert_relay_healthy(r)
    check_fresh_pair(r, 11, b"after AUTH+RST")
    assert_relay_healthy(r)


# ---------------------------------------------------------------------------------------------
# 2. The end of a pair


@pytest.mark.parametrize("offender", ["entry", "reverse"])
def test_open_after_fin_is_a_protocol_error(relay, offender):
    """One side sends its FIN and then only the 3-byte header of another OPEN (the entry
    side: 05 00 10) or OPEN_RESULT (the reverse side: 06 00 10), 16 bytes of payload
    announced and none sent; the other side then sends FIN too.  The relay used to pass the
    header on (an OPEN from the entry side, an OPEN_RESULT from the reverse side "pass"),
    take FIN both ways for a clean end, write REUSE into the middle of that unfinished
    frame and put the other side's channel back to idle: its stream is poisoned (a reverse
    channel is paired again, and the next OPEN is garbage to the reverse-proxy).

    Expected: an OPEN or OPEN_RESULT after the side's own FIN is a protocol error on the
    pair: the offending channel is closed; the other one gets RST and is closed, never sees
    REUSE, and is never idle (nor paired) again."""
    r = relay()
    reverse = r.authed("reverse", 12)
    entry = r.authed("entry", 12)
    if offender == "entry":
        entry.send(frame(OPEN, open_payload(7, "127.0.0.1", "127.0.0.1:1")) +
                   frame(DATA, b"request") + frame(FIN) + bytes([OPEN, 0, 16]))
        for t in (OPEN, DATA, FIN):
            reverse.expect_frame(t)
        reverse.send(frame(OPEN_RESULT, open_result_payload(0)) + frame(FIN))
        bad, victim, victim_role = entry, reverse, "reverse-proxy"
    else:
        entry.send(frame(OPEN, open_payload(7, "127.0.0.1", "127.0.0.1:1")) +
                   frame(DATA, b"request"))
        for t in (OPEN, DATA):
            reverse.expect_frame(t)
        reverse.send(frame(OPEN_RESULT, open_result_payload(0)) + frame(DATA, b"answer") +
                     frame(FIN) + bytes([OPEN_RESULT, 0, 16]))
        for t in (OPEN_RESULT, DATA, FIN):
            entry.expect_frame(t)
        entry.send(frame(FIN))
        bad, victim, victim_role = reverse, entry, "entry-point"
    idle_again = "%s: %s channel idle again" % (victim.local, victim_role)

    def poisoned():
        return ("its stream holds %s (an unfinished frame); the relay logged %s" % (
            victim.partial().hex() or "nothing unfinished",
            "'%s'" % idle_again if idle_again in r.log() else "no 'idle again'"))

    victim.wait_closed(5, "close after the %s's %s after FIN" % (
        offender, "OPEN" if offender == "entry" else "OPEN_RESULT"), hint=poisoned)
    assert not victim.frames(REUSE), describe(victim.events)
    assert victim.frames(RST), "closed without RST: %s" % describe(victim.events)
    bad.wait_closed(5)
    assert idle_again not in r.log()
    assert r.pairs() == [(entry.local, reverse.local)]
    assert_relay_healthy(r)


def test_second_open_result_is_a_protocol_error(relay):
    """The reverse side answers an OPEN with two OPEN_RESULTs (ok, ok) in one record.  The
    relay passed both on (OPEN_RESULT from the reverse side "passes") and the pair went on.

    Expected: the second OPEN_RESULT is a protocol error: the reverse channel is closed,
    the entry channel receives the first OPEN_RESULT only, then RST, and is closed."""
    r = relay()
    reverse = r.authed("reverse", 13)
    entry = r.authed("entry", 13)
    entry.send(frame(OPEN, open_payload(7, "127.0.0.1", "127.0.0.1:1")))
    reverse.expect_frame(OPEN)
    reverse.send(frame(OPEN_RESULT, open_result_payload(0)) +
                 frame(OPEN_RESULT, open_result_payload(0)))
    entry.expect_frame(OPEN_RESULT)
    entry.wait_closed(5, "close of the entry channel after a second OPEN_RESULT")
    assert len(entry.frames(OPEN_RESULT)) == 1, describe(entry.events)
    assert entry.frames(RST), "no RST before the close: %s" % describe(entry.events)
    reverse.wait_closed(5)
    assert_relay_healthy(r)


def test_rst_behind_the_reverse_fin_does_not_reach_the_next_pairing(relay):
    """Two OPENs wait in group 14 on one worker: entry 1's (with FIN behind it) and entry
    2's.  A reverse channel authenticates and is paired with entry 1; it answers
    OPEN_RESULT ok, FIN and RST, all in one record.  The FIN ends the pair cleanly (FIN
    went both ways), the relay sends REUSE to both and pairs the reverse channel with entry
    2 at once; the RST still in its input was then forwarded to entry 2, a connection that
    the reverse side never saw, and entry 2 was reset.

    Expected: the RST that crossed the clean end closes the reverse channel (an RST on an
    idle channel); entry 2 is not reset: it is paired with the next reverse channel, and
    receives that channel's frames only."""
    r = relay()
    entry1 = r.authed("entry", 14)
    worker = r.worker_of(entry1)
    entry2 = r.peer_on_worker(worker, "entry", 14)
    assert entry2.wait_auth() == 0
    r.queue_open(entry1, frame(OPEN, open_payload(1001, "127.0.0.1", "entry1")), frame(FIN))
    r.queue_open(entry2, frame(OPEN, open_payload(1002, "127.0.0.1", "entry2")))
    reverse = r.authed("reverse", 14)
    got = reverse.expect_frame(OPEN)
    assert got.payload == open_payload(1001, "127.0.0.1", "entry1")
    reverse.expect_frame(FIN)
    reverse.send(frame(OPEN_RESULT, open_result_payload(0)) + frame(FIN) + frame(RST))
    entry1.expect_frame(OPEN_RESULT)
    entry1.expect_frame(FIN)
    entry1.expect_frame(REUSE)  # a clean end: entry 1's channel is reused
    reverse.wait_closed(10)

    def entry2_saw():
        entry2.drain()
        return "entry 2 saw: %s" % describe(entry2.events)

    reverse2 = r.authed("reverse", 14)
    got = reverse2.expect_frame(OPEN, 5, hint=entry2_saw)
    assert got.payload == open_payload(1002, "127.0.0.1", "entry2")
    reverse2.send(frame(OPEN_RESULT, open_result_payload(0)) + frame(DATA, b"from reverse 2"))
    entry2.expect_frame(OPEN_RESULT)
    assert entry2.expect_frame(DATA).payload == b"from reverse 2"
    assert not entry2.frames(RST) and not entry2.closed(), describe(entry2.events)
    assert_relay_healthy(r)


def test_open_after_fin_does_not_spoil_the_real_tunnel(tunnel, echo_server, keys):
    """The same attack as test_open_after_fin_is_a_protocol_error, but against a real
    reverse-proxy: a raw entry channel in the tunnel's group sends OPEN (to the tunnel's
    echo server), DATA, FIN and the 3-byte header of another OPEN; twice on each of the
    relay's workers.  Each reverse-proxy channel that served one of them used to go back to
    the relay's idle list with REUSE stuck inside an unfinished frame: the next user
    connection paired with it was reset (the review saw 4 of 4).

    Expected: every user connection through the real entry-point afterwards succeeds."""
    echo = echo_server()
    port = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)], group=15,
               relay_args=["-v"])
    r = Relay(t.relay, t.relay_port, keys)
    workers = int(t.relay.wait_log(re.compile(r"; (\d+) workers?\n")).group(1))
    try:
        for i in range(2 * workers):
            # On every worker: the channels it reuses wait in that worker's idle list.
            raw = r.peer_on_worker(i % workers, "entry", 15)
            assert raw.wait_auth() == 0
            raw.send(frame(OPEN, open_payload(echo.port, "127.0.0.1", "raw")) +
                     frame(DATA, b"attack %d" % i) + frame(FIN) + bytes([OPEN, 0, 16]))
            # The pair ends, one way (old: REUSE) or the other (closed).
            raw.expect(lambda e: e.kind == "closed" or (e.kind == "frame" and
                                                        e.type == REUSE), 10,
                       "the end of the pair")
            raw.close()
        failures = []
        for i in range(16):
            payload = b"user connection %d " % i * 50
            try:
                assert round_trip("127.0.0.1", port, payload, timeout=5 * SLOW) == payload
            except (OSError, EOFError, TimeoutError, AssertionError) as e:
                failures.append("connection %d: %r" % (i, e))
        assert not failures, "%d of 16 user connections failed after the attack: %s" % (
            len(failures), "; ".join(failures))
    finally:
        r.close()


# ---------------------------------------------------------------------------------------------
# 3. A paused channel that cannot be resumed


def test_failed_resume_of_a_paused_channel_closes_both(relay, tmp_path):
    """A pair whose reverse side stops reading while the entry side sends DATA as fast as
    it can: the relay's output to the reverse channel reaches 256 KiB and the relay stops
    reading the entry channel.  When the reverse side reads again, the relay's write
    callback re-enables reading of the entry channel; here that fails (the failenable shim,
    preloaded into the relay, fails that one bufferevent_enable(EV_READ) as ENOMEM would).
    The relay freed the entry channel and left the reverse channel paired with no partner
    and no timer: open until its client gives up (an orphan).

    Expected: the trigger file was consumed (the failure did happen), and both channels
    are closed within a few seconds."""
    trigger = tmp_path / "fail-next-enable"
    env = {"LD_PRELOAD": str(FAILENABLE), "TRP_FAIL_ENABLE_FILE": str(trigger)}
    if SANITIZE:
        env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS") or
                               "abort_on_error=0:detect_leaks=1") + ":verify_asan_link_order=0"
    assert FAILENABLE.exists(), "%s is missing: build it with make" % FAILENABLE
    r = relay(env=env)
    reverse = r.authed("reverse", 16, rcvbuf=64 * KiB, hex_max=0)
    entry = r.authed("entry", 16, sndbuf=64 * KiB)
    entry.send(frame(OPEN, open_payload(7, "127.0.0.1", "127.0.0.1:1")))
    reverse.expect_frame(OPEN)
    reverse.send(frame(OPEN_RESULT, open_result_payload(0)))
    entry.expect_frame(OPEN_RESULT)

    reverse.pause()
    flooded = entry.flood(256 * MiB, 1000 * SLOW)
    words = flooded.line.split()
    assert words[2] == "stalled", "the relay read %s bytes without pausing the entry side" % (
        words[1])
    assert int(words[1]) >= 256 * KiB
    trigger.touch()
    reverse.resume()
    deadline = time.monotonic() + 10 * SLOW
    while trigger.exists():
        assert time.monotonic() < deadline, (
            "the relay did not re-enable reading of the paused entry channel within %d s "
            "(the trigger file is still there): the test proved nothing" % (10 * SLOW))
        time.sleep(0.02)
    r.daemon.wait_log("failenable: bufferevent_enable(EV_READ) fails once")
    entry.wait_closed(5)
    reverse.wait_closed(5, "close of the reverse channel after its partner was freed",
                        hint=lambda: "the relay left it paired with no partner (orphaned)")
    assert_relay_healthy(r)
