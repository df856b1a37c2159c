"""Private key files are checked before they are read, as OpenSSH's StrictModes does: the
relay's TLS key (-k, --server-key) and the clients' ed25519 key (-a, --auth-private-key) must
be regular files, with no permission bit for group or others, owned by the user running the
program or by root.  Anything else stops the start: exit 2, one line naming the flag and the
file.

Read top to bottom: the relay's key (modes, owner, not a file, then the modes it accepts),
then the entry-point's and the reverse-proxy's key.  Every test works on a copy of the
session's keys in its own tmp_path; a key of mode 0600 owned by the user works in every other
test of the suite.
"""

import os
import shutil
import subprocess

import pytest

from conftest import Keys, SLOW, bin_path, free_port, run_once

# No relay of the suite's worker count in this file: the second pass alone runs it.
pytestmark = run_once

OTHER_UID = 12345
CLIENTS = ["entry-point", "reverse-proxy"]

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="only root can give a file to another user")


@pytest.fixture
def own_keys(tmp_path, keys):
    """A copy of the session's keys (modes kept) that a test may chmod and chown."""
    d = tmp_path / "keys"
    shutil.copytree(keys.dir, d)
    return Keys(d)


def run(program, *args, timeout=10):
    """Run a program to completion (killed at the timeout: then the test fails)."""
    return subprocess.run([bin_path(program)] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout * SLOW, stdin=subprocess.DEVNULL)


def relay_args(keys, server_key=None):
    return ["-p", free_port("127.0.0.1"), "--host", "127.0.0.1", "-c", keys.cert,
            "-k", server_key or keys.key, "-a", keys.pub]


def client_args(program, keys):
    args = ["-s", "127.0.0.1:%d" % free_port("127.0.0.1"), "-c", keys.cert, "-a", keys.priv]
    if program == "entry-point":
        args += ["-r", "127.0.0.1:%d:%d" % (free_port("127.0.0.1"), free_port("127.0.0.1"))]
    return args


def refusal(p, program, flag, path):
    """p exited 2 with one line "PROGRAM: FLAG: PATH: ..."; returns the line."""
    assert p.returncode == 2, "exit %d, stderr %r" % (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, "expected one line on stderr, got:\n%s" % p.stderr
    assert lines[0].startswith("%s: %s: %s: " % (program, flag, path)), lines[0]
    return lines[0]


# The relay's TLS key


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660], ids=oct)
def test_relay_refuses_a_server_key_others_may_read(own_keys, mode):
    own_keys.key.chmod(mode)
    p = run("relay-server", *relay_args(own_keys))
    line = refusal(p, "relay-server", "--server-key", own_keys.key)
    assert line.endswith("permissions %04o are too open for a private key (chmod 600 %s)"
                         % (mode, own_keys.key)), line


@needs_root
def test_relay_refuses_a_server_key_of_another_user(own_keys):
    os.chown(own_keys.key, OTHER_UID, -1)
    own_keys.key.chmod(0o600)
    p = run("relay-server", *relay_args(own_keys))
    line = refusal(p, "relay-server", "--server-key", own_keys.key)
    assert line.endswith("owned by uid %d, not by uid 0 (the user reading it) or root"
                         % OTHER_UID), line


def test_relay_refuses_a_server_key_that_is_not_a_file(own_keys, tmp_path):
    for path in (tmp_path / "a-directory", tmp_path / "a-fifo"):
        if path.name == "a-fifo":
            os.mkfifo(path, 0o600)      # refused at once, no wait for a writer
        else:
            path.mkdir(mode=0o700)
        p = run("relay-server", *relay_args(own_keys, server_key=path))
        line = refusal(p, "relay-server", "--server-key", path)
        assert line.endswith("not a regular file"), line


@pytest.mark.parametrize("mode", [0o600, 0o400], ids=oct)
def test_relay_starts_with_a_key_only_its_user_may_read(own_keys, start_daemon, mode):
    own_keys.key.chmod(mode)
    args = relay_args(own_keys)
    relay = start_daemon("relay-server", args)
    relay.wait_log("listening on 127.0.0.1:%d" % args[1])


# The clients' ed25519 key


@pytest.mark.parametrize("program", CLIENTS)
def test_client_refuses_an_auth_key_its_group_may_read(own_keys, program):
    own_keys.priv.chmod(0o640)
    p = run(program, *client_args(program, own_keys))
    line = refusal(p, program, "--auth-private-key", own_keys.priv)
    assert line.endswith("permissions 0640 are too open for a private key (chmod 600 %s)"
                         % own_keys.priv), line


@needs_root
@pytest.mark.parametrize("program", CLIENTS)
def test_client_refuses_an_auth_key_of_another_user(own_keys, program):
    os.chown(own_keys.priv, OTHER_UID, -1)
    own_keys.priv.chmod(0o600)
    p = run(program, *client_args(program, own_keys))
    line = refusal(p, program, "--auth-private-key", own_keys.priv)
    assert "owned by uid %d" % OTHER_UID in line, line
