"""Content vectors and search intent measured by `streamrec eval --json`.

`streamrec gen --content --searches` plants a stream whose items have
content vectors (their cluster's latent factor through a fixed random
projection, plus noise), whose popularity drifts (new items keep rising),
and with search-then-buy sessions (a query near an item of a cluster the
user does not usually visit, then a purchase of it). Each signal must
improve its own figure, and switched off (`--signals` without it) lose it:
recall@20 on the first events of new items for content, recall@20 of the
purchase right after a search for search. The figures are deterministic
(same seed, same build: same numbers), so margins are fixed, not sampled.
"""
import json
import subprocess

import pytest

from harness import BUILD

STREAMREC = BUILD / "streamrec"
ALL_BUT = "taste,intent,covis,bias,correction,trending"


def run(*args):
    return subprocess.run([STREAMREC, *map(str, args)], capture_output=True, text=True,
                          check=True, timeout=600)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    d = tmp_path_factory.mktemp("content")
    run("gen", "--events", 100000, "--users", 3000, "--items", 3000, "--drift-period", 20000,
        "--seed", 3, "--out", d / "events.csv", "--content", d / "content.tsv",
        "--content-dim", 32, "--searches", 2000)
    return d


def figures(planted, name, *options):
    out = planted / f"{name}.json"
    result = run("eval", planted / "events.csv", "--no-baselines", "--new-item-events", 3,
                 "--json", out, *options)
    data = json.loads(out.read_text())
    ours = next(r for r in data["rankings"] if r["name"] == "streamrec")
    return data, ours, result.stdout


def test_each_signal_improves_its_figure_and_loses_it_switched_off(planted):
    content = ["--content", planted / "content.tsv"]
    data, both, text = figures(planted, "both", *content)
    assert data["content_dim"] == 32 and data["searches"] == 2000
    assert data["signals"]["content"] == 1 and data["signals"]["search"] == 1
    assert "new items" in text and "after a search" in text
    _, no_content, _ = figures(planted, "no_content", *content, "--signals", ALL_BUT + ",search")
    _, no_search, _ = figures(planted, "no_search", *content, "--signals", ALL_BUT + ",content")
    _, neither, _ = figures(planted, "neither", *content, "--signals", ALL_BUT)
    for name, f in (("both", both), ("content", no_search), ("search", no_content),
                    ("neither", neither)):
        print(f"{name}: recall@20 all {f['all']['recall']:.4f}, new items' first 3 events "
              f"{f['new_item']['recall']:.4f}, purchase after a search "
              f"{f['after_search']['recall']:.4f}")
    assert both["new_item"]["tests"] == neither["new_item"]["tests"] > 1000
    # one test a search (the purchase), but for the few the user had bought before
    assert both["after_search"]["tests"] == neither["after_search"]["tests"] > 1950
    # content: new items' first events, alone and beside search
    assert no_search["new_item"]["recall"] > 1.08 * neither["new_item"]["recall"]
    assert both["new_item"]["recall"] > 1.08 * no_content["new_item"]["recall"]
    # search: the purchase after it, alone and beside content (the content
    # prior keeps items near where the map puts their content: queries meet them)
    assert no_content["after_search"]["recall"] > 1.3 * neither["after_search"]["recall"]
    assert both["after_search"]["recall"] > 2 * no_search["after_search"]["recall"]
    # and neither costs the whole stream much
    assert both["all"]["recall"] > 0.97 * neither["all"]["recall"]


def test_a_content_file_must_match_itself(planted, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("i1\t0.1 0.2 0.3\ni2\t0.1 0.2\n")
    result = subprocess.run([STREAMREC, "eval", planted / "events.csv", "--content", bad],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "bad.tsv:2: 2 numbers, the first line had 3" in result.stderr
    bad.write_text("i1\t0.1 nan 0.3\n")
    result = subprocess.run([STREAMREC, "eval", planted / "events.csv", "--content", bad],
                            capture_output=True, text=True)
    assert "bad.tsv:1: number 2 is not finite" in result.stderr
