"""The man pages: each lints clean with groff and documents exactly the options of --help.

Each program's page sits in its folder (relay-server/relay-server.8, ..., gen-cert/gen-cert.1).
For each page: `groff -ww -z -man` prints nothing and exits 0 (skipped without groff), and the
set of long (--name) and short (-x) options in the page's OPTIONS section (the tag line of
each .TP) is the set that the program's --help lists.  gen-cert's --help lists subcommands,
and `gen-cert SUBCOMMAND --help` the options of each: its page has one .SS subsection of
OPTIONS per subcommand (titled with the subcommand's name) plus subsections that apply to
every subcommand (titled without one), and each subcommand is compared on its own.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import bin_path, SLOW, run_once

# No relay of the suite's worker count in this file: the second pass alone runs it.
pytestmark = run_once

REPO = Path(__file__).resolve().parents[2]

PAGES = {
    "relay-server": REPO / "relay-server" / "relay-server.8",
    "reverse-proxy": REPO / "reverse-proxy" / "reverse-proxy.8",
    "entry-point": REPO / "entry-point" / "entry-point.8",
    "gen-cert": REPO / "gen-cert" / "gen-cert.1",
}
DAEMONS = ["relay-server", "reverse-proxy", "entry-point"]

LONG = re.compile(r"(?<![\w-])--[A-Za-z0-9][A-Za-z0-9-]*")
SHORT = re.compile(r"(?<![\w-])-[A-Za-z0-9](?![\w-])")
# One option line of --help: "  -p, --port PORT   ..." or "      --host ADDR   ...".
HELP_OPTION = re.compile(r"^\s+(?:(-[A-Za-z0-9]),\s+)?(--[A-Za-z0-9][A-Za-z0-9-]*)")


def run(argv):
    """Run argv to completion; returns the CompletedProcess (text)."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=30 * SLOW,
                          stdin=subprocess.DEVNULL)


def help_text(*args):
    """The --help output of a program (args: program name, then a subcommand if any)."""
    p = run([bin_path(args[0]), *args[1:], "--help"])
    assert p.returncode == 0, "%s --help: exit %d\n%s" % (" ".join(args), p.returncode,
                                                          p.stderr)
    assert p.stdout.strip(), "%s --help printed nothing" % " ".join(args)
    return p.stdout


def help_options(text):
    """The options listed in the 'options:' section of a --help output."""
    found, inside = set(), False
    for line in text.splitlines():
        if line.strip() == "options:":
            inside = True
            continue
        if not inside:
            continue
        if line and not line[0].isspace():
            break                   # the next section
        m = HELP_OPTION.match(line)
        if m:
            found.update(o for o in m.groups() if o)
    return found


def help_subcommands(text):
    """The subcommands listed in the 'subcommands:' section of gen-cert --help."""
    found, inside = set(), False
    for line in text.splitlines():
        if line.strip() == "subcommands:":
            inside = True
            continue
        if not inside:
            continue
        if line and not line[0].isspace():
            break
        m = re.match(r"^  (\S+)\s{2,}", line)
        if m:
            found.add(m.group(1))
    return found


def help_usage_options(text):
    """The options named in the usage lines of a --help output (before the first blank line)."""
    usage = text.split("\n\n", 1)[0]
    return set(LONG.findall(usage)) | set(SHORT.findall(usage))


def plain(roff):
    """One line of roff as text: macro name, font escapes, quotes gone, \\- as -."""
    line = re.sub(r"^\.[A-Za-z]+\s*", "", roff)
    line = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", line)
    line = line.replace("\\-", "-").replace("\\(hy", "-").replace("\\(mi", "-")
    line = re.sub(r"\\[&%c]", "", line)
    line = re.sub(r"\\[~ 0|^]", " ", line)
    return line.replace('"', "")


def macro_args(line):
    """The title of a .SH/.SS line, unquoted."""
    return plain(line).strip()


def page_sections(path):
    """{section title: [lines]} of a man page."""
    sections, current = {}, None
    for line in path.read_text().splitlines():
        if line.startswith('.\\"'):
            continue                # a comment
        if re.match(r"^\.SH\b", line):
            current = macro_args(line)
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return sections


def tag_options(lines):
    """{subsection title ('' before the first .SS): set of options} from the tags of .TP.

    The tag is the line after .TP (or .TQ); only tags that start with a dash count."""
    found, sub, take_next = {"": set()}, "", False
    for line in lines:
        if line.startswith('.\\"'):
            continue
        if re.match(r"^\.SS\b", line):
            sub = macro_args(line)
            found.setdefault(sub, set())
            take_next = False
            continue
        if re.match(r"^\.(TP|TQ)\b", line):
            take_next = True
            continue
        if take_next:
            take_next = False
            tag = plain(line).strip()
            if tag.startswith("-"):
                found[sub].update(LONG.findall(tag))
                found[sub].update(SHORT.findall(tag))
    return found


def page_options(path):
    """{subsection title: options} of a page's OPTIONS section."""
    sections = page_sections(path)
    assert "OPTIONS" in sections, "%s: no OPTIONS section (has %s)" % (path,
                                                                       sorted(sections))
    return tag_options(sections["OPTIONS"])


def assert_same(in_help, in_page, what):
    """The two sets are equal; otherwise say what each lacks."""
    assert in_help, "%s: no option found in --help" % what
    assert in_help == in_page, (
        "%s: options differ\n  in --help, missing from the man page: %s\n"
        "  in the man page, not in --help: %s"
        % (what, sorted(in_help - in_page) or "none", sorted(in_page - in_help) or "none"))


@pytest.mark.parametrize("program", sorted(PAGES))
def test_page_lints_clean(program):
    """groff -ww -z -man: no warning, no error."""
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (Debian: groff-base); cannot lint the man pages")
    page = PAGES[program]
    assert page.is_file(), "missing man page %s" % page
    p = run(["groff", "-ww", "-z", "-man", str(page)])
    assert p.returncode == 0 and p.stderr == "", (
        "groff -ww -z -man %s: exit %d\n%s" % (page, p.returncode, p.stderr))


@pytest.mark.parametrize("program", sorted(PAGES))
def test_page_renders_with_man(program):
    """man -l renders the page, OPTIONS section and all."""
    if shutil.which("man") is None:
        pytest.skip("man is not installed (Debian: man-db); cannot render the man pages")
    p = run(["man", "-l", str(PAGES[program])])
    assert p.returncode == 0, "man -l %s: exit %d\n%s" % (PAGES[program], p.returncode,
                                                          p.stderr)
    assert "OPTIONS" in p.stdout


@pytest.mark.parametrize("program", DAEMONS)
def test_daemon_page_has_the_options_of_help(program):
    """Every option of --help is in the page's OPTIONS, and nothing else."""
    in_page = set().union(*page_options(PAGES[program]).values())
    assert_same(help_options(help_text(program)), in_page, "%s (%s)" % (program,
                                                                        PAGES[program]))


def gen_cert_subsections():
    """(subsection options by subcommand, options common to all) of gen-cert's page."""
    subs = help_subcommands(help_text("gen-cert"))
    assert subs, "gen-cert --help lists no subcommands"
    by_sub, common = {}, set()
    for title, options in page_options(PAGES["gen-cert"]).items():
        named = [s for s in subs if s in re.split(r"[\s,]+", title)]
        assert len(named) <= 1, "subsection %r names several subcommands" % title
        if named:
            by_sub.setdefault(named[0], set()).update(options)
        else:
            common |= options
    return subs, by_sub, common


def test_gen_cert_page_has_every_subcommand():
    """The subcommands of gen-cert --help each have a subsection of OPTIONS and a tag in
    SUBCOMMANDS."""
    subs, by_sub, _ = gen_cert_subsections()
    assert set(by_sub) == subs, "OPTIONS subsections for %s, --help lists %s" % (
        sorted(by_sub), sorted(subs))
    sections = page_sections(PAGES["gen-cert"])
    assert "SUBCOMMANDS" in sections, "gen-cert page: no SUBCOMMANDS section"
    tags, take_next = set(), False
    for line in sections["SUBCOMMANDS"]:
        if re.match(r"^\.(TP|TQ)\b", line):
            take_next = True
        elif take_next:
            take_next = False
            tags.add(plain(line).strip())
    assert tags == subs, "SUBCOMMANDS lists %s, --help lists %s" % (sorted(tags),
                                                                    sorted(subs))


@pytest.mark.parametrize("sub", ["x509", "ed25519", "pubkey"])
def test_gen_cert_page_has_the_options_of_each_subcommand(sub):
    """gen-cert SUB --help == the page's subsection for SUB plus the common ones."""
    subs, by_sub, common = gen_cert_subsections()
    if sub not in subs:
        pytest.fail("gen-cert --help no longer lists %s: update this test" % sub)
    assert_same(help_options(help_text("gen-cert", sub)), by_sub.get(sub, set()) | common,
                "gen-cert %s (%s)" % (sub, PAGES["gen-cert"]))


def test_gen_cert_usage_options_are_in_the_page():
    """Every option in the usage lines of gen-cert --help is in the page."""
    in_page = set().union(*page_options(PAGES["gen-cert"]).values())
    missing = help_usage_options(help_text("gen-cert")) - in_page
    assert not missing, "gen-cert --help usage names %s, missing from %s" % (
        sorted(missing), PAGES["gen-cert"])
