/*
 * cli_gen: the `streamrec gen` command, which writes a synthetic event
 * stream with planted structure (stream/synth.h) to a CSV or Avro file for
 * offline replay. The same options give the same file, byte for byte.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "eventlog.h"
#include "synth.h"

/* A probability option: a number from 0 to 1. */
static int parse_share(const char *option, const char *text, double *out)
{
	char *end;
	double v = strtod(text, &end);
	if (end == text || *end != '\0' || !(v >= 0 && v <= 1)) {
		fprintf(stderr, "streamrec gen: --%s: must be a number from 0 to 1, got '%s'\n",
			option, text);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_gen(int argc, char **argv)
{
	static const struct option options[] = {
	    {"users", required_argument, NULL, 'u'},    {"items", required_argument, NULL, 'i'},
	    {"clusters", required_argument, NULL, 'c'}, {"events", required_argument, NULL, 'e'},
	    {"seed", required_argument, NULL, 's'},     {"format", required_argument, NULL, 'f'},
	    {"out", required_argument, NULL, 'o'},
	    {"drift-period", required_argument, NULL, 'D'},
	    {"repeat-prob", required_argument, NULL, 'R'},
	    {"reverse-share", required_argument, NULL, 'B'},
	    {"successor-prob", required_argument, NULL, 'P'},
	    {"session-events", required_argument, NULL, 'S'},
	    {"mean-gap-ms", required_argument, NULL, 'G'},
	    {"arrival-share", required_argument, NULL, 'A'},
	    {NULL, 0, NULL, 0}};
	struct synth_config config = synth_config_default();
	long long users = config.users, items = config.items, clusters = config.clusters;
	long long events = (long long)config.events, seed = (long long)config.seed, v;
	const char *format = "csv", *out = NULL;
	struct event_log *log = NULL;
	struct synth *synth;
	char errstr[512];
	double started;
	int opt, status = 1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		int rc = 0;
		switch (opt) {
		case 'u':
			rc = cli_parse_count("gen", "users", optarg, 1, EVENTLOG_NONE - 1, &users);
			break;
		case 'i':
			rc = cli_parse_count("gen", "items", optarg, 2, EVENTLOG_NONE - 1, &items);
			break;
		case 'c':
			rc = cli_parse_count("gen", "clusters", optarg, 1, EVENTLOG_NONE / 2,
					     &clusters);
			break;
		case 'e':
			rc = cli_parse_count("gen", "events", optarg, 0, UINT32_MAX, &events);
			break;
		case 's': rc = cli_parse_count("gen", "seed", optarg, 0, LLONG_MAX, &seed); break;
		case 'f': format = optarg; break;
		case 'o': out = optarg; break;
		case 'D':
			rc = cli_parse_count("gen", "drift-period", optarg, 0, UINT32_MAX, &v);
			config.drift_period_events = (size_t)v;
			break;
		case 'R': rc = parse_share("repeat-prob", optarg, &config.repeat_prob); break;
		case 'A': rc = parse_share("arrival-share", optarg, &config.arrival_share); break;
		case 'B':
			rc = parse_share("reverse-share", optarg, &config.successor_reverse_share);
			break;
		case 'P': rc = parse_share("successor-prob", optarg, &config.successor_prob); break;
		case 'S': {
			unsigned lo, hi;
			char tail;
			if (sscanf(optarg, "%u-%u%c", &lo, &hi, &tail) != 2 || lo < 1 || hi < lo ||
			    hi > 100000) {
				fprintf(stderr,
					"streamrec gen: --session-events: expected MIN-MAX with 1 <= "
					"MIN <= MAX, got '%s'\n",
					optarg);
				return 2;
			}
			config.session_min_events = lo;
			config.session_max_events = hi;
			break;
		}
		case 'G': {
			char *end;
			config.mean_gap_ms = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || !(config.mean_gap_ms > 0)) {
				fprintf(stderr,
					"streamrec gen: --mean-gap-ms: must be a positive number, got "
					"'%s'\n",
					optarg);
				return 2;
			}
			break;
		}
		default: return 2;
		}
		if (rc != 0)
			return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "streamrec gen: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (strcmp(format, "csv") != 0 && strcmp(format, "avro") != 0) {
		fprintf(stderr, "streamrec gen: --format: must be csv or avro, got '%s'\n", format);
		return 2;
	}
	if (out == NULL || out[0] == '\0') {
		fprintf(stderr, "streamrec gen: --out PATH is required\n");
		return 2;
	}
	if (items < 2 * clusters) {
		fprintf(
		    stderr,
		    "streamrec gen: --items: must be at least 2 per cluster (%lld for --clusters "
		    "%lld), got '%lld'\n",
		    2 * clusters, clusters, items);
		return 2;
	}
	config.users = (uint32_t)users;
	config.items = (uint32_t)items;
	config.clusters = (uint32_t)clusters;
	config.events = (size_t)events;
	config.seed = (uint64_t)seed;
	/* tiny clusters get fewer successors rather than an error */
	if (config.successors > config.items / config.clusters - 1)
		config.successors = config.items / config.clusters - 1;
	if (synth_config_check(&config, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrec gen: %s\n", errstr);
		return 2;
	}

	started = clock_monotonic_s();
	synth = synth_new(&config, errstr, sizeof errstr);
	if (synth == NULL) {
		fprintf(stderr, "streamrec gen: %s\n", errstr);
		return 1;
	}
	if (synth_generate(synth, &log, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrec gen: %s\n", errstr);
		goto out_free;
	}
	double generated = clock_monotonic_s();
	if ((strcmp(format, "csv") == 0
		 ? eventlog_write_csv(log, out, errstr, sizeof errstr)
		 : eventlog_write_avro(log, out, errstr, sizeof errstr)) != 0) {
		fprintf(stderr, "streamrec gen: %s\n", errstr);
		goto out_free;
	}
	fprintf(stderr,
		"streamrec gen: %zu events of %zu users on %zu items in %u clusters (seed %llu) "
		"written to %s as %s; generated in %.2f s, written in %.2f s\n",
		log->count, log->user_count, log->item_count, config.clusters,
		(unsigned long long)config.seed, out, format, generated - started,
		clock_monotonic_s() - generated);
	status = 0;

out_free:
	eventlog_free(log);
	synth_free(synth);
	return status;
}
