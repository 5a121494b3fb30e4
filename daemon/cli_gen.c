/*
 * cli_gen: the `streamrec gen` command, which writes a synthetic event
 * stream with planted structure (stream/synth.h) to a CSV or Avro file for
 * offline replay. The same options give the same file, byte for byte.
 *
 * With --items-out it also writes the catalogue's text, `item_id<TAB>title`
 * a line, for the text model (`streamrec embed --passages`): an item's title
 * is made from its planted cluster's product theme (the theme's noun in
 * English, German, Portuguese or Chinese, and one of the theme's attributes)
 * plus words shared by every theme (a brand, a colour, a pack size), so that
 * items of one cluster have similar titles across languages and items of
 * different clusters share only the noise words. --categories-out writes
 * `item_id<TAB>cluster` for checking that (`streamrec embed --categories`).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "rng.h"
#include "eventlog.h"
#include "rng.h"
#include "synth.h"

/* Product themes of the planted clusters: the noun in four languages, three attributes. */
static const struct {
	const char *noun[4]; /* en, de, pt, zh */
	const char *attribute[3];
} themes[] = {
    {{"running shoes", "Laufschuhe", "tênis de corrida", "跑步鞋"},
     {"cushioned sole", "breathable mesh", "marathon"}},
    {{"coffee maker", "Kaffeemaschine", "cafeteira elétrica", "咖啡机"},
     {"espresso", "drip filter", "12 cups"}},
    {{"phone case", "Handyhülle", "capa de celular", "手机壳"},
     {"shockproof", "silicone", "magnetic"}},
    {{"wireless headphones", "kabellose Kopfhörer", "fones de ouvido sem fio", "无线耳机"},
     {"noise cancelling", "bluetooth", "over-ear"}},
    {{"yoga mat", "Yogamatte", "tapete de yoga", "瑜伽垫"}, {"non-slip", "6 mm", "eco foam"}},
    {{"chef knife", "Kochmesser", "faca de chef", "厨师刀"},
     {"stainless steel", "8 inch", "forged blade"}},
    {{"dry dog food", "Hundefutter", "ração para cães", "狗粮"},
     {"chicken", "grain free", "adult dogs"}},
    {{"children's picture book", "Kinderbuch", "livro infantil", "儿童绘本"},
     {"bedtime stories", "ages 3-5", "illustrated"}},
    {{"laptop backpack", "Laptop-Rucksack", "mochila para notebook", "电脑背包"},
     {"15.6 inch", "water resistant", "USB port"}},
    {{"face moisturizer", "Gesichtscreme", "hidratante facial", "面霜"},
     {"hyaluronic acid", "SPF 30", "sensitive skin"}},
    {{"LED desk lamp", "LED-Schreibtischlampe", "luminária de mesa LED", "LED台灯"},
     {"dimmable", "eye care", "touch control"}},
    {{"non-stick frying pan", "Bratpfanne", "frigideira antiaderente", "不粘锅"},
     {"28 cm", "induction", "ceramic coating"}},
    {{"bike helmet", "Fahrradhelm", "capacete de bicicleta", "自行车头盔"},
     {"adjustable", "ventilated", "road cycling"}},
    {{"ergonomic office chair", "Bürostuhl", "cadeira de escritório", "办公椅"},
     {"lumbar support", "mesh back", "swivel"}},
    {{"smartwatch", "Smartwatch", "relógio inteligente", "智能手表"},
     {"heart rate", "GPS", "fitness tracker"}},
    {{"green tea", "grüner Tee", "chá verde", "绿茶"}, {"loose leaf", "organic", "100 g"}},
    {{"board game", "Brettspiel", "jogo de tabuleiro", "桌游"},
     {"family night", "2-4 players", "strategy"}},
    {{"wine glasses", "Weingläser", "taças de vinho", "红酒杯"},
     {"crystal", "set of 6", "dishwasher safe"}},
    {{"camping tent", "Campingzelt", "barraca de camping", "帐篷"},
     {"4 person", "rainproof", "easy setup"}},
    {{"robot vacuum cleaner", "Saugroboter", "aspirador robô", "扫地机器人"},
     {"app control", "pet hair", "self charging"}},
    {{"baby diapers", "Babywindeln", "fraldas para bebê", "婴儿纸尿裤"},
     {"size 3", "ultra soft", "pack of 60"}},
    {{"acoustic guitar strings", "Gitarrensaiten", "cordas de violão", "吉他弦"},
     {"phosphor bronze", "light gauge", "6 strings"}},
    {{"matte lipstick", "Lippenstift", "batom matte", "口红"},
     {"long lasting", "velvet", "nude shade"}},
    {{"cordless drill", "Akkuschrauber", "furadeira sem fio", "电钻"},
     {"18V", "2 batteries", "high torque"}},
    {{"winter jacket", "Winterjacke", "jaqueta de inverno", "冬季外套"},
     {"down filled", "hooded", "windproof"}},
    {{"polarized sunglasses", "Sonnenbrille", "óculos de sol", "太阳镜"},
     {"UV400", "aviator", "metal frame"}},
    {{"extra virgin olive oil", "Olivenöl", "azeite extra virgem", "橄榄油"},
     {"cold pressed", "500 ml", "Italian"}},
    {{"printer ink cartridge", "Druckerpatrone", "cartucho de tinta", "打印机墨盒"},
     {"black ink", "high yield", "compatible"}},
    {{"aquarium filter", "Aquariumfilter", "filtro de aquário", "鱼缸过滤器"},
     {"silent pump", "fish tank", "200 L"}},
    {{"garden hose", "Gartenschlauch", "mangueira de jardim", "花园水管"},
     {"expandable", "30 m", "spray nozzle"}},
};
#define THEME_COUNT (sizeof themes / sizeof themes[0])

/* Words of every theme: the noise a title's category must stand out from. */
static const char *const brands[] = {"Norda", "Vexel", "Kumo", "Altiva", "Brisa", "Lumen",
				     "Orbi",  "Tesso", "Maru", "Fjell"};
static const char *const colours[] = {"black", "white", "blue", "grey", "green", "beige"};
static const char *const extras[] = {"", " - new", " (2024 edition)", " - bestseller",
				     " pack of 2", " - gift idea"};
/* Clusters beyond the themes reuse one with a line of their own. */
static const char *const lines[] = {"", "Pro", "Mini", "XL", "Kids", "Travel", "Max", "Lite"};

#define PICK(array, rng) (array)[rng_next(rng) % (sizeof(array) / sizeof((array)[0]))]

/* Writes `item_id<TAB>title` (and `item_id<TAB>cluster`) for every item of log. */
static int write_items(const struct event_log *log, uint64_t seed, const char *items_path,
		       const char *categories_path, char *errstr, size_t errstr_size)
{
	FILE *items = items_path ? fopen(items_path, "w") : NULL;
	FILE *cats = categories_path ? fopen(categories_path, "w") : NULL;
	uint64_t rng = seed ^ 0x7469746c65ULL; /* "title": its own stream */
	int rc = 0;
	if ((items_path && items == NULL) || (categories_path && cats == NULL)) {
		snprintf(errstr, errstr_size, "%s: %s", items_path && !items ? items_path
								: categories_path,
			 strerror(errno));
		rc = -1;
		goto out_close;
	}
	for (size_t i = 0; i < log->item_count; i++) {
		uint32_t cluster = log->item_category ? log->item_category[i] : 0;
		size_t theme = cluster % THEME_COUNT, line = cluster / THEME_COUNT;
		const char *noun = themes[theme].noun[rng_next(&rng) % 4];
		const char *attribute = themes[theme].attribute[rng_next(&rng) % 3];
		const char *brand = PICK(brands, &rng), *colour = PICK(colours, &rng);
		const char *extra = PICK(extras, &rng);
		if (items != NULL) {
			fprintf(items, "%s\t%s %s", log->item_ids[i], brand, noun);
			if (line > 0)
				fprintf(items, " %s %zu", lines[line % (sizeof lines / sizeof *lines)],
					line);
			fprintf(items, ", %s, %s%s\n", attribute, colour, extra);
		}
		if (cats != NULL)
			fprintf(cats, "%s\t%u\n", log->item_ids[i], cluster);
	}
	if ((items && (fflush(items) != 0 || ferror(items))) ||
	    (cats && (fflush(cats) != 0 || ferror(cats)))) {
		snprintf(errstr, errstr_size, "writing the items: %s", strerror(errno));
		rc = -1;
	}
out_close:
	if (items != NULL && fclose(items) != 0 && rc == 0) {
		snprintf(errstr, errstr_size, "%s: %s", items_path, strerror(errno));
		rc = -1;
	}
	if (cats != NULL && fclose(cats) != 0 && rc == 0) {
		snprintf(errstr, errstr_size, "%s: %s", categories_path, strerror(errno));
		rc = -1;
	}
	return rc;
}

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

/* A standard normal draw (Box-Muller). */
static double normal(uint64_t *state)
{
	double u = rng_uniform(state), v = rng_uniform(state);
	return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

/* Dimension of the planted latent factors behind the content vectors. */
#define CONTENT_LATENT_DIM 16

/*
 * --content: a content vector for every item of the world, in the format
 * `streamrec embed --passages` writes (item_id<TAB>f1 ... fn). The world's
 * planted latent structure is its clusters: each cluster gets a latent
 * factor g_k (CONTENT_LATENT_DIM standard normals), each item the factor
 * z_i = g_k + 0.5 u_i of its cluster k with an item-specific part u_i; a
 * fixed random projection P (dim x CONTENT_LATENT_DIM, normals / sqrt of
 * the latent dimension) takes it to c_i = P z_i + noise e_i (e_i standard
 * normals), as an upstream text model would place items of one kind near
 * each other. Seeded from the stream's seed: same arguments, same file.
 */
static int write_content(struct event_log *log, const char *path, size_t dim, double noise,
			 uint64_t seed, uint32_t clusters, size_t searches, char *errstr,
			 size_t errstr_size)
{
	uint64_t state = seed ^ 0xC0A7E47ULL;
	size_t world_items = log->item_count;
	double *g = malloc((size_t)clusters * CONTENT_LATENT_DIM * sizeof *g);
	double *p = malloc(dim * CONTENT_LATENT_DIM * sizeof *p);
	float *vectors = malloc((world_items + searches + 1) * dim * sizeof *vectors);
	FILE *f = NULL;
	int rc = -1;
	if (g == NULL || p == NULL || vectors == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		goto out_free;
	}
	for (size_t k = 0; k < (size_t)clusters * CONTENT_LATENT_DIM; k++)
		g[k] = normal(&state);
	for (size_t k = 0; k < dim * CONTENT_LATENT_DIM; k++)
		p[k] = normal(&state) / sqrt((double)CONTENT_LATENT_DIM);
	for (size_t i = 0; i < world_items; i++) {
		uint32_t cluster = log->item_category != NULL ? log->item_category[i] : 0;
		double z[CONTENT_LATENT_DIM];
		for (size_t h = 0; h < CONTENT_LATENT_DIM; h++)
			z[h] = (cluster < clusters ? g[(size_t)cluster * CONTENT_LATENT_DIM + h] : 0) +
			       0.5 * normal(&state);
		for (size_t c = 0; c < dim; c++) {
			double x = noise * normal(&state);
			for (size_t h = 0; h < CONTENT_LATENT_DIM; h++)
				x += p[c * CONTENT_LATENT_DIM + h] * z[h];
			vectors[i * dim + c] = (float)x;
		}
	}
	/*
	 * Planted search-then-buy sessions: at the time of a random event of the
	 * stream, a user searches for an item of a cluster that is not their
	 * main one (the item drawn as that event's item: by popularity), with
	 * a query near the item's content (its vector plus noise, as a query
	 * embedding lies near the passages it matches), and buys it 2 s later.
	 */
	for (size_t s = 0; s < searches && log->count > 0; s++) {
		size_t e;
		uint32_t target, user = 0;
		int tries = 0;
		do {
			e = (size_t)(rng_uniform(&state) * (double)log->count);
			target = log->item[e];
			user = (uint32_t)(rng_uniform(&state) * (double)log->user_count);
		} while (log->user_cluster != NULL && log->item_category != NULL &&
			 log->user_cluster[user] == log->item_category[target] && ++tries < 100);
		char query_id[32];
		uint32_t query;
		int64_t at = log->ts_ms[e];
		snprintf(query_id, sizeof query_id, "q%zu", s);
		if (eventlog_intern_item(log, query_id, strlen(query_id), &query, errstr,
					 errstr_size) != 0 ||
		    eventlog_append_indexed(log, user, query, (enum event_type)EVENT_SEARCH, at,
					    errstr, errstr_size) != 0 ||
		    eventlog_append_indexed(log, user, target, EVENT_PURCHASE, at + 2000, errstr,
					    errstr_size) != 0)
			goto out_free;
		for (size_t c = 0; c < dim; c++)
			vectors[(world_items + s) * dim + c] =
			    vectors[(size_t)target * dim + c] + (float)(noise * normal(&state));
	}
	f = fopen(path, "w");
	if (f == NULL) {
		snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
		goto out_free;
	}
	for (size_t i = 0; i < log->item_count; i++) {
		fprintf(f, "%s\t", log->item_ids[i]);
		for (size_t c = 0; c < dim; c++)
			fprintf(f, c ? " %.6g" : "%.6g", (double)vectors[i * dim + c]);
		fputc('\n', f);
	}
	if (fclose(f) != 0) {
		f = NULL;
		snprintf(errstr, errstr_size, "%s: write failed", path);
		goto out_free;
	}
	f = NULL;
	rc = 0;
out_free:
	if (f != NULL)
		fclose(f);
	free(g);
	free(p);
	free(vectors);
	return rc;
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
	    {"content", required_argument, NULL, 1000},
	    {"content-dim", required_argument, NULL, 1001},
	    {"content-noise", required_argument, NULL, 1002},
	    {"searches", required_argument, NULL, 1003},
	    {"items-out", required_argument, NULL, 'I'},
	    {"categories-out", required_argument, NULL, 'C'},
	    {NULL, 0, NULL, 0}};
	const char *content_path = NULL;
	long long content_dim = 64;
	double content_noise = 0.5;
	long long searches = 0;
	struct synth_config config = synth_config_default();
	long long users = config.users, items = config.items, clusters = config.clusters;
	long long events = (long long)config.events, seed = (long long)config.seed, v;
	const char *format = "csv", *out = NULL, *items_out = NULL, *categories_out = NULL;
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
		case 'I': items_out = optarg; break;
		case 'C': categories_out = optarg; break;
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
		case 1000: content_path = optarg; break;
		case 1003:
			rc = cli_parse_count("gen", "searches", optarg, 0, 100000000, &searches);
			break;
		case 1001:
			rc = cli_parse_count("gen", "content-dim", optarg, 1, 4096, &content_dim);
			break;
		case 1002: {
			char *end;
			content_noise = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || !(content_noise >= 0 && content_noise <= 100)) {
				fprintf(stderr,
					"streamrec gen: --content-noise: must be a number from 0 to "
					"100, got '%s'\n",
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
	if ((items_out != NULL && items_out[0] == '\0') ||
	    (categories_out != NULL && categories_out[0] == '\0')) {
		fprintf(stderr, "streamrec gen: --%s: empty path\n",
			items_out && !items_out[0] ? "items-out" : "categories-out");
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
	if (searches > 0 && content_path == NULL) {
		fprintf(stderr, "streamrec gen: --searches needs --content (the queries' vectors)\n");
		goto out_free;
	}
	if (content_path != NULL &&
	    (write_content(log, content_path, (size_t)content_dim, content_noise, config.seed,
			   config.clusters, (size_t)searches, errstr, sizeof errstr) != 0 ||
	     eventlog_sort_by_time(log, errstr, sizeof errstr) != 0)) {
		fprintf(stderr, "streamrec gen: --content: %s\n", errstr);
		goto out_free;
	}
	double generated = clock_monotonic_s();
	if ((strcmp(format, "csv") == 0
		 ? eventlog_write_csv(log, out, errstr, sizeof errstr)
		 : eventlog_write_avro(log, out, errstr, sizeof errstr)) != 0) {
		fprintf(stderr, "streamrec gen: %s\n", errstr);
		goto out_free;
	}
	if ((items_out || categories_out) &&
	    write_items(log, config.seed, items_out, categories_out, errstr, sizeof errstr) != 0) {
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
