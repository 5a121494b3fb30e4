/*
 * The direct read of UserEvents (bytes parsed in place) and the generic one
 * (Avro C's generic value) answer every message alike: the same event, or
 * the same refusal with the same detail. Random events with every optional
 * field, and each of them mangled (bytes flipped, cut, added), in both
 * framings; a writer whose enum lists other symbols is read directly and
 * mapped, one whose fields come in another order is left to the generic read.
 * The direct write of Recommendations gives Avro C's bytes exactly, in both
 * framings and both schema versions written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "testutil.h"

#define NOW_MS  1700000000000LL
#define EVENTS  4000
#define MANGLES 12

struct fixture {
	struct codec *direct[2];  /* raw, Confluent (schema 7) */
	struct codec *generic[2]; /* the same, no_direct_read */
	struct codec_buf buf;
};

static struct codec *new_codec(enum codec_framing framing, bool no_direct_read)
{
	char errstr[256];
	struct codec_config config = {
	    .framing = framing, .user_event_schema_id = 7, .no_direct_read = no_direct_read};
	struct codec *codec = codec_new(&config, errstr, sizeof errstr);
	assert_non_null(codec);
	if (framing == CODEC_FRAMING_CONFLUENT)
		assert_int_equal(codec_register_schema(codec, 7, codec_schema_json("UserEvent"),
						       errstr, sizeof errstr),
				 0);
	return codec;
}

static int setup(void **state)
{
	static struct fixture f;
	memset(&f, 0, sizeof f);
	for (int c = 0; c < 2; c++) {
		enum codec_framing framing = c == 0 ? CODEC_FRAMING_RAW : CODEC_FRAMING_CONFLUENT;
		f.direct[c] = new_codec(framing, false);
		f.generic[c] = new_codec(framing, true);
	}
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	for (int c = 0; c < 2; c++) {
		codec_free(f->direct[c]);
		codec_free(f->generic[c]);
	}
	codec_buf_free(&f->buf);
	return 0;
}

static uint64_t next(uint64_t *s)
{
	uint64_t x = (*s += 0x9e3779b97f4a7c15ULL);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Random UTF-8 of 1..max bytes (ASCII, 2-, 3- and 4-byte characters). */
static void random_id(uint64_t *s, char *dst, size_t max)
{
	static const char *const pieces[] = {"a", "Z", "7", "-", "é", "ß", "€", "中", "😀"};
	size_t want = 1 + next(s) % (next(s) % 4 == 0 ? max : 12), len = 0;
	while (len < want) {
		const char *p = pieces[next(s) % (sizeof pieces / sizeof *pieces)];
		size_t n = strlen(p);
		if (len + n > max)
			break;
		memcpy(dst + len, p, n);
		len += n;
	}
	if (len == 0)
		dst[len++] = 'x';
	dst[len] = '\0';
}

static struct user_event random_event(uint64_t *s)
{
	struct user_event ev;
	memset(&ev, 0, sizeof ev);
	random_id(s, ev.event_id, CODEC_ID_MAX_BYTES);
	random_id(s, ev.user_id, CODEC_ID_MAX_BYTES);
	random_id(s, ev.item_id, CODEC_ID_MAX_BYTES);
	ev.type = (enum event_type)(next(s) % EVENT_TYPE_COUNT);
	/* now, the past, the far past, up to a day ahead (refused past a limit) */
	switch (next(s) % 4) {
	case 0: ev.ts_ms = NOW_MS; break;
	case 1: ev.ts_ms = (int64_t)(next(s) % (uint64_t)NOW_MS); break;
	case 2: ev.ts_ms = (int64_t)(next(s) % 1000); break;
	default: ev.ts_ms = NOW_MS + (int64_t)(next(s) % (3 * 86400000LL)); break;
	}
	if ((ev.has_session_id = next(s) % 2))
		random_id(s, ev.session_id, CODEC_ID_MAX_BYTES);
	if ((ev.has_quantity = next(s) % 2)) /* some beyond a 4-byte varint */
		ev.quantity = (int32_t)(next(s) % 3 == 0 ? next(s) % 0x7fffffff : next(s) % 20);
	if ((ev.has_price = next(s) % 2))
		ev.price = next(s) % 5 == 0 ? -1.5 : (double)(next(s) % 100000) / 100.0;
	if ((ev.has_list_id = next(s) % 3 == 0)) {
		if (next(s) % 4 == 0)
			ev.list_id[0] = '\0'; /* "": names no list */
		else
			random_id(s, ev.list_id, CODEC_ID_MAX_BYTES);
	}
	return ev;
}

/* One message through both reads of one framing: the same answer. */
static void expect_same(struct fixture *f, int c, const uint8_t *bytes, size_t len,
			size_t *accepted)
{
	struct user_event a, b;
	struct codec_error ea, eb;
	/* a copy of its exact size: a read past its end is ASan's to see */
	uint8_t *exact = malloc(len > 0 ? len : 1);
	assert_non_null(exact);
	memcpy(exact, bytes, len);
	memset(&a, 0xa5, sizeof a);
	memset(&b, 0x5a, sizeof b);
	int ra = codec_decode_user_event(f->direct[c], exact, len, NOW_MS, &a, &ea);
	int rb = codec_decode_user_event(f->generic[c], exact, len, NOW_MS, &b, &eb);
	free(exact);
	if (ra != rb)
		fail_msg("framing %d, %zu bytes: direct %d (%s), generic %d (%s: %s)", c, len, ra,
			 ea.detail, rb, codec_reason_name(eb.reason), eb.detail);
	assert_int_equal(ea.reason, eb.reason);
	assert_string_equal(ea.detail, eb.detail);
	if (ra == 0) {
		/* a search's text and vector are borrowed from each codec: compared
		 * by content; then every field, and every byte of the id buffers */
		assert_int_equal(a.search_text != NULL, b.search_text != NULL);
		assert_int_equal(a.search_text_len, b.search_text_len);
		if (a.search_text != NULL)
			assert_memory_equal(a.search_text, b.search_text, a.search_text_len);
		assert_int_equal(a.search_vector != NULL, b.search_vector != NULL);
		assert_int_equal(a.search_dim, b.search_dim);
		if (a.search_vector != NULL && a.search_dim > 0)
			assert_memory_equal(a.search_vector, b.search_vector,
					    a.search_dim * sizeof *a.search_vector);
		a.search_text = b.search_text = NULL;
		a.search_vector = b.search_vector = NULL;
		assert_memory_equal(&a, &b, sizeof a);
		++*accepted;
	}
}

static void both_reads_answer_alike(void **state)
{
	struct fixture *f = *state;
	uint64_t seed = 12345;
	size_t accepted = 0, tried = 0;
	for (int i = 0; i < EVENTS; i++) {
		struct user_event ev = random_event(&seed);
		for (int c = 0; c < 2; c++) {
			char errstr[256];
			enum codec_framing framing =
			    c == 0 ? CODEC_FRAMING_RAW : CODEC_FRAMING_CONFLUENT;
			assert_int_equal(codec_encode_user_event(f->direct[c], &ev, framing,
								 &f->buf, errstr, sizeof errstr),
					 0);
			uint8_t message[2048];
			size_t len = f->buf.len;
			assert_true(len + 8 <= sizeof message);
			memcpy(message, f->buf.data, len);
			expect_same(f, c, message, len, &accepted);
			tried++;
			for (int m = 0; m < MANGLES; m++) {
				uint8_t mangled[2048];
				size_t mlen = len, at = next(&seed) % len;
				memcpy(mangled, message, len);
				switch (next(&seed) % 5) {
				case 0: mangled[at] ^= (uint8_t)(1u << (next(&seed) % 8)); break;
				case 1: mangled[at] = (uint8_t)next(&seed); break;
				case 2: mlen = at; break; /* cut */
				case 3:                   /* a byte more, anywhere */
					memmove(mangled + at + 1, mangled + at, len - at);
					mangled[at] = (uint8_t)next(&seed);
					mlen = len + 1;
					break;
				default: mangled[len] = 0; mlen = len + 1; /* trailing */
				}
				expect_same(f, c, mangled, mlen, &accepted);
				tried++;
			}
		}
	}
	/* both accepted most whole messages, and refused many mangled ones */
	assert_true(accepted > (size_t)EVENTS);
	assert_true(accepted < tried);
	/* the daemon's codecs read directly: every accepted whole message but the
	 * ones the direct read leaves to the generic one was read directly */
	assert_true(codec_direct_reads(f->direct[0]) > (size_t)EVENTS / 2);
	assert_true(codec_direct_reads(f->direct[1]) > (size_t)EVENTS / 2);
	assert_int_equal(codec_direct_reads(f->generic[0]), 0);
	assert_int_equal(codec_direct_reads(f->generic[1]), 0);
}

/* ---- crafted messages: Avro written by hand, every field's edge cases ---- */

struct writer {
	uint8_t bytes[4096];
	size_t len;
};

/* A zig-zag varint, padded to `width` bytes when wider than it needs
 * (non-minimal, as a writer may send). */
static void put_varint(struct writer *w, int64_t v, int width)
{
	uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	int n = 0;
	do {
		uint8_t b = z & 0x7f;
		z >>= 7;
		n++;
		if (z != 0 || n < width)
			b |= 0x80;
		w->bytes[w->len++] = b;
	} while (z != 0 || n < width);
}

static int varint_width(uint64_t *s)
{
	return next(s) % 8 == 0 ? (int)(next(s) % 11) : 0; /* up to 10: past Avro C's limit */
}

/* A string field: usually a valid id, else empty, too long, not UTF-8,
 * holding a NUL, or declaring more bytes than follow. */
static void put_string(struct writer *w, uint64_t *s)
{
	char id[CODEC_ID_MAX_BYTES + 1];
	size_t len;
	random_id(s, id, CODEC_ID_MAX_BYTES);
	len = strlen(id);
	switch (next(s) % 12) {
	case 0: len = 0; break;
	case 1: /* 257..300 bytes */
		len = CODEC_ID_MAX_BYTES + 1 + next(s) % 44;
		put_varint(w, (int64_t)len, varint_width(s));
		for (size_t i = 0; i < len; i++)
			w->bytes[w->len++] = 'L';
		return;
	case 2: id[next(s) % len] = (char)0xff; break;
	case 3: id[next(s) % len] = '\0'; break;
	case 4: put_varint(w, -(int64_t)len, 0); return;
	default: break;
	}
	put_varint(w, (int64_t)len, varint_width(s));
	memcpy(w->bytes + w->len, id, len);
	w->len += len;
}

/* An optional field's branch: mostly null or the value, sometimes neither. */
static int put_branch(struct writer *w, uint64_t *s)
{
	int64_t branch = next(s) % 16 == 0 ? (int64_t)(next(s) % 5) - 1 : (int64_t)(next(s) % 2);
	put_varint(w, branch, varint_width(s));
	return (int)branch;
}

static size_t craft(uint64_t *s, uint8_t *out)
{
	struct writer w = {.len = 0};
	static const int64_t longs[] = {
	    0,         -1,        1,      1000, NOW_MS, NOW_MS + 86400000, NOW_MS + 86400001,
	    INT64_MAX, INT64_MIN, -NOW_MS};
	static const int64_t ints[] = {
	    0,         -1,        1,         7,         100000,
	    268435455, 268435456, INT32_MAX, INT32_MIN, (int64_t)INT32_MAX + 1};
	for (int f = 0; f < 3; f++)
		put_string(&w, s);
	put_varint(&w, (int64_t)(next(s) % (EVENT_TYPE_COUNT + 2)) - (next(s) % 9 == 0),
		   varint_width(s));
	put_varint(&w, (int64_t)((uint64_t)longs[next(s) % 10] + next(s) % 3), varint_width(s));
	if (put_branch(&w, s) == 1)
		put_string(&w, s);
	if (put_branch(&w, s) == 1)
		put_varint(&w, ints[next(s) % 10], varint_width(s));
	if (put_branch(&w, s) == 1) {
		static const double prices[] = {0.0, -0.0, 9.99, -1.0, 1e308, 5e-324};
		double price = prices[next(s) % 6];
		uint64_t bits;
		if (next(s) % 8 == 0)
			price = next(s) % 2 ? 1.0 / 0.0 : 0.0 / 0.0;
		memcpy(&bits, &price, sizeof bits);
		for (int i = 0; i < 8; i++)
			w.bytes[w.len++] = (uint8_t)(bits >> (8 * i));
	}
	if (put_branch(&w, s) == 1)
		put_string(&w, s);
	if (put_branch(&w, s) == 1) { /* a search: text only */
		put_varint(&w, 1, 0);
		put_string(&w, s);
		put_varint(&w, 0, 0);
	}
	if (next(s) % 10 == 0)
		w.bytes[w.len++] = 0; /* one byte too many */
	if (next(s) % 10 == 0)
		w.len = next(s) % (w.len + 1); /* cut */
	memcpy(out, w.bytes, w.len);
	return w.len;
}

static void crafted_messages_get_the_same_answer(void **state)
{
	struct fixture *f = *state;
	uint64_t seed = 777;
	size_t accepted = 0;
	uint8_t message[4096 + 5] = {0, 0, 0, 0, 7};
	size_t direct_before = codec_direct_reads(f->direct[0]) + codec_direct_reads(f->direct[1]);
	for (int i = 0; i < 20 * EVENTS; i++) {
		size_t len = craft(&seed, message + 5);
		expect_same(f, 0, message + 5, len, &accepted);
		expect_same(f, 1, message, len + 5, &accepted);
	}
	/* valid ones among them, and the rest refused alike */
	assert_true(accepted > 100);
	assert_true(accepted < 2 * 20 * EVENTS);
	/* and many valid ones were read directly (a search, a padded union
	 * index or a 10-byte varint are the generic read's: about half) */
	size_t direct =
	    codec_direct_reads(f->direct[0]) + codec_direct_reads(f->direct[1]) - direct_before;
	assert_true(direct > accepted / 8);
}

/* Our schema with its enum's symbols in another order, and one more. */
static char *reordered_enum(void)
{
	static const char ours[] = "\"IMPRESSION\", \"VIEW\", \"CLICK\", \"ADD_TO_CART\", "
				   "\"REMOVE_FROM_CART\", \"FAVORITE\", \"PURCHASE\"";
	static const char theirs[] = "\"PURCHASE\", \"SHARE\", \"VIEW\", \"IMPRESSION\", "
				     "\"CLICK\", \"ADD_TO_CART\", \"REMOVE_FROM_CART\", "
				     "\"FAVORITE\"";
	const char *schema = codec_schema_json("UserEvent");
	const char *at = strstr(schema, ours);
	assert_non_null(at);
	char *out = malloc(strlen(schema) + sizeof theirs);
	assert_non_null(out);
	size_t head = (size_t)(at - schema);
	memcpy(out, schema, head);
	strcpy(out + head, theirs);
	strcat(out, at + strlen(ours));
	return out;
}

/* A writer with our fields in another order, and ts an int. */
static const char reordered_fields[] =
    "{\"type\":\"record\",\"name\":\"UserEvent\",\"namespace\":\"streamrec\",\"fields\":["
    "{\"name\":\"user_id\",\"type\":\"string\"},{\"name\":\"event_id\",\"type\":\"string\"},"
    "{\"name\":\"item_id\",\"type\":\"string\"},"
    "{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"EventType\",\"symbols\":["
    "\"VIEW\",\"PURCHASE\"]}},"
    "{\"name\":\"ts\",\"type\":\"int\"}]}";

static void decode_with(const char *schema, int32_t id, const char *const *fields, size_t count,
			struct user_event *out, size_t *direct_reads)
{
	char errstr[256];
	struct codec_config config = {.framing = CODEC_FRAMING_CONFLUENT};
	struct codec *codec = codec_new(&config, errstr, sizeof errstr);
	assert_non_null(codec);
	assert_int_equal(codec_register_schema(codec, id, schema, errstr, sizeof errstr), 0);
	uint8_t message[512] = {0, 0, 0, 0, (uint8_t)id};
	long len =
	    testutil_write_with_schema(schema, fields, count, message + 5, sizeof message - 5);
	assert_true(len > 0);
	struct codec_error err;
	if (codec_decode_user_event(codec, message, (size_t)len + 5, NOW_MS, out, &err) != 0)
		fail_msg("%s: %s", codec_reason_name(err.reason), err.detail);
	*direct_reads = codec_direct_reads(codec);
	codec_free(codec);
}

static void other_writers_are_mapped_or_left_to_the_generic_read(void **state)
{
	(void)state;
	struct user_event ev;
	size_t direct;
	const char *const enum_fields[] = {
	    "event_id=e1",   "user_id=u1", "item_id=i1", "type=PURCHASE", "ts=1000",
	    "session_id=s1", "quantity=3", "price=2.5",  "list_id=null",  "search=null"};
	char *schema = reordered_enum();
	decode_with(schema, 9, enum_fields, 10, &ev, &direct);
	free(schema);
	assert_int_equal(direct, 1); /* read directly, its symbol mapped by name */
	assert_int_equal(ev.type, EVENT_PURCHASE);
	assert_string_equal(ev.session_id, "s1");
	assert_int_equal(ev.quantity, 3);
	assert_true(ev.price == 2.5);

	const char *const other_fields[] = {"user_id=u2", "event_id=e2", "item_id=i2", "type=VIEW",
					    "ts=2000"};
	decode_with(reordered_fields, 10, other_fields, 5, &ev, &direct);
	assert_int_equal(direct, 0); /* not laid out as ours */
	assert_string_equal(ev.user_id, "u2");
	assert_string_equal(ev.event_id, "e2");
	assert_int_equal(ev.type, EVENT_VIEW);
	assert_int_equal(ev.ts_ms, 2000);
}

/* A codec writing Recommendations of schema version `version`, directly or not. */
static struct codec *writer_codec(int version, bool no_direct_write)
{
	char errstr[256];
	struct codec_config config = {.framing = CODEC_FRAMING_AUTO,
				      .recommendation_schema_id = 0x01020304,
				      .recommendation_version = version,
				      .no_direct_write = no_direct_write};
	struct codec *codec = codec_new(&config, errstr, sizeof errstr);
	assert_non_null(codec);
	return codec;
}

/* A long at the edges of the varint widths now and then, else anything. */
static int64_t random_long(uint64_t *s)
{
	static const int64_t edges[] = {0, -1, 1, 63, -64, 64, 8191, -8192, INT64_MAX, INT64_MIN};
	return next(s) % 3 == 0 ? edges[next(s) % (sizeof edges / sizeof *edges)]
				: (int64_t)(next(s) >> (next(s) % 64));
}

#define RECS      3000
#define REC_ITEMS 70

static void both_writes_give_the_same_bytes(void **state)
{
	(void)state;
	static char ids[REC_ITEMS][3][300];
	static char user[300], variant[40], list_id[40];
	struct scored_item items[REC_ITEMS];
	struct codec_buf direct = {0}, generic = {0};
	char errstr[256];
	uint64_t s = 99;
	for (int version = 1; version <= 2; version++) {
		struct codec *d = writer_codec(version, false), *g = writer_codec(version, true);
		for (int n = 0; n < RECS; n++) {
			random_id(&s, user, next(&s) % 2 ? 299 : 20);
			random_id(&s, variant, 39);
			random_id(&s, list_id, 39);
			size_t count = next(&s) % 4 == 0 ? 0 : next(&s) % REC_ITEMS;
			for (size_t i = 0; i < count; i++) {
				random_id(&s, ids[i][0], next(&s) % 8 == 0 ? 299 : 30);
				random_id(&s, ids[i][1], 12);
				random_id(&s, ids[i][2], 30);
				uint32_t bits = (uint32_t)next(&s);
				float score;
				memcpy(&score, &bits, sizeof score); /* NaNs and infinities too */
				items[i] = (struct scored_item){
				    .item_id = ids[i][0],
				    .score = score,
				    .reason = next(&s) % 3 ? ids[i][1] : NULL,
				    .because_item = next(&s) % 2 ? ids[i][2] : NULL};
			}
			struct recommendation rec = {.user_id = user,
						     .variant = variant,
						     .model_step = random_long(&s),
						     .generated_at_ms = random_long(&s),
						     .trigger_event_ts_ms = random_long(&s),
						     .item_count = count,
						     .items = items,
						     .list_id = next(&s) % 5 ? list_id : NULL};
			for (int framing = 0; framing < 2; framing++) {
				enum codec_framing f =
				    framing ? CODEC_FRAMING_CONFLUENT : CODEC_FRAMING_RAW;
				assert_int_equal(codec_encode_recommendation(d, &rec, f, &direct,
									     errstr, sizeof errstr),
						 0);
				assert_int_equal(codec_encode_recommendation(g, &rec, f, &generic,
									     errstr, sizeof errstr),
						 0);
				assert_int_equal(direct.len, generic.len);
				assert_memory_equal(direct.data, generic.data, direct.len);
			}
		}
		/* a list with an item without an id is refused by both, with the same words */
		items[0] = (struct scored_item){.item_id = NULL, .score = 1};
		struct recommendation bad = {
		    .user_id = "u", .variant = "v", .item_count = 1, .items = items};
		char direct_why[256], generic_why[256];
		assert_int_equal(codec_encode_recommendation(d, &bad, CODEC_FRAMING_RAW, &direct,
							     direct_why, sizeof direct_why),
				 -1);
		assert_int_equal(codec_encode_recommendation(g, &bad, CODEC_FRAMING_RAW, &generic,
							     generic_why, sizeof generic_why),
				 -1);
		assert_string_equal(direct_why, generic_why);
		codec_free(d);
		codec_free(g);
	}
	codec_buf_free(&direct);
	codec_buf_free(&generic);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(both_reads_answer_alike),
	    cmocka_unit_test(crafted_messages_get_the_same_answer),
	    cmocka_unit_test(other_writers_are_mapped_or_left_to_the_generic_read),
	    cmocka_unit_test(both_writes_give_the_same_bytes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
