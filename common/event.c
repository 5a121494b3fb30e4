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

bool event_type_from_any(const char *name, enum event_type *type)
{
	for (int i = 0; i < EVENT_TYPE_COUNT; i++)
		if (strcasecmp(name, symbols[i]) == 0) {
			*type = (enum event_type)i;
			return true;
		}
	return false;
}
