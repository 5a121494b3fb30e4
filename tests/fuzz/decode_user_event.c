/*
 * libFuzzer target for the UserEvent decoder, in every framing, with a
 * newer writer schema registered so the resolution path is fuzzed too.
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

static struct codec *codecs[3];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void free_codecs(void)
{
	for (int f = 0; f < 3; f++)
		codec_free(codecs[f]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char errstr[256];
	(void)argc;
	(void)argv;
	for (int f = 0; f < 3; f++) {
		struct codec_config config = {.framing = (enum codec_framing)f};
		codecs[f] = codec_new(&config, errstr, sizeof errstr);
		if (codecs[f] == NULL ||
		    codec_register_schema(codecs[f], 1, codec_schema_json("UserEvent"), errstr,
					  sizeof errstr) != 0 ||
		    codec_register_schema(codecs[f], 2, newer_writer, errstr, sizeof errstr) != 0) {
			fprintf(stderr, "fuzz setup: %s\n", errstr);
			abort();
		}
	}
	atexit(free_codecs);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct user_event event;
	struct recommendation rec;
	struct codec_error err;
	for (int f = 0; f < 3; f++) {
		if (codec_decode_user_event(codecs[f], data, size, 1700000000000LL, &event, &err) ==
		    0) {
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
