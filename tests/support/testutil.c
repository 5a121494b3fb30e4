#include "testutil.h"

#include <avro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct user_event testutil_event(const char *event_id, const char *user_id, const char *item_id,
				 enum event_type type)
{
	struct user_event e;
	memset(&e, 0, sizeof e);
	snprintf(e.event_id, sizeof e.event_id, "%s", event_id);
	snprintf(e.user_id, sizeof e.user_id, "%s", user_id);
	snprintf(e.item_id, sizeof e.item_id, "%s", item_id);
	e.type = type;
	e.ts_ms = 1700000000000LL;
	return e;
}

int64_t testutil_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_scalar(avro_value_t *field, const char *text)
{
	switch (avro_value_get_type(field)) {
	case AVRO_STRING: return avro_value_set_string(field, text);
	case AVRO_INT32: return avro_value_set_int(field, (int32_t)strtol(text, NULL, 10));
	case AVRO_INT64: return avro_value_set_long(field, strtoll(text, NULL, 10));
	case AVRO_FLOAT: return avro_value_set_float(field, strtof(text, NULL));
	case AVRO_DOUBLE: return avro_value_set_double(field, strtod(text, NULL));
	case AVRO_BOOLEAN: return avro_value_set_boolean(field, strcmp(text, "true") == 0);
	case AVRO_ENUM: {
		avro_schema_t s = avro_value_get_schema(field);
		int idx = avro_schema_enum_get_by_name(s, text);
		return idx < 0 ? -1 : avro_value_set_enum(field, idx);
	}
	default: return -1;
	}
}

long testutil_write_with_schema(const char *schema_json, const char *const *fields,
				size_t field_count, uint8_t *out, size_t out_size)
{
	avro_schema_t schema;
	avro_value_iface_t *iface;
	avro_value_t record;
	avro_writer_t writer;
	long written = -1;

	if (avro_schema_from_json_length(schema_json, strlen(schema_json), &schema) != 0) {
		fprintf(stderr, "test schema: %s\n", avro_strerror());
		return -1;
	}
	iface = avro_generic_class_from_schema(schema);
	avro_generic_value_new(iface, &record);
	for (size_t i = 0; i < field_count; i++) {
		char name[64];
		const char *eq = strchr(fields[i], '=');
		avro_value_t field, branch;
		if (eq == NULL || (size_t)(eq - fields[i]) >= sizeof name)
			goto out;
		memcpy(name, fields[i], (size_t)(eq - fields[i]));
		name[eq - fields[i]] = '\0';
		if (avro_value_get_by_name(&record, name, &field, NULL) != 0) {
			fprintf(stderr, "test record: no field %s\n", name);
			goto out;
		}
		if (avro_value_get_type(&field) == AVRO_UNION) {
			if (strcmp(eq + 1, "null") == 0) {
				avro_value_set_branch(&field, 0, &branch);
				avro_value_set_null(&branch);
				continue;
			}
			avro_value_set_branch(&field, 1, &branch);
			field = branch;
		}
		if (set_scalar(&field, eq + 1) != 0) {
			fprintf(stderr, "test record: cannot set %s\n", fields[i]);
			goto out;
		}
	}
	writer = avro_writer_memory((const char *)out, (int64_t)out_size);
	if (avro_value_write(writer, &record) == 0)
		written = (long)avro_writer_tell(writer);
	else
		fprintf(stderr, "test record: %s\n", avro_strerror());
	avro_writer_free(writer);
out:
	avro_value_decref(&record);
	avro_value_iface_decref(iface);
	avro_schema_decref(schema);
	return written;
}
