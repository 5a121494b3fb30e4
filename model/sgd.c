#include "sgd.h"

#include <math.h>

double sgd_softplus(double x)
{
	return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

float sgd_sigmoid(float x)
{
	if (x >= 0) {
		float e = expf(-x);
		return 1.0f / (1.0f + e);
	}
	float e = expf(x);
	return e / (1.0f + e);
}

static double dot_double(const float *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * (double)b[i];
	return s;
}

double sgd_objective(const float *p, const float *const *ys, size_t y_count,
		     const struct sgd_target *targets, size_t target_count, size_t dim, float l2)
{
	double loss = 0, reg = 0;
	for (size_t t = 0; t < target_count; t++) {
		double s = targets[t].b;
		for (size_t k = 0; k < dim; k++) {
			double h = p != NULL ? p[k] : 0.0;
			for (size_t j = 0; j < y_count; j++)
				h += (double)ys[j][k] / (double)y_count;
			s += h * targets[t].q[k];
		}
		/* -log sigma(s) = softplus(-s); -log(1 - sigma(s)) = softplus(s) */
		loss += targets[t].weight *
			(targets[t].label > 0.5f ? sgd_softplus(-s) : sgd_softplus(s));
		reg += dot_double(targets[t].q, targets[t].q, dim);
	}
	if (p != NULL)
		reg += dot_double(p, p, dim);
	for (size_t j = 0; j < y_count; j++)
		reg += dot_double(ys[j], ys[j], dim);
	return loss + 0.5 * l2 * reg;
}

float sgd_dot(const float *a, const float *b, size_t n)
{
	/* eight partial sums in a fixed order: vectorisable without -ffast-math,
	 * and the same bits on every run */
	float part[8] = {0};
	size_t k = 0;
	for (; k + 8 <= n; k += 8)
		for (size_t l = 0; l < 8; l++)
			part[l] += a[k + l] * b[k + l];
	float sum = ((part[0] + part[4]) + (part[1] + part[5])) +
		    ((part[2] + part[6]) + (part[3] + part[7]));
	for (; k < n; k++)
		sum += a[k] * b[k];
	return sum;
}

void sgd_score_gradients(const float *h, const struct sgd_target *targets, size_t target_count,
			 size_t dim, float *score_grad, float *grad_h)
{
	for (size_t k = 0; k < dim; k++)
		grad_h[k] = 0;
	for (size_t t = 0; t < target_count; t++) {
		const float *q = targets[t].q;
		float s = targets[t].b + sgd_dot(h, q, dim);
		float g = targets[t].weight * (sgd_sigmoid(s) - targets[t].label);
		score_grad[t] = g;
		for (size_t k = 0; k < dim; k++)
			grad_h[k] += g * q[k];
	}
}
