"""A destination's name is still being resolved when the channel that asked for it ends.

The reverse-proxy must drop the late answer: the connection is already closing and its channel
gone.  The reverse-proxy runs in a private mount namespace (unshare -m, root only) with a
resolv.conf that names a fake DNS server on a free loopback UDP port.  The fake server holds the
query and stops the reverse-proxy (SIGSTOP); the entry-point is killed, so the relay closes the
reverse-proxy's channel; the held query gets its NXDOMAIN; then SIGCONT.  The end of the channel
and the DNS answer now reach the reverse-proxy in one loop pass.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import bin_path, connect, free_port, SANITIZE, SANITIZER_REPORT, SLOW

NAME = b"held"


def nxdomain(query):
    """The answer to query: same id and question, flags QR RD RA, rcode 3, no records."""
    return query[:2] + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0) + query[12:]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare(1) for a private resolv.conf")
def test_late_dns_answer_after_the_channel_ended(tunnel, tmp_path):
    t = tunnel(reverse_proxy=False, entry_point=False, relay_args=["-v"])
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 0))
    dns.settimeout(0.2)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1:%d\n" % dns.getsockname()[1])

    held, lock, stopped, done = [], threading.Lock(), threading.Event(), threading.Event()
    procs = {}

    def serve():
        while not done.is_set():
            try:
                q, addr = dns.recvfrom(2048)
            except socket.timeout:
                continue
            with lock:
                if NAME in q.lower() and not procs.get("released"):
                    held.append((q, addr))
                    if not stopped.is_set():
                        os.kill(procs["rp"].pid, signal.SIGSTOP)
                        stopped.set()
                    continue
            dns.sendto(nxdomain(q), addr)

    env = dict(os.environ)
    if SANITIZE:
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    rp_log = open(tmp_path / "reverse-proxy.log", "wb")
    ep_log = open(tmp_path / "entry-point.log", "wb")
    server = threading.Thread(target=serve, daemon=True)
    server.start()
    route_port = free_port("127.0.0.1")
    try:
        rp_cmd = " ".join([bin_path("reverse-proxy"), "-v", "--pool-min", "1", "--pool-max", "1"]
                          + [str(a) for a in t.client_args()])
        # unshare and sh exec: the PID stays the reverse-proxy's.
        procs["rp"] = subprocess.Popen(
            ["unshare", "-m", "sh", "-c",
             "mount --bind %s /etc/resolv.conf && exec %s" % (resolv, rp_cmd)],
            stdin=subprocess.DEVNULL, stdout=rp_log, stderr=subprocess.STDOUT, env=env)
        procs["ep"] = subprocess.Popen(
            [bin_path("entry-point"), "-v", "-r", "127.0.0.1:%d:held.test:80" % route_port]
            + [str(a) for a in t.client_args()],
            stdin=subprocess.DEVNULL, stdout=ep_log, stderr=subprocess.STDOUT, env=env)
        t.relay.wait_log("reverse-proxy authenticated", timeout=10 * SLOW)
        t.relay.wait_log("entry-point authenticated", timeout=10 * SLOW)

        user = connect("127.0.0.1", route_port, timeout=5 * SLOW)
        assert stopped.wait(10 * SLOW), "the reverse-proxy never asked the fake DNS server"
        procs["ep"].kill()  # its channel ends: the relay closes the reverse-proxy's channel
        procs["ep"].wait(10)
        time.sleep(0.5 * SLOW)
        with lock:
            procs["released"] = True
            for q, addr in held:
                dns.sendto(nxdomain(q), addr)
        time.sleep(0.3 * SLOW)
        os.kill(procs["rp"].pid, signal.SIGCONT)
        time.sleep(1.0 * SLOW)
        user.close()
        rp = procs["rp"]
        assert rp.poll() is None, "the reverse-proxy died (status %s):\n%s" % (
            rp.returncode, (tmp_path / "reverse-proxy.log").read_text(errors="replace")[-3000:])
        rp.send_signal(signal.SIGTERM)
        assert rp.wait(10 * SLOW) == 0
        log = (tmp_path / "reverse-proxy.log").read_text(errors="replace")
        assert not SANITIZER_REPORT.search(log), log[-3000:]
    finally:
        done.set()
        server.join(5)
        for p in procs.values():
            if isinstance(p, subprocess.Popen) and p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                p.kill()
                p.wait(10)
        rp_log.close()
        ep_log.close()
        dns.close()
