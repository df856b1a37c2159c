"""Idle timeouts: the relay drops idle channels that go silent, never user connections.

- Connections through the tunnel stay quiet longer than the relay's --idle-timeout and the
  clients' dead-channel time (on fresh channels and on a reused one) and still carry bytes
  afterwards.
- An authenticated idle channel whose client stops sending PINGs (the reverse-proxy is
  stopped with SIGSTOP) is dropped after --idle-timeout.
"""

import os
import signal
import time

from conftest import (connect, free_port, pseudo_random, recv_exactly, run_once, SLOW,
                      timer_bound)
from test_reuse import echo_once

IDLE_TIMEOUT = 10  # seconds, the smallest the relay takes
CLIENT_DEAD_AFTER = 15  # seconds: an idle channel the clients hear nothing on is dead (pool.h)
QUIET = max(IDLE_TIMEOUT, CLIENT_DEAD_AFTER) + 3  # longer than either


@timer_bound
@run_once
def test_quiet_connections_outlive_the_idle_timeout(tunnel, echo_server):
    echo = echo_server()
    port = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)],
               relay_args=["-v", "--idle-timeout", str(IDLE_TIMEOUT)])
    # One connection ends cleanly first: its channels go idle again (with an idle deadline at
    # the relay) and are paired again below.
    assert echo_once(port, b"warm up", 10 * SLOW) == b"warm up"
    socks = [connect("127.0.0.1", port, timeout=10 * SLOW) for _ in range(4)]
    try:
        for i, s in enumerate(socks):
            payload = pseudo_random("before %d" % i, 100)
            s.sendall(payload)
            assert recv_exactly(s, len(payload), 10 * SLOW) == payload
        time.sleep(QUIET)
        for i, s in enumerate(socks):
            payload = pseudo_random("after %d" % i, 100)
            s.sendall(payload)
            assert recv_exactly(s, len(payload), 10 * SLOW) == payload, \
                "connection %d did not survive %d s of quiet" % (i, QUIET)
    finally:
        for s in socks:
            s.close()
    assert "channel ended" not in t.relay.log(), t.relay.log_tail()


@timer_bound
@run_once
def test_silent_idle_channel_is_dropped(tunnel):
    t = tunnel(entry_point=False, relay_args=["-v", "--idle-timeout", str(IDLE_TIMEOUT)])
    rp = t.start_reverse_proxy(wait_connected=True)
    os.kill(rp.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        t.relay.wait_log("idle reverse-proxy channel silent for %d s, closing" % IDLE_TIMEOUT,
                         timeout=IDLE_TIMEOUT + 10)
        assert time.monotonic() - start >= IDLE_TIMEOUT - 6  # last PING at most 5 s before
    finally:
        os.kill(rp.pid, signal.SIGCONT)
