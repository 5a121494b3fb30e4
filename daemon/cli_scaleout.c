/*
 * streamrec eval-scaleout: the accuracy cost of running N instances, offline
 * (model/prequential_sharded.h): the same stream replayed through one model
 * and through N shards that exchange item changes, side by side.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "cli.h"
#include "clock.h"
#include "eventlog.h"
#include "model.h"
#include "prequential_sharded.h"

int cli_eval_scaleout(int argc, char **argv)
{
	static const struct option options[] = {{"shards", required_argument, NULL, 's'},
						{"sync-every", required_argument, NULL, 'y'},
						{"k", required_argument, NULL, 'k'},
						{"test-every", required_argument, NULL, 't'},
						{"warmup", required_argument, NULL, 'w'},
						{"max-events", required_argument, NULL, 'm'},
						{"dim", required_argument, NULL, 'd'},
						{NULL, 0, NULL, 0}};
	long long shards = 3, sync_every = 1000, k = 20, test_every = 1, warmup = 0, max_events = 0,
		  dim = 32;
	char errstr[512];
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		int rc;
		switch (opt) {
		case 's': rc = cli_parse_count("eval-scaleout", "shards", optarg, 2, 64, &shards); break;
		case 'y':
			rc = cli_parse_count("eval-scaleout", "sync-every", optarg, 0, 1LL << 40,
					     &sync_every);
			break;
		case 'k': rc = cli_parse_count("eval-scaleout", "k", optarg, 1, 1000, &k); break;
		case 't':
			rc = cli_parse_count("eval-scaleout", "test-every", optarg, 1, 1LL << 40,
					     &test_every);
			break;
		case 'w':
			rc = cli_parse_count("eval-scaleout", "warmup", optarg, 0, 1LL << 40, &warmup);
			break;
		case 'm':
			rc = cli_parse_count("eval-scaleout", "max-events", optarg, 0, 1LL << 40,
					     &max_events);
			break;
		case 'd': rc = cli_parse_count("eval-scaleout", "dim", optarg, 4, 1024, &dim); break;
		default: return 2;
		}
		if (rc != 0)
			return 2;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "streamrec eval-scaleout: expected one event FILE\n");
		return 2;
	}
	struct eventlog_read_options read_options = eventlog_read_options_default();
	struct event_log *log = NULL;
	uint64_t *user_hash = NULL, *item_hash = NULL;
	int status = 1;
	if (eventlog_read(argv[optind], &read_options, &log, errstr, sizeof errstr) != 0 ||
	    eventlog_sort_by_time(log, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrec eval-scaleout: %s\n", errstr);
		goto out;
	}
	if (eventlog_has_searches(log)) {
		fprintf(stderr, "streamrec eval-scaleout: SEARCH events are not supported here "
				"(use streamrec eval --content)\n");
		goto out;
	}
	if (eventlog_id_hashes(log, &user_hash, &item_hash) != 0) {
		fprintf(stderr, "streamrec eval-scaleout: out of memory\n");
		goto out;
	}
	struct prequential_stream stream = {
	    .count = max_events > 0 && (size_t)max_events < log->count ? (size_t)max_events
									 : log->count,
	    .user = log->user,
	    .item = log->item,
	    .type = log->type,
	    .ts_ms = log->ts_ms,
	    .user_hash = user_hash,
	    .item_hash = item_hash,
	    .item_total = log->item_count};
	struct model_config mc;
	model_config_default(&mc);
	mc.dim = (size_t)dim;
	printf("%zu events, %zu users, %zu items; k %lld, test every %lld, warm-up %lld\n",
	       stream.count, log->user_count, log->item_count, k, test_every, warmup);
	printf("| instances | item exchange | tests | HR@%lld | relative to one | item changes "
	       "folded | replay s |\n| --- | --- | --- | --- | --- | --- | --- |\n",
	       k);
	double one = 0;
	long long runs[][2] = {{1, 0}, {shards, sync_every}, {shards, 0}};
	for (size_t r = 0; r < 3; r++) {
		struct prequential_sharded_config c = {.shards = (size_t)runs[r][0],
						       .sync_every = (uint64_t)runs[r][1],
						       .k = (size_t)k,
						       .test_every = (uint64_t)test_every,
						       .warmup = (uint64_t)warmup};
		struct prequential_sharded_result res;
		double t0 = clock_monotonic_s();
		if (prequential_sharded_run(&mc, &stream, &c, &res, errstr, sizeof errstr) != 0) {
			fprintf(stderr, "streamrec eval-scaleout: %s\n", errstr);
			goto out;
		}
		if (r == 0)
			one = res.hit_rate;
		char exchange[64];
		if (c.shards == 1)
			snprintf(exchange, sizeof exchange, "-");
		else if (c.sync_every == 0)
			snprintf(exchange, sizeof exchange, "none");
		else
			snprintf(exchange, sizeof exchange, "every %llu events",
				 (unsigned long long)c.sync_every);
		printf("| %zu | %s | %llu | %.4f | %+.1f%% | %llu | %.1f |\n", c.shards, exchange,
		       (unsigned long long)res.tests, res.hit_rate,
		       one > 0 ? 100.0 * (res.hit_rate / one - 1) : 0.0,
		       (unsigned long long)res.exchanged, clock_monotonic_s() - t0);
		fflush(stdout);
	}
	status = 0;
out:
	free(user_hash);
	free(item_hash);
	eventlog_free(log);
	return status;
}
