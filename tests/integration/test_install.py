"""make install, make uninstall, make deb, and the installed product carrying a request.

1. `make install DESTDIR=$tmp` puts the programs, the units, the man pages and the example
   configuration where the units expect them: each unit's ExecStart= program, its --config
   file, its Documentation= man page; the LoadCredential= keys are the operator's (gen-cert),
   never installed.
2. Installing again keeps a configuration file the operator changed (and says so); `make
   uninstall` removes everything but the configuration directory.
3. `make deb` builds a package that lintian finds no error in; `dpkg-deb -c` lists the
   programs, units, man pages and example configs, the conffiles are the three configs in
   /etc/tcp-reverse-proxy/, and there are no keys in it.
4. For each way in (make install, the .deb): with keys from the installed gen-cert and the
   example configs edited as an operator would (the relay's address, the route), the relay,
   the reverse-proxy and entry-point@main, started with the exact ExecStart= lines of their
   units (the credentials of LoadCredential= in %d), each say READY=1, carry a request end to
   end, reload with the units' ExecReload= line (RELOADING=1, READY=1), and drain on SIGTERM
   (STOPPING=1, exit 0).  They run in a private mount namespace in which the installed tree
   is seen at its real place (/usr/local or /usr, and /etc); the machine is not changed.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import BIN_DIR, HOST_ARCH, SANITIZE, SLOW, free_port, round_trip, run_once
from test_systemd import NotifySocket
from test_units import PROGRAMS, make_install
from units import (CONFIGS, REPO, UNITS, exec_start, in_root, load_credentials,
                   namespace_problem, read_unit, set_options)

UNIT_DIR = "usr/local/lib/systemd/system"


def unit_files(root, unit_dir):
    return [Path(root) / unit_dir / Path(u).name for u in UNITS]


@run_once
def test_make_install_puts_every_file_where_the_units_expect_it(tmp_path):
    root = tmp_path / "root"
    make_install(root)
    for p in PROGRAMS:
        installed = root / "usr/local/bin" / p
        assert installed.read_bytes() == (BIN_DIR / p).read_bytes(), installed
        assert os.access(installed, os.X_OK)
    for unit in unit_files(root, UNIT_DIR):
        argv = exec_start(unit, "/run/credentials/x", "main")
        assert (root / argv[0].lstrip("/")).is_file(), "%s: ExecStart %s" % (unit, argv[0])
        config = argv[argv.index("--config") + 1]
        assert config.startswith("/etc/tcp-reverse-proxy/"), config
        assert (root / config.lstrip("/")).is_file(), "%s: --config %s" % (unit, config)
        text = unit.read_text()
        for page, section in re.findall(r"^Documentation=man:([\w-]+)\((\d)\)", text, re.M):
            assert (root / "usr/local/share/man" / ("man" + section) /
                    ("%s.%s" % (page, section))).is_file(), (unit, page)
        for value in read_unit(unit)["LoadCredential"]:
            source = value.split(":", 1)[1]
            assert source.startswith("/etc/tcp-reverse-proxy/"), value
            assert not (root / source.lstrip("/")).exists(), "a key was installed: " + source
    assert (root / "usr/local/share/man/man1/gen-cert.1").is_file()
    for c in CONFIGS:
        example = root / "usr/local/share/doc/tcp-reverse-proxy/examples" / Path(c).name
        assert example.read_text() == (root / "etc/tcp-reverse-proxy" / Path(c).name).read_text()


@run_once
def test_install_again_keeps_a_changed_config_and_uninstall_keeps_etc(tmp_path):
    root = tmp_path / "root"
    make_install(root)
    conf = root / "etc/tcp-reverse-proxy/relay-server.conf"
    conf.write_text("port = 4999\n")
    # The operator's mode of the directory stays (install -d would reset it to 0755).
    conf.parent.chmod(0o750)
    out = make_install(root)
    assert conf.read_text() == "port = 4999\n"
    assert conf.parent.stat().st_mode & 0o7777 == 0o750, oct(conf.parent.stat().st_mode)
    assert "kept %s" % conf in out, out
    p = subprocess.run(["make", "-s", "-C", str(REPO), "uninstall", "DESTDIR=%s" % root],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    left = sorted(str(f.relative_to(root)) for f in root.rglob("*") if f.is_file())
    assert left == sorted("etc/tcp-reverse-proxy/" + Path(c).name for c in CONFIGS), left
    assert "kept" in p.stdout


def test_root_sees_the_commit_of_a_tree_another_user_owns(tmp_path):
    """`make && sudo make install`: root's git refuses a tree another user owns ("dubious
    ownership"), and the commit stamp then said "unknown", so make install relinked the
    programs as root with --version naming no commit."""
    if os.geteuid() != 0:
        pytest.skip("needs root (to give the tree to another user)")
    clone = tmp_path / "tree"
    subprocess.run(["git", "clone", "-q", "--no-local", str(REPO), str(clone)], check=True,
                   timeout=60)
    shutil.copy(REPO / "Makefile", clone / "Makefile")  # this tree's, committed or not
    subprocess.run(["chown", "-R", "nobody", str(clone)], check=True, timeout=60)
    env = dict(os.environ, HOME=str(tmp_path))   # no safe.directory of root's own
    # Not make test's SANITIZE=1 (in MAKEFLAGS, and in the environment: make exports a
    # variable set on its command line).
    for v in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "SANITIZE", "DEBUG", "OS", "ARCH"):
        env.pop(v, None)
    stamp = "build/linux/%s/commit" % HOST_ARCH
    p = subprocess.run(["make", "-s", "-C", str(clone), stamp], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                          capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    stamp = (clone / stamp).read_text().strip()
    assert stamp.startswith(head), (stamp, head)


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    """make deb, once: the path of the .deb (and the make output)."""
    if shutil.which("dpkg-buildpackage") is None or not Path(
            "/usr/share/perl5/Debian/Debhelper").exists():
        pytest.skip("debhelper and dpkg-dev are not installed (make deb installs them as root)")
    p = subprocess.run(["make", "-s", "-C", str(REPO), "deb"], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    debs = [d for d in (REPO / "build/deb").glob("tcp-reverse-proxy_*.deb")]
    assert len(debs) == 1, debs
    return debs[0]


@run_once
def test_make_deb_builds_a_lintian_clean_package(deb, capsys):
    if shutil.which("lintian") is None:
        pytest.skip("lintian is not installed")
    changes = next(deb.parent.glob("tcp-reverse-proxy_*.changes"))
    p = subprocess.run(["lintian", "--display-info", str(changes)], capture_output=True, text=True,
                       timeout=300)
    tags = [x for x in p.stdout.splitlines() if re.match(r"^[EWIPX]: ", x)]
    with capsys.disabled():
        print("\nlintian %s: %s" % (changes.name, "; ".join(tags) or "no tags"))
    errors = [x for x in tags if x.startswith("E: ")]
    assert not errors and p.returncode == 0, p.stdout + p.stderr

    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    expected = ["/usr/bin/" + p for p in PROGRAMS]
    expected += ["/lib/systemd/system/" + Path(u).name for u in UNITS]
    expected += ["/usr/share/man/man8/%s.8.gz" % p for p in PROGRAMS if p != "gen-cert"]
    expected += ["/usr/share/man/man1/gen-cert.1.gz"]
    expected += ["/etc/tcp-reverse-proxy/" + Path(c).name for c in CONFIGS]
    expected += ["/usr/share/doc/tcp-reverse-proxy/examples/" + Path(c).name for c in CONFIGS]
    missing = [f for f in expected if f not in files]
    assert not missing, "%s\n%s" % (missing, listing)
    keys = [f for f in files if re.search(r"/(auth|server\.key|server\.crt|authorized_keys)$", f)]
    assert not keys, keys
    conffiles = subprocess.run(
        "dpkg-deb --ctrl-tarfile %s | tar -xO ./conffiles" % shlex.quote(str(deb)),
        shell=True, capture_output=True, text=True, check=True, timeout=60).stdout.split()
    assert sorted(conffiles) == sorted(
        "/etc/tcp-reverse-proxy/" + Path(c).name for c in CONFIGS), conffiles
    depends = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True,
                             text=True, check=True, timeout=60).stdout
    for lib in ("libssl3", "libevent", "libsodium"):
        assert lib in depends, depends
    # ExecReload= runs /bin/kill, of procps (not Essential), as openssh-server depends on it.
    assert re.search(r"\bprocps\b", depends), depends
    # The normal build, even from make test SANITIZE=1 (whose SANITIZE=1 the package's make
    # inherited through MAKEFLAGS and the environment).
    assert "libasan" not in depends and "libubsan" not in depends, depends
    # Maintainer scripts: an upgrade never stops the daemons (dh_installsystemd --no-start
    # alone puts a stop in preinst and starts nothing after); postinst try-restarts the plain
    # units that run; removing the package stops them.
    control = deb.parent / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True, timeout=60)
    script = {n: (control / n).read_text() if (control / n).exists() else ""
              for n in ("preinst", "postinst", "prerm", "postrm")}
    assert "stop" not in script["preinst"], script["preinst"]
    assert re.search(r"try-restart 'relay-server\.service' 'reverse-proxy\.service'",
                     script["postinst"]), script["postinst"]
    assert re.search(r'if \[ "\$1" = remove \].*\n\s*deb-systemd-invoke stop '
                     r"relay-server\.service reverse-proxy\.service", script["prerm"]), \
        script["prerm"]
    # The package's version is the programs' (debian/changelog and common/version.h).
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True,
                             text=True, check=True, timeout=60).stdout.strip()
    m = re.search(r'#define TRP_VERSION "([^"]+)"', (REPO / "common/version.h").read_text())
    assert version == m.group(1), (version, m.group(1))


# ---------------------------------------------------------------------------------------------
# The installed product, started as its units start it.

def installed_tree(how, tmp_path, request):
    """(root, the directories it covers, the units' directory in it) for make install or the
    .deb."""
    root = tmp_path / "root"
    if how == "make install":
        make_install(root)
        return root, ["/usr/local", "/etc"], UNIT_DIR
    deb = request.getfixturevalue("deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=60)
    return root, ["/usr", "/etc"], "lib/systemd/system"


@run_once
@pytest.mark.skipif(SANITIZE, reason="make deb and make install ship the normal build; "
                    "the sanitizer pass checks the build it made")
@pytest.mark.parametrize("how", ["make install", "deb"])
def test_installed_units_carry_a_request(how, start_daemon, echo_server, tmp_path, request):
    why = namespace_problem()
    if why:
        pytest.skip(why)
    root, dirs, unit_dir = installed_tree(how, tmp_path, request)
    etc = root / "etc/tcp-reverse-proxy"
    gen_cert = next(root.glob("usr/*bin/gen-cert")) if how == "deb" else (
        root / "usr/local/bin/gen-cert")
    for args in (["x509", "-o", etc, "--dns", "localhost", "--ip", "127.0.0.1"],
                 ["ed25519", "-o", etc]):
        subprocess.run([gen_cert] + args, check=True, capture_output=True, timeout=60 * SLOW)
    shutil.copyfile(etc / "auth.pub", etc / "authorized_keys")

    relay_port, listen = free_port("127.0.0.1"), free_port("127.0.0.1")
    echo = echo_server()
    set_options(etc / "relay-server.conf", port=relay_port, host="127.0.0.1")
    for conf in ("reverse-proxy.conf", "entry-point-main.conf"):
        set_options(etc / conf, server_address="127.0.0.1:%d" % relay_port)
    set_options(etc / "entry-point-main.conf", routes="127.0.0.1:%d:%d" % (listen, echo.port))

    started = []
    try:
        for unit in unit_files(root, unit_dir):
            name = unit.name.split("@")[0].split(".")[0]
            creds = load_credentials(unit, root, tmp_path / "credentials" / unit.name)
            notify = NotifySocket(str(tmp_path / (name + ".notify")),
                                  str(tmp_path / (name + ".notify")),
                                  tmp_path / (name + ".log"))
            argv = in_root(root, dirs, exec_start(unit, creds, "main"))
            env = dict(notify.env, CREDENTIALS_DIRECTORY=str(creds))
            d = start_daemon(name, [], argv=argv, env=env)
            started.append((unit, d, notify))
            notify.wait_for(r"(^|\n)READY=1(\n|$)", timeout=30)

        payload = os.urandom(100_000)
        assert round_trip("127.0.0.1", listen, payload, timeout=20 * SLOW) == payload

        for unit, d, notify in started:
            mark = len(notify.texts())
            reload_line = read_unit(unit)["ExecReload"][0].replace("$MAINPID", str(d.pid))
            subprocess.run(shlex.split(reload_line), check=True, timeout=10)
            i = notify.wait_for(r"^RELOADING=1", after=mark, timeout=20)
            notify.wait_for(r"(^|\n)READY=1(\n|$)", after=i + 1, timeout=20)
        assert round_trip("127.0.0.1", listen, payload, timeout=20 * SLOW) == payload

        for unit, d, notify in reversed(started):
            d.proc.send_signal(signal.SIGTERM)
            assert d.proc.wait(30 * SLOW) == 0, d.log_tail()
            notify.wait_for(r"(^|\n)STOPPING=1(\n|$)")
    finally:
        for _, _, notify in started:
            notify.close()
