"""ThreadSanitizer on the threaded parts: no data race in our code.

The top-k engine hands query slices to helper threads while OpenBLAS runs
its own; an index build splits its assignments over threads; the state hands commits to a writer thread while the caller learns
and reads RocksDB; the refresher's workers rank lists while the loop learns; the
lookup API's thread reads lists while the loop replaces them; the text
threads embed while the loop submits and takes. All run here under ThreadSanitizer builds. OpenBLAS and
RocksDB are not instrumented and synchronise with primitives ThreadSanitizer
cannot see, so tests/tsan.supp silences reports that pass through them (and
only those): a race between two of our own threads is still reported.
"""
import subprocess

from harness import BUILD, ROOT

TSAN_ENV = {"TSAN_OPTIONS": f"suppressions={ROOT / 'tests' / 'tsan.supp'} halt_on_error=1 "
                            "exitcode=66"}


def run(args):
    import os
    env = dict(os.environ, **TSAN_ENV)
    # ThreadSanitizer needs a fixed address layout on kernels with high ASLR entropy
    return subprocess.run(["setarch", "x86_64", "-R", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=900)


def test_topk_helper_threads_are_race_free():
    result = run([BUILD / "tsan" / "030_topk"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "ThreadSanitizer" not in output, output[-6000:]
    assert "PASSED" in output


def test_index_build_assignment_threads_are_race_free():
    """031_ivf: an index build splits its assignments over threads (the
    daemon's start builds its indexes on every refresh thread's core)."""
    result = run([BUILD / "tsan" / "031_ivf"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "ThreadSanitizer" not in output, output[-6000:]
    assert "a_build_over_threads_gives_the_same_cells" in output and "PASSED" in output, \
        output[-6000:]


def test_refresh_workers_rank_beside_learning_race_free():
    """065_refresh runs every refresher test on the caller's thread, then on
    two workers, including learning (new items, moved rows, new exclusions)
    while a round ranks."""
    result = run([BUILD / "tsan" / "065_refresh"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "ThreadSanitizer" not in output, output[-6000:]
    assert output.count("PASSED") == 2, output[-6000:]


def test_lookup_api_thread_reads_lists_beside_their_writer_race_free():
    """067_lists_api: the API's thread answers lookups over loopback while the
    test's thread (the event loop's role) replaces every list again and again."""
    result = run([BUILD / "tsan" / "067_lists_api"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "ThreadSanitizer" not in output, output[-6000:]
    assert "PASSED" in output


def test_text_threads_embed_beside_the_loop_race_free():
    """068_embedpool: the text threads embed while the test's thread (the
    loop's role) submits, takes, drops owners and frees the pool mid-work."""
    result = run([BUILD / "tsan" / "068_embedpool"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "ThreadSanitizer" not in output, output[-6000:]
    assert "PASSED" in output


def test_state_writer_thread_is_race_free(tmp_path):
    events = tmp_path / "events.csv"
    subprocess.run([BUILD / "streamrec", "gen", "--events", "40000", "--users", "2000",
                    "--items", "500", "--clusters", "5", "--out", events], check=True,
                   capture_output=True)
    result = run([BUILD / "tsan" / "streamrec", "replay", "--state", tmp_path / "state",
                  "--commit-every", "1000", "--user-cache", "300", "--digest", events])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "ThreadSanitizer" not in output, output[-6000:]
    assert "digest" in result.stdout


def test_eval_ranking_thread_is_race_free(tmp_path):
    """`streamrec eval --threads 2|3`: threads rank one block of test points
    against the item side as of its start while the replay learns the next
    block and captures its changes; both engines, and the figures of one
    thread."""
    events = tmp_path / "events.csv"
    subprocess.run([BUILD / "streamrec", "gen", "--events", "20000", "--users", "800",
                    "--items", "600", "--clusters", "5", "--out", events], check=True,
                   capture_output=True)
    for engine in ("index", "exact"):
        outputs = []
        for threads in ("1", "2", "3"):
            result = run([BUILD / "tsan" / "streamrec", "eval", events, "--no-baselines",
                          "--retrieval", engine, "--sync-every", "128", "--threads", threads])
            output = result.stdout + result.stderr
            assert result.returncode == 0, output[-6000:]
            assert "ThreadSanitizer" not in output, output[-6000:]
            assert f"{threads} thread" in result.stdout, result.stdout
            outputs.append([line for line in result.stdout.splitlines()
                            if line.startswith("|")])
        assert outputs[0] == outputs[1] == outputs[2]
