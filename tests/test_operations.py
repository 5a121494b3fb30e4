"""What an operator meets before the daemon runs: configuration errors, the
command line, the systemd unit (verified, and its exposure measured) and the
tree `make install` writes, run the way the unit runs it."""
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.request

import pytest

from harness import BUILD, ROOT

STREAMRECD = BUILD / "streamrecd"


def run(*args):
    return subprocess.run([STREAMRECD, *map(str, args)], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("body, message", [
    ("[state]\ndir = {dir}\ncommit_interval_ms = banana\n",
     r"^streamrecd: .*bad\.conf:3: state\.commit_interval_ms: expected a duration"),
    ("[state]\ndir = {dir}\ncomit_interval_ms = 5s\n",
     r"^streamrecd: .*bad\.conf:3: unknown key 'comit_interval_ms' in \[state\] "
     r"\(did you mean 'commit_interval_ms'\?\)"),
    ("[stat]\ndir = {dir}\n", r"^streamrecd: .*bad\.conf:1: unknown section \[stat\]"),
    ("[refresh]\nk = 0\n[state]\ndir = {dir}\n", r"^streamrecd: .*bad\.conf:2: refresh\.k: "),
])
def test_a_bad_configuration_gives_one_message_naming_file_and_line(tmp_path, body, message):
    path = tmp_path / "bad.conf"
    path.write_text(body.format(dir=tmp_path / "state"))
    out = run("--config", path, "--check")
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "state").exists(), "nothing is created from a refused configuration"


@pytest.mark.parametrize("body, message", [
    ("commit_interval_ms = banana\n", r"bad\.conf:3: state\.commit_interval_ms"),
    ("[kafka]\nbootstrap.servers = 127.0.0.1:9\n[content]\ntext_model = /nonexistent.e5\n",
     r"bad\.conf: content\.text_model: /nonexistent\.e5: cannot open"),
])
def test_under_the_journal_a_refused_start_is_filed_as_an_error(tmp_path, body, message):
    """systemd sets JOURNAL_STREAM to the device:inode of the stream it gives
    the unit's stderr; journald files a line without a <N> prefix as info."""
    path = tmp_path / "bad.conf"
    path.write_text(f"[state]\ndir = {tmp_path / 'state'}\n" + body)
    with open(tmp_path / "stderr", "w+") as err:
        st = os.fstat(err.fileno())
        env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        out = subprocess.run([STREAMRECD, "--config", path, "--check"], stdout=subprocess.PIPE,
                             stderr=err, text=True, env=env, timeout=60)
        err.seek(0)
        last = err.read().strip().splitlines()[-1]
    assert out.returncode == 2
    assert re.match(r"^<3>streamrecd: .*" + message, last), last
    # on any other stream, the plain line of a command line tool
    env["JOURNAL_STREAM"] = "1:1"
    out = subprocess.run([STREAMRECD, "--config", path, "--check"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert re.match(r"^streamrecd: .*" + message, out.stderr.strip().splitlines()[-1]), out.stderr


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.conf", "cannot open: No such file or directory"),
    (lambda p: p, "is a directory, not a configuration file"),
])
def test_an_unreadable_configuration_file_is_named(tmp_path, make, message):
    out = run("--config", make(tmp_path), "--check")
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr


def test_the_command_line_is_checked():
    assert run("--help").returncode == 0 and "usage: streamrecd" in run("--help").stdout
    out = run("--frobnicate")
    assert out.returncode == 2 and "unknown argument '--frobnicate'" in out.stderr
    out = run("--config")
    assert out.returncode == 2 and "--config needs a FILE" in out.stderr


def test_a_good_configuration_checks_clean(tmp_path):
    path = tmp_path / "ok.conf"
    path.write_text(f"[state]\ndir = {tmp_path / 'state'}\n"
                    "[kafka]\nbootstrap.servers = 127.0.0.1:9\n")
    out = run("--config", path, "--check")
    assert out.returncode == 0, out.stderr
    assert "are fine" in out.stdout


@pytest.fixture
def unit(tmp_path):
    """The unit as `make install` writes it, pointing at the build's binaries."""
    text = (ROOT / "systemd" / "streamrecd.service").read_text()
    text = (text.replace("@BINDIR@", str(BUILD)).replace("@SYSCONFDIR@", str(tmp_path))
            .replace("@DOCDIR@", str(ROOT)))
    path = tmp_path / "streamrecd.service"
    path.write_text(text)
    return path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_the_unit_verifies(unit):
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", unit], capture_output=True,
                         text=True)
    problems = [l for l in out.stderr.splitlines() if "streamrecd.service" in l]
    assert out.returncode == 0 and not problems, out.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_the_unit_exposure_is_low(unit):
    """The README records this figure; --threshold fails the command above it."""
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20",
                          unit], capture_output=True, text=True)
    level = re.search(r"Overall exposure level for streamrecd\.service: ([\d.]+) (\w+)",
                      out.stdout)
    assert level, out.stdout + out.stderr
    assert out.returncode == 0 and float(level.group(1)) <= 2.0, out.stdout[-2000:]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def edit(text, replacements):
    """The shipped configuration with each line replaced; each must occur once."""
    for old, new in replacements.items():
        assert text.count(old) == 1, f"the installed configuration has no single line {old!r}"
        text = text.replace(old, new)
    return text


def unprivileged_user():
    """(uid, gid, argv prefix) of the user an installed daemon runs as in a test:
    nobody:nogroup through setpriv when the tests run as root, else ourselves."""
    if os.getuid() == 0:
        uid, gid = 65534, 65534  # nobody:nogroup
        return uid, gid, ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    # already unprivileged: everything but the switch of user is tested
    return os.getuid(), os.getgid(), []


def run_installed_daemon(kafka_broker, top, root, name):
    """Runs an installed streamrecd (a tree under root, "/" for a real install) as
    its unit runs it: its ExecStart, as an unprivileged user (the unit's
    DynamicUser), the configuration handed over the way LoadCredential= does (a
    copy, 0400, owned by that user, in $CREDENTIALS_DIRECTORY), with its topics
    NAME.*. It must become ready, publish recommendations for events that the
    installed streamrec produces, and stop cleanly on SIGTERM. top is a
    directory the user can enter (not pytest's 0700 tmp_path); the installed
    configuration is edited in place."""
    uid, gid, as_user = unprivileged_user()
    conf = os.path.join(root, "etc/streamrec/streamrecd.conf")
    unit_path = next(p for p in (os.path.join(root, d, "systemd/system/streamrecd.service")
                                 for d in ("usr/lib", "lib")) if os.path.exists(p))
    unit = open(unit_path).read()
    tool = os.path.join(root, "usr/bin/streamrec")

    # what systemd does at start: a copy of the file, readable by the service's user only
    credentials = os.path.join(top, "credentials")
    state = os.path.join(top, "state")
    logs = os.path.join(top, "logs")
    for d in (credentials, state, logs):
        os.mkdir(d, 0o700)
        os.chown(d, uid, gid)
    events, recs = f"{name}.events", f"{name}.recs"
    kafka_broker.create_topics(f"{events}:3", f"{recs}:3", f"{name}.dlq:1",
                               f"{name}.items:1")
    port = free_port()
    text = edit(open(conf).read(), {
        "#topic = events": f"topic = {events}",
        "#items_topic = items": f"items_topic = {name}.items",
        "#dead_letter_topic = events.dlq": f"dead_letter_topic = {name}.dlq",
        "#group_id = streamrecd": f"group_id = {name}",
        "#topic = recs": f"topic = {recs}",
        "dir = /var/lib/streamrec/state": f"dir = {state}/state",
        "#listen = 127.0.0.1:9464": f"listen = 127.0.0.1:{port}",
        "bootstrap.servers = localhost:9092": f"bootstrap.servers = {kafka_broker.bootstrap}",
    })
    # the root stands for /: the credential's source is the edited file
    with open(conf, "w") as f:
        f.write(text)
    credential = os.path.join(credentials, "streamrecd.conf")
    with open(credential, "w") as f:
        f.write(text)
    os.chmod(credential, 0o400)
    os.chown(credential, uid, gid)
    os.chmod(credentials, 0o500)

    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
    argv = []
    for word in shlex.split(exec_start.replace("%d", credentials)
                            .replace("${CREDENTIALS_DIRECTORY}", credentials)):
        # absolute paths of the installed tree live under the root
        argv.append(word if word.startswith(top) or not word.startswith("/")
                    else os.path.join(root, word[1:]))
    env = {"PATH": "/usr/bin:/bin", "CREDENTIALS_DIRECTORY": credentials,
           "LOGS_DIRECTORY": logs, "STATE_DIRECTORY": state}
    log_path = os.path.join(top, "streamrecd.log")
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(as_user + argv, env=env, stdout=log, stderr=log)
    try:
        def log_text():
            return open(log_path).read()[-4000:]

        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                            timeout=5) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
            except OSError:
                return None

        deadline = time.time() + 60
        while get("/readyz") != 200:
            assert daemon.poll() is None, f"{argv} exited:\n{log_text()}"
            assert time.time() < deadline, "never ready:\n" + log_text()
            time.sleep(0.2)
        subprocess.run([tool, "produce", "--brokers", kafka_broker.bootstrap,
                        "--topic", events, "--count", "500", "--users", "50"],
                       check=True, capture_output=True, timeout=120)
        out = subprocess.run([tool, "tail", "--brokers",
                              kafka_broker.bootstrap, "--kind", "recs", "--topic", recs,
                              "--from-beginning", "--count", "20", "--timeout-ms", "30000"],
                             capture_output=True, text=True, timeout=120)
        lines = [l for l in out.stdout.splitlines() if l.startswith("user=")]
        assert len(lines) == 20 and all("items=item-" in l for l in lines), \
            out.stderr + log_text()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0, log_text()
        assert os.stat(os.path.join(state, "state")).st_uid == uid
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


@pytest.mark.kafka
def test_the_installed_tree_runs_as_an_unprivileged_user(kafka_broker):
    """`make install` into a staging root, then the installed streamrecd run as
    the unit runs it (run_installed_daemon); `make uninstall` removes all but
    the configuration."""
    # outside pytest's 0700 tmp_path, which the unprivileged user cannot enter
    with tempfile.TemporaryDirectory(prefix="streamrec-install-") as top:
        top = os.path.realpath(top)
        os.chmod(top, 0o755)
        root = os.path.join(top, "root")
        make = subprocess.run(["make", "-C", str(ROOT), "install", f"DESTDIR={root}",
                               "PREFIX=/usr", f"BUILD={BUILD}"], capture_output=True, text=True,
                              timeout=600)
        assert make.returncode == 0, make.stdout[-2000:] + make.stderr[-2000:]
        again = subprocess.run(["make", "-C", str(ROOT), "install", f"DESTDIR={root}",
                                "PREFIX=/usr", f"BUILD={BUILD}"], capture_output=True, text=True,
                               timeout=600)
        assert again.returncode == 0, "make install twice: " + again.stderr[-2000:]
        # the installed programs look for the model where PREFIX put it, though
        # the build tree was made with the default PREFIX first (it said /usr/local)
        env = {k: v for k, v in os.environ.items() if k != "STREAMREC_TEXT_MODEL"}
        embed = subprocess.run([os.path.join(root, "usr/bin/streamrec"), "embed", "hello"],
                               capture_output=True, text=True, timeout=60, env=env)
        assert embed.returncode == 1 and "/usr/share/streamrec/models/" in embed.stderr, \
            embed.stderr

        conf = os.path.join(root, "etc/streamrec/streamrecd.conf")
        conf_stat = os.stat(conf)
        unit = open(os.path.join(root, "usr/lib/systemd/system/streamrecd.service")).read()
        run_installed_daemon(kafka_broker, top, root, "installed")

        subprocess.run(["make", "-C", str(ROOT), "uninstall", f"DESTDIR={root}", "PREFIX=/usr",
                        f"BUILD={BUILD}"], check=True, capture_output=True, timeout=60)
        left = [os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root)
                for f in files]
        assert left == ["etc/streamrec/streamrecd.conf"], "uninstall keeps only the configuration"

    # the configuration may hold SASL secrets: only root (systemd) reads it
    assert stat.S_IMODE(conf_stat.st_mode) == 0o600 and conf_stat.st_uid == os.getuid(), \
        oct(conf_stat.st_mode)
    assert re.search(r"^LoadCredential=streamrecd\.conf:/etc/streamrec/streamrecd\.conf$",
                     unit, re.M), unit


def librdkafka_defaults():
    """librdkafka's own global properties with their default values, as its
    rd_kafka_conf_dump() gives them, less those that cannot be set back
    (callbacks, empty values, features of other builds) and streamrecd's."""
    import ctypes
    rk = ctypes.CDLL("librdkafka.so.1")
    rk.rd_kafka_conf_new.restype = ctypes.c_void_p
    rk.rd_kafka_conf_destroy.argtypes = [ctypes.c_void_p]
    rk.rd_kafka_conf_dump.restype = ctypes.POINTER(ctypes.c_char_p)
    rk.rd_kafka_conf_dump.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
    rk.rd_kafka_conf_dump_free.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t]
    rk.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                     ctypes.c_char_p, ctypes.c_size_t]
    conf, count = rk.rd_kafka_conf_new(), ctypes.c_size_t()
    dump = rk.rd_kafka_conf_dump(conf, ctypes.byref(count))
    pairs = [(dump[i].decode(), dump[i + 1].decode()) for i in range(0, count.value, 2)]
    rk.rd_kafka_conf_dump_free(dump, count)
    rk.rd_kafka_conf_destroy(conf)
    usable = []
    for name, value in pairs:
        probe, err = rk.rd_kafka_conf_new(), ctypes.create_string_buffer(512)
        ok = rk.rd_kafka_conf_set(probe, name.encode(), value.encode(), err, len(err)) == 0
        rk.rd_kafka_conf_destroy(probe)
        if ok and name not in ("bootstrap.servers", "group.id", "enable.auto.commit",
                               "enable.auto.offset.store", "max.in.flight",
                               "max.in.flight.requests.per.connection") and ";" not in value:
            usable.append((name, value))
    return usable


def test_the_200th_kafka_property_is_not_dropped(tmp_path):
    """200 librdkafka properties ([kafka] and [kafka.consumer] hold the same
    names): the 200th, unknown to librdkafka, must reach it and be refused.
    The merge used to keep at most 64 of [kafka] and 128 in all (and wrote
    one past the end of its array for statistics.interval.ms)."""
    usable = [f"{n} = {v}" for n, v in librdkafka_defaults()]
    assert len(usable) >= 67, usable
    # [kafka]: bootstrap.servers and 66 more; [kafka.producer]: 66;
    # [kafka.consumer]: 66 and, as the 200th, one librdkafka does not know
    both, producer, consumer = usable[:66], usable[:66], usable[:66]
    path = tmp_path / "many.conf"
    path.write_text(f"[state]\ndir = {tmp_path / 'state'}\n[http]\nlisten =\n"
                    "[kafka]\nbootstrap.servers = 127.0.0.1:9\n" + "\n".join(both) +
                    "\n[kafka.producer]\n" + "\n".join(producer) +
                    "\n[kafka.consumer]\n" + "\n".join(consumer) +
                    "\nno.such.property = 1\n")
    assert 1 + len(both) + len(producer) + len(consumer) + 1 == 200
    out = subprocess.run([STREAMRECD, "--config", path], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert "no.such.property" in out.stderr and "No such configuration property" in out.stderr, \
        out.stderr


def test_check_on_a_fresh_directory_creates_nothing(tmp_path):
    path = tmp_path / "ok.conf"
    path.write_text(f"[state]\ndir = {tmp_path / 'state'}\n"
                    "[kafka]\nbootstrap.servers = 127.0.0.1:9\n")
    out = run("--config", path, "--check")
    assert out.returncode == 0, out.stderr
    assert "no state yet" in out.stdout, out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.conf"]


def snapshot(directory):
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_check_leaves_an_existing_state_untouched(tmp_path):
    """--check opens the state read-only: not a byte or an mtime changes,
    even when the configuration names a variant the state does not hold."""
    events, state = tmp_path / "events.csv", tmp_path / "state"
    subprocess.run([BUILD / "streamrec", "gen", "--out", events, "--events", "300",
                    "--users", "30", "--items", "20", "--clusters", "2"], check=True, capture_output=True)
    subprocess.run([BUILD / "streamrec", "replay", "--state", state, events], check=True,
                   capture_output=True)
    path = tmp_path / "ab.conf"
    path.write_text(f"[state]\ndir = {state}\n"
                    "[variant.control]\nshare = 0.5\n[variant.newcomer]\nshare = 0.5\n"
                    "[kafka]\nbootstrap.servers = 127.0.0.1:9\n")
    before = snapshot(tmp_path)
    out = run("--config", path, "--check")
    assert out.returncode == 0, out.stderr
    assert "are fine" in out.stdout, out.stdout
    after = snapshot(tmp_path)
    assert after.keys() == before.keys()
    assert [k for k in before if before[k] != after[k]] == []


@pytest.mark.parametrize("lines, message", [
    ("[http]\nlisten = nonsense\n", r"bad\.conf:5: http\.listen: .*expected \"host:port\""),
    ("[http]\nlisten = 127.0.0.1:99999\n", r"bad\.conf:5: http\.listen: .*port between"),
    ("[kafka]\nbootstrap.servers = 127.0.0.1:9\nno.such.property = 1\n",
     r"bad\.conf:6: kafka\.no\.such\.property: No such configuration property"),
    ("[kafka]\nbootstrap.servers = 127.0.0.1:9\n[kafka.consumer]\nsession.timeout.ms = soon\n",
     r"bad\.conf:7: kafka\.consumer\.session\.timeout\.ms: Invalid value"),
    ("[kafka]\nbootstrap.servers = 127.0.0.1:9\n[kafka.producer]\nacks = several\n",
     r"bad\.conf:7: kafka\.producer\.acks: Invalid value"),
])
def test_check_refuses_a_bad_listen_address_or_kafka_property_at_its_line(tmp_path, lines,
                                                                          message):
    path = tmp_path / "bad.conf"
    if "bootstrap.servers" not in lines:
        lines += "[kafka]\nbootstrap.servers = 127.0.0.1:9\n"
    path.write_text(f"# a comment\n[state]\ndir = {tmp_path / 'state'}\n" + lines)
    out = run("--config", path, "--check")
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert re.search(message, out.stderr), out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.conf"]


def test_check_reads_the_schema_dir_the_start_would(tmp_path):
    """--check reads input.schema_dir's writer schemas as the start does: a
    missing directory or a file that is no schema is an error naming the
    file and the key (it passed --check and the start failed)."""
    path = tmp_path / "schemas.conf"
    base = (f"[state]\ndir = {tmp_path / 'state'}\n"
            "[kafka]\nbootstrap.servers = 127.0.0.1:9\n")
    path.write_text(base + f"[input]\nschema_dir = {tmp_path / 'missing'}\n")
    out = run("--config", path, "--check")
    assert out.returncode == 2, out.stdout
    assert f"{path}: input.schema_dir: {tmp_path / 'missing'}" in out.stderr, out.stderr
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "7.avsc").write_text("{ not json")
    path.write_text(base + f"[input]\nschema_dir = {schemas}\n")
    out = run("--config", path, "--check")
    assert out.returncode == 2 and "input.schema_dir:" in out.stderr and "7.avsc" in out.stderr, \
        out.stderr
    (schemas / "7.avsc").write_text((ROOT / "schemas" / "user_event.avsc").read_text())
    out = run("--config", path, "--check")
    assert out.returncode == 0, out.stderr
