#include "ops.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <systemd/sd-daemon.h>

#include "api.h"
#include "clock.h"
#include "ingest.h"
#include "log.h"
#include "model.h"

#define WATCHDOG_DEFAULT_S 5.0

void daemon_fail(struct daemon *d, const char *what)
{
	snprintf(d->error, sizeof d->error, "%s", what);
	d->failed = true;
	log_line(LOG_PRIORITY_ERROR, "%s", what);
	sd_notifyf(0, "STATUS=failed: %s", what);
	ev_break(d->loop, EVBREAK_ALL);
}

bool ops_ready(void *opaque, char *reason, size_t reason_size)
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

/* The A/B experiment's figures (daemon/experiment.h), for analysts. */
static void experiment_json(const struct http_request *request, struct http_response *response,
			    void *opaque)
{
	struct daemon *d = opaque;
	char errstr[256];
	(void)request;
	if (d->experiment == NULL) {
		http_response_text(response, 404, "no experiment: fewer than two variants\n");
		return;
	}
	char *body = experiment_render_json(d->experiment, errstr, sizeof errstr);
	if (body == NULL) {
		http_response_text(response, 500, "out of memory\n");
		return;
	}
	response->status = 200;
	response->content_type = "application/json";
	response->body = body;
	response->body_len = strlen(body);
}

/* The experiment's headline figures into the metrics (each watchdog tick). */
static void experiment_metrics(struct daemon *d)
{
	struct experiment_stats stats;
	if (d->experiment == NULL)
		return;
	experiment_compute(d->experiment, &stats);
	d->metrics->experiment_srm_p = stats.srm_p >= 0 ? stats.srm_p : 1;
	d->metrics->experiment_alpha = stats.alpha;
	for (size_t v = 0; v < stats.arm_count && v < d->metrics->variant_count; v++) {
		struct metrics_variant *mv = &d->metrics->variants[v];
		const struct experiment_arm_stats *a = &stats.arms[v];
		mv->experiment_exposed = a->exposed;
		mv->experiment_converted = a->converted;
		mv->experiment_msprt_p = a->msprt_p >= 0 ? a->msprt_p : -1;
		mv->experiment_control = a->control;
		mv->experiment_rate = a->rate;
		mv->experiment_rate_lower = a->ci_low;
		mv->experiment_rate_upper = a->ci_high;
		mv->experiment_uplift = a->uplift;
		mv->experiment_uplift_lower = a->uplift_low;
		mv->experiment_uplift_upper = a->uplift_high;
	}
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct daemon *d = w->data;
	char reason[128];
	(void)loop;
	(void)revents;
	bool ready = ops_ready(d, reason, sizeof reason);
	status_tick(d->status, ev_now(d->loop));
	experiment_metrics(d);
	ingest_log_suppressed(d);
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
	/* the one step that can be refused: taken first, so a refusal changes nothing */
	if ((steps & CONFIG_APPLY_API_PRIORITY) && d->api != NULL &&
	    api_set_priority(d->api, next.api_realtime_priority, errstr, sizeof errstr) != 0) {
		log_line(LOG_PRIORITY_WARNING, "reload refused, configuration unchanged: %s",
			 errstr);
		config_free(&next);
		return;
	}
	/* the implicit variant runs under the name its state was stored under
	 * (open_state()): next holds the default name, "model" */
	if (next.variants[0].line == 0 && d->config.variants[0].line == 0)
		snprintf(next.variants[0].name, sizeof next.variants[0].name, "%s",
			 d->config.variants[0].name);
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
		refresher_listing_changed(d->refresher);
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
	snprintf(dir, sizeof dir, "%s.checkpoints/%" PRId64, d->config.state_dir, clock_wall_ms());
	if (ingest_commit(d, true) != 0)
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

void ops_log_variant(const char *line, void *opaque)
{
	(void)opaque;
	log_line(LOG_PRIORITY_NOTICE, "%s", line);
}


int ops_start(struct daemon *d, char *errstr, size_t errstr_size)
{
	if (d->config.http_listen != NULL && d->config.http_listen[0] != '\0') {
		struct http_config hc = {.listen = d->config.http_listen,
					 .idle_timeout_s =
					     (double)d->config.http_idle_timeout_ms / 1000.0};
		d->http = http_server_new(d->loop, &hc, errstr, errstr_size);
		if (d->http == NULL ||
		    http_server_route_metrics(d->http, d->metrics, errstr, errstr_size) != 0 ||
		    http_server_route_healthz(d->http, errstr, errstr_size) != 0 ||
		    http_server_route_readyz(d->http, ops_ready, d, errstr, errstr_size) != 0 ||
		    http_server_route(d->http, "/status", status_page, d, errstr, errstr_size) !=
			0 ||
		    http_server_route(d->http, "/status.json", status_json, d, errstr,
				      errstr_size) != 0 ||
		    http_server_route(d->http, "/experiment.json", experiment_json, d, errstr,
				      errstr_size) != 0)
			return -1;
	}
	/* the lookup API on its own address and thread: the metrics port stays internal */
	if (d->config.api_listen != NULL && d->config.api_listen[0] != '\0') {
		struct http_config ac = {.listen = d->config.api_listen,
					 .key = "api.listen",
					 .keep_alive = true,
					 .max_connections = d->config.api_max_connections,
					 .idle_timeout_s =
					     (double)d->config.api_idle_timeout_ms / 1000.0};
		d->api = api_start(&ac, refresher_lists(d->refresher), errstr, errstr_size);
		if (d->api == NULL)
			return -1;
		if (d->config.api_realtime_priority > 0) {
			if (api_set_priority(d->api, d->config.api_realtime_priority, errstr,
					     errstr_size) != 0)
				return -1;
			log_line(LOG_PRIORITY_INFO, "lookup API thread: SCHED_FIFO priority %u",
				 d->config.api_realtime_priority);
		}
		log_line(LOG_PRIORITY_INFO, "lookup API on %s (port %u)", d->config.api_listen,
			 (unsigned)api_port(d->api));
	}
	/* the watchdog at half systemd's interval, and at least every second */
	uint64_t watchdog_us = 0;
	double watchdog_s = sd_watchdog_enabled(0, &watchdog_us) > 0 ? (double)watchdog_us / 2e6
								     : WATCHDOG_DEFAULT_S;
	ev_timer_init(&d->watchdog_timer, on_watchdog, 0.2, watchdog_s < 1 ? watchdog_s : 1.0);
	d->watchdog_timer.data = d;
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
	return 0;
}

void ops_stop(struct daemon *d)
{
	ev_timer_stop(d->loop, &d->watchdog_timer);
}
