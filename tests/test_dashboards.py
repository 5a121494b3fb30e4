"""Dashboards and alerts (systemd/) and the daemon's status page.

The rules pass promtool's check and its unit tests; the dashboard follows the
Grafana mixin conventions (a datasource and a job variable, every panel on
${datasource}, every PromQL selector filtered by job="$job"); every metric the
rules and the Grafana dashboard name is one a live daemon exports; a real
Prometheus (Debian's) scrapes a daemon running an A/B experiment (two variants
and a popularity control arm) under traffic and answers per-variant freshness
and hit-rate queries, the rules' and every dashboard panel's, the experiment's
included; headless Chromium (Debian's) renders the status page (live figures,
the last hour's charts, the experiment's verdicts, SRM check and control arm),
and a screenshot of it is kept in build/artifacts/status.png.

Only loopback is used: Prometheus listens on and scrapes 127.0.0.1, and
Chromium resolves no host name but 127.0.0.1.
"""
import html
import json
import math
import re
import shutil
import signal
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from harness import BUILD, ROOT
from test_daemon_e2e import AB_VARIANTS, STREAMREC, Daemon, free_port

pytestmark = pytest.mark.kafka

DASHBOARDS = ROOT / "systemd"
DASHBOARD = DASHBOARDS / "streamrec.json"
RULES = DASHBOARDS / "streamrec.rules.yml"
RULES_TEST = DASHBOARDS / "streamrec.rules.test.yml"
ARTIFACTS = BUILD / "artifacts"
VARIANTS = ("model", "wide", "control")
# Two variants and the control arm they are compared with (the popularity one).
EXPERIMENT_VARIANTS = ("[variant.model]\nshare = 0.34\n[variant.wide]\nshare = 0.33\ndim = 48\n"
                       "[variant.control]\nshare = 0.33\npolicy = popularity\n")

# What Grafana would substitute in a panel's query, for a Prometheus scraping every second.
GRAFANA_VARIABLES = {"$job": "streamrec", "$variant": ".*", "$instance": ".*",
                     "$__rate_interval": "30s", "$__range": "5m"}


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: `make deps` installs it")
    return path


def dashboard_queries():
    """Every PromQL text of the dashboard: panel targets and template variables."""
    found = []

    def walk(node, key=None):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key in ("expr", "definition", "query"):
            found.append(node)

    walk(json.loads(DASHBOARD.read_text()))
    return found


def panel_targets():
    """(panel title, target) for every query target of every panel."""
    return [(panel["title"], target)
            for panel in json.loads(DASHBOARD.read_text())["panels"]
            for target in panel.get("targets", [])]


def metric_names(text):
    """streamrec_* metric names in PromQL or YAML text (recording rules are streamrec:*)."""
    return set(re.findall(r"(?<![\w:])streamrec_[a-z0-9_]+", text))


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "offset", "and", "or", "unless", "inf", "nan"}


def selectors(expr):
    """(metric name, its {matchers} text or None) of every vector selector of a
    PromQL expression: what is left once durations, label lists of by/on/...,
    function calls and operators are set aside."""
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    found = []
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)?\s*(\{[^}]*\})|(?<![\w.$])([a-zA-Z_:][\w:]*)",
                         expr):
        if m.group(2) is not None:
            found.append((m.group(1) or "", m.group(2)))
        elif m.group(3) not in PROMQL_WORDS and not expr[m.end():].lstrip().startswith("("):
            found.append((m.group(3), None))
    return found


def unfiltered_selectors(expr):
    """Selectors of expr that do not match job="$job"."""
    return [(name, matchers) for name, matchers in selectors(expr)
            if matchers is None or not re.search(r'(?<![\w])job\s*=\s*"\$job"', matchers)]


def rule_blocks(text, kind):
    """{name: the rest of its rule's text} of every `- record:` or `- alert:` rule."""
    blocks, name = {}, None
    for line in text.splitlines():
        start = re.match(r"^\s*-\s*(record|alert|name):\s*(\S+)", line)
        if start:
            name = start.group(2) if start.group(1) == kind else None
            if name:
                blocks[name] = ""
        elif name:
            blocks[name] += line + "\n"
    return blocks


def recording_rule_names(text):
    return set(re.findall(r"^\s*-?\s*record:\s*(\S+)\s*$", text, re.M))


def exported_names(metrics_text):
    """Metric names a /metrics page exports, from its TYPE lines (histograms' series too)."""
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind in ("histogram", "summary"):
                names |= {name + "_sum", name + "_count"}
            if kind == "histogram":
                names.add(name + "_bucket")
    return names


# --- the rules alone ---------------------------------------------------------------


def test_rules_pass_promtool_check_and_unit_tests():
    promtool = tool("promtool")
    out = subprocess.run([promtool, "check", "rules", RULES], capture_output=True, text=True)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
    # the freshness SLO fires on a slow variant after 5 minutes, not on a fast one
    # nor on a one-minute blip; hit rate, lag, dead-letter and commit alerts likewise
    out = subprocess.run([promtool, "test", "rules", RULES_TEST], capture_output=True,
                         text=True, cwd=DASHBOARDS)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
    alerts = set(re.findall(r"^\s*-\s*alert:\s*(\w+)", RULES.read_text(), re.M))
    assert {"StreamrecFreshnessSLO", "StreamrecConsumerLagHigh", "StreamrecConsumerLagGrowing",
            "StreamrecDeadLetterSpike", "StreamrecCommitFailures", "StreamrecNotReady",
            "StreamrecDown"} <= alerts


def test_selector_parser():
    """The convention check below finds every selector, filtered or not."""
    assert selectors('histogram_quantile(0.99, sum by (le, variant) (rate(a_bucket{job="$job",'
                     'variant=~"$variant"}[$__rate_interval])))') == \
        [("a_bucket", '{job="$job",variant=~"$variant"}')]
    assert unfiltered_selectors('sum by (job) (x{job="$job"}) / on (job) group_left y') == \
        [("y", None)]
    assert unfiltered_selectors('a{instance="i"} < bool on (job) b{job="$job"} * 1e-3') == \
        [("a", '{instance="i"}')]
    assert unfiltered_selectors('{__name__="up"} and sgn(streamrec:x:rate5m{job="$job"}) > 0') \
        == [("", '{__name__="up"}')]
    assert unfiltered_selectors('max(z{job="other"})') == [("z", '{job="other"}')]


def test_dashboard_follows_the_mixin_conventions():
    """A datasource variable (prometheus) and a job variable; every panel and
    target on ${datasource}; every selector of every query filtered by job="$job"."""
    text = DASHBOARD.read_text()
    assert "DS_PROMETHEUS" not in text
    dashboard = json.loads(text)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["type"] == "query"
    assert re.fullmatch(r"label_values\(streamrec_\w+, job\)", variables["job"]["definition"])
    assert variables["job"]["query"]["query"] == variables["job"]["definition"]
    for name, variable in variables.items():
        if variable["type"] == "query":
            assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, name
        if variable["type"] == "query" and name != "job":
            metric = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["definition"])
            assert metric and unfiltered_selectors(metric.group(1)) == [], name
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, \
                panel["title"]
            assert selectors(target["expr"]), (panel["title"], target["expr"])
            assert unfiltered_selectors(target["expr"]) == [], (panel["title"], target["expr"])
    # the recording rules the dashboard reads keep the job label: every
    # aggregation of every recording rule keeps it
    records = rule_blocks(RULES.read_text(), "record")
    assert set(records) == recording_rule_names(RULES.read_text())
    for record, expr in records.items():
        for labels in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
            assert "job" in re.split(r"\s*,\s*", labels.strip()), (record, expr)
        assert not re.search(r"\bwithout\s*\(\s*[^)]*\bjob\b", expr), (record, expr)


def test_dashboard_shape():
    dashboard = json.loads(DASHBOARD.read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["variant"]["definition"] == \
        'label_values(streamrec_recommendations_total{job="$job"}, variant)'
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = " | ".join(p["title"] for p in panels)
    for wanted in ("Freshness p50", "Freshness p95", "Freshness p99", "Hit rate per variant",
                   "Hit rate by event type", "by rank", "Event throughput", "Consumer lag",
                   "Refresh batch time", "Invalid events", "Dead letters", "commit failures",
                   "Ready", "Conversion rate per variant", "Uplift against control",
                   "Always-valid p-value", "Verdict per variant", "Sample ratio check",
                   "Exposed and converted users", "Refresh overload", "Lists served late"):
        assert wanted in titles, wanted
    for title, target in panel_targets():
        if "variant" in target["legendFormat"] and not target["expr"].startswith("streamrec:"):
            assert 'variant=~"$variant"' in target["expr"], title


# --- a live daemon with two variants under traffic ----------------------------------


def hits(daemon, variant):
    _, text = daemon.get("/metrics")
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(f'streamrec_hits_total{{variant="{variant}",'))


@pytest.fixture(scope="module")
def ab_daemon(kafka_broker, tmp_path_factory):
    """streamrecd with two model variants and a popularity control arm, a third
    each, fed a steady stream over a small catalogue (so users act on items of
    their lists: hits)."""
    d = Daemon(kafka_broker, tmp_path_factory.mktemp("dashboards"), "dashboards")
    d.add_config(EXPERIMENT_VARIANTS)
    d.start()
    traffic = subprocess.Popen([STREAMREC, "produce", "--brokers", kafka_broker.bootstrap,
                                "--topic", d.events, "--count", "0", "--rate", "300",
                                "--users", "600", "--items", "30", "--seed", "7"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert d.wait_for(lambda: all(hits(d, v) > 0 for v in VARIANTS), 90), d.logtext()
        yield d
    finally:
        traffic.send_signal(signal.SIGINT)
        try:
            traffic.wait(timeout=30)
        except subprocess.TimeoutExpired:
            traffic.kill()
            traffic.wait()
        if d.process.poll() is None:
            code = d.stop()
            assert code == 0, d.logtext()


def test_every_metric_named_by_the_dashboard_and_rules_is_exported(ab_daemon):
    status, metrics_text = ab_daemon.get("/metrics")
    assert status == 200
    exported = exported_names(metrics_text)
    used = metric_names("\n".join(dashboard_queries())) | metric_names(RULES.read_text())
    assert used, "no metric names found"
    assert sorted(used - exported) == [], "named but not exported"
    # the A/B families are all used somewhere
    for family in ("streamrec_freshness_seconds_bucket", "streamrec_hits_total",
                   "streamrec_hits_by_rank_total", "streamrec_recommendations_total",
                   "streamrec_users_served_total", "streamrec_events_total",
                   "streamrec_consumer_lag", "streamrec_refresh_batch_seconds_bucket",
                   "streamrec_dlq_messages_total", "streamrec_commit_failures_total",
                   "streamrec_ready", "streamrec_experiment_conversion_rate",
                   "streamrec_experiment_conversion_rate_lower",
                   "streamrec_experiment_conversion_rate_upper", "streamrec_experiment_uplift",
                   "streamrec_experiment_uplift_lower", "streamrec_experiment_uplift_upper",
                   "streamrec_experiment_msprt_p", "streamrec_experiment_alpha",
                   "streamrec_experiment_srm_p", "streamrec_experiment_exposed_users",
                   "streamrec_experiment_converted_users"):
        assert family in used, family
    recorded = recording_rule_names(RULES.read_text())
    used_records = set(re.findall(r"streamrec:[a-z0-9_:]+", "\n".join(dashboard_queries())))
    assert used_records and sorted(used_records - recorded) == [], "used but not recorded"


# --- a real Prometheus --------------------------------------------------------------


class Prometheus:
    def __init__(self, tmp_path, target_port):
        self.dir = tmp_path
        self.port = free_port()
        self.config = tmp_path / "prometheus.yml"
        self.config.write_text(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES}
scrape_configs:
  - job_name: streamrec
    static_configs:
      - targets: ['127.0.0.1:{target_port}']
""")
        self.log = open(tmp_path / "prometheus.log", "w")
        self.process = subprocess.Popen(
            [tool("prometheus"), f"--config.file={self.config}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.process.poll() is None, self.logtext()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready",
                                            timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail("Prometheus never became ready:\n" + self.logtext())

    def logtext(self):
        return (self.dir / "prometheus.log").read_text()[-4000:]

    def api(self, path, **params):
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        assert body["status"] == "success", (params, body)
        return body["data"]

    def query(self, expr):
        """An instant vector: {labels as a sorted tuple: float value}."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in data["result"]}

    def per_variant(self, expr):
        return {dict(labels).get("variant"): value for labels, value in self.query(expr).items()}

    def wait_for(self, expr, predicate, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            result = self.per_variant(expr)
            if predicate(result):
                return result
            time.sleep(1)
        pytest.fail(f"{expr} never satisfied the test; last {result}\n" + self.logtext())

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def prometheus(ab_daemon, tmp_path_factory):
    p = Prometheus(tmp_path_factory.mktemp("prometheus"), ab_daemon.port)
    try:
        yield p
    finally:
        p.stop()


def finite_for_every_variant(result):
    return set(result) == set(VARIANTS) and all(math.isfinite(v) for v in result.values())


def test_prometheus_reads_per_variant_freshness_and_hit_rate(ab_daemon, prometheus):
    # straight from the scraped buckets, as the dashboard's panels ask
    p99 = prometheus.wait_for("histogram_quantile(0.99, sum by (le, variant) "
                              "(rate(streamrec_freshness_seconds_bucket[1m])))",
                              finite_for_every_variant)
    assert all(0 < v < 60 for v in p99.values()), p99
    targets = prometheus.api("targets")["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets
    # through the recording rules, as the alerts and the dashboard's summaries ask
    quantiles = {q: prometheus.wait_for(f"streamrec:freshness_seconds:{q}_5m",
                                        finite_for_every_variant)
                 for q in ("p50", "p95", "p99")}
    for variant in VARIANTS:
        assert 0 < quantiles["p50"][variant] <= quantiles["p95"][variant] \
            <= quantiles["p99"][variant], quantiles
    hit_rate = prometheus.wait_for("streamrec:hit_rate:ratio_5m",
                                   lambda r: finite_for_every_variant(r)
                                   and all(v > 0 for v in r.values()))
    assert all(0 < v < 20 for v in hit_rate.values()), hit_rate
    by_type = prometheus.query("streamrec:hit_rate_by_type:ratio_5m")
    assert {dict(k)["variant"] for k in by_type} == set(VARIANTS)
    assert {dict(k)["type"] for k in by_type} == {"click", "add_to_cart", "purchase"}
    # the raw hits per list published agree with the rule (same window, same instant)
    raw = prometheus.per_variant("sum by (variant) (rate(streamrec_hits_total[5m])) / "
                                 "sum by (variant) (rate(streamrec_recommendations_total[5m]))")
    assert set(raw) == set(VARIANTS)
    # no alert fires on a healthy daemon
    assert prometheus.query('ALERTS{alertstate="firing"}') == {}


def test_rules_load_healthy_in_prometheus(prometheus):
    prometheus.wait_for("streamrec:consumer_lag:sum", lambda r: len(r) > 0)
    groups = prometheus.api("rules")["groups"]
    assert {g["name"] for g in groups} == {"streamrec.recording", "streamrec.alerts"}
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == len(recording_rule_names(RULES.read_text())) + \
        len(re.findall(r"^\s*-\s*alert:", RULES.read_text(), re.M))
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert bad == [], bad


def test_every_dashboard_panel_answers_through_prometheus(ab_daemon, prometheus):
    """Each panel's query, with Grafana's variables filled in, returns series that
    carry the labels its legend shows (a wrong metric or label name returns none)."""
    prometheus.wait_for("streamrec:hit_rate:ratio_5m", finite_for_every_variant)
    empty = []
    for title, target in panel_targets():
        expr = target["expr"]
        for name, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(name, value)
        result = prometheus.query(expr)
        if not result:
            # "> 0" filters hide idle series (no invalid events here); all else has data
            if not re.search(r"\)\s*>\s*0\s*$", expr):
                empty.append(title)
            continue
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target["legendFormat"]):
            assert all(dict(series).get(label) for series in result), (title, label, result)
    assert empty == [], empty
    # the template variables' queries give the job, the variants and the daemon
    variables = {v["name"]: v for v in json.loads(DASHBOARD.read_text())["templating"]["list"]}
    expected = {"job": {"streamrec"}, "variant": set(VARIANTS),
                "instance": {f"127.0.0.1:{ab_daemon.port}"}}
    for name, values in expected.items():
        metric = re.fullmatch(r"label_values\((.*), (\w+)\)", variables[name]["definition"])
        selector = metric.group(1).replace("$job", "streamrec")
        series = prometheus.api("series", **{"match[]": selector})
        assert {s[metric.group(2)] for s in series} == values, name


# --- the status page in headless Chromium --------------------------------------------

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-domain-reliability", "--no-proxy-server",
    "--hide-scrollbars",
    # nothing but the daemon resolves: the page must need no other host, and the
    # browser's own background services cannot leave the machine
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def chromium(tmp_path, url, *args):
    out = subprocess.run([tool("chromium"), *CHROMIUM_FLAGS,
                          f"--user-data-dir={tmp_path / 'chromium'}",
                          "--virtual-time-budget=8000", *args, url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def external_references(page):
    """URLs of other hosts a page would load: src/href, CSS @import, url(), fetches."""
    page = re.sub(r'\sxmlns(:\w+)?="[^"]*"', "", page)  # inline SVG namespaces load nothing
    found = re.findall(r'(?:src|href|action)\s*=\s*["\']?\s*((?:https?:)?//[^"\'\s>]*)', page,
                       re.I)
    found += re.findall(r"@import[^;]*", page, re.I)
    found += re.findall(r"@font-face", page, re.I)
    found += re.findall(r"url\(\s*['\"]?\s*((?:https?:)?//[^)]*)", page, re.I)
    found += re.findall(r"https?://[^\s\"'<>)]+", page, re.I)
    return found


def number(cell):
    text = html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
    match = re.fullmatch(r"(-?[\d,]*\.?\d+)\s*(ms|%|/s|events/s)?", text)
    assert match, f"not a number: {text!r}"
    return float(match.group(1).replace(",", ""))


def status_rows(dom):
    """variant -> {cell class: number} from the rendered status page."""
    rows = {}
    for variant, body in re.findall(r'<tr[^>]*\bdata-variant="([^"]+)"[^>]*>(.*?)</tr>', dom,
                                    re.S):
        cells = {}
        for classes, cell in re.findall(r'<td[^>]*\bclass="([^"]*)"[^>]*>(.*?)</td>', body,
                                        re.S):
            for name in classes.split():
                if name in ("p50", "p95", "p99", "late", "throughput", "hitrate"):
                    cells[name] = number(cell)
        rows[html.unescape(variant)] = cells
    return rows


def text_of(fragment):
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def arm_rows(dom):
    """variant -> (the row's attributes, {cell class: text}) of the experiment table."""
    rows = {}
    for variant, attributes, body in re.findall(
            r'<tr[^>]*\bdata-arm="([^"]+)"([^>]*)>(.*?)</tr>', dom, re.S):
        cells = {}
        for classes, cell in re.findall(r'<td[^>]*\bclass="([^"]*)"[^>]*>(.*?)</td>', body, re.S):
            cells[classes.split()[0]] = text_of(cell)
        rows[html.unescape(variant)] = (attributes, cells)
    return rows


def charts(dom):
    """key (p50, p99, hitrate) -> {variant: (points drawn, clipped markers)}."""
    found = {}
    for key, svg in re.findall(r'<svg[^>]*\bdata-key="(\w+)"[^>]*>(.*?)</svg>', dom, re.S):
        found[key] = {html.unescape(v): (len(re.findall(r'<circle[^>]*class="point"', g)),
                                         len(re.findall(r'<path[^>]*class="clipped"', g)))
                      for v, g in re.findall(r'<g class="series" data-variant="([^"]*)">(.*?)</g>',
                                             svg, re.S)}
    return found


def test_status_page_renders_live_figures_in_chromium(ab_daemon, tmp_path):
    """The page an analyst reads: live figures per variant, the last hour's
    freshness p50/p99 and hit rate per variant as charts, and the experiment:
    sample-ratio check, sample sizes, conversion and uplift with intervals,
    verdicts, the control arm marked. Screenshot: build/artifacts/status.png."""
    url = f"http://127.0.0.1:{ab_daemon.port}/status"
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200 and r.headers.get_content_type() == "text/html"
        page = r.read().decode()
    assert external_references(page) == []
    status, body = ab_daemon.get("/status.json")
    assert status == 200 and json.loads(body)

    # a closed step of the history, and the step under way, with lists of every variant
    def history_filled():
        points = json.loads(ab_daemon.get("/status.json")[1])["history"]["points"]
        return (len(points) >= 2 and not points[0]["partial"]
                and all(v["lists"] > 0 for v in points[0]["variants"]))
    assert ab_daemon.wait_for(history_filled, 70), ab_daemon.get("/status.json")[1][-2000:]

    def experiment_filled():
        doc = json.loads(ab_daemon.get("/experiment.json")[1])
        return all(v["exposed"] > 0 for v in doc["variants"]) and doc["srm_p"] is not None
    assert ab_daemon.wait_for(experiment_filled, 60), ab_daemon.get("/experiment.json")[1]
    experiment = json.loads(ab_daemon.get("/experiment.json")[1])

    dom = chromium(tmp_path, url, "--dump-dom")
    assert external_references(dom) == []
    rows = status_rows(dom)
    assert set(rows) == set(VARIANTS), dom[-3000:]
    for variant, cells in rows.items():
        assert set(cells) == {"p50", "p95", "p99", "late", "throughput", "hitrate"}, \
            (variant, cells)
        assert 0 <= cells["late"] <= 100, (variant, cells)  # a share, in %
        assert 0 <= cells["p50"] <= cells["p95"] <= cells["p99"], (variant, cells)
        assert cells["p99"] > 0 and cells["throughput"] > 0, (variant, cells)
        assert 0 <= cells["hitrate"] <= 2000, (variant, cells)
    updated = re.search(r'<(\w+)[^>]*\bid="updated"[^>]*>(.*?)</\1>', dom, re.S)
    assert updated and re.sub(r"<[^>]+>", "", updated.group(2)).strip(), dom[-3000:]

    # the experiment: shown, the SRM check stated with its p-value
    section = re.search(r'<section id="experiment"([^>]*)>(.*?)</section>', dom, re.S)
    assert section and "hidden" not in section.group(1), dom[-3000:]
    srm = re.search(r'<div class="srm ([^"]*)" id="srm">(.*?)</div>', section.group(2), re.S)
    assert srm, section.group(2)[:2000]
    expected = ("bad", "Sample ratio mismatch") if experiment["srm_flag"] else \
        ("good", "Sample ratio OK")
    assert srm.group(1) == expected[0] and text_of(srm.group(2)).startswith(expected[1]), srm
    assert re.search(r"chi-square p = (< 0\.0001|[\d.e-]+)", text_of(srm.group(2))), srm
    # per arm: sample sizes, rate with its interval, uplift, p, verdict; the control marked
    arms = arm_rows(section.group(2))
    assert set(arms) == set(VARIANTS), arms
    by_name = {v["name"]: v for v in experiment["variants"]}
    verdicts = {"better": "significantly better than control",
                "worse": "significantly worse than control",
                "inconclusive": "no significant difference yet",
                "untrusted": "untrusted: sample ratio mismatch", "collecting": "collecting: "}
    for name, (attributes, cells) in arms.items():
        assert int(cells["exposed"]) >= by_name[name]["exposed"] > 0, (name, cells)
        assert re.fullmatch(r"[\d.]+ % \[[\d.]+ %, [\d.]+ %\]", cells["rate"]), (name, cells)
        if name == "control":
            assert 'class="control"' in attributes and 'data-verdict="control"' in attributes
            assert cells["name"] == "controlcontrol"  # the name and its "control" badge
            assert cells["verdict"] == "control arm" and cells["uplift"] == "\u2013", cells
            continue
        assert 'class="control"' not in attributes, (name, attributes)
        assert re.fullmatch(r"[+-]?[\d.]+ % \[[+-]?[\d.]+ %, [+-]?[\d.]+ %\]", cells["uplift"]), \
            (name, cells)
        assert re.fullmatch(r"< 0\.0001|[\d.e-]+", cells["msprt"]), (name, cells)
        verdict = re.search(r'data-verdict="(\w+)"', attributes).group(1)
        assert verdict != "control" and cells["verdict"].startswith(verdicts[verdict]), cells

    # the last hour, per variant: freshness p50 and p99 and hit rate drawn as time series
    drawn = charts(dom)
    assert set(drawn) == {"p50", "p99", "hitrate"}, drawn
    for key, series in drawn.items():
        assert set(series) == set(VARIANTS), (key, series)
        for variant, (points, clipped) in series.items():
            assert points + clipped >= 2, (key, variant, points, clipped)
    assert "<polyline" in dom
    # never a clipped percentile as a number: no cell or label shows the bound as a figure
    assert not re.search(r">\s*60000(\.0)?\s*<", dom)
    legend = re.search(r'<div class="legend" id="legend">(.*?)</div>', dom, re.S)
    assert all(v in text_of(legend.group(1)) for v in VARIANTS), legend

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "status.dom.html").write_text(dom)
    screenshot = ARTIFACTS / "status.png"
    screenshot.unlink(missing_ok=True)
    chromium(tmp_path, url, f"--screenshot={screenshot}", "--window-size=1400,1500")
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (1400, 1500)
    assert len(png) > 10000, "a blank page"
