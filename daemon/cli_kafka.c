/*
 * cli_kafka: the `streamrec produce` and `streamrec tail` commands.
 *
 * `produce` writes a deterministic synthetic UserEvent stream (Zipf-like item
 * popularity, a realistic mix of event types) keyed by user id, with an
 * idempotent producer. `tail` decodes a topic and prints one line per record,
 * with the freshness of each recommendation; undecodable records are printed
 * with their reason and never stop it.
 *
 * With --registry URL both speak to a Confluent-compatible schema registry
 * (stream/registry.h): `produce` registers the UserEvent schema under the
 * topic's subject ("<topic>-value") and writes Confluent framing with the id
 * it got; `tail` fetches writer schemas by id. A record whose schema cannot
 * be fetched now (registry unreachable) is not skipped: tail waits and tries
 * it again, as the daemon does.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "clock.h"
#include "errstr.h"
#include "rng.h"
#include "codec.h"
#include "eventlog.h"
#include "registry.h"
#include "kafkaconf.h"

/* Parses a whole non-negative decimal number within [min, max]; reports what and where. */
int cli_parse_count(const char *command, const char *option, const char *text, long long min,
		    long long max, long long *out)
{
	char *end;
	long long v;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
		fprintf(stderr,
			"streamrec %s: --%s: must be a whole number from %lld to %lld, got '%s'\n",
			command, option, min, max, text);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_framing(const char *command, const char *text, enum codec_framing *out)
{
	if (strcmp(text, "raw") == 0)
		*out = CODEC_FRAMING_RAW;
	else if (strcmp(text, "confluent") == 0)
		*out = CODEC_FRAMING_CONFLUENT;
	else {
		fprintf(stderr, "streamrec %s: --framing: must be raw or confluent, got '%s'\n",
			command, text);
		return -1;
	}
	return 0;
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char errstr[512];
	if (kafka_conf_set(conf, name, value, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrec: %s\n", errstr);
		return -1;
	}
	return 0;
}

/* ---- the schema registry options of produce and tail ------------------------------ */

/* Long options (values from 'g' on, clear of both commands' own) and their parse. */
#define REGISTRY_LONG_OPTIONS                                                                      \
	{"registry", required_argument, NULL, 'g'},                                                \
	    {"registry-auth", required_argument, NULL, 'h'},                                       \
	    {"registry-ca", required_argument, NULL, 'j'},                                         \
	    {"registry-cert", required_argument, NULL, 'l'},                                       \
	    {"registry-key", required_argument, NULL, 'm'},                                        \
	{                                                                                          \
		"registry-insecure", no_argument, NULL, 'n'                                        \
	}

/* Takes opt if it is a registry option; returns true then. */
static bool registry_option(int opt, const char *arg, struct registry_config *config)
{
	switch (opt) {
	case 'g': config->url = arg; return true;
	case 'h': config->basic_auth = arg; return true;
	case 'j': config->tls_ca_file = arg; return true;
	case 'l': config->tls_cert_file = arg; return true;
	case 'm': config->tls_key_file = arg; return true;
	case 'n': config->tls_insecure = true; return true;
	default: return false;
	}
}

/*
 * The registry of --registry, or NULL (*failed false) when none was asked
 * for. The password may also come from STREAMREC_REGISTRY_AUTH, which keeps
 * it off the command line.
 */
static struct registry *registry_from_options(const char *command, struct registry_config *config,
					      bool *failed)
{
	char errstr[512];
	struct registry *registry;
	*failed = false;
	if (config->basic_auth == NULL)
		config->basic_auth = getenv("STREAMREC_REGISTRY_AUTH");
	if (config->url == NULL) {
		if (config->basic_auth != NULL && getenv("STREAMREC_REGISTRY_AUTH") == NULL) {
			fprintf(stderr, "streamrec %s: --registry-auth needs --registry URL\n",
				command);
			*failed = true;
		}
		return NULL;
	}
	registry = registry_new(config, errstr, sizeof errstr);
	if (registry == NULL) {
		fprintf(stderr, "streamrec %s: %s\n", command, errstr);
		*failed = true;
	}
	return registry;
}

/* ---- produce ------------------------------------------------------------------- */

static double next_unit(uint64_t *state)
{
	return (double)(rng_next(state) >> 11) / 9007199254740992.0;
}

/* An index in [0, n) with probability roughly proportional to 1/(i+1). */
static uint64_t next_zipf(uint64_t *state, uint64_t n)
{
	double u = next_unit(state);
	uint64_t i = (uint64_t)(exp(u * log((double)n + 1.0)) - 1.0);
	return i < n ? i : n - 1;
}

/* Event-type mix of a typical shop: mostly views, few purchases. */
static enum event_type next_type(uint64_t *state)
{
	static const struct {
		enum event_type type;
		double share;
	} mix[] = {{EVENT_IMPRESSION, 0.30},
		   {EVENT_VIEW, 0.45},
		   {EVENT_CLICK, 0.12},
		   {EVENT_ADD_TO_CART, 0.06},
		   {EVENT_REMOVE_FROM_CART, 0.02},
		   {EVENT_FAVORITE, 0.03},
		   {EVENT_PURCHASE, 0.02}};
	double u = next_unit(state), cumulative = 0;
	for (size_t i = 0; i < sizeof mix / sizeof mix[0]; i++) {
		cumulative += mix[i].share;
		if (u < cumulative)
			return mix[i].type;
	}
	return EVENT_VIEW;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	long long *failures = opaque;
	(void)rk;
	if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (*failures < 5)
			fprintf(stderr, "streamrec produce: delivery failed: %s\n",
				rd_kafka_err2str(msg->err));
		(*failures)++;
	}
}

int cli_produce(int argc, char **argv)
{
	static const struct option options[] = {
	    {"brokers", required_argument, NULL, 'b'},   {"topic", required_argument, NULL, 't'},
	    {"rate", required_argument, NULL, 'r'},      {"count", required_argument, NULL, 'c'},
	    {"users", required_argument, NULL, 'u'},     {"items", required_argument, NULL, 'i'},
	    {"seed", required_argument, NULL, 's'},      {"framing", required_argument, NULL, 'f'},
	    {"schema-id", required_argument, NULL, 'S'}, {"file", required_argument, NULL, 'F'},
	    {"retime", no_argument, NULL, 'R'},          REGISTRY_LONG_OPTIONS,
	    {NULL, 0, NULL, 0}};
	struct registry_config registry_config = {0};
	struct registry *registry = NULL;
	bool framing_given = false, schema_id_given = false, registry_failed;
	const char *brokers = NULL, *topic = "events", *file = NULL;
	bool retime = false;
	struct event_log *log = NULL;
	long long rate = 1000, count = 0, users = 10000, items = 5000, seed = 1, schema_id = 1;
	enum codec_framing framing = CODEC_FRAMING_RAW;
	long long failures = 0, produced = 0;
	char errstr[512];
	int opt, status = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		int rc = 0;
		switch (opt) {
		case 'b': brokers = optarg; break;
		case 't': topic = optarg; break;
		case 'r':
			rc = cli_parse_count("produce", "rate", optarg, 0, 10000000, &rate);
			break;
		case 'c':
			rc = cli_parse_count("produce", "count", optarg, 0, LLONG_MAX, &count);
			break;
		case 'u':
			rc = cli_parse_count("produce", "users", optarg, 1, 1000000000, &users);
			break;
		case 'i':
			rc = cli_parse_count("produce", "items", optarg, 1, 1000000000, &items);
			break;
		case 's':
			rc = cli_parse_count("produce", "seed", optarg, 0, LLONG_MAX, &seed);
			break;
		case 'S':
			rc = cli_parse_count("produce", "schema-id", optarg, 0, INT32_MAX,
					     &schema_id);
			schema_id_given = true;
			break;
		case 'f':
			rc = parse_framing("produce", optarg, &framing);
			framing_given = true;
			break;
		case 'F': file = optarg; break;
		case 'R': retime = true; break;
		default:
			if (!registry_option(opt, optarg, &registry_config))
				return 2;
		}
		if (rc != 0)
			return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "streamrec produce: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (brokers == NULL) {
		fprintf(stderr, "streamrec produce: --brokers HOST:PORT is required\n");
		return 2;
	}
	if (registry_config.url != NULL) {
		if (framing_given && framing != CODEC_FRAMING_CONFLUENT) {
			fprintf(stderr, "streamrec produce: --registry writes --framing confluent\n");
			return 2;
		}
		if (schema_id_given) {
			fprintf(stderr, "streamrec produce: --registry and --schema-id exclude each "
					"other: the registry gives the id\n");
			return 2;
		}
		framing = CODEC_FRAMING_CONFLUENT;
	}

	if (file != NULL) {
		/* a recorded stream, in time order, instead of the generator */
		if (eventlog_read(file, NULL, &log, errstr, sizeof errstr) != 0 ||
		    eventlog_sort_by_time(log, errstr, sizeof errstr) != 0) {
			fprintf(stderr, "streamrec produce: %s\n", errstr);
			eventlog_free(log);
			return 1;
		}
		if (eventlog_has_searches(log)) {
			fprintf(stderr,
				"streamrec produce: %s: SEARCH events need their query vectors; "
				"this command produces only actions on items\n",
				file);
			eventlog_free(log);
			return 2;
		}
		if (log->count == 0) {
			/* --count 0 would read "until Ctrl-C" past the end of nothing */
			fprintf(stderr, "streamrec produce: %s: no events to send\n", file);
			eventlog_free(log);
			return 1;
		}
		if (count == 0 || (size_t)count > log->count)
			count = (long long)log->count;
	}
	struct codec_config codec_config = {.user_event_schema_id = (int32_t)schema_id};
	struct codec *codec = codec_new(&codec_config, errstr, sizeof errstr);
	if (codec == NULL) {
		fprintf(stderr, "streamrec produce: %s\n", errstr);
		eventlog_free(log);
		return 1;
	}
	registry = registry_from_options("produce", &registry_config, &registry_failed);
	if (registry_failed) {
		codec_free(codec);
		eventlog_free(log);
		return 2;
	}
	if (registry != NULL) {
		/* TopicNameStrategy: the topic's value subject gets our schema, we get its id */
		char subject[300];
		int32_t id;
		enum registry_status rs = REGISTRY_REJECTED;
		if (registry_topic_subject(topic, subject, sizeof subject) != 0)
			set_errstr(errstr, sizeof errstr, "topic name too long");
		else
			rs = registry_register(registry, subject, codec_schema_json("UserEvent"),
					       &id, errstr, sizeof errstr);
		if (rs != REGISTRY_OK ||
		    codec_set_writer_schema_id(codec, "UserEvent", id, errstr, sizeof errstr) != 0) {
			fprintf(stderr, "streamrec produce: %s\n", errstr);
			registry_free(registry);
			codec_free(codec);
			eventlog_free(log);
			return 1;
		}
		fprintf(stderr, "streamrec produce: schema registered under %s as id %" PRId32 "\n",
			subject, id);
	}
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (conf_set(conf, "bootstrap.servers", brokers) ||
	    conf_set(conf, "enable.idempotence", "true") ||
	    conf_set(conf, "compression.codec", "lz4") || conf_set(conf, "linger.ms", "5")) {
		rd_kafka_conf_destroy(conf);
		registry_free(registry);
		codec_free(codec);
		eventlog_free(log);
		return 2;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_opaque(conf, &failures);
	rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
	if (producer == NULL) {
		fprintf(stderr, "streamrec produce: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		registry_free(registry);
		codec_free(codec);
		eventlog_free(log);
		return 1;
	}
	conf = NULL; /* owned by the producer now */

	uint64_t rng = (uint64_t)seed;
	struct codec_buf buf = {0};
	const char *file_base = file != NULL && strrchr(file, '/') != NULL ? strrchr(file, '/') + 1
									  : file;
	double start = clock_monotonic_s(), last_report = start;
	while (!cli_stop_requested && (count == 0 || produced < count)) {
		struct user_event ev;
		memset(&ev, 0, sizeof ev);
		snprintf(ev.event_id, sizeof ev.event_id, "ev-%llu-%lld", (unsigned long long)seed,
			 produced);
		if (log != NULL) {
			size_t e = (size_t)produced;
			/* the file's event as it is: its id names the file and the
			 * event's place in time order, so producing the file again
			 * gives the same ids, and no quantity or price is invented */
			snprintf(ev.event_id, sizeof ev.event_id, "%.80s:%zu", file_base, e);
			snprintf(ev.user_id, sizeof ev.user_id, "%s", log->user_ids[log->user[e]]);
			snprintf(ev.item_id, sizeof ev.item_id, "%s", log->item_ids[log->item[e]]);
			ev.type = (enum event_type)log->type[e];
			/* --retime: event time is now (for freshness), else the recorded time */
			ev.ts_ms = retime ? clock_wall_ms() : log->ts_ms[e];
		} else {
			snprintf(ev.user_id, sizeof ev.user_id, "user-%" PRIu64,
				 rng_next(&rng) % (uint64_t)users);
			snprintf(ev.item_id, sizeof ev.item_id, "item-%" PRIu64,
				 next_zipf(&rng, (uint64_t)items));
			ev.type = next_type(&rng);
			ev.ts_ms = clock_wall_ms();
		}
		if (log == NULL && (ev.type == EVENT_PURCHASE || ev.type == EVENT_ADD_TO_CART)) {
			ev.has_quantity = true;
			ev.quantity = 1 + (int32_t)(rng_next(&rng) % 3);
			ev.has_price = true;
			ev.price = 5.0 + (double)(rng_next(&rng) % 20000) / 100.0;
		}
		if (codec_encode_user_event(codec, &ev, framing, &buf, errstr, sizeof errstr) !=
		    0) {
			fprintf(stderr, "streamrec produce: %s\n", errstr);
			goto out;
		}
		rd_kafka_resp_err_t err;
		while ((err = rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic),
						RD_KAFKA_V_KEY(ev.user_id, strlen(ev.user_id)),
						RD_KAFKA_V_VALUE(buf.data, buf.len),
						RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
						RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL &&
		       !cli_stop_requested)
			rd_kafka_poll(producer, 50);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			if (!cli_stop_requested)
				fprintf(stderr, "streamrec produce: %s\n", rd_kafka_err2str(err));
			break;
		}
		produced++;
		rd_kafka_poll(producer, 0);
		if (rate > 0) {
			/* paced in steps of a millisecond or more: a sleep per
			 * message (0.1 ms apart at 10k/s) woke this process and
			 * librdkafka's thread 10k times a second, most of a core */
			double due = start + (double)produced / (double)rate,
			       now = clock_monotonic_s();
			if (due - now >= 1e-3) {
				struct timespec pause = {(time_t)(due - now),
							 (long)(fmod(due - now, 1.0) * 1e9)};
				nanosleep(&pause, NULL);
			}
		}
		if (clock_monotonic_s() - last_report >= 5.0) {
			last_report = clock_monotonic_s();
			fprintf(stderr, "streamrec produce: %lld events sent, %.0f/s\n", produced,
				(double)produced / (last_report - start));
		}
	}
	status = 0;
out:
	if (rd_kafka_flush(producer, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, "streamrec produce: %d events still unsent after 30 s\n",
			rd_kafka_outq_len(producer));
		status = 1;
	}
	if (failures > 0)
		status = 1;
	fprintf(stderr, "streamrec produce: %lld events sent to %s, %lld failed\n", produced, topic,
		failures);
	rd_kafka_destroy(producer);
	codec_buf_free(&buf);
	codec_free(codec);
	registry_free(registry);
	eventlog_free(log);
	return status;
}

/* ---- tail ---------------------------------------------------------------------- */

static void print_event(const rd_kafka_message_t *msg, const struct user_event *ev)
{
	printf("%s[%" PRId32 "]@%" PRId64 " %-16s user=%s item=%s ts=%" PRId64,
	       rd_kafka_topic_name(msg->rkt), msg->partition, msg->offset,
	       event_type_name(ev->type), ev->user_id, ev->item_id, ev->ts_ms);
	if (ev->has_quantity)
		printf(" qty=%d", ev->quantity);
	if (ev->has_price)
		printf(" price=%.2f", ev->price);
	if (ev->has_session_id)
		printf(" session=%s", ev->session_id);
	if (ev->has_list_id)
		printf(" list=%s", ev->list_id);
	printf("\n");
}

/* items= item:score,...; why= reason[:because_item],... in the same order
 * (- for an item written without an explanation). */
static void print_recommendation(const struct recommendation *rec)
{
	printf("user=%s variant=%s step=%" PRId64 " freshness_ms=%" PRId64 " list=%s items=",
	       rec->user_id, rec->variant, rec->model_step,
	       clock_wall_ms() - rec->trigger_event_ts_ms, rec->list_id[0] ? rec->list_id : "-");
	for (size_t i = 0; i < rec->item_count; i++)
		printf("%s%s:%.3f", i ? "," : "", rec->items[i].item_id,
		       (double)rec->items[i].score);
	printf(" why=");
	for (size_t i = 0; i < rec->item_count; i++) {
		const struct scored_item *si = &rec->items[i];
		printf("%s%s", i ? "," : "", si->reason ? si->reason : "-");
		if (si->because_item != NULL)
			printf(":%s", si->because_item);
	}
	printf("\n");
}

int cli_tail(int argc, char **argv)
{
	static const struct option options[] = {{"brokers", required_argument, NULL, 'b'},
						{"topic", required_argument, NULL, 't'},
						{"kind", required_argument, NULL, 'k'},
						{"from-beginning", no_argument, NULL, 'B'},
						{"count", required_argument, NULL, 'c'},
						{"schema-dir", required_argument, NULL, 'd'},
						{"timeout-ms", required_argument, NULL, 'T'},
						{"until-end", no_argument, NULL, 'E'},
						REGISTRY_LONG_OPTIONS,
						{NULL, 0, NULL, 0}};
	struct registry_config registry_config = {0};
	struct registry *registry = NULL;
	bool registry_failed;
	const char *brokers = NULL, *topic = NULL, *kind = "events", *schema_dir = NULL;
	long long count = 0, timeout_ms = 0, seen = 0, bad = 0;
	bool from_beginning = false, until_end = false;
	char errstr[512], group[64];
	int opt, status = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		int rc = 0;
		switch (opt) {
		case 'b': brokers = optarg; break;
		case 't': topic = optarg; break;
		case 'k': kind = optarg; break;
		case 'B': from_beginning = true; break;
		case 'E': until_end = true; break;
		case 'c':
			rc = cli_parse_count("tail", "count", optarg, 0, LLONG_MAX, &count);
			break;
		case 'T':
			rc = cli_parse_count("tail", "timeout-ms", optarg, 0, LLONG_MAX,
					     &timeout_ms);
			break;
		case 'd': schema_dir = optarg; break;
		default:
			if (!registry_option(opt, optarg, &registry_config))
				return 2;
		}
		if (rc != 0)
			return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "streamrec tail: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (strcmp(kind, "events") != 0 && strcmp(kind, "recs") != 0) {
		fprintf(stderr, "streamrec tail: --kind: must be events or recs, got '%s'\n", kind);
		return 2;
	}
	if (brokers == NULL) {
		fprintf(stderr, "streamrec tail: --brokers HOST:PORT is required\n");
		return 2;
	}
	if (topic == NULL)
		topic = strcmp(kind, "events") == 0 ? "events" : "recs";

	struct codec *codec = codec_new(NULL, errstr, sizeof errstr);
	if (codec == NULL) {
		fprintf(stderr, "streamrec tail: %s\n", errstr);
		return 1;
	}
	registry = registry_from_options("tail", &registry_config, &registry_failed);
	if (registry_failed) {
		codec_free(codec);
		return 2;
	}
	if (registry != NULL)
		codec_set_schema_source(codec, registry_codec_source, registry);
	/* without a registry, id 1 is assumed to be our own UserEvent schema */
	if ((registry == NULL && codec_register_schema(codec, 1, codec_schema_json("UserEvent"),
						       errstr, sizeof errstr)) ||
	    (schema_dir != NULL &&
	     codec_register_schema_dir(codec, schema_dir, errstr, sizeof errstr) < 0)) {
		fprintf(stderr, "streamrec tail: %s\n", errstr);
		registry_free(registry);
		codec_free(codec);
		return 2;
	}
	snprintf(group, sizeof group, "streamrec-tail-%ld", (long)getpid());
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (conf_set(conf, "bootstrap.servers", brokers) || conf_set(conf, "group.id", group) ||
	    conf_set(conf, "enable.auto.commit", "false") ||
	    conf_set(conf, "auto.offset.reset", from_beginning ? "earliest" : "latest") ||
	    conf_set(conf, "enable.partition.eof", until_end ? "true" : "false")) {
		rd_kafka_conf_destroy(conf);
		registry_free(registry);
		codec_free(codec);
		return 2;
	}
	rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
	if (consumer == NULL) {
		fprintf(stderr, "streamrec tail: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		registry_free(registry);
		codec_free(codec);
		return 1;
	}
	rd_kafka_poll_set_consumer(consumer);
	rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(topics, topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, "streamrec tail: subscribe to %s: %s\n", topic,
			rd_kafka_err2str(err));
		status = 1;
	}

	double deadline = timeout_ms > 0 ? clock_monotonic_s() + (double)timeout_ms / 1000.0 : 0;
	/* --until-end: the partitions that reached their end, of how many */
	int partitions = 0, ended = 0;
	uint8_t *at_end = NULL;
	if (status == 0 && until_end) {
		partitions = kafka_partition_count(consumer, topic, &cli_stop_requested, errstr,
						   sizeof errstr);
		if (partitions < 0)
			fprintf(stderr, "streamrec tail: %s\n", errstr);
		at_end = partitions > 0 ? calloc((size_t)partitions, 1) : NULL;
		if (at_end == NULL)
			status = 1;
	}
	while (status == 0 && !cli_stop_requested && (count == 0 || seen < count) &&
	       (deadline == 0 || clock_monotonic_s() < deadline) &&
	       (!until_end || ended < partitions)) {
		rd_kafka_message_t *msg = rd_kafka_consumer_poll(consumer, 200);
		struct codec_error cerr;
		if (msg == NULL)
			continue;
		if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			if (at_end != NULL && msg->partition >= 0 && msg->partition < partitions &&
			    !at_end[msg->partition]) {
				at_end[msg->partition] = 1;
				ended++;
			}
			rd_kafka_message_destroy(msg);
			continue;
		}
		if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			fprintf(stderr, "streamrec tail: %s\n", rd_kafka_message_errstr(msg));
			rd_kafka_message_destroy(msg);
			continue;
		}
		for (;;) {
			if (strcmp(kind, "events") == 0) {
				struct user_event ev;
				if (codec_decode_user_event(codec, msg->payload, msg->len,
							    clock_wall_ms(), &ev, &cerr) == 0)
					print_event(msg, &ev);
			} else {
				struct recommendation rec;
				if (codec_decode_recommendation(codec, msg->payload, msg->len, &rec,
								&cerr) == 0)
					print_recommendation(&rec);
			}
			/* the schema cannot be had now: the record waits, it is not invalid */
			if (!codec_reason_is_retriable(cerr.reason) || cli_stop_requested ||
			    (deadline != 0 && clock_monotonic_s() >= deadline))
				break;
			fprintf(stderr, "streamrec tail: %s[%" PRId32 "]@%" PRId64 " waits: %s\n",
				rd_kafka_topic_name(msg->rkt), msg->partition, msg->offset,
				cerr.detail);
			struct timespec pause = {1, 0};
			nanosleep(&pause, NULL);
		}
		if (codec_reason_is_retriable(cerr.reason)) {
			/* stopped while waiting: the record was neither shown nor refused */
			rd_kafka_message_destroy(msg);
			break;
		}
		if (cerr.reason != CODEC_OK) {
			bad++;
			printf("%s[%" PRId32 "]@%" PRId64 " INVALID %s: %s\n",
			       rd_kafka_topic_name(msg->rkt), msg->partition, msg->offset,
			       codec_reason_name(cerr.reason), cerr.detail);
		}
		fflush(stdout);
		seen++;
		rd_kafka_message_destroy(msg);
	}
	fprintf(stderr, "streamrec tail: %lld records read from %s, %lld invalid\n", seen, topic,
		bad);
	if (until_end && status == 0 && ended < partitions && !cli_stop_requested &&
	    (count == 0 || seen < count)) {
		fprintf(stderr, "streamrec tail: --until-end: %d of %d partitions of %s reached "
			"their end before --timeout-ms\n", ended, partitions, topic);
		status = 1;
	}
	free(at_end);
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
	codec_free(codec);
	registry_free(registry);
	return status;
}
