/*
 * metrics: the counters struct and its Prometheus text rendering.
 */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double metrics_latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
					  0.5,   1,      2.5,   5,    10,    30,   60};
const size_t metrics_latency_bucket_count =
    sizeof metrics_latency_buckets / sizeof metrics_latency_buckets[0];
const double metrics_backlog_buckets[] = {60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400,
					  30 * 86400};
const size_t metrics_backlog_bucket_count =
    sizeof metrics_backlog_buckets / sizeof metrics_backlog_buckets[0];

const char *const metrics_attribution_labels[METRICS_ATTRIBUTION_COUNT] = {"exposed", "last_list"};

const enum event_type metrics_hit_types[METRICS_HIT_TYPE_COUNT] = {EVENT_CLICK, EVENT_ADD_TO_CART,
								   EVENT_PURCHASE};

const char *const metrics_content_outcome_labels[METRICS_CONTENT_OUTCOMES] = {"placed", "stored",
									       "ignored"};

const char *const metrics_search_outcome_labels[METRICS_SEARCH_OUTCOMES] = {
    "applied", "not_applied", "unembedded", "ignored"};

const char *const metrics_rank_labels[METRICS_RANK_BUCKETS] = {"1",    "2",     "3",  "4-5",
							       "6-10", "11-20", "21+"};

const char *const metrics_refresh_phase_labels[METRICS_REFRESH_PHASES] = {"prepare", "rank",
									  "wait", "publish"};

size_t metrics_rank_bucket(size_t rank)
{
	static const size_t upper[METRICS_RANK_BUCKETS - 1] = {1, 2, 3, 5, 10, 20};
	for (size_t b = 0; b < METRICS_RANK_BUCKETS - 1; b++)
		if (rank <= upper[b])
			return b;
	return METRICS_RANK_BUCKETS - 1;
}

int metrics_histogram_init(struct metrics_histogram *h, const double *upper_bounds,
			   size_t bucket_count, char *errstr, size_t errstr_size)
{
	if (bucket_count > METRICS_HISTOGRAM_MAX_BUCKETS) {
		snprintf(errstr, errstr_size, "histogram: %zu buckets, at most %d", bucket_count,
			 METRICS_HISTOGRAM_MAX_BUCKETS);
		return -1;
	}
	for (size_t i = 0; i < bucket_count; i++) {
		if (!isfinite(upper_bounds[i]) ||
		    (i > 0 && upper_bounds[i] <= upper_bounds[i - 1])) {
			snprintf(errstr, errstr_size,
				 "histogram: bound[%zu] = %g: bounds must be finite and strictly "
				 "ascending",
				 i, upper_bounds[i]);
			return -1;
		}
	}
	memset(h, 0, sizeof *h);
	h->bucket_count = bucket_count;
	if (bucket_count)
		memcpy(h->upper_bounds, upper_bounds, bucket_count * sizeof *upper_bounds);
	return 0;
}

void metrics_histogram_observe(struct metrics_histogram *h, double value)
{
	if (isnan(value))
		return;
	size_t i = 0;
	while (i < h->bucket_count && value > h->upper_bounds[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum += value;
}

double metrics_histogram_quantile(const struct metrics_histogram *h, double q)
{
	if (h->count == 0 || !(q >= 0 && q <= 1))
		return NAN;
	double rank = q * (double)h->count;
	uint64_t below = 0;
	for (size_t i = 0; i < h->bucket_count; i++) {
		uint64_t cumulative = below + h->counts[i];
		if ((double)cumulative >= rank && h->counts[i] > 0) {
			double lower = i == 0 ? 0 : h->upper_bounds[i - 1];
			double upper = h->upper_bounds[i];
			if (i == 0 && upper <= 0)
				return upper;
			return lower +
			       (upper - lower) * ((rank - (double)below) / (double)h->counts[i]);
		}
		below = cumulative;
	}
	/* the rank lies in the +Inf bucket (or the histogram has no finite bounds) */
	return h->bucket_count ? h->upper_bounds[h->bucket_count - 1] : NAN;
}

bool metrics_histogram_quantile_clipped(const struct metrics_histogram *h, double q)
{
	if (h->count == 0 || !(q >= 0 && q <= 1))
		return false;
	uint64_t finite = h->count - h->counts[h->bucket_count];
	/* metrics_histogram_quantile finds a finite bucket exactly when the rank is within them */
	return finite == 0 || q * (double)h->count > (double)finite;
}

struct metrics *metrics_new(const char *const *variant_names, size_t variant_count, char *errstr,
			    size_t errstr_size)
{
	if (variant_count == 0 || variant_count > METRICS_MAX_VARIANTS) {
		snprintf(errstr, errstr_size, "metrics: %zu variants, must be between 1 and %d",
			 variant_count, METRICS_MAX_VARIANTS);
		return NULL;
	}
	for (size_t i = 0; i < variant_count; i++) {
		size_t len = strlen(variant_names[i]);
		if (len == 0 || len > METRICS_VARIANT_NAME_MAX) {
			snprintf(errstr, errstr_size,
				 "metrics: variant[%zu]: name must be 1 to %d bytes, got %zu", i,
				 METRICS_VARIANT_NAME_MAX, len);
			return NULL;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(variant_names[i], variant_names[j]) == 0) {
				snprintf(errstr, errstr_size,
					 "metrics: variant[%zu]: name \"%s\" already used by "
					 "variant[%zu]",
					 i, variant_names[i], j);
				return NULL;
			}
		}
	}
	struct metrics *m = calloc(1, sizeof *m);
	if (!m) {
		snprintf(errstr, errstr_size, "metrics: out of memory");
		return NULL;
	}
	m->variant_count = variant_count;
	m->experiment_srm_p = -1;
	for (size_t i = 0; i < variant_count; i++) {
		strcpy(m->variants[i].name, variant_names[i]);
		m->variants[i].index_recall = -1;
		m->variants[i].experiment_msprt_p = -1;
		m->variants[i].experiment_rate = m->variants[i].experiment_rate_lower =
		    m->variants[i].experiment_rate_upper = NAN;
		m->variants[i].experiment_uplift = m->variants[i].experiment_uplift_lower =
		    m->variants[i].experiment_uplift_upper = NAN;
		if (metrics_histogram_init(&m->variants[i].freshness_seconds,
					   metrics_latency_buckets, metrics_latency_bucket_count,
					   errstr, errstr_size) < 0 ||
		    metrics_histogram_init(&m->variants[i].freshness_deferred_seconds,
					   metrics_latency_buckets, metrics_latency_bucket_count,
					   errstr, errstr_size) < 0 ||
		    metrics_histogram_init(&m->variants[i].catch_up_seconds,
					   metrics_backlog_buckets, metrics_backlog_bucket_count,
					   errstr, errstr_size) < 0)
			goto out_free;
	}
	if (metrics_histogram_init(&m->refresh_batch_seconds, metrics_latency_buckets,
				   metrics_latency_bucket_count, errstr, errstr_size) < 0 ||
	    metrics_histogram_init(&m->commit_loop_seconds, metrics_latency_buckets,
				   metrics_latency_bucket_count, errstr, errstr_size) < 0)
		goto out_free;
	return m;

out_free:
	free(m);
	return NULL;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->lag_count; i++)
		free(m->lags[i].topic);
	free(m->lags);
	free(m);
}

int metrics_variant_index(const struct metrics *m, const char *name)
{
	for (size_t i = 0; i < m->variant_count; i++)
		if (strcmp(m->variants[i].name, name) == 0)
			return (int)i;
	return -1;
}

static struct metrics_lag *find_lag(const struct metrics *m, const char *topic, int32_t partition)
{
	for (size_t i = 0; i < m->lag_count; i++)
		if (m->lags[i].partition == partition && strcmp(m->lags[i].topic, topic) == 0)
			return &m->lags[i];
	return NULL;
}

void metrics_set_blas(struct metrics *m, const char *kernel, const char *cpu_best,
		      const char *chosen_by)
{
	snprintf(m->blas_kernel, sizeof m->blas_kernel, "%s", kernel);
	snprintf(m->blas_cpu_best, sizeof m->blas_cpu_best, "%s", cpu_best);
	snprintf(m->blas_chosen_by, sizeof m->blas_chosen_by, "%s", chosen_by);
}

void metrics_set_text_model(struct metrics *m, const char *name, unsigned dim, const char *kernel)
{
	snprintf(m->text_model_name, sizeof m->text_model_name, "%s", name);
	snprintf(m->text_model_kernel, sizeof m->text_model_kernel, "%s", kernel);
	m->text_model_dim = dim;
}

int metrics_set_consumer_lag(struct metrics *m, const char *topic, int32_t partition, int64_t lag,
			     int64_t committed_lag, char *errstr, size_t errstr_size)
{
	struct metrics_lag *entry = find_lag(m, topic, partition);
	if (entry) {
		entry->lag = lag;
		entry->committed_lag = committed_lag;
		return 0;
	}
	if (m->lag_count == m->lag_capacity) {
		size_t capacity = m->lag_capacity ? 2 * m->lag_capacity : 16;
		struct metrics_lag *lags = realloc(m->lags, capacity * sizeof *lags);
		if (!lags)
			goto out_oom;
		m->lags = lags;
		m->lag_capacity = capacity;
	}
	char *copy = strdup(topic);
	if (!copy)
		goto out_oom;
	m->lags[m->lag_count++] = (struct metrics_lag){
	    .topic = copy, .partition = partition, .lag = lag, .committed_lag = committed_lag};
	return 0;

out_oom:
	snprintf(errstr, errstr_size, "metrics: consumer lag of %s[%" PRId32 "]: out of memory",
		 topic, partition);
	return -1;
}

void metrics_remove_consumer_lag(struct metrics *m, const char *topic, int32_t partition)
{
	struct metrics_lag *entry = find_lag(m, topic, partition);
	if (!entry)
		return;
	free(entry->topic);
	*entry = m->lags[--m->lag_count];
}

/* A growable text buffer; once an allocation fails it stays failed and appends do nothing. */
struct text {
	char *data;
	size_t len;
	size_t capacity;
	bool failed;
};

static bool text_reserve(struct text *t, size_t extra)
{
	if (t->failed)
		return false;
	if (t->len + extra + 1 <= t->capacity)
		return true;
	size_t capacity = t->capacity ? t->capacity : 4096;
	while (capacity < t->len + extra + 1)
		capacity *= 2;
	char *data = realloc(t->data, capacity);
	if (!data) {
		t->failed = true;
		return false;
	}
	t->data = data;
	t->capacity = capacity;
	return true;
}

__attribute__((format(printf, 2, 3))) static void text_printf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		t->failed = true;
		return;
	}
	if (!text_reserve(t, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(t->data + t->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	t->len += (size_t)n;
}

static void text_append(struct text *t, const char *s, size_t n)
{
	if (!text_reserve(t, n))
		return;
	memcpy(t->data + t->len, s, n);
	t->len += n;
	t->data[t->len] = '\0';
}

static void text_puts(struct text *t, const char *s)
{
	text_append(t, s, strlen(s));
}

/* A label value escaped per the exposition format: backslash, double quote, newline. */
static void text_label_value(struct text *t, const char *value)
{
	for (const char *p = value; *p; p++) {
		switch (*p) {
		case '\\': text_append(t, "\\\\", 2); break;
		case '"': text_append(t, "\\\"", 2); break;
		case '\n': text_append(t, "\\n", 2); break;
		default: text_append(t, p, 1);
		}
	}
}

/* A sample value: the shortest decimal that reads back exactly, or +Inf, -Inf, NaN. */
static void text_double(struct text *t, double v)
{
	if (isnan(v)) {
		text_append(t, "NaN", 3);
		return;
	}
	if (isinf(v)) {
		text_append(t, v > 0 ? "+Inf" : "-Inf", 4);
		return;
	}
	char buf[40];
	for (int precision = 15; precision <= 17; precision++) {
		snprintf(buf, sizeof buf, "%.*g", precision, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	text_append(t, buf, strlen(buf));
}

static void family(struct text *t, const char *name, const char *type, const char *help)
{
	text_printf(t, "# HELP streamrec_%s %s\n# TYPE streamrec_%s %s\n", name, help, name, type);
}

/* One histogram's series, with one optional label (label_name NULL for none). */
static void histogram_series(struct text *t, const char *name, const char *label_name,
			     const char *label_value, const struct metrics_histogram *h)
{
	uint64_t cumulative = 0;
	for (size_t i = 0; i <= h->bucket_count; i++) {
		cumulative += h->counts[i];
		text_printf(t, "streamrec_%s_bucket{", name);
		if (label_name) {
			text_printf(t, "%s=\"", label_name);
			text_label_value(t, label_value);
			text_append(t, "\",", 2);
		}
		text_append(t, "le=\"", 4);
		text_double(t, i < h->bucket_count ? h->upper_bounds[i] : INFINITY);
		text_printf(t, "\"} %" PRIu64 "\n", cumulative);
	}
	const char *suffixes[] = {"sum", "count"};
	for (size_t s = 0; s < 2; s++) {
		text_printf(t, "streamrec_%s_%s", name, suffixes[s]);
		if (label_name) {
			text_printf(t, "{%s=\"", label_name);
			text_label_value(t, label_value);
			text_append(t, "\"}", 2);
		}
		if (s == 0) {
			text_append(t, " ", 1);
			text_double(t, h->sum);
			text_append(t, "\n", 1);
		} else {
			text_printf(t, " %" PRIu64 "\n", h->count);
		}
	}
}

/* A histogram family with one series per variant: the histogram at `field`
 * (offsetof(struct metrics_variant, ...)) of each. */
static void variant_histograms(struct text *t, const struct metrics *m, const char *name,
			       const char *help, size_t field)
{
	family(t, name, "histogram", help);
	for (size_t v = 0; v < m->variant_count; v++)
		histogram_series(
		    t, name, "variant", m->variants[v].name,
		    (const struct metrics_histogram *)((const char *)&m->variants[v] + field));
}

/* One sample of a family labelled by variant alone. */
static void variant_sample(struct text *t, const char *name, const char *variant, uint64_t value)
{
	text_printf(t, "streamrec_%s{variant=\"", name);
	text_label_value(t, variant);
	text_printf(t, "\"} %" PRIu64 "\n", value);
}

/* One variant's sample of a family whose values are not whole numbers. */
static void variant_sample_double(struct text *t, const char *name, const char *variant,
				  double value)
{
	text_printf(t, "streamrec_%s{variant=\"", name);
	text_label_value(t, variant);
	text_printf(t, "\"} %.6f\n", value);
}

/* A family of one uint64_t field of every variant, at field_offset in
 * struct metrics_variant. */
static void variant_counts(struct text *t, const struct metrics *m, const char *name,
			   const char *type, const char *help, size_t field_offset)
{
	family(t, name, type, help);
	for (size_t v = 0; v < m->variant_count; v++) {
		uint64_t value;
		memcpy(&value, (const char *)&m->variants[v] + field_offset, sizeof value);
		variant_sample(t, name, m->variants[v].name, value);
	}
}

/* A gauge per variant whose value is finite (the others are not rendered). */
static void variant_gauges(struct text *t, const struct metrics *m, const char *name,
			   const char *help, size_t field_offset)
{
	family(t, name, "gauge", help);
	for (size_t v = 0; v < m->variant_count; v++) {
		double value;
		memcpy(&value, (const char *)&m->variants[v] + field_offset, sizeof value);
		if (!isfinite(value))
			continue;
		text_printf(t, "streamrec_%s{variant=\"", name);
		text_label_value(t, m->variants[v].name);
		text_printf(t, "\"} %.6g\n", value);
	}
}

int metrics_render(const struct metrics *m, char **out, size_t *len, char *errstr,
		   size_t errstr_size)
{
	struct text t = {0};

	family(&t, "events_total", "counter", "Decoded user events, by type.");
	for (size_t i = 0; i < EVENT_TYPE_COUNT; i++)
		text_printf(&t, "streamrec_events_total{type=\"%s\"} %" PRIu64 "\n", event_type_key(i),
			    m->events_total[i]);

	family(&t, "invalid_events_total", "counter",
	       "Messages refused by the decoder or validation, by reason.");
	for (size_t i = CODEC_OK + 1; i < CODEC_REASON_COUNT; i++) {
		text_puts(&t, "streamrec_invalid_events_total{reason=\"");
		text_label_value(&t, codec_reason_name((enum codec_reason)i));
		text_printf(&t, "\"} %" PRIu64 "\n", m->invalid_events_total[i]);
	}

	variant_counts(&t, m, "updates_total", "counter",
		       "Events applied to a variant's model.",
		       offsetof(struct metrics_variant, updates_total));

	variant_counts(&t, m, "recommendations_total", "counter",
		       "Recommendation records published.",
		       offsetof(struct metrics_variant, recommendations_total));

	variant_counts(&t, m, "users_served_total", "counter",
		       "Distinct users served a variant's list since the daemon started (A/B exposures).",
		       offsetof(struct metrics_variant, users_served_total));

	family(&t, "hits_total", "counter",
	       "Clicks, add-to-carts and purchases of an item in the list they came from (named by "
	       "the event's list_id, else the user's last published list).");
	for (size_t v = 0; v < m->variant_count; v++) {
		for (size_t h = 0; h < METRICS_HIT_TYPE_COUNT; h++) {
			text_puts(&t, "streamrec_hits_total{variant=\"");
			text_label_value(&t, m->variants[v].name);
			text_printf(&t, "\",type=\"%s\"} %" PRIu64 "\n",
				    event_type_key(metrics_hit_types[h]),
				    m->variants[v].hits_total[metrics_hit_types[h]]);
		}
	}

	family(&t, "hits_attributed_total", "counter",
	       "Hits by attribution: exposed (the event named its list), last_list (it did not: "
	       "the user's last published list).");
	for (size_t v = 0; v < m->variant_count; v++) {
		for (size_t a = 0; a < METRICS_ATTRIBUTION_COUNT; a++) {
			text_puts(&t, "streamrec_hits_attributed_total{variant=\"");
			text_label_value(&t, m->variants[v].name);
			text_printf(&t, "\",attribution=\"%s\"} %" PRIu64 "\n",
				    metrics_attribution_labels[a],
				    m->variants[v].hits_attributed_total[a]);
		}
	}
	family(&t, "hits_unknown_list_total", "counter",
	       "Click, add-to-cart and purchase events naming a list that is not one of the "
	       "user's two last published lists (not counted as hits).");
	text_printf(&t, "streamrec_hits_unknown_list_total %" PRIu64 "\n",
		    m->hits_unknown_list_total);

	family(&t, "hits_by_rank_total", "counter",
	       "Hits by the item's 1-based rank in the published list.");
	for (size_t v = 0; v < m->variant_count; v++) {
		for (size_t r = 0; r < METRICS_RANK_BUCKETS; r++) {
			text_puts(&t, "streamrec_hits_by_rank_total{variant=\"");
			text_label_value(&t, m->variants[v].name);
			text_printf(&t, "\",rank=\"%s\"} %" PRIu64 "\n", metrics_rank_labels[r],
				    m->variants[v].hits_by_rank_total[r]);
		}
	}

	family(&t, "refresh_batch_seconds", "histogram", "Wall time of one refresh batch.");
	histogram_series(&t, "refresh_batch_seconds", NULL, NULL, &m->refresh_batch_seconds);

	family(&t, "refresh_phase_seconds_total", "counter",
	       "Wall time of refresh rounds by phase: prepare and publish on the loop's thread, "
	       "rank on the workers, wait between ranked and published.");
	for (size_t ph = 0; ph < METRICS_REFRESH_PHASES; ph++)
		text_printf(&t, "streamrec_refresh_phase_seconds_total{phase=\"%s\"} %.6f\n",
			    metrics_refresh_phase_labels[ph], m->refresh_phase_seconds_total[ph]);

	family(&t, "refresh_upkeep_seconds_total", "counter",
	       "Worker time spent keeping the index current: placing the item rows learning "
	       "moved since the last round.");
	text_printf(&t, "streamrec_refresh_upkeep_seconds_total %.6f\n",
		    m->refresh_upkeep_seconds_total);
	family(&t, "refresh_upkeep_awaited_seconds_total", "counter",
	       "The part of rank phases in which the round's searches waited for the upkeep "
	       "(it starts while the loop prepares the queries).");
	text_printf(&t, "streamrec_refresh_upkeep_awaited_seconds_total %.6f\n",
		    m->refresh_upkeep_awaited_seconds_total);

	family(&t, "schema_waits_total", "counter",
	       "Messages re-read later because their writer schema could not be fetched yet.");
	text_printf(&t, "streamrec_schema_waits_total %" PRIu64 "\n", m->schema_waits_total);
	family(&t, "dead_letter_waits_total", "counter",
	       "Refused messages re-read later because the producer's queue was full when their "
	       "dead letter was sent (a slow broker; the offset waits with them).");
	text_printf(&t, "streamrec_dead_letter_waits_total %" PRIu64 "\n",
		    m->dead_letter_waits_total);
	family(&t, "publish_retries_total", "counter",
	       "Lists the producer did not take (its queue full: a slow broker); each user is "
	       "due again and its list made and sent by a later round.");
	text_printf(&t, "streamrec_publish_retries_total %" PRIu64 "\n", m->publish_retries_total);

	family(&t, "refresh_waiting", "gauge",
	       "Users waiting for a refresh, marked within refresh.staleness_target_ms.");
	text_printf(&t, "streamrec_refresh_waiting %" PRId64 "\n", m->refresh_waiting);
	family(&t, "refresh_deferred_waiting", "gauge",
	       "Users waiting for a refresh beyond the staleness target (served after the recent, "
	       "newest first).");
	text_printf(&t, "streamrec_refresh_deferred_waiting %" PRId64 "\n",
		    m->refresh_deferred_waiting);
	family(&t, "refresh_round_limit", "gauge",
	       "The most users the last refresh round could take: refresh.batch, or "
	       "refresh.batch_behind while learning is behind its input or the recent lane "
	       "holds a backlog (refresh.backlog_ms).");
	text_printf(&t, "streamrec_refresh_round_limit %" PRId64 "\n", m->refresh_round_limit);
	family(&t, "refresh_deferred_total", "counter",
	       "Refreshes deferred because they waited beyond the staleness target.");
	text_printf(&t, "streamrec_refresh_deferred_total %" PRIu64 "\n", m->refresh_deferred_total);

	if (m->experiment_srm_p >= 0) {
		variant_counts(&t, m, "experiment_exposed_users", "gauge",
			       "Users served a list of the variant in the experiment's current period.",
			       offsetof(struct metrics_variant, experiment_exposed));
		variant_counts(&t, m, "experiment_converted_users", "gauge",
			       "Exposed users with a hit on a list of the variant, current period.",
			       offsetof(struct metrics_variant, experiment_converted));
		family(&t, "experiment_msprt_p", "gauge",
		       "Always-valid p-value (mSPRT) of the variant against the control arm.");
		for (size_t v = 0; v < m->variant_count; v++)
			if (m->variants[v].experiment_msprt_p >= 0) {
				text_puts(&t, "streamrec_experiment_msprt_p{variant=\"");
				text_label_value(&t, m->variants[v].name);
				text_printf(&t, "\"} %.6g\n", m->variants[v].experiment_msprt_p);
			}
		family(&t, "experiment_srm_p", "gauge",
		       "Sample-ratio-mismatch p-value of the exposed users against the shares.");
		text_printf(&t, "streamrec_experiment_srm_p %.6g\n", m->experiment_srm_p);
		family(&t, "experiment_alpha", "gauge",
		       "Two-sided level of the experiment's intervals and sequential test.");
		text_printf(&t, "streamrec_experiment_alpha %.6g\n", m->experiment_alpha);
		family(&t, "experiment_control", "gauge",
		       "1 for the experiment's control arm, 0 for the variants compared with it.");
		for (size_t v = 0; v < m->variant_count; v++)
			variant_sample(&t, "experiment_control", m->variants[v].name,
				       m->variants[v].experiment_control ? 1 : 0);
		variant_gauges(&t, m, "experiment_conversion_rate",
			       "Converted over exposed users of the variant, current period.",
			       offsetof(struct metrics_variant, experiment_rate));
		variant_gauges(&t, m, "experiment_conversion_rate_lower",
			       "Lower bound of the conversion rate's Wilson interval (level 1 - alpha).",
			       offsetof(struct metrics_variant, experiment_rate_lower));
		variant_gauges(&t, m, "experiment_conversion_rate_upper",
			       "Upper bound of the conversion rate's Wilson interval (level 1 - alpha).",
			       offsetof(struct metrics_variant, experiment_rate_upper));
		variant_gauges(&t, m, "experiment_uplift",
			       "Relative uplift of the conversion rate against the control arm.",
			       offsetof(struct metrics_variant, experiment_uplift));
		variant_gauges(&t, m, "experiment_uplift_lower",
			       "Lower bound of the uplift's delta-method interval (level 1 - alpha).",
			       offsetof(struct metrics_variant, experiment_uplift_lower));
		variant_gauges(&t, m, "experiment_uplift_upper",
			       "Upper bound of the uplift's delta-method interval (level 1 - alpha).",
			       offsetof(struct metrics_variant, experiment_uplift_upper));
	}

	variant_counts(&t, m, "index_shadow_lists_total", "counter",
		       "Index-engine lists also computed by the exact engine to measure recall.",
		       offsetof(struct metrics_variant, index_shadow_lists_total));
	family(&t, "index_recall", "gauge",
	       "Recall@k of the index engine's lists against the exact engine's, last shadow.");
	for (size_t v = 0; v < m->variant_count; v++)
		if (m->variants[v].index_recall >= 0)
			variant_sample_double(&t, "index_recall", m->variants[v].name,
					      m->variants[v].index_recall);
	family(&t, "index_search_seconds_total", "counter",
	       "Worker time of the index engine's searches (its upkeep aside).");
	for (size_t v = 0; v < m->variant_count; v++)
		variant_sample_double(&t, "index_search_seconds_total", m->variants[v].name,
				      m->variants[v].index_search_seconds_total);
	family(&t, "index_shadow_seconds_total", "counter",
	       "Worker time of the shadow's exact lists (refresh.shadow_budget bounds its share "
	       "of this and index_search_seconds_total).");
	for (size_t v = 0; v < m->variant_count; v++)
		variant_sample_double(&t, "index_shadow_seconds_total", m->variants[v].name,
				      m->variants[v].index_shadow_seconds_total);
	variant_counts(&t, m, "index_trainings_total", "counter",
		       "Builds (at start) and retrainings (aside, no round waits) of the index's cells.",
		       offsetof(struct metrics_variant, index_trainings_total));
	family(&t, "index_training_seconds_total", "counter",
	       "Wall time of those builds and retrainings.");
	for (size_t v = 0; v < m->variant_count; v++)
		variant_sample_double(&t, "index_training_seconds_total", m->variants[v].name,
				      m->variants[v].index_training_seconds_total);
	variant_counts(&t, m, "index_row_updates_total", "counter",
		       "Item rows learning moved that the index placed again (new items included).",
		       offsetof(struct metrics_variant, index_row_updates_total));
	variant_counts(&t, m, "index_rows_kept_total", "counter",
		       "Of those, rows that kept their cell without a scoring against the centroids.",
		       offsetof(struct metrics_variant, index_rows_kept_total));
	variant_counts(&t, m, "index_candidates_total", "counter",
		       "Items the index engine scored for its lists (probed cells' rows, co-visitation "
		       "and trending candidates); per list: divide by index_lists_total.",
		       offsetof(struct metrics_variant, index_candidates_total));
	variant_counts(&t, m, "index_lists_total", "counter",
		       "Warm lists the index engine ranked.",
		       offsetof(struct metrics_variant, index_lists_total));
	family(&t, "index_largest_cell_items", "gauge",
	       "Items in the index's largest cell (learned rows are skewed; the mean is "
	       "index_items over the cells).");
	for (size_t v = 0; v < m->variant_count; v++)
		if (m->variants[v].index_items > 0)
			variant_sample(&t, "index_largest_cell_items", m->variants[v].name,
				       m->variants[v].index_largest_cell);
	family(&t, "index_items", "gauge", "Items the index holds.");
	for (size_t v = 0; v < m->variant_count; v++)
		if (m->variants[v].index_items > 0)
			variant_sample(&t, "index_items", m->variants[v].name,
				       m->variants[v].index_items);
	family(&t, "index_rows_pending", "gauge",
	       "Item rows learning moved that the index has not placed again yet: while the "
	       "refresh is overloaded each round places only as many as it has time for, the "
	       "longest-waiting first.");
	for (size_t v = 0; v < m->variant_count; v++)
		if (m->variants[v].index_items > 0)
			variant_sample(&t, "index_rows_pending", m->variants[v].name,
				       m->variants[v].index_rows_pending);
	family(&t, "index_nprobe", "gauge",
	       "Index cells probed per list (model.index_recall_target moves the automatic one).");
	for (size_t v = 0; v < m->variant_count; v++)
		if (m->variants[v].index_nprobe > 0)
			variant_sample(&t, "index_nprobe", m->variants[v].name,
				       m->variants[v].index_nprobe);

	variant_histograms(&t, m, "freshness_seconds",
			   "Publish time minus trigger event time of published recommendations.",
			   offsetof(struct metrics_variant, freshness_seconds));
	variant_histograms(
	    &t, m, "freshness_deferred_seconds",
	    "The part of freshness_seconds served from the deferred lane: lists whose user "
	    "waited longer than refresh.staleness_target_ms for a round (overload).",
	    offsetof(struct metrics_variant, freshness_deferred_seconds));
	variant_histograms(
	    &t, m, "catch_up_seconds",
	    "Publish time minus trigger event time of lists made for backlog (events older "
	    "than refresh.catch_up_threshold_ms at arrival), kept out of freshness_seconds.",
	    offsetof(struct metrics_variant, catch_up_seconds));

	family(&t, "consumer_lag", "gauge",
	       "Messages between the consumer's position and the partition's high watermark.");
	for (size_t i = 0; i < m->lag_count; i++) {
		text_puts(&t, "streamrec_consumer_lag{topic=\"");
		text_label_value(&t, m->lags[i].topic);
		text_printf(&t, "\",partition=\"%" PRId32 "\"} %" PRId64 "\n", m->lags[i].partition,
			    m->lags[i].lag);
	}
	family(&t, "consumer_committed_lag", "gauge",
	       "Messages between the last Kafka offset commit and the partition's high watermark.");
	for (size_t i = 0; i < m->lag_count; i++) {
		if (m->lags[i].committed_lag < 0)
			continue;
		text_puts(&t, "streamrec_consumer_committed_lag{topic=\"");
		text_label_value(&t, m->lags[i].topic);
		text_printf(&t, "\",partition=\"%" PRId32 "\"} %" PRId64 "\n", m->lags[i].partition,
			    m->lags[i].committed_lag);
	}

	family(&t, "users", "gauge", "Users known to the state.");
	text_printf(&t, "streamrec_users %" PRId64 "\n", m->users);
	family(&t, "embeddings_admitted_total", "counter",
	       "Ids given an embedding row (lifecycle), by kind.");
	text_printf(&t, "streamrec_embeddings_admitted_total{kind=\"user\"} %" PRIu64 "\n",
		    m->users_admitted_total);
	text_printf(&t, "streamrec_embeddings_admitted_total{kind=\"item\"} %" PRIu64 "\n",
		    m->items_admitted_total);
	family(&t, "embeddings_expired_total", "counter",
	       "Rows removed after lifecycle.user_ttl (item_ttl) of idleness (event time), by kind.");
	text_printf(&t, "streamrec_embeddings_expired_total{kind=\"user\"} %" PRIu64 "\n",
		    m->users_expired_total);
	text_printf(&t, "streamrec_embeddings_expired_total{kind=\"item\"} %" PRIu64 "\n",
		    m->items_expired_total);
	family(&t, "embeddings_evicted_total", "counter",
	       "Least recently active rows removed above lifecycle.max_users (max_items), by kind.");
	text_printf(&t, "streamrec_embeddings_evicted_total{kind=\"user\"} %" PRIu64 "\n",
		    m->users_evicted_total);
	text_printf(&t, "streamrec_embeddings_evicted_total{kind=\"item\"} %" PRIu64 "\n",
		    m->items_evicted_total);
	family(&t, "embeddings_unadmitted_events_total", "counter",
	       "Events of ids not admitted yet (lifecycle.admit_after): counted for their item, "
	       "no embedding trained, by kind.");
	text_printf(&t, "streamrec_embeddings_unadmitted_events_total{kind=\"user\"} %" PRIu64 "\n",
		    m->unadmitted_events_total);
	text_printf(&t, "streamrec_embeddings_unadmitted_events_total{kind=\"item\"} %" PRIu64 "\n",
		    m->unadmitted_item_events_total);
	family(&t, "embeddings_live", "gauge", "Rows the state holds (in memory or on disk), by kind.");
	text_printf(&t, "streamrec_embeddings_live{kind=\"user\"} %" PRId64 "\n", m->users);
	text_printf(&t, "streamrec_embeddings_live{kind=\"item\"} %" PRId64 "\n", m->items);
	family(&t, "items", "gauge", "Items known to the state.");
	text_printf(&t, "streamrec_items %" PRId64 "\n", m->items);
	family(&t, "state_bytes", "gauge", "Size of the state store on disk.");
	text_printf(&t, "streamrec_state_bytes %" PRId64 "\n", m->state_bytes);
	family(&t, "state_block_cache_bytes", "gauge",
	       "RocksDB's block cache: its bound (state.block_cache_bytes) and what it holds.");
	text_printf(&t, "streamrec_state_block_cache_bytes{kind=\"capacity\"} %" PRId64 "\n",
		    m->block_cache_capacity);
	text_printf(&t, "streamrec_state_block_cache_bytes{kind=\"usage\"} %" PRId64 "\n",
		    m->block_cache_usage);
	family(&t, "state_written_rows_total", "counter",
	       "Rows committed to the state, by store family (user and item rows: every row an "
	       "event changed, once per commit).");
	for (size_t f = 0; f < METRICS_STATE_FAMILIES; f++)
		if (m->state_family_names[f] != NULL)
			text_printf(&t, "streamrec_state_written_rows_total{family=\"%s\"} %" PRIu64 "\n",
				    m->state_family_names[f], m->state_written_rows[f]);
	family(&t, "state_written_bytes_total", "counter",
	       "Bytes (keys and values) committed to the state, by store family, before RocksDB's "
	       "write-ahead log, compression and compactions.");
	for (size_t f = 0; f < METRICS_STATE_FAMILIES; f++)
		if (m->state_family_names[f] != NULL)
			text_printf(&t,
				    "streamrec_state_written_bytes_total{family=\"%s\"} %" PRIu64 "\n",
				    m->state_family_names[f], m->state_written_bytes[f]);
	family(&t, "commits_total", "counter", "State writes with their offset commits.");
	text_printf(&t, "streamrec_commits_total %" PRIu64 "\n", m->commits_total);
	family(&t, "commits_postponed_total", "counter",
	       "Commits put off because the previous state write was still going, or its "
	       "item vector rows were still being paid between events; the loop kept learning "
	       "and committed as soon as it was done.");
	text_printf(&t, "streamrec_commits_postponed_total %" PRIu64 "\n",
		    m->commits_postponed_total);
	family(&t, "commit_loop_seconds", "histogram",
	       "Wall time the event loop spent on one commit: collecting the rows changed since "
	       "the last one into the batch the state writer then writes on its own thread (the "
	       "item vector rows are owed instead, and paid a share after each event learned).");
	histogram_series(&t, "commit_loop_seconds", NULL, NULL, &m->commit_loop_seconds);
	family(&t, "commit_failures_total", "counter",
	       "State writes or offset commits that failed.");
	text_printf(&t, "streamrec_commit_failures_total %" PRIu64 "\n", m->commit_failures_total);
	family(&t, "catalogue_records_total", "counter",
	       "Records of the items topic read since the start (it is re-read from its start "
	       "at every start), applied or refused.");
	text_printf(&t, "streamrec_catalogue_records_total %" PRIu64 "\n",
		    m->catalogue_records_total);
	family(&t, "catalogue_loading", "gauge",
	       "1 while lists wait at the start for the catalogue to be read to its end (at most "
	       "60 s), else 0.");
	text_printf(&t, "streamrec_catalogue_loading %" PRId64 "\n", m->catalogue_loading);
	family(&t, "dlq_messages_total", "counter", "Messages sent to the dead-letter topic.");
	text_printf(&t, "streamrec_dlq_messages_total %" PRIu64 "\n", m->dlq_messages_total);
	family(&t, "changelog_records_total", "counter",
	       "User rows written to the changelog topic (scaleout.changelog_topic).");
	text_printf(&t, "streamrec_changelog_records_total %" PRIu64 "\n",
		    m->changelog_records_total);
	family(&t, "changelog_unplaced_total", "counter",
	       "Committed user rows and removed users' tombstones not written to the changelog: "
	       "the user's partition was unknown.");
	text_printf(&t, "streamrec_changelog_unplaced_total %" PRIu64 "\n",
		    m->changelog_unplaced_total);
	family(&t, "changelog_left_out_total", "counter",
	       "Committed user rows not written to the changelog: the user was evicted from the "
	       "user cache before an item its row names was removed (embedding life cycle); the "
	       "changelog keeps the user's row before it.");
	text_printf(&t, "streamrec_changelog_left_out_total %" PRIu64 "\n",
		    m->changelog_left_out_total);
	family(&t, "user_restores_total", "counter",
	       "Users read back from the state when met (evicted from the user cache, or not met "
	       "since the start); waited=\"yes\": their newest rows were in the commit being "
	       "written, so the event loop waited for it.");
	text_printf(&t, "streamrec_user_restores_total{waited=\"no\"} %" PRIu64 "\n",
		    m->user_restores_total - m->user_restores_waited_total);
	text_printf(&t, "streamrec_user_restores_total{waited=\"yes\"} %" PRIu64 "\n",
		    m->user_restores_waited_total);
	family(&t, "restores_total", "counter",
	       "Partitions whose users were restored from the changelog at assignment.");
	text_printf(&t, "streamrec_restores_total %" PRIu64 "\n", m->restores_total);
	family(&t, "restored_users_total", "counter", "Users restored from the changelog (once each, whatever its records and variants; users it holds a tombstone for are not).");
	text_printf(&t, "streamrec_restored_users_total %" PRIu64 "\n", m->restored_users_total);
	family(&t, "restore_seconds_total", "counter",
	       "Time spent reading and applying the changelog at assignments.");
	text_printf(&t, "streamrec_restore_seconds_total %.6f\n", m->restore_seconds_total);
	family(&t, "item_sync_published_total", "counter",
	       "Item changes published to the group (scaleout.item_updates_topic).");
	text_printf(&t, "streamrec_item_sync_published_total %" PRIu64 "\n",
		    m->item_sync_published_total);
	family(&t, "item_sync_folded_total", "counter",
	       "Other instances' item changes folded into this one's rows.");
	text_printf(&t, "streamrec_item_sync_folded_total %" PRIu64 "\n", m->item_sync_folded_total);
	family(&t, "item_sync_ignored_total", "counter",
	       "Item updates ignored: malformed, or of another dimension.");
	text_printf(&t, "streamrec_item_sync_ignored_total %" PRIu64 "\n",
		    m->item_sync_ignored_total);
	family(&t, "item_sync_staleness_seconds", "gauge",
	       "Age of the last item change folded in, when it was folded.");
	text_printf(&t, "streamrec_item_sync_staleness_seconds %.3f\n",
		    m->item_sync_staleness_seconds);
	family(&t, "content_vectors_total", "counter",
	       "Items' content vectors received, by outcome: placed (a new item started from "
	       "it), stored (kept for the content map), ignored (content.dim 0).");
	for (size_t o = 0; o < METRICS_CONTENT_OUTCOMES; o++)
		text_printf(&t, "streamrec_content_vectors_total{outcome=\"%s\"} %" PRIu64 "\n",
			    metrics_content_outcome_labels[o], m->content_vectors_total[o]);
	family(&t, "content_texts_unembedded_total", "counter",
	       "Item texts (title, description) and search queries that came without a content "
	       "vector and were not embedded: no text model configured, or it failed.");
	text_printf(&t, "streamrec_content_texts_unembedded_total %" PRIu64 "\n",
		    m->content_texts_unembedded_total);
	family(&t, "content_texts_embedded_total", "counter",
	       "Item texts and search queries turned into content vectors by the text model "
	       "(content.text_model).");
	text_printf(&t, "streamrec_content_texts_embedded_total %" PRIu64 "\n",
		    m->content_texts_embedded_total);
	family(&t, "text_embed_queue", "gauge",
	       "Item texts and search queries queued or being embedded by the text threads "
	       "(content.text_threads).");
	text_printf(&t, "streamrec_text_embed_queue %" PRId64 "\n", m->text_embed_queue);
	family(&t, "text_embed_seconds_total", "counter",
	       "Seconds the text threads spent embedding texts (summed over the threads).");
	text_printf(&t, "streamrec_text_embed_seconds_total %.6f\n", m->text_embed_seconds_total);
	family(&t, "text_embed_holds_total", "counter",
	       "Messages held, their partition paused and their offset unmarked, until the text "
	       "threads embedded their text; each is read again when its vector is ready.");
	text_printf(&t, "streamrec_text_embed_holds_total %" PRIu64 "\n",
		    m->text_embed_holds_total);
	family(&t, "search_events_total", "counter",
	       "Search events by outcome: applied (a variant's short-term intent moved), "
	       "not_applied (content map not solved yet, or the signal off), unembedded (text "
	       "only and no text model), ignored (content.dim 0).");
	for (size_t o = 0; o < METRICS_SEARCH_OUTCOMES; o++)
		text_printf(&t, "streamrec_search_events_total{outcome=\"%s\"} %" PRIu64 "\n",
			    metrics_search_outcome_labels[o], m->search_events_total[o]);
	family(&t, "assigned_partitions", "gauge", "Partitions this instance's consumer holds.");
	text_printf(&t, "streamrec_assigned_partitions %" PRId64 "\n", m->assigned_partitions);
	family(&t, "ready", "gauge", "1 when the daemon is ready to serve, else 0.");
	text_printf(&t, "streamrec_ready %d\n", m->ready ? 1 : 0);

	if (m->blas_kernel[0] != '\0') {
		family(&t, "blas_info", "gauge",
		       "The OpenBLAS kernel in use, the best the CPU runs, and how it was chosen.");
		text_printf(&t,
			    "streamrec_blas_info{kernel=\"%s\",cpu_best=\"%s\",chosen_by=\"%s\"} 1\n",
			    m->blas_kernel, m->blas_cpu_best, m->blas_chosen_by);
	}

	/* the family is always there; its one sample only while a model is loaded */
	family(&t, "text_model_info", "gauge",
	       "The text-embedding model in use (content.text_model): name, dimension, kernel; "
	       "no sample when off.");
	if (m->text_model_name[0] != '\0')
		text_printf(&t, "streamrec_text_model_info{name=\"%s\",dim=\"%u\",kernel=\"%s\"} 1\n",
			    m->text_model_name, m->text_model_dim, m->text_model_kernel);

	if (t.failed || !t.data) {
		free(t.data);
		snprintf(errstr, errstr_size, "metrics: render: out of memory");
		return -1;
	}
	*out = t.data;
	*len = t.len;
	return 0;
}
