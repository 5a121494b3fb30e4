/*
 * libFuzzer target for the UserEvent decoder, in every framing, with a
 * newer writer schema registered so the resolution path is fuzzed too, and
 * differential: each framing's codec is paired with one that reads through
 * the generic reader alone (no_direct_read), and both must give the same
 * answer (the same event, or the same reason and detail).
 * `make fuzz` runs it for FUZZ_SECONDS over tests/fuzz/corpus/user_event.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

static const char newer_writer[] =
    "{\"type\":\"record\",\"name\":\"UserEvent\",\"namespace\":\"streamrec\",\"fields\":["
    "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"extra\",\"type\":{\"type\":"
    "\"array\",\"items\":\"null\"}},{\"name\":\"user_id\",\"type\":\"string\"},"
    "{\"name\":\"item_id\",\"type\":[\"null\",\"string\"]},"
    "{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"EventType\",\"symbols\":"
    "[\"RETURN\",\"PURCHASE\",\"VIEW\"]}},{\"name\":\"ts\",\"type\":\"int\"},"
    "{\"name\":\"price\",\"type\":\"float\"}]}";

static struct codec *codecs[3], *generic[3];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void free_codecs(void)
{
	for (int f = 0; f < 3; f++) {
		codec_free(codecs[f]);
		codec_free(generic[f]);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char errstr[256];
	(void)argc;
	(void)argv;
	for (int c = 0; c < 6; c++) {
		struct codec_config config = {.framing = (enum codec_framing)(c % 3),
					      .no_direct_read = c >= 3};
		struct codec **codec = c < 3 ? &codecs[c] : &generic[c - 3];
		*codec = codec_new(&config, errstr, sizeof errstr);
		if (*codec == NULL ||
		    codec_register_schema(*codec, 1, codec_schema_json("UserEvent"), errstr,
					  sizeof errstr) != 0 ||
		    codec_register_schema(*codec, 2, newer_writer, errstr, sizeof errstr) != 0) {
			fprintf(stderr, "fuzz setup: %s\n", errstr);
			abort();
		}
	}
	atexit(free_codecs);
	return 0;
}

/* The direct and the generic read answered alike (borrowed search parts by content). */
static void expect_same(int rc, struct user_event *a, const struct codec_error *ea, int rc_b,
			struct user_event *b, const struct codec_error *eb)
{
	if (rc != rc_b || ea->reason != eb->reason || strcmp(ea->detail, eb->detail) != 0)
		abort();
	if (rc != 0)
		return;
	if ((a->search_text == NULL) != (b->search_text == NULL) ||
	    a->search_text_len != b->search_text_len ||
	    (a->search_text != NULL &&
	     memcmp(a->search_text, b->search_text, a->search_text_len) != 0) ||
	    (a->search_vector == NULL) != (b->search_vector == NULL) ||
	    a->search_dim != b->search_dim ||
	    (a->search_vector != NULL &&
	     memcmp(a->search_vector, b->search_vector, a->search_dim * sizeof(float)) != 0))
		abort();
	a->search_text = b->search_text = NULL;
	a->search_vector = b->search_vector = NULL;
	if (memcmp(a, b, sizeof *a) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct user_event event, generic_event;
	struct recommendation rec;
	struct codec_error err, generic_err;
	for (int f = 0; f < 3; f++) {
		int rc =
		    codec_decode_user_event(codecs[f], data, size, 1700000000000LL, &event, &err);
		int rc_generic = codec_decode_user_event(generic[f], data, size, 1700000000000LL,
							 &generic_event, &generic_err);
		expect_same(rc, &event, &err, rc_generic, &generic_event, &generic_err);
		if (rc == 0) {
			/* a decoded event always honours the documented limits */
			if (strlen(event.user_id) == 0 ||
			    strlen(event.user_id) > CODEC_ID_MAX_BYTES ||
			    !codec_utf8_valid(event.item_id, strlen(event.item_id)) ||
			    event.ts_ms < 0 || (unsigned)event.type >= EVENT_TYPE_COUNT)
				abort();
		} else if (err.reason <= CODEC_OK || err.reason >= CODEC_REASON_COUNT) {
			abort();
		}
	}
	codec_decode_recommendation(codecs[CODEC_FRAMING_RAW], data, size, &rec, &err);
	return 0;
}
