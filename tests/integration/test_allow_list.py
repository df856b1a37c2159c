"""The reverse-proxy's destination allow-list (--allow): the entry-points name destinations,
the reverse-proxy decides which of them it connects to.

One reverse-proxy runs with

    --allow 127.0.0.1:A,127.0.0.2/31:LO-HI,localhost:N

and an entry-point has one route per case:

    allowed address          127.0.0.1:A            echoes
    refused address          127.0.0.4:A            reset, never dialled
    refused port             127.0.0.2:R (R outside LO-HI, in the allowed network)
    port range               127.0.0.3:B (B inside LO-HI; the /31 holds .2 and .3)
    allowed host name        localhost:N            echoes (a name rule: its addresses dialled)
    name, refused address    localhost:D            reset: 127.0.0.1:D is in no rule, and the
                                                    name is in no name rule, so the address
                                                    it resolves to is checked and refused

Each refused destination has a server listening where it points, which must never see a
connection; the user's connection is reset within a second, the entry-point logs the reason,
the reverse-proxy logs the claimed source, the destination and the rules.  Then: the default
list (no --allow) refuses link-local addresses at once; a malformed --allow stops the
reverse-proxy with exit 2; SIGHUP reloads the list from the config file, and a broken file
is refused with its file and line while the old list stays in force.
"""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import (SLOW, bin_path, connect, free_port, read_until_closed, round_trip)


def log_line(daemon, text, since=0):
    """Wait for a log line containing text; return the whole line."""
    return daemon.wait_log(re.compile(r"^.*%s.*$" % re.escape(text), re.M), since=since)[0]


def route(listen, host, port):
    return "127.0.0.1:%d:%s:%d" % (listen, host, port)


def refused_quickly(port):
    """A user connection to the entry-point's port is reset (or closed) within a second,
    with no byte from the destination."""
    start = time.monotonic()
    try:
        with connect("127.0.0.1", port, timeout=5 * SLOW) as s:
            s.sendall(b"hello?")
            data, how, _ = read_until_closed(s, 5 * SLOW)
    except (ConnectionResetError, BrokenPipeError):
        # The reset can come before connect() (which polls, then reads SO_ERROR) returns.
        data, how = b"", "reset"
    elapsed = time.monotonic() - start
    assert data == b"" and how in ("reset", "eof"), (data, how)
    assert elapsed < 1.0 * SLOW, "closed after %.2f s" % elapsed
    return how


def echoes(port):
    payload = os.urandom(4096)
    assert round_trip("127.0.0.1", port, payload, timeout=5 * SLOW) == payload


class Trap:
    """A listening socket where a refused destination points: nothing may connect."""

    def __init__(self, host, port=0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    @property
    def accepted(self):
        """Connections that reached the socket (each is taken off the backlog here)."""
        self.sock.setblocking(False)
        n = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return n
            conn.close()
            n += 1

    def close(self):
        self.sock.close()


@pytest.fixture
def servers(echo_server):
    """Echo servers where the allowed routes point, traps where the refused ones do."""
    allowed = echo_server("127.0.0.1")
    made = {"allowed": allowed,
            "refused_address": Trap("127.0.0.4", allowed.port),
            "refused_port": Trap("127.0.0.2"),
            "range": echo_server("127.0.0.3"),
            "name": echo_server("127.0.0.1"),
            "name_refused": Trap("127.0.0.1")}
    yield made
    for s in made.values():
        if isinstance(s, Trap):
            s.close()


def test_allow_list_decides_each_open(tunnel, servers):
    s = servers
    lo, hi = s["range"].port - 1, s["range"].port + 1
    assert not lo <= s["refused_port"].port <= hi or pytest.skip("port collision")
    rules = "127.0.0.1:%d,127.0.0.2/31:%d-%d,localhost:%d" % (
        s["allowed"].port, lo, hi, s["name"].port)
    ports = {k: free_port("127.0.0.1") for k in s}
    dest = {"allowed": ("127.0.0.1", s["allowed"].port),
            "refused_address": ("127.0.0.4", s["allowed"].port),
            "refused_port": ("127.0.0.2", s["refused_port"].port),
            "range": ("127.0.0.3", s["range"].port),
            "name": ("localhost", s["name"].port),
            "name_refused": ("localhost", s["name_refused"].port)}
    routes = [route(ports[k], *dest[k]) for k in s]
    t = tunnel(routes=routes, reverse_proxy=False)
    # The tunnel's own probe destination is allowed too.
    rp = t.start_reverse_proxy(extra=["--allow", "%s,127.0.0.1:%d" % (
        rules, t.probe_echo.port)])
    ep = t.entry_point
    t.wait_ready()
    assert "destinations allowed: " in rp.log()

    echoes(ports["allowed"])
    echoes(ports["range"])
    echoes(ports["name"])
    for case in ("refused_address", "refused_port", "name_refused"):
        refused_quickly(ports[case])
        host, port = dest[case]
        ep.wait_log("cannot open: destination not allowed by the reverse-proxy: %s:%d"
                    % (host, port))
        line = log_line(rp, "-> %s:%d: refused: " % (host, port))
        assert "source as the entry-point claims it" in line, line
        assert "--allow 127.0.0.1:%d," % s["allowed"].port in line, line
        assert s[case].accepted == 0, "%s: the refused destination was dialled" % case
    # Refused opens cost the tunnel nothing.
    echoes(ports["allowed"])
    assert t.probe()


def test_default_refuses_link_local_at_once(tunnel):
    listen = free_port("127.0.0.1")
    t = tunnel(routes=[route(listen, "169.254.169.254", 80)])
    assert "no --allow: any destination the entry-points name" in t.reverse_proxy.log()
    refused_quickly(listen)
    t.entry_point.wait_log("destination not allowed by the reverse-proxy: "
                           "169.254.169.254:80")
    line = log_line(t.reverse_proxy, "-> 169.254.169.254:80: refused")
    assert "default: any destination but link-local" in line, line
    assert t.probe(), "ordinary destinations are still allowed"


@pytest.mark.parametrize("rules, message", [
    ("10.0.0.0/33", "'10.0.0.0/33': prefix longer than 32"),
    ("127.0.0.1:0", "127.0.0.1:0"),
    ("", "empty"),
])
def test_malformed_allow_exits_2(keys, rules, message):
    r = subprocess.run([bin_path("reverse-proxy"), "-c", keys.cert, "-a", keys.priv,
                        "--allow", rules], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r
    assert "--allow" in r.stderr and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_reload_swaps_the_list_and_a_broken_file_changes_nothing(tunnel, echo_server,
                                                                 tmp_path):
    first, second = echo_server("127.0.0.1"), echo_server("127.0.0.1")
    conf = tmp_path / "reverse-proxy.conf"
    conf.write_text("# destinations\nallow = 127.0.0.1:%d\n" % first.port)
    a, b = free_port("127.0.0.1"), free_port("127.0.0.1")
    t = tunnel(routes=[route(a, "127.0.0.1", first.port), route(b, "127.0.0.1", second.port)],
               rp_args=["--config", str(conf)], ready=False)
    rp = t.reverse_proxy
    rp.wait_log("connected (group 0)")
    rp.wait_log("destinations allowed: 127.0.0.1:%d" % first.port)
    echoes(a)
    refused_quickly(b)

    conf.write_text("allow = 127.0.0.1:%d\n" % second.port)
    mark = len(rp.log())
    os.kill(rp.pid, signal.SIGHUP)
    line = log_line(rp, "reload: allow-list changed", since=mark)
    assert "key SHA256:" in line, line
    echoes(b)
    refused_quickly(a)
    assert first.accepted == 1, "the old rule still let a connection through"

    conf.write_text("# broken\n\nallow = 127.0.0.1:%d,10.0.0.0/33\n" % first.port)
    mark = len(rp.log())
    os.kill(rp.pid, signal.SIGHUP)
    line = log_line(rp, "reload failed", since=mark)
    assert "%s:3: allow: '10.0.0.0/33': prefix longer than 32" % conf in line, line
    assert "still running the previous configuration" in line, line
    assert rp.alive()
    echoes(b)
    refused_quickly(a)
