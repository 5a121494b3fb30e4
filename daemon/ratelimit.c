/*
 * ratelimit: one fixed window per key, opened by the key's first line.
 */
#include "ratelimit.h"

#include <stdio.h>
#include <stdlib.h>

struct window {
	bool open;
	double start_s;
	unsigned logged;
	uint64_t suppressed;
};

struct ratelimit {
	double window_s;
	unsigned burst;
	size_t key_count;
	struct window windows[];
};

struct ratelimit *ratelimit_new(size_t key_count, double window_s, unsigned burst, char *errstr,
				size_t errstr_size)
{
	if (!(window_s > 0) || burst == 0) {
		snprintf(errstr, errstr_size,
			 "ratelimit: window %g s and burst %u must both be positive", window_s,
			 burst);
		return NULL;
	}
	struct ratelimit *rl = calloc(1, sizeof *rl + key_count * sizeof rl->windows[0]);
	if (rl == NULL) {
		snprintf(errstr, errstr_size, "ratelimit: out of memory for %zu keys", key_count);
		return NULL;
	}
	rl->window_s = window_s;
	rl->burst = burst;
	rl->key_count = key_count;
	return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
	free(rl);
}

bool ratelimit_allow(struct ratelimit *rl, size_t key, double now_s, uint64_t *suppressed)
{
	*suppressed = 0;
	if (key >= rl->key_count)
		return true;
	struct window *w = &rl->windows[key];
	if (!w->open || now_s - w->start_s >= rl->window_s) {
		*suppressed = w->suppressed;
		*w = (struct window){.open = true, .start_s = now_s};
	}
	if (w->logged < rl->burst) {
		w->logged++;
		return true;
	}
	w->suppressed++;
	return false;
}

uint64_t ratelimit_take_suppressed(struct ratelimit *rl, size_t key, double now_s)
{
	if (key >= rl->key_count)
		return 0;
	struct window *w = &rl->windows[key];
	if (!w->open || now_s - w->start_s < rl->window_s)
		return 0;
	uint64_t count = w->suppressed;
	w->suppressed = 0;
	return count;
}
