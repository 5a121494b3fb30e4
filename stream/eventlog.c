/*
 * eventlog: parallel per-event arrays, interned ids, file readers and writers.
 *
 * Ids are interned in an open-addressing table per kind (linear probing,
 * load at most 1/2); a slot holds the upper 32 bits of the id's XXH3 hash
 * beside index + 1, so a probe compares strings only on a likely match.
 * The ids' bytes live in a few large chunks rather than one malloc each.
 *
 * The Avro reader is Avro C's avro_file_reader over the file's own writer
 * schema. The Avro writer frames the container itself (Avro C still encodes
 * every record): avro_file_writer seeds its sync marker with
 * srand(time(NULL)), so the same log would give different bytes from one
 * second to the next, and it reseeds the process-wide rand() as a side effect.
 */
#include "errstr.h"
#include "eventlog.h"

#include <avro.h>
#include <xxhash.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

/* ---- small helpers ------------------------------------------------------------ */

/* Grows an array to hold at least `need` elements, doubling; 0 or -1. */
static int grow_array(void **array, size_t *cap, size_t need, size_t elem_size)
{
	size_t new_cap = *cap ? *cap : 16;
	void *grown;
	if (need <= *cap)
		return 0;
	while (new_cap < need) {
		if (new_cap > SIZE_MAX / 2 / elem_size)
			return -1;
		new_cap *= 2;
	}
	grown = realloc(*array, new_cap * elem_size);
	if (grown == NULL)
		return -1;
	*array = grown;
	*cap = new_cap;
	return 0;
}

/* ---- interned strings ------------------------------------------------------------ */

/* A block of id bytes; ids never move, so user_ids/item_ids can point into it. */
struct eventlog_chunk {
	struct eventlog_chunk *next;
	size_t used, size;
	char bytes[];
};

#define FIRST_CHUNK_BYTES 4096
#define MAX_CHUNK_BYTES   (1u << 20)

static char *store_string(struct event_log *log, const char *s, size_t len)
{
	struct eventlog_chunk *chunk = log->strings;
	char *copy;
	if (chunk == NULL || chunk->size - chunk->used < len + 1) {
		size_t size = chunk == NULL ? FIRST_CHUNK_BYTES : chunk->size * 2;
		if (size > MAX_CHUNK_BYTES)
			size = MAX_CHUNK_BYTES;
		if (size < len + 1)
			size = len + 1;
		chunk = malloc(sizeof *chunk + size);
		if (chunk == NULL)
			return NULL;
		chunk->next = log->strings;
		chunk->used = 0;
		chunk->size = size;
		log->strings = chunk;
	}
	copy = chunk->bytes + chunk->used;
	memcpy(copy, s, len);
	copy[len] = '\0';
	chunk->used += len + 1;
	return copy;
}

/* One kind of id (users or items) as a view on the log's fields. */
struct id_space {
	const char *kind; /* "user" or "item" */
	char ***ids;
	size_t *count, *cap;
	uint64_t **slots;
	size_t *slot_mask;
	uint32_t **attribute; /* item_category or user_cluster */
};

static struct id_space user_space(struct event_log *log)
{
	return (struct id_space){.kind = "user",
				 .ids = &log->user_ids,
				 .count = &log->user_count,
				 .cap = &log->user_cap,
				 .slots = &log->user_slots,
				 .slot_mask = &log->user_slot_mask,
				 .attribute = &log->user_cluster};
}

static struct id_space item_space(struct event_log *log)
{
	return (struct id_space){.kind = "item",
				 .ids = &log->item_ids,
				 .count = &log->item_count,
				 .cap = &log->item_cap,
				 .slots = &log->item_slots,
				 .slot_mask = &log->item_slot_mask,
				 .attribute = &log->item_category};
}

#define SLOT_INDEX(slot) ((uint32_t)(slot)-1)
#define SLOT_TAG(slot)   ((slot) >> 32)

/* Rebuilds the table with twice the slots (or the first 1024). */
static int grow_slots(struct id_space *space)
{
	size_t slot_count = *space->slots == NULL ? 1024 : (*space->slot_mask + 1) * 2;
	uint64_t *slots = calloc(slot_count, sizeof *slots);
	if (slots == NULL)
		return -1;
	for (size_t i = 0; i < *space->count; i++) {
		const char *id = (*space->ids)[i];
		uint64_t hash = XXH3_64bits(id, strlen(id));
		size_t pos = hash & (slot_count - 1);
		while (slots[pos] != 0)
			pos = (pos + 1) & (slot_count - 1);
		slots[pos] = (hash & 0xFFFFFFFF00000000ULL) | ((uint64_t)i + 1);
	}
	free(*space->slots);
	*space->slots = slots;
	*space->slot_mask = slot_count - 1;
	return 0;
}

static int intern(struct event_log *log, struct id_space space, const char *id, size_t len,
		  uint32_t *index, char *errstr, size_t errstr_size)
{
	uint64_t hash = XXH3_64bits(id, len);
	size_t pos;

	if (*space.slots != NULL) {
		for (pos = hash & *space.slot_mask; (*space.slots)[pos] != 0;
		     pos = (pos + 1) & *space.slot_mask) {
			uint64_t slot = (*space.slots)[pos];
			const char *known;
			if (SLOT_TAG(slot) != hash >> 32)
				continue;
			known = (*space.ids)[SLOT_INDEX(slot)];
			/* strnlen first: never read past the end of a shorter known id */
			if (strnlen(known, len + 1) == len && memcmp(known, id, len) == 0) {
				*index = SLOT_INDEX(slot);
				return 0;
			}
		}
	}

	/* a new id: check it as the UserEvent schema would */
	if (len == 0) {
		set_errstr(errstr, errstr_size, "%s id is empty", space.kind);
		return -1;
	}
	if (len > CODEC_ID_MAX_BYTES) {
		set_errstr(errstr, errstr_size, "%s id '%.40s...' is %zu bytes, longer than %d",
			   space.kind, id, len, CODEC_ID_MAX_BYTES);
		return -1;
	}
	if (!codec_utf8_valid(id, len)) {
		set_errstr(errstr, errstr_size, "%s id is not valid UTF-8 (or holds a NUL byte)",
			   space.kind);
		return -1;
	}
	if (*space.count >= EVENTLOG_NONE - 1) {
		set_errstr(errstr, errstr_size, "more than %u %s ids", EVENTLOG_NONE - 1,
			   space.kind);
		return -1;
	}
	if (*space.count + 1 > *space.cap) {
		size_t cap = *space.cap;
		if (grow_array((void **)space.ids, &cap, *space.count + 1, sizeof(char *)) != 0)
			goto out_of_memory;
		if (*space.attribute != NULL) {
			size_t attribute_cap = *space.cap;
			if (grow_array((void **)space.attribute, &attribute_cap, cap,
				       sizeof(uint32_t)) != 0)
				goto out_of_memory;
		}
		*space.cap = cap;
	}
	if (*space.slots == NULL || (*space.count + 1) * 2 > *space.slot_mask + 1) {
		if (grow_slots(&space) != 0)
			goto out_of_memory;
	}
	char *copy = store_string(log, id, len);
	if (copy == NULL)
		goto out_of_memory;
	for (pos = hash & *space.slot_mask; (*space.slots)[pos] != 0;
	     pos = (pos + 1) & *space.slot_mask)
		;
	*index = (uint32_t)*space.count;
	(*space.slots)[pos] = (hash & 0xFFFFFFFF00000000ULL) | ((uint64_t)*index + 1);
	(*space.ids)[*index] = copy;
	if (*space.attribute != NULL)
		(*space.attribute)[*index] = EVENTLOG_NONE;
	(*space.count)++;
	return 0;

out_of_memory:
	set_errstr(errstr, errstr_size, "out of memory interning %s ids", space.kind);
	return -1;
}

/* Sets a per-id attribute, allocating the array (all EVENTLOG_NONE) on first use. */
static int set_attribute(struct id_space space, uint32_t index, uint32_t value, char *errstr,
			 size_t errstr_size)
{
	if (index >= *space.count) {
		set_errstr(errstr, errstr_size, "%s index %u out of range (%zu %ss)", space.kind,
			   index, *space.count, space.kind);
		return -1;
	}
	if (value == EVENTLOG_NONE) {
		set_errstr(errstr, errstr_size, "%s %u: value %u is reserved for 'none'",
			   space.kind, index, value);
		return -1;
	}
	if (*space.attribute == NULL) {
		uint32_t *attribute = malloc((*space.cap ? *space.cap : 1) * sizeof *attribute);
		if (attribute == NULL) {
			set_errstr(errstr, errstr_size, "out of memory");
			return -1;
		}
		for (size_t i = 0; i < *space.cap; i++)
			attribute[i] = EVENTLOG_NONE;
		*space.attribute = attribute;
	}
	(*space.attribute)[index] = value;
	return 0;
}

/* ---- the log ------------------------------------------------------------------------ */

struct event_log *eventlog_new(void)
{
	struct event_log *log = calloc(1, sizeof(struct event_log));
	if (log != NULL) {
		log->format = EVENTLOG_AUTO;
		log->min_rating = NAN;
	}
	return log;
}

void eventlog_free(struct event_log *log)
{
	if (log == NULL)
		return;
	free(log->user);
	free(log->item);
	free(log->type);
	free(log->ts_ms);
	free(log->user_ids);
	free(log->item_ids);
	free(log->item_category);
	free(log->user_cluster);
	free(log->user_slots);
	free(log->item_slots);
	while (log->strings != NULL) {
		struct eventlog_chunk *next = log->strings->next;
		free(log->strings);
		log->strings = next;
	}
	free(log);
}

int eventlog_reserve(struct event_log *log, size_t events, char *errstr, size_t errstr_size)
{
	size_t cap;
	if (events <= log->event_cap)
		return 0;
	/* each array grows by the same rule from the same capacity, so all four end
	 * equal; after a failure event_cap keeps the old size, which all still hold */
	cap = log->event_cap;
	if (grow_array((void **)&log->user, &cap, events, sizeof *log->user) != 0)
		goto out_of_memory;
	cap = log->event_cap;
	if (grow_array((void **)&log->item, &cap, events, sizeof *log->item) != 0)
		goto out_of_memory;
	cap = log->event_cap;
	if (grow_array((void **)&log->type, &cap, events, sizeof *log->type) != 0)
		goto out_of_memory;
	cap = log->event_cap;
	if (grow_array((void **)&log->ts_ms, &cap, events, sizeof *log->ts_ms) != 0)
		goto out_of_memory;
	log->event_cap = cap;
	return 0;

out_of_memory:
	set_errstr(errstr, errstr_size, "out of memory for %zu events", events);
	return -1;
}

int eventlog_intern_user(struct event_log *log, const char *id, size_t id_len, uint32_t *index,
			 char *errstr, size_t errstr_size)
{
	return intern(log, user_space(log), id, id_len, index, errstr, errstr_size);
}

int eventlog_intern_item(struct event_log *log, const char *id, size_t id_len, uint32_t *index,
			 char *errstr, size_t errstr_size)
{
	return intern(log, item_space(log), id, id_len, index, errstr, errstr_size);
}

int eventlog_append_indexed(struct event_log *log, uint32_t user, uint32_t item,
			    enum event_type type, int64_t ts_ms, char *errstr, size_t errstr_size)
{
	if (user >= log->user_count || item >= log->item_count) {
		set_errstr(errstr, errstr_size, "event %zu: user %u or item %u out of range",
			   log->count, user, item);
		return -1;
	}
	if ((unsigned)type >= EVENT_TYPE_COUNT && (unsigned)type != EVENT_SEARCH) {
		set_errstr(errstr, errstr_size, "event %zu: type %d out of range", log->count,
			   (int)type);
		return -1;
	}
	if (log->count == log->event_cap) {
		size_t want = log->event_cap < 1024 ? 1024 : log->event_cap * 2;
		/* all four arrays share event_cap: grow them to the same size */
		if (eventlog_reserve(log, want, errstr, errstr_size) != 0)
			return -1;
	}
	log->user[log->count] = user;
	log->item[log->count] = item;
	log->type[log->count] = (uint8_t)type;
	log->ts_ms[log->count] = ts_ms;
	log->count++;
	return 0;
}

int eventlog_append(struct event_log *log, const char *user_id, const char *item_id,
		    enum event_type type, int64_t ts_ms, char *errstr, size_t errstr_size)
{
	uint32_t user, item;
	if (eventlog_intern_user(log, user_id, strlen(user_id), &user, errstr, errstr_size) != 0 ||
	    eventlog_intern_item(log, item_id, strlen(item_id), &item, errstr, errstr_size) != 0)
		return -1;
	return eventlog_append_indexed(log, user, item, type, ts_ms, errstr, errstr_size);
}

int eventlog_set_item_category(struct event_log *log, uint32_t item, uint32_t category,
			       char *errstr, size_t errstr_size)
{
	return set_attribute(item_space(log), item, category, errstr, errstr_size);
}

int eventlog_set_user_cluster(struct event_log *log, uint32_t user, uint32_t cluster, char *errstr,
			      size_t errstr_size)
{
	return set_attribute(user_space(log), user, cluster, errstr, errstr_size);
}

/* ---- sorting ------------------------------------------------------------------------------ */

bool eventlog_is_sorted(const struct event_log *log)
{
	for (size_t i = 1; i < log->count; i++)
		if (log->ts_ms[i] < log->ts_ms[i - 1])
			return false;
	return true;
}

#define RADIX_BITS 11
#define RADIX_SIZE (1u << RADIX_BITS)

/* Reorders one per-event array by perm (new[i] = old[perm[i]]) through scratch. */
#define PERMUTE(array, perm, n, scratch)                                                           \
	do {                                                                                       \
		__typeof__((array)[0]) *permuted = (void *)(scratch);                              \
		for (size_t k = 0; k < (n); k++)                                                   \
			permuted[k] = (array)[(perm)[k]];                                          \
		memcpy((array), permuted, (n) * sizeof permuted[0]);                               \
	} while (0)

/*
 * LSD radix sort of (time - min) with the event's position as payload. Each
 * counting pass is stable, so the whole sort is: equal times keep their order.
 */
int eventlog_sort_by_time(struct event_log *log, char *errstr, size_t errstr_size)
{
	size_t n = log->count;
	uint64_t *key = NULL, *key_out = NULL, range;
	uint32_t *perm = NULL, *perm_out = NULL;
	int64_t min_ts, max_ts;
	size_t *counts = NULL;
	int status = -1;

	if (eventlog_is_sorted(log))
		return 0;
	if (n > UINT32_MAX) {
		set_errstr(errstr, errstr_size, "cannot sort %zu events: at most %u", n,
			   UINT32_MAX);
		return -1;
	}
	key = malloc(n * sizeof *key);
	key_out = malloc(n * sizeof *key_out);
	perm = malloc(n * sizeof *perm);
	perm_out = malloc(n * sizeof *perm_out);
	counts = malloc(RADIX_SIZE * sizeof *counts);
	if (key == NULL || key_out == NULL || perm == NULL || perm_out == NULL || counts == NULL) {
		set_errstr(errstr, errstr_size, "out of memory sorting %zu events", n);
		goto out_free;
	}
	min_ts = max_ts = log->ts_ms[0];
	for (size_t i = 1; i < n; i++) {
		if (log->ts_ms[i] < min_ts)
			min_ts = log->ts_ms[i];
		if (log->ts_ms[i] > max_ts)
			max_ts = log->ts_ms[i];
	}
	range = (uint64_t)max_ts - (uint64_t)min_ts;
	for (size_t i = 0; i < n; i++) {
		key[i] = (uint64_t)log->ts_ms[i] - (uint64_t)min_ts;
		perm[i] = (uint32_t)i;
	}
	for (unsigned shift = 0; shift < 64 && (range >> shift) != 0; shift += RADIX_BITS) {
		size_t sum = 0;
		memset(counts, 0, RADIX_SIZE * sizeof *counts);
		for (size_t i = 0; i < n; i++)
			counts[(key[i] >> shift) & (RADIX_SIZE - 1)]++;
		for (size_t d = 0; d < RADIX_SIZE; d++) {
			size_t c = counts[d];
			counts[d] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++) {
			size_t to = counts[(key[i] >> shift) & (RADIX_SIZE - 1)]++;
			key_out[to] = key[i];
			perm_out[to] = perm[i];
		}
		uint64_t *key_swap = key;
		key = key_out;
		key_out = key_swap;
		uint32_t *perm_swap = perm;
		perm = perm_out;
		perm_out = perm_swap;
	}
	/* key_out is free now: it is the scratch for reordering the arrays */
	PERMUTE(log->user, perm, n, key_out);
	PERMUTE(log->item, perm, n, key_out);
	PERMUTE(log->type, perm, n, key_out);
	PERMUTE(log->ts_ms, perm, n, key_out);
	status = 0;

out_free:
	free(key);
	free(key_out);
	free(perm);
	free(perm_out);
	free(counts);
	return status;
}

/* ---- formats ------------------------------------------------------------------------------- */

static const char *const format_names[EVENTLOG_FORMAT_COUNT] = {
    [EVENTLOG_AUTO] = "auto",
    [EVENTLOG_CSV] = "csv",
    [EVENTLOG_AVRO] = "avro",
    [EVENTLOG_MOVIELENS] = "movielens",
    [EVENTLOG_RETAILROCKET] = "retailrocket",
    [EVENTLOG_TAOBAO] = "taobao",
    [EVENTLOG_MOVIETWEETINGS] = "movietweetings",
    [EVENTLOG_GENERIC] = "generic",
};

const char *eventlog_format_name(enum eventlog_format format)
{
	if ((unsigned)format >= EVENTLOG_FORMAT_COUNT)
		return NULL;
	return format_names[format];
}

bool eventlog_format_from_name(const char *name, enum eventlog_format *format)
{
	for (int i = 0; i < EVENTLOG_FORMAT_COUNT; i++) {
		if (strcmp(name, format_names[i]) == 0) {
			*format = (enum eventlog_format)i;
			return true;
		}
	}
	return false;
}

const char *eventlog_format_names(void)
{
	static char names[128];
	if (names[0] == '\0') {
		size_t used = 0;
		for (int i = 0; i < EVENTLOG_FORMAT_COUNT; i++)
			used += (size_t)snprintf(names + used, sizeof names - used, "%s%s",
						 i ? "|" : "", format_names[i]);
	}
	return names;
}

struct eventlog_read_options eventlog_read_options_default(void)
{
	return (struct eventlog_read_options){.format = EVENTLOG_AUTO,
					      .min_rating = NAN,
					      .rating_type = EVENT_PURCHASE,
					      .max_events = 0};
}

bool eventlog_rating_scale(enum eventlog_format format, struct eventlog_rating_scale *scale)
{
	switch (format) {
	case EVENTLOG_MOVIELENS:
		*scale = (struct eventlog_rating_scale){
		    .min = 0.5,
		    .max = 5,
		    .default_min_rating = 4,
		    .label = "MovieLens",
		    .why =
			"4 and 5 stars of 0.5-5: liked, the usual implicit reading of MovieLens"};
		return true;
	case EVENTLOG_MOVIETWEETINGS:
		*scale = (struct eventlog_rating_scale){
		    .min = 0,
		    .max = 10,
		    .default_min_rating = 8,
		    .label = "MovieTweetings",
		    .why = "8 to 10 of 0-10: the same point of the scale as MovieLens's 4 of 5"};
		return true;
	default: return false;
	}
}

#define CSV_HEADER           "ts_ms,user_id,item_id,type"
#define CSV_HEADER_CATEGORY  "ts_ms,user_id,item_id,type,category"
#define MOVIELENS_CSV_HEADER "userId,movieId,rating,timestamp"
#define RETAILROCKET_HEADER  "timestamp,visitorid,event,itemid,transactionid"
#define GENERIC_HEADER       "user,item,ts[,type]"
/* Generic CSV: a ts below this is seconds, from it up milliseconds (see eventlog.h). */
#define GENERIC_MS_FROM 100000000000LL
#define EVENT_SYMBOLS_EXPECTED                                                                     \
	"IMPRESSION, VIEW, CLICK, ADD_TO_CART, REMOVE_FROM_CART, FAVORITE or PURCHASE"
#define AVRO_MAGIC "Obj\x01"

/* ---- text readers ------------------------------------------------------------------------ */

enum movielens_flavour { MOVIELENS_TABS, MOVIELENS_COLONS, MOVIELENS_CSV };

struct text_reader {
	const char *path;
	FILE *fp;
	char *line;
	size_t line_cap;
	size_t lineno;
	const struct eventlog_read_options *options;
	struct event_log *log;
	enum eventlog_format format;
	enum movielens_flavour flavour;
	bool csv_has_category;
	/* rating formats: the scale and the threshold in force */
	struct eventlog_rating_scale scale;
	double min_rating;
	/* generic CSV: fields a line (0 until the first line), the columns of
	   user, item, ts and type (from the header, else 0, 1, 2, 3; type -1
	   when absent), the ts unit (0 undecided, else 1 or 1000 ms a unit) and
	   the line that decided it */
	size_t generic_fields;
	int generic_col[4];
	int64_t generic_ms_per_unit;
	size_t generic_unit_line;
};

/* Reads the next non-empty line, without its line ending: 1, 0 at the end, -1 on error. */
static int next_line(struct text_reader *r, char *errstr, size_t errstr_size)
{
	for (;;) {
		ssize_t len = getline(&r->line, &r->line_cap, r->fp);
		if (len < 0) {
			if (ferror(r->fp)) {
				set_errstr(errstr, errstr_size, "%s:%zu: read error: %s", r->path,
					   r->lineno + 1, strerror(errno));
				return -1;
			}
			return 0;
		}
		r->lineno++;
		while (len > 0 && (r->line[len - 1] == '\n' || r->line[len - 1] == '\r'))
			r->line[--len] = '\0';
		if ((size_t)len != strlen(r->line)) {
			set_errstr(errstr, errstr_size, "%s:%zu: line holds a NUL byte", r->path,
				   r->lineno);
			return -1;
		}
		if (len > 0)
			return 1;
	}
}

static int line_error(const struct text_reader *r, char *errstr, size_t errstr_size,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int line_error(const struct text_reader *r, char *errstr, size_t errstr_size,
		      const char *fmt, ...)
{
	char message[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof message, fmt, ap);
	va_end(ap);
	set_errstr(errstr, errstr_size, "%s:%zu: %s", r->path, r->lineno, message);
	return -1;
}

#define MAX_FIELDS 32

/*
 * Cuts line in place at every occurrence of sep (one or two characters) and
 * returns how many fields it had; the first MAX_FIELDS are stored.
 */
static size_t split(char *line, const char *sep, char **fields)
{
	size_t sep_len = strlen(sep), count = 0;
	char *p = line;
	for (;;) {
		char *end = sep_len == 1 ? strchr(p, sep[0]) : strstr(p, sep);
		if (count < MAX_FIELDS)
			fields[count] = p;
		count++;
		if (end == NULL)
			return count;
		*end = '\0';
		p = end + sep_len;
	}
}

/*
 * split(line, ",") for CSV as spreadsheets and databases write it (RFC
 * 4180): a field in double quotes may hold commas, and "" for a quote; the
 * quotes are removed in place. A field that opens a quote and never closes
 * it runs to the end of the line.
 */
static size_t split_csv(char *line, char **fields)
{
	size_t count = 0;
	char *p = line;
	for (;;) {
		char *out = p, *start = p;
		if (*p == '"') {
			for (p++; *p != '\0'; p++) {
				if (*p == '"' && p[1] == '"')
					*out++ = *p++;
				else if (*p == '"') {
					p++;
					break;
				} else
					*out++ = *p;
			}
			while (*p != '\0' && *p != ',') /* text after the closing quote: kept */
				*out++ = *p++;
		} else {
			while (*p != '\0' && *p != ',')
				*out++ = *p++;
		}
		bool last = *p == '\0';
		*out = '\0';
		if (count < MAX_FIELDS)
			fields[count] = start;
		count++;
		if (last)
			return count;
		p++;
	}
}

static bool parse_int64(const char *text, int64_t *out)
{
	char *end;
	long long v;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0')
		return false;
	*out = v;
	return true;
}

static bool parse_seconds_as_ms(const char *text, int64_t *out_ms)
{
	int64_t seconds;
	if (!parse_int64(text, &seconds) || seconds > INT64_MAX / 1000 ||
	    seconds < INT64_MIN / 1000)
		return false;
	*out_ms = seconds * 1000;
	return true;
}

static bool parse_category(const char *text, uint32_t *out)
{
	int64_t v;
	if (!parse_int64(text, &v) || v < 0 || v >= (int64_t)EVENTLOG_NONE)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* Interns the ids and appends one event, prefixing errors with file:line. */
static int add_event(struct text_reader *r, const char *user_id, const char *item_id,
		     enum event_type type, int64_t ts_ms, uint32_t *item_out, char *errstr,
		     size_t errstr_size)
{
	char why[256];
	uint32_t user, item;
	if (eventlog_intern_user(r->log, user_id, strlen(user_id), &user, why, sizeof why) != 0 ||
	    eventlog_intern_item(r->log, item_id, strlen(item_id), &item, why, sizeof why) != 0 ||
	    eventlog_append_indexed(r->log, user, item, type, ts_ms, why, sizeof why) != 0)
		return line_error(r, errstr, errstr_size, "%s", why);
	if (item_out != NULL)
		*item_out = item;
	return 0;
}

/* An item's first category wins: later lines cannot move it. */
static int add_category(struct text_reader *r, uint32_t item, uint32_t category, char *errstr,
			size_t errstr_size)
{
	char why[256];
	if (r->log->item_category != NULL && r->log->item_category[item] != EVENTLOG_NONE)
		return 0;
	if (eventlog_set_item_category(r->log, item, category, why, sizeof why) != 0)
		return line_error(r, errstr, errstr_size, "%s", why);
	return 0;
}

static int parse_csv_line(struct text_reader *r, char *line, char *errstr, size_t errstr_size)
{
	size_t expected = r->csv_has_category ? 5 : 4;
	char *f[MAX_FIELDS];
	size_t n = split(line, ",", f);
	enum event_type type;
	uint32_t item, category = EVENTLOG_NONE;
	int64_t ts_ms;

	if (n != expected)
		return line_error(r, errstr, errstr_size,
				  "expected %zu fields separated by ',' (%s), got %zu", expected,
				  r->csv_has_category ? CSV_HEADER_CATEGORY : CSV_HEADER, n);
	if (!parse_int64(f[0], &ts_ms))
		return line_error(r, errstr, errstr_size,
				  "ts_ms: expected a whole number of milliseconds, got '%.64s'",
				  f[0]);
	if (strcmp(f[3], EVENT_SEARCH_NAME) == 0)
		type = (enum event_type)EVENT_SEARCH; /* item_id is the query's id */
	else if (!event_type_from_name(f[3], &type))
		return line_error(r, errstr, errstr_size,
				  "unknown event type '%.64s' (expected %s or " EVENT_SEARCH_NAME
				  ")",
				  f[3], EVENT_SYMBOLS_EXPECTED);
	if (r->csv_has_category && f[4][0] != '\0' && !parse_category(f[4], &category))
		return line_error(
		    r, errstr, errstr_size,
		    "category: expected a whole number below %u or nothing, got '%.64s'",
		    EVENTLOG_NONE, f[4]);
	if (add_event(r, f[1], f[2], type, ts_ms, &item, errstr, errstr_size) != 0)
		return -1;
	if (category != EVENTLOG_NONE)
		return add_category(r, item, category, errstr, errstr_size);
	return 0;
}

/* MovieLens (any flavour) and MovieTweetings (MOVIELENS_COLONS): user, item, rating, seconds. */
static int parse_rating_line(struct text_reader *r, char *line, char *errstr, size_t errstr_size)
{
	static const char *const separators[] = {"\t", "::", ","};
	static const char *const separator_names[] = {"tabs", "'::'", "','"};
	char *f[MAX_FIELDS], *end;
	size_t n = split(line, separators[r->flavour], f);
	double rating;
	int64_t ts_ms;

	if (n != 4)
		return line_error(
		    r, errstr, errstr_size,
		    "expected 4 fields separated by %s (user, item, rating, timestamp), got %zu",
		    separator_names[r->flavour], n);
	errno = 0;
	rating = strtod(f[2], &end);
	if (errno != 0 || end == f[2] || *end != '\0' || !isfinite(rating))
		return line_error(r, errstr, errstr_size, "rating: expected a number, got '%.64s'",
				  f[2]);
	if (rating < r->scale.min || rating > r->scale.max)
		return line_error(
		    r, errstr, errstr_size, "rating %g is outside the %s scale %g to %g%s", rating,
		    r->scale.label, r->scale.min, r->scale.max,
		    r->format == EVENTLOG_MOVIELENS && rating > r->scale.max && rating <= 10
			? " (a MovieTweetings file? it rates 0 to 10: read it "
			  "with the format movietweetings)"
			: "");
	if (!parse_seconds_as_ms(f[3], &ts_ms))
		return line_error(r, errstr, errstr_size,
				  "timestamp: expected a whole number of seconds, got '%.64s'",
				  f[3]);
	if (rating < r->min_rating)
		return 0;
	return add_event(r, f[0], f[1], r->options->rating_type, ts_ms, NULL, errstr, errstr_size);
}

static int parse_retailrocket_line(struct text_reader *r, char *line, char *errstr,
				   size_t errstr_size)
{
	char *f[MAX_FIELDS];
	size_t n = split(line, ",", f);
	enum event_type type;
	int64_t ts_ms;

	if (n != 5)
		return line_error(r, errstr, errstr_size,
				  "expected 5 fields separated by ',' (%s), got %zu",
				  RETAILROCKET_HEADER, n);
	if (!parse_int64(f[0], &ts_ms))
		return line_error(r, errstr, errstr_size,
				  "timestamp: expected a whole number of milliseconds, got '%.64s'",
				  f[0]);
	if (strcmp(f[2], "view") == 0)
		type = EVENT_VIEW;
	else if (strcmp(f[2], "addtocart") == 0)
		type = EVENT_ADD_TO_CART;
	else if (strcmp(f[2], "transaction") == 0)
		type = EVENT_PURCHASE;
	else
		return line_error(
		    r, errstr, errstr_size,
		    "unknown event type '%.64s' (expected view, addtocart or transaction)", f[2]);
	return add_event(r, f[1], f[3], type, ts_ms, NULL, errstr, errstr_size);
}

/* Taobao behaviour names, and whether a word is one (for AUTO detection). */
static bool taobao_behaviour(const char *name, enum event_type *type)
{
	static const struct {
		const char *name;
		enum event_type type;
	} behaviours[] = {{"pv", EVENT_VIEW},
			  {"cart", EVENT_ADD_TO_CART},
			  {"fav", EVENT_FAVORITE},
			  {"buy", EVENT_PURCHASE}};
	for (size_t i = 0; i < sizeof behaviours / sizeof behaviours[0]; i++) {
		if (strcmp(name, behaviours[i].name) == 0) {
			*type = behaviours[i].type;
			return true;
		}
	}
	return false;
}

static int parse_taobao_line(struct text_reader *r, char *line, char *errstr, size_t errstr_size)
{
	char *f[MAX_FIELDS];
	size_t n = split(line, ",", f);
	enum event_type type;
	uint32_t item, category;
	int64_t ts_ms;

	if (n != 5)
		return line_error(r, errstr, errstr_size,
				  "expected 5 fields separated by ',' "
				  "(user_id,item_id,category_id,behavior_type,timestamp), got %zu",
				  n);
	if (!parse_category(f[2], &category))
		return line_error(r, errstr, errstr_size,
				  "category_id: expected a whole number below %u, got '%.64s'",
				  EVENTLOG_NONE, f[2]);
	if (!taobao_behaviour(f[3], &type))
		return line_error(r, errstr, errstr_size,
				  "unknown behavior type '%.64s' (expected pv, cart, fav or buy)",
				  f[3]);
	if (!parse_seconds_as_ms(f[4], &ts_ms))
		return line_error(r, errstr, errstr_size,
				  "timestamp: expected a whole number of seconds, got '%.64s'",
				  f[4]);
	if (add_event(r, f[0], f[1], type, ts_ms, &item, errstr, errstr_size) != 0)
		return -1;
	return add_category(r, item, category, errstr, errstr_size);
}

/*
 * An ISO 8601 date and time, "2019-10-01 00:00:00 UTC",
 * "2019-10-01T00:00:00.250Z", "2019-10-01T02:00:00+02:00": date, 'T' or a
 * blank, hours and minutes, optional seconds and fraction, then nothing
 * (UTC), "Z", "UTC" or an offset ±HH[:MM]. glibc's strptime() reads the
 * fields; its %z does not take "UTC" or a fraction, so those are ours.
 * @returns true with the instant in ms since the epoch.
 */
static bool parse_iso8601_ms(const char *text, int64_t *out_ms)
{
	struct tm tm = {0};
	const char *p = strptime(text, "%Y-%m-%d", &tm);
	if (p == NULL || (*p != 'T' && *p != ' '))
		return false;
	p = strptime(p + 1, "%H:%M", &tm);
	if (p == NULL)
		return false;
	int64_t ms = 0;
	if (*p == ':') {
		if (!(p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9'))
			return false;
		tm.tm_sec = (p[1] - '0') * 10 + (p[2] - '0');
		p += 3;
		if (*p == '.' || *p == ',') {
			int64_t scale = 100;
			for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
				ms += (*p - '0') * scale;
		}
	}
	while (*p == ' ')
		p++;
	int64_t offset_min = 0;
	if (*p == 'Z' || *p == 'z' || strcmp(p, "UTC") == 0 || strcmp(p, "GMT") == 0)
		p += *p == 'Z' || *p == 'z' ? 1 : 3;
	else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1, hh, mm = 0, used = 0;
		if (sscanf(p + 1, "%2d%n", &hh, &used) != 1 || used != 2)
			return false;
		p += 1 + used;
		if (*p == ':')
			p++;
		if (*p != '\0' && (sscanf(p, "%2d%n", &mm, &used) != 1 || used != 2))
			return false;
		p += *p != '\0' ? 2 : 0;
		offset_min = sign * (hh * 60 + mm);
	}
	if (*p != '\0' || tm.tm_sec > 59)
		return false;
	/* a day the month does not have (2019-02-30) is an error, not March */
	struct tm given = tm, back;
	time_t seconds = timegm(&tm);
	if (gmtime_r(&seconds, &back) == NULL || back.tm_mday != given.tm_mday ||
	    back.tm_mon != given.tm_mon || back.tm_year != given.tm_year)
		return false;
	*out_ms = ((int64_t)seconds - offset_min * 60) * 1000 + ms;
	return true;
}

/* Generic CSV: converts ts to ms, deciding the unit on the first event (see eventlog.h). */
static int generic_ts_ms(struct text_reader *r, const char *text, int64_t *ts_ms, char *errstr,
			 size_t errstr_size)
{
	int64_t ts, per_unit;
	if (parse_iso8601_ms(text, ts_ms))
		return 0;
	if (!parse_int64(text, &ts))
		return line_error(r, errstr, errstr_size,
				  "ts: expected a whole number of seconds or milliseconds, or an "
				  "ISO 8601 date and time (2019-10-01 00:00:00 UTC), got '%.64s'",
				  text);
	per_unit = ts >= GENERIC_MS_FROM || ts <= -GENERIC_MS_FROM ? 1 : 1000;
	if (r->generic_ms_per_unit == 0) {
		r->generic_ms_per_unit = per_unit;
		r->generic_unit_line = r->lineno;
	} else if (per_unit != r->generic_ms_per_unit)
		return line_error(r, errstr, errstr_size,
				  "ts %lld is in %s, but line %zu was in %s (values from 1e11 up "
				  "are milliseconds, below are seconds; do not mix units)",
				  (long long)ts, per_unit == 1 ? "milliseconds" : "seconds",
				  r->generic_unit_line,
				  r->generic_ms_per_unit == 1 ? "milliseconds" : "seconds");
	*ts_ms = ts * r->generic_ms_per_unit;
	return 0;
}

static int parse_generic_line(struct text_reader *r, char *line, char *errstr, size_t errstr_size)
{
	char *f[MAX_FIELDS];
	size_t n = split_csv(line, f);
	enum event_type type = EVENT_VIEW;
	int64_t ts_ms = 0;

	if (r->generic_fields == 0) {
		/* no header: the columns in their order */
		if (n != 3 && n != 4)
			return line_error(r, errstr, errstr_size,
					  "expected 3 or 4 fields separated by ',' (" GENERIC_HEADER
					  "), or a header naming the columns, got %zu",
					  n);
		r->generic_fields = n;
		for (int c = 0; c < 4; c++)
			r->generic_col[c] = c < (int)n ? c : -1;
	}
	if (n != r->generic_fields)
		return line_error(r, errstr, errstr_size,
				  "expected %zu fields separated by ',' as on the first line, got %zu",
				  r->generic_fields, n);
	if (n > MAX_FIELDS)
		return line_error(r, errstr, errstr_size,
				  "%zu fields: at most %d are read", n, MAX_FIELDS);
	const int *col = r->generic_col;
	if (generic_ts_ms(r, f[col[2]], &ts_ms, errstr, errstr_size) != 0)
		return -1;
	if (col[3] >= 0 && !event_type_from_alias(f[col[3]], &type))
		return line_error(r, errstr, errstr_size,
				  "unknown event type '%.64s' (expected %s, their lower-case keys, "
				  "or a common name: pv, cart, addtocart, fav, like, buy, "
				  "transaction, order, ...)",
				  f[col[3]], EVENT_SYMBOLS_EXPECTED);
	return add_event(r, f[col[0]], f[col[1]], type, ts_ms, NULL, errstr, errstr_size);
}

/*
 * Generic CSV header: the names each column role answers to, normalised
 * (lower case, no '_', '-', blank or quote): user, item, ts, type. Best
 * first: when two columns answer to one role (session_id and user_id,
 * date and timestamp), the better-ranked name takes it.
 */
static const char *const generic_names[4][16] = {
    {"userid", "user", "visitorid", "visitor", "customerid", "customer", "clientid",
     "memberid", "member", "uid", "sessionid", "session", NULL},
    {"itemid", "item", "productid", "product", "sku", "movieid", "movie", "articleid",
     "article", "contentid", "offerid", "offer", "iid", NULL},
    {"timestamp", "ts", "tsms", "timestampms", "eventtime", "time", "datetime", "unixtime",
     "createdat", "date", NULL},
    {"eventtype", "type", "event", "behaviortype", "behaviourtype", "behavior", "behaviour",
     "action", "interactiontype", "interaction", "kind", NULL}};

/*
 * Generic CSV header: 1 when line names the columns (in any order, other
 * columns ignored: a user, an item and a ts column at least), with
 * r->generic_fields and r->generic_col set (r may be NULL: only the answer).
 * 0 when line is not such a header.
 */
static int generic_header(const char *line, struct text_reader *r)
{
	char copy[1024], *f[MAX_FIELDS];
	int col[4] = {-1, -1, -1, -1};
	size_t rank[4] = {SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX};
	if (strlen(line) >= sizeof copy)
		return 0;
	strcpy(copy, line);
	size_t n = split_csv(copy, f);
	if (n < 3 || n > MAX_FIELDS)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char key[64];
		if (!event_normalise_name(f[i], key, sizeof key))
			continue; /* longer than any name known */
		for (int c = 0; c < 4; c++)
			for (size_t a = 0; generic_names[c][a] != NULL; a++)
				if (strcmp(key, generic_names[c][a]) == 0) {
					if (a < rank[c]) { /* the better name; the first on a tie */
						col[c] = (int)i;
						rank[c] = a;
					}
					c = 4; /* one role a column */
					break;
				}
	}
	if (col[0] < 0 || col[1] < 0 || col[2] < 0)
		return 0;
	if (r != NULL) {
		r->generic_fields = n;
		memcpy(r->generic_col, col, sizeof col);
	}
	return 1;
}

/* True when line looks like generic CSV data: 3 or 4 fields, ts a number, type a type. */
static bool looks_like_generic(const char *line)
{
	char copy[1024], *f[MAX_FIELDS];
	enum event_type type;
	int64_t ts;
	size_t n;
	if (strlen(line) >= sizeof copy)
		return false;
	strcpy(copy, line);
	n = split_csv(copy, f);
	return (n == 3 || n == 4) && f[0][0] != '\0' && f[1][0] != '\0' && parse_int64(f[2], &ts) &&
	       (n == 3 || event_type_from_alias(f[3], &type));
}

/*
 * True when a `::` line is MovieTweetings rather than MovieLens: the movie
 * is an IMDb number (7 or more digits, leading zero; MovieLens ids have no
 * leading zero) or the rating is above MovieLens's 5.
 */
static bool looks_like_movietweetings(const char *line)
{
	char copy[1024], *f[MAX_FIELDS], *end;
	size_t digits = 0;
	double rating;
	if (strlen(line) >= sizeof copy)
		return false;
	strcpy(copy, line);
	if (split(copy, "::", f) != 4)
		return false;
	while (f[1][digits] >= '0' && f[1][digits] <= '9')
		digits++;
	if (f[1][digits] == '\0' && digits >= 7 && f[1][0] == '0')
		return true;
	rating = strtod(f[2], &end);
	return end != f[2] && *end == '\0' && rating > 5;
}

/* True when line looks like Taobao data: 5 comma-separated fields, the 4th a behaviour. */
static bool looks_like_taobao(const char *line)
{
	char copy[1024], *f[MAX_FIELDS];
	enum event_type type;
	if (strlen(line) >= sizeof copy)
		return false;
	strcpy(copy, line);
	return split(copy, ",", f) == 5 && taobao_behaviour(f[3], &type);
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/*
 * Decides the format of an empty file by its name, for AUTO: only the
 * header-less formats can be empty.
 */
static int format_of_empty_file(const char *path, enum eventlog_format *format, char *errstr,
				size_t errstr_size)
{
	const char *name = base_name(path);
	if (strcmp(name, "u.data") == 0 || has_suffix(name, ".dat"))
		*format = EVENTLOG_MOVIELENS;
	else if (strncmp(name, "UserBehavior", 12) == 0)
		*format = EVENTLOG_TAOBAO;
	else {
		set_errstr(errstr, errstr_size,
			   "%s: empty file: cannot detect its format (only u.data, *.dat and "
			   "UserBehavior* may be empty; name the format to read it)",
			   path);
		return -1;
	}
	return 0;
}

/* Decides the format from the first non-empty line, for AUTO. */
static int format_of_first_line(struct text_reader *r, const char *line, char *errstr,
				size_t errstr_size)
{
	if (strcmp(line, CSV_HEADER) == 0 || strcmp(line, CSV_HEADER_CATEGORY) == 0)
		r->format = EVENTLOG_CSV;
	else if (strstr(line, "::") != NULL)
		r->format =
		    looks_like_movietweetings(line) ? EVENTLOG_MOVIETWEETINGS : EVENTLOG_MOVIELENS;
	else if (strcmp(line, MOVIELENS_CSV_HEADER) == 0 || strchr(line, '\t') != NULL)
		r->format = EVENTLOG_MOVIELENS;
	else if (strcmp(line, RETAILROCKET_HEADER) == 0)
		r->format = EVENTLOG_RETAILROCKET;
	else if (looks_like_taobao(line))
		r->format = EVENTLOG_TAOBAO;
	else if (generic_header(line, NULL) || looks_like_generic(line))
		r->format = EVENTLOG_GENERIC;
	else
		return line_error(r, errstr, errstr_size,
				  "cannot detect the format: expected a header (" CSV_HEADER
				  "[,category] | " MOVIELENS_CSV_HEADER " | " RETAILROCKET_HEADER
				  " | " GENERIC_HEADER
				  "), a MovieLens or MovieTweetings line (tabs "
				  "or '::'), a Taobao line (user,item,category,pv|cart|fav|buy,"
				  "seconds) or a generic line (user,item,ts[,type]), got '%.80s'",
				  line);
	return 0;
}

/*
 * Checks the first non-empty line against the format: consumes a header
 * (returning 1) or leaves a data line to be parsed (returning 0); -1 on error.
 */
static int take_header(struct text_reader *r, const char *line, char *errstr, size_t errstr_size)
{
	switch (r->format) {
	case EVENTLOG_CSV:
		if (strcmp(line, CSV_HEADER) == 0 || strcmp(line, CSV_HEADER_CATEGORY) == 0) {
			r->csv_has_category = strcmp(line, CSV_HEADER_CATEGORY) == 0;
			return 1;
		}
		return line_error(r, errstr, errstr_size,
				  "expected the header '" CSV_HEADER "' or '" CSV_HEADER_CATEGORY
				  "', got '%.80s'",
				  line);
	case EVENTLOG_RETAILROCKET:
		if (strcmp(line, RETAILROCKET_HEADER) == 0)
			return 1;
		return line_error(r, errstr, errstr_size,
				  "expected the header '" RETAILROCKET_HEADER "', got '%.80s'",
				  line);
	case EVENTLOG_MOVIELENS:
		if (strcmp(line, MOVIELENS_CSV_HEADER) == 0) {
			r->flavour = MOVIELENS_CSV;
			return 1;
		}
		if (strstr(line, "::") != NULL)
			r->flavour = MOVIELENS_COLONS;
		else if (strchr(line, '\t') != NULL)
			r->flavour = MOVIELENS_TABS;
		else
			return line_error(r, errstr, errstr_size,
					  "expected a MovieLens line (user<TAB>item<TAB>rating<TAB>"
					  "timestamp or user::item::rating::timestamp) or the "
					  "header '" MOVIELENS_CSV_HEADER "', got '%.80s'",
					  line);
		return 0;
	case EVENTLOG_MOVIETWEETINGS:
		if (strstr(line, "::") == NULL)
			return line_error(
			    r, errstr, errstr_size,
			    "expected a MovieTweetings line "
			    "(user_id::movie_id::rating::rating_timestamp), got '%.80s'",
			    line);
		r->flavour = MOVIELENS_COLONS;
		return 0;
	case EVENTLOG_GENERIC: return generic_header(line, r);
	default: return 0;
	}
}

static int parse_line(struct text_reader *r, char *line, char *errstr, size_t errstr_size)
{
	switch (r->format) {
	case EVENTLOG_CSV: return parse_csv_line(r, line, errstr, errstr_size);
	case EVENTLOG_MOVIELENS:
	case EVENTLOG_MOVIETWEETINGS: return parse_rating_line(r, line, errstr, errstr_size);
	case EVENTLOG_GENERIC: return parse_generic_line(r, line, errstr, errstr_size);
	case EVENTLOG_RETAILROCKET: return parse_retailrocket_line(r, line, errstr, errstr_size);
	case EVENTLOG_TAOBAO: return parse_taobao_line(r, line, errstr, errstr_size);
	default: return line_error(r, errstr, errstr_size, "not a text format");
	}
}

/*
 * Settles the rating threshold once the format is known: the format's
 * default, or the one asked for when it lies on the format's scale. Asking
 * for one from a format without ratings is an error too: the caller meant
 * another file or format.
 */
static int settle_min_rating(const char *path, enum eventlog_format format, double asked,
			     struct eventlog_rating_scale *scale, double *min_rating, char *errstr,
			     size_t errstr_size)
{
	if (!eventlog_rating_scale(format, scale)) {
		*min_rating = NAN;
		if (isnan(asked))
			return 0;
		set_errstr(errstr, errstr_size,
			   "%s: a minimum rating (%g) was given, but the %s format has no ratings",
			   path, asked, eventlog_format_name(format));
		return -1;
	}
	if (isnan(asked)) {
		*min_rating = scale->default_min_rating;
		return 0;
	}
	if (asked < scale->min || asked > scale->max) {
		set_errstr(errstr, errstr_size,
			   "%s: minimum rating %g is outside the %s rating scale %g to %g (its "
			   "default is %g)",
			   path, asked, scale->label, scale->min, scale->max,
			   scale->default_min_rating);
		return -1;
	}
	*min_rating = asked;
	return 0;
}

static int read_text(struct text_reader *r, char *errstr, size_t errstr_size)
{
	int got = next_line(r, errstr, errstr_size), header;

	if (got < 0)
		return -1;
	if (got == 0) {
		if (r->format == EVENTLOG_AUTO &&
		    format_of_empty_file(r->path, &r->format, errstr, errstr_size) != 0)
			return -1;
		if (settle_min_rating(r->path, r->format, r->options->min_rating, &r->scale,
				      &r->min_rating, errstr, errstr_size) != 0)
			return -1;
		if (r->format == EVENTLOG_CSV || r->format == EVENTLOG_RETAILROCKET) {
			set_errstr(errstr, errstr_size, "%s: empty file: expected the header '%s'",
				   r->path,
				   r->format == EVENTLOG_CSV ? CSV_HEADER : RETAILROCKET_HEADER);
			return -1;
		}
		return 0;
	}
	if (r->format == EVENTLOG_AUTO &&
	    format_of_first_line(r, r->line, errstr, errstr_size) != 0)
		return -1;
	if (settle_min_rating(r->path, r->format, r->options->min_rating, &r->scale, &r->min_rating,
			      errstr, errstr_size) != 0)
		return -1;
	header = take_header(r, r->line, errstr, errstr_size);
	if (header < 0)
		return -1;
	if (header == 0 && parse_line(r, r->line, errstr, errstr_size) != 0)
		return -1;
	while (r->options->max_events == 0 || r->log->count < r->options->max_events) {
		got = next_line(r, errstr, errstr_size);
		if (got <= 0)
			return got;
		if (parse_line(r, r->line, errstr, errstr_size) != 0)
			return -1;
	}
	return 0;
}

/* ---- Avro reader ------------------------------------------------------------------------ */

/* Where the fields we need sit in the file's writer schema, and how to read them. */
struct avro_layout {
	int user_index, item_index, type_index, ts_index;
	avro_type_t type_kind, ts_kind;
	int *symbol_map; /* writer enum symbol -> enum event_type, -1: unknown to us */
	int symbol_count;
};

static avro_schema_t follow_link(avro_schema_t schema)
{
	while (schema != NULL && avro_typeof(schema) == AVRO_LINK)
		schema = avro_schema_link_target(schema);
	return schema;
}

/* Finds a field of the writer's record that must be one of two types. */
static int find_field(const char *path, avro_schema_t record, const char *name, avro_type_t a,
		      avro_type_t b, const char *expected, int *index, avro_type_t *kind,
		      char *errstr, size_t errstr_size)
{
	avro_schema_t field;
	*index = avro_schema_record_field_get_index(record, name);
	if (*index < 0) {
		set_errstr(errstr, errstr_size, "%s: the writer schema has no field '%s'", path,
			   name);
		return -1;
	}
	field = follow_link(avro_schema_record_field_get_by_index(record, *index));
	*kind = avro_typeof(field);
	if (*kind != a && *kind != b) {
		set_errstr(errstr, errstr_size, "%s: writer schema field '%s' is %s, expected %s",
			   path, name, avro_schema_type_name(field), expected);
		return -1;
	}
	return 0;
}

static int plan_avro_layout(const char *path, avro_schema_t writer, struct avro_layout *layout,
			    char *errstr, size_t errstr_size)
{
	avro_type_t kind;
	if (writer == NULL || avro_typeof(writer) != AVRO_RECORD) {
		set_errstr(errstr, errstr_size,
			   "%s: the writer schema is %s, expected a UserEvent record", path,
			   writer ? avro_schema_type_name(writer) : "missing");
		return -1;
	}
	if (find_field(path, writer, "user_id", AVRO_STRING, AVRO_STRING, "string",
		       &layout->user_index, &kind, errstr, errstr_size) != 0 ||
	    find_field(path, writer, "item_id", AVRO_STRING, AVRO_STRING, "string",
		       &layout->item_index, &kind, errstr, errstr_size) != 0 ||
	    find_field(path, writer, "type", AVRO_ENUM, AVRO_STRING, "an enum or string",
		       &layout->type_index, &layout->type_kind, errstr, errstr_size) != 0 ||
	    find_field(path, writer, "ts", AVRO_INT64, AVRO_INT32, "long or int", &layout->ts_index,
		       &layout->ts_kind, errstr, errstr_size) != 0)
		return -1;
	if (layout->type_kind == AVRO_ENUM) {
		avro_schema_t symbols =
		    follow_link(avro_schema_record_field_get_by_index(writer, layout->type_index));
		layout->symbol_count = avro_schema_enum_number_of_symbols(symbols);
		layout->symbol_map = malloc(((size_t)layout->symbol_count + 1) * sizeof(int));
		if (layout->symbol_map == NULL) {
			set_errstr(errstr, errstr_size, "out of memory");
			return -1;
		}
		for (int i = 0; i < layout->symbol_count; i++) {
			enum event_type type;
			layout->symbol_map[i] =
			    event_type_from_name(avro_schema_enum_get(symbols, i), &type)
				? (int)type
				: -1;
		}
	}
	return 0;
}

/* Reads one field's string (borrowed from the value); 0 or -1. */
static int field_string(avro_value_t *record, int index, const char **s, size_t *len)
{
	avro_value_t field;
	size_t size;
	if (avro_value_get_by_index(record, (size_t)index, &field, NULL) != 0 ||
	    avro_value_get_string(&field, s, &size) != 0)
		return -1;
	*len = size > 0 ? size - 1 : 0; /* Avro C counts the terminating NUL */
	return 0;
}

static int avro_record_to_event(const char *path, size_t record_no, avro_value_t *record,
				const struct avro_layout *layout, struct event_log *log,
				char *errstr, size_t errstr_size)
{
	const char *user_id, *item_id, *type_name = NULL;
	size_t user_len, item_len, type_len;
	avro_value_t field;
	enum event_type type;
	int64_t ts_ms;
	uint32_t user, item;
	char why[256];

	if (field_string(record, layout->user_index, &user_id, &user_len) != 0 ||
	    field_string(record, layout->item_index, &item_id, &item_len) != 0)
		goto bad_record;
	if (layout->type_kind == AVRO_ENUM) {
		int symbol;
		if (avro_value_get_by_index(record, (size_t)layout->type_index, &field, NULL) !=
			0 ||
		    avro_value_get_enum(&field, &symbol) != 0 || symbol < 0 ||
		    symbol >= layout->symbol_count)
			goto bad_record;
		if (layout->symbol_map[symbol] < 0) {
			set_errstr(errstr, errstr_size,
				   "%s: record %zu: unknown event type '%.64s' (expected %s)", path,
				   record_no,
				   avro_schema_enum_get(avro_value_get_schema(&field), symbol),
				   EVENT_SYMBOLS_EXPECTED);
			return -1;
		}
		type = (enum event_type)layout->symbol_map[symbol];
	} else {
		if (field_string(record, layout->type_index, &type_name, &type_len) != 0)
			goto bad_record;
		if (!event_type_from_name(type_name, &type)) {
			set_errstr(errstr, errstr_size,
				   "%s: record %zu: unknown event type '%.64s' (expected %s)", path,
				   record_no, type_name, EVENT_SYMBOLS_EXPECTED);
			return -1;
		}
	}
	if (avro_value_get_by_index(record, (size_t)layout->ts_index, &field, NULL) != 0)
		goto bad_record;
	if (layout->ts_kind == AVRO_INT64) {
		if (avro_value_get_long(&field, &ts_ms) != 0)
			goto bad_record;
	} else {
		int32_t ts32;
		if (avro_value_get_int(&field, &ts32) != 0)
			goto bad_record;
		ts_ms = ts32;
	}
	if (eventlog_intern_user(log, user_id, user_len, &user, why, sizeof why) != 0 ||
	    eventlog_intern_item(log, item_id, item_len, &item, why, sizeof why) != 0 ||
	    eventlog_append_indexed(log, user, item, type, ts_ms, why, sizeof why) != 0) {
		set_errstr(errstr, errstr_size, "%s: record %zu: %s", path, record_no, why);
		return -1;
	}
	return 0;

bad_record:
	set_errstr(errstr, errstr_size, "%s: record %zu: cannot read its fields: %s", path,
		   record_no, avro_strerror());
	return -1;
}

static int read_avro(const char *path, const struct eventlog_read_options *options,
		     struct event_log *log, char *errstr, size_t errstr_size)
{
	struct avro_layout layout = {.symbol_map = NULL};
	avro_file_reader_t reader;
	avro_schema_t writer_schema;
	avro_value_iface_t *iface = NULL;
	avro_value_t record;
	bool have_record = false;
	int status = -1, rc;

	/* the caller checked the magic: Avro C leaks when it refuses a header */
	if (avro_file_reader(path, &reader) != 0) {
		set_errstr(errstr, errstr_size, "%s: not a readable Avro object container file: %s",
			   path, avro_strerror());
		return -1;
	}
	/* Avro C 1.11 returns a new reference here: ours to release */
	writer_schema = avro_file_reader_get_writer_schema(reader);
	if (plan_avro_layout(path, writer_schema, &layout, errstr, errstr_size) != 0)
		goto out_close;
	iface = avro_generic_class_from_schema(writer_schema);
	if (iface == NULL || avro_generic_value_new(iface, &record) != 0) {
		set_errstr(errstr, errstr_size, "%s: cannot build a reader for its schema: %s",
			   path, avro_strerror());
		goto out_close;
	}
	have_record = true;
	for (size_t record_no = 1; options->max_events == 0 || log->count < options->max_events;
	     record_no++) {
		rc = avro_file_reader_read_value(reader, &record);
		if (rc == EOF)
			break;
		if (rc != 0) {
			set_errstr(errstr, errstr_size, "%s: record %zu: %s", path, record_no,
				   avro_strerror());
			goto out_close;
		}
		if (avro_record_to_event(path, record_no, &record, &layout, log, errstr,
					 errstr_size) != 0)
			goto out_close;
	}
	status = 0;

out_close:
	if (have_record)
		avro_value_decref(&record);
	if (iface != NULL)
		avro_value_iface_decref(iface);
	free(layout.symbol_map);
	if (writer_schema != NULL)
		avro_schema_decref(writer_schema);
	avro_file_reader_close(reader);
	return status;
}

/* ---- eventlog_read ----------------------------------------------------------------------- */

int eventlog_read(const char *path, const struct eventlog_read_options *options,
		  struct event_log **out, char *errstr, size_t errstr_size)
{
	struct eventlog_read_options defaults = eventlog_read_options_default();
	struct text_reader reader = {.path = path};
	char magic[4];
	size_t magic_len;
	bool is_avro_magic;
	int status = -1;

	*out = NULL;
	if (options == NULL)
		options = &defaults;
	if ((unsigned)options->format >= EVENTLOG_FORMAT_COUNT) {
		set_errstr(errstr, errstr_size, "%s: unknown format %d", path,
			   (int)options->format);
		return -1;
	}
	if ((unsigned)options->rating_type >= EVENT_TYPE_COUNT) {
		set_errstr(errstr, errstr_size, "rating_type %d out of range",
			   (int)options->rating_type);
		return -1;
	}
	reader.fp = fopen(path, "rb");
	if (reader.fp == NULL) {
		set_errstr(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	reader.options = options;
	reader.format = options->format;
	reader.log = eventlog_new();
	if (reader.log == NULL) {
		set_errstr(errstr, errstr_size, "out of memory");
		goto out_close;
	}

	magic_len = fread(magic, 1, sizeof magic, reader.fp);
	is_avro_magic = magic_len == sizeof magic && memcmp(magic, AVRO_MAGIC, 4) == 0;
	if (reader.format == EVENTLOG_AUTO && (is_avro_magic || has_suffix(path, ".avro")))
		reader.format = EVENTLOG_AVRO;
	if (reader.format == EVENTLOG_AVRO) {
		if (!is_avro_magic) {
			set_errstr(errstr, errstr_size,
				   "%s: not an Avro object container file: it does not start "
				   "with the magic bytes 'Obj\\x01'",
				   path);
			goto out_close;
		}
		fclose(reader.fp);
		reader.fp = NULL;
		if (settle_min_rating(path, EVENTLOG_AVRO, options->min_rating, &reader.scale,
				      &reader.min_rating, errstr, errstr_size) != 0)
			goto out_close;
		status = read_avro(path, options, reader.log, errstr, errstr_size);
		goto out_close;
	}
	rewind(reader.fp);
	status = read_text(&reader, errstr, errstr_size);

out_close:
	if (reader.fp != NULL)
		fclose(reader.fp);
	free(reader.line);
	if (status == 0) {
		reader.log->format = reader.format;
		reader.log->min_rating = reader.min_rating;
		*out = reader.log;
	} else
		eventlog_free(reader.log);
	return status;
}

/* ---- writers ------------------------------------------------------------------------------- */

/* Refuses ids the quote-free CSV cannot hold. */
static int check_csv_ids(char *const *ids, size_t count, const char *kind, char *errstr,
			 size_t errstr_size)
{
	for (size_t i = 0; i < count; i++) {
		const char *bad = strpbrk(ids[i], ",\r\n");
		if (bad != NULL) {
			set_errstr(errstr, errstr_size,
				   "%s id '%.64s' (%s %zu) contains %s: the CSV format has no "
				   "quoting, so ids may not",
				   kind, ids[i], kind, i, *bad == ',' ? "a comma" : "a line break");
			return -1;
		}
	}
	return 0;
}

/* Writes v in decimal at p; returns the end. */
static char *put_decimal(char *p, int64_t v)
{
	char digits[24];
	size_t n = 0;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	if (v < 0)
		*p++ = '-';
	do {
		digits[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	while (n > 0)
		*p++ = digits[--n];
	return p;
}

static char *put_text(char *p, const char *s)
{
	size_t len = strlen(s);
	memcpy(p, s, len);
	return p + len;
}

#define WRITE_BUFFER_BYTES (1u << 20)
/* The longest CSV line: ts, two ids, a type symbol, a category, separators. */
#define CSV_LINE_MAX (24 + 2 * (CODEC_ID_MAX_BYTES + 1) + 20 + 12 + 8)

/* Closes fp, reporting a write error; removes the file when anything failed. */
static int finish_file(FILE *fp, const char *path, int status, char *errstr, size_t errstr_size)
{
	if (status == 0 && ferror(fp)) {
		set_errstr(errstr, errstr_size, "%s: write error: %s", path, strerror(errno));
		status = -1;
	}
	if (fclose(fp) != 0 && status == 0) {
		set_errstr(errstr, errstr_size, "%s: write error: %s", path, strerror(errno));
		status = -1;
	}
	if (status != 0)
		remove(path);
	return status;
}

int eventlog_write_csv(const struct event_log *log, const char *path, char *errstr,
		       size_t errstr_size)
{
	char *buffer, *p;
	FILE *fp;
	int status = -1;

	if (check_csv_ids(log->user_ids, log->user_count, "user", errstr, errstr_size) != 0 ||
	    check_csv_ids(log->item_ids, log->item_count, "item", errstr, errstr_size) != 0)
		return -1;
	buffer = malloc(WRITE_BUFFER_BYTES);
	if (buffer == NULL) {
		set_errstr(errstr, errstr_size, "out of memory");
		return -1;
	}
	fp = fopen(path, "wb");
	if (fp == NULL) {
		set_errstr(errstr, errstr_size, "%s: cannot create: %s", path, strerror(errno));
		free(buffer);
		return -1;
	}
	p = put_text(buffer, log->item_category ? CSV_HEADER_CATEGORY "\n" : CSV_HEADER "\n");
	for (size_t i = 0; i < log->count; i++) {
		if ((size_t)(buffer + WRITE_BUFFER_BYTES - p) < CSV_LINE_MAX) {
			if (fwrite(buffer, 1, (size_t)(p - buffer), fp) != (size_t)(p - buffer))
				goto out_close;
			p = buffer;
		}
		p = put_decimal(p, log->ts_ms[i]);
		*p++ = ',';
		p = put_text(p, log->user_ids[log->user[i]]);
		*p++ = ',';
		p = put_text(p, log->item_ids[log->item[i]]);
		*p++ = ',';
		p = put_text(p, log->type[i] == EVENT_SEARCH
				    ? EVENT_SEARCH_NAME
				    : event_type_name((enum event_type)log->type[i]));
		if (log->item_category != NULL) {
			*p++ = ',';
			if (log->item_category[log->item[i]] != EVENTLOG_NONE)
				p = put_decimal(p, log->item_category[log->item[i]]);
		}
		*p++ = '\n';
	}
	if (fwrite(buffer, 1, (size_t)(p - buffer), fp) != (size_t)(p - buffer))
		goto out_close;
	status = 0;

out_close:
	if (status != 0)
		set_errstr(errstr, errstr_size, "%s: write error: %s", path, strerror(errno));
	free(buffer);
	return finish_file(fp, path, status, errstr, errstr_size);
}

/* Avro's variable-length zig-zag long, at p; returns the end. */
static uint8_t *put_avro_long(uint8_t *p, int64_t v)
{
	uint64_t u = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	while (u >= 0x80) {
		*p++ = (uint8_t)(u | 0x80);
		u >>= 7;
	}
	*p++ = (uint8_t)u;
	return p;
}

/* Writes an Avro long to fp; 0 or -1. */
static int write_avro_long(FILE *fp, int64_t v)
{
	uint8_t bytes[10], *end = put_avro_long(bytes, v);
	return fwrite(bytes, 1, (size_t)(end - bytes), fp) == (size_t)(end - bytes) ? 0 : -1;
}

/* Writes Avro bytes/string: length, then the bytes; 0 or -1. */
static int write_avro_bytes(FILE *fp, const void *data, size_t len)
{
	if (write_avro_long(fp, (int64_t)len) != 0)
		return -1;
	return fwrite(data, 1, len, fp) == len ? 0 : -1;
}

/* The container header: magic, metadata map {avro.schema, avro.codec}, sync marker. */
static int write_avro_header(FILE *fp, const char *schema_json, const uint8_t sync[16])
{
	if (fwrite(AVRO_MAGIC, 1, 4, fp) != 4 || write_avro_long(fp, 2) != 0 ||
	    write_avro_bytes(fp, "avro.schema", 11) != 0 ||
	    write_avro_bytes(fp, schema_json, strlen(schema_json)) != 0 ||
	    write_avro_bytes(fp, "avro.codec", 10) != 0 || write_avro_bytes(fp, "null", 4) != 0 ||
	    write_avro_long(fp, 0) != 0 || fwrite(sync, 1, 16, fp) != 16)
		return -1;
	return 0;
}

/* One data block: record count, byte count, the records, the sync marker. */
static int write_avro_block(FILE *fp, size_t records, const char *data, size_t len,
			    const uint8_t sync[16])
{
	if (records == 0)
		return 0;
	if (write_avro_long(fp, (int64_t)records) != 0 || write_avro_bytes(fp, data, len) != 0 ||
	    fwrite(sync, 1, 16, fp) != 16)
		return -1;
	return 0;
}

/* Points a string field at s without copying (Avro C borrows it until the write). */
static int give_string(avro_value_t *field, const char *s)
{
	avro_wrapped_buffer_t wrapped;
	if (avro_wrapped_buffer_new_string(&wrapped, s) != 0)
		return ENOMEM;
	return avro_value_give_string_len(field, &wrapped);
}

/* The fields of the UserEvent record we write, in the .avsc's order. */
enum { AVRO_EVENT_ID, AVRO_USER_ID, AVRO_ITEM_ID, AVRO_TYPE, AVRO_TS, AVRO_FIELD_COUNT };

int eventlog_write_avro(const struct event_log *log, const char *path, char *errstr,
			size_t errstr_size)
{
	static const char *const field_names[AVRO_FIELD_COUNT] = {"event_id", "user_id", "item_id",
								  "type", "ts"};
	static const char *const optional_fields[] = {"session_id", "quantity", "price", "list_id",
						      "search"};
	const char *schema_json = codec_schema_json("UserEvent");
	if (eventlog_has_searches(log)) {
		set_errstr(errstr, errstr_size,
			   "%s: the log holds SEARCH events, which need their query vectors: write "
			   "it as CSV (with a content file)",
			   path);
		return -1;
	}
	avro_schema_t schema = NULL;
	avro_value_iface_t *iface = NULL;
	avro_value_t record, fields[AVRO_FIELD_COUNT];
	avro_writer_t block_writer = NULL;
	char *block = NULL;
	size_t block_records = 0;
	uint8_t sync[16];
	XXH128_hash_t sync_hash;
	bool have_record = false;
	FILE *fp = NULL;
	int status = -1;

	if (avro_schema_from_json_length(schema_json, strlen(schema_json), &schema) != 0) {
		set_errstr(errstr, errstr_size, "built-in UserEvent schema: %s", avro_strerror());
		return -1;
	}
	iface = avro_generic_class_from_schema(schema);
	if (iface == NULL || avro_generic_value_new(iface, &record) != 0) {
		set_errstr(errstr, errstr_size, "built-in UserEvent schema: %s", avro_strerror());
		goto out_free;
	}
	have_record = true;
	for (int f = 0; f < AVRO_FIELD_COUNT; f++) {
		if (avro_value_get_by_name(&record, field_names[f], &fields[f], NULL) != 0) {
			set_errstr(errstr, errstr_size, "built-in UserEvent schema has no field %s",
				   field_names[f]);
			goto out_free;
		}
	}
	/* the optional fields stay null for every record */
	for (size_t f = 0; f < sizeof optional_fields / sizeof optional_fields[0]; f++) {
		avro_value_t field, branch;
		if (avro_value_get_by_name(&record, optional_fields[f], &field, NULL) != 0 ||
		    avro_value_set_branch(&field, 0, &branch) != 0 ||
		    avro_value_set_null(&branch) != 0) {
			set_errstr(errstr, errstr_size, "built-in UserEvent schema: field %s: %s",
				   optional_fields[f], avro_strerror());
			goto out_free;
		}
	}
	block = malloc(WRITE_BUFFER_BYTES);
	block_writer = block ? avro_writer_memory(block, WRITE_BUFFER_BYTES) : NULL;
	if (block_writer == NULL) {
		set_errstr(errstr, errstr_size, "out of memory");
		goto out_free;
	}
	sync_hash = XXH3_128bits(schema_json, strlen(schema_json));
	for (int k = 0; k < 8; k++) {
		sync[k] = (uint8_t)(sync_hash.high64 >> (8 * k));
		sync[8 + k] = (uint8_t)(sync_hash.low64 >> (8 * k));
	}
	fp = fopen(path, "wb");
	if (fp == NULL) {
		set_errstr(errstr, errstr_size, "%s: cannot create: %s", path, strerror(errno));
		goto out_free;
	}
	if (write_avro_header(fp, schema_json, sync) != 0)
		goto out_write_error;

	for (size_t i = 0; i < log->count; i++) {
		char event_id[24] = "e";
		int64_t before;
		*put_decimal(event_id + 1, (int64_t)i) = '\0';
		if (give_string(&fields[AVRO_EVENT_ID], event_id) != 0 ||
		    give_string(&fields[AVRO_USER_ID], log->user_ids[log->user[i]]) != 0 ||
		    give_string(&fields[AVRO_ITEM_ID], log->item_ids[log->item[i]]) != 0 ||
		    avro_value_set_enum(&fields[AVRO_TYPE], log->type[i]) != 0 ||
		    avro_value_set_long(&fields[AVRO_TS], log->ts_ms[i]) != 0) {
			set_errstr(errstr, errstr_size, "%s: event %zu: cannot set fields: %s",
				   path, i, avro_strerror());
			goto out_free;
		}
		before = avro_writer_tell(block_writer);
		if (avro_value_write(block_writer, &record) != 0) {
			/* the block is full: write the records before this one, start afresh */
			if (write_avro_block(fp, block_records, block, (size_t)before, sync) != 0)
				goto out_write_error;
			avro_writer_reset(block_writer);
			block_records = 0;
			if (avro_value_write(block_writer, &record) != 0) {
				set_errstr(errstr, errstr_size, "%s: event %zu: cannot encode: %s",
					   path, i, avro_strerror());
				goto out_free;
			}
		}
		block_records++;
	}
	if (write_avro_block(fp, block_records, block, (size_t)avro_writer_tell(block_writer),
			     sync) != 0)
		goto out_write_error;
	status = 0;
	goto out_free;

out_write_error:
	set_errstr(errstr, errstr_size, "%s: write error: %s", path, strerror(errno));
out_free:
	if (fp != NULL)
		status = finish_file(fp, path, status, errstr, errstr_size);
	if (block_writer != NULL)
		avro_writer_free(block_writer);
	free(block);
	if (have_record)
		avro_value_decref(&record);
	if (iface != NULL)
		avro_value_iface_decref(iface);
	avro_schema_decref(schema);
	return status;
}

/* ---- content vectors ----------------------------------------------------------- */

bool eventlog_has_searches(const struct event_log *log)
{
	for (size_t e = 0; e < log->count; e++)
		if (log->type[e] == EVENT_SEARCH)
			return true;
	return false;
}

bool eventlog_find_item(const struct event_log *log, const char *id, size_t len, uint32_t *index)
{
	uint64_t hash = XXH3_64bits(id, len);
	if (log->item_slots == NULL)
		return false;
	for (size_t pos = hash & log->item_slot_mask; log->item_slots[pos] != 0;
	     pos = (pos + 1) & log->item_slot_mask) {
		uint64_t slot = log->item_slots[pos];
		const char *known;
		if (SLOT_TAG(slot) != hash >> 32)
			continue;
		known = log->item_ids[SLOT_INDEX(slot)];
		if (strnlen(known, len + 1) == len && memcmp(known, id, len) == 0) {
			*index = SLOT_INDEX(slot);
			return true;
		}
	}
	return false;
}

void eventlog_content_free(struct eventlog_content *content)
{
	if (content == NULL)
		return;
	free(content->vectors);
	free(content->has);
	memset(content, 0, sizeof *content);
}

/* Parses the numbers of one content line into out (at most capacity);
 * @returns how many, or -1 with errstr filled (a bad number). */
static long parse_content_numbers(char *text, float *out, size_t capacity, const char *path,
				  size_t line, char *errstr, size_t errstr_size)
{
	long n = 0;
	char *p = text;
	while (*p != '\0') {
		char *end;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		errno = 0;
		float x = strtof(p, &end);
		if (end == p || (*end != '\0' && *end != ' ' && *end != '\t')) {
			set_errstr(errstr, errstr_size, "%s:%zu: number %ld: not a number: '%.20s'",
				   path, line, n + 1, p);
			return -1;
		}
		if (!isfinite(x) || errno == ERANGE) {
			set_errstr(errstr, errstr_size,
				   "%s:%zu: number %ld is not finite (or out of float range): '%.20s'",
				   path, line, n + 1, p);
			return -1;
		}
		if ((size_t)n < capacity)
			out[n] = x;
		n++;
		p = end;
	}
	return n;
}

int eventlog_read_content(const struct event_log *log, const char *path,
			  struct eventlog_content *out, char *errstr, size_t errstr_size)
{
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t text_cap = 0, line = 0;
	float *row = NULL;
	int rc = -1;
	memset(out, 0, sizeof *out);
	if (f == NULL) {
		set_errstr(errstr, errstr_size, "%s: %s", path, strerror(errno));
		return -1;
	}
	out->item_count = log->item_count;
	out->has = calloc(log->item_count + 1, 1);
	row = malloc(CODEC_CONTENT_MAX_DIM * sizeof *row);
	if (out->has == NULL || row == NULL)
		goto out_nomem;
	ssize_t got;
	while ((got = getline(&text, &text_cap, f)) >= 0) {
		line++;
		while (got > 0 && (text[got - 1] == '\n' || text[got - 1] == '\r'))
			text[--got] = '\0';
		if (got == 0 || text[0] == '#')
			continue;
		char *tab = strchr(text, '\t');
		if (tab == NULL || tab == text) {
			set_errstr(errstr, errstr_size,
				   "%s:%zu: expected item_id, a tab, then the vector's numbers", path,
				   line);
			goto out_free;
		}
		*tab = '\0';
		long n = parse_content_numbers(tab + 1, row, CODEC_CONTENT_MAX_DIM, path, line, errstr,
					       errstr_size);
		if (n < 0)
			goto out_free;
		if (n == 0 || n > CODEC_CONTENT_MAX_DIM) {
			set_errstr(errstr, errstr_size,
				   "%s:%zu: %ld numbers, a vector has 1 to %d", path, line, n,
				   CODEC_CONTENT_MAX_DIM);
			goto out_free;
		}
		if (out->dim == 0) {
			out->dim = (size_t)n;
			out->vectors = calloc((log->item_count + 1) * out->dim, sizeof(float));
			if (out->vectors == NULL)
				goto out_nomem;
		} else if ((size_t)n != out->dim) {
			set_errstr(errstr, errstr_size, "%s:%zu: %ld numbers, the first line had %zu",
				   path, line, n, out->dim);
			goto out_free;
		}
		out->lines++;
		uint32_t item;
		if (!eventlog_find_item(log, text, (size_t)(tab - text), &item)) {
			out->unknown++;
			continue;
		}
		if (!out->has[item])
			out->matched++;
		out->has[item] = 1;
		memcpy(out->vectors + (size_t)item * out->dim, row, out->dim * sizeof(float));
	}
	if (ferror(f)) {
		set_errstr(errstr, errstr_size, "%s: read error", path);
		goto out_free;
	}
	if (out->dim == 0) {
		set_errstr(errstr, errstr_size, "%s: no vector lines", path);
		goto out_free;
	}
	rc = 0;
	goto out_close;
out_nomem:
	set_errstr(errstr, errstr_size, "%s: out of memory", path);
out_free:
	eventlog_content_free(out);
out_close:
	free(row);
	free(text);
	fclose(f);
	return rc;
}

int eventlog_id_hashes(const struct event_log *log, uint64_t **user_hash, uint64_t **item_hash)
{
	uint64_t *users = malloc((log->user_count + 1) * sizeof *users);
	uint64_t *items = malloc((log->item_count + 1) * sizeof *items);
	if (users == NULL || items == NULL) {
		free(users);
		free(items);
		return -1;
	}
	for (size_t u = 0; u < log->user_count; u++)
		users[u] = XXH3_64bits(log->user_ids[u], strlen(log->user_ids[u]));
	for (size_t i = 0; i < log->item_count; i++)
		items[i] = XXH3_64bits(log->item_ids[i], strlen(log->item_ids[i]));
	*user_hash = users;
	*item_hash = items;
	return 0;
}
