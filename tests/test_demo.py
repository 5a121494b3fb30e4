"""`make run`: the live view of tools/demo, driven through tmux.

`make run` runs in a detached tmux session of a fixed size, on its own tmux
server; its screens are captured (`tmux capture-pane -p`) a few seconds apart
and kept in build/artifacts/demo-screen-*.txt. The view must redraw in place
(same layout, header on top, nothing scrolled into the pane's history), its
figures must move, the sample users must have lists, the URLs it shows must
answer, a narrow terminal must still get a frame that fits, and Ctrl-C must
stop the broker and the daemon and end `make run` with status 0.

The view's plain mode (stdout not a terminal) and its formatting of clipped
percentiles are checked against a small stand-in HTTP server, without Kafka.
"""
import http.server
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from harness import BUILD, ROOT

ARTIFACTS = BUILD / "artifacts"
VIEW = ROOT / "tools" / "demo-view"
WIDTH, HEIGHT = 100, 30


class Tmux:
    """A tmux server of our own (-L), so that no one else's session is touched."""

    def __init__(self, name):
        self.base = ["tmux", "-L", name, "-f", "/dev/null"]

    def __call__(self, *args, check=True):
        return subprocess.run(self.base + list(args), capture_output=True, text=True,
                              check=check, timeout=30).stdout

    def capture(self):
        return self("capture-pane", "-p", "-t", "demo")

    def history_size(self):
        return int(self("display-message", "-p", "-t", "demo", "#{history_size}").strip())

    def kill_server(self):
        self("kill-server", check=False)


def processes_mentioning(text):
    """Pids of processes whose command line contains text (our demo's temp dir)."""
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and str(os.getpid()) != entry.name:
            pids.append((int(entry.name), cmdline))
    return pids


def wait_for(predicate, timeout, step=1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def user_lists(screen):
    """{user: (items in the top 5, own-taste share of the list)} from a screen."""
    lines = screen.splitlines()
    users = {}
    for n, line in enumerate(lines):
        m = re.match(r"(u\d+)\s+(?:taste )?c\d+\s+list: (\d+)/(\d+)", line)
        if m and n + 1 < len(lines):
            items = re.findall(r"\bi\d+\b", lines[n + 1])
            users[m.group(1)] = (items, int(m.group(2)) / int(m.group(3)))
    return users


def layout(screen):
    """The screen's shape: each line's label with its figures taken out."""
    shape = []
    for line in screen.rstrip("\n").splitlines():
        line = re.sub(r"u\d+\s.*", "USER", line)
        line = re.sub(r"^  (top 5|events).*", r"  \1", line)
        shape.append(re.sub(r"[\d.,:]+|–", "#", line).split("  ")[0].strip())
    while shape and shape[-1] == "":
        shape.pop()
    return shape


def test_make_run_screen(tmp_path):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: run 'make deps'")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    rc_file = tmp_path / "exit-status"
    work = tmp_path / "tmp"
    work.mkdir()
    # a short stream (replayed in rounds) at a rate two shared cores keep up with
    script = tmp_path / "run.sh"  # the temp dir stays out of tmux's own command line
    script.write_text(f"cd {ROOT} && TMPDIR={work} STREAMREC_BUILD={BUILD} make --no-print-directory "
                      f"run BUILD={BUILD} DEMO_ARGS='--events 40000 --rate 400'\n"
                      f"echo $? > {rc_file}\n")
    demo_files = f"{work}/streamrec-demo."
    tmux = Tmux(f"streamrec-demo-test-{os.getpid()}")
    started = time.monotonic()
    tmux("new-session", "-d", "-s", "demo", "-x", str(WIDTH), "-y", str(HEIGHT), f"bash {script}")
    tmux("set-option", "-t", "demo", "remain-on-exit", "on")
    try:
        def view_with_lists():
            screen = tmux.capture()
            lists = user_lists(screen)
            return (screen.startswith("streamrec live") and len(lists) >= 3
                    and re.search(r"events/s\s+[1-9]", screen)
                    and all(len(items) >= 3 for items, _ in lists.values()) and screen)
        first = wait_for(view_with_lists, 240)
        (ARTIFACTS / "demo-screen-1.txt").write_text(tmux.capture())
        assert first, "the view never showed three sample users with lists:\n" + tmux.capture()
        running = processes_mentioning(demo_files)
        assert any("streamrecd" in c for _, c in running), running
        assert any("kafka.Kafka" in c for _, c in running), running

        # the planted tastes show: a sample user's list mostly in their own cluster
        view_up = time.monotonic()
        def best_share():
            return max([share for _, share in user_lists(tmux.capture()).values()] or [0])
        personal = wait_for(lambda: best_share() >= 0.5, 150)
        assert personal, "no sample user's list is mostly in their own taste:\n" + tmux.capture()
        print(f"view up after {view_up - started:.0f} s, a list mostly in its user's taste "
              f"{time.monotonic() - view_up:.0f} s later")

        history = tmux.history_size()
        first = tmux.capture()
        time.sleep(4)
        second = tmux.capture()
        (ARTIFACTS / "demo-screen-1.txt").write_text(first)
        (ARTIFACTS / "demo-screen-2.txt").write_text(second)

        # redrawn in place: same layout, header on top, no line scrolled away
        assert layout(first) == layout(second), (first, second)
        assert first.startswith("streamrec live") and second.startswith("streamrec live")
        assert tmux.history_size() == history, "the view scrolled:\n" + second
        assert len(second.splitlines()) <= HEIGHT
        assert max(len(line) for line in second.splitlines()) < WIDTH
        # the figures move
        totals = [re.search(r"events/s\s+([\d,]+)\s+\(total ([\d,]+)\)", s) for s in (first, second)]
        assert all(totals), (first, second)
        assert int(totals[1].group(2).replace(",", "")) > int(totals[0].group(2).replace(",", ""))
        assert int(totals[1].group(1).replace(",", "")) > 0
        assert re.search(r"freshness \(last \d+ s\):\s+p50 [\d.,]+ ms\s+p95 .+\s+p99 ", second)
        # the sample users have lists
        lists = user_lists(second)
        assert len(lists) >= 3 and all(len(items) == 5 for items, _ in lists.values()), second
        # the URLs are shown, and answer
        status_url = re.search(r"status page\s+(http://127\.0\.0\.1:\d+/status)", second)
        lookup_url = re.search(r"curl (http://127\.0\.0\.1:\d+/v1/recommendations/(u\d+))", second)
        assert status_url and lookup_url, second
        with urllib.request.urlopen(status_url.group(1), timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(lookup_url.group(1), timeout=5) as response:
            doc = json.load(response)
        assert doc["user_id"] == lookup_url.group(2) and len(doc["items"]) > 0

        # a narrow, short terminal: a frame that fits, header and URLs kept
        tmux("resize-window", "-t", "demo", "-x", "44", "-y", "14")
        narrow = wait_for(lambda: (lambda s: s.startswith("streamrec live") and s)(tmux.capture()),
                          15) or tmux.capture()
        (ARTIFACTS / "demo-screen-narrow.txt").write_text(narrow)
        assert narrow.startswith("streamrec live"), narrow
        assert max(len(line) for line in narrow.splitlines()) < 44, narrow
        assert len(narrow.splitlines()) <= 14, narrow
        assert re.search(r"^events/s [\d,]+  lists/s [\d,]+$", narrow, re.M), narrow
        assert re.search(r"^status  http://127\.0\.0\.1:\d+/status$", narrow, re.M), narrow
        assert len(user_lists(narrow)) >= 1, narrow

        # Ctrl-C: everything stops, make run exits 0
        tmux("send-keys", "-t", "demo", "C-c")
        assert wait_for(lambda: rc_file.exists() and rc_file.read_text().strip(), 90), \
            "make run did not end after Ctrl-C:\n" + tmux.capture()
        (ARTIFACTS / "demo-screen-stopped.txt").write_text(tmux.capture())
        assert rc_file.read_text().strip() == "0", tmux.capture()
        left = wait_for(lambda: not processes_mentioning(demo_files), 10)
        assert left, f"still running: {processes_mentioning(demo_files)}"
        assert list(work.iterdir()) == [], "the demo left its files behind"
        print(f"make run: view up and stopped in {time.monotonic() - started:.0f} s")
    finally:
        if not rc_file.exists():
            tmux("send-keys", "-t", "demo", "C-c", check=False)
            wait_for(rc_file.exists, 60)
        tmux.kill_server()


class StandIn(http.server.BaseHTTPRequestHandler):
    """The three endpoints the view reads, with a clipped p99."""
    events = 0

    def do_GET(self):
        StandIn.events += 100
        if self.path == "/metrics":
            body = (f'streamrec_events_total{{type="view"}} {StandIn.events}\n'
                    f'streamrec_events_total{{type="click"}} 7\n'
                    f'streamrec_recommendations_total{{variant="model"}} {StandIn.events}\n')
        elif self.path == "/status.json":
            body = json.dumps({"window_s": 60, "freshness_clip_ms": 60000, "users": 2,
                               "items": 3, "consumer_lag": 0, "dlq_messages_total": 0,
                               "variants": [{"name": "model", "p50_ms": 12.5,
                                             "p50_clipped": False, "p95_ms": None,
                                             "p95_clipped": True, "p99_ms": None,
                                             "p99_clipped": True}]})
        elif self.path == "/v1/recommendations/u1":
            body = json.dumps({"user_id": "u1", "variant": "model",
                               "generated_at": int(time.time() * 1000), "trigger_event_ts": 0,
                               "items": [{"item_id": f"i{n}", "score": 1.0} for n in range(6)]})
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_view_plain_when_not_a_terminal():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        view = subprocess.Popen([sys.executable, VIEW, "--http", url, "--user", "u1",
                                 "--user", "u2", "--interval", "0.2", "--plain-every", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3.5)
        view.send_signal(signal.SIGINT)
        out, err = view.communicate(timeout=10)
    finally:
        server.shutdown()
    assert view.returncode == 0, err
    lines = out.splitlines()
    assert 3 <= len(lines) <= 5, out  # one a second, not one a redraw
    assert "\033" not in out
    last = lines[-1]
    assert re.search(r"events/s [\d,]+ lists/s [\d,]+ freshness p50 12 ms p95 > 60 s p99 > 60 s", last), last
    assert "u1: i0 i1 i2 i3 i4;" in last + ";" and "u2: (no list yet)" in last, last
