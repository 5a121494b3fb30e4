"""Crash safety: SIGKILL at random points, restart from the stored offsets,
and the final state is bit-identical to an uninterrupted run.

`streamrec replay` learns a deterministic event file into a RocksDB state
directory with write-behind commits (rows and offsets in one atomic batch)
and resumes after the last committed event. A child is killed with SIGKILL
many times at random moments; each restart continues from the stored offset.
When it finally finishes, its digest (every saved row and global) and its
step counter must equal those of one uninterrupted in-memory run: every event
applied exactly once, none lost, none twice.
"""
import random
import re
import subprocess
import time

import pytest

from harness import BUILD

STREAMREC = BUILD / "streamrec"


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("crash") / "events.csv"
    subprocess.run([STREAMREC, "gen", "--events", "600000", "--users", "20000", "--items",
                    "5000", "--clusters", "20", "--seed", "7", "--out", path],
                   check=True, capture_output=True)
    return path


def digest(output):
    match = re.search(r"digest ([0-9a-f]{16}) step (\d+)", output)
    assert match, output
    return match.group(1), int(match.group(2))


@pytest.mark.parametrize("user_cache", [None, 3000], ids=["all-users-in-memory", "user-cache-3000"])
def test_sigkill_at_random_points_loses_and_repeats_nothing(events, tmp_path, user_cache):
    """With a bounded user cache too: evicted users come back from RocksDB."""
    cache = [] if user_cache is None else ["--user-cache", str(user_cache)]
    reference = subprocess.run([STREAMREC, "replay", "--memory-only", "--digest", events],
                               check=True, capture_output=True, text=True)
    expected = digest(reference.stdout)

    state = tmp_path / "state"
    rng = random.Random(2026)
    kills = 0
    offsets = []
    for attempt in range(60):
        child = subprocess.Popen([STREAMREC, "replay", "--state", state, "--commit-every",
                                  str(rng.choice([500, 1000, 5000])), "--digest", *cache,
                                  events],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if kills < 12:
            time.sleep(rng.uniform(0.05, 0.6))
            if child.poll() is None:
                child.kill()  # SIGKILL: no chance to flush anything
                child.communicate()
                kills += 1
                continue
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        if "digest" in out:
            assert digest(out) == expected, f"after {kills} kills: {out} vs {expected}"
            break
    else:
        pytest.fail("the replay never finished")
    assert kills >= 5, f"only {kills} kills landed mid-run; the stream is too short"


def test_bounded_user_cache_learns_the_same(events, tmp_path):
    """Evicting users to RocksDB and restoring them changes nothing learned."""
    unbounded = subprocess.run([STREAMREC, "replay", "--state", tmp_path / "a", "--digest",
                                events], check=True, capture_output=True, text=True)
    small = subprocess.run([STREAMREC, "replay", "--state", tmp_path / "b", "--user-cache", "500",
                            "--commit-every", "20000", "--digest", events],
                           check=True, capture_output=True, text=True)
    assert digest(small.stdout) == digest(unbounded.stdout)


def test_state_resumes_where_it_stopped(events, tmp_path):
    """A replay stopped cleanly part way resumes at the next event."""
    state = tmp_path / "state"
    child = subprocess.Popen([STREAMREC, "replay", "--state", state, "--commit-every", "1000",
                              events], stderr=subprocess.PIPE, text=True)
    # a SIGTERM before main() has set its handler ends the process as any
    # program's: on a busy machine the sanitized binary took longer than a
    # fixed 0.3 s to start, so wait for its state to be opened
    deadline = time.monotonic() + 120
    while not (state / "CURRENT").exists() and child.poll() is None:
        assert time.monotonic() < deadline, "the replay never opened its state"
        time.sleep(0.01)
    time.sleep(0.3)
    child.terminate()  # SIGTERM: the replay stops and commits what it learned
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    done = int(re.search(r"state at (-?\d+)", err).group(1))
    again = subprocess.run([STREAMREC, "replay", "--state", state, events], check=True,
                           capture_output=True, text=True)
    assert f"events {done + 1}.." in again.stderr, again.stderr
