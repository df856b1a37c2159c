"""Limits that fit the machine: with an open-file limit of 20,000 and no flags, one tunnel holds
9,500 idle user connections, every one still echoing after a hold of 3 s.

Each held connection is two descriptors in every daemon (the entry-point: its source and its
channel; the relay: two channels; the reverse-proxy: its channel and its destination), so the
limits the daemons derive at start must leave room for them and for both pools' idle channels:
the relay keeps --max-handshakes apart and gives the rest to --max-channels; the clients derive
--pool-max and the entry-point --max-connections from the same limit.  bench/loadgen holds the
connections (each sends 16 bytes and checks the echo, at the start and after the hold).

About half a minute; run once (relay workers 2, the normal build): the sanitizer build is too slow
for 19,000 handshakes within the test's bounds.
"""

import re
import resource
import subprocess

import pytest

from conftest import SANITIZE, free_port, run_once

HELD = 9500
HOLD_SECONDS = 3  # all 9,500 open at once, then each echoes again
FILES = 20000


@pytest.fixture
def nofile_20000():
    """This process (and so every daemon it starts) with the open-file limit 20,000."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILES, FILES))
    except (ValueError, OSError):
        pytest.skip("cannot set the open-file limit to %d (needs root)" % FILES)
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, old)


@pytest.mark.skipif(SANITIZE, reason="19,000 handshakes take too long under the sanitizers")
@run_once
def test_9500_idle_connections_at_the_default_limits(nofile_20000, bench_tools, bench_echo,
                                                     tunnel):
    echo_port = bench_echo()
    listen = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (listen, echo_port)])
    for d in (t.relay, t.entry_point, t.reverse_proxy):
        d.wait_log("limits: ")
    assert "--max-channels 19648," in t.relay.log()
    assert "--max-connections 9890," in t.entry_point.log()
    r = subprocess.run([bench_tools["loadgen"], "hold", "127.0.0.1", str(listen),
                        str(HELD), str(HOLD_SECONDS), "150"], capture_output=True, text=True,
                       timeout=240)
    print(r.stdout, r.stderr[-400:])
    m = re.search(r"hold n=(\d+) held=(\d+) ok=(\d+)", r.stdout)
    assert m, (r.returncode, r.stdout, r.stderr[-400:])
    assert int(m.group(2)) == HELD, "held %s of %d" % (m.group(2), HELD)
    assert int(m.group(3)) == HELD, "%s of %d echoed after the hold" % (m.group(3), HELD)
    assert r.returncode == 0, r.stderr[-400:]
    for d in (t.relay, t.entry_point, t.reverse_proxy):
        assert "refused" not in d.log(), d.log_tail(20)
    assert t.probe()
