/* Writer schemas older or newer than ours resolve by the Avro rules, never by guessing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "testutil.h"

#define FIELD_ID(n) "{\"name\":\"" n "\",\"type\":\"string\"}"
#define RECORD(fields)                                                                             \
	"{\"type\":\"record\",\"name\":\"UserEvent\",\"namespace\":\"streamrec\",\"fields\":"      \
	"[" fields "]}"
#define EVENT_TYPE_ENUM(symbols)                                                                   \
	"{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"EventType\",\"symbols\":"       \
	"[" symbols "]}}"
#define ALL_SYMBOLS                                                                                \
	"\"IMPRESSION\",\"VIEW\",\"CLICK\",\"ADD_TO_CART\",\"REMOVE_FROM_CART\",\"FAVORITE\","     \
	"\"PURCHASE\""

/* The first version of the schema: no optional fields at all. */
static const char older_writer[] = RECORD(FIELD_ID("event_id") "," FIELD_ID("user_id") "," FIELD_ID(
    "item_id") "," EVENT_TYPE_ENUM(ALL_SYMBOLS) ",{\"name\":\"ts\",\"type\":\"long\"}");

/* A later version: a field in the middle, a new optional field, a new enum symbol at the front. */
static const char newer_writer[] =
    RECORD(FIELD_ID("event_id") ",{\"name\":\"tenant\",\"type\":\"string\"}," FIELD_ID(
	"user_id") "," FIELD_ID("item_id") "," EVENT_TYPE_ENUM("\"RETURN\"," ALL_SYMBOLS) ",{"
											  "\"name\""
											  ":\"ts\","
											  "\"type\""
											  ":\"long"
											  "\"},"
											  "{\"name"
											  "\":"
											  "\"sessio"
											  "n_id\","
											  "\"type\""
											  ":["
											  "\"null\""
											  ",\"strin"
											  "g\"],"
											  "\"defaul"
											  "t\":"
											  "null},"
											  "{\"name"
											  "\":"
											  "\"quanti"
											  "ty\","
											  "\"type\""
											  ":["
											  "\"null\""
											  ",\"int\""
											  "],"
											  "\"defaul"
											  "t\":"
											  "null},"
											  "{\"name"
											  "\":"
											  "\"price"
											  "\","
											  "\"type\""
											  ":["
											  "\"null\""
											  ",\"doubl"
											  "e\"],"
											  "\"defaul"
											  "t\":"
											  "null},"
											  "{\"name"
											  "\":"
											  "\"referr"
											  "er\","
											  "\"type\""
											  ":["
											  "\"null\""
											  ",\"strin"
											  "g\"],"
											  "\"defaul"
											  "t\":"
											  "null}");

/* Narrower types that promote: ts as int, price as float, non-optional quantity. */
static const char promoting_writer[] =
    RECORD(FIELD_ID("event_id") "," FIELD_ID("user_id") "," FIELD_ID("item_id") "," EVENT_TYPE_ENUM(
	"\"PURCHASE\",\"VIEW\"") ",{\"name\":\"ts\",\"type\":\"int\"},"
				 "{\"name\":\"quantity\",\"type\":\"int\"},"
				 "{\"name\":\"price\",\"type\":\"float\"}");

static struct codec *new_codec(void)
{
	char errstr[256];
	struct codec_config config = {.framing = CODEC_FRAMING_CONFLUENT};
	struct codec *codec = codec_new(&config, errstr, sizeof errstr);
	assert_non_null(codec);
	return codec;
}

/* Writes fields with the writer schema under id, Confluent-framed, and decodes it. */
static void decode_with(struct codec *codec, const char *writer, int32_t id,
			const char *const *fields, size_t count, struct user_event *out)
{
	uint8_t body[1024];
	char errstr[256];
	struct codec_error err;
	long n;
	if (codec_register_schema(codec, id, writer, errstr, sizeof errstr) != 0)
		fail_msg("register: %s", errstr);
	n = testutil_write_with_schema(writer, fields, count, body + 5, sizeof body - 5);
	assert_true(n > 0);
	body[0] = 0;
	body[1] = 0, body[2] = 0, body[3] = 0, body[4] = (uint8_t)id;
	if (codec_decode_user_event(codec, body, (size_t)n + 5, 0, out, &err) != 0)
		fail_msg("decode: %s: %s", codec_reason_name(err.reason), err.detail);
}

static void older_writer_takes_defaults(void **state)
{
	struct codec *codec = new_codec();
	struct user_event out;
	const char *fields[] = {"event_id=e1", "user_id=u1", "item_id=i1", "type=FAVORITE",
				"ts=1700000000001"};
	(void)state;
	decode_with(codec, older_writer, 1, fields, 5, &out);
	assert_string_equal(out.event_id, "e1");
	assert_string_equal(out.user_id, "u1");
	assert_string_equal(out.item_id, "i1");
	assert_int_equal(out.type, EVENT_FAVORITE);
	assert_int_equal(out.ts_ms, 1700000000001LL);
	assert_false(out.has_session_id);
	assert_false(out.has_quantity);
	assert_false(out.has_price);
	codec_free(codec);
}

static void newer_writer_skips_unknown_and_maps_symbols_by_name(void **state)
{
	struct codec *codec = new_codec();
	struct user_event out;
	/* PURCHASE is index 7 for this writer, 6 for us */
	const char *fields[] = {"event_id=e2",   "tenant=acme",        "user_id=u2",   "item_id=i2",
				"type=PURCHASE", "ts=1700000000002",   "session_id=s", "quantity=4",
				"price=2.5",     "referrer=newsletter"};
	(void)state;
	decode_with(codec, newer_writer, 2, fields, 10, &out);
	assert_string_equal(out.user_id, "u2");
	assert_string_equal(out.item_id, "i2");
	assert_int_equal(out.type, EVENT_PURCHASE);
	assert_int_equal(out.ts_ms, 1700000000002LL);
	assert_true(out.has_session_id);
	assert_string_equal(out.session_id, "s");
	assert_true(out.has_quantity);
	assert_int_equal(out.quantity, 4);
	assert_true(out.has_price);
	assert_true(out.price == 2.5);
	codec_free(codec);
}

static void newer_writer_symbol_we_lack_is_invalid_enum(void **state)
{
	struct codec *codec = new_codec();
	uint8_t body[512];
	char errstr[256];
	struct user_event out;
	struct codec_error err;
	const char *fields[] = {"event_id=e",  "tenant=t",     "user_id=u",       "item_id=i",
				"type=RETURN", "ts=1",         "session_id=null", "quantity=null",
				"price=null",  "referrer=null"};
	long n;
	(void)state;
	assert_int_equal(codec_register_schema(codec, 3, newer_writer, errstr, sizeof errstr), 0);
	n = testutil_write_with_schema(newer_writer, fields, 10, body + 5, sizeof body - 5);
	assert_true(n > 0);
	memcpy(body, "\0\0\0\0\x03", 5);
	assert_int_equal(codec_decode_user_event(codec, body, (size_t)n + 5, 0, &out, &err), -1);
	assert_int_equal(err.reason, CODEC_ERR_INVALID_ENUM);
	assert_non_null(strstr(err.detail, "RETURN"));
	codec_free(codec);
}

static void narrower_types_promote(void **state)
{
	struct codec *codec = new_codec();
	struct user_event out;
	const char *fields[] = {"event_id=e3", "user_id=u3", "item_id=i3", "type=VIEW",
				"ts=1234567",  "quantity=2", "price=0.5"};
	(void)state;
	decode_with(codec, promoting_writer, 4, fields, 7, &out);
	assert_int_equal(out.type, EVENT_VIEW);
	assert_int_equal(out.ts_ms, 1234567);
	assert_true(out.has_quantity);
	assert_int_equal(out.quantity, 2);
	assert_true(out.has_price);
	assert_true(out.price == 0.5);
	codec_free(codec);
}

static void expect_refused(const char *writer, const char *why_part)
{
	struct codec *codec = new_codec();
	char errstr[256] = "";
	assert_int_equal(codec_register_schema(codec, 9, writer, errstr, sizeof errstr), -1);
	if (strstr(errstr, why_part) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", errstr, why_part);
	codec_free(codec);
}

static void incompatible_writers_are_refused_at_registration(void **state)
{
	(void)state;
	/* ts as a string cannot become a long */
	expect_refused(RECORD(FIELD_ID("event_id") "," FIELD_ID("user_id") "," FIELD_ID(
			   "item_id") "," EVENT_TYPE_ENUM(ALL_SYMBOLS) "," FIELD_ID("ts")),
		       "field ts");
	/* user_id missing, and it has no default */
	expect_refused(RECORD(FIELD_ID("event_id") "," FIELD_ID("item_id") "," EVENT_TYPE_ENUM(
			   ALL_SYMBOLS) ",{\"name\":\"ts\",\"type\":\"long\"}"),
		       "user_id is missing");
	/* a record we do not read at all */
	expect_refused("{\"type\":\"record\",\"name\":\"Order\",\"fields\":[]}", "Order");
	/* not even JSON */
	expect_refused("{\"type\":", "invalid Avro schema");
}

static void schema_directory_registration(void **state)
{
	struct codec *codec = new_codec();
	char dir[] = "/tmp/streamrec-schemas-XXXXXX", path[256], errstr[512];
	FILE *f;
	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/17.avsc", dir);
	f = fopen(path, "w");
	fputs(older_writer, f);
	fclose(f);
	assert_int_equal(codec_register_schema_dir(codec, dir, errstr, sizeof errstr), 1);
	snprintf(path, sizeof path, "%s/bad.avsc", dir);
	f = fopen(path, "w");
	fputs(older_writer, f);
	fclose(f);
	assert_int_equal(codec_register_schema_dir(codec, dir, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "bad.avsc"));
	remove(path);
	snprintf(path, sizeof path, "%s/17.avsc", dir);
	remove(path);
	rmdir(dir);
	codec_free(codec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(older_writer_takes_defaults),
	    cmocka_unit_test(newer_writer_skips_unknown_and_maps_symbols_by_name),
	    cmocka_unit_test(newer_writer_symbol_we_lack_is_invalid_enum),
	    cmocka_unit_test(narrower_types_promote),
	    cmocka_unit_test(incompatible_writers_are_refused_at_registration),
	    cmocka_unit_test(schema_directory_registration),
	};
	return cmocka_run_group_tests_name("012_codec_evolution", tests, NULL, NULL);
}
