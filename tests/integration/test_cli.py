"""The command line of each daemon: help, version, errors, configuration files.

Exit status: 0 success, 2 usage or configuration error with one line on stderr naming the bad
flag, value or file, 1 runtime failure.
"""

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import time

import pytest

from conftest import REPO, bin_path, free_port, pseudo_random, round_trip, KiB, SLOW

DAEMONS = ["relay-server", "entry-point", "reverse-proxy"]


def run(program, *args, timeout=10):
    """Run a program to completion (killed at the timeout: then the test fails)."""
    return subprocess.run([bin_path(program)] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout * SLOW, stdin=subprocess.DEVNULL)


def one_line(p):
    """The single line of stderr of a failed run."""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, "expected one line on stderr, got:\n%s" % p.stderr
    return lines[0]


def valid_args(program, keys):
    """Arguments with which program would start (files, loopback, free ports)."""
    if program == "relay-server":
        return ["-p", free_port("127.0.0.1"), "--host", "127.0.0.1", "-c", keys.cert,
                "-k", keys.key, "-a", keys.pub]
    args = ["-s", "127.0.0.1:%d" % free_port("127.0.0.1"), "-c", keys.cert, "-a", keys.priv]
    if program == "entry-point":
        args += ["-r", "127.0.0.1:%d:%d" % (free_port("127.0.0.1"), free_port("127.0.0.1"))]
    return args



def _built_from():
    """What `git describe` says of this checkout (without -dirty), as the Makefile passes
    it to --version; None outside a git checkout."""
    try:
        p = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--abbrev=12"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None


BUILT_FROM = _built_from()

@pytest.mark.parametrize("program", DAEMONS)
def test_help_and_version(program):
    for flag in ("--help", "-h"):
        p = run(program, flag)
        assert p.returncode == 0, p.stderr
        assert "usage" in p.stdout.lower()
        assert "--config" in p.stdout
    for flag in ("--version", "-V"):
        p = run(program, flag)
        assert p.returncode == 0, p.stderr
        # The version and the commit it was built from, then the libraries it runs with.
        m = re.match(r"%s \d+\.\d+\.\d+ \(commit (\S+)\)\n" % program, p.stdout)
        assert m, p.stdout
        if BUILT_FROM is not None:
            assert m.group(1).replace("-dirty", "") == BUILT_FROM, (m.group(1), BUILT_FROM)
        assert re.search(r"\nOpenSSL 3\.\S+ .*, libevent 2\.1\.\S+, libsodium \d", p.stdout), \
            p.stdout


@pytest.mark.parametrize("program", DAEMONS)
def test_unknown_flag(program):
    p = run(program, "--no-such-flag")
    assert p.returncode == 2
    assert "--no-such-flag" in one_line(p)


def test_relay_bad_port():
    for value in ("abc", "0", "65536", "-1"):
        p = run("relay-server", "-p", value)
        assert p.returncode == 2, "-p %s: exit %d" % (value, p.returncode)
        line = one_line(p)
        assert "--port" in line and value in line, line


@pytest.mark.parametrize("program", ["entry-point", "reverse-proxy"])
def test_client_bad_relay_port(program, keys):
    args = valid_args(program, keys)
    for value in ("127.0.0.1:abc", "127.0.0.1:70000", "127.0.0.1"):
        args[args.index("-s") + 1] = value
        p = run(program, *args)
        assert p.returncode == 2, "-s %s: exit %d" % (value, p.returncode)
        assert "--server-address" in one_line(p)


def test_entry_point_needs_routes(keys):
    args = valid_args("entry-point", keys)
    i = args.index("-r")
    del args[i:i + 2]
    p = run("entry-point", *args)
    assert p.returncode == 2
    assert "--routes" in one_line(p)


@pytest.mark.parametrize("route", ["abc", "1:2:3:4:5", "70000:22", "8080:", "8080:host:0",
                                   "[::1:8080:22", "999.1.1.1:8080:22"])
def test_entry_point_bad_route(route, keys):
    args = valid_args("entry-point", keys)
    args[args.index("-r") + 1] = route
    p = run("entry-point", *args)
    assert p.returncode == 2, "route %r: exit %d" % (route, p.returncode)
    assert route in one_line(p)


@pytest.mark.parametrize("program,flag", [
    ("relay-server", "-c"), ("relay-server", "-k"), ("relay-server", "-a"),
    ("entry-point", "-c"), ("entry-point", "-a"),
    ("reverse-proxy", "-c"), ("reverse-proxy", "-a"),
])
def test_missing_or_bad_key_file(program, flag, keys, tmp_path):
    """A missing file, or one that holds no key or certificate, stops the start, naming it."""
    missing = tmp_path / "no-such-dir" / "missing.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN NOTHING-----\nbm90IGEga2V5\n-----END NOTHING-----\n")
    garbage.chmod(0o600)
    for bad in (missing, garbage):
        args = valid_args(program, keys)
        args[args.index(flag) + 1] = bad
        p = run(program, *args)
        assert p.returncode in (1, 2), "%s %s: exit %d" % (flag, bad.name, p.returncode)
        assert str(bad) in p.stderr
        if p.returncode == 2:
            one_line(p)


@pytest.mark.parametrize("program", ["relay-server", "entry-point"])
def test_port_in_use(program, keys):
    """A listen port already taken: exit 1, one line naming the address and the reason."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = valid_args(program, keys)
        if program == "relay-server":
            args[args.index("-p") + 1] = port
        else:
            args[args.index("-r") + 1] = "127.0.0.1:%d:22" % port
        p = run(program, *args)
    assert p.returncode == 1
    line = one_line(p)
    assert "127.0.0.1:%d" % port in line and "in use" in line, line


def test_config_files_run_a_tunnel(tmp_path, keys, start_daemon, echo_server):
    """Relay, reverse-proxy and entry-point each configured by --config only."""
    echo = echo_server()
    relay_port = free_port("127.0.0.1")
    port = free_port("127.0.0.1")
    route = "127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)
    relay_conf = tmp_path / "relay.conf"
    relay_conf.write_text(
        "# relay on loopback\n"
        "port = %d\n"
        "host = 127.0.0.1\n"
        "\n"
        "server-cert = %s\nserver-key = %s\nauth-public-key = %s\n"
        % (relay_port, keys.cert, keys.key, keys.pub))
    client_conf = ("server-address = 127.0.0.1:%d\nserver-cert = %s\n"
                   "auth-private-key = %s\ngroup-id = 7\n" % (relay_port, keys.cert, keys.priv))
    rp_conf = tmp_path / "reverse-proxy.conf"
    rp_conf.write_text(client_conf)
    ep_conf = tmp_path / "entry-point.conf"
    ep_conf.write_text(client_conf + "routes = %s\n# the end\n" % route)

    relay = start_daemon("relay-server", ["--config", relay_conf])
    relay.wait_log("listening on 127.0.0.1:%d" % relay_port)
    rp = start_daemon("reverse-proxy", ["--config", rp_conf])
    rp.wait_log("connected (group 7)")
    ep = start_daemon("entry-point", ["--config", ep_conf])
    ep.wait_log("route '%s' listening on 127.0.0.1:%d" % (route, port))
    ep.wait_log("connected (group 7)")

    payload = pseudo_random("config", 32 * KiB)
    for _ in range(50):  # the first OPEN can race the reverse-proxy's first channel
        try:
            assert round_trip("127.0.0.1", port, payload, timeout=5 * SLOW) == payload
            break
        except (OSError, EOFError, TimeoutError):
            continue
    else:
        pytest.fail("no round trip through a tunnel configured by files")


def test_command_line_wins_over_config(tmp_path, keys, start_daemon):
    file_port = free_port("127.0.0.1")
    flag_port = free_port("127.0.0.1")
    conf = tmp_path / "relay.conf"
    conf.write_text("port = %d\nhost = 127.0.0.1\nserver-cert = %s\nserver-key = %s\n"
                    "auth-public-key = %s\n" % (file_port, keys.cert, keys.key, keys.pub))
    relay = start_daemon("relay-server", ["--config", conf, "-p", flag_port])
    relay.wait_log("listening on 127.0.0.1:%d" % flag_port)
    assert "listening on 127.0.0.1:%d" % file_port not in relay.log()


@pytest.mark.parametrize("program", DAEMONS)
def test_config_unknown_key(program, tmp_path, keys):
    conf = tmp_path / "bad.conf"
    conf.write_text("# a comment\n\nno-such-option = 1\n")
    p = run(program, "--config", conf, *valid_args(program, keys))
    assert p.returncode == 2
    assert "%s:3" % conf in one_line(p)


@pytest.mark.parametrize("program", DAEMONS)
def test_config_file_missing(program, tmp_path, keys):
    conf = tmp_path / "nowhere.conf"
    p = run(program, "--config", conf, *valid_args(program, keys))
    assert p.returncode == 2
    assert str(conf) in one_line(p)


def test_quiet_relay_logs_nothing_routine(tmp_path, keys, start_daemon):
    """-q: only warnings and errors; a start, a stray connection and a stop are routine."""
    port = free_port("127.0.0.1")
    relay = start_daemon("relay-server", ["-q", "-p", port, "--host", "127.0.0.1",
                                          "-c", keys.cert, "-k", keys.key, "-a", keys.pub])
    deadline = time.monotonic() + 10 * SLOW
    while True:  # poll-connect until it listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and relay.alive(), "relay never listened"
            time.sleep(0.02)
    assert relay.stop() == 0
    assert relay.log() == "", "-q relay logged:\n%s" % relay.log()


@pytest.mark.parametrize("program", DAEMONS)
def test_sigint_exits_0(program, keys, start_daemon):
    d = start_daemon(program, valid_args(program, keys))
    d.wait_log(":")  # it has started and said something
    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(10 * SLOW) == 0


def nofile_limits(pid):
    """(soft, hard) open-file limit of a running process, from /proc."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    raise AssertionError("no open-file limit in /proc/%d/limits" % pid)


@contextlib.contextmanager
def started_with_nofile(args, soft, hard, stderr=subprocess.DEVNULL):
    """A program started with the open-file limit (soft, hard); must exit 0 on SIGTERM."""
    p = subprocess.Popen(
        [str(a) for a in args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=stderr, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))
    try:
        yield p
        p.send_signal(signal.SIGTERM)
        assert p.wait(10 * SLOW) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if p.stderr is not None:
            p.stderr.close()


@pytest.mark.parametrize("program", DAEMONS)
def test_daemons_raise_the_open_file_limit(program, keys):
    """The soft limit (often 1,024) goes up to the hard one: every connection is a descriptor."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("hard open-file limit %d leaves nothing to raise" % hard)
    with started_with_nofile([bin_path(program)] + valid_args(program, keys), 256, hard) as p:
        deadline = time.monotonic() + 10 * SLOW
        while True:
            soft_now, hard_now = nofile_limits(p.pid)
            if soft_now == hard_now:
                break
            assert p.poll() is None, "%s exited %s" % (program, p.returncode)
            assert time.monotonic() < deadline, \
                "%s kept the open-file limit at %s (hard %s)" % (program, soft_now, hard_now)
            time.sleep(0.02)


def limits_line(p):
    """The relay's "limits:" line, which follows its "listening on" lines."""
    for _ in range(8):
        line = p.stderr.readline()
        if "limits:" in line or not line:
            return line
    return ""


def test_relay_warns_when_max_channels_exceed_the_open_file_limit(keys):
    args = [bin_path("relay-server"), "--max-channels", "5000"] + \
        valid_args("relay-server", keys)
    with started_with_nofile(args, 512, 512, stderr=subprocess.PIPE) as p:
        line = limits_line(p)
        assert "limits: --max-channels 5000 (given), --max-handshakes 256 (128 from one " \
            "address), from the open-file limit 512" in line, line
        line = p.stderr.readline()
        assert "--max-channels 5000 and --max-handshakes 256 do not fit the open-file " \
            "limit 512" in line, line


def test_relay_derives_its_limits_from_the_open_file_limit(keys):
    """With 20,000 descriptors and no flags: 312 handshakes (156 from one address) and the
    rest for authenticated channels, less the relay's own."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 20000 and os.geteuid() != 0:
        pytest.skip("hard open-file limit %d is below 20,000" % hard)
    args = [bin_path("relay-server"), "--workers", "2"] + valid_args("relay-server", keys)
    with started_with_nofile(args, 20000, 20000, stderr=subprocess.PIPE) as p:
        line = limits_line(p)
        assert "limits: --max-channels 19648, --max-handshakes 312 (156 from one address), " \
            "from the open-file limit 20000 (40 kept for the relay itself)" in line, line