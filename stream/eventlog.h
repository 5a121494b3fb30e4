/*
 * eventlog: a compact in-memory log of user-behaviour events, for offline
 * replay (evaluation, benchmarks, warm starts) of millions of events.
 *
 * An event costs 17 bytes (user index, item index, type, time) instead of
 * the ~1 KB of a struct user_event: the external user and item ids are
 * interned once each, in first-seen order, and events refer to them by a
 * dense 32-bit index.
 *
 * Readers fill a log from streamrec's CSV, an Avro object container file of
 * UserEvent records, four public datasets (MovieLens, MovieTweetings,
 * Retailrocket, Taobao UserBehavior) and a generic `user,item,ts[,type]`
 * CSV; writers produce streamrec's CSV and Avro. Readers keep the file's
 * order; eventlog_sort_by_time() puts events in time order.
 */
#ifndef STREAMREC_EVENTLOG_H
#define STREAMREC_EVENTLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

/** "None" in item_category and user_cluster; also the limit on ids of each kind. */
#define EVENTLOG_NONE UINT32_MAX

/** The file formats eventlog_read() understands. */
enum eventlog_format {
	/** Decide from the file (see eventlog_read()). */
	EVENTLOG_AUTO = 0,
	/** streamrec CSV: header `ts_ms,user_id,item_id,type[,category]`. */
	EVENTLOG_CSV,
	/** Avro object container file of UserEvent records. */
	EVENTLOG_AVRO,
	/** MovieLens ratings: u.data (tabs), ratings.dat (`::`) or ratings.csv (with header). */
	EVENTLOG_MOVIELENS,
	/** Retailrocket events.csv: `timestamp,visitorid,event,itemid,transactionid`. */
	EVENTLOG_RETAILROCKET,
	/** Taobao UserBehavior.csv: `user_id,item_id,category_id,behavior_type,timestamp`, no
	   header. */
	EVENTLOG_TAOBAO,
	/** MovieTweetings ratings.dat: `user_id::movie_id::rating::rating_timestamp`, 0-10. */
	EVENTLOG_MOVIETWEETINGS,
	/** Generic CSV `user,item,ts[,type]`, header optional, ts in s or ms. */
	EVENTLOG_GENERIC,
	EVENTLOG_FORMAT_COUNT
};

/**
 * The log. A plain data struct: read its public fields freely, change them
 * only through the eventlog_* functions (they keep the private tail and the
 * arrays' capacities consistent).
 */
struct event_log {
	size_t count;    /**< events */
	uint32_t *user;  /**< per event: index into user_ids */
	uint32_t *item;  /**< per event: index into item_ids */
	uint8_t *type;   /**< per event: enum event_type */
	int64_t *ts_ms;  /**< per event: event time, ms since the epoch */
	char **user_ids; /**< interned external ids, dense 0..user_count-1 in first-seen order */
	size_t user_count;
	char **item_ids; /**< likewise for items */
	size_t item_count;
	/** per item: category, EVENTLOG_NONE when unknown; NULL when the source has none */
	uint32_t *item_category;
	/** per user: planted main cluster (synthetic data only); NULL when unknown */
	uint32_t *user_cluster;
	/** the format the events were read in (AUTO resolved); EVENTLOG_AUTO for a built log */
	enum eventlog_format format;
	/** ratings below this were dropped; NAN when the source has no ratings */
	double min_rating;

	/* private: maintained by eventlog.c */
	size_t event_cap, user_cap, item_cap;
	uint64_t *user_slots, *item_slots; /* open-addressing id -> index tables */
	size_t user_slot_mask, item_slot_mask;
	struct eventlog_chunk *strings; /* the interned ids' bytes */
};

struct eventlog_read_options {
	/** Default EVENTLOG_AUTO. */
	enum eventlog_format format;
	/**
	 * Rating formats (MovieLens, MovieTweetings) have no behaviours, only
	 * ratings: ratings below min_rating are dropped, and a kept rating is one
	 * positive implicit event of type rating_type. NAN (the default) means
	 * the format's own default_min_rating (eventlog_rating_scale()). A value
	 * outside the format's scale, or any value for a format without
	 * ratings, is an error: a threshold meant for a 1-5 scale must not
	 * silently filter a 0-10 one.
	 */
	double min_rating;
	/**
	 * Type of a kept rating (default EVENT_PURCHASE: a rated film was
	 * watched, and the default "exclude bought items" filter then keeps
	 * films the user has already seen out of their list, as the usual
	 * MovieLens evaluation does).
	 */
	enum event_type rating_type;
	/** Stop after this many events (kept events, after dropping); 0 reads all. */
	size_t max_events;
};

/**
 * The scale of a rating format, and the threshold that makes a rating a
 * positive event when none is given.
 */
struct eventlog_rating_scale {
	double min, max;           /**< every rating in a file lies in [min, max] */
	double default_min_rating; /**< ratings >= this are kept by default */
	const char *label;         /**< display name ("MovieLens") */
	const char *why;           /**< one line: why that default */
};

/**
 * @brief The rating scale of a format.
 *
 * - MovieLens: 0.5 to 5 (ml-100k and ml-1m use whole stars 1-5, ml-latest
 *   half stars), default >= 4: "liked", the usual implicit-feedback
 *   conversion of MovieLens in the literature.
 * - MovieTweetings: 0 to 10 (whole numbers, from IMDb's 10-star widget),
 *   default >= 8: the same point of the scale as 4 of 5 (4/5 = 8/10).
 *   Tweeted ratings lean high, so a lower threshold would also keep the
 *   6s and 7s of films merely watched; a higher one keeps too few users.
 * @returns true and fills *scale when the format holds ratings; false for
 * every other format (and AUTO, which is not decided yet).
 */
bool eventlog_rating_scale(enum eventlog_format format, struct eventlog_rating_scale *scale);

/** @returns the default read options (also what a NULL options pointer means). */
struct eventlog_read_options eventlog_read_options_default(void);

/** @returns the format's name ("auto", "csv", "avro", "movielens", "retailrocket", "taobao",
 * "movietweetings", "generic"), or NULL. */
const char *eventlog_format_name(enum eventlog_format format);

/** @returns true and sets *format when name is one of the names above. */
bool eventlog_format_from_name(const char *name, enum eventlog_format *format);

/** @returns every format name joined by '|' ("auto|csv|...|generic"), for usage and errors. */
const char *eventlog_format_names(void);

/**
 * @brief Create an empty log (no categories, no clusters).
 * @returns the log, or NULL when out of memory.
 */
struct event_log *eventlog_new(void);

/** @brief Free a log and every id it holds; NULL is allowed. */
void eventlog_free(struct event_log *log);

/**
 * @brief The XXH3 hash of every user and item id of the log (what a model
 * seeds a new vector from, as the daemon does from the id), indexed like
 * the log's ids, in two new arrays the caller frees.
 * @returns 0, or -1 when out of memory (then nothing is allocated).
 */
int eventlog_id_hashes(const struct event_log *log, uint64_t **user_hash, uint64_t **item_hash);

/**
 * @brief Make room for `events` events in total, so that appending up to
 * that many never reallocates.
 * @returns 0, or -1 with errstr filled.
 */
int eventlog_reserve(struct event_log *log, size_t events, char *errstr, size_t errstr_size);

/**
 * @brief Find or add a user id; new ids get the next dense index.
 *
 * An id must be 1 to CODEC_ID_MAX_BYTES bytes of valid UTF-8 without NUL,
 * as in the UserEvent schema, so that every log can be written as Avro.
 * @returns 0 with *index set, or -1 with errstr filled (bad id, too many ids, out of memory).
 */
int eventlog_intern_user(struct event_log *log, const char *id, size_t id_len, uint32_t *index,
			 char *errstr, size_t errstr_size);

/** @brief Find or add an item id (see eventlog_intern_user()). */
int eventlog_intern_item(struct event_log *log, const char *id, size_t id_len, uint32_t *index,
			 char *errstr, size_t errstr_size);

/**
 * @brief Append one event, interning its ids.
 * @returns 0, or -1 with errstr filled (bad id, type out of range, out of memory).
 */
int eventlog_append(struct event_log *log, const char *user_id, const char *item_id,
		    enum event_type type, int64_t ts_ms, char *errstr, size_t errstr_size);

/**
 * @brief Append one event by already interned indexes.
 * @returns 0, or -1 with errstr filled (index or type out of range, out of memory).
 */
int eventlog_append_indexed(struct event_log *log, uint32_t user, uint32_t item,
			    enum event_type type, int64_t ts_ms, char *errstr, size_t errstr_size);

/**
 * @brief Set an item's category; allocates item_category on first use, with
 * EVENTLOG_NONE for every other item. Categories are numbers below EVENTLOG_NONE.
 * @returns 0, or -1 with errstr filled.
 */
int eventlog_set_item_category(struct event_log *log, uint32_t item, uint32_t category,
			       char *errstr, size_t errstr_size);

/** @brief Set a user's planted cluster; allocates user_cluster like eventlog_set_item_category().
 */
int eventlog_set_user_cluster(struct event_log *log, uint32_t user, uint32_t cluster, char *errstr,
			      size_t errstr_size);

/**
 * @brief Sort the events by time, stably: events with equal ts_ms keep
 * their relative order (for a freshly read log, the file's order), so a
 * replay is the same on every run. Ids and their indexes do not change.
 * Linear time (radix sort); a log already in order is only checked.
 * @returns 0, or -1 with errstr filled (out of memory).
 */
int eventlog_sort_by_time(struct event_log *log, char *errstr, size_t errstr_size);

/** @returns true when ts_ms never decreases along the log. */
bool eventlog_is_sorted(const struct event_log *log);

/**
 * @brief Read a file into a new log, in the file's order (not sorted).
 *
 * Formats and their event types:
 * - EVENTLOG_CSV: header `ts_ms,user_id,item_id,type` or
 *   `ts_ms,user_id,item_id,type,category` (mandatory), then one event a
 *   line; type is a UserEvent symbol (VIEW, PURCHASE, ...); category is a
 *   number below 2^32-1 or empty. No quoting.
 * - EVENTLOG_AVRO: an object container file (any codec Avro C was built
 *   with; Debian's has null, deflate, snappy and lzma) whose
 *   writer schema is a record with fields user_id and item_id (string),
 *   type (enum, mapped to ours by symbol name, or string) and ts (long or
 *   int); other fields are skipped. Resolution is by field name against the
 *   file's own writer schema.
 * - EVENTLOG_MOVIELENS: u.data `user<TAB>item<TAB>rating<TAB>seconds`,
 *   ratings.dat `user::item::rating::seconds`, or ratings.csv with header
 *   `userId,movieId,rating,timestamp`; the flavour is told by the first
 *   line. Ratings below min_rating are dropped; the others become
 *   rating_type events. Times are seconds, stored as ms.
 * - EVENTLOG_MOVIETWEETINGS: ratings.dat `user_id::movie_id::rating::rating_timestamp`
 *   (movie_id an IMDb number, 7 digits with leading zeros), ratings 0-10,
 *   kept like MovieLens; timestamps are seconds.
 * - EVENTLOG_RETAILROCKET: header `timestamp,visitorid,event,itemid,transactionid`
 *   (mandatory); event view/addtocart/transaction becomes VIEW/ADD_TO_CART/
 *   PURCHASE; timestamp is ms.
 * - EVENTLOG_TAOBAO: `user_id,item_id,category_id,behavior_type,timestamp`,
 *   no header; behaviour pv/cart/fav/buy becomes VIEW/ADD_TO_CART/FAVORITE/
 *   PURCHASE; timestamp is seconds, stored as ms; category_id fills
 *   item_category.
 * - EVENTLOG_GENERIC: `user,item,ts` or `user,item,ts,type`, one event a
 *   line, the same number of fields on every line. An optional header names
 *   the columns: `user` or `user_id`, `item` or `item_id`, `ts` or
 *   `timestamp`, `type` or `event`. ts is a whole number; the first event
 *   decides its unit for the whole file: below 1e11 seconds (1e11 s is the
 *   year 5138), from 1e11 up milliseconds (1e11 ms is March 1973), and a
 *   later ts on the other side of 1e11 is an error (mixed units). type is a
 *   UserEvent symbol or its lower-case key (VIEW or view, add_to_cart,
 *   ...), case-insensitive; without the column every event is VIEW.
 *
 * For every text format: lines may end in CRLF, empty lines are skipped, an
 * item's first category wins, and an empty file holds 0 events unless the
 * format's header is mandatory. A rating outside the format's scale is an
 * error at its line (it is not the format the reader was told or guessed).
 *
 * EVENTLOG_AUTO decides: (1) a file starting with the Avro magic `Obj\x01`,
 * or named *.avro, is Avro; (2) otherwise the first line decides: one of the
 * known headers (streamrec CSV, MovieLens ratings.csv, Retailrocket,
 * generic), else a line with `::` is MovieTweetings when its second field is
 * an IMDb number (7 or more digits with a leading zero; MovieLens ids have
 * none) or its rating is above 5, MovieLens otherwise; a line with a tab is
 * MovieLens; a line of 5 comma-separated fields whose 4th is pv/cart/fav/buy
 * is Taobao; a line of 3 or 4 comma-separated fields whose 3rd is a whole
 * number (and 4th, if any, an event type) is generic, as is a header naming
 * user, item and time columns in any order (README, input formats); (3) an empty file is
 * MovieLens when named u.data or *.dat, Taobao when named UserBehavior*, and
 * an error otherwise. Anything else is an error quoting the first line.
 * A MovieTweetings file guessed as MovieLens stops at its first rating
 * above 5, naming the line and the scale, never filtered on the wrong scale.
 *
 * Errors name the file and line (Avro: record) and what was expected:
 * `ratings.dat:14: expected 4 fields separated by '::', got 3`.
 * @param options NULL for eventlog_read_options_default().
 * @returns 0 with *out set to a new log, which the caller owns (eventlog_free()),
 * or -1 with errstr filled and *out NULL.
 */
int eventlog_read(const char *path, const struct eventlog_read_options *options,
		  struct event_log **out, char *errstr, size_t errstr_size);

/**
 * @brief Write the log as streamrec CSV (header, then one line per event in
 * log order; a category column when item_category is set).
 *
 * Ids holding a comma, CR or LF are refused (the format has no quoting),
 * before anything is written. On failure the file is removed.
 * @returns 0, or -1 with errstr filled.
 */
int eventlog_write_csv(const struct event_log *log, const char *path, char *errstr,
		       size_t errstr_size);

/**
 * @brief Write the log as an Avro object container file of UserEvent
 * records (codec_schema_json("UserEvent")), null codec, in log order.
 *
 * event_id is "e<index>" (the event's position in the log); session_id,
 * quantity and price are null. Categories and clusters are not written
 * (UserEvent has no field for them). The same log always gives the same
 * bytes: the sync marker is derived from the schema, not from the clock.
 * On failure the file is removed.
 * @returns 0, or -1 with errstr filled.
 */
int eventlog_write_avro(const struct event_log *log, const char *path, char *errstr,
			size_t errstr_size);

/** @returns true when the log holds EVENT_SEARCH events (CSV type SEARCH). */
bool eventlog_has_searches(const struct event_log *log);

/** @returns true with *index when the log knows item id (len bytes). */
bool eventlog_find_item(const struct event_log *log, const char *id, size_t len,
			uint32_t *index);

/**
 * Content vectors of a log's items, read from a file of lines
 * `item_id<TAB>f1 f2 ... fn` (what `streamrec embed --passages` and
 * `streamrec gen --content` write): every line has the same n, numbers
 * separated by single spaces or tabs, finite; '#' lines and empty lines
 * are skipped. Items the log does not know are counted and skipped; a later
 * line for an item replaces an earlier one.
 */
struct eventlog_content {
	size_t dim;          /**< n */
	size_t item_count;   /**< the log's items when read: rows of vectors */
	float *vectors;      /**< item_count x dim */
	uint8_t *has;        /**< per item: a vector was read */
	size_t lines;        /**< vector lines read */
	size_t matched;      /**< distinct log items given a vector */
	size_t unknown;      /**< lines naming an item the log does not know */
};

/**
 * @brief Reads a content file for log's items. Errors name the file and
 * line: `content.tsv:3: 383 numbers, the first line had 384`.
 * @returns 0 with out filled (eventlog_content_free()), or -1 with errstr filled.
 */
int eventlog_read_content(const struct event_log *log, const char *path,
			  struct eventlog_content *out, char *errstr, size_t errstr_size);

void eventlog_content_free(struct eventlog_content *content);

#endif
