"""State directory tools: export/import, checkpoint, inspect, id stability.

A state learned by `streamrec replay` is exported and imported into a new
directory, and checkpointed; both copies hold the same model (equal digests)
and the same offsets. Ids keep their indices across restarts and copies.
"""
import re
import subprocess

import pytest

from harness import BUILD

STREAMREC = BUILD / "streamrec"


def run(*args, check=True):
    return subprocess.run([STREAMREC, *map(str, args)], capture_output=True, text=True,
                          check=check, timeout=300)


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    root = tmp_path_factory.mktemp("state")
    events = root / "events.csv"
    run("gen", "--events", "80000", "--users", "3000", "--items", "800", "--clusters", "8",
        "--out", events)
    state = root / "state"
    out = run("replay", "--state", state, "--commit-every", "3000", "--digest", events).stdout
    return root, events, state, re.search(r"digest (\w+) step (\d+)", out).group(0)


def digest_of(state, events):
    out = run("replay", "--state", state, "--digest", events)
    assert "events 80000.." in out.stderr, out.stderr  # nothing left to learn
    return re.search(r"digest (\w+) step (\d+)", out.stdout).group(0)


def test_a_replayed_state_leaves_no_log_to_replay(learned):
    """replay ends as the daemon's clean stop does: the memtables written, so
    whatever opens the state next replays no write-ahead log."""
    _, _, state, _ = learned
    wal = {p.name: p.stat().st_size for p in state.glob("*.log")}
    assert sum(wal.values()) == 0, wal


def test_export_import_round_trip(learned):
    root, events, state, digest = learned
    dump = root / "state.export"
    assert run("export", "--state", state, "--out", dump).returncode == 0
    copy = root / "imported"
    assert run("import", "--in", dump, "--state", copy).returncode == 0
    assert digest_of(copy, events) == digest


def test_checkpoint_is_a_consistent_copy(learned):
    root, events, state, digest = learned
    copy = root / "checkpoint"
    assert run("checkpoint", "--state", state, "--to", copy).returncode == 0
    assert digest_of(copy, events) == digest


def test_ids_keep_their_indices(learned):
    root, events, state, _ = learned
    before = run("inspect", "--state", state, "--item", "i5").stdout
    after = run("inspect", "--state", state, "--item", "i5").stdout
    index = re.search(r"item i5 \(#(\d+)\)", before)
    assert index and index.group(0) in after
    user = run("inspect", "--state", state, "--user", "u7", "--k", "5").stdout
    assert len(re.findall(r"^\s+\d+\. i\d+", user, re.M)) == 5, user


def test_bad_inputs_are_refused(learned, tmp_path):
    root, events, state, _ = learned
    refused = run("import", "--in", root / "state.export", "--state", state, check=False)
    assert refused.returncode == 1 and "already exists" in refused.stderr
    junk = tmp_path / "junk"
    junk.write_bytes(b"not an export")
    refused = run("import", "--in", junk, "--state", tmp_path / "new", check=False)
    assert refused.returncode == 1 and "not a streamrec export file" in refused.stderr
    assert not (tmp_path / "new").exists()
    missing = run("inspect", "--state", state, "--item", "no-such-item", check=False)
    assert missing.returncode == 1 and "not in the state" in missing.stderr
    usage = run("inspect", "--state", state, check=False)
    assert usage.returncode == 2
    # a mistyped state path: refused, and nothing made there (it was an
    # empty new state, exported or copied with "written" and exit 0)
    for command in (["export", "--out", tmp_path / "x.export"],
                    ["checkpoint", "--to", tmp_path / "copy"]):
        refused = run(command[0], "--state", tmp_path / "typo", *command[1:], check=False)
        assert refused.returncode == 1 and "holds no state" in refused.stderr, refused
        assert not (tmp_path / "typo").exists() and not (tmp_path / "copy").exists()
    # a variant the state does not hold is refused, naming those it holds
    # (it was a new, empty variant: step 0 and the trending list, exit 0)
    for command in (["inspect", "--user", "user-1"], ["digest"]):
        refused = run(*command, "--state", state, "--variant", "nosuch", check=False)
        assert refused.returncode == 1, refused.stdout
        assert "no variant 'nosuch' in the state (it holds 'model')" in refused.stderr
    assert run("digest", "--state", state, "--variant", "model").stdout == \
        run("digest", "--state", state).stdout


def test_replay_and_eval_take_an_explicit_format(learned, tmp_path):
    root, events, _, digest = learned
    out = run("replay", "--state", tmp_path / "s", "--format", "csv", "--digest", events)
    assert re.search(r"digest (\w+) step (\d+)", out.stdout).group(0) == digest
    assert "streamrec" in run("eval", "--format", "csv", "--test-every", "20", events).stdout
    for command in (["replay", "--state", tmp_path / "t"], ["eval"]):
        refused = run(*command, "--format", "xml", events, check=False)
        assert refused.returncode == 2 and "'xml'" in refused.stderr


def test_inspect_explains_each_listed_item(learned, tmp_path):
    """--explain: each listed item's reason, the recent item behind it (one of
    the user's recent items, for intent and co-visitation), and the terms of
    its score, which add up to the score; a user without history is cold_start."""
    root, _, state, _ = learned
    out = run("inspect", "--state", state, "--user", "u7", "--k", "10", "--explain").stdout
    recent = set(re.search(r"recent items \(oldest first\):(.*)", out).group(1).split())
    lines = re.findall(r"^\s+\d+\. (\S+)\s+(-?[\d.]+)\s+(\w+)\s+because (\S+)\s+taste (\S+) "
                       r"intent (\S+) covis (\S+) trending (\S+)$", out, re.M)
    assert len(lines) == 10, out
    for item, score, reason, because, *terms in lines:
        assert reason in ("taste", "intent", "covis", "trending"), out
        assert (because in recent) if reason in ("intent", "covis") else because == "-", out
        values = [float(t) for t in terms]
        assert abs(sum(values) - float(score)) < 0.01 + 1e-4 * abs(float(score)), out
        assert values[("taste", "intent", "covis", "trending").index(reason)] == max(values)
    # a user the state has never seen, in a copy (inspect may add the user)
    copy = tmp_path / "copy"
    run("checkpoint", "--state", state, "--to", copy)
    cold = run("inspect", "--state", copy, "--user", "never-seen", "--k", "3", "--explain").stdout
    assert len(re.findall(r"^\s+\d+\. \S+\s+\S+\s+cold_start\s+because -\s*$", cold, re.M)) == 3, \
        cold


def test_export_and_checkpoint_copy_a_state_of_any_settings(tmp_path):
    """export and checkpoint copy a state as stored, whatever model settings
    it was written with, and change nothing in it. They opened it with the
    default settings: a state of another dim was refused, and one with fewer
    co-visitation neighbours had its stored bound grown to the default's, so
    the daemon then refused its own configuration."""
    events = tmp_path / "events.csv"
    run("gen", "--events", "5000", "--users", "300", "--items", "100", "--out", events)
    state = tmp_path / "state"
    config = tmp_path / "streamrecd.conf"
    config.write_text(f"[state]\ndir = {state}\n[kafka]\nbootstrap.servers = 127.0.0.1:9\n"
                      "[model]\ncovis_neighbours = 256\n")
    run("replay", "--config", config, events)
    digest = run("digest", "--config", config).stdout
    assert run("export", "--state", state, "--out", tmp_path / "x.export").returncode == 0
    assert run("checkpoint", "--state", state, "--to", tmp_path / "copy").returncode == 0
    # the source opens under its own settings, unchanged
    assert run("digest", "--config", config).stdout == digest
    run("import", "--in", tmp_path / "x.export", "--state", tmp_path / "imported")
    for copy in ("copy", "imported"):
        assert run("digest", "--config", config, "--state", tmp_path / copy).stdout == digest
    # a state of another dim: exported too (it was refused)
    other = tmp_path / "other.conf"
    other.write_text(config.read_text().replace(str(state), str(tmp_path / "dim16"))
                     + "dim = 16\n")
    run("replay", "--config", other, events)
    assert run("export", "--state", tmp_path / "dim16",
               "--out", tmp_path / "dim16.export").returncode == 0


def test_an_export_is_complete_or_refused_and_replaces_only_an_export(learned, tmp_path):
    """An export ends with a record counting its entries: a copy cut short,
    even at an entry's boundary, is refused by import (it was imported with
    exit 0, its offsets covering rows it did not hold). An export is written
    beside its path and renamed over it: it replaces an earlier export, and
    refuses to replace a file that is no export (it truncated any file)."""
    root, events, state, digest = learned
    dump = tmp_path / "state.export"
    assert run("export", "--state", state, "--out", dump).returncode == 0
    data = dump.read_bytes()
    assert data.startswith(b"streamrec-export 2\n") and data[-17] == 0xff
    cut = tmp_path / "cut.export"
    cut.write_bytes(data[:-17])  # the entries whole, the end record gone
    refused = run("import", "--in", cut, "--state", tmp_path / "from-cut", check=False)
    assert refused.returncode == 1 and "cut short" in refused.stderr, refused.stderr
    assert not (tmp_path / "from-cut").exists()
    # replacing an earlier export: the same bytes, no partial file left
    assert run("export", "--state", state, "--out", dump).returncode == 0
    assert dump.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    notes = tmp_path / "notes.txt"
    notes.write_text("precious\n")
    refused = run("export", "--state", state, "--out", notes, check=False)
    assert refused.returncode == 1 and "is not a streamrec export" in refused.stderr
    assert notes.read_text() == "precious\n"
    # an export of the version before (no end record) still imports
    old = tmp_path / "v1.export"
    old.write_bytes(b"streamrec-export 1\n" + data[len(b"streamrec-export 2\n"):-17])
    run("import", "--in", old, "--state", tmp_path / "from-v1")
    assert digest_of(tmp_path / "from-v1", events) == digest
