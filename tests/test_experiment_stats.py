"""daemon/experiment's figures against independent implementations.

The C module is driven through tests/tools/experiment_tool (simulated
`expose`, `hit` and `pre` lines in, experiment_render_json() out) and each
figure is recomputed here: the Wilson interval by statsmodels, the
sample-ratio check by scipy.stats.chisquare, CUPED's theta and adjusted
rates by numpy, the mSPRT p-value and confidence sequence by a plain numpy
transcription of Johari, Pekelis and Walsh's normal-mixture formula. An A/A
simulation then shows why the always-valid test is there: peeked at all
along the way it rejects no more often than alpha, where a naive z-test
peeked at the same points rejects far more often.
"""
import json

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from harness import BUILD, run_program

TOOL = BUILD / "tests" / "experiment_tool"
ALPHA = 0.05
TAU2 = 1e-4
MIN_USERS = 100


def run_tool(lines, *args):
    if not TOOL.exists():
        pytest.fail(f"{TOOL} is missing: build it with 'make test-build'")
    result = run_program([TOOL, *args], stdin="".join(line + "\n" for line in lines))
    assert result.returncode == 0, result.stderr[-4000:]
    assert "ERROR: AddressSanitizer" not in result.stderr and "runtime error:" not in result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def variant(report, name):
    return next(v for v in report["variants"] if v["name"] == name)


def simulate(rng, arms, users, rates, pre=None, start=0):
    """Lines for `users` users split over `arms` by `users` counts, each
    converting with its arm's rate; returns (lines, arm of each user, converted)."""
    lines, arm_of, converted = [], [], []
    for arm, count in zip(arms, users):
        for _ in range(count):
            user = start + len(arm_of)
            lines.append(f"expose {arm} {user}")
            hit = rng.random() < rates[arm]
            if hit:
                lines.append(f"hit {arm} {user}")
                if rng.random() < 0.3:  # a second hit: a hit count, not a second conversion
                    lines.append(f"hit {arm} {user}")
            arm_of.append(arm)
            converted.append(hit)
    return lines, np.array(arm_of), np.array(converted, dtype=float)


def delta_uplift(m_t, var_t, m_c, var_c, z):
    r = m_t / m_c
    se = r * np.sqrt(var_t / m_t**2 + var_c / m_c**2)
    return r - 1, r - 1 - z * se, r - 1 + z * se


def test_rates_uplift_and_srm_against_statsmodels_and_scipy():
    rng = np.random.default_rng(66)
    arms, shares = ["ctl", "b", "c"], [1, 1, 2]
    users = [1000, 1100, 1900]
    rates = {"ctl": 0.10, "b": 0.13, "c": 0.08}
    lines, arm_of, converted = simulate(rng, arms, users, rates)
    report = run_tool(lines, "--control", "ctl", *(f"{a}={s}" for a, s in zip(arms, shares)))[-1]

    z = stats.norm.isf(ALPHA / 2)
    for arm in arms:
        v = variant(report, arm)
        n, c = int((arm_of == arm).sum()), int(converted[arm_of == arm].sum())
        assert (v["exposed"], v["converted"]) == (n, c)
        assert v["hits"] >= c
        low, high = proportion_confint(c, n, alpha=ALPHA, method="wilson")
        assert v["rate"] == pytest.approx(c / n, abs=1e-12)
        assert v["ci_low"] == pytest.approx(low, abs=1e-9)
        assert v["ci_high"] == pytest.approx(high, abs=1e-9)
    assert variant(report, "ctl")["control"] is True
    assert variant(report, "ctl")["uplift"] is None
    p_c = variant(report, "ctl")["rate"]
    for arm in ("b", "c"):
        v = variant(report, arm)
        p_t, n_t = v["rate"], v["exposed"]
        uplift, low, high = delta_uplift(p_t, p_t * (1 - p_t) / n_t, p_c,
                                         p_c * (1 - p_c) / users[0], z)
        assert v["uplift"] == pytest.approx(uplift, abs=1e-9)
        assert v["uplift_low"] == pytest.approx(low, abs=1e-9)
        assert v["uplift_high"] == pytest.approx(high, abs=1e-9)

    expected = np.array(shares) / sum(shares) * sum(users)
    chi2, p = stats.chisquare(users, f_exp=expected)
    assert report["srm_chi2"] == pytest.approx(chi2, rel=1e-9)
    assert report["srm_p"] == pytest.approx(p, rel=1e-7)
    assert report["srm_flag"] is bool(p < 0.001)
    assert all(v["srm_p"] == report["srm_p"] for v in report["variants"])


@pytest.mark.parametrize("users, flagged", [([5000, 5000], False), ([5000, 5110], False),
                                            ([5000, 5400], True), ([4000, 6000], True)])
def test_srm_against_scipy(users, flagged):
    lines = [f"expose {arm} {i}" for i, arm in enumerate(["a"] * users[0] + ["b"] * users[1])]
    report = run_tool(lines, "a=50", "b=50")[-1]
    chi2, p = stats.chisquare(users)
    assert report["srm_p"] == pytest.approx(p, rel=1e-7, abs=1e-300)
    assert report["srm_flag"] is flagged
    assert bool(p < 0.001) is flagged


def test_cuped_against_numpy():
    rng = np.random.default_rng(7)
    n = 6000
    arms = np.where(rng.random(n) < 0.5, "ctl", "trt")
    pre = rng.poisson(3.0, n).astype(float)
    has_pre = rng.random(n) < 0.8  # the others count as 0 activity
    x = np.where(has_pre, pre, 0.0)
    # conversion driven by pre-period activity, plus a treatment effect
    p = np.clip(0.02 + 0.05 * x + np.where(arms == "trt", 0.03, 0.0), 0, 1)
    y = (rng.random(n) < p).astype(float)
    lines = []
    for u in range(n):
        if has_pre[u] and u % 2 == 0:
            lines.append(f"pre {u} {pre[u]:.0f}")  # before exposure for some users
        lines.append(f"expose {arms[u]} {u}")
        if y[u]:
            lines.append(f"hit {arms[u]} {u}")
        if has_pre[u] and u % 2 == 1:
            lines.append(f"pre {u} {pre[u]:.0f}")  # after for the others
    lines.append("roundtrip")  # the pre-period activity survives export/import
    report = run_tool(lines, "ctl=1", "trt=1")[-1]

    theta = np.cov(x, y)[0, 1] / np.var(x, ddof=1)
    assert report["cuped_theta"] == pytest.approx(theta, rel=1e-9)
    z = stats.norm.isf(ALPHA / 2)
    adjusted, variance = {}, {}
    for arm in ("ctl", "trt"):
        m = arms == arm
        y_adj = y[m] - theta * (x[m] - x.mean())
        adjusted[arm] = y_adj.mean()
        variance[arm] = y_adj.var(ddof=1) / m.sum()
        v = variant(report, arm)
        assert v["cuped"] is True
        assert v["cuped_rate"] == pytest.approx(adjusted[arm], rel=1e-9)
        assert v["cuped_variance_reduction"] == pytest.approx(
            1 - y_adj.var(ddof=1) / y[m].var(ddof=1), rel=1e-6)
        assert v["cuped_variance_reduction"] > 0.05  # the covariate predicts conversion
    uplift, low, high = delta_uplift(adjusted["trt"], variance["trt"], adjusted["ctl"],
                                     variance["ctl"], z)
    v = variant(report, "trt")
    assert v["cuped_uplift"] == pytest.approx(uplift, rel=1e-9)
    assert v["cuped_uplift_low"] == pytest.approx(low, rel=1e-9)
    assert v["cuped_uplift_high"] == pytest.approx(high, rel=1e-9)
    # narrower than the unadjusted interval
    assert high - low < v["uplift_high"] - v["uplift_low"]


def msprt_numpy(n_t, c_t, n_c, c_c, alpha=ALPHA, tau2=TAU2, min_users=MIN_USERS):
    """Johari et al.'s always-valid p-value and confidence sequence for
    p_t - p_c after each step of the cumulative counts given (running min of
    1 / Lambda and running intersection of the intervals)."""
    n_t, c_t, n_c, c_c = (np.asarray(a, dtype=float) for a in (n_t, c_t, n_c, c_c))
    with np.errstate(divide="ignore", invalid="ignore"):
        p_t, p_c = c_t / n_t, c_c / n_c
        v = p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c
        d = p_t - p_c
        active = (n_t >= min_users) & (n_c >= min_users) & (v > 0)
        lam = np.sqrt(v / (v + tau2)) * np.exp(tau2 * d**2 / (2 * v * (v + tau2)))
        half = np.sqrt(v * (v + tau2) / tau2 * (2 * np.log(1 / alpha) + np.log((v + tau2) / v)))
    p = np.minimum.accumulate(np.where(active, np.minimum(1, 1 / lam), 1.0))
    low = np.maximum.accumulate(np.where(active, d - half, -1.0))
    high = np.minimum.accumulate(np.where(active, d + half, 1.0))
    return p, low, high


def stream_counts(events):
    """Cumulative (n_t, c_t, n_c, c_c) after each event of (arm, kind) pairs."""
    e = np.array([(arm == "trt", arm == "ctl", kind == "expose", kind == "hit")
                  for arm, kind in events])
    t, c, exp, hit = (e[:, i] for i in range(4))
    return (np.cumsum(t & exp), np.cumsum(t & hit), np.cumsum(c & exp), np.cumsum(c & hit))


def test_msprt_against_numpy():
    rng = np.random.default_rng(11)
    events, lines, checkpoints = [], [], []
    for u in range(8000):
        arm = "trt" if rng.random() < 0.5 else "ctl"
        events.append((arm, "expose"))
        lines.append(f"expose {arm} {u}")
        if rng.random() < (0.12 if arm == "trt" else 0.10):
            events.append((arm, "hit"))
            lines.append(f"hit {arm} {u}")
        if u % 500 == 499:
            lines.append("render")
            checkpoints.append(len(events) - 1)
    reports = run_tool(lines, "ctl=1", "trt=1", "--tau2", str(TAU2))
    p, low, high = msprt_numpy(*stream_counts(events))
    got = [variant(r, "trt") for r in reports[:len(checkpoints)]]
    for i, v in zip(checkpoints, got):
        assert v["msprt_p"] == pytest.approx(p[i], rel=1e-9, abs=1e-300)
        assert v["av_low"] == pytest.approx(low[i], abs=1e-12)
        assert v["av_high"] == pytest.approx(high[i], abs=1e-12)
    ps = [v["msprt_p"] for v in got]
    assert ps == sorted(ps, reverse=True)  # never rises
    assert ps[-1] < ps[0]


def test_aa_always_valid_versus_peeking():
    """200 A/A experiments of 2000 users, each looked at every 50 users: the
    always-valid test keeps its 5% error rate, the peeked z-test does not."""
    rng = np.random.default_rng(2024)
    experiments, users, every, rate = 200, 2000, 50, 0.10
    lines = []
    naive_rejections = 0
    for _ in range(experiments):
        lines.append("reset 0")
        arms = np.where(rng.random(users) < 0.5, "ctl", "trt")
        conv = rng.random(users) < rate
        n = {"ctl": 0, "trt": 0}
        c = {"ctl": 0, "trt": 0}
        rejected = False
        for u in range(users):
            lines.append(f"expose {arms[u]} {u}")
            n[arms[u]] += 1
            if conv[u]:
                lines.append(f"hit {arms[u]} {u}")
                c[arms[u]] += 1
            if u % every == every - 1:
                lines.append("render")
                if min(n.values()) > 0:
                    pooled = (c["ctl"] + c["trt"]) / (n["ctl"] + n["trt"])
                    se = np.sqrt(pooled * (1 - pooled) * (1 / n["ctl"] + 1 / n["trt"]))
                    diff = c["trt"] / n["trt"] - c["ctl"] / n["ctl"]
                    rejected |= se > 0 and abs(diff / se) > stats.norm.isf(ALPHA / 2)
        naive_rejections += rejected
    reports = run_tool(lines, "ctl=1", "trt=1")
    checks = users // every
    assert len(reports) == experiments * checks + 1
    always_valid_rejections = 0
    for e in range(experiments):
        last = variant(reports[(e + 1) * checks - 1], "trt")
        always_valid_rejections += last["msprt_p"] < ALPHA  # a running minimum
    # At most alpha, with a one-sided binomial margin (99.9%).
    bound = stats.binom.ppf(0.999, experiments, ALPHA)
    assert always_valid_rejections <= bound, (always_valid_rejections, bound)
    # Peeking 40 times inflates the naive test's error well past alpha.
    assert naive_rejections >= 2 * ALPHA * experiments, naive_rejections
    assert naive_rejections > 2 * max(always_valid_rejections, 1)
    print(f"A/A: always-valid {always_valid_rejections}/{experiments}, "
          f"naive peeking {naive_rejections}/{experiments}")
