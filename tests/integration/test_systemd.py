"""What the daemons tell systemd: sd_notify(3) readiness, and the journal's priorities.

1. With $NOTIFY_SOCKET naming a datagram socket the test binds (a path for the relay and the
   reverse-proxy, an abstract "@name" for the entry-point), each daemon sends READY=1 with a
   STATUS= line once it serves: the relay when it listens, the reverse-proxy and the
   entry-point at their first authenticated channel (the entry-point's routes listen before);
   on SIGHUP, RELOADING=1 with MONOTONIC_USEC=, then READY=1 again; on SIGTERM, STOPPING=1 with
   EXTEND_TIMEOUT_USEC= for the drain.  The relay sends STATUS= again every 10 s.
2. With $JOURNAL_STREAM naming the daemon's standard error (device:inode, as systemd sets it),
   every line starts with its syslog priority: <3> an error it stops on, <4> a warning, <6> the
   start-up lines, <7> the -v lines.  Without it, or when it names another file (a shell that
   redirected stderr), no line has a prefix.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import SLOW, bin_path, connect, free_port, run_once, timer_bound


class NotifySocket:
    """A bound AF_UNIX datagram socket; records every datagram with the daemon's log (the
    file start_daemon writes it to) at the time it came: what the daemon had done by then."""

    def __init__(self, address, env_value, log_path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.env = {"NOTIFY_SOCKET": env_value}
        self.log_path = log_path
        self.messages = []          # (monotonic time, text, daemon log then)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                log = self.log_path.read_text(errors="replace")
            except FileNotFoundError:
                log = ""
            with self.lock:
                self.messages.append((time.monotonic(), data.decode(), log))

    def texts(self):
        with self.lock:
            return [m[1] for m in self.messages]

    def wait_for(self, pattern, after=0, timeout=10.0):
        """The index of the first message from index after that matches pattern."""
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            with self.lock:
                for i, (_, text, _) in enumerate(self.messages[after:], after):
                    if re.search(pattern, text):
                        return i
            time.sleep(0.02)
        raise AssertionError("no %r in %r" % (pattern, self.texts()[after:]))

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def mark_status(n, ready_at):
    """The index of the first message that came 9 s or more after ready_at (the reloads'
    STATUS lines come before)."""
    deadline = time.monotonic() + 12 * SLOW
    while time.monotonic() < deadline:
        with n.lock:
            for i, (t, _, _) in enumerate(n.messages):
                if t - ready_at >= 9.0:
                    return i
            count = len(n.messages)
        time.sleep(0.05)
    return count


@timer_bound
@run_once
def test_ready_reloading_stopping_from_each_daemon(tunnel, echo_server, tmp_path):
    tag = "trp-test-%d-%d" % (os.getpid(), time.monotonic_ns())
    sockets = []
    try:
        relay_n = NotifySocket(str(tmp_path / "relay.notify"), str(tmp_path / "relay.notify"),
                               tmp_path / "relay-server.log")
        sockets.append(relay_n)
        rp_n = NotifySocket(str(tmp_path / "rp.notify"), str(tmp_path / "rp.notify"),
                            tmp_path / "reverse-proxy.log")
        sockets.append(rp_n)
        ep_n = NotifySocket("\0" + tag, "@" + tag, tmp_path / "entry-point.log")
        sockets.append(ep_n)
        t = tunnel(reverse_proxy=False, entry_point=False, ready=False, env=relay_n.env)
        echo = echo_server()
        listen = free_port("127.0.0.1")
        rp = t.start_reverse_proxy(env=rp_n.env)
        ep = t.start_entry_point(routes=["127.0.0.1:%d:127.0.0.1:%d" % (listen, echo.port)],
                                 env=ep_n.env)
        t.wait_ready()

        # READY=1 once it serves, with a status line.
        for n, what in ((relay_n, "listening on"), (rp_n, "connected (group 0)"),
                        (ep_n, "connected (group 0)")):
            i = n.wait_for(r"(^|\n)READY=1(\n|$)")
            text, log_then = n.messages[i][1], n.messages[i][2]
            assert re.search(r"(^|\n)STATUS=\S", text), text
            assert what in log_then, "READY=1 came before %r:\n%s" % (what, log_then)
        assert "listening on" in ep_n.messages[ep_n.wait_for("READY=1")][2]
        assert re.search(r"STATUS=\d+ channels? open, \d+ connections?",
                         relay_n.texts()[relay_n.wait_for("READY=1")])
        for n in (relay_n, rp_n, ep_n):
            assert sum("READY=1" in x for x in n.texts()) == 1, n.texts()

        # SIGHUP: RELOADING=1 (with the time), then READY=1.
        for n, d in ((relay_n, t.relay), (rp_n, rp), (ep_n, ep)):
            mark = len(n.texts())
            d.proc.send_signal(signal.SIGHUP)
            i = n.wait_for(r"^RELOADING=1\nMONOTONIC_USEC=\d+$", after=mark)
            usec = int(n.messages[i][1].split("MONOTONIC_USEC=")[1])
            assert abs(usec / 1e6 - n.messages[i][0]) < 5, "MONOTONIC_USEC is not CLOCK_MONOTONIC"
            n.wait_for(r"(^|\n)READY=1(\n|$)", after=i + 1)

        # The relay's status again from its timer, 10 s after it started (the timer is
        # armed just before READY=1).
        ready_at = relay_n.messages[relay_n.wait_for("READY=1")][0]
        i = relay_n.wait_for(r"^STATUS=\d+ channels? open", after=mark_status(relay_n, ready_at),
                             timeout=12)
        since = relay_n.messages[i][0] - ready_at
        assert 9.0 < since < 11.0 + SLOW, "the status timer said it after %.1f s" % since

        # SIGTERM: STOPPING=1, and the time the drain (--drain-timeout, 30 s by default) may
        # take and 15 s more: a longer drain than TimeoutStopSec= is not cut short.
        for n, d in ((ep_n, ep), (rp_n, rp), (relay_n, t.relay)):
            mark = len(n.texts())
            assert d.stop() == 0
            i = n.wait_for(r"(^|\n)STOPPING=1(\n|$)", after=mark, timeout=2)
            assert "EXTEND_TIMEOUT_USEC=45000000" in n.texts()[i].split("\n"), n.texts()[i]
    finally:
        for n in sockets:
            n.close()


def run_relay(args, stderr_path, journal_of=None, seconds=None, during=None):
    """Run relay-server with stderr to stderr_path (and $JOURNAL_STREAM naming journal_of's
    device:inode, when given); until it exits, or for seconds (then SIGTERM).  Returns the
    lines it wrote."""
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    with open(stderr_path, "wb") as err:
        if journal_of is not None:
            st = os.stat(journal_of)
            env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        p = subprocess.Popen([bin_path("relay-server")] + [str(a) for a in args],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                             env=env)
        try:
            if seconds is None:
                p.wait(10 * SLOW)
            else:
                deadline = time.monotonic() + seconds * SLOW
                while time.monotonic() < deadline and p.poll() is None:
                    if "listening on" in Path(stderr_path).read_text():
                        break
                    time.sleep(0.02)
                if during is not None:
                    during()
                time.sleep(0.3)
                p.send_signal(signal.SIGTERM)
                p.wait(10 * SLOW)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    return Path(stderr_path).read_text().splitlines()


def test_journal_priorities(keys, tmp_path):
    port = free_port("127.0.0.1")
    args = ["-v", "-p", port, "--host", "127.0.0.1", "-c", keys.cert, "-k", keys.key,
            "-a", keys.pub, "--max-channels", "1000000"]   # more than the limit: a warning

    log = tmp_path / "relay.err"
    stranger_line = re.compile(r"^<7>relay-server: 127\.0\.0\.1:\d+: ", re.M)

    def a_stranger():
        """A connection that is not TLS: -v logs it (<7>) before the test stops the relay."""
        with connect("127.0.0.1", port) as s:
            s.sendall(b"not TLS\r\n\r\n")
            deadline = time.monotonic() + 5 * SLOW
            while not stranger_line.search(log.read_text()):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.02)

    lines = run_relay(args, log, journal_of=log, seconds=10, during=a_stranger)
    assert lines and all(re.match(r"<[3-7]>relay-server: ", line) for line in lines), lines
    by = {p: [line for line in lines if line.startswith("<%d>" % p)] for p in (4, 6, 7)}
    assert any("listening on" in line for line in by[6]), lines
    assert any("--max-channels" in line for line in by[4]), lines
    assert any(stranger_line.match(line) for line in by[7]), lines   # -v: the stranger
    assert not any(line.startswith("<3>") for line in lines), lines

    bad = run_relay(["--port", "abc"], tmp_path / "bad.err", journal_of=tmp_path / "bad.err")
    assert bad == ["<3>relay-server: --port: 'abc' is not a port number (1-65535)"], bad

    # Not the journal: no prefix (unset, or naming another file).
    plain = run_relay(["--port", "abc"], tmp_path / "plain.err")
    other = tmp_path / "other"
    other.write_text("")
    redirected = run_relay(["--port", "abc"], tmp_path / "redirected.err", journal_of=other)
    for got in (plain, redirected):
        assert got == ["relay-server: --port: 'abc' is not a port number (1-65535)"], got


# ---------------------------------------------------------------------------------------------
# A busy service manager: its one notify socket serves every unit, and its queue can be full
# for a moment (a boot, a daemon-reload).  READY=1 then waits for room, up to 2 s, instead of
# being dropped (a Type=notify unit that never hears it is killed at TimeoutStartSec=); one
# that found no room for 2 s goes again with the next STATUS= line.

def fill_datagram_queue(path):
    """Fill the receive queue of the datagram socket bound at path (net.unix.max_dgram_qlen
    datagrams); returns the sockets that did it, for the caller to close."""
    fillers = []
    while len(fillers) < 64:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setblocking(False)
        fillers.append(s)
        sent = 0
        try:
            while sent < 10000:
                s.sendto(b"FILLER=1", path)
                sent += 1
        except BlockingIOError:
            pass
        if sent == 0:       # a new sender finds no room: the receiver's queue is full
            return fillers
    raise AssertionError("could not fill the queue of %s" % path)


def read_datagrams(sock, seconds, until=None):
    """The datagrams sock receives within seconds (or until one matches until)."""
    got = []
    deadline = time.monotonic() + seconds * SLOW
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except socket.timeout:
            break
        if until is not None and re.search(until, got[-1]):
            break
    return got


def relay_args(keys):
    return ["-p", free_port("127.0.0.1"), "--host", "127.0.0.1", "-c", keys.cert,
            "-k", keys.key, "-a", keys.pub]


@pytest.fixture
def full_notify_queue(tmp_path):
    """(the path of a bound datagram socket whose queue is full, that socket)."""
    path = str(tmp_path / "full.notify")
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(path)
    fillers = fill_datagram_queue(path)
    yield path, manager
    for s in fillers:
        s.close()
    manager.close()


def waiting_for_room(pid, seconds):
    """Whether process pid's main thread came to wait for room at a datagram socket's peer
    within seconds (its wait channel: unix_wait_for_peer); None when the kernel does not
    say (/proc/PID/wchan reads 0)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            wchan = Path("/proc/%d/wchan" % pid).read_text().strip()
        except OSError:
            return None
        if wchan == "unix_wait_for_peer":
            return True
        if wchan == "0":
            return None
        time.sleep(0.005)
    return False


def test_ready_waits_for_room_in_a_full_notify_queue(start_daemon, keys, full_notify_queue):
    path, manager = full_notify_queue
    relay = start_daemon("relay-server", relay_args(keys), env={"NOTIFY_SOCKET": path})
    relay.wait_log(r"listening on")
    # READY=1 waits for room now (it used to be dropped at once): make room while it does.
    waited = waiting_for_room(relay.pid, 1.5)
    if waited is None:
        time.sleep(0.3)
    # (On a machine slow enough for the 2 s to pass first, READY=1 is owed to the status
    # line 10 s after the start, as the next test checks: it is never lost.)
    got = read_datagrams(manager, 14, until=r"(^|\n)READY=1(\n|$)")
    ready = [x for x in got if re.search(r"(^|\n)READY=1(\n|$)", x)]
    assert ready and re.search(r"(^|\n)STATUS=\d+ channels? open", ready[0]), got
    if waited:
        assert "no room at the service manager" not in relay.log(), relay.log()


@timer_bound
def test_ready_owed_after_a_long_full_queue_goes_with_the_next_status(start_daemon, keys,
                                                                      full_notify_queue):
    path, manager = full_notify_queue
    start = time.monotonic()
    relay = start_daemon("relay-server", relay_args(keys), env={"NOTIFY_SOCKET": path})
    relay.wait_log(r"listening on")
    relay.wait_log("notify: no room at the service manager (its queue stayed full for 2 s): "
                   "READY=1 again with the next status")
    # It waited for room first (a slow machine only makes this later): not dropped at once.
    waited = time.monotonic() - start
    assert waited >= 1.9, "READY=1 given up after %.2f s, not 2 s" % waited
    first = read_datagrams(manager, 0.5)
    assert all(x == "FILLER=1" for x in first), first
    # The status timer (10 s from the start) carries the READY=1 that found no room.
    got = read_datagrams(manager, 12, until=r"(^|\n)READY=1(\n|$)")
    assert got and re.match(r"READY=1\nSTATUS=\d+ channels? open", got[-1]), got
    assert relay.log().count("no room at the service manager") == 1, relay.log()


@run_once
def test_a_failed_reload_shows_in_the_status_until_one_succeeds(start_daemon, keys, tmp_path):
    """systemctl reload cannot fail (ExecReload= sends a signal), so the status line that
    systemctl status shows says that the last reload failed, until one succeeds."""
    config = tmp_path / "relay.conf"
    config.write_text("drain-timeout = 30\n")
    n = NotifySocket(str(tmp_path / "relay.notify"), str(tmp_path / "relay.notify"),
                     tmp_path / "relay-server.log")
    try:
        relay = start_daemon("relay-server", relay_args(keys) + ["--config", config],
                             env=n.env)
        n.wait_for(r"(^|\n)READY=1(\n|$)")
        config.write_text("drain-timeout = 30\nbogus-line\n")
        mark = len(n.texts())
        relay.proc.send_signal(signal.SIGHUP)
        i = n.wait_for(r"^STATUS=", after=mark)
        assert re.match(r"STATUS=last reload failed, running the previous configuration; "
                        r"\d+ channels? open", n.texts()[i]), n.texts()[mark:]
        relay.wait_log(re.compile(r"reload failed: .*relay\.conf:2: expected 'option = value'"))
        config.write_text("drain-timeout = 30\n")
        mark = len(n.texts())
        relay.proc.send_signal(signal.SIGHUP)
        i = n.wait_for(r"^STATUS=", after=mark)
        assert re.match(r"STATUS=\d+ channels? open", n.texts()[i]), n.texts()[mark:]
    finally:
        n.close()
