"""Authentication and trust.

- A client whose ed25519 key is not in the relay's -a file is refused, and both sides say why.
- The relay's -a file may hold several keys: clients with either key work.
- A client pinned to another certificate (-c from another gen-cert run) refuses the relay.
- A client that dials the relay by an address the certificate does not name refuses it.
"""

import re

import pytest

from conftest import (Keys, free_port, has_ipv6_loopback, make_keys, pseudo_random, round_trip,
                      KiB, SLOW)


def test_unknown_key_is_refused_and_both_logs_say_why(tunnel, tmp_path):
    stranger = make_keys(tmp_path / "stranger", x509=False)
    t = tunnel(reverse_proxy=False, entry_point=False, relay_args=["-v"])

    rp = t.start_reverse_proxy(key=stranger.priv)
    t.relay.wait_log("authentication failed")
    t.relay.wait_log("public key not accepted")
    rp.wait_log("refused authentication")
    # (The contract writes "relay HOST:PORT refused ..."; a colon after the port is tolerated.)
    rp.wait_log(re.compile(r"relay %s:? refused authentication: public key not accepted"
                           % re.escape(t.server_address)))
    assert "authenticated" not in t.relay.log()  # (-v: the relay logs every success)

    ep = t.start_entry_point(key=stranger.priv)
    ep.wait_log("refused authentication: public key not accepted")
    # A refused client keeps running (it retries with backoff), it does not crash.
    assert rp.alive() and ep.alive() and t.relay.alive()


def test_two_accepted_keys(tunnel, tmp_path, echo_server, keys):
    second = make_keys(tmp_path / "second", x509=False)
    both = tmp_path / "both.pub"
    both.write_bytes(keys.pub.read_bytes() + second.pub.read_bytes())
    relay_keys = Keys(keys.dir)
    relay_keys.pub = both

    echo = echo_server()
    port = free_port("127.0.0.1")
    t = tunnel(keys=relay_keys, reverse_proxy=False, entry_point=False)
    t.start_reverse_proxy(key=keys.priv)  # the first key of the file
    t.start_entry_point(["127.0.0.1:%d:127.0.0.1:%d" % (port, echo.port)],
                        key=second.priv)  # the second one
    t.wait_ready()
    t.relay.wait_log("accepting 2 key(s)")

    payload = pseudo_random("two keys", 64 * KiB)
    assert round_trip("127.0.0.1", port, payload, timeout=10 * SLOW) == payload
    assert "authentication failed" not in t.relay.log()


def test_other_certificate_is_refused(tunnel, tmp_path):
    other = make_keys(tmp_path / "other", ed25519=False)
    t = tunnel(reverse_proxy=False, entry_point=False, relay_args=["-v"])

    rp = t.start_reverse_proxy(cert=other.cert)
    rp.wait_log("certificate verify failed")
    ep = t.start_entry_point(cert=other.cert)
    ep.wait_log("certificate verify failed")
    rp.wait_log("relay %s: TLS handshake failed:" % t.server_address)
    assert "authenticated" not in t.relay.log()
    assert "connected (group" not in rp.log() + ep.log()


NAME_MISMATCH = ["127.0.0.2"] + (["::1"] if has_ipv6_loopback() else [])


@pytest.mark.parametrize("dialled", NAME_MISMATCH)
def test_address_not_in_certificate_is_refused(dialled, tunnel, tmp_path, keys):
    """The certificate names 127.0.0.1 only; the relay is dialled as `dialled`."""
    narrow = make_keys(tmp_path / "narrow", x509_args=("--ip", "127.0.0.1"), ed25519=False)
    narrow.pub, narrow.priv = keys.pub, keys.priv

    # Control: the same certificate is accepted when the relay is dialled as 127.0.0.1.
    good = tunnel(keys=narrow, host="127.0.0.1", entry_point=False)
    good.reverse_proxy.wait_log("connected (group 0)")

    bad = tunnel(keys=narrow, host=dialled, reverse_proxy=False, entry_point=False,
                 relay_args=["-v"])
    rp = bad.start_reverse_proxy()
    rp.wait_log("certificate verify failed")
    assert "authenticated" not in bad.relay.log()
    assert "connected (group" not in rp.log()
