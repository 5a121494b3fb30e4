/*
 * Content vectors (model/content.h, model_item_content()): the map learns a
 * planted linear map; in a model, a new item starts where its content says
 * (near the learned vectors of its kind), ranks before anyone acted on it,
 * is pulled back towards that place while rare; and the map, the items'
 * content state and all persist bit for bit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "content.h"
#include "model.h"
#include "rng.h"

static double normal(uint64_t *state)
{
	double u = rng_uniform(state), v = rng_uniform(state);
	return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

/* ---- the map alone ---------------------------------------------------------------- */

#define MC 20 /* content dimension */
#define MD 8  /* item dimension */

static void planted(const float *w, const float *c, float *q)
{
	for (size_t j = 0; j < MD; j++) {
		double sum = w[MC * MD + j]; /* the intercept row */
		for (size_t i = 0; i < MC; i++)
			sum += (double)w[i * MD + j] * c[i];
		q[j] = (float)sum;
	}
}

static double distance(const float *a, const float *b, size_t n)
{
	double sum = 0;
	for (size_t k = 0; k < n; k++)
		sum += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
	return sqrt(sum);
}

static double norm(const float *a, size_t n)
{
	double sum = 0;
	for (size_t k = 0; k < n; k++)
		sum += (double)a[k] * a[k];
	return sqrt(sum);
}

static void test_map_learns_a_planted_linear_map(void **unused)
{
	(void)unused;
	uint64_t rng = 7;
	float w[(MC + 1) * MD], c[MC], q[MD], got[MD];
	char errstr[256];
	for (size_t k = 0; k < (MC + 1) * MD; k++)
		w[k] = (float)normal(&rng);
	struct content_map *map = content_map_new(MC, MD, 1e-3);
	assert_non_null(map);
	assert_null(content_map_new(0, MD, 1));  /* bounds are refused */
	assert_null(content_map_new(MC, MD, 0));
	/* before any solve: zeros */
	for (size_t i = 0; i < MC; i++)
		c[i] = 1;
	content_map_apply(map, c, got);
	assert_true(norm(got, MD) == 0);

	for (int n = 0; n < 400; n++) {
		for (size_t i = 0; i < MC; i++)
			c[i] = (float)normal(&rng);
		planted(w, c, q);
		for (size_t j = 0; j < MD; j++)
			q[j] += (float)(0.01 * normal(&rng)); /* a little noise on the targets */
		content_map_add(map, c, q);
	}
	assert_int_equal(content_map_pairs(map), 400);
	assert_int_equal(content_map_solved_pairs(map), 0);
	assert_int_equal(content_map_solve(map, errstr, sizeof errstr), 0);
	assert_int_equal(content_map_solved_pairs(map), 400);
	/* unseen content vectors map onto the planted truth */
	double worst = 0;
	for (int n = 0; n < 50; n++) {
		for (size_t i = 0; i < MC; i++)
			c[i] = (float)normal(&rng);
		planted(w, c, q);
		content_map_apply(map, c, got);
		double relative = distance(got, q, MD) / norm(q, MD);
		if (relative > worst)
			worst = relative;
	}
	assert_true(worst < 0.02);

	/* export and import: the same map, bit for bit */
	size_t bytes = content_map_bytes(map);
	unsigned char *buf = malloc(bytes);
	assert_non_null(buf);
	content_map_export(map, buf);
	struct content_map *again = content_map_new(MC, MD, 1e-3);
	assert_int_equal(content_map_import(again, buf, bytes, errstr, sizeof errstr), 0);
	assert_true(content_map_digest(again) == content_map_digest(map));
	/* a map of another shape refuses it, naming the dimensions */
	struct content_map *other = content_map_new(MC + 1, MD, 1e-3);
	assert_int_equal(content_map_import(other, buf, bytes, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "content map"));
	content_map_free(other);
	content_map_free(again);
	content_map_free(map);
	free(buf);
}

/* ---- in the model ------------------------------------------------------------------- */

#define C        12  /* content dimension */
#define LATENT   4
#define CLUSTERS 5
#define PER      50  /* items per cluster; the last NEW of each never get events */
#define NEW      10
#define ITEMS    (CLUSTERS * PER)
#define USERS    200
#define EVENTS   30000

static float content[ITEMS][C];

static uint32_t cluster_of(uint32_t item)
{
	return item / PER;
}

/* Content vectors from a planted latent factor per cluster through a fixed
 * random projection, plus noise (as `streamrec gen --content` makes them). */
static void make_content(void)
{
	uint64_t rng = 11;
	float g[CLUSTERS][LATENT], p[C][LATENT];
	for (size_t k = 0; k < CLUSTERS; k++)
		for (size_t h = 0; h < LATENT; h++)
			g[k][h] = (float)normal(&rng);
	for (size_t c = 0; c < C; c++)
		for (size_t h = 0; h < LATENT; h++)
			p[c][h] = (float)(normal(&rng) / 2.0);
	for (uint32_t i = 0; i < ITEMS; i++)
		for (size_t c = 0; c < C; c++) {
			double x = 0.1 * normal(&rng);
			for (size_t h = 0; h < LATENT; h++)
				x += p[c][h] * g[cluster_of(i)][h];
			content[i][c] = (float)x;
		}
}

/* Users act on items of their own cluster (user % CLUSTERS), never on the
 * last NEW items of a cluster. */
static struct model_event event_at(uint64_t e)
{
	uint64_t x = (e + 1) * 0x9E3779B97F4A7C15ULL;
	uint32_t user = (uint32_t)((x >> 13) % USERS);
	uint32_t item = (uint32_t)((user % CLUSTERS) * PER + (x >> 37) % (PER - NEW));
	return (struct model_event){.user = user,
				    .item = item,
				    .user_hash = user * 2654435761u + 1,
				    .item_hash = item * 40503u + 3,
				    .type = (x >> 60) % 3 == 0 ? EVENT_CLICK : EVENT_VIEW,
				    .ts_ms = 1700000000000LL + (int64_t)e * 100};
}

static uint64_t item_hash(uint32_t item)
{
	return item * 40503u + 3;
}

static struct model *new_model(bool use_content, float prior)
{
	struct model_config config;
	char errstr[256];
	model_config_default(&config);
	config.dim = 8;
	config.content_dim = C;
	config.content_min_events = 5;
	config.content_refit_items = 8;
	config.content_prior_weight = prior;
	config.use_content = use_content;
	struct model *m = model_new(&config, errstr, sizeof errstr);
	assert_non_null(m);
	return m;
}

/* Learns events [from, to), announcing each item's content before its first event. */
static void learn(struct model *m, uint64_t from, uint64_t to, uint8_t *announced)
{
	char errstr[256];
	for (uint64_t e = from; e < to; e++) {
		struct model_event ev = event_at(e);
		if (!announced[ev.item]) {
			announced[ev.item] = 1;
			assert_true(model_item_content(m, ev.item, ev.item_hash, content[ev.item],
						       errstr, sizeof errstr) >= 0);
		}
		assert_int_equal(model_learn(m, &ev, errstr, sizeof errstr), 0);
	}
}

static double cosine(const float *a, const float *b, size_t n)
{
	double ab = 0, aa = 0, bb = 0;
	for (size_t k = 0; k < n; k++) {
		ab += (double)a[k] * b[k];
		aa += (double)a[k] * a[k];
		bb += (double)b[k] * b[k];
	}
	return ab / (sqrt(aa * bb) + 1e-30);
}

static void test_new_item_starts_near_its_kind_and_ranks(void **unused)
{
	(void)unused;
	char errstr[256];
	uint8_t announced[ITEMS] = {0};
	struct model *m = new_model(true, 0.05f);
	struct model *off = new_model(false, 0.05f);
	uint8_t announced_off[ITEMS] = {0};
	learn(m, 0, EVENTS, announced);
	learn(off, 0, EVENTS, announced_off);
	struct model_content_stats stats;
	model_content_stats(m, &stats);
	assert_true(stats.enabled);
	assert_int_equal(stats.pairs, CLUSTERS * (PER - NEW)); /* every item with events taught it */
	assert_true(stats.solved_pairs > 0);
	assert_int_equal(stats.waiting, 0);

	/* the learned vectors' mean per cluster */
	float mean[CLUSTERS][8] = {{0}};
	for (uint32_t i = 0; i < ITEMS; i++) {
		if ((i % PER) >= PER - NEW)
			continue;
		const float *q = model_item_vector(m, i);
		for (size_t k = 0; k < 8; k++)
			mean[cluster_of(i)][k] += q[k] / (float)(PER - NEW);
	}
	size_t nearest_own = 0, hash_nearest_own = 0;
	for (uint32_t i = 0; i < ITEMS; i++) {
		if ((i % PER) < PER - NEW)
			continue;
		/* a new item: placed from its content (the other model: not) */
		assert_int_equal(model_item_content(m, i, item_hash(i), content[i], errstr,
						    sizeof errstr),
				 1);
		assert_true(model_item_content_placed(m, i));
		assert_int_equal(model_item_content(off, i, item_hash(i), content[i], errstr,
						    sizeof errstr),
				 0);
		assert_false(model_item_content_placed(off, i));
		for (int which = 0; which < 2; which++) {
			const float *q = model_item_vector(which == 0 ? m : off, i);
			size_t best = 0;
			for (size_t k = 1; k < CLUSTERS; k++)
				if (cosine(q, mean[k], 8) > cosine(q, mean[best], 8))
					best = k;
			if (best == cluster_of(i))
				*(which == 0 ? &nearest_own : &hash_nearest_own) += 1;
		}
		/* placed: it can rank before its first event (no never-counted penalty) */
		size_t n, stride;
		const float *matrix = model_item_matrix(m, &n, &stride);
		assert_true(matrix[(size_t)i * stride + 8] > -100.0f);
		matrix = model_item_matrix(off, &n, &stride);
		assert_true(matrix[(size_t)i * stride + 8] < -100.0f);
	}
	/* all of 50 new items start nearest to their own kind; from the hash, about a fifth */
	assert_true(nearest_own >= 48);
	assert_true(hash_nearest_own < 25);
	/* a second announcement (the catalogue is re-read at every start) changes nothing */
	uint64_t digest = model_digest(m);
	uint32_t some_new = PER - 1;
	assert_int_equal(model_item_content(m, some_new, item_hash(some_new), content[some_new],
					    errstr, sizeof errstr),
			 0);
	assert_true(model_digest(m) == digest);
	model_free(m);
	model_free(off);
}

static void test_prior_pulls_a_rare_item_back(void **unused)
{
	(void)unused;
	char errstr[256];
	double moved[2];
	for (int strong = 0; strong < 2; strong++) {
		uint8_t announced[ITEMS] = {0};
		struct model *m = new_model(true, strong ? 5.0f : 0.0f);
		learn(m, 0, 20000, announced);
		uint32_t item = PER - 1; /* cluster 0's last item: no events so far */
		assert_int_equal(model_item_content(m, item, item_hash(item), content[item], errstr,
						    sizeof errstr),
				 1);
		const float *prior = model_item_content_prior(m, item);
		assert_non_null(prior);
		/* users of another cluster click it: their taste drags it away */
		for (uint32_t e = 0; e < 20; e++) {
			struct model_event ev = {.user = 1 + 5 * (e % 10),
						 .item = item,
						 .user_hash = (1 + 5 * (e % 10)) * 2654435761u + 1,
						 .item_hash = item_hash(item),
						 .type = EVENT_CLICK,
						 .ts_ms = 1800000000000LL + e};
			assert_int_equal(model_learn(m, &ev, errstr, sizeof errstr), 0);
		}
		moved[strong] = distance(model_item_vector(m, item), prior, 8);
		model_free(m);
	}
	/* the prior keeps the rare item nearer to where its content put it */
	assert_true(moved[1] < 0.8 * moved[0]);
}

/* ---- search intent ---------------------------------------------------------------------- */

/* The mean of the user's dense query (p_u + ybar_u + search) times q_i over
 * the items of `cluster` that users act on: how much the query favours it. */
static double cluster_affinity(struct model *m, uint32_t user, uint32_t cluster)
{
	float vector[9];
	uint32_t *sparse_items = malloc(model_sparse_capacity(m) * sizeof *sparse_items);
	float *sparse_scores = malloc(model_sparse_capacity(m) * sizeof *sparse_scores);
	struct model_query query = {.vector = vector,
				    .sparse_items = sparse_items,
				    .sparse_scores = sparse_scores};
	double sum = 0;
	assert_non_null(sparse_items);
	assert_non_null(sparse_scores);
	model_query(m, user, &query);
	for (uint32_t i = cluster * PER; i < cluster * PER + PER - NEW; i++) {
		const float *q = model_item_vector(m, i);
		for (size_t k = 0; k < 8; k++)
			sum += (double)vector[k] * q[k];
	}
	free(sparse_items);
	free(sparse_scores);
	return sum / (PER - NEW);
}

static void test_search_moves_intent_and_fades(void **unused)
{
	(void)unused;
	char errstr[256];
	uint8_t announced[ITEMS] = {0};
	struct model *m = new_model(true, 0.05f);
	struct model *off;
	learn(m, 0, EVENTS, announced);
	uint32_t user = 5; /* of cluster 0 */
	uint64_t hash = user * 2654435761u + 1;
	double before[CLUSTERS], after[CLUSTERS];
	for (uint32_t k = 0; k < CLUSTERS; k++)
		before[k] = cluster_affinity(m, user, k);
	/* a query in cluster 2's content */
	assert_int_equal(model_search(m, user, hash, content[2 * PER + 1], errstr, sizeof errstr),
			 1);
	assert_true(model_user_search_weight(m, user) == 10.0f);
	for (uint32_t k = 0; k < CLUSTERS; k++)
		after[k] = cluster_affinity(m, user, k);
	print_message("affinity to cluster 2 before the search %.3f, after %.3f; to cluster 0 "
		      "%.3f, %.3f\n",
		      before[2], after[2], before[0], after[0]);
	/* the query now favours cluster 2 more than any other cluster gained */
	for (uint32_t k = 0; k < CLUSTERS; k++)
		if (k != 2)
			assert_true(after[2] - before[2] > 2 * (after[k] - before[k]) &&
				    after[2] - before[2] > 0.5);

	/* the search is in the user's row: a restored user lists the same */
	unsigned char row[4096];
	size_t n = model_export_user(m, user, row, sizeof row);
	assert_true(n <= sizeof row);
	model_forget_user(m, user);
	assert_true(model_user_search_weight(m, user) == 0.0f);
	assert_int_equal(model_import_user(m, user, row, n, errstr, sizeof errstr), 0);
	assert_true(model_user_search_weight(m, user) == 10.0f);
	assert_true(cluster_affinity(m, user, 2) == after[2]);

	/* it fades over the user's next recent_items positive events */
	const struct model_config *config = model_config(m);
	for (unsigned e = 0; e < config->recent_items; e++) {
		struct model_event ev = {.user = user,
					 .item = (uint32_t)e,
					 .user_hash = hash,
					 .item_hash = item_hash((uint32_t)e),
					 .type = EVENT_CLICK,
					 .ts_ms = 1900000000000LL + e};
		float weight = model_user_search_weight(m, user);
		assert_int_equal(model_learn(m, &ev, errstr, sizeof errstr), 0);
		assert_true(model_user_search_weight(m, user) < weight);
	}
	assert_true(model_user_search_weight(m, user) == 0.0f);
	/* faded: the row holds no search any more (as many bytes as before the search) */
	assert_true(model_export_user(m, user, row, sizeof row) <
		    n - 8 * sizeof(float)); /* the search section (left, 8 floats) is gone */

	/* the signal off: the search is not applied */
	off = new_model(true, 0.05f);
	memset(announced, 0, sizeof announced);
	learn(off, 0, 4000, announced);
	struct model_config plain = *model_config(off);
	model_free(off);
	plain.use_search = false;
	off = model_new(&plain, errstr, sizeof errstr);
	assert_non_null(off);
	memset(announced, 0, sizeof announced);
	learn(off, 0, 4000, announced);
	assert_int_equal(model_search(off, user, hash, content[2 * PER + 1], errstr, sizeof errstr),
			 0);
	assert_true(model_user_search_weight(off, user) == 0.0f);
	model_free(off);
	model_free(m);
}

/* ---- persistence ---------------------------------------------------------------------- */

static void test_content_state_persists_bit_for_bit(void **unused)
{
	(void)unused;
	char errstr[256];
	uint8_t announced[ITEMS] = {0}, announced_copy[ITEMS];
	struct model *m = new_model(true, 0.05f);
	learn(m, 0, 8000, announced);
	/* a few new items placed, some items still waiting with their vector */
	for (uint32_t i = PER - NEW; i < PER - NEW + 3; i++)
		assert_int_equal(model_item_content(m, i, item_hash(i), content[i], errstr,
						    sizeof errstr),
				 1);
	struct model_content_stats stats;
	model_content_stats(m, &stats);
	assert_true(stats.solved_pairs > 0);

	/* restore everything into a fresh model */
	struct model *r = new_model(true, 0.05f);
	unsigned char *row = malloc(1 << 16);
	assert_non_null(row);
	/* nothing was saved yet: every row there is counts as changed */
	const uint32_t *ids;
	size_t count = model_dirty_items(m, &ids);
	for (size_t k = 0; k < count; k++) {
		size_t n = model_export_item(m, ids[k], row, 1 << 16);
		assert_true(n <= (1 << 16));
		assert_int_equal(model_import_item(r, ids[k], row, n, errstr, sizeof errstr), 0);
	}
	count = model_dirty_users(m, &ids);
	for (size_t k = 0; k < count; k++) {
		size_t n = model_export_user(m, ids[k], row, 1 << 16);
		assert_int_equal(model_import_user(r, ids[k], row, n, errstr, sizeof errstr), 0);
	}
	size_t n = model_export_globals(m, row, 1 << 16);
	assert_int_equal(model_import_globals(r, row, n, errstr, sizeof errstr), 0);
	assert_true(model_content_dirty(m));
	size_t bytes = model_export_content(m, NULL, 0);
	unsigned char *map = malloc(bytes);
	assert_non_null(map);
	assert_int_equal(model_export_content(m, map, bytes), bytes);
	assert_int_equal(model_import_content(r, map, bytes, errstr, sizeof errstr), 0);
	assert_true(model_digest(r) == model_digest(m));
	assert_true(model_content_digest(r) == model_content_digest(m));
	assert_true(model_item_content_placed(r, PER - NEW));

	/* both go on alike: folds, solves and placements included */
	memcpy(announced_copy, announced, sizeof announced);
	learn(m, 8000, 16000, announced);
	learn(r, 8000, 16000, announced_copy);
	assert_true(model_digest(r) == model_digest(m));
	assert_true(model_content_digest(r) == model_content_digest(m));

	/* a model without content refuses a saved map, saying why */
	struct model_config plain;
	model_config_default(&plain);
	plain.dim = 8;
	struct model *p = model_new(&plain, errstr, sizeof errstr);
	assert_int_equal(model_import_content(p, map, bytes, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "content"));
	assert_int_equal(model_content_digest(p), 0);
	model_free(p);
	free(map);
	free(row);
	model_free(m);
	model_free(r);
}

/* ---- scale-out: instances sharing item changes ---------------------------------------- */

/* Folds every item change `from` took since its last take into `to`, as
 * daemon/itemsync.c does between instances. @returns the changes. */
static size_t exchange(struct model *from, struct model *to)
{
	size_t n = model_share_param_count(from), moved = 0, taken;
	uint32_t items[64];
	float *deltas = malloc(64 * n * sizeof *deltas);
	assert_non_null(deltas);
	while ((taken = model_share_take(from, items, deltas, 64)) > 0) {
		for (size_t k = 0; k < taken; k++)
			model_share_fold(to, items[k], deltas + k * n);
		moved += taken;
	}
	free(deltas);
	return moved;
}

/*
 * Two instances of a group both read the catalogue, so both place a new item
 * from their own content map. The placement is each instance's own start for
 * the item, not a change learned from events: shared as a delta, it was
 * added a second time on top of the other instance's own placement (q moved
 * by prior - hash start), and that doubled vector is what the other
 * instance's map later folded. Learned changes still travel, and each
 * instance folds the item into its own map once, at its own
 * content_min_events positives.
 */
static void test_a_placed_item_is_placed_once_in_a_group(void **unused)
{
	(void)unused;
	char errstr[256];
	uint8_t announced_a[ITEMS] = {0}, announced_b[ITEMS] = {0};
	struct model *a = new_model(true, 0.05f), *b = new_model(true, 0.05f);
	learn(a, 0, 8000, announced_a);
	learn(b, 0, 8000, announced_b);
	assert_int_equal(model_share_enable(a), 0);
	assert_int_equal(model_share_enable(b), 0);
	uint32_t item = PER - 1; /* no event so far */
	float placed[8];
	assert_int_equal(model_item_content(a, item, item_hash(item), content[item], errstr,
					    sizeof errstr),
			 1);
	assert_int_equal(model_item_content(b, item, item_hash(item), content[item], errstr,
					    sizeof errstr),
			 1);
	memcpy(placed, model_item_vector(a, item), sizeof placed);
	assert_memory_equal(model_item_vector(b, item), placed, sizeof placed);
	assert_int_equal(exchange(a, b), 0); /* the placements are no changes */
	assert_int_equal(exchange(b, a), 0);
	for (size_t k = 0; k < 8; k++) {
		assert_float_equal(model_item_vector(a, item)[k], placed[k], 1e-6);
		assert_float_equal(model_item_vector(b, item)[k], placed[k], 1e-6);
	}

	/* a's users act on it: a learns and folds it once; b gets what a learned */
	struct model_content_stats before_a, before_b, after_a, after_b;
	model_content_stats(a, &before_a);
	model_content_stats(b, &before_b);
	for (uint32_t e = 0; e < 5; e++) {
		struct model_event ev = {.user = e * CLUSTERS,
					 .item = item,
					 .user_hash = e * CLUSTERS * 2654435761u + 1,
					 .item_hash = item_hash(item),
					 .type = EVENT_CLICK,
					 .ts_ms = 1700000000000LL + 8000 * 100 + e};
		assert_int_equal(model_learn(a, &ev, errstr, sizeof errstr), 0);
	}
	assert_true(exchange(a, b) > 0);
	exchange(b, a);
	model_content_stats(a, &after_a);
	model_content_stats(b, &after_b);
	assert_int_equal(after_a.pairs, before_a.pairs + 1);
	assert_int_equal(after_b.pairs, before_b.pairs);
	for (size_t k = 0; k < 8; k++)
		assert_float_equal(model_item_vector(b, item)[k], model_item_vector(a, item)[k],
				   1e-5);

	/* b folds what a learned of another new item before b reads its content:
	 * placing it there keeps that on top of b's own placement */
	uint32_t late = 2 * PER - 1;
	assert_int_equal(model_item_content(a, late, item_hash(late), content[late], errstr,
					    sizeof errstr),
			 1);
	for (uint32_t e = 0; e < 2; e++) {
		struct model_event ev = {.user = 1 + e * CLUSTERS,
					 .item = late,
					 .user_hash = (1 + e * CLUSTERS) * 2654435761u + 1,
					 .item_hash = item_hash(late),
					 .type = EVENT_CLICK,
					 .ts_ms = 1700000000000LL + 8000 * 100 + 10 + e};
		assert_int_equal(model_learn(a, &ev, errstr, sizeof errstr), 0);
	}
	assert_int_equal(model_add_item(b, late, item_hash(late)), 0); /* as itemsync does */
	assert_true(exchange(a, b) > 0);
	assert_int_equal(model_item_content(b, late, item_hash(late), content[late], errstr,
					    sizeof errstr),
			 1);
	assert_int_equal(exchange(b, a), 0); /* b's placement is not a change */
	for (size_t k = 0; k < 8; k++)
		assert_float_equal(model_item_vector(b, late)[k], model_item_vector(a, late)[k],
				   1e-5);
	model_free(a);
	model_free(b);
}

int main(void)
{
	make_content();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_map_learns_a_planted_linear_map),
	    cmocka_unit_test(test_new_item_starts_near_its_kind_and_ranks),
	    cmocka_unit_test(test_prior_pulls_a_rare_item_back),
	    cmocka_unit_test(test_content_state_persists_bit_for_bit),
	    cmocka_unit_test(test_search_moves_intent_and_fades),
	    cmocka_unit_test(test_a_placed_item_is_placed_once_in_a_group),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
