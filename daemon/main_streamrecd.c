/*
 * streamrecd: the daemon. One libev loop drives the Kafka consumer, the
 * refresh, commit and watchdog timers, signals and the HTTP listener.
 *
 *   streamrecd --config FILE          run
 *   streamrecd --config FILE --check  check the configuration and the state (read-only), then exit
 *   streamrecd --print-config-reference | --print-default-config
 *
 * Per event: decode (bad input goes to the dead-letter topic with its
 * reason), learn in every variant, mark the user for a refresh. The refresh
 * timer batches marked users (each at most once per min_interval) through
 * their variant's top-k and publishes Recommendation records. The commit
 * timer writes changed rows and the consumed offsets in one RocksDB batch
 * (on the state's writer thread) and commits the Kafka offsets only once
 * that batch is durable.
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <systemd/sd-daemon.h>

#include "assign.h"
#include "catalog.h"
#include "codec.h"
#include "config.h"
#include "consumer.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "producer.h"
#include "ratelimit.h"
#include "state.h"
#include "status.h"
#include "topk.h"

#define WATCHDOG_DEFAULT_S 5.0
#define MAX_PARTITIONS     1024
/* Dead-letter log lines: at most one per reason in this window; metrics count all. */
#define DEAD_LETTER_LOG_WINDOW_S 10.0

/* A user waiting for a refresh: its stable index and the newest event time. */
struct pending {
	uint32_t stable;
	int64_t trigger_ts_ms;
};

/* A partition's next offset to read, with its own copy of the topic name. */
struct position {
	char topic[256];
	int32_t partition;
	int64_t next_offset;
};

/* A user's last published list, as item indices, best first. */
struct published {
	uint8_t variant;
	uint16_t count, capacity;
	uint32_t items[];
};

struct daemon {
	struct config config;
	struct ev_loop *loop;
	struct state *state;
	struct codec *codec;
	struct consumer *consumer;
	struct producer *producer;
	struct metrics *metrics;
	struct http_server *http;
	struct status *status;
	struct ratelimit *dead_letter_log;
	struct topk *topk;
	struct assign_variant variants[STATE_MAX_VARIANTS];
	size_t variant_count;

	/* refresh queue (FIFO) and per stable user: queued flag, newest trigger, last refresh */
	struct pending *queue;
	size_t queue_head, queue_count, queue_capacity;
	uint8_t *queued;
	int64_t *trigger_ts, *last_refresh_ms;
	size_t user_capacity;
	/* per stable user: the list last published (item indices, best first)
	 * and its variant, for counting hits; NULL until the first list */
	struct published **published;

	/* consumed positions since the last commit, and those of the batch in flight */
	struct position positions[MAX_PARTITIONS], inflight[MAX_PARTITIONS];
	size_t position_count, inflight_count;

	/* the catalogue, from the compacted items topic: listing and categories */
	struct catalog *catalog;

	ev_timer refresh_timer, commit_timer, watchdog_timer;
	/* refreshes run whenever the loop has nothing more urgent: one batch per
	 * idle turn, alternating with the consumer's batches */
	ev_idle refresh_idle;
	/* the refresh's time credit (seconds): grows by max_busy_share of wall
	 * time, shrinks by the time refreshing takes; spent out while events
	 * wait, the refresh pauses until the next timer tick */
	double refresh_credit_s, refresh_credit_at;
	/* per variant: which items may be listed, recomputed when the catalogue
	 * changes, items appear, or it is older than the refresh interval */
	uint8_t *listable[STATE_MAX_VARIANTS];
	size_t listable_items[STATE_MAX_VARIANTS];
	double listable_at[STATE_MAX_VARIANTS];
	uint64_t listable_generation[STATE_MAX_VARIANTS];
	uint64_t catalog_generation;
	ev_signal sigint, sigterm, sighup, sigusr1;
	int interrupts;
	bool stopping, failed, ready_sent;
	char error[512];
};

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * One line to stderr with its syslog priority prefix ("<3>streamrecd: ..."),
 * which journald reads as the severity. The line goes out in one write(),
 * so callers on any thread (librdkafka's log callback) never interleave;
 * longer lines are cut.
 */
/* Stops the loop for good: a fatal error (state write, broker refused us forever). */
static void fail(struct daemon *d, const char *what)
{
	snprintf(d->error, sizeof d->error, "%s", what);
	d->failed = true;
	log_line(LOG_PRIORITY_ERROR, "%s", what);
	sd_notifyf(0, "STATUS=failed: %s", what);
	ev_break(d->loop, EVBREAK_ALL);
}

/* ---- refresh queue ---------------------------------------------------------------- */

static int ensure_users(struct daemon *d, uint32_t stable)
{
	if ((size_t)stable < d->user_capacity)
		return 0;
	size_t cap = d->user_capacity ? d->user_capacity : 4096;
	while (cap <= stable)
		cap *= 2;
	uint8_t *queued = realloc(d->queued, cap);
	int64_t *trigger = realloc(d->trigger_ts, cap * sizeof *trigger);
	int64_t *last = realloc(d->last_refresh_ms, cap * sizeof *last);
	struct published **published = realloc(d->published, cap * sizeof *published);
	if (published != NULL) {
		d->published = published;
		memset(d->published + d->user_capacity, 0,
		       (cap - d->user_capacity) * sizeof *published);
	}
	if (queued != NULL)
		d->queued = queued;
	if (trigger != NULL)
		d->trigger_ts = trigger;
	if (last != NULL)
		d->last_refresh_ms = last;
	if (queued == NULL || trigger == NULL || last == NULL || published == NULL)
		return -1;
	memset(d->queued + d->user_capacity, 0, cap - d->user_capacity);
	memset(d->trigger_ts + d->user_capacity, 0, (cap - d->user_capacity) * sizeof *trigger);
	memset(d->last_refresh_ms + d->user_capacity, 0, (cap - d->user_capacity) * sizeof *last);
	d->user_capacity = cap;
	return 0;
}

/*
 * A/B hits: a click, add-to-cart or purchase of an item that was in the list
 * last published for this user counts for that list's variant, by event
 * type and by the item's rank. Lists live in memory: after a restart a user
 * counts again from their first new list.
 */
static void count_hit(struct daemon *d, uint32_t stable, const char *item_id, enum event_type type)
{
	bool hit_type = false;
	for (size_t h = 0; h < METRICS_HIT_TYPE_COUNT; h++)
		hit_type |= metrics_hit_types[h] == type;
	if (!hit_type || (size_t)stable >= d->user_capacity || d->published[stable] == NULL)
		return;
	const struct published *p = d->published[stable];
	uint32_t item = state_find_item(d->state, item_id);
	for (size_t r = 0; r < p->count; r++)
		if (p->items[r] == item) {
			struct metrics_variant *mv = &d->metrics->variants[p->variant];
			mv->hits_total[type]++;
			mv->hits_by_rank_total[metrics_rank_bucket(r + 1)]++;
			return;
		}
}

/* Remembers the list just published for a user; @returns 0, or -1 when out of memory. */
static int remember_list(struct daemon *d, uint32_t stable, size_t variant,
			 const struct topk_result *list, size_t count)
{
	struct published *p = d->published[stable];
	if (p == NULL || p->capacity < count) {
		size_t capacity = count > 20 ? count : 20;
		struct published *grown = realloc(p, sizeof *p + capacity * sizeof p->items[0]);
		if (grown == NULL)
			return -1;
		if (p == NULL)
			d->metrics->variants[variant].users_served_total++;
		p = d->published[stable] = grown;
		p->capacity = (uint16_t)capacity;
	}
	p->variant = (uint8_t)variant;
	p->count = (uint16_t)count;
	for (size_t r = 0; r < count; r++)
		p->items[r] = list[r].item;
	return 0;
}

static int mark_for_refresh(struct daemon *d, uint32_t stable, int64_t ts_ms)
{
	if (ensure_users(d, stable) != 0)
		return -1;
	if (ts_ms > d->trigger_ts[stable])
		d->trigger_ts[stable] = ts_ms;
	if (d->queued[stable])
		return 0;
	if (d->queue_count == d->queue_capacity) {
		size_t cap = d->queue_capacity ? d->queue_capacity * 2 : 4096;
		struct pending *grown = malloc(cap * sizeof *grown);
		if (grown == NULL)
			return -1;
		for (size_t k = 0; k < d->queue_count; k++)
			grown[k] = d->queue[(d->queue_head + k) % d->queue_capacity];
		free(d->queue);
		d->queue = grown;
		d->queue_head = 0;
		d->queue_capacity = cap;
	}
	d->queue[(d->queue_head + d->queue_count++) % d->queue_capacity] =
	    (struct pending){stable, ts_ms};
	d->queued[stable] = 1;
	ev_idle_start(d->loop, &d->refresh_idle);
	return 0;
}

/* ---- input ------------------------------------------------------------------------ */

static void remember_position(struct daemon *d, const char *topic, int32_t partition,
			      int64_t offset)
{
	for (size_t k = 0; k < d->position_count; k++) {
		if (d->positions[k].partition == partition &&
		    strcmp(d->positions[k].topic, topic) == 0) {
			d->positions[k].next_offset = offset + 1;
			return;
		}
	}
	if (d->position_count < MAX_PARTITIONS) {
		struct position *p = &d->positions[d->position_count++];
		snprintf(p->topic, sizeof p->topic, "%s", topic);
		p->partition = partition;
		p->next_offset = offset + 1;
	}
}

/* Commits positions to Kafka (for lag tools; the state's offsets are the truth). */
static void commit_kafka(struct daemon *d, const struct position *positions, size_t count,
			 bool async)
{
	struct consumer_position list[MAX_PARTITIONS];
	char errstr[256];
	for (size_t k = 0; k < count; k++)
		list[k] = (struct consumer_position){positions[k].topic, positions[k].partition,
						     positions[k].next_offset};
	if (count > 0 &&
	    consumer_commit(d->consumer, list, count, async, errstr, sizeof errstr) != 0)
		log_line(LOG_PRIORITY_WARNING, "kafka offset commit: %s", errstr);
}

static void log_suppressed(enum codec_reason reason, uint64_t count)
{
	log_line(LOG_PRIORITY_INFO, "dead letters: %" PRIu64 " more %s suppressed in %.0f s", count,
		 codec_reason_name(reason), DEAD_LETTER_LOG_WINDOW_S);
}

/*
 * Whether a refused message gets its own log line: one per reason in each
 * DEAD_LETTER_LOG_WINDOW_S, so a bad producer cannot flood the journal.
 * Logs the previous window's held-back count first when this line opens a new one.
 */
static bool dead_letter_log_allowed(struct daemon *d, enum codec_reason reason)
{
	uint64_t suppressed;
	bool allowed = ratelimit_allow(d->dead_letter_log, reason, ev_now(d->loop), &suppressed);
	if (suppressed > 0)
		log_suppressed(reason, suppressed);
	return allowed;
}

/* From the watchdog timer: the held-back counts of windows that ended. */
static void log_suppressed_dead_letters(struct daemon *d)
{
	for (size_t reason = 0; reason < CODEC_REASON_COUNT; reason++) {
		uint64_t suppressed =
		    ratelimit_take_suppressed(d->dead_letter_log, reason, ev_now(d->loop));
		if (suppressed > 0)
			log_suppressed((enum codec_reason)reason, suppressed);
	}
}

/*
 * Counts a bad message and queues its dead letter. Its offset may be marked
 * only when this returns 0; a letter that cannot even be queued stops the
 * daemon (fail()), so the offset stays where it was and a restart reads the
 * message again. Delivery is confirmed before the next commit (commit_now).
 */
static int dead_letter(struct daemon *d, const struct consumer_message *m,
		       const struct codec_error *err)
{
	char errstr[256], what[512];
	d->metrics->invalid_events_total[err->reason]++;
	if (dead_letter_log_allowed(d, err->reason))
		log_line(LOG_PRIORITY_INFO, "%s[%" PRId32 "]@%" PRId64 ": %s: %s", m->topic, m->partition,
			 m->offset, codec_reason_name(err->reason), err->detail);
	if (d->config.dead_letter_topic == NULL || d->config.dead_letter_topic[0] == '\0')
		return 0;
	if (producer_send_dead_letter(d->producer, d->config.dead_letter_topic,
				      codec_reason_name(err->reason), m->topic, m->partition,
				      m->offset, m->key, m->key_len, m->value, m->value_len, errstr,
				      sizeof errstr) != 0) {
		snprintf(what, sizeof what,
			 "%s[%" PRId32 "]@%" PRId64 ": dead-letter send failed: %s; its offset is "
			 "not committed",
			 m->topic, m->partition, m->offset, errstr);
		fail(d, what);
		return -1;
	}
	d->metrics->dlq_messages_total++;
	return 0;
}

/*
 * A catalogue record: in stock or not, or a tombstone (retired). The items
 * topic is compacted and re-read from its start on every start (its offsets
 * are never committed), so the catalogue needs no state of its own.
 */
static void on_item(struct daemon *d, const struct consumer_message *m)
{
	struct item_event item;
	struct codec_error err;
	char id[CODEC_ID_MAX_BYTES + 1], errstr[256];
	bool listed;
	if (m->value == NULL) {
		if (m->key == NULL || m->key_len == 0 || m->key_len > CODEC_ID_MAX_BYTES ||
		    !codec_utf8_valid(m->key, m->key_len)) {
			err.reason = CODEC_ERR_EMPTY_ID;
			snprintf(err.detail, sizeof err.detail,
				 "tombstone without a valid item id key");
			dead_letter(d, m, &err);
			return;
		}
		memcpy(id, m->key, m->key_len);
		id[m->key_len] = '\0';
		listed = false; /* retired */
	} else if (codec_decode_item_event(d->codec, m->value, m->value_len, wall_ms(), &item,
					   &err) != 0) {
		dead_letter(d, m, &err);
		return;
	} else {
		snprintf(id, sizeof id, "%s", item.item_id);
		listed = item.in_stock;
	}
	uint32_t index;
	uint64_t hash;
	if (state_item(d->state, id, &index, &hash, errstr, sizeof errstr) != 0) {
		fail(d, errstr);
		return;
	}
	d->catalog_generation++;
	if (catalog_set_listed(d->catalog, index, listed) != 0) {
		fail(d, "out of memory for the catalogue");
		return;
	}
	/* a new item of a known category starts at its category's mean */
	const uint32_t *members;
	size_t member_count;
	if (m->value != NULL && item.has_category) {
		if (catalog_set_category(d->catalog, index, item.category, &members,
					 &member_count) != 0) {
			fail(d, "out of memory for the catalogue");
			return;
		}
		for (size_t v = 0; v < d->variant_count; v++)
			if (model_seed_item(state_model(d->state, v), index, hash, members,
					    member_count, errstr, sizeof errstr) < 0) {
				fail(d, errstr);
				return;
			}
	}
}

static void on_message(const struct consumer_message *m, void *opaque)
{
	struct daemon *d = opaque;
	struct user_event ev;
	struct codec_error err;
	char errstr[512];

	if (d->failed)
		return;
	if (d->config.items_topic != NULL && strcmp(m->topic, d->config.items_topic) == 0) {
		on_item(d, m);
		return;
	}
	if (codec_decode_user_event(d->codec, m->value, m->value_len, wall_ms(), &ev, &err) != 0) {
		if (dead_letter(d, m, &err) != 0)
			return;
	} else {
		uint32_t stable;
		if (state_learn(d->state, ev.user_id, ev.item_id, ev.type,
				ev.ts_ms, &stable, errstr, sizeof errstr) != 0) {
			fail(d, errstr);
			return;
		}
		d->metrics->events_total[ev.type]++;
		count_hit(d, stable, ev.item_id, ev.type);
		for (size_t v = 0; v < d->variant_count; v++)
			d->metrics->variants[v].updates_total++;
		if (mark_for_refresh(d, stable, ev.ts_ms) != 0) {
			fail(d, "out of memory queueing a refresh");
			return;
		}
	}
	state_mark_offset(d->state, m->topic, m->partition, m->offset);
	remember_position(d, m->topic, m->partition, m->offset);
}

static int offset_for(const char *topic, int32_t partition, int64_t *next_offset, void *opaque)
{
	struct daemon *d = opaque;
	char errstr[256];
	int64_t offset;
	if (d->config.items_topic != NULL && strcmp(topic, d->config.items_topic) == 0) {
		*next_offset = -1; /* the catalogue is read from its start: offset 0 */
		return 1;
	}
	int found = state_offset(d->state, topic, partition, &offset, errstr, sizeof errstr);
	if (found < 0)
		log_line(LOG_PRIORITY_ERROR, "stored offset of %s[%" PRId32 "]: %s", topic, partition, errstr);
	if (found == 1)
		*next_offset = offset; /* the consumer resumes at offset + 1 */
	if (found != 0 || d->config.state_on_empty == CONFIG_ON_EMPTY_COMMITTED)
		return found;
	/* no offset in the state (new or wiped): state.on_empty decides, not the group */
	*next_offset = d->config.state_on_empty == CONFIG_ON_EMPTY_LATEST ? CONSUMER_FROM_END
									 : CONSUMER_FROM_BEGINNING;
	return 1;
}

static int commit_now(struct daemon *d, bool wait);

static int on_revoke(const char *topic, int32_t partition, void *opaque)
{
	struct daemon *d = opaque;
	(void)topic;
	(void)partition;
	/* state first, so the next owner starts after what we learned */
	return commit_now(d, true);
}

static void on_error(const char *what, bool fatal, void *opaque)
{
	struct daemon *d = opaque;
	if (fatal)
		fail(d, what);
	else
		log_line(LOG_PRIORITY_WARNING, "kafka: %s", what);
}

static void on_lag(const char *topic, int32_t partition, int64_t lag, int64_t committed_lag,
		   void *opaque)
{
	struct daemon *d = opaque;
	metrics_set_consumer_lag(d->metrics, topic, partition, lag, committed_lag, NULL, 0);
}

/* ---- refresh ------------------------------------------------------------------------ */

/*
 * The items variant v may list: in the catalogue (or never named by it) and
 * learned on at least min_item_events times. Cached; recomputed when the
 * catalogue changed, items appeared, or it is a refresh interval old.
 * @returns the flags (one per item), or NULL when out of memory.
 */
static const uint8_t *listable_items(struct daemon *d, size_t v)
{
	struct model *model = state_model(d->state, v);
	size_t items = model_item_count(model);
	double now = ev_now(d->loop);
	if (d->listable[v] != NULL && d->listable_items[v] == items &&
	    d->listable_generation[v] == d->catalog_generation &&
	    now - d->listable_at[v] < (double)d->config.refresh_interval_ms / 1000.0)
		return d->listable[v];
	uint8_t *flags = realloc(d->listable[v], items ? items : 1);
	if (flags == NULL)
		return NULL;
	for (size_t i = 0; i < items; i++)
		flags[i] = catalog_listed(d->catalog, (uint32_t)i) &&
			   model_item_count_of(model, (uint32_t)i) >= d->config.min_item_events;
	d->listable[v] = flags;
	d->listable_items[v] = items;
	d->listable_at[v] = now;
	d->listable_generation[v] = d->catalog_generation;
	return flags;
}

/* Refreshes up to one batch; @returns how many users were taken from the queue. */
static size_t refresh(struct daemon *d)
{
	size_t batch = d->config.refresh_batch, k = 0;
	for (size_t v = 0; v < d->variant_count; v++)
		if (d->config.variants[v].k > k)
			k = d->config.variants[v].k;
	int64_t now = wall_ms(), min_interval = (int64_t)d->config.min_interval_ms;
	uint32_t slots[1024], stables[1024];
	static size_t by_variant[STATE_MAX_VARIANTS][1024];
	size_t counts[STATE_MAX_VARIANTS] = {0}, n = 0;
	struct topk_result *results = NULL;
	size_t *lengths = NULL;
	char errstr[512];
	struct codec_buf buf = {0};
	enum codec_framing publish_framing =
	    d->config.output_framing == 1 ? CODEC_FRAMING_CONFLUENT : CODEC_FRAMING_RAW;
	double start = ev_time();

	/* take up to `batch` users not refreshed within min_interval */
	size_t scanned = 0, waiting = d->queue_count;
	while (n < batch && scanned < waiting) {
		struct pending p = d->queue[d->queue_head];
		d->queue_head = (d->queue_head + 1) % d->queue_capacity;
		d->queue_count--;
		scanned++;
		if (now - d->last_refresh_ms[p.stable] < min_interval) {
			d->queue[(d->queue_head + d->queue_count++) % d->queue_capacity] = p;
			continue;
		}
		d->queued[p.stable] = 0;
		stables[n++] = p.stable;
	}
	if (n == 0)
		return 0;
	for (size_t u = 0; u < n; u++) {
		const char *name = state_user_name(d->state, stables[u]);
		size_t v =
		    assign_variant(d->config.experiment_salt, name, d->variants, d->variant_count);
		by_variant[v][counts[v]++] = u;
	}
	results = malloc(batch * k * sizeof *results);
	lengths = malloc(batch * sizeof *lengths);
	if (results == NULL || lengths == NULL)
		goto out_free;
	/* A lookup may evict: a sub-batch pins its users, as many as the cache
	 * can hold, so no slot changes hands while its list is computed. */
	static size_t chunk_variant[1024], chunk_first[1024];
	size_t chunks = 0, pinnable = state_user_pin_capacity(d->state);
	for (size_t v = 0; v < d->variant_count; v++)
		for (size_t first = 0; first < counts[v]; first += pinnable) {
			chunk_variant[chunks] = v;
			chunk_first[chunks++] = first;
		}
	for (size_t c = 0; c < chunks; c++) {
		size_t v = chunk_variant[c], first = chunk_first[c];
		size_t members = counts[v] - first < pinnable ? counts[v] - first : pinnable;
		const size_t *member = &by_variant[v][first];
		state_user_unpin_all(d->state);
		for (size_t j = 0; j < members; j++)
			if (state_user_pin(d->state, stables[member[j]], &slots[j], errstr,
					   sizeof errstr) != 0) {
				log_line(LOG_PRIORITY_WARNING, "refresh: %s", errstr);
				goto out_free;
			}
		struct model *model = state_model(d->state, v);
		size_t variant_k = d->config.variants[v].k;
		const uint8_t *listable = listable_items(d, v);
		if (listable == NULL)
			goto out_free;
		int rc = 0;
		if (d->config.variants[v].policy == CONFIG_POLICY_POPULARITY) {
			/* the control arm: all-time popularity, same exclusions and filters */
			uint32_t top[1000];
			for (size_t j = 0; j < members; j++) {
				lengths[j] =
				    model_popular(model, slots[j], variant_k, listable, top);
				for (size_t r = 0; r < lengths[j]; r++)
					results[j * variant_k + r] = (struct topk_result){
					    .item = top[r],
					    .score = (float)model_item_count_of(model, top[r])};
			}
		} else {
			rc = model_recommend(model, d->topk, slots, members, variant_k, listable,
					     results, lengths, errstr, sizeof errstr);
		}
		if (rc != 0) {
			log_line(LOG_PRIORITY_WARNING, "refresh: %s", errstr);
			goto out_free;
		}
		for (size_t j = 0; j < members; j++) {
			uint32_t stable = stables[member[j]];
			struct scored_item items[1000];
			for (size_t r = 0; r < lengths[j]; r++) {
				items[r].item_id =
				    state_item_id(d->state, results[j * variant_k + r].item);
				items[r].score = results[j * variant_k + r].score;
			}
			const char *user = state_user_name(d->state, stable);
			struct recommendation rec = {.user_id = user,
						     .variant = d->variants[v].name,
						     .model_step = (int64_t)model_step(model),
						     .generated_at_ms = wall_ms(),
						     .trigger_event_ts_ms = d->trigger_ts[stable],
						     .item_count = lengths[j],
						     .items = items};
			if (codec_encode_recommendation(d->codec, &rec, publish_framing, &buf,
							errstr, sizeof errstr) != 0 ||
			    producer_send(d->producer, d->config.output_topic, user, strlen(user),
					  buf.data, buf.len, NULL, 0, errstr, sizeof errstr) != 0) {
				log_line(LOG_PRIORITY_WARNING, "publish for %s: %s", user, errstr);
				continue;
			}
			d->last_refresh_ms[stable] = now;
			d->metrics->variants[v].recommendations_total++;
			if (remember_list(d, stable, v, &results[j * variant_k], lengths[j]) != 0) {
				fail(d, "out of memory remembering a published list");
				goto out_free;
			}
			metrics_histogram_observe(&d->metrics->variants[v].freshness_seconds,
						  (double)(wall_ms() - d->trigger_ts[stable]) /
						      1000.0);
		}
	}
	metrics_histogram_observe(&d->metrics->refresh_batch_seconds, ev_time() - start);
out_free:
	state_user_unpin_all(d->state);
	codec_buf_free(&buf);
	free(results);
	free(lengths);
	return n;
}

/*
 * One batch per idle turn of the loop, so refreshing and consuming take
 * turns: under load the queue grows between turns and batches fill up (the
 * matrix products get cheaper per user); when idle, a user is refreshed at
 * once. When nobody in the queue is due (min_interval), the watcher stops
 * and the refresh timer starts it again.
 */
static void on_refresh_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct daemon *d = w->data;
	(void)revents;
	double share = d->config.refresh_max_busy_share, now = ev_time();
	double bound = 0.2; /* seconds of credit kept either way */
	d->refresh_credit_s += share * (now - d->refresh_credit_at);
	d->refresh_credit_at = now;
	if (d->refresh_credit_s > bound)
		d->refresh_credit_s = bound;
	if (d->refresh_credit_s < -bound)
		d->refresh_credit_s = -bound;
	if (d->refresh_credit_s <= 0 && d->consumer != NULL && consumer_backlog(d->consumer)) {
		ev_idle_stop(loop, w); /* learning first; the timer comes back */
		return;
	}
	size_t refreshed = d->failed ? 0 : refresh(d);
	double end = ev_time();
	d->refresh_credit_s -= end - now;
	d->refresh_credit_at = end;
	if (refreshed == 0)
		ev_idle_stop(loop, w);
}

static void on_refresh(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = w->data;
	(void)revents;
	if (d->queue_count > 0)
		ev_idle_start(loop, &d->refresh_idle);
}

/* ---- commits ------------------------------------------------------------------------ */

/*
 * Hands the changed state and offsets to the writer thread; the Kafka
 * offsets of the previous batch are committed once it is durable.
 *
 * The offsets include those of bad messages, so every dead letter queued so
 * far must be delivered first: the wait is bounded, and a timer's commit
 * whose letters are still on their way is postponed to the next tick. A
 * letter that failed for good has already stopped the daemon (on_error,
 * fatal): we stop rather than pause and retry because librdkafka has retried
 * it for message.timeout.ms and the producer has cut it to fit, so what is
 * left (a missing topic, a refusing ACL or size limit) needs an operator;
 * the stored offset stays before the message, and a restart reads it again.
 */
static int commit_now(struct daemon *d, bool wait)
{
	char errstr[512];
	if (producer_wait_dead_letters(d->producer, wait ? 10000 : 2000, errstr,
				       sizeof errstr) != 0) {
		if (d->failed)
			return -1;
		if (!wait) {
			log_line(LOG_PRIORITY_WARNING, "commit postponed: %s", errstr);
			return 0;
		}
		goto out_fail;
	}
	if (d->failed)
		return -1;
	if (state_flush(d->state, errstr, sizeof errstr) != 0)
		goto out_fail;
	commit_kafka(d, d->inflight, d->inflight_count, true);
	d->inflight_count = 0;
	if (state_commit_async(d->state, errstr, sizeof errstr) != 0)
		goto out_fail;
	memcpy(d->inflight, d->positions, d->position_count * sizeof *d->positions);
	d->inflight_count = d->position_count;
	d->position_count = 0;
	d->metrics->commits_total++;
	if (wait) {
		if (state_flush(d->state, errstr, sizeof errstr) != 0)
			goto out_fail;
		commit_kafka(d, d->inflight, d->inflight_count, false);
		d->inflight_count = 0;
	}
	return 0;
out_fail:
	d->metrics->commit_failures_total++;
	fail(d, errstr);
	return -1;
}

static void on_commit(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = w->data;
	(void)loop;
	(void)revents;
	if (!d->failed)
		commit_now(d, false);
	d->metrics->state_bytes = (int64_t)state_bytes(d->state);
	d->metrics->items = (int64_t)model_item_count(state_model(d->state, 0));
	d->metrics->users = (int64_t)state_user_count(d->state);
	log_line(LOG_PRIORITY_DEBUG, "commit %" PRIu64 ": %" PRId64 " users, %" PRId64 " items",
		 d->metrics->commits_total, d->metrics->users, d->metrics->items);
}

/* ---- health, systemd, signals ---------------------------------------------------------- */

static bool is_ready(void *opaque, char *reason, size_t reason_size)
{
	struct daemon *d = opaque;
	if (d->failed) {
		snprintf(reason, reason_size, "failed: %s", d->error);
		return false;
	}
	if (!consumer_broker_up(d->consumer)) {
		snprintf(reason, reason_size, "Kafka broker unreachable");
		return false;
	}
	if (!consumer_assigned(d->consumer)) {
		snprintf(reason, reason_size, "no partitions assigned yet");
		return false;
	}
	return true;
}

/* ---- the status page ------------------------------------------------------------ */

static void status_page(const struct http_request *request, struct http_response *response,
			void *opaque)
{
	(void)request;
	(void)opaque;
	if (http_response_text(response, 200, status_page_html) == 0)
		response->content_type = "text/html; charset=utf-8";
}

static void status_json(const struct http_request *request, struct http_response *response,
			void *opaque)
{
	struct daemon *d = opaque;
	(void)request;
	char *body;
	size_t len;
	if (status_render_json(d->status, ev_now(d->loop), &body, &len) != 0) {
		http_response_text(response, 500, "out of memory\n");
		return;
	}
	response->status = 200;
	response->content_type = "application/json";
	response->body = body;
	response->body_len = len;
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = w->data;
	char reason[128];
	(void)loop;
	(void)revents;
	bool ready = is_ready(d, reason, sizeof reason);
	status_tick(d->status, ev_now(d->loop));
	log_suppressed_dead_letters(d);
	d->metrics->ready = ready;
	if (ready && !d->ready_sent) {
		sd_notify(0, "READY=1");
		d->ready_sent = true;
	}
	double p99 = metrics_histogram_quantile(&d->metrics->variants[0].freshness_seconds, 0.99);
	sd_notifyf(0, "WATCHDOG=1\nSTATUS=%s; %" PRIu64 " events; freshness p99 %.0f ms",
		   ready ? "ready" : reason, model_step(state_model(d->state, 0)), p99 * 1000);
}

/*
 * SIGHUP: read the file again; keys that can change at run time (the
 * intervals, the log level) take effect now; a change to any other key
 * refuses the whole reload, with a message naming each such key.
 */
static void reload(struct daemon *d)
{
	struct config next;
	char changes[2048] = "", errstr[2048];
	if (config_reload(&d->config, d->config.path, &next, changes, sizeof changes, errstr,
			  sizeof errstr) != 0) {
		log_line(LOG_PRIORITY_WARNING, "reload refused, configuration unchanged: %s",
			 errstr);
		return;
	}
	unsigned steps = config_apply_steps(&d->config, &next);
	config_free(&d->config);
	d->config = next; /* the variants are unchanged: their names are equal */
	for (size_t v = 0; v < d->variant_count; v++)
		d->variants[v].name = d->config.variants[v].name;
	/* each changed key's apply step (config.h); READ_AT_USE keys need none */
	if (steps & CONFIG_APPLY_TIMERS) {
		/* libev: an active timer's repeat is changed through ev_timer_again */
		d->refresh_timer.repeat = (double)d->config.refresh_interval_ms / 1000.0;
		d->commit_timer.repeat = (double)d->config.commit_interval_ms / 1000.0;
		ev_timer_again(d->loop, &d->refresh_timer);
		ev_timer_again(d->loop, &d->commit_timer);
	}
	if (steps & CONFIG_APPLY_LOG_LEVEL)
		log_set_level(d->config.log_level);
	if (steps & CONFIG_APPLY_LISTABLE)
		d->catalog_generation++; /* the listable flags are recomputed */
	log_line(LOG_PRIORITY_NOTICE, "reloaded %s: %s", d->config.path,
		 changes[0] ? changes : "no changes");
}

/*
 * SIGUSR1: a consistent copy of the state, taken while running, into
 * <state dir>.checkpoints/<unix ms>: the state is committed first, so the
 * copy holds everything learned so far with its offsets.
 */
static void checkpoint(struct daemon *d)
{
	char dir[4096], errstr[512];
	snprintf(dir, sizeof dir, "%s.checkpoints", d->config.state_dir);
	if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
		log_line(LOG_PRIORITY_WARNING, "checkpoint: %s: %s", dir, strerror(errno));
		return;
	}
	snprintf(dir, sizeof dir, "%s.checkpoints/%" PRId64, d->config.state_dir, wall_ms());
	if (commit_now(d, true) != 0)
		return;
	if (state_checkpoint(d->state, dir, errstr, sizeof errstr) != 0)
		log_line(LOG_PRIORITY_WARNING, "checkpoint: %s", errstr);
	else
		log_line(LOG_PRIORITY_NOTICE, "checkpoint written to %s", dir);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct daemon *d = w->data;
	(void)revents;
	if (w->signum == SIGUSR1) {
		checkpoint(d);
		return;
	}
	if (w->signum == SIGHUP) {
		reload(d);
		return;
	}
	if (++d->interrupts > 1 && w->signum == SIGINT) {
		log_line(LOG_PRIORITY_WARNING, "second SIGINT: exiting at once");
		_exit(130);
	}
	log_line(LOG_PRIORITY_NOTICE, "stopping: finishing the batch, writing state, flushing");
	sd_notify(0, "STOPPING=1");
	d->stopping = true;
	ev_break(loop, EVBREAK_ALL);
}

static void log_variant(const char *line, void *opaque)
{
	(void)opaque;
	log_line(LOG_PRIORITY_NOTICE, "%s", line);
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
	fprintf(out, "usage: streamrecd --config FILE [--check]\n"
		     "       streamrecd --print-config-reference | --print-default-config\n"
		     "       streamrecd --help | --version\n"
		     "  --check  check the configuration and the state (read-only), then exit\n"
		     "signals: TERM/INT stop gracefully, HUP reloads the configuration,\n"
		     "         USR1 writes a checkpoint of the state\n");
}

int main(int argc, char **argv)
{
	struct daemon daemon_state, *d = &daemon_state;
	const char *config_path = NULL;
	bool check_only = false;
	char errstr[1024];
	int status = 1;
	struct consumer_property *cprops = NULL;
	struct producer_property *pprops = NULL;

	memset(d, 0, sizeof *d);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config_path = argv[++i];
		else if (strcmp(argv[i], "--check") == 0)
			check_only = true;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("streamrecd %s\n", STREAMREC_VERSION);
			return 0;
		} else if (strcmp(argv[i], "--config") == 0) {
			fprintf(stderr, "streamrecd: --config needs a FILE\n");
			return 2;
		} else if (strcmp(argv[i], "--print-config-reference") == 0) {
			config_print_reference(stdout);
			return 0;
		} else if (strcmp(argv[i], "--print-default-config") == 0) {
			config_print_default_file(stdout);
			return 0;
		} else {
			fprintf(stderr, "streamrecd: unknown argument '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (config_path == NULL) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (config_load(config_path, &d->config, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrecd: %s\n", errstr);
		return 2;
	}
	log_set_level(d->config.log_level);

	sd_notify(0, "STATUS=loading state");
	struct model_config models[STATE_MAX_VARIANTS];
	const char *variant_names[STATE_MAX_VARIANTS], *start_from[STATE_MAX_VARIANTS];
	d->variant_count = d->config.variant_count;
	for (size_t v = 0; v < d->variant_count; v++) {
		models[v] = d->config.variants[v].model;
		/* the popularity arm ranks by counts: its embeddings would go unused */
		models[v].learn_embeddings =
		    d->config.variants[v].policy != CONFIG_POLICY_POPULARITY;
		variant_names[v] = d->config.variants[v].name;
		start_from[v] = d->config.variants[v].start_from;
		d->variants[v].name = d->config.variants[v].name;
		d->variants[v].share = d->config.variants[v].share;
	}
	struct state_config sc = {.dir = d->config.state_dir,
				  .variants = models,
				  .variant_count = d->variant_count,
				  .variant_names = variant_names,
				  .start_from = start_from,
				  .log = log_variant,
				  .sync_commits = d->config.sync_commits,
				  .log_dir = d->config.state_log_dir[0] ? d->config.state_log_dir
									: getenv("LOGS_DIRECTORY"),
				  .user_cache_users = d->config.user_cache_users,
				  .user_cache_bytes = d->config.user_cache_bytes,
				  .read_only = check_only};
	struct stat state_stat;
	if (check_only && stat(d->config.state_dir, &state_stat) != 0 && errno == ENOENT) {
		printf("streamrecd: %s and %s are fine: no state yet (it is created on the "
		       "first start)\n",
		       config_path, d->config.state_dir);
		status = 0;
		goto out_free;
	}
	d->state = state_open(&sc, errstr, sizeof errstr);
	if (d->state == NULL) {
		fprintf(stderr, "streamrecd: %s\n", errstr);
		goto out_free;
	}
	if (check_only) {
		printf("streamrecd: %s and %s are fine (%zu variants, %zu items)\n", config_path,
		       d->config.state_dir, d->variant_count,
		       model_item_count(state_model(d->state, 0)));
		status = 0;
		goto out_free;
	}
	d->loop = EV_DEFAULT;
	ev_idle_init(&d->refresh_idle, on_refresh_idle);
	d->refresh_idle.data = d;
	struct codec_config cc = {.framing = CODEC_FRAMING_AUTO,
				  .recommendation_schema_id = (int32_t)d->config.output_schema_id};
	d->codec = codec_new(&cc, errstr, sizeof errstr);
	/* writer schemas of Confluent-framed input, until a schema-registry client:
	 * our own UserEvent under input.schema_id, then input.schema_dir's files */
	if (d->codec != NULL &&
	    ((d->config.input_schema_id > 0 &&
	      codec_register_schema(d->codec, (int32_t)d->config.input_schema_id,
				    codec_schema_json("UserEvent"), errstr, sizeof errstr) != 0) ||
	     (d->config.input_schema_dir[0] != '\0' &&
	      codec_register_schema_dir(d->codec, d->config.input_schema_dir, errstr,
					sizeof errstr) < 0))) {
		fprintf(stderr, "streamrecd: input schemas: %s\n", errstr);
		goto out_free;
	}
	const char *names[STATE_MAX_VARIANTS];
	for (size_t v = 0; v < d->variant_count; v++)
		names[v] = d->variants[v].name;
	d->metrics = d->codec ? metrics_new(names, d->variant_count, errstr, sizeof errstr) : NULL;
	struct topk_config tc = {.max_batch = d->config.refresh_batch,
				 .max_k = 1000,
				 .threads = (int)d->config.refresh_threads};
	d->topk = d->metrics ? topk_new(&tc, errstr, sizeof errstr) : NULL;
	d->status = d->topk ? status_new(d->metrics) : NULL;
	d->catalog = d->status ? catalog_new() : NULL;
	if (d->topk != NULL && d->catalog == NULL)
		snprintf(errstr, sizeof errstr, "out of memory for the catalogue");
	d->dead_letter_log = d->catalog
				 ? ratelimit_new(CODEC_REASON_COUNT, DEAD_LETTER_LOG_WINDOW_S, 1,
						 errstr, sizeof errstr)
				 : NULL;
	if (d->dead_letter_log == NULL) {
		fprintf(stderr, "streamrecd: %s\n", errstr);
		goto out_free;
	}

	/* Kafka: [kafka] for both, then the role's own section on top */
	const char *brokers = config_kafka_property(&d->config, "consumer", "bootstrap.servers");
	/* sized from the counts: [kafka] goes to both, plus statistics.interval.ms */
	size_t ncp = 0, npp = 0;
	cprops = calloc(d->config.kafka.count + d->config.kafka_consumer.count + 1, sizeof *cprops);
	pprops = calloc(d->config.kafka.count + d->config.kafka_producer.count + 1, sizeof *pprops);
	if (cprops == NULL || pprops == NULL) {
		fprintf(stderr, "streamrecd: out of memory for the Kafka properties\n");
		goto out_free;
	}
	for (size_t i = 0; i < d->config.kafka.count; i++) {
		cprops[ncp++] = (struct consumer_property){d->config.kafka.items[i].name,
							   d->config.kafka.items[i].value};
		pprops[npp++] = (struct producer_property){d->config.kafka.items[i].name,
							   d->config.kafka.items[i].value};
	}
	for (size_t i = 0; i < d->config.kafka_consumer.count; i++)
		cprops[ncp++] = (struct consumer_property){d->config.kafka_consumer.items[i].name,
							   d->config.kafka_consumer.items[i].value};
	for (size_t i = 0; i < d->config.kafka_producer.count; i++)
		pprops[npp++] = (struct producer_property){d->config.kafka_producer.items[i].name,
							   d->config.kafka_producer.items[i].value};
	if (config_kafka_property(&d->config, "consumer", "statistics.interval.ms") == NULL)
		cprops[ncp++] = (struct consumer_property){"statistics.interval.ms", "5000"};
	const char *topics[] = {d->config.input_topic, d->config.items_topic};
	size_t topic_count =
	    d->config.items_topic != NULL && d->config.items_topic[0] != '\0' ? 2 : 1;
	if (topic_count == 1) {
		free(d->config.items_topic);
		d->config.items_topic = NULL;
	}
	struct consumer_config kc = {.brokers = brokers,
				     .group_id = d->config.group_id,
				     .topics = topics,
				     .topic_count = topic_count,
				     .properties = cprops,
				     .property_count = ncp,
				     .callbacks = {.on_message = on_message,
						   .offset_for = offset_for,
						   .on_revoke = on_revoke,
						   .on_error = on_error,
						   .on_lag = on_lag},
				     .opaque = d,
				     .log = log_kafka};
	struct producer_config pc = {
	    .brokers = config_kafka_property(&d->config, "producer", "bootstrap.servers"),
	    .properties = pprops,
	    .property_count = npp,
	    .on_error = on_error,
	    .opaque = d,
	    .log = log_kafka};
	d->producer = producer_new(&pc, d->loop, errstr, sizeof errstr);
	d->consumer = d->producer ? consumer_new(&kc, d->loop, errstr, sizeof errstr) : NULL;
	if (d->consumer == NULL) {
		fprintf(stderr, "streamrecd: %s\n", errstr);
		goto out_free;
	}
	if (d->config.http_listen != NULL && d->config.http_listen[0] != '\0') {
		struct http_config hc = {.listen = d->config.http_listen,
					 .idle_timeout_s =
					     (double)d->config.http_idle_timeout_ms / 1000.0};
		d->http = http_server_new(d->loop, &hc, errstr, sizeof errstr);
		if (d->http == NULL ||
		    http_server_route_metrics(d->http, d->metrics, errstr, sizeof errstr) != 0 ||
		    http_server_route_healthz(d->http, errstr, sizeof errstr) != 0 ||
		    http_server_route_readyz(d->http, is_ready, d, errstr, sizeof errstr) != 0 ||
		    http_server_route(d->http, "/status", status_page, d, errstr, sizeof errstr) !=
			0 ||
		    http_server_route(d->http, "/status.json", status_json, d, errstr,
				      sizeof errstr) != 0) {
			fprintf(stderr, "streamrecd: %s\n", errstr);
			goto out_free;
		}
	}

	double refresh_s = (double)d->config.refresh_interval_ms / 1000.0;
	double commit_s = (double)d->config.commit_interval_ms / 1000.0;
	uint64_t watchdog_us = 0;
	double watchdog_s = sd_watchdog_enabled(0, &watchdog_us) > 0 ? (double)watchdog_us / 2e6
								     : WATCHDOG_DEFAULT_S;
	ev_timer_init(&d->refresh_timer, on_refresh, refresh_s, refresh_s);
	ev_timer_init(&d->commit_timer, on_commit, commit_s, commit_s);
	ev_timer_init(&d->watchdog_timer, on_watchdog, 0.2, watchdog_s < 1 ? watchdog_s : 1.0);
	d->refresh_timer.data = d->commit_timer.data = d->watchdog_timer.data = d;
	ev_timer_start(d->loop, &d->refresh_timer);
	ev_timer_start(d->loop, &d->commit_timer);
	ev_timer_start(d->loop, &d->watchdog_timer);
	ev_signal_init(&d->sigint, on_signal, SIGINT);
	ev_signal_init(&d->sigterm, on_signal, SIGTERM);
	ev_signal_init(&d->sighup, on_signal, SIGHUP);
	ev_signal_init(&d->sigusr1, on_signal, SIGUSR1);
	d->sigint.data = d->sigterm.data = d->sighup.data = d->sigusr1.data = d;
	ev_signal_start(d->loop, &d->sigusr1);
	ev_signal_start(d->loop, &d->sigint);
	ev_signal_start(d->loop, &d->sigterm);
	ev_signal_start(d->loop, &d->sighup);
	log_line(LOG_PRIORITY_INFO, "running: %s -> %s, state %s, %zu variants", d->config.input_topic,
		 d->config.output_topic, d->config.state_dir, d->variant_count);
	sd_notify(0, "STATUS=waiting for partitions");

	ev_run(d->loop, 0);

	/* shutdown, in reverse order of start-up, each wait bounded */
	ev_timer_stop(d->loop, &d->refresh_timer);
	ev_idle_stop(d->loop, &d->refresh_idle);
	ev_timer_stop(d->loop, &d->commit_timer);
	ev_timer_stop(d->loop, &d->watchdog_timer);
	if (!d->failed) {
		consumer_pause_all(d->consumer, errstr, sizeof errstr);
		while (refresh(d) > 0) /* publish what is pending */
			;
		if (commit_now(d, true) == 0) {
			if (producer_flush(d->producer, 10000, errstr, sizeof errstr) != 0)
				log_line(LOG_PRIORITY_WARNING, "flush: %s", errstr);
			status = 0;
		}
	}
	consumer_close(d->consumer, 10000);
	d->consumer = NULL;
	log_line(LOG_PRIORITY_INFO, "stopped%s", d->failed ? " after a failure" : "");
out_free:
	consumer_close(d->consumer, 10000);
	producer_free(d->producer);
	http_server_free(d->http);
	topk_free(d->topk);
	metrics_free(d->metrics);
	codec_free(d->codec);
	state_close(d->state);
	config_free(&d->config);
	free(d->queue);
	for (size_t u = 0; u < d->user_capacity; u++)
		free(d->published[u]);
	free(d->published);
	free(d->queued);
	free(d->trigger_ts);
	free(d->last_refresh_ms);
	catalog_free(d->catalog);
	for (size_t v = 0; v < STATE_MAX_VARIANTS; v++)
		free(d->listable[v]);
	status_free(d->status);
	ratelimit_free(d->dead_letter_log);
	free(cprops);
	free(pprops);
	return status;
}
