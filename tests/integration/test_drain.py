"""The graceful stop: SIGTERM lets the connections in flight finish (--drain-timeout).

A transfer of 3 MiB at 1 MiB/s goes through the tunnel to an echo server and back; SIGTERM
reaches one daemon half a second in.  The transfer completes intact (sha256), the daemon exits
0 and logs one line when the drain starts and one when it ends (waited for, finished, reset).
With --drain-timeout 1 a longer transfer is cut at about 1 s; a second SIGTERM stops at once.
The relay tells its idle clients that it stops (AUTH_RESULT 10): they log "relay ... is
stopping" and reconnect to a new relay on the same port; it refuses the OPENs still waiting
for a reverse-proxy channel at once.  A SIGHUP during a drain does not reload.  An idle daemon
still exits at once.
"""

import hashlib
import re
import signal
import socket
import threading
import time

import pytest

from conftest import free_port, pseudo_random, run_once, MiB, KiB, SLOW

RATE = 1 * MiB          # bytes a second from the sender
CHUNK = 32 * KiB


class Transfer:
    """Send size bytes at RATE through port and read the echo, in threads."""

    def __init__(self, port, size, seed):
        self.payload = pseudo_random(seed, size)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.settimeout(30 * SLOW)
        self.received = hashlib.sha256()
        self.nreceived = 0
        self.error = None
        self.ended_at = None
        self.sender = threading.Thread(target=self._send, daemon=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.started = time.monotonic()
        self.sender.start()
        self.reader.start()

    def _send(self):
        try:
            for off in range(0, len(self.payload), CHUNK):
                due = self.started + off / RATE
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.sock.sendall(self.payload[off:off + CHUNK])
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass        # the reader says what happened

    def _read(self):
        try:
            while True:
                data = self.sock.recv(256 * KiB)
                if not data:
                    break
                self.received.update(data)
                self.nreceived += len(data)
        except OSError as e:
            self.error = e
        self.ended_at = time.monotonic()

    def wait(self, timeout):
        self.reader.join(timeout * SLOW)
        assert not self.reader.is_alive(), "the transfer did not end in time"
        self.sender.join(5)
        self.sock.close()

    @property
    def intact(self):
        return (self.error is None and self.nreceived == len(self.payload)
                and self.received.hexdigest() == hashlib.sha256(self.payload).hexdigest())


def _tunnel(tunnel, echo_server, relay_args=(), rp_args=(), ep_args=()):
    echo = echo_server()
    port = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)],
               relay_args=relay_args, rp_args=rp_args, ep_args=ep_args)
    return t, port


def _exit_within(daemon, timeout):
    """Wait for daemon to exit on its own; return (status, seconds it took)."""
    start = time.monotonic()
    status = daemon.proc.wait(timeout * SLOW)
    return status, time.monotonic() - start


@pytest.mark.parametrize("which", ["relay", "entry_point", "reverse_proxy"])
def test_drain_lets_a_transfer_finish(tunnel, echo_server, which):
    t, port = _tunnel(tunnel, echo_server)
    daemon = getattr(t, which)
    x = Transfer(port, 3 * MiB, "drain " + which)
    time.sleep(0.5)
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.wait_log("draining: no new connections, waiting for 1 in flight")
    status, took = _exit_within(daemon, 15)
    x.wait(10)
    assert x.intact, "the transfer through %s was not intact (%d of %d bytes, %s)" % (
        which, x.nreceived, len(x.payload), x.error)
    assert status == 0
    assert took > 1.0, "%s exited %.2f s after SIGTERM, before the transfer ended" % (
        which, took)
    daemon.wait_log("drain over: waited for 1 connection, 1 finished, 0 reset")
    print("%s drained in %.2f s" % (which, took))


def test_relay_drain_tells_clients_and_they_come_back(tunnel, echo_server):
    t, port = _tunnel(tunnel, echo_server)
    old = t.relay
    old.proc.send_signal(signal.SIGTERM)
    status, took = _exit_within(old, 5)
    assert status == 0
    assert took < 1.0, "an idle relay took %.2f s to stop" % took
    old.wait_log("drain over: waited for 0 connections, 0 finished, 0 reset")
    for client in (t.entry_point, t.reverse_proxy):
        client.wait_log("relay %s is stopping" % t.server_address)
        stopping = [l for l in client.log().splitlines() if "is stopping" in l]
        assert stopping and all("warn" not in l.lower() and "error" not in l.lower()
                                for l in stopping), stopping
    t.start_relay(name="relay-server-2")
    took = t.wait_ready(timeout=15)
    print("the tunnel worked again %.2f s after the new relay started" % took)


@pytest.mark.parametrize("which", ["relay", "entry_point", "reverse_proxy"])
def test_drain_timeout_resets_the_rest(tunnel, echo_server, which):
    arg = ["--drain-timeout", "1"]
    kw = {"relay": {"relay_args": arg}, "entry_point": {"ep_args": arg},
          "reverse_proxy": {"rp_args": arg}}[which]
    t, port = _tunnel(tunnel, echo_server, **kw)
    daemon = getattr(t, which)
    x = Transfer(port, 10 * MiB, "timeout " + which)
    time.sleep(0.5)
    signalled = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    status, took = _exit_within(daemon, 10)
    x.wait(10)
    assert status == 0
    assert 0.9 < took < 3.0 * SLOW, "%s exited %.2f s after SIGTERM" % (which, took)
    assert not x.intact and x.nreceived < len(x.payload)
    cut = x.ended_at - signalled
    assert cut < 4.0 * SLOW, "the transfer was cut %.2f s after SIGTERM" % cut
    daemon.wait_log("drain over: waited for 1 connection, 0 finished, 1 reset")


def test_second_signal_stops_at_once(tunnel, echo_server):
    t, port = _tunnel(tunnel, echo_server)
    x = Transfer(port, 10 * MiB, "second signal")
    time.sleep(0.5)
    t.relay.proc.send_signal(signal.SIGTERM)
    t.relay.wait_log("draining: no new connections")
    time.sleep(0.3)
    t.relay.proc.send_signal(signal.SIGTERM)
    status, took = _exit_within(t.relay, 5)
    assert status == 0
    assert took < 1.0, "the relay took %.2f s after the second SIGTERM" % took
    t.relay.wait_log("terminated again: stopping at once")
    t.relay.wait_log("1 reset")
    x.wait(10)
    assert not x.intact


@pytest.mark.parametrize("which", ["relay", "entry_point", "reverse_proxy"])
def test_idle_daemon_stops_at_once(tunnel, which):
    t = tunnel()
    daemon = getattr(t, which)
    start = time.monotonic()
    assert daemon.stop() == 0
    took = time.monotonic() - start
    assert took < 0.5 * SLOW, "an idle %s took %.2f s to stop" % (which, took)


@run_once
def test_hangup_during_a_drain_does_not_reload(tunnel, echo_server):
    """SIGHUP while the relay drains: it says it does not reload, does not, and the transfer
    in flight still finishes."""
    t, port = _tunnel(tunnel, echo_server)
    x = Transfer(port, 3 * MiB, "hangup in drain")
    time.sleep(0.5)
    t.relay.proc.send_signal(signal.SIGTERM)
    t.relay.wait_log("draining: no new connections, waiting for 1 in flight")
    t.relay.proc.send_signal(signal.SIGHUP)
    t.relay.wait_log("hangup: draining, not reloading")
    status, _ = _exit_within(t.relay, 15)
    x.wait(10)
    assert x.intact and status == 0
    assert not re.search(r"hangup: reloading|\breload( failed)?:", t.relay.log())
    t.relay.wait_log("drain over: waited for 1 connection, 1 finished, 0 reset")


def test_relay_drain_refuses_the_opens_that_wait(tunnel, echo_server):
    """An OPEN queued for a reverse-proxy channel (group 7 has none) is refused at once when
    the relay drains (OPEN_RESULT 4): its user connection ends then, not at the open
    timeout, while a transfer in group 0 finishes."""
    t, port = _tunnel(tunnel, echo_server)
    waiting_port = free_port("127.0.0.1")
    t.start_entry_point(routes=["127.0.0.1:%d:127.0.0.1:9" % waiting_port], group=7,
                        wait_connected=True)
    x = Transfer(port, 3 * MiB, "drain with a queued open")
    waiter = socket.create_connection(("127.0.0.1", waiting_port), timeout=5)
    waiter.sendall(b"hello")
    time.sleep(0.5)                 # the OPEN waits in the relay's queue of group 7
    signalled = time.monotonic()
    t.relay.proc.send_signal(signal.SIGTERM)
    waiter.settimeout(5 * SLOW)
    try:
        rest = waiter.recv(64)
    except OSError:
        rest = b""
    ended = time.monotonic() - signalled
    waiter.close()
    assert rest == b"" and ended < 2.0 * SLOW, "the waiting connection ended %.2f s after " \
        "SIGTERM (%r)" % (ended, rest)
    status, _ = _exit_within(t.relay, 15)
    x.wait(10)
    assert x.intact and status == 0
    t.entry_points[1].wait_log(re.compile(r"127\.0\.0\.1:\d+: cannot open: no reverse-proxy "
                                          r"available in this group: relay stopping"))
