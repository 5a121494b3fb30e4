/*
 * experiment: the statistics of one A/B experiment, each variant against the
 * control arm, that an analyst can trust (DESIGN.md, "A/B experiments").
 *
 * What is counted, per variant and per exposure period:
 *   exposed    users served at least one list of the variant in the period;
 *   converted  exposed users with at least one hit (a click, add-to-cart or
 *              purchase of an item in a list of the variant they were served);
 *   hits       the hits themselves.
 * A user is named by the stable index the caller already has for it (the
 * daemon's user index); the variant by its position in the configuration.
 *
 * Statistics, for each variant against the control arm (alpha from the
 * configuration, two-sided; z = Phi^-1(1 - alpha/2)):
 *   rate         converted / exposed, with the Wilson score interval;
 *   uplift       (rate - control rate) / control rate, with a delta-method
 *                interval on the ratio of two independent proportions:
 *                se = r * sqrt(v_t / p_t^2 + v_c / p_c^2), v = p(1-p)/n,
 *                r = p_t / p_c;
 *   msprt_p      always-valid p-value of the mixture sequential probability
 *                ratio test (mSPRT; Johari, Pekelis, Walsh, "Always valid
 *                inference", Operations Research 2022) for the difference
 *                d = p_t - p_c, normal mixing prior N(0, tau^2) on d, plug-in
 *                variance V = v_t + v_c:
 *                  Lambda = sqrt(V / (V + tau^2))
 *                           * exp(tau^2 d^2 / (2 V (V + tau^2)))
 *                  msprt_p = min over updates of min(1, 1 / Lambda)
 *                It is updated on every event once both arms have
 *                msprt_min_users exposed users and V > 0, so it never rises;
 *                it may be read at any time and the test stopped at any time
 *                with type-I error at most alpha;
 *   av_low/high  the matching always-valid confidence sequence for d, the
 *                running intersection of
 *                  d +- sqrt(V (V + tau^2) / tau^2
 *                            * (2 ln(1/alpha) + ln((V + tau^2) / V)))
 *                (0 lies outside it exactly when msprt_p < alpha);
 *   srm_p        sample-ratio mismatch: Pearson's chi-square goodness of fit
 *                of the exposed users per variant against the configured
 *                shares (k - 1 degrees of freedom); srm_flag when
 *                srm_p < srm_alpha (0.001 by default): the split is broken
 *                and no other figure of the period should be trusted;
 *   cuped_*      CUPED (Deng, Xu, Kohavi, Walker, WSDM 2013), once any
 *                pre-period activity was given: X is the user's activity
 *                before the experiment (0 for an exposed user never given
 *                one), Y the user's conversion (0/1);
 *                theta = cov(Y, X) / var(X) pooled over the exposed users of
 *                every arm; each arm's adjusted rate is
 *                mean(Y) - theta (mean_arm(X) - mean_all(X)), its variance
 *                (var(Y) - 2 theta cov(Y, X) + theta^2 var(X)) / n within the
 *                arm (sample moments, n - 1); the adjusted uplift and its
 *                interval use the same delta method as the plain uplift.
 * Figures that are undefined (an empty arm, a zero control rate, the
 * control's own uplift) are NAN here and null in the JSON.
 *
 * Periods: an experiment has a start time and an exposure period id.
 * experiment_reset_period() starts a new period, with zero counters, fresh
 * per-user flags and a fresh sequential test, so that two splits are never
 * mixed: the daemon calls it whenever a variant's share changes. Pre-period
 * activity is kept across periods (it is the users' activity before the
 * experiment started).
 *
 * Memory: one byte per user index ever seen (the user's arm in the current
 * period and whether it converted), plus a float per user index once any
 * pre-period activity was given; both grow by doubling up to the highest
 * index seen and are released by experiment_free(). 10 million users cost
 * 10 MB, or 50 MB with CUPED. Per-variant state is fixed in size.
 *
 * Threads: none of its own. An experiment is used by one thread at a time;
 * the const functions may run concurrently with each other.
 */
#ifndef STREAMREC_EXPERIMENT_H
#define STREAMREC_EXPERIMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Most variants of one experiment (the control arm included). */
#define EXPERIMENT_MAX_ARMS 15

/** Version byte that experiment_export() writes first. */
#define EXPERIMENT_FORMAT_VERSION 3

/** Defaults of struct experiment_config (experiment_config_default()). */
#define EXPERIMENT_DEFAULT_ALPHA     0.05
#define EXPERIMENT_DEFAULT_SRM_ALPHA 0.001
/**
 * Mixing variance of the mSPRT's prior on the difference of conversion
 * rates: tau = 0.01, the size of effect (one percentage point) that
 * recommendation experiments typically look for. The test stays valid for
 * any tau; a tau near the true effect makes it reach a decision soonest.
 */
#define EXPERIMENT_DEFAULT_MSPRT_TAU2 1e-4
/** Exposed users each arm needs before the plug-in variance is trusted. */
#define EXPERIMENT_DEFAULT_MSPRT_MIN_USERS 100

struct experiment_arm_config {
	const char *name; /**< copied by experiment_new() */
	double share;     /**< configured share of users, > 0; shares are normalised */
};

struct experiment_config {
	const char *name; /**< the experiment's name, copied */
	const struct experiment_arm_config *arms;
	size_t arm_count;   /**< 2 to EXPERIMENT_MAX_ARMS */
	size_t control_arm; /**< index into arms of the control */
	int64_t start_ms;   /**< wall-clock start of the experiment (and of period 0) */
	double alpha;       /**< two-sided level of every interval and of the mSPRT */
	double srm_alpha;   /**< srm_flag when srm_p falls below it */
	double msprt_tau2;  /**< mixing variance tau^2 of the mSPRT, > 0 */
	uint32_t msprt_min_users;
};

/** @returns a configuration with the defaults above and no arms. */
struct experiment_config experiment_config_default(void);

/**
 * What an analyst may read from one arm's figures, in this order of
 * precedence: the control arm itself; untrusted when the split is broken
 * (srm_flag); collecting while the arm or the control has fewer than
 * msprt_min_users exposed users (the sequential test has not started);
 * better or worse once msprt_p < alpha (the always-valid confidence sequence
 * for p_t - p_c lies above or below 0); else inconclusive (so far).
 */
enum experiment_verdict {
	EXPERIMENT_VERDICT_CONTROL,
	EXPERIMENT_VERDICT_UNTRUSTED,
	EXPERIMENT_VERDICT_COLLECTING,
	EXPERIMENT_VERDICT_INCONCLUSIVE,
	EXPERIMENT_VERDICT_BETTER,
	EXPERIMENT_VERDICT_WORSE,
};

/** @returns the verdict's name in the JSON: "control", "untrusted", "collecting",
 * "inconclusive", "better" or "worse". */
const char *experiment_verdict_name(enum experiment_verdict verdict);

/** One variant's figures (see the top of this file for their definitions). */
struct experiment_arm_stats {
	const char *name; /**< borrowed from the experiment */
	bool control;
	double share; /**< normalised configured share */
	uint64_t exposed, converted, hits;
	double rate, ci_low, ci_high;
	double uplift, uplift_low, uplift_high;
	double msprt_p, av_low, av_high;
	bool cuped;
	double cuped_rate, cuped_uplift, cuped_uplift_low, cuped_uplift_high;
	double cuped_variance_reduction; /**< 1 - var(adjusted Y) / var(Y) within the arm */
	enum experiment_verdict verdict;
};

/** The experiment's figures. */
struct experiment_stats {
	uint32_t period;
	int64_t start_ms, period_start_ms;
	double srm_chi2, srm_p;
	bool srm_flag;
	bool cuped;
	double cuped_theta;
	uint64_t hits_ignored;       /**< hits of users not exposed to that variant this period */
	uint64_t exposure_conflicts; /**< exposures to a second variant within a period (ignored) */
	size_t arm_count;
	struct experiment_arm_stats arms[EXPERIMENT_MAX_ARMS];
	double alpha;             /**< the configured level, for the verdicts */
	uint32_t msprt_min_users; /**< users each arm needs before the test starts */
};

struct experiment;

/**
 * @brief A new experiment in period 0, starting at config->start_ms.
 * Nothing of config is kept: names are copied.
 * @returns the experiment, or NULL with errstr filled (invalid
 * configuration, out of memory).
 */
struct experiment *experiment_new(const struct experiment_config *config, char *errstr,
				  size_t errstr_size);

/** @brief Releases everything; NULL is a no-op. */
void experiment_free(struct experiment *experiment);

/**
 * @brief Records that user `user_index` was served a list of variant `arm`.
 * The first exposure of a user in a period counts it as exposed in that arm;
 * later ones to the same arm change nothing, and ones to another arm are
 * counted as exposure_conflicts and otherwise ignored (the user stays in its
 * first arm until the period ends).
 * @returns 0, or -1 (arm out of range, out of memory).
 */
int experiment_expose(struct experiment *experiment, uint32_t user_index, size_t arm, char *errstr,
		      size_t errstr_size);

/**
 * @brief Records a hit of user `user_index` on an item of a list of variant
 * `arm`. Counted when the user was exposed to that arm in this period
 * (making it converted), else counted in hits_ignored (a list of another
 * period or variant).
 * @returns 0, or -1 (arm out of range).
 */
int experiment_hit(struct experiment *experiment, uint32_t user_index, size_t arm, char *errstr,
		   size_t errstr_size);

/**
 * @brief User `user_index` left (the embedding life cycle removed it) and
 * its index may go to a new user: its arm, conversion and pre-period
 * activity are cleared, so the next user of the index is a fresh exposure
 * in its own arm. What it was counted for stays counted (exposed,
 * converted, hits of its arm in this period); it no longer enters CUPED's
 * moments (they need its flags). A no-op for an index never seen.
 */
void experiment_forget_user(struct experiment *experiment, uint32_t user_index);

/** @returns whether user `user_index` was exposed to an arm in this period. */
bool experiment_exposed(const struct experiment *experiment, uint32_t user_index);

/**
 * @brief Sets the pre-period activity of user `user_index` (any finite
 * measure of its activity before the experiment started, e.g. its number of
 * events in the 14 days before), the covariate of CUPED. May come before or
 * after the user's exposure.
 * @returns 0, or -1 (not finite, out of memory).
 */
int experiment_set_pre(struct experiment *experiment, uint32_t user_index, double activity,
		       char *errstr, size_t errstr_size);

/**
 * @brief Starts exposure period id+1 at now_ms: counters, per-user arms and
 * conversions and the sequential test start again; pre-period activity is
 * kept.
 */
void experiment_reset_period(struct experiment *experiment, int64_t now_ms);

/** @brief The current period id (0 for the first). */
uint32_t experiment_period(const struct experiment *experiment);

/**
 * @brief Computes every figure into *stats. O(arms) without pre-period
 * activity; with it, one pass over the users (CUPED's moments).
 */
void experiment_compute(const struct experiment *experiment, struct experiment_stats *stats);

/**
 * @brief The counters, sequential-test state and per-user flags as a byte
 * string for the state store: a version byte (EXPERIMENT_FORMAT_VERSION)
 * then little-endian fields (layout in experiment.c).
 * @returns 0 with *out (malloc'd, the caller frees it) and *out_size, or -1.
 */
int experiment_export(const struct experiment *experiment, uint8_t **out, size_t *out_size,
		      char *errstr, size_t errstr_size);

/**
 * @brief Replaces the experiment's counters and flags by those of a byte
 * string from experiment_export(). The stored experiment must have the same
 * name and variants (names, in order) as this one; when the configured
 * shares differ from the stored ones, the stored period is closed and a new
 * one started at the current wall-clock time (the split changed while the
 * daemon was down). When the control arm, alpha or msprt_tau2 differ from
 * the stored ones (format 3 on), the counts are kept and the sequential test
 * starts again from them: its running minimum p and interval belonged to
 * the old settings. On error the experiment is unchanged.
 * @returns 0, 1 (restored; the sequential test started again), or -1
 * (unknown version, truncated or inconsistent data, different experiment,
 * out of memory).
 */
int experiment_import(struct experiment *experiment, const uint8_t *data, size_t size, char *errstr,
		      size_t errstr_size);

/**
 * @brief The figures as one JSON object for the status page:
 * {"experiment", "period", "start_ms", "period_start_ms", "alpha",
 *  "msprt_tau2", "methods": {...}, "srm_chi2", "srm_p", "srm_flag",
 *  "cuped_theta", "hits_ignored", "exposure_conflicts",
 *  "variants": [{"name", "control", "share", "exposed", "converted", "hits",
 *  "rate", "ci_low", "ci_high", "uplift", "uplift_low", "uplift_high",
 *  "msprt_p", "av_low", "av_high", "srm_p", "srm_flag", "cuped",
 *  "cuped_rate", "cuped_uplift", "cuped_uplift_low", "cuped_uplift_high",
 *  "cuped_variance_reduction", "verdict"}, ...], "msprt_min_users", "srm_alpha"} in
 * configuration order, keys in that order, undefined figures null; "verdict"
 * is experiment_verdict_name() of the arm's verdict.
 * @returns the compact JSON text (malloc'd, the caller frees it), or NULL.
 */
char *experiment_render_json(const struct experiment *experiment, char *errstr, size_t errstr_size);

#endif
