/*
 * sgd: the model's objective and its exact gradients for one event.
 *
 * One event trains one positive item and n sampled negatives against the
 * user's query h = p + mean(y_j over the user's recent items):
 *
 *   loss = sum_x w_x * logloss(label_x, h . q_x + b_x)
 *        + l2/2 * (|p|^2 + sum_j |y_j|^2 + sum_x |q_x|^2)
 *
 * with logloss(1, s) = -log sigma(s) and logloss(0, s) = -log(1 - sigma(s)).
 * Kept free of model state so a finite-difference test can check it.
 */
#ifndef STREAMREC_SGD_H
#define STREAMREC_SGD_H

#include <stddef.h>

/** One scored item of an event: its vector, bias, label and weight. */
struct sgd_target {
	const float *q;
	float b;
	float label;  /**< 1 positive, 0 negative */
	float weight; /**< >= 0 */
};

/** @returns a . b, summed in a fixed order (vectorisable, reproducible). */
float sgd_dot(const float *a, const float *b, size_t n);

/** @returns log(1 + exp(x)) without overflow. */
double sgd_softplus(double x);

/** @returns the logistic function 1/(1+exp(-x)), stable for large |x|. */
float sgd_sigmoid(float x);

/**
 * @brief The objective above, in double precision (for tests and diagnostics).
 * @param p user vector, or NULL when long-term taste is off
 * @param ys recent items' y vectors (y_count of them), may be 0
 */
double sgd_objective(const float *p, const float *const *ys, size_t y_count,
		     const struct sgd_target *targets, size_t target_count, size_t dim, float l2);

/**
 * @brief Gradient of the data term with respect to each target's score:
 * g_x = w_x * (sigma(s_x) - label_x), where s_x = h . q_x + b_x.
 * Also returns grad_h = sum_x g_x q_x (dim floats).
 * The caller turns these into parameter gradients:
 *   dq_x = g_x h + l2 q_x,  db_x = g_x,  dp = grad_h + l2 p,  dy_j = grad_h / y_count + l2 y_j.
 */
void sgd_score_gradients(const float *h, const struct sgd_target *targets, size_t target_count,
			 size_t dim, float *score_grad, float *grad_h);

#endif
