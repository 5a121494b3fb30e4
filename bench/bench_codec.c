/*
 * Codec benchmark: UserEvent decode rates, the daemon's (the direct read of
 * a writer laid out as ours) next to the generic one (Avro C's generic
 * value, our resolution and validation over it) and Avro C's bare generic
 * read of the same bytes, then the Recommendation encode rate, in one run.
 * Prints medians of several runs.
 */
#include <avro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "bench.h"

#define RUNS   7
#define EVENTS 200000

int main(void)
{
	char errstr[256];
	struct codec *codec = codec_new(NULL, errstr, sizeof errstr);
	struct codec_config generic_config = {.no_direct_read = true, .no_direct_write = true};
	struct codec *generic = codec_new(&generic_config, errstr, sizeof errstr);
	struct codec_buf buf = {0};
	uint8_t *messages;
	size_t *offsets, *lengths, total = 0;
	double decode_rate[RUNS], generic_rate[RUNS], bare_rate[RUNS], encode_rate[RUNS],
	    generic_encode_rate[RUNS];

	if (codec == NULL || generic == NULL) {
		fprintf(stderr, "bench: %s\n", errstr);
		return 1;
	}
	messages = malloc((size_t)EVENTS * 128);
	offsets = malloc(sizeof *offsets * EVENTS);
	lengths = malloc(sizeof *lengths * EVENTS);
	for (int i = 0; i < EVENTS; i++) {
		struct user_event ev;
		memset(&ev, 0, sizeof ev);
		snprintf(ev.event_id, sizeof ev.event_id, "ev-%d", i);
		snprintf(ev.user_id, sizeof ev.user_id, "user-%d", i % 100000);
		snprintf(ev.item_id, sizeof ev.item_id, "item-%d", (i * 7919) % 100000);
		ev.type = (enum event_type)(i % EVENT_TYPE_COUNT);
		ev.ts_ms = 1700000000000LL + i;
		if (codec_encode_user_event(codec, &ev, CODEC_FRAMING_RAW, &buf, errstr,
					    sizeof errstr)) {
			fprintf(stderr, "bench: %s\n", errstr);
			return 1;
		}
		offsets[i] = total;
		lengths[i] = buf.len;
		memcpy(messages + total, buf.data, buf.len);
		total += buf.len;
	}

	avro_schema_t schema;
	const char *json = codec_schema_json("UserEvent");
	avro_schema_from_json_length(json, strlen(json), &schema);
	avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
	avro_value_t value;
	avro_generic_value_new(iface, &value);
	avro_reader_t reader = avro_reader_memory(NULL, 0);

	struct scored_item items[20];
	char ids[20][16];
	for (int k = 0; k < 20; k++) {
		snprintf(ids[k], sizeof ids[k], "item-%d", k * 31);
		items[k].item_id = ids[k];
		items[k].score = 1.0f / (float)(k + 1);
		items[k].reason = "taste";
		items[k].because_item = NULL;
	}
	struct recommendation rec = {"user-1", "control", 1, 2, 3, 20, items, "0123456789abcdef"};

	for (int run = 0; run < RUNS; run++) {
		struct user_event ev;
		struct codec_error err;
		double t0 = now_s();
		for (int i = 0; i < EVENTS; i++)
			if (codec_decode_user_event(codec, messages + offsets[i], lengths[i], 0,
						    &ev, &err))
				abort();
		double t1 = now_s();
		for (int i = 0; i < EVENTS; i++)
			if (codec_decode_user_event(generic, messages + offsets[i], lengths[i], 0,
						    &ev, &err))
				abort();
		double t1b = now_s();
		for (int i = 0; i < EVENTS; i++) {
			avro_reader_memory_set_source(reader, (const char *)messages + offsets[i],
						      (int64_t)lengths[i]);
			if (avro_value_read(reader, &value))
				abort();
		}
		double t2 = now_s();
		for (int i = 0; i < EVENTS / 4; i++)
			if (codec_encode_recommendation(codec, &rec, CODEC_FRAMING_CONFLUENT, &buf,
							errstr, sizeof errstr))
				abort();
		double t3 = now_s();
		for (int i = 0; i < EVENTS / 4; i++)
			if (codec_encode_recommendation(generic, &rec, CODEC_FRAMING_CONFLUENT,
							&buf, errstr, sizeof errstr))
				abort();
		generic_encode_rate[run] = (EVENTS / 4) / (now_s() - t3);
		decode_rate[run] = EVENTS / (t1 - t0);
		generic_rate[run] = EVENTS / (t1b - t1);
		bare_rate[run] = EVENTS / (t2 - t1b);
		encode_rate[run] = (EVENTS / 4) / (t3 - t2);
	}
	double decode = median(decode_rate, RUNS), bare = median(bare_rate, RUNS);
	double slow = median(generic_rate, RUNS);
	printf("codec (1 thread, median of %d runs of %d events; machine: see README)\n", RUNS,
	       EVENTS);
	printf("  UserEvent decode+validate   %10.0f events/s   (the daemon's: direct read)\n",
	       decode);
	printf("  the same, generic read      %10.0f events/s   (direct = %.2fx of generic)\n",
	       slow, decode / slow);
	printf("  Avro C bare generic read    %10.0f events/s   (direct = %.2fx of bare)\n", bare,
	       decode / bare);
	double encode = median(encode_rate, RUNS), slow_encode = median(generic_encode_rate, RUNS);
	printf("  Recommendation encode, k=20 %10.0f recs/s     (the daemon's: direct write)\n",
	       encode);
	printf("  the same, generic write     %10.0f recs/s     (direct = %.2fx of generic)\n",
	       slow_encode, encode / slow_encode);

	avro_reader_free(reader);
	avro_value_decref(&value);
	avro_value_iface_decref(iface);
	avro_schema_decref(schema);
	codec_buf_free(&buf);
	codec_free(codec);
	codec_free(generic);
	free(messages);
	free(offsets);
	free(lengths);
	return 0;
}
