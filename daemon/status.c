/*
 * status: a ring of per-second snapshots of the counters the status page
 * needs, and the JSON and HTML that show them.
 */
#include "status.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING (STATUS_WINDOW_S + 1)

struct snapshot_variant {
	uint64_t freshness[METRICS_HISTOGRAM_MAX_BUCKETS + 1];
	uint64_t freshness_count;
	uint64_t updates, recommendations, hits;
};

struct snapshot {
	double at_s;
	uint64_t events;
	struct snapshot_variant variants[METRICS_MAX_VARIANTS];
};

struct status {
	const struct metrics *metrics;
	struct snapshot ring[RING];
	size_t head, count; /* ring[head] is the newest */
};

static void take(const struct metrics *m, double now_s, struct snapshot *s)
{
	s->at_s = now_s;
	s->events = 0;
	for (size_t t = 0; t < EVENT_TYPE_COUNT; t++)
		s->events += m->events_total[t];
	for (size_t v = 0; v < m->variant_count; v++) {
		const struct metrics_variant *mv = &m->variants[v];
		struct snapshot_variant *sv = &s->variants[v];
		memcpy(sv->freshness, mv->freshness_seconds.counts, sizeof sv->freshness);
		sv->freshness_count = mv->freshness_seconds.count;
		sv->updates = mv->updates_total;
		sv->recommendations = mv->recommendations_total;
		sv->hits = 0;
		for (size_t h = 0; h < METRICS_HIT_TYPE_COUNT; h++)
			sv->hits += mv->hits_total[metrics_hit_types[h]];
	}
}

struct status *status_new(const struct metrics *metrics)
{
	struct status *s = calloc(1, sizeof *s);
	if (s != NULL)
		s->metrics = metrics;
	return s;
}

void status_free(struct status *status)
{
	free(status);
}

void status_tick(struct status *s, double now_s)
{
	if (s->count > 0 && now_s - s->ring[s->head].at_s < 1.0)
		return;
	s->head = (s->head + 1) % RING;
	if (s->count < RING)
		s->count++;
	take(s->metrics, now_s, &s->ring[s->head]);
}

/*
 * The oldest snapshot within [now - STATUS_WINDOW_S, now], so the live figures
 * cover at most the last minute however the ticks were spaced; `now` itself
 * (an empty window) when none is that recent.
 */
static const struct snapshot *window_start(const struct status *s, double now_s,
					   const struct snapshot *now)
{
	for (size_t age = s->count; age-- > 0;) {
		const struct snapshot *snap = &s->ring[(s->head + RING - age) % RING];
		if (snap->at_s >= now_s - STATUS_WINDOW_S && snap->at_s <= now_s)
			return snap;
	}
	return now;
}

/* A JSON number, or null for NaN and infinities. */
static void number(FILE *f, const char *name, double v)
{
	if (isfinite(v))
		fprintf(f, "\"%s\":%.6g", name, v);
	else
		fprintf(f, "\"%s\":null", name);
}

/*
 * "<name>_ms" and "<name>_clipped": a percentile in the +Inf bucket is only
 * known to exceed the last bound, so it is null and clipped, never that bound.
 */
static void percentile(FILE *f, const char *name, const struct metrics_histogram *h, double q)
{
	char key[32];
	bool clipped = metrics_histogram_quantile_clipped(h, q);
	snprintf(key, sizeof key, "%s_ms", name);
	number(f, key, clipped ? NAN : 1000 * metrics_histogram_quantile(h, q));
	fprintf(f, ",\"%s_clipped\":%s,", name, clipped ? "true" : "false");
}

static void string(FILE *f, const char *text)
{
	fputc('"', f);
	for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
		if (*c == '"' || *c == '\\')
			fprintf(f, "\\%c", *c);
		else if (*c < 0x20)
			fprintf(f, "\\u%04x", *c);
		else
			fputc(*c, f);
	}
	fputc('"', f);
}

int status_render_json(const struct status *s, double now_s, char **out, size_t *len)
{
	const struct metrics *m = s->metrics;
	struct snapshot now;
	take(m, now_s, &now);
	const struct snapshot *old = window_start(s, now_s, &now);
	double window = now.at_s - old->at_s;

	FILE *f = open_memstream(out, len);
	if (f == NULL)
		return -1;
	fprintf(f, "{");
	number(f, "window_s", window);
	fprintf(f, ",");
	number(f, "events_per_s", window > 0 ? (double)(now.events - old->events) / window : NAN);
	fprintf(f, ",\"events_total\":%llu,\"ready\":%s,\"users\":%lld,\"items\":%lld,",
		(unsigned long long)now.events, m->ready ? "true" : "false", (long long)m->users,
		(long long)m->items);
	int64_t lag = 0;
	for (size_t i = 0; i < m->lag_count; i++)
		lag += m->lags[i].lag > 0 ? m->lags[i].lag : 0;
	const struct metrics_histogram *fh = &m->variants[0].freshness_seconds;
	number(f, "freshness_clip_ms",
	       fh->bucket_count ? 1000 * fh->upper_bounds[fh->bucket_count - 1] : NAN);
	fprintf(f, ",\"consumer_lag\":%lld,\"dlq_messages_total\":%llu,\"variants\":[",
		(long long)lag, (unsigned long long)m->dlq_messages_total);
	for (size_t v = 0; v < m->variant_count; v++) {
		const struct snapshot_variant *a = &old->variants[v], *b = &now.variants[v];
		/* the window's freshness histogram: now minus then */
		struct metrics_histogram h = m->variants[v].freshness_seconds;
		h.count = b->freshness_count - a->freshness_count;
		for (size_t i = 0; i <= h.bucket_count; i++)
			h.counts[i] = b->freshness[i] - a->freshness[i];
		uint64_t lists = b->recommendations - a->recommendations, hits = b->hits - a->hits;
		fprintf(f, "%s{\"name\":", v ? "," : "");
		string(f, m->variants[v].name);
		fprintf(f, ",\"lists\":%llu,\"hits\":%llu,", (unsigned long long)lists,
			(unsigned long long)hits);
		percentile(f, "p50", &h, 0.50);
		percentile(f, "p95", &h, 0.95);
		percentile(f, "p99", &h, 0.99);
		number(f, "updates_per_s",
		       window > 0 ? (double)(b->updates - a->updates) / window : NAN);
		fprintf(f, ",");
		number(f, "lists_per_s", window > 0 ? (double)lists / window : NAN);
		fprintf(f, ",");
		number(f, "hit_rate", lists > 0 ? (double)hits / (double)lists : NAN);
		fprintf(f, ",\"lists_total\":%llu,\"hits_total\":%llu,\"users_served_total\":%llu,",
			(unsigned long long)b->recommendations, (unsigned long long)b->hits,
			(unsigned long long)m->variants[v].users_served_total);
		/* the index engine's shadow recall against exact (null: exact engine) */
		number(f, "index_recall",
		       m->variants[v].index_recall >= 0 ? m->variants[v].index_recall : NAN);
		fprintf(f, "}");
	}
	fprintf(f, "]}\n");
	if (fclose(f) != 0) {
		free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

const char status_page_html[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>streamrec status</title>\n"
    "<style>\n"
    "body{font-family:system-ui,sans-serif;margin:2em;color:#1d2733;background:#f7f8fa}\n"
    "h1{font-size:1.4em;margin:0 0 .2em}\n"
    ".sub{color:#5b6675;margin-bottom:1.2em}\n"
    "table{border-collapse:collapse;background:#fff;box-shadow:0 1px 3px #0002}\n"
    "th,td{padding:.45em .9em;text-align:right;border-bottom:1px solid #e3e6ea}\n"
    "th:first-child,td:first-child{text-align:left}\n"
    "th{background:#eef1f4;font-weight:600}\n"
    "td{font-variant-numeric:tabular-nums}\n"
    ".cards{display:flex;gap:1em;margin-bottom:1.2em;flex-wrap:wrap}\n"
    ".card{background:#fff;padding:.7em 1em;box-shadow:0 1px 3px #0002;min-width:9em}\n"
    ".card b{display:block;font-size:1.4em}\n"
    ".bad{color:#b3261e}.good{color:#1e7b34}\n"
    "</style></head><body>\n"
    "<h1>streamrec</h1>\n"
    "<div class=\"sub\">live figures over the last <span id=\"window\">&ndash;</span> s;"
    " updated <span id=\"updated\">never</span></div>\n"
    "<div class=\"cards\">\n"
    "<div class=\"card\">events/s<b id=\"events-per-s\">&ndash;</b></div>\n"
    "<div class=\"card\">events<b id=\"events-total\">&ndash;</b></div>\n"
    "<div class=\"card\">consumer lag<b id=\"lag\">&ndash;</b></div>\n"
    "<div class=\"card\">dead letters<b id=\"dlq\">&ndash;</b></div>\n"
    "<div class=\"card\">ready<b id=\"ready\">&ndash;</b></div>\n"
    "</div>\n"
    "<table><thead><tr><th>variant</th><th>freshness p50 ms</th><th>p95 ms</th>"
    "<th>p99 ms</th><th>throughput events/s</th><th>lists/s</th><th>hit rate %</th>"
    "<th>users served</th><th>index recall</th></tr></thead><tbody id=\"variants\"></tbody></table>\n"
    "<script>\n"
    "function fmt(v,d){return v===null||v===undefined?'\\u2013':v.toFixed(d);}\n"
    "function pct(s,v,p){return v[p+'_clipped']?'> '+(s.freshness_clip_ms/1000)+' "
    "s':fmt(v[p+'_ms'],1);}\n"
    "function cell(tr,cls,text){var td=document.createElement('td');td.className=cls;"
    "td.textContent=text;tr.appendChild(td);}\n"
    "function render(s){\n"
    " document.getElementById('window').textContent=fmt(s.window_s,0);\n"
    " document.getElementById('events-per-s').textContent=fmt(s.events_per_s,0);\n"
    " document.getElementById('events-total').textContent=s.events_total;\n"
    " document.getElementById('lag').textContent=s.consumer_lag;\n"
    " document.getElementById('dlq').textContent=s.dlq_messages_total;\n"
    " var r=document.getElementById('ready');r.textContent=s.ready?'yes':'no';"
    "r.className=s.ready?'good':'bad';\n"
    " var body=document.getElementById('variants');body.textContent='';\n"
    " s.variants.forEach(function(v){var tr=document.createElement('tr');"
    "tr.setAttribute('data-variant',v.name);\n"
    "  cell(tr,'name',v.name);cell(tr,'p50',pct(s,v,'p50'));cell(tr,'p95',pct(s,v,'p95'));\n"
    "  cell(tr,'p99',pct(s,v,'p99'));cell(tr,'throughput',fmt(v.updates_per_s,0));\n"
    "  cell(tr,'lists',fmt(v.lists_per_s,1));\n"
    "  cell(tr,'hitrate',v.hit_rate===null?'\\u2013':(100*v.hit_rate).toFixed(2));\n"
    "  cell(tr,'served',v.users_served_total);\n"
    "  cell(tr,'recall',v.index_recall===null?'exact':v.index_recall.toFixed(3));"
    "body.appendChild(tr);});\n"
    " document.getElementById('updated').textContent=new Date().toLocaleTimeString();\n"
    "}\n"
    "function poll(){fetch('status.json',{cache:'no-store'}).then(function(r){return r.json();})"
    ".then(render).catch(function(){document.getElementById('ready').textContent='unreachable';"
    "}).finally(function(){setTimeout(poll,2000);});}\n"
    "poll();\n"
    "</script></body></html>\n";
