/* Codec round trips: what we encode, we decode unchanged, in both framings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "codec.h"
#include "schemas_gen.h"
#include "testutil.h"

static int setup(void **state)
{
	char errstr[256];
	struct codec_config config = {.framing = CODEC_FRAMING_AUTO,
				      .recommendation_schema_id = 42,
				      .user_event_schema_id = 7,
				      .item_event_schema_id = 8};
	struct codec *codec = codec_new(&config, errstr, sizeof errstr);
	assert_non_null(codec);
	assert_int_equal(
	    codec_register_schema(codec, 7, codec_schema_json("UserEvent"), errstr, sizeof errstr),
	    0);
	assert_int_equal(
	    codec_register_schema(codec, 8, codec_schema_json("ItemEvent"), errstr, sizeof errstr),
	    0);
	assert_int_equal(codec_register_schema(codec, 42, codec_schema_json("Recommendation"),
					       errstr, sizeof errstr),
			 0);
	*state = codec;
	return 0;
}

static int teardown(void **state)
{
	codec_free(*state);
	return 0;
}

static void assert_events_equal(const struct user_event *a, const struct user_event *b)
{
	assert_string_equal(a->event_id, b->event_id);
	assert_string_equal(a->user_id, b->user_id);
	assert_string_equal(a->item_id, b->item_id);
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->ts_ms, b->ts_ms);
	assert_int_equal(a->has_session_id, b->has_session_id);
	if (a->has_session_id)
		assert_string_equal(a->session_id, b->session_id);
	assert_int_equal(a->has_quantity, b->has_quantity);
	if (a->has_quantity)
		assert_int_equal(a->quantity, b->quantity);
	assert_int_equal(a->has_price, b->has_price);
	if (a->has_price)
		assert_memory_equal(&a->price, &b->price, sizeof a->price);
	assert_int_equal(a->has_list_id, b->has_list_id);
	if (a->has_list_id)
		assert_string_equal(a->list_id, b->list_id);
}

static void user_event_every_type_both_framings(void **state)
{
	struct codec *codec = *state;
	struct codec_buf buf = {0};
	char errstr[256];
	for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
		for (int framing = CODEC_FRAMING_RAW; framing <= CODEC_FRAMING_CONFLUENT;
		     framing++) {
			struct user_event in = testutil_event("e-1", "user-ü", "item-9",
							      (enum event_type)t),
					  out;
			struct codec_error err;
			in.has_session_id = t % 2 == 0;
			strcpy(in.session_id, "s-77");
			in.has_quantity = t == EVENT_PURCHASE;
			in.quantity = 3;
			in.has_price = t >= EVENT_ADD_TO_CART;
			in.price = 19.99;
			in.has_list_id = t % 3 == 0;
			strcpy(in.list_id, "0123456789abcdef");
			assert_int_equal(codec_encode_user_event(codec, &in,
								 (enum codec_framing)framing, &buf,
								 errstr, sizeof errstr),
					 0);
			if (framing == CODEC_FRAMING_CONFLUENT) {
				static const uint8_t header[5] = {0, 0, 0, 0, 7};
				assert_memory_equal(buf.data, header, 5);
			}
			assert_int_equal(codec_decode_user_event(codec, buf.data, buf.len,
								 testutil_now_ms(), &out, &err),
					 0);
			assert_int_equal(err.reason, CODEC_OK);
			assert_events_equal(&in, &out);
		}
	}
	codec_buf_free(&buf);
}

static void user_event_longest_id_accepted(void **state)
{
	struct codec *codec = *state;
	struct codec_buf buf = {0};
	struct user_event in = testutil_event("e", "u", "i", EVENT_VIEW), out;
	struct codec_error err;
	char errstr[256];
	memset(in.item_id, 'x', CODEC_ID_MAX_BYTES);
	in.item_id[CODEC_ID_MAX_BYTES] = '\0';
	assert_int_equal(
	    codec_encode_user_event(codec, &in, CODEC_FRAMING_RAW, &buf, errstr, sizeof errstr), 0);
	assert_int_equal(codec_decode_user_event(codec, buf.data, buf.len, 0, &out, &err), 0);
	assert_int_equal(strlen(out.item_id), CODEC_ID_MAX_BYTES);
	codec_buf_free(&buf);
}

static void item_event_round_trip_and_default(void **state)
{
	struct codec *codec = *state;
	struct codec_buf buf = {0};
	struct item_event in = {0}, out;
	struct codec_error err;
	char errstr[256];
	strcpy(in.item_id, "sku-1");
	in.has_category = true;
	strcpy(in.category, "shoes/running");
	in.has_price = true;
	in.price = 120.5;
	in.in_stock = false;
	in.ts_ms = 1700000000123LL;
	assert_int_equal(codec_encode_item_event(codec, &in, CODEC_FRAMING_CONFLUENT, &buf, errstr,
						 sizeof errstr),
			 0);
	assert_int_equal(codec_decode_item_event(codec, buf.data, buf.len, 0, &out, &err), 0);
	assert_string_equal(out.item_id, "sku-1");
	assert_true(out.has_category);
	assert_string_equal(out.category, "shoes/running");
	assert_true(out.has_price);
	assert_true(out.price == 120.5);
	assert_false(out.in_stock);
	assert_int_equal(out.ts_ms, 1700000000123LL);
	codec_buf_free(&buf);
}

static void recommendation_round_trip(void **state)
{
	struct codec *codec = *state;
	struct codec_buf buf = {0};
	struct scored_item items[3] = {
	    {"a", 3.5f, "covis", "x-1"}, {"bb", -1.25f, "taste", NULL}, {"ccc", 0.0f, NULL, NULL}};
	struct recommendation in = {.user_id = "user-1",
				    .variant = "control",
				    .model_step = 123456789012LL,
				    .generated_at_ms = 1700000000500LL,
				    .trigger_event_ts_ms = 1700000000400LL,
				    .item_count = 3,
				    .items = items,
				    .list_id = "00000000deadbeef"},
			      out;
	struct codec_error err;
	char errstr[256];
	for (int framing = CODEC_FRAMING_RAW; framing <= CODEC_FRAMING_CONFLUENT; framing++) {
		assert_int_equal(codec_encode_recommendation(codec, &in,
							     (enum codec_framing)framing, &buf,
							     errstr, sizeof errstr),
				 0);
		if (framing == CODEC_FRAMING_CONFLUENT) {
			static const uint8_t header[5] = {0, 0, 0, 0, 42};
			assert_memory_equal(buf.data, header, 5);
		}
		assert_int_equal(codec_decode_recommendation(codec, buf.data, buf.len, &out, &err),
				 0);
		assert_string_equal(out.user_id, "user-1");
		assert_string_equal(out.variant, "control");
		assert_int_equal(out.model_step, 123456789012LL);
		assert_int_equal(out.generated_at_ms, 1700000000500LL);
		assert_int_equal(out.trigger_event_ts_ms, 1700000000400LL);
		assert_int_equal(out.item_count, 3);
		assert_string_equal(out.list_id, "00000000deadbeef");
		for (size_t i = 0; i < 3; i++) {
			assert_string_equal(out.items[i].item_id, items[i].item_id);
			assert_true(out.items[i].score == items[i].score);
		}
		assert_string_equal(out.items[0].reason, "covis");
		assert_string_equal(out.items[0].because_item, "x-1");
		assert_string_equal(out.items[1].reason, "taste");
		assert_null(out.items[1].because_item);
		assert_null(out.items[2].reason);
		assert_null(out.items[2].because_item);
	}
	/* an empty list is a valid list */
	in.item_count = 0;
	assert_int_equal(
	    codec_encode_recommendation(codec, &in, CODEC_FRAMING_RAW, &buf, errstr, sizeof errstr),
	    0);
	assert_int_equal(codec_decode_recommendation(codec, buf.data, buf.len, &out, &err), 0);
	assert_int_equal(out.item_count, 0);
	codec_buf_free(&buf);
}

static void recommendation_encoding_is_avro_binary(void **state)
{
	/* Hand-computed Avro bytes: strings are zig-zag length + bytes, longs zig-zag varints,
	 * floats little-endian IEEE, arrays one block then 0. */
	static const uint8_t expected[] = {
	    2, 'u',                            /* user_id */
	    2, 'v',                            /* variant */
	    4,                                 /* model_step 2 */
	    6,                                 /* generated_at 3 */
	    8,                                 /* trigger_event_ts 4 */
	    2,                                 /* one item */
	    2, 'i', 0,   0,   0x80, 0x3f,      /* "i", 1.0f */
	    2, 10,  'c', 'o', 'v',  'i',  's', /* reason: branch 1, "covis" */
	    0,                                 /* because_item: branch 0, null */
	    0,                                 /* end of array */
	    2, 'L',                            /* list_id */
	};
	struct codec *codec = *state;
	struct codec_buf buf = {0};
	struct scored_item item = {"i", 1.0f, "covis", NULL};
	struct recommendation in = {"u", "v", 2, 3, 4, 1, &item, "L"};
	char errstr[256];
	assert_int_equal(
	    codec_encode_recommendation(codec, &in, CODEC_FRAMING_RAW, &buf, errstr, sizeof errstr),
	    0);
	assert_int_equal(buf.len, sizeof expected);
	assert_memory_equal(buf.data, expected, sizeof expected);
	codec_buf_free(&buf);
}

/* output.schema_version = 1: version 1's bytes (no explanations, no list id), which
 * this codec reads back too, with the new fields at their defaults. */
static void recommendation_version_1_for_old_readers(void **state)
{
	(void)state;
	static const uint8_t expected[] = {2, 'u', 2, 'v', 4, 6, 8, 2, 2, 'i', 0, 0, 0x80, 0x3f, 0};
	struct codec_config config = {.framing = CODEC_FRAMING_AUTO, .recommendation_version = 1};
	char errstr[256];
	struct codec *codec = codec_new(&config, errstr, sizeof errstr);
	assert_non_null(codec);
	assert_string_equal(codec_writer_schema_json(codec, "Recommendation"),
			    SCHEMA_RECOMMENDATION_V1_JSON);
	struct codec_buf buf = {0};
	struct scored_item item = {"i", 1.0f, "covis", "x"};
	struct recommendation in = {"u", "v", 2, 3, 4, 1, &item, "L"}, out;
	struct codec_error err;
	assert_int_equal(
	    codec_encode_recommendation(codec, &in, CODEC_FRAMING_RAW, &buf, errstr, sizeof errstr),
	    0);
	assert_int_equal(buf.len, sizeof expected);
	assert_memory_equal(buf.data, expected, sizeof expected);
	assert_int_equal(codec_decode_recommendation(codec, buf.data, buf.len, &out, &err), 0);
	assert_string_equal(out.list_id, "");
	assert_null(out.items[0].reason);
	codec_buf_free(&buf);
	codec_free(codec);
	config.recommendation_version = 3;
	assert_null(codec_new(&config, errstr, sizeof errstr));
}

static void reason_names_are_distinct(void **state)
{
	(void)state;
	for (int a = 0; a < CODEC_REASON_COUNT; a++) {
		assert_non_null(codec_reason_name((enum codec_reason)a));
		for (int b = a + 1; b < CODEC_REASON_COUNT; b++)
			assert_string_not_equal(codec_reason_name((enum codec_reason)a),
						codec_reason_name((enum codec_reason)b));
	}
	assert_string_equal(codec_reason_name(CODEC_ERR_TRUNCATED), "truncated");
	assert_string_equal(codec_reason_name(CODEC_REASON_COUNT), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(user_event_every_type_both_framings),
	    cmocka_unit_test(user_event_longest_id_accepted),
	    cmocka_unit_test(item_event_round_trip_and_default),
	    cmocka_unit_test(recommendation_round_trip),
	    cmocka_unit_test(recommendation_encoding_is_avro_binary),
	    cmocka_unit_test(recommendation_version_1_for_old_readers),
	    cmocka_unit_test(reason_names_are_distinct),
	};
	return cmocka_run_group_tests_name("010_codec_roundtrip", tests, setup, teardown);
}
