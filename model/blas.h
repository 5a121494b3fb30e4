/*
 * blas: which OpenBLAS kernel the process computes with, chosen rather than
 * guessed.
 *
 * Debian's OpenBLAS 0.3.21 is built with DYNAMIC_ARCH: when the library
 * loads, it picks a kernel family by the CPU model, and on a model newer
 * than the release (an AVX-512 Xeon it does not know) it falls back to its
 * SSE3 "Prescott" kernel, 2-4x slower than the SkylakeX kernel on the same
 * CPU. It reads OPENBLAS_CORETYPE only while loading, so a process cannot
 * switch kernels once running. blas_choose() therefore runs first thing in
 * main(): it compares the kernel OpenBLAS picked with the best one the CPU's
 * features allow (or the one the operator asked for), and when they differ
 * it sets OPENBLAS_CORETYPE and re-executes the program (/proc/self/exe,
 * same argv, same PID: systemd's Type=notify, the watchdog and the journal
 * see one process). After the re-exec a self-check multiplies matrices with
 * the chosen kernel against a double-precision reference; a kernel that
 * fails it is refused, and the program re-executes once more with the
 * kernel OpenBLAS had picked, logging why.
 *
 * An operator's OPENBLAS_CORETYPE in the environment is honoured as it is
 * (never replaced); `requested` (the daemon's blas.kernel key, the
 * STREAMREC_BLAS_KERNEL variable for the tools and benchmarks) names a
 * kernel explicitly, "auto" (or NULL/"") lets blas_choose() pick.
 *
 * Fault injection: STREAMREC_BLAS_FAULT=NAME makes kernel NAME fail the
 * self-check after a re-exec, so tests can see the fallback.
 *
 * Threads: call before any BLAS call and before starting threads (a re-exec
 * replaces the process).
 */
#ifndef STREAMREC_BLAS_H
#define STREAMREC_BLAS_H

#include <stdbool.h>
#include <stddef.h>

/** How the kernel in use came to be chosen. */
enum blas_choice {
	BLAS_CHOSEN_LIBRARY = 0, /**< OpenBLAS's own pick, already the best */
	BLAS_CHOSEN_AUTO,        /**< raised to the best the CPU supports */
	BLAS_CHOSEN_REQUEST,     /**< named by the configuration / STREAMREC_BLAS_KERNEL */
	BLAS_CHOSEN_ENVIRONMENT, /**< OPENBLAS_CORETYPE set by the operator */
	BLAS_CHOSEN_FALLBACK,    /**< the chosen kernel failed the self-check */
};

/** What blas_choose() found and did. */
struct blas_report {
	char kernel[32];      /**< the kernel in use (openblas_get_corename()) */
	char cpu_best[32];    /**< the best kernel family the CPU's features allow */
	char refused[32];     /**< a kernel refused by the self-check, or "" */
	char config[160];     /**< openblas_get_config() */
	enum blas_choice choice;
	bool self_check_ok;   /**< the kernel in use passed the self-check */
	double self_check_error; /**< its largest relative error */
};

/**
 * @brief Choose the kernel (see the file comment); may re-execute the
 * program, so call it first in main() with main's argv.
 * @param requested "auto", "", NULL or a kernel name (case-insensitive;
 *        blas_kernel_known() lists them)
 * @returns 0 with *report filled, or -1 with errstr filled (an unknown
 *          kernel name, a re-exec that failed, or no kernel passing the
 *          self-check).
 */
int blas_choose(const char *requested, char **argv, struct blas_report *report, char *errstr,
		size_t errstr_size);

/**
 * @brief The decision of blas_choose(), without its side effects: the kernel
 * to load instead of in_use, or NULL to keep in_use. An operator's
 * OPENBLAS_CORETYPE (environment) is kept; a requested kernel is loaded
 * even when weaker (the operator knows best); "auto" (or NULL) raises
 * in_use to cpu_best when in_use ranks lower, never lowers it.
 */
const char *blas_target(const char *in_use, const char *cpu_best, const char *requested,
			bool environment, enum blas_choice *choice);

/**
 * @returns whether the kernel in use ranks below the best the CPU runs:
 * only an operator's choice (OPENBLAS_CORETYPE, a named blas.kernel) or a
 * fallback leaves it there, and its products run slower than they could
 * (the daemon logs it as a warning; `streamrec blas` prints it).
 */
bool blas_below_cpu_best(const struct blas_report *report);

/** @returns true when name is a kernel family this module can choose. */
bool blas_kernel_known(const char *name);

/**
 * @returns whether the kernel in use has OpenBLAS's small-matrix sgemm path
 * (SkylakeX, Cooperlake): a product of a few rows runs without packing its
 * operands there, and is packed first everywhere else.
 */
bool blas_small_gemm_path(void);

/** @returns the best kernel family the running CPU's features allow ("SkylakeX", ...). */
const char *blas_cpu_best(void);

/**
 * @brief Multiply random matrices of awkward shapes (edge tiles, transposes,
 * alpha and beta) with cblas_sgemm and compare with a double-precision
 * reference. @returns true when every entry is within tolerance; *max_error
 * receives the largest relative error.
 */
bool blas_self_check(double *max_error);

/** @returns "library", "auto", "request", "environment" or "fallback". */
const char *blas_choice_name(enum blas_choice choice);

/** @brief One line for logs and benchmark headers: "OpenBLAS kernel SkylakeX (auto; CPU best SkylakeX; self-check ok)". */
void blas_describe(const struct blas_report *report, char *out, size_t out_size);

#endif
