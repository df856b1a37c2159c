"""Faults: a peer that dies or freezes costs only the connections it carried, for no longer
than it takes to notice, and the tunnel mends itself without a restart.

1. The reverse-proxy is SIGKILLed while eight connections stream through it: every one of
   them ends at its source within 2 s (the kernel closes the dead process's channels, the
   relay closes their partners, the entry-point resets the sources); a new reverse-proxy
   carries traffic at once.
2. The relay is SIGSTOPped for 20 s, then SIGCONTed: its clients notice the silence
   (POOL_DEAD_AFTER, 15 s), close their channels and redial with backoff; within 10 s of
   SIGCONT the tunnel carries traffic again, nothing restarted.

(A destination that accepts and never reads: test_backpressure.py.)
"""

import os
import select
import signal
import threading
import time

from conftest import SLOW, KiB, connect, free_port, run_once, timer_bound

STREAMS = 8


def stream_until_it_ends(sock, stop, result):
    """Send and read (an echo) until the connection ends or stop is set; result gets the
    time it ended (monotonic) and how."""
    sock.setblocking(False)
    chunk = os.urandom(64 * KiB)
    result["bytes"] = 0
    deadline = time.monotonic() + 60 * SLOW
    while not stop.is_set() and time.monotonic() < deadline:
        r, w, _ = select.select([sock], [sock], [], 0.05)
        try:
            if r:
                data = sock.recv(256 * KiB)
                if not data:
                    result.update(end=time.monotonic(), how="eof")
                    return
                result["bytes"] += len(data)
            if w:
                sock.send(chunk)
        except BlockingIOError:
            continue
        except OSError as e:
            result.update(end=time.monotonic(), how=type(e).__name__)
            return
    result.update(end=None, how="still open")


def test_reverse_proxy_killed_mid_transfer_ends_its_connections(tunnel, echo_server):
    echo = echo_server()
    listen = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (listen, echo.port)])
    stop = threading.Event()
    results = [{} for _ in range(STREAMS)]
    socks, threads = [], []
    try:
        socks += [connect("127.0.0.1", listen) for _ in range(STREAMS)]
        threads += [threading.Thread(target=stream_until_it_ends, args=(s, stop, r))
                    for s, r in zip(socks, results)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 10 * SLOW
        while min(r.get("bytes", 0) for r in results) < 256 * KiB:
            assert time.monotonic() < deadline, "the streams did not start: %r" % results
            assert all("end" not in r for r in results), results
            time.sleep(0.05)
        t.reverse_proxy.kill()
        killed = time.monotonic()
        for th in threads:
            th.join(5 * SLOW)
    finally:
        stop.set()
        for th in threads:
            th.join(10)
        for s in socks:
            s.close()
    late = [r for r in results if r.get("end") is None or r["end"] - killed > 2.0 * SLOW]
    assert not late, "connections still open or ended late after the kill: %r" % results
    # Cut off, not ended: a clean EOF would tell the user the stream was whole.
    assert all(r["how"] in ("ConnectionResetError", "BrokenPipeError") for r in results), results
    print("ended %s after the kill" % ", ".join(
        "%.0f ms (%s)" % ((r["end"] - killed) * 1000, r["how"]) for r in results))
    assert t.entry_point.alive() and t.relay.alive()
    t.start_reverse_proxy(wait_connected=True)
    t.wait_ready(timeout=10)
    for _ in range(3):
        assert t.probe()


@timer_bound
@run_once
def test_relay_frozen_for_20_s_then_the_tunnel_mends_itself(tunnel):
    t = tunnel()
    relay = t.relay
    os.kill(relay.pid, signal.SIGSTOP)
    try:
        time.sleep(20)
    finally:
        os.kill(relay.pid, signal.SIGCONT)
    resumed = time.monotonic()
    for client in (t.entry_point, t.reverse_proxy):
        client.wait_log("idle channel silent for 15 s, closing it", timeout=1)
    t.wait_ready(timeout=10)
    took = time.monotonic() - resumed
    print("traffic again %.1f s after SIGCONT" % took)
    assert took <= 10 * SLOW, "traffic again only %.1f s after SIGCONT" % took
    for _ in range(5):
        assert t.probe()
    assert all(d.alive() for d in (relay, t.entry_point, t.reverse_proxy))
