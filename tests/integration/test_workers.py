"""The relay on several cores: --workers N event loops, each with its own SO_REUSEPORT socket.

- An OPEN that lands on one worker is paired with an idle reverse-proxy channel that sits on
  another: the channel moves over (the relay's -v log says so), and every byte arrives.
- Two relays never share a port by accident: the second one fails as it does with one worker.
- --workers is checked like every number.

The whole suite also runs with TRP_RELAY_WORKERS=1 and =2 (`make test` does both).
"""

import re
import subprocess
import threading

from conftest import bin_path, free_port, pseudo_random, KiB, SLOW
from test_reuse import echo_once

MOVES = re.compile(r"reverse-proxy channel moves from worker (\d+) to (\d+)")
WORKER = re.compile(r"connected \(worker (\d+)\)")


def test_channels_move_to_the_worker_with_the_open(tunnel, echo_server):
    echo = echo_server()
    port = free_port("127.0.0.1")
    # One idle reverse-proxy channel at a time, entry-point channels on both workers: most
    # OPENs find the reverse-proxy's channels on the other worker.
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)],
               relay_args=["-v", "--workers", "2"],
               rp_args=["--pool-min", "1", "--pool-max", "1"])
    errors = []

    def client(i, j):
        payload = pseudo_random("workers %d %d" % (i, j), 1 + (i * 131 + j * 17) % (64 * KiB))
        try:
            if echo_once(port, payload, 20 * SLOW) != payload:
                errors.append("round %d connection %d: bytes differ" % (i, j))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append("round %d connection %d: %r" % (i, j, e))

    for i in range(12):
        threads = [threading.Thread(target=client, args=(i, j)) for j in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60 * SLOW)
        assert not any(th.is_alive() for th in threads), "round %d hung" % i
        assert not errors, errors
        if MOVES.search(t.relay.log()):
            break
    log = t.relay.log()
    workers = set(WORKER.findall(log))
    assert workers == {"0", "1"}, "channels landed on workers %s only" % sorted(workers)
    moves = MOVES.findall(log)
    assert moves, "no channel moved between workers"
    assert all(a != b for a, b in moves)


def test_second_relay_on_the_same_port_fails(tunnel, keys):
    t = tunnel(reverse_proxy=False, entry_point=False, relay_args=["--workers", "2"])
    p = subprocess.run([bin_path("relay-server"), "-p", str(t.relay_port), "--host", t.host,
                        "-c", keys.cert, "-k", keys.key, "-a", keys.pub, "--workers", "2"],
                       capture_output=True, text=True, timeout=20 * SLOW,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stderr
    assert "%s:%d" % (t.host, t.relay_port) in p.stderr and "in use" in p.stderr, p.stderr


def test_workers_flag_is_checked(keys):
    for value in ("0", "257", "x", "-2"):
        p = subprocess.run([bin_path("relay-server"), "--workers", value, "-c", keys.cert,
                            "-k", keys.key, "-a", keys.pub], capture_output=True, text=True,
                           timeout=20 * SLOW, stdin=subprocess.DEVNULL)
        assert p.returncode == 2, "--workers %s: exit %d" % (value, p.returncode)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "--workers" in lines[0] and value in lines[0], p.stderr
