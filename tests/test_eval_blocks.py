"""`streamrec eval --threads 2` / `--sync-every N` (issue 12, offline speed).

Lists are ranked a block of N events at a time against the item side as of
the block's start (each with its user side as of its own test point), on a
thread of their own beside learning. The figures must not depend on the
threads, baselines (ranked at each test point either way) must not move, and
blocks must cost little accuracy: the fused list still reaches every
baseline. Misused options are refused with the option named.
"""
import json
import subprocess

import pytest

from harness import BUILD

STREAMREC = BUILD / "streamrec"


def run(*args):
    return subprocess.run([STREAMREC, *map(str, args)], capture_output=True, text=True,
                          check=True, timeout=300)


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    path = tmp_path_factory.mktemp("blocks") / "pairs.csv"
    run("gen", "--events", "40000", "--users", "1500", "--items", "1500",
        "--reverse-share", "0.5", "--out", path)
    return path


def figures(path, tmp_path, *options):
    out = tmp_path / "eval.json"
    text = run("eval", "--retrieval", "index", "--baseline-half-lives", "1h", *options,
               "--json", out, path).stdout
    data = json.loads(out.read_text())
    return text, data, {r["name"]: r for r in data["rankings"]}


def test_blocks_on_a_ranking_thread_keep_the_figures(stream, tmp_path):
    _, serial_json, serial = figures(stream, tmp_path)
    text, two_json, two = figures(stream, tmp_path, "--threads", "2")
    _, _, one = figures(stream, tmp_path, "--threads", "1", "--sync-every", "256")
    _, _, three = figures(stream, tmp_path, "--threads", "3")
    assert "2 threads, index engine, lists ranked in blocks of 256 events" in text
    assert (two_json["sync_every"], two_json["threads"]) == (256, 2)
    assert (serial_json["sync_every"], serial_json["threads"]) == (0, 1)
    assert one == two == three  # the threads change nothing
    for name, ranking in serial.items():
        if name != "streamrec":  # baselines rank at the test point either way
            assert two[name] == ranking, name
    ours, before = two["streamrec"]["all"], serial["streamrec"]["all"]
    assert ours["tests"] == before["tests"]
    assert ours["recall"] == pytest.approx(before["recall"], rel=0.03)
    best = max(r["all"]["recall"] for n, r in two.items() if n != "streamrec")
    assert ours["recall"] >= best


@pytest.mark.parametrize("options, named", [
    (["--threads", "65"], "--threads"),
    (["--threads", "0"], "--threads"),
    (["--threads", "2", "--sync-every", "0"], "--threads 2"),
    (["--sync-every", "-4"], "--sync-every"),
    (["--sync-every", "64", "--retrieval", "both"], "--retrieval both"),
    (["--threads", "2", "--max-per-category", "2"], "list rules"),
    # their candidates rank at each test point: set beside lists ranked in
    # blocks, the plain protocol's edge would pass for a better setting
    (["--threads", "2", "--tune"], "--tune"),
    (["--sync-every", "64", "--tune-rounds", "2"], "--tune"),
    (["--threads", "2", "--ablations"], "--ablations"),
])
def test_misused_block_options_are_refused(stream, options, named):
    r = subprocess.run([STREAMREC, "eval", *options, stream], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert named in r.stderr, r.stderr
