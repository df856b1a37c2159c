"""Metrics: --metrics on each daemon serves Prometheus text at /metrics.

- A tunnel whose three daemons run with --metrics 0 (the kernel picks the port, the log line
  "metrics: serving http://127.0.0.1:PORT/metrics" says which).  N connections of M bytes,
  each echoed: connections_total grows by N on each daemon (by route on the entry-point, by
  group at the relay), bytes_total by N*M each way at the clients and by N*M plus the framing
  at the relay; the connections are no longer active once they are over.
- A reverse-proxy with a key the relay does not know: both count the refusal under
  reason="unknown_key", the relay also as an unauthenticated close.
- SIGHUP: reloads_total{result="ok"} grows; a changed --metrics is named in a warning.
- The relay restarts: both clients count reconnects.
- GET and HEAD /metrics answer 200 text/plain; version=0.0.4; another path 404, another
  method 405.  Each daemon's output passes `promtool check metrics` (skipped without it).
- A bad --metrics value exits 2 with one line naming the flag and the value; an address in
  use exits 1.
"""

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import bin_path, free_port, make_keys, pseudo_random, round_trip, KiB, SLOW

SERVING = re.compile(r"metrics: serving http://127\.0\.0\.1:(\d+)/metrics")
SAMPLE = re.compile(r'^(\w+)(?:\{(\w+)="((?:[^"\\]|\\.)*)"\})? (\S+)$')
N, M = 5, 40 * KiB
PREFIX = "tcp_reverse_proxy_"


def metrics_port(daemon):
    return int(daemon.wait_log(SERVING).group(1))


def raw_request(port, text):
    """Everything the server sends back to a request written by hand (it closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW) as s:
        s.sendall(text.encode())
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                return out
            out += d


def request(port, method="GET", path="/metrics"):
    """(status, headers, body text) of one request."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5 * SLOW)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        c.close()


def scrape(daemon):
    """{(name without the prefix, label value or None): value} of a daemon's /metrics."""
    status, headers, text = request(metrics_port(daemon))
    assert status == 200, text
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    values, gauges = {}, set()
    for line in text.splitlines():
        t = re.match(r"^# TYPE (\w+) gauge$", line)
        if t:
            gauges.add(t.group(1))
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        assert m.group(1).startswith(PREFIX), line
        # Every gauge here counts something (channels, connections): never below 0, which a
        # path that decrements what it never counted would show.
        assert m.group(1) not in gauges or float(m.group(4)) >= 0, line
        values[(m.group(1)[len(PREFIX):], m.group(3))] = float(m.group(4))
    return values


def delta(after, before, name, label=None):
    return after.get((name, label), 0) - before.get((name, label), 0)


def wait_for(daemon, name, label, want, timeout=5.0):
    """Scrape until the series is want (a connection's end is counted as it is freed)."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        got = scrape(daemon).get((name, label), 0)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def promtool_check(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), p.stdout + p.stderr


@pytest.fixture
def metered(tunnel, echo_server, tmp_path):
    """A tunnel with --metrics 0 on each daemon (the relay's and the entry-point's through a
    --config file, to reload it later), and a route to an echo server."""
    echo = echo_server()
    port = free_port("127.0.0.1")
    route = "127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)
    relay_conf = tmp_path / "relay.conf"
    relay_conf.write_text("metrics = 0\n")
    entry_conf = tmp_path / "entry.conf"
    entry_conf.write_text("metrics = 0\n")
    t = tunnel([route], relay_args=["--config", relay_conf], rp_args=["--metrics", "0"],
               ep_args=["--config", entry_conf])
    t.route, t.route_port = route, port
    t.relay_conf, t.entry_conf = relay_conf, entry_conf
    return t


def test_counters_match_the_traffic(metered):
    t = metered
    daemons = (t.relay, t.reverse_proxy, t.entry_point)
    before = [scrape(d) for d in daemons]
    payloads = [pseudo_random("metrics %d" % i, M) for i in range(N)]
    for p in payloads:
        assert round_trip("127.0.0.1", t.route_port, p, timeout=10 * SLOW) == p
    relay, rp, ep = after = [scrape(d) for d in daemons]
    r0, p0, e0 = before

    assert delta(ep, e0, "connections_total", t.route) == N
    assert delta(rp, p0, "connections_total") == N
    assert delta(relay, r0, "connections_total", "0") == N
    for end, end0 in ((ep, e0), (rp, p0)):
        assert delta(end, end0, "bytes_total", "upstream") == N * M
        assert delta(end, end0, "bytes_total", "downstream") == N * M
        assert delta(end, end0, "open_results_total", "ok") == N
    # The relay counts frames as they pass: each DATA frame's 3-byte header, OPEN one way
    # and OPEN_RESULT the other (FIN is the relay's own).
    for direction in ("upstream", "downstream"):
        d = delta(relay, r0, "bytes_total", direction)
        assert N * M < d <= N * M + N * (330 + 3 * (M // 1024 + 1)), (direction, d)
    assert delta(ep, e0, "open_latency_seconds_count") == N
    assert ep[("channels", "idle")] >= 1 and rp[("channels", "idle")] >= 1
    assert relay[("handshakes_total", "full")] + relay[("handshakes_total", "resumed")] >= 2
    assert relay[("auth_results_total", "ok")] >= 2
    assert relay[("channels_accepted_total", None)] >= relay[("auth_results_total", "ok")]

    # Over: none is active any more, anywhere.
    assert wait_for(t.entry_point, "connections_active", t.route, 0) == 0
    assert wait_for(t.reverse_proxy, "connections_active", None, 0) == 0
    assert wait_for(t.relay, "connections_active", "0", 0) == 0
    assert wait_for(t.relay, "channels", "paired", 0) == 0


def test_refused_key_is_counted_by_reason(metered, tmp_path):
    t = metered
    stranger = make_keys(tmp_path / "stranger", x509=False)
    rp = t.start_reverse_proxy(key=stranger.priv, extra=["--metrics", "0"])
    rp.wait_log("refused authentication: public key not accepted")
    mine = scrape(rp)
    assert mine[("auth_results_total", "unknown_key")] >= 1
    assert mine[("auth_results_total", "ok")] == 0
    relay = scrape(t.relay)
    assert relay[("auth_results_total", "unknown_key")] >= 1
    assert relay[("unauthenticated_closed_total", "auth")] >= 1
    assert relay[("auth_results_total", "bad_signature")] == 0


def test_reload_is_counted_and_a_new_address_waits(metered):
    t = metered
    for daemon, conf in ((t.relay, t.relay_conf), (t.entry_point, t.entry_conf)):
        ok = scrape(daemon)[("reloads_total", "ok")]
        since = len(daemon.log())
        os.kill(daemon.pid, signal.SIGHUP)
        daemon.wait_log(re.compile(r"reload: "), since=since)
        assert wait_for(daemon, "reloads_total", "ok", ok + 1) == ok + 1
        assert "--metrics changed" not in daemon.log()[since:]
        conf.write_text("metrics = 127.0.0.1:%d\n" % free_port("127.0.0.1"))
        since = len(daemon.log())
        os.kill(daemon.pid, signal.SIGHUP)
        daemon.wait_log("--metrics changed: it takes effect at the next start",
                        since=since)
        # Still served where it was.
        assert scrape(daemon)[("reloads_total", "ok")] == ok + 2
        # Compared with what runs, not with the last reload: the same file again still
        # differs, and back to the address that runs does not (the relay compared with the
        # last reload's options once: a review reproduced it).
        for still_differs in (True, False):
            if not still_differs:
                conf.write_text("metrics = 0\n")
            since = len(daemon.log())
            os.kill(daemon.pid, signal.SIGHUP)
            daemon.wait_log(re.compile(r"reload: "), since=since)
            warned = "--metrics changed" in daemon.log()[since:]
            assert warned == still_differs, daemon.log()[since:]


def test_relay_restart_counts_reconnects(metered):
    t = metered
    before = [scrape(d)[("reconnects_total", None)] for d in (t.reverse_proxy, t.entry_point)]
    t.relay.stop()
    t.start_relay(name="relay-server-2")
    t.wait_ready()
    for d, b in zip((t.reverse_proxy, t.entry_point), before):
        deadline = time.monotonic() + 10 * SLOW
        while scrape(d)[("reconnects_total", None)] <= b:
            assert time.monotonic() < deadline, "%s counted no reconnect" % d.name
            time.sleep(0.1)


def test_http_answers_and_promtool(metered):
    for daemon in (metered.relay, metered.reverse_proxy, metered.entry_point):
        port = metrics_port(daemon)
        status, headers, text = request(port)
        assert status == 200
        assert "# TYPE tcp_reverse_proxy_connections_total counter" in text
        status, headers, body = request(port, "HEAD")
        assert status == 200 and body == ""
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert int(headers["Content-Length"]) > 1000
        # Nothing after the headers (http.client would not read a body of a HEAD).
        head = raw_request(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n"
                           "Connection: close\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n"), head[-200:]
        # Headers past 8 KiB: refused.
        assert raw_request(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nX: %s\r\n"
                           "Connection: close\r\n\r\n" % ("a" * 10000)).startswith(
                               b"HTTP/1.1 400")
        assert request(port, "GET", "/")[0] == 404
        assert request(port, "GET", "/metricsx")[0] == 404
        status, headers, _ = request(port, "POST")
        assert status == 405 and headers.get("Allow") == "GET, HEAD"
        assert request(port, "DELETE")[0] == 405
        if shutil.which("promtool") is None:
            continue
        promtool_check(text)
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian's prometheus package)")


def daemon_args(program, keys):
    if program == "relay-server":
        return ["-p", free_port("127.0.0.1"), "--host", "127.0.0.1", "-c", keys.cert,
                "-k", keys.key, "-a", keys.pub]
    args = ["-s", "127.0.0.1:%d" % free_port("127.0.0.1"), "-c", keys.cert, "-a", keys.priv]
    if program == "entry-point":
        args += ["-r", "%d:%d" % (free_port("127.0.0.1"), free_port("127.0.0.1"))]
    return args


def run(program, *args):
    return subprocess.run([bin_path(program)] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=10 * SLOW, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("program", ["relay-server", "entry-point", "reverse-proxy"])
def test_bad_value_exits_2_and_busy_address_1(program, keys):
    for bad in ("nine", "65536", "::1:9100", "localhost:9100", "127.0.0.1:", "[::1]9100"):
        p = run(program, *daemon_args(program, keys), "--metrics", bad)
        assert p.returncode == 2, (bad, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "--metrics" in lines[0] and bad in lines[0], p.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = run(program, *daemon_args(program, keys), "--metrics", port)
        assert p.returncode == 1, p.stderr
        assert "--metrics: cannot listen on 127.0.0.1:%d" % port in p.stderr, p.stderr


def silent_connections(port, n):
    """n non-blocking connections to port on 127.0.0.1 (connecting or connected)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    return socks


def scrape_soon(port, seconds):
    """A scrape answered 200 within seconds (connections may wait in the backlog); when."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            assert request(port)[0] == 200
            return time.monotonic()
        except OSError:
            assert time.monotonic() < deadline, "no answer within %.0f s" % seconds
            time.sleep(0.1)


def test_a_flood_of_scrapers_does_not_starve_the_tunnel(metered):
    """32 connections to the metrics port that send nothing and 32 that send half a request:
    at most 16 are open in the daemon at once (the rest wait in the backlog), the tunnel
    carries on, and once they are gone a scrape is answered."""
    t = metered
    port = metrics_port(t.entry_point)
    idle = []
    try:
        idle = silent_connections(port, 64)
        for s in idle[32:]:
            try:
                s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                pass
        payload = pseudo_random("flood", 256 * KiB)
        assert round_trip("127.0.0.1", t.route_port, payload, timeout=10 * SLOW) == payload
    finally:
        for s in idle:
            s.close()
    scrape_soon(port, 10 * SLOW)
