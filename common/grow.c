#include "grow.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int grow_array(void *array, size_t *capacity, size_t needed, size_t size, size_t initial)
{
	void **slot = array;
	if (needed <= *capacity)
		return 0;
	size_t cap = *capacity ? *capacity : (initial ? initial : 16);
	while (cap < needed) {
		if (cap > SIZE_MAX / 2)
			return -1;
		cap *= 2;
	}
	if (cap > SIZE_MAX / size)
		return -1;
	void *grown = realloc(*slot, cap * size);
	if (grown == NULL)
		return -1;
	memset((char *)grown + *capacity * size, 0, (cap - *capacity) * size);
	*slot = grown;
	*capacity = cap;
	return 0;
}

int grow_scratch(void *array, size_t *capacity, size_t needed, size_t size)
{
	void **slot = array;
	if (needed <= *capacity)
		return 0;
	if (needed > SIZE_MAX / size)
		return -1;
	void *grown = malloc(needed * size);
	if (grown == NULL)
		return -1;
	free(*slot);
	*slot = grown;
	*capacity = needed;
	return 0;
}
