"""A DNS server for tests, on a free loopback UDP port: A queries for the names in .answers get
those IPv4 records (held, while .hold is set, until release()); anything else gets an empty
NOERROR answer.  Daemons reach it through a private resolv.conf (see test_allow_dns.py)."""

import socket
import struct
import threading


class FakeDNS:
    """UDP DNS on 127.0.0.1: A queries for names in self.answers get those IPv4 records
    (held while self.hold is set); everything else NOERROR, no records."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.answers = {}
        self.hold = threading.Event()
        self.held = []
        self.queries = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    @staticmethod
    def parse(q):
        i = 12
        labels = []
        while q[i] != 0:
            n = q[i]
            labels.append(q[i + 1:i + 1 + n].decode().lower())
            i += 1 + n
        qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
        return ".".join(labels), qtype, i + 5

    def reply(self, q):
        name, qtype, qend = self.parse(q)
        addrs = self.answers.get(name, []) if qtype == 1 else []
        hdr = q[:2] + struct.pack(">HHHHH", 0x8180, 1, len(addrs), 0, 0)
        body = q[12:qend]
        for a in addrs:
            body += struct.pack(">HHHIH", 0xc00c, 1, 1, 5, 4) + socket.inet_aton(a)
        return hdr + body

    def serve(self):
        while not self.done.is_set():
            try:
                q, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            name, qtype, _ = self.parse(q)
            with self.lock:
                self.queries.append((name, qtype))
                if self.hold.is_set() and name in self.answers:
                    self.held.append((q, addr))
                    continue
            self.sock.sendto(self.reply(q), addr)

    def release(self):
        with self.lock:
            self.hold.clear()
            for q, addr in self.held:
                self.sock.sendto(self.reply(q), addr)
            self.held = []

    def close(self):
        self.done.set()
        self.t.join(2)
        self.sock.close()
