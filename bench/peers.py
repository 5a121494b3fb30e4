#!/usr/bin/env python3
"""streamrec against its peers, on the same stream, under the same protocol.

`streamrec eval` replays the stream test-then-train and exports what it
evaluated (`--export-stream`: time order, dense indices, each event's test
flag and exclusions) with its figures (`--json`). Each peer then replays the
exported stream through bench/protocol.py: ranked on exactly the same test
points, with the same k and the same exclusions, then taught the event.

Peers:
  popularity  all-time counts (pure Python); must equal streamrec's own
              popularity figure, which cross-checks the protocol.
  river       River's reco.BiasedMF, learn_one per event: a positive is
              learned as y=1 plus NEGATIVES items drawn uniformly from the
              items seen so far as y=0 (implicit feedback has no zeros of
              its own); a negative-weight event as y=0. Ranking reads River's
              own item latents and biases into a numpy matrix (rows copied
              when River changed them) and scores every item at once: the
              same numbers as predict_one per item, without 5,000 calls.
  als, bpr    implicit's AlternatingLeastSquares / BayesianPersonalizedRanking,
              refit from scratch on every positive seen so far (summed
              weights) every RETRAIN_EVERY learned events, as a periodic
              batch job would; lists come from the last fit.
Users a peer has not learned yet (and every user before a batch peer's
first fit) get the peer's popularity list, as streamrec serves cold users
its trending list. Items a peer has never learned are not ranked.

Throughput: events/s are stream events (all of them, as `streamrec eval`
counts) over seconds, single-threaded everywhere (OPENBLAS_NUM_THREADS=1,
implicit's num_threads=1). "learn only" replays without ranking; medians
over --runs runs for streamrec, popularity and River; the batch peers and
the test+learn column of peers come from one run. Figures are printed,
never asserted.

  bench/peers.py                                   # synthetic stream from `streamrec gen`
  bench/peers.py --data ratings.dat --format movielens
"""
import argparse
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import protocol  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def machine_line():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # nproc obeys it

    def sh(cmd):
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              env=env).stdout.strip()
    model = sh("lscpu | sed -n 's/^Model name: *//p'")
    mem = sh("free -g | awk '/^Mem/ {print $2}'")
    return f"{sh('nproc')} cores, {mem} GiB, {model}"


def top_k(scores, k):
    """Indices of the k highest finite scores, best first, ties to the lower index."""
    finite = np.flatnonzero(scores > -np.inf)
    if finite.size == 0:
        return []
    s = scores[finite]
    if finite.size > k:
        part = np.argpartition(-s, k - 1)[:k]
    else:
        part = np.arange(finite.size)
    order = part[np.lexsort((finite[part], -s[part]))]
    return finite[order].tolist()


class RiverMF:
    name = "River BiasedMF"

    def __init__(self, users, items, dim, lr, negatives, seed, l2=0.0):
        from river import optim, reco
        self.model = reco.BiasedMF(
            n_factors=dim, bias_optimizer=optim.SGD(lr), latent_optimizer=optim.SGD(lr),
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            l2_latent=l2, seed=seed)
        self.negatives = negatives
        self.random = random.Random(seed)
        self.fallback = protocol.Popularity(users, items)
        self.q = np.zeros((items, dim))
        self.bias = np.full(items, -np.inf)  # -inf: never learned, not ranked
        self.seen_items, self.seen = [], bytearray(items)
        self.learned_users = bytearray(users)
        self.dirty = set()

    def learn(self, user, item, weight):
        self.fallback.learn(user, item, weight)
        model, dirty = self.model, self.dirty
        if not self.seen[item]:
            self.seen[item] = 1
            self.seen_items.append(item)
        if weight < 0:
            model.learn_one(user, item, 0.0)
            dirty.add(item)
            return
        self.learned_users[user] = 1
        model.learn_one(user, item, 1.0)
        dirty.add(item)
        seen = self.seen_items
        for _ in range(self.negatives):
            negative = seen[self.random.randrange(len(seen))]
            if negative != item:
                model.learn_one(user, negative, 0.0)
                dirty.add(negative)

    def recommend(self, user, k, excluded):
        if not self.learned_users[user]:
            return self.fallback.recommend(user, k, excluded)
        model = self.model
        for item in self.dirty:
            self.q[item] = model.i_latents[item]
            self.bias[item] = model.i_biases[item]
        self.dirty.clear()
        scores = self.q @ model.u_latents[user] + self.bias  # + user bias and mean: same order
        if excluded:
            scores[list(excluded)] = -np.inf
        return top_k(scores, k)


class BatchImplicit:
    """implicit's ALS or BPR, refit every retrain_every learned events."""

    def __init__(self, kind, users, items, dim, retrain_every, seed):
        self.kind, self.users, self.items = kind, users, items
        self.name = {"als": "implicit ALS", "bpr": "implicit BPR"}[kind] + \
            f" (refit every {retrain_every:,} learned events)"
        self.dim, self.retrain_every, self.seed = dim, retrain_every, seed
        self.fallback = protocol.Popularity(users, items)
        self.rows, self.cols, self.vals = [], [], []
        self.learned = 0
        self.user_factors = None
        self.fits = 0

    def fit(self):
        import scipy.sparse as sp
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        matrix = sp.coo_matrix((np.array(self.vals, dtype=np.float32),
                                (np.array(self.rows), np.array(self.cols))),
                               shape=(self.users, self.items)).tocsr()
        if self.kind == "als":
            model = AlternatingLeastSquares(factors=self.dim, regularization=0.01, alpha=1.0,
                                            iterations=15, num_threads=1,
                                            random_state=self.seed)
        else:
            model = BayesianPersonalizedRanking(factors=self.dim, learning_rate=0.05,
                                                regularization=0.01, iterations=50,
                                                num_threads=1, random_state=self.seed)
        model.fit(matrix, show_progress=False)
        self.user_factors = np.asarray(model.user_factors)
        self.item_factors = np.asarray(model.item_factors)
        self.fitted_users = np.diff(matrix.indptr) > 0
        self.fitted_items = np.asarray(matrix.sum(axis=0)).ravel() > 0
        self.fits += 1

    def learn(self, user, item, weight):
        self.fallback.learn(user, item, weight)
        if weight > 0:
            self.rows.append(user)
            self.cols.append(item)
            self.vals.append(weight)
        self.learned += 1
        if self.learned % self.retrain_every == 0:
            self.fit()

    def recommend(self, user, k, excluded):
        if self.user_factors is None or not self.fitted_users[user]:
            return self.fallback.recommend(user, k, excluded)
        scores = self.item_factors @ self.user_factors[user]
        scores = np.where(self.fitted_items, scores, -np.inf)
        if excluded:
            scores[list(excluded)] = -np.inf
        return top_k(scores, k)


def run_streamrec(binary, path, args, out_dir, runs, events):
    """Accuracy and test+learn events/s (median of runs), learn-only events/s
    (median of runs; --warmup past the end leaves no test point)."""
    exported, figures = out_dir / "peers-stream.csv", out_dir / "peers-streamrec.json"
    test_learn, learn_only, result = [], [], None
    for run in range(runs):
        extra = ["--export-stream", exported, "--json", figures] if run == 0 else \
            ["--json", figures]
        subprocess.run([binary, "eval", path, *args, *map(str, extra)], check=True,
                       stdout=subprocess.DEVNULL if run else None)
        r = json.loads(figures.read_text())
        result = result or r
        test_learn.append(r["events_per_s"])
    warm = str(events or result["events"])
    for _ in range(runs):
        subprocess.run([binary, "eval", path, *args, "--warmup", warm, "--json", figures],
                       check=True, stdout=subprocess.DEVNULL)
        learn_only.append(json.loads(figures.read_text())["events_per_s"])
    return result, exported, statistics.median(test_learn), statistics.median(learn_only)


def fmt_rate(x):
    return f"{x:,.0f}" if x is not None else "–"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streamrec", default=str(ROOT / "build" / "streamrec"))
    ap.add_argument("--data", help="event file (any format `streamrec eval` reads); "
                    "default: a synthetic stream from `streamrec gen`")
    ap.add_argument("--format", default="auto",
                    help="auto|csv|avro|movielens|retailrocket|taobao")
    ap.add_argument("--events", type=int, default=200000, help="synthetic stream size")
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-arg", action="append", default=[],
                    help="extra `streamrec eval` argument (repeat), e.g. --eval-arg=--max-events=500000")
    ap.add_argument("--peers", default="popularity,river,als,bpr")
    ap.add_argument("--runs", type=int, default=3, help="timing runs (medians)")
    ap.add_argument("--dim", type=int, default=32, help="peers' factors (streamrec: --dim 32)")
    ap.add_argument("--negatives", type=int, default=4, help="River negatives per positive")
    ap.add_argument("--river-lr", type=float, default=0.1,
                    help="River's SGD step (0.1 with --river-l2 0.01: best of a small sweep)")
    ap.add_argument("--river-l2", type=float, default=0.01)
    ap.add_argument("--retrain-every", type=int, default=0,
                    help="batch peers refit every N learned events (default: a tenth of them)")
    ap.add_argument("--out", default=str(ROOT / "build" / "bench-results"))
    opts = ap.parse_args()

    out_dir = pathlib.Path(opts.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_line()
    if opts.data:
        path, source = opts.data, f"`{pathlib.Path(opts.data).name}` ({opts.format})"
    else:
        path = str(out_dir / "peers-gen.csv")
        subprocess.run([opts.streamrec, "gen", "--out", path, "--events", str(opts.events),
                        "--users", str(opts.users), "--items", str(opts.items),
                        "--seed", str(opts.seed)], check=True, stdout=subprocess.DEVNULL)
        source = (f"synthetic (`streamrec gen --events {opts.events} --users {opts.users} "
                  f"--items {opts.items} --seed {opts.seed}`)")
    eval_args = ["--format", opts.format, "--k", "20", "--dim", str(opts.dim), *opts.eval_arg]

    print(f"machine: {machine}", flush=True)
    result, exported, sr_test_learn, sr_learn = run_streamrec(
        opts.streamrec, path, eval_args, out_dir, opts.runs, None)
    stream = protocol.Stream(exported)
    k = result["k"]
    learned = sum(1 for w in stream.weight if w != 0)
    retrain_every = opts.retrain_every or max(1, learned // 10)
    rows = [("streamrec", result["model"]["recall"], result["model"]["ndcg"],
             sr_test_learn, sr_learn)]
    popularity_check = None

    def make(name):
        if name == "popularity":
            return protocol.Popularity(stream.users, stream.items)
        if name == "river":
            return RiverMF(stream.users, stream.items, opts.dim, opts.river_lr,
                           opts.negatives, opts.seed, opts.river_l2)
        if name in ("als", "bpr"):
            return BatchImplicit(name, stream.users, stream.items, opts.dim, retrain_every,
                                 opts.seed)
        sys.exit(f"peers.py: unknown peer '{name}' (popularity, river, als, bpr)")

    for name in [p for p in opts.peers.split(",") if p]:
        print(f"{name}: test+learn ...", flush=True)
        ranker = make(name)
        scores, seconds = protocol.replay(stream, ranker, k=k)
        test_learn = stream.count / seconds
        repeats = opts.runs if name in ("popularity", "river") else 1
        learn_times = [protocol.replay(stream, make(name), k=k, test=False)[1]
                       for _ in range(repeats)]
        learn_only = stream.count / statistics.median(learn_times)
        rows.append((getattr(ranker, "name", name), scores["recall"], scores["ndcg"],
                     test_learn, learn_only))
        if name == "popularity":
            popularity_check = scores == result["popularity"]
        print(f"  {rows[-1][0]}: recall@{k} {scores['recall']:.4f} ndcg@{k} "
              f"{scores['ndcg']:.4f}, {test_learn:,.0f} events/s test+learn, "
              f"{learn_only:,.0f} learn only", flush=True)

    lines = [
        f"**Against peers**: {source}; {stream.count:,} events, {stream.users:,} users, "
        f"{stream.items:,} items; {stream.tests:,} test points (k={k}, exclude "
        f"{result['exclude']}, {result['skipped_excluded']:,} skipped as excluded, "
        f"test-every {result['test_every']}, warmup {result['warmup']}).",
        f"Machine: {machine}. Single-threaded; events/s count every stream event; medians of "
        f"{opts.runs} runs for streamrec, popularity and River learn-only.",
        "",
        f"| ranker | recall@{k} | NDCG@{k} | events/s test+learn | events/s learn only "
        "| streamrec ÷ peer, test+learn | streamrec ÷ peer, learn only |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| streamrec (popularity in the same run) | {result['model']['recall']:.4f} "
        f"({result['popularity']['recall']:.4f}) | {result['model']['ndcg']:.4f} "
        f"({result['popularity']['ndcg']:.4f}) | {fmt_rate(sr_test_learn)} | "
        f"{fmt_rate(sr_learn)} | 1 | 1 |",
    ]
    for name, recall, ndcg, test_learn, learn_only in rows[1:]:
        lines.append(f"| {name} | {recall:.4f} | {ndcg:.4f} | {fmt_rate(test_learn)} | "
                     f"{fmt_rate(learn_only)} | {sr_test_learn / test_learn:,.1f}× | "
                     f"{sr_learn / learn_only:,.1f}× |")
    lines.append("")
    if popularity_check is not None:
        lines.append("Protocol cross-check: the Python popularity peer "
                     + ("reproduces streamrec's popularity figures exactly."
                        if popularity_check else
                        "DIFFERS from streamrec's popularity figures: the protocol export is "
                        "broken."))
    online = [r for r in rows[1:] if r[0].startswith(("popularity", "River"))]
    best_online = max(online, key=lambda r: r[1], default=None)
    river = next((r for r in rows[1:] if r[0].startswith("River")), None)
    if best_online:
        met = result["model"]["recall"] >= best_online[1]
        lines.append(f"Goal recall@{k} ≥ best online peer ({best_online[0]}, "
                     f"{best_online[1]:.4f}): {'met' if met else 'missed'} "
                     f"({result['model']['recall']:.4f}).")
    if river:
        ratio = sr_learn / river[4]
        lines.append(f"Goal update throughput ≥ 10× River: {'met' if ratio >= 10 else 'missed'} "
                     f"({ratio:,.0f}× learn only).")
    table = "\n".join(lines) + "\n"
    (out_dir / "peers.md").write_text(table)
    print()
    print(table)
    plot(rows, k, out_dir / "peers.png")
    print(f"written: {out_dir / 'peers.md'}, {out_dir / 'peers.png'}")


def plot(rows, k, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = [r[0].split(" (")[0] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.barh(names, [r[1] for r in rows], color="tab:blue", label=f"recall@{k}")
    a.barh(names, [r[2] for r in rows], color="tab:orange", height=0.4, label=f"NDCG@{k}")
    a.invert_yaxis()
    a.legend()
    a.set_title("accuracy, same test points")
    b.barh(names, [r[4] for r in rows], color="tab:green")
    b.set_xscale("log")
    b.invert_yaxis()
    b.set_title("learn-only events/s (log)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
