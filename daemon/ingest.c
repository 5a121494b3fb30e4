#include "ingest.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "clock.h"
#include "grow.h"
#include "log.h"
#include "model.h"
#include "publish.h"
#include "textembed.h"

/* Dead-letter log lines: at most one per reason in this window; metrics count all. */
#define DEAD_LETTER_LOG_WINDOW_S 10.0

/* How often the catalogue's consumer looks at its position while lists wait for it. */
#define CATALOGUE_LAG_INTERVAL_MS 100

/* A dead letter the producer's full queue did not take: read again after this. */
#define DEAD_LETTER_RETRY_MS 200

/* Texts the embedding pool keeps per thread (queued, in progress, or done and
 * not taken yet): a few seconds of look-ahead at tens of ms a text, and
 * 1.5 KB a vector. */
#define TEXT_POOL_TEXTS_PER_THREAD 64

/* Messages of a held partition looked ahead at, at most, before it is paused
 * (fewer when the pool is full): each is decoded, and read again later. */
#define TEXT_LOOKAHEAD_MESSAGES 1024

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
	if (d->position_count < DAEMON_MAX_PARTITIONS) {
		struct daemon_position *p = &d->positions[d->position_count++];
		snprintf(p->topic, sizeof p->topic, "%s", topic);
		p->partition = partition;
		p->next_offset = offset + 1;
	}
}

/* Commits positions to Kafka (for lag tools; the state's offsets are the truth). */
static void commit_kafka(struct daemon *d, const struct daemon_position *positions, size_t count,
			 bool async)
{
	struct consumer_position list[DAEMON_MAX_PARTITIONS];
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
void ingest_log_suppressed(struct daemon *d)
{
	for (size_t reason = 0; reason < CODEC_REASON_COUNT; reason++) {
		uint64_t suppressed =
		    ratelimit_take_suppressed(d->dead_letter_log, reason, ev_now(d->loop));
		if (suppressed > 0)
			log_suppressed((enum codec_reason)reason, suppressed);
	}
}

/* Counts a bad message and logs it (rate-limited), with note after the reason. */
static void note_refused(struct daemon *d, const struct consumer_message *m,
			 const struct codec_error *err, const char *note)
{
	d->metrics->invalid_events_total[err->reason]++;
	if (dead_letter_log_allowed(d, err->reason))
		log_line(LOG_PRIORITY_INFO, "%s[%" PRId32 "]@%" PRId64 ": %s: %s%s", m->topic,
			 m->partition, m->offset, codec_reason_name(err->reason), err->detail, note);
}

/* The consumer that delivers topic's messages. */
static struct consumer *consumer_of(struct daemon *d, const char *topic)
{
	return d->config.items_topic != NULL && strcmp(topic, d->config.items_topic) == 0
		   ? d->catalog_consumer
		   : d->consumer;
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
	note_refused(d, m, err, "");
	if (d->config.dead_letter_topic == NULL || d->config.dead_letter_topic[0] == '\0')
		return 0;
	int sent = producer_send_dead_letter(d->producer, d->config.dead_letter_topic,
					     codec_reason_name(err->reason), m->topic, m->partition,
					     m->offset, m->key, m->key_len, m->value, m->value_len,
					     errstr, sizeof errstr);
	if (sent == PRODUCER_QUEUE_FULL) {
		/* a slow broker, not a refusal: the message is read again shortly,
		 * its offset not marked (the lists' sends fill the same queue) */
		d->metrics->dead_letter_waits_total++;
		if (dead_letter_log_allowed(d, err->reason))
			log_line(LOG_PRIORITY_WARNING,
				 "%s[%" PRId32 "]@%" PRId64 ": dead letter waits: %s", m->topic,
				 m->partition, m->offset, errstr);
		if (consumer_retry_later(consumer_of(d, m->topic), m->topic, m->partition,
					 m->offset, DEAD_LETTER_RETRY_MS, errstr,
					 sizeof errstr) != 0)
			daemon_fail(d, errstr);
		return -1;
	}
	if (sent != 0) {
		snprintf(what, sizeof what,
			 "%s[%" PRId32 "]@%" PRId64 ": dead-letter send failed: %s; its offset is "
			 "not committed",
			 m->topic, m->partition, m->offset, errstr);
		daemon_fail(d, what);
		return -1;
	}
	d->metrics->dlq_messages_total++;
	return 0;
}

/*
 * A message whose writer schema cannot be had right now: not dead-lettered,
 * its offset not marked; the partition reads it again after registry.retry_ms.
 */
static void wait_for_schema(struct daemon *d, const struct consumer_message *m,
			    const struct codec_error *err)
{
	char errstr[512];
	d->metrics->schema_waits_total++;
	if (dead_letter_log_allowed(d, err->reason))
		log_line(LOG_PRIORITY_WARNING, "%s[%" PRId32 "]@%" PRId64 ": waits: %s", m->topic,
			 m->partition, m->offset, err->detail);
	if (consumer_retry_later(consumer_of(d, m->topic), m->topic, m->partition, m->offset,
				 (int)d->config.registry_retry_ms, errstr, sizeof errstr) != 0)
		daemon_fail(d, errstr);
}

/*
 * An item's content vector against the configured contract (content.dim,
 * content.model_name). @returns 0, or -1 with err naming the mismatch.
 */
static int check_content(const struct daemon *d, const struct item_event *item,
			 struct codec_error *err)
{
	const char *want_model = d->config.content_model_name;
	if (d->config.content_dim == 0)
		return 0; /* content off: the vector is ignored (and counted) */
	if (item->content_dim != d->config.content_dim) {
		err->reason = CODEC_ERR_INVALID_FIELD;
		snprintf(err->detail, sizeof err->detail,
			 "item %.64s: content.dim is %u, content.dim configured is %zu",
			 item->item_id, item->content_dim, d->config.content_dim);
		return -1;
	}
	if (want_model != NULL && want_model[0] != '\0' &&
	    strcmp(item->content_model, want_model) != 0) {
		err->reason = CODEC_ERR_INVALID_FIELD;
		snprintf(err->detail, sizeof err->detail,
			 "item %.64s: content.model is \"%.64s\", content.model_name configured is "
			 "\"%.64s\"",
			 item->item_id, item->content_model, want_model);
		return -1;
	}
	return 0;
}

/* Whether an item is to be embedded from its text: text, and no vector. */
static bool item_needs_text(const struct item_event *item)
{
	return !item->has_content && (item->title != NULL || item->description != NULL);
}

/* The text an item is embedded by: title and description (either may be
 * NULL), a line apart. @returns a malloc'd string, or NULL (out of memory). */
static char *item_text(const char *title, const char *description)
{
	size_t tl = title ? strlen(title) : 0, dl = description ? strlen(description) : 0;
	char *text = malloc(tl + dl + 2);
	if (text != NULL)
		snprintf(text, tl + dl + 2, "%s%s%s", title ? title : "", tl && dl ? "\n" : "",
			 description ? description : "");
	return text;
}

/* A text the model could not embed (NULL: out of memory): counted and logged. */
static void text_unembedded(struct daemon *d, const char *text, bool query)
{
	d->metrics->content_texts_unembedded_total++;
	log_line(LOG_PRIORITY_WARNING, "text model: could not embed a %s of %zu bytes",
		 query ? "search query" : "item text", text != NULL ? strlen(text) : 0);
}

/*
 * Text through the bundled model on the loop's thread (content.text_threads
 * 0): an item's text (item_text()) as a passage, or a search query.
 * @returns a malloc'd content.dim vector, or NULL (counted and logged: the
 * event is learned without it).
 */
static float *embed_text(struct daemon *d, const char *text, bool query)
{
	float *vector = malloc(d->config.content_dim * sizeof *vector);
	int rc = -1;
	if (text != NULL && vector != NULL)
		rc = query ? textembed_query(d->text_model, text, vector)
			   : textembed_passage(d->text_model, text, vector);
	if (rc != 0) {
		free(vector);
		text_unembedded(d, text, query);
		return NULL;
	}
	return vector;
}

/* The pool's tag of a partition's texts (embedpool_drop_owner() on revoke). */
static uint64_t text_owner(const char *topic, int32_t partition)
{
	return XXH3_64bits_withSeed(topic, strlen(topic), (uint64_t)(uint32_t)partition);
}

/*
 * The vector of a message's text from the text threads (content.text_threads
 * > 0). When it is not ready, the text is submitted (once: a pending text is
 * not queued twice) and the message held: its partition stops, its offset is
 * not marked, and it is delivered again once the text is done (on_text_done),
 * so the partition's events are learned in their order, as on the loop.
 * @returns 1 with *vector (malloc'd, the caller frees it; NULL when the model
 * refused the text, counted and logged), 0 when the message is held (the
 * caller leaves it unmarked), -1 after daemon_fail().
 */
static int pooled_vector(struct daemon *d, const struct consumer_message *m,
			 enum embedpool_kind kind, const char *text, float **vector)
{
	char errstr[512];
	if (embedpool_take(d->text_pool, kind, text, vector) == 1) {
		if (*vector == NULL)
			text_unembedded(d, text, kind == EMBEDPOOL_QUERY);
		/* a slot freed: a hold refused by a full pool may submit again now
		 * (no text done may come to tell it) */
		if (d->text_hold_count > 0)
			ev_async_send(d->loop, &d->text_done);
		return 1;
	}
	/* refused (the pool is full of texts in progress or waited for): held
	 * all the same, and submitted again when a text done releases it */
	embedpool_submit(d->text_pool, kind, text, text_owner(m->topic, m->partition), true);
	if (d->text_hold_count == d->text_hold_capacity &&
	    grow_array(&d->text_holds, &d->text_hold_capacity, d->text_hold_count + 1,
		       sizeof *d->text_holds, 16) != 0) {
		daemon_fail(d, "out of memory holding a message for its text");
		return -1;
	}
	struct daemon_text_hold *hold = &d->text_holds[d->text_hold_count];
	*hold = (struct daemon_text_hold){.consumer = consumer_of(d, m->topic),
					  .partition = m->partition,
					  .kind = kind,
					  .text = strdup(text)};
	snprintf(hold->topic, sizeof hold->topic, "%s", m->topic);
	if (hold->text == NULL) {
		daemon_fail(d, "out of memory holding a message for its text");
		return -1;
	}
	if (consumer_hold(hold->consumer, m->topic, m->partition, m->offset, errstr,
			  sizeof errstr) != 0) {
		free(hold->text);
		daemon_fail(d, errstr);
		return -1;
	}
	d->text_hold_count++;
	d->metrics->text_embed_holds_total++;
	return 0;
}

/* Forgets text_holds[k] (its partition was released or revoked). */
static void forget_hold(struct daemon *d, size_t k)
{
	free(d->text_holds[k].text);
	d->text_holds[k] = d->text_holds[--d->text_hold_count];
}

/* The pool's gauges into the metrics. */
static void count_text_pool(struct daemon *d)
{
	if (d->text_pool == NULL)
		return;
	d->metrics->text_embed_queue = (int64_t)embedpool_pending(d->text_pool);
	embedpool_embedded(d->text_pool, &d->metrics->text_embed_seconds_total);
}

/*
 * Releases every held partition whose text is no longer pending: done (the
 * message takes its vector when delivered again), or absent (refused when
 * the pool was full, or dropped: submitted again when delivered again).
 */
static void release_held(struct daemon *d)
{
	for (size_t k = 0; k < d->text_hold_count;) {
		struct daemon_text_hold *hold = &d->text_holds[k];
		if (embedpool_state(d->text_pool, hold->kind, hold->text) == EMBEDPOOL_PENDING) {
			k++;
			continue;
		}
		consumer_release(hold->consumer, hold->topic, hold->partition);
		forget_hold(d, k);
	}
	count_text_pool(d);
}

/* A text thread finished a text (embedpool's notify, through text_done). */
static void on_text_done(struct ev_loop *loop, ev_async *w, int revents)
{
	struct daemon *d = w->data;
	(void)loop;
	(void)revents;
	if (!d->failed)
		release_held(d);
}

/* From a text thread: wake the loop. */
static void notify_text_done(void *opaque)
{
	struct daemon *d = opaque;
	ev_async_send(d->loop, &d->text_done);
}

/* A partition was revoked: its held message and its texts go (the next
 * owner, or we from the stored offset, reads the message again). */
static void drop_text_partition(struct daemon *d, const char *topic, int32_t partition)
{
	if (d->text_pool == NULL)
		return;
	for (size_t k = 0; k < d->text_hold_count;) {
		struct daemon_text_hold *hold = &d->text_holds[k];
		if (hold->partition == partition && strcmp(hold->topic, topic) == 0) {
			/* its text may be another partition's look-ahead: no longer waited for */
			embedpool_drop(d->text_pool, hold->kind, hold->text);
			forget_hold(d, k);
		} else {
			k++;
		}
	}
	embedpool_drop_owner(d->text_pool, text_owner(topic, partition));
	/* another partition's message may have waited for a text dropped here:
	 * looked at on the loop's next turn (not from inside a rebalance) */
	ev_async_send(d->loop, &d->text_done);
}

/* The hold of topic/partition, or NULL. */
static struct daemon_text_hold *find_hold(struct daemon *d, const char *topic, int32_t partition)
{
	for (size_t k = 0; k < d->text_hold_count; k++)
		if (d->text_holds[k].partition == partition &&
		    strcmp(d->text_holds[k].topic, topic) == 0)
			return &d->text_holds[k];
	return NULL;
}

/*
 * Look-ahead: a message of a held partition, read again later. Its text, if
 * it needs one, is submitted now, so that the text threads have the next
 * texts to embed and they are ready when the message comes back. An
 * undecodable message is no matter here: it is all decided on delivery.
 * @returns whether to go on (false: the pool is full, or
 * TEXT_LOOKAHEAD_MESSAGES were looked at; the partition is paused).
 */
static bool on_skip(const struct consumer_message *m, void *opaque)
{
	struct daemon *d = opaque;
	struct codec_error err;
	struct daemon_text_hold *hold = find_hold(d, m->topic, m->partition);
	if (d->failed || d->text_pool == NULL || hold == NULL ||
	    ++hold->looked_ahead > TEXT_LOOKAHEAD_MESSAGES)
		return false;
	if (m->value == NULL)
		return true;
	uint64_t owner = text_owner(m->topic, m->partition);
	int submitted = 0;
	if (d->config.items_topic != NULL && strcmp(m->topic, d->config.items_topic) == 0) {
		struct item_event item;
		if (codec_decode_item_event(d->codec, m->value, m->value_len, clock_wall_ms(),
					    &item, &err) != 0 ||
		    !item_needs_text(&item))
			return true;
		char *text = item_text(item.title, item.description);
		if (text == NULL)
			return false;
		submitted = embedpool_submit(d->text_pool, EMBEDPOOL_PASSAGE, text, owner, false);
		free(text);
		return submitted >= 0;
	}
	struct user_event ev;
	if (codec_decode_user_event(d->codec, m->value, m->value_len, clock_wall_ms(), &ev,
				    &err) == 0 &&
	    ev.has_search && ev.search_vector == NULL && ev.search_text != NULL &&
	    d->config.content_dim != 0)
		submitted =
		    embedpool_submit(d->text_pool, EMBEDPOOL_QUERY, ev.search_text, owner, false);
	return submitted >= 0;
}

/*
 * Hands an item's content vector (checked by check_content()) to every
 * variant's model: a new item starts where the content map puts it.
 * embedded: the vector of the item's text from the text threads (owned;
 * NULL with text_done when the model refused it); without text_done the
 * text is embedded here, on the loop (content.text_threads 0).
 */
static void apply_content(struct daemon *d, const struct item_event *item, uint32_t index,
			  uint64_t hash, float *embedded, bool text_done)
{
	char errstr[256];
	const float *content = item->has_content ? item->content : NULL;
	if (item_needs_text(item)) {
		if (!text_done) {
			/* on this thread: tens of ms a text (README, Text embeddings) */
			if (d->text_model == NULL) {
				d->metrics->content_texts_unembedded_total++;
				return;
			}
			char *text = item_text(item->title, item->description);
			embedded = embed_text(d, text, false);
			free(text);
		}
		if (embedded == NULL)
			return;
		d->metrics->content_texts_embedded_total++;
		content = embedded;
	}
	if (content == NULL)
		return;
	if (d->config.content_dim == 0) {
		d->metrics->content_vectors_total[METRICS_CONTENT_IGNORED]++;
		free(embedded);
		return;
	}
	bool placed = false;
	for (size_t v = 0; v < d->variant_count; v++) {
		long rc = model_item_content(state_model(d->state, v), index, hash, content, errstr,
					     sizeof errstr);
		if (rc < 0) {
			daemon_fail(d, errstr);
			free(embedded);
			return;
		}
		placed = placed || rc == 1;
	}
	if (placed)
		refresher_listing_changed(d->refresher);
	d->metrics->content_vectors_total[placed ? METRICS_CONTENT_PLACED
						 : METRICS_CONTENT_STORED]++;
	free(embedded);
}

/*
 * Whether an earlier run read this catalogue record: the items topic is
 * re-read from its start on every start, and the state keeps the offset read
 * up to in each of its partitions. That offset only moves forward (on_item()):
 * a commit in the middle of a long re-read must not store a position below
 * the earlier run's, or what an earlier run refused would look new again.
 */
static bool catalogue_read_before(struct daemon *d, const struct consumer_message *m)
{
	char errstr[256];
	int64_t read_before;
	int found = state_offset(d->state, m->topic, m->partition, &read_before, errstr,
				 sizeof errstr);
	return found == 1 && m->offset <= read_before;
}

/*
 * A refused catalogue record goes to the dead-letter topic once: a record an
 * earlier run read was refused by it (the same bytes, read in the same
 * order), which sent it. It is logged and counted again, not sent.
 */
static void refuse_item(struct daemon *d, const struct consumer_message *m,
			const struct codec_error *err)
{
	if (catalogue_read_before(d, m)) {
		note_refused(d, m, err, " (dead-lettered by an earlier run: not sent again)");
		return;
	}
	if (dead_letter(d, m, err) != 0)
		return;
	state_mark_offset(d->state, m->topic, m->partition, m->offset);
}

/*
 * Applies a catalogue record (on_item()).
 * @returns 0 when it is done with (applied, or of no use), 1 when it was
 * refused (refuse_item() noted it) or is held for its text's vector, -1
 * when the daemon failed.
 */
static int apply_item(struct daemon *d, const struct consumer_message *m)
{
	struct item_event item;
	struct codec_error err;
	char id[CODEC_ID_MAX_BYTES + 1], errstr[256];
	bool listed;
	if (m->value == NULL) {
		if (m->key == NULL || m->key_len == 0 || m->key_len > CODEC_ID_MAX_BYTES ||
		    !codec_utf8_valid(m->key, m->key_len)) {
			/* the reason the README's table gives for such an id */
			err.reason = m->key == NULL || m->key_len == 0 ? CODEC_ERR_EMPTY_ID
				     : m->key_len > CODEC_ID_MAX_BYTES ? CODEC_ERR_ID_TOO_LONG
								       : CODEC_ERR_ID_NOT_UTF8;
			snprintf(err.detail, sizeof err.detail,
				 "tombstone without a valid item id key (%zu bytes%s)",
				 m->key != NULL ? m->key_len : 0,
				 err.reason == CODEC_ERR_ID_NOT_UTF8 ? ", not UTF-8" : "");
			refuse_item(d, m, &err);
			return 1;
		}
		memcpy(id, m->key, m->key_len);
		id[m->key_len] = '\0';
		listed = false; /* retired */
	} else if (codec_decode_item_event(d->codec, m->value, m->value_len, clock_wall_ms(), &item,
					   &err) != 0) {
		if (codec_reason_is_retriable(err.reason))
			wait_for_schema(d, m, &err); /* the registry is away: read again */
		else
			refuse_item(d, m, &err);
		return 1;
	} else {
		snprintf(id, sizeof id, "%s", item.item_id);
		listed = item.in_stock;
		if (item.has_content && check_content(d, &item, &err) != 0) {
			refuse_item(d, m, &err);
			return 1;
		}
	}
	uint32_t index;
	uint64_t hash;
	int64_t record_ms = m->value != NULL ? item.ts_ms : m->timestamp_ms;
	if (state_find_item(d->state, id) == UINT32_MAX &&
	    (m->value == NULL ||
	     state_item_too_old(d->state, record_ms, d->config.lifecycle_item_ttl_ms)) &&
	    (d->config.lifecycle_item_ttl_ms > 0 || d->config.lifecycle_max_items > 0)) {
		/* life cycle: an unknown item's tombstone, or a record older than
		 * lifecycle.item_ttl (the compacted topic is re-read at each start),
		 * would only make an item the next sweep removes */
		return 0;
	}
	/* the text's vector before anything of the record is applied: a
	 * record held for it is applied whole when delivered again */
	float *embedded = NULL;
	bool text_done = false;
	if (m->value != NULL && d->text_pool != NULL && item_needs_text(&item)) {
		char *text = item_text(item.title, item.description);
		if (text == NULL) {
			daemon_fail(d, "out of memory for an item's text");
			return -1;
		}
		int got = pooled_vector(d, m, EMBEDPOOL_PASSAGE, text, &embedded);
		free(text);
		if (got <= 0)
			return got == 0 ? 1 : -1; /* held, or failed */
		text_done = true;
	}
	if (state_item(d->state, id, &index, &hash, errstr, sizeof errstr) != 0 ||
	    (m->value != NULL && state_item_seen(d->state, index, record_ms, errstr,
						 sizeof errstr) != 0)) {
		daemon_fail(d, errstr);
		goto out_free_embedded;
	}
	refresher_listing_changed(d->refresher);
	if (catalog_set_listed(d->catalog, index, listed) != 0) {
		daemon_fail(d, "out of memory for the catalogue");
		goto out_free_embedded;
	}
	/* a new item of a known category starts at its category's mean */
	const uint32_t *members;
	size_t member_count;
	if (m->value != NULL && item.has_category) {
		if (catalog_set_category(d->catalog, index, item.category, &members,
					 &member_count) != 0) {
			daemon_fail(d, "out of memory for the catalogue");
			goto out_free_embedded;
		}
		for (size_t v = 0; v < d->variant_count; v++)
			if (model_seed_item(state_model(d->state, v), index, hash, members,
					    member_count, errstr, sizeof errstr) < 0) {
				daemon_fail(d, errstr);
				goto out_free_embedded;
			}
	}
	/* then its content vector, when it has one: q from the content map
	 * (y and the bias stay the category's mean) */
	if (m->value != NULL) {
		apply_content(d, &item, index, hash, embedded, text_done);
		return 0; /* embedded is apply_content()'s */
	}
	free(embedded);
	return 0;
out_free_embedded:
	free(embedded);
	return -1;
}

/*
 * A catalogue record: in stock or not, or a tombstone (retired). The items
 * topic is compacted and re-read from its start on every start (its offsets
 * are stored, but only to send a refused record to the dead-letter topic
 * once: refuse_item()), so the catalogue needs no state of its own.
 */
static void on_item(struct daemon *d, const struct consumer_message *m)
{
	d->metrics->catalogue_records_total++;
	if (apply_item(d, m) == 0 && !catalogue_read_before(d, m))
		state_mark_offset(d->state, m->topic, m->partition, m->offset);
}
/*
 * CUPED's covariate (daemon/experiment.h): a user's events before its first
 * exposure in the period, counted as they arrive and handed to the
 * experiment until the user is exposed. Measured before the user saw any
 * arm, it cannot depend on the arm (assignment is by hash), which is what
 * CUPED needs; it is the activity the daemon itself saw, since its start or
 * the period's (the counts live in memory: after a restart they count again).
 */
static int note_pre_activity(struct daemon *d, uint32_t stable)
{
	char errstr[256];
	if (experiment_exposed(d->experiment, stable))
		return 0;
	if ((size_t)stable >= d->pre_activity_capacity &&
	    grow_array(&d->pre_activity, &d->pre_activity_capacity, (size_t)stable + 1,
		       sizeof *d->pre_activity, 4096) != 0)
		return -1;
	d->pre_activity[stable]++;
	return experiment_set_pre(d->experiment, stable, (double)d->pre_activity[stable], errstr,
				  sizeof errstr);
}

/* The variants whose models learn from this user's events: every variant
 * that learns from all users, and the user's own (variant.NAME.learns_from). */
static int on_search(struct daemon *d, const struct consumer_message *m,
		     const struct user_event *ev);

static uint32_t learning_variants(const struct daemon *d, const char *user_id)
{
	uint32_t all = 0;
	bool own = false;
	for (size_t v = 0; v < d->variant_count; v++) {
		if (d->config.variants[v].learns_from == CONFIG_LEARNS_FROM_ALL)
			all |= 1u << v;
		else
			own = true;
	}
	if (own)
		all |= 1u << assign_variant(d->config.experiment_salt, user_id, d->variants,
					    d->variant_count);
	return all;
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
	if (codec_decode_user_event(d->codec, m->value, m->value_len, clock_wall_ms(), &ev, &err) != 0) {
		if (codec_reason_is_retriable(err.reason)) {
			/* the input is not at fault (the registry is away): it waits, unmarked */
			wait_for_schema(d, m, &err);
			return;
		}
		if (dead_letter(d, m, &err) != 0)
			return;
	} else if (ev.has_search) {
		if (on_search(d, m, &ev) != 0)
			return;
	} else {
		uint32_t stable, learners = learning_variants(d, ev.user_id);
		if (state_learn_for(d->state, ev.user_id, ev.item_id, ev.type, ev.ts_ms, learners,
				    &stable, errstr, sizeof errstr) != 0) {
			daemon_fail(d, errstr);
			return;
		}
		d->metrics->events_total[ev.type]++;
		for (size_t v = 0; v < d->variant_count; v++)
			d->metrics->variants[v].updates_total += learners >> v & 1;
		if (stable == UINT32_MAX)
			goto out_mark; /* not admitted yet (lifecycle.admit_after): no user, no list */
		if (d->experiment != NULL && note_pre_activity(d, stable) != 0) {
			daemon_fail(d, "out of memory counting a user's activity before exposure");
			return;
		}
		if (d->changelog != NULL && changelog_saw(d->changelog, stable, m->partition) != 0) {
			daemon_fail(d, "out of memory noting a user's partition");
			return;
		}
		refresher_count_hit(d->refresher, stable, ev.item_id, ev.type,
				    ev.has_list_id ? ev.list_id : NULL);
		if (refresher_mark(d->refresher, stable, ev.ts_ms, clock_wall_ms()) != 0) {
			daemon_fail(d, "out of memory queueing a refresh");
			return;
		}
		publish_wake(d);
	}
out_mark:
	state_mark_offset(d->state, m->topic, m->partition, m->offset);
	remember_position(d, m->topic, m->partition, m->offset);
}

/*
 * A search (UserEvent.search): its query vector, checked against the
 * content contract, moves the user's short-term intent in every variant the
 * user's events teach; the user's list is refreshed like after any event.
 * @returns 0, or -1 when the daemon failed or the event went to the
 * dead-letter topic and nothing more is to be done with it, or 1 when it is
 * held for its query's vector (pooled_vector()): not marked either.
 */
static int on_search(struct daemon *d, const struct consumer_message *m,
		     const struct user_event *ev)
{
	struct codec_error err;
	char errstr[256];
	const float *query = ev->search_vector;
	if (d->config.content_dim == 0) {
		d->metrics->search_events_total[METRICS_SEARCH_IGNORED]++;
		return 0;
	}
	float *embedded = NULL;
	if (query == NULL) {
		if (d->text_model == NULL || ev->search_text == NULL) {
			d->metrics->search_events_total[METRICS_SEARCH_UNEMBEDDED]++;
			return 0;
		}
		if (d->text_pool != NULL) {
			int got = pooled_vector(d, m, EMBEDPOOL_QUERY, ev->search_text, &embedded);
			if (got <= 0)
				return got == 0 ? 1 : -1;
		} else {
			embedded = embed_text(d, ev->search_text, true);
		}
		if (embedded == NULL)
			return 0;
		d->metrics->content_texts_embedded_total++;
		query = embedded;
	}
	const char *want_model = d->config.content_model_name;
	if (embedded == NULL &&
	    (ev->search_dim != d->config.content_dim ||
	     (want_model != NULL && want_model[0] != '\0' &&
	      strcmp(ev->search_model, want_model) != 0))) {
		err.reason = CODEC_ERR_INVALID_FIELD;
		snprintf(err.detail, sizeof err.detail,
			 "user %.64s: search.content is %u numbers of model \"%.64s\", configured "
			 "are content.dim %zu, content.model_name \"%.64s\"",
			 ev->user_id, ev->search_dim, ev->search_model, d->config.content_dim,
			 want_model != NULL ? want_model : "");
		return dead_letter(d, m, &err) != 0 ? -1 : 0;
	}
	uint32_t stable, applied, learners = learning_variants(d, ev->user_id);
	int rc = state_search_for(d->state, ev->user_id, query, ev->ts_ms, learners, &stable,
				  &applied, errstr, sizeof errstr);
	free(embedded);
	if (rc != 0) {
		daemon_fail(d, errstr);
		return -1;
	}
	d->metrics->search_events_total[applied ? METRICS_SEARCH_APPLIED
						: METRICS_SEARCH_NOT_APPLIED]++;
	if (applied) {
		if (refresher_mark(d->refresher, stable, ev->ts_ms, clock_wall_ms()) != 0) {
			daemon_fail(d, "out of memory queueing a refresh");
			return -1;
		}
		publish_wake(d);
	}
	return 0;
}

static int offset_for(const char *topic, int32_t partition, int64_t *next_offset, void *opaque)
{
	struct daemon *d = opaque;
	char errstr[256];
	int64_t offset;
	if (d->config.items_topic != NULL && strcmp(topic, d->config.items_topic) == 0) {
		*next_offset = CONSUMER_FROM_BEGINNING; /* the catalogue is read from its start */
		return 1;
	}
	int found = state_offset(d->state, topic, partition, &offset, errstr, sizeof errstr);
	if (found < 0)
		log_line(LOG_PRIORITY_ERROR, "stored offset of %s[%" PRId32 "]: %s", topic, partition, errstr);
	if (found == 1)
		*next_offset = offset; /* the consumer resumes at offset + 1 */
	if (found >= 0 && d->changelog != NULL && strcmp(topic, d->config.input_topic) == 0) {
		/* the partition's users may have been learned elsewhere since */
		int restored = changelog_restore(d->changelog, partition, found == 1, &offset,
						 errstr, sizeof errstr);
		if (restored < 0) {
			/* starting it cold would lose its users: stop instead */
			daemon_fail(d, errstr);
			return -1;
		}
		if (restored == 1) {
			*next_offset = offset;
			return 1;
		}
	}
	if (found != 0 || d->config.state_on_empty == CONFIG_ON_EMPTY_COMMITTED)
		return found;
	/* no offset in the state (new or wiped): state.on_empty decides, not the group */
	*next_offset = d->config.state_on_empty == CONFIG_ON_EMPTY_LATEST ? CONSUMER_FROM_END
									 : CONSUMER_FROM_BEGINNING;
	return 1;
}

static int on_revoke(const char *topic, int32_t partition, void *opaque)
{
	struct daemon *d = opaque;
	drop_text_partition(d, topic, partition);
	/* its lag is the next owner's to report now */
	metrics_remove_consumer_lag(d->metrics, topic, partition);
	/* state first, so the next owner starts after what we learned */
	if (ingest_commit(d, true) != 0)
		return -1;
	if (d->changelog != NULL) {
		/* and the changelog delivered, which the next owner restores from */
		char errstr[512];
		if (strcmp(topic, d->config.input_topic) == 0)
			changelog_revoked(d->changelog, partition);
		if (producer_flush(d->producer, (int)d->config.restore_timeout_ms, errstr,
				   sizeof errstr) != 0) {
			daemon_fail(d, errstr);
			return -1;
		}
	}
	return 0;
}

/* The catalogue read to its end, or the wait given up: lists are made again. */
void ingest_catalogue_loaded(struct daemon *d, bool complete)
{
	if (!d->catalogue_loading)
		return;
	d->catalogue_loading = false;
	d->metrics->catalogue_loading = 0;
	if (complete)
		log_line(LOG_PRIORITY_INFO,
			 "catalogue read to its end: %" PRIu64 " records in %.1f s; lists are made "
			 "from now on",
			 d->metrics->catalogue_records_total, ev_time() - d->catalogue_started);
	else
		log_line(LOG_PRIORITY_WARNING,
			 "catalogue not read to its end in %d s (%" PRIu64
			 " records so far): lists "
			 "are made without waiting longer, and may name items it retired or put "
			 "out of stock until it is",
			 CATALOGUE_WAIT_S, d->metrics->catalogue_records_total);
	publish_wake(d);
}

/* The catalogue holds no more than what was read: lists are made from now on. */
static void on_catalogue_caught_up(void *opaque)
{
	ingest_catalogue_loaded(opaque, true);
}

/* A catalogue partition was revoked: nothing of it is stored, its texts go. */
static int on_catalog_revoke(const char *topic, int32_t partition, void *opaque)
{
	drop_text_partition(opaque, topic, partition);
	return 0;
}

static void on_error(const char *what, bool fatal, void *opaque)
{
	struct daemon *d = opaque;
	if (fatal)
		daemon_fail(d, what);
	else
		log_line(LOG_PRIORITY_WARNING, "kafka: %s", what);
}

static void on_lag(const char *topic, int32_t partition, int64_t lag, int64_t committed_lag,
		   void *opaque)
{
	struct daemon *d = opaque;
	metrics_set_consumer_lag(d->metrics, topic, partition, lag, committed_lag, NULL, 0);
}

void ingest_forget_user(struct daemon *d, uint32_t stable)
{
	refresher_forget(d->refresher, stable);
	if ((size_t)stable < d->pre_activity_capacity)
		d->pre_activity[stable] = 0;
	if (d->experiment != NULL)
		experiment_forget_user(d->experiment, stable);
	if (d->changelog != NULL)
		changelog_unplace(d->changelog, stable);
}

int ingest_refresh_idle(struct daemon *d, char *errstr, size_t errstr_size)
{
	if (!refresher_busy(d->refresher))
		return 0;
	refresher_wait(d->refresher);
	return refresher_harvest(d->refresher, errstr, errstr_size) < 0 ? -1 : 0;
}

/* The life cycle removed a user in the commit being built: it goes from the
 * daemon, and from the changelog in the same commit (a tombstone before the
 * commit's rows and markers), so no next owner of its partition restores it. */
static void on_user_removed(uint32_t stable, const char *user_id, void *opaque)
{
	struct daemon *d = opaque;
	char errstr[512];
	if (d->changelog != NULL &&
	    changelog_forget(d->changelog, stable, user_id, errstr, sizeof errstr) != 0)
		daemon_fail(d, errstr);
	ingest_forget_user(d, stable);
}

/* An item left the state (embedding life cycle): the catalogue forgets its
 * index, and the listable flags are worked out again before the next round
 * (the state already says the index is not live). */
static void on_item_removed(uint32_t item, void *opaque)
{
	struct daemon *d = opaque;
	catalog_forget_item(d->catalog, item);
	refresher_listing_changed(d->refresher);
}

/*
 * Embedding life cycle (README): expired users and items, then the least
 * recently active above the bounds, leave the state in the commit about to
 * be built. A round out with the workers names its users by stable index
 * and ranks over the item view, so it is ranked and published first (a
 * wait of one round at most): no round in flight can list a removed item.
 */
static int lifecycle_sweep(struct daemon *d, char *errstr, size_t errstr_size)
{
	struct state_lifecycle lifecycle = {.user_ttl_ms = d->config.lifecycle_user_ttl_ms,
					    .max_users = d->config.lifecycle_max_users,
					    .item_ttl_ms = d->config.lifecycle_item_ttl_ms,
					    .max_items = d->config.lifecycle_max_items,
					    .on_item_removed = on_item_removed,
					    .opaque = d};
	if (lifecycle.user_ttl_ms == 0 && lifecycle.max_users == 0 && lifecycle.item_ttl_ms == 0 &&
	    lifecycle.max_items == 0)
		return 0;
	if (ingest_refresh_idle(d, errstr, errstr_size) != 0)
		return -1;
	struct state_lifecycle_counts before, after;
	state_lifecycle_counts(d->state, &before);
	long removed = state_lifecycle_sweep(d->state, &lifecycle, clock_wall_ms(), on_user_removed,
					     d, errstr, errstr_size);
	if (removed < 0)
		return -1;
	if (d->failed) {
		snprintf(errstr, errstr_size, "life cycle: a removed user's changelog tombstone failed");
		return -1;
	}
	/* the kept lists drop the removed items, saved with this commit: the
	 * lookup API never shows them, nor shows a later item by their ids */
	state_lifecycle_counts(d->state, &after);
	if (after.expired_items + after.evicted_items !=
		before.expired_items + before.evicted_items &&
	    refresher_forget_removed_items(d->refresher) != 0) {
		snprintf(errstr, errstr_size,
			 "life cycle: out of memory dropping removed items from the "
			 "kept lists");
		return -1;
	}
	if (removed > 0)
		log_line(LOG_PRIORITY_DEBUG, "life cycle: %ld users and items removed", removed);
	return 0;
}

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
int ingest_commit(struct daemon *d, bool wait)
{
	char errstr[512];
	/* on the timer, the previous write still going (a slow disk, a large
	 * batch) puts the commit off, before any wait for dead letters (it is
	 * asked again every 50 ms meanwhile): waiting kept the loop from
	 * learning and answering for seconds, and the next batch only grows by
	 * the rows changed meanwhile (each written once) */
	if (!wait && state_writing(d->state)) {
		d->metrics->commits_postponed_total++;
		state_pay(d->state); /* rows still owed: too few events came to pay them */
		return 1;
	}
	/* on the timer, a short wait and the commit is postponed: waiting 2 s
	 * on every tick while the dead-letter topic took nothing kept the loop
	 * from answering /readyz and /metrics for as long */
	if (producer_wait_dead_letters(d->producer, wait ? 10000 : 50, errstr,
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
	double started = clock_monotonic_s();
	if (state_flush(d->state, errstr, sizeof errstr) != 0)
		goto out_fail;
	commit_kafka(d, d->inflight, d->inflight_count, true);
	d->inflight_count = 0;
	if (lifecycle_sweep(d, errstr, sizeof errstr) != 0)
		goto out_fail;
	if (d->experiment != NULL) {
		/* the experiment's counters go in the same batch as what they count,
		 * after the sweep: a removed user's exposure goes with its keys */
		uint8_t *counters;
		size_t counters_len;
		if (experiment_export(d->experiment, &counters, &counters_len, errstr,
				      sizeof errstr) != 0)
			goto out_fail;
		int rc = state_put_aux(d->state, "experiment", counters, counters_len, errstr,
				       sizeof errstr);
		free(counters);
		if (rc != 0)
			goto out_fail;
	}
	/* the lists published since the last commit, for the lookup API and hits after a restart */
	refresher_save_lists(d->refresher);
	if (state_commit_async(d->state, errstr, sizeof errstr) != 0)
		goto out_fail;
	/* the commit's user rows went to the changelog: now what they cover */
	if (d->changelog != NULL &&
	    changelog_mark(d->changelog, d->positions, d->position_count, errstr, sizeof errstr) !=
		0)
		goto out_fail;
	memcpy(d->inflight, d->positions, d->position_count * sizeof *d->positions);
	d->inflight_count = d->position_count;
	d->position_count = 0;
	d->metrics->commits_total++;
	metrics_histogram_observe(&d->metrics->commit_loop_seconds, clock_monotonic_s() - started);
	if (!wait && state_owed(d->state) > 0 && !ev_is_active(&d->pay_timer)) {
		d->owed_at_tick = state_owed(d->state);
		ev_timer_again(d->loop, &d->pay_timer);
	}
	if (wait) {
		if (state_flush(d->state, errstr, sizeof errstr) != 0)
			goto out_fail;
		commit_kafka(d, d->inflight, d->inflight_count, false);
		d->inflight_count = 0;
	}
	return 0;
out_fail:
	d->metrics->commit_failures_total++;
	daemon_fail(d, errstr);
	return -1;
}

/* How soon a commit put off asks again. */
#define COMMIT_RETRY_S 0.05

/* How often the loop looks whether events still pay a commit's owed rows. */
#define PAY_CHECK_S 0.05

/* Events learned pay a commit's owed rows; when none came since the last
 * tick (the stream stopped or paused), the rest are paid here at once, so
 * that the commit's offsets are durable without waiting for the next one.
 * The loop has nothing else to do then. */
static void on_pay_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = w->data;
	(void)revents;
	size_t owed = state_owed(d->state);
	if (owed > 0 && owed == d->owed_at_tick) {
		state_pay(d->state);
		owed = 0;
	}
	d->owed_at_tick = owed;
	if (owed == 0)
		ev_timer_stop(loop, w);
}

/* The state's size gauges (users, items, the block cache's bound and use):
 * set at each commit, and at the start, so a scrape before the first commit
 * does not read 0 items. */
static void note_state_size(struct daemon *d)
{
	size_t cache_capacity, cache_usage;
	d->metrics->items = (int64_t)state_item_count(d->state);
	d->metrics->users = (int64_t)state_user_count(d->state);
	state_block_cache(d->state, &cache_capacity, &cache_usage);
	d->metrics->block_cache_capacity = (int64_t)cache_capacity;
	d->metrics->block_cache_usage = (int64_t)cache_usage;
}

static void on_commit_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = w->data;
	(void)revents;
	if (d->failed)
		return;
	/* put off: ask again shortly, then back to the interval */
	bool postponed = ingest_commit(d, false) == 1;
	double next = postponed ? COMMIT_RETRY_S : (double)d->config.commit_interval_ms / 1000.0;
	if (w->repeat != next) {
		w->repeat = next;
		ev_timer_again(loop, w);
	}
	if (postponed)
		return;
	d->metrics->state_bytes = (int64_t)state_bytes(d->state);
	for (int f = 0; f < STORE_FAMILY_COUNT && f < METRICS_STATE_FAMILIES; f++) {
		d->metrics->state_family_names[f] = store_family_name((enum store_family)f);
		state_written(d->state, (enum store_family)f, &d->metrics->state_written_rows[f],
			      &d->metrics->state_written_bytes[f]);
	}
	d->metrics->assigned_partitions = (int64_t)consumer_assigned_count(d->consumer);
	count_text_pool(d);
	note_state_size(d);
	state_user_restores(d->state, &d->metrics->user_restores_total,
			    &d->metrics->user_restores_waited_total);
	struct state_lifecycle_counts life;
	state_lifecycle_counts(d->state, &life);
	d->metrics->users_admitted_total = life.admitted_users;
	d->metrics->users_expired_total = life.expired_users;
	d->metrics->users_evicted_total = life.evicted_users;
	d->metrics->unadmitted_events_total = life.unadmitted_events;
	d->metrics->items_admitted_total = life.admitted_items;
	d->metrics->items_expired_total = life.expired_items;
	d->metrics->items_evicted_total = life.evicted_items;
	d->metrics->unadmitted_item_events_total = life.unadmitted_item_events;
	log_line(LOG_PRIORITY_DEBUG, "commit %" PRIu64 ": %" PRId64 " users, %" PRId64 " items",
		 d->metrics->commits_total, d->metrics->users, d->metrics->items);
}


int ingest_connect(struct daemon *d, char *errstr, size_t errstr_size)
{
	const struct config *c = &d->config;
	struct consumer_property *cprops = NULL;
	struct producer_property *pprops = NULL;
	size_t ncp = 0, npp = 0;
	int rc = -1;

	d->dead_letter_log =
	    ratelimit_new(CODEC_REASON_COUNT, DEAD_LETTER_LOG_WINDOW_S, 1, errstr, errstr_size);
	if (d->dead_letter_log == NULL)
		return -1;
	/* sized from the counts: [kafka] goes to both, plus statistics.interval.ms */
	cprops = calloc(c->kafka.count + c->kafka_consumer.count + 1, sizeof *cprops);
	pprops = calloc(c->kafka.count + c->kafka_producer.count + 1, sizeof *pprops);
	if (cprops == NULL || pprops == NULL) {
		snprintf(errstr, errstr_size, "out of memory for the Kafka properties");
		goto out_free;
	}
	for (size_t i = 0; i < c->kafka.count; i++) {
		cprops[ncp++] =
		    (struct consumer_property){c->kafka.items[i].name, c->kafka.items[i].value};
		pprops[npp++] =
		    (struct producer_property){c->kafka.items[i].name, c->kafka.items[i].value};
	}
	for (size_t i = 0; i < c->kafka_consumer.count; i++)
		cprops[ncp++] = (struct consumer_property){c->kafka_consumer.items[i].name,
							   c->kafka_consumer.items[i].value};
	for (size_t i = 0; i < c->kafka_producer.count; i++)
		pprops[npp++] = (struct producer_property){c->kafka_producer.items[i].name,
							   c->kafka_producer.items[i].value};
	if (config_kafka_property(c, "consumer", "statistics.interval.ms") == NULL)
		cprops[ncp++] = (struct consumer_property){"statistics.interval.ms", "5000"};
	if (d->config.items_topic != NULL && d->config.items_topic[0] == '\0') {
		free(d->config.items_topic);
		d->config.items_topic = NULL;
	}
	const char *topics[] = {c->input_topic};
	struct consumer_config kc = {
	    .brokers = config_kafka_property(c, "consumer", "bootstrap.servers"),
	    .group_id = c->group_id,
	    .topics = topics,
	    .topic_count = 1,
	    .properties = cprops,
	    .property_count = ncp,
	    .callbacks = {.on_message = on_message,
			  .offset_for = offset_for,
			  .on_revoke = on_revoke,
			  .on_error = on_error,
			  .on_lag = on_lag,
			  .on_skip = on_skip},
	    .opaque = d,
	    .log = log_kafka};
	struct producer_config pc = {
	    .brokers = config_kafka_property(c, "producer", "bootstrap.servers"),
	    .properties = pprops,
	    .property_count = npp,
	    .on_error = on_error,
	    .opaque = d,
	    .log = log_kafka};
	if (d->text_model != NULL && c->content_text_threads > 0) {
		ev_async_init(&d->text_done, on_text_done);
		d->text_done.data = d;
		ev_async_start(d->loop, &d->text_done);
		struct embedpool_config ec = {
		    .model = d->text_model,
		    .threads = c->content_text_threads,
		    .max_texts = (size_t)c->content_text_threads * TEXT_POOL_TEXTS_PER_THREAD,
		    .notify = notify_text_done,
		    .notify_opaque = d};
		d->text_pool = embedpool_new(&ec, errstr, errstr_size);
		if (d->text_pool == NULL)
			goto out_free;
	}
	d->producer = producer_new(&pc, d->loop, errstr, errstr_size);
	d->consumer = d->producer ? consumer_new(&kc, d->loop, errstr, errstr_size) : NULL;
	if (d->consumer == NULL)
		goto out_free;
	if (c->items_topic != NULL) {
		/* every instance needs the whole catalogue: a group of its own reads
		 * every partition (in the events' group, instances would split it) */
		size_t kept = 0;
		for (size_t i = 0; i < ncp; i++)
			if (strcmp(cprops[i].name, "group.instance.id") != 0)
				cprops[kept++] = cprops[i];
		const char *catalog_topics[] = {c->items_topic};
		snprintf(d->catalog_group, sizeof d->catalog_group, "%.200s.catalog.%.300s",
			 c->group_id, d->instance_id);
		struct consumer_config cc = kc;
		cc.group_id = d->catalog_group;
		cc.topics = catalog_topics;
		cc.property_count = kept;
		cc.callbacks = (struct consumer_callbacks){.on_message = on_message,
							   .offset_for = offset_for,
							   .on_revoke = on_catalog_revoke,
							   .on_error = on_error,
							   .on_skip = on_skip,
							   .on_caught_up = on_catalogue_caught_up};
		cc.lag_interval_ms = CATALOGUE_LAG_INTERVAL_MS;
		d->catalog_consumer = consumer_new(&cc, d->loop, errstr, errstr_size);
		if (d->catalog_consumer == NULL)
			goto out_free;
	}
	rc = 0;
out_free:
	free(cprops);
	free(pprops);
	return rc;
}

void ingest_start(struct daemon *d)
{
	note_state_size(d); /* from the start, not from the first commit */
	double commit_s = (double)d->config.commit_interval_ms / 1000.0;
	ev_timer_init(&d->commit_timer, on_commit_timer, commit_s, commit_s);
	d->commit_timer.data = d;
	ev_timer_start(d->loop, &d->commit_timer);
	ev_timer_init(&d->pay_timer, on_pay_timer, PAY_CHECK_S, PAY_CHECK_S);
	d->pay_timer.data = d;
	if (d->catalog_consumer != NULL) {
		d->catalogue_loading = true;
		d->metrics->catalogue_loading = 1;
		d->catalogue_started = ev_time();
		d->catalogue_wait_until = d->catalogue_started + CATALOGUE_WAIT_S;
	}
}

void ingest_stop(struct daemon *d)
{
	ev_timer_stop(d->loop, &d->commit_timer);
	ev_timer_stop(d->loop, &d->pay_timer);
	if (d->text_pool != NULL)
		ev_async_stop(d->loop, &d->text_done);
}

void ingest_free(struct daemon *d)
{
	embedpool_free(d->text_pool);
	d->text_pool = NULL;
	while (d->text_hold_count > 0)
		forget_hold(d, d->text_hold_count - 1);
	free(d->text_holds);
	d->text_holds = NULL;
	d->text_hold_capacity = 0;
}
