"""Packaging and the command line (issue 15): one version, every command's
--help, and the Debian package (`make deb`) holding everything, installing,
running as an unprivileged user against the broker, and leaving nothing once
purged."""
import gzip
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from harness import BUILD, ROOT, run_program
from test_operations import run_installed_daemon

VERSION = (ROOT / "VERSION").read_text().strip()
# the commands of streamrec, from its dispatch table
COMMANDS = re.findall(r'^\s*\{"(\w+)", cli_\w+,', (ROOT / "daemon/main_streamrec.c").read_text(),
                      re.M)


def test_the_version_is_defined_once_and_the_changelog_agrees():
    assert re.fullmatch(r"0\.\d+\.\d+", VERSION), f"VERSION: {VERSION!r}"
    changelog = subprocess.run(["dpkg-parsechangelog", "-l", ROOT / "debian/changelog",
                                "-S", "Version"], capture_output=True, text=True, check=True)
    assert changelog.stdout.strip() == VERSION, \
        "debian/changelog's top entry must carry VERSION's version"


@pytest.mark.parametrize("program", ["streamrecd", "streamrec"])
def test_version_prints_the_program_and_its_version(program):
    out = run_program([BUILD / program, "--version"], timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, f"{program} {VERSION}\n", "")


def test_the_usage_lists_every_command():
    out = run_program([BUILD / "streamrec", "--help"], timeout=60)
    assert out.returncode == 0
    listed = re.findall(r"^  (\w+) ", out.stdout, re.M)
    assert listed == COMMANDS and len(COMMANDS) >= 10, out.stdout


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_prints_its_usage_on_help(command, flag):
    # after other options too: the help wins, nothing runs
    for args in ([command, flag], [command, "--state", "/nonexistent", flag]):
        out = run_program([BUILD / "streamrec", *args], timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"usage: streamrec {command} "), out.stdout
        assert out.stderr == ""


def test_help_after_the_end_of_options_is_an_argument():
    out = run_program([BUILD / "streamrec", "gen", "--", "--help"], timeout=60)
    assert out.returncode == 2 and "usage: streamrec gen" not in out.stdout, out.stdout


def makefile_list(name):
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    return re.search(rf"^{name}\s*:=(.*)$", text, re.M).group(1).split()


def test_build_depends_are_the_makefile_build_packages():
    control = (ROOT / "debian/control").read_text()
    field = re.search(r"^Build-Depends:(.*?)^\S", control, re.M | re.S).group(1)
    names = {re.sub(r"\s*\(.*\)", "", p).strip() for p in field.split(",") if p.strip()}
    names = {"debhelper" if n == "debhelper-compat" else n for n in names} | {"build-essential"}
    assert names == set(makefile_list("DEB_BUILD_PACKAGES"))
    assert makefile_list("DEB_PACKAGES")[0] == "$(DEB_BUILD_PACKAGES)", "make deps installs them"


@pytest.fixture(scope="module")
def deb():
    made = subprocess.run(["make", "-C", str(ROOT), "deb", f"BUILD={BUILD}"],
                          capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    path = BUILD / f"streamrec_{VERSION}_{arch}.deb"
    assert path.exists(), made.stdout[-2000:]
    return path


def contents(deb):
    """{path: (mode, owner)} of the package's files, paths without the leading '.'."""
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True,
                             check=True).stdout
    files = {}
    for line in listing.splitlines():
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        if not mode.startswith("d"):
            files[path[1:]] = (mode, owner)
    return files


def test_the_package_holds_everything(deb, tmp_path):
    files = contents(deb)
    for path in ["/usr/bin/streamrecd", "/usr/bin/streamrec"]:
        assert files.get(path) == ("-rwxr-xr-x", "root/root"), (path, sorted(files))
    for path in ["/lib/systemd/system/streamrecd.service",
                 "/usr/share/streamrec/schemas/user_event.avsc",
                 "/usr/share/streamrec/schemas/item_event.avsc",
                 "/usr/share/streamrec/schemas/recommendation.avsc",
                 "/usr/share/streamrec/streamrec.json",
                 "/usr/share/streamrec/streamrec.rules.yml",
                 "/usr/share/man/man8/streamrecd.8.gz", "/usr/share/man/man1/streamrec.1.gz",
                 "/usr/share/doc/streamrec/LICENSE", "/usr/share/doc/streamrec/README.md",
                 "/usr/share/doc/streamrec/copyright"]:
        assert files.get(path) == ("-rw-r--r--", "root/root"), (path, sorted(files))
    # the configuration may hold SASL secrets: root's only, and an operator's edits survive
    assert files.get("/etc/streamrec/streamrecd.conf") == ("-rw-------", "root/root")
    fields = subprocess.run(["dpkg-deb", "-f", deb, "Package", "Version", "Depends"],
                            capture_output=True, text=True, check=True).stdout
    assert f"Version: {VERSION}\n" in fields and "librdkafka1" in fields \
        and "librocksdb" in fields, fields

    subprocess.run(["dpkg-deb", "-e", deb, tmp_path / "control"], check=True)
    assert (tmp_path / "control/conffiles").read_text().split() == [
        "/etc/streamrec/streamrecd.conf"]
    # installed, not enabled: the configuration names the brokers first
    postinst = (tmp_path / "control/postinst").read_text()
    assert "deb-systemd-helper" in postinst and "deb-systemd-helper enable" not in \
        postinst.split("was-enabled")[0], postinst

    subprocess.run(["dpkg-deb", "-x", deb, tmp_path / "root"], check=True)
    unit = (tmp_path / "root/lib/systemd/system/streamrecd.service").read_text()
    assert "ExecStart=/usr/bin/streamrecd --config %d/streamrecd.conf" in unit, unit
    assert "LoadCredential=streamrecd.conf:/etc/streamrec/streamrecd.conf" in unit
    assert not re.search(r"@[A-Z]+@", unit), "a placeholder left in the unit"
    for page, title in [("man8/streamrecd.8.gz", "STREAMRECD"), ("man1/streamrec.1.gz",
                                                                   "STREAMREC")]:
        text = gzip.open(tmp_path / "root/usr/share/man" / page, "rt").read()
        assert re.search(rf'^\.TH {title} "\d" .* "streamrec\w? {re.escape(VERSION)}"', text,
                         re.M), text[:500]
    man = (tmp_path / "root/usr/share/man/man1/streamrec.1.gz")
    text = gzip.open(man, "rt").read()
    assert all(command in text for command in COMMANDS)
    assert "Apache License" in (tmp_path / "root/usr/share/doc/streamrec/LICENSE").read_text()


def installable_for_real(files):
    """True when dpkg -i may be used here and undone without a trace: we are root
    and neither the package nor any of its files is on the system."""
    if os.getuid() != 0 or shutil.which("dpkg") is None:
        return False
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "streamrec"],
                            capture_output=True, text=True)
    if status.returncode == 0 and "not-installed" not in status.stdout:
        return False
    return not any(os.path.lexists(path) for path in files)


@pytest.mark.kafka
def test_the_package_installs_runs_unprivileged_and_purges_clean(deb, kafka_broker):
    """As root, `dpkg -i` for real (maintainer scripts included), the installed
    daemon run as the unit runs it (test_operations.run_installed_daemon),
    then `dpkg -P` must leave none of the package's files. Where that cannot be
    done without touching an operator's install, the package is unpacked into a
    scratch root instead."""
    files = contents(deb)
    with tempfile.TemporaryDirectory(prefix="streamrec-deb-") as top:
        top = os.path.realpath(top)
        os.chmod(top, 0o755)
        if not installable_for_real(files):
            root = os.path.join(top, "root")
            subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
            run_installed_daemon(kafka_broker, top, root, "packaged")
            return
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        installed = subprocess.run(["dpkg", "-i", deb], capture_output=True, text=True, env=env,
                                   stdin=subprocess.DEVNULL, timeout=300)
        try:
            assert installed.returncode == 0, installed.stdout + installed.stderr
            version = subprocess.run(["/usr/bin/streamrecd", "--version"], capture_output=True,
                                     text=True, timeout=60)
            assert version.stdout == f"streamrecd {VERSION}\n", version.stderr
            conf = os.stat("/etc/streamrec/streamrecd.conf")
            assert (conf.st_mode & 0o777, conf.st_uid) == (0o600, 0)
            run_installed_daemon(kafka_broker, top, "/", "packaged")
        finally:
            purged = subprocess.run(["dpkg", "-P", "streamrec"], capture_output=True, text=True,
                                    env=env, stdin=subprocess.DEVNULL, timeout=300)
        assert purged.returncode == 0, purged.stdout + purged.stderr
        left = [path for path in files if os.path.lexists(path)]
        assert left == [] and not os.path.lexists("/etc/streamrec"), left
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "streamrec"],
                                capture_output=True, text=True)
        assert status.returncode != 0 or "not-installed" in status.stdout, status.stdout
