"""Helpers for the tests of the installed product: the systemd units, make install, the .deb.

- read_unit(path): the [Service] settings of a unit file, as systemd reads them (the keys
  that the tests use: ExecStart=, ExecReload=, LoadCredential=, ...).
- exec_start(unit, creds, instance): ExecStart='s command line with the specifiers that our
  units use (%d the credentials directory, %i the instance) replaced as systemd would.
- load_credentials(unit, root, creds): what LoadCredential= does before the start: a copy of
  each named file in the credentials directory, mode 0440 as stat shows a file that systemd
  made 0400 and then let the service's user read by an ACL entry (its mask is the group's
  bits); the daemon gets the directory as $CREDENTIALS_DIRECTORY.
- in_root(root, dirs, argv): argv run in a private mount namespace where each of dirs (say
  /usr/local and /etc) shows the files of root (a DESTDIR, an unpacked .deb) above the
  machine's own; nothing of the machine is changed.  The command execs in place, so its PID
  is the daemon's ($MAINPID).
"""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNITS = ("relay-server/relay-server.service", "reverse-proxy/reverse-proxy.service",
         "entry-point/entry-point@.service")
CONFIGS = ("relay-server/relay-server.conf", "reverse-proxy/reverse-proxy.conf",
           "entry-point/entry-point-main.conf")


def read_unit(path):
    """{key: [values]} of the [Service] section of the unit file at path."""
    settings = {}
    section = None
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service" and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def specifiers(text, creds, instance):
    return text.replace("%d", str(creds)).replace("%i", instance or "")


def exec_start(unit, creds, instance=None):
    """The argv of the unit's one ExecStart= line, specifiers replaced."""
    lines = read_unit(unit)["ExecStart"]
    assert len(lines) == 1, lines
    return [specifiers(a, creds, instance) for a in shlex.split(lines[0])]


def load_credentials(unit, root, creds):
    """Copy each LoadCredential=ID:PATH's file (PATH under root) to creds/ID, mode 0440."""
    creds = Path(creds)
    creds.mkdir(parents=True, exist_ok=True)
    for value in read_unit(unit).get("LoadCredential", []):
        cred_id, source = value.split(":", 1)
        target = creds / cred_id
        shutil.copyfile(Path(str(root) + source), target)
        os.chmod(target, 0o440)
    return creds


def namespace_problem():
    """None if in_root can work here, else why not (for a skip)."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    p = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"],
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        return "no private mount namespace here (unshare -m: %s)" % p.stderr.strip()
    return None


def in_root(root, dirs, argv):
    """argv, run where each directory of dirs shows root's files above its own."""
    mounts = " && ".join(
        "mount -t overlay overlay -o lowerdir=%s:%s %s"
        % (shlex.quote(str(root) + d), shlex.quote(d), shlex.quote(d)) for d in dirs)
    return ["unshare", "-m", "sh", "-c", mounts + ' && exec "$@"', "sh"] + [str(a) for a in argv]


def set_options(conf, **values):
    """Rewrite conf's 'key = value' lines for the given keys (underscores for dashes), as an
    operator edits the example; a key the file lacks is added at the end."""
    text = Path(conf).read_text()
    for key, value in values.items():
        key = key.replace("_", "-")
        line = "%s = %s" % (key, value)
        pattern = re.compile(r"^#?\s*%s\s*=.*$" % re.escape(key), re.M)
        if pattern.search(text):
            text = pattern.sub(line, text, count=1)
        else:
            text += line + "\n"
    Path(conf).write_text(text)
