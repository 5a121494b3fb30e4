#include "prequential.h"

#include "clock.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "topk.h"

struct tally {
	uint64_t tests, hits;
	double ndcg, rr;
	uint8_t *listed; /* per item: ever recommended */
	size_t listed_count;
};

static void tally_list(struct tally *t, const uint32_t *items, size_t n, uint32_t target)
{
	t->tests++;
	for (size_t r = 0; r < n; r++) {
		if (!t->listed[items[r]]) {
			t->listed[items[r]] = 1;
			t->listed_count++;
		}
		if (items[r] == target) {
			t->hits++;
			t->ndcg += 1.0 / log2((double)r + 2.0);
			t->rr += 1.0 / ((double)r + 1.0);
		}
	}
}

static void tally_scores(const struct tally *t, size_t item_total, struct prequential_scores *out)
{
	double n = t->tests ? (double)t->tests : 1.0;
	out->tests = t->tests;
	out->hit_rate = (double)t->hits / n;
	out->ndcg = t->ndcg / n;
	out->mrr = t->rr / n;
	out->coverage = item_total ? (double)t->listed_count / (double)item_total : 0;
}

/* What the side-by-side run adds up across test points. */
struct both_totals {
	double exact_s, index_s;
	double recall_sum;
	uint64_t recall_count;
};

/* Ranks user's list with both engines, timing each, and adds the index
 * list's share of the exact list to the totals. */
static int rank_both(struct model *model, struct topk *topk, uint32_t user, size_t k,
		     struct topk_result *exact, size_t *exact_n, struct topk_result *index,
		     size_t *index_n, struct both_totals *totals, char *errstr, size_t errstr_size)
{
	double t0 = clock_monotonic_s(), t1, t2;
	if (model_recommend_with(model, topk, MODEL_RETRIEVAL_EXACT, &user, 1, k, NULL, exact,
				 exact_n, errstr, errstr_size) != 0)
		return -1;
	t1 = clock_monotonic_s();
	if (model_recommend_with(model, topk, MODEL_RETRIEVAL_INDEX, &user, 1, k, NULL, index,
				 index_n, errstr, errstr_size) != 0)
		return -1;
	t2 = clock_monotonic_s();
	totals->exact_s += t1 - t0;
	totals->index_s += t2 - t1;
	if (*exact_n > 0) {
		size_t found = 0;
		for (size_t a = 0; a < *exact_n; a++)
			for (size_t b = 0; b < *index_n; b++)
				if (index[b].item == exact[a].item) {
					found++;
					break;
				}
		totals->recall_sum += (double)found / (double)*exact_n;
		totals->recall_count++;
	}
	return 0;
}

int prequential_run(struct model *model, struct topk *topk, const struct prequential_stream *stream,
		    const struct prequential_config *config, struct prequential_result *result,
		    char *errstr, size_t errstr_size)
{
	const struct model_config *mc = model_config(model);
	size_t k = config->k ? config->k : 20;
	uint64_t every = config->test_every ? config->test_every : 1, positives = 0;
	struct tally ours = {0}, popular = {0}, indexed = {0};
	struct both_totals both = {0};
	struct topk_result *list = malloc(k * sizeof *list);
	struct topk_result *index_list = malloc(k * sizeof *index_list);
	uint32_t *items = malloc(k * sizeof *items);
	int rc = -1;
	double start = clock_monotonic_s();

	memset(result, 0, sizeof *result);
	ours.listed = calloc(stream->item_total + 1, 1);
	popular.listed = calloc(stream->item_total + 1, 1);
	indexed.listed = calloc(stream->item_total + 1, 1);
	if (list == NULL || index_list == NULL || items == NULL || ours.listed == NULL ||
	    popular.listed == NULL || indexed.listed == NULL) {
		snprintf(errstr, errstr_size, "out of memory for evaluation");
		goto out_free;
	}
	for (size_t e = 0; e < stream->count; e++) {
		uint32_t user = stream->user[e], item = stream->item[e];
		struct model_event event = {.user = user,
					    .item = item,
					    .user_hash = stream->user_hash[user],
					    .item_hash = stream->item_hash[item],
					    .type = (enum event_type)stream->type[e],
					    .ts_ms = stream->ts_ms[e]};
		if (item >= stream->item_total) {
			snprintf(errstr, errstr_size, "event %zu: item %u beyond catalogue of %zu",
				 e, item, stream->item_total);
			goto out_free;
		}
		bool test = e >= config->warmup && stream->type[e] < EVENT_TYPE_COUNT &&
			    mc->event_weight[stream->type[e]] > 0 && positives++ % every == 0;
		uint8_t flags = 0;
		if (test) {
			bool excluded = model_user_excludes(model, user, item);
			if (excluded) {
				result->skipped_excluded++;
				flags |= PREQUENTIAL_SKIPPED_EXCLUDED;
			} else {
				flags |= PREQUENTIAL_TESTED;
				size_t n;
				if (config->both_engines) {
					size_t index_n;
					if (rank_both(model, topk, user, k, list, &n, index_list,
						      &index_n, &both, errstr, errstr_size) != 0)
						goto out_free;
					for (size_t r = 0; r < index_n; r++)
						items[r] = index_list[r].item;
					tally_list(&indexed, items, index_n, item);
				} else if (model_recommend(model, topk, &user, 1, k, NULL, list, &n,
							   errstr, errstr_size) != 0)
					goto out_free;
				for (size_t r = 0; r < n; r++)
					items[r] = list[r].item;
				tally_list(&ours, items, n, item);
				n = model_popular(model, user, k, NULL, items);
				tally_list(&popular, items, n, item);
			}
		}
		if (model_learn(model, &event, errstr, errstr_size) != 0)
			goto out_free;
		if (config->event_flags != NULL) {
			if (model_user_excludes(model, user, item))
				flags |= PREQUENTIAL_EXCLUDES_ITEM;
			config->event_flags[e] = flags;
		}
	}
	result->events = stream->count;
	tally_scores(&ours, stream->item_total, &result->model);
	tally_scores(&popular, stream->item_total, &result->popularity);
	result->seconds = clock_monotonic_s() - start;
	result->events_per_s = result->seconds > 0 ? (double)stream->count / result->seconds : 0;
	if (config->both_engines) {
		double exact_alone = result->seconds - both.index_s;
		double index_alone = result->seconds - both.exact_s;
		tally_scores(&indexed, stream->item_total, &result->index);
		result->index_recall =
		    both.recall_count ? both.recall_sum / (double)both.recall_count : 1.0;
		result->exact_rank_seconds = both.exact_s;
		result->index_rank_seconds = both.index_s;
		result->exact_events_per_s =
		    exact_alone > 0 ? (double)stream->count / exact_alone : 0;
		result->index_events_per_s =
		    index_alone > 0 ? (double)stream->count / index_alone : 0;
	}
	rc = 0;
out_free:
	free(list);
	free(index_list);
	free(items);
	free(indexed.listed);
	free(ours.listed);
	free(popular.listed);
	return rc;
}
