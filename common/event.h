/*
 * event: the user-behaviour event types, shared by the codec (stream/), the
 * model (model/), the metrics and the command-line tools: ONE enum, in the
 * order of the UserEvent schema's EventType symbols, so a decoded event's
 * type is the model's type with no mapping or cast in between.
 */
#ifndef STREAMREC_EVENT_H
#define STREAMREC_EVENT_H

#include <stdbool.h>
#include <stddef.h>

/** The schema's EventType symbols, in the schema's order (the Avro enum index). */
enum event_type {
	EVENT_IMPRESSION = 0,
	EVENT_VIEW,
	EVENT_CLICK,
	EVENT_ADD_TO_CART,
	EVENT_REMOVE_FROM_CART,
	EVENT_FAVORITE,
	EVENT_PURCHASE,
	EVENT_TYPE_COUNT
};

/**
 * Event files only (stream/eventlog, the prequential replay): a search,
 * not a UserEvent type (a UserEvent search is its `search` field). Its item
 * is the query's id, whose vector a content file gives. Written "SEARCH".
 */
#define EVENT_SEARCH      100
#define EVENT_SEARCH_NAME "SEARCH"

/** @returns the schema symbol ("PURCHASE"), or NULL when out of range. */
const char *event_type_name(enum event_type type);

/** @returns the lower-case key ("purchase": config keys, metric labels), or NULL. */
const char *event_type_key(enum event_type type);

/** @brief Look up a schema symbol ("PURCHASE"). @returns true when found. */
bool event_type_from_name(const char *name, enum event_type *type);

/** @brief Look up a symbol or key, case-insensitively ("purchase", "Purchase"). */
bool event_type_from_any(const char *name, enum event_type *type);

/**
 * @brief Look up an event type as other systems' logs name it, for reading
 * their files: a symbol or key, or a common synonym (Retailrocket's
 * addtocart and transaction, Taobao's pv, cart, fav and buy, REES46's cart
 * and remove_from_cart, order, like, wishlist, ...), case, '_', '-' and
 * blanks ignored. The list: event.c. @returns true when known.
 */
bool event_type_from_alias(const char *name, enum event_type *type);

/**
 * @brief Normalise a name as other systems' files spell it (a CSV header's
 * column, a type's synonym): lower case, without '_', '-', blanks and
 * quotes, into out (size bytes). @returns false when it does not fit.
 */
bool event_normalise_name(const char *name, char *out, size_t size);

#endif
