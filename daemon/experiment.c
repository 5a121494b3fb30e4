/*
 * experiment: per-variant A/B statistics against a control arm (see
 * experiment.h for the definitions of every figure).
 */
#include "experiment.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "clock.h"
#include "errstr.h"
#include "grow.h"

/* A user's byte: its arm + 1 in the current period (0: not exposed), and
 * whether it converted. */
#define USER_ARM_MASK  0x0fu
#define USER_CONVERTED 0x10u

/* Longest experiment or variant name kept in the export. */
#define NAME_MAX_BYTES 1024

struct arm_state {
	uint64_t exposed, converted, hits;
	/* of those, users who left (experiment_forget_user()): counted, no byte */
	uint64_t departed_exposed, departed_converted;
	double msprt_p, av_low, av_high; /* the sequential test so far */
};

struct experiment {
	char *name;
	size_t arm_count, control;
	char *arm_names[EXPERIMENT_MAX_ARMS];
	double shares[EXPERIMENT_MAX_ARMS]; /* normalised */
	double alpha, srm_alpha, tau2, z;
	uint32_t min_users;

	int64_t start_ms, period_start_ms;
	uint32_t period;
	struct arm_state arms[EXPERIMENT_MAX_ARMS];
	uint64_t hits_ignored, exposure_conflicts;

	uint8_t *users; /* user byte by index, user_len used of user_cap */
	size_t user_cap, user_len;
	float *pre; /* pre-period activity by index, pre_len used of pre_cap;
		     * NULL until first given */
	size_t pre_cap, pre_len;
	bool has_pre;
};

/* ---- special functions (libm has erfc and lgamma, not their inverses) ---- */

/*
 * Phi^-1(p) for 0 < p < 1: Acklam's rational approximation (relative error
 * 1.15e-9) refined by one Halley step on erfc, giving full double precision.
 */
static double normal_quantile(double p)
{
	static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
				   -2.759285104469687e+02, 1.383577518672690e+02,
				   -3.066479806614716e+01, 2.506628277459239e+00};
	static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
				   -1.556989798598866e+02, 6.680131188771972e+01,
				   -1.328068155288572e+01};
	static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
				   -2.400758277161838e+00, -2.549732539343734e+00,
				   4.374664141464968e+00,  2.938163982698783e+00};
	static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
				   2.445134137142996e+00, 3.754408661907416e+00};
	const double p_low = 0.02425;
	double x;
	if (p < p_low) {
		double q = sqrt(-2 * log(p));
		x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
		    ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
	} else if (p <= 1 - p_low) {
		double q = p - 0.5, r = q * q;
		x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
		    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
	} else {
		double q = sqrt(-2 * log(1 - p));
		x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
		    ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
	}
	double e = 0.5 * erfc(-x / M_SQRT2) - p;
	double u = e * sqrt(2 * M_PI) * exp(x * x / 2);
	return x - u / (1 + x * u / 2);
}

/*
 * Regularised upper incomplete gamma Q(a, x): the series for P when
 * x < a + 1, else Lentz's continued fraction (Numerical Recipes 6.2).
 */
static double gamma_q(double a, double x)
{
	if (x <= 0)
		return 1;
	double log_front = -x + a * log(x) - lgamma(a);
	if (x < a + 1) {
		double term = 1 / a, sum = term;
		for (int n = 1; n < 1000; n++) {
			term *= x / (a + n);
			sum += term;
			if (fabs(term) < fabs(sum) * 1e-16)
				break;
		}
		return fmax(0, 1 - sum * exp(log_front));
	}
	double b = x + 1 - a, c = 1 / DBL_MIN, d = 1 / b, h = d;
	for (int i = 1; i < 1000; i++) {
		double an = -i * (i - a);
		b += 2;
		d = an * d + b;
		if (fabs(d) < DBL_MIN)
			d = DBL_MIN;
		c = b + an / c;
		if (fabs(c) < DBL_MIN)
			c = DBL_MIN;
		d = 1 / d;
		double delta = d * c;
		h *= delta;
		if (fabs(delta - 1) < 1e-16)
			break;
	}
	return exp(log_front) * h;
}

/* ---- configuration ---- */

struct experiment_config experiment_config_default(void)
{
	return (struct experiment_config){
	    .name = "experiment",
	    .alpha = EXPERIMENT_DEFAULT_ALPHA,
	    .srm_alpha = EXPERIMENT_DEFAULT_SRM_ALPHA,
	    .msprt_tau2 = EXPERIMENT_DEFAULT_MSPRT_TAU2,
	    .msprt_min_users = EXPERIMENT_DEFAULT_MSPRT_MIN_USERS,
	};
}

static void arms_reset(struct experiment *e)
{
	memset(e->arms, 0, sizeof e->arms);
	for (size_t k = 0; k < e->arm_count; k++) {
		e->arms[k].msprt_p = 1;
		e->arms[k].av_low = -1; /* a difference of two proportions */
		e->arms[k].av_high = 1;
	}
	e->hits_ignored = 0;
	e->exposure_conflicts = 0;
}

struct experiment *experiment_new(const struct experiment_config *config, char *errstr,
				  size_t errstr_size)
{
	if (config->arm_count < 2 || config->arm_count > EXPERIMENT_MAX_ARMS) {
		set_errstr(errstr, errstr_size, "experiment: needs 2 to %d variants, got %zu",
			   EXPERIMENT_MAX_ARMS, config->arm_count);
		return NULL;
	}
	if (config->control_arm >= config->arm_count) {
		set_errstr(errstr, errstr_size, "experiment: control arm %zu of %zu variants",
			   config->control_arm, config->arm_count);
		return NULL;
	}
	if (!(config->alpha > 0 && config->alpha < 1) ||
	    !(config->srm_alpha > 0 && config->srm_alpha < 1)) {
		set_errstr(errstr, errstr_size,
			   "experiment: alpha and srm_alpha must be in (0, 1), got %g and %g",
			   config->alpha, config->srm_alpha);
		return NULL;
	}
	if (!(config->msprt_tau2 > 0) || !isfinite(config->msprt_tau2)) {
		set_errstr(errstr, errstr_size, "experiment: msprt_tau2 must be > 0, got %g",
			   config->msprt_tau2);
		return NULL;
	}
	double total = 0;
	for (size_t k = 0; k < config->arm_count; k++) {
		const struct experiment_arm_config *arm = &config->arms[k];
		if (arm->name == NULL || arm->name[0] == '\0' ||
		    strlen(arm->name) > NAME_MAX_BYTES) {
			set_errstr(errstr, errstr_size,
				   "experiment: variant %zu: name must have 1 to %d bytes", k,
				   NAME_MAX_BYTES);
			return NULL;
		}
		for (size_t j = 0; j < k; j++) {
			if (strcmp(config->arms[j].name, arm->name) == 0) {
				set_errstr(errstr, errstr_size,
					   "experiment: variant \"%s\" named twice", arm->name);
				return NULL;
			}
		}
		if (!(arm->share > 0) || !isfinite(arm->share)) {
			set_errstr(errstr, errstr_size,
				   "experiment: variant \"%s\": share must be > 0, got %g",
				   arm->name, arm->share);
			return NULL;
		}
		total += arm->share;
	}
	const char *name = config->name ? config->name : "";
	if (strlen(name) > NAME_MAX_BYTES) {
		set_errstr(errstr, errstr_size, "experiment: name longer than %d bytes",
			   NAME_MAX_BYTES);
		return NULL;
	}

	struct experiment *e = calloc(1, sizeof *e);
	if (e == NULL)
		goto out_oom;
	e->name = strdup(name);
	if (e->name == NULL)
		goto out_free;
	e->arm_count = config->arm_count;
	e->control = config->control_arm;
	for (size_t k = 0; k < config->arm_count; k++) {
		e->arm_names[k] = strdup(config->arms[k].name);
		if (e->arm_names[k] == NULL)
			goto out_free;
		e->shares[k] = config->arms[k].share / total;
	}
	e->alpha = config->alpha;
	e->srm_alpha = config->srm_alpha;
	e->tau2 = config->msprt_tau2;
	e->z = normal_quantile(1 - config->alpha / 2);
	e->min_users = config->msprt_min_users;
	e->start_ms = config->start_ms;
	e->period_start_ms = config->start_ms;
	arms_reset(e);
	return e;

out_free:
	experiment_free(e);
out_oom:
	set_errstr(errstr, errstr_size, "experiment: out of memory");
	return NULL;
}

void experiment_free(struct experiment *experiment)
{
	if (experiment == NULL)
		return;
	for (size_t k = 0; k < EXPERIMENT_MAX_ARMS; k++)
		free(experiment->arm_names[k]);
	free(experiment->name);
	free(experiment->users);
	free(experiment->pre);
	free(experiment);
}

/* ---- counting ---- */

/*
 * One step of the mSPRT of arm k against the control, run whenever either
 * arm's exposed or converted count changed (see experiment.h).
 */
static void msprt_update(struct experiment *e, size_t k)
{
	const struct arm_state *c = &e->arms[e->control];
	struct arm_state *t = &e->arms[k];
	if (t->exposed < e->min_users || c->exposed < e->min_users || t->exposed == 0 ||
	    c->exposed == 0)
		return;
	double p_t = (double)t->converted / (double)t->exposed;
	double p_c = (double)c->converted / (double)c->exposed;
	double v = p_t * (1 - p_t) / (double)t->exposed + p_c * (1 - p_c) / (double)c->exposed;
	if (!(v > 0))
		return;
	double d = p_t - p_c, tau2 = e->tau2;
	double log_lambda = 0.5 * log(v / (v + tau2)) + tau2 * d * d / (2 * v * (v + tau2));
	double p = log_lambda > 0 ? exp(-log_lambda) : 1;
	if (p < t->msprt_p)
		t->msprt_p = p;
	double half = sqrt(v * (v + tau2) / tau2 * (2 * log(1 / e->alpha) + log((v + tau2) / v)));
	if (d - half > t->av_low)
		t->av_low = d - half;
	if (d + half < t->av_high)
		t->av_high = d + half;
}

static void counts_changed(struct experiment *e, size_t arm)
{
	if (arm != e->control) {
		msprt_update(e, arm);
		return;
	}
	for (size_t k = 0; k < e->arm_count; k++)
		if (k != e->control)
			msprt_update(e, k);
}

static int check_arm(const struct experiment *e, size_t arm, char *errstr, size_t errstr_size)
{
	if (arm < e->arm_count)
		return 0;
	set_errstr(errstr, errstr_size, "experiment %s: variant %zu of %zu", e->name, arm,
		   e->arm_count);
	return -1;
}

int experiment_expose(struct experiment *experiment, uint32_t user_index, size_t arm, char *errstr,
		      size_t errstr_size)
{
	struct experiment *e = experiment;
	if (check_arm(e, arm, errstr, errstr_size) != 0)
		return -1;
	size_t needed = (size_t)user_index + 1;
	if (grow_array(&e->users, &e->user_cap, needed, 1, 4096) != 0) {
		set_errstr(errstr, errstr_size, "experiment %s: out of memory for user %u", e->name,
			   user_index);
		return -1;
	}
	if (needed > e->user_len)
		e->user_len = needed;
	uint8_t *user = &e->users[user_index];
	unsigned current = *user & USER_ARM_MASK;
	if (current == arm + 1)
		return 0;
	if (current != 0) {
		e->exposure_conflicts++;
		return 0;
	}
	*user = (uint8_t)((*user & ~USER_ARM_MASK) | (arm + 1));
	e->arms[arm].exposed++;
	counts_changed(e, arm);
	return 0;
}

int experiment_hit(struct experiment *experiment, uint32_t user_index, size_t arm, char *errstr,
		   size_t errstr_size)
{
	struct experiment *e = experiment;
	if (check_arm(e, arm, errstr, errstr_size) != 0)
		return -1;
	if (user_index >= e->user_len || (e->users[user_index] & USER_ARM_MASK) != arm + 1) {
		e->hits_ignored++;
		return 0;
	}
	e->arms[arm].hits++;
	if (e->users[user_index] & USER_CONVERTED)
		return 0;
	e->users[user_index] |= USER_CONVERTED;
	e->arms[arm].converted++;
	counts_changed(e, arm);
	return 0;
}

void experiment_forget_user(struct experiment *experiment, uint32_t user_index)
{
	struct experiment *e = experiment;
	if (user_index < e->user_len) {
		unsigned arm = e->users[user_index] & USER_ARM_MASK;
		if (arm != 0) {
			e->arms[arm - 1].departed_exposed++;
			if (e->users[user_index] & USER_CONVERTED)
				e->arms[arm - 1].departed_converted++;
		}
		e->users[user_index] = 0;
	}
	if (user_index < e->pre_len)
		e->pre[user_index] = 0;
}

bool experiment_exposed(const struct experiment *e, uint32_t user_index)
{
	return user_index < e->user_len && (e->users[user_index] & USER_ARM_MASK) != 0;
}

int experiment_set_pre(struct experiment *experiment, uint32_t user_index, double activity,
		       char *errstr, size_t errstr_size)
{
	struct experiment *e = experiment;
	if (!isfinite(activity) || fabs(activity) > FLT_MAX) {
		set_errstr(errstr, errstr_size,
			   "experiment %s: user %u: pre-period activity %g is not a finite float",
			   e->name, user_index, activity);
		return -1;
	}
	if (grow_array(&e->pre, &e->pre_cap, (size_t)user_index + 1, sizeof *e->pre, 4096) != 0) {
		set_errstr(errstr, errstr_size, "experiment %s: out of memory for user %u", e->name,
			   user_index);
		return -1;
	}
	if ((size_t)user_index + 1 > e->pre_len)
		e->pre_len = (size_t)user_index + 1;
	e->pre[user_index] = (float)activity;
	e->has_pre = true;
	return 0;
}

void experiment_reset_period(struct experiment *experiment, int64_t now_ms)
{
	struct experiment *e = experiment;
	e->period++;
	e->period_start_ms = now_ms;
	arms_reset(e);
	if (e->users != NULL)
		memset(e->users, 0, e->user_cap);
	e->user_len = 0;
}

uint32_t experiment_period(const struct experiment *experiment)
{
	return experiment->period;
}

/* ---- statistics ---- */

static void wilson(double converted, double n, double z, double *low, double *high)
{
	if (n <= 0) {
		*low = *high = NAN;
		return;
	}
	double p = converted / n, z2 = z * z;
	double denom = 1 + z2 / n;
	double centre = (p + z2 / (2 * n)) / denom;
	double half = z / denom * sqrt(p * (1 - p) / n + z2 / (4 * n * n));
	*low = fmax(0, centre - half);
	*high = fmin(1, centre + half);
}

/*
 * The variance of the mean of n Bernoulli trials with x successes. At x = 0
 * or x = n the plug-in p(1 - p)/n is 0, and an uplift interval built on it
 * has no width: "-100 % [-100 %, -100 %]" from 40 users and no conversion.
 * There p is taken as (x + 1/2)/(n + 1), the add-a-half adjustment, which
 * leaves every other count as it is.
 */
static double rate_variance(uint64_t x, double n)
{
	double p = (double)x / n;
	if (x == 0 || (double)x >= n)
		p = ((double)x + 0.5) / (n + 1);
	return p * (1 - p) / n;
}

/*
 * Relative uplift m_t / m_c - 1 of two independent means with variances of
 * the mean var_t and var_c, and its delta-method interval.
 */
static void ratio_uplift(double m_t, double var_t, double m_c, double var_c, double z,
			 double *uplift, double *low, double *high)
{
	*uplift = *low = *high = NAN;
	if (!(m_c > 0) || !isfinite(m_t) || !isfinite(var_t) || !isfinite(var_c))
		return;
	double r = m_t / m_c;
	*uplift = r - 1;
	double rel = (m_t != 0 ? var_t / (m_t * m_t) : 0) + var_c / (m_c * m_c);
	double se = fabs(r) * sqrt(rel);
	if (m_t == 0) /* the delta method's first-order term for r near 0 */
		se = sqrt(var_t) / m_c;
	*low = *uplift - z * se;
	*high = *uplift + z * se;
}

/* Per-arm sums of CUPED's moments, centred on the arm's means. */
struct moments {
	double n, mean_x, mean_y, sxx, sxy, syy;
};

static void compute_cuped(const struct experiment *e, struct experiment_stats *s)
{
	struct moments m[EXPERIMENT_MAX_ARMS] = {{0}};
	size_t users = e->user_len;
	double total_n = 0, total_x = 0, total_y = 0;
	for (size_t u = 0; u < users; u++) {
		unsigned arm = e->users[u] & USER_ARM_MASK;
		if (arm == 0)
			continue;
		double x = u < e->pre_len ? e->pre[u] : 0;
		double y = (e->users[u] & USER_CONVERTED) ? 1 : 0;
		m[arm - 1].n++;
		m[arm - 1].mean_x += x;
		m[arm - 1].mean_y += y;
	}
	for (size_t k = 0; k < e->arm_count; k++) {
		total_n += m[k].n;
		total_x += m[k].mean_x;
		total_y += m[k].mean_y;
		if (m[k].n > 0) {
			m[k].mean_x /= m[k].n;
			m[k].mean_y /= m[k].n;
		}
	}
	if (total_n < 2)
		return;
	double mean_x = total_x / total_n, mean_y = total_y / total_n;
	double pooled_xx = 0, pooled_xy = 0;
	for (size_t u = 0; u < users; u++) {
		unsigned arm = e->users[u] & USER_ARM_MASK;
		if (arm == 0)
			continue;
		double x = u < e->pre_len ? e->pre[u] : 0;
		double y = (e->users[u] & USER_CONVERTED) ? 1 : 0;
		struct moments *a = &m[arm - 1];
		double dx = x - a->mean_x, dy = y - a->mean_y;
		a->sxx += dx * dx;
		a->sxy += dx * dy;
		a->syy += dy * dy;
		pooled_xx += (x - mean_x) * (x - mean_x);
		pooled_xy += (x - mean_x) * (y - mean_y);
	}
	if (!(pooled_xx > 0))
		return; /* no variation in the covariate: nothing to adjust with */
	double theta = pooled_xy / pooled_xx;
	s->cuped = true;
	s->cuped_theta = theta;

	double adj_mean[EXPERIMENT_MAX_ARMS], adj_var[EXPERIMENT_MAX_ARMS];
	for (size_t k = 0; k < e->arm_count; k++) {
		adj_mean[k] = adj_var[k] = NAN;
		if (m[k].n < 2)
			continue;
		double var_y = m[k].syy / (m[k].n - 1);
		double var_adj =
		    (m[k].syy - 2 * theta * m[k].sxy + theta * theta * m[k].sxx) / (m[k].n - 1);
		adj_mean[k] = m[k].mean_y - theta * (m[k].mean_x - mean_x);
		adj_var[k] = fmax(0, var_adj) / m[k].n;
		struct experiment_arm_stats *a = &s->arms[k];
		a->cuped = true;
		a->cuped_rate = adj_mean[k];
		a->cuped_variance_reduction = var_y > 0 ? 1 - var_adj / var_y : NAN;
	}
	size_t c = e->control;
	for (size_t k = 0; k < e->arm_count; k++) {
		if (k == c || !s->arms[k].cuped)
			continue;
		ratio_uplift(adj_mean[k], adj_var[k], adj_mean[c], adj_var[c], e->z,
			     &s->arms[k].cuped_uplift, &s->arms[k].cuped_uplift_low,
			     &s->arms[k].cuped_uplift_high);
	}
}

const char *experiment_verdict_name(enum experiment_verdict verdict)
{
	switch (verdict) {
	case EXPERIMENT_VERDICT_CONTROL: return "control";
	case EXPERIMENT_VERDICT_UNTRUSTED: return "untrusted";
	case EXPERIMENT_VERDICT_COLLECTING: return "collecting";
	case EXPERIMENT_VERDICT_INCONCLUSIVE: return "inconclusive";
	case EXPERIMENT_VERDICT_BETTER: return "better";
	case EXPERIMENT_VERDICT_WORSE: return "worse";
	}
	return "inconclusive";
}

/* The verdict of experiment.h's enum experiment_verdict, its order of precedence. */
static enum experiment_verdict verdict(const struct experiment *e, const struct experiment_stats *s,
				       size_t k)
{
	const struct experiment_arm_stats *a = &s->arms[k];
	if (a->control)
		return EXPERIMENT_VERDICT_CONTROL;
	if (s->srm_flag)
		return EXPERIMENT_VERDICT_UNTRUSTED;
	if (a->exposed < e->min_users || s->arms[e->control].exposed < e->min_users)
		return EXPERIMENT_VERDICT_COLLECTING;
	if (a->msprt_p < e->alpha && a->av_low > 0)
		return EXPERIMENT_VERDICT_BETTER;
	if (a->msprt_p < e->alpha && a->av_high < 0)
		return EXPERIMENT_VERDICT_WORSE;
	return EXPERIMENT_VERDICT_INCONCLUSIVE;
}

void experiment_compute(const struct experiment *experiment, struct experiment_stats *s)
{
	const struct experiment *e = experiment;
	memset(s, 0, sizeof *s);
	s->period = e->period;
	s->start_ms = e->start_ms;
	s->period_start_ms = e->period_start_ms;
	s->hits_ignored = e->hits_ignored;
	s->exposure_conflicts = e->exposure_conflicts;
	s->arm_count = e->arm_count;
	s->cuped_theta = NAN;
	s->alpha = e->alpha;
	s->msprt_min_users = e->min_users;

	double total = 0;
	for (size_t k = 0; k < e->arm_count; k++)
		total += (double)e->arms[k].exposed;
	double chi2 = 0;
	for (size_t k = 0; k < e->arm_count; k++) {
		const struct arm_state *arm = &e->arms[k];
		struct experiment_arm_stats *a = &s->arms[k];
		a->name = e->arm_names[k];
		a->control = k == e->control;
		a->share = e->shares[k];
		a->exposed = arm->exposed;
		a->converted = arm->converted;
		a->hits = arm->hits;
		double n = (double)arm->exposed;
		a->rate = n > 0 ? (double)arm->converted / n : NAN;
		wilson((double)arm->converted, n, e->z, &a->ci_low, &a->ci_high);
		a->uplift = a->uplift_low = a->uplift_high = NAN;
		a->msprt_p = a->av_low = a->av_high = NAN;
		a->cuped_rate = a->cuped_uplift = a->cuped_uplift_low = a->cuped_uplift_high = NAN;
		a->cuped_variance_reduction = NAN;
		if (!a->control) {
			a->msprt_p = arm->msprt_p;
			a->av_low = arm->av_low;
			a->av_high = arm->av_high;
		}
		if (total > 0) {
			double expected = total * e->shares[k];
			chi2 += (n - expected) * (n - expected) / expected;
		}
	}
	const struct arm_state *control = &e->arms[e->control];
	double n_c = (double)control->exposed;
	for (size_t k = 0; k < e->arm_count; k++) {
		struct experiment_arm_stats *a = &s->arms[k];
		double n_t = (double)a->exposed;
		if (a->control || n_t == 0 || n_c == 0)
			continue;
		ratio_uplift(a->rate, rate_variance(a->converted, n_t), s->arms[e->control].rate,
			     rate_variance(control->converted, n_c), e->z, &a->uplift,
			     &a->uplift_low, &a->uplift_high);
	}
	if (total > 0) {
		s->srm_chi2 = chi2;
		s->srm_p = gamma_q((double)(e->arm_count - 1) / 2, chi2 / 2);
		s->srm_flag = s->srm_p < e->srm_alpha;
	} else {
		s->srm_chi2 = NAN;
		s->srm_p = NAN;
	}
	if (e->has_pre)
		compute_cuped(e, s);
	for (size_t k = 0; k < e->arm_count; k++)
		s->arms[k].verdict = verdict(e, s, k);
}

/* ---- persistence ----
 *
 * Layout (integers little-endian, doubles and floats as their IEEE bits):
 *   u8  version (EXPERIMENT_FORMAT_VERSION)
 *   u16 name length, name bytes
 *   u8  arm count; per arm: u16 name length, name bytes, f64 normalised share
 *   (version 3) u8 control arm, f64 alpha, f64 msprt_tau2: the sequential test's
 *            settings, whose running minimum and interval are valid for them only
 *   u32 period, i64 start_ms, i64 period_start_ms
 *   u64 hits_ignored, u64 exposure_conflicts
 *   per arm: u64 exposed, converted, hits; f64 msprt_p, av_low, av_high;
 *            (version 2) u64 departed_exposed, departed_converted
 *   u32 user count U, u8 has_pre
 *   U user bytes (arm + 1 in bits 0-3, converted in bit 4)
 *   if has_pre: u32 pre-entry count P, P f32 pre-period activities
 */

struct writer {
	uint8_t *data;
	size_t size, cap;
	bool failed;
};

static void put_bytes(struct writer *w, const void *bytes, size_t n)
{
	if (w->failed)
		return;
	if (grow_array(&w->data, &w->cap, w->size + n, 1, 256) != 0) {
		w->failed = true;
		return;
	}
	memcpy(w->data + w->size, bytes, n);
	w->size += n;
}

static void put_uint(struct writer *w, uint64_t v, size_t bytes)
{
	uint8_t b[8];
	for (size_t i = 0; i < bytes; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	put_bytes(w, b, bytes);
}

static void put_double(struct writer *w, double v)
{
	uint64_t bits;
	memcpy(&bits, &v, sizeof bits);
	put_uint(w, bits, 8);
}

static void put_string(struct writer *w, const char *s)
{
	size_t n = strlen(s);
	put_uint(w, n, 2);
	put_bytes(w, s, n);
}

int experiment_export(const struct experiment *experiment, uint8_t **out, size_t *out_size,
		      char *errstr, size_t errstr_size)
{
	const struct experiment *e = experiment;
	struct writer w = {0};
	if (e->user_len > UINT32_MAX || e->pre_len > UINT32_MAX) {
		set_errstr(errstr, errstr_size, "experiment %s: too many users to export", e->name);
		return -1;
	}
	put_uint(&w, EXPERIMENT_FORMAT_VERSION, 1);
	put_string(&w, e->name);
	put_uint(&w, e->arm_count, 1);
	for (size_t k = 0; k < e->arm_count; k++) {
		put_string(&w, e->arm_names[k]);
		put_double(&w, e->shares[k]);
	}
	put_uint(&w, e->control, 1);
	put_double(&w, e->alpha);
	put_double(&w, e->tau2);
	put_uint(&w, e->period, 4);
	put_uint(&w, (uint64_t)e->start_ms, 8);
	put_uint(&w, (uint64_t)e->period_start_ms, 8);
	put_uint(&w, e->hits_ignored, 8);
	put_uint(&w, e->exposure_conflicts, 8);
	for (size_t k = 0; k < e->arm_count; k++) {
		const struct arm_state *a = &e->arms[k];
		put_uint(&w, a->exposed, 8);
		put_uint(&w, a->converted, 8);
		put_uint(&w, a->hits, 8);
		put_double(&w, a->msprt_p);
		put_double(&w, a->av_low);
		put_double(&w, a->av_high);
		put_uint(&w, a->departed_exposed, 8);
		put_uint(&w, a->departed_converted, 8);
	}
	put_uint(&w, e->user_len, 4);
	put_uint(&w, e->has_pre, 1);
	put_bytes(&w, e->users, e->user_len);
	if (e->has_pre) {
		put_uint(&w, e->pre_len, 4);
		for (size_t u = 0; u < e->pre_len; u++) {
			uint32_t bits;
			memcpy(&bits, &e->pre[u], sizeof bits);
			put_uint(&w, bits, 4);
		}
	}
	if (w.failed) {
		free(w.data);
		set_errstr(errstr, errstr_size, "experiment %s: out of memory exporting", e->name);
		return -1;
	}
	*out = w.data;
	*out_size = w.size;
	return 0;
}

struct reader {
	const uint8_t *data;
	size_t size, pos;
	bool failed;
};

static const uint8_t *get_bytes(struct reader *r, size_t n)
{
	if (r->failed || r->size - r->pos < n) {
		r->failed = true;
		return NULL;
	}
	const uint8_t *p = r->data + r->pos;
	r->pos += n;
	return p;
}

static uint64_t get_uint(struct reader *r, size_t bytes)
{
	const uint8_t *b = get_bytes(r, bytes);
	uint64_t v = 0;
	for (size_t i = 0; b != NULL && i < bytes; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

static double get_double(struct reader *r)
{
	uint64_t bits = get_uint(r, 8);
	double v;
	memcpy(&v, &bits, sizeof v);
	return v;
}

/* Whether the next string equals s. */
static bool get_string_is(struct reader *r, const char *s)
{
	size_t n = get_uint(r, 2);
	const uint8_t *b = get_bytes(r, n);
	return b != NULL && n == strlen(s) && memcmp(b, s, n) == 0;
}

int experiment_import(struct experiment *experiment, const uint8_t *data, size_t size, char *errstr,
		      size_t errstr_size)
{
	struct experiment *e = experiment;
	struct reader r = {.data = data, .size = size};
	struct arm_state arms[EXPERIMENT_MAX_ARMS];
	uint8_t *users = NULL;
	float *pre = NULL;
	bool shares_changed = false, test_changed = false;

	unsigned version = (unsigned)get_uint(&r, 1);
	if (r.failed || version < 1 || version > EXPERIMENT_FORMAT_VERSION) {
		set_errstr(errstr, errstr_size, "experiment %s: stored format version %u, known %d",
			   e->name, version, EXPERIMENT_FORMAT_VERSION);
		return -1;
	}
	if (!get_string_is(&r, e->name) || get_uint(&r, 1) != e->arm_count)
		goto out_different;
	for (size_t k = 0; k < e->arm_count; k++) {
		if (!get_string_is(&r, e->arm_names[k]))
			goto out_different;
		if (fabs(get_double(&r) - e->shares[k]) > 1e-12)
			shares_changed = true;
	}
	if (version >= 3) {
		size_t control = get_uint(&r, 1);
		double alpha = get_double(&r), tau2 = get_double(&r);
		test_changed = control != e->control || alpha != e->alpha || tau2 != e->tau2;
	}
	uint32_t period = (uint32_t)get_uint(&r, 4);
	int64_t start_ms = (int64_t)get_uint(&r, 8);
	int64_t period_start_ms = (int64_t)get_uint(&r, 8);
	uint64_t hits_ignored = get_uint(&r, 8);
	uint64_t exposure_conflicts = get_uint(&r, 8);
	memset(arms, 0, sizeof arms);
	for (size_t k = 0; k < e->arm_count; k++) {
		arms[k].exposed = get_uint(&r, 8);
		arms[k].converted = get_uint(&r, 8);
		arms[k].hits = get_uint(&r, 8);
		arms[k].msprt_p = get_double(&r);
		arms[k].av_low = get_double(&r);
		arms[k].av_high = get_double(&r);
		if (version >= 2) {
			arms[k].departed_exposed = get_uint(&r, 8);
			arms[k].departed_converted = get_uint(&r, 8);
		}
	}
	size_t user_len = get_uint(&r, 4);
	unsigned has_pre = (unsigned)get_uint(&r, 1);
	const uint8_t *user_bytes = get_bytes(&r, user_len);
	if (r.failed)
		goto out_truncated;
	if (has_pre > 1)
		goto out_corrupt;

	/* The per-user flags must add up to the counters. */
	uint64_t exposed[EXPERIMENT_MAX_ARMS] = {0}, converted[EXPERIMENT_MAX_ARMS] = {0};
	for (size_t u = 0; u < user_len; u++) {
		unsigned arm = user_bytes[u] & USER_ARM_MASK;
		if (arm > e->arm_count || (user_bytes[u] & ~(USER_ARM_MASK | USER_CONVERTED)) ||
		    (arm == 0 && (user_bytes[u] & USER_CONVERTED)))
			goto out_corrupt;
		if (arm == 0)
			continue;
		exposed[arm - 1]++;
		converted[arm - 1] += (user_bytes[u] & USER_CONVERTED) != 0;
	}
	for (size_t k = 0; k < e->arm_count; k++) {
		if (exposed[k] + arms[k].departed_exposed != arms[k].exposed ||
		    converted[k] + arms[k].departed_converted != arms[k].converted ||
		    arms[k].departed_converted > arms[k].departed_exposed ||
		    arms[k].hits < arms[k].converted || !(arms[k].msprt_p >= 0) ||
		    !(arms[k].msprt_p <= 1) || !(arms[k].av_low >= -1) || !(arms[k].av_high <= 1))
			goto out_corrupt;
	}
	size_t pre_len = 0;
	if (has_pre) {
		pre_len = get_uint(&r, 4);
		if (r.failed || (r.size - r.pos) / 4 < pre_len)
			goto out_truncated;
	}
	if (r.pos + 4 * pre_len != r.size)
		goto out_corrupt;

	if (user_len > 0) {
		users = calloc(user_len, 1);
		if (users == NULL)
			goto out_oom;
		memcpy(users, user_bytes, user_len);
	}
	if (pre_len > 0) {
		pre = malloc(pre_len * sizeof *pre);
		if (pre == NULL)
			goto out_oom;
		for (size_t u = 0; u < pre_len; u++) {
			uint32_t bits = (uint32_t)get_uint(&r, 4);
			memcpy(&pre[u], &bits, sizeof bits);
			if (!isfinite(pre[u]))
				goto out_corrupt;
		}
	}

	free(e->users);
	free(e->pre);
	e->users = users;
	e->user_cap = e->user_len = user_len;
	e->pre = pre;
	e->pre_cap = e->pre_len = pre_len;
	e->has_pre = has_pre != 0;
	e->period = period;
	e->start_ms = start_ms;
	e->period_start_ms = period_start_ms;
	e->hits_ignored = hits_ignored;
	e->exposure_conflicts = exposure_conflicts;
	memcpy(e->arms, arms, sizeof arms);
	if (shares_changed) {
		experiment_reset_period(e, clock_wall_ms());
		return 0;
	}
	if (test_changed) {
		/* another control, alpha or tau2: a new sequential test, from the
		 * counts as they stand (the old minimum and interval were another
		 * test's); the counts themselves stay */
		for (size_t k = 0; k < e->arm_count; k++) {
			e->arms[k].msprt_p = 1;
			e->arms[k].av_low = -1;
			e->arms[k].av_high = 1;
		}
		for (size_t k = 0; k < e->arm_count; k++)
			if (k != e->control)
				msprt_update(e, k);
		return 1;
	}
	return 0;

out_different:
	if (r.failed)
		goto out_truncated;
	set_errstr(errstr, errstr_size,
		   "experiment %s: the stored experiment has another name or other variants",
		   e->name);
	return -1;
out_truncated:
	set_errstr(errstr, errstr_size, "experiment %s: stored state truncated at byte %zu of %zu",
		   e->name, r.pos, size);
	return -1;
out_corrupt:
	free(users);
	free(pre);
	set_errstr(
	    errstr, errstr_size,
	    "experiment %s: stored state inconsistent (counters and per-user flags disagree)",
	    e->name);
	return -1;
out_oom:
	free(users);
	free(pre);
	set_errstr(errstr, errstr_size, "experiment %s: out of memory importing %zu users", e->name,
		   user_len);
	return -1;
}

/* ---- JSON ---- */

/* A number, or null when it is not finite (JSON has no NaN). */
static json_t *json_number(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static json_t *json_count(uint64_t v)
{
	return json_integer((json_int_t)v);
}

char *experiment_render_json(const struct experiment *experiment, char *errstr, size_t errstr_size)
{
	const struct experiment *e = experiment;
	struct experiment_stats *s = malloc(sizeof *s);
	char *text = NULL;
	if (s == NULL)
		goto out_oom;
	experiment_compute(e, s);

	json_t *root = json_object();
	json_t *variants = json_array();
	json_t *methods = json_pack(
	    "{s:s, s:s, s:s, s:s, s:s}", "rate_interval", "wilson", "uplift_interval",
	    "delta method on the ratio of two proportions", "sequential",
	    "mSPRT, normal mixture on the difference of proportions (Johari et al.)", "srm",
	    "chi-square goodness of fit", "cuped", "theta pooled over all exposed users");
	if (root == NULL || variants == NULL || methods == NULL) {
		json_decref(root);
		json_decref(variants);
		json_decref(methods);
		goto out_oom;
	}
	int failed = 0;
	failed |= json_object_set_new(root, "experiment", json_string(e->name));
	failed |= json_object_set_new(root, "period", json_integer(s->period));
	failed |= json_object_set_new(root, "start_ms", json_integer(s->start_ms));
	failed |= json_object_set_new(root, "period_start_ms", json_integer(s->period_start_ms));
	failed |= json_object_set_new(root, "alpha", json_real(e->alpha));
	failed |= json_object_set_new(root, "msprt_tau2", json_real(e->tau2));
	failed |= json_object_set_new(root, "methods", methods);
	failed |= json_object_set_new(root, "srm_chi2", json_number(s->srm_chi2));
	failed |= json_object_set_new(root, "srm_p", json_number(s->srm_p));
	failed |= json_object_set_new(root, "srm_flag", json_boolean(s->srm_flag));
	failed |= json_object_set_new(root, "cuped_theta", json_number(s->cuped_theta));
	failed |= json_object_set_new(root, "hits_ignored", json_count(s->hits_ignored));
	failed |=
	    json_object_set_new(root, "exposure_conflicts", json_count(s->exposure_conflicts));
	failed |= json_object_set_new(root, "variants", variants);
	for (size_t k = 0; k < s->arm_count; k++) {
		const struct experiment_arm_stats *a = &s->arms[k];
		json_t *v = json_object();
		failed |= json_array_append_new(variants, v);
		if (v == NULL)
			break;
		failed |= json_object_set_new(v, "name", json_string(a->name));
		failed |= json_object_set_new(v, "control", json_boolean(a->control));
		failed |= json_object_set_new(v, "share", json_real(a->share));
		failed |= json_object_set_new(v, "exposed", json_count(a->exposed));
		failed |= json_object_set_new(v, "converted", json_count(a->converted));
		failed |= json_object_set_new(v, "hits", json_count(a->hits));
		failed |= json_object_set_new(v, "rate", json_number(a->rate));
		failed |= json_object_set_new(v, "ci_low", json_number(a->ci_low));
		failed |= json_object_set_new(v, "ci_high", json_number(a->ci_high));
		failed |= json_object_set_new(v, "uplift", json_number(a->uplift));
		failed |= json_object_set_new(v, "uplift_low", json_number(a->uplift_low));
		failed |= json_object_set_new(v, "uplift_high", json_number(a->uplift_high));
		failed |= json_object_set_new(v, "msprt_p", json_number(a->msprt_p));
		failed |= json_object_set_new(v, "av_low", json_number(a->av_low));
		failed |= json_object_set_new(v, "av_high", json_number(a->av_high));
		failed |= json_object_set_new(v, "srm_p", json_number(s->srm_p));
		failed |= json_object_set_new(v, "srm_flag", json_boolean(s->srm_flag));
		failed |= json_object_set_new(v, "cuped", json_boolean(a->cuped));
		failed |= json_object_set_new(v, "cuped_rate", json_number(a->cuped_rate));
		failed |= json_object_set_new(v, "cuped_uplift", json_number(a->cuped_uplift));
		failed |=
		    json_object_set_new(v, "cuped_uplift_low", json_number(a->cuped_uplift_low));
		failed |=
		    json_object_set_new(v, "cuped_uplift_high", json_number(a->cuped_uplift_high));
		failed |= json_object_set_new(v, "cuped_variance_reduction",
					      json_number(a->cuped_variance_reduction));
		failed |= json_object_set_new(v, "verdict",
					      json_string(experiment_verdict_name(a->verdict)));
	}
	failed |= json_object_set_new(root, "msprt_min_users", json_integer(s->msprt_min_users));
	failed |= json_object_set_new(root, "srm_alpha", json_real(e->srm_alpha));
	if (!failed)
		text =
		    json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
	json_decref(root);
	if (text == NULL)
		goto out_oom;
	free(s);
	return text;

out_oom:
	free(s);
	set_errstr(errstr, errstr_size, "experiment %s: out of memory rendering JSON", e->name);
	return NULL;
}
