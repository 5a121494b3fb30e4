/* The event log: interning, stable sorting, every reader and writer, and their errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <avro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eventlog.h"
#include "synth.h"

struct fixture {
	char dir[64];
	char path[256];
	char errstr[512];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	assert_non_null(f);
	strcpy(f->dir, "/tmp/streamrec-eventlog-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char command[128];
	snprintf(command, sizeof command, "rm -rf '%s'", f->dir);
	assert_int_equal(system(command), 0);
	free(f);
	return 0;
}

/* Writes content to dir/name and returns the path (valid until the next call). */
static const char *write_file(struct fixture *f, const char *name, const char *content)
{
	FILE *fp;
	snprintf(f->path, sizeof f->path, "%s/%s", f->dir, name);
	fp = fopen(f->path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(content, 1, strlen(content), fp), strlen(content));
	assert_int_equal(fclose(fp), 0);
	return f->path;
}

static struct event_log *read_ok(struct fixture *f, const char *path,
				 const struct eventlog_read_options *options)
{
	struct event_log *log = NULL;
	if (eventlog_read(path, options, &log, f->errstr, sizeof f->errstr) != 0)
		fail_msg("reading %s: %s", path, f->errstr);
	assert_non_null(log);
	return log;
}

/* Reads a file that must fail, and checks that errstr holds every expected fragment. */
static void read_fails(struct fixture *f, const char *path,
		       const struct eventlog_read_options *options, const char *expect1,
		       const char *expect2)
{
	struct event_log *log = (struct event_log *)1;
	assert_int_equal(eventlog_read(path, options, &log, f->errstr, sizeof f->errstr), -1);
	assert_null(log);
	if (expect1 != NULL && strstr(f->errstr, expect1) == NULL)
		fail_msg("errstr '%s' lacks '%s'", f->errstr, expect1);
	if (expect2 != NULL && strstr(f->errstr, expect2) == NULL)
		fail_msg("errstr '%s' lacks '%s'", f->errstr, expect2);
}

static void assert_event(const struct event_log *log, size_t i, const char *user, const char *item,
			 enum event_type type, int64_t ts_ms)
{
	assert_true(i < log->count);
	assert_string_equal(log->user_ids[log->user[i]], user);
	assert_string_equal(log->item_ids[log->item[i]], item);
	assert_int_equal(log->type[i], type);
	assert_int_equal(log->ts_ms[i], ts_ms);
}

static struct eventlog_read_options with_format(enum eventlog_format format)
{
	struct eventlog_read_options options = eventlog_read_options_default();
	options.format = format;
	return options;
}

/* ---- interning and sorting ----------------------------------------------------------- */

static void interning_is_dense_in_first_seen_order(void **state)
{
	struct fixture *f = *state;
	struct event_log *log = eventlog_new();
	char id[32], big[CODEC_ID_MAX_BYTES + 2];
	uint32_t index;

	assert_non_null(log);
	assert_int_equal(
	    eventlog_append(log, "bob", "apple", EVENT_VIEW, 10, f->errstr, sizeof f->errstr), 0);
	assert_int_equal(
	    eventlog_append(log, "alice", "pear", EVENT_CLICK, 5, f->errstr, sizeof f->errstr), 0);
	assert_int_equal(
	    eventlog_append(log, "bob", "pear", EVENT_PURCHASE, 7, f->errstr, sizeof f->errstr), 0);
	assert_int_equal(log->count, 3);
	assert_int_equal(log->user_count, 2);
	assert_int_equal(log->item_count, 2);
	assert_string_equal(log->user_ids[0], "bob");
	assert_string_equal(log->user_ids[1], "alice");
	assert_int_equal(log->user[2], 0);
	assert_int_equal(log->item[2], 1);
	assert_null(log->item_category);
	assert_null(log->user_cluster);

	/* enough ids to grow the tables many times over */
	for (int i = 0; i < 100000; i++) {
		int len = snprintf(id, sizeof id, "item-%d", i);
		assert_int_equal(
		    eventlog_intern_item(log, id, (size_t)len, &index, f->errstr, sizeof f->errstr),
		    0);
		assert_int_equal(index, (uint32_t)i + 2);
	}
	for (int i = 0; i < 100000; i += 777) {
		int len = snprintf(id, sizeof id, "item-%d", i);
		assert_int_equal(
		    eventlog_intern_item(log, id, (size_t)len, &index, f->errstr, sizeof f->errstr),
		    0);
		assert_int_equal(index, (uint32_t)i + 2);
	}
	/* a category set late covers every item, with none for the rest */
	assert_int_equal(eventlog_set_item_category(log, 5, 42, f->errstr, sizeof f->errstr), 0);
	assert_int_equal(log->item_category[5], 42);
	assert_int_equal(log->item_category[4], EVENTLOG_NONE);
	assert_int_equal(eventlog_intern_item(log, "late", 4, &index, f->errstr, sizeof f->errstr),
			 0);
	assert_int_equal(log->item_category[index], EVENTLOG_NONE);

	/* ids the UserEvent schema refuses are refused here too */
	assert_int_equal(eventlog_intern_user(log, "", 0, &index, f->errstr, sizeof f->errstr), -1);
	assert_non_null(strstr(f->errstr, "empty"));
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(
	    eventlog_intern_user(log, big, strlen(big), &index, f->errstr, sizeof f->errstr), -1);
	assert_non_null(strstr(f->errstr, "longer than 256"));
	assert_int_equal(
	    eventlog_intern_user(log, "\xff\xfe", 2, &index, f->errstr, sizeof f->errstr), -1);
	assert_non_null(strstr(f->errstr, "UTF-8"));
	assert_int_equal(
	    eventlog_append(log, "bob", "apple", EVENT_TYPE_COUNT, 1, f->errstr, sizeof f->errstr),
	    -1);
	assert_int_equal(log->user_count, 2);
	eventlog_free(log);
}

static void sorting_is_stable(void **state)
{
	struct fixture *f = *state;
	static const int64_t ts[] = {5, 3, 5, 3, 1, 5, -2};
	struct event_log *log = eventlog_new();
	char item[16];

	for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
		snprintf(item, sizeof item, "i%zu", i);
		assert_int_equal(
		    eventlog_append(log, "u", item, EVENT_VIEW, ts[i], f->errstr, sizeof f->errstr),
		    0);
	}
	assert_false(eventlog_is_sorted(log));
	assert_int_equal(eventlog_sort_by_time(log, f->errstr, sizeof f->errstr), 0);
	assert_true(eventlog_is_sorted(log));
	static const char *const expected[] = {"i6", "i4", "i1", "i3", "i0", "i2", "i5"};
	for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
		assert_string_equal(log->item_ids[log->item[i]], expected[i]);
	eventlog_free(log);

	/* many ties across a wide range (several radix passes), against a reference:
	 * item index = original position, so stability means increasing items among equal times */
	log = eventlog_new();
	uint64_t rng = 7;
	for (int i = 0; i < 50000; i++) {
		rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
		int64_t t = (int64_t)((rng >> 33) % 50) * 1000000007LL - 3;
		snprintf(item, sizeof item, "i%d", i);
		assert_int_equal(
		    eventlog_append(log, "u", item, EVENT_VIEW, t, f->errstr, sizeof f->errstr), 0);
	}
	assert_int_equal(eventlog_sort_by_time(log, f->errstr, sizeof f->errstr), 0);
	for (size_t i = 1; i < log->count; i++) {
		assert_true(log->ts_ms[i - 1] <= log->ts_ms[i]);
		if (log->ts_ms[i - 1] == log->ts_ms[i])
			assert_true(log->item[i - 1] < log->item[i]);
	}
	eventlog_free(log);
}

/* ---- readers ----------------------------------------------------------------------------- */

static void streamrec_csv(void **state)
{
	struct fixture *f = *state;
	struct event_log *log;
	const char *path = write_file(f, "events.csv",
				      "ts_ms,user_id,item_id,type,category\r\n"
				      "1700000000000,u1,i1,VIEW,7\r\n"
				      "\r\n"
				      "1699999999000,u2,i2,PURCHASE,\r\n"
				      "1700000000500,u1,i2,ADD_TO_CART,9\r\n"
				      "1700000000600,u2,i1,REMOVE_FROM_CART,8\r\n");
	for (int format = EVENTLOG_AUTO; format <= EVENTLOG_CSV; format++) {
		struct eventlog_read_options options = with_format((enum eventlog_format)format);
		log = read_ok(f, path, &options);
		assert_int_equal(log->count, 4);
		assert_event(log, 0, "u1", "i1", EVENT_VIEW, 1700000000000LL);
		assert_event(log, 1, "u2", "i2", EVENT_PURCHASE, 1699999999000LL);
		assert_event(log, 2, "u1", "i2", EVENT_ADD_TO_CART, 1700000000500LL);
		assert_event(log, 3, "u2", "i1", EVENT_REMOVE_FROM_CART, 1700000000600LL);
		assert_non_null(log->item_category);
		assert_int_equal(log->item_category[0], 7); /* the first category wins */
		assert_int_equal(log->item_category[1], 9); /* the first non-empty one */
		assert_false(eventlog_is_sorted(log));      /* the reader keeps the file's order */
		eventlog_free(log);
	}

	path = write_file(f, "plain.csv",
			  "ts_ms,user_id,item_id,type\n1,a,b,IMPRESSION\n2,a,c,FAVORITE");
	log = read_ok(f, path, NULL);
	assert_int_equal(log->count, 2);
	assert_event(log, 1, "a", "c", EVENT_FAVORITE, 2);
	assert_null(log->item_category);
	eventlog_free(log);

	struct eventlog_read_options options = eventlog_read_options_default();
	options.max_events = 1;
	log = read_ok(f, path, &options);
	assert_int_equal(log->count, 1);
	eventlog_free(log);
}

static void movielens_three_flavours(void **state)
{
	struct fixture *f = *state;
	struct event_log *log;
	static const struct {
		const char *name, *content;
	} files[] = {
	    {"u.data", "196\t242\t3\t881250949\n186\t302\t4\t891717742\n22\t377\t5\t878887116\n"},
	    {"ratings.dat",
	     "196::242::3::881250949\n186::302::4::891717742\n22::377::5::878887116\n"},
	    {"ratings.csv", "userId,movieId,rating,timestamp\n196,242,3.5,881250949\n"
			    "186,302,4.0,891717742\n22,377,5.0,878887116\n"},
	};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		const char *path = write_file(f, files[i].name, files[i].content);
		for (int format = 0; format < 2; format++) {
			struct eventlog_read_options options =
			    with_format(format ? EVENTLOG_MOVIELENS : EVENTLOG_AUTO);
			log = read_ok(f, path, &options);
			/* the rating below 4 is dropped; kept ratings are purchases */
			assert_int_equal(log->count, 2);
			assert_event(log, 0, "186", "302", EVENT_PURCHASE, 891717742000LL);
			assert_event(log, 1, "22", "377", EVENT_PURCHASE, 878887116000LL);
			assert_null(log->item_category);
			eventlog_free(log);

			options.min_rating = 0.5;
			options.rating_type = EVENT_VIEW;
			log = read_ok(f, path, &options);
			assert_int_equal(log->count, 3);
			assert_event(log, 0, "196", "242", EVENT_VIEW, 881250949000LL);
			eventlog_free(log);
		}
	}
}

static void retailrocket_and_taobao(void **state)
{
	struct fixture *f = *state;
	struct event_log *log;
	const char *path = write_file(f, "events.csv",
				      "timestamp,visitorid,event,itemid,transactionid\n"
				      "1433221332117,257597,view,355908,\n"
				      "1433224214164,992329,addtocart,248676,\n"
				      "1433221999827,111016,transaction,7943,4000\n");
	for (int format = 0; format < 2; format++) {
		struct eventlog_read_options options =
		    with_format(format ? EVENTLOG_RETAILROCKET : EVENTLOG_AUTO);
		log = read_ok(f, path, &options);
		assert_int_equal(log->count, 3);
		assert_event(log, 0, "257597", "355908", EVENT_VIEW, 1433221332117LL);
		assert_event(log, 1, "992329", "248676", EVENT_ADD_TO_CART, 1433224214164LL);
		assert_event(log, 2, "111016", "7943", EVENT_PURCHASE, 1433221999827LL);
		eventlog_free(log);
	}

	path = write_file(f, "UserBehavior.csv",
			  "1,2268318,2520377,pv,1511544070\n"
			  "1,2333346,2520771,cart,1511561733\n"
			  "100,2268318,2520377,fav,1511651002\n"
			  "100,4606018,2735466,buy,1511616481\n");
	for (int format = 0; format < 2; format++) {
		struct eventlog_read_options options =
		    with_format(format ? EVENTLOG_TAOBAO : EVENTLOG_AUTO);
		log = read_ok(f, path, &options);
		assert_int_equal(log->count, 4);
		assert_event(log, 0, "1", "2268318", EVENT_VIEW, 1511544070000LL);
		assert_event(log, 1, "1", "2333346", EVENT_ADD_TO_CART, 1511561733000LL);
		assert_event(log, 2, "100", "2268318", EVENT_FAVORITE, 1511651002000LL);
		assert_event(log, 3, "100", "4606018", EVENT_PURCHASE, 1511616481000LL);
		assert_int_equal(log->item_count, 3);
		assert_non_null(log->item_category);
		assert_int_equal(log->item_category[0], 2520377);
		assert_int_equal(log->item_category[1], 2520771);
		assert_int_equal(log->item_category[2], 2735466);
		eventlog_free(log);
	}
}

static void empty_files(void **state)
{
	struct fixture *f = *state;
	struct event_log *log;
	struct eventlog_read_options options;

	/* header-less formats may be empty */
	log = read_ok(f, write_file(f, "u.data", ""), NULL);
	assert_int_equal(log->count, 0);
	eventlog_free(log);
	log = read_ok(f, write_file(f, "UserBehavior.csv", "\n"), NULL);
	assert_int_equal(log->count, 0);
	eventlog_free(log);
	options = with_format(EVENTLOG_TAOBAO);
	log = read_ok(f, write_file(f, "anything", ""), &options);
	assert_int_equal(log->count, 0);
	eventlog_free(log);

	/* a header-only file holds no events */
	log = read_ok(f, write_file(f, "x.csv", "ts_ms,user_id,item_id,type\n"), NULL);
	assert_int_equal(log->count, 0);
	eventlog_free(log);

	/* formats with a mandatory header may not be empty; AUTO cannot tell */
	options = with_format(EVENTLOG_CSV);
	read_fails(f, write_file(f, "empty.csv", ""), &options, "empty.csv: empty file",
		   "ts_ms,user_id,item_id,type");
	options = with_format(EVENTLOG_RETAILROCKET);
	read_fails(f, f->path, &options, "empty file", "timestamp,visitorid");
	read_fails(f, f->path, NULL, "empty.csv: empty file", "cannot detect");
}

/* ---- Avro ------------------------------------------------------------------------------ */

/* A writer schema unlike ours: fields reordered, one extra, enum symbols reordered
 * with one we lack, ts as int. The reader must resolve by name. */
static const char foreign_schema[] =
    "{\"type\":\"record\",\"name\":\"UserEvent\",\"namespace\":\"shop\",\"fields\":["
    "{\"name\":\"ts\",\"type\":\"int\"},"
    "{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"Kind\",\"symbols\":"
    "[\"RETURN\",\"PURCHASE\",\"VIEW\"]}},"
    "{\"name\":\"tenant\",\"type\":\"string\"},"
    "{\"name\":\"item_id\",\"type\":\"string\"},"
    "{\"name\":\"user_id\",\"type\":\"string\"}]}";

/* The type as a string, ts as a long. */
static const char string_type_schema[] = "{\"type\":\"record\",\"name\":\"Click\",\"fields\":["
					 "{\"name\":\"user_id\",\"type\":\"string\"},"
					 "{\"name\":\"item_id\",\"type\":\"string\"},"
					 "{\"name\":\"type\",\"type\":\"string\"},"
					 "{\"name\":\"ts\",\"type\":\"long\"}]}";

/* No user at all. */
static const char userless_schema[] = "{\"type\":\"record\",\"name\":\"UserEvent\",\"fields\":["
				      "{\"name\":\"item_id\",\"type\":\"string\"},"
				      "{\"name\":\"type\",\"type\":\"string\"},"
				      "{\"name\":\"ts\",\"type\":\"long\"}]}";

/*
 * Writes records with Avro C's own file writer, setting whichever of the
 * fields the schema has; symbols index {RETURN, PURCHASE, VIEW}, written as
 * an enum index or as a string, as the schema says.
 */
static void write_foreign_avro(const char *path, const char *schema_json, const char *codec_name,
			       const int *symbols, size_t count)
{
	static const char *const names[] = {"RETURN", "PURCHASE", "VIEW"};
	avro_schema_t schema;
	avro_file_writer_t writer;
	avro_value_iface_t *iface;
	avro_value_t record, field;
	char id[32];

	remove(path);
	assert_int_equal(avro_schema_from_json_length(schema_json, strlen(schema_json), &schema),
			 0);
	assert_int_equal(avro_file_writer_create_with_codec(path, schema, &writer, codec_name, 0),
			 0);
	iface = avro_generic_class_from_schema(schema);
	assert_int_equal(avro_generic_value_new(iface, &record), 0);
	for (size_t i = 0; i < count; i++) {
		assert_int_equal(avro_value_get_by_name(&record, "ts", &field, NULL), 0);
		if (avro_value_get_type(&field) == AVRO_INT32)
			assert_int_equal(avro_value_set_int(&field, (int32_t)(1000 + i)), 0);
		else
			assert_int_equal(avro_value_set_long(&field, (int64_t)(1000 + i)), 0);
		assert_int_equal(avro_value_get_by_name(&record, "type", &field, NULL), 0);
		if (avro_value_get_type(&field) == AVRO_ENUM)
			assert_int_equal(avro_value_set_enum(&field, symbols[i]), 0);
		else
			assert_int_equal(avro_value_set_string(&field, names[symbols[i]]), 0);
		if (avro_value_get_by_name(&record, "tenant", &field, NULL) == 0)
			assert_int_equal(avro_value_set_string(&field, "acme"), 0);
		snprintf(id, sizeof id, "item%zu", i);
		assert_int_equal(avro_value_get_by_name(&record, "item_id", &field, NULL), 0);
		assert_int_equal(avro_value_set_string(&field, id), 0);
		snprintf(id, sizeof id, "user%zu", i % 2);
		if (avro_value_get_by_name(&record, "user_id", &field, NULL) == 0)
			assert_int_equal(avro_value_set_string(&field, id), 0);
		assert_int_equal(avro_file_writer_append_value(writer, &record), 0);
	}
	assert_int_equal(avro_file_writer_close(writer), 0);
	avro_value_decref(&record);
	avro_value_iface_decref(iface);
	avro_schema_decref(schema);
}

static void avro_with_a_foreign_writer_schema(void **state)
{
	struct fixture *f = *state;
	static const int symbols[] = {2, 1, 2};
	static const int with_unknown[] = {2, 2, 0};
	struct event_log *log;
	char path[256];

	for (int deflate = 0; deflate < 2; deflate++) {
		snprintf(path, sizeof path, "%s/foreign-%d.avro", f->dir, deflate);
		write_foreign_avro(path, foreign_schema, deflate ? "deflate" : "null", symbols, 3);
		log = read_ok(f, path, NULL);
		assert_int_equal(log->count, 3);
		assert_event(log, 0, "user0", "item0", EVENT_VIEW, 1000);
		assert_event(log, 1, "user1", "item1", EVENT_PURCHASE, 1001);
		assert_event(log, 2, "user0", "item2", EVENT_VIEW, 1002);
		eventlog_free(log);
	}

	/* a symbol we lack is an error naming it and the record */
	snprintf(path, sizeof path, "%s/unknown-symbol.data", f->dir);
	write_foreign_avro(path, foreign_schema, "null", with_unknown, 3);
	read_fails(f, path, NULL, "record 3: unknown event type 'RETURN'", "unknown-symbol.data");

	/* the type as a string: the same symbols, and the same error for one we lack */
	snprintf(path, sizeof path, "%s/string-type.avro", f->dir);
	write_foreign_avro(path, string_type_schema, "null", symbols, 3);
	log = read_ok(f, path, NULL);
	assert_int_equal(log->count, 3);
	assert_event(log, 1, "user1", "item1", EVENT_PURCHASE, 1001);
	eventlog_free(log);
	write_foreign_avro(path, string_type_schema, "null", with_unknown, 3);
	read_fails(f, path, NULL, "string-type.avro: record 3: unknown event type 'RETURN'", NULL);

	/* a writer schema without a field we need */
	snprintf(path, sizeof path, "%s/userless.avro", f->dir);
	write_foreign_avro(path, userless_schema, "null", symbols, 1);
	read_fails(f, path, NULL, "userless.avro: the writer schema has no field 'user_id'", NULL);

	/* no records at all */
	snprintf(path, sizeof path, "%s/none.avro", f->dir);
	write_foreign_avro(path, foreign_schema, "null", symbols, 0);
	log = read_ok(f, path, NULL);
	assert_int_equal(log->count, 0);
	eventlog_free(log);

	/* a file named .avro that is not one */
	read_fails(f, write_file(f, "fake.avro", "ts_ms,user_id,item_id,type\n"), NULL,
		   "fake.avro: not an Avro object container file", NULL);
}

/* ---- round trips ------------------------------------------------------------------------- */

static struct event_log *small_synthetic_log(void)
{
	struct synth_config config = synth_config_default();
	struct event_log *log = NULL;
	struct synth *synth;
	char errstr[256];
	config.users = 300;
	config.items = 200;
	config.clusters = 8;
	config.events = 20000;
	synth = synth_new(&config, errstr, sizeof errstr);
	assert_non_null(synth);
	assert_int_equal(synth_generate(synth, &log, errstr, sizeof errstr), 0);
	synth_free(synth);
	return log;
}

/* Same events, same ids per event; categories by item id when both have them. */
static void assert_same_events(const struct event_log *a, const struct event_log *b,
			       bool compare_categories)
{
	assert_int_equal(a->count, b->count);
	for (size_t i = 0; i < a->count; i++) {
		assert_string_equal(a->user_ids[a->user[i]], b->user_ids[b->user[i]]);
		assert_string_equal(a->item_ids[a->item[i]], b->item_ids[b->item[i]]);
		assert_int_equal(a->type[i], b->type[i]);
		assert_int_equal(a->ts_ms[i], b->ts_ms[i]);
		if (compare_categories)
			assert_int_equal(a->item_category[a->item[i]],
					 b->item_category[b->item[i]]);
	}
}

static char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *data;
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	*len = (size_t)ftell(fp);
	rewind(fp);
	data = malloc(*len + 1);
	assert_int_equal(fread(data, 1, *len, fp), *len);
	fclose(fp);
	return data;
}

static void csv_and_avro_round_trips(void **state)
{
	struct fixture *f = *state;
	struct event_log *log = small_synthetic_log(), *back;
	char csv[256], avro[256], avro2[256];
	size_t len1, len2;

	snprintf(csv, sizeof csv, "%s/synth.csv", f->dir);
	snprintf(avro, sizeof avro, "%s/synth.avro", f->dir);
	snprintf(avro2, sizeof avro2, "%s/synth2.avro", f->dir);

	assert_int_equal(eventlog_write_csv(log, csv, f->errstr, sizeof f->errstr), 0);
	back = read_ok(f, csv, NULL);
	assert_same_events(log, back, true);
	eventlog_free(back);

	assert_int_equal(eventlog_write_avro(log, avro, f->errstr, sizeof f->errstr), 0);
	back = read_ok(f, avro, NULL);
	assert_same_events(log, back, false);
	assert_null(back->item_category); /* UserEvent has no category */

	/* what we read back writes the same bytes: the Avro output is reproducible */
	assert_int_equal(eventlog_write_avro(back, avro2, f->errstr, sizeof f->errstr), 0);
	char *a = slurp(avro, &len1), *b = slurp(avro2, &len2);
	assert_int_equal(len1, len2);
	assert_memory_equal(a, b, len1);
	free(a);
	free(b);
	eventlog_free(back);

	/* an empty log gives files that read back empty */
	struct event_log *empty = eventlog_new();
	assert_int_equal(eventlog_write_avro(empty, avro, f->errstr, sizeof f->errstr), 0);
	back = read_ok(f, avro, NULL);
	assert_int_equal(back->count, 0);
	eventlog_free(back);
	assert_int_equal(eventlog_write_csv(empty, csv, f->errstr, sizeof f->errstr), 0);
	back = read_ok(f, csv, NULL);
	assert_int_equal(back->count, 0);
	eventlog_free(back);
	eventlog_free(empty);
	eventlog_free(log);
}

static void csv_writer_refuses_ids_with_commas(void **state)
{
	struct fixture *f = *state;
	struct event_log *log = eventlog_new();
	char path[256];

	snprintf(path, sizeof path, "%s/commas.csv", f->dir);
	assert_int_equal(
	    eventlog_append(log, "ok", "i1", EVENT_VIEW, 1, f->errstr, sizeof f->errstr), 0);
	assert_int_equal(
	    eventlog_append(log, "smith, john", "i1", EVENT_VIEW, 2, f->errstr, sizeof f->errstr),
	    0);
	assert_int_equal(eventlog_write_csv(log, path, f->errstr, sizeof f->errstr), -1);
	assert_non_null(strstr(f->errstr, "'smith, john'"));
	assert_non_null(strstr(f->errstr, "comma"));
	assert_int_equal(access(path, F_OK), -1); /* nothing written */

	/* Avro has no such limit */
	snprintf(path, sizeof path, "%s/commas.avro", f->dir);
	assert_int_equal(eventlog_write_avro(log, path, f->errstr, sizeof f->errstr), 0);
	struct event_log *back = read_ok(f, path, NULL);
	assert_event(back, 1, "smith, john", "i1", EVENT_VIEW, 2);
	eventlog_free(back);
	eventlog_free(log);
}

/* ---- errors ----------------------------------------------------------------------------- */

static void errors_name_the_file_the_line_and_the_problem(void **state)
{
	struct fixture *f = *state;
	struct eventlog_read_options options;
	char missing[256];

	snprintf(missing, sizeof missing, "%s/no-such-file.csv", f->dir);
	read_fails(f, missing, NULL, "no-such-file.csv: cannot open", "No such file");

	/* nothing AUTO recognises */
	read_fails(f, write_file(f, "notes.txt", "hello world\nsecond line\n"), NULL,
		   "notes.txt:1: cannot detect the format", "'hello world'");
	options = with_format((enum eventlog_format)99);
	read_fails(f, f->path, &options, "unknown format 99", NULL);

	/* malformed lines, by line number (blank lines count) */
	read_fails(f, write_file(f, "ratings.dat", "1::2::5::978300760\n\n1::3::4\n"), NULL,
		   "ratings.dat:3: expected 4 fields separated by '::'", "got 3");
	read_fails(f, write_file(f, "u.data", "1\t2\t5\t978300760\n1\t2\tfive\t978300760\n"), NULL,
		   "u.data:2: rating: expected a number", "'five'");
	read_fails(
	    f,
	    write_file(f, "bad.csv",
		       "ts_ms,user_id,item_id,type\n1,u,i,VIEW\n2,u,i,VIEW\nlater,u,i,VIEW\n"),
	    NULL, "bad.csv:4: ts_ms: expected a whole number", "'later'");
	read_fails(f, write_file(f, "short.csv", "ts_ms,user_id,item_id,type\n1,u,VIEW\n"), NULL,
		   "short.csv:2: expected 4 fields separated by ','", "got 3");
	read_fails(f, write_file(f, "noid.csv", "ts_ms,user_id,item_id,type\n1,,i,VIEW\n"), NULL,
		   "noid.csv:2: user id is empty", NULL);
	options = with_format(EVENTLOG_CSV);
	read_fails(f, write_file(f, "headless.csv", "1,u,i,VIEW\n"), &options,
		   "headless.csv:1: expected the header 'ts_ms,user_id,item_id,type'",
		   "'1,u,i,VIEW'");
	read_fails(f,
		   write_file(f, "UserBehavior.csv", "1,2,3,pv,1511544070\n1,2,x,pv,1511544070\n"),
		   NULL, "UserBehavior.csv:2: category_id: expected a whole number", "'x'");

	/* unknown event types, named */
	read_fails(
	    f, write_file(f, "types.csv", "ts_ms,user_id,item_id,type\n1,u,i,VIEW\n2,u,i,BUYY\n"),
	    NULL, "types.csv:3: unknown event type 'BUYY'", "PURCHASE");
	read_fails(f,
		   write_file(f, "events.csv",
			      "timestamp,visitorid,event,itemid,transactionid\n"
			      "1433221332117,257597,refund,355908,\n"),
		   NULL, "events.csv:2: unknown event type 'refund'", "addtocart");
	options = with_format(EVENTLOG_TAOBAO);
	read_fails(f, write_file(f, "tb.csv", "1,2,3,pv,1511544070\n1,2,3,like,1511544070\n"),
		   &options, "tb.csv:2: unknown behavior type 'like'", "pv, cart, fav or buy");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(interning_is_dense_in_first_seen_order),
	    cmocka_unit_test(sorting_is_stable),
	    cmocka_unit_test(streamrec_csv),
	    cmocka_unit_test(movielens_three_flavours),
	    cmocka_unit_test(retailrocket_and_taobao),
	    cmocka_unit_test(empty_files),
	    cmocka_unit_test(avro_with_a_foreign_writer_schema),
	    cmocka_unit_test(csv_and_avro_round_trips),
	    cmocka_unit_test(csv_writer_refuses_ids_with_commas),
	    cmocka_unit_test(errors_name_the_file_the_line_and_the_problem),
	};
	return cmocka_run_group_tests_name("020_eventlog", tests, setup, teardown);
}
