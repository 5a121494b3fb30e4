#include "event.h"

#include <string.h>
#include <strings.h>

static const char *const symbols[EVENT_TYPE_COUNT] = {
    "IMPRESSION", "VIEW", "CLICK", "ADD_TO_CART", "REMOVE_FROM_CART", "FAVORITE", "PURCHASE",
};

static const char *const keys[EVENT_TYPE_COUNT] = {
    "impression", "view", "click", "add_to_cart", "remove_from_cart", "favorite", "purchase",
};

const char *event_type_name(enum event_type type)
{
	return (unsigned)type < EVENT_TYPE_COUNT ? symbols[type] : NULL;
}

const char *event_type_key(enum event_type type)
{
	return (unsigned)type < EVENT_TYPE_COUNT ? keys[type] : NULL;
}

bool event_type_from_name(const char *name, enum event_type *type)
{
	for (int i = 0; i < EVENT_TYPE_COUNT; i++)
		if (strcmp(name, symbols[i]) == 0) {
			*type = (enum event_type)i;
			return true;
		}
	return false;
}

/*
 * Synonyms, normalised (lower case, no '_', '-' or blank), by type. A type's
 * own symbol, normalised, is matched as well.
 */
static const char *const aliases[EVENT_TYPE_COUNT][12] = {
    {"impression", "impressions", "exposure", "show", "shown", "display", NULL},
    {"view", "views", "pv", "pageview", "detail", "detailview", "productview", "visit", NULL},
    {"click", "clicks", "clk", "tap", NULL},
    {"addtocart", "cart", "addtobasket", "basket", "addtobag", "carts", NULL},
    {"removefromcart", "removefrombasket", "remove", "removefrombag", NULL},
    {"favorite", "favourite", "fav", "like", "wishlist", "addtowishlist", "save", "bookmark",
     NULL},
    {"purchase", "buy", "transaction", "order", "checkout", "conversion", "sale", "bought",
     "purchased", NULL},
};

bool event_normalise_name(const char *name, char *out, size_t size)
{
	size_t n = 0;
	for (const char *p = name; *p != '\0'; p++) {
		if (strchr("_- \t\"'", *p) != NULL)
			continue;
		if (n + 1 >= size)
			return false;
		out[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	}
	out[n] = '\0';
	return true;
}

bool event_type_from_alias(const char *name, enum event_type *type)
{
	char key[64];
	if (event_type_from_any(name, type))
		return true;
	if (!event_normalise_name(name, key, sizeof key))
		return false;
	for (int i = 0; i < EVENT_TYPE_COUNT; i++)
		for (size_t a = 0; aliases[i][a] != NULL; a++)
			if (strcmp(key, aliases[i][a]) == 0) {
				*type = (enum event_type)i;
				return true;
			}
	return false;
}

bool event_type_from_any(const char *name, enum event_type *type)
{
	for (int i = 0; i < EVENT_TYPE_COUNT; i++)
		if (strcasecmp(name, symbols[i]) == 0) {
			*type = (enum event_type)i;
			return true;
		}
	return false;
}
