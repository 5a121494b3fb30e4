/* See statetest.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define _XOPEN_SOURCE_EXTENDED 1
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "model.h"
#include "statetest.h"

static char base_dir[PATH_MAX];
static int dir_count;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int statetest_setup(void **unused)
{
	(void)unused;
	snprintf(base_dir, sizeof base_dir, "/tmp/streamrec-statetest-XXXXXX");
	dir_count = 0;
	return mkdtemp(base_dir) == NULL ? -1 : 0;
}

int statetest_teardown(void **unused)
{
	(void)unused;
	return nftw(base_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void statetest_new_dir(char *out)
{
	int len = snprintf(out, PATH_MAX, "%s/state-%d", base_dir, dir_count++);
	assert_true(len > 0 && len < PATH_MAX);
}

struct state *statetest_open(const char *dir, struct state_config extra)
{
	struct model_config config;
	char errstr[1024];
	model_config_default(&config);
	config.dim = 8;
	extra.dir = dir;
	extra.variants = &config;
	extra.variant_count = 1;
	struct state *state = state_open(&extra, errstr, sizeof errstr);
	if (state == NULL)
		fail_msg("state_open(%s): %s", dir, errstr);
	return state;
}

void statetest_learn_at(struct state *state, const char *user, const char *item, int64_t ts_ms)
{
	char errstr[512];
	if (state_learn(state, user, item, EVENT_PURCHASE, ts_ms, NULL, errstr, sizeof errstr) != 0)
		fail_msg("state_learn(%s, %s): %s", user, item, errstr);
}

void statetest_commit(struct state *state)
{
	char errstr[512];
	if (state_commit(state, errstr, sizeof errstr) != 0)
		fail_msg("state_commit: %s", errstr);
}

size_t statetest_user_row(struct state *state, const char *user, unsigned char *row,
			  size_t capacity)
{
	char errstr[512];
	uint32_t slot;
	uint64_t hash;
	if (state_user(state, user, &slot, &hash, errstr, sizeof errstr) != 0)
		fail_msg("state_user(%s): %s", user, errstr);
	size_t len = model_export_user(state_model(state, 0), slot, row, capacity);
	assert_true(len > 0 && len <= capacity);
	return len;
}

long statetest_stored_keys(struct state *state)
{
	char errstr[512], path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/export-%d", base_dir, dir_count++);
	long entries = state_export(state, path, errstr, sizeof errstr);
	if (entries < 0)
		fail_msg("state_export: %s", errstr);
	unlink(path);
	return entries;
}
