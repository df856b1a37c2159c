"""Every byte arrives, in order, under concurrency.

1. 16 connections at once each send 64 MiB (16 MiB under the sanitizer) of their own
   pseudo-random content to an echo server through the tunnel while reading the echo back;
   the sha256 of what was sent and of what came back must be equal, connection by connection.
2. 300 connections open at once, each sends 1 KiB of unique content and gets exactly that back,
   then half-closes and sees a clean EOF.
"""

import hashlib
import random
import selectors
import socket
import threading
import time

from conftest import connect, free_port, KiB, MiB, SLOW, scaled

STREAMS = 16
STREAM_SIZE = scaled(64 * MiB, 16 * MiB)
CHUNK = 256 * KiB


def stream_chunks(seed, size):
    """size bytes for one connection, as CHUNK-sized views of a per-connection random block.

    Chunk k starts at a different offset of the block, so the content differs along the
    stream (a lost, repeated or reordered chunk changes the hash).
    """
    block = memoryview(random.Random(seed).randbytes(MiB + CHUNK))
    for k, offset in enumerate(range(0, size, CHUNK)):
        start = (k * 7919 * 13) % MiB
        yield block[start:start + min(CHUNK, size - offset)]


class Stream:
    """One connection: a sender thread and a receiver thread, each hashing its bytes."""

    def __init__(self, port, index, deadline):
        self.index = index
        self.deadline = deadline
        self.sock = connect("127.0.0.1", port, timeout=30 * SLOW)
        self.sent = hashlib.sha256()
        self.echoed = hashlib.sha256()
        self.sent_bytes = 0
        self.echoed_bytes = 0
        self.error = None
        self.threads = [threading.Thread(target=self._send, daemon=True),
                        threading.Thread(target=self._receive, daemon=True)]

    def start(self):
        for t in self.threads:
            t.start()

    def _send(self):
        try:
            for chunk in stream_chunks("integrity stream %d" % self.index, STREAM_SIZE):
                if time.monotonic() > self.deadline:
                    raise TimeoutError("sender past the deadline")
                self.sock.sendall(chunk)
                self.sent.update(chunk)
                self.sent_bytes += len(chunk)
            self.sock.shutdown(socket.SHUT_WR)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = self.error or "send: %r" % e

    def _receive(self):
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            while True:
                if time.monotonic() > self.deadline:
                    raise TimeoutError("receiver past the deadline")
                n = self.sock.recv_into(buf)
                if n == 0:
                    return
                self.echoed.update(view[:n])
                self.echoed_bytes += n
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = self.error or "receive: %r" % e

    def join(self):
        for t in self.threads:
            t.join(max(0.1, self.deadline - time.monotonic()) + 5)
        self.sock.close()


def test_16_streams_of_64_mib_each_way(tunnel, echo_server):
    echo = echo_server()
    port = free_port("127.0.0.1")
    tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)])

    start = time.monotonic()
    deadline = start + 180 * SLOW
    streams = [Stream(port, i, deadline) for i in range(STREAMS)]
    for s in streams:
        s.start()
    for s in streams:
        s.join()
    elapsed = time.monotonic() - start
    print("%d streams x %d MiB each way in %.1f s" % (STREAMS, STREAM_SIZE // MiB, elapsed))

    for s in streams:
        assert s.error is None, "stream %d: %s" % (s.index, s.error)
        assert s.sent_bytes == STREAM_SIZE
        assert s.echoed_bytes == STREAM_SIZE, "stream %d: %d of %d bytes came back" % (
            s.index, s.echoed_bytes, STREAM_SIZE)
        assert s.echoed.hexdigest() == s.sent.hexdigest(), "stream %d: content differs" % s.index
    assert echo.errors == []


CONNECTIONS = 300
MESSAGE = 1 * KiB


def test_300_concurrent_exchanges(tunnel, echo_server):
    echo = echo_server()
    port = free_port("127.0.0.1")
    tunnel(routes=["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)])

    socks = []
    try:
        # All connections are open at once before anyone sends.
        for _ in range(CONNECTIONS):
            socks.append(connect("127.0.0.1", port, timeout=10 * SLOW))
        messages = {}
        for i, s in enumerate(socks):
            messages[s] = ("connection %04d " % i).encode() * (MESSAGE // 16)
            s.sendall(messages[s])
            s.setblocking(False)

        # Read every echo back (one selector, one deadline), then half-close each one.
        received = {s: bytearray() for s in socks}
        finished = {}
        sel = selectors.DefaultSelector()
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + 60 * SLOW
        while len(finished) < CONNECTIONS and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                try:
                    data = s.recv(64 * KiB)
                except BlockingIOError:
                    continue
                except OSError as e:
                    finished[s] = "error %r" % e
                    sel.unregister(s)
                    continue
                if not data:
                    finished[s] = "eof"
                    sel.unregister(s)
                    continue
                received[s] += data
                if len(received[s]) == MESSAGE:
                    s.shutdown(socket.SHUT_WR)  # the echo server then closes its side too
                elif len(received[s]) > MESSAGE:
                    finished[s] = "too many bytes"
                    sel.unregister(s)
        sel.close()

        ok = [s for s in socks
              if finished.get(s) == "eof" and bytes(received[s]) == messages[s]]
        bad = [(i, finished.get(s, "no end"), len(received[s]))
               for i, s in enumerate(socks) if s not in ok]
        assert not bad, "%d of %d exchanges failed, first ones: %s" % (
            len(bad), CONNECTIONS, bad[:10])
        assert echo.accepted >= CONNECTIONS
    finally:
        for s in socks:
            s.close()
