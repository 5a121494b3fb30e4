/*
 * streamrecd: the daemon's wiring. One libev loop drives the Kafka consumer,
 * the refresh, commit and watchdog timers, signals and the HTTP listener;
 * this file builds the parts in order, runs the loop, and takes them down
 * in reverse order.
 *
 *   streamrecd --config FILE          run
 *   streamrecd --config FILE --check  check the configuration and the state (read-only), then exit
 *   streamrecd --print-config-reference | --print-default-config
 *
 * Per event (ingest.c): decode (bad input goes to the dead-letter topic with
 * its reason), learn in every variant, mark the user for a refresh. The
 * refresh (refresh.c, driven by publish.c) batches marked users through their
 * variant's engine and publishes Recommendation records. The commit timer
 * writes changed rows and the consumed offsets in one RocksDB batch (on the
 * state's writer thread) and commits the Kafka offsets only once that batch
 * is durable. ops.c: health, signals, reload, checkpoint, watchdog.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>
#include <systemd/sd-daemon.h>

#include "clock.h"
#include "daemon.h"
#include "ingest.h"
#include "log.h"
#include "memkeep.h"
#include "model.h"
#include "ops.h"
#include "publish.h"

/*
 * The state, with one model per configured variant. Without [variant.*]
 * sections the one stored variant is served whatever its name (states before
 * 0.1 called it "control"), or a new state names it STATE_DEFAULT_VARIANT.
 * @returns 0, or -1 with errstr filled.
 */
static int open_state(struct daemon *d, bool read_only, char *errstr, size_t errstr_size)
{
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
	bool implicit = d->variant_count == 1 && d->config.variants[0].line == 0;
	struct state_config sc = {.dir = d->config.state_dir,
				  .variants = models,
				  .variant_count = d->variant_count,
				  .variant_names = implicit ? NULL : variant_names,
				  .start_from = start_from,
				  .log = ops_log_variant,
				  .sync_commits = d->config.sync_commits,
				  .nice = d->config.state_nice,
				  .log_dir = d->config.state_log_dir[0] ? d->config.state_log_dir
									: getenv("LOGS_DIRECTORY"),
				  .user_cache_users = d->config.user_cache_users,
				  .user_cache_bytes = d->config.user_cache_bytes,
				  .block_cache_bytes = d->config.state_block_cache_bytes,
				  .admit_after = d->config.lifecycle_admit_after,
				  .item_admit_after = d->config.lifecycle_item_admit_after,
				  .on_user_row = changelog_on_user_row,
				  .on_user_row_opaque = d,
				  .prepare_batches = true,
				  .read_only = read_only};
	d->state = state_open(&sc, errstr, errstr_size);
	if (d->state == NULL)
		return -1;
	if (implicit) {
		struct config_variant *cv = &d->config.variants[0];
		snprintf(cv->name, sizeof cv->name, "%s", state_variant_name(d->state, 0));
	}
	return 0;
}

/*
 * Where the codec finds writer schemas. With registry.url: ids are fetched
 * from the registry on a miss, and framed output registers Recommendation
 * under <output.topic>-value (TopicNameStrategy) and writes that id. Without:
 * our own UserEvent under input.schema_id, then input.schema_dir's files.
 * @returns 0, or -1 with errstr filled.
 */
static int open_schemas(struct daemon *d, char *errstr, size_t errstr_size)
{
	const struct config *c = &d->config;
	char why[512];
	if (c->registry_url[0] == '\0') {
		if ((c->input_schema_id > 0 &&
		     codec_register_schema(d->codec, (int32_t)c->input_schema_id,
					   codec_schema_json("UserEvent"), why, sizeof why) != 0) ||
		    (c->input_schema_dir[0] != '\0' &&
		     codec_register_schema_dir(d->codec, c->input_schema_dir, why, sizeof why) < 0)) {
			snprintf(errstr, errstr_size, "input schemas: %s", why);
			return -1;
		}
		return 0;
	}
	struct registry_config rc = {.url = c->registry_url,
				     .basic_auth = c->registry_basic_auth,
				     .tls_ca_file = c->registry_tls_ca_file[0] ? c->registry_tls_ca_file
									      : NULL,
				     .tls_cert_file =
					 c->registry_tls_cert_file[0] ? c->registry_tls_cert_file : NULL,
				     .tls_key_file =
					 c->registry_tls_key_file[0] ? c->registry_tls_key_file : NULL,
				     .tls_insecure = !c->registry_tls_verify,
				     .timeout_ms = (int)c->registry_timeout_ms};
	d->registry = registry_new(&rc, why, sizeof why);
	if (d->registry == NULL) {
		snprintf(errstr, errstr_size, "%s: registry: %s", c->path, why);
		return -1;
	}
	codec_set_schema_source(d->codec, registry_codec_source, d->registry);
	if (c->output_framing != CONFIG_FRAMING_CONFLUENT)
		return 0;
	char subject[512];
	int32_t id;
	if (registry_topic_subject(c->output_topic, subject, sizeof subject) != 0 ||
	    registry_register(d->registry, subject,
			      codec_writer_schema_json(d->codec, "Recommendation"), &id, why,
			      sizeof why) != REGISTRY_OK ||
	    codec_set_writer_schema_id(d->codec, "Recommendation", id, why, sizeof why) != 0) {
		snprintf(errstr, errstr_size, "registry: registering the output schema: %s", why);
		return -1;
	}
	log_line(LOG_PRIORITY_INFO, "registry: Recommendation is %s id %" PRId32, subject, id);
	return 0;
}

/*
 * The A/B experiment over the configured variants (two or more), each against
 * the control arm (experiment.control), with its counters restored from the
 * state: they survive restarts; a change of shares starts a new exposure
 * period (experiment_import). @returns 0, or -1 with errstr filled.
 */
static int open_experiment(struct daemon *d, char *errstr, size_t errstr_size)
{
	const struct config *c = &d->config;
	struct experiment_arm_config arms[STATE_MAX_VARIANTS];
	size_t control = 0, popularity = 0, popularity_arms = 0;
	char why[512];
	if (d->variant_count < 2)
		return 0;
	for (size_t v = 0; v < d->variant_count; v++) {
		arms[v] = (struct experiment_arm_config){d->variants[v].name, d->variants[v].share};
		if (c->variants[v].policy == CONFIG_POLICY_POPULARITY) {
			popularity = v;
			popularity_arms++;
		}
	}
	if (c->experiment_control[0] != '\0') {
		for (control = 0; control < d->variant_count; control++)
			if (strcmp(d->variants[control].name, c->experiment_control) == 0)
				break;
		if (control == d->variant_count) {
			snprintf(errstr, errstr_size, "%s: experiment.control: no variant is called '%s'",
				 c->path, c->experiment_control);
			return -1;
		}
	} else if (popularity_arms == 1) {
		control = popularity;
	}
	struct experiment_config ec = experiment_config_default();
	ec.name = c->experiment_salt;
	ec.arms = arms;
	ec.arm_count = d->variant_count;
	ec.control_arm = control;
	ec.start_ms = clock_wall_ms();
	ec.alpha = c->experiment_alpha;
	ec.msprt_tau2 = c->experiment_msprt_tau2;
	d->experiment = experiment_new(&ec, why, sizeof why);
	if (d->experiment == NULL) {
		snprintf(errstr, errstr_size, "%s: experiment: %s", c->path, why);
		return -1;
	}
	void *stored;
	size_t stored_len;
	int found = state_get_aux(d->state, "experiment", &stored, &stored_len, errstr, errstr_size);
	if (found < 0)
		return -1;
	if (found == 1) {
		int imported =
		    experiment_import(d->experiment, stored, stored_len, why, sizeof why);
		if (imported < 0)
			log_line(LOG_PRIORITY_WARNING,
				 "experiment: the stored counters are not restored (%s); it starts "
				 "afresh",
				 why);
		else if (imported == 1)
			log_line(
			    LOG_PRIORITY_NOTICE,
			    "experiment: control, alpha or msprt_tau2 changed since the counters "
			    "were stored: they are kept, and the sequential test starts again "
			    "from them");
		free(stored);
	}
	return 0;
}

/* Every user's last published list, as stored with the last commit. */
static int restore_lists(struct daemon *d, char *errstr, size_t errstr_size)
{
	size_t skipped = 0;
	long restored = refresher_restore_lists(d->refresher, &skipped, errstr, errstr_size);
	if (restored < 0)
		return -1;
	log_line(LOG_PRIORITY_INFO, "restored %ld published lists from the state%s", restored,
		 skipped ? " (some skipped: their variant or items are gone)" : "");
	return 0;
}

/*
 * A clean stop writes RocksDB's memtables to SST files after the last
 * commit, so the next start replays no WAL: re-inserting the WAL's rows
 * (up to its bound, some 400 MiB at 1M users and items) was the largest
 * part of a restart. A failure loses nothing (the WAL holds every commit):
 * it is logged and the stop goes on.
 */
static void flush_memtables(struct daemon *d)
{
	char errstr[512];
	uint64_t bytes;
	double started = clock_monotonic_s();
	sd_notify(0, "STATUS=stopping: writing the state's memtables");
	if (state_flush_memtables(d->state, &bytes, errstr, sizeof errstr) != 0) {
		log_line(LOG_PRIORITY_WARNING, "%s (the next start replays the log instead)",
			 errstr);
		return;
	}
	log_line(LOG_PRIORITY_INFO,
		 "wrote %.1f MiB of memtables in %.2f s, so the next start replays no log",
		 (double)bytes / (1 << 20), clock_monotonic_s() - started);
}

/*
 * content.text_model: the text model is opened at start (and by --check), so
 * that a missing or corrupt file stops the daemon before it consumes anything.
 */
static int open_text_model(struct daemon *d, const char *config_path)
{
	const char *path = d->config.content_text_model;
	char errstr[1024];
	if (path == NULL || path[0] == '\0')
		return 0;
	double started = clock_monotonic_s();
	if (textembed_open(path, &d->text_model, errstr, sizeof errstr) != 0) {
		log_start_error("%s: content.text_model: %s", config_path, errstr);
		return -1;
	}
	log_line(LOG_PRIORITY_INFO, "text model %s: %s, %u-dim, %s kernel, loaded in %.0f ms",
		 textembed_name(d->text_model), path, textembed_dim(d->text_model),
		 textembed_kernel(d->text_model), (clock_monotonic_s() - started) * 1000);
	/* item texts and search queries become content vectors: the same space */
	if (d->config.content_dim != textembed_dim(d->text_model)) {
		log_start_error(
			"%s: content.text_model %s gives %u-dim vectors but content.dim is %zu: set "
			"content.dim = %u (and content.model_name = %s for upstream vectors)",
			config_path, path, textembed_dim(d->text_model), d->config.content_dim,
			textembed_dim(d->text_model), textembed_name(d->text_model));
		textembed_close(d->text_model);
		d->text_model = NULL;
		return -1;
	}
	return 0;
}

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
	/* before any thread: freed memory (memtables, commit batches) is reused,
	 * not faulted in again (common/memkeep.h); false under a sanitizer */
	bool kept = memkeep_process();
	if (config_load(config_path, &d->config, errstr, sizeof errstr) != 0) {
		log_start_error("%s", errstr);
		return 2;
	}
	log_set_level(d->config.log_level);
	config_instance_id(&d->config, d->instance_id, sizeof d->instance_id);
	/* the BLAS kernel first: choosing one may re-execute the program */
	if (blas_choose(d->config.blas_kernel, argv, &d->blas, errstr, sizeof errstr) != 0) {
		log_start_error("%s: blas.kernel: %s", config_path, errstr);
		config_free(&d->config);
		return 2;
	}
	char kernel[384];
	blas_describe(&d->blas, kernel, sizeof kernel);
	log_line(d->blas.refused[0] || blas_below_cpu_best(&d->blas) ? LOG_PRIORITY_WARNING
								     : LOG_PRIORITY_INFO,
		 "%s", kernel);
	if (!kept)
		log_line(LOG_PRIORITY_INFO, "memory: the allocator refused mallopt(): freed memory "
					    "goes back to the kernel (glibc's default)");
	if (open_text_model(d, config_path) != 0) {
		status = 2;
		goto out_free;
	}

	if (check_only && d->config.registry_url[0] == '\0' &&
	    d->config.input_schema_dir[0] != '\0') {
		/* what the start reads besides the state: input.schema_dir's files */
		struct codec_config cc = {.framing = CODEC_FRAMING_AUTO};
		struct codec *codec = codec_new(&cc, errstr, sizeof errstr);
		int registered = codec != NULL
				     ? codec_register_schema_dir(codec, d->config.input_schema_dir,
								 errstr, sizeof errstr)
				     : -1;
		codec_free(codec);
		if (registered < 0) {
			log_line(LOG_PRIORITY_ERROR, "%s: input.schema_dir: %s", config_path,
				 errstr);
			status = 2;
			goto out_free;
		}
	}
	sd_notify(0, "STATUS=loading state");
	struct stat state_stat;
	if (check_only && stat(d->config.state_dir, &state_stat) != 0 && errno == ENOENT) {
		printf("streamrecd: %s and %s are fine: no state yet (it is created on the "
		       "first start)\n",
		       config_path, d->config.state_dir);
		status = 0;
		goto out_free;
	}
	if (open_state(d, check_only, errstr, sizeof errstr) != 0) {
		/* with its priority, as every line after the configuration: under
		 * systemd a line without one is filed as info */
		log_line(LOG_PRIORITY_ERROR, "%s", errstr);
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
	struct codec_config cc = {.framing = CODEC_FRAMING_AUTO,
				  .recommendation_schema_id = (int32_t)d->config.output_schema_id,
				  .recommendation_version = (int)d->config.output_schema_version};
	d->codec = codec_new(&cc, errstr, sizeof errstr);
	if (d->codec == NULL || open_schemas(d, errstr, sizeof errstr) != 0)
		goto out_error;
	const char *names[STATE_MAX_VARIANTS];
	for (size_t v = 0; v < d->variant_count; v++)
		names[v] = d->variants[v].name;
	d->metrics = metrics_new(names, d->variant_count, errstr, sizeof errstr);
	if (d->metrics == NULL)
		goto out_error;
	metrics_set_blas(d->metrics, d->blas.kernel, d->blas.cpu_best,
			 blas_choice_name(d->blas.choice));
	if (d->text_model != NULL)
		metrics_set_text_model(d->metrics, textembed_name(d->text_model),
				       textembed_dim(d->text_model), textembed_kernel(d->text_model));
	struct topk_config tc = {.max_batch = config_refresh_round_most(&d->config),
				 .max_k = 1000,
				 /* used only without workers (each worker has its own) */
				 .threads = 0};
	d->topk = topk_new(&tc, errstr, sizeof errstr);
	d->status = d->topk ? status_new(d->metrics) : NULL;
	/* the status page's first snapshot is the start (all counters at zero):
	 * taken at the first watchdog tick instead, it could come after the
	 * first events were learned and published, which the page then never
	 * counted in a window (a loaded machine's fresh-clone run saw it) */
	if (d->status != NULL)
		status_tick(d->status, ev_now(d->loop));
	d->catalog = d->status ? catalog_new() : NULL;
	if (d->catalog == NULL) {
		if (d->topk != NULL)
			snprintf(errstr, sizeof errstr, "out of memory for the catalogue");
		goto out_error;
	}
	if (open_experiment(d, errstr, sizeof errstr) != 0)
		goto out_error;
	struct refresh_config rc = {.state = d->state,
				    .topk = d->topk,
				    .catalog = d->catalog,
				    .metrics = d->metrics,
				    .config = &d->config,
				    .variants = d->variants,
				    .variant_count = d->variant_count,
				    .publish = publish_recommendation,
				    .opaque = d,
				    .experiment = d->experiment,
				    .threads = d->config.refresh_threads,
				    .nice = d->config.refresh_nice,
				    .notify = publish_notify,
				    .notify_opaque = d};
	d->refresher = refresher_new(&rc, errstr, sizeof errstr);
	if (d->refresher != NULL && d->config.changelog_topic != NULL &&
	    d->config.changelog_topic[0] != '\0') {
		d->changelog = changelog_new(d, errstr, sizeof errstr);
		if (d->changelog == NULL)
			goto out_error;
	}
	if (d->refresher == NULL || restore_lists(d, errstr, sizeof errstr) != 0 ||
	    refresher_build_indexes(d->refresher, errstr, sizeof errstr) < 0 ||
	    ingest_connect(d, errstr, sizeof errstr) != 0 ||
	    ops_start(d, errstr, sizeof errstr) != 0)
		goto out_error;
	if (d->config.item_updates_topic != NULL && d->config.item_updates_topic[0] != '\0' &&
	    itemsync_new(d, errstr, sizeof errstr) == NULL)
		goto out_error;
	ingest_start(d);
	publish_start(d);
	log_line(LOG_PRIORITY_INFO,
		 "running: %s -> %s, state %s, %zu variants, %u refresh workers%s",
		 d->config.input_topic, d->config.output_topic, d->config.state_dir,
		 d->variant_count, d->config.refresh_threads,
		 d->config.refresh_threads ? "" : " (lists ranked on the event loop)");
	sd_notify(0, "STATUS=waiting for partitions");

	ev_run(d->loop, 0);

	/* shutdown, in reverse order of start-up, each wait bounded */
	publish_stop(d);
	ingest_stop(d);
	ops_stop(d);
	if (!d->failed) {
		consumer_pause_all(d->consumer, errstr, sizeof errstr);
		publish_drain(d); /* publish what is due */
		itemsync_stop(d->itemsync); /* our last item changes, before the last commit */
		if (!d->failed && ingest_commit(d, true) == 0) {
			if (producer_flush(d->producer, 10000, errstr, sizeof errstr) != 0)
				log_line(LOG_PRIORITY_WARNING, "flush: %s", errstr);
			status = 0;
		}
	}
	consumer_close(d->consumer, 10000);
	d->consumer = NULL;
	consumer_close(d->catalog_consumer, 10000);
	d->catalog_consumer = NULL;
	if (status == 0)
		flush_memtables(d); /* after the revoke's commit in consumer_close() */
	log_line(LOG_PRIORITY_INFO, "stopped%s", d->failed ? " after a failure" : "");
	goto out_free;
out_error:
	log_line(LOG_PRIORITY_ERROR, "%s", errstr);
out_free:
	consumer_close(d->consumer, 10000);
	consumer_close(d->catalog_consumer, 10000);
	ingest_free(d); /* the text threads: after the consumers' last revoke */
	producer_free(d->producer);
	api_stop(d->api); /* before the refresher: it reads the refresher's lists */
	http_server_free(d->http);
	refresher_free(d->refresher);
	itemsync_free(d->itemsync);
	changelog_free(d->changelog);
	experiment_free(d->experiment);
	free(d->pre_activity);
	catalog_free(d->catalog);
	status_free(d->status);
	topk_free(d->topk);
	metrics_free(d->metrics);
	codec_free(d->codec); /* before the registry it borrows */
	registry_free(d->registry);
	ratelimit_free(d->dead_letter_log);
	state_close(d->state);
	textembed_close(d->text_model);
	config_free(&d->config);
	return status;
}
