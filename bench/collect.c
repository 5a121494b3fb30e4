/*
 * collect: the end-to-end benchmark's consumer of the recommendations topic.
 *
 *   collect --brokers HOST:PORT [--topic recs] [--from-beginning]
 *           [--window-ms 1000] [--decode fast|full] [--max-ms 600000]
 *           [--control] [--idle-ms N] [--count N] [--records FILE]
 *
 * Reads every partition of the topic (assigned directly, no group), decodes
 * each Recommendation and records, per record, in milliseconds of the wall
 * clock:
 *
 *   e2e      = receive time - trigger_event_ts  (freshness at the consumer)
 *   daemon   = generated_at - trigger_event_ts  (inside streamrecd)
 *   delivery = receive time - generated_at      (producer, broker, fetch)
 *
 * into histograms of 1 ms buckets (exact percentiles at ms resolution; values
 * of --max-ms or more count in one overflow bucket, reported as --max-ms).
 * Prints JSON lines on stdout: {"kind":"ready"} once the partitions are
 * assigned, one "window" line per --window-ms with records, and a "segment"
 * line when a segment closes. Segments are named by the orchestrator: with
 * --control, stdin lines "mark NAME" close the current segment and open NAME;
 * "quit" or end of input closes it and exits. Without --control it runs until
 * --idle-ms pass without a record (after the first), --count records, or
 * SIGINT/SIGTERM. --records FILE writes one TSV line per record
 * (partition, offset, user_id, trigger_event_ts, generated_at, received_at)
 * for tests.
 *
 * --decode fast reads only the record's leading fields (user_id, variant,
 * model_step, generated_at, trigger_event_ts) by hand, so one core keeps up
 * with hundreds of thousands of lists per second; --decode full runs the
 * project's codec on the whole record (the reference the test compares with).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "kafkaconf.h"

#define PERCENTILE_COUNT 4

static const double percentiles[PERCENTILE_COUNT] = {0.50, 0.95, 0.99, 0.999};
static const char *const percentile_names[PERCENTILE_COUNT] = {"p50", "p95", "p99", "p999"};

static volatile sig_atomic_t stop_requested;

static void on_signal(int signo)
{
	(void)signo;
	stop_requested = 1;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double monotonic_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- histogram --------------------------------------------------------------------- */

/* Counts per whole millisecond in [0, max_ms); the last bucket holds >= max_ms. */
struct histogram {
	uint64_t *buckets;
	size_t bucket_count;
	uint64_t count, negative;
	int64_t max_seen;
	double sum_ms;
};

static int histogram_init(struct histogram *h, int64_t max_ms)
{
	memset(h, 0, sizeof *h);
	h->bucket_count = (size_t)max_ms + 1;
	h->buckets = calloc(h->bucket_count, sizeof *h->buckets);
	h->max_seen = -1;
	return h->buckets == NULL ? -1 : 0;
}

static void histogram_free(struct histogram *h)
{
	free(h->buckets);
	h->buckets = NULL;
}

/* A negative value (clock step, or a producer clock ahead of ours) counts as 0 and is counted. */
static void histogram_add(struct histogram *h, int64_t value_ms)
{
	if (value_ms < 0) {
		h->negative++;
		value_ms = 0;
	}
	size_t bucket =
	    (size_t)value_ms < h->bucket_count - 1 ? (size_t)value_ms : h->bucket_count - 1;
	h->buckets[bucket]++;
	h->count++;
	h->sum_ms += (double)value_ms;
	if (value_ms > h->max_seen)
		h->max_seen = value_ms;
}

/* Clears only the buckets that can be non-zero. */
static void histogram_reset(struct histogram *h)
{
	if (h->max_seen >= 0) {
		size_t last = (size_t)h->max_seen < h->bucket_count - 1 ? (size_t)h->max_seen
									: h->bucket_count - 1;
		memset(h->buckets, 0, (last + 1) * sizeof *h->buckets);
	}
	h->count = h->negative = 0;
	h->sum_ms = 0;
	h->max_seen = -1;
}

/* Nearest rank: the smallest v with at least ceil(p * count) values <= v. */
static void histogram_percentiles(const struct histogram *h, int64_t out[PERCENTILE_COUNT])
{
	uint64_t seen = 0;
	size_t next = 0;
	for (size_t b = 0; b < h->bucket_count && next < PERCENTILE_COUNT; b++) {
		seen += h->buckets[b];
		while (next < PERCENTILE_COUNT) {
			double rank = percentiles[next] * (double)h->count;
			uint64_t needed = (uint64_t)rank + ((double)(uint64_t)rank < rank);
			if (needed == 0)
				needed = 1;
			if (seen < needed)
				break;
			out[next++] = (int64_t)b;
		}
	}
	while (next < PERCENTILE_COUNT)
		out[next++] = -1;
}

static void histogram_print_json(FILE *out, const char *name, const struct histogram *h)
{
	int64_t p[PERCENTILE_COUNT];
	fprintf(out, "\"%s\":{", name);
	if (h->count > 0) {
		histogram_percentiles(h, p);
		for (int i = 0; i < PERCENTILE_COUNT; i++)
			fprintf(out, "\"%s\":%" PRId64 ",", percentile_names[i], p[i]);
		fprintf(out, "\"mean\":%.3f,\"max\":%" PRId64 ",", h->sum_ms / (double)h->count,
			h->max_seen);
	}
	fprintf(out, "\"negative\":%" PRIu64 ",\"overflow\":%" PRIu64 "}", h->negative,
		h->buckets[h->bucket_count - 1]);
}

/* The three latencies of one scope (a window or a segment). */
struct latencies {
	struct histogram e2e, daemon, delivery;
	uint64_t invalid;
	double started_s;
};

static int latencies_init(struct latencies *l, int64_t max_ms)
{
	memset(l, 0, sizeof *l);
	l->started_s = monotonic_s();
	return histogram_init(&l->e2e, max_ms) || histogram_init(&l->daemon, max_ms) ||
		       histogram_init(&l->delivery, max_ms)
		   ? -1
		   : 0;
}

static void latencies_free(struct latencies *l)
{
	histogram_free(&l->e2e);
	histogram_free(&l->daemon);
	histogram_free(&l->delivery);
}

static void latencies_reset(struct latencies *l)
{
	histogram_reset(&l->e2e);
	histogram_reset(&l->daemon);
	histogram_reset(&l->delivery);
	l->invalid = 0;
	l->started_s = monotonic_s();
}

static void latencies_add(struct latencies *l, int64_t received_ms, int64_t generated_ms,
			  int64_t trigger_ms)
{
	histogram_add(&l->e2e, received_ms - trigger_ms);
	histogram_add(&l->daemon, generated_ms - trigger_ms);
	histogram_add(&l->delivery, received_ms - generated_ms);
}

/* One JSON line: kind "window" or "segment". */
static void latencies_print(const struct latencies *l, const char *kind, const char *segment)
{
	double seconds = monotonic_s() - l->started_s;
	printf("{\"kind\":\"%s\",\"segment\":\"%s\",\"end_ms\":%" PRId64
	       ",\"seconds\":%.3f,\"count\":%" PRIu64 ",\"invalid\":%" PRIu64 ",\"per_s\":%.1f,",
	       kind, segment, wall_ms(), seconds, l->e2e.count, l->invalid,
	       seconds > 0 ? (double)l->e2e.count / seconds : 0.0);
	histogram_print_json(stdout, "e2e_ms", &l->e2e);
	putchar(',');
	histogram_print_json(stdout, "daemon_ms", &l->daemon);
	putchar(',');
	histogram_print_json(stdout, "delivery_ms", &l->delivery);
	printf("}\n");
	fflush(stdout);
}

/* ---- decoding ---------------------------------------------------------------------- */

/* The fields the collector needs; user_id points into the message. */
struct rec_head {
	const char *user_id;
	size_t user_id_len;
	int64_t generated_at_ms, trigger_event_ts_ms;
};

/* An Avro long (zigzag varint). @returns 0, or -1 when malformed or past end. */
static int read_long(const uint8_t **p, const uint8_t *end, int64_t *out)
{
	uint64_t value = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (*p >= end)
			return -1;
		uint8_t byte = *(*p)++;
		value |= (uint64_t)(byte & 0x7f) << shift;
		if ((byte & 0x80) == 0) {
			*out = (int64_t)(value >> 1) ^ -(int64_t)(value & 1);
			return 0;
		}
	}
	return -1;
}

static int read_string(const uint8_t **p, const uint8_t *end, const char **s, size_t *len)
{
	int64_t n;
	if (read_long(p, end, &n) != 0 || n < 0 || n > end - *p)
		return -1;
	*s = (const char *)*p;
	*len = (size_t)n;
	*p += n;
	return 0;
}

/*
 * The leading fields of a Recommendation, read by hand (the schema's field
 * order: user_id, variant, model_step, generated_at, trigger_event_ts); the
 * items array is not read. Confluent framing (a leading 0 byte: an empty
 * user_id is invalid) skips the 5-byte header.
 */
static int decode_fast(const void *buf, size_t len, struct rec_head *out)
{
	const uint8_t *p = buf, *end = p + len;
	const char *variant;
	size_t variant_len;
	int64_t step;
	if (len > 0 && p[0] == 0) {
		if (len < 5)
			return -1;
		p += 5;
	}
	if (read_string(&p, end, &out->user_id, &out->user_id_len) != 0 || out->user_id_len == 0 ||
	    read_string(&p, end, &variant, &variant_len) != 0 || read_long(&p, end, &step) != 0 ||
	    read_long(&p, end, &out->generated_at_ms) != 0 ||
	    read_long(&p, end, &out->trigger_event_ts_ms) != 0)
		return -1;
	return 0;
}

static int decode_full(struct codec *codec, const void *buf, size_t len, struct rec_head *out)
{
	struct recommendation rec;
	struct codec_error err;
	if (codec_decode_recommendation(codec, buf, len, &rec, &err) != 0)
		return -1;
	out->user_id = rec.user_id;
	out->user_id_len = strlen(rec.user_id);
	out->generated_at_ms = rec.generated_at_ms;
	out->trigger_event_ts_ms = rec.trigger_event_ts_ms;
	return 0;
}

/* ---- Kafka ------------------------------------------------------------------------- */

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char errstr[512];
	if (kafka_conf_set(conf, name, value, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "collect: %s\n", errstr);
		return -1;
	}
	return 0;
}

/* Assigns every partition of topic, at its start or its current end (resolved now). */
static int assign_all(rd_kafka_t *consumer, const char *topic, bool from_beginning,
		      int *partition_count)
{
	char errstr[512];
	rd_kafka_resp_err_t err;
	int rc = -1;
	int count = kafka_partition_count(consumer, topic, &stop_requested, errstr, sizeof errstr);
	if (count < 0) {
		fprintf(stderr, "collect: %s\n", errstr);
		return -1;
	}
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(count);
	for (int32_t partition = 0; partition < count; partition++) {
		int64_t low = 0, high = 0;
		if (!from_beginning) {
			err = rd_kafka_query_watermark_offsets(consumer, topic, partition, &low,
							       &high, 10000);
			if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
				fprintf(stderr, "collect: end offset of %s[%" PRId32 "]: %s\n",
					topic, partition, rd_kafka_err2str(err));
				goto out_list;
			}
		}
		rd_kafka_topic_partition_list_add(list, topic, partition)->offset =
		    from_beginning ? RD_KAFKA_OFFSET_BEGINNING : high;
	}
	err = rd_kafka_assign(consumer, list);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, "collect: assign %s: %s\n", topic, rd_kafka_err2str(err));
		goto out_list;
	}
	*partition_count = count;
	rc = 0;
out_list:
	rd_kafka_topic_partition_list_destroy(list);
	return rc;
}

/* ---- control ------------------------------------------------------------------------ */

/* Reads what stdin has; @returns 1 for each complete line in *line, 0 none yet, -1 at EOF. */
static int read_control_line(char *line, size_t line_size)
{
	static char pending[1024];
	static size_t pending_len;
	static bool eof;
	for (;;) {
		char *newline = memchr(pending, '\n', pending_len);
		if (newline != NULL) {
			size_t n = (size_t)(newline - pending);
			snprintf(line, line_size, "%.*s", (int)n, pending);
			memmove(pending, newline + 1, pending_len - n - 1);
			pending_len -= n + 1;
			return 1;
		}
		if (eof)
			return -1;
		struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
		if (poll(&pfd, 1, 0) <= 0)
			return 0;
		if (pending_len == sizeof pending)
			pending_len = 0; /* an absurd line: dropped */
		ssize_t got =
		    read(STDIN_FILENO, pending + pending_len, sizeof pending - pending_len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			eof = true;
			if (pending_len > 0) { /* a last line without newline */
				pending[pending_len++] = '\n';
				continue;
			}
			return -1;
		}
		pending_len += (size_t)got;
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: collect --brokers HOST:PORT [--topic recs] [--from-beginning]\n"
			"               [--window-ms 1000] [--decode fast|full] [--max-ms 600000]\n"
			"               [--control] [--idle-ms N] [--count N] [--records FILE]\n");
}

static int parse_count(const char *option, const char *text, long long min, long long max,
		       long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
		fprintf(stderr,
			"collect: --%s: must be a whole number from %lld to %lld, got '%s'\n",
			option, min, max, text);
		return -1;
	}
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {{"brokers", required_argument, NULL, 'b'},
						{"topic", required_argument, NULL, 't'},
						{"from-beginning", no_argument, NULL, 'B'},
						{"window-ms", required_argument, NULL, 'w'},
						{"decode", required_argument, NULL, 'd'},
						{"max-ms", required_argument, NULL, 'm'},
						{"control", no_argument, NULL, 'C'},
						{"idle-ms", required_argument, NULL, 'i'},
						{"count", required_argument, NULL, 'c'},
						{"records", required_argument, NULL, 'r'},
						{NULL, 0, NULL, 0}};
	const char *brokers = NULL, *topic = "recs", *records_path = NULL;
	bool from_beginning = false, control = false, full = false;
	long long window_ms = 1000, max_ms = 600000, idle_ms = 0, count = 0;
	char errstr[512], group[64], segment[256] = "run";
	struct codec *codec = NULL;
	FILE *records = NULL;
	struct latencies window = {0}, total = {0};
	int opt, partition_count = 0, status = 1;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		int rc = 0;
		switch (opt) {
		case 'b': brokers = optarg; break;
		case 't': topic = optarg; break;
		case 'B': from_beginning = true; break;
		case 'w': rc = parse_count("window-ms", optarg, 10, 3600000, &window_ms); break;
		case 'm': rc = parse_count("max-ms", optarg, 1, 86400000, &max_ms); break;
		case 'i': rc = parse_count("idle-ms", optarg, 0, LLONG_MAX, &idle_ms); break;
		case 'c': rc = parse_count("count", optarg, 0, LLONG_MAX, &count); break;
		case 'C': control = true; break;
		case 'r': records_path = optarg; break;
		case 'd':
			if (strcmp(optarg, "full") == 0)
				full = true;
			else if (strcmp(optarg, "fast") != 0) {
				fprintf(stderr, "collect: --decode: fast or full, got '%s'\n",
					optarg);
				rc = -1;
			}
			break;
		default: usage(); return 2;
		}
		if (rc != 0)
			return 2;
	}
	if (brokers == NULL || optind < argc) {
		usage();
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

	if (latencies_init(&window, max_ms) != 0 || latencies_init(&total, max_ms) != 0) {
		fprintf(stderr, "collect: out of memory for histograms of %lld ms\n", max_ms);
		goto out_latencies;
	}
	if (full && (codec = codec_new(NULL, errstr, sizeof errstr)) == NULL) {
		fprintf(stderr, "collect: %s\n", errstr);
		goto out_latencies;
	}
	if (records_path != NULL && (records = fopen(records_path, "w")) == NULL) {
		fprintf(stderr, "collect: %s: %s\n", records_path, strerror(errno));
		goto out_codec;
	}

	snprintf(group, sizeof group, "streamrec-collect-%ld", (long)getpid());
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	/* fetch.wait.max.ms bounds how long an idle fetch waits: it adds to measured latency
	 * only when the topic was idle, so it is kept small */
	if (conf_set(conf, "bootstrap.servers", brokers) || conf_set(conf, "group.id", group) ||
	    conf_set(conf, "enable.auto.commit", "false") ||
	    conf_set(conf, "enable.partition.eof", "false") ||
	    conf_set(conf, "fetch.wait.max.ms", "10") ||
	    conf_set(conf, "queued.max.messages.kbytes", "262144")) {
		rd_kafka_conf_destroy(conf);
		goto out_records;
	}
	rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
	if (consumer == NULL) {
		fprintf(stderr, "collect: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		goto out_records;
	}
	conf = NULL; /* owned by the consumer now */
	rd_kafka_poll_set_consumer(consumer);
	if (assign_all(consumer, topic, from_beginning, &partition_count) != 0)
		goto out_consumer;
	printf("{\"kind\":\"ready\",\"topic\":\"%s\",\"partitions\":%d}\n", topic, partition_count);
	fflush(stdout);

	double next_window = monotonic_s() + (double)window_ms / 1000.0, last_record = 0;
	long long seen = 0;
	bool done = false;
	while (!done && !stop_requested) {
		rd_kafka_message_t *msg = rd_kafka_consumer_poll(consumer, 20);
		int64_t received_ms = wall_ms();
		double now = monotonic_s();
		if (msg != NULL && msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			fprintf(stderr, "collect: %s\n", rd_kafka_message_errstr(msg));
		} else if (msg != NULL) {
			struct rec_head head;
			int rc = full ? decode_full(codec, msg->payload, msg->len, &head)
				      : decode_fast(msg->payload, msg->len, &head);
			if (rc != 0) {
				window.invalid++;
				total.invalid++;
			} else {
				latencies_add(&window, received_ms, head.generated_at_ms,
					      head.trigger_event_ts_ms);
				latencies_add(&total, received_ms, head.generated_at_ms,
					      head.trigger_event_ts_ms);
				if (records != NULL)
					fprintf(records,
						"%" PRId32 "\t%" PRId64 "\t%.*s\t%" PRId64
						"\t%" PRId64 "\t%" PRId64 "\n",
						msg->partition, msg->offset, (int)head.user_id_len,
						head.user_id, head.trigger_event_ts_ms,
						head.generated_at_ms, received_ms);
			}
			seen++;
			last_record = now;
			if (count > 0 && seen >= count)
				done = true;
		}
		if (msg != NULL)
			rd_kafka_message_destroy(msg);
		if (now >= next_window) {
			if (window.e2e.count > 0 || window.invalid > 0)
				latencies_print(&window, "window", segment);
			latencies_reset(&window);
			next_window += (double)window_ms / 1000.0;
			if (next_window < now)
				next_window = now + (double)window_ms / 1000.0;
		}
		if (idle_ms > 0 && last_record > 0 && now - last_record >= (double)idle_ms / 1000.0)
			done = true;
		if (control) {
			char line[200];
			int got;
			while ((got = read_control_line(line, sizeof line)) == 1) {
				if (strncmp(line, "mark ", 5) == 0) {
					latencies_print(&total, "segment", segment);
					latencies_reset(&total);
					latencies_reset(&window);
					snprintf(segment, sizeof segment, "%s", line + 5);
				} else if (strcmp(line, "quit") == 0) {
					done = true;
					break;
				} else if (line[0] != '\0') {
					fprintf(stderr, "collect: unknown command '%s'\n", line);
				}
			}
			if (got < 0)
				done = true;
		}
	}
	if (window.e2e.count > 0 || window.invalid > 0)
		latencies_print(&window, "window", segment);
	latencies_print(&total, "segment", segment);
	status = 0;
out_consumer:
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
out_records:
	if (records != NULL && fclose(records) != 0) {
		fprintf(stderr, "collect: %s: %s\n", records_path, strerror(errno));
		status = 1;
	}
out_codec:
	codec_free(codec);
out_latencies:
	latencies_free(&window);
	latencies_free(&total);
	return status;
}
