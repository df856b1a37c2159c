"""Who may do what: the relay's -a file is an authorized-keys file, and each key's line limits
its role, its groups, the addresses it may come from and how many channels it may hold.

The file mixes the session's key as gen-cert wrote it (no options: no restriction), a key in
the PEM form that earlier gen-certs wrote (also no restriction), and lines with options for
keys made here:

    role="entry-point" ssh-ed25519 AAAA... alice
    groups="1,5-7" ssh-ed25519 AAAA... bob
    from="127.0.0.2" ssh-ed25519 AAAA... carol
    max-channels="3" ssh-ed25519 AAAA... dave

Raw channels (tests/tools/chanpeer) ask with each key for what its line allows and for what it
does not: the relay answers AUTH_RESULT 0, or 6 (role), 7 (group), 8 (source address), 9 (the
key's channel limit), and logs one line naming the key's fingerprint and comment, what was
asked and the line's rules.  Then a real reverse-proxy with alice's key (entry-point only) is
refused and backs off (from 1 s, not every 100 ms), while a tunnel beside it carries traffic.
"""

import re
import shutil
import subprocess
import time

import pytest

from chanpeer import ChanPeer, describe
from conftest import RELAY_WORKERS, Keys, SLOW, bin_path, free_port, make_keys

AUTH_OK, AUTH_ROLE, AUTH_GROUP, AUTH_SOURCE, AUTH_FULL = 0, 6, 7, 8, 9


def ssh_line(keys, options, comment):
    """An authorized-keys line with options for the public key of keys (its auth.pub is
    one OpenSSH line, as gen-cert writes it)."""
    kind, blob = keys.pub.read_text().split()[:2]
    assert kind == "ssh-ed25519", keys.pub
    return "%s %s %s %s" % (options, kind, blob, comment)


def pem_keys(directory):
    """A key pair as OpenSSL makes it: auth (PKCS#8) and auth.pub in PEM, the form that
    gen-cert wrote before it wrote OpenSSH lines."""
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out",
                    str(directory / "auth")], check=True, capture_output=True, timeout=30)
    (directory / "auth").chmod(0o600)
    subprocess.run(["openssl", "pkey", "-in", str(directory / "auth"), "-pubout", "-out",
                    str(directory / "auth.pub")], check=True, capture_output=True, timeout=30)
    return Keys(directory)


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """Five more key pairs: alice, bob, carol, dave (gen-cert), erin (PEM)."""
    made = {name: make_keys(tmp_path_factory.mktemp(name), x509=False)
            for name in ("alice", "bob", "carol", "dave")}
    made["erin"] = pem_keys(tmp_path_factory.mktemp("erin"))
    return made


@pytest.fixture
def rights(tmp_path, keys, people):
    """A key directory whose auth.pub is the authorized-keys file above (the session's
    certificate, and its own key as PEM)."""
    d = tmp_path / "relay-keys"
    d.mkdir()
    for f in ("server.crt", "server.key", "auth"):
        shutil.copy(keys.dir / f, d / f)
    (d / "auth").chmod(0o600)
    lines = [keys.pub.read_text().rstrip("\n"),
             "# per-key rights",
             ssh_line(people["alice"], 'role="entry-point"', "alice"),
             ssh_line(people["bob"], 'groups="1,5-7"', "bob"),
             "",
             ssh_line(people["carol"], 'from="127.0.0.2"', "carol"),
             ssh_line(people["dave"], 'max-channels="3"', "dave"),
             people["erin"].pub.read_text().rstrip("\n")]
    (d / "auth.pub").write_text("\n".join(lines) + "\n")
    return Keys(d)


@pytest.fixture
def relay(start_daemon, rights):
    port = free_port("127.0.0.1")
    args = ["-p", port, "--host", "127.0.0.1", "-c", rights.cert, "-k", rights.key,
            "-a", rights.pub, "-v"]
    if RELAY_WORKERS:
        args += ["--workers", RELAY_WORKERS]
    d = start_daemon("relay-server", args)
    d.wait_log("listening on 127.0.0.1:%d" % port)
    d.port = port
    peers = []
    yield d, peers
    for p in peers:
        p.close()


def dial(relay, rights, who, role, group, **kw):
    d, peers = relay
    p = ChanPeer(d.port, rights, role, group, priv=who.priv if who else None, **kw)
    peers.append(p)
    return p


def refusal_line(relay, code_text, comment):
    return relay[0].wait_log(re.compile(
        r"authentication refused: %s: key (SHA256:\S+) \(%s\) asked" % (
            re.escape(code_text), comment)))


def test_role_not_allowed(relay, rights, people, tmp_path):
    alice = people["alice"]
    assert dial(relay, rights, alice, "entry", 0).wait_auth() == AUTH_OK
    p = dial(relay, rights, alice, "reverse", 0)
    assert p.wait_auth() == AUTH_ROLE, describe(p.events)
    p.wait_closed(5)
    m = refusal_line(relay, "role not allowed for this key", "alice")
    # The fingerprint is the one OpenSSH prints for that line.
    line = tmp_path / "alice.pub"
    line.write_text(ssh_line(alice, "", "alice").lstrip() + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(line)], capture_output=True,
                         text=True, timeout=30, check=True).stdout.split()
    assert out[1] == m.group(1), "ssh-keygen: %s, relay: %s" % (out, m.group(1))
    assert "asked to be reverse-proxy in group 0" in relay[0].log()
    assert "allows role=entry-point" in relay[0].log()


def test_group_not_allowed(relay, rights, people):
    bob = people["bob"]
    for group in (1, 5, 7):
        assert dial(relay, rights, bob, "reverse", group).wait_auth() == AUTH_OK, group
    for group in (0, 2, 4, 8, 4294967295):
        assert dial(relay, rights, bob, "entry", group).wait_auth() == AUTH_GROUP, group
    refusal_line(relay, "group not allowed for this key", "bob")
    assert "allows groups=1,5-7" in relay[0].log()


def test_source_not_allowed(relay, rights, people):
    carol = people["carol"]
    assert dial(relay, rights, carol, "entry", 0, bind="127.0.0.2").wait_auth() == AUTH_OK
    p = dial(relay, rights, carol, "entry", 0)          # from 127.0.0.1
    assert p.wait_auth() == AUTH_SOURCE, describe(p.events)
    refusal_line(relay, "source address not allowed for this key", "carol")
    assert "allows from=127.0.0.2" in relay[0].log()
    # The unrestricted key comes from anywhere.
    assert dial(relay, rights, None, "entry", 0, bind="127.0.0.3").wait_auth() == AUTH_OK


def test_max_channels(relay, rights, people):
    dave = people["dave"]
    held = [dial(relay, rights, dave, "entry", 0) for _ in range(3)]
    assert [p.wait_auth() for p in held] == [AUTH_OK] * 3
    extra = dial(relay, rights, dave, "reverse", 0)
    assert extra.wait_auth() == AUTH_FULL, describe(extra.events)
    dave_line = rights.pub.read_text().splitlines().index(
        ssh_line(dave, 'max-channels="3"', "dave")) + 1
    assert re.search(r"this key's channel limit reached: key SHA256:\S+ \(dave\) holds 3 "
                     r"channels \(max-channels=3, line %d\)" % dave_line, relay[0].log())
    # One channel less: a new one fits again (the relay frees the old one in its loop).
    held[0].close()
    deadline = time.monotonic() + 10 * SLOW
    while True:
        code = dial(relay, rights, dave, "entry", 0).wait_auth()
        if code == AUTH_OK or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert code == AUTH_OK


def test_refused_reverse_proxy_backs_off_and_others_carry_on(tunnel, echo_server, rights,
                                                            people):
    """A reverse-proxy run with an entry-point-only key: the relay refuses each of its
    channels with the reason, the reverse-proxy says so once and backs off (1 s, then 2 s,
    ... up to a minute), and the tunnel beside it, with an unrestricted key, works."""
    t = tunnel(keys=rights)
    # One channel wanted: one dial at a time from the start.
    bad = t.start_reverse_proxy(key=people["alice"].priv, extra=["--pool-min", "1"])
    bad.wait_log("refused authentication: role not allowed for this key", timeout=10 * SLOW)
    time.sleep(4)
    tries = len(re.findall(r"authentication refused: role not allowed", t.relay.log()))
    # In the 4 s after the first refusal, 100 ms doubling (the backoff after an ordinary
    # failure) would have made 5 more tries (0.1, 0.3, 0.7, 1.5, 3.1 s); 1 s doubling
    # (+-25 % jitter) makes 1 or 2 (about 1 s, then 3 s).
    assert 2 <= tries <= 3, "%d refusals in the 4 s after the first" % tries
    assert len(re.findall(r"refused authentication: role not allowed", bad.log())) == 1
    for _ in range(5):
        assert t.probe(), "the good tunnel stopped carrying traffic"


def test_keys_without_options_may_do_anything(relay, rights, people):
    """The session's key (an OpenSSH line from gen-cert) and erin's (PEM, as earlier
    gen-certs wrote): either role, any group, from anywhere."""
    for who in (None, people["erin"]):
        for role, group, bind in (("entry", 0, None), ("reverse", 9, "127.0.0.5"),
                                  ("entry", 4294967295, "127.0.0.6")):
            p = dial(relay, rights, who, role, group, bind=bind)
            assert p.wait_auth() == AUTH_OK, (who, role, group, describe(p.events))


def test_malformed_line_stops_the_relay_with_file_and_line(rights, people):
    text = rights.pub.read_text().splitlines()
    i = next(n for n, l in enumerate(text) if l.endswith(" alice"))
    text[i] = 'role="entry-pointe" ' + text[i].split(" ", 1)[1]   # alice's line, mistyped
    rights.pub.write_text("\n".join(text) + "\n")
    p = subprocess.run([bin_path("relay-server"), "-p", str(free_port("127.0.0.1")), "--host",
                        "127.0.0.1", "-c", rights.cert, "-k", rights.key, "-a", rights.pub],
                       capture_output=True, text=True, timeout=10 * SLOW)
    assert p.returncode == 2, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("relay-server: --auth-public-key: %s:%d: " % (
        rights.pub, i + 1)), lines
    assert "entry-pointe" in lines[0]


def test_bind_address_meets_from(tunnel, rights, people):
    """carol's line says from="127.0.0.2": a reverse-proxy with her key and -b 127.0.0.2
    is admitted and carries the tunnel's traffic; one without -b (its channels come from
    127.0.0.1) is refused with the reason."""
    t = tunnel(keys=rights, reverse_proxy=False, ready=False)
    carol = people["carol"].priv
    bad = t.start_reverse_proxy(key=carol, extra=["--pool-min", "1"])
    bad.wait_log("refused authentication: source address not allowed for this key",
                 timeout=10 * SLOW)
    t.relay.wait_log("from=127.0.0.2")
    good = t.start_reverse_proxy(key=carol, extra=["-b", "127.0.0.2"], wait_connected=True)
    t.wait_ready()
    for _ in range(3):
        assert t.probe()
    # Each pairing names both keys, the group and what the OPEN asked.
    t.relay.wait_log(re.compile(
        r"group 0: entry-point 127\.0\.0\.1:\d+ key SHA256:\S+ \(\S+\) paired with "
        r"reverse-proxy 127\.0\.0\.2:\d+ key SHA256:\S+ \(carol\): to 127\.0\.0\.1:%d "
        r"for 127\.0\.0\.1:\d+ \(source as the entry-point claims it\)" % t.probe_echo.port))
    assert "refused" not in good.log()


@pytest.mark.parametrize("value", ["localhost", "127.0.0.1:80", "[::1", "300.1.1.1", ""])
def test_bad_bind_address_exits_2(keys, value):
    r = subprocess.run([bin_path("entry-point"), "-r", "5001:5001", "-c", keys.cert,
                        "-a", keys.priv, "-b", value], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2, r
    assert "--bind-address" in r.stderr or "-b" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_bind_address_that_is_not_local_says_so(tunnel, rights):
    """-b with an address this host does not have: each dial fails with the reason."""
    t = tunnel(keys=rights, reverse_proxy=False, entry_point=False, ready=False)
    rp = t.start_reverse_proxy(extra=["-b", "192.0.2.1", "--pool-min", "1"])
    rp.wait_log("cannot bind to 192.0.2.1 (--bind-address): Cannot assign requested "
                "address", timeout=10 * SLOW)
    assert rp.alive()


def test_max_channels_holds_while_the_pool_asks_for_more(tunnel, rights, people):
    """dave's line allows 3 channels; his reverse-proxy wants 6 idle ones.  The relay holds
    him at 3, both sides say why once, his pool backs off (1 s doubling, not 100 ms) and the
    3 channels carry the tunnel's traffic."""
    t = tunnel(keys=rights, reverse_proxy=False, ready=False, relay_args=["-v"])
    rp = t.start_reverse_proxy(key=people["dave"].priv, extra=["--pool-min", "6"])
    rp.wait_log("refused authentication: this key's channel limit reached", timeout=10 * SLOW)
    t.wait_ready()
    # A quiet window, no traffic: 1 s doubling (with jitter) makes 2 or 3 tries in 5 s, 4 when
    # a success just before reset the backoff (seen once in CI); 100 ms doubling, the backoff
    # after an ordinary failure, makes 5 or 6.
    mark = len(t.relay.log())
    time.sleep(5)
    log = t.relay.log()
    admitted = len(re.findall(r"reverse-proxy authenticated, group 0, key SHA256:\S+ \(dave\)",
                              log))
    refusals = re.findall(r"channel limit reached: key SHA256:\S+ \(dave\) holds (\d+) "
                          r"channels", log)
    quiet = re.findall(r"channel limit reached: key SHA256:\S+ \(dave\)", log[mark:])
    # Held at 3: every refusal found the key holding exactly 3 (one of them may close and be
    # replaced before the window, when a probe's channel is not reused).
    assert admitted >= 3, "%d of dave's channels admitted" % admitted
    assert refusals and set(refusals) == {"3"}, refusals
    assert len(quiet) <= 4, "%d refusals in 5 quiet seconds" % len(quiet)
    # Said once (again only after a success in between).
    assert len(re.findall(r"channel limit reached", rp.log())) <= 2
    for _ in range(5):
        assert t.probe()
