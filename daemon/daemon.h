/*
 * daemon: the record streamrecd's wiring shares. main_streamrecd.c builds it
 * and runs the loop; ingest.c (input, dead letters, commits), publish.c
 * (the refresh's turns on the loop and the sending of lists) and ops.c
 * (health, signals, reload, checkpoint, watchdog, HTTP) work on it. Every
 * function of these modules runs on the loop's thread.
 *
 * Ownership: the daemon owns every handle below; main_streamrecd.c creates
 * them in order and releases them in reverse order at its out_free label.
 */
#ifndef STREAMREC_DAEMON_H
#define STREAMREC_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "api.h"
#include "assign.h"
#include "blas.h"
#include "catalog.h"
#include "changelog.h"
#include "itemsync.h"
#include "codec.h"
#include "config.h"
#include "experiment.h"
#include "consumer.h"
#include "embedpool.h"
#include "http.h"
#include "metrics.h"
#include "producer.h"
#include "ratelimit.h"
#include "refresh.h"
#include "registry.h"
#include "state.h"
#include "status.h"
#include "textembed.h"
#include "topk.h"

#define DAEMON_MAX_PARTITIONS 1024

/* A partition's next offset to read, with its own copy of the topic name. */
struct daemon_position {
	char topic[256];
	int32_t partition;
	int64_t next_offset;
};

/* A message held while the text threads embed its text (ingest.c). */
struct daemon_text_hold {
	struct consumer *consumer; /* borrowed: d->consumer or d->catalog_consumer */
	char topic[256];
	int32_t partition;
	enum embedpool_kind kind;
	char *text;          /* owned */
	size_t looked_ahead; /* messages after it shown to on_skip */
};

struct daemon {
	struct config config;
	char instance_id[320]; /**< config_instance_id() at start */
	struct blas_report blas;
	/** content.text_model, open for the life of the daemon; NULL: off. Shared by
	 * every thread that embeds item text or search queries (model/textembed.h:
	 * calls are reentrant). */
	struct textembed *text_model;
	/** content.text_threads embedding texts off the loop; NULL: on the loop
	 * (or no text model). Its workers wake the loop through text_done. */
	struct embedpool *text_pool;
	ev_async text_done;
	/** The messages held for their text, one per held partition. */
	struct daemon_text_hold *text_holds;
	size_t text_hold_count, text_hold_capacity;
	struct ev_loop *loop;
	struct state *state;
	struct codec *codec;
	struct registry *registry; /**< NULL: no registry.url */
	struct consumer *consumer;
	/** The catalogue (input.items_topic), read whole by every instance: a
	 * group of its own, GROUP.catalog.INSTANCE; NULL: no items topic. */
	struct consumer *catalog_consumer;
	char catalog_group[512];
	struct producer *producer;
	struct metrics *metrics;
	struct http_server *http;
	struct api *api; /**< the lookup API's thread; NULL: api.listen is empty */
	struct status *status;
	struct ratelimit *dead_letter_log;
	struct topk *topk;
	struct catalog *catalog;
	struct refresher *refresher;
	struct experiment *experiment; /**< NULL with fewer than two variants */
	struct changelog *changelog;   /**< NULL: scaleout.changelog_topic off */
	uint32_t *pre_activity;        /**< per stable user: events before exposure (CUPED) */
	size_t pre_activity_capacity;
	struct itemsync *itemsync;     /**< NULL: scaleout.item_updates_topic off */
	struct assign_variant variants[STATE_MAX_VARIANTS];
	size_t variant_count;

	/* consumed positions since the last commit, and those of the batch in flight */
	struct daemon_position positions[DAEMON_MAX_PARTITIONS], inflight[DAEMON_MAX_PARTITIONS];
	size_t position_count, inflight_count;

	ev_timer refresh_timer, commit_timer, watchdog_timer;
	/* while a commit's rows are still owed (state_owed()): pays them all
	 * when no event paid any since its last tick (ingest.c) */
	ev_timer pay_timer;
	size_t owed_at_tick;
	/* refreshes run whenever the loop has nothing more urgent (publish.c) */
	ev_idle refresh_idle;
	ev_async refresh_done; /* a worker finished a round (refresh.c's notify) */
	double refresh_credit_s, refresh_credit_at;
	/* from the start until the catalogue was read up to where it ended then
	 * (the consumer's on_caught_up) or CATALOGUE_WAIT_S passed: no list is
	 * made, since the stock flags, retirements and categories of an earlier
	 * run are not known yet (ingest.c, publish.c) */
	bool catalogue_loading;
	double catalogue_wait_until, catalogue_started;
	ev_signal sigint, sigterm, sighup, sigusr1;
	int interrupts;
	bool stopping, failed, ready_sent;
	char error[512];
};

/**
 * @brief Stop the loop for good after a fatal error (a state write, a dead
 * letter that cannot be delivered, a broker that refused us forever): the
 * error is logged, told to systemd, and shown by /readyz.
 */
void daemon_fail(struct daemon *d, const char *what);

#endif
