"""Torture, frames: headers cut short, lengths at and past the limits, unknown types.

The harness -- a real tunnel with its traffic checked throughout, the raw channels, what is
checked for every case -- is torture.py.  The cases, each its own test (parametrised ones
run their variants side by side):

  truncated headers      1-4 bytes of a header, then nothing, then a close (three ways),
                         idle and paired, both roles; idle and silent: the idle timeout
  frame length limits    each type at and past its limits (common/frame.c frame_limits),
                         both roles, idle and paired
  unknown frame types    0, 12 and 255, idle and paired, both roles

Run with -s (or -rP) to see what each case observed.
"""

import re
import struct
import time

import pytest

from chanpeer import (AUTH, AUTH_RESULT, DATA, FIN, NAMES, OPEN, OPEN_RESULT, PING, PONG,
                      REUSE, RETIRE, RST, describe, frame)
from torture import (OTHER, ROLE_NAME, ROLES, TRUNCATED, frames_after, observe, payload_of,
                     run_all, until_closed)
from torture import arena  # noqa: F401 - the fixture, which pytest finds by its name
from conftest import timer_bound

# Payload limits of each type: common/frame.c, frame_limits (PROTOCOL.md, "Frames").
LIMITS = {AUTH: (1, 1024), AUTH_RESULT: (2, 1024), PING: (0, 8), PONG: (0, 8),
          OPEN: (4, 321), OPEN_RESULT: (1, 201), DATA: (1, 16384), FIN: (0, 0),
          RST: (0, 0), REUSE: (0, 0), RETIRE: (0, 0)}

IDLE_TIMEOUT = 10           # the relay's smallest --idle-timeout


# ---------------------------------------------------------------------------------------------
# Truncated headers

CLOSES = ("shutdown", "quit", "abort")


def close_by(p, how):
    """End a raw channel: close_notify + FIN (shutdown), FIN alone (quit), or RST (abort)."""
    if how == "shutdown":
        p.shutdown()
    elif how == "quit":
        p.quit()
    else:
        p.abort()


@timer_bound
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
