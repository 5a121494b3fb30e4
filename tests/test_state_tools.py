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


def test_replay_and_eval_take_an_explicit_format(learned, tmp_path):
    root, events, _, digest = learned
    out = run("replay", "--state", tmp_path / "s", "--format", "csv", "--digest", events)
    assert re.search(r"digest (\w+) step (\d+)", out.stdout).group(0) == digest
    assert "streamrec" in run("eval", "--format", "csv", "--test-every", "20", events).stdout
    for command in (["replay", "--state", tmp_path / "t"], ["eval"]):
        refused = run(*command, "--format", "xml", events, check=False)
        assert refused.returncode == 2 and "'xml'" in refused.stderr
