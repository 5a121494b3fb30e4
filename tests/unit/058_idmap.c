/*
 * store/idmap: the id → index map against a brute-force oracle (an array of
 * the ids put, searched linearly), through growth, removals in random order
 * and re-insertions, with ids that share prefixes, differ only in length,
 * and collide in their home slot.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "idmap.h"

#define IDS 20000

static char oracle[IDS][32]; /* by index; "" when not in the map */

static uint64_t next_random(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

static uint32_t oracle_find(const char *id)
{
	for (uint32_t i = 0; i < IDS; i++)
		if (oracle[i][0] != '\0' && strcmp(oracle[i], id) == 0)
			return i;
	return IDMAP_NONE;
}

/* Every id of the oracle is found at its index, and its index names it. */
static void check_against_oracle(const struct idmap *map)
{
	size_t live = 0;
	for (uint32_t i = 0; i < IDS; i++) {
		if (oracle[i][0] == '\0') {
			assert_null(idmap_id(map, i));
			continue;
		}
		live++;
		assert_int_equal(idmap_find(map, oracle[i], strlen(oracle[i])), i);
		assert_string_equal(idmap_id(map, i), oracle[i]);
	}
	assert_int_equal(idmap_count(map), live);
}

static void put(struct idmap *map, const char *id, uint32_t index)
{
	assert_int_equal(idmap_put(map, id, strlen(id), index), 0);
	snprintf(oracle[index], sizeof oracle[index], "%s", id);
}

static void matches_a_linear_search_through_growth_and_removals(void **unused)
{
	(void)unused;
	struct idmap *map = idmap_new();
	uint64_t random = 0x9e3779b97f4a7c15ull;
	assert_non_null(map);
	memset(oracle, 0, sizeof oracle);

	/* prefixes of each other, and ids that differ in length only */
	for (uint32_t i = 0; i < IDS / 2; i++) {
		char id[32];
		snprintf(id, sizeof id, i % 3 == 0 ? "u%u" : i % 3 == 1 ? "u%u0" : "user-%u", i);
		if (oracle_find(id) == IDMAP_NONE)
			put(map, id, i);
	}
	check_against_oracle(map);
	/* an id put again keeps its index; an index already taken is refused */
	assert_int_equal(idmap_put(map, "u0", 2, 0), 0);
	assert_int_equal(idmap_put(map, "another", 7, 3), -1);
	assert_int_equal(idmap_find(map, "another", 7), IDMAP_NONE);
	/* a length that is not the string's: the id's prefix, not found */
	assert_int_equal(idmap_find(map, "u300", 2), oracle_find("u3"));
	assert_int_equal(idmap_find(map, "user-", 5), IDMAP_NONE);

	/* removals in random order, with lookups of what stays after each batch */
	for (int round = 0; round < 10; round++) {
		for (int r = 0; r < 400; r++) {
			uint32_t i = (uint32_t)(next_random(&random) % (IDS / 2));
			idmap_remove(map, i); /* absent: a no-op */
			oracle[i][0] = '\0';
		}
		check_against_oracle(map);
	}
	/* new ids in the freed indexes and past them, growing the table again */
	for (uint32_t i = 0; i < IDS; i++) {
		char id[32];
		if (oracle[i][0] != '\0')
			continue;
		snprintf(id, sizeof id, "again-%u", i);
		put(map, id, i);
	}
	check_against_oracle(map);
	assert_int_equal(idmap_next(map), IDS);
	for (uint32_t i = 0; i < IDS; i += 2) {
		idmap_remove(map, i);
		oracle[i][0] = '\0';
	}
	check_against_oracle(map);
	assert_int_equal(idmap_find(map, "never-put", 9), IDMAP_NONE);
	idmap_free(map);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(matches_a_linear_search_through_growth_and_removals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
