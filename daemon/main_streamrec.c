/*
 * streamrec: the command-line tool beside the daemon. Each command lives in
 * a daemon/cli_*.c file; this file only dispatches.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cli.h"

volatile sig_atomic_t cli_stop_requested;
struct blas_report cli_blas;

/* Prints the BLAS kernel in use and how it was chosen. */
static int cli_blas_info(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "streamrec blas: takes no options (STREAMREC_BLAS_KERNEL=NAME "
				"or OPENBLAS_CORETYPE=NAME choose the kernel)\n");
		return 2;
	}
	printf("kernel %s\nchosen_by %s\ncpu_best %s\nbelow_cpu_best %s\nrefused %s\n"
	       "self_check %s\nself_check_max_relative_error %.3g\nconfig %s\n",
	       cli_blas.kernel, blas_choice_name(cli_blas.choice), cli_blas.cpu_best,
	       blas_below_cpu_best(&cli_blas) ? "yes" : "no",
	       cli_blas.refused[0] ? cli_blas.refused : "-", cli_blas.self_check_ok ? "ok" : "failed",
	       cli_blas.self_check_error, cli_blas.config);
	return 0;
}

static void on_signal(int sig)
{
	(void)sig;
	cli_stop_requested = 1;
}

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
} commands[] = {
    {"produce", cli_produce,
     "write a synthetic UserEvent stream, or an event file, to Kafka\n"
     "           --brokers HOST:PORT [--topic events] [--rate N/s, 0 = flat out]\n"
     "           [--count N, 0 = until Ctrl-C] [--users N] [--items N] [--seed N]\n"
     "           [--file EVENTS (any format eval reads: user, item, type, time; in time order)]\n"
     "           [--retime: event times are the send time, for freshness]\n"
     "           [--framing raw|confluent] [--schema-id N]\n"
     "           [--registry URL (registers the schema under TOPIC-value; confluent framing)]\n"
     "           [--registry-auth USER:PASSWORD (or $STREAMREC_REGISTRY_AUTH)]\n"
     "           [--registry-ca FILE] [--registry-cert FILE --registry-key FILE]\n"
     "           [--registry-insecure]"},
    {"tail", cli_tail,
     "decode a topic and print one line per record\n"
     "           --brokers HOST:PORT [--kind events|recs] [--topic NAME]\n"
     "           [--from-beginning] [--count N] [--timeout-ms N] [--until-end] [--schema-dir DIR]\n"
     "           [--registry URL (writer schemas by id)] [--registry-auth USER:PASSWORD]\n"
     "           [--registry-ca FILE] [--registry-cert FILE --registry-key FILE]\n"
     "           [--registry-insecure]"},
    {"eval", cli_eval,
     "replay an event file test-then-train and score the model against popularity\n"
     "           FILE [--format auto|csv|avro|movielens|movietweetings|generic|retailrocket|taobao]\n"
     "           [--min-rating R] [--k 20] [--signals taste,intent,covis,correction|all|none]\n"
     "           [--dim N] [--lr F] [--l2 F] [--negatives N] [--optimizer adagrad|sgd]\n"
     "           [--recent N] [--intent-decay F] [--covis-weight F] [--correction-weight F]\n"
     "           [--exclude none|bought|interacted] [--weight TYPE=W]...\n"
     "           [--test-every N] [--warmup N] [--max-events N] [--seed N]\n"
     "           [--export-stream CSV: the replayed stream, indices, test points]\n"
     "           [--json PATH: configuration and figures]\n"
     "           [--retrieval exact|index|both: the ranking engine, or both side by side]\n"
     "           [--nprobe N, 0 = automatic] [--nlist N, 0 = automatic] [--trending 50]\n"
     "           [--sync-every N: rank lists in blocks of N events against the item side\n"
     "            as of each block's start, 0 = each at its test point]\n"
     "           [--threads N: N - 1 threads rank each block beside learning the next\n"
     "            (implies --sync-every 256); the figures do not change with N;\n"
     "            neither with --retrieval both, list rules, --tune or --ablations]\n"
     "           [--covis-window N] [--covis-recent-decay F] [--covis-neighbours N]\n"
     "           [--covis-candidates N]\n"
     "           [--covis-directions one|both]\n"
     "           [--covis-count once|weighted] [--covis-half-life EVENTS]\n"
     "           [--replay-steps N] [--replay-negatives N] [--replay-weight F]\n"
     "           [--trending-weight F] [--trending-half-life DURATION]\n"
     "           [--baseline-half-lives 1h,1d,7d] [--no-baselines] [--ablations: each signal off]\n"
     "           [--tune: coordinate search over trending weight, half-life, beta, covis window,\n"
     "            lr and negatives, one replay a round; the best printed as streamrecd settings]\n"
     "           [--tune-rounds 8: at most this many rounds (implies --tune)]\n"
     "           list rules, scored beside the plain list with new items' exposure:\n"
     "           [--exclude-categories C,...] [--max-per-category N] [--pin ITEM@RANK,...]\n"
     "           [--boost item:ID=D,category:C=D] [--explore-share F]\n"
     "           [--explore-max-events 10: fewer positive events make an item new]\n"
     "           [--content FILE: item_id<TAB>f1 ... fn lines, items' content vectors]\n"
     "           [--new-item-events 10] [--content-min-events 10] [--content-prior 0.05]\n"
     "           [--search-weight 10]"},
    {"eval-scaleout", cli_eval_scaleout,
     "replay an event file through one model and through N shards that exchange\n"
     "           item changes (scale-out's accuracy cost), side by side\n"
     "           FILE [--shards 3] [--sync-every 1000 events, 0 = never] [--k 20]\n"
     "           [--test-every N] [--warmup N] [--max-events N] [--dim 32]"},
    {"gen", cli_gen,
     "write a synthetic event stream with planted structure to a file\n"
     "           --out PATH [--format csv|avro] [--events N] [--users N] [--items N]\n"
     "           [--clusters N] [--seed N]\n"
     "           [--arrival-share F: share of items launched during the stream]\n"
     "           [--content FILE: items' content vectors from the planted clusters]\n"
     "           [--content-dim 64] [--content-noise 0.5]\n"
     "           [--searches N: planted search-then-buy sessions (needs --content)]\n"

     "           [--items-out ITEMS.tsv: item_id<TAB>title, titles from the planted clusters'\n"
     "           product themes in en/de/pt/zh] [--categories-out CATS.tsv: item_id<TAB>cluster]"},
    {"replay", cli_replay,
     "learn an event file into a state directory, resuming after a crash\n"
     "           (--state DIR | --config STREAMRECD_CONF | --memory-only) FILE\n"
     "           [--commit-every N] [--commit-interval-ms MS] [--user-cache N]\n"
     "           [--format F] [--digest]"},
    {"inspect", cli_inspect,
     "show a user's current top-k, or an item's row, from a state directory\n"
     "           --state DIR (--user ID | --item ID) [--k N] [--variant NAME]\n"
     "           [--explain: each item's reason, the recent item behind it, its score's terms]"},
    {"checkpoint", cli_checkpoint,
     "copy a state directory consistently (RocksDB checkpoint)\n"
     "           --state DIR --to NEW_DIR"},
    {"export", cli_export,
     "write every entry of a state directory to a file (backup, migration)\n"
     "           --state DIR --out FILE"},
    {"import", cli_import,
     "create a state directory from an export file\n"
     "           --in FILE --state NEW_DIR"},
    {"blas", cli_blas_info,
     "print the OpenBLAS kernel in use, how it was chosen and its self-check\n"
     "           (STREAMREC_BLAS_KERNEL=auto|NAME chooses, as blas.kernel does for the daemon)"},
    {"embed", cli_embed,
     "embed texts with the bundled multilingual text model (e5-small, 384-dim)\n"
     "           [--model PATH (default: $STREAMREC_TEXT_MODEL, the build's or the installed\n"
     "           e5-small-q4.bin)] [--query (\"query: \" prefix; default \"passage: \")] TEXT...\n"
     "           | --passages ITEMS.tsv (item_id<TAB>text lines; writes item_id<TAB>f1 ... fn)\n"
     "           [--categories CATS.tsv (item_id<TAB>category: nearest-neighbour agreement)]\n"
     "           [--threads N, default the CPUs] [--batch 16] [--kernel auto|avx2|scalar]"},
    {"digest", cli_digest,
     "print a digest of a state directory's model (equal digests: equal models)\n"
     "           --state DIR [--variant NAME, default: the first stored]\n"
     "           | --config STREAMRECD_CONF [--state DIR] (the daemon's settings, every variant)"},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: streamrec COMMAND [OPTIONS]\n"
		     "       streamrec COMMAND --help | --version\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].usage);
}

/*
 * One command's entry of the table as its own usage: the first line says what
 * it does, the indented lines that follow are its options.
 */
static void command_usage(FILE *out, const char *name, const char *text)
{
	const char *options = strchr(text, '\n');
	int about_len = options ? (int)(options - text) : (int)strlen(text);
	fprintf(out, "usage: streamrec %s [OPTIONS]\n%.*s\n", name, about_len, text);
	if (options == NULL)
		return;
	fputs("\noptions:\n", out);
	for (const char *line = options + 1; *line != '\0';) {
		const char *end = strchrnul(line, '\n');
		const char *start = line + strspn(line, " ");
		fprintf(out, "  %.*s\n", (int)(end - start), start);
		line = *end ? end + 1 : end;
	}
}

/* True when a command's arguments ask for help (before a "--" that ends options). */
static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	return false;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("streamrec %s\n", STREAMREC_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(argv[1], commands[i].name) != 0)
			continue;
		if (wants_help(argc - 1, argv + 1)) {
			command_usage(stdout, commands[i].name, commands[i].usage);
			return 0;
		}
		char errstr[512];
		if (blas_choose(getenv("STREAMREC_BLAS_KERNEL"), argv, &cli_blas, errstr,
				sizeof errstr) != 0) {
			fprintf(stderr, "streamrec: %s\n", errstr);
			return 1;
		}
		if (cli_blas.refused[0] != '\0')
			fprintf(stderr, "streamrec: blas: kernel %s refused by the self-check, "
					"using %s\n", cli_blas.refused, cli_blas.kernel);
		return commands[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "streamrec: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
