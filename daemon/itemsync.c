#include "itemsync.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "clock.h"
#include "daemon.h"
#include "errstr.h"
#include "log.h"

#define ITEM_MAGIC "SRI2"
/* Bytes of one record at most (well under the broker's 1 MiB default). */
#define RECORD_BYTES (256 * 1024)
/* Items taken from a model per round of publishing. */
#define TAKE_CHUNK 1024

struct itemsync {
	struct daemon *d;
	struct consumer *consumer;
	ev_timer timer;
	char group[512];
	uint32_t *items;
	float *deltas;
	unsigned char *value; /* RECORD_BYTES: the record being built */
	size_t param_count, used, count, count_at;
};

/* ---- folding the others' changes ---------------------------------------------------- */



static void on_update(const struct consumer_message *m, void *opaque)
{
	struct daemon *d = opaque;
	struct itemsync *s = d->itemsync;
	const unsigned char *v = m->value;
	size_t len = m->value_len, at;
	char errstr[512], id[65536], name[256];

	if (d->failed)
		return;
	state_mark_offset(d->state, m->topic, m->partition, m->offset);
	if (v == NULL || len < 6 || memcmp(v, ITEM_MAGIC, 4) != 0)
		goto out_ignored;
	size_t name_len = v[4];
	at = 5;
	if (at + name_len + 1 > len)
		goto out_ignored;
	memcpy(name, v + at, name_len);
	name[name_len] = '\0';
	at += name_len;
	size_t instance_len = v[at++];
	if (at + instance_len + 8 > len)
		goto out_ignored;
	if (instance_len == strlen(d->instance_id) &&
	    memcmp(v + at, d->instance_id, instance_len) == 0)
		return; /* our own */
	at += instance_len;
	uint32_t n = bytes_get_le32(v + at), count = bytes_get_le32(v + at + 4);
	at += 8;
	if (n != s->param_count)
		goto out_ignored; /* another dim: not this configuration's */
	size_t variant = SIZE_MAX;
	for (size_t k = 0; k < state_variant_count(d->state); k++)
		if (strcmp(state_variant_name(d->state, k), name) == 0)
			variant = k;
	if (variant == SIZE_MAX)
		return; /* a variant this instance does not run */
	struct model *model = state_model(d->state, variant);
	for (uint32_t k = 0; k < count; k++) {
		if (len - at < 2)
			goto out_ignored;
		size_t id_len = (size_t)v[at] << 8 | v[at + 1];
		at += 2;
		if (id_len == 0 || id_len > CODEC_ID_MAX_BYTES ||
		    len - at < id_len + n * sizeof(float))
			goto out_ignored; /* (no event names an id that long: nor does an update) */
		memcpy(id, v + at, id_len);
		id[id_len] = '\0';
		at += id_len;
		uint32_t item;
		if (state_item_everywhere(d->state, id, &item, errstr, sizeof errstr) != 0) {
			daemon_fail(d, errstr);
			return;
		}
		/* little-endian floats: this host's order on x86-64 and arm64 */
		memcpy(s->deltas, v + at, n * sizeof(float));
		at += n * sizeof(float);
		model_share_fold(model, item, s->deltas);
		d->metrics->item_sync_folded_total++;
	}
	if (m->timestamp_ms > 0)
		d->metrics->item_sync_staleness_seconds =
		    (double)(clock_wall_ms() - m->timestamp_ms) / 1000.0;
	return;
out_ignored:
	d->metrics->item_sync_ignored_total++;
}

static int update_offset_for(const char *topic, int32_t partition, int64_t *next_offset,
			     void *opaque)
{
	struct daemon *d = opaque;
	char errstr[256];
	int found = state_offset(d->state, topic, partition, next_offset, errstr, sizeof errstr);
	if (found < 0)
		log_line(LOG_PRIORITY_ERROR, "stored offset of %s[%" PRId32 "]: %s", topic,
			 partition, errstr);
	if (found != 0)
		return found;
	*next_offset = CONSUMER_FROM_BEGINNING; /* a new instance folds every change */
	return 1;
}

static void on_update_error(const char *what, bool fatal, void *opaque)
{
	struct daemon *d = opaque;
	if (fatal)
		daemon_fail(d, what);
	else
		log_line(LOG_PRIORITY_WARNING, "kafka (item updates): %s", what);
}

/* ---- publishing ours ------------------------------------------------------------------ */

/* Sends the record being built (s->value[0, s->used)), if it holds items. */
static int send_record(struct itemsync *s, char *errstr, size_t errstr_size)
{
	struct daemon *d = s->d;
	if (s->count == 0)
		return 0;
	bytes_put_le32(s->value + s->count_at, (uint32_t)s->count);
	/* keyed by instance: one instance's changes stay in order */
	if (producer_send(d->producer, d->config.item_updates_topic, d->instance_id,
			  strlen(d->instance_id), s->value, s->used, NULL, 0, errstr,
			  errstr_size) != 0)
		return -1;
	s->count = 0;
	s->used = s->count_at + 4;
	return 0;
}

int itemsync_publish(struct itemsync *s, char *errstr, size_t errstr_size)
{
	struct daemon *d = s->d;
	const char *instance = d->instance_id;
	size_t instance_len = strlen(instance), delta_bytes = s->param_count * sizeof(float);
	for (size_t v = 0; v < state_variant_count(d->state); v++) {
		struct model *model = state_model(d->state, v);
		const char *name = state_variant_name(d->state, v);
		size_t name_len = strlen(name), taken;
		/* header, then up to RECORD_ITEMS items of at most 2 + 65535 + delta bytes */
		size_t header = 4 + 1 + name_len + 1 + instance_len + 8;
		unsigned char *p = s->value;
		memcpy(p, ITEM_MAGIC, 4);
		p[4] = (unsigned char)name_len;
		memcpy(p + 5, name, name_len);
		p[5 + name_len] = (unsigned char)instance_len;
		memcpy(p + 6 + name_len, instance, instance_len);
		bytes_put_le32(p + header - 8, (uint32_t)s->param_count);
		s->count_at = header - 4;
		s->used = header;
		s->count = 0;
		while ((taken = model_share_take(model, s->items, s->deltas, TAKE_CHUNK)) > 0) {
			for (size_t k = 0; k < taken; k++) {
				const char *id = state_item_id(d->state, s->items[k]);
				size_t id_len = strlen(id);
				if (s->used + 2 + id_len + delta_bytes > RECORD_BYTES &&
				    send_record(s, errstr, errstr_size) != 0)
					return -1;
				s->value[s->used] = (unsigned char)(id_len >> 8);
				s->value[s->used + 1] = (unsigned char)id_len;
				memcpy(s->value + s->used + 2, id, id_len);
				memcpy(s->value + s->used + 2 + id_len, s->deltas + k * s->param_count,
				       delta_bytes);
				s->used += 2 + id_len + delta_bytes;
				s->count++;
				d->metrics->item_sync_published_total++;
			}
		}
		if (send_record(s, errstr, errstr_size) != 0)
			return -1;
	}
	return 0;
}

static void on_sync_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct itemsync *s = w->data;
	char errstr[512];
	(void)loop;
	(void)revents;
	if (!s->d->failed && itemsync_publish(s, errstr, sizeof errstr) != 0)
		daemon_fail(s->d, errstr);
}

/* ---- life cycle ----------------------------------------------------------------------- */

struct itemsync *itemsync_new(struct daemon *d, char *errstr, size_t errstr_size)
{
	const struct config *c = &d->config;
	struct itemsync *s = calloc(1, sizeof *s);
	struct consumer_property *props = NULL;
	size_t count = 0;
	if (s == NULL)
		goto out_nomem;
	s->d = d;
	d->itemsync = s;
	if (strlen(d->instance_id) > 255 || strlen(c->group_id) > 200) {
		set_errstr(errstr, errstr_size,
			   "scaleout.instance_id: at most 255 bytes (and input.group_id 200), got %zu",
			   strlen(d->instance_id));
		goto out_free;
	}
	s->param_count = model_share_param_count(state_model(d->state, 0));
	s->items = malloc(TAKE_CHUNK * sizeof *s->items);
	s->deltas = malloc(TAKE_CHUNK * s->param_count * sizeof *s->deltas);
	s->value = malloc(RECORD_BYTES);
	props = calloc(c->kafka.count + c->kafka_consumer.count + 1, sizeof *props);
	if (s->items == NULL || s->deltas == NULL || s->value == NULL || props == NULL)
		goto out_nomem;
	for (size_t v = 0; v < state_variant_count(d->state); v++)
		if (model_share_param_count(state_model(d->state, v)) != s->param_count ||
		    model_share_enable(state_model(d->state, v)) != 0) {
			set_errstr(errstr, errstr_size,
				   "scaleout.item_updates_topic: every variant must have the same "
				   "dim (or out of memory)");
			goto out_free;
		}
	for (size_t i = 0; i < c->kafka.count; i++)
		props[count++] = (struct consumer_property){c->kafka.items[i].name,
							   c->kafka.items[i].value};
	for (size_t i = 0; i < c->kafka_consumer.count; i++)
		if (strcmp(c->kafka_consumer.items[i].name, "group.instance.id") != 0)
			props[count++] = (struct consumer_property){
			    c->kafka_consumer.items[i].name, c->kafka_consumer.items[i].value};
	/* a group of this instance alone: it reads every partition */
	snprintf(s->group, sizeof s->group, "%.200s.items.%.255s", c->group_id, d->instance_id);
	const char *topics[] = {c->item_updates_topic};
	struct consumer_config kc = {
	    .brokers = config_kafka_property(c, "consumer", "bootstrap.servers"),
	    .group_id = s->group,
	    .topics = topics,
	    .topic_count = 1,
	    .properties = props,
	    .property_count = count,
	    .callbacks = {.on_message = on_update,
			  .offset_for = update_offset_for,
			  .on_error = on_update_error},
	    .opaque = d,
	    .log = log_kafka};
	s->consumer = consumer_new(&kc, d->loop, errstr, errstr_size);
	free(props);
	props = NULL;
	if (s->consumer == NULL)
		goto out_free;
	double interval = (double)c->item_sync_interval_ms / 1000.0;
	ev_timer_init(&s->timer, on_sync_timer, interval, interval);
	s->timer.data = s;
	ev_timer_start(d->loop, &s->timer);
	log_line(LOG_PRIORITY_INFO, "sharing item vectors through %s as instance %s, every %.3f s",
		 c->item_updates_topic, d->instance_id, interval);
	return s;
out_nomem:
	set_errstr(errstr, errstr_size, "out of memory for the item sharing");
out_free:
	free(props);
	itemsync_free(s);
	d->itemsync = NULL;
	return NULL;
}

void itemsync_stop(struct itemsync *s)
{
	char errstr[512];
	if (s == NULL)
		return;
	ev_timer_stop(s->d->loop, &s->timer);
	if (!s->d->failed && itemsync_publish(s, errstr, sizeof errstr) != 0)
		log_line(LOG_PRIORITY_WARNING, "item updates at stop: %s", errstr);
	if (s->consumer != NULL) {
		consumer_close(s->consumer, 10000);
		s->consumer = NULL;
	}
}

void itemsync_free(struct itemsync *s)
{
	if (s == NULL)
		return;
	if (s->consumer != NULL)
		consumer_close(s->consumer, 10000);
	free(s->items);
	free(s->deltas);
	free(s->value);
	free(s);
}
