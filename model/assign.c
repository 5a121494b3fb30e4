#include "assign.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <xxhash.h>

size_t assign_variant(const char *salt, const char *user_id, const struct assign_variant *variants,
		      size_t count)
{
	size_t best = 0;
	double best_score = -INFINITY;
	if (count <= 1)
		return 0;
	size_t salt_len = strlen(salt), id_len = strlen(user_id);
	char key[1024];
	if (salt_len + id_len + 2 + 64 > sizeof key)
		return 0; /* ids and salts are bounded far below this */
	/* salt, NUL, user id, NUL: the variant's name follows */
	memcpy(key, salt, salt_len + 1);
	memcpy(key + salt_len + 1, user_id, id_len + 1);
	for (size_t v = 0; v < count; v++) {
		size_t name_len = strnlen(variants[v].name, 64);
		memcpy(key + salt_len + id_len + 2, variants[v].name, name_len);
		uint64_t hash = XXH3_64bits(key, salt_len + id_len + 2 + name_len);
		double unit = ((double)(hash >> 11) + 0.5) / 9007199254740992.0;
		double score = -variants[v].share / log(unit);
		if (score > best_score) {
			best_score = score;
			best = v;
		}
	}
	return best;
}
