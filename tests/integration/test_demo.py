"""`make demo` builds the programs and runs a whole tunnel on loopback with one request
through it (the README's one-command demo, tests/demo.sh); it must exit 0 within 120 s."""

import os
import signal
import subprocess

from conftest import REPO, run_once

# No relay of the suite's worker count in this file: the second pass alone runs it.
pytestmark = run_once


def test_make_demo():
    # A session of its own, so that on a timeout the TERM reaches make and the demo script
    # (whose trap stops the daemons it started), and nothing else.
    p = subprocess.Popen(["make", "-C", str(REPO), "demo"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            out, _ = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate(timeout=10)
        raise AssertionError("make demo still running after 120 s\n%s" % out[-4000:])
    assert p.returncode == 0, "make demo: exit %d\n%s" % (p.returncode, out[-4000:])
