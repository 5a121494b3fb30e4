/* The trending list popularity keeps as it counts is the list a scan of every item gives:
 * after every kind of change (new items, counts, a rescale, a restore), with exclusions,
 * eligibility, and lists longer than the kept head. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "popularity.h"

#define ITEMS 3000

static const struct popularity *ranked_by; /* qsort's context */

/* Higher trend first, then the lower item index (popularity.h's tie rule). */
static int by_trend(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	double tx = popularity_trend(ranked_by, x), ty = popularity_trend(ranked_by, y);
	if (tx != ty)
		return tx > ty ? -1 : 1;
	return (x > y) - (x < y);
}

/* The reference: every item with a positive trend, sorted, filtered. */
static size_t reference_trending(const struct popularity *p, size_t k, const uint32_t *exclude,
				 size_t exclude_count, const uint8_t *eligible, uint32_t *out)
{
	static uint32_t all[ITEMS];
	size_t count = 0, n = 0;
	for (uint32_t i = 0; i < ITEMS; i++)
		if (popularity_trend(p, i) > 0)
			all[count++] = i;
	ranked_by = p;
	qsort(all, count, sizeof *all, by_trend);
	for (size_t r = 0; r < count && n < k; r++) {
		if (eligible != NULL && !eligible[all[r]])
			continue;
		if (popularity_sorted_contains(exclude, exclude_count, all[r]))
			continue;
		out[n++] = all[r];
	}
	return n;
}

static uint64_t next(uint64_t *state)
{
	*state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
	return *state >> 33;
}

/* Compares the table's lists with the reference's at several lengths and filters. */
static void check_lists(const struct popularity *p, uint64_t *rng)
{
	static uint32_t got[ITEMS], want[ITEMS], exclude[64];
	static uint8_t eligible[ITEMS];
	const size_t lengths[] = {
	    1,    20, 50, POPULARITY_HOT_ITEMS - 1, POPULARITY_HOT_ITEMS, POPULARITY_HOT_ITEMS + 7,
	    ITEMS};
	size_t exclude_count = 0;

	/* exclusions drawn among the head of the list, sorted and distinct */
	size_t head = reference_trending(p, 300, NULL, 0, NULL, want);
	for (size_t j = 0; j < head && exclude_count < 64; j++)
		if (next(rng) % 3 == 0)
			exclude[exclude_count++] = want[j];
	for (size_t a = 1; a < exclude_count; a++)
		for (size_t b = a; b > 0 && exclude[b - 1] > exclude[b]; b--) {
			uint32_t t = exclude[b];
			exclude[b] = exclude[b - 1];
			exclude[b - 1] = t;
		}
	for (size_t i = 0; i < ITEMS; i++)
		eligible[i] = next(rng) % 4 != 0;

	for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
		size_t k = lengths[l];
		size_t n = popularity_trending(p, k, NULL, 0, NULL, got);
		assert_int_equal(n, reference_trending(p, k, NULL, 0, NULL, want));
		assert_memory_equal(got, want, n * sizeof *got);
		n = popularity_trending(p, k, exclude, exclude_count, NULL, got);
		assert_int_equal(n, reference_trending(p, k, exclude, exclude_count, NULL, want));
		assert_memory_equal(got, want, n * sizeof *got);
		n = popularity_trending(p, k, exclude, exclude_count, eligible, got);
		assert_int_equal(n,
				 reference_trending(p, k, exclude, exclude_count, eligible, want));
		assert_memory_equal(got, want, n * sizeof *got);
	}
}

static void kept_list_equals_the_scan(void **state)
{
	(void)state;
	struct popularity *p = popularity_new(60e3);
	uint64_t rng = 11;
	int64_t ts = 1700000000000;
	uint32_t none[1];

	assert_non_null(p);
	assert_int_equal(popularity_trending(p, 20, NULL, 0, NULL, none), 0);
	/* few items: the kept list holds every one of them */
	for (int e = 0; e < 100; e++)
		assert_int_equal(popularity_add(p, (uint32_t)(next(&rng) % 50), ts + e), 0);
	check_lists(p, &rng);
	/* many items, skewed, in event time with gaps and ties (same ts) */
	for (int e = 0; e < 60000; e++) {
		uint64_t draw = next(&rng);
		uint32_t item =
		    (uint32_t)(draw % 7 == 0 ? draw % ITEMS : (draw % 97) * (draw % 31));
		ts += (int64_t)(next(&rng) % 3) * 40;
		assert_int_equal(popularity_add(p, item % ITEMS, ts), 0);
		if (e % 5000 == 4999)
			check_lists(p, &rng);
	}
	popularity_free(p);
}

static void rescale_and_restore_keep_the_list(void **state)
{
	(void)state;
	/* a half-life of 1 ms: an event 700 ms later rescales every trend */
	struct popularity *p = popularity_new(1.0);
	struct popularity *copy = popularity_new(1.0);
	struct popularity_globals g;
	uint64_t rng = 5;
	int64_t ts = 1000;
	int rescales = 0;

	assert_non_null(p);
	assert_non_null(copy);
	for (int e = 0; e < 20000; e++) {
		ts += next(&rng) % 100 == 0 ? 700 : (int64_t)(next(&rng) % 2);
		assert_int_equal(popularity_add(p, (uint32_t)(next(&rng) % ITEMS), ts), 0);
		rescales += popularity_rescaled(p);
		if (e % 4000 == 3999)
			check_lists(p, &rng);
	}
	assert_true(rescales > 0);
	for (uint32_t i = 0; i < ITEMS; i++) {
		struct popularity_item item = popularity_item_state(p, i);
		assert_int_equal(popularity_restore_item(copy, i, &item), 0);
	}
	/* between the rows and the globals the list comes from a scan */
	check_lists(copy, &rng);
	popularity_get_globals(p, &g);
	assert_int_equal(popularity_set_globals(copy, &g), 0);
	check_lists(copy, &rng);
	for (int e = 0; e < 5000; e++) {
		uint32_t item = (uint32_t)(next(&rng) % ITEMS);
		ts += (int64_t)(next(&rng) % 2);
		assert_int_equal(popularity_add(p, item, ts), 0);
		assert_int_equal(popularity_add(copy, item, ts), 0);
	}
	check_lists(copy, &rng);
	uint32_t a[POPULARITY_HOT_ITEMS], b[POPULARITY_HOT_ITEMS];
	size_t n = popularity_trending(p, POPULARITY_HOT_ITEMS, NULL, 0, NULL, a);
	assert_int_equal(popularity_trending(copy, POPULARITY_HOT_ITEMS, NULL, 0, NULL, b), n);
	assert_memory_equal(a, b, n * sizeof *a);
	popularity_free(p);
	popularity_free(copy);
}

/* The ranked order stays sorted by count, the ranks a permutation, as items
 * are counted with a skew (long blocks of equal counts in the tail, short
 * ones at the head: each add finds the front of its block). */
static void ranked_order_stays_sorted(void **state)
{
	(void)state;
	struct popularity *p = popularity_new(3600e3);
	static uint32_t at_rank[ITEMS];
	uint64_t rng = 17;
	assert_non_null(p);
	for (int round = 0; round < 40; round++) {
		for (int a = 0; a < 2000; a++) {
			uint64_t r = next(&rng);
			/* about Zipf: the item index a power of a uniform number */
			uint32_t item = (uint32_t)((r % 1000) * (r % 1000) * (r % 1000) /
						   (1000000000ULL / ITEMS));
			assert_int_equal(popularity_add(p, item < ITEMS ? item : ITEMS - 1,
							1700000000000LL + round * 1000 + a),
					 0);
		}
		size_t ranked = 0;
		for (uint32_t i = 0; i < ITEMS; i++)
			at_rank[i] = UINT32_MAX;
		for (uint32_t i = 0; i < ITEMS; i++) {
			struct popularity_item s = popularity_item_state(p, i);
			if (s.count == 0)
				continue;
			assert_true(s.rank < ITEMS);
			assert_int_equal(at_rank[s.rank], UINT32_MAX); /* one item a rank */
			at_rank[s.rank] = i;
			ranked++;
		}
		for (size_t r = 0; r < ranked; r++) {
			assert_int_not_equal(at_rank[r], UINT32_MAX); /* ranks 0..ranked-1 */
			if (r > 0)
				assert_true(popularity_count(p, at_rank[r - 1]) >=
					    popularity_count(p, at_rank[r]));
		}
	}
	popularity_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(kept_list_equals_the_scan),
	    cmocka_unit_test(rescale_and_restore_keep_the_list),
	    cmocka_unit_test(ranked_order_stays_sorted),
	};
	return cmocka_run_group_tests_name("044_popularity", tests, NULL, NULL);
}
