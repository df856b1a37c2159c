"""The systemd units (relay-server.service, reverse-proxy.service, entry-point@.service).

1. Installed by `make install DESTDIR=...`, each passes `systemd-analyze verify` (seen where
   it is installed: the binaries, the man pages of Documentation=, the units' directory on
   systemd's search path), and a unit with a command that is not there does not.
2. `systemd-analyze security --offline=yes` rates each unit's sandbox; the scores are
   printed and none is above 2.0 ("OK").
3. The sandbox lets the daemons do their work: a whole tunnel (reload, a request, the drain)
   traced with strace makes only system calls that the units' SystemCallFilter= allows,
   opens sockets only of RestrictAddressFamilies=' families (names resolved: the relay's
   --host, the clients' -s and a destination; the reverse-proxy's resolver asks netlink), never maps memory writable and
   executable (MemoryDenyWriteExecute=), opens no file for writing (ProtectSystem=strict) and
   nothing in /proc but its own process's files (ProcSubset=pid).  A unit cannot be started
   here (no systemd as PID 1), so this is what shows that the filters fit the programs.
"""

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN_DIR, SANITIZE, SLOW, free_port, round_trip, run_once
from units import REPO, UNITS, in_root, namespace_problem, read_unit

PROGRAMS = ("entry-point", "relay-server", "reverse-proxy", "gen-cert")

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze (package systemd) is not installed")


def make_install(destdir, *extra):
    """make install DESTDIR=destdir of the binaries under test; returns make's output."""
    bins = " ".join(str(BIN_DIR / p) for p in PROGRAMS)
    p = subprocess.run(["make", "-s", "-C", str(REPO), "install", "DESTDIR=%s" % destdir,
                        "BINS=%s" % bins] + list(extra),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def verify(root, unit_names):
    return subprocess.run(
        in_root(root, ["/usr/local", "/etc"],
                ["sh", "-c", 'cd /usr/local/lib/systemd/system && systemd-analyze verify "$@"',
                 "sh"] + list(unit_names)),
        capture_output=True, text=True, timeout=120)


@run_once
@needs_analyze
def test_installed_units_verify(tmp_path):
    why = namespace_problem()
    if why:
        pytest.skip(why)
    root = tmp_path / "root"
    make_install(root)
    p = verify(root, ["relay-server.service", "reverse-proxy.service",
                      "entry-point@main.service"])
    assert p.returncode == 0 and not p.stderr.strip(), p.stdout + p.stderr

    # It does check: a unit whose ExecStart= names a missing program fails.
    units = root / "usr/local/lib/systemd/system"
    text = (units / "relay-server.service").read_text()
    (units / "broken.service").write_text(
        text.replace("/usr/local/bin/relay-server", "/usr/local/bin/no-such-relay"))
    p = verify(root, ["broken.service"])
    assert p.returncode != 0 and "no-such-relay" in p.stderr, p.stdout + p.stderr


@run_once
@needs_analyze
def test_security_exposure_of_each_unit(tmp_path, capsys):
    scores = {}
    for unit in UNITS:
        name = Path(unit).name
        copy = tmp_path / (name.replace("@.", "@main.") if "@." in name else name)
        shutil.copyfile(REPO / unit, copy)
        p = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(copy)],
                           capture_output=True, text=True, timeout=120)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", p.stdout + p.stderr)
        assert m, p.stdout + p.stderr
        scores[copy.name] = (float(m.group(1)), m.group(2))
        bad = [line for line in p.stdout.splitlines() if line.startswith("✗")]
        with capsys.disabled():
            print("\nsystemd-analyze security --offline=yes %s: %s %s (%d settings not set)"
                  % (copy.name, m.group(1), m.group(2), len(bad)))
    for name, (score, verdict) in scores.items():
        assert score <= 2.0 and verdict == "OK", "%s: exposure %.1f %s" % (name, score, verdict)


# ---------------------------------------------------------------------------------------------
# The sandbox against what the programs do.

def syscall_groups():
    """{"@group": set of names and @groups} from systemd-analyze syscall-filter."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    groups, current = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), set())
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.add(line.strip())
    return groups


def expand(groups, name, seen=None):
    seen = set() if seen is None else seen
    names = set()
    for member in groups[name]:
        if member.startswith("@"):
            if member not in seen:
                seen.add(member)
                names |= expand(groups, member, seen)
        else:
            names.add(member)
    return names


def allowed_syscalls(unit):
    """The system calls the unit's SystemCallFilter= lines allow (an allow list, then deny
    lists, as ours are written)."""
    groups = syscall_groups()
    allowed = None
    for value in read_unit(unit)["SystemCallFilter"]:
        deny = value.startswith("~")
        names = set()
        for item in value.lstrip("~").split():
            names |= expand(groups, item) if item.startswith("@") else {item}
        if deny:
            allowed -= names
        else:
            allowed = names if allowed is None else allowed | names
    return allowed


CALL = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)(?:\(| resumed>)")


def traced(log, unit):
    """What the trace in log shows against unit's sandbox: a list of problems."""
    text = Path(log).read_text(errors="replace")
    lines = text.splitlines()
    assert any("epoll_wait" in x for x in lines), "an empty trace: " + text[-2000:]
    # Everything from the program's own execve on (strace's own start-up comes before).
    first = next(i for i, x in enumerate(lines) if re.match(r"^\d+\s+execve\(", x))
    lines = lines[first:]
    problems = []
    allowed = allowed_syscalls(unit)
    used = {m.group(1) for m in map(CALL.match, lines) if m}
    if used - allowed:
        problems.append("system calls outside SystemCallFilter=: %s"
                        % " ".join(sorted(used - allowed)))
    families = set(re.findall(r"\bsocket\((AF_[A-Z0-9]+)", "\n".join(lines)))
    allowed_families = set(read_unit(unit)["RestrictAddressFamilies"][0].split())
    if families - allowed_families:
        problems.append("sockets outside RestrictAddressFamilies=: %s"
                        % " ".join(sorted(families - allowed_families)))
    for x in lines:
        if re.search(r"\b(mmap|mprotect|pkey_mprotect)\(", x) and "PROT_EXEC" in x and (
                "mprotect" in x or "PROT_WRITE" in x):
            problems.append("MemoryDenyWriteExecute= would refuse: " + x)
        m = re.search(r'\bopen(?:at)?\((?:AT_FDCWD, )?"([^"]+)", ([A-Z_|]+)', x)
        if m and re.search(r"O_WRONLY|O_RDWR|O_CREAT", m.group(2)):
            problems.append("ProtectSystem=strict would refuse the write: " + x)
        if m and m.group(1).startswith("/proc/") and not re.match(
                r"/proc/(self|thread-self|\d+)/", m.group(1)):
            problems.append("ProcSubset=pid hides it: " + x)
    return problems


def child_of(pid, timeout=10.0):
    """The PID of the one child of pid (strace's tracee)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = Path("/proc/%d/task/%d/children" % (pid, pid)).read_text().split()
        except FileNotFoundError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.02)
    raise AssertionError("no child of %d" % pid)


@run_once
@needs_analyze
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.skipif(SANITIZE, reason="the sanitizers' own system calls are not the programs'")
def test_the_sandbox_fits_what_the_daemons_do(start_daemon, keys, echo_server, tmp_path):
    why = namespace_problem()
    if why:
        pytest.skip(why)
    # Debian's own /etc/hosts (localhost is 127.0.0.1 and ::1), whatever this machine's says:
    # a name with two addresses is what makes glibc's getaddrinfo sort them, over netlink.
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n")

    def traced_daemon(name, args):
        log = tmp_path / ("%s.strace" % name)
        d = start_daemon(name, args, argv=[
            "unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', hosts,
            "strace", "-f", "-qq", "-o", log, "--", BIN_DIR / name] + args)
        return d, log

    # The relay as its example config runs it: no --host, so every address of both families.
    relay_port = free_port("127.0.0.1")
    relay, relay_log = traced_daemon("relay-server", [
        "-p", relay_port, "-c", keys.cert, "-k", keys.key, "-a", keys.pub, "--workers", "2"])
    relay.wait_log("listening on", timeout=20)
    # Names, not addresses, for the relay and the destination: the resolver's system calls
    # and sockets are in the trace too.
    client = ["-s", "localhost:%d" % relay_port, "-c", keys.cert, "-a", keys.priv]
    echo = echo_server()
    port = free_port("127.0.0.1")
    rp, rp_log = traced_daemon("reverse-proxy", client)
    ep, ep_log = traced_daemon("entry-point", client + [
        "-r", "127.0.0.1:%d:localhost:%d" % (port, echo.port)])
    for d in (rp, ep):
        d.wait_log("connected (group 0)", timeout=30)
    payload = b"through the sandbox\n" * 500
    assert round_trip("127.0.0.1", port, payload, timeout=20 * SLOW) == payload
    daemons = [(relay, relay_log, "relay-server/relay-server.service"),
               (rp, rp_log, "reverse-proxy/reverse-proxy.service"),
               (ep, ep_log, "entry-point/entry-point@.service")]
    # Signals go to the tracee: strace, started with -o and a command, blocks them.
    pids = {d.name: child_of(d.pid) for d, _, _ in daemons}
    for d, _, _ in daemons:
        mark = len(d.log())
        subprocess.run(["kill", "-HUP", str(pids[d.name])], check=True, timeout=10)
        d.wait_log("reload", since=mark, timeout=20)
    assert round_trip("127.0.0.1", port, payload, timeout=20 * SLOW) == payload
    # The drain, then the exit: strace ends with its tracee.
    for d, _, _ in reversed(daemons):
        subprocess.run(["kill", "-TERM", str(pids[d.name])], check=True, timeout=10)
        assert d.proc.wait(30 * SLOW) == 0, d.log_tail()
    problems = []
    for d, log, unit in daemons:
        problems += ["%s: %s" % (d.name, p) for p in traced(log, REPO / unit)]
    assert not problems, "\n".join(problems)
