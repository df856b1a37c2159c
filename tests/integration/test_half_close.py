"""Half-close goes through the tunnel, both ways.

1. The user sends a request and shutdown(SHUT_WR), then reads until EOF.  The destination reads
   until EOF (so it must see the user's FIN), then answers with the sha256 of the request and a
   large payload, and closes.  The user gets all of it.
2. The destination speaks first: it sends a payload and shuts down its write side, then keeps
   reading.  The user reads that payload until EOF, and only then sends more; the destination
   gets every byte the user sent before and after its own half-close.
"""

import hashlib
import socket
import threading

from conftest import (connect, free_port, pseudo_random, read_until_closed, recv_exactly,
                      KiB, MiB, SLOW)

REPLY_SIZE = 8 * MiB


def digest_then_reply(conn, server):
    """Read to EOF, then send sha256(request) + REPLY_SIZE bytes, then close."""
    h = hashlib.sha256()
    while True:
        data = conn.recv(256 * KiB)
        if not data:
            break
        h.update(data)
    conn.sendall(h.digest())
    conn.sendall(pseudo_random("half-close reply", REPLY_SIZE))
    conn.shutdown(socket.SHUT_WR)


def test_user_half_closes_then_reads_the_reply(tunnel, tcp_server):
    destination = tcp_server(digest_then_reply)
    port = free_port("127.0.0.1")
    tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, destination.port)])

    request = pseudo_random("half-close request", 3 * MiB + 17)
    with connect("127.0.0.1", port, timeout=10 * SLOW) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        reply, how, elapsed = read_until_closed(s, timeout=30 * SLOW, limit=2 * REPLY_SIZE)
    assert how == "eof", "reply ended by %s after %d bytes" % (how, len(reply))
    assert reply[:32] == hashlib.sha256(request).digest(), "destination got other bytes"
    assert len(reply) == 32 + REPLY_SIZE
    assert reply[32:] == pseudo_random("half-close reply", REPLY_SIZE)
    assert destination.errors == []


GREETING_SIZE = 4 * MiB


def test_destination_half_closes_while_user_keeps_sending(tunnel, tcp_server):
    received = {}
    done = threading.Event()

    def greet_then_read(conn, server):
        conn.sendall(pseudo_random("greeting", GREETING_SIZE))
        conn.shutdown(socket.SHUT_WR)
        h = hashlib.sha256()
        n = 0
        while True:
            data = conn.recv(256 * KiB)
            if not data:
                break
            h.update(data)
            n += len(data)
        received["sha256"] = h.hexdigest()
        received["bytes"] = n
        done.set()

    destination = tcp_server(greet_then_read)
    port = free_port("127.0.0.1")
    tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, destination.port)])

    before = pseudo_random("before the greeting ends", 1 * MiB)
    after = pseudo_random("after the greeting ended", 2 * MiB + 5)
    with connect("127.0.0.1", port, timeout=10 * SLOW) as s:
        s.sendall(before)
        greeting = recv_exactly(s, GREETING_SIZE, 30 * SLOW)
        rest, how, _ = read_until_closed(s, timeout=10 * SLOW)
        assert (rest, how) == (b"", "eof"), "after the greeting: %d bytes, %s" % (len(rest), how)
        assert greeting == pseudo_random("greeting", GREETING_SIZE)

        # The destination's side is shut; ours is still open and keeps carrying bytes.
        s.sendall(after)
        s.shutdown(socket.SHUT_WR)
        assert done.wait(30 * SLOW), "the destination never saw the user's EOF"
        tail, how, _ = read_until_closed(s, timeout=10 * SLOW)
        assert tail == b"" and how == "eof", "end of connection: %s" % how

    assert received["bytes"] == len(before) + len(after)
    assert received["sha256"] == hashlib.sha256(before + after).hexdigest()
    assert destination.errors == []
