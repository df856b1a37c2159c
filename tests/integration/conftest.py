"""Shared fixtures for the integration tests.

The tests start the real binaries (relay-server, reverse-proxy, entry-point, gen-cert) from
TRP_BIN_DIR on loopback, with keys made by gen-cert for this test session, and talk to them
with plain sockets.  Everything here is bounded: every wait has a deadline, every server has a
connection limit, and every process a test starts is stopped by its PID when the test ends,
whether the test passed or not.

    TRP_BIN_DIR   absolute path of the binaries (default: build/linux/amd64 in this repo)
    TRP_SANITIZE  1 when the binaries are built with AddressSanitizer/UBSan (slower)
    TRP_RELAY_WORKERS  --workers for every relay the fixtures start (default: the relay's
                  own default, the number of cores); `make test` runs the suite with 1 and 2

The builds of other architectures (`make build`: build/linux/arm64/, build/linux/armhf/ beside
TRP_BIN_DIR) run under qemu-user: Platform(arch) says where a platform's programs are and how
to run them here, and tunnel(platforms=...) starts each program of a tunnel on its own one.

What the fixtures give a test:

    bin_path(name)         path of a program
    keys                   session key set: .dir .cert .key .pub .priv
    gen_cert(*args)        run gen-cert, return the completed process (asserts exit 0)
    free_port()            a TCP port free right now (dual-stack by default)
    start_daemon(...)      start a program as a Daemon (stopped at teardown)
    tunnel(...)            relay + reverse-proxy + entry-point, ready for traffic
    Platform(arch)         the programs of linux/arch, native or under qemu-user
    echo_server(...)       threaded TCP echo server (IPv4 or IPv6)
    sink_server(...)       accepts and never reads
    tcp_server(handler)    threaded TCP server running handler(conn) per connection
    http_server(...)       http.server on loopback serving a small page
"""

import functools
import hashlib
import http.server
import os
import platform
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("TRP_BIN_DIR") or REPO / "build" / "linux" / "amd64")
SANITIZE = os.environ.get("TRP_SANITIZE", "").strip().lower() in ("1", "yes", "true")
RELAY_WORKERS = os.environ.get("TRP_RELAY_WORKERS", "").strip()

# The sanitizer build is 2-3 times slower: deadlines are multiplied by SLOW.
SLOW = 3 if SANITIZE else 1

KiB = 1024
MiB = 1024 * 1024

SANITIZER_REPORT = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
    r"SUMMARY: (Address|Undefined|Leak)Sanitizer")


# For the long tests whose story does not depend on the relay's worker count: `make test` runs
# the suite twice (workers 1 and 2); these run in the second pass only.
run_once = pytest.mark.skipif(RELAY_WORKERS not in ("", "2"),
                              reason="run once, with two relay workers")


# For the tests that spend their time waiting on the protocol's own timers, with next to no
# CPU: `make test` runs them in a pytest of their own, beside the first pass (Makefile).
timer_bound = pytest.mark.timer_bound


def pytest_configure(config):
    config.addinivalue_line("markers", "timer_bound: waits on the protocol's timers, little CPU "
                            "(make test runs these beside the first pass)")


def open_fds(pid):
    """How many descriptors process pid holds."""
    return len(os.listdir("/proc/%d/fd" % pid))


def scaled(normal, sanitized):
    """The value to use for this build: normal, or sanitized under TRP_SANITIZE=1."""
    return sanitized if SANITIZE else normal


def bin_path(name):
    """Path of one of the programs under test."""
    return str(BIN_DIR / name)


# ---------------------------------------------------------------------------------------------
# Platforms: this machine's build (TRP_BIN_DIR) and the cross builds beside it


HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf"}.get(
    platform.machine(), platform.machine())
# Debian architecture -> (qemu-user emulator, ELF e_machine of its programs).
ARCHES = {"amd64": ("qemu-x86_64-static", 62), "arm64": ("qemu-aarch64-static", 183),
          "armhf": ("qemu-arm-static", 40)}


class Platform:
    """The programs of one linux/ARCH build and the command line that runs them here.

    The host's architecture is the build under test (TRP_BIN_DIR), run natively; another is
    the build of the same variant beside it (build/linux/arm64 next to build/linux/amd64, as
    `make build` writes them), run under its qemu-user emulator (no binfmt_misc needed).
    """

    def __init__(self, arch):
        self.arch = arch
        self.native = arch == HOST_ARCH
        emulator, self.elf_machine = ARCHES[arch]
        if self.native:
            self.bin_dir = BIN_DIR
            self.emulator = []
        else:
            variant = BIN_DIR.name[len(HOST_ARCH):] if BIN_DIR.name.startswith(HOST_ARCH) else ""
            self.bin_dir = BIN_DIR.parent / (arch + variant)
            self.emulator = [shutil.which(emulator) or emulator]

    def __repr__(self):
        return "linux/%s" % self.arch

    def path(self, program):
        return str(self.bin_dir / program)

    def argv(self, program, args=()):
        """The command line that runs program with args on this platform."""
        return self.emulator + [self.path(program)] + [str(a) for a in args]

    def missing(self, programs=("relay-server", "reverse-proxy", "entry-point", "gen-cert")):
        """Why this platform cannot run here (a sentence), or None."""
        if not self.native and shutil.which(ARCHES[self.arch][0]) is None:
            return "%s is not installed (make deps-cross installs qemu-user-static)" % (
                ARCHES[self.arch][0])
        absent = [p for p in programs if not os.access(self.path(p), os.X_OK)]
        if absent:
            what = ("no build in %s" % self.bin_dir if len(absent) == len(programs) else
                    "no %s in %s" % (", ".join(absent), self.bin_dir))
            return "%s (make build-linux-%s, after make deps-cross)" % (what, self.arch)
        return None


def has_ipv6_loopback():
    """True when ::1 can be bound on this machine."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bracket(host):
    """host as written before ':port' ([v6] in brackets)."""
    return "[%s]" % host if ":" in host else host


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = map(int, f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


_ports_given = set()


def _port_is_free(host, port):
    if host is None:
        if has_ipv6_loopback():
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            addr = ("::", port)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            addr = ("0.0.0.0", port)
    else:
        s = socket.socket(family_of(host), socket.SOCK_STREAM)
        addr = (host, port)
    try:
        s.bind(addr)
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(host=None):
    """A TCP port that is free right now, outside the ephemeral range.

    Outside the ephemeral range so that the tests' own outgoing connections (which take
    ephemeral ports) cannot grab it between this check and the daemon's bind; never the same
    port twice in one run.  With no host the port is checked on the dual-stack wildcard (free
    for IPv4 and IPv6, as a route without a source filter listens on [::]); with a host, on
    that address only.
    """
    lo, hi = _ephemeral_range()
    ranges = [(a, b) for a, b in ((10000, lo - 1), (hi + 1, 65000)) if b - a > 1000]
    if not ranges:
        ranges = [(1024, 65535)]
    rng = random.Random()
    # TRP_PORT_SLICE=k/n: only ports p with p % n == k, so that sessions running side by side
    # (tests/integration/run.sh) never pick the same one.
    k, n = 0, 1
    m = re.fullmatch(r"(\d+)/(\d+)", os.environ.get("TRP_PORT_SLICE", ""))
    if m and 0 <= int(m.group(1)) < int(m.group(2)):
        k, n = int(m.group(1)), int(m.group(2))
    for _ in range(5000):
        a, b = rng.choice(ranges)
        port = rng.randint(a, b)
        if port % n != k or port in _ports_given:
            continue
        if _port_is_free(host, port):
            _ports_given.add(port)
            return port
    raise RuntimeError("no free TCP port found")


# ---------------------------------------------------------------------------------------------
# Socket helpers


def connect(host, port, timeout=5.0, source=None):
    """A connected TCP socket to host:port (optionally bound to source address first)."""
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if source is not None:
            s.bind((source, 0))
        s.connect((host, port))
        return s
    except BaseException:
        s.close()
        raise


def recv_exactly(sock, n, timeout):
    """Read exactly n bytes before the deadline; raises on EOF, reset or timeout."""
    deadline = time.monotonic() + timeout
    parts = []
    got = 0
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("got %d of %d bytes before the deadline" % (got, n))
        sock.settimeout(left)
        chunk = sock.recv(min(n - got, 256 * KiB))
        if not chunk:
            raise EOFError("EOF after %d of %d bytes" % (got, n))
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def read_until_closed(sock, timeout, limit=64 * MiB):
    """Read until the peer closes (EOF or reset) or the deadline passes.

    Returns (data, how, elapsed): how is "eof", "reset" or "timeout"; elapsed is measured
    from the call.  Stops reading after limit bytes (how = "limit").
    """
    start = time.monotonic()
    deadline = start + timeout
    parts = []
    got = 0
    how = "timeout"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(256 * KiB)
        except socket.timeout:
            break
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            how = "reset"
            break
        if not chunk:
            how = "eof"
            break
        parts.append(chunk)
        got += len(chunk)
        if got >= limit:
            how = "limit"
            break
    return b"".join(parts), how, time.monotonic() - start


def round_trip(host, port, payload, timeout=5.0, source=None):
    """Send payload to an echo service through host:port and return what came back.

    Half-closes after sending, reads until EOF; raises on any failure.
    """
    with connect(host, port, timeout=timeout, source=source) as s:
        s.sendall(payload)
        echoed = recv_exactly(s, len(payload), timeout)
        s.shutdown(socket.SHUT_WR)
        rest, how, _ = read_until_closed(s, timeout)
        if rest or how != "eof":
            raise AssertionError("after the echo: %d more bytes, then %s" % (len(rest), how))
        return echoed


def pseudo_random(seed, size):
    """size deterministic pseudo-random bytes for seed."""
    return random.Random(seed).randbytes(size)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Daemons


class Daemon:
    """One program under test, started with subprocess.Popen, its output in a log file."""

    def __init__(self, program, args, log_path, name=None, env=None, argv=None):
        self.program = program
        self.extra_env = dict(env or {})
        self.args = [str(a) for a in args]
        # argv: the whole command line, in place of the built program and args (an
        # installed copy, or one run under a wrapper); it must exec the daemon in place.
        self.argv = [str(a) for a in argv] if argv else None
        self.log_path = Path(log_path)
        self.name = name or program
        self.proc = None
        self.returncode = None
        self.killed = False
        self.killed_by_test = False
        self.stopped_by_us = False
        self._log_file = None

    def __repr__(self):
        return "<Daemon %s pid %s>" % (self.name, self.pid)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def _argv(self):
        return self.argv or [bin_path(self.program)] + self.args

    @property
    def command(self):
        return " ".join(self._argv())

    def start(self):
        env = dict(os.environ)
        # The runner's own service manager and journal are not the daemons' (a test that
        # wants them gives its own, in env).
        env.pop("NOTIFY_SOCKET", None)
        env.pop("JOURNAL_STREAM", None)
        if SANITIZE:
            env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        env.update(self.extra_env)
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self._argv(),
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            env=env, start_new_session=True)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        """Everything the program wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=80):
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_log(self, pattern, timeout=10.0, since=0):
        """Wait until the log (from character offset since) matches pattern.

        pattern is a plain substring or a compiled regular expression.  Returns the match
        (the substring, or the re.Match).  Fails at the deadline or if the program exits.
        """
        timeout *= SLOW
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()[since:]
            if isinstance(pattern, str):
                if pattern in text:
                    return pattern
            else:
                m = pattern.search(text)
                if m:
                    return m
            if not self.alive():
                pytest.fail("%s exited (status %s) before logging %r\n--- log ---\n%s"
                            % (self.name, self.proc.returncode, pattern, self.log_tail()))
            if time.monotonic() > deadline:
                pytest.fail("%s did not log %r within %.1f s\n--- log ---\n%s"
                            % (self.name, pattern, timeout, self.log_tail()))
            time.sleep(0.02)

    def rss_kib(self):
        """Resident set size in KiB, from /proc/PID/status (VmRSS)."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS for pid %d" % self.pid)

    def stop(self, timeout=10.0):
        """SIGTERM, wait, then SIGKILL if it is still there.  Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.stopped_by_us = True
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait(10)
        self.returncode = self.proc.returncode
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        return self.returncode

    def kill(self, timeout=10.0):
        """SIGKILL, as a fault the test makes (not a failure at teardown); waits for it."""
        assert self.proc.poll() is None, "%s had exited (status %s) before the kill" % (
            self.name, self.proc.returncode)
        self.killed_by_test = True
        self.proc.kill()
        self.proc.wait(timeout)

    def problems(self):
        """What went wrong with this process, as seen after stop(): a list of strings."""
        found = []
        if self.killed_by_test:
            pass
        elif self.killed:
            found.append("%s did not exit within the timeout after SIGTERM (killed)"
                         % self.name)
        elif self.returncode not in (0, None):
            how = ("after SIGTERM" if self.stopped_by_us else "on its own, before the end "
                   "of the test")
            found.append("%s exited with status %s %s" % (self.name, self.returncode, how))
        if SANITIZER_REPORT.search(self.log()):
            found.append("%s: sanitizer report in its log" % self.name)
        return found


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Attach the logs of the test's daemons to the report of a failed phase."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        for d in getattr(item, "trp_daemons", []):
            rep.sections.append(("log of %s (pid %s): %s" % (d.name, d.pid, d.command),
                                 d.log_tail(120)))


@pytest.fixture
def start_daemon(request, tmp_path):
    """start_daemon(program, args, name=None, env=None, argv=None) -> started Daemon, stopped
    at teardown.

    env: extra environment variables for this program; argv: its whole command line, in
    place of the built program and args (see Daemon).

    At teardown every daemon is stopped (SIGTERM, wait, SIGKILL) in reverse order; a daemon
    that did not exit 0 on SIGTERM, died before the end, or left a sanitizer report fails the
    test there.
    """
    daemons = []
    request.node.trp_daemons = daemons
    counter = {}

    def start(program, args, name=None, env=None, argv=None):
        name = name or program
        counter[name] = counter.get(name, 0) + 1
        label = name if counter[name] == 1 else "%s-%d" % (name, counter[name])
        d = Daemon(program, args, tmp_path / ("%s.log" % label), name=label, env=env,
                   argv=argv)
        daemons.append(d)
        return d.start()

    yield start

    problems = []
    for d in reversed(daemons):
        d.stop()
        problems.extend(d.problems())
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


# ---------------------------------------------------------------------------------------------
# Keys


def run_gen_cert(*args, timeout=60):
    """Run gen-cert with args; assert it succeeded; return the CompletedProcess."""
    cmd = [bin_path("gen-cert")] + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout * SLOW)
    assert p.returncode == 0, "%s: exit %d\n%s%s" % (" ".join(cmd), p.returncode, p.stdout,
                                                     p.stderr)
    return p


class Keys:
    """A key set made by gen-cert in one directory."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.cert = self.dir / "server.crt"
        self.key = self.dir / "server.key"
        self.pub = self.dir / "auth.pub"
        self.priv = self.dir / "auth"


def make_keys(directory, x509_args=("--dns", "localhost", "--ip", "127.0.0.1,::1"),
              x509=True, ed25519=True):
    """Run gen-cert x509 and/or ed25519 into directory; return Keys for it."""
    if x509:
        run_gen_cert("x509", "-o", directory, *x509_args)
    if ed25519:
        run_gen_cert("ed25519", "-o", directory)
    return Keys(directory)


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    """The session's keys: a certificate for localhost, 127.0.0.1 and ::1; one ed25519 pair."""
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def gen_cert():
    return run_gen_cert


@pytest.fixture(name="free_port")
def free_port_fixture():
    return free_port


@pytest.fixture(name="bin_path")
def bin_path_fixture():
    return bin_path


# ---------------------------------------------------------------------------------------------
# Servers on loopback


class TcpServer:
    """A threaded TCP server on loopback: handler(conn, server) runs per connection.

    At most max_conns connections are served at once (more wait in the backlog).  close()
    stops accepting, closes every connection and joins the threads with a timeout.
    """

    def __init__(self, handler, host="127.0.0.1", max_conns=1024, rcvbuf=None):
        self.host = host
        self.handler = handler
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.conns = set()
        self.threads = []
        self.accepted = 0
        self.peers = []
        self.errors = []
        self.slots = threading.BoundedSemaphore(max_conns)
        self.sock = socket.socket(family_of(host), socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((host, 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.accept_thread.start()

    def _accept_loop(self):
        while not self.stopping.is_set():
            if not self.slots.acquire(timeout=0.1):
                continue
            released = False
            try:
                r, _, _ = select.select([self.sock], [], [], 0.1)
                if not r:
                    continue
                try:
                    conn, peer = self.sock.accept()
                except OSError:
                    continue
                with self.lock:
                    self.accepted += 1
                    self.peers.append(peer)
                    self.conns.add(conn)
                t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                with self.lock:
                    self.threads = [x for x in self.threads if x.is_alive()]
                    self.threads.append(t)
                released = True  # the connection thread releases the slot
                t.start()
            finally:
                if not released:
                    self.slots.release()

    def _serve(self, conn):
        try:
            conn.settimeout(120 * SLOW)
            self.handler(conn, self)
        except OSError:
            pass  # a reset or a close at shutdown: the client side judges the outcome
        except Exception as e:  # noqa: BLE001 - reported to the test through .errors
            self.errors.append(repr(e))
        finally:
            with self.lock:
                self.conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass
            self.slots.release()

    def close(self):
        self.stopping.set()
        self.accept_thread.join(5)
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
            threads = list(self.threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(5)


def echo_handler(conn, server):
    """Send back everything; on EOF shut down the write side (half-close) and end."""
    while True:
        data = conn.recv(256 * KiB)
        if not data:
            conn.shutdown(socket.SHUT_WR)
            return
        conn.sendall(data)


def sink_handler(conn, server):
    """Hold the connection and never read from it, until the server closes."""
    server.stopping.wait(600)


@pytest.fixture
def tcp_server():
    """tcp_server(handler, host="127.0.0.1", **kw) -> TcpServer, closed at teardown."""
    servers = []

    def make(handler, host="127.0.0.1", **kw):
        s = TcpServer(handler, host=host, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def echo_server(tcp_server):
    """echo_server(host="127.0.0.1") -> TcpServer echoing every byte."""
    return lambda host="127.0.0.1", **kw: tcp_server(echo_handler, host=host, **kw)


@pytest.fixture
def sink_server(tcp_server):
    """sink_server(host="127.0.0.1") -> TcpServer that accepts and never reads."""
    return lambda host="127.0.0.1", **kw: tcp_server(sink_handler, host=host, **kw)


class HttpServer:
    """http.server on loopback in a thread, serving the files of one directory."""

    def __init__(self, directory, host="127.0.0.1"):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server_class = type("Server", (http.server.ThreadingHTTPServer,),
                            {"address_family": family_of(host), "daemon_threads": True})
        self.httpd = server_class((host, 0), handler)
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


HTTP_PAGE = (b"<!DOCTYPE html>\n<html><head><title>tcp-reverse-proxy test page</title></head>\n"
             b"<body><p>Hello through the tunnel.</p></body></html>\n")


@pytest.fixture
def http_server(tmp_path):
    """http_server(host="127.0.0.1") -> HttpServer; .files maps name -> content served.

    Serves index.html (HTTP_PAGE) and big.bin (1 MiB of pseudo-random bytes).
    """
    servers = []
    root = tmp_path / "www"
    root.mkdir()
    files = {"index.html": HTTP_PAGE, "big.bin": pseudo_random("http big.bin", MiB)}
    for name, content in files.items():
        (root / name).write_bytes(content)

    def make(host="127.0.0.1"):
        s = HttpServer(root, host)
        s.files = files
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


# ---------------------------------------------------------------------------------------------
# The tunnel


class Tunnel:
    """A relay with reverse-proxies and entry-points around it, all on loopback.

    The first entry-point always carries one extra route, the probe route
    127.0.0.1:PROBE:127.0.0.1:ECHO (ECHO: an echo server of the tunnel), used to check that
    the tunnel carries traffic: probe() is one round trip through it.
    """

    def __init__(self, start_daemon, echo_server, keys, host, group, relay_args,
                 relay_port=None, env=None, platforms=None):
        self._start = start_daemon
        self.env = dict(env or {})
        # program name -> Platform it runs on (the others: the build under test, natively).
        self.platforms = dict(platforms or {})
        self.keys = keys
        self.host = host
        self.group = group
        self.relay_args = list(relay_args)
        self.relay_port = relay_port or free_port(host)
        self.relay = None
        self.reverse_proxies = []
        self.entry_points = []
        self.probe_echo = echo_server()
        self.probe_port = free_port("127.0.0.1")
        self.probe_route = "127.0.0.1:%d:127.0.0.1:%d" % (self.probe_port,
                                                          self.probe_echo.port)

    @property
    def server_address(self):
        """The -s value the clients use: host:port, [v6]:port."""
        return "%s:%d" % (bracket(self.host), self.relay_port)

    @property
    def reverse_proxy(self):
        return self.reverse_proxies[0]

    @property
    def entry_point(self):
        return self.entry_points[0]

    def _start_daemon(self, program, args, name=None, env=None):
        """Start program with the tunnel's environment, plus env (for this one), on its
        platform."""
        plat = self.platforms.get(program)
        argv = plat.argv(program, args) if plat is not None and not plat.native else None
        return self._start(program, args, name=name, env=dict(self.env, **(env or {})),
                           argv=argv)

    def start_relay(self, extra=(), keys=None, name="relay-server", env=None):
        """Start a relay on host:relay_port; wait until it logs that it listens."""
        keys = keys or self.keys
        args = ["-p", self.relay_port, "--host", self.host, "-c", keys.cert, "-k", keys.key,
                "-a", keys.pub] + self.relay_args + list(extra)
        if RELAY_WORKERS and "--workers" not in args:
            args += ["--workers", RELAY_WORKERS]
        relay = self._start_daemon("relay-server", args, name=name, env=env)
        relay.wait_log("listening on %s:%d" % (bracket(self.host), self.relay_port))
        self.relay = relay
        return relay

    def client_args(self, group=None, cert=None, key=None, server_address=None):
        return ["-s", server_address or self.server_address,
                "-c", cert or self.keys.cert,
                "-a", key or self.keys.priv,
                "-g", self.group if group is None else group]

    def start_reverse_proxy(self, group=None, extra=(), cert=None, key=None,
                            server_address=None, wait_connected=False, env=None):
        """Start a reverse-proxy; with wait_connected, wait until it logs its first channel."""
        args = self.client_args(group, cert, key, server_address) + list(extra)
        rp = self._start_daemon("reverse-proxy", args, env=env)
        self.reverse_proxies.append(rp)
        if wait_connected:
            rp.wait_log("connected (group %s)" % (self.group if group is None else group))
        return rp

    def start_entry_point(self, routes=(), group=None, extra=(), cert=None, key=None,
                          server_address=None, wait_connected=False, env=None):
        """Start an entry-point with routes (the first one also gets the probe route).

        Waits until every route logs that it listens; with wait_connected, also until it logs
        its first channel to the relay.
        """
        routes = list(routes)
        if not self.entry_points:
            routes.append(self.probe_route)
        args = (self.client_args(group, cert, key, server_address)
                + ["-r", ",".join(routes)] + list(extra))
        ep = self._start_daemon("entry-point", args, env=env)
        self.entry_points.append(ep)
        for r in routes:
            ep.wait_log("route '%s' listening on" % r)
        if wait_connected:
            ep.wait_log("connected (group %s)" % (self.group if group is None else group))
        return ep

    def probe(self, timeout=3.0):
        """One round trip through the probe route; True if the bytes came back intact."""
        payload = os.urandom(64)
        try:
            return round_trip("127.0.0.1", self.probe_port, payload, timeout * SLOW) == payload
        except (OSError, EOFError, TimeoutError, AssertionError):
            return False

    def wait_ready(self, timeout=15.0):
        """Poll round trips through the probe route until one works (or fail)."""
        start = time.monotonic()
        deadline = start + timeout * SLOW
        while time.monotonic() < deadline:
            if self.probe(timeout=2.0):
                return time.monotonic() - start
            time.sleep(0.05)
        pytest.fail("the tunnel carried no round trip within %.0f s" % (timeout * SLOW))


@pytest.fixture
def tunnel(start_daemon, echo_server, keys):
    """tunnel(routes=(), group=0, ...) -> Tunnel with relay, reverse-proxy and entry-point.

    Arguments: routes (entry-point routes), group, host (relay --host, default 127.0.0.1),
    relay_args / rp_args / ep_args (extra flags), keys, reverse_proxy / entry_point (False:
    do not start it), ready (False: do not wait for a round trip), env (extra environment of
    the three programs), platforms ({"relay-server": Platform("arm64"), ...}: where a
    program runs; the others run natively).  All processes are stopped at teardown by
    start_daemon.
    """

    def make(routes=(), group=0, host="127.0.0.1", relay_args=(), rp_args=(), ep_args=(),
             keys=keys, reverse_proxy=True, entry_point=True, ready=True, env=None,
             platforms=None):
        t = Tunnel(start_daemon, echo_server, keys, host, group, relay_args, env=env,
                   platforms=platforms)
        t.start_relay()
        if reverse_proxy:
            t.start_reverse_proxy(extra=rp_args)
        if entry_point:
            t.start_entry_point(routes, extra=ep_args)
        if ready and reverse_proxy and entry_point:
            t.wait_ready()
        return t

    return make


@pytest.fixture(scope="session")
def bench_tools(tmp_path_factory):
    """bench/loadgen and bench/echo (the benchmark's client and echo server), built as the
    bench builds them: {"loadgen": path, "echo": path}."""
    out_dir = tmp_path_factory.mktemp("bench-tools")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    made = {}
    for tool in ("loadgen", "echo"):
        out = out_dir / tool
        subprocess.run(["cc", "-O2", "-std=c11", "-D_GNU_SOURCE", "-pthread", "-o", str(out),
                        os.path.join(root, "bench", tool + ".c")], check=True, timeout=120)
        made[tool] = str(out)
    return made


@pytest.fixture
def bench_echo(bench_tools):
    """bench_echo() -> port of a bench/echo process on 127.0.0.1 (the benchmark's echo server,
    C and fast, for tests that move much data or many connections), accepting when it returns;
    every one is stopped at teardown."""
    procs = []

    def start():
        port = free_port("127.0.0.1")
        p = subprocess.Popen([bench_tools["echo"], str(port)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        procs.append(p)
        deadline = time.monotonic() + 5 * SLOW
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("bench/echo on port %d did not start (status %s)"
                                       % (port, p.poll()))
                time.sleep(0.02)

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)
