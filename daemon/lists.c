/*
 * lists: the published lists behind a read-write lock, one writer.
 */
#include "lists.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "idmap.h"
#include "listrules.h"
#include "model.h"

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

/* Copies an item's id for the renderer, once. @returns 0 or -1. */
static int intern_item(struct lists *l, uint32_t item, lists_item_id_fn item_id, void *opaque)
{
	if (item == UINT32_MAX || idmap_id(l->items, item) != NULL)
		return 0;
	const char *name = item_id(item, opaque);
	return name != NULL && idmap_put(l->items, name, strlen(name), item) != 0 ? -1 : 0;
}

int lists_put(struct lists *l, uint32_t stable, const char *user_id, size_t variant,
	      uint64_t list_id, int64_t generated_at_ms, int64_t trigger_ts_ms,
	      const struct topk_result *items, const struct lists_why *why, size_t count,
	      lists_item_id_fn item_id, void *opaque)
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
	for (size_t k = 0; k < count; k++)
		if (intern_item(l, items[k].item, item_id, opaque) != 0 ||
		    (why != NULL && intern_item(l, why[k].because_item, item_id, opaque) != 0))
			goto out_unlock;
	if (e == NULL || e->capacity < count) {
		/* the explanations follow items[capacity]: both move together */
		size_t capacity = count > 20 ? count : 20;
		struct lists_entry *grown = realloc(
		    e, sizeof *e + capacity * (sizeof e->items[0] + sizeof(struct lists_why)));
		if (grown == NULL)
			goto out_unlock;
		e = l->entries[stable] = grown;
		e->capacity = (uint16_t)capacity;
	}
	e->variant = (uint8_t)variant;
	e->count = (uint16_t)count;
	e->list_id = list_id;
	e->generated_at_ms = generated_at_ms;
	e->trigger_ts_ms = trigger_ts_ms;
	memcpy(e->items, items, count * sizeof *items);
	struct lists_why *w = (struct lists_why *)(void *)(e->items + e->capacity);
	for (size_t k = 0; k < count; k++)
		w[k] = why != NULL ? why[k]
				   : (struct lists_why){.because_item = UINT32_MAX,
							.reason = MODEL_REASON_COUNT};
	rc = first ? 1 : 0;
out_unlock:
	pthread_rwlock_unlock(&l->lock);
	return rc;
}

void lists_remove(struct lists *l, uint32_t stable)
{
	if ((size_t)stable >= l->entry_capacity || l->entries[stable] == NULL)
		return;
	pthread_rwlock_wrlock(&l->lock);
	free(l->entries[stable]);
	l->entries[stable] = NULL;
	idmap_remove(l->users, stable);
	pthread_rwlock_unlock(&l->lock);
}

size_t lists_forget_items(struct lists *l, size_t item_count,
			  bool (*gone)(uint32_t item, void *opaque),
			  void (*changed)(uint32_t stable, void *opaque), void *opaque)
{
	size_t lists_changed = 0;
	pthread_rwlock_wrlock(&l->lock);
	for (size_t u = 0; u < l->entry_capacity; u++) {
		struct lists_entry *e = l->entries[u];
		if (e == NULL)
			continue;
		struct lists_why *w = (struct lists_why *)(void *)(e->items + e->capacity);
		size_t kept = 0;
		bool lost = false;
		for (size_t r = 0; r < e->count; r++) {
			if (gone(e->items[r].item, opaque)) {
				lost = true;
				continue;
			}
			e->items[kept] = e->items[r];
			w[kept] = w[r];
			if (w[kept].because_item != UINT32_MAX &&
			    gone(w[kept].because_item, opaque)) {
				w[kept].because_item = UINT32_MAX;
				lost = true;
			}
			kept++;
		}
		e->count = (uint16_t)kept;
		if (lost) {
			lists_changed++;
			if (changed != NULL)
				changed((uint32_t)u, opaque);
		}
	}
	for (size_t i = 0; i < item_count && i < UINT32_MAX; i++)
		if (idmap_id(l->items, (uint32_t)i) != NULL && gone((uint32_t)i, opaque))
			idmap_remove(l->items, (uint32_t)i);
	pthread_rwlock_unlock(&l->lock);
	return lists_changed;
}

const struct lists_entry *lists_get(const struct lists *l, uint32_t stable)
{
	return (size_t)stable < l->entry_capacity ? l->entries[stable] : NULL;
}

const char *lists_user_id(const struct lists *l, uint32_t stable)
{
	return lists_get(l, stable) != NULL ? idmap_id(l->users, stable) : NULL;
}

/* A growing text buffer; on allocation failure it is freed and stays NULL. */
struct text {
	char *data;
	size_t len, capacity;
};

static void text_reserve(struct text *t, size_t more)
{
	if (t->data == NULL || t->len + more + 1 <= t->capacity)
		return;
	size_t capacity = (t->len + more + 1) * 2;
	char *grown = realloc(t->data, capacity);
	if (grown == NULL) {
		free(t->data);
		t->data = NULL;
		return;
	}
	t->data = grown;
	t->capacity = capacity;
}

static void text_put(struct text *t, const char *s, size_t n)
{
	text_reserve(t, n);
	if (t->data == NULL)
		return;
	memcpy(t->data + t->len, s, n);
	t->len += n;
	t->data[t->len] = '\0';
}

/* A JSON string: quotes, backslashes and control characters escaped; other bytes as they are. */
static void text_string(struct text *t, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	text_put(t, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\') {
			char escaped[2] = {'\\', (char)*p};
			text_put(t, escaped, 2);
		} else if (*p < 0x20) {
			char escaped[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
			text_put(t, escaped, 6);
		} else {
			const unsigned char *run = p;
			while (p[1] >= 0x20 && p[1] != '"' && p[1] != '\\')
				p++;
			text_put(t, (const char *)run, (size_t)(p - run) + 1);
		}
	}
	text_put(t, "\"", 1);
}

/* A string literal, its length counted by the compiler. */
#define TEXT_LITERAL(t, literal) text_put(t, literal, sizeof literal - 1)

static void text_number(struct text *t, const char *format, ...)
	__attribute__((format(printf, 2, 3)));

static void text_number(struct text *t, const char *format, ...)
{
	char number[64];
	va_list ap;
	va_start(ap, format);
	int n = vsnprintf(number, sizeof number, format, ap);
	va_end(ap);
	text_put(t, number, n > 0 && (size_t)n < sizeof number ? (size_t)n : 0);
}

/* A score as a JSON real: 9 significant digits give back the very float, and a
 * point is kept on whole numbers (typed clients tell reals from integers). */
static void text_score(struct text *t, float score)
{
	char number[32];
	if (!isfinite(score)) {
		TEXT_LITERAL(t, "null");
		return;
	}
	int n = snprintf(number, sizeof number, "%.9g", (double)score);
	if (n <= 0 || (size_t)n >= sizeof number - 2)
		return;
	if (strpbrk(number, ".e") == NULL) {
		memcpy(number + n, ".0", 3);
		n += 2;
	}
	text_put(t, number, (size_t)n);
}

/*
 * Written by hand rather than through jansson: the answer is the API's whole
 * work, and building a document of 2k + 1 objects to print it took about
 * as long as the rest of a request.
 */
char *lists_render_json(struct lists *l, const char *user_id, int *status)
{
	struct text t = {.data = malloc(1024), .capacity = 1024};
	if (t.data != NULL)
		t.data[0] = '\0';
	pthread_rwlock_rdlock(&l->lock);
	uint32_t stable = idmap_find(l->users, user_id, strlen(user_id));
	const struct lists_entry *e =
	    stable != IDMAP_NONE && stable < l->entry_capacity ? l->entries[stable] : NULL;
	if (e == NULL) {
		*status = 404;
		TEXT_LITERAL(&t, "{\"error\":\"no list published for this user\",\"user\":");
		text_string(&t, user_id);
		TEXT_LITERAL(&t, "}");
	} else {
		*status = 200;
		TEXT_LITERAL(&t, "{\"user_id\":");
		text_string(&t, user_id);
		TEXT_LITERAL(&t, ",\"variant\":");
		text_string(&t, l->variant_names[e->variant]);
		if (e->list_id != 0)
			text_number(&t, ",\"list_id\":\"%016" PRIx64 "\"", e->list_id);
		text_number(&t, ",\"generated_at\":%" PRId64 ",\"trigger_event_ts\":%" PRId64,
			    e->generated_at_ms, e->trigger_ts_ms);
		TEXT_LITERAL(&t, ",\"items\":[");
		for (size_t r = 0; r < e->count; r++) {
			const char *item = idmap_id(l->items, e->items[r].item);
			if (r > 0)
				TEXT_LITERAL(&t, ",");
			TEXT_LITERAL(&t, "{\"item_id\":");
			text_string(&t, item ? item : "");
			TEXT_LITERAL(&t, ",\"score\":");
			text_score(&t, e->items[r].score);
			const struct lists_why *w = &lists_entry_why(e)[r];
			const char *rule = listrules_rule_name((enum listrules_rule)w->rule);
			if (rule != NULL || w->reason < MODEL_REASON_COUNT) {
				TEXT_LITERAL(&t, ",\"reason\":");
				text_string(&t, rule != NULL ? rule
							     : model_reason_name(
								   (enum model_reason)w->reason));
			}
			const char *because =
			    w->because_item != UINT32_MAX ? idmap_id(l->items, w->because_item) : NULL;
			if (because != NULL) {
				TEXT_LITERAL(&t, ",\"because_item\":");
				text_string(&t, because);
			}
			TEXT_LITERAL(&t, "}");
		}
		TEXT_LITERAL(&t, "]}");
	}
	pthread_rwlock_unlock(&l->lock);
	if (t.data == NULL)
		*status = 500;
	return t.data;
}
