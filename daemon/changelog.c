#include "changelog.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "clock.h"
#include "daemon.h"
#include "errstr.h"
#include "grow.h"
#include "ingest.h"
#include "log.h"
#include "partread.h"

#define USER_MAGIC   "SRU1"
#define OFFSET_MAGIC "SRO1"
/* The marker's key: no user id starts with a NUL byte. */
static const char marker_key[] = "\0streamrec.offset";
#define MARKER_KEY_LEN (sizeof marker_key - 1)

/* An events partition as this instance's changelog sees it. */
struct changelog_partition {
	bool owned;     /* assigned here */
	bool touched;   /* a tombstone sent since its last marker */
	int64_t marked; /* next offset of the last marker written or restored; -1: none yet */
};

struct changelog {
	struct daemon *d;
	int32_t *partition_of; /* per stable user, -1: unknown */
	size_t partition_capacity;
	struct changelog_partition *partitions; /* by events partition */
	size_t partitions_capacity;
	unsigned char *row, *value; /* scratch: a row being renumbered, a record */
	size_t row_capacity, value_capacity;
	uint32_t *items; /* a row's distinct item indices, sorted */
	size_t item_count, item_capacity;
	struct partread_property *properties;
	size_t property_count;
};

struct changelog *changelog_new(struct daemon *d, char *errstr, size_t errstr_size)
{
	const struct config *config = &d->config;
	struct changelog *c = calloc(1, sizeof *c);
	if (c == NULL)
		goto out_nomem;
	c->d = d;
	/* the restore reader takes [kafka] and [kafka.consumer] (security etc.) */
	c->properties = calloc(config->kafka.count + config->kafka_consumer.count + 1,
			       sizeof *c->properties);
	if (c->properties == NULL)
		goto out_nomem;
	for (size_t i = 0; i < config->kafka.count; i++)
		c->properties[c->property_count++] = (struct partread_property){
		    config->kafka.items[i].name, config->kafka.items[i].value};
	for (size_t i = 0; i < config->kafka_consumer.count; i++)
		c->properties[c->property_count++] = (struct partread_property){
		    config->kafka_consumer.items[i].name, config->kafka_consumer.items[i].value};
	return c;
out_nomem:
	changelog_free(c);
	set_errstr(errstr, errstr_size, "out of memory for the changelog");
	return NULL;
}

void changelog_free(struct changelog *c)
{
	if (c == NULL)
		return;
	free(c->partition_of);
	free(c->partitions);
	free(c->row);
	free(c->value);
	free(c->items);
	free(c->properties);
	free(c);
}

int changelog_saw(struct changelog *c, uint32_t stable, int32_t partition)
{
	size_t old = c->partition_capacity;
	if ((size_t)stable >= c->partition_capacity) {
		if (grow_array(&c->partition_of, &c->partition_capacity, (size_t)stable + 1,
			       sizeof *c->partition_of, 4096) != 0)
			return -1;
		for (size_t u = old; u < c->partition_capacity; u++)
			c->partition_of[u] = -1;
	}
	c->partition_of[stable] = partition;
	return 0;
}

/* The entry of events partition p (grown as needed), or NULL when out of memory. */
static struct changelog_partition *partition_entry(struct changelog *c, int32_t p)
{
	size_t old = c->partitions_capacity;
	if (p < 0)
		return NULL;
	if ((size_t)p >= c->partitions_capacity) {
		if (grow_array(&c->partitions, &c->partitions_capacity, (size_t)p + 1,
			       sizeof *c->partitions, 16) != 0)
			return NULL;
		for (size_t k = old; k < c->partitions_capacity; k++)
			c->partitions[k] = (struct changelog_partition){.marked = -1};
	}
	return &c->partitions[p];
}

void changelog_revoked(struct changelog *c, int32_t partition)
{
	if (partition >= 0 && (size_t)partition < c->partitions_capacity)
		c->partitions[partition].owned = false;
}

void changelog_unplace(struct changelog *c, uint32_t stable)
{
	if ((size_t)stable < c->partition_capacity)
		c->partition_of[stable] = -1;
}

/* ---- writing ------------------------------------------------------------------------ */



static int collect_item(uint32_t *item, void *ctx)
{
	struct changelog *c = ctx;
	if (grow_array(&c->items, &c->item_capacity, c->item_count + 1, sizeof *c->items, 64) !=
	    0)
		return -1;
	c->items[c->item_count++] = *item;
	return 0;
}

static int compare_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* Local index -> its place in the record's item table. */
static int number_item(uint32_t *item, void *ctx)
{
	const struct changelog *c = ctx;
	const uint32_t *found =
	    bsearch(item, c->items, c->item_count, sizeof *c->items, compare_u32);
	if (found == NULL)
		return -1;
	*item = (uint32_t)(found - c->items);
	return 0;
}

/* Encodes one portable user record into c->value. @returns its length, or 0
 * (out of memory, a bad row; *left_out set: a row set aside before an item
 * it names was removed, which the changelog does without). */
static size_t encode_user(struct changelog *c, size_t variant, const void *row, size_t len,
			  bool *left_out)
{
	struct state *state = c->d->state;
	struct model *model = state_model(state, variant);
	const char *name = state_variant_name(state, variant);
	size_t name_len = strlen(name), at;
	if (grow_scratch(&c->row, &c->row_capacity, len, 1) != 0)
		return 0;
	memcpy(c->row, row, len);
	c->item_count = 0;
	if (model_user_row_items(model, c->row, len, collect_item, c) != 0)
		return 0;
	qsort(c->items, c->item_count, sizeof *c->items, compare_u32);
	size_t distinct = 0;
	for (size_t k = 0; k < c->item_count; k++)
		if (distinct == 0 || c->items[k] != c->items[distinct - 1])
			c->items[distinct++] = c->items[k];
	c->item_count = distinct;
	if (model_user_row_items(model, c->row, len, number_item, c) != 0)
		return 0;
	size_t need = 4 + 1 + name_len + 4 + len + 4;
	for (size_t k = 0; k < c->item_count; k++) {
		const char *id = state_item_id(state, c->items[k]);
		if (id == NULL) {
			*left_out = true; /* set aside before its item was removed (lifecycle) */
			return 0;
		}
		need += 2 + strlen(id);
	}
	if (name_len > 255 || grow_scratch(&c->value, &c->value_capacity, need, 1) != 0)
		return 0;
	memcpy(c->value, USER_MAGIC, 4);
	c->value[4] = (unsigned char)name_len;
	memcpy(c->value + 5, name, name_len);
	at = 5 + name_len;
	bytes_put_be32(c->value + at, (uint32_t)len);
	memcpy(c->value + at + 4, c->row, len);
	at += 4 + len;
	bytes_put_be32(c->value + at, (uint32_t)c->item_count);
	at += 4;
	for (size_t k = 0; k < c->item_count; k++) {
		const char *id = state_item_id(state, c->items[k]);
		size_t id_len = strlen(id);
		if (id_len > UINT16_MAX)
			return 0;
		c->value[at] = (unsigned char)(id_len >> 8);
		c->value[at + 1] = (unsigned char)id_len;
		memcpy(c->value + at + 2, id, id_len);
		at += 2 + id_len;
	}
	return at;
}

void changelog_on_user_row(uint32_t stable, size_t variant, const void *row, size_t len,
			   void *opaque)
{
	struct daemon *d = opaque;
	struct changelog *c = d->changelog;
	char errstr[512];
	if (c == NULL || d->failed)
		return;
	if ((size_t)stable >= c->partition_capacity || c->partition_of[stable] < 0) {
		d->metrics->changelog_unplaced_total++;
		return;
	}
	bool left_out = false;
	size_t value_len = encode_user(c, variant, row, len, &left_out);
	const char *user = state_user_name(d->state, stable);
	if (left_out) {
		/* the changelog keeps the user's row before it (README, Embedding
		 * life cycle); stopping here stopped the daemon for good, since a
		 * restart meets the same row */
		d->metrics->changelog_left_out_total++;
		return;
	}
	if (value_len == 0 || user == NULL) {
		daemon_fail(d, "changelog: cannot encode a user row (out of memory or a bad row)");
		return;
	}
	if (producer_send_to(d->producer, d->config.changelog_topic, c->partition_of[stable], user,
			     strlen(user), c->value, value_len, NULL, 0, errstr,
			     sizeof errstr) != 0) {
		/* a row the changelog lacks would restore an older user elsewhere */
		daemon_fail(d, errstr);
		return;
	}
	d->metrics->changelog_records_total++;
}

int changelog_forget(struct changelog *c, uint32_t stable, const char *user_id, char *errstr,
		     size_t errstr_size)
{
	struct daemon *d = c->d;
	int32_t partition = -1;
	if ((size_t)stable < c->partition_capacity)
		partition = c->partition_of[stable];
	changelog_unplace(c, stable);
	if (user_id == NULL || user_id[0] == '\0')
		return 0; /* no id, no record to delete */
	if (partition < 0) {
		/* not met since the start: which partition holds its rows is unknown */
		d->metrics->changelog_unplaced_total++;
		return 0;
	}
	struct changelog_partition *p = partition_entry(c, partition);
	if (p == NULL) {
		set_errstr(errstr, errstr_size, "changelog: out of memory");
		return -1;
	}
	if (!p->owned)
		return 0; /* another instance owns its partition now: its life cycle decides */
	if (producer_send_to(d->producer, d->config.changelog_topic, partition, user_id,
			     strlen(user_id), NULL, 0, NULL, 0, errstr, errstr_size) != 0)
		return -1;
	p->touched = true;
	d->metrics->changelog_records_total++;
	return 0;
}

/* Writes one offset marker of an events partition. @returns 0, or -1 with errstr filled. */
static int send_marker(struct changelog *c, int32_t partition, int64_t next_offset, char *errstr,
		       size_t errstr_size)
{
	struct daemon *d = c->d;
	unsigned char value[12];
	struct changelog_partition *p = partition_entry(c, partition);
	if (p == NULL) {
		set_errstr(errstr, errstr_size, "changelog: out of memory");
		return -1;
	}
	uint64_t next = (uint64_t)next_offset;
	memcpy(value, OFFSET_MAGIC, 4);
	bytes_put_be32(value + 4, (uint32_t)(next >> 32));
	bytes_put_be32(value + 8, (uint32_t)next);
	if (producer_send_to(d->producer, d->config.changelog_topic, partition, marker_key,
			     MARKER_KEY_LEN, value, sizeof value, NULL, 0, errstr,
			     errstr_size) != 0)
		return -1;
	p->marked = next_offset;
	p->touched = false;
	return 0;
}

int changelog_mark(struct changelog *c, const struct daemon_position *positions, size_t count,
		   char *errstr, size_t errstr_size)
{
	struct daemon *d = c->d;
	for (size_t k = 0; k < count; k++) {
		if (strcmp(positions[k].topic, d->config.input_topic) != 0)
			continue;
		if (send_marker(c, positions[k].partition, positions[k].next_offset, errstr,
				errstr_size) != 0)
			return -1;
	}
	/* tombstones of partitions without events in this commit: a marker vouches
	 * for them too, at the offset the partition's rows are already at */
	for (size_t p = 0; p < c->partitions_capacity; p++) {
		struct changelog_partition *entry = &c->partitions[p];
		int64_t next = entry->marked, offset;
		if (!entry->touched)
			continue;
		if (next < 0) {
			/* no event of it learned since the start: the stored offset */
			int found = state_offset(d->state, d->config.input_topic, (int32_t)p,
						 &offset, errstr, errstr_size);
			if (found < 0)
				return -1;
			if (found == 0) {
				entry->touched = false;
				continue;
			}
			next = offset + 1;
		}
		if (send_marker(c, (int32_t)p, next, errstr, errstr_size) != 0)
			return -1;
	}
	return 0;
}

/* ---- restoring ---------------------------------------------------------------------- */

struct record {
	char *key;
	unsigned char *value;
	size_t value_len;
};

struct restore {
	/* records since the last marker, and those a marker vouched for */
	struct record *staged, *vouched;
	size_t staged_count, staged_capacity, vouched_count, vouched_capacity;
	int64_t next_offset; /* the last marker's; -1: none */
};

static void records_free(struct record *records, size_t count)
{
	for (size_t k = 0; k < count; k++) {
		free(records[k].key);
		free(records[k].value);
	}
	free(records);
}

static int on_changelog_record(const void *key, size_t key_len, const void *value,
			       size_t value_len, int64_t offset, void *opaque)
{
	struct restore *r = opaque;
	(void)offset;
	if (key_len == MARKER_KEY_LEN && memcmp(key, marker_key, key_len) == 0) {
		const unsigned char *v = value;
		if (value_len != 12 || memcmp(v, OFFSET_MAGIC, 4) != 0)
			return 0; /* not ours: ignored */
		r->next_offset = (int64_t)((uint64_t)bytes_get_be32(v + 4) << 32 | bytes_get_be32(v + 8));
		if (grow_array(&r->vouched, &r->vouched_capacity,
			       r->vouched_count + r->staged_count, sizeof *r->vouched, 1024) != 0)
			return -1;
		memcpy(r->vouched + r->vouched_count, r->staged, r->staged_count * sizeof *r->staged);
		r->vouched_count += r->staged_count;
		r->staged_count = 0;
		return 0;
	}
	if (key == NULL || key_len == 0 || memchr(key, '\0', key_len) != NULL)
		return 0; /* not ours */
	if (value != NULL && (value_len < 4 || memcmp(value, USER_MAGIC, 4) != 0))
		return 0; /* not ours */
	if (grow_array(&r->staged, &r->staged_capacity, r->staged_count + 1, sizeof *r->staged,
		       1024) != 0)
		return -1;
	struct record *rec = &r->staged[r->staged_count];
	rec->key = strndup(key, key_len);
	rec->value = value != NULL ? malloc(value_len ? value_len : 1) : NULL;
	if (rec->key == NULL || (value != NULL && rec->value == NULL)) {
		free(rec->key);
		free(rec->value);
		return -1;
	}
	if (value != NULL)
		memcpy(rec->value, value, value_len);
	rec->value_len = value_len;
	r->staged_count++;
	return 0;
}

/* Record item table -> this state's indices, for renumbering a row. */
struct item_map {
	uint32_t *local;
	size_t count;
};

static int map_item(uint32_t *item, void *ctx)
{
	const struct item_map *map = ctx;
	if (*item >= map->count)
		return -1;
	*item = map->local[*item];
	return 0;
}

/*
 * Applies a tombstone: the user was removed by the instance that owned the
 * partition (embedding life cycle), so a row this state holds of it is stale
 * and goes, unless the user was met here in another partition since.
 * @returns 1 removed, 0 nothing to remove, -1 with errstr filled.
 */
static int apply_tombstone(struct changelog *c, const struct record *rec, int32_t partition,
			   char *errstr, size_t errstr_size)
{
	struct daemon *d = c->d;
	uint32_t stable = state_find_user(d->state, rec->key);
	if (stable != UINT32_MAX && (size_t)stable < c->partition_capacity &&
	    c->partition_of[stable] >= 0 && c->partition_of[stable] != partition)
		return 0;
	if (ingest_refresh_idle(d, errstr, errstr_size) != 0)
		return -1;
	int removed = state_remove_user_id(d->state, rec->key, &stable, errstr, errstr_size);
	if (removed == 1)
		ingest_forget_user(d, stable);
	return removed;
}

/* Applies one user record. @returns 1 applied, 0 skipped (another variant), -1. */
static int apply_user(struct changelog *c, const struct record *rec, int32_t partition,
		      char *errstr, size_t errstr_size)
{
	struct daemon *d = c->d;
	const unsigned char *v = rec->value;
	size_t len = rec->value_len, at = 5, variant = SIZE_MAX;
	if (len < 5 || at + v[4] + 4 > len)
		goto out_bad;
	char name[256];
	memcpy(name, v + 5, v[4]);
	name[v[4]] = '\0';
	at += v[4];
	for (size_t k = 0; k < state_variant_count(d->state); k++)
		if (strcmp(state_variant_name(d->state, k), name) == 0)
			variant = k;
	if (variant == SIZE_MAX)
		return 0; /* a variant this instance does not run */
	uint32_t row_len = bytes_get_be32(v + at);
	at += 4;
	if (row_len > len - at || len - at - row_len < 4)
		goto out_bad;
	const unsigned char *row = v + at;
	at += row_len;
	uint32_t count = bytes_get_be32(v + at);
	at += 4;
	struct item_map map = {calloc(count ? count : 1, sizeof *map.local), count};
	if (map.local == NULL || grow_scratch(&c->row, &c->row_capacity, row_len, 1) != 0) {
		free(map.local);
		set_errstr(errstr, errstr_size, "changelog: out of memory restoring %s", rec->key);
		return -1;
	}
	for (uint32_t k = 0; k < count; k++) {
		char id[UINT16_MAX + 1];
		if (len - at < 2 || (size_t)(v[at] << 8 | v[at + 1]) > len - at - 2) {
			free(map.local);
			goto out_bad;
		}
		size_t id_len = (size_t)(v[at] << 8 | v[at + 1]);
		if (id_len == 0 || id_len > CODEC_ID_MAX_BYTES) {
			free(map.local);
			goto out_bad;
		}
		memcpy(id, v + at + 2, id_len);
		id[id_len] = '\0';
		at += 2 + id_len;
		if (state_item_everywhere(d->state, id, &map.local[k], errstr, errstr_size) != 0) {
			free(map.local);
			return -1;
		}
	}
	memcpy(c->row, row, row_len);
	int rc = model_user_row_items(state_model(d->state, variant), c->row, row_len, map_item,
				      &map);
	free(map.local);
	if (rc != 0)
		goto out_bad;
	uint32_t stable;
	if (state_restore_user_row(d->state, rec->key, variant, c->row, row_len, &stable, errstr,
				   errstr_size) != 0 ||
	    changelog_saw(c, stable, partition) != 0)
		return -1;
	return 1;
out_bad:
	set_errstr(errstr, errstr_size, "changelog: user %s: malformed record", rec->key);
	return -1;
}

/* Records by user, each user's in the order they were read (one array). */
static int by_key_then_offset(const void *a, const void *b)
{
	const struct record *x = *(const struct record *const *)a,
			    *y = *(const struct record *const *)b;
	int by_key = strcmp(x->key, y->key);
	if (by_key != 0)
		return by_key;
	return (x > y) - (x < y);
}

int changelog_restore(struct changelog *c, int32_t partition, bool local, int64_t *last_offset,
		      char *errstr, size_t errstr_size)
{
	struct daemon *d = c->d;
	struct restore r = {.next_offset = -1};
	struct record **order = NULL;
	double start = clock_monotonic_s();
	int rc = 0;
	struct changelog_partition *entry = partition_entry(c, partition);
	if (entry == NULL) {
		set_errstr(errstr, errstr_size, "changelog: out of memory");
		return -1;
	}
	entry->owned = true;
	const char *brokers = config_kafka_property(&d->config, "consumer", "bootstrap.servers");
	long read = partread_all(brokers, c->properties, c->property_count,
				 d->config.changelog_topic, partition,
				 (int)d->config.restore_timeout_ms, on_changelog_record, &r, errstr,
				 errstr_size);
	if (read < 0) {
		rc = -1;
		goto out;
	}
	if (r.next_offset < 0 || (local && *last_offset + 1 >= r.next_offset)) {
		/* nothing vouched for, or the local state is as new */
		log_line(LOG_PRIORITY_INFO,
			 "%s[%" PRId32 "]: the state is current (%s %" PRId64 ", %s %" PRId64 ")",
			 d->config.input_topic, partition, "changelog's next offset", r.next_offset,
			 "state's", local ? *last_offset + 1 : -1);
		goto out;
	}
	/* per user, in the changelog's order: what follows its last tombstone */
	order = malloc((r.vouched_count ? r.vouched_count : 1) * sizeof *order);
	if (order == NULL) {
		set_errstr(errstr, errstr_size, "changelog: out of memory restoring");
		rc = -1;
		goto out;
	}
	for (size_t k = 0; k < r.vouched_count; k++)
		order[k] = &r.vouched[k];
	qsort(order, r.vouched_count, sizeof *order, by_key_then_offset);
	size_t users = 0, removed = 0;
	for (size_t first = 0, end; first < r.vouched_count; first = end) {
		size_t from = first;
		for (end = first;
		     end < r.vouched_count && strcmp(order[end]->key, order[first]->key) == 0;
		     end++)
			if (order[end]->value == NULL)
				from = end;
		int applied = 0, rows = 0;
		if (order[from]->value == NULL) {
			applied = apply_tombstone(c, order[from], partition, errstr, errstr_size);
			removed += applied > 0;
			from++;
		}
		for (size_t k = from; k < end && applied >= 0; k++)
			if ((applied = apply_user(c, order[k], partition, errstr, errstr_size)) > 0)
				rows++;
		if (applied < 0) {
			rc = -1;
			goto out;
		}
		users += rows > 0;
	}
	*last_offset = r.next_offset - 1;
	entry->marked = r.next_offset;
	state_mark_offset(d->state, d->config.input_topic, partition, *last_offset);
	d->metrics->restores_total++;
	d->metrics->restored_users_total += users;
	log_line(LOG_PRIORITY_INFO,
		 "%s[%" PRId32 "]: restored %zu users (%zu removed ones deleted) from %s "
		 "(%ld records) in %.2f s; resuming at offset %" PRId64 " (the state had %s)",
		 d->config.input_topic, partition, users, removed, d->config.changelog_topic, read,
		 clock_monotonic_s() - start, r.next_offset, local ? "an older one" : "none");
	rc = 1;
out:
	d->metrics->restore_seconds_total += clock_monotonic_s() - start;
	free(order);
	records_free(r.staged, r.staged_count);
	records_free(r.vouched, r.vouched_count);
	return rc;
}
