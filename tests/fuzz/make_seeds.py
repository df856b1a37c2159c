#!/usr/bin/env python3
"""Write the seed corpora of tests/fuzz/corpus/TARGET/ (the committed files).

Each seed is small and says what it is in its name: valid inputs of every
kind, inputs at their limits and just past them.  Run from anywhere:

    python3 tests/fuzz/make_seeds.py

It writes only the files named here (and so leaves any other seed, a
reproducer added by hand say, where it is).
"""
import base64
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

AUTH, AUTH_RESULT, PING, PONG, OPEN, OPEN_RESULT, DATA, FIN, RST, REUSE, \
    RETIRE = range(1, 12)
VERSION = 3


def frame(t, payload=b"", length=None):
    n = len(payload) if length is None else length
    return struct.pack(">BH", t, n) + payload


def auth(version=VERSION, role=1, group=7, pk=bytes(range(1, 33)),
         sig=bytes(64)):
    return struct.pack(">BBI", version, role, group) + pk + sig


def open_msg(port, host, source):
    return struct.pack(">HB", port, len(host)) + host + \
        struct.pack(">B", len(source)) + source


def key_blob(pk, kind=b"ssh-ed25519"):
    return struct.pack(">I", len(kind)) + kind + struct.pack(">I", len(pk)) + pk


def ssh_line(pk, comment=""):
    b64 = base64.b64encode(key_blob(pk)).decode()
    return "ssh-ed25519 " + b64 + (" " + comment if comment else "")


def pem(pk):
    der = bytes.fromhex("302a300506032b6570032100") + pk
    return ("-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() +
            "\n-----END PUBLIC KEY-----\n")


PK1 = bytes(range(1, 33))
PK2 = bytes(range(33, 65))
PK3 = bytes(range(65, 97))


def frame_seeds():
    s = {}
    s["auth-ok"] = frame(AUTH, auth())
    s["auth-reverse-group-max"] = frame(AUTH, auth(role=2, group=0xffffffff))
    s["auth-version-2"] = frame(AUTH, auth(version=2))
    s["auth-bad-role"] = frame(AUTH, auth(role=3))
    s["auth-1-byte"] = frame(AUTH, bytes([VERSION]))
    s["auth-1024"] = frame(AUTH, bytes([VERSION]) + bytes(1023))
    s["auth-1025-header"] = frame(AUTH, b"", 1025)
    s["auth-result-ok"] = frame(AUTH_RESULT, bytes([VERSION, 0]))
    s["auth-result-1024"] = frame(AUTH_RESULT, bytes([VERSION, 9]) + bytes(1022))
    s["auth-result-1-byte"] = frame(AUTH_RESULT, bytes([VERSION]))
    s["ping-0"] = frame(PING)
    s["ping-8"] = frame(PING, bytes(8))
    s["ping-9"] = frame(PING, bytes(9))
    s["pong-8"] = frame(PONG, b"12345678")
    s["open-ok"] = frame(OPEN, open_msg(22, b"10.0.0.5", b"127.0.0.1:51234"))
    s["open-v6"] = frame(OPEN, open_msg(443, b"fd00::5", b"[::1]:40000"))
    s["open-max"] = frame(OPEN, open_msg(65535, b"h" * 253, b"s" * 64))
    s["open-host-254"] = frame(OPEN, open_msg(80, b"h" * 254, b""))
    s["open-322-header"] = frame(OPEN, b"", 322)
    s["open-port-0"] = frame(OPEN, open_msg(0, b"a", b""))
    s["open-host-space"] = frame(OPEN, open_msg(80, b"a b", b""))
    s["open-lengths-wrong"] = frame(OPEN, b"\x00\x50\x05abc\x00")
    s["open-result-ok"] = frame(OPEN_RESULT, b"\x00")
    s["open-result-200"] = frame(OPEN_RESULT, b"\x06" + b"t" * 200)
    s["open-result-202-header"] = frame(OPEN_RESULT, b"", 202)
    s["open-result-unprintable"] = frame(OPEN_RESULT, b"\x02no\x00route\xff\n")
    s["data-1"] = frame(DATA, b"x")
    s["data-16384"] = frame(DATA, bytes(16384))
    s["data-16385-header"] = frame(DATA, b"", 16385)
    s["data-0"] = frame(DATA, b"", 0)
    s["fin-rst-reuse-retire"] = frame(FIN) + frame(RST) + frame(REUSE) + \
        frame(RETIRE)
    s["fin-1"] = frame(FIN, b"x")
    s["type-0"] = frame(0)
    s["type-12"] = frame(12)
    s["type-255"] = frame(255, b"x")
    s["header-2-bytes"] = b"\x07\x00"
    s["empty"] = b""
    s["stream"] = frame(AUTH, auth()) + frame(AUTH_RESULT, bytes([3, 0])) + \
        frame(PING) + frame(PONG) + \
        frame(OPEN, open_msg(5432, b"db.internal", b"198.51.100.7:50312")) + \
        frame(OPEN_RESULT, b"\x00ok") + frame(DATA, b"hello") + frame(FIN)
    return s


def stream_seed(flags, cuts, stream):
    return bytes([flags, len(cuts)]) + bytes(cuts) + stream


def framestream_seeds():
    ENTRY, REVERSE, PARTNER_FIN, BY_REF = 0, 1, 2, 4
    o = frame(OPEN, open_msg(22, b"10.0.0.5", b"127.0.0.1:51234"))
    ok = frame(OPEN_RESULT, b"\x00")
    d = frame(DATA, b"hello")
    big = frame(DATA, bytes(range(256)) * 64)
    s = {}
    s["entry-open-data-fin"] = stream_seed(ENTRY, [], o + d + frame(FIN))
    s["entry-bytewise"] = stream_seed(ENTRY, [1] * 40, o + d + d + frame(FIN))
    s["entry-by-reference"] = stream_seed(ENTRY | BY_REF, [2, 3, 5, 7, 11],
                                          o + d + frame(PING) + d + frame(FIN))
    s["entry-fin-ends-pair"] = stream_seed(ENTRY | PARTNER_FIN, [4],
                                           o + d + frame(FIN) + frame(PING))
    s["reverse-answer"] = stream_seed(REVERSE, [3, 1], frame(PING) +
                                      frame(RETIRE) + ok + d + frame(FIN))
    s["reverse-big-data-split"] = stream_seed(
        REVERSE | BY_REF, [0x90, 0x81, 1, 2, 0x8f], ok + big + d + frame(FIN))
    s["reverse-fin-ends-pair"] = stream_seed(REVERSE | PARTNER_FIN, [],
                                             ok + frame(FIN) + ok)
    s["entry-open-twice"] = stream_seed(ENTRY, [], o + d + o)
    s["reverse-open"] = stream_seed(REVERSE, [], o)
    s["reverse-answer-twice"] = stream_seed(REVERSE, [2], ok + ok)
    s["entry-answer"] = stream_seed(ENTRY, [], o + ok)
    s["data-after-fin"] = stream_seed(ENTRY, [5], o + frame(FIN) + d)
    s["answer-after-fin"] = stream_seed(REVERSE, [], frame(FIN) + ok)
    s["ping-after-fin"] = stream_seed(REVERSE, [], ok + frame(FIN) +
                                      frame(PING, b"12345678") + frame(RST))
    s["fin-twice"] = stream_seed(ENTRY, [], o + frame(FIN) + frame(FIN))
    s["rst-mid"] = stream_seed(ENTRY, [6], o + d + frame(RST) + d)
    s["bad-header-mid-run"] = stream_seed(ENTRY, [], o + d + frame(DATA, b"", 0))
    s["unknown-type"] = stream_seed(REVERSE, [], ok + frame(200, b"x"))
    s["auth-pong-reuse"] = stream_seed(ENTRY, [], o + frame(AUTH, auth()) +
                                       frame(PONG) + frame(REUSE))
    s["partial-header-at-end"] = stream_seed(ENTRY, [1], o + b"\x07\x00")
    s["partial-ping-at-end"] = stream_seed(ENTRY, [8], o + frame(PING, b"1234")[:5])
    s["partial-data-at-end"] = stream_seed(REVERSE, [0x84], ok + big[:3000])
    s["empty-reads"] = stream_seed(ENTRY, [0, 0, 3, 0, 0], o + d)
    return s


def route_seeds():
    return {
        "port-port": "5001:5001",
        "ip-port-port": "127.0.0.1:2222:22",
        "port-host-port": "5432:db.internal:5432",
        "ip-port-host-port": "127.0.0.1:2222:10.0.0.5:22",
        "v6": "[::1]:8080:[fd00::5]:80",
        "v6-source": "[2001:db8::7]:443:443",
        "v6-dest": "8443:[fe80::1]:443",
        "list": "5432:db.internal:5432,8080:80,10.1.2.3:9000:web-1.corp:80",
        "ports-limits": "1:65535,65535:1",
        "port-0": "0:80",
        "port-65536": "65536:80",
        "same-port-twice": "80:80,80:81",
        "empty": "",
        "empty-element": "80:80,,81:81",
        "empty-part": "80::80",
        "too-many-parts": "1:2:3:4:5",
        "unclosed-bracket": "[::1:80:80",
        "bracketed-port": "[80]:80",
        "v4-source-bracketed": "[10.0.0.1]:80:80",
        "v6-unbracketed": "::1:80:80",
        "host-253": "80:" + ".".join(["a" * 63] * 3 + ["b" * 61]) + ":80",
        "host-label-64": "80:" + "a" * 64 + ".example:80",
        "host-digits": "80:1.2.3:80",
        "host-dash": "80:-a.example:80",
        "64-routes": ",".join("%d:80" % p for p in range(1000, 1064)),
        "65-routes": ",".join("%d:80" % p for p in range(1000, 1065)),
        "mapped-source": "[::ffff:127.0.0.1]:80:80",
    }


def opts_seeds():
    every = ("flag = yes\nno-short = off\nstring = hello world\n"
             "allow = 10.0.0.0/8:22,db.internal:5432\nnumber = 42\n"
             "port = 4433\nwide = 18446744073709551615\n")
    return {
        "every-kind": every,
        "comments-blank-crlf": "# comment\r\n\r\n  \t\r\nflag=TRUE\r\n"
                               "  string\t=\t a = b # not a comment \r\n",
        "flags": "flag = On\nno-short = 0\nflag = false\nno-short = 1\n",
        "number-limits": "number = 1\nnumber = 100\nport = 1\nport = 65535\n"
                         "wide = 0\n",
        "number-0": "number = 0\n",
        "number-101": "number = 101\n",
        "number-plus": "number = +5\n",
        "number-junk": "number = 5x\n",
        "port-65536": "port = 65536\n",
        "wide-overflow": "wide = 18446744073709551616\n",
        "unknown": "unknown = 1\n",
        "no-equals": "flag\n",
        "no-value": "string =\n",
        "no-key": "= value\n",
        "flag-maybe": "flag = maybe\n",
        "repeated": "string = a\nstring = b\nallow = c\nstring = d\n",
        "too-many-values": "string = x\n" * 130,
        "no-newline-at-end": "port = 22",
    }


def authkeys_seeds():
    k1, k2, k3 = ssh_line(PK1, "alice@laptop"), ssh_line(PK2, "bob@office"), \
        ssh_line(PK3)
    return {
        "plain": k1 + "\n",
        "every-option": 'role="reverse-proxy",groups="0,3,10-20",'
                        'from="203.0.113.0/24,2001:db8::/32,198.51.100.7",'
                        'max-channels="200" ' + k1 + "\n",
        "readme": "# the relay's keys\n\n"
                  'role="entry-point",groups="1" ' + k1 + "\n"
                  'role="entry-point",groups="1",from="203.0.113.0/24" ' +
                  k2 + "\n"
                  'role="reverse-proxy",groups="1",max-channels="200" ' + k3 +
                  "\n",
        "pem": pem(PK1) + k2 + "\n",
        "pem-indented-crlf": "  " + pem(PK1).replace("\n", " \r\n"),
        "case-tabs-crlf": 'ROLE="entry-point",Groups="4294967295"\t' + k1 +
                          "\t \r\n",
        "from-mapped-and-limits": 'from="::ffff:10.0.0.0/104,0.0.0.0/0,::/0",'
                                  'groups="0-4294967295",max-channels="1000000" '
                                  + k1 + "\n",
        "groups-32": 'groups="' + ",".join(str(i) for i in range(32)) + '" ' +
                     k1 + "\n",
        "groups-33": 'groups="' + ",".join(str(i) for i in range(33)) + '" ' +
                     k1 + "\n",
        "unknown-option": "no-pty " + k1 + "\n",
        "options-no-key": 'role="entry-point"\n',
        "same-key-twice": k1 + "\n" + ssh_line(PK1, "again") + "\n",
        "private-key": "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n"
                       "-----END PRIVATE KEY-----\n",
        "pem-no-end": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n",
        "bad-role": 'role="both" ' + k1 + "\n",
        "groups-backwards": 'groups="5-1" ' + k1 + "\n",
        "from-host-bits": 'from="10.0.0.1/8" ' + k1 + "\n",
        "max-channels-0": 'max-channels="0" ' + k1 + "\n",
        "option-twice": 'role="entry-point",role="entry-point" ' + k1 + "\n",
        "unclosed-quote": 'role="entry-point ' + k1 + "\n",
        "control-character": k1 + "\x01\n",
        "no-keys": "# nothing\n\n",
        "rsa-key": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== x\n",
        "line-4097": k2 + "\n" + k1 + " " + "c" * (4096 - len(k1)) + "\n",
    }


def sshkey_seeds():
    b = base64.b64encode
    return {
        "plain": ssh_line(PK1),
        "comment": ssh_line(PK1, "alice@laptop with spaces"),
        "tabs-crlf": "\t ssh-ed25519\t" + ssh_line(PK1)[12:] + "\tc\t \r\n",
        "comment-255": ssh_line(PK1, "c" * 255),
        "comment-256": ssh_line(PK1, "c" * 256),
        "comment-control": ssh_line(PK1, "a\x7fb"),
        "no-data": "ssh-ed25519",
        "rsa": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==",
        "bad-base64": "ssh-ed25519 AAAA!!!!",
        "blob-ecdsa": "ssh-ed25519 " +
                      b(key_blob(PK1, b"ecdsa-sha2-nistp256")).decode(),
        "blob-key-31": "ssh-ed25519 " + b(key_blob(PK1[:31])).decode(),
        "blob-trailing": "ssh-ed25519 " + b(key_blob(PK1) + b"\0").decode(),
        "blob-truncated": "ssh-ed25519 " + b(key_blob(PK1)[:20]).decode(),
        "data-4097": "ssh-ed25519 " + "A" * 4097,
        "empty": "",
    }


def allow_seeds():
    return {
        "readme": "127.0.0.1:5001,10.0.0.0/24:22,[fd00::/8]:443,db.internal:5432\n"
                  "5001 127.0.0.1\n22 10.0.0.9\n22 10.0.1.9\n443 fd00::1\n"
                  "5432 DB.Internal.\n5432 db.internal\n5001 127.1\n"
                  "5001 0x7f.0.0.1\n5001 2130706433\n22 ::ffff:10.0.0.1\n"
                  "443 fd00::1%eth0\n0 127.0.0.1",
        "under": "*.corp.example:443\n443 a.corp.example\n443 corp.example\n"
                 "443 a.b.CORP.example.\n443 badcorp.example\n80 a.corp.example",
        "everything": "0.0.0.0/0,[::/0]\n80 169.254.169.254\n80 fe80::1\n"
                      "80 ::169.254.1.1\n80 64:ff9b::a9fe:101\n"
                      "80 ::ffff:169.254.1.1\n80 2001:db8::1\n0 1.2.3.4",
        "ports": "10.0.0.0/8:1-1024,[::1]:*,host-1.example:65535,"
                 "[2001:db8::/32]:80-80\n1024 10.1.2.3\n1025 10.1.2.3\n"
                 "7 ::1\n65535 HOST-1.example\n80 2001:db8:ffff::1",
        "single-hosts": "192.0.2.7,[::1],10.0.0.0/32,[fd00::1/128]\n"
                        "1 192.0.2.7\n1 ::1\n1 10.0.0.0\n1 fd00::1",
        "prefix-33": "10.0.0.0/33",
        "host-bits": "10.0.0.1/8",
        "v6-host-bits": "[fd00::1/8]",
        "mapped": "[::ffff:1.2.3.4]",
        "prefix-outside": "[fd00::]/8",
        "v6-unbracketed": "fd00::1",
        "inet-aton-form": "127.1",
        "empty-rule": "a,,b",
        "empty": "",
        "double-wildcard": "*.*.example",
        "prefix-on-name": "host/24",
        "port-0": "x:0",
        "ports-backwards": "x:5-1",
        "port-70000": "x:70000",
        "missing-bracket": "[fd00::1:22",
        "257-rules": ",".join(["a"] * 257),
        "256-rules": ",".join("h%d.example" % i for i in range(256)) +
                     "\n80 h255.example\n80 h256.example",
        "name-253": ".".join(["a" * 63] * 3 + ["b" * 61]) + ":1\n1 " +
                    ".".join(["a" * 63] * 3 + ["b" * 61]) + ".",
    }


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def main():
    write("frame", frame_seeds())
    write("framestream", framestream_seeds())
    write("route", route_seeds())
    write("opts", opts_seeds())
    write("authkeys", authkeys_seeds())
    write("sshkey", sshkey_seeds())
    write("allow", allow_seeds())


if __name__ == "__main__":
    main()
