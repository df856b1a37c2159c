"""The relay goes away and comes back: the clients reconnect by themselves.

The relay is stopped (SIGTERM) and a new one is started on the same port with the same keys.
Without touching entry-point or reverse-proxy, round trips through the tunnel work again within
a few seconds (polled, with a 15 s deadline; the time it took is printed).
"""

import time

from conftest import free_port, pseudo_random, round_trip, KiB, SLOW


def test_clients_reconnect_after_relay_restart(tunnel, echo_server):
    echo = echo_server()
    port = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)])
    payload = pseudo_random("before the restart", 16 * KiB)
    assert round_trip("127.0.0.1", port, payload, timeout=10 * SLOW) == payload

    old_relay = t.relay
    assert old_relay.stop() == 0
    # While the relay is away nothing goes through (this also lets the clients' backoff grow
    # for a couple of seconds, as in a real outage).
    try:
        echoed = round_trip("127.0.0.1", port, payload, timeout=2)
    except (OSError, EOFError, TimeoutError, AssertionError):
        echoed = None
    assert echoed is None, "a round trip worked with no relay running"

    t.start_relay(name="relay-server-2")
    restarted = time.monotonic()

    deadline = restarted + 15 * SLOW
    worked_after = None
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        payload = pseudo_random("after the restart %d" % attempts, 16 * KiB)
        try:
            if round_trip("127.0.0.1", port, payload, timeout=2 * SLOW) == payload:
                worked_after = time.monotonic() - restarted
                break
        except (OSError, EOFError, TimeoutError, AssertionError):
            pass
        time.sleep(0.05)
    print("traffic flowed again %s after the new relay started (%d attempts)"
          % ("%.2f s" % worked_after if worked_after is not None else "never", attempts))
    assert worked_after is not None, "no round trip within 15 s of the relay's restart"

    # The tunnel keeps working.
    for i in range(3):
        payload = pseudo_random("steady %d" % i, 64 * KiB)
        assert round_trip("127.0.0.1", port, payload, timeout=10 * SLOW) == payload
