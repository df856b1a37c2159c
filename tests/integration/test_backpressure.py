"""A reader that never reads costs a bounded amount of memory.

The user pushes up to 256 MiB toward a sink (accepts, never reads) through the tunnel, on a
non-blocking socket, until nothing more can be sent for 3 s.  TCP flow control must carry the
stall back to the user: far less than 256 MiB is accepted, and the resident memory of relay,
entry-point and reverse-proxy each grows by only a few MiB over a baseline taken after a
warm-up connection.  Afterwards the tunnel still works for a new connection.

Then the same the other way round: the destination floods a user who never reads.
"""

import select
import socket
import threading
import time

from conftest import connect, free_port, pseudo_random, round_trip, MiB, KiB, SLOW, scaled

PUSH_LIMIT = 256 * MiB
STALL = 3.0
MAX_ACCEPTED = 64 * MiB
MAX_GROWTH_KIB = scaled(8, 24) * 1024

# Under AddressSanitizer freed memory sits in a quarantine (256 MiB by default) instead of being
# reused, so RSS grows with every byte that flows even when live memory is bounded.  A small
# quarantine, filled during the warm-up, keeps the measurement about the daemons' buffers.
SANITIZER_ENV = {"ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:quarantine_size_mb=4"}


def push_until_stalled(sock):
    """Send until PUSH_LIMIT or nothing could be sent for STALL seconds; return bytes sent."""
    chunk = memoryview(pseudo_random("backpressure", 256 * KiB))
    sock.settimeout(None)
    sock.setblocking(False)
    sent = 0
    start = last_progress = time.monotonic()
    while sent < PUSH_LIMIT and time.monotonic() - last_progress < STALL:
        if time.monotonic() - start > 120 * SLOW:
            break
        try:
            n = sock.send(chunk[:min(len(chunk), PUSH_LIMIT - sent)])
        except BlockingIOError:
            select.select([], [sock], [], 0.2)
            continue
        sent += n
        last_progress = time.monotonic()
    return sent


def warm_up_and_measure(echo_port, daemons):
    """A few MiB through the tunnel and back; then the RSS of each daemon (KiB) by name."""
    for i in range(2):
        payload = pseudo_random("warm-up %d" % i, 4 * MiB)
        assert round_trip("127.0.0.1", echo_port, payload, timeout=30 * SLOW) == payload
    return {d.name: d.rss_kib() for d in daemons}


def test_sink_stalls_the_sender_with_bounded_memory(tunnel, echo_server, sink_server):
    echo = echo_server()
    sink = sink_server()
    echo_port = free_port("127.0.0.1")
    sink_port = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (echo_port, echo.port),
                       "127.0.0.1:%d:127.0.0.1:%d" % (sink_port, sink.port)],
               env=scaled(None, SANITIZER_ENV))
    daemons = [t.relay, t.entry_point, t.reverse_proxy]
    baseline = warm_up_and_measure(echo_port, daemons)

    with connect("127.0.0.1", sink_port, timeout=10 * SLOW) as s:
        sent = push_until_stalled(s)
        stalled = {d.name: d.rss_kib() for d in daemons}
        print("accepted %.1f MiB before stalling; RSS KiB baseline %s, stalled %s"
              % (sent / MiB, baseline, stalled))
        assert sink.accepted == 1
        assert sent < MAX_ACCEPTED, "%.1f MiB accepted toward a sink" % (sent / MiB)
        for name in baseline:
            growth = stalled[name] - baseline[name]
            assert growth < MAX_GROWTH_KIB, "%s grew by %d KiB while stalled" % (name, growth)
        s.setblocking(True)
        s.shutdown(socket.SHUT_RDWR)

    # The tunnel still works for a new connection, and nobody died.
    payload = pseudo_random("after the stall", 256 * KiB)
    assert round_trip("127.0.0.1", echo_port, payload, timeout=10 * SLOW) == payload
    assert all(d.alive() for d in daemons)


def test_user_who_never_reads_stalls_the_destination(tunnel, echo_server, tcp_server):
    flooded = {}
    done = threading.Event()

    def flood(conn, server):
        """Wait for the user's hello, push until stalled, then hold the connection."""
        conn.recv(16)
        flooded["sent"] = push_until_stalled(conn)
        done.set()
        server.stopping.wait(120)

    echo = echo_server()
    destination = tcp_server(flood)
    echo_port = free_port("127.0.0.1")
    flood_port = free_port("127.0.0.1")
    t = tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (echo_port, echo.port),
                       "127.0.0.1:%d:127.0.0.1:%d" % (flood_port, destination.port)],
               env=scaled(None, SANITIZER_ENV))
    daemons = [t.relay, t.entry_point, t.reverse_proxy]
    baseline = warm_up_and_measure(echo_port, daemons)

    with connect("127.0.0.1", flood_port, timeout=10 * SLOW) as s:
        s.sendall(b"hello")  # and never read
        assert done.wait(150 * SLOW), "the destination never stalled"
        stalled = {d.name: d.rss_kib() for d in daemons}
        print("destination pushed %.1f MiB before stalling; RSS KiB baseline %s, stalled %s"
              % (flooded["sent"] / MiB, baseline, stalled))
        assert flooded["sent"] < MAX_ACCEPTED, (
            "%.1f MiB accepted toward a user who never reads" % (flooded["sent"] / MiB))
        for name in baseline:
            growth = stalled[name] - baseline[name]
            assert growth < MAX_GROWTH_KIB, "%s grew by %d KiB while stalled" % (name, growth)

    payload = pseudo_random("after the flood", 256 * KiB)
    assert round_trip("127.0.0.1", echo_port, payload, timeout=10 * SLOW) == payload
    assert all(d.alive() for d in daemons)
