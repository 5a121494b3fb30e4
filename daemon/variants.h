/*
 * variants: which stored rows belong to which configured A/B variant.
 *
 * Each variant's rows are keyed by a one-byte id (statekeys.h); meta
 * "variant/NAME" records hold the id and the row layout (dim, recent_items,
 * covis_neighbours) it was written with, so variants are kept by name and
 * can come and go across restarts (state.h, struct state_config). States
 * from before these records hold only a "variants" count, with ids in
 * configuration order: they are adopted as such.
 */
#ifndef STREAMREC_VARIANTS_H
#define STREAMREC_VARIANTS_H

#include <stddef.h>

#include "state.h"
#include "store.h"

/**
 * @brief Match the configured variants to the stored ones by name: a stored
 * name is restored (its layout must match), a new name gets the lowest free
 * id and starts cold or as a copy of start_from's rows, a stored name the
 * configuration drops is kept on disk, unused. The changes are committed
 * through batch (borrowed, left empty).
 * @param store_id filled per configured variant (config->variant_count)
 * @param variant_of_id filled per id byte (256 entries), -1 when not configured
 * @param names filled per configured variant: the name it is stored under
 * @returns 0, or -1 with errstr naming the directory and the cause.
 */
int variants_reconcile(struct store *store, struct store_batch *batch,
		       const struct state_config *config, unsigned char *store_id,
		       int *variant_of_id, char (*names)[STATE_VARIANT_NAME_BYTES], char *errstr,
		       size_t errstr_size);

#endif
