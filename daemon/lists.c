/*
 * lists: the published lists behind a read-write lock, one writer.
 */
#include "lists.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "grow.h"
#include "idmap.h"

#define MAX_VARIANTS 256

struct lists {
	/* the writer changes these only with the lock held for writing */
	pthread_rwlock_t lock;
	struct lists_entry **entries; /* by stable user index */
	size_t entry_capacity;
	struct idmap *users; /* user id -> stable index, users with a list */
	struct idmap *items; /* item id <-> index, items ever listed */
	char **variant_names;
	size_t variant_count;
};

struct lists *lists_new(const char *const *variant_names, size_t variant_count)
{
	struct lists *l = calloc(1, sizeof *l);
	if (l == NULL || variant_count > MAX_VARIANTS)
		goto out_free;
	if (pthread_rwlock_init(&l->lock, NULL) != 0) {
		free(l);
		return NULL;
	}
	l->users = idmap_new();
	l->items = idmap_new();
	l->variant_names = calloc(variant_count ? variant_count : 1, sizeof *l->variant_names);
	if (l->users == NULL || l->items == NULL || l->variant_names == NULL)
		goto out_free;
	l->variant_count = variant_count;
	for (size_t v = 0; v < variant_count; v++)
		if ((l->variant_names[v] = strdup(variant_names[v])) == NULL)
			goto out_free;
	return l;
out_free:
	lists_free(l);
	return NULL;
}

void lists_free(struct lists *l)
{
	if (l == NULL)
		return;
	for (size_t u = 0; u < l->entry_capacity; u++)
		free(l->entries[u]);
	free(l->entries);
	idmap_free(l->users);
	idmap_free(l->items);
	for (size_t v = 0; l->variant_names != NULL && v < l->variant_count; v++)
		free(l->variant_names[v]);
	free(l->variant_names);
	pthread_rwlock_destroy(&l->lock);
	free(l);
}

int lists_put(struct lists *l, uint32_t stable, const char *user_id, size_t variant,
	      int64_t generated_at_ms, int64_t trigger_ts_ms, const struct topk_result *items,
	      size_t count, lists_item_id_fn item_id, void *opaque)
{
	int rc = -1;
	if (variant >= l->variant_count || count > UINT16_MAX || user_id == NULL)
		return -1;
	pthread_rwlock_wrlock(&l->lock);
	if (grow_array(&l->entries, &l->entry_capacity, (size_t)stable + 1, sizeof *l->entries,
		       4096) != 0)
		goto out_unlock;
	struct lists_entry *e = l->entries[stable];
	bool first = e == NULL;
	if (first && idmap_put(l->users, user_id, strlen(user_id), stable) != 0)
		goto out_unlock;
	for (size_t k = 0; k < count; k++) {
		if (idmap_id(l->items, items[k].item) != NULL)
			continue;
		const char *name = item_id(items[k].item, opaque);
		if (name != NULL && idmap_put(l->items, name, strlen(name), items[k].item) != 0)
			goto out_unlock;
	}
	if (e == NULL || e->capacity < count) {
		size_t capacity = count > 20 ? count : 20;
		struct lists_entry *grown = realloc(e, sizeof *e + capacity * sizeof e->items[0]);
		if (grown == NULL)
			goto out_unlock;
		e = l->entries[stable] = grown;
		e->capacity = (uint16_t)capacity;
	}
	e->variant = (uint8_t)variant;
	e->count = (uint16_t)count;
	e->generated_at_ms = generated_at_ms;
	e->trigger_ts_ms = trigger_ts_ms;
	memcpy(e->items, items, count * sizeof *items);
	rc = first ? 1 : 0;
out_unlock:
	pthread_rwlock_unlock(&l->lock);
	return rc;
}

const struct lists_entry *lists_get(const struct lists *l, uint32_t stable)
{
	return (size_t)stable < l->entry_capacity ? l->entries[stable] : NULL;
}

const char *lists_user_id(const struct lists *l, uint32_t stable)
{
	return lists_get(l, stable) != NULL ? idmap_id(l->users, stable) : NULL;
}

char *lists_render_json(struct lists *l, const char *user_id, int *status)
{
	json_t *doc = NULL;
	pthread_rwlock_rdlock(&l->lock);
	uint32_t stable = idmap_find(l->users, user_id, strlen(user_id));
	const struct lists_entry *e =
	    stable != IDMAP_NONE && stable < l->entry_capacity ? l->entries[stable] : NULL;
	if (e == NULL) {
		*status = 404;
		doc = json_pack("{s:s,s:s}", "error", "no list published for this user", "user",
				user_id);
	} else {
		json_t *items = json_array();
		for (size_t r = 0; items != NULL && r < e->count; r++) {
			const char *item = idmap_id(l->items, e->items[r].item);
			json_array_append_new(items, json_pack("{s:s,s:f}", "item_id",
							       item ? item : "", "score",
							       (double)e->items[r].score));
		}
		*status = 200;
		doc = json_pack("{s:s,s:s,s:I,s:I,s:o}", "user_id", user_id, "variant",
				l->variant_names[e->variant], "generated_at",
				(json_int_t)e->generated_at_ms, "trigger_event_ts",
				(json_int_t)e->trigger_ts_ms, "items", items);
	}
	pthread_rwlock_unlock(&l->lock);
	char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (body == NULL)
		*status = 500;
	return body;
}
