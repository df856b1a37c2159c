"""The arm64 and armhf builds, run under qemu-user, work with amd64 peers.

`make build` writes build/linux/arm64/ and build/linux/armhf/ beside build/linux/amd64/ (with
the cross compilers `make deps-cross` installs); here the foreign programs run under
qemu-aarch64-static and qemu-arm-static (common/NOTES.md, "Cross builds").

1. `--version` of each of the four programs of each foreign build names the same version and
   commit as the build under test, then the OpenSSL, libevent and libsodium it runs with.
2. Three tunnels, each daemon on its own architecture: (a) an arm64 relay between an amd64
   reverse-proxy and entry-point; (b) an amd64 relay, an armhf reverse-proxy and an arm64
   entry-point; (c) an armhf relay, an arm64 reverse-proxy and an amd64 entry-point.  Each
   carries 4 concurrent round trips of 1 MiB of its own pseudo-random content to an echo server,
   compared byte for byte; and each foreign daemon is seen running under its emulator
   (/proc/PID/exe) with its architecture's own libevent and OpenSSL mapped (/proc/PID/maps).

Skips, saying why, when qemu-user or a foreign build is missing (fails instead with
TRP_REQUIRE_CROSS=1, which .ci/run sets once it has installed them); under TRP_SANITIZE=1 (the
sanitizers do not run under qemu-user, and `make test SANITIZE=1` builds no foreign platform:
the plain pass runs this); and in the workers-1 pass (run once, with two relay workers).
"""

import os
import re
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import (HOST_ARCH, MiB, SANITIZE, Platform, bin_path, free_port, pseudo_random,
                      round_trip, run_once)

pytestmark = [
    run_once,
    pytest.mark.skipif(SANITIZE, reason="the sanitizers do not run under qemu-user; the cross "
                       "test runs in the plain pass"),
]

FOREIGN = [a for a in ("amd64", "arm64", "armhf") if a != HOST_ARCH]
TRIPLETS = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu",
            "armhf": "arm-linux-gnueabihf"}
PROGRAMS = ("relay-server", "reverse-proxy", "entry-point", "gen-cert")
ROUND_TRIPS = 4
SIZE = MiB
# qemu-user runs the programs about ten times slower than natively.
TIMEOUT = 60


def need(*arches):
    """Skip unless every one of arches can run here; return their Platforms."""
    platforms = [Platform(a) for a in arches]
    for p in platforms:
        why = p.missing()
        if why:
            # .ci/run installs everything: there, a missing platform is a failure.
            if os.environ.get("TRP_REQUIRE_CROSS") == "1":
                pytest.fail("linux/%s: %s (TRP_REQUIRE_CROSS=1)" % (p.arch, why))
            pytest.skip("linux/%s: %s" % (p.arch, why))
    return platforms


def elf_machine(path):
    """e_machine of the ELF file at path."""
    with open(path, "rb") as f:
        header = f.read(20)
    assert header[:4] == b"\x7fELF", "%s is not an ELF file" % path
    return struct.unpack_from("<H", header, 18)[0]


@pytest.mark.parametrize("arch", FOREIGN)
def test_version(arch):
    (plat,) = need(arch)
    for program in PROGRAMS:
        assert elf_machine(plat.path(program)) == plat.elf_machine, plat.path(program)
        p = subprocess.run(plat.argv(program, ["--version"]), capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert p.returncode == 0, (plat.argv(program, ["--version"]), p.stderr)
        native = subprocess.run([bin_path(program), "--version"], capture_output=True,
                                text=True, timeout=TIMEOUT)
        first, _, rest = p.stdout.partition("\n")
        # The same version and commit ("-dirty" aside: a stamp of when each was built).
        assert re.fullmatch(r"%s \d+\.\d+\.\d+ \(commit \S+\)" % program, first), p.stdout
        assert first.replace("-dirty", "") == \
            native.stdout.partition("\n")[0].replace("-dirty", ""), (p.stdout, native.stdout)
        assert re.fullmatch(r"OpenSSL 3\.\S+ .*, libevent 2\.1\.\S+, libsodium \d\S*\n", rest), \
            p.stdout


def check_emulated(daemon, plat, program):
    """daemon runs program of plat: natively, or under plat's emulator."""
    exe = os.readlink("/proc/%d/exe" % daemon.pid)
    with open("/proc/%d/cmdline" % daemon.pid, "rb") as f:
        cmdline = f.read().split(b"\0")
    if plat.native:
        assert exe == os.path.realpath(plat.path(program)), (daemon.name, exe)
        return
    assert exe == os.path.realpath(plat.emulator[0]), (daemon.name, exe)
    assert cmdline[1].decode() == plat.path(program), (daemon.name, cmdline)
    # What it loaded: that architecture's own libevent and OpenSSL (qemu-user maps the guest's
    # libraries into its address space as files).
    with open("/proc/%d/maps" % daemon.pid) as f:
        maps = f.read()
    for lib in ("libevent_openssl-2.1.so", "libssl.so.3"):
        assert "/%s/%s" % (TRIPLETS[plat.arch], lib) in maps, (daemon.name, lib)


# (relay-server, reverse-proxy, entry-point): the architecture of each.
TUNNELS = [
    pytest.param("arm64", "amd64", "amd64", id="relay-arm64"),
    pytest.param("amd64", "armhf", "arm64", id="rp-armhf-ep-arm64"),
    pytest.param("armhf", "arm64", "amd64", id="relay-armhf-rp-arm64"),
]


@pytest.mark.parametrize("relay_arch,rp_arch,ep_arch", TUNNELS)
def test_tunnel(tunnel, echo_server, relay_arch, rp_arch, ep_arch):
    relay_p, rp_p, ep_p = need(relay_arch, rp_arch, ep_arch)
    echo = echo_server()
    port = free_port("127.0.0.1")
    route = "127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)
    t = tunnel(routes=[route], ready=False,
               platforms={"relay-server": relay_p, "reverse-proxy": rp_p,
                          "entry-point": ep_p})
    t.wait_ready(timeout=TIMEOUT)
    for daemon, plat, program in ((t.relay, relay_p, "relay-server"),
                                  (t.reverse_proxy, rp_p, "reverse-proxy"),
                                  (t.entry_point, ep_p, "entry-point")):
        check_emulated(daemon, plat, program)

    payloads = [pseudo_random("cross %s %d" % (relay_arch, i), SIZE) for i in range(ROUND_TRIPS)]
    with ThreadPoolExecutor(ROUND_TRIPS) as pool:
        echoed = list(pool.map(lambda data: round_trip("127.0.0.1", port, data, TIMEOUT),
                               payloads))
    for i, (sent, got) in enumerate(zip(payloads, echoed)):
        assert got == sent, "round trip %d: %d bytes back, not the %d sent" % (
            i, len(got), len(sent))
    for d in (t.relay, t.reverse_proxy, t.entry_point):
        assert d.alive(), d.name
