/* Gradient check: the analytic gradients the model applies equal finite differences of its
 * objective. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "sgd.h"

#define DIM     7
#define YS      3
#define TARGETS 5

static float random_float(uint64_t *state)
{
	*state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((double)(*state >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static void check(const char *what, double analytic, double numeric)
{
	double tolerance = 1e-3 + 2e-2 * fabs(numeric);
	if (fabs(analytic - numeric) > tolerance)
		fail_msg("%s: analytic %.6f, numeric %.6f", what, analytic, numeric);
}

/* Central difference of the objective with respect to one float. */
static double numeric(float *param, const float *p, const float *const *ys,
		      const struct sgd_target *targets, float l2)
{
	const float eps = 1e-3f;
	float saved = *param;
	*param = saved + eps;
	double up = sgd_objective(p, ys, YS, targets, TARGETS, DIM, l2);
	*param = saved - eps;
	double down = sgd_objective(p, ys, YS, targets, TARGETS, DIM, l2);
	*param = saved;
	return (up - down) / (2.0 * (double)eps);
}

static void gradients_match_finite_differences(void **state)
{
	(void)state;
	uint64_t rng = 42;
	for (int trial = 0; trial < 20; trial++) {
		float p[DIM], y[YS][DIM], q[TARGETS][DIM], h[DIM], grad_h[DIM], g[TARGETS];
		const float *ys[YS] = {y[0], y[1], y[2]};
		struct sgd_target targets[TARGETS];
		float l2 = trial % 2 ? 0.01f : 0.0f;
		for (int k = 0; k < DIM; k++)
			p[k] = random_float(&rng);
		for (int j = 0; j < YS; j++)
			for (int k = 0; k < DIM; k++)
				y[j][k] = random_float(&rng);
		for (int t = 0; t < TARGETS; t++) {
			for (int k = 0; k < DIM; k++)
				q[t][k] = 2.0f * random_float(&rng);
			targets[t] = (struct sgd_target){.q = q[t],
							 .b = random_float(&rng),
							 .label = t == 0 ? 1.0f : 0.0f,
							 .weight = 0.5f + (float)t};
		}
		for (int k = 0; k < DIM; k++) {
			h[k] = p[k];
			for (int j = 0; j < YS; j++)
				h[k] += y[j][k] / YS;
		}
		sgd_score_gradients(h, targets, TARGETS, DIM, g, grad_h);

		for (int k = 0; k < DIM; k++) {
			check("dp", grad_h[k] + l2 * p[k], numeric(&p[k], p, ys, targets, l2));
			for (int j = 0; j < YS; j++)
				check("dy", grad_h[k] / YS + l2 * y[j][k],
				      numeric(&y[j][k], p, ys, targets, l2));
			for (int t = 0; t < TARGETS; t++)
				check("dq", g[t] * h[k] + l2 * q[t][k],
				      numeric(&q[t][k], p, ys, targets, l2));
		}
		for (int t = 0; t < TARGETS; t++)
			check("db", g[t], numeric(&targets[t].b, p, ys, targets, l2));
	}
}

static void sigmoid_and_softplus_are_stable(void **state)
{
	(void)state;
	assert_true(sgd_sigmoid(100.0f) == 1.0f);
	assert_true(sgd_sigmoid(-100.0f) >= 0.0f && sgd_sigmoid(-100.0f) < 1e-40f);
	assert_true(fabsf(sgd_sigmoid(0.0f) - 0.5f) < 1e-7f);
	assert_true(isfinite(sgd_softplus(1000.0)) && fabs(sgd_softplus(1000.0) - 1000.0) < 1e-9);
	assert_true(sgd_softplus(-1000.0) >= 0.0 && sgd_softplus(-1000.0) < 1e-300);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(gradients_match_finite_differences),
	    cmocka_unit_test(sigmoid_and_softplus_are_stable),
	};
	return cmocka_run_group_tests_name("040_sgd_gradient", tests, NULL, NULL);
}
