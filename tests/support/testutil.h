/*
 * Helpers shared by streamrec's C tests: building valid events, writing
 * records with an arbitrary writer schema, and Kafka test plumbing.
 */
#ifndef STREAMREC_TESTUTIL_H
#define STREAMREC_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

/** A valid event with the given ids and type, ts 1700000000000, no optionals. */
struct user_event testutil_event(const char *event_id, const char *user_id, const char *item_id,
				 enum event_type type);

/**
 * Writes one record with an arbitrary writer schema. `fields` is a list of
 * "name=value" strings for the record's top-level fields; a value is taken
 * as the field's type: string, long/int (decimal), double/float, boolean
 * (true/false), enum (symbol), or for a ["null", T] union "null" or a T.
 * Returns the encoded length written into out (raw Avro), or -1.
 */
long testutil_write_with_schema(const char *schema_json, const char *const *fields,
				size_t field_count, uint8_t *out, size_t out_size);

/** Milliseconds since the epoch, wall clock. */
int64_t testutil_now_ms(void);

#endif
