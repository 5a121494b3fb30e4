/* Configuration: defaults, every type, every error with its file:line, kafka passthrough,
 * variants, reload, and the generated default file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* The keys every file needs; tests add theirs after it (lines 1-4). */
#define BASE "[state]\ndir = /tmp/streamrec-test\n[kafka]\nbootstrap.servers = localhost:9092\n"

static char path[64];

static int make_path(void **state)
{
	(void)state;
	snprintf(path, sizeof path, "/tmp/streamrec-060-%ld.conf", (long)getpid());
	return 0;
}

static int remove_path(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

static void write_file(const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void load_ok(const char *text, struct config *config)
{
	char errstr[512] = "";
	write_file(text);
	if (config_load(path, config, errstr, sizeof errstr) != 0)
		fail_msg("unexpected error: %s", errstr);
}

/* Loading text fails with exactly "<path>:<expected>". */
static void load_fails(const char *text, const char *expected)
{
	char errstr[512] = "", want[600];
	struct config config;
	write_file(text);
	assert_int_equal(config_load(path, &config, errstr, sizeof errstr), -1);
	snprintf(want, sizeof want, "%s:%s", path, expected);
	assert_string_equal(errstr, want);
	/* a failed load leaves nothing to free */
	assert_null(config.path);
	assert_null(config.kafka.items);
}

static void defaults(void **state)
{
	(void)state;
	struct config c;
	struct model_config m;
	model_config_default(&m);
	load_ok(BASE, &c);
	assert_string_equal(c.input_topic, "events");
	assert_string_equal(c.items_topic, "items");
	assert_string_equal(c.dead_letter_topic, "events.dlq");
	assert_string_equal(c.group_id, "streamrecd");
	assert_string_equal(c.output_topic, "recs");
	assert_string_equal(c.state_dir, "/tmp/streamrec-test");
	assert_int_equal(c.commit_interval_ms, 5000);
	assert_false(c.sync_commits);
	assert_int_equal(c.user_cache_users, 0);
	assert_int_equal(c.user_cache_bytes, 0);
	assert_string_equal(c.http_listen, "127.0.0.1:9464");
	assert_int_equal(c.refresh_interval_ms, 50);
	assert_int_equal(c.refresh_batch, 128);
	assert_int_equal(c.refresh_batch_behind, 1024);
	assert_int_equal(c.min_interval_ms, 20);
	assert_int_equal(c.log_level, CONFIG_LOG_INFO);
	assert_string_equal(c.experiment_salt, "streamrec");
	assert_int_equal(c.variant_count, 1);
	assert_string_equal(c.variants[0].name, "model");
	assert_true(c.variants[0].share == 1.0);
	assert_int_equal(c.variants[0].policy, CONFIG_POLICY_MODEL);
	assert_int_equal(c.variants[0].k, 20);
	const struct model_config *v = &c.variants[0].model;
	assert_int_equal(v->dim, m.dim);
	assert_int_equal(v->optimizer, m.optimizer);
	assert_true(v->learning_rate == m.learning_rate && v->l2 == m.l2);
	assert_int_equal(v->negatives, m.negatives);
	assert_memory_equal(v->event_weight, m.event_weight, sizeof m.event_weight);
	assert_int_equal(v->recent_items, m.recent_items);
	assert_true(v->covis_weight == m.covis_weight);
	assert_int_equal(v->covis_neighbours, m.covis_neighbours);
	assert_int_equal(v->covis_window, m.covis_window);
	assert_true(v->covis_half_life_events == m.covis_half_life_events);
	assert_true(v->sampler_exponent == m.sampler_exponent);
	assert_true(v->correction_weight == m.correction_weight);
	assert_true(v->trending_half_life_ms == m.trending_half_life_ms);
	assert_true(v->init_std == m.init_std);
	assert_true(v->use_taste && v->use_intent && v->use_covis && v->use_correction);
	assert_int_equal(v->exclusion, m.exclusion);
	assert_int_equal(v->seed, m.seed);
	assert_string_equal(c.path, path);
	assert_int_equal(c.kafka.count, 1);
	config_free(&c);
	config_free(&c); /* a freed config is zeroed: freeing again is harmless */
}

static void every_type_parses(void **state)
{
	(void)state;
	struct config c;
	load_ok(BASE "[input]\n"
		     "topic = ev2    # a string value loses the comment too\n"
		     "items_topic =\n"
		     "  [state]   \n" /* indented header: leading blanks are ignored */
		     "commit_interval_ms = 2s\n"
		     "sync_commits = yes\n"
		     "user_cache_users = 100000\n"
		     "user_cache_bytes = 64M\n"
		     "; a comment\n"
		     "# another\n"
		     "[refresh]\n"
		     "interval_ms = 250   # inline comments, as the README's examples write them\n"
		     "min_interval_ms = 1m\t# after a tab\n"
		     "batch = 64 ; or after ';'\n"
		     "k = 50\n"
		     "[log]\n"
		     "level = DEBUG\n"
		     "[model]\n"
		     "dim = 64\n"
		     "optimizer = sgd\n"
		     "learning_rate = 0.05\n"
		     "weight.remove_from_cart = -1.25\n"
		     "trending_half_life_ms = 7d\n"
		     "use_covis = off\n"
		     "exclusion = interacted\n"
		     "seed = 18446744073709551615\n"
		     "covis_half_life_events = 2.5e6\n"
		     "[experiment]\n"
		     "salt = spring#2026\n", /* '#' not after a blank is the value's */
		&c);
	assert_string_equal(c.input_topic, "ev2");
	assert_string_equal(c.experiment_salt, "spring#2026");
	assert_string_equal(c.items_topic, "");
	assert_int_equal(c.commit_interval_ms, 2000);
	assert_true(c.sync_commits);
	assert_int_equal(c.user_cache_users, 100000);
	assert_int_equal(c.user_cache_bytes, 64u << 20);
	assert_int_equal(c.refresh_interval_ms, 250);
	assert_int_equal(c.min_interval_ms, 60000);
	assert_int_equal(c.refresh_batch, 64);
	assert_int_equal(c.log_level, CONFIG_LOG_DEBUG);
	const struct config_variant *v = &c.variants[0];
	assert_int_equal(v->k, 50);
	assert_int_equal(v->model.dim, 64);
	assert_int_equal(v->model.optimizer, MODEL_SGD);
	assert_true(v->model.learning_rate == 0.05f);
	assert_true(v->model.event_weight[EVENT_REMOVE_FROM_CART] == -1.25f);
	assert_true(v->model.trending_half_life_ms == 604800000.0);
	assert_false(v->model.use_covis);
	assert_int_equal(v->model.exclusion, MODEL_EXCLUDE_INTERACTED);
	assert_true(v->model.seed == UINT64_MAX);
	assert_true(v->model.covis_half_life_events == 2.5e6);
	config_free(&c);

	/* every unit of sizes and durations */
	static const struct {
		const char *text;
		uint64_t bytes;
	} sizes[] = {
	    {"1024", 1024},   {"512K", 512 << 10},  {"512 KiB", 512 << 10}, {"3m", 3u << 20},
	    {"1G", 1u << 30}, {"2 GB", 2ull << 30}, {"1T", 1ull << 40},     {"0", 0},
	    {"7b", 7}};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		char text[256];
		snprintf(text, sizeof text, BASE "[state]\nuser_cache_bytes = %s\n", sizes[i].text);
		load_ok(text, &c);
		assert_true(c.user_cache_bytes == sizes[i].bytes);
		config_free(&c);
	}
	static const struct {
		const char *text;
		uint64_t ms;
	} durations[] = {{"100", 100},    {"500ms", 500},  {"2s", 2000},      {"1m", 60000},
			 {"3 m", 180000}, {"100 MS", 100}, {"600000", 600000}};
	for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
		char text[256];
		snprintf(text, sizeof text, BASE "[state]\ncommit_interval_ms = %s\n",
			 durations[i].text);
		load_ok(text, &c);
		assert_true(c.commit_interval_ms == durations[i].ms);
		config_free(&c);
	}
}

static void bad_values_name_file_line_and_key(void **state)
{
	(void)state;
	static const struct {
		const char *text, *error;
	} cases[] = {
	    {BASE "[model]\ndim = 0\n", "6: model.dim: must be between 4 and 1024, got 0"},
	    {BASE "[model]\ndim = 1025\n", "6: model.dim: must be between 4 and 1024, got 1025"},
	    {BASE "[model]\ndim = -3\n", "6: model.dim: must be between 4 and 1024, got -3"},
	    {BASE "[model]\ndim = 3x\n", "6: model.dim: expected an unsigned integer, got '3x'"},
	    {BASE "[model]\ndim =\n", "6: model.dim: expected an unsigned integer, got ''"},
	    {BASE "[model]\nlearning_rate = 0\n",
	     "6: model.learning_rate: must be in (0, 10], got 0"},
	    {BASE "[model]\nl2 = 1\n", "6: model.l2: must be in [0, 1), got 1"},
	    {BASE "[model]\nl2 = abc\n", "6: model.l2: expected a number, got 'abc'"},
	    {BASE "[model]\nl2 = nan\n", "6: model.l2: expected a number, got 'nan'"},
	    {BASE "[model]\nnegatives = 65\n",
	     "6: model.negatives: must be between 0 and 64, got 65"},
	    {BASE "[model]\nweight.purchase = 101\n",
	     "6: model.weight.purchase: must be between -100 and 100, got 101"},
	    {BASE "[model]\noptimizer = adam\n",
	     "6: model.optimizer: expected one of adagrad, sgd, got 'adam'"},
	    {BASE "[model]\nuse_taste = maybe\n",
	     "6: model.use_taste: expected true or false, got 'maybe'"},
	    {BASE "[model]\ntrending_half_life_ms = 0\n",
	     "6: model.trending_half_life_ms: must be in (0ms, 365d], got 0"},
	    {BASE "[model]\nseed = 18446744073709551616\n",
	     "6: model.seed: expected an unsigned integer, got '18446744073709551616'"},
	    {BASE "[model]\nrecent_items = 2\ncovis_window = 3\n",
	     "7: model.covis_window: must be between 1 and recent_items (2), got 3"},
	    /* covis_window left at its default of 4: the key set is blamed (this
	     * passed the load, and the start failed naming no file) */
	    {BASE "[model]\nrecent_items = 2\n",
	     "6: model.covis_window: must be between 1 and recent_items (2), got 4"},
	    /* topics the daemon both reads and writes: the dead letters read back
	     * and sent again for ever; the lists read as bad events */
	    {BASE "[input]\ndead_letter_topic = events\n",
	     "6: input.dead_letter_topic: 'events' is input.topic too; each topic the daemon "
	     "reads or writes needs its own"},
	    {BASE "[input]\ntopic = clicks\n[output]\ntopic = clicks\n",
	     "8: output.topic: 'clicks' is input.topic too; each topic the daemon reads or "
	     "writes needs its own"},
	    {BASE "[scaleout]\nchangelog_topic = items\n",
	     "6: scaleout.changelog_topic: 'items' is input.items_topic too; each topic the "
	     "daemon reads or writes needs its own"},
	    {BASE "[registry]\nurl = registry:8081\n",
	     "6: registry.url: must start with http:// or https://, got 'registry:8081'"},
	    {BASE "[experiment]\ncontrol = contorl\n[variant.control]\nshare = 0.5\n"
		  "[variant.b]\nshare = 0.5\n",
	     "6: experiment.control: no [variant.contorl] section"},
	    {"[state]\ndir = /tmp/x\n[kafka]\nbootstrap.servers =\n",
	     "4: kafka.bootstrap.servers: empty; the brokers are host:port[,host:port...]"},
	    {BASE "[state]\ncommit_interval_ms = 50ms\n",
	     "6: state.commit_interval_ms: must be between 100ms and 10m, got 50ms"},
	    {BASE "[state]\ncommit_interval_ms = 1.5s\n",
	     "6: state.commit_interval_ms: expected a duration such as 500ms, 2s, 1m, 1h or 1d, "
	     "got '1.5s'"},
	    {BASE "[state]\nuser_cache_bytes = 2T\n",
	     "6: state.user_cache_bytes: must be between 0 and 1T, got 2T"},
	    {BASE "[state]\nuser_cache_bytes = 12Q\n",
	     "6: state.user_cache_bytes: expected a size in bytes such as 65536, 512K, 64M or 1G, "
	     "got '12Q'"},
	    {BASE "[refresh]\nbatch = 0\n", "6: refresh.batch: must be between 1 and 1024, got 0"},
	    {BASE "[refresh]\nk = 1001\n", "6: refresh.k: must be between 1 and 1000, got 1001"},
	    {BASE "[log]\nlevel = loud\n",
	     "6: log.level: expected one of error, warning, info, debug, got 'loud'"},
	    {BASE "[input]\ntopic =\n", "6: input.topic: must not be empty"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		load_fails(cases[i].text, cases[i].error);
}

static void structural_errors(void **state)
{
	(void)state;
	load_fails(BASE "[model]\ndimm = 8\n",
		   "6: unknown key 'dimm' in [model] (did you mean 'dim'?)");
	load_fails(BASE "[refresh]\nintervl_ms = 8\n",
		   "6: unknown key 'intervl_ms' in [refresh] (did you mean 'interval_ms'?)");
	load_fails(BASE "[refresh]\ndim = 8\n",
		   "6: unknown key 'dim' in [refresh] (it belongs in [model])");
	load_fails(BASE "[model]\nfoo = 8\n", "6: unknown key 'foo' in [model]");
	load_fails(BASE "[model]\ndim = 8\n\ndim = 16\n",
		   "8: duplicate key 'model.dim' (first set on line 6)");
	load_fails(BASE "[model]\ndim = 8\n[model]\ndim = 16\n",
		   "8: duplicate key 'model.dim' (first set on line 6)");
	load_fails(BASE "[modle]\n", "5: unknown section [modle] (did you mean [model]?)");
	load_fails(BASE "[variants.a]\nshare = 1\n",
		   "5: unknown section [variants.a] (variants are [variant.NAME])");
	load_fails(BASE "[zzzzzz]\n", "5: unknown section [zzzzzz]");
	load_fails(BASE "[model]\ndim 8\n",
		   "6: malformed line (expected 'key = value', '[section]' or a comment)");
	load_fails(BASE "[model\ndim = 8\n",
		   "5: malformed line (expected 'key = value', '[section]' or a comment)");
	load_fails("dim = 8\n" BASE, "1: key 'dim' outside any section");
	/* an error after a malformed line: the earlier one is reported */
	load_fails(BASE "[model]\ngarbage\ndim = 0\n",
		   "6: malformed line (expected 'key = value', '[section]' or a comment)");
	load_fails("[kafka]\nbootstrap.servers = b:9092\n", " missing required key 'state.dir'");
	load_fails("[state]\ndir = /x\n", " missing required key 'kafka.bootstrap.servers'");
	/* a round while learning is behind never takes fewer than one that keeps up */
	load_fails(BASE "[refresh]\nbatch = 256\nbatch_behind = 128\n",
		   "7: refresh.batch_behind: 128 is below refresh.batch (256); a round while "
		   "learning is behind takes at least as many users (0: as many)");
	load_fails(BASE "[refresh]\nbatch_behind = 64\n",
		   "6: refresh.batch_behind: 64 is below refresh.batch (128); a round while "
		   "learning is behind takes at least as many users (0: as many)");
	load_fails(BASE "[refresh]\nbatch = 1024\nbatch_behind = 1000\n",
		   "7: refresh.batch_behind: 1000 is below refresh.batch (1024); a round while "
		   "learning is behind takes at least as many users (0: as many)");
	struct config behind;
	load_ok(BASE "[refresh]\nbatch = 256\nbatch_behind = 0\n", &behind);
	assert_int_equal(behind.refresh_batch_behind, 0);
	config_free(&behind);
	load_ok(BASE "[refresh]\nbatch = 256\nbatch_behind = 256\n", &behind);
	assert_int_equal(behind.refresh_batch_behind, 256);
	config_free(&behind);
	load_fails("[state]\ndir = /x\n[kafka.consumer]\nbootstrap.servers = b:9092\n",
		   " missing required key 'kafka.bootstrap.servers' (for the producer)");

	char errstr[256];
	struct config c;
	assert_int_equal(config_load("/nonexistent/streamrecd.conf", &c, errstr, sizeof errstr),
			 -1);
	assert_string_equal(errstr,
			    "/nonexistent/streamrecd.conf: cannot open: No such file or directory");
}

static void kafka_passthrough(void **state)
{
	(void)state;
	struct config c;
	load_ok(BASE "security.protocol = SASL_SSL\n"
		     "sasl.mechanisms = SCRAM-SHA-512\n"
		     "sasl.password = p=a;ss word\n"
		     "[kafka.consumer]\n"
		     "fetch.wait.max.ms = 10\n"
		     "bootstrap.servers = other:9092\n"
		     "[kafka.producer]\n"
		     "compression.type = lz4\n",
		&c);
	assert_int_equal(c.kafka.count, 4);
	assert_string_equal(c.kafka.items[0].name, "bootstrap.servers");
	assert_string_equal(c.kafka.items[0].value, "localhost:9092");
	assert_int_equal(c.kafka.items[0].line, 4);
	assert_string_equal(c.kafka.items[3].name, "sasl.password");
	assert_string_equal(c.kafka.items[3].value, "p=a;ss word"); /* values are verbatim */
	assert_int_equal(c.kafka_consumer.count, 2);
	assert_int_equal(c.kafka_producer.count, 1);
	assert_string_equal(config_kafka_property(&c, "consumer", "bootstrap.servers"),
			    "other:9092");
	assert_string_equal(config_kafka_property(&c, "producer", "bootstrap.servers"),
			    "localhost:9092");
	assert_string_equal(config_kafka_property(&c, "producer", "compression.type"), "lz4");
	assert_null(config_kafka_property(&c, "consumer", "compression.type"));
	config_free(&c);

	load_fails(BASE "bootstrap.servers = x:1\n",
		   "5: duplicate key 'kafka.bootstrap.servers' (first set on line 4)");
	load_fails(BASE "enable.auto.commit = true\n",
		   "5: kafka.enable.auto.commit: cannot be set here: streamrecd commits offsets "
		   "only after the state is written");
	load_fails(BASE "[kafka.consumer]\ngroup.id = g\n",
		   "6: kafka.consumer.group.id: cannot be set here: set input.group_id instead");
	load_fails(BASE "bad name! = 1\n",
		   "5: invalid librdkafka property name 'bad name!' in [kafka]");
}

static void variants(void **state)
{
	(void)state;
	struct config c;
	load_ok(BASE "[model]\n"
		     "dim = 16\n"
		     "[variant.a]\n"
		     "share = 0.5\n"
		     "[variant.wide-2]\n"
		     "share = 0.3\n"
		     "dim = 64\n"
		     "k = 10\n"
		     "learning_rate = 0.2\n"
		     "[variant.pop]\n"
		     "share = 0.2\n"
		     "policy = popularity\n"
		     "[model]\n" /* [model] after the variants still reaches them */
		     "negatives = 8\n",
		&c);
	assert_int_equal(c.variant_count, 3);
	assert_string_equal(c.variants[0].name, "a");
	assert_true(c.variants[0].share == 0.5);
	assert_int_equal(c.variants[0].model.dim, 16);
	assert_int_equal(c.variants[0].model.negatives, 8);
	assert_int_equal(c.variants[0].k, 20);
	assert_int_equal(c.variants[0].line, 7);
	assert_string_equal(c.variants[1].name, "wide-2");
	assert_int_equal(c.variants[1].model.dim, 64);
	assert_int_equal(c.variants[1].model.negatives, 8);
	assert_int_equal(c.variants[1].k, 10);
	assert_true(c.variants[1].model.learning_rate == 0.2f);
	assert_int_equal(c.variants[2].policy, CONFIG_POLICY_POPULARITY);
	assert_int_equal(c.variants[2].policy, CONFIG_POLICY_POPULARITY);
	assert_int_equal(c.variants[0].policy, CONFIG_POLICY_MODEL);
	for (size_t i = 0; i < c.variant_count; i++) {
		char errstr[128];
		assert_int_equal(model_config_check(&c.variants[i].model, errstr, sizeof errstr),
				 0);
	}
	config_free(&c);

	/* shares that sum to 1 only within rounding */
	load_ok(BASE
		"[variant.a]\nshare = 0.1\n[variant.b]\nshare = 0.2\n[variant.c]\nshare = 0.7\n",
		&c);
	config_free(&c);

	load_fails(
	    BASE "[variant.a b]\nshare = 1\n",
	    "5: invalid variant name 'a b' in [variant.a b]: use 1 to 32 of A-Z a-z 0-9 _ -");
	load_fails(BASE "[variant.]\nshare = 1\n",
		   "5: invalid variant name '' in [variant.]: use 1 to 32 of A-Z a-z 0-9 _ -");
	load_fails(BASE "[variant.abcdefghijklmnopqrstuvwxyz0123456]\nshare = 1\n",
		   "5: invalid variant name 'abcdefghijklmnopqrstuvwxyz0123456' in "
		   "[variant.abcdefghijklmnopqrstuvwxyz0123456]: use 1 to 32 of A-Z a-z 0-9 _ -");
	load_fails(BASE "[variant.a]\nshare = 0.5\n[variant.b]\nshare = 0.4\n",
		   "7: variant shares must sum to 1, got 0.9 (a 0.5, b 0.4)");
	load_fails(BASE "[variant.a]\nshare = 0\n", "6: variant.a.share: must be in (0, 1], got 0");
	load_fails(BASE "[variant.a]\nshare = 1.5\n",
		   "6: variant.a.share: must be in (0, 1], got 1.5");
	load_fails(BASE "[variant.a]\ndim = 8\n", "5: variant.a: missing required key 'share'");
	load_fails(BASE "[variant.a]\nshare = 1\ndimm = 8\n",
		   "7: unknown key 'dimm' in [variant.a] (did you mean 'dim'?)");
	load_fails(BASE "[variant.a]\nshare = 1\nshare = 1\n",
		   "7: duplicate key 'variant.a.share' (first set on line 6)");
	load_fails(BASE "[variant.a]\nshare = 1\ndim = 2\n",
		   "7: variant.a.dim: must be between 4 and 1024, got 2");
	/* model_config_check's cross-field rule, at the line that set the key */
	load_fails(BASE "[model]\ncovis_window = 4\n[variant.a]\nshare = 1\nrecent_items = 3\n",
		   "6: variant.a.covis_window: must be between 1 and recent_items (3), got 4");
	load_fails(BASE "[variant.a]\nshare = 1\nrecent_items = 2\n",
		   "7: variant.a.covis_window: must be between 1 and recent_items (2), got 4");
	/* policy is a variant's own key */
	load_fails(BASE "[model]\npolicy = popularity\n", "6: unknown key 'policy' in [model]");

	char text[2048];
	size_t used = (size_t)snprintf(text, sizeof text, BASE);
	for (int i = 0; i < 17; i++)
		used += (size_t)snprintf(text + used, sizeof text - used,
					 "[variant.v%d]\nshare = 0.0625\n", i);
	load_fails(text, "37: too many variants: [variant.v16] would be number 17, at most 16");
	used = (size_t)snprintf(text, sizeof text, BASE);
	for (int i = 0; i < 16; i++)
		used += (size_t)snprintf(text + used, sizeof text - used,
					 "[variant.v%d]\nshare = 0.0625\n", i);
	load_ok(text, &c);
	assert_int_equal(c.variant_count, 16);
	config_free(&c);
}

static void reload(void **state)
{
	(void)state;
	struct config running, next;
	char changes[512], errstr[1024];
	load_ok(BASE "[refresh]\ninterval_ms = 50ms\n", &running);

	write_file(BASE
		   "[refresh]\ninterval_ms = 100ms\nmin_interval_ms = 1s\n[log]\nlevel = debug\n");
	assert_int_equal(
	    config_reload(&running, path, &next, changes, sizeof changes, errstr, sizeof errstr),
	    0);
	/* one line: the reload is logged as one message */
	assert_string_equal(changes, "refresh.interval_ms: 50ms -> 100ms; "
				     "refresh.min_interval_ms: 20ms -> 1s; "
				     "log.level: info -> debug");
	assert_int_equal(next.refresh_interval_ms, 100);
	config_free(&next);

	write_file(BASE "[refresh]\ninterval_ms = 50\n");
	assert_int_equal(
	    config_reload(&running, path, &next, changes, sizeof changes, errstr, sizeof errstr),
	    0);
	assert_string_equal(changes, "no changes");
	config_free(&next);

	write_file("[state]\ndir = /elsewhere\n[kafka]\nbootstrap.servers = other:9092\n"
		   "[refresh]\ninterval_ms = 70\n[model]\ndim = 64\n");
	assert_int_equal(
	    config_reload(&running, path, &next, changes, sizeof changes, errstr, sizeof errstr),
	    -1);
	char want[1024];
	snprintf(want, sizeof want,
		 "%s: not reloaded: these keys cannot change while running (restart streamrecd): "
		 "state.dir (/tmp/streamrec-test -> /elsewhere), model.dim (32 -> 64), "
		 "kafka.bootstrap.servers (localhost:9092 -> other:9092)",
		 path);
	assert_string_equal(errstr, want);
	assert_string_equal(changes, "");
	assert_null(next.path);

	write_file(BASE "[variant.a]\nshare = 1\n");
	assert_int_equal(
	    config_reload(&running, path, &next, changes, sizeof changes, errstr, sizeof errstr),
	    -1);
	assert_non_null(strstr(errstr, "this key cannot change while running (restart "
				       "streamrecd): variants (model -> a)"));

	write_file(BASE "[model]\ndim = 0\n");
	assert_int_equal(
	    config_reload(&running, path, &next, changes, sizeof changes, errstr, sizeof errstr),
	    -1);
	snprintf(want, sizeof want, "%s:6: model.dim: must be between 4 and 1024, got 0", path);
	assert_string_equal(errstr, want);
	config_free(&running);

	/* variants: a variant's own key is named with its section */
	load_ok(BASE "[variant.a]\nshare = 0.5\n[variant.b]\nshare = 0.5\n", &running);
	write_file(BASE "[variant.a]\nshare = 0.6\n[variant.b]\nshare = 0.4\nk = 5\n");
	assert_int_equal(
	    config_reload(&running, path, &next, changes, sizeof changes, errstr, sizeof errstr),
	    -1);
	assert_non_null(strstr(errstr, "variant.a.share (0.5 -> 0.6), variant.b.k (20 -> 5), "
				       "variant.b.share (0.5 -> 0.4)"));
	config_free(&running);
}

static char *read_all(FILE *f, size_t *length)
{
	char *buf = NULL;
	size_t capacity = 0, n;
	*length = 0;
	do {
		if (*length + 4096 > capacity) {
			capacity = capacity * 2 + 4096;
			buf = realloc(buf, capacity + 1);
			assert_non_null(buf);
		}
		n = fread(buf + *length, 1, capacity - *length, f);
		*length += n;
	} while (n > 0);
	buf[*length] = '\0';
	return buf;
}

static char *generated(void (*print)(FILE *))
{
	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);
	assert_non_null(f);
	print(f);
	assert_int_equal(fclose(f), 0);
	return text;
}

static void shipped_file_is_the_generated_one(void **state)
{
	(void)state;
	const char *srcdir = getenv("STREAMREC_SRCDIR");
	char shipped_path[512];
	snprintf(shipped_path, sizeof shipped_path, "%s/systemd/streamrecd.conf",
		 srcdir ? srcdir : ".");
	FILE *f = fopen(shipped_path, "r");
	assert_non_null(f);
	size_t length;
	char *shipped = read_all(f, &length);
	fclose(f);
	char *expected = generated(config_print_default_file);
	assert_string_equal(shipped, expected);
	/* every option's comment ends with its type and bounds, however long its
	 * help (the options come before the variant examples) */
	const char *options_end = strstr(shipped, "\n# A/B variants");
	assert_non_null(options_end);
	for (const char *at = strstr(shipped, "\n#"); at != NULL && at < options_end;
	     at = strstr(at + 1, "\n#")) {
		size_t name = strspn(at + 2, "abcdefghijklmnopqrstuvwxyz_.0123456789");
		if (name > 0 && strncmp(at + 2 + name, " = ", 3) == 0 && at[-1] != ')')
			fail_msg("the comment before '#%.*s' lost its end", (int)name, at + 2);
	}

	/* it loads as shipped (the two required keys are set), every value the default */
	struct config from_file, base;
	load_ok(shipped, &from_file);
	assert_string_equal(from_file.state_dir, "/var/lib/streamrec/state");
	load_ok(BASE, &base);
	assert_int_equal(from_file.variant_count, 1);
	assert_int_equal(from_file.variants[0].model.dim, base.variants[0].model.dim);
	config_free(&base);
	config_free(&from_file);

	/* uncommenting every key (and the example variants) loads to the same defaults */
	char *uncommented = malloc(length + 256);
	assert_non_null(uncommented);
	size_t out = 0;
	for (const char *line = shipped; *line;) {
		size_t n = strcspn(line, "\n");
		if (line[0] == '#' && n > 1 && line[1] != ' ' &&
		    (memchr(line, '=', n) != NULL || line[1] == '[') &&
		    strncmp(line, "#dir", 4) != 0 && strncmp(line, "#security", 9) != 0 &&
		    strncmp(line, "#bootstrap", 10) != 0)
			line++, n--;
		memcpy(uncommented + out, line, n);
		out += n;
		uncommented[out++] = '\n';
		line += n + (line[n] == '\n');
	}
	uncommented[out] = '\0';
	load_ok(uncommented, &from_file);
	assert_int_equal(from_file.variant_count, 3);
	assert_string_equal(from_file.variants[1].name, "wide");
	assert_int_equal(from_file.variants[1].model.dim, 64);
	struct model_config m;
	model_config_default(&m);
	assert_true(from_file.variants[0].model.learning_rate == m.learning_rate);
	assert_true(from_file.variants[0].model.l2 == m.l2);
	assert_true(from_file.variants[0].model.init_std == m.init_std);
	assert_true(from_file.variants[0].model.trending_half_life_ms == m.trending_half_life_ms);
	assert_true(from_file.variants[0].model.covis_half_life_events == m.covis_half_life_events);
	config_free(&from_file);
	free(uncommented);
	free(expected);
	free(shipped);
}

static void reference_table(void **state)
{
	(void)state;
	char *reference = generated(config_print_reference);
	assert_non_null(
	    strstr(reference, "| key | type | default | bounds | reloadable | description |\n"));
	assert_non_null(strstr(reference, "| `model.dim` | uint | `32` | between 4 and 1024 | no | "
					  "Embedding dimension. Per variant. |\n"));
	assert_non_null(strstr(reference, "| `refresh.interval_ms` | duration | `50ms` | between "
					  "1ms and 1m | yes |"));
	assert_non_null(strstr(reference, "| `state.dir` | string | (required) |"));
	assert_non_null(strstr(reference, "| `kafka.*` |"));
	/* the README carries the table verbatim */
	const char *srcdir = getenv("STREAMREC_SRCDIR");
	char readme_path[512];
	snprintf(readme_path, sizeof readme_path, "%s/README.md", srcdir ? srcdir : ".");
	FILE *f = fopen(readme_path, "r");
	assert_non_null(f);
	size_t length;
	char *readme = read_all(f, &length);
	fclose(f);
	if (strstr(readme, reference) == NULL)
		fail_msg("README.md lacks the generated configuration reference; regenerate it "
			 "with streamrecd --print-config-reference");
	free(readme);
	free(reference);
}

/* SASL settings run to thousands of characters: long lines are read whole;
 * only an absurd one is refused, at its line. */
static void long_lines(void **state)
{
	(void)state;
	size_t value_length = 4000, absurd_length = 100000;
	char *value = malloc(value_length + 1), *text = malloc(absurd_length + 256);
	struct config c;
	assert_non_null(value);
	assert_non_null(text);
	for (size_t i = 0; i < value_length; i++)
		value[i] = (char)('a' + i % 26);
	value[value_length] = '\0';
	snprintf(text, absurd_length + 256, BASE "sasl.password = %s\n", value);
	load_ok(text, &c);
	assert_string_equal(config_kafka_property(&c, "consumer", "sasl.password"), value);
	assert_string_equal(config_kafka_property(&c, "producer", "sasl.password"), value);
	config_free(&c);

	int used = snprintf(text, absurd_length + 256, BASE "[input]\ntopic = ");
	memset(text + used, 'x', absurd_length);
	snprintf(text + used + absurd_length, 8, "\n");
	load_fails(text, "6: line too long (at most 65533 characters)");
	free(text);
	free(value);
}

/* List rules: per variant, parsed at load with errors at their line, reloadable. */
static void list_rules(void **unused)
{
	(void)unused;
	struct config running, next;
	char changes[512], errstr[1024];
	const char *ab = BASE "[variant.a]\nshare = 0.5\n[variant.b]\nshare = 0.5\n";
	char text[1024];
	snprintf(text, sizeof text,
		 "%sexclude_categories = shoes, hats\nmax_per_category = 3\n"
		 "boost = item:sku-1=0.5, category:new=-2\npin = sku-9@2\nexplore_share = 0.1\n"
		 "explore_max_events = 7\n",
		 ab);
	load_ok(text, &running);
	const struct listrules *b = &running.variants[1].rules;
	assert_false(listrules_any(&running.variants[0].rules));
	assert_int_equal(b->exclude_count, 2);
	assert_string_equal(b->exclude_categories[1], "hats");
	assert_int_equal(b->max_per_category, 3);
	assert_int_equal(b->boost_count, 2);
	assert_true(b->boosts[1].category && b->boosts[1].delta == -2.0f);
	assert_int_equal(b->pin_count, 1);
	assert_int_equal(b->pins[0].rank, 2);
	assert_true(b->explore_share == 0.1 && b->explore_max_events == 7);

	/* SIGHUP may change them: only b's keys change */
	snprintf(text, sizeof text, "%spin = sku-9@3\nexplore_share = 0.2\n", ab);
	write_file(text);
	assert_int_equal(
	    config_reload(&running, path, &next, changes, sizeof changes, errstr, sizeof errstr),
	    0);
	assert_string_equal(changes, "variant.b.exclude_categories: shoes, hats -> ; "
				     "variant.b.max_per_category: 3 -> 0; "
				     "variant.b.boost: item:sku-1=0.5, category:new=-2 -> ; "
				     "variant.b.pin: sku-9@2 -> sku-9@3; "
				     "variant.b.explore_share: 0.1 -> 0.2; "
				     "variant.b.explore_max_events: 7 -> 10");
	assert_int_equal(next.variants[1].rules.pins[0].rank, 3);
	assert_int_equal(next.variants[1].rules.exclude_count, 0);
	config_free(&next);
	config_free(&running);

	/* errors name the file, the line, the variant's key and the entry */
	load_fails(BASE "[variant.a]\nshare = 1\npin = sku-9@2, sku-8\n",
		   "7: variant.a.pin: entry 2 'sku-8': expected ITEM@RANK");
	load_fails(BASE "[variant.a]\nshare = 1\nboost = item:x=big\n",
		   "7: variant.a.boost: entry 1 'item:x=big': the delta must be a number from "
		   "-1000 to 1000, got 'big'");
	load_fails(BASE "[variant.a]\nshare = 1\nexclude_categories = a,,b\n",
		   "7: variant.a.exclude_categories: entry 2 is empty");
	load_fails(BASE "[variant.a]\nshare = 1\npin = sku-9@21\n",
		   "7: variant.a.pin: item 'sku-9' is pinned at rank 21, beyond k = 20 "
		   "(variant.a.k)");
	load_fails(BASE "[variant.a]\nshare = 1\nexplore_share = 1.5\n",
		   "7: variant.a.explore_share: must be between 0 and 1, got 1.5");
	/* rules are per variant only */
	write_file(BASE "[model]\npin = sku-9@2\n");
	assert_int_equal(config_load(path, &running, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, ":6: unknown key 'pin' in [model]"));
}

/* A reloadable key that nothing applies is the defect log.level had. */
static void every_reloadable_key_has_an_apply_step(void **unused)
{
	(void)unused;
	char missing[128] = "";
	assert_true(config_every_reloadable_key_applies(missing, sizeof missing));
	assert_int_equal(config_apply_step("log", "level"), CONFIG_APPLY_LOG_LEVEL);
	assert_int_equal(config_apply_step("state", "commit_interval_ms"), CONFIG_APPLY_TIMERS);
	assert_int_equal(config_apply_step("output", "topic"), 0);

	struct config running, next;
	load_ok("[input]\ntopic = e\n[output]\ntopic = r\n[state]\ndir = /tmp/x\n"
		"[kafka]\nbootstrap.servers = localhost:9092\n",
		&running);
	load_ok("[input]\ntopic = e\n[output]\ntopic = r\n[state]\ndir = /tmp/x\n"
		"[log]\nlevel = debug\n[refresh]\nmin_interval_ms = 1s\n"
		"[kafka]\nbootstrap.servers = localhost:9092\n",
		&next);
	assert_int_equal(config_apply_steps(&running, &next),
			 CONFIG_APPLY_LOG_LEVEL | CONFIG_APPLY_READ_AT_USE);
	assert_int_equal(config_apply_steps(&running, &running), 0);
	config_free(&running);
	config_free(&next);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(defaults),
	    cmocka_unit_test(every_type_parses),
	    cmocka_unit_test(bad_values_name_file_line_and_key),
	    cmocka_unit_test(structural_errors),
	    cmocka_unit_test(kafka_passthrough),
	    cmocka_unit_test(variants),
	    cmocka_unit_test(reload),
	    cmocka_unit_test(shipped_file_is_the_generated_one),
	    cmocka_unit_test(reference_table),
	    cmocka_unit_test(long_lines),
	    cmocka_unit_test(every_reloadable_key_has_an_apply_step),
	    cmocka_unit_test(list_rules),
	};
	return cmocka_run_group_tests_name("060_config", tests, make_path, remove_path);
}
