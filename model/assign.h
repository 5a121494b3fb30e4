/*
 * assign: which A/B variant serves a user.
 *
 * Weighted rendezvous hashing: for each variant v with share w_v,
 *   h_v = XXH3_64(salt "\0" user_id "\0" variant_name) mapped into (0, 1)
 *         as (h_v >> 11) + 0.5) / 2^53,
 *   score_v = -w_v / ln(h_v),
 * and the user goes to the variant with the highest score (ties: the lower
 * index). Each variant wins with probability w_v / sum(w), and changing one
 * variant's share moves only users into or out of that variant: every other
 * pair keeps its order. The same formula in any language reproduces an
 * assignment (the README shows it in Python).
 */
#ifndef STREAMREC_ASSIGN_H
#define STREAMREC_ASSIGN_H

#include <stddef.h>

struct assign_variant {
	const char *name;
	double share; /**< > 0 */
};

/**
 * @returns the index of the variant that serves user_id (0 when there is
 * one variant or none).
 */
size_t assign_variant(const char *salt, const char *user_id, const struct assign_variant *variants,
		      size_t count);

#endif
