/* Every bad input gets its own named reason, and none crashes or leaks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "testutil.h"

struct fixture {
	struct codec *raw;       /* framing = raw */
	struct codec *confluent; /* framing = confluent, schema 7 registered */
	struct codec *autodetect;
	struct codec_buf buf;
};

static int setup(void **state)
{
	static struct fixture f;
	char errstr[256];
	struct codec_config raw = {.framing = CODEC_FRAMING_RAW};
	struct codec_config confluent = {.framing = CODEC_FRAMING_CONFLUENT,
					 .user_event_schema_id = 7};
	struct codec_config autodetect = {.framing = CODEC_FRAMING_AUTO, .user_event_schema_id = 7};
	memset(&f, 0, sizeof f);
	f.raw = codec_new(&raw, errstr, sizeof errstr);
	f.confluent = codec_new(&confluent, errstr, sizeof errstr);
	f.autodetect = codec_new(&autodetect, errstr, sizeof errstr);
	assert_non_null(f.raw);
	assert_non_null(f.confluent);
	assert_non_null(f.autodetect);
	assert_int_equal(codec_register_schema(f.confluent, 7, codec_schema_json("UserEvent"),
					       errstr, sizeof errstr),
			 0);
	assert_int_equal(codec_register_schema(f.autodetect, 7, codec_schema_json("UserEvent"),
					       errstr, sizeof errstr),
			 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	codec_free(f->raw);
	codec_free(f->confluent);
	codec_free(f->autodetect);
	codec_buf_free(&f->buf);
	return 0;
}

/* Encodes ev with codec's framing into f->buf. */
static void encode(struct fixture *f, struct codec *codec, const struct user_event *ev,
		   enum codec_framing framing)
{
	char errstr[256];
	assert_int_equal(
	    codec_encode_user_event(codec, ev, framing, &f->buf, errstr, sizeof errstr), 0);
}

/* Decodes bytes and asserts the reason; the detail must say something. */
static void expect_reason(struct codec *codec, const void *bytes, size_t len,
			  enum codec_reason want, const char *detail_part)
{
	struct user_event out;
	struct codec_error err;
	int rc = codec_decode_user_event(codec, bytes, len, testutil_now_ms(), &out, &err);
	if (rc != -1 || err.reason != want)
		fail_msg("want %s, got rc=%d %s: %s", codec_reason_name(want), rc,
			 codec_reason_name(err.reason), err.detail);
	assert_true(strlen(err.detail) > 0);
	if (detail_part != NULL && strstr(err.detail, detail_part) == NULL)
		fail_msg("detail \"%s\" lacks \"%s\"", err.detail, detail_part);
}

static void empty_message(void **state)
{
	struct fixture *f = *state;
	expect_reason(f->raw, "", 0, CODEC_ERR_EMPTY, NULL);
	expect_reason(f->confluent, "", 0, CODEC_ERR_EMPTY, NULL);
	expect_reason(f->autodetect, NULL, 0, CODEC_ERR_EMPTY, NULL);
}

static void every_truncation_is_truncated(void **state)
{
	struct fixture *f = *state;
	struct user_event ev = testutil_event("evt-1", "user-1", "item-1", EVENT_PURCHASE);
	ev.has_session_id = true;
	strcpy(ev.session_id, "sess");
	ev.has_quantity = true;
	ev.quantity = 2;
	ev.has_price = true;
	ev.price = 5.5;
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	/* Raw framing names no writer schema: without its last byte (search's
	 * null branch) the message is exactly version 2's encoding of the same
	 * event, and without its last two (list_id's too) version 1's
	 * (schemas/history), which the codec accepts as such. */
	for (size_t cut = 1; cut < f->buf.len - 2; cut++)
		expect_reason(f->raw, f->buf.data, cut, CODEC_ERR_TRUNCATED, NULL);
	for (size_t cut = 1; cut <= 2; cut++) {
		struct user_event out;
		struct codec_error err;
		assert_int_equal(codec_decode_user_event(f->raw, f->buf.data, f->buf.len - cut,
							 testutil_now_ms(), &out, &err),
				 0);
		assert_false(out.has_list_id);
		assert_false(out.has_search);
		assert_string_equal(out.event_id, ev.event_id);
		assert_int_equal(out.quantity, 2);
	}
	encode(f, f->confluent, &ev, CODEC_FRAMING_CONFLUENT);
	for (size_t cut = 1; cut < f->buf.len; cut++)
		expect_reason(f->confluent, f->buf.data, cut, CODEC_ERR_TRUNCATED, NULL);
}

static void wrong_magic_byte(void **state)
{
	struct fixture *f = *state;
	struct user_event ev = testutil_event("e", "u", "i", EVENT_VIEW);
	encode(f, f->confluent, &ev, CODEC_FRAMING_CONFLUENT);
	f->buf.data[0] = 1;
	expect_reason(f->confluent, f->buf.data, f->buf.len, CODEC_ERR_BAD_MAGIC, "0x01");
}

static void unknown_schema_id(void **state)
{
	struct fixture *f = *state;
	struct user_event ev = testutil_event("e", "u", "i", EVENT_VIEW);
	encode(f, f->confluent, &ev, CODEC_FRAMING_CONFLUENT);
	f->buf.data[4] = 99;
	expect_reason(f->confluent, f->buf.data, f->buf.len, CODEC_ERR_UNKNOWN_SCHEMA, "99");
	/* autodetect: a leading zero byte means Confluent framing */
	expect_reason(f->autodetect, f->buf.data, f->buf.len, CODEC_ERR_UNKNOWN_SCHEMA, "99");
}

/* A schema source answering per id as a registry does: 98 has a JSON schema,
 * 97 is not registered, 96 cannot be asked now. */
static enum codec_schema_lookup registry_like(void *opaque, int32_t id, const char **json,
					      char *detail, size_t detail_size)
{
	(void)opaque;
	(void)json;
	if (id == 98) {
		snprintf(detail, detail_size, "registry: schema 98 is a JSON schema, not Avro");
		return CODEC_SCHEMA_REFUSED;
	}
	if (id == 97) {
		snprintf(detail, detail_size, "registry: schema 97 not found");
		return CODEC_SCHEMA_UNKNOWN;
	}
	snprintf(detail, detail_size, "registry: unreachable");
	return CODEC_SCHEMA_UNAVAILABLE;
}

/* An id whose schema is not Avro is a schema that does not fit
 * (schema_mismatch), not an id that is not registered. */
static void schema_source_answers_name_their_reasons(void **state)
{
	struct fixture *f = *state;
	struct user_event ev = testutil_event("e", "u", "i", EVENT_VIEW);
	codec_set_schema_source(f->confluent, registry_like, NULL);
	encode(f, f->confluent, &ev, CODEC_FRAMING_CONFLUENT);
	f->buf.data[4] = 98;
	expect_reason(f->confluent, f->buf.data, f->buf.len, CODEC_ERR_SCHEMA_MISMATCH,
		      "JSON schema");
	f->buf.data[4] = 97;
	expect_reason(f->confluent, f->buf.data, f->buf.len, CODEC_ERR_UNKNOWN_SCHEMA,
		      "not found");
	f->buf.data[4] = 96;
	expect_reason(f->confluent, f->buf.data, f->buf.len, CODEC_ERR_SCHEMA_UNAVAILABLE,
		      "unreachable");
	codec_set_schema_source(f->confluent, NULL, NULL);
}

static void bytes_left_over(void **state)
{
	struct fixture *f = *state;
	struct user_event ev = testutil_event("e", "u", "i", EVENT_VIEW);
	uint8_t longer[512];
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	memcpy(longer, f->buf.data, f->buf.len);
	longer[f->buf.len] = 0x02;
	expect_reason(f->raw, longer, f->buf.len + 1, CODEC_ERR_TRAILING_BYTES, NULL);
}

/* A writer may spend more bytes on a varint than it needs (0x82 0x00 is 2,
 * as 0x02 is): such a message is read whole, and a byte after it is still
 * left over. */
static void non_minimal_varints_are_read_whole(void **state)
{
	struct fixture *f = *state;
	struct user_event ev = testutil_event("e", "u", "i", EVENT_VIEW), out;
	struct codec_error err;
	uint8_t padded[512];
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	/* layout: 02 'e' ...: event_id's length in two bytes instead of one */
	assert_int_equal(f->buf.data[0], 2);
	padded[0] = 0x82;
	padded[1] = 0x00;
	memcpy(padded + 2, f->buf.data + 1, f->buf.len - 1);
	size_t len = f->buf.len + 1;
	assert_int_equal(codec_decode_user_event(f->raw, padded, len, 0, &out, &err), 0);
	assert_string_equal(out.event_id, "e");
	assert_string_equal(out.item_id, "i");
	padded[len] = 0x02;
	expect_reason(f->raw, padded, len + 1, CODEC_ERR_TRAILING_BYTES, NULL);
}

/* A refusal's detail names only its own message, whatever came before it. */
static void details_do_not_carry_over(void **state)
{
	struct fixture *f = *state;
	struct user_event ev = testutil_event("e", "u", "i", EVENT_VIEW), out;
	struct codec_error first, second;
	static const uint8_t cut[] = {0x42, 0x43, 0x44}; /* a 33-byte event_id, cut */
	uint8_t bad_enum[512];
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	memcpy(bad_enum, f->buf.data, f->buf.len);
	bad_enum[6] = 18; /* enum index 9 */
	assert_int_equal(codec_decode_user_event(f->raw, f->buf.data, f->buf.len, 0, &out, &first),
			 0);
	assert_int_equal(codec_decode_user_event(f->raw, cut, sizeof cut, 0, &out, &first), -1);
	assert_int_equal(codec_decode_user_event(f->raw, f->buf.data, f->buf.len, 0, &out, &second),
			 0);
	assert_int_equal(codec_decode_user_event(f->raw, cut, sizeof cut, 0, &out, &second), -1);
	assert_string_equal(first.detail, second.detail); /* after a good one, and ... */
	assert_int_equal(codec_decode_user_event(f->raw, bad_enum, f->buf.len, 0, &out, &second),
			 -1);
	assert_int_equal(codec_decode_user_event(f->raw, cut, sizeof cut, 0, &out, &second), -1);
	assert_string_equal(first.detail, second.detail); /* ... after a bad one */
}

static void enum_index_out_of_range(void **state)
{
	struct fixture *f = *state;
	struct user_event ev = testutil_event("e", "u", "i", EVENT_VIEW);
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	/* layout: 02 'e' 02 'u' 02 'i' <enum> ...; index 9 zig-zags to 18 */
	assert_int_equal(f->buf.data[6], 2);
	f->buf.data[6] = 18;
	expect_reason(f->raw, f->buf.data, f->buf.len, CODEC_ERR_INVALID_ENUM, "index 9");
	f->buf.data[6] = 1; /* -1 */
	expect_reason(f->raw, f->buf.data, f->buf.len, CODEC_ERR_INVALID_ENUM, NULL);
	/* 2^32 + 1 (zig-zag 2^33 + 2): no Avro int; Avro C keeps its low 32
	 * bits, and the event was learned as a VIEW (index 1) */
	uint8_t wide[64];
	static const uint8_t index[] = {0x82, 0x80, 0x80, 0x80, 0x20};
	assert_true(f->buf.len + sizeof index <= sizeof wide);
	memcpy(wide, f->buf.data, 6);
	memcpy(wide + 6, index, sizeof index);
	memcpy(wide + 6 + sizeof index, f->buf.data + 7, f->buf.len - 7);
	expect_reason(f->raw, wide, f->buf.len - 1 + sizeof index, CODEC_ERR_INVALID_ENUM,
		      "index 4294967297");
}

static void enum_symbol_unknown_to_reader(void **state)
{
	struct fixture *f = *state;
	static const char writer[] =
	    "{\"type\":\"record\",\"name\":\"UserEvent\",\"namespace\":\"streamrec\",\"fields\":["
	    "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":\"string\"}"
	    ","
	    "{\"name\":\"item_id\",\"type\":\"string\"},"
	    "{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"EventType\",\"symbols\":"
	    "[\"VIEW\",\"BUYY\"]}},{\"name\":\"ts\",\"type\":\"long\"}]}";
	const char *fields[] = {"event_id=e", "user_id=u", "item_id=i", "type=BUYY",
				"ts=1700000000000"};
	uint8_t body[256];
	char errstr[256];
	long n = testutil_write_with_schema(writer, fields, 5, body + 5, sizeof body - 5);
	assert_true(n > 0);
	assert_int_equal(codec_register_schema(f->confluent, 12, writer, errstr, sizeof errstr), 0);
	memcpy(body, "\0\0\0\0\x0c", 5);
	expect_reason(f->confluent, body, (size_t)n + 5, CODEC_ERR_INVALID_ENUM,
		      "invalid enum symbol \"BUYY\"");
}

static void set_id(struct user_event *ev, int which, const char *value, size_t len)
{
	char *dst = which == 0 ? ev->event_id : which == 1 ? ev->user_id : ev->item_id;
	memcpy(dst, value, len);
	dst[len] = '\0';
}

static void empty_ids(void **state)
{
	struct fixture *f = *state;
	static const char *const names[] = {"event_id", "user_id", "item_id"};
	for (int which = 0; which < 3; which++) {
		struct user_event ev = testutil_event("e", "u", "i", EVENT_VIEW);
		set_id(&ev, which, "", 0);
		encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
		expect_reason(f->raw, f->buf.data, f->buf.len, CODEC_ERR_EMPTY_ID, names[which]);
	}
}

static void over_long_ids(void **state)
{
	struct fixture *f = *state;
	/* The struct caps ids at the limit, so write the 257-byte id with a generic writer. */
	char id[CODEC_ID_MAX_BYTES + 2], field[CODEC_ID_MAX_BYTES + 16];
	const char *fields[] = {
	    "event_id=e",      field,           "item_id=i",  "type=VIEW",   "ts=1700000000000",
	    "session_id=null", "quantity=null", "price=null", "list_id=null", "search=null"};
	uint8_t body[1024];
	long n;
	memset(id, 'u', CODEC_ID_MAX_BYTES + 1);
	id[CODEC_ID_MAX_BYTES + 1] = '\0';
	snprintf(field, sizeof field, "user_id=%s", id);
	n = testutil_write_with_schema(codec_schema_json("UserEvent"), fields, 10, body,
				       sizeof body);
	assert_true(n > 0);
	expect_reason(f->raw, body, (size_t)n, CODEC_ERR_ID_TOO_LONG, "257 bytes, limit 256");
}

static void non_utf8_ids(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *bytes;
		size_t len;
	} bad[] = {
	    {"\xff", 1},             /* never valid */
	    {"ab\xc3", 3},           /* cut sequence */
	    {"\xc0\xaf", 2},         /* overlong '/' */
	    {"\xed\xa0\x80", 3},     /* UTF-16 surrogate */
	    {"\xf4\x90\x80\x80", 4}, /* above U+10FFFF */
	    {"a\0b", 3},             /* NUL inside */
	    {"\x80"
	     "abc",
	     4}, /* stray continuation */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct user_event ev = testutil_event("e", "u", "i", EVENT_VIEW);
		uint8_t body[256];
		size_t n = 0;
		/* hand-build: event_id, then a bad user_id, item_id, enum, ts, three nulls */
		body[n++] = 2, body[n++] = 'e';
		body[n++] = (uint8_t)(bad[i].len * 2);
		memcpy(body + n, bad[i].bytes, bad[i].len);
		n += bad[i].len;
		body[n++] = 2, body[n++] = 'i';
		body[n++] = 2; /* VIEW */
		body[n++] = 2; /* ts = 1 */
		body[n++] = 0, body[n++] = 0, body[n++] = 0;
		(void)ev;
		expect_reason(f->raw, body, n, CODEC_ERR_ID_NOT_UTF8, "user_id");
	}
	{
		const char *good = "\xe2\x82\xac \xf0\x9f\x9b\x92 \xc3\xbc \xef\xbf\xbd";
		assert_true(codec_utf8_valid(good, strlen(good)));
	}
}

static void timestamps(void **state)
{
	struct fixture *f = *state;
	struct user_event ev = testutil_event("e", "u", "i", EVENT_VIEW), out;
	struct codec_error err;
	int64_t now = testutil_now_ms();
	ev.ts_ms = -1;
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	expect_reason(f->raw, f->buf.data, f->buf.len, CODEC_ERR_NEGATIVE_TS, "-1");
	ev.ts_ms = now + 2 * CODEC_DEFAULT_MAX_FUTURE_MS;
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	expect_reason(f->raw, f->buf.data, f->buf.len, CODEC_ERR_FUTURE_TS, "future");
	ev.ts_ms = INT64_MAX;
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	expect_reason(f->raw, f->buf.data, f->buf.len, CODEC_ERR_FUTURE_TS, NULL);
	/* an hour ahead (clock skew) and the distant past (replays) are fine */
	ev.ts_ms = now + 3600 * 1000;
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	assert_int_equal(codec_decode_user_event(f->raw, f->buf.data, f->buf.len, now, &out, &err),
			 0);
	ev.ts_ms = 0;
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	assert_int_equal(codec_decode_user_event(f->raw, f->buf.data, f->buf.len, now, &out, &err),
			 0);
}

static void invalid_optional_fields(void **state)
{
	struct fixture *f = *state;
	struct user_event ev = testutil_event("e", "u", "i", EVENT_PURCHASE);
	ev.has_quantity = true;
	ev.quantity = 0;
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	expect_reason(f->raw, f->buf.data, f->buf.len, CODEC_ERR_INVALID_FIELD, "quantity");
	ev.has_quantity = false;
	ev.has_price = true;
	ev.price = NAN;
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	expect_reason(f->raw, f->buf.data, f->buf.len, CODEC_ERR_INVALID_FIELD, "price");
	ev.price = -3;
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	expect_reason(f->raw, f->buf.data, f->buf.len, CODEC_ERR_INVALID_FIELD, "price");
	ev.has_price = false;
	ev.has_session_id = true;
	ev.session_id[0] = '\0';
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	expect_reason(f->raw, f->buf.data, f->buf.len, CODEC_ERR_EMPTY_ID, "session_id");
}

static void malformed_avro(void **state)
{
	struct fixture *f = *state;
	static const uint8_t negative_length[] = {0x03, 'a'};
	static const uint8_t minus_one_length[] = {0x01, 'a'};
	static const uint8_t bad_branch[] = {2, 'e', 2, 'u', 2, 'i', 2, 2, 8, 0, 0};
	expect_reason(f->raw, negative_length, sizeof negative_length, CODEC_ERR_MALFORMED,
		      "negative length");
	expect_reason(f->raw, minus_one_length, sizeof minus_one_length, CODEC_ERR_MALFORMED,
		      "negative length");
	expect_reason(f->raw, bad_branch, sizeof bad_branch, CODEC_ERR_MALFORMED, NULL);
}

static void huge_declared_length_is_refused_cheaply(void **state)
{
	struct fixture *f = *state;
	/* event_id claims 2^38 bytes; Avro C would try to allocate them */
	static const uint8_t huge[] = {0xfe, 0xff, 0xff, 0xff, 0xff, 0x1f, 'a'};
	/* a nine-byte varint: 2^55 bytes */
	static const uint8_t long_varint[] = {0xfe, 0xff, 0xff, 0xff, 0xff,
					      0xff, 0xff, 0xff, 0x01, 'a'};
	expect_reason(f->raw, huge, sizeof huge, CODEC_ERR_TRUNCATED, NULL);
	expect_reason(f->raw, long_varint, sizeof long_varint, CODEC_ERR_TRUNCATED, NULL);
}

static void schema_of_another_record(void **state)
{
	struct fixture *f = *state;
	char errstr[256];
	struct user_event ev = testutil_event("e", "u", "i", EVENT_VIEW);
	assert_int_equal(codec_register_schema(f->confluent, 30,
					       codec_schema_json("Recommendation"), errstr,
					       sizeof errstr),
			 0);
	encode(f, f->confluent, &ev, CODEC_FRAMING_CONFLUENT);
	f->buf.data[4] = 30;
	expect_reason(f->confluent, f->buf.data, f->buf.len, CODEC_ERR_SCHEMA_MISMATCH,
		      "Recommendation");
}

static void good_message_after_bad_ones_still_decodes(void **state)
{
	struct fixture *f = *state;
	struct user_event ev = testutil_event("e", "u", "i", EVENT_CLICK), out;
	struct codec_error err;
	static const uint8_t junk[] = {0x42, 0x43, 0x44}; /* a 33-byte event_id, cut */
	expect_reason(f->raw, junk, sizeof junk, CODEC_ERR_TRUNCATED, NULL);
	encode(f, f->raw, &ev, CODEC_FRAMING_RAW);
	assert_int_equal(codec_decode_user_event(f->raw, f->buf.data, f->buf.len, 0, &out, &err),
			 0);
	assert_string_equal(out.user_id, "u");
	assert_int_equal(out.type, EVENT_CLICK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(empty_message),
	    cmocka_unit_test(every_truncation_is_truncated),
	    cmocka_unit_test(wrong_magic_byte),
	    cmocka_unit_test(unknown_schema_id),
	    cmocka_unit_test(schema_source_answers_name_their_reasons),
	    cmocka_unit_test(bytes_left_over),
	    cmocka_unit_test(non_minimal_varints_are_read_whole),
	    cmocka_unit_test(details_do_not_carry_over),
	    cmocka_unit_test(enum_index_out_of_range),
	    cmocka_unit_test(enum_symbol_unknown_to_reader),
	    cmocka_unit_test(empty_ids),
	    cmocka_unit_test(over_long_ids),
	    cmocka_unit_test(non_utf8_ids),
	    cmocka_unit_test(timestamps),
	    cmocka_unit_test(invalid_optional_fields),
	    cmocka_unit_test(malformed_avro),
	    cmocka_unit_test(huge_declared_length_is_refused_cheaply),
	    cmocka_unit_test(schema_of_another_record),
	    cmocka_unit_test(good_message_after_bad_ones_still_decodes),
	};
	return cmocka_run_group_tests_name("011_codec_invalid", tests, setup, teardown);
}
