"""`streamrec eval --export-stream/--json`: the exported protocol is the one evaluated.

A pure-Python popularity ranker (bench/protocol.py, the one bench/peers.py
scores peers with) replays the exported stream on its test points, with its
exclusions, and must reproduce the popularity figures `streamrec eval`
printed in the same run, bit for bit; the test points counted must match.
Any drift in the export (a test point marked wrongly, an exclusion missed,
the order of events) changes the figures.
"""
import json
import subprocess
import sys

import pytest

from harness import BUILD, ROOT

sys.path.insert(0, str(ROOT / "bench"))
import protocol  # noqa: E402

STREAMREC = BUILD / "streamrec"


def run(*args):
    return subprocess.run([STREAMREC, *map(str, args)], capture_output=True, text=True,
                          check=True, timeout=300)


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "events.csv"
    run("gen", "--events", "30000", "--users", "1500", "--items", "400", "--clusters", "6",
        "--out", path)
    return path


PROTOCOLS = {
    "default": [],
    "interacted-sampled": ["--exclude", "interacted", "--test-every", "3", "--warmup", "4000",
                           "--k", "10"],
    "no-exclusion": ["--exclude", "none", "--weight", "view=0"],
}


@pytest.mark.parametrize("name", PROTOCOLS)
def test_popularity_replayed_from_export_equals_eval(events, tmp_path, name):
    exported, figures = tmp_path / "stream.csv", tmp_path / "result.json"
    run("eval", events, "--export-stream", exported, "--json", figures, *PROTOCOLS[name])
    result = json.loads(figures.read_text())
    stream = protocol.Stream(exported)

    assert stream.count == result["events"] == 30000
    assert stream.ts_ms == sorted(stream.ts_ms)
    assert stream.tests == result["model"]["tests"] == result["popularity"]["tests"] > 0
    assert stream.test.count(protocol.SKIPPED_EXCLUDED) == result["skipped_excluded"]
    if result["exclude"] == "none":
        assert not any(stream.excludes)
    else:
        assert any(stream.excludes)
    weights = result["weights"]
    assert all(stream.weight[e] == weights[stream.type[e]] for e in range(stream.count))

    scores, _ = protocol.replay(stream, protocol.Popularity(stream.users, stream.items),
                                k=result["k"])
    assert scores == result["popularity"]


def test_unwritable_export_is_an_error(events, tmp_path):
    out = subprocess.run([STREAMREC, "eval", events, "--export-stream",
                          tmp_path / "missing" / "stream.csv"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "missing/stream.csv" in out.stderr
