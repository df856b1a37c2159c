"""Relay reloads at the edges: regressions found in review.

1. max-channels= counts the key's channels across a reload: a reload that changes nothing
   does not give the key its whole allowance again, and its channels in use are reused
   (REUSE) when their connection ends, not refused.
2. A queued OPEN (waiting for a reverse-proxy channel) whose key a reload removed is not
   paired: the entry-point's channel is told why (AUTH_RESULT 3) and no reverse-proxy sees
   the OPEN.
3. Reloads in a storm (every 30 ms for 5 s, 4 workers) while 8 threads carry round trips:
   every round trip succeeds.
"""

import os
import shutil
import signal
import threading
import time

from chanpeer import (AUTH_RESULT, FIN, OPEN, OPEN_RESULT, REUSE, ChanPeer, describe,
                      open_payload, open_result_payload)
from conftest import SLOW, Keys, make_keys
from test_key_rights import ssh_line

AUTH_OK, AUTH_UNKNOWN_KEY, AUTH_FULL = 0, 3, 9


def relay_keys(tmp_path, keys, lines):
    d = tmp_path / "relay-keys"
    d.mkdir()
    for f in ("server.crt", "server.key", "auth"):
        shutil.copy(keys.dir / f, d / f)
    (d / "auth").chmod(0o600)
    (d / "auth.pub").write_text("\n".join([keys.pub.read_text().rstrip("\n")] + lines) + "\n")
    return Keys(d)


def hup(relay):
    mark = len(relay.log())
    os.kill(relay.pid, signal.SIGHUP)
    relay.wait_log("reload: keys", since=mark)
    return mark


def test_max_channels_counts_across_a_reload(tunnel, keys, tmp_path):
    dave = make_keys(tmp_path / "dave", x509=False)
    rk = relay_keys(tmp_path, keys, [ssh_line(dave, 'max-channels="2"', "dave")])
    t = tunnel(keys=rk, reverse_proxy=False, entry_point=False, relay_args=["-v"])
    port = t.relay_port
    reverse = ChanPeer(port, keys, "reverse", 0, priv=dave.priv)
    assert reverse.wait_auth() == AUTH_OK
    entry = ChanPeer(port, keys, "entry", 0, priv=dave.priv)
    assert entry.wait_auth() == AUTH_OK
    entry.send_frame(OPEN, open_payload(80, "x.test"))
    reverse.expect_frame(OPEN, timeout=5 * SLOW)
    reverse.send_frame(OPEN_RESULT, open_result_payload(0))
    entry.expect_frame(OPEN_RESULT, timeout=5 * SLOW)
    third = ChanPeer(port, keys, "entry", 0, priv=dave.priv)
    assert third.wait_auth() == AUTH_FULL
    third.close()

    hup(t.relay)
    late = [ChanPeer(port, keys, "reverse", 0, priv=dave.priv) for _ in range(2)]
    codes = [p.wait_auth() for p in late]
    assert codes == [AUTH_FULL, AUTH_FULL], "dave holds more than max-channels=2: %s" % codes
    # The pair in use ends cleanly: both channels are reused, not refused.
    entry.send_frame(FIN)
    reverse.expect_frame(FIN, timeout=5 * SLOW)
    reverse.send_frame(FIN)
    entry.expect_frame(FIN, timeout=5 * SLOW)
    entry.expect_frame(REUSE, timeout=5 * SLOW)
    reverse.expect_frame(REUSE, timeout=5 * SLOW)
    assert not entry.frames(AUTH_RESULT), describe(entry.events)


def test_a_queued_open_of_a_removed_key_is_not_paired(tunnel, keys, tmp_path):
    alice = make_keys(tmp_path / "alice", x509=False)
    rk = relay_keys(tmp_path, keys, [ssh_line(alice, 'role="entry-point"', "alice")])
    t = tunnel(keys=rk, reverse_proxy=False, entry_point=False,
               relay_args=["-v", "--open-timeout", "20"])
    entry = ChanPeer(t.relay_port, keys, "entry", 0, priv=alice.priv)
    assert entry.wait_auth() == AUTH_OK
    entry.send_frame(OPEN, open_payload(80, "secret.test"))
    t.relay.wait_log("-> queued")
    (rk.dir / "auth.pub").write_text(keys.pub.read_text())
    mark = hup(t.relay)
    t.relay.wait_log("after a reload: key", since=mark)
    entry.wait_closed(5 * SLOW)
    assert entry.frames(AUTH_RESULT), describe(entry.events)
    reverse = ChanPeer(t.relay_port, keys, "reverse", 0)
    assert reverse.wait_auth() == AUTH_OK
    time.sleep(1)
    assert not reverse.frames(OPEN), "a removed key's OPEN reached a reverse-proxy"


def test_a_storm_of_reloads_under_traffic(tunnel):
    t = tunnel(relay_args=["--workers", "4"], rp_args=["--pool-min", "20"],
               ep_args=["--pool-min", "20"])
    stop = threading.Event()
    errors, ok = [], [0]

    def traffic():
        while not stop.is_set():
            if t.probe(timeout=3):
                ok[0] += 1
            else:
                errors.append("a round trip failed")

    threads = [threading.Thread(target=traffic) for _ in range(8)]
    for th in threads:
        th.start()
    end = time.monotonic() + 5
    reloads = 0
    while time.monotonic() < end:
        os.kill(t.relay.pid, signal.SIGHUP)
        reloads += 1
        time.sleep(0.03)
    stop.set()
    for th in threads:
        th.join(10)
    assert t.relay.alive()
    assert not errors, "%d of %d round trips failed" % (len(errors), ok[0] + len(errors))
    assert ok[0] > 50 and reloads > 50
