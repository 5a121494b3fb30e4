#include "errstr.h"
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "clock.h"
#include "content.h"
#include "covis.h"
#include "ivf.h"
#include "popularity.h"
#include "portable.h"
#include "radix.h"
#include "rng.h"
#include "sorted.h"
#include "sampler.h"
#include "sgd.h"
#include "topk.h"

#define ADAGRAD_EPS       1e-8f
#define MAX_NEGATIVES     64
#define MAX_REPLAY_STEPS  16
#define UNCOUNTED_PENALTY -1e4f /* correction column of an item no one acted on */
/* Co-visitation entries one query may gather (recent_items x covis_neighbours). */
#define MAX_SPARSE (1 << 22)
/* The trending signal's floor: log of a decayed count never goes below this. */
#define TREND_LOG_FLOOR -700.0

/* Queries per ivf_search(); a larger model_recommend() batch is cut up.
 * As large as refresh.batch may be: the more queries a search holds, the
 * more of them share each probed cell's rows (bench_ivf at 1M items, 16
 * cells probed: 5.7k lists a CPU-second in searches of 256, 9.3k in
 * searches of 1024, 11.0k in searches of 4096). Its scratch is about
 * 1024 × (nlist + max_k) words a searcher. */
#define INDEX_MAX_BATCH 1024
/* The index is built for lists of at least this k (a larger k rebuilds it). */
#define INDEX_MIN_K 100
/* Retrain only after 1/INDEX_RETRAIN_CHURN of the rows changed since the last training. */
#define INDEX_RETRAIN_CHURN 4

/* An item's scalars, together so that touching an item costs one cache miss. */
struct item_scalars {
	float bias;
	float correction; /* alpha * weight * log(count), kept as the count changes */
	float q_accum, y_accum, bias_accum; /* row-wise Adagrad */
};

/* A growable sorted set of item indices (a user's exclusions). */
struct item_set {
	uint32_t *items;
	uint32_t count, capacity;
};

/* A query's co-visitation sum of one neighbour: a slot of model_query()'s
 * open-addressing table (item COVIS_NO_ITEM: free). */
struct covis_sum {
	uint32_t item;
	float sum;
	float best_weight; /* the largest weighted count towards it */
	uint32_t best;     /* the recent item behind best_weight */
};

#define COVIS_NO_ITEM UINT32_MAX

struct model {
	struct model_config config;
	size_t dim, stride; /* item matrix row: dim floats of q, then the bias column */
	uint64_t step;
	uint64_t random_state; /* the sampler's draws */

	/* users */
	size_t users, user_capacity;
	/* One record per user, so that an event touches one place: p (dim
	 * floats), its Adagrad accumulator, the recent-items ring's count and
	 * head, then the ring (L items). user_bytes apart, cache-line aligned. */
	unsigned char *user_rows;
	size_t user_bytes;
	uint8_t *user_ready; /* initialised from its hash */
	struct item_set *exclude;

	/* items */
	size_t items, item_capacity;
	float *matrix;               /* items x stride: [q_i, b_i + correction] */
	float *y;                    /* items x dim */
	struct item_scalars *scalar; /* items: one cache line fetch for all of them */
	uint8_t *item_ready;

	struct sampler *sampler;
	struct covis *covis;
	struct popularity *popularity;

	/* rows changed since the last model_clear_dirty() */
	uint8_t *user_dirty, *item_dirty;
	uint32_t *dirty_users, *dirty_items;
	size_t dirty_user_count, dirty_item_count;
	uint8_t all_items_dirty; /* parts a rescale changed in every learned item's rows */

	/* Vector rows a commit owes (model_owe_item_vector()): item_owed marks
	 * them until paid, owed_items lists them in the order owed, from
	 * owed_next on; owed_left counts the marks. */
	uint8_t *item_owed;
	uint32_t *owed_items;
	size_t owed_listed, owed_next, owed_left;
	model_pay_fn pay;
	void *pay_ctx;

	/* The lists' view of the item side (model_view()), made on first use.
	 * Rows of items below view_items whose matrix row changed since the
	 * view last saw them are listed once in moved_items (item_moved marks
	 * them); items from view_items on are new to it at the next sync. */
	struct model_view *view;
	size_t view_items;
	uint8_t *item_moved;
	uint32_t *moved_items;
	size_t moved_count;
	uint32_t *trending_candidates; /* config.index_trending, cached */
	size_t trending_candidate_count;
	uint64_t trending_step;
	bool trending_valid;
	struct model_batch batch; /* model_recommend_with()'s */

	/* Sharing item parameters between instances (model_share_*), when
	 * enabled: items changed since the last take, listed once, and each
	 * item's parameters as of its last take or fold (the base of a delta). */
	bool sharing;
	uint8_t *shared_flag;
	uint32_t *shared_items;
	size_t shared_count;
	float *shared_base; /* items x (2 dim + 1) */

	/* Content vectors (model_item_content()), when config.content_dim > 0:
	 * the map, each item's content vector until it is folded (NULL after),
	 * its prior (items x dim) and flags (CONTENT_*). */
	struct content_map *content_map;
	float **item_content;
	float *item_prior;
	uint8_t *item_content_flags;
	uint64_t content_placed;
	size_t content_waiting;
	bool content_dirty;
	/* Searches (model_search()), when content is on: per user W^T e of the
	 * last search (users x dim) and the positive events left before it has
	 * faded (0: none). */
	float *user_search;
	uint16_t *user_search_left;

	/* scratch for one event */
	float *h, *grad_h, *grad_row;
	struct sgd_target targets[MAX_NEGATIVES + 1];
	uint32_t target_items[MAX_NEGATIVES + 1];
	float score_grad[MAX_NEGATIVES + 1];
	/* a query's co-visitation sums: an open-addressing table keyed by
	 * item, every slot free between queries, covis_sum_capacity slots (a
	 * power of two); a query uses the first 2^k of them, twice its
	 * neighbours at least, so that its sums stay in the core's own cache
	 * where one per item (16 MB at 1M items) was met at random */
	struct covis_sum *covis_sum;
	size_t covis_sum_capacity;
	uint32_t *covis_slots; /* the slots a query took, up to recent_items x covis_neighbours */
	uint32_t *sort_scratch; /* radix_sort_u32()'s, for a query's co-visitation items */
	size_t sort_scratch_capacity;
	/* model_query()'s scratch: a query's co-visitation items, up to
	 * recent_items x covis_neighbours, and their sums to select the
	 * strongest (config.covis_candidates of them, when that bounds them:
	 * covis_keep_capacity, and the sparse capacity a query needs) */
	uint32_t *covis_items;
	float *covis_keep;
	uint32_t *covis_above; /* keep_strongest()'s: the slots at or above its pivot */
	float *covis_select;   /* kth_largest()'s scratch, as many as covis_keep */
	size_t covis_keep_capacity;
};

static void view_free(struct model_view *view);
static unsigned covis_table(struct model *m, size_t bound);
static void training_drop(struct model_view *view);

/* item_content_flags bits */
#define CONTENT_PRIOR  1u /* item_prior holds W^T c: the prior applies while rare */
#define CONTENT_FOLDED 2u /* folded into the map (its content vector dropped) */
#define CONTENT_PLACED 4u /* placed from content: ranks before its first positive */
/* the prior applies while an item has fewer than this many times content_min_events */
#define CONTENT_PRIOR_HORIZON 10

void model_config_default(struct model_config *config)
{
	static const float weights[EVENT_TYPE_COUNT] = {0.0f, 1.0f, 1.5f, 3.0f, -0.5f, 2.5f, 5.0f};
	memset(config, 0, sizeof *config);
	config->dim = 32;
	config->optimizer = MODEL_ADAGRAD;
	config->learning_rate = 0.14f;
	config->l2 = 1e-5f;
	config->negatives = 4;
	config->replay_steps = 3;
	config->replay_negatives = 2;
	config->replay_weight = 0.7f;
	memcpy(config->event_weight, weights, sizeof weights);
	config->recent_items = 5;
	config->intent_decay = 0.9f;
	config->covis_weight = 4.0f;
	config->covis_neighbours = 1024;
	config->covis_candidates = 256;
	config->covis_window = 4;
	config->covis_recent_decay = 0.7f;
	config->covis_both_directions = true;
	config->covis_weighted = true;
	config->covis_half_life_events = 1e6;
	config->sampler_exponent = 0.75f;
	config->correction_weight = 1.0f;
	config->trending_half_life_ms = 86400e3;
	config->trending_weight = 0.35f;
	config->init_std = 0.1f;
	config->use_taste = true;
	config->use_bias = true;
	config->use_trending = true;
	config->use_intent = true;
	config->use_covis = true;
	config->use_correction = true;
	config->learn_embeddings = true;
	config->exclusion = MODEL_EXCLUDE_BOUGHT;
	config->seed = 1;
	config->retrieval = MODEL_RETRIEVAL_EXACT;
	config->index_nprobe = 0;
	config->index_recall_target = 0.97;
	config->index_nlist = 0;
	config->index_trending = 50;
	config->content_dim = 0;
	config->content_min_events = 10;
	config->content_ridge = 1.0;
	config->content_refit_items = 32;
	config->content_prior_weight = 0.05f;
	config->use_content = true;
	config->search_weight = 10.0f;
	config->use_search = true;
}

int model_config_check(const struct model_config *c, char *errstr, size_t errstr_size)
{
	if (c->dim < 4 || c->dim > 1024) {
		set_errstr(errstr, errstr_size, "dim: must be between 4 and 1024, got %zu", c->dim);
		return -1;
	}
	if (!(c->learning_rate > 0 && c->learning_rate <= 10)) {
		set_errstr(errstr, errstr_size, "learning_rate: must be in (0, 10], got %g",
			   (double)c->learning_rate);
		return -1;
	}
	if (!(c->l2 >= 0 && c->l2 < 1)) {
		set_errstr(errstr, errstr_size, "l2: must be in [0, 1), got %g", (double)c->l2);
		return -1;
	}
	if (c->replay_steps > MAX_REPLAY_STEPS) {
		set_errstr(errstr, errstr_size, "replay_steps: must be between 0 and %d, got %u",
			   MAX_REPLAY_STEPS, c->replay_steps);
		return -1;
	}
	if (c->replay_negatives > MAX_NEGATIVES) {
		set_errstr(errstr, errstr_size,
			   "replay_negatives: must be between 0 and %d, got %u", MAX_NEGATIVES,
			   c->replay_negatives);
		return -1;
	}
	if (!(c->replay_weight > 0 && c->replay_weight <= 10)) {
		set_errstr(errstr, errstr_size, "replay_weight: must be in (0, 10], got %g",
			   (double)c->replay_weight);
		return -1;
	}
	if (c->negatives > MAX_NEGATIVES) {
		set_errstr(errstr, errstr_size, "negatives: must be between 0 and %d, got %u",
			   MAX_NEGATIVES, c->negatives);
		return -1;
	}
	for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
		if (!isfinite(c->event_weight[t]) || fabsf(c->event_weight[t]) > 100) {
			set_errstr(errstr, errstr_size,
				   "weight.%s: must be between -100 and 100, got %g",
				   event_type_key((enum event_type)t), (double)c->event_weight[t]);
			return -1;
		}
	}
	if (!(c->intent_decay > 0 && c->intent_decay <= 1)) {
		set_errstr(errstr, errstr_size, "intent_decay: must be in (0, 1], got %g",
			   (double)c->intent_decay);
		return -1;
	}
	if (c->recent_items < 1 || c->recent_items > 1000) {
		set_errstr(errstr, errstr_size, "recent_items: must be between 1 and 1000, got %u",
			   c->recent_items);
		return -1;
	}
	if (!(c->covis_weight >= 0 && c->covis_weight <= 100)) {
		set_errstr(errstr, errstr_size, "covis_weight: must be between 0 and 100, got %g",
			   (double)c->covis_weight);
		return -1;
	}
	if (c->covis_neighbours < 1 || c->covis_neighbours > COVIS_MAX_BOUND) {
		set_errstr(errstr, errstr_size,
			   "covis_neighbours: must be between 1 and %d, got %u", COVIS_MAX_BOUND,
			   c->covis_neighbours);
		return -1;
	}
	if ((uint64_t)c->recent_items * c->covis_neighbours > MAX_SPARSE) {
		set_errstr(errstr, errstr_size,
			   "covis_neighbours: recent_items (%u) times covis_neighbours (%u) must "
			   "be at most %d",
			   c->recent_items, c->covis_neighbours, MAX_SPARSE);
		return -1;
	}
	if (c->covis_window < 1 || c->covis_window > c->recent_items) {
		set_errstr(errstr, errstr_size,
			   "covis_window: must be between 1 and recent_items (%u), got %u",
			   c->recent_items, c->covis_window);
		return -1;
	}
	if (!(c->covis_recent_decay > 0 && c->covis_recent_decay <= 1)) {
		set_errstr(errstr, errstr_size, "covis_recent_decay: must be in (0, 1], got %g",
			   (double)c->covis_recent_decay);
		return -1;
	}
	if (!(c->covis_half_life_events >= 0 && c->covis_half_life_events < 1e300)) {
		set_errstr(errstr, errstr_size,
			   "covis_half_life_events: must be >= 0 (0: no decay), got %g",
			   c->covis_half_life_events);
		return -1;
	}
	if (!(c->sampler_exponent >= 0 && c->sampler_exponent <= 1)) {
		set_errstr(errstr, errstr_size, "sampler_exponent: must be between 0 and 1, got %g",
			   (double)c->sampler_exponent);
		return -1;
	}
	if (!(c->correction_weight >= 0 && c->correction_weight <= 10)) {
		set_errstr(errstr, errstr_size,
			   "correction_weight: must be between 0 and 10, got %g",
			   (double)c->correction_weight);
		return -1;
	}
	if (!(c->trending_half_life_ms > 0)) {
		set_errstr(errstr, errstr_size, "trending_half_life_ms: must be > 0, got %g",
			   c->trending_half_life_ms);
		return -1;
	}
	if (!(c->trending_weight >= 0 && c->trending_weight <= 100)) {
		set_errstr(errstr, errstr_size, "trending_weight: must be between 0 and 100, got %g",
			   (double)c->trending_weight);
		return -1;
	}
	if (!(c->init_std > 0 && c->init_std <= 1)) {
		set_errstr(errstr, errstr_size, "init_std: must be in (0, 1], got %g",
			   (double)c->init_std);
		return -1;
	}
	if ((unsigned)c->optimizer > MODEL_SGD ||
	    (unsigned)c->exclusion > MODEL_EXCLUDE_INTERACTED) {
		set_errstr(errstr, errstr_size, "optimizer or exclusion out of range");
		return -1;
	}
	if ((unsigned)c->retrieval > MODEL_RETRIEVAL_INDEX) {
		set_errstr(errstr, errstr_size, "retrieval: must be exact or index, got %d",
			   (int)c->retrieval);
		return -1;
	}
	if (c->index_nprobe > (size_t)1 << 20) {
		set_errstr(errstr, errstr_size,
			   "index_nprobe: must be between 0 (automatic) and %zu, got %zu",
			   (size_t)1 << 20, c->index_nprobe);
		return -1;
	}
	if (!(c->index_recall_target >= 0 && c->index_recall_target <= 1)) {
		set_errstr(errstr, errstr_size,
			   "index_recall_target: must be between 0 (off) and 1, got %g",
			   c->index_recall_target);
		return -1;
	}
	if (c->index_nlist > (size_t)1 << 20) {
		set_errstr(errstr, errstr_size,
			   "index_nlist: must be between 0 (automatic) and %zu, got %zu",
			   (size_t)1 << 20, c->index_nlist);
		return -1;
	}
	if (c->content_dim > CONTENT_MAX_DIM) {
		set_errstr(errstr, errstr_size, "content_dim: must be between 0 (off) and %d, got %zu",
			   CONTENT_MAX_DIM, c->content_dim);
		return -1;
	}
	if (c->content_min_events < 1 || c->content_min_events > 1000000) {
		set_errstr(errstr, errstr_size,
			   "content_min_events: must be between 1 and 1000000, got %u",
			   c->content_min_events);
		return -1;
	}
	if (!(c->content_ridge > 0 && c->content_ridge <= 1e6)) {
		set_errstr(errstr, errstr_size, "content_ridge: must be in (0, 1e6], got %g",
			   c->content_ridge);
		return -1;
	}
	if (c->content_refit_items < 1 || c->content_refit_items > 1000000) {
		set_errstr(errstr, errstr_size,
			   "content_refit_items: must be between 1 and 1000000, got %u",
			   c->content_refit_items);
		return -1;
	}
	if (!(c->content_prior_weight >= 0 && c->content_prior_weight <= 10)) {
		set_errstr(errstr, errstr_size,
			   "content_prior_weight: must be between 0 and 10, got %g",
			   (double)c->content_prior_weight);
		return -1;
	}
	if (!(c->search_weight >= 0 && c->search_weight <= 100)) {
		set_errstr(errstr, errstr_size, "search_weight: must be between 0 and 100, got %g",
			   (double)c->search_weight);
		return -1;
	}
	if (c->covis_candidates > (1u << 22)) {
		set_errstr(errstr, errstr_size,
			   "covis_candidates: must be between 0 (every one) and %u, got %u",
			   1u << 22, c->covis_candidates);
		return -1;
	}
	if (c->index_trending > 10000) {
		set_errstr(errstr, errstr_size,
			   "index_trending: must be between 0 and 10000, got %zu",
			   c->index_trending);
		return -1;
	}
	return 0;
}

struct model *model_new(const struct model_config *config, char *errstr, size_t errstr_size)
{
	struct model *m;
	if (model_config_check(config, errstr, errstr_size) != 0)
		return NULL;
	m = calloc(1, sizeof *m);
	if (m == NULL)
		goto out_nomem;
	m->config = *config;
	m->dim = config->dim;
	m->stride = config->dim + 1;
	m->user_bytes = ((config->dim + 2 + config->recent_items) * 4 + 63) / 64 * 64;
	m->random_state = config->seed ^ 0x5EED5A3D1E5ULL;
	m->sampler = sampler_new(config->sampler_exponent);
	m->covis = covis_new(config->covis_neighbours, config->covis_half_life_events);
	m->popularity = popularity_new(config->trending_half_life_ms);
	m->h = calloc(m->dim, sizeof *m->h);
	m->grad_h = calloc(m->dim, sizeof *m->grad_h);
	m->grad_row = calloc(m->dim, sizeof *m->grad_row);
	if (m->sampler == NULL || m->covis == NULL || m->popularity == NULL || m->h == NULL ||
	    m->grad_h == NULL || m->grad_row == NULL)
		goto out_free;
	size_t gathered = (size_t)config->recent_items * config->covis_neighbours;
	/* one more: model_query() writes the next place before it knows
	 * whether the item is new */
	m->covis_items = malloc((gathered + 1) * sizeof *m->covis_items);
	m->covis_slots = malloc((gathered + 1) * sizeof *m->covis_slots);
	if (m->covis_items == NULL || m->covis_slots == NULL)
		goto out_free;
	covis_table(m, 0); /* the least table, so that a query always has one */
	if (m->covis_sum == NULL)
		goto out_free;
	if (config->covis_candidates > 0 && config->covis_candidates < gathered) {
		m->covis_keep_capacity = config->covis_candidates;
		m->covis_keep = malloc(gathered * sizeof *m->covis_keep);
		m->covis_above = malloc(gathered * sizeof *m->covis_above);
		m->covis_select = malloc(gathered * sizeof *m->covis_select);
		if (m->covis_keep == NULL || m->covis_above == NULL || m->covis_select == NULL)
			goto out_free;
	}
	if (config->content_dim > 0) {
		m->content_map =
		    content_map_new(config->content_dim, config->dim, config->content_ridge);
		if (m->content_map == NULL)
			goto out_free;
	}
	return m;

out_free:
	model_free(m);
out_nomem:
	set_errstr(errstr, errstr_size, "out of memory");
	return NULL;
}

void model_free(struct model *model)
{
	if (model == NULL)
		return;
	for (size_t u = 0; u < model->users; u++)
		free(model->exclude[u].items);
	free(model->exclude);
	free(model->user_rows);
	free(model->user_dirty);
	free(model->item_dirty);
	free(model->dirty_users);
	free(model->dirty_items);
	free(model->user_ready);
	free(model->matrix);
	free(model->y);
	free(model->scalar);
	free(model->item_ready);
	sampler_free(model->sampler);
	covis_free(model->covis);
	popularity_free(model->popularity);
	free(model->h);
	free(model->grad_h);
	free(model->grad_row);
	free(model->covis_sum);
	view_free(model->view);
	model_batch_free(&model->batch);
	free(model->sort_scratch);
	free(model->covis_keep);
	free(model->covis_above);
	free(model->covis_select);
	free(model->covis_items);
	free(model->covis_slots);
	free(model->item_moved);
	free(model->moved_items);
	free(model->item_owed);
	free(model->owed_items);
	free(model->trending_candidates);
	free(model->shared_flag);
	free(model->shared_items);
	free(model->shared_base);
	for (size_t i = 0; model->item_content != NULL && i < model->items; i++)
		free(model->item_content[i]);
	free(model->item_content);
	free(model->item_prior);
	free(model->item_content_flags);
	free(model->user_search);
	free(model->user_search_left);
	content_map_free(model->content_map);
	free(model);
}

const struct model_config *model_config(const struct model *model)
{
	return &model->config;
}

float model_covis_weight(const struct model *model)
{
	return model->config.covis_weight;
}

size_t model_covis_longest(const struct model *model)
{
	return covis_longest(model->covis);
}

uint64_t model_step(const struct model *model)
{
	return model->step;
}

size_t model_user_count(const struct model *model)
{
	return model->users;
}

size_t model_item_count(const struct model *model)
{
	return model->items;
}

size_t model_sparse_capacity(const struct model *model)
{
	size_t all = (size_t)model->config.recent_items * model->config.covis_neighbours;
	return model->covis_keep_capacity > 0 ? model->covis_keep_capacity : all;
}

/* ---- growth and initialisation ---------------------------------------------- */

/* Grows *array (count elements of size) to capacity elements, zero-filling. */
static int grow_array(void **array, size_t count, size_t capacity, size_t size)
{
	void *grown = realloc(*array, capacity * size);
	if (grown == NULL)
		return -1;
	memset((char *)grown + count * size, 0, (capacity - count) * size);
	*array = grown;
	return 0;
}

static float *user_p(const struct model *m, uint32_t user)
{
	return (float *)(void *)(m->user_rows + (size_t)user * m->user_bytes);
}

static float *user_accum(const struct model *m, uint32_t user)
{
	return user_p(m, user) + m->dim;
}

/* [0] items in the ring, [1] next slot */
static uint16_t *user_ring_state(const struct model *m, uint32_t user)
{
	return (uint16_t *)(void *)(user_p(m, user) + m->dim + 1);
}

static uint32_t *user_ring(const struct model *m, uint32_t user)
{
	return (uint32_t *)(void *)(user_p(m, user) + m->dim + 2);
}

static int ensure_users(struct model *m, size_t need)
{
	size_t cap = m->user_capacity ? m->user_capacity : 1024, old = m->user_capacity;
	size_t L = m->config.recent_items;
	if (need <= m->user_capacity)
		return 0;
	while (cap < need)
		cap *= 2;
	(void)L;
	if (grow_array((void **)&m->user_rows, old * m->user_bytes, cap * m->user_bytes, 1) ||
	    grow_array((void **)&m->user_dirty, old, cap, 1) ||
	    grow_array((void **)&m->dirty_users, old, cap, sizeof(uint32_t)) ||
	    grow_array((void **)&m->user_ready, old, cap, sizeof(uint8_t)) ||
	    grow_array((void **)&m->exclude, old, cap, sizeof(struct item_set)))
		return -1;
	if (m->content_map != NULL &&
	    (grow_array((void **)&m->user_search, old * m->dim, cap * m->dim, sizeof(float)) ||
	     grow_array((void **)&m->user_search_left, old, cap, sizeof(uint16_t))))
		return -1;
	m->user_capacity = cap;
	return 0;
}

static int ensure_items(struct model *m, size_t need)
{
	size_t cap = m->item_capacity ? m->item_capacity : 1024, old = m->item_capacity;
	if (need <= m->item_capacity)
		return 0;
	while (cap < need)
		cap *= 2;
	if (grow_array((void **)&m->matrix, old * m->stride, cap * m->stride, sizeof(float)) ||
	    grow_array((void **)&m->y, old * m->dim, cap * m->dim, sizeof(float)) ||
	    grow_array((void **)&m->scalar, old, cap, sizeof(struct item_scalars)) ||
	    grow_array((void **)&m->item_dirty, old, cap, 1) ||
	    grow_array((void **)&m->dirty_items, old, cap, sizeof(uint32_t)) ||
	    grow_array((void **)&m->item_ready, old, cap, sizeof(uint8_t)) ||
	    grow_array((void **)&m->item_moved, old, cap, 1) ||
	    grow_array((void **)&m->moved_items, old, cap, sizeof(uint32_t)) ||
	    grow_array((void **)&m->item_owed, old, cap, 1) ||
	    grow_array((void **)&m->owed_items, old, cap, sizeof(uint32_t)))
		return -1;
	if (m->content_map != NULL &&
	    (grow_array((void **)&m->item_content, old, cap, sizeof(float *)) ||
	     grow_array((void **)&m->item_prior, old * m->dim, cap * m->dim, sizeof(float)) ||
	     grow_array((void **)&m->item_content_flags, old, cap, 1)))
		return -1;
	if (m->sharing && (grow_array((void **)&m->shared_flag, old, cap, 1) ||
			   grow_array((void **)&m->shared_items, old, cap, sizeof(uint32_t)) ||
			   grow_array((void **)&m->shared_base, old * (2 * m->dim + 1),
				      cap * (2 * m->dim + 1), sizeof(float))))
		return -1;
	m->item_capacity = cap;
	return 0;
}

/* Fills v with uniform draws of standard deviation std (no transcendental
 * functions: a million new users cost nothing) from a generator seeded by
 * (hash, seed, role). */
static void init_vector(float *v, size_t dim, uint64_t hash, uint64_t seed, uint64_t role,
			float std)
{
	uint64_t state = hash ^ (seed * 0x9E3779B97F4A7C15ULL) ^ role;
	float half_width = std * 1.7320508f; /* sqrt(3): uniform(-a, a) has std a/sqrt(3) */
	for (size_t k = 0; k < dim; k++)
		v[k] = (float)(sampler_unit(&state) * 2.0 - 1.0) * half_width;
}

/* Every write to an item's vector row (q and its bias column, y, the
 * scalars) comes after this: a row a commit still owes is paid first, as it
 * was when owed (model_owe_item_vector()). */
static inline void before_vector_write(struct model *m, uint32_t item)
{
	if (m->owed_left > 0 && m->item_owed[item]) {
		unsigned parts = m->item_owed[item];
		m->item_owed[item] = 0;
		m->owed_left--;
		m->pay(m->pay_ctx, m, item, parts);
	}
}

/* The sampler's log-odds correction of an item, from its count, plus the
 * trending signal gamma*log(trend): both move only when the item is counted
 * (and the trend of all items at a trending rescale, refresh_all_corrections).
 * log(trend) is read against the trending table's epoch: a common shift
 * that changes no ranking. */
static void refresh_correction(struct model *m, uint32_t item)
{
	before_vector_write(m, item);
	uint64_t count = popularity_count(m->popularity, item);
	float correction = 0.0f;
	if (count == 0) {
		bool placed = m->content_map != NULL &&
			      (m->item_content_flags[item] & CONTENT_PLACED);
		if (placed) {
			/* its q is what the map learned from items at content_min_events
			 * positives: it ranks with their log-odds correction (and no trend) */
			m->scalar[item].correction =
			    m->config.use_correction
				? m->config.sampler_exponent * m->config.correction_weight *
				      logf((float)m->config.content_min_events)
				: 0.0f;
			return;
		}
		m->scalar[item].correction = m->config.use_correction || m->config.use_trending
						 ? UNCOUNTED_PENALTY
						 : 0.0f;
		return;
	}
	/* a content-placed item counts as having content_min_events positives
	 * until it has them: its q is what the map learned from such items */
	uint64_t counted = count;
	if (m->content_map != NULL && (m->item_content_flags[item] & CONTENT_PLACED) &&
	    counted < m->config.content_min_events)
		counted = m->config.content_min_events;
	if (m->config.use_correction)
		correction = m->config.sampler_exponent * m->config.correction_weight *
			     logf((float)counted);
	if (m->config.use_trending && m->config.trending_weight > 0) {
		double trend = popularity_trend(m->popularity, item);
		double log_trend = trend > 0 ? log(trend) : TREND_LOG_FLOOR;
		if (log_trend < TREND_LOG_FLOOR)
			log_trend = TREND_LOG_FLOOR;
		correction += m->config.trending_weight * (float)log_trend;
	}
	m->scalar[item].correction = correction;
}

/* Notes that item's matrix row changed, for the view's next sync. Items
 * the view does not hold yet are copied then, whatever they hold. */
static void mark_moved(struct model *m, uint32_t item)
{
	if ((size_t)item < m->view_items && !m->item_moved[item]) {
		m->item_moved[item] = 1;
		m->moved_items[m->moved_count++] = item;
	}
}

/* The bias column: b_i plus the correction. Every change of a matrix row
 * (a step on q, a new item, seeding) passes here, so it marks the row moved. */
static void refresh_bias_column(struct model *m, uint32_t item)
{
	before_vector_write(m, item);
	m->matrix[(size_t)item * m->stride + m->dim] =
	    (m->config.use_bias ? m->scalar[item].bias : 0.0f) + m->scalar[item].correction;
	mark_moved(m, item);
}

/* After a trending rescale every item's trend moved by one factor: the
 * trending signal's columns are brought back in line (O(items), rare). */
static void refresh_all_corrections(struct model *m)
{
	if (!m->config.use_trending || m->config.trending_weight == 0)
		return;
	for (size_t i = 0; i < m->items; i++) {
		if (!m->item_ready[i])
			continue;
		refresh_correction(m, (uint32_t)i);
		refresh_bias_column(m, (uint32_t)i);
	}
}

/* Drops from the dirty list the users forgotten since they were listed
 * (and repeats of users forgotten and changed again). */
static void compact_dirty_users(struct model *m)
{
	size_t kept = 0;
	for (size_t k = 0; k < m->dirty_user_count; k++) {
		uint32_t u = m->dirty_users[k];
		if (m->user_dirty[u] == 1) {
			m->user_dirty[u] = 2; /* kept once */
			m->dirty_users[kept++] = u;
		}
	}
	for (size_t k = 0; k < kept; k++)
		m->user_dirty[m->dirty_users[k]] = 1;
	m->dirty_user_count = kept;
}

static void mark_user(struct model *m, uint32_t user)
{
	if (!m->user_dirty[user]) {
		if (m->dirty_user_count == m->user_capacity)
			compact_dirty_users(m);
		m->user_dirty[user] = 1;
		m->dirty_users[m->dirty_user_count++] = user;
	}
}

/* item_dirty bits: the rows a commit rewrites (model.h), ITEM_LEGACY for
 * an item restored from a whole-row layout, whose next write must be every
 * row (a vector row alone would hide its counts), and ITEM_Y_LEGACY for an
 * item restored from a vector row that still holds y (ITEM_VECTOR_ROW_VERSION):
 * until its y row is written, writing its q row writes its y row too. */
#define ITEM_PARTS    (MODEL_ITEM_VECTOR | MODEL_ITEM_COUNTS | MODEL_ITEM_Y)
#define ITEM_LEGACY   4
#define ITEM_Y_LEGACY 16

static void mark_item_parts(struct model *m, uint32_t item, uint8_t parts)
{
	if (item != UINT32_MAX && (size_t)item < m->items) {
		if (!(m->item_dirty[item] & ITEM_PARTS))
			m->dirty_items[m->dirty_item_count++] = item;
		m->item_dirty[item] |= parts;
	}
	if (m->sharing && item != UINT32_MAX && (size_t)item < m->items &&
	    !m->shared_flag[item]) {
		m->shared_flag[item] = 1;
		m->shared_items[m->shared_count++] = item;
	}
}

/* Everything of the item changed (its counts, co-visitation or content,
 * perhaps its vectors too). */
static void mark_item(struct model *m, uint32_t item)
{
	mark_item_parts(m, item, ITEM_PARTS);
}

/* Its counts changed (popularity, sampler place, co-visitation), and with
 * them its correction, in the q row; not y. */
static void mark_item_counts(struct model *m, uint32_t item)
{
	mark_item_parts(m, item, MODEL_ITEM_VECTOR | MODEL_ITEM_COUNTS);
}

/* Only q, its bias and their optimiser state changed (a learning step on
 * the item as a target: the event's item, a negative). */
static void mark_item_vector(struct model *m, uint32_t item)
{
	mark_item_parts(m, item, MODEL_ITEM_VECTOR);
}

/* Only y and its optimiser state changed (a learning step on the item as
 * one of the user's recent items). */
static void mark_item_y(struct model *m, uint32_t item)
{
	mark_item_parts(m, item, MODEL_ITEM_Y);
}

static int ensure_user(struct model *m, uint32_t user, uint64_t hash)
{
	if (ensure_users(m, (size_t)user + 1) != 0)
		return -1;
	if ((size_t)user >= m->users)
		m->users = (size_t)user + 1;
	if (!m->user_ready[user]) {
		init_vector(user_p(m, user), m->dim, hash, m->config.seed, 0x11,
			    m->config.init_std);
		m->user_ready[user] = 1;
		mark_user(m, user);
	}
	return 0;
}

/* An item's shared parameters: q, y, bias (2 dim + 1 floats). */
static void share_params(const struct model *m, uint32_t item, float *out)
{
	memcpy(out, m->matrix + (size_t)item * m->stride, m->dim * sizeof(float));
	memcpy(out + m->dim, m->y + (size_t)item * m->dim, m->dim * sizeof(float));
	out[2 * m->dim] = m->scalar[item].bias;
}

static int ensure_item(struct model *m, uint32_t item, uint64_t hash)
{
	if (ensure_items(m, (size_t)item + 1) != 0)
		return -1;
	if ((size_t)item >= m->items)
		m->items = (size_t)item + 1;
	if (!m->item_ready[item]) {
		before_vector_write(m, item);
		init_vector(m->matrix + (size_t)item * m->stride, m->dim, hash, m->config.seed,
			    0x22, m->config.init_std);
		init_vector(m->y + (size_t)item * m->dim, m->dim, hash, m->config.seed, 0x33,
			    m->config.init_std);
		m->item_ready[item] = 1;
		refresh_correction(m, item);
		refresh_bias_column(m, item);
		mark_item(m, item);
		if (m->sharing) /* every instance starts an item alike: from its hash */
			share_params(m, item, m->shared_base + (size_t)item * (2 * m->dim + 1));
	}
	return 0;
}

/* ---- learning ------------------------------------------------------------------ */

/* Starts loading a row's dim floats, every cache line of them. */
static void prefetch_row(const struct model *m, const float *row)
{
	for (size_t k = 0; k < m->dim; k += 64 / sizeof *row)
		__builtin_prefetch(row + k);
}

/* The user's recent items, oldest first, into out (at most L). */
static size_t recent_items(const struct model *m, uint32_t user, uint32_t *out)
{
	const uint16_t *state = user_ring_state(m, user);
	size_t L = m->config.recent_items, n = state[0], head = state[1];
	const uint32_t *ring = user_ring(m, user);
	size_t at = head >= n ? head - n : head + L - n; /* oldest entry */
	for (size_t k = 0; k < n; k++) {
		out[k] = ring[at];
		if (++at == L)
			at = 0;
	}
	return n;
}

/* Each recent item's share of the intent mean ybar, oldest first: the j-th
 * most recent weighs intent_decay^j, normalised to sum 1 (1: plain mean). */
static void intent_shares(const struct model *m, size_t recent_count, float *shares)
{
	float weight = 1.0f, total = 0.0f;
	for (size_t j = recent_count; j-- > 0;) {
		shares[j] = weight;
		total += weight;
		weight *= m->config.intent_decay;
	}
	for (size_t j = 0; j < recent_count; j++)
		shares[j] /= total;
}

/* Each recent item's weight in the co-visitation sums, oldest first: the
 * j-th most recent distinct item weighs covis_recent_decay^j, scaled so the
 * weights of the distinct items average 1; a repeat (an item seen again
 * later in the window) weighs 0, as the sums count each item once, at its
 * latest position. */
static void covis_recent_weights(const struct model *m, const uint32_t *recent, size_t recent_count,
				 float *weights)
{
	float weight = 1.0f, total = 0.0f;
	size_t distinct = 0;
	for (size_t j = recent_count; j-- > 0;) {
		bool repeat = false;
		for (size_t k = j + 1; k < recent_count && !repeat; k++)
			repeat = recent[k] == recent[j];
		weights[j] = repeat ? 0.0f : weight;
		if (repeat)
			continue;
		total += weight;
		distinct++;
		weight *= m->config.covis_recent_decay;
	}
	for (size_t j = 0; j < recent_count; j++)
		weights[j] *= (float)distinct / total;
}

/* h = p_u (taste) + weighted mean of y over recent items (intent), as configured. */
static void user_query_vector(const struct model *m, uint32_t user, const uint32_t *recent,
			      size_t recent_count, float *h)
{
	for (size_t k = 0; k < m->dim; k++)
		h[k] = m->config.use_taste ? user_p(m, user)[k] : 0.0f;
	if (m->config.use_intent && recent_count > 0) {
		float shares[1000]; /* model_config_check(): recent_items <= 1000 */
		intent_shares(m, recent_count, shares);
		for (size_t j = 0; j < recent_count; j++) {
			const float *y = m->y + (size_t)recent[j] * m->dim;
			for (size_t k = 0; k < m->dim; k++)
				h[k] += shares[j] * y[k];
		}
	}
}

/* One optimiser step on a row: row -= rate * grad, with row-wise Adagrad
 * (one accumulator per row: the mean squared gradient), or plain SGD. */
static void apply_step(const struct model *m, float *row, const float *grad, size_t n, float *accum)
{
	float rate = m->config.learning_rate;
	if (m->config.optimizer == MODEL_ADAGRAD) {
		*accum += sgd_dot(grad, grad, n) / (float)n;
		rate /= sqrtf(*accum) + ADAGRAD_EPS;
	}
	for (size_t k = 0; k < n; k++)
		row[k] -= rate * grad[k];
}

static int set_insert(struct item_set *set, uint32_t item)
{
	uint32_t lo = (uint32_t)sorted_lower_bound(set->items, set->count, item);
	if ((lo < set->count && set->items[lo] == item) || set->count >= MODEL_MAX_EXCLUSIONS)
		return 0;
	if (set->count == set->capacity) {
		uint32_t cap = set->capacity ? set->capacity * 2 : 8;
		uint32_t *grown = realloc(set->items, cap * sizeof *grown);
		if (grown == NULL)
			return -1;
		set->items = grown;
		set->capacity = cap;
	}
	memmove(set->items + lo + 1, set->items + lo, (set->count - lo) * sizeof *set->items);
	set->items[lo] = item;
	set->count++;
	return 0;
}

/* The content prior's pull on q (model_config.content_prior_weight). */
static void add_content_prior(struct model *m, uint32_t item, const float *q, float *grad)
{
	uint64_t n = popularity_count(m->popularity, item), M = m->config.content_min_events;
	if (n >= (uint64_t)CONTENT_PRIOR_HORIZON * M || m->config.content_prior_weight == 0)
		return;
	float strength = m->config.content_prior_weight * (float)M / (float)(M + n);
	const float *prior = m->item_prior + (size_t)item * m->dim;
	for (size_t k = 0; k < m->dim; k++)
		grad[k] += strength * (q[k] - prior[k]);
}

/* Solves the map again when content_refit_items items were folded since. */
static int content_maybe_solve(struct model *m, char *errstr, size_t errstr_size)
{
	uint64_t pairs = content_map_pairs(m->content_map);
	if (pairs - content_map_solved_pairs(m->content_map) < m->config.content_refit_items)
		return 0;
	m->content_dirty = true;
	return content_map_solve(m->content_map, errstr, errstr_size);
}

/* Folds item into the map when it holds a content vector and has
 * content_min_events positives; its content vector is dropped then. */
static int content_fold(struct model *m, uint32_t item, char *errstr, size_t errstr_size)
{
	if (m->item_content[item] == NULL ||
	    popularity_count(m->popularity, item) < m->config.content_min_events)
		return 0;
	content_map_add(m->content_map, m->item_content[item], m->matrix + (size_t)item * m->stride);
	free(m->item_content[item]);
	m->item_content[item] = NULL;
	m->content_waiting--;
	m->item_content_flags[item] |= CONTENT_FOLDED;
	m->content_dirty = true;
	mark_item(m, item);
	return content_maybe_solve(m, errstr, errstr_size);
}

/* Trains `count` targets (already in m->targets / m->target_items) against the user's query. */
static void train(struct model *m, uint32_t user, const uint32_t *recent, size_t recent_count,
		  size_t count)
{
	size_t dim = m->dim;
	float l2 = m->config.l2;

	user_query_vector(m, user, recent, recent_count, m->h);
	sgd_score_gradients(m->h, m->targets, count, dim, m->score_grad, m->grad_h);

	for (size_t t = 0; t < count; t++) {
		uint32_t item = m->target_items[t];
		before_vector_write(m, item);
		float *q = m->matrix + (size_t)item * m->stride;
		float g = m->score_grad[t];
		for (size_t k = 0; k < dim; k++)
			m->grad_row[k] = g * m->h[k] + l2 * q[k];
		if (m->content_map != NULL && (m->item_content_flags[item] & CONTENT_PRIOR))
			add_content_prior(m, item, q, m->grad_row);
		apply_step(m, q, m->grad_row, dim, &m->scalar[item].q_accum);
		if (m->config.use_bias)
			apply_step(m, &m->scalar[item].bias, &g, 1, &m->scalar[item].bias_accum);
		refresh_bias_column(m, item);
		mark_item_vector(m, item);
	}
	mark_user(m, user);
	if (m->config.use_taste) {
		float *p = user_p(m, user);
		for (size_t k = 0; k < dim; k++)
			m->grad_row[k] = m->grad_h[k] + l2 * p[k];
		apply_step(m, p, m->grad_row, dim, user_accum(m, user));
	}
	if (m->config.use_intent && recent_count > 0) {
		float shares[1000];
		intent_shares(m, recent_count, shares);
		for (size_t j = 0; j < recent_count; j++) {
			before_vector_write(m, recent[j]);
			float *y = m->y + (size_t)recent[j] * dim;
			for (size_t k = 0; k < dim; k++)
				m->grad_row[k] = shares[j] * m->grad_h[k] + l2 * y[k];
			apply_step(m, y, m->grad_row, dim, &m->scalar[recent[j]].y_accum);
			mark_item_y(m, recent[j]);
		}
	}
}

static void add_target(struct model *m, size_t t, uint32_t item, float label, float weight)
{
	m->target_items[t] = item;
	m->targets[t].q = m->matrix + (size_t)item * m->stride;
	m->targets[t].b = m->config.use_bias ? m->scalar[item].bias : 0.0f;
	m->targets[t].label = label;
	m->targets[t].weight = weight;
}

/*
 * Experience replay (model_config.replay_steps): more steps on the user's
 * own recent items, each against its own fresh negatives. A recent item
 * that is the event's item is not replayed (the event just trained it).
 *
 * The steps' draws are made first (replay_draw(), in the order the steps
 * would make them: nothing in training draws), so their rows start loading
 * while the event's own step trains: at 1M items each drawn row is a cache
 * miss, and the steps drawing as they went waited for every one of them.
 */
struct replay_plan {
	unsigned steps;                       /* the steps that train */
	uint32_t positive[MAX_REPLAY_STEPS];  /* index into recent */
	uint32_t negatives[MAX_REPLAY_STEPS]; /* how many of negative[step] */
	uint32_t negative[MAX_REPLAY_STEPS][MAX_NEGATIVES];
};

static void replay_draw(struct model *m, const struct model_event *event, const uint32_t *recent,
			size_t recent_count, struct replay_plan *plan)
{
	const struct model_config *c = &m->config;
	plan->steps = 0;
	for (unsigned r = 0; r < c->replay_steps && recent_count > 1; r++) {
		size_t j = (size_t)(rng_next(&m->random_state) % recent_count);
		if (recent[j] == event->item)
			continue;
		unsigned step = plan->steps++;
		plan->positive[step] = (uint32_t)j;
		plan->negatives[step] = 0;
		for (unsigned n = 0; n < c->replay_negatives; n++) {
			uint32_t negative = sampler_draw(m->sampler, &m->random_state);
			if (negative == UINT32_MAX)
				break;
			if (negative == recent[j])
				continue;
			prefetch_row(m, m->matrix + (size_t)negative * m->stride);
			__builtin_prefetch(&m->scalar[negative]);
			plan->negative[step][plan->negatives[step]++] = negative;
		}
	}
}

static void replay(struct model *m, const struct model_event *event, const uint32_t *recent,
		   size_t recent_count, float w, const struct replay_plan *plan)
{
	const struct model_config *c = &m->config;
	uint32_t others[1000]; /* model_config_check(): recent_items <= 1000 */
	for (unsigned step = 0; step < plan->steps; step++) {
		size_t j = plan->positive[step], other_count = 0;
		for (size_t o = 0; o < recent_count; o++)
			if (o != j)
				others[other_count++] = recent[o];
		size_t count = 0;
		add_target(m, count++, recent[j], 1.0f, w * c->replay_weight);
		for (uint32_t n = 0; n < plan->negatives[step]; n++)
			add_target(m, count++, plan->negative[step][n], 0.0f, w * c->replay_weight);
		train(m, event->user, others, other_count, count);
	}
}

int model_count_item(struct model *model, uint32_t item, uint64_t item_hash,
		     enum event_type type, int64_t ts_ms, char *errstr, size_t errstr_size)
{
	struct model *m = model;
	if ((unsigned)type >= EVENT_TYPE_COUNT) {
		set_errstr(errstr, errstr_size, "event type %d out of range", (int)type);
		return -1;
	}
	if (m->config.event_weight[type] <= 0)
		return 0; /* ignored, or a negative: nothing is counted */
	if (ensure_item(m, item, item_hash) != 0)
		goto out_nomem;
	m->step++;
	if (popularity_add(m->popularity, item, ts_ms) != 0)
		goto out_nomem;
	mark_item_counts(m, item);
	mark_item_counts(m, popularity_last_moved(m->popularity));
	if (popularity_rescaled(m->popularity)) {
		/* counts, and the corrections in the q rows */
		m->all_items_dirty |= MODEL_ITEM_VECTOR | MODEL_ITEM_COUNTS;
		refresh_all_corrections(m);
	}
	if (sampler_set_count(m->sampler, item, popularity_count(m->popularity, item)) != 0)
		goto out_nomem;
	mark_item_counts(m, sampler_last_moved(m->sampler));
	refresh_correction(m, item);
	refresh_bias_column(m, item);
	return 0;
out_nomem:
	set_errstr(errstr, errstr_size, "out of memory counting item %u", item);
	return -1;
}

int model_learn(struct model *model, const struct model_event *event, char *errstr,
		size_t errstr_size)
{
	struct model *m = model;
	uint32_t recent[1000];
	size_t recent_count, count = 0;
	float w;

	if ((unsigned)event->type >= EVENT_TYPE_COUNT) {
		set_errstr(errstr, errstr_size, "event type %d out of range", (int)event->type);
		return -1;
	}
	w = m->config.event_weight[event->type];
	if (w == 0)
		return 0;
	if (ensure_user(m, event->user, event->user_hash) != 0 ||
	    ensure_item(m, event->item, event->item_hash) != 0) {
		set_errstr(errstr, errstr_size,
			   "out of memory growing the model to user %u, item %u", event->user,
			   event->item);
		return -1;
	}
	recent_count = recent_items(m, event->user, recent);
	m->step++;
	/* start loading the rows training reads (each a cache miss at 1M items) */
	prefetch_row(m, m->matrix + (size_t)event->item * m->stride);
	__builtin_prefetch(&m->scalar[event->item]);
	for (size_t j = 0; j < recent_count; j++)
		prefetch_row(m, m->y + (size_t)recent[j] * m->dim);

	if (!m->config.learn_embeddings ||
	    (!m->config.use_taste && !m->config.use_intent && !m->config.use_bias)) {
		/* nothing to train: counting only */
		if (w < 0)
			return 0;
		goto count;
	}
	if (w < 0) {
		/* an explicit "not this": one negative, nothing counted or remembered */
		add_target(m, 0, event->item, 0.0f, -w);
		train(m, event->user, recent, recent_count, 1);
		return 0;
	}

	/* draw the negatives first and start loading their rows, then read them */
	uint32_t drawn[MAX_NEGATIVES];
	size_t drawn_count = 0;
	for (unsigned n = 0; n < m->config.negatives; n++) {
		uint32_t negative = sampler_draw(m->sampler, &m->random_state);
		if (negative == UINT32_MAX)
			break;
		if (negative == event->item)
			continue; /* the positive is no negative; fewer negatives this time */
		prefetch_row(m, m->matrix + (size_t)negative * m->stride);
		__builtin_prefetch(&m->scalar[negative]);
		drawn[drawn_count++] = negative;
	}
	struct replay_plan plan;
	replay_draw(m, event, recent, recent_count, &plan);
	add_target(m, count++, event->item, 1.0f, w);
	for (size_t n = 0; n < drawn_count; n++)
		add_target(m, count++, drawn[n], 0.0f, w);
	train(m, event->user, recent, recent_count, count);
	replay(m, event, recent, recent_count, w, &plan);

count: /* counting: popularity, the sampler, co-visitation, history */
	if (popularity_add(m->popularity, event->item, event->ts_ms) != 0)
		goto out_nomem;
	/* both items whose popularity rank changed are rewritten at the next
	 * commit: the item counted (its count, and its rank when it moved to
	 * the front of its block) and the one it swapped with. A model that
	 * only counts (the popularity control arm) wrote the swapped one alone,
	 * and a restart then found two items claiming one rank; nor did it
	 * write its users' recent items and exclusions, which only training
	 * marked. */
	mark_item_counts(m, event->item);
	mark_item_counts(m, popularity_last_moved(m->popularity));
	mark_user(m, event->user); /* its ring and exclusions change below */
	if (popularity_rescaled(m->popularity)) {
		/* counts, and the corrections in the q rows */
		m->all_items_dirty |= MODEL_ITEM_VECTOR | MODEL_ITEM_COUNTS;
		refresh_all_corrections(m);
	}
	if (sampler_set_count(m->sampler, event->item,
			      popularity_count(m->popularity, event->item)) != 0)
		goto out_nomem;
	mark_item_counts(m, sampler_last_moved(m->sampler));
	refresh_correction(m, event->item);
	refresh_bias_column(m, event->item);
	if (m->content_map != NULL && content_fold(m, event->item, errstr, errstr_size) != 0)
		return -1;
	if (covis_tick(m->covis))
		m->all_items_dirty |= MODEL_ITEM_COUNTS; /* the co-visitation weights only */
	size_t window = !m->config.learn_embeddings             ? 0
			: recent_count > m->config.covis_window ? m->config.covis_window
								: recent_count;
	float amount = m->config.covis_weighted ? w : 1.0f;
	for (size_t j = recent_count - window; j < recent_count; j++) {
		bool seen = recent[j] == event->item;
		for (size_t k = j + 1; k < recent_count && !seen; k++)
			seen = recent[k] == recent[j];
		if (seen)
			continue;
		if (covis_add(m->covis, recent[j], event->item, amount) != 0)
			goto out_nomem;
		mark_item_counts(m, recent[j]);
		if (m->config.covis_both_directions) {
			if (covis_add(m->covis, event->item, recent[j], amount) != 0)
				goto out_nomem;
			mark_item_counts(m, event->item);
		}
	}
	if (m->content_map != NULL && m->user_search_left[event->user] > 0)
		m->user_search_left[event->user]--; /* the search fades like a recent item */
	if (recent_count == 0 || recent[recent_count - 1] != event->item) {
		size_t L = m->config.recent_items;
		uint16_t *state = user_ring_state(m, event->user);
		user_ring(m, event->user)[state[1]] = event->item;
		state[1] = (uint16_t)((size_t)state[1] + 1 == L ? 0 : state[1] + 1);
		if (state[0] < L)
			state[0]++;
	}
	if ((m->config.exclusion == MODEL_EXCLUDE_BOUGHT && event->type == EVENT_PURCHASE) ||
	    m->config.exclusion == MODEL_EXCLUDE_INTERACTED) {
		if (set_insert(&m->exclude[event->user], event->item) != 0)
			goto out_nomem;
	}
	return 0;

out_nomem:
	set_errstr(errstr, errstr_size, "out of memory counting item %u", event->item);
	return -1;
}

void model_prefetch(const struct model *model, const struct model_event *event)
{
	const struct model *m = model;
	if ((size_t)event->user < m->users) {
		const unsigned char *row = m->user_rows + (size_t)event->user * m->user_bytes;
		for (size_t line = 0; line < m->user_bytes; line += 64)
			__builtin_prefetch(row + line);
		__builtin_prefetch(&m->exclude[event->user]);
	}
	if ((size_t)event->item < m->items)
		__builtin_prefetch(m->matrix + (size_t)event->item * m->stride);
}

/* ---- queries -------------------------------------------------------------------- */

const float *model_item_matrix(const struct model *model, size_t *item_count, size_t *row_stride)
{
	*item_count = model->items;
	*row_stride = model->stride;
	return model->matrix;
}

bool model_user_has_history(const struct model *model, uint32_t user)
{
	return (size_t)user < model->users &&
	       (user_ring_state(model, user)[0] > 0 || model_user_search_weight(model, user) > 0);
}

bool model_user_excludes(const struct model *model, uint32_t user, uint32_t item)
{
	if ((size_t)user >= model->users)
		return false;
	return popularity_sorted_contains(model->exclude[user].items, model->exclude[user].count,
					  item);
}

/* glibc's vector log1pf (libmvec, 2.35+): four floats in an SSE register by
 * the x86-64 vector function ABI, dispatched at load to the best code the
 * CPU runs (within 4 ulp, as libmvec documents). */
__m128 _ZGVbN4v_log1pf(__m128 x);

/* values[i] = log1pf(values[i]), four at a time (the tail padded, so every
 * value goes through the same code and a score does not depend on where
 * its item falls in the list). A scalar log1pf per co-visitation item was
 * 8% of an offline replay. */
static void log1p_all(float *values, size_t count)
{
	size_t i = 0;

	for (; i + 4 <= count; i += 4)
		_mm_storeu_ps(values + i, _ZGVbN4v_log1pf(_mm_loadu_ps(values + i)));
	if (i < count) {
		float tail[4] = {0.0f, 0.0f, 0.0f, 0.0f};
		memcpy(tail, values + i, (count - i) * sizeof *tail);
		_mm_storeu_ps(tail, _ZGVbN4v_log1pf(_mm_loadu_ps(tail)));
		memcpy(values + i, tail, (count - i) * sizeof *tail);
	}
}

static int compare_items(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* Sorts a query's co-visitation items (distinct) in ascending order. */
static void sort_items(struct model *m, uint32_t *items, size_t count)
{
	if (count > m->sort_scratch_capacity) {
		uint32_t *scratch = malloc(count * sizeof *scratch);
		if (scratch != NULL) {
			free(m->sort_scratch);
			m->sort_scratch = scratch;
			m->sort_scratch_capacity = count;
		}
	}
	if (count <= m->sort_scratch_capacity)
		radix_sort_u32(items, count, m->sort_scratch);
	else /* no memory for the scratch: the same order, more slowly */
		qsort(items, count, sizeof *items, compare_items);
}

/* Ranges kth_largest() finishes by insertion sort */
#define SELECT_SMALL 16

/*
 * The k-th largest of values[0..count) (1 <= k <= count): quickselect with
 * a median-of-three pivot, each pass copying the range into the other of
 * values and scratch (count floats), those above the pivot to its front
 * and those below to its back, without a branch on the data. Hoare's
 * in-place partition mispredicted about one branch in two: it was a fifth
 * of the co-visitation query (7% of a replay, bench/HISTORY.md, 5 December
 * 2026). Both arrays are left in no particular order. A NaN is neither
 * above nor below any pivot: it may be returned, and the loop still ends.
 */
static float kth_largest(float *values, float *scratch, size_t count, size_t k)
{
	float *arrays[2] = {values, scratch}, small[SELECT_SMALL];
	size_t n = count, want = k - 1, start = 0; /* the range: arrays[in] + start, n long */
	unsigned in = 0;

	while (n > SELECT_SMALL) {
		const float *from = arrays[in] + start;
		float *to = arrays[in ^ 1];
		float a = from[0], b = from[n / 2], c = from[n - 1];
		float pivot = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
		/* to[0..above) > pivot > to[below..n); the pivot itself is in
		 * neither, so each pass shrinks the range */
		size_t above = 0, below = n;
		for (size_t i = 0; i < n; i++) {
			float v = from[i];
			to[above] = v;
			above += v > pivot;
			to[below - 1] = v;
			below -= v < pivot;
		}
		if (want < above) {
			n = above;
			start = 0;
		} else if (want < below) {
			return pivot; /* equal to it (a NaN pivot ends here too) */
		} else {
			want -= below;
			n -= below;
			start = below;
		}
		in ^= 1;
	}
	memcpy(small, arrays[in] + start, n * sizeof *small);
	for (size_t i = 1; i < n; i++) {
		float v = small[i];
		size_t j = i;
		for (; j > 0 && small[j - 1] < v; j--)
			small[j] = small[j - 1];
		small[j] = v;
	}
	return small[want];
}

/* The slot of `item` in a query's table of 2^bits slots: where its sum is,
 * or the free slot where it goes (Fibonacci hashing, linear probing; the
 * table is never more than half full). */
static inline size_t covis_home(unsigned bits, uint32_t item)
{
	return (size_t)(((uint64_t)item * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

static inline size_t covis_find(const struct covis_sum *table, unsigned bits, uint32_t item)
{
	size_t mask = ((size_t)1 << bits) - 1;
	size_t at = covis_home(bits, item);
	while (table[at].item != item && table[at].item != COVIS_NO_ITEM)
		at = (at + 1) & mask;
	return at;
}

/*
 * How many neighbours ahead model_query() fetches the table slot of: each
 * lands anywhere in a table of up to a few MB, a wait on its line per
 * neighbour otherwise.
 */
#define COVIS_PREFETCH_AHEAD 8

/* Sums keep_strongest() samples for its pivot */
#define KEEP_SAMPLE 256

/* The least table of a query's co-visitation sums (model_query()) */
#define COVIS_TABLE_MIN_BITS 10

/*
 * Makes the query table at least twice `bound` slots, a power of two (the
 * table is kept between queries, every slot free). @returns the log2 of the
 * slots the query uses: fewer than asked only when out of memory, and then
 * the query takes at most half as many distinct items (the weakest of the
 * rest may be missing).
 */
static unsigned covis_table(struct model *m, size_t bound)
{
	unsigned bits = COVIS_TABLE_MIN_BITS;
	while (((size_t)1 << bits) < 2 * bound && bits < 8 * sizeof(size_t) - 2)
		bits++;
	if (((size_t)1 << bits) <= m->covis_sum_capacity)
		return bits;
	size_t slots = (size_t)1 << bits;
	struct covis_sum *table = malloc(slots * sizeof *table);
	if (table != NULL) {
		for (size_t i = 0; i < slots; i++)
			table[i].item = COVIS_NO_ITEM;
		free(m->covis_sum);
		m->covis_sum = table;
		m->covis_sum_capacity = slots;
	}
	for (bits = COVIS_TABLE_MIN_BITS; ((size_t)2 << bits) <= m->covis_sum_capacity; bits++)
		;
	return bits;
}

/*
 * Keeps a query's config.covis_candidates strongest co-visitation items of
 * its `count` (their slots in slots[], the items in items[]; every sum above
 * 0; ties at the bar go to the lower index): the kept items in items[], in
 * no particular order. @returns how many are kept.
 */
static size_t keep_strongest(struct model *m, const struct covis_sum *table,
			     const uint32_t *slots, uint32_t *items, size_t count)
{
	size_t keep = m->covis_keep_capacity, kept = 0, tied = 0, above = 0;
	uint32_t *at_least = m->covis_above;
	float *sums = m->covis_keep, pivot = 0.0f; /* every sum is above 0 */

	if (keep == 0 || count <= keep)
		return count;
	/* A pivot a little below the bar, from an even sample of the sums: the
	 * bar is then the keep-th largest of those at or above it, a few
	 * hundred where the query met thousands (the selection had been a
	 * quarter of the event loop's time at 1M items). */
	if (count >= 4 * keep && count >= 4 * KEEP_SAMPLE) {
		size_t rank = keep * KEEP_SAMPLE / count * 5 / 4 + 8;
		for (size_t s = 0; s < KEEP_SAMPLE; s++)
			sums[s] = table[slots[s * count / KEEP_SAMPLE]].sum;
		if (rank < KEEP_SAMPLE)
			pivot = kth_largest(sums, m->covis_select, KEEP_SAMPLE, rank);
	}
	for (;;) {
		above = 0;
		for (size_t s = 0; s < count; s++) {
			float sum = table[slots[s]].sum;
			sums[above] = sum;
			at_least[above] = slots[s];
			above += sum >= pivot;
		}
		if (above >= keep)
			break;
		pivot = 0.0f; /* the sample misled: every one */
	}
	/* keep of them at or above pivot: the keep-th largest of those is the
	 * keep-th largest of all */
	float bar = kth_largest(sums, m->covis_select, above, keep);
	/* those above the bar from the front, those at it from the back */
	for (size_t s = 0; s < above; s++) {
		const struct covis_sum *at = &table[at_least[s]];
		if (at->sum > bar)
			items[kept++] = at->item;
		else if (at->sum == bar)
			items[count - ++tied] = at->item;
	}
	uint32_t *ties = items + count - tied;
	if (tied > keep - kept)
		sort_items(m, ties, tied); /* the lower indices first */
	for (size_t t = 0; kept < keep && t < tied; t++)
		items[kept++] = ties[t];
	return kept;
}

void model_query(struct model *model, uint32_t user, struct model_query *query)
{
	struct model *m = model;
	uint32_t recent[1000];
	size_t recent_count = 0;

	query->sparse_count = 0;
	query->exclude = NULL;
	query->exclude_count = 0;
	if ((size_t)user >= m->users || !m->user_ready[user]) {
		memset(query->vector, 0, m->dim * sizeof(float));
		query->vector[m->dim] = 1.0f;
		return;
	}
	recent_count = recent_items(m, user, recent);
	user_query_vector(m, user, recent, recent_count, query->vector);
	float search = model_user_search_weight(m, user);
	if (search > 0) {
		const float *s = m->user_search + (size_t)user * m->dim;
		for (size_t k = 0; k < m->dim; k++)
			query->vector[k] += search * s[k];
	}
	query->vector[m->dim] = 1.0f;
	query->exclude = m->exclude[user].items;
	query->exclude_count = m->exclude[user].count;

	if (!m->config.use_covis || m->config.covis_weight == 0 || recent_count == 0)
		return;
	/* Sum each neighbour's decayed counts over the distinct recent items,
	 * in recent order (so sums are bit-identical run to run), in a table
	 * twice the neighbours met, the first touch listing the item. */
	double inverse_scale = 1.0 / covis_scale(m->covis);
	float recent_weight[1000]; /* model_config_check(): recent_items <= 1000 */
	covis_recent_weights(m, recent, recent_count, recent_weight);
	size_t bound = 0, out = 0;
	for (size_t j = 0; j < recent_count; j++) {
		const uint32_t *succ;
		const float *weight;
		if (recent_weight[j] != 0.0f)
			bound += covis_successors(m->covis, recent[j], &succ, &weight);
	}
	/* distinct neighbours are at most the catalogue: at most 2 x items slots
	 * (a dense accumulator's size), however long the lists configured */
	unsigned bits = covis_table(m, bound < m->items ? bound : m->items);
	size_t room = (size_t)1 << (bits - 1); /* distinct items the table takes */
	struct covis_sum *table = m->covis_sum;
	uint32_t *because = query->sparse_because, *items = m->covis_items, *slots = m->covis_slots;
	for (size_t j = 0; j < recent_count; j++) {
		if (recent_weight[j] == 0.0f)
			continue; /* a repeat: counted at its latest position */
		const uint32_t *succ;
		const float *weight;
		size_t count = covis_successors(m->covis, recent[j], &succ, &weight);
		double scale = recent_weight[j] * inverse_scale;
		for (size_t s = 0; s < count; s++) {
			if (s + COVIS_PREFETCH_AHEAD < count)
				__builtin_prefetch(
				    &table[covis_home(bits, succ[s + COVIS_PREFETCH_AHEAD])], 1);
			float add = (float)(weight[s] * scale);
			uint32_t item = succ[s];
			size_t slot = covis_find(table, bits, item);
			struct covis_sum *at = &table[slot];
			/* Whether the item is new to the query is as likely as not:
			 * both cases are written alike, with selects for a branch
			 * (a mispredicted one a neighbour had been most of the
			 * query's time). */
			bool first = at->item == COVIS_NO_ITEM;
			if (first && out == room)
				continue; /* out of memory for a larger table: no more new items */
			float sum = first ? 0.0f : at->sum;
			float best_weight = first ? -INFINITY : at->best_weight;
			uint32_t best = at->best;
			/* the recent item counting most towards it (the first of equals) */
			bool better = add > best_weight;
			at->item = item;
			/* a weight that decayed to 0 must still list its item once */
			at->sum = sum + (add > 0 ? add : 1e-30f);
			at->best_weight = better ? add : best_weight;
			at->best = better ? recent[j] : best;
			items[out] = item; /* kept when the item is new */
			slots[out] = (uint32_t)slot;
			out += first;
		}
	}
	size_t kept = keep_strongest(m, table, slots, items, out);
	sort_items(m, items, kept);
	for (size_t s = 0; s < kept; s++) {
		const struct covis_sum *at = &table[covis_find(table, bits, items[s])];
		query->sparse_items[s] = items[s];
		query->sparse_scores[s] = at->sum;
		if (because != NULL)
			because[s] = at->best;
	}
	for (size_t s = 0; s < out; s++)
		table[slots[s]].item = COVIS_NO_ITEM;
	log1p_all(query->sparse_scores, kept);
	for (size_t s = 0; s < kept; s++)
		query->sparse_scores[s] *= m->config.covis_weight;
	query->sparse_count = kept;
}

/* ---- the item-side view and the index engine ------------------------------------ */

/*
 * The item side as lists see it (model.h, Lists on other threads). Rows
 * are the model's own matrix (shared) or a copy brought up to date at each
 * sync (own rows). Rows changed since the index last saw them are listed
 * once in pending (pending_flag marks them); items from index_items on are
 * appended at the next preparation.
 */
struct model_view {
	bool own_rows;
	float *rows; /* items x stride: the model's matrix, or the copy */
	size_t items, row_capacity, dim, stride, want_k;
	struct model_config config; /* as of the last sync */

	struct ivf *index; /* the index engine's, built on first use */
	size_t index_items, index_max_k;
	uint8_t *pending_flag;
	uint32_t *pending; /* oldest first */
	size_t pending_count, pending_capacity, flag_capacity;
	size_t upkeep_limit;  /* model_view_limit_upkeep() */
	size_t build_threads; /* model_view_build_threads() */
	uint64_t changes_since_training;
	size_t items_at_training;
	double imbalance_at_training;
	uint32_t *trending; /* config.index_trending candidates, as of the sync */
	size_t trending_count, trending_capacity;
	struct model_index_stats stats;
	/* retraining aside (model_view_train_aside()): the training under way,
	 * and the items whose rows changed since its snapshot */
	bool train_aside;
	struct ivf_training *training;
	double training_started;
	uint8_t *since_flag;
	uint32_t *since;
	size_t since_count, since_capacity, since_flag_capacity;
	/* the automatic nprobe as the measured recall moved it (0: not yet),
	 * and the recall measured since it last moved */
	size_t adapted_nprobe;
	struct model_recall_curve adapt_curve; /* since the last adaptation */

	struct model_searcher *searcher; /* model_recommend_with()'s */
};

struct model_searcher {
	struct topk *topk; /* borrowed, or NULL for the index only */
	struct ivf_scratch *scratch;
	uint64_t candidates, lists;
};

/* Makes room for `needed` elements (zeroed), doubling: @returns 0 or -1. */
static int reserve(void *array, size_t *capacity, size_t needed, size_t size)
{
	size_t grown = *capacity ? *capacity : 64;
	if (needed <= *capacity)
		return 0;
	while (grown < needed)
		grown *= 2;
	if (grow_array((void **)array, *capacity, grown, size) != 0)
		return -1;
	*capacity = grown;
	return 0;
}

struct model_searcher *model_searcher_new(struct topk *topk, char *errstr, size_t errstr_size)
{
	struct model_searcher *s = calloc(1, sizeof *s);
	if (s != NULL)
		s->scratch = ivf_scratch_new();
	if (s == NULL || s->scratch == NULL) {
		free(s);
		set_errstr(errstr, errstr_size, "out of memory for a searcher");
		return NULL;
	}
	s->topk = topk;
	return s;
}

void model_searcher_free(struct model_searcher *searcher)
{
	if (searcher == NULL)
		return;
	ivf_scratch_free(searcher->scratch);
	free(searcher);
}

void model_searcher_set_topk(struct model_searcher *searcher, struct topk *topk)
{
	searcher->topk = topk;
}

void model_searcher_take(struct model_searcher *searcher, uint64_t *candidates, uint64_t *lists)
{
	*candidates = searcher->candidates;
	*lists = searcher->lists;
	searcher->candidates = searcher->lists = 0;
}

void model_view_collect(struct model_view *view, struct model_searcher *searcher)
{
	view->stats.candidates += searcher->candidates;
	view->stats.lists += searcher->lists;
	searcher->candidates = searcher->lists = 0;
}

bool model_view_indexed(const struct model_view *view)
{
	return view->index != NULL && view->want_k <= view->index_max_k;
}

void model_view_stats(const struct model_view *view, struct model_index_stats *stats)
{
	*stats = view->stats;
	stats->built = view->index != NULL;
	stats->nlist = view->index ? ivf_nlist(view->index) : 0;
	stats->items = view->index ? ivf_item_count(view->index) : 0;
	stats->rows_pending = view->pending_count;
	for (size_t c = 0; c < stats->nlist; c++)
		if (ivf_cell_size(view->index, c) > stats->largest_cell)
			stats->largest_cell = ivf_cell_size(view->index, c);
}

static void view_free(struct model_view *view)
{
	if (view == NULL)
		return;
	if (view->own_rows)
		free(view->rows);
	training_drop(view);
	ivf_free(view->index);
	free(view->since_flag);
	free(view->since);
	free(view->pending_flag);
	free(view->pending);
	free(view->trending);
	model_searcher_free(view->searcher);
	free(view);
}

struct model_view *model_view(struct model *model, bool own_rows, char *errstr,
			      size_t errstr_size)
{
	struct model *m = model;
	if (m->view != NULL && m->view->own_rows == own_rows)
		return m->view;
	view_free(m->view);
	m->view = calloc(1, sizeof *m->view);
	if (m->view != NULL)
		m->view->searcher = model_searcher_new(NULL, errstr, errstr_size);
	if (m->view == NULL || m->view->searcher == NULL) {
		view_free(m->view);
		m->view = NULL;
		set_errstr(errstr, errstr_size, "out of memory for the item view");
		return NULL;
	}
	m->view->own_rows = own_rows;
	m->view->upkeep_limit = SIZE_MAX;
	m->view->dim = m->dim;
	m->view->stride = m->stride;
	/* a new view sees every item as new */
	for (size_t j = 0; j < m->moved_count; j++)
		m->item_moved[m->moved_items[j]] = 0;
	m->moved_count = 0;
	m->view_items = 0;
	return m->view;
}

/* The configured nprobe, or the automatic one (model.h): a share of the
 * cells between MODEL_INDEX_MIN_NPROBE and MODEL_INDEX_MAX_AUTO_NPROBE. */
static size_t nprobe_for(size_t configured, size_t nlist)
{
	if (configured != 0)
		return configured;
	size_t nprobe = (size_t)ceil(MODEL_INDEX_PROBE_SHARE * (double)nlist);
	if (nprobe > MODEL_INDEX_MAX_AUTO_NPROBE)
		nprobe = MODEL_INDEX_MAX_AUTO_NPROBE;
	if (nprobe < MODEL_INDEX_MIN_NPROBE)
		nprobe = MODEL_INDEX_MIN_NPROBE;
	return nprobe;
}

size_t model_index_nprobe(const struct model *model, size_t nlist)
{
	return nprobe_for(model->config.index_nprobe, nlist);
}

static size_t view_nprobe(const struct model_view *view, size_t nlist)
{
	if (view->config.index_nprobe == 0 && view->adapted_nprobe != 0)
		return view->adapted_nprobe;
	return nprobe_for(view->config.index_nprobe, nlist);
}

size_t model_view_adapt_nprobe(struct model_view *view, const struct model_recall_curve *curve)
{
	if (view->index == NULL)
		return 0;
	size_t nlist = ivf_nlist(view->index);
	double target = view->config.index_recall_target;
	if (view->config.index_nprobe != 0 || !(target > 0)) {
		view->adapted_nprobe = 0;
		return view_nprobe(view, nlist);
	}
	if (view->adapted_nprobe == 0)
		view->adapted_nprobe = nprobe_for(0, nlist);
	struct model_recall_curve *sum = &view->adapt_curve;
	model_recall_curve_add(sum, curve);
	if (sum->compared < MODEL_INDEX_ADAPT_LISTS)
		return view->adapted_nprobe;
	/* the fewest cells whose recall reaches the target, at most top */
	size_t top = nlist < MODEL_INDEX_MAX_ADAPTIVE_NPROBE ? nlist : MODEL_INDEX_MAX_ADAPTIVE_NPROBE;
	size_t nprobe = MODEL_INDEX_MIN_ADAPTIVE_NPROBE;
	while (nprobe < top && sum->found[nprobe] < target * (double)sum->compared)
		nprobe++;
	view->adapted_nprobe = nprobe;
	memset(sum, 0, sizeof *sum);
	return nprobe;
}

void model_recall_curve_add(struct model_recall_curve *sum, const struct model_recall_curve *curve)
{
	for (size_t p = 0; p <= MODEL_INDEX_MAX_ADAPTIVE_NPROBE; p++)
		sum->found[p] += curve->found[p];
	sum->compared += curve->compared;
}

void model_view_recall_curve(const struct model_view *view, const struct model_batch *batch,
			     size_t first, size_t count, const struct topk_result *exact,
			     const size_t *exact_counts, struct model_recall_curve *curve)
{
	enum { CHUNK = 64 };
	size_t k = batch->k;
	uint32_t items[CHUNK];
	size_t needed[CHUNK];
	if (view->index == NULL)
		return;
	for (size_t q = 0; q < count; q++) {
		size_t n = exact_counts[q];
		if (n == 0)
			continue;
		struct ivf_query query = {.base = batch->queries[first + q],
					  .extra_items = view->trending,
					  .extra_count = view->trending_count};
		/* at[p]: the list's items needing p cells (more than the most
		 * the automatic nprobe probes: never counted) */
		size_t at[MODEL_INDEX_MAX_ADAPTIVE_NPROBE + 1] = {0};
		for (size_t from = 0; from < n; from += CHUNK) {
			size_t chunk = n - from < CHUNK ? n - from : CHUNK;
			for (size_t i = 0; i < chunk; i++)
				items[i] = exact[q * k + from + i].item;
			ivf_probes_needed(view->index, &query, items, chunk, needed);
			for (size_t i = 0; i < chunk; i++)
				if (needed[i] <= MODEL_INDEX_MAX_ADAPTIVE_NPROBE)
					at[needed[i]]++;
		}
		size_t found = 0;
		for (size_t p = 0; p <= MODEL_INDEX_MAX_ADAPTIVE_NPROBE; p++) {
			found += at[p];
			curve->found[p] += (double)found / (double)n;
		}
		curve->compared++;
	}
}

void model_index_stats(const struct model *model, struct model_index_stats *stats)
{
	const struct model_view *view = model->view;
	memset(stats, 0, sizeof *stats);
	if (view == NULL)
		return;
	model_view_stats(view, stats);
	stats->candidates += view->searcher->candidates;
	stats->lists += view->searcher->lists;
	stats->nprobe = view->index ? view_nprobe(view, stats->nlist) : 0;
}

/* Lists an item for the index's next preparation (once). */
static int view_note_pending(struct model_view *view, uint32_t item)
{
	if (view->pending_flag[item])
		return 0;
	if (reserve(&view->pending, &view->pending_capacity, view->pending_count + 1,
		    sizeof *view->pending) != 0)
		return -1;
	view->pending_flag[item] = 1;
	view->pending[view->pending_count++] = item;
	return 0;
}

/* The trending candidates every warm user's index list considers. */
static int model_trending_candidates(struct model *m, char *errstr, size_t errstr_size)
{
	size_t want = m->config.index_trending;
	if (m->trending_valid && m->step - m->trending_step < MODEL_INDEX_TRENDING_EVENTS)
		return 0;
	if (m->trending_candidates == NULL && want > 0) {
		m->trending_candidates = malloc(want * sizeof *m->trending_candidates);
		if (m->trending_candidates == NULL) {
			set_errstr(errstr, errstr_size, "out of memory for %zu trending candidates",
				   want);
			return -1;
		}
	}
	m->trending_candidate_count =
	    want > 0 ? model_trending(m, UINT32_MAX, want, m->trending_candidates) : 0;
	m->trending_step = m->step;
	m->trending_valid = true;
	return 0;
}

int model_view_sync(struct model_view *view, struct model *model, size_t k, char *errstr,
		    size_t errstr_size)
{
	struct model *m = model;
	size_t stride = m->stride;

	if (model_trending_candidates(m, errstr, errstr_size) != 0)
		return -1;
	if (reserve(&view->pending_flag, &view->flag_capacity, m->items, 1) != 0 ||
	    reserve(&view->trending, &view->trending_capacity, m->trending_candidate_count,
		    sizeof *view->trending) != 0)
		goto out_nomem;
	if (view->own_rows && reserve(&view->rows, &view->row_capacity, m->items * stride,
				      sizeof(float)) != 0)
		goto out_nomem;
	for (size_t j = 0; j < m->moved_count; j++) {
		uint32_t item = m->moved_items[j];
		m->item_moved[item] = 0;
		if (view->own_rows)
			memcpy(view->rows + (size_t)item * stride, m->matrix + (size_t)item * stride,
			       stride * sizeof(float));
		if ((size_t)item < view->index_items && view_note_pending(view, item) != 0)
			goto out_nomem;
	}
	m->moved_count = 0;
	if (!view->own_rows)
		view->rows = m->matrix;
	else if (m->items > view->items)
		memcpy(view->rows + view->items * stride, m->matrix + view->items * stride,
		       (m->items - view->items) * stride * sizeof(float));
	view->items = m->view_items = m->items;
	view->want_k = k;
	view->config = m->config;
	if (m->trending_candidate_count > 0)
		memcpy(view->trending, m->trending_candidates,
		       m->trending_candidate_count * sizeof *view->trending);
	view->trending_count = m->trending_candidate_count;
	return 0;
out_nomem:
	set_errstr(errstr, errstr_size, "out of memory syncing the item view (%zu items)",
		   m->items);
	return -1;
}

/* What model_view_capture() took: rows of moved items, then the new items'. */
struct model_view_delta {
	uint32_t *moved;
	size_t moved_count, moved_capacity;
	float *rows; /* moved rows, then rows [first_new, items) */
	size_t rows_capacity;
	size_t first_new, items, stride, want_k;
	struct model_config config;
	uint32_t *trending;
	size_t trending_count, trending_capacity;
};

struct model_view_delta *model_view_delta_new(void)
{
	return calloc(1, sizeof(struct model_view_delta));
}

void model_view_delta_free(struct model_view_delta *delta)
{
	if (delta == NULL)
		return;
	free(delta->moved);
	free(delta->rows);
	free(delta->trending);
	free(delta);
}

int model_view_capture(struct model *model, struct model_view_delta *delta, size_t k,
		       char *errstr, size_t errstr_size)
{
	struct model *m = model;
	size_t stride = m->stride, fresh = m->items - m->view_items;

	if (model_trending_candidates(m, errstr, errstr_size) != 0)
		return -1;
	if (reserve(&delta->moved, &delta->moved_capacity, m->moved_count, sizeof *delta->moved) ||
	    reserve(&delta->rows, &delta->rows_capacity, (m->moved_count + fresh) * stride,
		    sizeof *delta->rows) ||
	    reserve(&delta->trending, &delta->trending_capacity, m->trending_candidate_count,
		    sizeof *delta->trending)) {
		set_errstr(errstr, errstr_size, "out of memory capturing the item side (%zu rows)",
			   m->moved_count + fresh);
		return -1;
	}
	for (size_t j = 0; j < m->moved_count; j++) {
		uint32_t item = m->moved_items[j];
		m->item_moved[item] = 0;
		delta->moved[j] = item;
		memcpy(delta->rows + j * stride, m->matrix + (size_t)item * stride,
		       stride * sizeof(float));
	}
	delta->moved_count = m->moved_count;
	m->moved_count = 0;
	if (fresh > 0)
		memcpy(delta->rows + delta->moved_count * stride,
		       m->matrix + m->view_items * stride, fresh * stride * sizeof(float));
	delta->first_new = m->view_items;
	delta->items = m->view_items = m->items;
	delta->stride = stride;
	delta->want_k = k;
	delta->config = m->config;
	if (m->trending_candidate_count > 0)
		memcpy(delta->trending, m->trending_candidates,
		       m->trending_candidate_count * sizeof *delta->trending);
	delta->trending_count = m->trending_candidate_count;
	return 0;
}

int model_view_apply(struct model_view *view, const struct model_view_delta *delta, char *errstr,
		     size_t errstr_size)
{
	size_t stride = delta->stride;

	if (!view->own_rows || stride != view->stride || delta->first_new != view->items) {
		set_errstr(errstr, errstr_size,
			   "item view: a delta from %zu items applied to a view of %zu%s",
			   delta->first_new, view->items, view->own_rows ? "" : " without own rows");
		return -1;
	}
	if (reserve(&view->pending_flag, &view->flag_capacity, delta->items, 1) != 0 ||
	    reserve(&view->trending, &view->trending_capacity, delta->trending_count,
		    sizeof *view->trending) != 0 ||
	    reserve(&view->rows, &view->row_capacity, delta->items * stride, sizeof(float)) != 0) {
		set_errstr(errstr, errstr_size, "out of memory applying the item side (%zu items)",
			   delta->items);
		return -1;
	}
	for (size_t j = 0; j < delta->moved_count; j++) {
		uint32_t item = delta->moved[j];
		memcpy(view->rows + (size_t)item * stride, delta->rows + j * stride,
		       stride * sizeof(float));
		if ((size_t)item < view->index_items && view_note_pending(view, item) != 0) {
			set_errstr(errstr, errstr_size, "out of memory applying the item side");
			return -1;
		}
	}
	if (delta->items > delta->first_new)
		memcpy(view->rows + delta->first_new * stride,
		       delta->rows + delta->moved_count * stride,
		       (delta->items - delta->first_new) * stride * sizeof(float));
	view->items = delta->items;
	view->want_k = delta->want_k;
	view->config = delta->config;
	if (delta->trending_count > 0)
		memcpy(view->trending, delta->trending,
		       delta->trending_count * sizeof *view->trending);
	view->trending_count = delta->trending_count;
	return 0;
}

/* Ends a training aside, installing nothing, and forgets what changed since. */
static void training_drop(struct model_view *view)
{
	ivf_training_cancel(view->training);
	view->training = NULL;
	for (size_t j = 0; j < view->since_count; j++)
		view->since_flag[view->since[j]] = 0;
	view->since_count = 0;
}

/* Forgets the index (the next preparation builds it again). */
static void index_drop(struct model_view *view)
{
	training_drop(view); /* its thread reads the index's settings */
	ivf_free(view->index);
	view->index = NULL;
	for (size_t j = 0; j < view->pending_count; j++)
		view->pending_flag[view->pending[j]] = 0;
	view->pending_count = 0;
	view->index_items = 0;
}

/* The largest cell over the mean cell. */
static double index_imbalance(const struct model_view *view)
{
	size_t nlist = ivf_nlist(view->index), largest = 0, items = ivf_item_count(view->index);
	for (size_t c = 0; c < nlist; c++)
		if (ivf_cell_size(view->index, c) > largest)
			largest = ivf_cell_size(view->index, c);
	return items ? (double)largest * (double)nlist / (double)items : 1.0;
}

/* Notes a training's outcome (what later preparations compare against). */
static void index_trained(struct model_view *view)
{
	view->changes_since_training = 0;
	view->items_at_training = ivf_item_count(view->index);
	view->imbalance_at_training = index_imbalance(view);
	view->stats.trainings++;
}

/*
 * Whether to retrain now: the catalogue doubled since the last training, or
 * ivf_needs_retrain() finds a cell too large, a quarter of the rows changed
 * since, and the imbalance is twice what the last training left. Learned
 * embeddings are skewed (popular items crowd together, never-counted items
 * share one direction), so a fresh training can leave a cell above
 * IVF_RETRAIN_CELL_FACTOR times the mean; retraining for that alone ran 86
 * trainings in a 60k-event replay of 27k items and doubled the index
 * engine's cost. Doublings alone cost O(items) amortised, however small
 * the index was: one built over the first item or two (a single cell,
 * where no moved row ever keeps its cell unscored) was kept as it was until
 * the catalogue reached 2 * INDEX_MIN_K items.
 */
static bool index_wants_training(const struct model_view *view)
{
	size_t items = ivf_item_count(view->index);
	if (items > view->items_at_training && items >= 2 * view->items_at_training)
		return true;
	if (view->changes_since_training < items / INDEX_RETRAIN_CHURN ||
	    !ivf_needs_retrain(view->index))
		return false;
	return index_imbalance(view) > 2.0 * view->imbalance_at_training;
}

/* Builds the index from the view's rows for lists of up to max_k. */
static int index_build(struct model_view *view, size_t max_k, char *errstr, size_t errstr_size)
{
	struct ivf_config config = {.dim = view->stride,
				    .nlist = view->config.index_nlist,
				    .max_batch = INDEX_MAX_BATCH,
				    .max_k = max_k,
				    .assign = IVF_ASSIGN_DEFAULT,
				    .seed = view->config.seed,
				    /* the centroid and cell products are small shapes, where
				     * OpenBLAS's threads cost more than they give (DESIGN.md);
				     * a build may split its assignments over threads instead */
				    .threads = 1,
				    .build_threads = view->build_threads};
	char reason[256];

	index_drop(view);
	view->index = ivf_new(&config, reason, sizeof reason);
	if (view->index == NULL)
		goto out_fail;
	if (ivf_build(view->index, view->rows, view->items, view->stride, reason,
		      sizeof reason) != 0)
		goto out_drop;
	view->index_items = view->items;
	view->index_max_k = max_k;
	index_trained(view);
	return 0;

out_drop:
	index_drop(view);
out_fail:
	set_errstr(errstr, errstr_size, "building the item index over %zu items: %s", view->items,
		   reason);
	return -1;
}

void model_view_train_aside(struct model_view *view, bool aside)
{
	view->train_aside = aside;
}

void model_view_limit_upkeep(struct model_view *view, size_t rows)
{
	view->upkeep_limit = rows;
}

void model_view_build_threads(struct model_view *view, size_t threads)
{
	view->build_threads = threads;
}

/* Rows placed in seconds into the recent mean cost of a row (rounds of a
 * few rows say little: weighted by the rows). */
static void note_row_seconds(struct model_view *view, size_t rows, double seconds)
{
	if (rows == 0)
		return;
	double cost = seconds / (double)rows, weight = (double)rows / 65536.0;
	if (weight > 0.5)
		weight = 0.5;
	view->stats.row_seconds =
	    view->stats.row_seconds > 0
		? view->stats.row_seconds + weight * (cost - view->stats.row_seconds)
		: cost;
}

/* While training aside: notes the rows about to be re-placed in the index
 * (they differ from the snapshot). @returns 0, or -1 when out of memory. */
static int note_since(struct model_view *view)
{
	if (reserve(&view->since_flag, &view->since_flag_capacity, view->items, 1) != 0 ||
	    reserve(&view->since, &view->since_capacity, view->since_count + view->pending_count,
		    sizeof *view->since) != 0)
		return -1;
	for (size_t j = 0; j < view->pending_count; j++) {
		uint32_t item = view->pending[j];
		if (!view->since_flag[item]) {
			view->since_flag[item] = 1;
			view->since[view->since_count++] = item;
		}
	}
	return 0;
}

/* Places items [from, to) in the index in order, their rows as in the view.
 * @returns 0, or -1 with reason filled. */
static int place_items_from(struct model_view *view, size_t from, size_t to, char *reason,
			    size_t reason_size)
{
	for (size_t i = from; i < to; i += IVF_UPDATE_CHUNK) {
		uint32_t fresh[IVF_UPDATE_CHUNK];
		size_t n = to - i < IVF_UPDATE_CHUNK ? to - i : IVF_UPDATE_CHUNK;
		for (size_t r = 0; r < n; r++)
			fresh[r] = (uint32_t)(i + r);
		if (ivf_update_items(view->index, fresh, n, view->rows, view->stride, reason,
				     reason_size) != 0)
			return -1;
	}
	return 0;
}

/*
 * Installs a finished training aside: its cells hold the rows of its
 * snapshot, so the rows moved since are placed again, then the items that
 * came after the snapshot, in order (their rows as now). @returns 0, or -1
 * with reason filled.
 */
static int finish_training(struct model_view *view, char *reason, size_t reason_size)
{
	size_t snapshot = ivf_training_items(view->training), kept = 0;
	int rc = ivf_training_finish(view->index, view->training, reason, reason_size);
	view->training = NULL;
	for (size_t j = 0; j < view->since_count; j++) {
		uint32_t item = view->since[j];
		view->since_flag[item] = 0;
		if (item < snapshot)
			view->since[kept++] = item;
	}
	view->since_count = 0;
	if (rc != 0 ||
	    ivf_update_items(view->index, view->since, kept, view->rows, view->stride, reason,
			     reason_size) != 0 ||
	    place_items_from(view, snapshot, view->index_items, reason, reason_size) != 0)
		return -1;
	index_trained(view);
	view->stats.training_seconds += clock_monotonic_s() - view->training_started;
	return 0;
}

int model_view_prepare(struct model_view *view, char *errstr, size_t errstr_size)
{
	char reason[256];
	size_t changes, k = view->want_k;
	uint64_t kept;

	if (!model_view_indexed(view)) {
		double started = clock_monotonic_s();
		int rc = index_build(view, k > INDEX_MIN_K ? k : INDEX_MIN_K, errstr, errstr_size);
		view->stats.training_seconds += clock_monotonic_s() - started;
		return rc;
	}
	/* moved rows (the longest-waiting, up to the limit), then new items in
	 * order, in one batched re-assignment */
	if (view->training != NULL && note_since(view) != 0) {
		snprintf(reason, sizeof reason, "out of memory noting rows moved while training");
		goto out_drop;
	}
	size_t placed =
	    view->pending_count < view->upkeep_limit ? view->pending_count : view->upkeep_limit;
	double upkeep_started = clock_monotonic_s();
	for (size_t j = 0; j < placed; j++)
		view->pending_flag[view->pending[j]] = 0;
	changes = placed + (view->items - view->index_items);
	kept = ivf_kept_cells(view->index);
	if (ivf_update_items(view->index, view->pending, placed, view->rows, view->stride, reason,
			     sizeof reason) != 0)
		goto out_drop;
	view->pending_count -= placed;
	if (placed > 0 && view->pending_count > 0) /* (pending is NULL before the first) */
		memmove(view->pending, view->pending + placed,
			view->pending_count * sizeof *view->pending);
	if (place_items_from(view, view->index_items, view->items, reason, sizeof reason) != 0)
		goto out_drop; /* drops the index: how far it got does not matter */
	view->index_items = view->items;
	note_row_seconds(view, changes, clock_monotonic_s() - upkeep_started);
	view->stats.rows_synced += changes;
	view->stats.rows_kept += ivf_kept_cells(view->index) - kept;
	view->changes_since_training += changes;
	if (view->training != NULL) {
		if (ivf_training_done(view->training) && finish_training(view, reason, sizeof reason))
			goto out_drop;
	} else if (index_wants_training(view)) {
		double started = clock_monotonic_s();
		if (view->train_aside) {
			if (ivf_training_start(view->index, &view->training, reason,
					       sizeof reason) != 0)
				goto out_drop;
			view->training_started = started;
			return 0;
		}
		if (ivf_retrain(view->index, reason, sizeof reason) != 0)
			goto out_drop;
		index_trained(view);
		view->stats.training_seconds += clock_monotonic_s() - started;
	}
	return 0;

out_drop:
	/* the index may have missed rows: start again at the next preparation */
	index_drop(view);
	set_errstr(errstr, errstr_size, "updating the item index: %s", reason);
	return -1;
}

/* ---- serving ----------------------------------------------------------------------- */

void model_batch_free(struct model_batch *batch)
{
	free(batch->queries);
	free(batch->warm_index);
	free(batch->vectors);
	free(batch->sparse_items);
	free(batch->sparse_scores);
	free(batch->sparse_because);
	free(batch->exclude);
	memset(batch, 0, sizeof *batch);
}

/* A cold user's trending items, only eligible ones: the k most trending
 * eligible items, so that a list is k long whenever k items can be listed
 * (filtered after the fact, sold-out trending items shortened it). */
static size_t trending_eligible(const struct model *m, uint32_t user, size_t k,
				const uint8_t *eligible, uint32_t *out)
{
	const struct item_set *ex = (size_t)user < m->users ? &m->exclude[user] : NULL;
	return popularity_trending(m->popularity, k, ex ? ex->items : NULL, ex ? ex->count : 0,
				   eligible, out);
}

/* A cold user's list: the trending items the eligibility keeps, into results. */
static size_t eligible_trending(const uint32_t *trending, size_t got, const uint8_t *eligible,
				struct topk_result *results)
{
	size_t n = 0;
	for (size_t r = 0; r < got; r++)
		if (eligible == NULL || eligible[trending[r]])
			results[n++] = (struct topk_result){.item = trending[r], .score = 0};
	return n;
}

/* Writes warm user's query as batch query w (storage reserved), its
 * exclusions copied at batch->excluded. */
static void batch_fill(struct model_batch *batch, struct model *m, uint32_t user, size_t w)
{
	size_t capacity = batch->sparse_stride;
	struct model_query q = {.vector = batch->vectors + w * m->stride,
				.sparse_items = batch->sparse_items + w * capacity,
				.sparse_scores = batch->sparse_scores + w * capacity,
				.sparse_because = batch->sparse_because + w * capacity};
	model_query(m, user, &q);
	/* a copy: learning may change the exclusions while another thread ranks */
	uint32_t *exclude = q.exclude_count > 0 ? batch->exclude + batch->excluded : NULL;
	if (q.exclude_count > 0)
		memcpy(exclude, q.exclude, q.exclude_count * sizeof *exclude);
	batch->excluded += q.exclude_count;
	batch->queries[w] = (struct topk_query){.vector = q.vector,
						.exclude = exclude,
						.exclude_count = q.exclude_count,
						.sparse_items = q.sparse_items,
						.sparse_scores = q.sparse_scores,
						.sparse_count = q.sparse_count};
}

int model_batch_prepare(struct model_batch *batch, struct model *model, const uint32_t *users,
			size_t user_count, size_t k, const uint8_t *eligible,
			struct topk_result *results, size_t *counts, char *errstr,
			size_t errstr_size)
{
	struct model *m = model;
	size_t capacity = model_sparse_capacity(m), excluded = 0;
	uint32_t *trending = malloc((k ? k : 1) * sizeof *trending);

	batch->warm = 0;
	batch->k = k;
	batch->sparse_stride = capacity;
	for (size_t u = 0; u < user_count; u++)
		if (model_user_has_history(m, users[u]))
			excluded += m->exclude[users[u]].count;
	if (trending == NULL ||
	    reserve(&batch->queries, &batch->queries_capacity, user_count,
		    sizeof *batch->queries) != 0 ||
	    reserve(&batch->warm_index, &batch->warm_index_capacity, user_count,
		    sizeof *batch->warm_index) != 0 ||
	    reserve(&batch->vectors, &batch->vectors_capacity, user_count * m->stride,
		    sizeof *batch->vectors) != 0 ||
	    reserve(&batch->sparse_items, &batch->sparse_items_capacity, user_count * capacity,
		    sizeof *batch->sparse_items) != 0 ||
	    reserve(&batch->sparse_scores, &batch->sparse_scores_capacity, user_count * capacity,
		    sizeof *batch->sparse_scores) != 0 ||
	    reserve(&batch->sparse_because, &batch->sparse_because_capacity,
		    user_count * capacity, sizeof *batch->sparse_because) != 0 ||
	    reserve(&batch->exclude, &batch->exclude_capacity, excluded,
		    sizeof *batch->exclude) != 0) {
		free(trending);
		set_errstr(errstr, errstr_size, "out of memory for %zu queries", user_count);
		return -1;
	}
	size_t trending_count = SIZE_MAX; /* computed once per call, when a cold user needs it */
	batch->excluded = 0;
	for (size_t u = 0; u < user_count; u++) {
		if (!model_user_has_history(m, users[u])) {
			/* cold: the trending list, filtered like any other. A user
			 * without history has no exclusions either, so every cold user
			 * of the batch shares one list (an O(items) scan). */
			const struct item_set *ex =
			    (size_t)users[u] < m->users ? &m->exclude[users[u]] : NULL;
			size_t got;
			if (ex != NULL && ex->count > 0) {
				got = trending_eligible(m, users[u], k, eligible, trending);
				trending_count = SIZE_MAX;
			} else {
				if (trending_count == SIZE_MAX)
					trending_count =
					    trending_eligible(m, UINT32_MAX, k, eligible, trending);
				got = trending_count;
			}
			counts[u] = eligible_trending(trending, got, eligible, results + u * k);
			continue;
		}
		batch_fill(batch, m, users[u], batch->warm);
		batch->warm_index[batch->warm++] = u;
	}
	free(trending);
	return 0;
}

void model_batch_begin(struct model_batch *batch, struct model *model, size_t k)
{
	batch->warm = 0;
	batch->k = k;
	batch->sparse_stride = model_sparse_capacity(model);
	batch->excluded = 0;
}

/* Points the batch's queries at its storage again after a reserve() moved it. */
static void batch_rebase(struct model_batch *batch, size_t stride)
{
	size_t capacity = batch->sparse_stride, excluded = 0;

	for (size_t w = 0; w < batch->warm; w++) {
		struct topk_query *q = &batch->queries[w];
		q->vector = batch->vectors + w * stride;
		q->sparse_items = batch->sparse_items + w * capacity;
		q->sparse_scores = batch->sparse_scores + w * capacity;
		q->exclude = q->exclude_count > 0 ? batch->exclude + excluded : NULL;
		excluded += q->exclude_count;
	}
}

int model_batch_add(struct model_batch *batch, struct model *model, uint32_t user,
		    size_t position, const uint8_t *eligible, struct topk_result *cold_list,
		    size_t *cold_count, char *errstr, size_t errstr_size)
{
	struct model *m = model;
	size_t k = batch->k, capacity = batch->sparse_stride, w = batch->warm;

	if (!model_user_has_history(m, user)) {
		/* cold: the trending list, filtered as model_batch_prepare() does */
		uint32_t *trending = malloc((k ? k : 1) * sizeof *trending);
		if (trending == NULL) {
			set_errstr(errstr, errstr_size, "out of memory for a trending list");
			return -1;
		}
		*cold_count =
		    eligible_trending(trending, trending_eligible(m, user, k, eligible, trending),
				      eligible, cold_list);
		free(trending);
		return 0;
	}
	size_t capacities[] = {batch->queries_capacity, batch->vectors_capacity,
			       batch->sparse_items_capacity, batch->sparse_scores_capacity,
			       batch->exclude_capacity};
	size_t user_excluded = m->exclude[user].count;
	if (reserve(&batch->queries, &batch->queries_capacity, w + 1, sizeof *batch->queries) != 0 ||
	    reserve(&batch->warm_index, &batch->warm_index_capacity, w + 1,
		    sizeof *batch->warm_index) != 0 ||
	    reserve(&batch->vectors, &batch->vectors_capacity, (w + 1) * m->stride,
		    sizeof *batch->vectors) != 0 ||
	    reserve(&batch->sparse_items, &batch->sparse_items_capacity, (w + 1) * capacity,
		    sizeof *batch->sparse_items) != 0 ||
	    reserve(&batch->sparse_scores, &batch->sparse_scores_capacity, (w + 1) * capacity,
		    sizeof *batch->sparse_scores) != 0 ||
	    reserve(&batch->sparse_because, &batch->sparse_because_capacity, (w + 1) * capacity,
		    sizeof *batch->sparse_because) != 0 ||
	    reserve(&batch->exclude, &batch->exclude_capacity, batch->excluded + user_excluded,
		    sizeof *batch->exclude) != 0) {
		set_errstr(errstr, errstr_size, "out of memory for %zu queries", w + 1);
		return -1;
	}
	if (capacities[0] != batch->queries_capacity || capacities[1] != batch->vectors_capacity ||
	    capacities[2] != batch->sparse_items_capacity ||
	    capacities[3] != batch->sparse_scores_capacity ||
	    capacities[4] != batch->exclude_capacity)
		batch_rebase(batch, m->stride); /* the storage moved */
	batch_fill(batch, m, user, w);
	batch->warm_index[w] = position;
	batch->warm++;
	return 1;
}

int model_view_search(const struct model_view *view, struct model_searcher *searcher,
		      enum model_retrieval retrieval, const struct model_batch *batch,
		      size_t first, size_t count, const uint8_t *eligible,
		      struct topk_result *results, size_t *counts, char *errstr,
		      size_t errstr_size)
{
	size_t k = batch->k;
	const struct topk_query *queries = batch->queries + first;

	if (count == 0)
		return 0;
	if (retrieval == MODEL_RETRIEVAL_EXACT)
		return topk_run(searcher->topk, view->rows, view->items, view->stride, view->stride,
				eligible, queries, count, k, results, counts, errstr, errstr_size);
	if (view->index == NULL) {
		set_errstr(errstr, errstr_size, "item index: not prepared");
		return -1;
	}
	struct ivf_query ivf_batch[INDEX_MAX_BATCH];
	char reason[256];
	size_t nprobe = view_nprobe(view, ivf_nlist(view->index));
	for (size_t at = 0; at < count; at += INDEX_MAX_BATCH) {
		size_t n = count - at < INDEX_MAX_BATCH ? count - at : INDEX_MAX_BATCH;
		for (size_t q = 0; q < n; q++)
			ivf_batch[q] = (struct ivf_query){.base = queries[at + q],
							  .extra_items = view->trending,
							  .extra_count = view->trending_count};
		if (ivf_search_with(view->index, searcher->scratch, eligible, ivf_batch, n, nprobe,
				    k, results + at * k, counts + at, reason,
				    sizeof reason) != 0) {
			set_errstr(errstr, errstr_size, "item index search: %s", reason);
			return -1;
		}
		searcher->candidates += ivf_scratch_candidates(searcher->scratch);
		searcher->lists += n;
	}
	return 0;
}

int model_recommend(struct model *model, struct topk *topk, const uint32_t *users,
		    size_t user_count, size_t k, const uint8_t *eligible,
		    struct topk_result *results, size_t *counts, char *errstr, size_t errstr_size)
{
	return model_recommend_with(model, topk, model->config.retrieval, users, user_count, k,
				    eligible, results, counts, errstr, errstr_size);
}

int model_recommend_with(struct model *model, struct topk *topk, enum model_retrieval retrieval,
			 const uint32_t *users, size_t user_count, size_t k,
			 const uint8_t *eligible, struct topk_result *results, size_t *counts,
			 char *errstr, size_t errstr_size)
{
	struct model *m = model;
	struct model_view *view =
	    model_view(m, m->view != NULL && m->view->own_rows, errstr, errstr_size);
	struct model_batch *batch = &m->batch;
	struct topk_result *warm_results = NULL;
	size_t *warm_counts = NULL;
	int rc = -1;

	if (view == NULL || model_view_sync(view, m, k, errstr, errstr_size) != 0 ||
	    model_batch_prepare(batch, m, users, user_count, k, eligible, results, counts, errstr,
				errstr_size) != 0)
		return -1;
	if (batch->warm == 0)
		return 0;
	warm_results = malloc(batch->warm * (k ? k : 1) * sizeof *warm_results);
	warm_counts = malloc(batch->warm * sizeof *warm_counts);
	if (warm_results == NULL || warm_counts == NULL) {
		set_errstr(errstr, errstr_size, "out of memory for %zu lists", batch->warm);
		goto out_free;
	}
	model_searcher_set_topk(view->searcher, topk);
	if ((retrieval == MODEL_RETRIEVAL_INDEX &&
	     model_view_prepare(view, errstr, errstr_size) != 0) ||
	    model_view_search(view, view->searcher, retrieval, batch, 0, batch->warm, eligible,
			      warm_results, warm_counts, errstr, errstr_size) != 0)
		goto out_free;
	for (size_t w = 0; w < batch->warm; w++) {
		size_t u = batch->warm_index[w];
		memcpy(results + u * k, warm_results + w * k, warm_counts[w] * sizeof *results);
		counts[u] = warm_counts[w];
	}
	rc = 0;
out_free:
	free(warm_results);
	free(warm_counts);
	return rc;
}

int model_recommend_recall(struct model *model, struct topk *topk, const uint32_t *users,
			   size_t user_count, size_t k, const uint8_t *eligible, double *recall,
			   struct model_recall_curve *curve, char *errstr, size_t errstr_size)
{
	struct model *m = model;
	size_t slots = user_count * (k ? k : 1);
	struct topk_result *exact = malloc(slots * sizeof *exact);
	struct topk_result *index = malloc(slots * sizeof *index);
	size_t *exact_counts = malloc((user_count ? user_count : 1) * sizeof *exact_counts);
	size_t *index_counts = malloc((user_count ? user_count : 1) * sizeof *index_counts);
	int rc = -1;

	if (exact == NULL || index == NULL || exact_counts == NULL || index_counts == NULL) {
		set_errstr(errstr, errstr_size, "out of memory comparing %zu lists", user_count);
		goto out_free;
	}
	if (model_recommend_with(m, topk, MODEL_RETRIEVAL_EXACT, users, user_count, k, eligible,
				 exact, exact_counts, errstr, errstr_size) != 0 ||
	    model_recommend_with(m, topk, MODEL_RETRIEVAL_INDEX, users, user_count, k, eligible,
				 index, index_counts, errstr, errstr_size) != 0)
		goto out_free;
	for (size_t u = 0; u < user_count; u++)
		if (!model_user_has_history(m, users[u]))
			exact_counts[u] = 0; /* cold: the trending list from either engine */
	size_t compared = 0;
	double sum = model_lists_recall(exact, exact_counts, index, index_counts, user_count, k,
					&compared);
	*recall = compared > 0 ? sum / (double)compared : 1.0;
	if (curve != NULL && m->view != NULL) {
		/* the batch holds the warm users' queries: their exact lists in that order */
		const struct model_batch *batch = &m->batch;
		for (size_t w = 0; w < batch->warm; w++) {
			memmove(exact + w * k, exact + batch->warm_index[w] * k,
				exact_counts[batch->warm_index[w]] * sizeof *exact);
			exact_counts[w] = exact_counts[batch->warm_index[w]];
		}
		model_view_recall_curve(m->view, batch, 0, batch->warm, exact, exact_counts, curve);
	}
	rc = 0;
out_free:
	free(exact);
	free(index);
	free(exact_counts);
	free(index_counts);
	return rc;
}

double model_lists_recall(const struct topk_result *exact, const size_t *exact_counts,
			  const struct topk_result *other, const size_t *other_counts,
			  size_t user_count, size_t k, size_t *compared)
{
	double sum = 0;
	for (size_t u = 0; u < user_count; u++) {
		if (exact_counts[u] == 0)
			continue;
		/* lists are at most k long: a quadratic intersection is cheapest */
		size_t found = 0;
		for (size_t a = 0; a < exact_counts[u]; a++)
			for (size_t b = 0; b < other_counts[u]; b++)
				if (other[u * k + b].item == exact[u * k + a].item) {
					found++;
					break;
				}
		sum += (double)found / (double)exact_counts[u];
		(*compared)++;
	}
	return sum;
}

long model_seed_item(struct model *model, uint32_t item, uint64_t hash, const uint32_t *from,
		     size_t from_count, char *errstr, size_t errstr_size)
{
	struct model *m = model;
	if (ensure_item(m, item, hash) != 0) {
		set_errstr(errstr, errstr_size, "out of memory for item %u", item);
		return -1;
	}
	if (popularity_count(m->popularity, item) > 0)
		return 0;
	/* sums in double: a category can hold many items */
	double *sum = calloc(2 * m->dim + 1, sizeof *sum);
	if (sum == NULL) {
		set_errstr(errstr, errstr_size, "out of memory seeding item %u", item);
		return -1;
	}
	long used = 0;
	for (size_t j = 0; j < from_count; j++) {
		uint32_t other = from[j];
		if (other == item || (size_t)other >= m->items || !m->item_ready[other] ||
		    popularity_count(m->popularity, other) == 0)
			continue;
		const float *q = m->matrix + (size_t)other * m->stride;
		const float *y = m->y + (size_t)other * m->dim;
		for (size_t k = 0; k < m->dim; k++) {
			sum[k] += q[k];
			sum[m->dim + k] += y[k];
		}
		sum[2 * m->dim] += m->scalar[other].bias;
		used++;
	}
	if (used > 0) {
		before_vector_write(m, item);
		float *q = m->matrix + (size_t)item * m->stride;
		float *y = m->y + (size_t)item * m->dim;
		for (size_t k = 0; k < m->dim; k++) {
			q[k] = (float)(sum[k] / (double)used);
			y[k] = (float)(sum[m->dim + k] / (double)used);
		}
		m->scalar[item].bias = (float)(sum[2 * m->dim] / (double)used);
		refresh_bias_column(m, item);
		mark_item(m, item);
	}
	free(sum);
	return used;
}

/* ---- content vectors -------------------------------------------------------------- */

long model_item_content(struct model *model, uint32_t item, uint64_t hash, const float *content,
			char *errstr, size_t errstr_size)
{
	struct model *m = model;
	size_t C = m->config.content_dim;
	if (m->content_map == NULL) {
		set_errstr(errstr, errstr_size, "item %u: content vectors are off (content_dim 0)",
			   item);
		return -1;
	}
	if (ensure_item(m, item, hash) != 0)
		goto out_nomem;
	uint8_t flags = m->item_content_flags[item];
	if (flags & CONTENT_FOLDED)
		return 0; /* the map already learned from it (a catalogue re-read) */
	if (m->item_content[item] == NULL) {
		m->item_content[item] = malloc(C * sizeof(float));
		if (m->item_content[item] == NULL)
			goto out_nomem;
		m->content_waiting++;
	}
	memcpy(m->item_content[item], content, C * sizeof(float));
	mark_item(m, item);
	if (popularity_count(m->popularity, item) >= m->config.content_min_events)
		return content_fold(m, item, errstr, errstr_size) == 0 ? 0 : -1;
	if (!m->config.use_content || content_map_solved_pairs(m->content_map) == 0 ||
	    (flags & CONTENT_PRIOR))
		return 0;
	float *prior = m->item_prior + (size_t)item * m->dim;
	content_map_apply(m->content_map, content, prior);
	m->item_content_flags[item] |= CONTENT_PRIOR;
	if (popularity_count(m->popularity, item) > 0)
		return 0; /* learned on already: the prior only */
	before_vector_write(m, item);
	float *q = m->matrix + (size_t)item * m->stride;
	if (m->sharing) {
		/* Every instance places it from its own map: the placement (from its
		 * hash start to the prior) is no change to share, the others would
		 * add it to their own. What other instances learned of it and this
		 * one folded before its content came is kept on top of the prior. */
		float *base = m->shared_base + (size_t)item * model_share_param_count(m);
		float *start = m->grad_row; /* scratch */
		init_vector(start, m->dim, hash, m->config.seed, 0x22, m->config.init_std);
		for (size_t k = 0; k < m->dim; k++) {
			float unshared = q[k] - base[k]; /* exactly 0 when nothing is pending */
			q[k] = prior[k] + (q[k] - start[k]);
			base[k] = q[k] - unshared;
		}
	} else {
		memcpy(q, prior, m->dim * sizeof(float));
	}
	m->item_content_flags[item] |= CONTENT_PLACED;
	m->content_placed++;
	refresh_correction(m, item);
	refresh_bias_column(m, item);
	return 1;
out_nomem:
	set_errstr(errstr, errstr_size, "out of memory for item %u's content vector", item);
	return -1;
}

long model_search(struct model *model, uint32_t user, uint64_t user_hash, const float *query,
		  char *errstr, size_t errstr_size)
{
	struct model *m = model;
	if (m->content_map == NULL) {
		set_errstr(errstr, errstr_size, "search: content vectors are off (content_dim 0)");
		return -1;
	}
	if (ensure_user(m, user, user_hash) != 0) {
		set_errstr(errstr, errstr_size, "out of memory for user %u", user);
		return -1;
	}
	if (!m->config.use_search || m->config.search_weight == 0 ||
	    content_map_solved_pairs(m->content_map) == 0)
		return 0;
	content_map_apply(m->content_map, query, m->user_search + (size_t)user * m->dim);
	m->user_search_left[user] = (uint16_t)m->config.recent_items;
	mark_user(m, user);
	return 1;
}

float model_user_search_weight(const struct model *model, uint32_t user)
{
	if (model->content_map == NULL || (size_t)user >= model->users ||
	    model->user_search_left[user] == 0 || !model->config.use_search)
		return 0.0f;
	return model->config.search_weight * (float)model->user_search_left[user] /
	       (float)model->config.recent_items;
}

bool model_item_content_placed(const struct model *model, uint32_t item)
{
	return model->content_map != NULL && (size_t)item < model->items &&
	       (model->item_content_flags[item] & CONTENT_PLACED);
}

const float *model_item_content_prior(const struct model *model, uint32_t item)
{
	if (model->content_map == NULL || (size_t)item >= model->items ||
	    !(model->item_content_flags[item] & CONTENT_PRIOR))
		return NULL;
	return model->item_prior + (size_t)item * model->dim;
}

void model_content_stats(const struct model *model, struct model_content_stats *stats)
{
	memset(stats, 0, sizeof *stats);
	if (model->content_map == NULL)
		return;
	stats->enabled = true;
	stats->pairs = content_map_pairs(model->content_map);
	stats->solved_pairs = content_map_solved_pairs(model->content_map);
	stats->placed = model->content_placed;
	stats->waiting = model->content_waiting;
}

void model_content_map_apply(const struct model *model, const float *content, float *q)
{
	if (model->content_map == NULL) {
		memset(q, 0, model->dim * sizeof *q);
		return;
	}
	content_map_apply(model->content_map, content, q);
}

size_t model_export_content(const struct model *model, void *buf, size_t capacity)
{
	if (model->content_map == NULL)
		return 0;
	size_t n = content_map_bytes(model->content_map);
	if (buf != NULL && n <= capacity)
		content_map_export(model->content_map, buf);
	return n;
}

uint64_t model_content_digest(const struct model *model)
{
	return model->content_map != NULL ? content_map_digest(model->content_map) | 1 : 0;
}

bool model_content_dirty(const struct model *model)
{
	return model->content_map != NULL && model->content_dirty;
}

int model_import_content(struct model *model, const void *buf, size_t len, char *errstr,
			 size_t errstr_size)
{
	if (model->content_map == NULL) {
		set_errstr(errstr, errstr_size,
			   "the state holds a content map but content vectors are off "
			   "(content.dim 0)");
		return -1;
	}
	return content_map_import(model->content_map, buf, len, errstr, errstr_size);
}

uint64_t model_item_count_of(const struct model *model, uint32_t item)
{
	return popularity_count(model->popularity, item);
}

size_t model_trending(const struct model *model, uint32_t user, size_t k, uint32_t *out)
{
	const struct item_set *ex = (size_t)user < model->users ? &model->exclude[user] : NULL;
	return popularity_trending(model->popularity, k, ex ? ex->items : NULL, ex ? ex->count : 0,
				   NULL, out);
}

size_t model_popular(const struct model *model, uint32_t user, size_t k, const uint8_t *eligible,
		     uint32_t *out)
{
	const struct item_set *ex = (size_t)user < model->users ? &model->exclude[user] : NULL;
	return popularity_top(model->popularity, k, ex ? ex->items : NULL, ex ? ex->count : 0,
			      eligible, out);
}

/* ---- explanations ---------------------------------------------------------------- */

const char *model_reason_name(enum model_reason reason)
{
	static const char *const names[MODEL_REASON_COUNT] = {
	    [MODEL_REASON_TASTE] = "taste",           [MODEL_REASON_INTENT] = "intent",
	    [MODEL_REASON_COVIS] = "covis",           [MODEL_REASON_TRENDING] = "trending",
	    [MODEL_REASON_COLD_START] = "cold_start", [MODEL_REASON_POPULAR] = "popular"};
	return (unsigned)reason < MODEL_REASON_COUNT ? names[reason] : "unknown";
}

void model_batch_covis_terms(const struct model_batch *batch, size_t w,
			     struct model_covis_terms *terms)
{
	const struct topk_query *q = &batch->queries[w];
	*terms = (struct model_covis_terms){.items = q->sparse_items,
					    .scores = q->sparse_scores,
					    .because = batch->sparse_because + w * batch->sparse_stride,
					    .count = q->sparse_count};
}

int model_explain(struct model *model, uint32_t user, const struct model_covis_terms *covis,
		  const uint32_t *items, size_t count, struct model_explanation *out)
{
	struct model *m = model;
	const struct model_config *c = &m->config;
	uint32_t recent[1000];
	size_t recent_count = 0;
	int rc = 0;

	if ((size_t)user < m->users && m->user_ready[user])
		recent_count = recent_items(m, user, recent);
	for (size_t n = 0; n < count; n++)
		out[n] = (struct model_explanation){.reason = MODEL_REASON_COLD_START,
						    .because_item = UINT32_MAX};
	if (recent_count == 0 || count == 0)
		return 0; /* a cold user's list is the trending list */

	/* without the round's terms: the user's query now, as a list would be ranked */
	struct model_covis_terms own = {0};
	float *vector = NULL, *scores = NULL;
	uint32_t *sparse = NULL, *because = NULL;
	bool use_covis = c->use_covis && c->covis_weight != 0;
	if (use_covis && covis == NULL) {
		size_t capacity = model_sparse_capacity(m);
		vector = malloc((m->dim + 1) * sizeof *vector);
		sparse = malloc((capacity ? capacity : 1) * sizeof *sparse);
		scores = malloc((capacity ? capacity : 1) * sizeof *scores);
		because = malloc((capacity ? capacity : 1) * sizeof *because);
		if (vector != NULL && sparse != NULL && scores != NULL && because != NULL) {
			struct model_query q = {.vector = vector,
						.sparse_items = sparse,
						.sparse_scores = scores,
						.sparse_because = because};
			model_query(m, user, &q);
			own = (struct model_covis_terms){sparse, scores, because, q.sparse_count};
			covis = &own;
		} else {
			rc = -1;
		}
	}
	if (!use_covis)
		covis = NULL;
	float shares[1000];
	if (c->use_intent)
		intent_shares(m, recent_count, shares);
	const float *p = user_p(m, user);
	for (size_t n = 0; n < count; n++) {
		struct model_explanation *e = &out[n];
		uint32_t item = items[n];
		if ((size_t)item >= m->items)
			continue;
		const float *q = m->matrix + (size_t)item * m->stride;
		float best_intent = 0.0f;
		e->reason = MODEL_REASON_TASTE;
		/* sgd_dot(): vectorised (one serial sum was 40 ns a term: a list's
		 * explanations took 7 us of the loop at 1M items) */
		e->taste = (c->use_taste ? sgd_dot(p, q, m->dim) : 0.0f) +
			   (c->use_bias ? m->scalar[item].bias : 0.0f);
		if (c->use_intent) {
			for (size_t j = 0; j < recent_count; j++) {
				float term = sgd_dot(m->y + (size_t)recent[j] * m->dim, q, m->dim);
				e->intent += shares[j] * term;
				if (e->because_item == UINT32_MAX || term > best_intent) {
					best_intent = term;
					e->because_item = recent[j];
				}
			}
		}
		uint32_t intent_item = e->because_item, covis_item = UINT32_MAX;
		e->because_item = UINT32_MAX;
		size_t t = covis != NULL ? sorted_find(covis->items, covis->count, item) : SIZE_MAX;
		if (t != SIZE_MAX) {
			e->covis = covis->scores[t];
			covis_item = covis->because[t];
		}
		e->trending = m->scalar[item].correction;
		/* the largest term among the signals in force; ties go to the first */
		float best = -INFINITY;
		bool in_force[4] = {c->use_taste || c->use_bias, c->use_intent,
				    covis_item != UINT32_MAX, c->use_correction || c->use_trending};
		const float terms[4] = {e->taste, e->intent, e->covis, e->trending};
		static const enum model_reason reasons[4] = {
		    MODEL_REASON_TASTE, MODEL_REASON_INTENT, MODEL_REASON_COVIS,
		    MODEL_REASON_TRENDING};
		for (size_t k = 0; k < 4; k++)
			if (in_force[k] && terms[k] > best) {
				best = terms[k];
				e->reason = reasons[k];
			}
		if (e->reason == MODEL_REASON_INTENT)
			e->because_item = intent_item;
		else if (e->reason == MODEL_REASON_COVIS)
			e->because_item = covis_item;
	}
	free(vector);
	free(sparse);
	free(scores);
	free(because);
	return rc;
}

const float *model_user_vector(const struct model *model, uint32_t user)
{
	return user_p(model, user);
}

const float *model_item_vector(const struct model *model, uint32_t item)
{
	return model->matrix + (size_t)item * model->stride;
}

const float *model_item_intent_vector(const struct model *model, uint32_t item)
{
	return model->y + (size_t)item * model->dim;
}

float model_item_bias(const struct model *model, uint32_t item)
{
	return model->scalar[item].bias;
}

uint64_t model_digest(const struct model *model)
{
	/* every saved row and the globals: exactly what a restart would restore */
	const struct model *m = model;
	XXH3_state_t *state = XXH3_createState();
	size_t capacity = 1 << 16;
	unsigned char *row = malloc(capacity);
	uint64_t digest = 0;
	if (state == NULL || row == NULL)
		goto out_free;
	XXH3_64bits_reset(state);
	for (size_t u = 0; u < m->users; u++) {
		if (!m->user_ready[u])
			continue;
		size_t n = model_export_user(m, (uint32_t)u, row, capacity);
		if (n > capacity)
			goto out_free;
		XXH3_64bits_update(state, row, n);
	}
	for (size_t i = 0; i < m->items; i++) {
		if (!m->item_ready[i])
			continue;
		size_t n = model_export_item(m, (uint32_t)i, row, capacity);
		if (n > capacity)
			goto out_free;
		XXH3_64bits_update(state, row, n);
	}
	XXH3_64bits_update(state, row, model_export_globals(m, row, capacity));
	if (m->content_map != NULL) {
		uint64_t map_digest = content_map_digest(m->content_map);
		XXH3_64bits_update(state, &map_digest, sizeof map_digest);
	}
	digest = XXH3_64bits_digest(state);
out_free:
	XXH3_freeState(state);
	free(row);
	return digest;
}

/* ---- persistence ------------------------------------------------------------------ */

#define ROW_VERSION 1
/* An item is saved as two rows (model.h, "Item rows"): its vectors, and its
 * counts. A ROW_VERSION item row is the whole item in one row, the layout
 * before the split, still read. */
#define ITEM_VECTOR_ROW_VERSION 101
#define ITEM_COUNTS_ROW_VERSION 102
/* Since 5 December 2026 the vectors are two rows themselves (model.h, "Item
 * rows"): q with its bias and their optimiser state, and y with its own. A
 * ITEM_VECTOR_ROW_VERSION row (both) is still read. */
#define ITEM_Q_ROW_VERSION 103
#define ITEM_Y_ROW_VERSION 104

size_t model_dirty_users(struct model *model, const uint32_t **users)
{
	*users = model->dirty_users;
	return model->dirty_user_count;
}

size_t model_dirty_items(struct model *model, const uint32_t **items)
{
	if (model->all_items_dirty) {
		/* a rescale changed every learned item: list them all once, with
		 * the parts it changed. An index this variant never learned on has
		 * no row to change: writing one (zeros) made a restart take it for
		 * a learned item, and its first event then left its vectors at zero
		 * where an undisturbed daemon drew them (135k such rows at 1M items) */
		model->dirty_item_count = 0;
		for (size_t i = 0; i < model->items; i++) {
			if (!model->item_ready[i] && !(model->item_dirty[i] & ITEM_PARTS))
				continue;
			model->item_dirty[i] |= model->all_items_dirty;
			model->dirty_items[model->dirty_item_count++] = (uint32_t)i;
		}
		model->all_items_dirty = 0;
	}
	*items = model->dirty_items;
	return model->dirty_item_count;
}

size_t model_user_memory_bytes(const struct model *model)
{
	/* the record, the ready and dirty bytes, a dirty-list entry, the exclusion set */
	return model->user_bytes + 2 + sizeof(uint32_t) + sizeof(struct item_set);
}

bool model_user_has_row(const struct model *model, uint32_t user)
{
	return (size_t)user < model->users && model->user_ready[user];
}

size_t model_user_recent(const struct model *model, uint32_t user, uint32_t *out)
{
	return model_user_has_row(model, user) ? recent_items(model, user, out) : 0;
}

bool model_user_is_dirty(const struct model *model, uint32_t user)
{
	return (size_t)user < model->users && model->user_dirty[user];
}

void model_forget_user(struct model *model, uint32_t user)
{
	if ((size_t)user >= model->users)
		return;
	memset(user_p(model, user), 0, model->user_bytes);
	if (model->content_map != NULL)
		model->user_search_left[user] = 0;
	model->exclude[user].count = 0;
	model->user_ready[user] = 0;
	model->user_dirty[user] = 0; /* the caller saved or set aside its row */
}

/* Drops from user's ring and exclusions the items stale() names.
 * @returns true when anything was dropped. */
static bool purge_user(struct model *m, uint32_t user, bool (*stale)(uint32_t item, void *ctx),
		       void *ctx)
{
	size_t L = m->config.recent_items, n, kept = 0;
	uint32_t recent[1000]; /* model_config_check(): recent_items <= 1000 */
	bool dropped = false;
	n = recent_items(m, user, recent);
	for (size_t k = 0; k < n; k++)
		if (!stale(recent[k], ctx))
			recent[kept++] = recent[k];
	if (kept != n) {
		uint16_t *ring_state = user_ring_state(m, user);
		memcpy(user_ring(m, user), recent, kept * sizeof *recent);
		ring_state[0] = (uint16_t)kept;
		ring_state[1] = (uint16_t)(kept == L ? 0 : kept);
		dropped = true;
	}
	struct item_set *set = &m->exclude[user];
	uint32_t left = 0;
	for (uint32_t k = 0; k < set->count; k++)
		if (!stale(set->items[k], ctx))
			set->items[left++] = set->items[k];
	if (left != set->count) {
		set->count = left;
		dropped = true;
	}
	if (dropped)
		mark_user(m, user);
	return dropped;
}

bool model_purge_user_items(struct model *model, uint32_t user,
			    bool (*stale)(uint32_t item, void *ctx), void *ctx)
{
	if (!model_user_has_row(model, user))
		return false;
	return purge_user(model, user, stale, ctx);
}

struct gone_items {
	const uint8_t *flags;
	size_t count;
};

static bool item_gone(uint32_t item, void *ctx)
{
	const struct gone_items *gone = ctx;
	return (size_t)item < gone->count && gone->flags[item];
}

static void mark_item_cb(uint32_t item, void *ctx)
{
	mark_item_counts(ctx, item);
}

int model_forget_items(struct model *model, const uint32_t *items, size_t count, char *errstr,
		       size_t errstr_size)
{
	struct model *m = model;
	if (count == 0 || m->items == 0)
		return 0;
	uint8_t *flags = calloc(m->items, 1);
	if (flags == NULL) {
		set_errstr(errstr, errstr_size, "out of memory forgetting %zu items", count);
		return -1;
	}
	struct gone_items gone = {flags, m->items};
	for (size_t k = 0; k < count; k++)
		if ((size_t)items[k] < m->items)
			flags[items[k]] = 1;
	for (size_t i = 0; i < m->items; i++) {
		if (!flags[i])
			continue;
		uint32_t item = (uint32_t)i;
		before_vector_write(m, item);
		memset(m->matrix + i * m->stride, 0, m->stride * sizeof(float));
		memset(m->y + i * m->dim, 0, m->dim * sizeof(float));
		memset(&m->scalar[i], 0, sizeof m->scalar[i]);
		m->item_ready[i] = 0;
		mark_moved(m, item);
		/* the sampler moves another item into its bucket place: that one's row changed */
		sampler_set_count(m->sampler, item, 0);
		mark_item_counts(m, sampler_last_moved(m->sampler));
		if (m->content_map != NULL) {
			if (m->item_content[i] != NULL) {
				free(m->item_content[i]);
				m->item_content[i] = NULL;
				m->content_waiting--;
			}
			m->item_content_flags[i] = 0;
			memset(m->item_prior + i * m->dim, 0, m->dim * sizeof(float));
		}
		if (m->sharing)
			memset(m->shared_base + i * (2 * m->dim + 1), 0,
			       (2 * m->dim + 1) * sizeof(float));
	}
	if (m->sharing) {
		/* a forgotten item has nothing to share (its id is gone) */
		size_t kept = 0;
		for (size_t k = 0; k < m->shared_count; k++) {
			uint32_t item = m->shared_items[k];
			if (flags[item])
				m->shared_flag[item] = 0;
			else
				m->shared_items[kept++] = item;
		}
		m->shared_count = kept;
	}
	covis_forget(m->covis, flags, m->items, mark_item_cb, m);
	popularity_forget(m->popularity, flags, m->items, mark_item_cb, m);
	for (size_t u = 0; u < m->users; u++)
		if (m->user_ready[u])
			purge_user(m, (uint32_t)u, item_gone, &gone);
	m->trending_valid = false;
	free(flags);
	return 0;
}

void model_clear_dirty(struct model *model)
{
	for (size_t k = 0; k < model->dirty_user_count; k++)
		model->user_dirty[model->dirty_users[k]] = 0;
	for (size_t k = 0; k < model->dirty_item_count; k++) {
		uint32_t item = model->dirty_items[k];
		/* an item whose y still lives in its old vector row keeps the
		 * mark until a commit wrote its y row */
		bool y_written = model_item_dirty_parts(model, item) & MODEL_ITEM_Y;
		model->item_dirty[item] &= y_written ? 0 : ITEM_Y_LEGACY;
	}
	model->dirty_user_count = 0;
	model->dirty_item_count = 0;
	model->all_items_dirty = 0;
	model->content_dirty = false;
}

/* Appends to a row while it fits; always counts the size. */
struct row_writer {
	unsigned char *buf;
	size_t capacity, size;
};

static void put(struct row_writer *w, const void *data, size_t len)
{
	if (len > 0 && w->buf != NULL && w->size + len <= w->capacity)
		memcpy(w->buf + w->size, data, len);
	w->size += len;
}

/* Reads a row, failing once past its end. */
struct row_reader {
	const unsigned char *buf;
	size_t len, at;
	bool failed;
};

static void get(struct row_reader *r, void *data, size_t len)
{
	if (r->failed || r->at + len > r->len) {
		r->failed = true;
		if (len > 0)
			memset(data, 0, len);
		return;
	}
	if (len > 0)
		memcpy(data, r->buf + r->at, len);
	r->at += len;
}

static int check_header(struct row_reader *r, const struct model *m, const char *what,
			uint32_t expected, char *errstr, size_t errstr_size)
{
	uint32_t version, dim;
	get(r, &version, sizeof version);
	get(r, &dim, sizeof dim);
	if (r->failed || version != expected) {
		set_errstr(errstr, errstr_size, "%s row: unknown layout %u (this model writes %u)",
			   what, version, (unsigned)expected);
		return -1;
	}
	if (dim != m->dim) {
		set_errstr(errstr, errstr_size, "%s row: dimension %u, the model has %zu", what,
			   dim, m->dim);
		return -1;
	}
	return 0;
}

static void put_header(struct row_writer *w, const struct model *m, uint32_t version)
{
	uint32_t dim = (uint32_t)m->dim;
	put(w, &version, sizeof version);
	put(w, &dim, sizeof dim);
}

size_t model_export_user(const struct model *model, uint32_t user, void *buf, size_t capacity)
{
	const struct model *m = model;
	struct row_writer w = {buf, capacity, 0};
	const struct item_set *ex = &m->exclude[user];
	put_header(&w, m, ROW_VERSION);
	put(&w, user_p(m, user),
	    (m->dim + 1) * sizeof(float) + 2 * sizeof(uint16_t) +
		m->config.recent_items * sizeof(uint32_t));
	put(&w, &ex->count, sizeof ex->count);
	put(&w, ex->items, ex->count * sizeof *ex->items);
	/* a search still in force: a section of its own (rows without one are as before) */
	if (m->content_map != NULL && m->user_search_left[user] > 0) {
		put(&w, &m->user_search_left[user], sizeof m->user_search_left[user]);
		put(&w, m->user_search + (size_t)user * m->dim, m->dim * sizeof(float));
	}
	return w.size;
}

int model_import_user(struct model *model, uint32_t user, const void *row, size_t len, char *errstr,
		      size_t errstr_size)
{
	struct model *m = model;
	struct row_reader r = {row, len, 0, false};
	uint32_t count;
	if (check_header(&r, m, "user", ROW_VERSION, errstr, errstr_size) != 0)
		return -1;
	if (ensure_users(m, (size_t)user + 1) != 0)
		goto out_nomem;
	if ((size_t)user >= m->users)
		m->users = (size_t)user + 1;
	get(&r, user_p(m, user),
	    (m->dim + 1) * sizeof(float) + 2 * sizeof(uint16_t) +
		m->config.recent_items * sizeof(uint32_t));
	get(&r, &count, sizeof count);
	if (r.failed || count > (len - r.at) / sizeof(uint32_t) ||
	    user_ring_state(m, user)[0] > m->config.recent_items) {
		set_errstr(errstr, errstr_size, "user row %u: truncated or inconsistent", user);
		return -1;
	}
	struct item_set *ex = &m->exclude[user];
	if (count > ex->capacity) {
		uint32_t *items = realloc(ex->items, count * sizeof *items);
		if (items == NULL)
			goto out_nomem;
		ex->items = items;
		ex->capacity = count;
	}
	get(&r, ex->items, count * sizeof *ex->items);
	ex->count = count;
	if (m->content_map != NULL) {
		m->user_search_left[user] = 0;
		if (r.at < len) {
			uint16_t left;
			get(&r, &left, sizeof left);
			get(&r, m->user_search + (size_t)user * m->dim, m->dim * sizeof(float));
			if (r.failed || left > m->config.recent_items) {
				set_errstr(errstr, errstr_size, "user row %u: truncated search", user);
				return -1;
			}
			m->user_search_left[user] = left;
		}
	}
	m->user_ready[user] = 1;
	return 0;
out_nomem:
	set_errstr(errstr, errstr_size, "out of memory restoring user %u", user);
	return -1;
}

/* An item's vectors and their optimiser state: q (with its bias column), y,
 * the scalars. */
static void put_item_vector(struct row_writer *w, const struct model *m, uint32_t item)
{
	put(w, m->matrix + (size_t)item * m->stride, m->stride * sizeof(float));
	put(w, m->y + (size_t)item * m->dim, m->dim * sizeof(float));
	put(w, &m->scalar[item], sizeof m->scalar[item]);
}

/* An item's q row: q with its bias column, the bias, the correction, and
 * their optimiser state. */
static void put_item_q(struct row_writer *w, const struct model *m, uint32_t item)
{
	const struct item_scalars *sc = &m->scalar[item];
	put(w, m->matrix + (size_t)item * m->stride, m->stride * sizeof(float));
	put(w, &sc->bias, sizeof sc->bias);
	put(w, &sc->correction, sizeof sc->correction);
	put(w, &sc->q_accum, sizeof sc->q_accum);
	put(w, &sc->bias_accum, sizeof sc->bias_accum);
}

/* An item's y row: y and its optimiser state. */
static void put_item_y(struct row_writer *w, const struct model *m, uint32_t item)
{
	put(w, m->y + (size_t)item * m->dim, m->dim * sizeof(float));
	put(w, &m->scalar[item].y_accum, sizeof m->scalar[item].y_accum);
}

/* An item's counts: popularity, sampler place, co-visitation successors and
 * the content section. */
static void put_item_counts(struct row_writer *w, const struct model *m, uint32_t item)
{
	struct popularity_item pop = popularity_item_state(m->popularity, item);
	struct sampler_place place = sampler_item_place(m->sampler, item);
	const uint32_t *succ;
	const float *weight;
	uint32_t n = (uint32_t)covis_successors(m->covis, item, &succ, &weight);
	/* field by field: the struct has padding, and rows must hold no stray bytes */
	put(w, &pop.count, sizeof pop.count);
	put(w, &pop.rank, sizeof pop.rank);
	put(w, &pop.trend, sizeof pop.trend);
	put(w, &place.bucket, sizeof place.bucket);
	put(w, &place.position, sizeof place.position);
	put(w, &n, sizeof n);
	put(w, succ, n * sizeof *succ);
	put(w, weight, n * sizeof *weight);
	/* the content section, only for an item with content state (rows of
	 * items without any are as they were before content vectors) */
	if (m->content_map != NULL && (m->item_content_flags[item] || m->item_content[item])) {
		uint8_t flags = m->item_content_flags[item];
		uint8_t has_content = m->item_content[item] != NULL;
		put(w, &flags, 1);
		put(w, &has_content, 1);
		if (flags & CONTENT_PRIOR)
			put(w, m->item_prior + (size_t)item * m->dim, m->dim * sizeof(float));
		if (has_content)
			put(w, m->item_content[item], m->config.content_dim * sizeof(float));
	}
}

/* An item's row of the given layout: its vectors, its counts, or both. */
static size_t export_item(const struct model *m, uint32_t item, uint32_t version,
			  unsigned parts, void *buf, size_t capacity)
{
	struct row_writer w = {buf, capacity, 0};
	put_header(&w, m, version);
	if (version == ITEM_Q_ROW_VERSION)
		put_item_q(&w, m, item);
	else if (version == ITEM_Y_ROW_VERSION)
		put_item_y(&w, m, item);
	else if (parts & MODEL_ITEM_VECTOR)
		put_item_vector(&w, m, item);
	if (parts & MODEL_ITEM_COUNTS)
		put_item_counts(&w, m, item);
	return w.size;
}

void model_prefetch_item_counts(const struct model *model, uint32_t item, bool near)
{
	if (near) {
		covis_prefetch(model->covis, item, true);
		return;
	}
	popularity_prefetch(model->popularity, item);
	sampler_prefetch(model->sampler, item);
	covis_prefetch(model->covis, item, false);
}

void model_set_payer(struct model *model, model_pay_fn pay, void *ctx)
{
	model->pay = pay;
	model->pay_ctx = ctx;
}

bool model_owe_item_vector(struct model *model, uint32_t item)
{
	struct model *m = model;
	if ((size_t)item >= m->items || m->pay == NULL)
		return false;
	if (m->item_owed[item])
		return true;
	uint8_t parts = model_item_dirty_parts(m, item) & (MODEL_ITEM_VECTOR | MODEL_ITEM_Y);
	if (parts == 0)
		return false; /* listed for its counts alone: nothing to owe */
	if (m->owed_left == 0)
		m->owed_listed = m->owed_next = 0; /* the last commit's list is paid */
	m->item_owed[item] = parts;
	m->owed_items[m->owed_listed++] = item;
	m->owed_left++;
	return true;
}

/* How far ahead of the row it pays model_pay_owed() starts loading one. */
#define PAY_PREFETCH_AHEAD 8

size_t model_pay_owed(struct model *model, size_t budget)
{
	struct model *m = model;
	for (size_t paid = 0; paid < budget && m->owed_left > 0; m->owed_next++) {
		if (m->owed_next + PAY_PREFETCH_AHEAD < m->owed_listed) {
			uint32_t ahead = m->owed_items[m->owed_next + PAY_PREFETCH_AHEAD];
			const char *q = (const char *)(m->matrix + (size_t)ahead * m->stride);
			const char *y = (const char *)(m->y + (size_t)ahead * m->dim);
			for (size_t at = 0; at < m->stride * sizeof(float); at += 64)
				__builtin_prefetch(q + at);
			__builtin_prefetch(q + m->stride * sizeof(float) - 1);
			for (size_t at = 0; at < m->dim * sizeof(float); at += 64)
				__builtin_prefetch(y + at);
			__builtin_prefetch(y + m->dim * sizeof(float) - 1);
			__builtin_prefetch(&m->scalar[ahead]);
		}
		uint32_t item = m->owed_items[m->owed_next];
		unsigned parts = m->item_owed[item];
		if (parts == 0)
			continue; /* paid before a write */
		m->item_owed[item] = 0;
		m->owed_left--;
		m->pay(m->pay_ctx, m, item, parts);
		paid++;
	}
	return m->owed_left;
}

size_t model_owed_count(const struct model *model)
{
	return model->owed_left;
}

size_t model_export_item(const struct model *model, uint32_t item, void *buf, size_t capacity)
{
	return export_item(model, item, ROW_VERSION, ITEM_PARTS, buf, capacity);
}

size_t model_export_item_vector(const struct model *model, uint32_t item, void *buf,
				size_t capacity)
{
	return export_item(model, item, ITEM_Q_ROW_VERSION, MODEL_ITEM_VECTOR, buf, capacity);
}

size_t model_export_item_y(const struct model *model, uint32_t item, void *buf, size_t capacity)
{
	return export_item(model, item, ITEM_Y_ROW_VERSION, MODEL_ITEM_Y, buf, capacity);
}

size_t model_export_item_counts(const struct model *model, uint32_t item, void *buf,
				size_t capacity)
{
	return export_item(model, item, ITEM_COUNTS_ROW_VERSION, MODEL_ITEM_COUNTS, buf, capacity);
}

unsigned model_item_dirty_parts(const struct model *model, uint32_t item)
{
	if ((size_t)item >= model->items)
		return 0;
	uint8_t bits = model->item_dirty[item];
	if ((bits & ITEM_PARTS) && (bits & ITEM_LEGACY))
		return ITEM_PARTS;
	if ((bits & MODEL_ITEM_VECTOR) && (bits & ITEM_Y_LEGACY))
		bits |= MODEL_ITEM_Y; /* its q row replaces the row that held y */
	return bits & ITEM_PARTS;
}

/* Reads an item row's content section, when it has one. */
static int import_item_content(struct model *m, uint32_t item, struct row_reader *r,
			       char *errstr, size_t errstr_size)
{
	uint8_t flags = 0, has_content = 0;
	if (m->item_content[item] != NULL) {
		free(m->item_content[item]);
		m->item_content[item] = NULL;
		m->content_waiting--;
	}
	if (r->at < r->len) {
		get(r, &flags, 1);
		get(r, &has_content, 1);
		if (flags & CONTENT_PRIOR)
			get(r, m->item_prior + (size_t)item * m->dim, m->dim * sizeof(float));
		if (has_content && !r->failed) {
			m->item_content[item] = malloc(m->config.content_dim * sizeof(float));
			if (m->item_content[item] == NULL) {
				set_errstr(errstr, errstr_size, "out of memory restoring item %u",
					   item);
				return -1;
			}
			m->content_waiting++;
			get(r, m->item_content[item], m->config.content_dim * sizeof(float));
		}
	}
	m->item_content_flags[item] = flags;
	return 0;
}

/* Reads an item's q row (put_item_q). */
static void get_item_q(struct row_reader *r, struct model *m, uint32_t item)
{
	struct item_scalars *sc = &m->scalar[item];
	before_vector_write(m, item);
	get(r, m->matrix + (size_t)item * m->stride, m->stride * sizeof(float));
	mark_moved(m, item);
	get(r, &sc->bias, sizeof sc->bias);
	get(r, &sc->correction, sizeof sc->correction);
	get(r, &sc->q_accum, sizeof sc->q_accum);
	get(r, &sc->bias_accum, sizeof sc->bias_accum);
}

/* Reads an item's y row (put_item_y). */
static void get_item_y(struct row_reader *r, struct model *m, uint32_t item)
{
	before_vector_write(m, item);
	get(r, m->y + (size_t)item * m->dim, m->dim * sizeof(float));
	get(r, &m->scalar[item].y_accum, sizeof m->scalar[item].y_accum);
}

/* Reads an item's vectors (put_item_vector). */
static void get_item_vector(struct row_reader *r, struct model *m, uint32_t item)
{
	before_vector_write(m, item);
	get(r, m->matrix + (size_t)item * m->stride, m->stride * sizeof(float));
	mark_moved(m, item);
	get(r, m->y + (size_t)item * m->dim, m->dim * sizeof(float));
	get(r, &m->scalar[item], sizeof m->scalar[item]);
}

/* Reads an item's counts (put_item_counts) to the row's end and restores them. */
static int get_item_counts(struct row_reader *r, struct model *m, uint32_t item, char *errstr,
			   size_t errstr_size)
{
	struct popularity_item pop;
	struct sampler_place place;
	uint32_t n, *succ = NULL;
	float *weight = NULL;
	get(r, &pop.count, sizeof pop.count);
	get(r, &pop.rank, sizeof pop.rank);
	get(r, &pop.trend, sizeof pop.trend);
	get(r, &place.bucket, sizeof place.bucket);
	get(r, &place.position, sizeof place.position);
	get(r, &n, sizeof n);
	if (r->failed || n > m->config.covis_neighbours) {
		set_errstr(errstr, errstr_size, "item row %u: truncated or inconsistent", item);
		return -1;
	}
	succ = malloc((n ? n : 1) * sizeof *succ);
	weight = malloc((n ? n : 1) * sizeof *weight);
	if (succ == NULL || weight == NULL)
		goto out_nomem;
	get(r, succ, n * sizeof *succ);
	get(r, weight, n * sizeof *weight);
	if (!r->failed && m->content_map != NULL &&
	    import_item_content(m, item, r, errstr, errstr_size) != 0)
		goto out_free;
	if (r->failed || r->at != r->len) {
		/* a content section of another shape, or one a model without content cannot read */
		set_errstr(errstr, errstr_size,
			   "item row %u: %zu bytes, expected %zu%s", item, r->len, r->at,
			   m->content_map == NULL && !r->failed && r->at < r->len
			       ? " (it holds content state: content.dim was set when it was written)"
			   : m->content_map != NULL ? " (content.dim changed since it was written?)"
						    : "");
		goto out_free;
	}
	if (popularity_restore_item(m->popularity, item, &pop) != 0 ||
	    sampler_restore_item(m->sampler, item, pop.count, place) != 0 ||
	    covis_restore(m->covis, item, succ, weight, n) != 0)
		goto out_nomem;
	free(succ);
	free(weight);
	return 0;
out_nomem:
	set_errstr(errstr, errstr_size, "out of memory restoring item %u", item);
out_free:
	free(succ);
	free(weight);
	return -1;
}

/* The layout a row names in its first four bytes (0 when too short). */
static uint32_t row_layout(const void *row, size_t len)
{
	uint32_t version = 0;
	if (len >= sizeof version)
		memcpy(&version, row, sizeof version);
	return version;
}

int model_import_item(struct model *model, uint32_t item, const void *row, size_t len, char *errstr,
		      size_t errstr_size)
{
	struct model *m = model;
	struct row_reader r = {row, len, 0, false};
	uint32_t layout = row_layout(row, len);
	bool whole = layout == ROW_VERSION;
	if (layout != ITEM_Q_ROW_VERSION && layout != ITEM_Y_ROW_VERSION)
		layout = whole ? ROW_VERSION : ITEM_VECTOR_ROW_VERSION; /* or says what it is not */
	if (check_header(&r, m, "item", layout, errstr, errstr_size) != 0)
		return -1;
	if (ensure_items(m, (size_t)item + 1) != 0) {
		set_errstr(errstr, errstr_size, "out of memory restoring item %u", item);
		return -1;
	}
	if ((size_t)item >= m->items)
		m->items = (size_t)item + 1;
	if (layout == ITEM_Q_ROW_VERSION)
		get_item_q(&r, m, item);
	else if (layout == ITEM_Y_ROW_VERSION)
		get_item_y(&r, m, item);
	else
		get_item_vector(&r, m, item);
	if (whole) {
		if (get_item_counts(&r, m, item, errstr, errstr_size) != 0)
			return -1;
		m->item_dirty[item] |= ITEM_LEGACY;
	} else if (r.failed || r.at != len) {
		set_errstr(errstr, errstr_size, "item %s row %u: %zu bytes, expected %zu",
			   layout == ITEM_Y_ROW_VERSION ? "y" : "vector", item, len, r.at);
		return -1;
	}
	if (layout == ITEM_VECTOR_ROW_VERSION)
		m->item_dirty[item] |= ITEM_Y_LEGACY;
	else if (layout == ITEM_Y_ROW_VERSION) /* read after the row it overrides */
		m->item_dirty[item] &= (uint8_t)~ITEM_Y_LEGACY;
	if (layout != ITEM_Y_ROW_VERSION)
		m->item_ready[item] = 1;
	return 0;
}

int model_import_item_counts(struct model *model, uint32_t item, const void *row, size_t len,
			     char *errstr, size_t errstr_size)
{
	struct model *m = model;
	struct row_reader r = {row, len, 0, false};
	if (check_header(&r, m, "item counts", ITEM_COUNTS_ROW_VERSION, errstr, errstr_size) != 0)
		return -1;
	if ((size_t)item >= m->items || !m->item_ready[item]) {
		set_errstr(errstr, errstr_size,
			   "item counts row %u: no vector row of that item came before it", item);
		return -1;
	}
	return get_item_counts(&r, m, item, errstr, errstr_size);
}

struct saved_globals {
	uint64_t step, random_state;
	uint64_t users, items;
	double covis_scale;
	struct popularity_globals popularity;
	struct sampler_globals sampler;
};

size_t model_export_globals(const struct model *model, void *buf, size_t capacity)
{
	struct row_writer w = {buf, capacity, 0};
	struct saved_globals g;
	memset(&g, 0, sizeof g);
	g.step = model->step;
	g.random_state = model->random_state;
	g.users = 0; /* users are restored row by row, into whatever slots the caller picks */
	g.items = model->items;
	g.covis_scale = covis_scale(model->covis);
	popularity_get_globals(model->popularity, &g.popularity);
	sampler_get_globals(model->sampler, &g.sampler);
	put_header(&w, model, ROW_VERSION);
	put(&w, &g, sizeof g);
	return w.size;
}

int model_import_globals(struct model *model, const void *buf, size_t len, char *errstr,
			 size_t errstr_size)
{
	struct model *m = model;
	struct row_reader r = {buf, len, 0, false};
	struct saved_globals g;
	if (check_header(&r, m, "globals", ROW_VERSION, errstr, errstr_size) != 0)
		return -1;
	get(&r, &g, sizeof g);
	if (r.failed || r.at != len) {
		set_errstr(errstr, errstr_size, "globals: %zu bytes, expected %zu", len,
			   sizeof g + 8);
		return -1;
	}
	if (ensure_users(m, g.users) != 0 || ensure_items(m, g.items) != 0) {
		set_errstr(errstr, errstr_size, "out of memory restoring the globals");
		return -1;
	}
	if (m->items < g.items)
		m->items = g.items;
	if (m->users < g.users)
		m->users = g.users;
	m->step = g.step;
	m->random_state = g.random_state;
	covis_set_scale(m->covis, g.covis_scale);
	if (popularity_set_globals(m->popularity, &g.popularity) != 0 ||
	    sampler_set_globals(m->sampler, &g.sampler) != 0) {
		set_errstr(errstr, errstr_size,
			   "globals do not match the item rows restored (missing item rows?)");
		return -1;
	}
	return 0;
}

/* ---- portable user rows (state handed between instances) -------------------------- */

static int compare_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

int model_user_row_items(const struct model *model, void *row, size_t len,
			 int (*visit)(uint32_t *item, void *ctx), void *ctx)
{
	const struct model *m = model;
	unsigned char *b = row;
	size_t L = m->config.recent_items;
	size_t at = 2 * sizeof(uint32_t) + (m->dim + 1) * sizeof(float);
	uint16_t state[2];
	uint32_t version, dim, count, item;

	if (len < at + sizeof state + L * sizeof(uint32_t) + sizeof count)
		return -1;
	memcpy(&version, b, sizeof version);
	memcpy(&dim, b + sizeof version, sizeof dim);
	if (version != ROW_VERSION || dim != m->dim)
		return -1;
	memcpy(state, b + at, sizeof state);
	if (state[0] > L || state[1] >= L)
		return -1;
	at += sizeof state;
	/* the ring's valid entries only (the others hold nothing) */
	size_t n = state[0], head = state[1];
	size_t slot = head >= n ? head - n : head + L - n;
	for (size_t k = 0; k < n; k++) {
		unsigned char *where = b + at + slot * sizeof item;
		memcpy(&item, where, sizeof item);
		if (visit(&item, ctx) != 0)
			return -1;
		memcpy(where, &item, sizeof item);
		if (++slot == L)
			slot = 0;
	}
	at += L * sizeof(uint32_t);
	memcpy(&count, b + at, sizeof count);
	at += sizeof count;
	if (count > (len - at) / sizeof(uint32_t))
		return -1;
	uint32_t *excluded = malloc((count ? count : 1) * sizeof *excluded);
	if (excluded == NULL)
		return -1;
	memcpy(excluded, b + at, count * sizeof *excluded);
	for (size_t k = 0; k < count; k++)
		if (visit(&excluded[k], ctx) != 0) {
			free(excluded);
			return -1;
		}
	/* a set is kept sorted: the new numbering orders it differently */
	qsort(excluded, count, sizeof *excluded, compare_u32);
	memcpy(b + at, excluded, count * sizeof *excluded);
	free(excluded);
	return 0;
}

void model_touch_user(struct model *model, uint32_t user)
{
	if ((size_t)user < model->users)
		mark_user(model, user);
}

int model_add_item(struct model *model, uint32_t item, uint64_t hash)
{
	return ensure_item(model, item, hash);
}

size_t model_item_neighbours(const struct model *model, uint32_t item, const uint32_t **items)
{
	const float *weights;
	return covis_successors(model->covis, item, items, &weights);
}

size_t model_user_exclusions(const struct model *model, uint32_t user, const uint32_t **items)
{
	if ((size_t)user >= model->users) {
		*items = NULL;
		return 0;
	}
	*items = model->exclude[user].items;
	return model->exclude[user].count;
}

/* ---- sharing item parameters between instances ------------------------------------- */

size_t model_share_param_count(const struct model *model)
{
	return 2 * model->dim + 1;
}

int model_share_enable(struct model *model)
{
	struct model *m = model;
	size_t n = model_share_param_count(m);
	if (m->sharing)
		return 0;
	m->shared_flag = calloc(m->item_capacity ? m->item_capacity : 1, 1);
	m->shared_items = calloc(m->item_capacity ? m->item_capacity : 1, sizeof(uint32_t));
	m->shared_base = calloc((m->item_capacity ? m->item_capacity : 1) * n, sizeof(float));
	if (m->shared_flag == NULL || m->shared_items == NULL || m->shared_base == NULL)
		return -1;
	/* what the model holds now (restored from its state) is the base */
	for (size_t i = 0; i < m->items; i++)
		if (m->item_ready[i])
			share_params(m, (uint32_t)i, m->shared_base + i * n);
	m->sharing = true;
	return 0;
}

size_t model_share_take(struct model *model, uint32_t *items, float *deltas, size_t capacity)
{
	struct model *m = model;
	size_t n = model_share_param_count(m), taken = 0;
	float *now = malloc(n * sizeof *now);
	if (now == NULL)
		return 0;
	while (m->shared_count > 0 && taken < capacity) {
		uint32_t item = m->shared_items[--m->shared_count];
		float *base = m->shared_base + (size_t)item * n, *delta = deltas + taken * n;
		bool moved = false;
		m->shared_flag[item] = 0;
		share_params(m, item, now);
		for (size_t k = 0; k < n; k++) {
			delta[k] = now[k] - base[k];
			moved |= delta[k] != 0.0f;
		}
		memcpy(base, now, n * sizeof *now);
		if (moved) /* a fold alone moves nothing of ours */
			items[taken++] = item;
	}
	free(now);
	return taken;
}

void model_share_fold(struct model *model, uint32_t item, const float *delta)
{
	struct model *m = model;
	size_t n = model_share_param_count(m), dim = m->dim;
	if (!m->sharing || (size_t)item >= m->items || !m->item_ready[item])
		return;
	before_vector_write(m, item);
	float *q = m->matrix + (size_t)item * m->stride, *y = m->y + (size_t)item * dim;
	float *base = m->shared_base + (size_t)item * n;
	for (size_t k = 0; k < dim; k++) {
		q[k] += delta[k];
		y[k] += delta[dim + k];
	}
	m->scalar[item].bias += delta[2 * dim];
	for (size_t k = 0; k < n; k++)
		base[k] += delta[k];
	refresh_bias_column(m, item); /* the row moved: the lists' view syncs it */
	mark_item(m, item);           /* the commit writes it */
}
