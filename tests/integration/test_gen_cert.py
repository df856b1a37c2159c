"""gen-cert: the x509 and ed25519 key pairs, checked with OpenSSL's own tools.

Read top to bottom: x509 with the default names and with --dns/--ip, the
modes of the files, no overwrite without --force, bad values as usage
errors, then the ed25519 pair, then --force replacing a pair all or
nothing.  Every test writes into its own tmp_path.
"""

import base64
import ipaddress
import os
import pwd
import re
import resource
import signal
import socket
import stat
import subprocess

import pytest

BIN_DIR = os.environ.get("TRP_BIN_DIR", "/work/main/build/linux/amd64")
GEN_CERT = os.path.join(BIN_DIR, "gen-cert")


def gen_cert(*args, cwd=None, preexec_fn=None):
    """Run gen-cert with args; returns the CompletedProcess (text)."""
    return subprocess.run([GEN_CERT, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=30, preexec_fn=preexec_fn)


def openssl(*args):
    """Run an openssl command that must succeed; returns its stdout."""
    p = subprocess.run(["openssl", *args], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, f"openssl {' '.join(args)}: {p.stderr}"
    return p.stdout


def sans(cert):
    """The certificate's subjectAltName as a list of ("DNS", name) and
    ("IP", ip_address) pairs, in order."""
    out = openssl("x509", "-in", str(cert), "-noout", "-ext",
                  "subjectAltName")
    lines = out.splitlines()
    assert lines[0].strip() == "X509v3 Subject Alternative Name:"
    result = []
    for entry in " ".join(lines[1:]).split(","):
        kind, _, value = entry.strip().partition(":")
        if kind == "DNS":
            result.append(("DNS", value))
        elif kind == "IP Address":
            result.append(("IP", ipaddress.ip_address(value)))
        else:
            pytest.fail(f"unexpected subjectAltName entry {entry!r}")
    return result


def ssh_keygen_fingerprint(pub):
    """The SHA256 fingerprint that OpenSSH's ssh-keygen -l prints for the key file pub."""
    p = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, "ssh-keygen -l: %s" % p.stderr
    return p.stdout.split()[1]


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def files(directory):
    """{name: (inode, content)} of every entry of directory."""
    return {name: (os.lstat(directory / name).st_ino,
                   (directory / name).read_bytes())
            for name in sorted(os.listdir(directory))}


def assert_all_new(directory, old):
    """directory holds the same names as old (no temporary file left), each
    a new file (another inode) with new content."""
    new = files(directory)
    assert sorted(new) == sorted(old)
    for name in old:
        assert new[name][0] != old[name][0], f"{name}: same inode"
        assert new[name][1] != old[name][1], f"{name}: same content"


def one_line(stderr):
    """A usage error is exactly one line, "gen-cert: ..."; returns it."""
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line, got {stderr!r}"
    assert lines[0].startswith("gen-cert: ")
    return lines[0]


# x509


def test_x509_defaults_to_localhost_and_loopback(tmp_path):
    out = tmp_path / "cert"
    p = gen_cert("x509", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert "using --dns localhost --ip 127.0.0.1,::1" in p.stderr

    crt, key = out / "server.crt", out / "server.key"
    assert sans(crt) == [("DNS", "localhost"),
                         ("IP", ipaddress.ip_address("127.0.0.1")),
                         ("IP", ipaddress.ip_address("::1"))]
    assert f"wrote {crt} (certificate, EC P-256, SAN: DNS:localhost" in \
        p.stdout
    assert f"wrote {key} (private key, mode 0600)" in p.stdout


def test_x509_names_the_given_dns_names_and_addresses(tmp_path):
    out = tmp_path / "keys"
    p = gen_cert("x509", "-o", str(out),
                 "--dns", "relay.example.com,localhost",
                 "-i", "192.0.2.7,fd00::5", "--days", "30")
    assert p.returncode == 0, p.stderr
    crt, key = out / "server.crt", out / "server.key"

    assert sans(crt) == [("DNS", "relay.example.com"),
                         ("DNS", "localhost"),
                         ("IP", ipaddress.ip_address("192.0.2.7")),
                         ("IP", ipaddress.ip_address("fd00::5"))]
    text = openssl("x509", "-in", str(crt), "-noout", "-text")
    assert "CN = relay.example.com" in text
    assert "NIST CURVE: P-256" in text
    assert "ecdsa-with-SHA256" in text
    assert "CA:FALSE" in text
    assert "TLS Web Server Authentication" in text

    # It verifies as its own trust anchor, the way the clients pin it ...
    p = subprocess.run(["openssl", "verify", "-partial_chain", "-CAfile",
                        str(crt), str(crt)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    # ... and the key is the certificate's.
    assert openssl("x509", "-in", str(crt), "-noout", "-pubkey") == \
        openssl("pkey", "-in", str(key), "-pubout")


def test_x509_default_directory_is_cert_and_is_made(tmp_path):
    p = gen_cert("x509", "-d", "relay.test", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "cert").is_dir()
    assert sans(tmp_path / "cert" / "server.crt") == [("DNS", "relay.test")]


def test_x509_private_key_is_0600(tmp_path):
    out = tmp_path / "cert"
    assert gen_cert("x509", "-o", str(out)).returncode == 0
    assert mode(out / "server.key") == 0o600
    assert mode(out / "server.crt") & 0o022 == 0


def test_x509_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "cert"
    assert gen_cert("x509", "-o", str(out)).returncode == 0
    before = {f: (out / f).read_bytes() for f in ("server.crt", "server.key")}

    p = gen_cert("x509", "-o", str(out))
    assert p.returncode == 1
    assert f"{out}/server.key exists (use --force to replace it)" in p.stderr
    assert {f: (out / f).read_bytes() for f in before} == before

    # One file left is enough to refuse, and the other is not written.
    (out / "server.crt").unlink()
    p = gen_cert("x509", "-o", str(out))
    assert p.returncode == 1
    assert "server.key exists" in p.stderr
    assert not (out / "server.crt").exists()


def test_x509_force_replaces_both_files(tmp_path):
    out = tmp_path / "cert"
    assert gen_cert("x509", "-o", str(out)).returncode == 0
    old = files(out)
    os.chmod(out / "server.key", 0o644)

    p = gen_cert("x509", "-o", str(out), "--force", "--dns", "new.test")
    assert p.returncode == 0, p.stderr
    assert_all_new(out, old)
    assert mode(out / "server.key") == 0o600
    assert mode(out / "server.crt") == 0o644
    assert sans(out / "server.crt") == [("DNS", "new.test")]
    assert openssl("x509", "-in", str(out / "server.crt"), "-noout",
                   "-pubkey") == \
        openssl("pkey", "-in", str(out / "server.key"), "-pubout")


@pytest.mark.parametrize("value", ["1.2.3.x", "256.1.1.1", "1.2.3",
                                   "fe80::1%eth0", "localhost"])
def test_x509_bad_ip_is_a_usage_error_naming_it(tmp_path, value):
    out = tmp_path / "cert"
    p = gen_cert("x509", "-o", str(out), "--ip", f"127.0.0.1,{value}")
    assert p.returncode == 2
    line = one_line(p.stderr)
    assert "--ip" in line and f"'{value}'" in line
    assert not out.exists()


@pytest.mark.parametrize("value", ["bad_name.test", "-dash.test", "a..b",
                                   "10.0.0.1"])
def test_x509_bad_dns_name_is_a_usage_error_naming_it(tmp_path, value):
    out = tmp_path / "cert"
    p = gen_cert("x509", "-o", str(out), "--dns", value)
    assert p.returncode == 2
    line = one_line(p.stderr)
    assert "--dns" in line and f"'{value}'" in line
    assert not out.exists()


# ed25519


def test_ed25519_pair_is_readable_by_openssl_and_ssh_keygen(tmp_path):
    out = tmp_path / "cert"
    p = gen_cert("ed25519", "-o", str(out), "-C", "alice@laptop")
    assert p.returncode == 0, p.stderr
    auth, pub = out / "auth", out / "auth.pub"
    assert f"wrote {auth} (ed25519 private key, mode 0600)" in p.stdout

    assert "ED25519 Private-Key" in openssl("pkey", "-in", str(auth),
                                            "-noout", "-text")
    # auth.pub is one OpenSSH line; ssh-keygen reads it, and its fingerprint is the one
    # gen-cert printed (and the relay logs).
    line = pub.read_text()
    assert re.fullmatch(r"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[A-Za-z0-9+/]{48} alice@laptop\n",
                        line), line
    fpr = ssh_keygen_fingerprint(pub)
    assert f"wrote {pub} (ed25519 public key, fingerprint {fpr})" in p.stdout
    # The key in it is the private key's own (OpenSSL's public key, DER, ends with it).
    der = base64.b64decode("".join(openssl("pkey", "-in", str(auth), "-pubout")
                                   .splitlines()[1:-1]))
    assert base64.b64decode(line.split()[1])[-32:] == der[-32:]
    assert mode(auth) == 0o600
    assert mode(pub) & 0o022 == 0


def test_ed25519_comment_defaults_to_user_at_host(tmp_path):
    out = tmp_path / "cert"
    assert gen_cert("ed25519", "-o", str(out)).returncode == 0
    comment = (out / "auth.pub").read_text().split(" ", 2)[2].strip()
    assert comment == "%s@%s" % (pwd.getpwuid(os.geteuid()).pw_name, socket.gethostname())


def test_ed25519_refuses_a_bad_comment_and_writes_nothing(tmp_path):
    out = tmp_path / "cert"
    for bad in ("x" * 256, "tab\tis fine but not \x01"):
        p = gen_cert("ed25519", "-o", str(out), "-C", bad)
        assert p.returncode == 2, p
        assert "-C: a comment is at most 255 printable bytes" in one_line(p.stderr)
        assert not (out / "auth").exists() and not (out / "auth.pub").exists()


def test_pubkey_prints_the_line_of_a_private_key(tmp_path):
    out = tmp_path / "cert"
    assert gen_cert("ed25519", "-o", str(out), "-C", "c1").returncode == 0
    p = gen_cert("pubkey", "-a", str(out / "auth"), "-C", "c1")
    assert p.returncode == 0, p.stderr
    assert p.stdout == (out / "auth.pub").read_text()
    # Its default key is cert/auth (from the working directory).
    p = gen_cert("pubkey", "--comment", "c2", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[:2] == (out / "auth.pub").read_text().split()[:2]
    assert p.stdout.split()[2] == "c2"
    # A file that is not a private key, or one others may read: one line, exit 2.
    p = gen_cert("pubkey", "-a", str(out / "auth.pub"))
    assert p.returncode == 2
    one_line(p.stderr)
    (out / "auth").chmod(0o644)
    p = gen_cert("pubkey", "-a", str(out / "auth"))
    assert p.returncode == 2
    assert str(out / "auth") in one_line(p.stderr)


def test_ed25519_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "cert"
    assert gen_cert("ed25519", "-o", str(out)).returncode == 0
    old = (out / "auth").read_bytes()

    p = gen_cert("ed25519", "-o", str(out))
    assert p.returncode == 1
    assert f"{out}/auth exists (use --force to replace it)" in p.stderr
    assert (out / "auth").read_bytes() == old

    p = gen_cert("ed25519", "-o", str(out), "--force")
    assert p.returncode == 0, p.stderr
    assert (out / "auth").read_bytes() != old
    assert mode(out / "auth") == 0o600
    assert gen_cert("pubkey", "-a", str(out / "auth"), "-C", "x").stdout.split()[1] == \
        (out / "auth.pub").read_text().split()[1]


# --force: all or nothing


def test_ed25519_force_replaces_both_files(tmp_path):
    out = tmp_path / "cert"
    assert gen_cert("ed25519", "-o", str(out), "-C", "old").returncode == 0
    old = files(out)

    p = gen_cert("ed25519", "-o", str(out), "-C", "new", "--force")
    assert p.returncode == 0, p.stderr
    assert_all_new(out, old)
    assert mode(out / "auth") == 0o600
    assert mode(out / "auth.pub") == 0o644
    assert (out / "auth.pub").read_text().endswith(" new\n")
    assert gen_cert("pubkey", "-a", str(out / "auth"), "-C", "new").stdout == \
        (out / "auth.pub").read_text()


def file_size_limit(limit):
    """A preexec_fn: files may grow to limit bytes, and a write past it fails
    with EFBIG (SIGXFSZ ignored) instead of killing the process."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


# The first file of each pair (the private key) fits in the limit, the
# second does not: the run fails after one new file is written in full.
@pytest.mark.parametrize("args,limit,failing", [
    (["x509"], 400, "server.crt"),                  # key 241 bytes, crt ~640
    (["ed25519", "-C", "c" * 200], 200, "auth.pub"),  # auth 119, line 282
], ids=["x509", "ed25519"])
def test_force_failing_mid_run_leaves_the_old_pair(tmp_path, args, limit,
                                                   failing):
    out = tmp_path / "cert"
    assert gen_cert(*args, "-o", str(out)).returncode == 0
    old = files(out)

    p = gen_cert(*args, "-o", str(out), "--force",
                 preexec_fn=file_size_limit(limit))
    assert p.returncode == 1, p
    assert f"cannot write {out}/{failing}" in p.stderr
    assert "wrote" not in p.stdout
    # Both old files as they were (same inode, same bytes), and no
    # temporary file of the run left beside them.
    assert files(out) == old


def test_force_refuses_a_directory_in_place_of_one_file(tmp_path):
    out = tmp_path / "cert"
    assert gen_cert("ed25519", "-o", str(out)).returncode == 0
    (out / "auth.pub").unlink()
    (out / "auth.pub").mkdir()
    old_auth = (os.lstat(out / "auth").st_ino, (out / "auth").read_bytes())

    p = gen_cert("ed25519", "-o", str(out), "--force")
    assert p.returncode == 1
    assert f"{out}/auth.pub is a directory" in p.stderr
    assert (os.lstat(out / "auth").st_ino, (out / "auth").read_bytes()) == \
        old_auth
    assert sorted(os.listdir(out)) == ["auth", "auth.pub"]


def test_force_says_which_file_is_new_when_a_rename_fails(tmp_path):
    """rename(2) is atomic per file, not for the pair: when the second rename
    fails (here: the old auth.pub is immutable), the first file is new
    already, and gen-cert says so; no temporary file is left."""
    out = tmp_path / "cert"
    assert gen_cert("ed25519", "-o", str(out)).returncode == 0
    old = files(out)
    if subprocess.run(["chattr", "+i", str(out / "auth.pub")],
                      capture_output=True).returncode != 0:
        pytest.skip("chattr +i does not work here (not root, or the file "
                    "system has no such attribute)")
    try:
        p = gen_cert("ed25519", "-o", str(out), "--force")
    finally:
        subprocess.run(["chattr", "-i", str(out / "auth.pub")], check=True)
    assert p.returncode == 1
    assert f"cannot replace {out}/auth.pub" in p.stderr
    assert f"{out}/auth was replaced already" in p.stderr
    now = files(out)
    assert sorted(now) == ["auth", "auth.pub"]
    assert now["auth.pub"] == old["auth.pub"]
    assert now["auth"] != old["auth"]


# The command line


@pytest.mark.parametrize("args", [[], ["rsa"], ["--force"],
                                  ["x509", "--days", "0"],
                                  ["ed25519", "--dns", "x.test"]])
def test_usage_errors_are_one_line_and_exit_2(tmp_path, args):
    p = gen_cert(*args, cwd=tmp_path)
    assert p.returncode == 2
    one_line(p.stderr)
    assert not (tmp_path / "cert").exists()


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["x509", "--help"],
                                  ["ed25519", "-h"], ["pubkey", "--help"]])
def test_help_exits_0(args):
    p = gen_cert(*args)
    assert p.returncode == 0
    assert p.stdout.startswith("usage: gen-cert")


def test_version_exits_0():
    p = gen_cert("--version")
    assert p.returncode == 0
    assert p.stdout.startswith("gen-cert ")
