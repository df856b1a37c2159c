"""SIGHUP makes the entry-point read its options again: the routes (from the --config file), the
ed25519 key and the pinned certificate.

Every test runs a relay and a reverse-proxy, and an entry-point whose routes are in its config
file (`routes = ...`), not on the command line (where they would win over the file).  A test
rewrites the file, sends SIGHUP and waits for the one line the reload logs:

    reload: routes +1 -0 (added 'R'), key SHA256:... (unchanged), certificate FILE
    reload failed: WHY; still running the previous configuration

A route that stays keeps its listener and its connections; one whose destination changes keeps
its port; a removed route stops listening at once while its connections finish; a reload that fails anywhere (the file, a route, a port, the
key) changes nothing, and the listeners it had opened are closed again.
"""

import re
import shutil
import signal
import socket
import threading
import time

import pytest

from conftest import (Keys, SLOW, connect, free_port, pseudo_random, recv_exactly, round_trip,
                      run_gen_cert, sha256, KiB, MiB)

RELOADED = re.compile(r"reload: (.*), key (SHA256:\S+) \((new|unchanged)\), certificate (\S+)")
REFUSED = re.compile(r"reload failed: (.*); still running the previous configuration")


class Routes:
    """An echo server and a route to it on a free loopback port (source filter 127.0.0.1, so
    the route listens on 127.0.0.1 only)."""

    def __init__(self, echo_server):
        self.echo = echo_server()

    def new(self):
        port = free_port("127.0.0.1")
        return "127.0.0.1:%d:127.0.0.1:%d" % (port, self.echo.port), port


def write_config(path, routes, *more_lines):
    path.write_text("# entry-point, reloaded on SIGHUP\nroutes = %s\n%s"
                    % (",".join(routes), "".join(l + "\n" for l in more_lines)))


def start_entry_point(t, start_daemon, conf, routes, key=None):
    """An entry-point of tunnel t configured by conf (routes in the file); waits until every
    route listens and the first channel is up."""
    ep = start_daemon("entry-point", t.client_args(key=key) + ["--config", conf])
    for r in routes:
        ep.wait_log("route '%s' listening on" % r)
    ep.wait_log("connected (group 0)")
    return ep


def hup(ep, pattern):
    """SIGHUP ep and wait for pattern in what it logs from then on; returns the match."""
    since = len(ep.log())
    ep.proc.send_signal(signal.SIGHUP)
    ep.wait_log("hangup: reloading", since=since)
    m = ep.wait_log(pattern, since=since)
    reload_lines = [l for l in ep.log()[since:].splitlines() if "reload" in l]
    assert len(reload_lines) == 2, reload_lines   # "hangup: reloading" and the outcome
    return m


def echo_works(port, seed, size=16 * KiB):
    payload = pseudo_random(seed, size)
    return round_trip("127.0.0.1", port, payload, timeout=10 * SLOW) == payload


def assert_refused(port, within=1.0):
    """Connecting to 127.0.0.1:port is refused within `within` seconds."""
    deadline = time.monotonic() + within * SLOW
    while True:
        try:
            connect("127.0.0.1", port, timeout=1).close()
        except ConnectionRefusedError:
            return
        if time.monotonic() > deadline:
            pytest.fail("127.0.0.1:%d still accepts connections" % port)
        time.sleep(0.02)


@pytest.fixture
def routes(echo_server):
    return Routes(echo_server)


def test_added_route_serves_and_kept_route_keeps_its_connections(tunnel, start_daemon, routes,
                                                                 tmp_path, keys):
    t = tunnel(entry_point=False)
    conf = tmp_path / "entry-point.conf"
    kept, kept_port = routes.new()
    write_config(conf, [kept])
    ep = start_entry_point(t, start_daemon, conf, [kept])
    assert echo_works(kept_port, "before")

    # A connection on the route that stays, open across the reload.
    held = connect("127.0.0.1", kept_port, timeout=10 * SLOW)
    held.sendall(b"before the reload\n")
    assert recv_exactly(held, 18, 10 * SLOW) == b"before the reload\n"

    added, added_port = routes.new()
    write_config(conf, [kept, added])
    m = hup(ep, RELOADED)
    assert m.group(1) == "routes +1 -0 (added '%s')" % added, m.group(0)
    assert m.group(3) == "unchanged" and m.group(4) == str(keys.cert), m.group(0)
    ep.wait_log("route '%s' listening on 127.0.0.1:%d" % (added, added_port))
    assert echo_works(added_port, "added route", 256 * KiB)

    held.sendall(b"after the reload\n")
    assert recv_exactly(held, 17, 10 * SLOW) == b"after the reload\n"
    held.close()
    assert echo_works(kept_port, "after")
    assert ep.log().count("route '%s' listening on" % kept) == 1, "the kept route was reopened"

    # The same file again: nothing to do.
    m = hup(ep, RELOADED)
    assert m.group(1) == "nothing changed in routes", m.group(0)


def test_removed_route_stops_listening_while_its_connection_completes(tunnel, start_daemon,
                                                                      routes, tmp_path):
    t = tunnel(entry_point=False)
    conf = tmp_path / "entry-point.conf"
    doomed, doomed_port = routes.new()
    other, other_port = routes.new()
    write_config(conf, [doomed, other])
    ep = start_entry_point(t, start_daemon, conf, [doomed, other])

    # 4 MiB through the doomed route: the first MiB before the reload, the rest after it.
    payload = pseudo_random("in flight", 4 * MiB)
    s = connect("127.0.0.1", doomed_port, timeout=10 * SLOW)
    w = s.dup()                         # the sender's own timeout
    w.settimeout(20 * SLOW)
    reloaded = threading.Event()
    sent = []

    def send():
        try:
            w.sendall(payload[:MiB])
            if reloaded.wait(15 * SLOW):
                w.sendall(payload[MiB:])
                w.shutdown(socket.SHUT_WR)
                sent.append(True)
        except OSError as e:
            sent.append(e)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        first = recv_exactly(s, 256 * KiB, 10 * SLOW)   # the transfer is under way

        write_config(conf, [other])
        m = hup(ep, RELOADED)
        assert m.group(1) == "routes +0 -1 (removed '%s')" % doomed, m.group(0)
        assert_refused(doomed_port)
        reloaded.set()

        rest = recv_exactly(s, len(payload) - len(first), 20 * SLOW)
        s.settimeout(10 * SLOW)
        assert s.recv(1) == b"", "more than was sent came back"
    finally:
        reloaded.set()
        sender.join(20 * SLOW)
        w.close()
        s.close()
    assert sent == [True], sent
    assert sha256(first + rest) == sha256(payload), "the echo came back altered"
    assert echo_works(other_port, "the other route")


def test_changed_destination_keeps_the_port(tunnel, start_daemon, routes, echo_server,
                                            tmp_path):
    """Same listen address, new destination: the listener stays (the port never stops
    accepting), connections already there keep their destination, new ones get the new."""
    t = tunnel(entry_point=False)
    conf = tmp_path / "entry-point.conf"
    route, port = routes.new()
    write_config(conf, [route])
    ep = start_entry_point(t, start_daemon, conf, [route])
    held = connect("127.0.0.1", port, timeout=10 * SLOW)
    held.sendall(b"old\n")
    assert recv_exactly(held, 4, 10 * SLOW) == b"old\n"

    other = echo_server()
    changed = "127.0.0.1:%d:127.0.0.1:%d" % (port, other.port)
    write_config(conf, [changed])
    m = hup(ep, RELOADED)
    assert m.group(1) == "routes +0 -0 ~1 (changed '%s' to '%s')" % (route, changed), m.group(0)
    assert echo_works(port, "to the other echo server")
    assert (routes.echo.accepted, other.accepted) == (1, 1)
    held.sendall(b"still old\n")
    assert recv_exactly(held, 10, 10 * SLOW) == b"still old\n"
    held.close()
    assert ep.log().count("listening on 127.0.0.1:%d" % port) == 1


@pytest.mark.parametrize("broken", ["malformed line", "bad route", "port in use"])
def test_broken_config_changes_nothing(broken, tunnel, start_daemon, routes, tmp_path):
    t = tunnel(entry_point=False)
    conf = tmp_path / "entry-point.conf"
    old, old_port = routes.new()
    write_config(conf, [old])
    ep = start_entry_point(t, start_daemon, conf, [old])

    opened, opened_port = routes.new()      # a good new route, before the broken part
    held = None
    if broken == "malformed line":
        write_config(conf, [old, opened], "pool-min = 4", "this line has no equals sign")
        expected = "%s:4: expected 'option = value', got 'this line has no equals sign'" % conf
    elif broken == "bad route":
        write_config(conf, [old, opened, "127.0.0.1:99999:5000"])
        expected = ("%s:2: routes: route '127.0.0.1:99999:5000': listen port '99999' is "
                    "not a port number (1-65535)" % conf)
    else:
        busy, busy_port = routes.new()
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.bind(("127.0.0.1", busy_port))
        held.listen(1)
        write_config(conf, [old, opened, busy])
        expected = "route '%s': cannot listen on 127.0.0.1:%d: Address already in use" % (
            busy, busy_port)
    try:
        m = hup(ep, REFUSED)
        assert m.group(1) == expected, m.group(0)
        # The listener this attempt had opened is closed again; the old route serves.
        assert_refused(opened_port)
        assert echo_works(old_port, "old route after a refused reload")
        assert ep.alive()
    finally:
        if held is not None:
            held.close()

    # Fixed: the next reload takes it.
    write_config(conf, [old, opened])
    m = hup(ep, RELOADED)
    assert m.group(1) == "routes +1 -0 (added '%s')" % opened, m.group(0)
    assert echo_works(opened_port, "after the fix")
    assert echo_works(old_port, "old route after the fix")


@pytest.fixture
def two_keys(tmp_path, keys):
    """The relay's key directory with two authorized keys: the session's and a new one made
    here (comment "new-key"), one OpenSSH line each; and the new key's own directory."""
    new = tmp_path / "new-key"
    run_gen_cert("ed25519", "-o", new, "-C", "new-key")
    d = tmp_path / "relay-keys"
    d.mkdir()
    for f in ("server.crt", "server.key", "auth"):
        shutil.copy(keys.dir / f, d / f)
    (d / "auth").chmod(0o600)
    (d / "auth.pub").write_text(keys.pub.read_text() + (new / "auth.pub").read_text())
    return Keys(d), Keys(new)


def hold_connections(port, n):
    """n echo connections open at once (each dialled channel authenticates anew)."""
    socks = [connect("127.0.0.1", port, timeout=10 * SLOW) for _ in range(n)]
    try:
        for i, s in enumerate(socks):
            s.sendall(b"%d\n" % i)
        for i, s in enumerate(socks):
            assert recv_exactly(s, len(b"%d\n" % i), 10 * SLOW) == b"%d\n" % i
    finally:
        for s in socks:
            s.close()


def test_key_reload(tunnel, start_daemon, routes, tmp_path, keys, two_keys):
    relay_keys, new = two_keys
    t = tunnel(keys=relay_keys, relay_args=["-v"], entry_point=False)
    key = tmp_path / "ep-auth"          # the file the entry-point's -a names
    shutil.copy(keys.priv, key)
    key.chmod(0o600)
    conf = tmp_path / "entry-point.conf"
    route, port = routes.new()
    write_config(conf, [route])
    ep = start_entry_point(t, start_daemon, conf, [route], key=key)
    authenticated = re.compile(r"entry-point authenticated, group 0, key (SHA256:\S+) \((\S+)\)")
    old_fp = t.relay.wait_log(authenticated).group(1)

    # The new key in the same file: the reload names it, and new channels sign with it.
    shutil.copy(new.priv, key)
    m = hup(ep, RELOADED)
    assert m.group(1) == "nothing changed in routes" and m.group(3) == "new", m.group(0)
    new_fp = m.group(2)
    assert new_fp != old_fp
    since = len(t.relay.log())
    hold_connections(port, 8)           # more than the pool holds: new channels are dialled
    m = t.relay.wait_log(re.compile(r"entry-point authenticated, group 0, key %s \(new-key\)"
                                    % re.escape(new_fp)), since=since)
    assert echo_works(port, "with the new key")

    # A key file that does not parse: refused, the new key stays in force.
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    m = hup(ep, REFUSED)
    assert m.group(1).startswith("--auth-private-key: "), m.group(0)
    assert str(key) in m.group(1), m.group(0)
    since = len(t.relay.log())
    hold_connections(port, 8)
    assert echo_works(port, "after the refused key")
    used = {fp for fp, _ in authenticated.findall(t.relay.log()[since:])}
    assert used <= {new_fp}, "channels authenticated with %s after the refused reload" % used
