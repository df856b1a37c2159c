"""The allow-list and names that resolve: regressions found in review.

The reverse-proxy runs in a private mount namespace (unshare -m, root only) whose resolv.conf
names a fake DNS server (fakedns.py) on a free loopback port, so each test decides what a name
resolves to, and when.

1. A reload swaps the list while a name is being resolved: the answer is judged by the new
   list (the old list's name rule allowed the name; the new one allows nothing of it), so
   nothing is dialled.
2. A name resolves to an allowed address, where nothing listens, and a forbidden one: the
   allowed one is dialled and refused; the forbidden one is skipped.  The entry-point hears
   "refused", not "not allowed" (code 6 means nothing was dialled).
"""

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import SANITIZE, SLOW, Daemon, bin_path, connect, free_port, read_until_closed
from fakedns import FakeDNS

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare(1) for a private resolv.conf")


class NsDaemon(Daemon):
    """A daemon in a private mount namespace with its own resolv.conf."""

    def __init__(self, program, args, log_path, resolv, name=None):
        super().__init__(program, args, log_path, name=name)
        self.resolv = resolv

    def start(self):
        env = dict(os.environ)
        if SANITIZE:
            env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        self._log_file = open(self.log_path, "ab")
        cmd = " ".join([bin_path(self.program)] + [str(a) for a in self.args])
        self.proc = subprocess.Popen(
            ["unshare", "-m", "sh", "-c",
             "mount --bind %s /etc/resolv.conf && exec %s" % (self.resolv, cmd)],
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            env=env, start_new_session=True)
        return self


@pytest.fixture
def dns():
    d = FakeDNS()
    yield d
    d.close()


def start_ns_reverse_proxy(request, t, tmp_path, dns, extra):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1:%d\n" % dns.port)
    d = NsDaemon("reverse-proxy", t.client_args() + ["-v"] + list(extra),
                 tmp_path / "reverse-proxy.log", str(resolv), name="reverse-proxy-ns")
    request.node.trp_daemons.append(d)
    d.start()
    d.wait_log("connected (group 0)")
    return d


def test_a_reload_during_the_lookup_judges_the_answer_by_the_new_list(
        request, tunnel, echo_server, tmp_path, dns):
    echo = echo_server("127.0.0.1")
    conf = tmp_path / "reverse-proxy.conf"
    conf.write_text("allow = dest.test:%d\n" % echo.port)
    listen = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:dest.test:%d" % (listen, echo.port)],
               reverse_proxy=False, ready=False)
    rp = start_ns_reverse_proxy(request, t, tmp_path, dns, ["--config", str(conf)])
    dns.answers["dest.test"] = ["127.0.0.1"]
    dns.hold.set()
    s = connect("127.0.0.1", listen, timeout=5 * SLOW)
    s.sendall(b"hello")
    deadline = time.monotonic() + 5 * SLOW
    while not dns.held and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dns.held, "the reverse-proxy asked nothing"
    conf.write_text("allow = 127.0.0.9:1\n")
    mark = len(rp.log())
    os.kill(rp.pid, signal.SIGHUP)
    rp.wait_log("reload: allow-list changed", since=mark)
    dns.release()
    data, how, _ = read_until_closed(s, 5 * SLOW)
    s.close()
    assert data == b"" and how in ("reset", "eof"), (data, how)
    assert echo.accepted == 0, "a destination the new list forbids was dialled"
    rp.wait_log("-> dest.test:%d: refused: its address is not allowed" % echo.port)


def test_a_refused_connect_is_reported_as_refused_not_as_not_allowed(
        request, tunnel, tmp_path, dns):
    port = free_port("127.0.0.1")       # nothing listens on 127.0.0.1:port
    trap = socket.socket()
    trap.bind(("127.0.0.2", port))      # forbidden: must never be dialled
    trap.listen(4)
    listen = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:two.test:%d" % (listen, port)], reverse_proxy=False,
               ready=False)
    start_ns_reverse_proxy(request, t, tmp_path, dns, ["--allow", "127.0.0.1:%d" % port])
    dns.answers["two.test"] = ["127.0.0.1", "127.0.0.2"]
    s = connect("127.0.0.1", listen, timeout=5 * SLOW)
    s.sendall(b"x")
    read_until_closed(s, 5 * SLOW)
    s.close()
    t.entry_point.wait_log("cannot open: destination refused the connection: two.test:%d"
                           % port)
    assert "not allowed" not in t.entry_point.log()
    trap.setblocking(False)
    with pytest.raises(BlockingIOError):
        trap.accept()
    trap.close()
