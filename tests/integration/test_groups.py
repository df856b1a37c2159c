"""Two groups on one relay do not see each other's channels.

A reverse-proxy serves group 1 only.  An entry-point of group 1 works; an entry-point of group
2 gets nothing: the relay waits --open-timeout (2 s) for a group-2 reverse-proxy, then the
user's connection is closed without data.  Once a group-2 reverse-proxy comes, group 2 works.
The group-1 reverse-proxy (-v logs every connection with the user's address) never hears of a
group-2 connection.
"""

import re

from conftest import connect, free_port, pseudo_random, read_until_closed, recv_exactly, KiB, SLOW


def mentions_source(log, port):
    return re.search(r"127\.0\.0\.1:%d\b" % port, log) is not None


def exchange(port, seed):
    """One echo round trip through 127.0.0.1:port; returns the source port used."""
    payload = pseudo_random(seed, 32 * KiB)
    with connect("127.0.0.1", port, timeout=10 * SLOW) as s:
        source_port = s.getsockname()[1]
        s.sendall(payload)
        assert recv_exactly(s, len(payload), 10 * SLOW) == payload
    return source_port


def test_groups_are_separate(tunnel, echo_server):
    echo = echo_server()
    port1 = free_port("127.0.0.1")
    port2 = free_port("127.0.0.1")
    route1 = "127.0.0.1:%d:127.0.0.1:%d" % (port1, echo.port)
    route2 = "127.0.0.1:%d:127.0.0.1:%d" % (port2, echo.port)

    # Relay, reverse-proxy and entry-point of group 1.
    t = tunnel(routes=[route1], group=1, relay_args=["--open-timeout", "2"], rp_args=["-v"])
    rp1 = t.reverse_proxy
    group1_source = exchange(port1, "group 1")

    # An entry-point of group 2 with no reverse-proxy of its group: the user's connection is
    # closed without data, after the relay's open timeout (2 s) and not much later.
    ep2 = t.start_entry_point([route2], group=2, extra=["-v"])
    with connect("127.0.0.1", port2, timeout=10 * SLOW) as s:
        refused_source = s.getsockname()[1]
        s.sendall(b"hello group 2\n")
        data, how, elapsed = read_until_closed(s, timeout=10 * SLOW)
    assert how in ("eof", "reset"), "group-2 connection still open after %.1f s" % elapsed
    assert data == b"", "group-2 connection got data from somewhere: %r" % data[:100]
    assert 1.5 <= elapsed < 2 + 3 * SLOW, "closed after %.2f s (open timeout 2 s)" % elapsed

    # A reverse-proxy of group 2 arrives: group 2 works now.
    rp2 = t.start_reverse_proxy(group=2, extra=["-v"])
    group2_source = None
    for attempt in range(20):
        try:
            group2_source = exchange(port2, "group 2 attempt %d" % attempt)
            break
        except (OSError, EOFError, TimeoutError):
            continue
    assert group2_source is not None, "group 2 never worked with its own reverse-proxy"

    # Group 1 still works.
    group1_again = exchange(port1, "group 1 again")

    # The group-1 reverse-proxy saw group-1 connections only; the group-2 one saw its own.
    rp1_log = rp1.log()
    assert mentions_source(rp1_log, group1_source), "rp -v log lacks the user's address"
    assert mentions_source(rp1_log, group1_again)
    assert not mentions_source(rp1_log, refused_source)
    assert not mentions_source(rp1_log, group2_source)
    rp2_log = rp2.log()
    assert mentions_source(rp2_log, group2_source)
    assert not mentions_source(rp2_log, group1_source)
    assert not mentions_source(rp2_log, group1_again)
    assert ep2.alive()
