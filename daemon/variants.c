#include "variants.h"

#include "errstr.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "statekeys.h"

/* What reconciling works on: the store, a scratch batch, and the two maps it fills. */
struct variants_job {
	struct store *store;
	struct store_batch *batch;
	size_t variant_count;
	unsigned char *store_id; /* per configured variant */
	int *variant_of_id;      /* per id byte, -1: not configured */
};

/*
 * Each variant's rows are keyed by a one-byte id; meta "variant/NAME" holds
 * the id and the row layout (dim, recent_items, covis_neighbours) it was
 * written with. States from before these records hold only a "variants"
 * count, with ids in configuration order: they are adopted as such.
 */
#define VARIANT_PREFIX       "variant/"
#define VARIANT_RECORD_BYTES 13
#define COPY_CHUNK           100000
#define VARIANT_NAME_BYTES   65

struct stored_variant {
	char name[VARIANT_NAME_BYTES];
	unsigned char id;
	uint32_t dim, recent, neighbours;
};

struct variant_scan {
	struct stored_variant found[256];
	size_t count;
};

static int scan_variant_record(const void *key, size_t key_len, const void *value, size_t value_len,
			       void *ctx)
{
	struct variant_scan *scan = ctx;
	size_t prefix = strlen(VARIANT_PREFIX);
	if (key_len <= prefix || memcmp(key, VARIANT_PREFIX, prefix) != 0 ||
	    key_len - prefix >= VARIANT_NAME_BYTES || value_len != VARIANT_RECORD_BYTES ||
	    scan->count == 256)
		return 0;
	struct stored_variant *v = &scan->found[scan->count++];
	memcpy(v->name, (const char *)key + prefix, key_len - prefix);
	v->name[key_len - prefix] = '\0';
	const unsigned char *b = value;
	v->id = b[0];
	v->dim = bytes_get_be32(b + 1);
	v->recent = bytes_get_be32(b + 5);
	v->neighbours = bytes_get_be32(b + 9);
	return 0;
}

static void put_variant_record(struct store_batch *batch, const struct stored_variant *v)
{
	char key[sizeof VARIANT_PREFIX + VARIANT_NAME_BYTES];
	unsigned char value[VARIANT_RECORD_BYTES];
	int len = snprintf(key, sizeof key, VARIANT_PREFIX "%s", v->name);
	value[0] = v->id;
	bytes_put_be32(value + 1, v->dim);
	bytes_put_be32(value + 5, v->recent);
	bytes_put_be32(value + 9, v->neighbours);
	store_batch_put(batch, STORE_META, key, (size_t)len, value, sizeof value);
}

/* Rewrites every user and item row of variant id `from` under id `to`
 * (from < 0: deletes the rows of `to`), in chunks. */
struct copy_rows {
	struct store *store;
	struct store_batch *batch;
	enum store_family family;
	int from;
	unsigned char to;
	size_t rows;
	char *errstr;
	size_t errstr_size;
	int failed;
};

static int copy_row(const void *key, size_t key_len, const void *value, size_t value_len, void *ctx)
{
	struct copy_rows *c = ctx;
	const unsigned char *k = key;
	/* a row key, or an item's y row key (daemon/statekeys.h): the variant
	 * id is the fifth byte of both */
	if (key_len != STATE_ROW_KEY_BYTES &&
	    !(c->family == STORE_ITEM && key_len == STATE_Y_ROW_KEY_BYTES))
		return 0;
	unsigned char copy[STATE_Y_ROW_KEY_BYTES];
	memcpy(copy, k, key_len);
	copy[4] = c->to;
	if (c->from < 0 && k[4] == c->to)
		store_batch_delete(c->batch, c->family, key, key_len);
	else if (c->from >= 0 && k[4] == (unsigned char)c->from)
		store_batch_put(c->batch, c->family, copy, key_len, value, value_len);
	else
		return 0;
	c->rows++;
	if (store_batch_count(c->batch) >= COPY_CHUNK &&
	    store_commit(c->store, c->batch, c->errstr, c->errstr_size) != 0) {
		c->failed = 1;
		return 1;
	}
	return 0;
}

static long copy_rows(struct variants_job *s, int from, unsigned char to, char *errstr,
		      size_t errstr_size)
{
	struct copy_rows c = {s->store, s->batch, STORE_USER, from, to, 0, errstr, errstr_size, 0};
	char why[512];
	unsigned char globals_from[9] = {'g', 'l', 'o', 'b', 'a', 'l', 's', '/', 0};
	unsigned char globals_to[9] = {'g', 'l', 'o', 'b', 'a', 'l', 's', '/', to};
	const enum store_family families[] = {STORE_USER, STORE_ITEM, STORE_COVIS};
	for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
		c.family = families[f];
		if (store_foreach(s->store, c.family, copy_row, &c, why, sizeof why) != 0) {
			if (!c.failed)
				set_errstr(errstr, errstr_size, "%s", why);
			store_batch_clear(s->batch);
			return -1;
		}
		if (c.failed) {
			store_batch_clear(s->batch);
			return -1;
		}
	}
	/* the globals and the content map follow the rows (or go with them) */
	unsigned char content_from[STATE_CONTENT_KEY_BYTES], content_to[STATE_CONTENT_KEY_BYTES];
	state_key_content(content_from, from < 0 ? 0 : (unsigned char)from);
	state_key_content(content_to, to);
	for (int k = 0; k < 2; k++) {
		unsigned char *key_from = k == 0 ? globals_from : content_from;
		unsigned char *key_to = k == 0 ? globals_to : content_to;
		size_t key_len = k == 0 ? sizeof globals_to : sizeof content_to;
		if (from < 0) {
			store_batch_delete(s->batch, STORE_META, key_to, key_len);
			continue;
		}
		void *value;
		size_t len;
		key_from[key_len - 1] = (unsigned char)from;
		int found = store_get(s->store, STORE_META, key_from, key_len, &value, &len, why,
				      sizeof why);
		if (found < 0) {
			set_errstr(errstr, errstr_size, "%s", why);
			store_batch_clear(s->batch);
			return -1;
		}
		if (found == 1) {
			store_batch_put(s->batch, STORE_META, key_to, key_len, value, len);
			free(value);
		}
	}
	if (store_commit(s->store, s->batch, errstr, errstr_size) != 0) {
		store_batch_clear(s->batch);
		return -1;
	}
	return (long)c.rows;
}

static void variant_log(const struct state_config *config, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void variant_log(const struct state_config *config, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	if (config->log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	config->log(line, config->log_opaque);
}

int variants_reconcile(struct store *store, struct store_batch *batch,
		       const struct state_config *config, unsigned char *store_id,
		       int *variant_of_id, char (*names)[STATE_VARIANT_NAME_BYTES], char *errstr,
		       size_t errstr_size)
{
	struct variants_job job = {store, batch, config->variant_count, store_id, variant_of_id};
	struct variants_job *s = &job;
	static _Thread_local struct variant_scan scan; /* 256 records: off the stack */
	char why[512];
	bool used[256] = {false};
	scan.count = 0;
	/* by prefix: meta also holds one record per user's last list (state_put_list) */
	if (store_foreach_prefix(s->store, STORE_META, VARIANT_PREFIX, strlen(VARIANT_PREFIX),
				 scan_variant_record, &scan, why, sizeof why) != 0) {
		set_errstr(errstr, errstr_size, "%s: %s", config->dir, why);
		return -1;
	}
	for (size_t i = 0; i < 256; i++)
		s->variant_of_id[i] = -1;

	/* an older state: a count of variants, ids in configuration order */
	void *value;
	size_t value_len;
	int legacy =
	    store_get(s->store, STORE_META, "variants", 8, &value, &value_len, why, sizeof why);
	if (legacy < 0) {
		set_errstr(errstr, errstr_size, "%s: %s", config->dir, why);
		return -1;
	}
	if (legacy == 1) {
		unsigned stored = value_len == 1 ? *(unsigned char *)value : 0;
		free(value);
		if (scan.count == 0 && stored != s->variant_count) {
			set_errstr(errstr, errstr_size,
				   "%s: the state holds %u variants from before variants were kept "
				   "by name, the configuration %zu: run it once with %u variants",
				   config->dir, stored, s->variant_count, stored);
			return -1;
		}
		for (size_t v = 0; scan.count == 0 && v < stored; v++) {
			struct stored_variant *r = &scan.found[v];
			snprintf(r->name, sizeof r->name, "%s",
				 config->variant_names ? config->variant_names[v] : "control");
			r->id = (unsigned char)v;
			r->dim = (uint32_t)config->variants[v].dim;
			r->recent = (uint32_t)config->variants[v].recent_items;
			r->neighbours = (uint32_t)config->variants[v].covis_neighbours;
			put_variant_record(s->batch, r);
		}
		if (scan.count == 0)
			scan.count = stored;
		store_batch_delete(s->batch, STORE_META, "variants", 8);
	}
	for (size_t i = 0; i < scan.count; i++)
		used[scan.found[i].id] = true;

	/* without names (the tools, a daemon naming no variant): the first stored one */
	const char *first = STATE_DEFAULT_VARIANT;
	unsigned char lowest = 255;
	for (size_t i = 0; i < scan.count; i++)
		if (scan.found[i].id <= lowest) {
			lowest = scan.found[i].id;
			first = scan.found[i].name;
		}
	for (size_t v = 0; v < s->variant_count; v++) {
		const char *name = config->variant_names ? config->variant_names[v] : first;
		snprintf(names[v], STATE_VARIANT_NAME_BYTES, "%s", name);
		const struct model_config *mc = &config->variants[v];
		const struct stored_variant *old = NULL;
		for (size_t i = 0; i < scan.count; i++)
			if (strcmp(scan.found[i].name, name) == 0)
				old = &scan.found[i];
		if (old != NULL) {
			/* co-visitation lists grow as pairs arrive, so a larger bound
			 * reads the stored rows; a smaller one could not hold them */
			if (old->dim != mc->dim || old->recent != mc->recent_items ||
			    old->neighbours > mc->covis_neighbours) {
				set_errstr(
				    errstr, errstr_size,
				    "%s: variant '%s' was stored with dim %u, recent_items "
				    "%u, covis_neighbours %u; the configuration asks for %zu, "
				    "%u, %u: dim and recent_items cannot change in place, "
				    "covis_neighbours can only grow. Give the reshaped variant "
				    "a new name (it starts cold, or from another variant with "
				    "start_from)",
				    config->dir, name, old->dim, old->recent, old->neighbours,
				    mc->dim, mc->recent_items, mc->covis_neighbours);
				return -1;
			}
			if (old->neighbours < mc->covis_neighbours && !config->read_only) {
				struct stored_variant grown = *old;
				grown.neighbours = (uint32_t)mc->covis_neighbours;
				put_variant_record(s->batch, &grown);
			}
			s->store_id[v] = old->id;
			s->variant_of_id[old->id] = (int)v;
			continue;
		}
		if (config->stored_variants_only) {
			char held[512] = "";
			size_t at = 0;
			for (size_t i = 0; i < scan.count && at < sizeof held; i++)
				at += (size_t)snprintf(held + at, sizeof held - at, "%s'%s'",
						       i ? ", " : "", scan.found[i].name);
			set_errstr(errstr, errstr_size,
				   "%s: no variant '%s' in the state (it holds %s)", config->dir,
				   name, scan.count ? held : "none");
			return -1;
		}
		/* a new variant: the lowest free id, cleared of anything a crash left there */
		size_t id = 0;
		while (id < 256 && used[id])
			id++;
		if (id == 256) {
			set_errstr(errstr, errstr_size,
				   "%s: 256 variants are stored; no room for '%s'", config->dir,
				   name);
			return -1;
		}
		used[id] = true;
		if (!config->read_only && copy_rows(s, -1, (unsigned char)id, why, sizeof why) < 0) {
			set_errstr(errstr, errstr_size, "%s: %s", config->dir, why);
			return -1;
		}
		const char *source = config->start_from ? config->start_from[v] : NULL;
		if (source != NULL && source[0] != '\0') {
			const struct stored_variant *from = NULL;
			for (size_t i = 0; i < scan.count; i++)
				if (strcmp(scan.found[i].name, source) == 0)
					from = &scan.found[i];
			if (from == NULL) {
				set_errstr(errstr, errstr_size,
					   "%s: variant '%s' starts from '%s', which the state "
					   "does not hold",
					   config->dir, name, source);
				return -1;
			}
			if (from->dim != mc->dim || from->recent != mc->recent_items ||
			    from->neighbours > mc->covis_neighbours) {
				set_errstr(errstr, errstr_size,
					   "%s: variant '%s' starts from '%s', whose layout (dim "
					   "%u, recent_items %u, covis_neighbours %u) differs",
					   config->dir, name, source, from->dim, from->recent,
					   from->neighbours);
				return -1;
			}
			long rows = config->read_only
					? 0
					: copy_rows(s, from->id, (unsigned char)id, why, sizeof why);
			if (rows < 0) {
				set_errstr(errstr, errstr_size, "%s: %s", config->dir, why);
				return -1;
			}
			variant_log(config,
				    "variant '%s' is new: starts from '%s' (%ld rows copied)", name,
				    source, rows);
		} else if (scan.count > 0) {
			variant_log(config, "variant '%s' is new: starts cold", name);
		}
		struct stored_variant record = {.id = (unsigned char)id,
						.dim = (uint32_t)mc->dim,
						.recent = (uint32_t)mc->recent_items,
						.neighbours = (uint32_t)mc->covis_neighbours};
		snprintf(record.name, sizeof record.name, "%s", name);
		put_variant_record(s->batch, &record);
		s->store_id[v] = (unsigned char)id;
		s->variant_of_id[id] = (int)v;
	}
	for (size_t i = 0; i < scan.count; i++)
		if (s->variant_of_id[scan.found[i].id] < 0)
			variant_log(
			    config,
			    "variant '%s' is in the state but not in the configuration: its "
			    "rows are kept, unused (name it again to serve it)",
			    scan.found[i].name);
	if (config->read_only)
		store_batch_clear(s->batch);
	if (store_batch_count(s->batch) > 0 &&
	    store_commit(s->store, s->batch, errstr, errstr_size) != 0) {
		store_batch_clear(s->batch);
		return -1;
	}
	return 0;
}
