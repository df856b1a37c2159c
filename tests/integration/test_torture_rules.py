"""Torture, rules: frames out of place, against raw channels and the real daemons.

The harness -- a real tunnel with its traffic checked throughout, the raw channels, what is
checked for every case -- is torture.py.  The cases, each its own test (parametrised ones
run their variants side by side):

  DATA before OPEN       and DATA before OPEN_RESULT (which the relay passes: end points
                         check it)
  FIN twice              in one record, in two, and after the partner's FIN
  REUSE and AUTH         sent by a client, idle and paired
  OPEN from a reverse-proxy
  a second OPEN while paired
  an OPEN that waits     in a group without reverse-proxy, garbage behind it: OPEN_RESULT 4
  real honest peers      the same attacks with the real reverse-proxy, and a real
                         entry-point, on the other side

Run with -s (or -rP) to see what each case observed.
"""

import re
import socket
import struct
import time

from chanpeer import (AUTH, DATA, FIN, NAMES, OPEN, OPEN_RESULT, PING, PONG, REUSE, RST,
                      describe, frame, open_payload)
from conftest import SLOW, KiB, connect, free_port, read_until_closed
from torture import (OTHER, ROLE_NAME, ROLES, TRUNCATED, LogView, auth_payload, behind_auth,
                     frames_after, observe, run_all, until_closed)
from torture import arena  # noqa: F401 - the fixture, which pytest finds by its name


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
