"""The prequential protocol of `streamrec eval`, replayed in pure Python.

`streamrec eval --export-stream PATH` writes the stream it evaluates (time
order, dense indices) with the protocol's decisions made per event: `test`
is 1 on a test point, 2 on a test point skipped because the item was
excluded for that user, 0 otherwise; `excludes` is 1 when, from that event
on, the item is left out of the user's lists. A ranker replayed here is
tested on exactly those test points, with those exclusions, then learns the
event: the same test-then-train order as model/prequential.c.

Standard library only, so that the test suite (no numpy) can use it;
bench/peers.py adds the numpy peers on top.
"""
import csv
import math
import time

TESTED, SKIPPED_EXCLUDED = 1, 2


class Stream:
    """The exported stream as parallel lists."""

    def __init__(self, path):
        self.user, self.item, self.type, self.weight = [], [], [], []
        self.ts_ms, self.test, self.excludes = [], [], []
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            if header != ["user", "item", "type", "weight", "ts_ms", "test", "excludes"]:
                raise ValueError(f"{path}: not a streamrec eval --export-stream file: {header}")
            for row in reader:
                self.user.append(int(row[0]))
                self.item.append(int(row[1]))
                self.type.append(row[2])
                self.weight.append(float(row[3]))
                self.ts_ms.append(int(row[4]))
                self.test.append(int(row[5]))
                self.excludes.append(row[6] == "1")
        self.count = len(self.user)
        self.users = max(self.user, default=-1) + 1
        self.items = max(self.item, default=-1) + 1
        self.tests = sum(1 for t in self.test if t == TESTED)


class Tally:
    """HR@k (= recall@k with one relevant item), NDCG@k, MRR, coverage:
    summed in the same order and precision as model/prequential.c."""

    def __init__(self, items):
        self.tests = self.hits = 0
        self.ndcg = self.rr = 0.0
        self.listed = bytearray(items)
        self.listed_count = 0

    def add(self, ranked, target):
        self.tests += 1
        for r, item in enumerate(ranked):
            if not self.listed[item]:
                self.listed[item] = 1
                self.listed_count += 1
            if item == target:
                self.hits += 1
                self.ndcg += 1.0 / math.log2(r + 2.0)
                self.rr += 1.0 / (r + 1.0)

    def scores(self):
        n = self.tests or 1
        items = len(self.listed)
        return {"tests": self.tests, "recall": self.hits / n, "ndcg": self.ndcg / n,
                "mrr": self.rr / n, "coverage": self.listed_count / items if items else 0.0}


class Popularity:
    """All-time counts of positive events in ranked order, kept exactly as
    model/popularity.c keeps them (an item moves to the front of its
    equal-count block before its count grows), so ties break the same way."""

    name = "popularity"

    def __init__(self, users, items):
        self.count = [0] * items
        self.rank = [0] * items
        self.order = []

    def learn(self, user, item, weight):
        if weight <= 0:
            return
        count, order = self.count, self.order
        if count[item] == 0:
            self.rank[item] = len(order)
            order.append(item)
        r = self.rank[item]
        c = count[item]
        lo, hi = 0, r  # first rank whose item has exactly count c
        while lo < hi:
            mid = (lo + hi) // 2
            if count[order[mid]] > c:
                lo = mid + 1
            else:
                hi = mid
        if lo != r:
            other = order[lo]
            order[lo], order[r] = item, other
            self.rank[item], self.rank[other] = lo, r
        count[item] = c + 1

    def recommend(self, user, k, excluded):
        out = []
        for item in self.order:
            if item not in excluded:
                out.append(item)
                if len(out) == k:
                    break
        return out


def replay(stream, ranker, k=20, test=True):
    """Test-then-train replay of ranker over the stream. With test=False the
    ranker only learns (for update throughput). Returns (scores, seconds)."""
    tally = Tally(stream.items)
    excluded = {}
    empty = frozenset()
    users, items, weights = stream.user, stream.item, stream.weight
    tests, excludes = stream.test, stream.excludes
    start = time.perf_counter()
    for e in range(stream.count):
        user, item = users[e], items[e]
        if test and tests[e] == TESTED:
            tally.add(ranker.recommend(user, k, excluded.get(user, empty)), item)
        if weights[e] != 0:
            ranker.learn(user, item, weights[e])
        if excludes[e]:
            excluded.setdefault(user, set()).add(item)
    seconds = time.perf_counter() - start
    return tally.scores(), seconds
