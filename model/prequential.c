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

int prequential_run(struct model *model, struct topk *topk, const struct prequential_stream *stream,
		    const struct prequential_config *config, struct prequential_result *result,
		    char *errstr, size_t errstr_size)
{
	const struct model_config *mc = model_config(model);
	size_t k = config->k ? config->k : 20;
	uint64_t every = config->test_every ? config->test_every : 1, positives = 0;
	struct tally ours = {0}, popular = {0};
	struct topk_result *list = malloc(k * sizeof *list);
	uint32_t *items = malloc(k * sizeof *items);
	int rc = -1;
	double start = clock_monotonic_s();

	memset(result, 0, sizeof *result);
	ours.listed = calloc(stream->item_total + 1, 1);
	popular.listed = calloc(stream->item_total + 1, 1);
	if (list == NULL || items == NULL || ours.listed == NULL || popular.listed == NULL) {
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
				if (model_recommend(model, topk, &user, 1, k, NULL, list, &n,
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
	rc = 0;
out_free:
	free(list);
	free(items);
	free(ours.listed);
	free(popular.listed);
	return rc;
}
