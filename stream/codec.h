/*
 * codec: Avro encoding and decoding of streamrec's public records.
 *
 * Reads UserEvent and ItemEvent, writes Recommendation (and the reverse of
 * each, for producers, tools and tests), in two framings: raw Avro binary
 * and Confluent's (magic byte 0, 4-byte big-endian schema id, Avro body).
 *
 * Writer schemas that differ from ours are resolved field by field, by
 * name, following the Avro specification's resolution rules: fields the
 * writer has and we lack are skipped, fields we have and the writer lacks
 * take our default, enums map by symbol name, int/long/float promote to
 * wider numbers, and a union on either side is resolved by its branch.
 *
 * Every bad input yields a named reason (enum codec_reason) and a detail
 * line; nothing a producer can send crashes the decoder or makes it
 * allocate more than a small multiple of the message's size.
 *
 * Writer schemas by id come from codec_register_schema() (files, tests) or,
 * on a miss, from a schema source (codec_set_schema_source(), normally a
 * schema registry: registry_codec_source() in registry.h). A decode whose id
 * the source cannot answer for now fails with CODEC_ERR_SCHEMA_UNAVAILABLE:
 * that is not invalid input but "retry later" (codec_reason_is_retriable()):
 * the caller keeps the message (pauses its partition and tries again), it
 * never dead-letters it. The source is called on the decoding thread and may
 * block (registry.h bounds that).
 */
#ifndef STREAMREC_CODEC_H
#define STREAMREC_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

/** Longest user, item, event, session or category id, in bytes of UTF-8. */
#define CODEC_ID_MAX_BYTES 256

/** Default bound on how far in the future an event time may lie. */
#define CODEC_DEFAULT_MAX_FUTURE_MS (24LL * 3600 * 1000)

/** Longest title, description or search text, in bytes of UTF-8. */
#define CODEC_TEXT_MAX_BYTES 65536

/** Largest content vector dimension the codec accepts. */
#define CODEC_CONTENT_MAX_DIM 4096

/** One user-behaviour event, decoded and validated. */
struct user_event {
	char event_id[CODEC_ID_MAX_BYTES + 1];
	char user_id[CODEC_ID_MAX_BYTES + 1];
	char item_id[CODEC_ID_MAX_BYTES + 1];
	enum event_type type;
	int64_t ts_ms;
	bool has_session_id;
	char session_id[CODEC_ID_MAX_BYTES + 1];
	bool has_quantity;
	int32_t quantity;
	bool has_price;
	double price;
	/** The list the event came from (the list_id of a Recommendation), when
	 * the producer sent one; an empty string counts as none. */
	bool has_list_id;
	char list_id[CODEC_ID_MAX_BYTES + 1];
	/**
	 * A search (UserEvent.search): item_id may then be empty and type is
	 * not an action. search_text (UTF-8, search_text_len bytes, NUL-terminated
	 * when encoding) and search_vector (search_dim finite floats, by model
	 * search_model) are borrowed like item_event's text; at least one is set.
	 */
	bool has_search;
	const char *search_text;
	size_t search_text_len;
	const float *search_vector;
	uint32_t search_dim;
	char search_model[CODEC_ID_MAX_BYTES + 1];
};

/**
 * One catalogue update, decoded and validated. title, description and
 * content are borrowed: after codec_decode_item_event() they belong to the
 * codec and stay valid until its next decode; for encoding, to the caller
 * (NULL: absent).
 */
struct item_event {
	char item_id[CODEC_ID_MAX_BYTES + 1];
	bool has_category;
	char category[CODEC_ID_MAX_BYTES + 1];
	bool has_price;
	double price;
	bool in_stock;
	int64_t ts_ms;
	/** UTF-8 of title_len bytes (NUL-terminated when encoding); NULL: none. */
	const char *title, *description;
	size_t title_len, description_len;
	/** The content embedding (ContentVector): checked to hold content_dim
	 * finite numbers, content_dim 1..CODEC_CONTENT_MAX_DIM. */
	bool has_content;
	char content_model[CODEC_ID_MAX_BYTES + 1];
	uint32_t content_dim;
	const float *content;
};

struct scored_item {
	const char *item_id;
	float score;
	/** Why it is listed (the schema's reason: "taste", "covis", ...), NULL: not explained. */
	const char *reason;
	/** The recent item behind the reason, NULL: none. */
	const char *because_item;
};

/**
 * A user's top-k list. The strings are borrowed: for encoding they belong
 * to the caller; after codec_decode_recommendation() they belong to the
 * codec and stay valid until its next decode of a recommendation.
 */
struct recommendation {
	const char *user_id;
	const char *variant;
	int64_t model_step;
	int64_t generated_at_ms;
	int64_t trigger_event_ts_ms;
	size_t item_count;
	const struct scored_item *items;
	/** The list's id; NULL encodes as "" (decoded: "" when the writer had none). */
	const char *list_id;
};

enum codec_framing {
	/** Decode: a leading 0 byte means Confluent, anything else raw. */
	CODEC_FRAMING_AUTO = 0,
	CODEC_FRAMING_RAW,
	CODEC_FRAMING_CONFLUENT,
};

/** Why a message was refused. Names are stable: they label metrics and DLQ headers. */
enum codec_reason {
	CODEC_OK = 0,
	CODEC_ERR_EMPTY,           /**< "empty": no bytes at all */
	CODEC_ERR_TRUNCATED,       /**< "truncated": the body ends before the record does */
	CODEC_ERR_BAD_MAGIC,       /**< "bad_magic": Confluent framing expected, first byte not 0 */
	CODEC_ERR_UNKNOWN_SCHEMA,  /**< "unknown_schema_id": id not registered */
	CODEC_ERR_SCHEMA_MISMATCH, /**< "schema_mismatch": writer schema is another record or a
				      value cannot be resolved */
	CODEC_ERR_TRAILING_BYTES,  /**< "trailing_bytes": bytes left over after the record */
	CODEC_ERR_MALFORMED, /**< "malformed": invalid Avro (bad varint, negative length, bad union
				branch) */
	CODEC_ERR_INVALID_ENUM,  /**< "invalid_enum": enum index out of range or symbol unknown to
				    the reader */
	CODEC_ERR_EMPTY_ID,      /**< "empty_id": an id is the empty string */
	CODEC_ERR_ID_TOO_LONG,   /**< "id_too_long": an id is longer than CODEC_ID_MAX_BYTES */
	CODEC_ERR_ID_NOT_UTF8,   /**< "id_not_utf8": an id is not valid UTF-8 or holds a NUL */
	CODEC_ERR_NEGATIVE_TS,   /**< "negative_timestamp" */
	CODEC_ERR_FUTURE_TS,     /**< "future_timestamp": beyond now + max_future_ms */
	CODEC_ERR_INVALID_FIELD, /**< "invalid_field": quantity <= 0, price negative or not finite
				  */
	CODEC_ERR_SCHEMA_UNAVAILABLE, /**< "schema_unavailable": the writer schema's id is not
					 known yet and the schema source (the registry) cannot be
					 asked now. NOT invalid input: retry the message later,
					 never dead-letter it (codec_reason_is_retriable()). */
	CODEC_REASON_COUNT
};

struct codec_error {
	enum codec_reason reason;
	char detail[256];
};

struct codec_config {
	/** How incoming messages are framed. */
	enum codec_framing framing;
	/** Event times later than now + this are refused; 0 means the default. */
	int64_t max_future_ms;
	/** Schema id written in Confluent-framed Recommendation records. */
	int32_t recommendation_schema_id;
	/** Schema id written in Confluent-framed UserEvent records. */
	int32_t user_event_schema_id;
	/** Schema id written in Confluent-framed ItemEvent records. */
	int32_t item_event_schema_id;
	/** Version of the Recommendation schema written: 0 or 2, the current
	 * one; 1, version 1 (schemas/history: no list_id, no explanations, which
	 * are then dropped), for readers of raw framing not yet upgraded. */
	int recommendation_version;
	/** Read every UserEvent through Avro C's generic reader, never the
	 * direct one (tests compare the two; benchmarks time both). */
	bool no_direct_read;
	/** Write every Recommendation through Avro C's generic writer, never
	 * the direct one (tests compare the two; benchmarks time both). */
	bool no_direct_write;
};

struct codec;

/** What a schema source answers for an id. */
enum codec_schema_lookup {
	CODEC_SCHEMA_FOUND = 0,   /**< *schema_json is the writer schema */
	CODEC_SCHEMA_UNKNOWN,     /**< the source knows for sure the id has no usable schema:
				     the message is invalid ("unknown_schema_id") */
	CODEC_SCHEMA_UNAVAILABLE, /**< cannot tell now (registry unreachable...): retry later
				     ("schema_unavailable") */
	CODEC_SCHEMA_REFUSED,     /**< the id has a schema, but not one the codec reads (a JSON
				     or Protobuf schema): "schema_mismatch" */
};

/**
 * Looks up the writer schema of a Confluent schema id the codec does not
 * have. On CODEC_SCHEMA_FOUND, *schema_json is borrowed (the codec parses it
 * before returning); otherwise detail says why.
 */
typedef enum codec_schema_lookup (*codec_schema_source_fn)(void *opaque, int32_t schema_id,
							   const char **schema_json, char *detail,
							   size_t detail_size);

/**
 * @brief Create a codec with streamrec's reader schemas.
 * @returns the codec, or NULL with errstr filled.
 */
struct codec *codec_new(const struct codec_config *config, char *errstr, size_t errstr_size);

void codec_free(struct codec *codec);

/**
 * @brief Register a writer schema under a Confluent schema id.
 *
 * The schema must be a UserEvent, ItemEvent or Recommendation record
 * (matched by full name) that resolves against ours; otherwise it is
 * refused here, once, rather than on every message.
 * @returns 0, or -1 with errstr filled.
 */
int codec_register_schema(struct codec *codec, int32_t schema_id, const char *schema_json,
			  char *errstr, size_t errstr_size);

/**
 * @brief Set (or with source NULL, remove) the source asked for unknown
 * schema ids. opaque is borrowed: it must outlive the codec or the next
 * call here. A schema the source returns is registered as by
 * codec_register_schema(); one that is refused there is remembered as
 * refused, and its messages fail with "schema_mismatch" without asking again.
 */
void codec_set_schema_source(struct codec *codec, codec_schema_source_fn source, void *opaque);

/**
 * @brief Set the schema id written in Confluent-framed records of a record
 * type ("UserEvent", "ItemEvent", "Recommendation"): the id the registry
 * returned when the schema was registered (registry_register()). Also
 * registers our own schema under that id for decoding.
 * @returns 0, or -1 with errstr filled (unknown record name).
 */
int codec_set_writer_schema_id(struct codec *codec, const char *record_name, int32_t schema_id,
			       char *errstr, size_t errstr_size);

/**
 * @brief Register every `<id>.avsc` file in a directory (see codec_register_schema).
 * @returns the number of schemas registered, or -1 with errstr naming the file.
 */
int codec_register_schema_dir(struct codec *codec, const char *dir, char *errstr,
			      size_t errstr_size);

/**
 * @brief Set the writer schema assumed for raw (unframed) messages of its record type.
 * By default raw messages are assumed to be written with our own schema.
 * @returns 0, or -1 with errstr filled.
 */
int codec_set_raw_writer_schema(struct codec *codec, const char *schema_json, char *errstr,
				size_t errstr_size);

/**
 * @brief Decode and validate one UserEvent message.
 * @param now_ms wall-clock time, for the future-timestamp check.
 * @returns 0, or -1 with err filled (out is then unspecified).
 */
int codec_decode_user_event(struct codec *codec, const void *buf, size_t len, int64_t now_ms,
			    struct user_event *out, struct codec_error *err);

/**
 * @brief How many UserEvents codec read directly (in place, without Avro C's
 * generic value: a writer laid out as our reader, no search, every field
 * valid); the rest took the generic read. Both accept the same messages.
 */
size_t codec_direct_reads(const struct codec *codec);

/** @brief Decode and validate one ItemEvent message (not a tombstone). */
int codec_decode_item_event(struct codec *codec, const void *buf, size_t len, int64_t now_ms,
			    struct item_event *out, struct codec_error *err);

/** @brief Decode one Recommendation message; strings are owned by the codec (see struct
 * recommendation). */
int codec_decode_recommendation(struct codec *codec, const void *buf, size_t len,
				struct recommendation *out, struct codec_error *err);

/** A growable output buffer; free it with codec_buf_free(). */
struct codec_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

void codec_buf_free(struct codec_buf *buf);

/**
 * @brief Encode a Recommendation in the given framing (AUTO means raw).
 * Replaces the buffer's contents.
 * @returns 0, or -1 with errstr filled.
 */
int codec_encode_recommendation(struct codec *codec, const struct recommendation *rec,
				enum codec_framing framing, struct codec_buf *out, char *errstr,
				size_t errstr_size);

/** @brief Encode a UserEvent in the given framing (AUTO means raw). */
int codec_encode_user_event(struct codec *codec, const struct user_event *event,
			    enum codec_framing framing, struct codec_buf *out, char *errstr,
			    size_t errstr_size);

/** @brief Encode an ItemEvent in the given framing (AUTO means raw). */
int codec_encode_item_event(struct codec *codec, const struct item_event *event,
			    enum codec_framing framing, struct codec_buf *out, char *errstr,
			    size_t errstr_size);

/** @returns the stable snake_case name of a reason ("truncated", ...). */
const char *codec_reason_name(enum codec_reason reason);

/**
 * @returns true when a message refused for reason should be retried later
 * rather than treated as invalid (today only CODEC_ERR_SCHEMA_UNAVAILABLE).
 */
bool codec_reason_is_retriable(enum codec_reason reason);

/** @returns true when [s, s+len) is well-formed UTF-8 with no NUL byte. */
bool codec_utf8_valid(const char *s, size_t len);

/** @returns the reader schema text of a record ("UserEvent", "ItemEvent", "Recommendation"), or
 * NULL. */
const char *codec_schema_json(const char *record_name);

/**
 * @returns the schema text the codec writes records of record_name with
 * (codec_config.recommendation_version), or NULL for an unknown name.
 */
const char *codec_writer_schema_json(const struct codec *codec, const char *record_name);

#endif
