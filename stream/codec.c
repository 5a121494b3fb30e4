/*
 * codec: Avro encode/decode of streamrec's records over Avro C.
 *
 * Avro C parses schemas, reads binary into generic values and writes them.
 * Resolution of a foreign writer schema against ours is done here, because
 * Avro C 1.11's resolved reader (Debian 12) fails on reader fields with
 * defaults ("NIY: Default values") and passes enum indexes through without
 * mapping symbols by name, which would silently misread an enum whose
 * writer reordered or added symbols.
 *
 * Avro C also allocates whatever length a message declares (a 7-byte
 * message can ask for 512 GiB). A process-wide allocator refuses, while a
 * decode runs, any single allocation above a budget derived from the
 * message size; the refusal surfaces as a truncated message.
 */
#include "bytes.h"
#include "errstr.h"
#include "grow.h"
#include "codec.h"

#include <avro.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schemas_gen.h"

enum record_kind { REC_USER_EVENT = 0, REC_ITEM_EVENT, REC_RECOMMENDATION, REC_KIND_COUNT };

static const char *const record_names[REC_KIND_COUNT] = {"UserEvent", "ItemEvent",
							 "Recommendation"};

/* What a reader field accepts from a writer, per the Avro promotion rules. */
enum field_kind {
	FK_STRING,
	FK_LONG,
	FK_INT,
	FK_DOUBLE,
	FK_FLOAT,
	FK_BOOL,
	FK_ENUM,
	FK_ITEMS,
	FK_CONTENT, /* a ContentVector record: model, dim, vector */
	FK_SEARCH   /* a SearchQuery record: optional text, optional ContentVector */
};

struct reader_field {
	const char *name;
	enum field_kind kind;
	bool has_default; /* a writer may omit the field */
};

#define MAX_READER_FIELDS 12

/* Our reader fields, in the order of the .avsc files. */
enum {
	UE_EVENT_ID,
	UE_USER_ID,
	UE_ITEM_ID,
	UE_TYPE,
	UE_TS,
	UE_SESSION_ID,
	UE_QUANTITY,
	UE_PRICE,
	UE_LIST_ID,
	UE_SEARCH
};
static const struct reader_field user_event_fields[] = {
    {"event_id", FK_STRING, false}, {"user_id", FK_STRING, false}, {"item_id", FK_STRING, false},
    {"type", FK_ENUM, false},       {"ts", FK_LONG, false},        {"session_id", FK_STRING, true},
    {"quantity", FK_INT, true},     {"price", FK_DOUBLE, true},    {"list_id", FK_STRING, true},
    {"search", FK_SEARCH, true},
};

enum { IE_ITEM_ID, IE_CATEGORY, IE_PRICE, IE_IN_STOCK, IE_TS, IE_TITLE, IE_DESCRIPTION, IE_CONTENT };
static const struct reader_field item_event_fields[] = {
    {"item_id", FK_STRING, false}, {"category", FK_STRING, true},     {"price", FK_DOUBLE, true},
    {"in_stock", FK_BOOL, true},   {"ts", FK_LONG, false},            {"title", FK_STRING, true},
    {"description", FK_STRING, true}, {"content", FK_CONTENT, true},
};

enum {
	RE_USER_ID,
	RE_VARIANT,
	RE_MODEL_STEP,
	RE_GENERATED_AT,
	RE_TRIGGER_TS,
	RE_ITEMS,
	RE_LIST_ID
};
/* ScoredItem's fields, in the .avsc's order (the encoder sets them by index) */
enum { SI_ITEM_ID, SI_SCORE, SI_REASON, SI_BECAUSE_ITEM };
static const struct reader_field recommendation_fields[] = {
    {"user_id", FK_STRING, false},        {"variant", FK_STRING, false},
    {"model_step", FK_LONG, false},       {"generated_at", FK_LONG, false},
    {"trigger_event_ts", FK_LONG, false}, {"items", FK_ITEMS, false},
    {"list_id", FK_STRING, true},
};

static const struct {
	const struct reader_field *fields;
	size_t count;
} reader_records[REC_KIND_COUNT] = {
    {user_event_fields, sizeof user_event_fields / sizeof user_event_fields[0]},
    {item_event_fields, sizeof item_event_fields / sizeof item_event_fields[0]},
    {recommendation_fields, sizeof recommendation_fields / sizeof recommendation_fields[0]},
};

/* How one writer schema maps onto one of our records. */
struct writer_plan {
	int32_t schema_id; /* -1 for the raw writer schema */
	enum record_kind kind;
	avro_schema_t schema;
	avro_value_iface_t *iface;
	avro_value_t value;                 /* reused decode target of the writer's shape */
	int field_index[MAX_READER_FIELDS]; /* writer field per reader field, -1: default */
	int *enum_map; /* writer symbol index -> enum event_type, -1: unknown */
	int enum_symbols;
	/* in the writer's ScoredItem; reason and because_item -1 when it lacks them */
	int item_id_index, item_score_index, item_reason_index, item_because_index;
	/* a UserEvent writer laid out as our reader (read_direct()) */
	bool direct;
};

/* A schema id whose schema (from the source) did not resolve against ours. */
struct refused_schema {
	int32_t id;
	char detail[200];
};

struct codec {
	struct codec_config config;
	avro_schema_t reader_schema[REC_KIND_COUNT];
	avro_value_iface_t *reader_iface[REC_KIND_COUNT];
	avro_value_t encode_value[REC_KIND_COUNT];
	/* recommendation_version 1: what Recommendations are written with */
	avro_value_iface_t *v1_encode_iface;
	avro_value_t v1_encode_value;
	avro_writer_t writer;
	avro_reader_t reader;
	struct writer_plan *raw_plan[REC_KIND_COUNT];
	/* Our own earlier version of the record (schemas/history), tried on a raw
	 * message that does not read with the current one (cut short, malformed,
	 * bytes left over): raw framing names no writer schema, and a compacted
	 * topic keeps records written before an upgrade. Versions only add
	 * fields with defaults, so a current message never reads as an earlier
	 * one's first. NULL: no earlier version, or a raw writer schema was set
	 * (codec_set_raw_writer_schema()). */
	struct writer_plan *raw_previous[REC_KIND_COUNT];
	/* and the version before that, tried last (UserEvent: v1 before v2) */
	struct writer_plan *raw_older[REC_KIND_COUNT];
	struct writer_plan **registered;
	size_t registered_count;
	size_t direct_reads; /* UserEvents read by read_direct() */
	/* where unknown schema ids are looked up, and the ids it gave unusable schemas for */
	codec_schema_source_fn source;
	void *source_opaque;
	struct refused_schema *refused;
	size_t refused_count, refused_cap;
	/* storage for codec_decode_item_event's content vector and a search's */
	float *content, *search_vector;
	size_t content_cap, search_vector_cap;
	/* storage for codec_decode_recommendation's strings and items */
	char *rec_strings;
	size_t rec_strings_cap;
	struct scored_item *rec_items;
	size_t rec_items_cap;
};

/* ---- allocation budget ---------------------------------------------------- */

/*
 * State of the decode running on this thread. Avro C takes every block from
 * codec_avro_allocator(), so it can refuse absurd sizes and remember the
 * last fresh block: Avro C 1.11 leaks the buffer of a string or bytes value
 * whose body is cut short, and read_body() frees it.
 */
static _Thread_local struct {
	size_t budget_bytes;    /* 0: no decode running, no limit */
	size_t refused_bytes;   /* size of the last refused request */
	bool refused_negative;  /* a request came from a negative length */
	void *last_fresh_block; /* newest malloc'd block, while not freed */
} decode_alloc;

static void *codec_avro_allocator(void *user_data, void *ptr, size_t old_size, size_t new_size)
{
	void *block;
	(void)user_data;
	(void)old_size;
	if (ptr != NULL && ptr == decode_alloc.last_fresh_block)
		decode_alloc.last_fresh_block = NULL;
	if (new_size == 0) {
		/* Avro C never asks for zero bytes except from a length of -1 */
		if (ptr == NULL && decode_alloc.budget_bytes != 0)
			decode_alloc.refused_negative = true;
		free(ptr);
		return NULL;
	}
	if (decode_alloc.budget_bytes != 0 && new_size > decode_alloc.budget_bytes) {
		decode_alloc.refused_bytes = new_size;
		decode_alloc.refused_negative = new_size > (size_t)INT64_MAX;
		/* Every Avro C caller writes `p = avro_realloc(p, ...)` and so drops
		 * the old block when refused: release it here or it leaks. */
		free(ptr);
		return NULL;
	}
	block = realloc(ptr, new_size);
	if (ptr == NULL && decode_alloc.budget_bytes != 0)
		decode_alloc.last_fresh_block = block;
	return block;
}

/* A record decoded from len bytes never needs one block larger than this. */
static size_t budget_for(size_t len)
{
	return 64 * len + 65536;
}

/* True when Avro C's error is a string/bytes body cut short (the leaking path). */
static bool is_cut_string_body(const char *message)
{
	static const char *const prefixes[] = {"Cannot read string value: Cannot read ",
					       "Cannot read bytes value: Cannot read "};
	for (size_t i = 0; i < 2; i++) {
		size_t n = strlen(prefixes[i]);
		if (strncmp(message, prefixes[i], n) == 0 && message[n] >= '0' && message[n] <= '9')
			return true;
	}
	return false;
}

/* ---- small helpers ---------------------------------------------------------- */

static int fail(struct codec_error *err, enum codec_reason reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct codec_error *err, enum codec_reason reason, const char *fmt, ...)
{
	va_list ap;
	err->reason = reason;
	va_start(ap, fmt);
	vsnprintf(err->detail, sizeof err->detail, fmt, ap);
	va_end(ap);
	return -1;
}

static avro_schema_t resolve_link(avro_schema_t schema)
{
	while (schema != NULL && avro_typeof(schema) == AVRO_LINK)
		schema = avro_schema_link_target(schema);
	return schema;
}

static const char *const reason_names[CODEC_REASON_COUNT] = {
    [CODEC_OK] = "ok",
    [CODEC_ERR_EMPTY] = "empty",
    [CODEC_ERR_TRUNCATED] = "truncated",
    [CODEC_ERR_BAD_MAGIC] = "bad_magic",
    [CODEC_ERR_UNKNOWN_SCHEMA] = "unknown_schema_id",
    [CODEC_ERR_SCHEMA_MISMATCH] = "schema_mismatch",
    [CODEC_ERR_TRAILING_BYTES] = "trailing_bytes",
    [CODEC_ERR_MALFORMED] = "malformed",
    [CODEC_ERR_INVALID_ENUM] = "invalid_enum",
    [CODEC_ERR_EMPTY_ID] = "empty_id",
    [CODEC_ERR_ID_TOO_LONG] = "id_too_long",
    [CODEC_ERR_ID_NOT_UTF8] = "id_not_utf8",
    [CODEC_ERR_NEGATIVE_TS] = "negative_timestamp",
    [CODEC_ERR_FUTURE_TS] = "future_timestamp",
    [CODEC_ERR_INVALID_FIELD] = "invalid_field",
    [CODEC_ERR_SCHEMA_UNAVAILABLE] = "schema_unavailable",
};

const char *codec_reason_name(enum codec_reason reason)
{
	if ((unsigned)reason >= CODEC_REASON_COUNT)
		return "unknown";
	return reason_names[reason];
}

/*
 * Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF, and no NUL since ids travel as C strings. Written here rather
 * than pulled from glib or ICU: twenty lines against a large dependency.
 */
bool codec_utf8_valid(const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;
	while (i < len) {
		unsigned char c = s[i];
		size_t need;
		uint32_t cp, min;
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			need = 1, cp = c & 0x1F, min = 0x80;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2, cp = c & 0x0F, min = 0x800;
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (len - i <= need)
			return false;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += need + 1;
	}
	return true;
}

bool codec_reason_is_retriable(enum codec_reason reason)
{
	return reason == CODEC_ERR_SCHEMA_UNAVAILABLE;
}

const char *codec_schema_json(const char *record_name)
{
	if (strcmp(record_name, "UserEvent") == 0)
		return SCHEMA_USER_EVENT_JSON;
	if (strcmp(record_name, "ItemEvent") == 0)
		return SCHEMA_ITEM_EVENT_JSON;
	if (strcmp(record_name, "Recommendation") == 0)
		return SCHEMA_RECOMMENDATION_JSON;
	return NULL;
}

/* ---- writer plans ------------------------------------------------------------- */

static bool kind_accepts(enum field_kind kind, avro_schema_t writer, char *why, size_t why_size);

/* A writer union is acceptable when at least one non-null branch is. */
static bool union_accepts(enum field_kind kind, avro_schema_t writer, char *why, size_t why_size)
{
	size_t branches = avro_schema_union_size(writer);
	for (size_t b = 0; b < branches; b++) {
		avro_schema_t branch = resolve_link(avro_schema_union_branch(writer, (int)b));
		if (avro_typeof(branch) != AVRO_NULL && kind_accepts(kind, branch, why, why_size))
			return true;
	}
	set_errstr(why, why_size, "no branch of the writer's union fits");
	return false;
}

static bool scored_item_accepts(avro_schema_t writer, int *id_index, int *score_index,
				int *reason_index, int *because_index, char *why, size_t why_size)
{
	writer = resolve_link(writer);
	if (avro_typeof(writer) != AVRO_RECORD || strcmp(avro_schema_name(writer), "ScoredItem")) {
		set_errstr(why, why_size, "items must be records named ScoredItem");
		return false;
	}
	*id_index = avro_schema_record_field_get_index(writer, "item_id");
	*score_index = avro_schema_record_field_get_index(writer, "score");
	if (*id_index < 0 || *score_index < 0) {
		set_errstr(why, why_size, "ScoredItem needs fields item_id and score");
		return false;
	}
	if (!kind_accepts(FK_STRING,
			  resolve_link(avro_schema_record_field_get_by_index(writer, *id_index)),
			  why, why_size) ||
	    !kind_accepts(FK_FLOAT,
			  resolve_link(avro_schema_record_field_get_by_index(writer, *score_index)),
			  why, why_size))
		return false;
	/* the explanation: optional, null by default */
	*reason_index = avro_schema_record_field_get_index(writer, "reason");
	*because_index = avro_schema_record_field_get_index(writer, "because_item");
	for (int e = 0; e < 2; e++) {
		int index = e == 0 ? *reason_index : *because_index;
		avro_schema_t type =
		    index >= 0 ? resolve_link(avro_schema_record_field_get_by_index(writer, index))
			       : NULL;
		if (type != NULL && !kind_accepts(FK_STRING, type, why, why_size))
			return false;
	}
	return true;
}

/* A writer's ContentVector: a record named ContentVector with a string
 * model, a whole-number dim and an array of numbers. */
static bool content_accepts(avro_schema_t writer, char *why, size_t why_size)
{
	static const struct {
		const char *name;
		enum field_kind kind;
	} parts[] = {{"model", FK_STRING}, {"dim", FK_LONG}};
	writer = resolve_link(writer);
	if (avro_typeof(writer) != AVRO_RECORD ||
	    strcmp(avro_schema_name(writer), "ContentVector") != 0) {
		set_errstr(why, why_size, "content must be a record named ContentVector");
		return false;
	}
	for (size_t p = 0; p < 2; p++) {
		int index = avro_schema_record_field_get_index(writer, parts[p].name);
		if (index < 0) {
			set_errstr(why, why_size, "ContentVector needs a field %s", parts[p].name);
			return false;
		}
		if (!kind_accepts(parts[p].kind,
				  resolve_link(avro_schema_record_field_get_by_index(writer, index)),
				  why, why_size))
			return false;
	}
	int index = avro_schema_record_field_get_index(writer, "vector");
	avro_schema_t array =
	    index < 0 ? NULL : resolve_link(avro_schema_record_field_get_by_index(writer, index));
	if (array == NULL || avro_typeof(array) != AVRO_ARRAY ||
	    !kind_accepts(FK_DOUBLE, resolve_link(avro_schema_array_items(array)), why,
			  why_size)) {
		set_errstr(why, why_size, "ContentVector needs a field vector: an array of numbers");
		return false;
	}
	return true;
}

/* A writer's SearchQuery: a record of that name whose text (when it has
 * one) is a string and whose content (when it has one) a ContentVector. */
static bool search_accepts(avro_schema_t writer, char *why, size_t why_size)
{
	writer = resolve_link(writer);
	if (avro_typeof(writer) != AVRO_RECORD ||
	    strcmp(avro_schema_name(writer), "SearchQuery") != 0) {
		set_errstr(why, why_size, "search must be a record named SearchQuery");
		return false;
	}
	int text = avro_schema_record_field_get_index(writer, "text");
	int content = avro_schema_record_field_get_index(writer, "content");
	if (text >= 0 &&
	    !kind_accepts(FK_STRING, resolve_link(avro_schema_record_field_get_by_index(writer, text)),
			  why, why_size))
		return false;
	if (content >= 0 &&
	    !kind_accepts(FK_CONTENT,
			  resolve_link(avro_schema_record_field_get_by_index(writer, content)), why,
			  why_size))
		return false;
	return true;
}

static bool kind_accepts(enum field_kind kind, avro_schema_t writer, char *why, size_t why_size)
{
	avro_type_t type = avro_typeof(writer);
	bool ok = false;
	if (type == AVRO_UNION)
		return union_accepts(kind, writer, why, why_size);
	switch (kind) {
	case FK_STRING: ok = type == AVRO_STRING || type == AVRO_BYTES; break;
	case FK_INT: ok = type == AVRO_INT32; break;
	case FK_LONG: ok = type == AVRO_INT32 || type == AVRO_INT64; break;
	case FK_FLOAT: ok = type == AVRO_INT32 || type == AVRO_INT64 || type == AVRO_FLOAT; break;
	case FK_DOUBLE:
		ok = type == AVRO_INT32 || type == AVRO_INT64 || type == AVRO_FLOAT ||
		     type == AVRO_DOUBLE;
		break;
	case FK_BOOL: ok = type == AVRO_BOOLEAN; break;
	case FK_ENUM:
		ok = type == AVRO_ENUM && strcmp(avro_schema_name(writer), "EventType") == 0;
		break;
	case FK_CONTENT: return content_accepts(writer, why, why_size);
	case FK_SEARCH: return search_accepts(writer, why, why_size);
	case FK_ITEMS:
		if (type == AVRO_ARRAY) {
			int a, b, c, d;
			return scored_item_accepts(avro_schema_array_items(writer), &a, &b, &c, &d,
						   why, why_size);
		}
		break;
	}
	if (!ok)
		set_errstr(why, why_size, "writer type %s does not resolve",
			   avro_schema_type_name(writer));
	return ok;
}

static void plan_free(struct writer_plan *plan)
{
	if (plan == NULL)
		return;
	avro_value_decref(&plan->value);
	avro_value_iface_decref(plan->iface);
	avro_schema_decref(plan->schema);
	free(plan->enum_map);
	free(plan);
}

/* Finds the writer's enum schema for `type`, through a union if need be. */
static avro_schema_t find_enum(avro_schema_t writer)
{
	writer = resolve_link(writer);
	if (avro_typeof(writer) == AVRO_ENUM)
		return writer;
	if (avro_typeof(writer) == AVRO_UNION) {
		for (size_t b = 0; b < avro_schema_union_size(writer); b++) {
			avro_schema_t branch =
			    resolve_link(avro_schema_union_branch(writer, (int)b));
			if (avro_typeof(branch) == AVRO_ENUM)
				return branch;
		}
	}
	return NULL;
}

static avro_schema_t find_array(avro_schema_t writer)
{
	writer = resolve_link(writer);
	if (avro_typeof(writer) == AVRO_ARRAY)
		return writer;
	if (avro_typeof(writer) == AVRO_UNION) {
		for (size_t b = 0; b < avro_schema_union_size(writer); b++) {
			avro_schema_t branch =
			    resolve_link(avro_schema_union_branch(writer, (int)b));
			if (avro_typeof(branch) == AVRO_ARRAY)
				return branch;
		}
	}
	return NULL;
}

/* Whether writer field w of schema is a union of null then `type`. */
static bool is_optional(avro_schema_t schema, int w, avro_type_t type)
{
	avro_schema_t u = resolve_link(avro_schema_record_field_get_by_index(schema, w));
	return avro_typeof(u) == AVRO_UNION && avro_schema_union_size(u) == 2 &&
	       avro_typeof(resolve_link(avro_schema_union_branch(u, 0))) == AVRO_NULL &&
	       (type == AVRO_NULL ||
		avro_typeof(resolve_link(avro_schema_union_branch(u, 1))) == type);
}

/*
 * Whether read_direct() can read plan's UserEvents: the writer has our
 * reader's fields, in its order, with its types (the enum's symbols may
 * differ: they are mapped), and its optional fields are unions of null
 * first. search's second branch is not looked at: a present search is left
 * to the generic read.
 */
static bool direct_layout(const struct writer_plan *plan)
{
	static const avro_type_t required[] = {AVRO_STRING, AVRO_STRING, AVRO_STRING, AVRO_ENUM,
					       AVRO_INT64};
	static const avro_type_t optional[] = {AVRO_STRING, AVRO_INT32, AVRO_DOUBLE, AVRO_STRING,
					       AVRO_NULL};
	if (plan->kind != REC_USER_EVENT ||
	    avro_schema_record_size(plan->schema) != UE_SEARCH + 1 || plan->enum_map == NULL)
		return false;
	for (int f = 0; f <= UE_SEARCH; f++) {
		avro_schema_t type =
		    resolve_link(avro_schema_record_field_get_by_index(plan->schema, f));
		bool laid_out = f < UE_SESSION_ID
				    ? avro_typeof(type) == required[f]
				    : is_optional(plan->schema, f, optional[f - UE_SESSION_ID]);
		if (plan->field_index[f] != f || !laid_out)
			return false;
	}
	return true;
}

/* Builds the plan for a parsed writer schema; takes a reference of its own. */
static struct writer_plan *plan_new(avro_schema_t schema, int32_t schema_id, char *errstr,
				    size_t errstr_size)
{
	struct writer_plan *plan;
	int kind = -1;
	char why[200] = "";

	schema = resolve_link(schema);
	if (avro_typeof(schema) != AVRO_RECORD) {
		set_errstr(errstr, errstr_size, "schema is a %s, not a record",
			   avro_schema_type_name(schema));
		return NULL;
	}
	for (int k = 0; k < REC_KIND_COUNT; k++)
		if (strcmp(avro_schema_name(schema), record_names[k]) == 0)
			kind = k;
	if (kind < 0) {
		set_errstr(errstr, errstr_size,
			   "record %s is none of UserEvent, ItemEvent, Recommendation",
			   avro_schema_name(schema));
		return NULL;
	}
	plan = calloc(1, sizeof *plan);
	if (plan == NULL) {
		set_errstr(errstr, errstr_size, "out of memory");
		return NULL;
	}
	plan->schema_id = schema_id;
	plan->kind = (enum record_kind)kind;
	plan->schema = avro_schema_incref(schema);

	for (size_t f = 0; f < reader_records[kind].count; f++) {
		const struct reader_field *field = &reader_records[kind].fields[f];
		int w = avro_schema_record_field_get_index(schema, field->name);
		plan->field_index[f] = w;
		if (w < 0) {
			if (!field->has_default) {
				set_errstr(errstr, errstr_size,
					   "%s: field %s is missing and has no default",
					   record_names[kind], field->name);
				goto out_free;
			}
			continue;
		}
		avro_schema_t wtype =
		    resolve_link(avro_schema_record_field_get_by_index(schema, w));
		if (!kind_accepts(field->kind, wtype, why, sizeof why)) {
			set_errstr(errstr, errstr_size, "%s: field %s: %s", record_names[kind],
				   field->name, why);
			goto out_free;
		}
		if (field->kind == FK_ENUM) {
			avro_schema_t e = find_enum(wtype);
			plan->enum_symbols = avro_schema_enum_number_of_symbols(e);
			plan->enum_map = malloc(sizeof(int) * (size_t)(plan->enum_symbols + 1));
			if (plan->enum_map == NULL) {
				set_errstr(errstr, errstr_size, "out of memory");
				goto out_free;
			}
			for (int s = 0; s < plan->enum_symbols; s++) {
				enum event_type t;
				plan->enum_map[s] =
				    event_type_from_name(avro_schema_enum_get(e, s), &t) ? (int)t
											 : -1;
			}
		}
		if (field->kind == FK_ITEMS) {
			avro_schema_t array = find_array(wtype);
			scored_item_accepts(avro_schema_array_items(array), &plan->item_id_index,
					    &plan->item_score_index, &plan->item_reason_index,
					    &plan->item_because_index, why, sizeof why);
		}
	}
	plan->iface = avro_generic_class_from_schema(schema);
	if (plan->iface == NULL || avro_generic_value_new(plan->iface, &plan->value) != 0) {
		set_errstr(errstr, errstr_size, "cannot build a value for the schema: %s",
			   avro_strerror());
		goto out_free;
	}
	plan->direct = direct_layout(plan);
	return plan;

out_free:
	if (plan->iface != NULL)
		avro_value_iface_decref(plan->iface);
	avro_schema_decref(plan->schema);
	free(plan->enum_map);
	free(plan);
	return NULL;
}

static struct writer_plan *plan_from_json(const char *json, int32_t schema_id, char *errstr,
					  size_t errstr_size)
{
	avro_schema_t schema;
	struct writer_plan *plan;
	if (avro_schema_from_json_length(json, strlen(json), &schema) != 0) {
		set_errstr(errstr, errstr_size, "invalid Avro schema: %s", avro_strerror());
		return NULL;
	}
	plan = plan_new(schema, schema_id, errstr, errstr_size);
	avro_schema_decref(schema);
	return plan;
}

/* ---- construction --------------------------------------------------------------- */

struct codec *codec_new(const struct codec_config *config, char *errstr, size_t errstr_size)
{
	static const char *const jsons[REC_KIND_COUNT] = {
	    SCHEMA_USER_EVENT_JSON, SCHEMA_ITEM_EVENT_JSON, SCHEMA_RECOMMENDATION_JSON};
	static const char *const previous_jsons[REC_KIND_COUNT] = {
	    SCHEMA_USER_EVENT_V2_JSON, SCHEMA_ITEM_EVENT_V1_JSON, SCHEMA_RECOMMENDATION_V1_JSON};
	static const char *const older_jsons[REC_KIND_COUNT] = {SCHEMA_USER_EVENT_V1_JSON, NULL,
								NULL};
	struct codec *codec;

	avro_set_allocator(codec_avro_allocator, NULL);
	codec = calloc(1, sizeof *codec);
	if (codec == NULL) {
		set_errstr(errstr, errstr_size, "out of memory");
		return NULL;
	}
	if (config != NULL)
		codec->config = *config;
	if (codec->config.max_future_ms <= 0)
		codec->config.max_future_ms = CODEC_DEFAULT_MAX_FUTURE_MS;
	if (codec->config.recommendation_version < 0 || codec->config.recommendation_version > 2) {
		set_errstr(errstr, errstr_size, "Recommendation schema version %d: 1 or 2",
			   codec->config.recommendation_version);
		free(codec);
		return NULL;
	}

	for (int k = 0; k < REC_KIND_COUNT; k++) {
		if (avro_schema_from_json_length(jsons[k], strlen(jsons[k]),
						 &codec->reader_schema[k]) != 0) {
			set_errstr(errstr, errstr_size, "built-in %s schema: %s", record_names[k],
				   avro_strerror());
			goto out_free;
		}
		codec->reader_iface[k] = avro_generic_class_from_schema(codec->reader_schema[k]);
		if (codec->reader_iface[k] == NULL ||
		    avro_generic_value_new(codec->reader_iface[k], &codec->encode_value[k]) != 0) {
			set_errstr(errstr, errstr_size, "built-in %s schema: %s", record_names[k],
				   avro_strerror());
			goto out_free;
		}
		codec->raw_plan[k] = plan_new(codec->reader_schema[k], -1, errstr, errstr_size);
		if (codec->raw_plan[k] == NULL)
			goto out_free;
		if (previous_jsons[k] != NULL &&
		    (codec->raw_previous[k] =
			 plan_from_json(previous_jsons[k], -1, errstr, errstr_size)) == NULL)
			goto out_free;
		if (older_jsons[k] != NULL &&
		    (codec->raw_older[k] = plan_from_json(older_jsons[k], -1, errstr, errstr_size)) ==
			NULL)
			goto out_free;
	}
	if (codec->config.recommendation_version == 1) {
		/* written with version 1: its own value to fill (an earlier plan's shape) */
		struct writer_plan *v1 = codec->raw_previous[REC_RECOMMENDATION];
		codec->v1_encode_iface = avro_value_iface_incref(v1->iface);
		if (avro_generic_value_new(codec->v1_encode_iface, &codec->v1_encode_value) != 0) {
			set_errstr(errstr, errstr_size, "Recommendation version 1: %s",
				   avro_strerror());
			goto out_free;
		}
	}
	codec->writer = avro_writer_memory(NULL, 0);
	codec->reader = avro_reader_memory(NULL, 0);
	if (codec->writer == NULL || codec->reader == NULL) {
		set_errstr(errstr, errstr_size, "out of memory");
		goto out_free;
	}
	return codec;

out_free:
	codec_free(codec);
	return NULL;
}

void codec_free(struct codec *codec)
{
	if (codec == NULL)
		return;
	for (int k = 0; k < REC_KIND_COUNT; k++) {
		plan_free(codec->raw_plan[k]);
		plan_free(codec->raw_previous[k]);
		plan_free(codec->raw_older[k]);
		if (codec->encode_value[k].iface != NULL)
			avro_value_decref(&codec->encode_value[k]);
		if (codec->reader_iface[k] != NULL)
			avro_value_iface_decref(codec->reader_iface[k]);
		if (codec->reader_schema[k] != NULL)
			avro_schema_decref(codec->reader_schema[k]);
	}
	if (codec->v1_encode_iface != NULL) {
		if (codec->v1_encode_value.iface != NULL)
			avro_value_decref(&codec->v1_encode_value);
		avro_value_iface_decref(codec->v1_encode_iface);
	}
	for (size_t i = 0; i < codec->registered_count; i++)
		plan_free(codec->registered[i]);
	free(codec->registered);
	free(codec->refused);
	if (codec->writer != NULL)
		avro_writer_free(codec->writer);
	if (codec->reader != NULL)
		avro_reader_free(codec->reader);
	free(codec->rec_strings);
	free(codec->rec_items);
	free(codec->content);
	free(codec->search_vector);
	free(codec);
}

int codec_register_schema(struct codec *codec, int32_t schema_id, const char *schema_json,
			  char *errstr, size_t errstr_size)
{
	struct writer_plan *plan, **grown;
	if (schema_id < 0) {
		set_errstr(errstr, errstr_size, "schema id must be >= 0, got %d", schema_id);
		return -1;
	}
	plan = plan_from_json(schema_json, schema_id, errstr, errstr_size);
	if (plan == NULL)
		return -1;
	for (size_t i = 0; i < codec->registered_count; i++) {
		if (codec->registered[i]->schema_id == schema_id) {
			plan_free(codec->registered[i]);
			codec->registered[i] = plan;
			return 0;
		}
	}
	grown = realloc(codec->registered, (codec->registered_count + 1) * sizeof *grown);
	if (grown == NULL) {
		plan_free(plan);
		set_errstr(errstr, errstr_size, "out of memory");
		return -1;
	}
	codec->registered = grown;
	codec->registered[codec->registered_count++] = plan;
	return 0;
}

void codec_set_schema_source(struct codec *codec, codec_schema_source_fn source, void *opaque)
{
	codec->source = source;
	codec->source_opaque = source != NULL ? opaque : NULL;
}

const char *codec_writer_schema_json(const struct codec *codec, const char *record_name)
{
	if (strcmp(record_name, "Recommendation") == 0 && codec->config.recommendation_version == 1)
		return SCHEMA_RECOMMENDATION_V1_JSON;
	return codec_schema_json(record_name);
}

int codec_set_writer_schema_id(struct codec *codec, const char *record_name, int32_t schema_id,
			       char *errstr, size_t errstr_size)
{
	const char *json = codec_writer_schema_json(codec, record_name);
	if (json == NULL) {
		set_errstr(errstr, errstr_size, "unknown record \"%s\"", record_name);
		return -1;
	}
	if (codec_register_schema(codec, schema_id, json, errstr, errstr_size) != 0)
		return -1;
	if (strcmp(record_name, "UserEvent") == 0)
		codec->config.user_event_schema_id = schema_id;
	else if (strcmp(record_name, "ItemEvent") == 0)
		codec->config.item_event_schema_id = schema_id;
	else
		codec->config.recommendation_schema_id = schema_id;
	return 0;
}

/*
 * The plan of a schema id that is not registered, asked of the source:
 * 0 with *plan_out, or -1 with err filled (unknown, refused, unavailable).
 */
static int plan_from_source(struct codec *codec, int32_t id, struct writer_plan **plan_out,
			    struct codec_error *err)
{
	const char *json = NULL;
	char detail[200] = "";
	char why[200];

	for (size_t i = 0; i < codec->refused_count; i++)
		if (codec->refused[i].id == id)
			return fail(err, CODEC_ERR_SCHEMA_MISMATCH, "schema id %d: %s", id,
				    codec->refused[i].detail);
	if (codec->source == NULL)
		return fail(err, CODEC_ERR_UNKNOWN_SCHEMA, "schema id %d is not registered", id);
	switch (codec->source(codec->source_opaque, id, &json, detail, sizeof detail)) {
	case CODEC_SCHEMA_FOUND: break;
	case CODEC_SCHEMA_UNKNOWN:
		return fail(err, CODEC_ERR_UNKNOWN_SCHEMA, "schema id %d: %s", id, detail);
	case CODEC_SCHEMA_REFUSED:
		return fail(err, CODEC_ERR_SCHEMA_MISMATCH, "schema id %d: %s", id, detail);
	case CODEC_SCHEMA_UNAVAILABLE:
	default:
		return fail(err, CODEC_ERR_SCHEMA_UNAVAILABLE, "schema id %d: %s", id, detail);
	}
	if (codec_register_schema(codec, id, json, why, sizeof why) != 0) {
		if (grow_array(&codec->refused, &codec->refused_cap, codec->refused_count + 1,
			       sizeof *codec->refused, 4) == 0) {
			struct refused_schema *r = &codec->refused[codec->refused_count++];
			r->id = id;
			set_errstr(r->detail, sizeof r->detail, "%s", why);
		}
		return fail(err, CODEC_ERR_SCHEMA_MISMATCH, "schema id %d: %s", id, why);
	}
	*plan_out = codec->registered[codec->registered_count - 1];
	return 0;
}

static char *read_whole_file(const char *path, char *errstr, size_t errstr_size)
{
	FILE *f = fopen(path, "rb");
	char *text = NULL;
	long size;
	if (f == NULL) {
		set_errstr(errstr, errstr_size, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		set_errstr(errstr, errstr_size, "%s: cannot determine size", path);
		goto out_close;
	}
	text = malloc((size_t)size + 1);
	if (text == NULL || fread(text, 1, (size_t)size, f) != (size_t)size) {
		set_errstr(errstr, errstr_size, "%s: read failed", path);
		free(text);
		text = NULL;
		goto out_close;
	}
	text[size] = '\0';
out_close:
	fclose(f);
	return text;
}

int codec_register_schema_dir(struct codec *codec, const char *dir, char *errstr,
			      size_t errstr_size)
{
	DIR *d = opendir(dir);
	struct dirent *entry;
	int count = 0;
	if (d == NULL) {
		set_errstr(errstr, errstr_size, "%s: %s", dir, strerror(errno));
		return -1;
	}
	while ((entry = readdir(d)) != NULL) {
		char path[PATH_MAX], why[300], *end, *text;
		long id;
		size_t n = strlen(entry->d_name);
		if (n < 6 || strcmp(entry->d_name + n - 5, ".avsc") != 0)
			continue;
		errno = 0;
		id = strtol(entry->d_name, &end, 10);
		if (end == entry->d_name || strcmp(end, ".avsc") != 0 || errno != 0 || id < 0 ||
		    id > INT32_MAX) {
			set_errstr(errstr, errstr_size,
				   "%s/%s: name must be <schema id>.avsc with a non-negative id",
				   dir, entry->d_name);
			count = -1;
			break;
		}
		snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
		text = read_whole_file(path, errstr, errstr_size);
		if (text == NULL) {
			count = -1;
			break;
		}
		if (codec_register_schema(codec, (int32_t)id, text, why, sizeof why) != 0) {
			set_errstr(errstr, errstr_size, "%s: %s", path, why);
			free(text);
			count = -1;
			break;
		}
		free(text);
		count++;
	}
	closedir(d);
	return count;
}

int codec_set_raw_writer_schema(struct codec *codec, const char *schema_json, char *errstr,
				size_t errstr_size)
{
	struct writer_plan *plan = plan_from_json(schema_json, -1, errstr, errstr_size);
	if (plan == NULL)
		return -1;
	plan_free(codec->raw_plan[plan->kind]);
	codec->raw_plan[plan->kind] = plan;
	plan_free(codec->raw_previous[plan->kind]); /* the writer is named: no guessing */
	codec->raw_previous[plan->kind] = NULL;
	plan_free(codec->raw_older[plan->kind]);
	codec->raw_older[plan->kind] = NULL;
	return 0;
}

/* ---- decoding ---------------------------------------------------------------------- */

static int read_plan(struct codec *codec, enum record_kind kind, struct writer_plan *plan,
		     const uint8_t *bytes, size_t len, struct codec_error *err);

/* Whether a message is Confluent-framed: by the configured framing, or in
 * auto mode by its first byte. */
static bool confluent_framed(const struct codec *codec, const uint8_t *bytes)
{
	return codec->config.framing == CODEC_FRAMING_CONFLUENT ||
	       (codec->config.framing == CODEC_FRAMING_AUTO && bytes[0] == 0);
}

/* The plan registered for schema id, or NULL when none is yet. */
static struct writer_plan *registered_plan(const struct codec *codec, int32_t id)
{
	struct writer_plan *plan = NULL;
	for (size_t i = 0; i < codec->registered_count; i++)
		if (codec->registered[i]->schema_id == id)
			plan = codec->registered[i];
	return plan;
}

/*
 * Finds the writer plan from the framing and runs the Avro read of the
 * body; a raw body that does not read with the current schema is read again
 * with our earlier version of it, when there is one (the first error is
 * reported when neither reads).
 */
static int read_body(struct codec *codec, enum record_kind kind, const void *buf, size_t len,
		     struct writer_plan **plan_out, struct codec_error *err)
{
	const uint8_t *bytes = buf;
	struct writer_plan *plan = NULL;

	if (len == 0 || buf == NULL)
		return fail(err, CODEC_ERR_EMPTY, "message has no bytes");
	if (confluent_framed(codec, bytes)) {
		int32_t id;
		if (bytes[0] != 0)
			return fail(err, CODEC_ERR_BAD_MAGIC,
				    "first byte is 0x%02x; Confluent framing starts with 0x00",
				    bytes[0]);
		if (len < 5)
			return fail(err, CODEC_ERR_TRUNCATED,
				    "Confluent header needs 5 bytes, message has %zu", len);
		id = (int32_t)bytes_get_be32(bytes + 1);
		plan = registered_plan(codec, id);
		if (plan == NULL && plan_from_source(codec, id, &plan, err) != 0)
			return -1;
		if (plan->kind != kind)
			return fail(err, CODEC_ERR_SCHEMA_MISMATCH,
				    "schema id %d is a %s, not a %s", id, record_names[plan->kind],
				    record_names[kind]);
		bytes += 5;
		len -= 5;
	} else {
		plan = codec->raw_plan[kind];
		if (read_plan(codec, kind, plan, bytes, len, err) == 0) {
			*plan_out = plan;
			return 0;
		}
		/* an earlier version's message does not read with the current schema */
		struct codec_error previous_err;
		bool structural = err->reason == CODEC_ERR_TRUNCATED ||
				  err->reason == CODEC_ERR_MALFORMED ||
				  err->reason == CODEC_ERR_TRAILING_BYTES;
		if (!structural || codec->raw_previous[kind] == NULL)
			return -1;
		if (read_plan(codec, kind, codec->raw_previous[kind], bytes, len, &previous_err) ==
		    0) {
			*plan_out = codec->raw_previous[kind];
			return 0;
		}
		if (codec->raw_older[kind] == NULL ||
		    read_plan(codec, kind, codec->raw_older[kind], bytes, len, &previous_err) != 0)
			return -1;
		*plan_out = codec->raw_older[kind];
		return 0;
	}
	if (read_plan(codec, kind, plan, bytes, len, err) != 0)
		return -1;
	*plan_out = plan;
	return 0;
}

/* Runs the Avro read of a body with plan's writer schema. @returns 0, or -1 with err filled. */
static int read_plan(struct codec *codec, enum record_kind kind, struct writer_plan *plan,
		     const uint8_t *bytes, size_t len, struct codec_error *err)
{
	int rc;

	avro_reader_memory_set_source(codec->reader, (const char *)bytes, (int64_t)len);
	memset(&decode_alloc, 0, sizeof decode_alloc);
	/* Avro C prefixes its last message otherwise. Cleared only when set:
	 * formatting even an empty message on every event cost 1% of the loop. */
	if (avro_strerror()[0] != '\0')
		avro_set_error("%s", "");
	decode_alloc.budget_bytes = budget_for(len);
	rc = avro_value_read(codec->reader, &plan->value);
	if (rc != 0 && decode_alloc.last_fresh_block != NULL && is_cut_string_body(avro_strerror()))
		free(decode_alloc.last_fresh_block);
	decode_alloc.budget_bytes = 0;
	decode_alloc.last_fresh_block = NULL;
	if (rc != 0) {
		if (decode_alloc.refused_negative)
			return fail(err, CODEC_ERR_MALFORMED, "%s body: negative length",
				    record_names[kind]);
		if (decode_alloc.refused_bytes != 0)
			return fail(err, CODEC_ERR_TRUNCATED,
				    "%s body declares a %zu-byte value, message has %zu bytes",
				    record_names[kind], decode_alloc.refused_bytes, len);
		if (rc == ENOSPC)
			return fail(err, CODEC_ERR_TRUNCATED, "%s body ends early: %s",
				    record_names[kind], avro_strerror());
		return fail(err, CODEC_ERR_MALFORMED, "%s body: %s", record_names[kind],
			    avro_strerror());
	}
	/*
	 * avro_reader_is_eof() answers only for file readers. A record whose
	 * encoding is as long as the message used all of it (a writer's
	 * non-minimal varints make its bytes longer than avro_value_sizeof()'s
	 * count, never shorter); otherwise probe one more byte. The probe alone
	 * on every event cost 3% of the event loop: its failure formats Avro
	 * C's error message twice.
	 */
	size_t encoded;
	if (avro_value_sizeof(&plan->value, &encoded) == 0 && encoded == len)
		return 0;
	{
		char extra;
		if (avro_read(codec->reader, &extra, 1) == 0)
			return fail(err, CODEC_ERR_TRAILING_BYTES,
				    "bytes left over after the %s record", record_names[kind]);
	}
	return 0;
}

/*
 * Fetches the writer's value for reader field f; a union yields its branch.
 * *present is false when the writer lacks the field or sent null.
 */
static int field_value(struct writer_plan *plan, avro_value_t *record, size_t f, avro_value_t *out,
		       bool *present, struct codec_error *err)
{
	const struct reader_field *field = &reader_records[plan->kind].fields[f];
	*present = false;
	if (plan->field_index[f] < 0)
		return 0;
	if (avro_value_get_by_index(record, (size_t)plan->field_index[f], out, NULL) != 0)
		return fail(err, CODEC_ERR_MALFORMED, "field %s: %s", field->name, avro_strerror());
	if (avro_value_get_type(out) == AVRO_UNION) {
		avro_value_t branch;
		if (avro_value_get_current_branch(out, &branch) != 0)
			return fail(err, CODEC_ERR_MALFORMED, "field %s: bad union branch",
				    field->name);
		*out = branch;
	}
	if (avro_value_get_type(out) == AVRO_NULL) {
		if (!field->has_default)
			return fail(err, CODEC_ERR_SCHEMA_MISMATCH, "field %s: null is not allowed",
				    field->name);
		return 0;
	}
	*present = true;
	return 0;
}

/*
 * A union's value as its current branch (a writer may wrap a field inside a
 * record, ContentVector's model, dim or numbers, in a union with null:
 * kind_accepts() takes such a writer); a null there is an invalid field.
 */
static int unwrap_union(avro_value_t *v, const char *name, struct codec_error *err)
{
	if (avro_value_get_type(v) != AVRO_UNION)
		return 0;
	avro_value_t branch;
	if (avro_value_get_current_branch(v, &branch) != 0)
		return fail(err, CODEC_ERR_MALFORMED, "field %s: bad union branch", name);
	*v = branch;
	if (avro_value_get_type(v) == AVRO_NULL)
		return fail(err, CODEC_ERR_INVALID_FIELD, "%s is null", name);
	return 0;
}

static int value_string(avro_value_t *v, const char *name, const char **s, size_t *len,
			struct codec_error *err)
{
	size_t size;
	int rc;
	if (unwrap_union(v, name, err) != 0)
		return -1;
	switch (avro_value_get_type(v)) {
	case AVRO_STRING:
		rc = avro_value_get_string(v, s, &size);
		if (rc == 0 && size > 0)
			size--; /* Avro C counts the terminating NUL */
		break;
	case AVRO_BYTES: {
		const void *b;
		rc = avro_value_get_bytes(v, &b, &size);
		*s = b;
		break;
	}
	default:
		return fail(err, CODEC_ERR_SCHEMA_MISMATCH, "field %s: writer sent a %s", name,
			    avro_schema_type_name(avro_value_get_schema(v)));
	}
	if (rc != 0)
		return fail(err, CODEC_ERR_MALFORMED, "field %s: %s", name, avro_strerror());
	*len = size;
	return 0;
}

/* Copies an id after checking it is 1..CODEC_ID_MAX_BYTES bytes of UTF-8. */
static int value_id(avro_value_t *v, const char *name, char *dst, struct codec_error *err)
{
	const char *s = NULL;
	size_t len = 0;
	if (value_string(v, name, &s, &len, err) != 0)
		return -1;
	if (len == 0)
		return fail(err, CODEC_ERR_EMPTY_ID, "%s is empty", name);
	if (len > CODEC_ID_MAX_BYTES)
		return fail(err, CODEC_ERR_ID_TOO_LONG, "%s is %zu bytes, limit %d", name, len,
			    CODEC_ID_MAX_BYTES);
	if (!codec_utf8_valid(s, len))
		return fail(err, CODEC_ERR_ID_NOT_UTF8, "%s is not valid UTF-8 (or holds a NUL)",
			    name);
	memcpy(dst, s, len);
	dst[len] = '\0';
	return 0;
}

static int value_long(avro_value_t *v, const char *name, int64_t *out, struct codec_error *err)
{
	int32_t i;
	if (unwrap_union(v, name, err) != 0)
		return -1;
	switch (avro_value_get_type(v)) {
	case AVRO_INT32:
		avro_value_get_int(v, &i);
		*out = i;
		return 0;
	case AVRO_INT64: avro_value_get_long(v, out); return 0;
	default:
		return fail(err, CODEC_ERR_SCHEMA_MISMATCH, "field %s: writer sent a %s", name,
			    avro_schema_type_name(avro_value_get_schema(v)));
	}
}

static int value_double(avro_value_t *v, const char *name, double *out, struct codec_error *err)
{
	float f;
	if (unwrap_union(v, name, err) != 0)
		return -1;
	switch (avro_value_get_type(v)) {
	case AVRO_FLOAT:
		avro_value_get_float(v, &f);
		*out = f;
		return 0;
	case AVRO_DOUBLE: avro_value_get_double(v, out); return 0;
	default: {
		int64_t l;
		if (value_long(v, name, &l, err) != 0)
			return -1;
		*out = (double)l;
		return 0;
	}
	}
}

static int check_ts(int64_t ts_ms, int64_t now_ms, int64_t max_future_ms, const char *name,
		    struct codec_error *err)
{
	if (ts_ms < 0)
		return fail(err, CODEC_ERR_NEGATIVE_TS, "%s is negative (%lld)", name,
			    (long long)ts_ms);
	if (now_ms > 0 && ts_ms > now_ms && ts_ms - now_ms > max_future_ms)
		return fail(
		    err, CODEC_ERR_FUTURE_TS, "%s %lld is %lld ms in the future (limit %lld ms)",
		    name, (long long)ts_ms, (long long)(ts_ms - now_ms), (long long)max_future_ms);
	return 0;
}

static int check_price(double price, struct codec_error *err)
{
	if (!isfinite(price) || price < 0)
		return fail(err, CODEC_ERR_INVALID_FIELD, "price must be finite and >= 0, got %g",
			    price);
	return 0;
}

/*
 * The direct read of a UserEvent: the message's bytes parsed in place,
 * without Avro C's generic value, for the common case alone (a writer laid
 * out as our reader, no search, every field valid). Anything else, any
 * doubt, returns false and the message takes the generic read, which names
 * what is wrong; so both reads accept the same messages with the same
 * results, and the generic one alone refuses (tests/unit/013 checks that on
 * random and mangled messages). Avro C's generic read and our resolution
 * over it cost 1.5 us an event, a tenth of the event loop at 1M items
 * (bench_codec shows both).
 */
struct cursor {
	const uint8_t *at, *end;
};

/* A zig-zag varint of at most max_bytes bytes (Avro C reads up to 10 for
 * a long, 5 for an int; longer ones are left to it). */
static bool cursor_varint(struct cursor *c, int max_bytes, int64_t *out)
{
	uint64_t value = 0;
	for (int shift = 0, n = 0; n < max_bytes; n++, shift += 7) {
		if (c->at == c->end)
			return false;
		uint8_t b = *c->at++;
		value |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = (int64_t)(value >> 1) ^ -(int64_t)(value & 1);
			return true;
		}
	}
	return false;
}

static bool cursor_string(struct cursor *c, const char **s, size_t *len)
{
	int64_t n;
	if (!cursor_varint(c, 9, &n) || n < 0 || n > c->end - c->at)
		return false;
	*s = (const char *)c->at;
	*len = (size_t)n;
	c->at += n;
	return true;
}

/* An id: 1..CODEC_ID_MAX_BYTES bytes of UTF-8 without NUL, copied to dst. */
static bool cursor_id(struct cursor *c, char *dst)
{
	const char *s;
	size_t len;
	if (!cursor_string(c, &s, &len) || len == 0 || len > CODEC_ID_MAX_BYTES ||
	    !codec_utf8_valid(s, len))
		return false;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return true;
}

/* An optional field's union branch: *present for the second, false for
 * null; any other index is left to the generic read. */
static bool cursor_branch(struct cursor *c, bool *present)
{
	int64_t branch;
	if (!cursor_varint(c, 1, &branch) || (branch != 0 && branch != 1))
		return false;
	*present = branch == 1;
	return true;
}

static bool read_direct(const struct codec *codec, const struct writer_plan *plan,
			const uint8_t *bytes, size_t len, int64_t now_ms, struct user_event *out)
{
	struct cursor c = {bytes, bytes + len};
	struct codec_error ignored;
	int64_t type, value;
	bool present;

	memset(out, 0, sizeof *out);
	if (!cursor_id(&c, out->event_id) || !cursor_id(&c, out->user_id) ||
	    !cursor_id(&c, out->item_id) || !cursor_varint(&c, 9, &type) || type < 0 ||
	    type >= plan->enum_symbols || plan->enum_map[type] < 0 ||
	    !cursor_varint(&c, 9, &out->ts_ms) ||
	    check_ts(out->ts_ms, now_ms, codec->config.max_future_ms, "ts", &ignored) != 0)
		return false;
	out->type = (enum event_type)plan->enum_map[type];
	if (!cursor_branch(&c, &out->has_session_id) ||
	    (out->has_session_id && !cursor_id(&c, out->session_id)))
		return false;
	if (!cursor_branch(&c, &out->has_quantity))
		return false;
	if (out->has_quantity) {
		if (!cursor_varint(&c, 4, &value) || value <= 0)
			return false;
		out->quantity = (int32_t)value;
	}
	if (!cursor_branch(&c, &out->has_price))
		return false;
	if (out->has_price) {
		uint64_t bits = 0;
		if (c.end - c.at < 8)
			return false;
		for (int i = 7; i >= 0; i--)
			bits = bits << 8 | c.at[i]; /* little-endian, as Avro writes it */
		memcpy(&out->price, &bits, sizeof out->price);
		c.at += 8;
		if (check_price(out->price, &ignored) != 0)
			return false;
	}
	if (!cursor_branch(&c, &present))
		return false;
	if (present) {
		const char *s;
		size_t slen;
		struct cursor at_id = c;
		/* "" is the Recommendation's default for "no id": no list named */
		if (!cursor_string(&c, &s, &slen))
			return false;
		if (slen > 0) {
			if (!cursor_id(&at_id, out->list_id))
				return false;
			out->has_list_id = true;
		}
	}
	/* a search, and anything after the record, are the generic read's */
	return cursor_branch(&c, &present) && !present && c.at == c.end;
}

/* The plan of a message laid out as our reader, with its body; NULL when
 * the generic read must decide (a schema id not met yet, a bad header). */
static const struct writer_plan *layout_plan(const struct codec *codec, const uint8_t *bytes,
					     size_t len, size_t *body)
{
	const struct writer_plan *plan = NULL;
	if (len == 0 || bytes == NULL)
		return NULL;
	*body = 0;
	if (confluent_framed(codec, bytes)) {
		if (bytes[0] != 0 || len < 5)
			return NULL;
		plan = registered_plan(codec, (int32_t)bytes_get_be32(bytes + 1));
		*body = 5;
	} else {
		plan = codec->raw_plan[REC_USER_EVENT];
	}
	return plan != NULL && plan->direct ? plan : NULL;
}

/* The plan of a message read_direct() can try (layout_plan()). */
static const struct writer_plan *direct_plan(const struct codec *codec, const uint8_t *bytes,
					     size_t len, size_t *body)
{
	return codec->config.no_direct_read ? NULL : layout_plan(codec, bytes, len, body);
}

/*
 * The type's enum index of a message laid out as our reader when it is no
 * Avro int (-1 otherwise, or when the layout is another). Avro C reads an
 * enum's index as a long and keeps its low 32 bits: 2^32 + 1 would be read
 * as 1, a VIEW.
 */
static int64_t wide_enum_index(const struct codec *codec, const uint8_t *bytes, size_t len)
{
	size_t body;
	char id[CODEC_ID_MAX_BYTES + 1];
	int64_t type;
	if (layout_plan(codec, bytes, len, &body) == NULL)
		return -1;
	struct cursor c = {bytes + body, bytes + len};
	if (!cursor_id(&c, id) || !cursor_id(&c, id) || !cursor_id(&c, id) ||
	    !cursor_varint(&c, 10, &type) || (type >= INT32_MIN && type <= INT32_MAX))
		return -1;
	return type;
}

size_t codec_direct_reads(const struct codec *codec)
{
	return codec->direct_reads;
}

static int decode_search(struct codec *codec, avro_value_t *record, struct user_event *out,
			 struct codec_error *err);

int codec_decode_user_event(struct codec *codec, const void *buf, size_t len, int64_t now_ms,
			    struct user_event *out, struct codec_error *err)
{
	struct writer_plan *plan;
	avro_value_t v;
	bool present;
	int idx;
	size_t body;
	const struct writer_plan *direct = direct_plan(codec, buf, len, &body);

	if (direct != NULL &&
	    read_direct(codec, direct, (const uint8_t *)buf + body, len - body, now_ms, out)) {
		codec->direct_reads++;
		err->reason = CODEC_OK;
		err->detail[0] = '\0';
		return 0;
	}
	if (read_body(codec, REC_USER_EVENT, buf, len, &plan, err) != 0)
		return -1;
	memset(out, 0, sizeof *out);
	static const struct {
		int field;
		size_t offset;
	} ids[] = {
	    {UE_EVENT_ID, offsetof(struct user_event, event_id)},
	    {UE_USER_ID, offsetof(struct user_event, user_id)},
	    {UE_ITEM_ID, offsetof(struct user_event, item_id)},
	};
	bool empty_item_id = false;
	for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		if (field_value(plan, &plan->value, (size_t)ids[i].field, &v, &present, err) != 0)
			return -1;
		if (ids[i].field == UE_ITEM_ID) {
			const char *s;
			size_t slen;
			/* a search may name no item: checked once search is read */
			if (value_string(&v, "item_id", &s, &slen, err) != 0)
				return -1;
			if (slen == 0) {
				empty_item_id = true;
				continue;
			}
		}
		if (value_id(&v, user_event_fields[ids[i].field].name, (char *)out + ids[i].offset,
			     err) != 0)
			return -1;
	}

	if (field_value(plan, &plan->value, UE_TYPE, &v, &present, err) != 0)
		return -1;
	if (avro_value_get_type(&v) != AVRO_ENUM)
		return fail(err, CODEC_ERR_SCHEMA_MISMATCH, "field type: writer sent a %s",
			    avro_schema_type_name(avro_value_get_schema(&v)));
	avro_value_get_enum(&v, &idx);
	int64_t wide = wide_enum_index(codec, buf, len);
	if (wide != -1)
		return fail(err, CODEC_ERR_INVALID_ENUM,
			    "type: enum index %" PRId64 " out of range (%d symbols)", wide,
			    plan->enum_symbols);
	if (idx < 0 || idx >= plan->enum_symbols)
		return fail(err, CODEC_ERR_INVALID_ENUM,
			    "type: enum index %d out of range (%d symbols)", idx,
			    plan->enum_symbols);
	if (plan->enum_map[idx] < 0)
		return fail(err, CODEC_ERR_INVALID_ENUM, "type: invalid enum symbol \"%s\"",
			    avro_schema_enum_get(find_enum(avro_value_get_schema(&v)), idx));
	out->type = (enum event_type)plan->enum_map[idx];

	if (field_value(plan, &plan->value, UE_TS, &v, &present, err) != 0 ||
	    value_long(&v, "ts", &out->ts_ms, err) != 0 ||
	    check_ts(out->ts_ms, now_ms, codec->config.max_future_ms, "ts", err) != 0)
		return -1;

	if (field_value(plan, &plan->value, UE_SESSION_ID, &v, &present, err) != 0)
		return -1;
	if (present) {
		if (value_id(&v, "session_id", out->session_id, err) != 0)
			return -1;
		out->has_session_id = true;
	}
	if (field_value(plan, &plan->value, UE_QUANTITY, &v, &present, err) != 0)
		return -1;
	if (present) {
		int64_t q;
		if (value_long(&v, "quantity", &q, err) != 0)
			return -1;
		if (q <= 0 || q > INT32_MAX)
			return fail(err, CODEC_ERR_INVALID_FIELD, "quantity must be > 0, got %lld",
				    (long long)q);
		out->quantity = (int32_t)q;
		out->has_quantity = true;
	}
	if (field_value(plan, &plan->value, UE_PRICE, &v, &present, err) != 0)
		return -1;
	if (present) {
		if (value_double(&v, "price", &out->price, err) != 0 ||
		    check_price(out->price, err) != 0)
			return -1;
		out->has_price = true;
	}
	if (field_value(plan, &plan->value, UE_LIST_ID, &v, &present, err) != 0)
		return -1;
	if (present) {
		const char *s;
		size_t slen;
		/* "" is the Recommendation's default for "no id": no list named */
		if (value_string(&v, "list_id", &s, &slen, err) != 0)
			return -1;
		if (slen > 0) {
			if (value_id(&v, "list_id", out->list_id, err) != 0)
				return -1;
			out->has_list_id = true;
		}
	}
	if (field_value(plan, &plan->value, UE_SEARCH, &v, &present, err) != 0)
		return -1;
	if (present && decode_search(codec, &v, out, err) != 0)
		return -1;
	if (empty_item_id && !out->has_search)
		return fail(err, CODEC_ERR_EMPTY_ID, "item_id is empty");
	err->reason = CODEC_OK;
	err->detail[0] = '\0';
	return 0;
}

static int ensure_capacity(void **ptr, size_t *cap, size_t need, size_t elem);

/*
 * A ContentVector (field `name`: "content" or "search.content") into
 * model, *dim and *storage (grown as needed; its capacity in *cap).
 */
static int decode_vector(avro_value_t *record, const char *name, char *model, uint32_t *dim_out,
			 float **storage, size_t *cap, struct codec_error *err)
{
	avro_value_t v, array;
	int64_t dim;
	size_t count;
	char what[64];
	snprintf(what, sizeof what, "%s.model", name);
	if (avro_value_get_by_name(record, "model", &v, NULL) != 0)
		return fail(err, CODEC_ERR_MALFORMED, "%s: %s", what, avro_strerror());
	if (value_id(&v, what, model, err) != 0) {
		/* a model name is a field, not an id: empty, too long or not UTF-8
		 * is the README's invalid_field (the detail names which) */
		if (err->reason == CODEC_ERR_EMPTY_ID || err->reason == CODEC_ERR_ID_TOO_LONG ||
		    err->reason == CODEC_ERR_ID_NOT_UTF8)
			err->reason = CODEC_ERR_INVALID_FIELD;
		return -1;
	}
	snprintf(what, sizeof what, "%s.dim", name);
	if (avro_value_get_by_name(record, "dim", &v, NULL) != 0 ||
	    value_long(&v, what, &dim, err) != 0)
		return -1;
	if (avro_value_get_by_name(record, "vector", &array, NULL) != 0 ||
	    avro_value_get_size(&array, &count) != 0)
		return fail(err, CODEC_ERR_MALFORMED, "%s.vector: %s", name, avro_strerror());
	if (dim < 1 || dim > CODEC_CONTENT_MAX_DIM)
		return fail(err, CODEC_ERR_INVALID_FIELD, "%s.dim must be between 1 and %d, got %lld",
			    name, CODEC_CONTENT_MAX_DIM, (long long)dim);
	if ((size_t)dim != count)
		return fail(err, CODEC_ERR_INVALID_FIELD,
			    "%s.dim is %lld but %s.vector has %zu numbers", name, (long long)dim, name,
			    count);
	if (ensure_capacity((void **)storage, cap, count, sizeof **storage) != 0)
		return fail(err, CODEC_ERR_MALFORMED, "%s.vector: out of memory", name);
	snprintf(what, sizeof what, "%s.vector", name);
	for (size_t i = 0; i < count; i++) {
		avro_value_t element;
		double x;
		if (avro_value_get_by_index(&array, i, &element, NULL) != 0 ||
		    value_double(&element, what, &x, err) != 0)
			return -1;
		if (!isfinite(x) || fabs(x) > 3.4e38)
			return fail(err, CODEC_ERR_INVALID_FIELD,
				    "%s.vector[%zu] is %g: components must be finite", name, i, x);
		(*storage)[i] = (float)x;
	}
	*dim_out = (uint32_t)count;
	return 0;
}

/* An item's ContentVector into out (its vector in the codec's storage). */
static int decode_content(struct codec *codec, avro_value_t *record, struct item_event *out,
			  struct codec_error *err)
{
	if (decode_vector(record, "content", out->content_model, &out->content_dim,
			  &codec->content, &codec->content_cap, err) != 0)
		return -1;
	out->has_content = true;
	out->content = codec->content;
	return 0;
}

/* An optional field of a record by name: *present false when absent or null. */
static int optional_by_name(avro_value_t *record, const char *name, avro_value_t *out,
			    bool *present)
{
	*present = false;
	if (avro_value_get_by_name(record, name, out, NULL) != 0)
		return 0; /* the writer has no such field */
	if (avro_value_get_type(out) == AVRO_UNION &&
	    avro_value_get_current_branch(out, out) != 0)
		return -1;
	*present = avro_value_get_type(out) != AVRO_NULL;
	return 0;
}

/* A UserEvent's SearchQuery into out (text borrowed, vector in the codec's storage). */
static int decode_search(struct codec *codec, avro_value_t *record, struct user_event *out,
			 struct codec_error *err)
{
	avro_value_t v;
	bool present;
	if (optional_by_name(record, "text", &v, &present) != 0)
		return fail(err, CODEC_ERR_MALFORMED, "search.text: bad union branch");
	if (present) {
		if (value_string(&v, "search.text", &out->search_text, &out->search_text_len, err) !=
		    0)
			return -1;
		if (out->search_text_len > CODEC_TEXT_MAX_BYTES)
			return fail(err, CODEC_ERR_INVALID_FIELD, "search.text is %zu bytes, limit %d",
				    out->search_text_len, CODEC_TEXT_MAX_BYTES);
		if (!codec_utf8_valid(out->search_text, out->search_text_len))
			return fail(err, CODEC_ERR_INVALID_FIELD,
				    "search.text is not valid UTF-8 (or holds a NUL)");
		if (out->search_text_len == 0)
			out->search_text = NULL; /* "" searches for nothing: no text */
	}
	if (optional_by_name(record, "content", &v, &present) != 0)
		return fail(err, CODEC_ERR_MALFORMED, "search.content: bad union branch");
	if (present) {
		if (decode_vector(&v, "search.content", out->search_model, &out->search_dim,
				  &codec->search_vector, &codec->search_vector_cap, err) != 0)
			return -1;
		out->search_vector = codec->search_vector;
	}
	if (out->search_text == NULL && out->search_vector == NULL)
		return fail(err, CODEC_ERR_INVALID_FIELD,
			    "search has neither text nor content: nothing to search for");
	out->has_search = true;
	return 0;
}

int codec_decode_item_event(struct codec *codec, const void *buf, size_t len, int64_t now_ms,
			    struct item_event *out, struct codec_error *err)
{
	struct writer_plan *plan;
	avro_value_t v;
	bool present;

	if (read_body(codec, REC_ITEM_EVENT, buf, len, &plan, err) != 0)
		return -1;
	memset(out, 0, sizeof *out);
	if (field_value(plan, &plan->value, IE_ITEM_ID, &v, &present, err) != 0 ||
	    value_id(&v, "item_id", out->item_id, err) != 0)
		return -1;
	if (field_value(plan, &plan->value, IE_CATEGORY, &v, &present, err) != 0)
		return -1;
	if (present) {
		if (value_id(&v, "category", out->category, err) != 0)
			return -1;
		out->has_category = true;
	}
	if (field_value(plan, &plan->value, IE_PRICE, &v, &present, err) != 0)
		return -1;
	if (present) {
		if (value_double(&v, "price", &out->price, err) != 0 ||
		    check_price(out->price, err) != 0)
			return -1;
		out->has_price = true;
	}
	if (field_value(plan, &plan->value, IE_IN_STOCK, &v, &present, err) != 0)
		return -1;
	out->in_stock = true; /* the schema's default */
	if (present) {
		int b;
		if (avro_value_get_type(&v) != AVRO_BOOLEAN)
			return fail(err, CODEC_ERR_SCHEMA_MISMATCH,
				    "field in_stock: not a boolean");
		avro_value_get_boolean(&v, &b);
		out->in_stock = b != 0;
	}
	if (field_value(plan, &plan->value, IE_TS, &v, &present, err) != 0 ||
	    value_long(&v, "ts", &out->ts_ms, err) != 0 ||
	    check_ts(out->ts_ms, now_ms, codec->config.max_future_ms, "ts", err) != 0)
		return -1;
	for (int t = 0; t < 2; t++) {
		const char *name = t == 0 ? "title" : "description";
		const char *text;
		size_t text_len;
		if (field_value(plan, &plan->value, t == 0 ? IE_TITLE : IE_DESCRIPTION, &v,
				&present, err) != 0)
			return -1;
		if (!present)
			continue;
		if (value_string(&v, name, &text, &text_len, err) != 0)
			return -1;
		if (text_len > CODEC_TEXT_MAX_BYTES)
			return fail(err, CODEC_ERR_INVALID_FIELD, "%s is %zu bytes, limit %d", name,
				    text_len, CODEC_TEXT_MAX_BYTES);
		if (!codec_utf8_valid(text, text_len))
			return fail(err, CODEC_ERR_INVALID_FIELD,
				    "%s is not valid UTF-8 (or holds a NUL)", name);
		if (t == 0) {
			out->title = text;
			out->title_len = text_len;
		} else {
			out->description = text;
			out->description_len = text_len;
		}
	}
	if (field_value(plan, &plan->value, IE_CONTENT, &v, &present, err) != 0)
		return -1;
	if (present && decode_content(codec, &v, out, err) != 0)
		return -1;
	err->reason = CODEC_OK;
	err->detail[0] = '\0';
	return 0;
}

/*
 * A ScoredItem's optional string (which 0: reason, 1: because_item).
 * @returns 1 with *s, *len; 0 when absent or null (*len 0); -1 with err filled.
 */
static int item_string(const struct writer_plan *plan, avro_value_t *item, int which,
		       const char *name, const char **s, size_t *len, struct codec_error *err)
{
	int index = which == 0 ? plan->item_reason_index : plan->item_because_index;
	avro_value_t v;
	*len = 0;
	if (index < 0)
		return 0;
	avro_value_get_by_index(item, (size_t)index, &v, NULL);
	if (avro_value_get_type(&v) == AVRO_UNION)
		avro_value_get_current_branch(&v, &v);
	if (avro_value_get_type(&v) == AVRO_NULL)
		return 0;
	return value_string(&v, name, s, len, err) == 0 ? 1 : -1;
}

static int ensure_capacity(void **ptr, size_t *cap, size_t need, size_t elem)
{
	void *grown;
	if (need <= *cap)
		return 0;
	grown = realloc(*ptr, need * elem);
	if (grown == NULL)
		return -1;
	*ptr = grown;
	*cap = need;
	return 0;
}

/* Appends a NUL-terminated copy of s to an arena sized beforehand. */
static const char *arena_copy(char *arena, size_t *used, const char *s, size_t len)
{
	char *dst = arena + *used;
	memcpy(dst, s, len);
	dst[len] = '\0';
	*used += len + 1;
	return dst;
}

int codec_decode_recommendation(struct codec *codec, const void *buf, size_t len,
				struct recommendation *out, struct codec_error *err)
{
	struct writer_plan *plan;
	avro_value_t v, items;
	bool present;
	const char *s;
	size_t slen, count, used = 0;
	const char *user_id, *variant, *list_id = "";
	size_t user_len, variant_len, list_len = 0, strings_need;

	if (read_body(codec, REC_RECOMMENDATION, buf, len, &plan, err) != 0)
		return -1;
	memset(out, 0, sizeof *out);
	if (field_value(plan, &plan->value, RE_USER_ID, &v, &present, err) != 0 ||
	    value_string(&v, "user_id", &user_id, &user_len, err) != 0)
		return -1;
	if (field_value(plan, &plan->value, RE_VARIANT, &v, &present, err) != 0 ||
	    value_string(&v, "variant", &variant, &variant_len, err) != 0)
		return -1;
	if (field_value(plan, &plan->value, RE_MODEL_STEP, &v, &present, err) != 0 ||
	    value_long(&v, "model_step", &out->model_step, err) != 0 ||
	    field_value(plan, &plan->value, RE_GENERATED_AT, &v, &present, err) != 0 ||
	    value_long(&v, "generated_at", &out->generated_at_ms, err) != 0 ||
	    field_value(plan, &plan->value, RE_TRIGGER_TS, &v, &present, err) != 0 ||
	    value_long(&v, "trigger_event_ts", &out->trigger_event_ts_ms, err) != 0 ||
	    field_value(plan, &plan->value, RE_ITEMS, &items, &present, err) != 0)
		return -1;
	if (avro_value_get_type(&items) != AVRO_ARRAY)
		return fail(err, CODEC_ERR_SCHEMA_MISMATCH, "field items: not an array");
	avro_value_get_size(&items, &count);
	if (field_value(plan, &plan->value, RE_LIST_ID, &v, &present, err) != 0 ||
	    (present && value_string(&v, "list_id", &list_id, &list_len, err) != 0))
		return -1;

	/* Size the string arena first so pointers into it stay valid. */
	strings_need = user_len + variant_len + list_len + 3;
	for (size_t i = 0; i < count; i++) {
		avro_value_t item, id;
		avro_value_get_by_index(&items, i, &item, NULL);
		avro_value_get_by_index(&item, (size_t)plan->item_id_index, &id, NULL);
		if (avro_value_get_type(&id) == AVRO_UNION)
			avro_value_get_current_branch(&id, &id);
		if (value_string(&id, "items.item_id", &s, &slen, err) != 0)
			return -1;
		strings_need += slen + 1;
		for (int e = 0; e < 2; e++) {
			const char *name = e == 0 ? "items.reason" : "items.because_item";
			if (item_string(plan, &item, e, name, &s, &slen, err) < 0)
				return -1;
			strings_need += slen + 1;
		}
	}
	if (ensure_capacity((void **)&codec->rec_strings, &codec->rec_strings_cap, strings_need,
			    1) ||
	    ensure_capacity((void **)&codec->rec_items, &codec->rec_items_cap, count + 1,
			    sizeof(struct scored_item)))
		return fail(err, CODEC_ERR_MALFORMED, "out of memory");

	out->user_id = arena_copy(codec->rec_strings, &used, user_id, user_len);
	out->variant = arena_copy(codec->rec_strings, &used, variant, variant_len);
	out->list_id = arena_copy(codec->rec_strings, &used, list_id, list_len);
	for (size_t i = 0; i < count; i++) {
		avro_value_t item, id, score;
		double d;
		avro_value_get_by_index(&items, i, &item, NULL);
		avro_value_get_by_index(&item, (size_t)plan->item_id_index, &id, NULL);
		avro_value_get_by_index(&item, (size_t)plan->item_score_index, &score, NULL);
		if (avro_value_get_type(&id) == AVRO_UNION)
			avro_value_get_current_branch(&id, &id);
		if (avro_value_get_type(&score) == AVRO_UNION)
			avro_value_get_current_branch(&score, &score);
		if (value_string(&id, "items.item_id", &s, &slen, err) != 0 ||
		    value_double(&score, "items.score", &d, err) != 0)
			return -1;
		codec->rec_items[i].item_id = arena_copy(codec->rec_strings, &used, s, slen);
		codec->rec_items[i].score = (float)d;
		const char **explained[2] = {&codec->rec_items[i].reason,
					     &codec->rec_items[i].because_item};
		for (int e = 0; e < 2; e++) {
			int got = item_string(plan, &item, e,
					      e == 0 ? "items.reason" : "items.because_item", &s,
					      &slen, err);
			*explained[e] =
			    got > 0 ? arena_copy(codec->rec_strings, &used, s, slen) : NULL;
		}
	}
	out->item_count = count;
	out->items = codec->rec_items;
	err->reason = CODEC_OK;
	err->detail[0] = '\0';
	return 0;
}

/* ---- encoding ------------------------------------------------------------------------ */

void codec_buf_free(struct codec_buf *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->len = buf->cap = 0;
}

/* Sets a string field without copying: Avro C only borrows it until the write. */
static int set_borrowed_string(avro_value_t *record, size_t index, const char *s)
{
	avro_value_t field;
	avro_wrapped_buffer_t wrapped;
	if (s == NULL)
		return EINVAL;
	if (avro_value_get_by_index(record, index, &field, NULL) != 0)
		return EINVAL;
	if (avro_wrapped_buffer_new_string(&wrapped, s) != 0)
		return ENOMEM;
	return avro_value_give_string_len(&field, &wrapped);
}

static int set_long(avro_value_t *record, size_t index, int64_t l)
{
	avro_value_t field;
	if (avro_value_get_by_index(record, index, &field, NULL) != 0)
		return EINVAL;
	return avro_value_set_long(&field, l);
}

/* Sets an optional (["null", T]) field: branch 0 is null, branch 1 the value. */
static int set_optional(avro_value_t *record, size_t index, bool present, avro_value_t *branch)
{
	avro_value_t field;
	if (avro_value_get_by_index(record, index, &field, NULL) != 0)
		return EINVAL;
	if (avro_value_set_branch(&field, present ? 1 : 0, branch) != 0)
		return EINVAL;
	return present ? 0 : avro_value_set_null(branch);
}

/* Sets an optional string field without copying (NULL: null), as set_borrowed_string(). */
static int set_optional_borrowed(avro_value_t *record, size_t index, const char *s)
{
	avro_value_t branch;
	avro_wrapped_buffer_t wrapped;
	int rc = set_optional(record, index, s != NULL, &branch);
	if (rc != 0 || s == NULL)
		return rc;
	if (avro_wrapped_buffer_new_string(&wrapped, s) != 0)
		return ENOMEM;
	return avro_value_give_string_len(&branch, &wrapped);
}

/* Writes value (of kind) into out with the framing's header. */
static int write_framed(struct codec *codec, avro_value_t *value, int32_t schema_id,
			enum codec_framing framing, struct codec_buf *out, char *errstr,
			size_t errstr_size)
{
	size_t body, header = framing == CODEC_FRAMING_CONFLUENT ? 5 : 0;
	if (avro_value_sizeof(value, &body) != 0) {
		set_errstr(errstr, errstr_size, "cannot size record: %s", avro_strerror());
		return -1;
	}
	if (ensure_capacity((void **)&out->data, &out->cap, header + body, 1) != 0) {
		set_errstr(errstr, errstr_size, "out of memory");
		return -1;
	}
	if (header != 0) {
		out->data[0] = 0;
		bytes_put_be32(out->data + 1, (uint32_t)schema_id);
	}
	avro_writer_memory_set_dest(codec->writer, (const char *)out->data + header, (int64_t)body);
	if (avro_value_write(codec->writer, value) != 0) {
		set_errstr(errstr, errstr_size, "cannot write record: %s", avro_strerror());
		return -1;
	}
	out->len = header + body;
	return 0;
}

/*
 * Direct write of a Recommendation: the daemon publishes one per list, and
 * through Avro C's generic value (a value set field by field, then sized,
 * then written) it was 17% of the event loop at 1M items and 10k events/s
 * (bench/HISTORY.md, 5 December, night). Our writer schema is fixed, so
 * the bytes are laid out here as the Avro specification's binary encoding
 * has them: zigzag varints for lengths and longs, little-endian IEEE floats,
 * union branch indexes, and the array as one block of its count (none when
 * empty) and a zero. Unit test 013_codec_direct holds it to Avro C's bytes.
 */
static uint8_t *put_varint(uint8_t *at, int64_t value)
{
	uint64_t zigzag = ((uint64_t)value << 1) ^ (uint64_t)(value >> 63);
	while (zigzag >= 0x80) {
		*at++ = (uint8_t)(zigzag | 0x80);
		zigzag >>= 7;
	}
	*at++ = (uint8_t)zigzag;
	return at;
}

static uint8_t *put_string(uint8_t *at, const char *s, size_t len)
{
	at = put_varint(at, (int64_t)len);
	memcpy(at, s, len);
	return at + len;
}

/* An optional string (["null", "string"]): branch 0, or branch 1 and the string. */
static uint8_t *put_optional_string(uint8_t *at, const char *s)
{
	if (s == NULL)
		return put_varint(at, 0);
	return put_string(put_varint(at, 1), s, strlen(s));
}

#define VARINT_MAX 10

static int write_recommendation_direct(struct codec *codec, const struct recommendation *rec,
				       bool v1, enum codec_framing framing, struct codec_buf *out)
{
	size_t header = framing == CODEC_FRAMING_CONFLUENT ? 5 : 0;
	const char *list_id = rec->list_id ? rec->list_id : "";
	size_t user_len = strlen(rec->user_id), variant_len = strlen(rec->variant);
	size_t list_id_len = strlen(list_id);
	size_t most = header + 8 * VARINT_MAX + user_len + variant_len + list_id_len;
	for (size_t i = 0; i < rec->item_count; i++) {
		const struct scored_item *si = &rec->items[i];
		if (si->item_id == NULL)
			return -1;
		most += 5 * VARINT_MAX + 4 + strlen(si->item_id);
		if (!v1)
			most += (si->reason ? strlen(si->reason) : 0) +
				(si->because_item ? strlen(si->because_item) : 0);
	}
	if (ensure_capacity((void **)&out->data, &out->cap, most, 1) != 0)
		return -1;
	uint8_t *at = out->data;
	if (header != 0) {
		*at++ = 0;
		bytes_put_be32(at, (uint32_t)codec->config.recommendation_schema_id);
		at += 4;
	}
	at = put_string(at, rec->user_id, user_len);
	at = put_string(at, rec->variant, variant_len);
	at = put_varint(at, rec->model_step);
	at = put_varint(at, rec->generated_at_ms);
	at = put_varint(at, rec->trigger_event_ts_ms);
	if (rec->item_count > 0)
		at = put_varint(at, (int64_t)rec->item_count);
	for (size_t i = 0; i < rec->item_count; i++) {
		const struct scored_item *si = &rec->items[i];
		at = put_string(at, si->item_id, strlen(si->item_id));
		uint32_t bits;
		memcpy(&bits, &si->score, sizeof bits);
		for (int b = 0; b < 4; b++)
			*at++ = (uint8_t)(bits >> (8 * b));
		if (v1)
			continue; /* version 1 has no explanations */
		at = put_optional_string(at, si->reason);
		at = put_optional_string(at, si->because_item);
	}
	at = put_varint(at, 0); /* the array's end */
	if (!v1)
		at = put_string(at, list_id, list_id_len);
	out->len = (size_t)(at - out->data);
	return 0;
}

int codec_encode_recommendation(struct codec *codec, const struct recommendation *rec,
				enum codec_framing framing, struct codec_buf *out, char *errstr,
				size_t errstr_size)
{
	bool v1 = codec->config.recommendation_version == 1;
	if (!codec->config.no_direct_write && rec->user_id != NULL && rec->variant != NULL) {
		if (write_recommendation_direct(codec, rec, v1, framing, out) == 0)
			return 0;
		/* a missing item id, or out of memory: the generic write says which */
	}
	avro_value_t *value = v1 ? &codec->v1_encode_value : &codec->encode_value[REC_RECOMMENDATION];
	avro_value_t items, item;
	int rc;

	avro_value_reset(value);
	rc = set_borrowed_string(value, RE_USER_ID, rec->user_id);
	rc = rc ? rc : set_borrowed_string(value, RE_VARIANT, rec->variant);
	rc = rc ? rc : set_long(value, RE_MODEL_STEP, rec->model_step);
	rc = rc ? rc : set_long(value, RE_GENERATED_AT, rec->generated_at_ms);
	rc = rc ? rc : set_long(value, RE_TRIGGER_TS, rec->trigger_event_ts_ms);
	rc = rc ? rc : avro_value_get_by_index(value, RE_ITEMS, &items, NULL);
	for (size_t i = 0; rc == 0 && i < rec->item_count; i++) {
		const struct scored_item *si = &rec->items[i];
		avro_value_t score;
		rc = avro_value_append(&items, &item, NULL);
		rc = rc ? rc : set_borrowed_string(&item, SI_ITEM_ID, si->item_id);
		rc = rc ? rc : avro_value_get_by_index(&item, SI_SCORE, &score, NULL);
		rc = rc ? rc : avro_value_set_float(&score, si->score);
		if (v1)
			continue; /* version 1 has no explanations */
		rc = rc ? rc : set_optional_borrowed(&item, SI_REASON, si->reason);
		rc = rc ? rc : set_optional_borrowed(&item, SI_BECAUSE_ITEM, si->because_item);
	}
	if (!v1)
		rc = rc ? rc
			: set_borrowed_string(value, RE_LIST_ID, rec->list_id ? rec->list_id : "");
	if (rc != 0) {
		set_errstr(errstr, errstr_size, "recommendation for %s: missing or invalid field",
			   rec->user_id ? rec->user_id : "(null user)");
		return -1;
	}
	return write_framed(codec, value, codec->config.recommendation_schema_id, framing, out,
			    errstr, errstr_size);
}

int codec_encode_user_event(struct codec *codec, const struct user_event *event,
			    enum codec_framing framing, struct codec_buf *out, char *errstr,
			    size_t errstr_size)
{
	avro_value_t *value = &codec->encode_value[REC_USER_EVENT];
	avro_value_t field, branch;
	int rc;

	if ((unsigned)event->type >= EVENT_TYPE_COUNT) {
		set_errstr(errstr, errstr_size, "event %s: type %d out of range", event->event_id,
			   (int)event->type);
		return -1;
	}
	avro_value_reset(value);
	rc = set_borrowed_string(value, UE_EVENT_ID, event->event_id);
	rc = rc ? rc : set_borrowed_string(value, UE_USER_ID, event->user_id);
	rc = rc ? rc : set_borrowed_string(value, UE_ITEM_ID, event->item_id);
	rc = rc ? rc : avro_value_get_by_index(value, UE_TYPE, &field, NULL);
	rc = rc ? rc : avro_value_set_enum(&field, (int)event->type);
	rc = rc ? rc : set_long(value, UE_TS, event->ts_ms);
	rc = rc ? rc : set_optional(value, UE_SESSION_ID, event->has_session_id, &branch);
	if (rc == 0 && event->has_session_id)
		rc = avro_value_set_string(&branch, event->session_id);
	rc = rc ? rc : set_optional(value, UE_QUANTITY, event->has_quantity, &branch);
	if (rc == 0 && event->has_quantity)
		rc = avro_value_set_int(&branch, event->quantity);
	rc = rc ? rc : set_optional(value, UE_PRICE, event->has_price, &branch);
	if (rc == 0 && event->has_price)
		rc = avro_value_set_double(&branch, event->price);
	rc = rc ? rc : set_optional(value, UE_LIST_ID, event->has_list_id, &branch);
	if (rc == 0 && event->has_list_id)
		rc = avro_value_set_string(&branch, event->list_id);
	rc = rc ? rc : set_optional(value, UE_SEARCH, event->has_search, &branch);
	if (rc == 0 && event->has_search) {
		avro_value_t part, inner, element;
		rc = avro_value_get_by_name(&branch, "text", &part, NULL);
		rc = rc ? rc
			: avro_value_set_branch(&part, event->search_text != NULL ? 1 : 0, &inner);
		if (rc == 0)
			rc = event->search_text != NULL ? avro_value_set_string(&inner, event->search_text)
						       : avro_value_set_null(&inner);
		rc = rc ? rc : avro_value_get_by_name(&branch, "content", &part, NULL);
		rc = rc ? rc
			: avro_value_set_branch(&part, event->search_vector != NULL ? 1 : 0, &inner);
		if (rc == 0 && event->search_vector == NULL)
			rc = avro_value_set_null(&inner);
		else if (rc == 0) {
			avro_value_t field_value_;
			rc = avro_value_get_by_name(&inner, "model", &field_value_, NULL);
			rc = rc ? rc : avro_value_set_string(&field_value_, event->search_model);
			rc = rc ? rc : avro_value_get_by_name(&inner, "dim", &field_value_, NULL);
			rc = rc ? rc : avro_value_set_int(&field_value_, (int32_t)event->search_dim);
			rc = rc ? rc : avro_value_get_by_name(&inner, "vector", &field_value_, NULL);
			for (uint32_t i = 0; rc == 0 && i < event->search_dim; i++) {
				rc = avro_value_append(&field_value_, &element, NULL);
				rc = rc ? rc : avro_value_set_float(&element, event->search_vector[i]);
			}
		}
	}
	if (rc != 0) {
		set_errstr(errstr, errstr_size, "event %s: cannot set fields: %s", event->event_id,
			   avro_strerror());
		return -1;
	}
	return write_framed(codec, value, codec->config.user_event_schema_id, framing, out, errstr,
			    errstr_size);
}

int codec_encode_item_event(struct codec *codec, const struct item_event *event,
			    enum codec_framing framing, struct codec_buf *out, char *errstr,
			    size_t errstr_size)
{
	avro_value_t *value = &codec->encode_value[REC_ITEM_EVENT];
	avro_value_t field, branch;
	int rc;

	avro_value_reset(value);
	rc = set_borrowed_string(value, IE_ITEM_ID, event->item_id);
	rc = rc ? rc : set_optional(value, IE_CATEGORY, event->has_category, &branch);
	if (rc == 0 && event->has_category)
		rc = avro_value_set_string(&branch, event->category);
	rc = rc ? rc : set_optional(value, IE_PRICE, event->has_price, &branch);
	if (rc == 0 && event->has_price)
		rc = avro_value_set_double(&branch, event->price);
	rc = rc ? rc : avro_value_get_by_index(value, IE_IN_STOCK, &field, NULL);
	rc = rc ? rc : avro_value_set_boolean(&field, event->in_stock);
	rc = rc ? rc : set_long(value, IE_TS, event->ts_ms);
	rc = rc ? rc : set_optional(value, IE_TITLE, event->title != NULL, &branch);
	if (rc == 0 && event->title != NULL)
		rc = avro_value_set_string(&branch, event->title);
	rc = rc ? rc : set_optional(value, IE_DESCRIPTION, event->description != NULL, &branch);
	if (rc == 0 && event->description != NULL)
		rc = avro_value_set_string(&branch, event->description);
	rc = rc ? rc : set_optional(value, IE_CONTENT, event->has_content, &branch);
	if (rc == 0 && event->has_content) {
		avro_value_t part, element;
		rc = avro_value_get_by_name(&branch, "model", &part, NULL);
		rc = rc ? rc : avro_value_set_string(&part, event->content_model);
		rc = rc ? rc : avro_value_get_by_name(&branch, "dim", &part, NULL);
		rc = rc ? rc : avro_value_set_int(&part, (int32_t)event->content_dim);
		rc = rc ? rc : avro_value_get_by_name(&branch, "vector", &part, NULL);
		for (uint32_t i = 0; rc == 0 && i < event->content_dim; i++) {
			rc = avro_value_append(&part, &element, NULL);
			rc = rc ? rc : avro_value_set_float(&element, event->content[i]);
		}
	}
	if (rc != 0) {
		set_errstr(errstr, errstr_size, "item %s: cannot set fields: %s", event->item_id,
			   avro_strerror());
		return -1;
	}
	return write_framed(codec, value, codec->config.item_event_schema_id, framing, out, errstr,
			    errstr_size);
}
