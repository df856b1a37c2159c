"""SIGHUP at the relay: the authorized keys, the certificate and its key are read again
without dropping a connection.

The relay starts with an authorized-keys file holding the session's key (K, the tunnel's
reverse-proxy and probe entry-point) and alice's.  alice's entry-point carries a 256 MiB
transfer (64 MiB under the sanitizer) each way.  While it runs, the file is rewritten to hold
K and bob's key instead, and the relay gets SIGHUP:

- the transfer completes, every byte intact, on alice's channel that was admitted before;
- the relay logs one line saying what changed (bob added, alice removed);
- alice's idle channels are closed at once, and told why (AUTH_RESULT: key not accepted):
  her entry-point logs the refusal and backs off; her channel that carried the transfer is
  refused in the same way when it is done, instead of being reused;
- bob's entry-point, started after, is admitted and carries traffic.

Then a broken file on SIGHUP is refused with its file and line, the keys in force stay (bob's
entry-point still carries traffic, new channels of his are admitted), and the relay lives.
A new certificate on SIGHUP is used by new handshakes: a client that pins it connects.
"""

import hashlib
import os
import re
import shutil
import signal
import socket
import threading
import time

from conftest import (KiB, MiB, SLOW, Keys, connect, free_port, make_keys, round_trip,
                      scaled)

TRANSFER = scaled(256 * MiB, 64 * MiB)
CHUNK = 256 * KiB


def ssh_line(keys, comment):
    kind, blob = keys.pub.read_text().split()[:2]
    return "%s %s %s" % (kind, blob, comment)


class Transfer:
    """One connection sending size bytes and reading the echo back, each direction hashed."""

    def __init__(self, port, size, deadline):
        self.size = size
        self.deadline = deadline
        self.sock = connect("127.0.0.1", port, timeout=30 * SLOW)
        self.sent, self.echoed = hashlib.sha256(), hashlib.sha256()
        self.echoed_bytes = 0
        self.error = None
        self.threads = [threading.Thread(target=self._send, daemon=True),
                        threading.Thread(target=self._receive, daemon=True)]
        for t in self.threads:
            t.start()

    def _send(self):
        block = os.urandom(CHUNK)
        try:
            for offset in range(0, self.size, CHUNK):
                if time.monotonic() > self.deadline:
                    raise TimeoutError("sender past the deadline")
                # Each chunk differs: a byte lost, repeated or reordered changes the hash.
                chunk = offset.to_bytes(8, "big") + block[8:]
                self.sock.sendall(chunk)
                self.sent.update(chunk)
            self.sock.shutdown(socket.SHUT_WR)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = self.error or "send: %r" % e

    def _receive(self):
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            while True:
                if time.monotonic() > self.deadline:
                    raise TimeoutError("receiver past the deadline")
                n = self.sock.recv_into(buf)
                if n == 0:
                    return
                self.echoed.update(view[:n])
                self.echoed_bytes += n
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = self.error or "receive: %r" % e

    def join(self):
        for t in self.threads:
            t.join(max(0.1, self.deadline - time.monotonic()) + 5)
        self.sock.close()


def hup(daemon):
    mark = len(daemon.log())
    os.kill(daemon.pid, signal.SIGHUP)
    return mark


def test_keys_swapped_under_a_transfer(tunnel, keys, echo_server, tmp_path):
    alice = make_keys(tmp_path / "alice", x509=False)
    bob = make_keys(tmp_path / "bob", x509=False)
    relay_keys = tmp_path / "relay-keys"
    relay_keys.mkdir()
    for f in ("server.crt", "server.key", "auth"):
        shutil.copy(keys.dir / f, relay_keys / f)
    authorized = relay_keys / "auth.pub"
    session = keys.pub.read_text().rstrip("\n")
    authorized.write_text("%s\n%s\n" % (session, ssh_line(alice, "alice")))
    t = tunnel(keys=Keys(relay_keys))
    relay = t.relay

    echo = echo_server()
    port = free_port("127.0.0.1")
    route = "127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)
    ep_alice = t.start_entry_point([route], key=alice.priv, extra=["--pool-min", "2"],
                                   wait_connected=True)
    transfer = Transfer(port, TRANSFER, time.monotonic() + 240 * SLOW)
    # Let it get going, then swap alice for bob under it.
    while transfer.echoed_bytes < 8 * MiB and transfer.error is None:
        time.sleep(0.01)
    authorized.write_text("# alice left, bob came\n%s\n%s\n" % (session, ssh_line(bob, "bob")))
    mark = hup(relay)
    line = relay.wait_log(re.compile(r"reload: keys 2 \(added SHA256:\S+ \(bob\); "
                                     r"removed SHA256:\S+ \(alice\)\); certificate \S+ "
                                     r"\(unchanged\)"), since=mark)
    assert line
    # alice's idle channels: closed now, told why; her entry-point says so and backs off.
    relay.wait_log(re.compile(r"authentication failed: after a reload: key SHA256:\S+ "
                              r"\(alice\) is no longer in the authorized keys"), since=mark)
    ep_alice.wait_log("refused authentication: public key not accepted")
    assert transfer.echoed_bytes < TRANSFER, "the transfer ended before the reload"

    transfer.join()
    assert transfer.error is None, transfer.error
    assert transfer.echoed_bytes == TRANSFER
    assert transfer.echoed.digest() == transfer.sent.digest(), "the transfer was corrupted"

    # bob is in: his entry-point carries traffic.
    bob_port = free_port("127.0.0.1")
    t.start_entry_point(["127.0.0.1:%d:127.0.0.1:%d" % (bob_port, echo.port)], key=bob.priv,
                        wait_connected=True)
    payload = os.urandom(64 * KiB)
    assert round_trip("127.0.0.1", bob_port, payload, 10 * SLOW) == payload
    # alice is out: her route no longer gets through (no channel of hers is admitted).
    assert "paired with reverse-proxy" in relay.log()
    refusals = len(re.findall(r"authentication failed: public key not accepted \(key "
                              r"SHA256:\S+\)", relay.log()[mark:]))
    time.sleep(3)
    later = len(re.findall(r"authentication failed: public key not accepted \(key "
                           r"SHA256:\S+\)", relay.log()[mark:]))
    # Backing off: 1 s doubling, not every 100 ms.
    assert later - refusals <= 4, "alice's entry-point redials too often"
    assert t.probe(), "the session's tunnel stopped"

    # A broken file: refused with file and line; bob's and K's rights stay.
    authorized.write_text("%s\n%s\nrole=\"nobody\" %s\n" % (
        session, ssh_line(bob, "bob"), ssh_line(alice, "alice")))
    mark = hup(relay)
    line = relay.wait_log(re.compile(r"reload failed: --auth-public-key: %s:3: [^\n]*"
                                     r"still running the previous configuration"
                                     % re.escape(str(authorized))), since=mark)
    assert line and relay.alive()
    t.start_entry_point(["127.0.0.1:%d:127.0.0.1:%d" % (free_port("127.0.0.1"), echo.port)],
                        key=bob.priv, wait_connected=True)
    assert round_trip("127.0.0.1", bob_port, payload, 10 * SLOW) == payload
    assert t.probe()


def test_new_certificate_for_new_handshakes(tunnel, keys, tmp_path):
    relay_keys = tmp_path / "relay-keys"
    relay_keys.mkdir()
    for f in ("server.crt", "server.key", "auth", "auth.pub"):
        shutil.copy(keys.dir / f, relay_keys / f)
    t = tunnel(keys=Keys(relay_keys))
    fresh = make_keys(tmp_path / "fresh")
    for f in ("server.crt", "server.key"):
        shutil.copy(fresh.dir / f, relay_keys / f)
    (relay_keys / "server.key").chmod(0o600)
    mark = hup(t.relay)
    t.relay.wait_log(re.compile(r"reload: keys 1 \(unchanged\); certificate \S+ \(new\)"),
                     since=mark)
    # A client that pins the new certificate gets in; the running tunnel goes on.
    rp = t.start_reverse_proxy(cert=fresh.cert, group=7, wait_connected=True)
    assert "certificate verify failed" not in rp.log()
    assert t.probe()
    # One that pins the old one fails its new handshakes.
    old = t.start_reverse_proxy(cert=keys.cert, group=8)
    old.wait_log("certificate verify failed", timeout=15)


def test_broken_certificate_changes_nothing(tunnel, keys, tmp_path):
    relay_keys = tmp_path / "relay-keys"
    relay_keys.mkdir()
    for f in ("server.crt", "server.key", "auth", "auth.pub"):
        shutil.copy(keys.dir / f, relay_keys / f)
    t = tunnel(keys=Keys(relay_keys))
    (relay_keys / "server.crt").write_text("not a certificate\n")
    mark = hup(t.relay)
    t.relay.wait_log(re.compile(r"reload failed: .*server\.crt.*still running the previous "
                                r"configuration"), since=mark)
    assert t.relay.alive()
    # The old certificate is still the one new handshakes get.
    rp = t.start_reverse_proxy(group=3, cert=keys.cert, wait_connected=True)
    assert rp.alive() and t.probe()
