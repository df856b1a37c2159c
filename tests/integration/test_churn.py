"""Churn: 50,000 connections opened, used and closed through the tunnel leave nothing behind.

bench/loadgen's rate mode makes them, 16 at a time, each one 16 bytes echoed and checked, then
closed (bounded: at most 50,000 connections and 150 s).  It reads each daemon's descriptors
when idle before, its RSS right after a warm-up of 2,000, and both after the churn once the
pools have shrunk back to their floor (surplus idle channels close at their next ping, every
5 s):

- descriptors: after the churn, each daemon holds no more than it did idle before the
  warm-up (a pool that grew under load shrank again, no socket was leaked);
- memory: each daemon's RSS is within 8 MiB of where it was after the warm-up.

Under the sanitizers the count is 10,000 and the memory check is skipped (AddressSanitizer
keeps freed memory in quarantine, so its RSS says nothing about leaks; LeakSanitizer checks
them at exit instead).
"""

import re
import subprocess
import time

from conftest import SANITIZE, SLOW, free_port, run_once, scaled, open_fds

CONNECTIONS = scaled(50000, 10000)
WARM_UP = 2000
PARALLEL = 16
SETTLE_SECONDS = 25       # each surplus idle channel closes at its next ping (every 5 s)


def settle(daemons, ceiling, seconds):
    """Wait until each daemon holds at most ceiling[d] descriptors (None: until the counts
    stop changing for 3 s); returns {daemon: descriptors} at the end."""
    deadline = time.monotonic() + seconds * SLOW
    last, stable_since = None, time.monotonic()
    while True:
        now = {d: open_fds(d.pid) for d in daemons}
        if now != last:
            last, stable_since = now, time.monotonic()
        if ceiling is not None and all(now[d] <= ceiling[d] for d in daemons):
            return now
        if ceiling is None and time.monotonic() - stable_since >= 3:
            return now
        if time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def churn(loadgen, port, count, seconds):
    r = subprocess.run([loadgen, "rate", "127.0.0.1", str(port), str(PARALLEL),
                        str(seconds), str(count)], capture_output=True, text=True,
                       timeout=seconds + 60)
    m = re.search(r"rate cps=([\d.]+) ok=(\d+) failures=(\d+)", r.stdout)
    assert m and r.returncode == 0, (r.returncode, r.stdout, r.stderr[-400:])
    return float(m.group(1)), int(m.group(2)), int(m.group(3))


@run_once
def test_50000_connections_leave_no_descriptor_and_no_memory_behind(tunnel, bench_tools,
                                                                     bench_echo):
    echo_port = bench_echo()
    listen = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (listen, echo_port)])
    daemons = [t.relay, t.entry_point, t.reverse_proxy]
    idle = settle(daemons, None, 20)

    churn(bench_tools["loadgen"], listen, WARM_UP, 60)
    # Right after the warm-up, its pools still grown: the RSS to stay near.
    warm_rss = {d: d.rss_kib() for d in daemons}

    start = time.monotonic()
    cps, ok, failures = churn(bench_tools["loadgen"], listen, CONNECTIONS, 150)
    print("churn: %d connections in %.1f s (%.0f/s), %d failures"
          % (ok, time.monotonic() - start, cps, failures))
    assert ok == CONNECTIONS and failures == 0, (ok, failures)

    after = settle(daemons, idle, SETTLE_SECONDS)
    for d in daemons:
        rss = d.rss_kib()
        print("%s: descriptors %d idle, %d after; RSS %d KiB after the warm-up, %d after"
              % (d.name, idle[d], after[d], warm_rss[d], rss))
        assert after[d] <= idle[d], "%s holds %d descriptors, %d when idle" % (
            d.name, after[d], idle[d])
        if not SANITIZE:
            assert rss - warm_rss[d] <= 8 * 1024, "%s grew by %d KiB" % (
                d.name, rss - warm_rss[d])
    assert t.probe()
