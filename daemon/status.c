/*
 * status: a ring of per-second snapshots of the counters the status page
 * needs, a ring of per-step figures over the last hour, and the JSON and
 * HTML that show them.
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
	uint64_t freshness_count, deferred_count;
	uint64_t updates, recommendations, hits;
};

struct snapshot {
	double at_s;
	uint64_t events;
	struct snapshot_variant variants[METRICS_MAX_VARIANTS];
};

/* One variant's figures over one history step; a percentile is NAN when
 * the step published nothing or when it is clipped. */
struct history_variant {
	uint64_t lists, hits;
	double p50_s, p99_s;
	bool p50_clipped, p99_clipped;
};

struct history_point {
	double start_s, end_s;
	struct history_variant variants[METRICS_MAX_VARIANTS];
};

struct status {
	const struct metrics *metrics;
	struct snapshot ring[RING];
	size_t head, count; /* ring[head] is the newest */
	/* the history: points[history_head] is the newest of history_count, and
	 * step_start the snapshot where the step under way began */
	struct history_point history[STATUS_HISTORY_POINTS];
	size_t history_head, history_count;
	struct snapshot step_start;
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
		sv->deferred_count = mv->freshness_deferred_seconds.count;
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

/* Variant v's freshness histogram between snapshots a (older) and b. */
static void window_histogram(const struct metrics *m, size_t v, const struct snapshot *a,
			     const struct snapshot *b, struct metrics_histogram *h)
{
	*h = m->variants[v].freshness_seconds; /* its bounds */
	h->count = b->variants[v].freshness_count - a->variants[v].freshness_count;
	h->sum = NAN;
	for (size_t i = 0; i <= h->bucket_count; i++)
		h->counts[i] = b->variants[v].freshness[i] - a->variants[v].freshness[i];
}

/* The figures between snapshots a (older) and b, as one history point. */
static void history_point(const struct metrics *m, const struct snapshot *a,
			  const struct snapshot *b, struct history_point *p)
{
	p->start_s = a->at_s;
	p->end_s = b->at_s;
	for (size_t v = 0; v < m->variant_count; v++) {
		struct history_variant *hv = &p->variants[v];
		struct metrics_histogram h;
		window_histogram(m, v, a, b, &h);
		hv->lists = b->variants[v].recommendations - a->variants[v].recommendations;
		hv->hits = b->variants[v].hits - a->variants[v].hits;
		hv->p50_clipped = metrics_histogram_quantile_clipped(&h, 0.50);
		hv->p99_clipped = metrics_histogram_quantile_clipped(&h, 0.99);
		hv->p50_s = hv->p50_clipped ? NAN : metrics_histogram_quantile(&h, 0.50);
		hv->p99_s = hv->p99_clipped ? NAN : metrics_histogram_quantile(&h, 0.99);
	}
}

void status_tick(struct status *s, double now_s)
{
	if (s->count > 0 && now_s - s->ring[s->head].at_s < 1.0)
		return;
	s->head = (s->head + 1) % RING;
	if (s->count < RING)
		s->count++;
	struct snapshot *now = &s->ring[s->head];
	take(s->metrics, now_s, now);
	if (s->count == 1) {
		s->step_start = *now;
		return;
	}
	if (now_s - s->step_start.at_s < STATUS_HISTORY_STEP_S)
		return;
	s->history_head = (s->history_head + 1) % STATUS_HISTORY_POINTS;
	if (s->history_count < STATUS_HISTORY_POINTS)
		s->history_count++;
	history_point(s->metrics, &s->step_start, now, &s->history[s->history_head]);
	s->step_start = *now;
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
		fprintf(f, "\"%s\":%.15g", name, v);
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

/* A history percentile: "<name>_ms" (null when clipped or empty) and "<name>_clipped". */
static void history_percentile(FILE *f, const char *name, double value_s, bool clipped)
{
	char key[32];
	snprintf(key, sizeof key, "%s_ms", name);
	number(f, key, 1000 * value_s);
	fprintf(f, ",\"%s_clipped\":%s", name, clipped ? "true" : "false");
}

static void history_point_json(FILE *f, const struct metrics *m, const struct history_point *p,
			       bool partial)
{
	fprintf(f, "{");
	number(f, "start_s", p->start_s);
	fprintf(f, ",");
	number(f, "end_s", p->end_s);
	fprintf(f, ",\"partial\":%s,\"variants\":[", partial ? "true" : "false");
	for (size_t v = 0; v < m->variant_count; v++) {
		const struct history_variant *hv = &p->variants[v];
		fprintf(f, "%s{\"lists\":%llu,\"hits\":%llu,", v ? "," : "",
			(unsigned long long)hv->lists, (unsigned long long)hv->hits);
		number(f, "hit_rate", hv->lists > 0 ? (double)hv->hits / (double)hv->lists : NAN);
		fprintf(f, ",");
		history_percentile(f, "p50", hv->p50_s, hv->p50_clipped);
		fprintf(f, ",");
		history_percentile(f, "p99", hv->p99_s, hv->p99_clipped);
		fprintf(f, "}");
	}
	fprintf(f, "]}");
}

/*
 * "history": the closed points that ended within the last STATUS_HISTORY_S,
 * oldest first, then the step under way (from its start to now) as a partial
 * point when it is not empty.
 */
static void history_json(FILE *f, const struct status *s, double now_s, const struct snapshot *now)
{
	bool first = true;
	fprintf(f, ",\"history\":{\"step_s\":%d,\"span_s\":%d,", STATUS_HISTORY_STEP_S,
		STATUS_HISTORY_S);
	number(f, "now_s", now_s);
	fprintf(f, ",\"points\":[");
	for (size_t age = s->history_count; age-- > 0;) {
		const struct history_point *p =
		    &s->history[(s->history_head + STATUS_HISTORY_POINTS - age) %
				STATUS_HISTORY_POINTS];
		if (p->end_s < now_s - STATUS_HISTORY_S || p->end_s > now_s)
			continue;
		fprintf(f, "%s", first ? "" : ",");
		history_point_json(f, s->metrics, p, false);
		first = false;
	}
	if (s->count > 0 && now->at_s > s->step_start.at_s &&
	    s->step_start.at_s >= now_s - STATUS_HISTORY_S) {
		struct history_point partial;
		history_point(s->metrics, &s->step_start, now, &partial);
		fprintf(f, "%s", first ? "" : ",");
		history_point_json(f, s->metrics, &partial, true);
	}
	fprintf(f, "]}");
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
		struct metrics_histogram h;
		window_histogram(m, v, old, &now, &h);
		uint64_t lists = b->recommendations - a->recommendations, hits = b->hits - a->hits;
		fprintf(f, "%s{\"name\":", v ? "," : "");
		string(f, m->variants[v].name);
		fprintf(f, ",\"lists\":%llu,\"hits\":%llu,", (unsigned long long)lists,
			(unsigned long long)hits);
		percentile(f, "p50", &h, 0.50);
		percentile(f, "p95", &h, 0.95);
		percentile(f, "p99", &h, 0.99);
		/* of the window's lists (freshness), those the deferred lane served:
		 * late under overload; above 1% they set the p99 */
		number(f, "deferred_share",
		       h.count > 0
			   ? (double)(b->deferred_count - a->deferred_count) / (double)h.count
			   : NAN);
		fprintf(f, ",");
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
	fprintf(f, "]");
	history_json(f, s, now_s, &now);
	fprintf(f, "}\n");
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
    "h2{font-size:1.1em;margin:1.6em 0 .5em}\n"
    ".sub{color:#5b6675;margin-bottom:1.2em}\n"
    "table{border-collapse:collapse;background:#fff;box-shadow:0 1px 3px #0002}\n"
    "th,td{padding:.45em .9em;text-align:right;border-bottom:1px solid #e3e6ea}\n"
    "th:first-child,td:first-child{text-align:left}\n"
    "th{background:#eef1f4;font-weight:600}\n"
    "td{font-variant-numeric:tabular-nums;white-space:nowrap}\n"
    ".cards{display:flex;gap:1em;margin-bottom:1.2em;flex-wrap:wrap}\n"
    ".card{background:#fff;padding:.7em 1em;box-shadow:0 1px 3px #0002;min-width:9em}\n"
    ".card b{display:block;font-size:1.4em}\n"
    ".bad{color:#b3261e}.good{color:#1e7b34}\n"
    ".charts{display:flex;gap:1em;flex-wrap:wrap}\n"
    ".chart{background:#fff;box-shadow:0 1px 3px #0002;padding:.5em .7em;flex:1 1 360px;max-w"
    "idth:560px}\n"
    ".chart h3{font-size:.95em;margin:0 0 .3em;font-weight:600}\n"
    ".chart svg{width:100%;height:auto;display:block}\n"
    ".legend{display:flex;gap:1em;flex-wrap:wrap;margin:.3em 0 .6em;font-size:.9em}\n"
    ".swatch{display:inline-block;width:1.4em;height:.3em;vertical-align:middle;margin-right:"
    ".3em}\n"
    ".badge{display:inline-block;font-size:.75em;padding:.05em .5em;margin-left:.5em;border-r"
    "adius:.8em;background:#dbe4f0;color:#1d3a66;font-weight:600}\n"
    "tr.control td{background:#f3f6fa}\n"
    ".srm{padding:.6em .9em;margin:.6em 0;background:#fff;box-shadow:0 1px 3px #0002;border-l"
    "eft:.35em solid #1e7b34}\n"
    ".srm.bad{border-left-color:#b3261e;background:#fdecea}\n"
    ".verdict-better{color:#1e7b34;font-weight:600}.verdict-worse{color:#b3261e;font-weight:6"
    "00}\n"
    ".verdict-untrusted{color:#b3261e}.verdict-collecting,.verdict-inconclusive{color:#5b6675"
    "}\n"
    ".note{color:#5b6675;font-size:.85em;max-width:70em}\n"
    "</style></head><body>\n"
    "<h1>streamrec</h1>\n"
    "<div class=\"sub\">live figures over the last <span id=\"window\">&ndash;</span> s; upda"
    "ted <span id=\"updated\">never</span></div>\n"
    "<div class=\"cards\">\n"
    "<div class=\"card\">events/s<b id=\"events-per-s\">&ndash;</b></div>\n"
    "<div class=\"card\">events<b id=\"events-total\">&ndash;</b></div>\n"
    "<div class=\"card\">consumer lag<b id=\"lag\">&ndash;</b></div>\n"
    "<div class=\"card\">dead letters<b id=\"dlq\">&ndash;</b></div>\n"
    "<div class=\"card\">ready<b id=\"ready\">&ndash;</b></div>\n"
    "</div>\n"
    "<table><thead><tr><th>variant</th><th>freshness p50 ms</th><th>p95 ms</th><th>p99 ms</th"
    "><th title=\"lists the deferred lane served: their users waited past refresh.staleness_ta"
    "rget_ms\">served late</th><th>throughput events/s</th><th>lists/s</th><th>hit rate "
    "%</th><th>users served</th><th"
    ">index recall</th></tr></thead><tbody id=\"variants\"></tbody></table>\n"
    "<section id=\"experiment\" hidden>\n"
    "<h2>A/B experiment <span id=\"exp-name\"></span></h2>\n"
    "<div class=\"sub\" id=\"exp-period\"></div>\n"
    "<div class=\"srm\" id=\"srm\">&ndash;</div>\n"
    "<table><thead><tr><th>variant</th><th>share</th><th>exposed users</th><th>converted user"
    "s</th><th id=\"rate-head\">conversion</th><th id=\"uplift-head\">uplift vs control</th><"
    "th>always-valid p</th><th>verdict</th></tr></thead><tbody id=\"arms\"></tbody></table>\n"
    "<p class=\"note\" id=\"exp-note\"></p>\n"
    "</section>\n"
    "<h2>Last hour</h2>\n"
    "<div class=\"legend\" id=\"legend\"></div>\n"
    "<div class=\"charts\">\n"
    "<div class=\"chart\"><h3>freshness p50</h3><div id=\"chart-p50\"></div></div>\n"
    "<div class=\"chart\"><h3>freshness p99</h3><div id=\"chart-p99\"></div></div>\n"
    "<div class=\"chart\"><h3>hit rate (hits per list)</h3><div id=\"chart-hitrate\"></div></"
    "div>\n"
    "</div>\n"
    "<p class=\"note\">One point per <span id=\"step\">&ndash;</span> s, each that step's own"
    " figures (the last, hollow, is the step under way); a gap is a step without lists. A per"
    "centile beyond the freshness histogram's last bound is only known to exceed it: it is dr"
    "awn as a triangle on the top edge, labelled with that bound, never as a value.</p>\n"
    "<script>\n"
    "var COLOURS=['#2463b5','#c2410c','#15803d','#7e22ce','#b91c1c','#0e7490','#a16207','#be1"
    "85d'];\n"
    "function colour(i){return COLOURS[i%COLOURS.length];}\n"
    "function fmt(v,d){return v===null||v===undefined?'\\u2013':v.toFixed(d);}\n"
    "function clipText(s){return '> '+(s.freshness_clip_ms/1000)+' s';}\n"
    "function pct(s,v,p){return v[p+'_clipped']?clipText(s):fmt(v[p+'_ms'],1);}\n"
    "function esc(t){return String(t).replace(/&/g,'&amp;').replace(/</g,'&lt;').replace(/>/g"
    ",'&gt;').replace(/\"/g,'&quot;').replace(/'/g,'&#39;');}\n"
    "function trim(x){return x.indexOf('e')<0&&x.indexOf('.')>=0?x.replace(/\\.?0+$/,''):x;}"
    "\n"
    "function duration(ms){return ms>=1000?trim((ms/1000).toPrecision(3))+' s':trim(ms.toPrec"
    "ision(3))+' ms';}\n"
    "function percent(r){return r===null||r===undefined?'\\u2013':trim((100*r).toPrecision(3))+' "
    "%';}\n"
    "function cell(tr,cls,text){var td=document.createElement('td');td.className=cls;td.textC"
    "ontent=text;tr.appendChild(td);return td;}\n"
    "function legend(s){\n"
    " var box=document.getElementById('legend');box.textContent='';\n"
    " s.variants.forEach(function(v,i){var span=document.createElement('span');var sw=documen"
    "t.createElement('span');\n"
    "  sw.className='swatch';sw.style.background=colour(i);span.appendChild(sw);span.appendCh"
    "ild(document.createTextNode(v.name));box.appendChild(span);});\n"
    "}\n"
    "/* One chart of the last hour: key is p50, p99 or hitrate. */\n"
    "function chart(id,s,key){\n"
    " var W=560,H=190,L=66,R=14,T=16,B=26,pw=W-L-R,ph=H-T-B,h=s.history,now=h.now_s,span=h.sp"
    "an_s;\n"
    " var isRate=key==='hitrate',max=0,clippedAny=false;\n"
    " function value(p,i){var v=p.variants[i];if(!v)return null;\n"
    "  if(isRate)return v.hit_rate;if(v[key+'_clipped'])return 'clipped';return v[key+'_ms'];"
    "}\n"
    " h.points.forEach(function(p){s.variants.forEach(function(_,i){var v=value(p,i);\n"
    "  if(v==='clipped')clippedAny=true;else if(v!==null&&v>max)max=v;});});\n"
    " if(max<=0)max=isRate?0.01:100;\n"
    " max*=1.1;\n"
    " function x(t){return L+pw*(1-(now-t)/span);}\n"
    " function y(v){return T+ph*(1-v/max);}\n"
    " function label(v){return isRate?percent(v):duration(v);}\n"
    " var o=['<svg viewBox=\"0 0 '+W+' '+H+'\" role=\"img\" class=\"series-chart\" data-key="
    "\"'+key+'\">'];\n"
    " o.push('<rect x=\"'+L+'\" y=\"'+T+'\" width=\"'+pw+'\" height=\"'+ph+'\" fill=\"#fbfcfd"
    "\" stroke=\"#d5dae0\"/>');\n"
    " [0,0.5,1].forEach(function(f){var v=max*f,yy=y(v);\n"
    "  o.push('<line x1=\"'+L+'\" x2=\"'+(L+pw)+'\" y1=\"'+yy+'\" y2=\"'+yy+'\" stroke=\"#e3e"
    "6ea\"/>');\n"
    "  o.push('<text x=\"'+(L-6)+'\" y=\"'+(yy+4)+'\" text-anchor=\"end\" font-size=\"11\" fi"
    "ll=\"#5b6675\">'+esc(label(v))+'</text>');});\n"
    " for(var m=60;m>=0;m-=15){var xx=x(now-60*m);\n"
    "  o.push('<text x=\"'+xx+'\" y=\"'+(H-8)+'\" text-anchor=\"middle\" font-size=\"11\" fil"
    "l=\"#5b6675\">'+(m?'\\u2212'+m+' min':'now')+'</text>');}\n"
    " if(clippedAny)o.push('<text class=\"clip-label\" x=\"'+(L+pw-4)+'\" y=\"'+(T-4)+'\" tex"
    "t-anchor=\"end\" font-size=\"11\" fill=\"#b3261e\">\\u25b2 '+esc(clipText(s))+'</text>')"
    ";\n"
    " s.variants.forEach(function(variant,i){var c=colour(i),seg=[],segs=[],marks=[];\n"
    "  h.points.forEach(function(p){var v=value(p,i),xx=x(p.end_s).toFixed(1);\n"
    "   var when=new Date(p.end_s*1000).toLocaleTimeString();\n"
    "   if(v===null||v==='clipped'){if(seg.length)segs.push(seg);seg=[];\n"
    "    if(v==='clipped')marks.push('<path class=\"clipped\" d=\"M'+xx+' '+(T+1)+'l-5 9h10z"
    "\" fill=\"'+c+'\"><title>'+esc(variant.name+' '+when+': '+clipText(s))+'</title></path>'"
    ");\n"
    "    return;}\n"
    "   var yy=y(v).toFixed(1);seg.push(xx+','+yy);\n"
    "   marks.push('<circle class=\"point\" cx=\"'+xx+'\" cy=\"'+yy+'\" r=\"2.5\" fill=\"'+(p"
    ".partial?'#fff':c)+'\" stroke=\"'+c+'\"><title>'+esc(variant.name+' '+when+': '+label(v)"
    ")+'</title></circle>');});\n"
    "  if(seg.length)segs.push(seg);\n"
    "  o.push('<g class=\"series\" data-variant=\"'+esc(variant.name)+'\">');\n"
    "  segs.forEach(function(sg){if(sg.length>1)o.push('<polyline fill=\"none\" stroke=\"'+c+"
    "'\" stroke-width=\"1.8\" points=\"'+sg.join(' ')+'\"/>');});\n"
    "  o.push(marks.join(''));o.push('</g>');});\n"
    " o.push('</svg>');\n"
    " document.getElementById(id).innerHTML=o.join('');\n"
    "}\n"
    "function render(s){\n"
    " document.getElementById('window').textContent=fmt(s.window_s,0);\n"
    " document.getElementById('events-per-s').textContent=fmt(s.events_per_s,0);\n"
    " document.getElementById('events-total').textContent=s.events_total;\n"
    " document.getElementById('lag').textContent=s.consumer_lag;\n"
    " document.getElementById('dlq').textContent=s.dlq_messages_total;\n"
    " var r=document.getElementById('ready');r.textContent=s.ready?'yes':'no';r.className=s.r"
    "eady?'good':'bad';\n"
    " var body=document.getElementById('variants');body.textContent='';\n"
    " s.variants.forEach(function(v){var tr=document.createElement('tr');tr.setAttribute('dat"
    "a-variant',v.name);\n"
    "  cell(tr,'name',v.name);cell(tr,'p50',pct(s,v,'p50'));cell(tr,'p95',pct(s,v,'p95'));\n"
    "  cell(tr,'p99',pct(s,v,'p99'));cell(tr,'late',percent(v.deferred_share));\n"
    "  cell(tr,'throughput',fmt(v.updates_per_s,0));\n"
    "  cell(tr,'lists',fmt(v.lists_per_s,1));\n"
    "  cell(tr,'hitrate',v.hit_rate===null?'\\u2013':(100*v.hit_rate).toFixed(2));\n"
    "  cell(tr,'served',v.users_served_total);\n"
    "  cell(tr,'recall',v.index_recall===null?'exact':v.index_recall.toFixed(3));body.appendC"
    "hild(tr);});\n"
    " document.getElementById('step').textContent=s.history.step_s;\n"
    " legend(s);chart('chart-p50',s,'p50');chart('chart-p99',s,'p99');chart('chart-hitrate',s"
    ",'hitrate');\n"
    " document.getElementById('updated').textContent=new Date().toLocaleTimeString();\n"
    "}\n"
    "function cap(t){return t.charAt(0).toUpperCase()+t.slice(1);}\n"
    "function pvalue(p){return p===null?'\\u2013':p<1e-4?'< 0.0001':trim(p.toPrecision(2));}"
    "\n"
    "function signed(r){return r===null?'\\u2013':(r>0?'+':'')+trim((100*r).toPrecision(3))+'"
    " %';}\n"
    "function interval(lo,hi,f){return lo===null||hi===null?'':' ['+f(lo)+', '+f(hi)+']';}\n"
    "var VERDICTS={control:'control arm',untrusted:'untrusted: sample ratio mismatch',\n"
    " inconclusive:'no significant difference yet',better:'significantly better than control'"
    ",\n"
    " worse:'significantly worse than control'};\n"
    "function renderExperiment(e){\n"
    " document.getElementById('experiment').hidden=false;\n"
    " document.getElementById('exp-name').textContent='\\u201c'+e.experiment+'\\u201d';\n"
    " document.getElementById('exp-period').textContent='exposure period '+e.period+' since '"
    "+\n"
    "  new Date(e.period_start_ms).toLocaleString()+'; level \\u03b1 = '+e.alpha+' (two-sided"
    ")';\n"
    " var level=trim((100*(1-e.alpha)).toPrecision(3))+' %';\n"
    " document.getElementById('rate-head').textContent='conversion ['+level+' interval]';\n"
    " document.getElementById('uplift-head').textContent='uplift vs control ['+level+' interv"
    "al]';\n"
    " var srm=document.getElementById('srm');\n"
    " if(e.srm_p===null){srm.className='srm';srm.textContent='Sample ratio: no exposed users "
    "yet.';}\n"
    " else if(e.srm_flag){srm.className='srm bad';srm.textContent='Sample ratio mismatch: the"
    " exposed users do not match the configured shares (chi-square p = '+\n"
    "  pvalue(e.srm_p)+' < '+e.srm_alpha+'). The split is broken: trust no other figure of th"
    "is period until the cause is found.';}\n"
    " else{srm.className='srm good';srm.textContent='Sample ratio OK: the exposed users match"
    " the configured shares (chi-square p = '+pvalue(e.srm_p)+', flagged below '+e.srm_alpha+"
    "').';}\n"
    " var body=document.getElementById('arms');body.textContent='';\n"
    " e.variants.forEach(function(v){var tr=document.createElement('tr');tr.setAttribute('dat"
    "a-arm',v.name);\n"
    "  tr.setAttribute('data-verdict',v.verdict);if(v.control)tr.className='control';\n"
    "  var name=cell(tr,'name',v.name);\n"
    "  if(v.control){var b=document.createElement('span');b.className='badge';b.textContent='"
    "control';name.appendChild(b);}\n"
    "  cell(tr,'share',percent(v.share));cell(tr,'exposed',v.exposed);cell(tr,'converted',v.c"
    "onverted);\n"
    "  cell(tr,'rate',percent(v.rate)+interval(v.ci_low,v.ci_high,percent));\n"
    "  cell(tr,'uplift',v.control?'\\u2013':signed(v.uplift)+interval(v.uplift_low,v.uplift_h"
    "igh,signed));\n"
    "  cell(tr,'msprt',v.control?'\\u2013':pvalue(v.msprt_p));\n"
    "  var text=v.verdict==='collecting'?'collecting: '+e.msprt_min_users+' exposed users per"
    " arm needed':VERDICTS[v.verdict]||v.verdict;\n"
    "  cell(tr,'verdict verdict-'+v.verdict,text);body.appendChild(tr);});\n"
    " document.getElementById('exp-note').textContent='Conversion: exposed users (served a li"
    "st of the variant) with at least one click, add-to-cart or purchase on it, with the '+\n"
    "  cap(e.methods.rate_interval)+' interval. Uplift: relative to the control arm, '+e.meth"
    "ods.uplift_interval+'. Always-valid p: '+e.methods.sequential+\n"
    "  '; it may be read at any time and never rises; a verdict of better or worse needs p < "
    "\\u03b1. Sample ratio: '+e.methods.srm+'.';\n"
    "}\n"
    "function get(path){return fetch(path,{cache:'no-store'}).then(function(r){return r.ok?r."
    "json():null;});}\n"
    "function poll(){Promise.all([get('status.json'),get('experiment.json').catch(function(){"
    "return null;})]).then(function(a){\n"
    " render(a[0]);if(a[1])renderExperiment(a[1]);else document.getElementById('experiment')."
    "hidden=true;})\n"
    " .catch(function(){document.getElementById('ready').textContent='unreachable';})\n"
    " .finally(function(){setTimeout(poll,2000);});}\n"
    "poll();\n"
    "</script></body></html>\n";
