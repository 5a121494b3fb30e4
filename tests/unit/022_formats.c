/*
 * The public formats added for issue 13: MovieTweetings, the generic
 * `user,item,ts[,type]` CSV, every rating format's scale and threshold, and
 * how AUTO tells MovieTweetings from MovieLens.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eventlog.h"

struct fixture {
	char dir[64];
	char path[256];
	char errstr[512];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	assert_non_null(f);
	strcpy(f->dir, "/tmp/streamrec-formats-XXXXXX");
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

/* The head of MovieTweetings' ratings.dat: IMDb ids, 0-10 ratings, seconds. */
static const char movietweetings[] = "1::0114508::8::1381006850\n"
				     "2::0499549::9::1376753198\n"
				     "2::1305591::7::1376742507\n"
				     "3::0075314::1::1595468524\n"
				     "3::0102926::10::1590148016\n";

static void names_round_trip(void **state)
{
	(void)state;
	for (int i = 0; i < EVENTLOG_FORMAT_COUNT; i++) {
		enum eventlog_format back;
		const char *name = eventlog_format_name((enum eventlog_format)i);
		assert_non_null(name);
		assert_true(eventlog_format_from_name(name, &back));
		assert_int_equal(back, i);
		assert_non_null(strstr(eventlog_format_names(), name));
	}
	assert_null(eventlog_format_name(EVENTLOG_FORMAT_COUNT));
	assert_string_equal(eventlog_format_names(),
			    "auto|csv|avro|movielens|retailrocket|taobao|movietweetings|generic");
}

static void movietweetings_parses_with_its_own_threshold(void **state)
{
	struct fixture *f = *state;
	const char *path = write_file(f, "ratings.dat", movietweetings);
	struct event_log *log;

	for (int format = 0; format < 2; format++) {
		struct eventlog_read_options options =
		    with_format(format ? EVENTLOG_MOVIETWEETINGS : EVENTLOG_AUTO);
		log = read_ok(f, path, &options);
		/* default threshold 8 of 10: the 7 and the 1 are dropped */
		assert_int_equal(log->format, EVENTLOG_MOVIETWEETINGS);
		assert_true(log->min_rating == 8);
		assert_int_equal(log->count, 3);
		assert_event(log, 0, "1", "0114508", EVENT_PURCHASE, 1381006850000LL);
		assert_event(log, 1, "2", "0499549", EVENT_PURCHASE, 1376753198000LL);
		assert_event(log, 2, "3", "0102926", EVENT_PURCHASE, 1590148016000LL);
		eventlog_free(log);

		/* 0 is on the 0-10 scale and keeps every rating */
		options.min_rating = 0;
		options.rating_type = EVENT_VIEW;
		log = read_ok(f, path, &options);
		assert_int_equal(log->count, 5);
		assert_event(log, 3, "3", "0075314", EVENT_VIEW, 1595468524000LL);
		eventlog_free(log);
	}
}

static void rating_scales_are_stated_per_format(void **state)
{
	struct eventlog_rating_scale scale;
	(void)state;
	assert_true(eventlog_rating_scale(EVENTLOG_MOVIELENS, &scale));
	assert_true(scale.min == 0.5 && scale.max == 5 && scale.default_min_rating == 4);
	assert_string_equal(scale.label, "MovieLens");
	assert_non_null(scale.why);
	assert_true(eventlog_rating_scale(EVENTLOG_MOVIETWEETINGS, &scale));
	assert_true(scale.min == 0 && scale.max == 10 && scale.default_min_rating == 8);
	assert_string_equal(scale.label, "MovieTweetings");
	for (int i = 0; i < EVENTLOG_FORMAT_COUNT; i++)
		if (i != EVENTLOG_MOVIELENS && i != EVENTLOG_MOVIETWEETINGS)
			assert_false(eventlog_rating_scale((enum eventlog_format)i, &scale));
}

static void thresholds_off_the_scale_are_errors(void **state)
{
	struct fixture *f = *state;
	struct eventlog_read_options options = eventlog_read_options_default();
	struct event_log *log;
	const char *path;

	/* a 0-10 threshold for MovieLens names the threshold and the scale */
	path = write_file(f, "u.data", "196\t242\t3\t881250949\n186\t302\t4\t891717742\n");
	options.min_rating = 8;
	read_fails(f, path, &options, "u.data: minimum rating 8 is outside the MovieLens",
		   "scale 0.5 to 5");
	options.min_rating = 0;
	read_fails(f, path, &options, "minimum rating 0 is outside the MovieLens", "default is 4");
	options.min_rating = 5; /* the top of the scale is allowed */
	log = read_ok(f, path, &options);
	assert_int_equal(log->count, 0);
	eventlog_free(log);

	path = write_file(f, "ratings.dat", movietweetings);
	options.min_rating = 11;
	read_fails(f, path, &options,
		   "ratings.dat: minimum rating 11 is outside the MovieTweetings", "scale 0 to 10");
	options.min_rating = -1;
	read_fails(f, path, &options, "minimum rating -1", "default is 8");

	/* a threshold for a format without ratings */
	path = write_file(f, "g.csv", "u1,i1,1433221332\n");
	options.min_rating = 4;
	read_fails(f, path, &options, "g.csv: a minimum rating (4) was given",
		   "the generic format has no ratings");
	options = with_format(EVENTLOG_TAOBAO);
	options.min_rating = 4;
	read_fails(f, write_file(f, "UserBehavior.csv", ""), &options, "minimum rating (4)",
		   "taobao format has no ratings");
}

static void ratings_off_the_scale_are_errors_at_their_line(void **state)
{
	struct fixture *f = *state;
	struct eventlog_read_options options = with_format(EVENTLOG_MOVIELENS);

	/* MovieTweetings read as MovieLens: stopped, never filtered on the wrong scale */
	read_fails(f, write_file(f, "ratings.dat", movietweetings), &options,
		   "ratings.dat:1: rating 8 is outside the MovieLens scale 0.5 to 5",
		   "movietweetings");
	/* AUTO guessed MovieLens from a first line with a small id and rating */
	read_fails(
	    f, write_file(f, "mixed.dat", "1::114508::4::1381006850\n\n2::499549::9::1376753198\n"),
	    NULL, "mixed.dat:3: rating 9 is outside the MovieLens scale", NULL);
	options = with_format(EVENTLOG_MOVIETWEETINGS);
	read_fails(f, write_file(f, "mt.dat", "1::0114508::8::1381006850\n1::0114509::12::1\n"),
		   &options, "mt.dat:2: rating 12 is outside the MovieTweetings scale 0 to 10",
		   NULL);
	read_fails(f, write_file(f, "mt.dat", "1::0114508::8::1381006850\n1::0114509::8\n"),
		   &options, "mt.dat:2: expected 4 fields separated by '::'", "got 3");
	read_fails(f, write_file(f, "mt.dat", "1::0114508::great::1381006850\n"), &options,
		   "mt.dat:1: rating: expected a number", "'great'");
	read_fails(f, write_file(f, "mt.dat", "1::0114508::8::yesterday\n"), &options,
		   "mt.dat:1: timestamp: expected a whole number of seconds", "'yesterday'");
	read_fails(f, write_file(f, "mt.dat", "1\t0114508\t8\t1381006850\n"), &options,
		   "mt.dat:1: expected a MovieTweetings line", NULL);
}

static void auto_tells_movietweetings_from_movielens(void **state)
{
	struct fixture *f = *state;
	struct event_log *log;

	/* a MovieLens ratings.dat: small ids without leading zeros, 1-5 */
	log = read_ok(
	    f, write_file(f, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n"), NULL);
	assert_int_equal(log->format, EVENTLOG_MOVIELENS);
	assert_true(log->min_rating == 4);
	assert_int_equal(log->count, 1);
	eventlog_free(log);

	/* an IMDb id with a rating that MovieLens could have */
	log = read_ok(f, write_file(f, "ratings.dat", "7::0068646::5::1381006850\n"), NULL);
	assert_int_equal(log->format, EVENTLOG_MOVIETWEETINGS);
	assert_int_equal(log->count, 0);
	eventlog_free(log);

	/* an eight-digit IMDb id (no leading zero) but a rating above 5 */
	log = read_ok(f, write_file(f, "ratings.dat", "7::10872600::9::1640000000\n"), NULL);
	assert_int_equal(log->format, EVENTLOG_MOVIETWEETINGS);
	assert_int_equal(log->count, 1);
	eventlog_free(log);

	/* formats without ratings say so in the log */
	log = read_ok(f, write_file(f, "g.csv", "u,i,1\n"), NULL);
	assert_int_equal(log->format, EVENTLOG_GENERIC);
	assert_true(isnan(log->min_rating));
	eventlog_free(log);
}

static void generic_csv_with_and_without_header(void **state)
{
	struct fixture *f = *state;
	static const char *const files[] = {
	    "user,item,ts,type\nu1,i1,1433221332,view\nu2,i1,1433221340,PURCHASE\n"
	    "u1,i2,1433221350,add_to_cart\n",
	    "user_id,item_id,timestamp,event\r\nu1,i1,1433221332000,VIEW\r\n"
	    "u2,i1,1433221340000,purchase\r\n\r\nu1,i2,1433221350000,Add_To_Cart\r\n",
	    "u1,i1,1433221332,view\nu2,i1,1433221340,PURCHASE\nu1,i2,1433221350,add_to_cart\n",
	};
	struct event_log *log;

	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		const char *path = write_file(f, "events.csv", files[i]);
		for (int format = 0; format < 2; format++) {
			struct eventlog_read_options options =
			    with_format(format ? EVENTLOG_GENERIC : EVENTLOG_AUTO);
			log = read_ok(f, path, &options);
			assert_int_equal(log->format, EVENTLOG_GENERIC);
			assert_int_equal(log->count, 3);
			/* seconds and milliseconds give the same times */
			assert_event(log, 0, "u1", "i1", EVENT_VIEW, 1433221332000LL);
			assert_event(log, 1, "u2", "i1", EVENT_PURCHASE, 1433221340000LL);
			assert_event(log, 2, "u1", "i2", EVENT_ADD_TO_CART, 1433221350000LL);
			eventlog_free(log);
		}
	}

	/* three columns: every event is a VIEW; small values are seconds */
	log =
	    read_ok(f, write_file(f, "three.csv", "user,item,ts\na,x,0\nb,y,99999999999\n"), NULL);
	assert_int_equal(log->count, 2);
	assert_event(log, 0, "a", "x", EVENT_VIEW, 0);
	assert_event(log, 1, "b", "y", EVENT_VIEW, 99999999999000LL);
	eventlog_free(log);

	/* a header-only file, and an empty one when named */
	log = read_ok(f, write_file(f, "h.csv", "user,item,ts\n"), NULL);
	assert_int_equal(log->count, 0);
	eventlog_free(log);
	struct eventlog_read_options options = with_format(EVENTLOG_GENERIC);
	log = read_ok(f, write_file(f, "empty.csv", ""), &options);
	assert_int_equal(log->count, 0);
	eventlog_free(log);
}

/* One expected event of a file read. */
struct expected_event {
	const char *user, *item;
	enum event_type type;
	int64_t ts_ms;
};

/* A file as another system writes it, and what it reads as. */
struct foreign_file {
	const char *what, *name, *text;
	enum eventlog_format format; /* as given to the reader */
	size_t user_count;	     /* 0: not checked */
	size_t count;
	struct expected_event events[6];
};

static const struct foreign_file foreign_files[] = {
    {"REES46 (multi-category store): nine columns, empty ones among them, detected",
     "rees46.csv",
     "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,"
     "user_session\n"
     "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,"
     "72d76fde\n"
     "2019-10-01 00:00:04 UTC,cart,3900821,2053013552326770905,appliances.water_heater,aqua,"
     "33.20,554748717,9333dfbd\n"
     "2019-10-01 00:00:05 UTC,remove_from_cart,3900821,2053013552326770905,,aqua,33.20,"
     "554748717,9333dfbd\n"
     "2019-10-01 00:01:00 UTC,purchase,3900821,2053013552326770905,,aqua,33.20,554748717,"
     "9333dfbd\n",
     EVENTLOG_AUTO,
     0,
     4,
     {{"541312140", "44600062", EVENT_VIEW, 1569888000000LL},
      {"554748717", "3900821", EVENT_ADD_TO_CART, 1569888004000LL},
      {"554748717", "3900821", EVENT_REMOVE_FROM_CART, 1569888005000LL},
      {"554748717", "3900821", EVENT_PURCHASE, 1569888060000LL}}},
    {"REES46, named generic", "rees46.csv", NULL, EVENTLOG_GENERIC, 0, 4, {{0}}},
    {"Retailrocket's file, named generic: its vocabulary and columns",
     "rr.csv",
     "timestamp,visitorid,event,itemid,transactionid\n"
     "1433221332117,257597,view,355908,\n"
     "1433224214164,992329,addtocart,248676,\n"
     "1433221999827,111016,transaction,248676,4000\n",
     EVENTLOG_GENERIC,
     0,
     3,
     {{"257597", "355908", EVENT_VIEW, 1433221332117LL},
      {"992329", "248676", EVENT_ADD_TO_CART, 1433224214164LL},
      {"111016", "248676", EVENT_PURCHASE, 1433221999827LL}}},
    {"ISO 8601: offsets, fractions, Z, minutes only; names in any case",
     "iso.csv",
     "Time,User_ID,Product-Id,Action\n"
     "2019-10-01T02:00:00+02:00,a,x,pv\n"
     "2019-10-01T00:00:00.250Z,b,y,FAV\n"
     "2019-10-01 00:00,c,z,Add-To-Cart\n"
     "2019-09-30T19:30:00-0430,d,w,like\n"
     "2019-10-01T00:00:01 GMT,e,v,order\n"
     "2019-10-01T00:00:02,f,u,buy\n",
     EVENTLOG_AUTO,
     0,
     6,
     {{"a", "x", EVENT_VIEW, 1569888000000LL},
      {"b", "y", EVENT_FAVORITE, 1569888000250LL},
      {"c", "z", EVENT_ADD_TO_CART, 1569888000000LL},
      {"d", "w", EVENT_FAVORITE, 1569888000000LL},
      {"e", "v", EVENT_PURCHASE, 1569888001000LL},
      {"f", "u", EVENT_PURCHASE, 1569888002000LL}}},
    {"quoted fields (RFC 4180): commas and doubled quotes inside; lower-case z",
     "quoted.csv",
     "\"user\",\"item\",\"ts\",\"type\"\n"
     "\"Shoes, red\",i1,\"1700000000\",view\n"
     "\"a \"\"b\"\"\",\"i,2\",2023-11-14T22:13:21z,\"click\"\n",
     EVENTLOG_GENERIC,
     0,
     2,
     {{"Shoes, red", "i1", EVENT_VIEW, 1700000000000LL},
      {"a \"b\"", "i,2", EVENT_CLICK, 1700000001000LL}}},
    {"two columns for one role: the better name takes it",
     "both.csv",
     "session_id,user_id,item_id,date,timestamp\n"
     "s1,u1,i1,2019-10-01,1569888000\n"
     "s2,u1,i2,2019-10-01,1569888001\n",
     EVENTLOG_AUTO,
     1,
     2,
     {{"u1", "i1", EVENT_VIEW, 1569888000000LL}, {"u1", "i2", EVENT_VIEW, 1569888001000LL}}},
};

/*
 * Files as other systems write them: a header names the columns in any
 * order, other columns are skipped; ISO 8601 times; the event types by
 * their common names. An entry without text reads the one before it again
 * (under another format) and expects the same events.
 */
static void generic_csv_reads_named_columns_iso_times_and_common_types(void **state)
{
	struct fixture *f = *state;
	struct eventlog_read_options generic = with_format(EVENTLOG_GENERIC);
	size_t n = sizeof foreign_files / sizeof foreign_files[0];

	for (size_t i = 0; i < n; i++) {
		const struct foreign_file *file = &foreign_files[i];
		const struct foreign_file *expect = file->text != NULL ? file : &foreign_files[i - 1];
		struct eventlog_read_options options = with_format(file->format);
		struct event_log *log;

		print_message("%s\n", file->what);
		log = read_ok(f, write_file(f, file->name, expect->text), &options);
		assert_int_equal(log->format, EVENTLOG_GENERIC);
		assert_int_equal(log->count, expect->count);
		if (expect->user_count != 0)
			assert_int_equal(log->user_count, expect->user_count);
		for (size_t e = 0; e < expect->count; e++)
			assert_event(log, e, expect->events[e].user, expect->events[e].item,
				     expect->events[e].type, expect->events[e].ts_ms);
		eventlog_free(log);
	}

	/* a header without a time column is not one; bad times and types name the line */
	read_fails(f, write_file(f, "g.csv", "user,item,when\nu1,i1,1433221332\n"), &generic,
		   "g.csv:1: ts: expected", "'when'");
	read_fails(f, write_file(f, "g.csv", "user,item,ts\nu1,i1,2019-13-01 00:00:00\n"),
		   &generic, "g.csv:2: ts: expected", "ISO 8601");
	read_fails(f, write_file(f, "g.csv", "user,item,ts\nu1,i1,2019-02-30T00:00:00Z\n"),
		   &generic, "g.csv:2: ts: expected", "'2019-02-30T00:00:00Z'");
	read_fails(f, write_file(f, "g.csv", "user,item,ts\nu1,i1,2019-10-01 00:00:00 CET\n"),
		   &generic, "g.csv:2: ts: expected", "'2019-10-01 00:00:00 CET'");
	read_fails(f, write_file(f, "g.csv", "ts,item,user,type\n1433221332,i1,u1,returned\n"),
		   &generic, "g.csv:2: unknown event type 'returned'", "transaction");
	read_fails(f, write_file(f, "g.csv", "ts,item,user\n1433221332,i1\n"), &generic,
		   "g.csv:2: expected 3 fields", "got 2");
}

static void generic_csv_errors_name_file_and_line(void **state)
{
	struct fixture *f = *state;
	struct eventlog_read_options options = with_format(EVENTLOG_GENERIC);

	read_fails(f, write_file(f, "g.csv", "user,item,ts,type\nu1,i1,1433221332,BUYY\n"), NULL,
		   "g.csv:2: unknown event type 'BUYY'", "lower-case keys");
	read_fails(f, write_file(f, "g.csv", "u1,i1,1433221332\nu1,i2,1433221333,view\n"), NULL,
		   "g.csv:2: expected 3 fields separated by ','", "got 4");
	read_fails(f, write_file(f, "g.csv", "u1,i1,1433221332\nu1,i2,noon\n"), NULL,
		   "g.csv:2: ts: expected a whole number", "'noon'");
	read_fails(f, write_file(f, "g.csv", "u1,i1,1433221332\n\nu1,i2,1433221333000\n"), NULL,
		   "g.csv:3: ts 1433221333000 is in milliseconds, but line 1 was in seconds",
		   "1e11");
	read_fails(f, write_file(f, "g.csv", "u1,i1,1433221332000\nu1,i2,1433221333\n"), NULL,
		   "g.csv:2: ts 1433221333 is in seconds, but line 1 was in milliseconds", NULL);
	read_fails(f, write_file(f, "g.csv", "u1,,1433221332\n"), &options,
		   "g.csv:1: item id is empty", NULL);
	read_fails(f, write_file(f, "g.csv", "u1;i1;1433221332\n"), &options,
		   "g.csv:1: expected 3 or 4 fields separated by ','", "got 1");
	read_fails(f, write_file(f, "g.csv", "user,item,ts\nu1,i1\n"), &options,
		   "g.csv:2: expected 3 fields", "got 2");
	/* AUTO does not take a line it cannot read as one of its formats */
	read_fails(f, write_file(f, "g.csv", "u1,i1,noon\n"), NULL, "g.csv:1: cannot detect",
		   "user,item,ts[,type]");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(names_round_trip),
	    cmocka_unit_test(movietweetings_parses_with_its_own_threshold),
	    cmocka_unit_test(rating_scales_are_stated_per_format),
	    cmocka_unit_test(thresholds_off_the_scale_are_errors),
	    cmocka_unit_test(ratings_off_the_scale_are_errors_at_their_line),
	    cmocka_unit_test(auto_tells_movietweetings_from_movielens),
	    cmocka_unit_test(generic_csv_with_and_without_header),
	    cmocka_unit_test(generic_csv_errors_name_file_and_line),
	    cmocka_unit_test(generic_csv_reads_named_columns_iso_times_and_common_types),
	};
	return cmocka_run_group_tests_name("022_formats", tests, setup, teardown);
}
