"""List rules in `streamrec eval`: on a planted stream where new items keep
arriving (`streamrec gen --arrival-share`), the exploration share raises the
exposure of new items (share of list slots, distinct new items shown) over
the same model's plain list, scored on the same test points, at a measured
cost in recall; switched off, the ruled list is the plain list.
"""
import json
import subprocess

import pytest

from harness import BUILD

STREAMREC = BUILD / "streamrec"


def run(*args, check=True):
    return subprocess.run([STREAMREC, *map(str, args)], capture_output=True, text=True,
                          check=check, timeout=300)


@pytest.fixture(scope="module")
def arrivals(tmp_path_factory):
    path = tmp_path_factory.mktemp("arrivals") / "arrivals.csv"
    run("gen", "--events", "40000", "--users", "1500", "--items", "1500", "--clusters", "10",
        "--seed", "7", "--arrival-share", "0.5", "--out", path)
    return path


def evaluate(path, tmp_path, name, *options):
    out = tmp_path / f"{name}.json"
    run("eval", path, "--no-baselines", "--json", out, *options)
    return json.loads(out.read_text())


def test_arrivals_keep_coming(arrivals):
    """Half the items launch while the stream runs: the items first seen in
    its last quarter are many, and none of them is seen before its launch."""
    first_seen = {}
    rows = arrivals.read_text().splitlines()[1:]
    for n, line in enumerate(rows):
        first_seen.setdefault(line.split(",")[2], n)
    late = sum(n >= 0.75 * len(rows) for n in first_seen.values())
    assert late > 100, late
    # the default stream (no arrivals) meets nearly every item early
    plain = arrivals.parent / "plain.csv"
    run("gen", "--events", "40000", "--users", "1500", "--items", "1500", "--clusters", "10",
        "--seed", "7", "--out", plain)
    first_plain = {}
    rows = plain.read_text().splitlines()[1:]
    for n, line in enumerate(rows):
        first_plain.setdefault(line.split(",")[2], n)
    assert sum(n >= 0.75 * len(rows) for n in first_plain.values()) < late / 3


def test_exploration_raises_new_item_exposure_at_a_measured_recall_cost(arrivals, tmp_path):
    """One run scores the model's plain list and the same list with two of
    twenty slots explored, on the same test points."""
    on = evaluate(arrivals, tmp_path, "on", "--explore-max-events", "5", "--test-every", "2",
                  "--explore-share", "0.1")
    plain, explored = on["exposure"]["model"], on["exposure"]["rules"]
    print(f"new-item slots: plain {plain['new_share']:.4f}, explore 0.1 "
          f"{explored['new_share']:.4f}; distinct new items shown: plain "
          f"{plain['new_items_shown']}, explore {explored['new_items_shown']}; recall@20: "
          f"plain {on['model']['recall']:.4f}, explore {on['rules']['recall']:.4f}")
    assert explored["slots"] >= plain["slots"]  # exploration may lengthen a short list
    assert explored["new_share"] >= plain["new_share"] + 0.05
    assert explored["new_items_shown"] > 1.3 * plain["new_items_shown"]
    # two of twenty slots go to new items: recall loses at most about their share
    assert on["rules"]["recall"] >= 0.8 * on["model"]["recall"]


def test_rules_switched_off_give_the_plain_list(arrivals, tmp_path):
    """Exploration off (and a cap no list reaches): the ruled list is the plain one."""
    doc = evaluate(arrivals, tmp_path, "none", "--max-events", "10000", "--max-per-category",
                   "1000", "--explore-share", "0")
    assert doc["rules"]["recall"] == doc["model"]["recall"]
    assert doc["exposure"]["rules"] == doc["exposure"]["model"]


@pytest.mark.parametrize("option, value, message", [
    ("--pin", "i1@0", "--pin: entry 1 'i1@0': the rank must be a whole number from 1 to 1000"),
    ("--pin", "i1@30", "--pin: item 'i1' is pinned at rank 30, beyond k = 20"),
    ("--boost", "item:i1", "--boost: entry 1 'item:i1': expected item:NAME=DELTA"),
    ("--explore-share", "2", "--explore-share: must be a number from 0 to 1, got '2'"),
    ("--exclude-categories", "a,,b", "--exclude-categories: entry 2 is empty"),
])
def test_rule_options_are_checked_with_the_option_named(arrivals, option, value, message):
    out = run("eval", arrivals, option, value, check=False)
    assert out.returncode == 2 and message in out.stderr, out.stderr


def test_rules_naming_what_the_log_lacks_are_refused(arrivals):
    out = run("eval", arrivals, "--pin", "no-such-item@1", "--max-events", "100", check=False)
    assert out.returncode != 0 and "--pin: the log has no item 'no-such-item'" in out.stderr
    out = run("eval", arrivals, "--exclude-categories", "99", "--max-events", "100", check=False)
    assert out.returncode != 0 and "the log has no category '99'" in out.stderr
