#include "prequential_sharded.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "errstr.h"
#include "topk.h"

/* Folds every shard's item changes since the last exchange into the others. */
static int exchange(struct model **models, size_t shards, const uint64_t *item_hash,
		    uint32_t *items, float *deltas, size_t chunk, uint64_t *exchanged)
{
	for (size_t s = 0; s < shards; s++) {
		size_t n = model_share_param_count(models[s]), taken;
		while ((taken = model_share_take(models[s], items, deltas, chunk)) > 0)
			for (size_t k = 0; k < taken; k++)
				for (size_t o = 0; o < shards; o++) {
					if (o == s)
						continue;
					if (model_add_item(models[o], items[k], item_hash[items[k]]) != 0)
						return -1;
					model_share_fold(models[o], items[k], deltas + k * n);
					(*exchanged)++;
				}
	}
	return 0;
}

int prequential_sharded_run(const struct model_config *model_config,
			    const struct prequential_stream *stream,
			    const struct prequential_sharded_config *config,
			    struct prequential_sharded_result *result, char *errstr,
			    size_t errstr_size)
{
	enum { CHUNK = 1024 };
	size_t shards = config->shards, k = config->k ? config->k : 20;
	struct model **models = calloc(shards, sizeof *models);
	struct topk_config tc = {.max_batch = 1, .max_k = k, .threads = 1};
	struct topk *topk = topk_new(&tc, errstr, errstr_size);
	struct topk_result *list = malloc(k * sizeof *list);
	uint32_t *items = malloc(CHUNK * sizeof *items);
	float *deltas = malloc(CHUNK * (2 * model_config->dim + 1) * sizeof *deltas);
	uint64_t tested = 0, since_sync = 0;
	int rc = -1;

	memset(result, 0, sizeof *result);
	if (models == NULL || topk == NULL || list == NULL || items == NULL || deltas == NULL) {
		set_errstr(errstr, errstr_size, "out of memory for %zu shards", shards);
		goto out;
	}
	for (size_t s = 0; s < shards; s++) {
		struct model_config c = *model_config;
		c.retrieval = MODEL_RETRIEVAL_EXACT;
		models[s] = model_new(&c, errstr, errstr_size);
		if (models[s] == NULL || (shards > 1 && model_share_enable(models[s]) != 0))
			goto out;
	}
	for (size_t e = 0; e < stream->count; e++) {
		uint32_t user = stream->user[e], item = stream->item[e];
		enum event_type type = (enum event_type)stream->type[e];
		struct model *m = models[stream->user_hash[user] % shards];
		bool positive = type != EVENT_VIEW && model_config->event_weight[type] > 0;
		if (positive && e >= config->warmup && !model_user_excludes(m, user, item) &&
		    tested++ % (config->test_every ? config->test_every : 1) == 0) {
			size_t count = 0;
			if (model_recommend(m, topk, &user, 1, k, NULL, list, &count, errstr,
					    errstr_size) != 0)
				goto out;
			result->tests++;
			for (size_t r = 0; r < count; r++)
				if (list[r].item == item) {
					result->hits++;
					break;
				}
		}
		struct model_event ev = {.user = user,
					 .item = item,
					 .type = type,
					 .ts_ms = stream->ts_ms[e],
					 .user_hash = stream->user_hash[user],
					 .item_hash = stream->item_hash[item]};
		if (model_learn(m, &ev, errstr, errstr_size) != 0)
			goto out;
		if (shards > 1 && config->sync_every > 0 && ++since_sync >= config->sync_every) {
			since_sync = 0;
			if (exchange(models, shards, stream->item_hash, items, deltas, CHUNK,
				     &result->exchanged) != 0) {
				set_errstr(errstr, errstr_size, "out of memory exchanging items");
				goto out;
			}
		}
	}
	result->hit_rate = result->tests ? (double)result->hits / (double)result->tests : 0;
	rc = 0;
out:
	for (size_t s = 0; models != NULL && s < shards; s++)
		model_free(models[s]);
	free(models);
	topk_free(topk);
	free(list);
	free(items);
	free(deltas);
	return rc;
}
