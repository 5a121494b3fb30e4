#include "blas.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "errstr.h"
#include "portable.h"
#include "rng.h"

/* OpenBLAS's own introspection (declared in its cblas.h on some builds only). */
char *openblas_get_corename(void);
char *openblas_get_config(void);

/* Set by blas_choose() before it re-executes: what the new image is to do. */
#define STAGE_VARIABLE "STREAMREC_BLAS_STAGE"

/*
 * The kernel families OpenBLAS 0.3.21's DYNAMIC_ARCH build can be forced to
 * (driver/others/dynamic.c), ranked by what their sgemm kernels use: SSE3,
 * SSE4.2, AVX, AVX2+FMA, AVX-512. A family of a higher rank is faster on a
 * CPU that runs it; Zen's sgemm kernel is Haswell's.
 */
static const struct kernel {
	const char *name;
	int rank;
} kernels[] = {
    {"Prescott", 1},    {"Core2", 1},       {"Penryn", 1},     {"Dunnington", 1},
    {"Atom", 1},        {"Opteron", 1},     {"Barcelona", 1},  {"Bobcat", 1},
    {"Nehalem", 2},     {"Sandybridge", 3}, {"Bulldozer", 3},  {"Piledriver", 3},
    {"Haswell", 4},     {"Zen", 4},         {"Steamroller", 4}, {"Excavator", 4},
    {"SkylakeX", 5},    {"Cooperlake", 6},
};

static const struct kernel *find_kernel(const char *name)
{
	for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
		if (strcasecmp(kernels[i].name, name) == 0)
			return &kernels[i];
	return NULL;
}

bool blas_kernel_known(const char *name)
{
	return name != NULL && find_kernel(name) != NULL;
}

bool blas_small_gemm_path(void)
{
	const struct kernel *in_use = find_kernel(openblas_get_corename());
	return in_use != NULL && in_use->rank >= 5;
}

const char *blas_cpu_best(void)
{
	__builtin_cpu_init();
	bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
		      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
		      __builtin_cpu_supports("avx512vl");
	if (avx512 && __builtin_cpu_supports("avx512bf16"))
		return "Cooperlake";
	if (avx512)
		return "SkylakeX";
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return "Haswell";
	if (__builtin_cpu_supports("avx"))
		return "Sandybridge";
	if (__builtin_cpu_supports("sse4.2"))
		return "Nehalem";
	return "Prescott";
}

static int rank_of(const char *name)
{
	const struct kernel *k = find_kernel(name);
	return k ? k->rank : 0;
}

const char *blas_choice_name(enum blas_choice choice)
{
	static const char *const names[] = {"library", "auto", "request", "environment",
					    "fallback"};
	return (unsigned)choice < sizeof names / sizeof names[0] ? names[choice] : "unknown";
}

/* One product C = alpha·op(A)·op(B) + beta·C against a double reference. */
static double check_product(uint64_t *rng, int m, int n, int k, bool trans_a, bool trans_b,
			    float alpha, float beta)
{
	size_t a_len = (size_t)m * (size_t)k, b_len = (size_t)k * (size_t)n;
	size_t c_len = (size_t)m * (size_t)n;
	float *a = malloc(a_len * sizeof *a), *b = malloc(b_len * sizeof *b);
	float *c = malloc(c_len * sizeof *c);
	double worst = INFINITY;
	if (a == NULL || b == NULL || c == NULL)
		goto out_free;
	for (size_t i = 0; i < a_len; i++)
		a[i] = (float)(rng_uniform(rng) * 2 - 1);
	for (size_t i = 0; i < b_len; i++)
		b[i] = (float)(rng_uniform(rng) * 2 - 1);
	for (size_t i = 0; i < c_len; i++)
		c[i] = (float)(rng_uniform(rng) * 2 - 1);
	/* row-major: op(A) is m×k, stored k×m when transposed */
	int lda = trans_a ? m : k, ldb = trans_b ? k : n;
	double *reference = malloc(c_len * sizeof *reference);
	double *magnitude = malloc(c_len * sizeof *magnitude);
	if (reference == NULL || magnitude == NULL) {
		free(reference);
		free(magnitude);
		goto out_free;
	}
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			double sum = 0, mag = 0;
			for (int p = 0; p < k; p++) {
				double x = trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
				double y = trans_b ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
				sum += x * y;
				mag += fabs(x * y);
			}
			size_t at = (size_t)i * n + j;
			reference[at] = alpha * sum + beta * (double)c[at];
			magnitude[at] = fabs(alpha) * mag + fabs(beta * (double)c[at]) + 1e-30;
		}
	cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
		    trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, n);
	worst = 0;
	for (size_t i = 0; i < c_len; i++) {
		double error = fabs((double)c[i] - reference[i]) / magnitude[i];
		if (!(error <= worst)) /* NaN counts as the worst */
			worst = isnan(error) ? INFINITY : error;
	}
	free(reference);
	free(magnitude);
out_free:
	free(a);
	free(b);
	free(c);
	return worst;
}

bool blas_self_check(double *max_error)
{
	/* edge tiles of every kernel's blocking, both transposes of the
	 * engine's products (queries × items^T), alpha/beta paths, and one
	 * product large enough to take the packed path */
	static const struct {
		int m, n, k;
		bool ta, tb;
		float alpha, beta;
	} cases[] = {
	    {1, 1, 1, false, false, 1, 0},       {7, 13, 5, false, true, 1, 0},
	    {37, 29, 33, false, true, 1, 0},     {33, 65, 17, true, false, 0.5f, 1},
	    {64, 127, 32, false, true, 1, 0},    {129, 257, 64, false, true, 2, -1},
	    {256, 1031, 32, false, true, 1, 0},
	};
	uint64_t rng = 0x5eed5eedULL;
	double worst = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		double error = check_product(&rng, cases[i].m, cases[i].n, cases[i].k, cases[i].ta,
					     cases[i].tb, cases[i].alpha, cases[i].beta);
		if (!(error <= worst))
			worst = error;
	}
	if (max_error != NULL)
		*max_error = worst;
	/* float accumulation over k ≤ 64 terms: about k·2^-24 relative */
	return worst < 1e-4;
}

const char *blas_target(const char *in_use, const char *cpu_best, const char *requested,
			bool environment, enum blas_choice *choice)
{
	*choice = BLAS_CHOSEN_LIBRARY;
	if (environment) {
		*choice = BLAS_CHOSEN_ENVIRONMENT;
		return NULL;
	}
	if (requested != NULL && requested[0] != '\0' && strcasecmp(requested, "auto") != 0) {
		const struct kernel *k = find_kernel(requested);
		*choice = BLAS_CHOSEN_REQUEST;
		return k != NULL && strcasecmp(k->name, in_use) != 0 ? k->name : NULL;
	}
	if (rank_of(in_use) < rank_of(cpu_best)) {
		*choice = BLAS_CHOSEN_AUTO;
		return cpu_best;
	}
	return NULL;
}

/* Replaces the process with itself, OPENBLAS_CORETYPE set to kernel. */
static int reexec(char **argv, const char *kernel, const char *stage, char *errstr,
		  size_t errstr_size)
{
	if (setenv("OPENBLAS_CORETYPE", kernel, 1) != 0 || setenv(STAGE_VARIABLE, stage, 1) != 0) {
		set_errstr(errstr, errstr_size, "blas: cannot set the environment to choose %s",
			   kernel);
		return -1;
	}
	fflush(NULL);
	execv("/proc/self/exe", argv);
	set_errstr(errstr, errstr_size, "blas: re-executing to load kernel %s: %m", kernel);
	return -1;
}

int blas_choose(const char *requested, char **argv, struct blas_report *report, char *errstr,
		size_t errstr_size)
{
	char stage[96] = "";
	const char *in_use = openblas_get_corename();
	const char *stage_env = getenv(STAGE_VARIABLE);
	bool automatic = requested == NULL || requested[0] == '\0' ||
			 strcasecmp(requested, "auto") == 0;

	memset(report, 0, sizeof *report);
	snprintf(report->cpu_best, sizeof report->cpu_best, "%s", blas_cpu_best());
	snprintf(report->config, sizeof report->config, "%s", openblas_get_config());
	if (!automatic && !blas_kernel_known(requested)) {
		set_errstr(errstr, errstr_size,
			   "blas: unknown kernel \"%s\" (auto, Prescott, Nehalem, Sandybridge, "
			   "Haswell, Zen, SkylakeX, Cooperlake, ...)",
			   requested);
		return -1;
	}
	if (stage_env != NULL) {
		snprintf(stage, sizeof stage, "%s", stage_env);
		unsetenv(STAGE_VARIABLE);
	}

	if (stage[0] == '\0') {
		/* first image: decide whether another kernel should be loaded */
		const char *target =
		    blas_target(in_use, report->cpu_best, automatic ? NULL : requested,
				getenv("OPENBLAS_CORETYPE") != NULL, &report->choice);
		if (target != NULL) {
			snprintf(stage, sizeof stage, "trial:%d:%s", (int)report->choice, in_use);
			return reexec(argv, target, stage, errstr, errstr_size);
		}
	} else if (strncmp(stage, "trial:", 6) == 0) {
		/* second image: the kernel asked for, unless OpenBLAS ignored the name */
		report->choice = (enum blas_choice)atoi(stage + 6);
		const char *original = strchr(stage + 6, ':');
		original = original ? original + 1 : "Prescott";
		const char *wanted = getenv("OPENBLAS_CORETYPE");
		bool loaded = wanted != NULL && strcasecmp(wanted, in_use) == 0;
		/* fault injection for the tests: the named kernel fails its check */
		const char *fault = getenv("STREAMREC_BLAS_FAULT");
		bool faulty = fault != NULL && strcasecmp(fault, in_use) == 0;
		if (!loaded || faulty || !blas_self_check(&report->self_check_error)) {
			char fallback[96];
			snprintf(fallback, sizeof fallback, "fallback:%s", wanted ? wanted : "?");
			return reexec(argv, original, fallback, errstr, errstr_size);
		}
	} else if (strncmp(stage, "fallback:", 9) == 0) {
		report->choice = BLAS_CHOSEN_FALLBACK;
		snprintf(report->refused, sizeof report->refused, "%.31s", stage + 9);
	}

	snprintf(report->kernel, sizeof report->kernel, "%s", in_use);
	report->self_check_ok = blas_self_check(&report->self_check_error);
	if (!report->self_check_ok) {
		set_errstr(errstr, errstr_size,
			   "blas: kernel %s fails the self-check (relative error %.3g); set "
			   "OPENBLAS_CORETYPE to a kernel that passes",
			   in_use, report->self_check_error);
		return -1;
	}
	return 0;
}

bool blas_below_cpu_best(const struct blas_report *report)
{
	return rank_of(report->kernel) < rank_of(report->cpu_best);
}

void blas_describe(const struct blas_report *report, char *out, size_t out_size)
{
	static const char *const why[] = {
	    [BLAS_CHOSEN_REQUEST] = "blas.kernel (or STREAMREC_BLAS_KERNEL) names it",
	    [BLAS_CHOSEN_ENVIRONMENT] = "OPENBLAS_CORETYPE in the environment names it",
	    [BLAS_CHOSEN_FALLBACK] = "the better kernel failed the self-check"};
	char refused[80] = "", below[192] = "";

	if (report->refused[0] != '\0')
		snprintf(refused, sizeof refused, "; %s refused by the self-check", report->refused);
	if (blas_below_cpu_best(report)) {
		const char *because = (unsigned)report->choice < sizeof why / sizeof why[0] &&
					      why[report->choice] != NULL
					  ? why[report->choice]
					  : "OpenBLAS picked it";
		snprintf(below, sizeof below,
			 "; below this CPU's best, %s, because %s: products run slower than they "
			 "could",
			 report->cpu_best, because);
	}
	snprintf(out, out_size,
		 "OpenBLAS kernel %s (chosen by: %s; CPU best %s; self-check %s, max relative "
		 "error %.1e%s%s)",
		 report->kernel, blas_choice_name(report->choice), report->cpu_best,
		 report->self_check_ok ? "ok" : "FAILED", report->self_check_error, refused, below);
}
