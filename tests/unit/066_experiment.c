/*
 * Experiment statistics: exposed and converted users are counted once per
 * period, hits outside the user's arm are ignored, a period reset starts
 * afresh, export/import round-trips every counter and flag (and refuses
 * truncated, corrupt or foreign data), the sample-ratio check flags a skewed
 * split and not a fair one, and the mSPRT p-value never rises while evidence
 * for a true difference accumulates, ending below alpha.
 * (The figures themselves are checked against scipy and statsmodels by
 * tests/test_experiment_stats.py.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "experiment.h"
#include "rng.h"

static const struct experiment_arm_config two_arms[] = {{"control", 1}, {"treatment", 1}};

static struct experiment *two_arm_experiment(void)
{
	struct experiment_config config = experiment_config_default();
	char errstr[256];
	config.name = "exp";
	config.arms = two_arms;
	config.arm_count = 2;
	config.start_ms = 1000;
	struct experiment *e = experiment_new(&config, errstr, sizeof errstr);
	assert_non_null(e);
	return e;
}

static void test_config_errors(void **state)
{
	(void)state;
	struct experiment_config config = experiment_config_default();
	char errstr[256];
	config.arms = two_arms;
	config.arm_count = 1;
	assert_null(experiment_new(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "2 to"));
	config.arm_count = 2;
	config.control_arm = 2;
	assert_null(experiment_new(&config, errstr, sizeof errstr));
	config.control_arm = 0;
	config.msprt_tau2 = 0;
	assert_null(experiment_new(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "msprt_tau2"));
	config.msprt_tau2 = 1e-4;
	const struct experiment_arm_config same[] = {{"a", 1}, {"a", 1}};
	config.arms = same;
	assert_null(experiment_new(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "named twice"));
	const struct experiment_arm_config zero[] = {{"a", 1}, {"b", 0}};
	config.arms = zero;
	assert_null(experiment_new(&config, errstr, sizeof errstr));
	assert_non_null(strstr(errstr, "share"));
}

static struct experiment *three_arm_experiment(size_t control, double tau2)
{
	static const struct experiment_arm_config arms[] = {{"base", 1}, {"a", 1}, {"b", 1}};
	struct experiment_config config = experiment_config_default();
	char errstr[256];
	config.name = "exp";
	config.arms = arms;
	config.arm_count = 3;
	config.control_arm = control;
	config.msprt_tau2 = tau2;
	config.start_ms = 1000;
	struct experiment *e = experiment_new(&config, errstr, sizeof errstr);
	assert_non_null(e);
	return e;
}

/* The sequential test's running minimum p and interval hold for one
 * control, alpha and tau2: restored under another control they made "b"
 * better than "a" at once, two arms converting alike, and kept it so. */
static void test_a_new_control_starts_the_sequential_test_again(void **state)
{
	(void)state;
	char errstr[256];
	struct experiment *e = three_arm_experiment(0, 1e-4);
	for (uint32_t u = 0; u < 6000; u++) {
		size_t arm = u % 3;
		assert_int_equal(experiment_expose(e, u, arm, errstr, sizeof errstr), 0);
		/* base converts 1 in 10, a and b 3 in 10 */
		if (u / 3 % 10 < (arm == 0 ? 1u : 3u))
			assert_int_equal(experiment_hit(e, u, arm, errstr, sizeof errstr), 0);
	}
	struct experiment_stats s;
	experiment_compute(e, &s);
	assert_true(s.arms[2].msprt_p < 1e-6); /* b against base */
	assert_int_equal(s.arms[2].verdict, EXPERIMENT_VERDICT_BETTER);
	uint8_t *data;
	size_t size;
	assert_int_equal(experiment_export(e, &data, &size, errstr, sizeof errstr), 0);

	/* the same settings: restored as they were */
	struct experiment *same = three_arm_experiment(0, 1e-4);
	assert_int_equal(experiment_import(same, data, size, errstr, sizeof errstr), 0);
	experiment_compute(same, &s);
	assert_true(s.arms[2].msprt_p < 1e-6);
	experiment_free(same);

	/* control a: b converts as a does, so no verdict; the counts are kept */
	struct experiment *moved = three_arm_experiment(1, 1e-4);
	assert_int_equal(experiment_import(moved, data, size, errstr, sizeof errstr), 1);
	experiment_compute(moved, &s);
	assert_int_equal(s.arms[2].exposed, 2000);
	assert_true(s.arms[2].msprt_p > 0.05);
	assert_int_equal(s.arms[2].verdict, EXPERIMENT_VERDICT_INCONCLUSIVE);
	assert_true(s.arms[2].av_low < 0 && s.arms[2].av_high > 0);
	/* base, a treatment now, is tested against a afresh: clearly worse */
	assert_int_equal(s.arms[0].verdict, EXPERIMENT_VERDICT_WORSE);
	experiment_free(moved);

	/* another tau2 alone is another test too */
	struct experiment *retuned = three_arm_experiment(0, 1e-2);
	assert_int_equal(experiment_import(retuned, data, size, errstr, sizeof errstr), 1);
	experiment_free(retuned);
	free(data);
	experiment_free(e);
}

static void test_counters(void **state)
{
	(void)state;
	struct experiment *e = two_arm_experiment();
	struct experiment_stats s;
	char errstr[256];
	assert_int_equal(experiment_expose(e, 7, 0, errstr, sizeof errstr), 0);
	assert_int_equal(experiment_expose(e, 7, 0, errstr, sizeof errstr), 0); /* again */
	assert_int_equal(experiment_expose(e, 7, 1, errstr, sizeof errstr), 0); /* conflict */
	assert_int_equal(experiment_expose(e, 9, 1, errstr, sizeof errstr), 0);
	assert_int_equal(experiment_expose(e, 100000, 1, errstr, sizeof errstr), 0);
	assert_int_equal(experiment_hit(e, 7, 0, errstr, sizeof errstr), 0);
	assert_int_equal(experiment_hit(e, 7, 0, errstr, sizeof errstr), 0); /* 2 hits, 1 user */
	assert_int_equal(experiment_hit(e, 9, 0, errstr, sizeof errstr), 0); /* not its arm */
	assert_int_equal(experiment_hit(e, 3, 1, errstr, sizeof errstr), 0); /* never exposed */
	assert_int_equal(experiment_hit(e, 1u << 30, 1, errstr, sizeof errstr), 0);
	assert_int_equal(experiment_hit(e, 9, 1, errstr, sizeof errstr), 0);
	assert_int_equal(experiment_expose(e, 1, 2, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "variant 2"));

	experiment_compute(e, &s);
	assert_int_equal(s.arm_count, 2);
	assert_true(s.arms[0].control);
	assert_false(s.arms[1].control);
	assert_int_equal(s.arms[0].exposed, 1);
	assert_int_equal(s.arms[0].converted, 1);
	assert_int_equal(s.arms[0].hits, 2);
	assert_int_equal(s.arms[1].exposed, 2);
	assert_int_equal(s.arms[1].converted, 1);
	assert_int_equal(s.arms[1].hits, 1);
	assert_int_equal(s.hits_ignored, 3);
	assert_int_equal(s.exposure_conflicts, 1);
	assert_true(fabs(s.arms[1].rate - 0.5) < 1e-12);
	assert_true(s.arms[1].ci_low < 0.5 && s.arms[1].ci_high > 0.5);
	assert_true(isnan(s.arms[0].uplift) && isnan(s.arms[0].msprt_p));
	assert_true(fabs(s.arms[1].uplift - (-0.5)) < 1e-12);
	assert_false(s.cuped);

	char *json = experiment_render_json(e, errstr, sizeof errstr);
	assert_non_null(json);
	assert_non_null(strstr(json, "\"name\":\"control\",\"control\":true"));
	assert_non_null(strstr(json, "\"name\":\"treatment\",\"control\":false"));
	assert_non_null(strstr(json, "\"msprt_p\":null")); /* the control's */
	free(json);
	experiment_free(e);
}

static void test_period_reset(void **state)
{
	(void)state;
	struct experiment *e = two_arm_experiment();
	struct experiment_stats s;
	char errstr[256];
	for (uint32_t u = 0; u < 50; u++) {
		assert_int_equal(experiment_expose(e, u, u % 2, errstr, sizeof errstr), 0);
		assert_int_equal(experiment_hit(e, u, u % 2, errstr, sizeof errstr), 0);
	}
	assert_int_equal(experiment_set_pre(e, 3, 4.0, errstr, sizeof errstr), 0);
	assert_int_equal(experiment_period(e), 0);
	experiment_reset_period(e, 5000);
	assert_int_equal(experiment_period(e), 1);
	experiment_compute(e, &s);
	assert_int_equal(s.period, 1);
	assert_int_equal(s.start_ms, 1000);
	assert_int_equal(s.period_start_ms, 5000);
	assert_int_equal(s.arms[0].exposed + s.arms[1].exposed, 0);
	/* A user of the old period may now be in the other arm, and its old
	 * conversion does not carry over. */
	assert_int_equal(experiment_expose(e, 0, 1, errstr, sizeof errstr), 0);
	assert_int_equal(experiment_expose(e, 3, 0, errstr, sizeof errstr), 0);
	experiment_compute(e, &s);
	assert_int_equal(s.arms[1].exposed, 1);
	assert_int_equal(s.arms[1].converted, 0);
	assert_int_equal(s.exposure_conflicts, 0);
	assert_true(s.cuped); /* pre-period activity is kept */
	experiment_free(e);
}

static void test_export_import(void **state)
{
	(void)state;
	struct experiment *e = two_arm_experiment();
	char errstr[256];
	uint64_t rng;
	rng = 66;
	for (uint32_t u = 0; u < 3000; u++) {
		size_t arm = rng_next(&rng) % 2;
		assert_int_equal(experiment_expose(e, u, arm, errstr, sizeof errstr), 0);
		if (rng_uniform(&rng) < (arm ? 0.2 : 0.1))
			assert_int_equal(experiment_hit(e, u, arm, errstr, sizeof errstr), 0);
		if (u % 3 == 0)
			assert_int_equal(
			    experiment_set_pre(e, u, (double)(u % 7), errstr, sizeof errstr), 0);
	}
	assert_int_equal(experiment_hit(e, 1, 1, errstr, sizeof errstr), 0);
	uint8_t *data;
	size_t size;
	assert_int_equal(experiment_export(e, &data, &size, errstr, sizeof errstr), 0);
	assert_int_equal(data[0], EXPERIMENT_FORMAT_VERSION);

	struct experiment *copy = two_arm_experiment();
	assert_int_equal(experiment_import(copy, data, size, errstr, sizeof errstr), 0);
	char *before = experiment_render_json(e, errstr, sizeof errstr);
	char *after = experiment_render_json(copy, errstr, sizeof errstr);
	assert_non_null(before);
	assert_non_null(after);
	assert_string_equal(before, after);
	free(after);
	/* The flags came along: a repeated exposure or conversion changes nothing. */
	assert_int_equal(experiment_expose(copy, 5, 0, errstr, sizeof errstr), 0);
	assert_int_equal(experiment_expose(copy, 5, 1, errstr, sizeof errstr), 0);
	struct experiment_stats s1, s2;
	experiment_compute(e, &s1);
	experiment_compute(copy, &s2);
	assert_int_equal(s1.arms[0].exposed, s2.arms[0].exposed);
	assert_int_equal(s1.arms[1].exposed, s2.arms[1].exposed);
	/* A second export is byte-identical after a no-op import. */
	uint8_t *again;
	size_t again_size;
	experiment_free(copy);
	copy = two_arm_experiment();
	assert_int_equal(experiment_import(copy, data, size, errstr, sizeof errstr), 0);
	assert_int_equal(experiment_export(copy, &again, &again_size, errstr, sizeof errstr), 0);
	assert_int_equal(again_size, size);
	assert_memory_equal(again, data, size);
	free(again);

	/* Truncated, corrupt, another version: refused, the experiment unchanged. */
	assert_int_equal(experiment_import(copy, data, size - 1, errstr, sizeof errstr), -1);
	assert_int_equal(experiment_import(copy, data, 10, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "truncated"));
	data[0] = 99;
	assert_int_equal(experiment_import(copy, data, size, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "version 99"));
	data[0] = EXPERIMENT_FORMAT_VERSION;
	/* Counters and per-user flags that disagree: the last user of a state
	 * without pre-period activity is its last byte. */
	struct experiment *small = two_arm_experiment();
	assert_int_equal(experiment_expose(small, 0, 1, errstr, sizeof errstr), 0);
	uint8_t *small_data;
	size_t small_size;
	assert_int_equal(experiment_export(small, &small_data, &small_size, errstr, sizeof errstr),
			 0);
	small_data[small_size - 1] |= 0x10; /* converted, with converted count 0 */
	assert_int_equal(experiment_import(copy, small_data, small_size, errstr, sizeof errstr),
			 -1);
	assert_non_null(strstr(errstr, "inconsistent"));
	free(small_data);
	experiment_free(small);
	after = experiment_render_json(copy, errstr, sizeof errstr);
	assert_string_equal(before, after);
	free(after);
	free(before);

	/* Another experiment's state is refused. */
	struct experiment_config other = experiment_config_default();
	const struct experiment_arm_config other_arms[] = {{"control", 1}, {"other", 1}};
	other.name = "exp";
	other.arms = other_arms;
	other.arm_count = 2;
	struct experiment *o = experiment_new(&other, errstr, sizeof errstr);
	assert_non_null(o);
	assert_int_equal(experiment_import(o, data, size, errstr, sizeof errstr), -1);
	assert_non_null(strstr(errstr, "other variants"));
	experiment_free(o);

	/* Changed shares: the counters come back in a new period. */
	const struct experiment_arm_config reshared[] = {{"control", 1}, {"treatment", 3}};
	other.arms = reshared;
	o = experiment_new(&other, errstr, sizeof errstr);
	assert_non_null(o);
	assert_int_equal(experiment_import(o, data, size, errstr, sizeof errstr), 0);
	experiment_compute(o, &s2);
	assert_int_equal(s2.period, 1);
	assert_int_equal(s2.arms[0].exposed + s2.arms[1].exposed, 0);
	experiment_free(o);

	free(data);
	experiment_free(copy);
	experiment_free(e);
}

static void expose_split(struct experiment *e, uint32_t control_users, uint32_t treatment_users)
{
	char errstr[256];
	uint32_t u = 0;
	for (uint32_t i = 0; i < control_users; i++)
		assert_int_equal(experiment_expose(e, u++, 0, errstr, sizeof errstr), 0);
	for (uint32_t i = 0; i < treatment_users; i++)
		assert_int_equal(experiment_expose(e, u++, 1, errstr, sizeof errstr), 0);
}

static void test_srm(void **state)
{
	(void)state;
	struct experiment_stats s;
	struct experiment *e = two_arm_experiment();
	expose_split(e, 5000, 5050); /* a fair 50/50 split's noise */
	experiment_compute(e, &s);
	assert_true(s.srm_p > 0.5);
	assert_false(s.srm_flag);
	experiment_free(e);

	e = two_arm_experiment();
	expose_split(e, 5000, 5400); /* a skewed one */
	experiment_compute(e, &s);
	/* chi2 = 200^2/5200 * 2 = 15.38, p = 8.8e-5 */
	assert_true(fabs(s.srm_chi2 - 2 * 200.0 * 200.0 / 5200.0) < 1e-9);
	assert_true(s.srm_p < 0.001 && s.srm_p > 5e-5);
	assert_true(s.srm_flag);
	experiment_free(e);

	/* Against configured shares of 1:3 a 1:3 split is fair. */
	struct experiment_config config = experiment_config_default();
	const struct experiment_arm_config arms[] = {{"a", 25}, {"b", 75}};
	char errstr[256];
	config.arms = arms;
	config.arm_count = 2;
	e = experiment_new(&config, errstr, sizeof errstr);
	assert_non_null(e);
	expose_split(e, 2500, 7500);
	experiment_compute(e, &s);
	assert_true(s.srm_p > 0.99);
	assert_false(s.srm_flag);
	experiment_free(e);
}

static void test_msprt_monotone(void **state)
{
	(void)state;
	struct experiment *e = two_arm_experiment();
	struct experiment_stats s;
	uint64_t rng;
	char errstr[256];
	double previous = 1;
	bool started = false;
	rng = 2024;
	for (uint32_t u = 0; u < 20000; u++) {
		size_t arm = u % 2;
		assert_int_equal(experiment_expose(e, u, arm, errstr, sizeof errstr), 0);
		if (rng_uniform(&rng) < (arm ? 0.15 : 0.10))
			assert_int_equal(experiment_hit(e, u, arm, errstr, sizeof errstr), 0);
		if (u % 100 == 99) {
			experiment_compute(e, &s);
			double p = s.arms[1].msprt_p;
			assert_true(p <= previous);
			assert_true(s.arms[1].av_low <= s.arms[1].av_high);
			/* 0 outside the confidence sequence exactly when p < alpha */
			bool excluded = s.arms[1].av_low > 0 || s.arms[1].av_high < 0;
			assert_int_equal(excluded, p < 0.05);
			started |= p < 1;
			previous = p;
		}
	}
	assert_true(started);
	assert_true(previous < 0.001);
	experiment_compute(e, &s);
	assert_true(s.arms[1].av_low > 0);
	assert_true(s.arms[1].uplift_low > 0); /* true uplift 0.5 */
	assert_true(s.arms[1].uplift_low < 0.5 && s.arms[1].uplift_high > 0.5);
	experiment_free(e);
}

/* Users first..first+n-1 exposed to `arm`, `converted` of them converting,
 * spread evenly (so the running estimate never strays from the final one). */
static void expose_converting(struct experiment *e, uint32_t first, uint32_t n, uint32_t converted,
			      size_t arm)
{
	char errstr[256];
	for (uint32_t u = first; u < first + n; u++) {
		assert_int_equal(experiment_expose(e, u, arm, errstr, sizeof errstr), 0);
		if ((uint64_t)(u - first) * converted % n < converted)
			assert_int_equal(experiment_hit(e, u, arm, errstr, sizeof errstr), 0);
	}
}

/* An arm with no conversion yet: its uplift is -100 % and its interval has
 * a width (it was [-100 %, -100 %], certainty from 40 users and nothing). */
static void test_an_arm_without_conversions_has_an_uplift_interval(void **state)
{
	(void)state;
	struct experiment_stats s;
	struct experiment *e = two_arm_experiment();
	expose_converting(e, 0, 1000, 30, 0);
	expose_converting(e, 1000, 40, 0, 1);
	experiment_compute(e, &s);
	assert_true(fabs(s.arms[1].uplift + 1) < 1e-12);
	/* symmetric about -1, as the delta method's interval is */
	assert_true(fabs(s.arms[1].uplift_low + 1 + (s.arms[1].uplift_high + 1)) < 1e-12);
	/* 40 users at about 1 in 80 (add-a-half) against 3 in 100: a wide interval */
	assert_true(s.arms[1].uplift_high > -0.5);
	assert_true(s.arms[1].uplift_high < 1);
	/* a control that converted every user: no zero width either */
	struct experiment *all = two_arm_experiment();
	expose_converting(all, 0, 30, 30, 0);
	expose_converting(all, 30, 30, 15, 1);
	experiment_compute(all, &s);
	assert_true(s.arms[1].uplift_high - s.arms[1].uplift_low > 0.3);
	experiment_free(all);
	experiment_free(e);
}

/* The verdict an analyst reads: collecting below msprt_min_users, then
 * inconclusive, better or worse by the sequential test, untrusted on an SRM. */
static void test_verdicts(void **state)
{
	(void)state;
	struct experiment_stats s;
	struct experiment *e = two_arm_experiment();
	expose_converting(e, 0, 50, 10, 0);
	expose_converting(e, 50, 50, 40, 1);
	experiment_compute(e, &s);
	assert_int_equal(s.arms[0].verdict, EXPERIMENT_VERDICT_CONTROL);
	assert_int_equal(s.arms[1].verdict, EXPERIMENT_VERDICT_COLLECTING);
	assert_int_equal(s.msprt_min_users, EXPERIMENT_DEFAULT_MSPRT_MIN_USERS);
	assert_true(s.alpha == EXPERIMENT_DEFAULT_ALPHA);
	/* 20% against 80% conversion on 1000 users each: better, with certainty */
	expose_converting(e, 100, 950, 190, 0);
	expose_converting(e, 1050, 950, 760, 1);
	experiment_compute(e, &s);
	assert_true(s.arms[1].msprt_p < 0.05 && s.arms[1].av_low > 0);
	assert_int_equal(s.arms[1].verdict, EXPERIMENT_VERDICT_BETTER);
	char errstr[256];
	char *json = experiment_render_json(e, errstr, sizeof errstr);
	assert_non_null(json);
	assert_non_null(strstr(json, "\"verdict\":\"control\""));
	assert_non_null(strstr(json, "\"verdict\":\"better\""));
	assert_non_null(strstr(json, "\"msprt_min_users\":100,"));
	free(json);
	experiment_free(e);

	/* the other way round: worse */
	e = two_arm_experiment();
	expose_converting(e, 0, 1000, 800, 0);
	expose_converting(e, 1000, 1000, 200, 1);
	experiment_compute(e, &s);
	assert_int_equal(s.arms[1].verdict, EXPERIMENT_VERDICT_WORSE);
	experiment_free(e);

	/* equal rates: inconclusive */
	e = two_arm_experiment();
	expose_converting(e, 0, 1000, 300, 0);
	expose_converting(e, 1000, 1000, 300, 1);
	experiment_compute(e, &s);
	assert_int_equal(s.arms[1].verdict, EXPERIMENT_VERDICT_INCONCLUSIVE);
	assert_string_equal(experiment_verdict_name(s.arms[1].verdict), "inconclusive");
	experiment_free(e);

	/* a broken split overrides everything, even a clear difference */
	e = two_arm_experiment();
	expose_converting(e, 0, 1000, 200, 0);
	expose_converting(e, 1000, 1400, 1120, 1);
	experiment_compute(e, &s);
	assert_true(s.srm_flag);
	assert_int_equal(s.arms[1].verdict, EXPERIMENT_VERDICT_UNTRUSTED);
	experiment_free(e);
}

/*
 * The life cycle removed a user and its index goes to a new user: the new
 * one is a fresh exposure in its own arm, its hits are its own, and what the
 * old one was counted for stays counted, across an export and import (and a
 * version-1 export, from before users could leave, still imports).
 */
static void test_a_forgotten_index_is_a_fresh_user(void **state)
{
	(void)state;
	char errstr[256];
	struct experiment *e = two_arm_experiment();
	struct experiment_stats s;
	assert_int_equal(experiment_expose(e, 7, 0, errstr, sizeof errstr), 0);
	assert_int_equal(experiment_hit(e, 7, 0, errstr, sizeof errstr), 0);
	assert_int_equal(experiment_set_pre(e, 7, 12, errstr, sizeof errstr), 0);
	experiment_forget_user(e, 7);
	experiment_forget_user(e, 1000); /* never seen: nothing */
	assert_false(experiment_exposed(e, 7));
	/* the new user of index 7 hashes to the other arm */
	assert_int_equal(experiment_hit(e, 7, 1, errstr, sizeof errstr), 0); /* not exposed yet */
	assert_int_equal(experiment_expose(e, 7, 1, errstr, sizeof errstr), 0);
	experiment_compute(e, &s);
	assert_int_equal(s.exposure_conflicts, 0);
	assert_int_equal(s.hits_ignored, 1);
	assert_int_equal(s.arms[0].exposed, 1);
	assert_int_equal(s.arms[0].converted, 1);
	assert_int_equal(s.arms[1].exposed, 1);
	assert_int_equal(s.arms[1].converted, 0);
	assert_int_equal(experiment_hit(e, 7, 1, errstr, sizeof errstr), 0);
	experiment_compute(e, &s);
	assert_int_equal(s.arms[1].converted, 1);

	uint8_t *data;
	size_t size;
	assert_int_equal(experiment_export(e, &data, &size, errstr, sizeof errstr), 0);
	struct experiment *copy = two_arm_experiment();
	assert_int_equal(experiment_import(copy, data, size, errstr, sizeof errstr), 0);
	char *before = experiment_render_json(e, errstr, sizeof errstr);
	char *after = experiment_render_json(copy, errstr, sizeof errstr);
	assert_string_equal(before, after);
	free(before);
	free(after);
	free(data);
	experiment_free(copy);

	/* version 1: no departed counts; what it holds imports as before */
	struct experiment *old = two_arm_experiment();
	assert_int_equal(experiment_expose(old, 3, 1, errstr, sizeof errstr), 0);
	assert_int_equal(experiment_export(old, &data, &size, errstr, sizeof errstr), 0);
	uint8_t v1[512];
	/* version, "exp", 2 arms ("control", "treatment": name and share), (from
	 * version 3) the test's settings, period, start, period start, hits
	 * ignored, conflicts; then 48 bytes an arm in version 1, 64 from 2 */
	size_t shares_end = 1 + (2 + 3) + 1 + (2 + 7 + 8) + (2 + 9 + 8), settings = 1 + 8 + 8;
	size_t at = 0, arms_at = shares_end + settings + 4 + 8 + 8 + 8 + 8;
	assert_true(size - 2 * 16 - settings <= sizeof v1);
	memcpy(v1, data, shares_end);
	memcpy(v1 + shares_end, data + shares_end + settings, arms_at - shares_end - settings);
	at = arms_at - settings;
	for (size_t k = 0; k < 2; k++) {
		memcpy(v1 + at, data + arms_at + k * 64, 48);
		at += 48;
	}
	memcpy(v1 + at, data + arms_at + 2 * 64, size - arms_at - 2 * 64);
	at += size - arms_at - 2 * 64;
	v1[0] = 1;
	copy = two_arm_experiment();
	assert_int_equal(experiment_import(copy, v1, at, errstr, sizeof errstr), 0);
	assert_true(experiment_exposed(copy, 3));
	experiment_compute(copy, &s);
	assert_int_equal(s.arms[1].exposed, 1);
	free(data);
	experiment_free(copy);
	experiment_free(old);
	experiment_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config_errors),
	    cmocka_unit_test(test_counters),
	    cmocka_unit_test(test_period_reset),
	    cmocka_unit_test(test_export_import),
	    cmocka_unit_test(test_srm),
	    cmocka_unit_test(test_msprt_monotone),
	    cmocka_unit_test(test_verdicts),
	    cmocka_unit_test(test_an_arm_without_conversions_has_an_uplift_interval),
	    cmocka_unit_test(test_a_new_control_starts_the_sequential_test_again),
	    cmocka_unit_test(test_a_forgotten_index_is_a_fresh_user),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
