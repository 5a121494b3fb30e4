#include "statefile.h"

#include "errstr.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "statekeys.h"

#define ROW_BUFFER (1u << 20) /* the largest value an entry may carry */

#define EXPORT_MAGIC "streamrec-export 1\n"

struct export_context {
	FILE *out;
	int family;
	long entries;
	int failed;
};

static int export_entry(const void *key, size_t key_len, const void *value, size_t value_len,
			void *ctx)
{
	struct export_context *c = ctx;
	unsigned char head[5];
	head[0] = (unsigned char)c->family;
	bytes_put_be32(head + 1, (uint32_t)key_len);
	if (fwrite(head, 1, 5, c->out) != 5 || fwrite(key, 1, key_len, c->out) != key_len)
		goto out_fail;
	bytes_put_be32(head, (uint32_t)value_len);
	if (fwrite(head, 1, 4, c->out) != 4 ||
	    (value_len > 0 && fwrite(value, 1, value_len, c->out) != value_len))
		goto out_fail;
	c->entries++;
	return 0;
out_fail:
	c->failed = 1;
	return 1;
}

long statefile_export(struct store *store, const char *path, char *errstr, size_t errstr_size)
{
	char why[256];
	FILE *out = fopen(path, "wb");
	if (out == NULL) {
		set_errstr(errstr, errstr_size, "%s: %s", path, strerror(errno));
		return -1;
	}
	struct export_context c = {out, 0, 0, 0};
	fputs(EXPORT_MAGIC, out);
	for (int f = 0; f < STORE_FAMILY_COUNT && !c.failed; f++) {
		c.family = f;
		if (store_foreach(store, (enum store_family)f, export_entry, &c, why, sizeof why) !=
			0 &&
		    !c.failed) {
			set_errstr(errstr, errstr_size, "%s: reading %s: %s", path,
				   store_family_name((enum store_family)f), why);
			fclose(out);
			remove(path);
			return -1;
		}
	}
	if (c.failed || fclose(out) != 0) {
		set_errstr(errstr, errstr_size, "%s: write failed: %s", path, strerror(errno));
		remove(path);
		return -1;
	}
	return c.entries;
}

long statefile_import(const char *dir, const char *path, char *errstr, size_t errstr_size)
{
	struct stat st;
	char magic[sizeof EXPORT_MAGIC], why[512];
	long entries = 0;
	unsigned char *key = NULL, *value = NULL;
	struct store *store = NULL;
	struct store_batch *batch = NULL;
	FILE *in;

	if (stat(dir, &st) == 0) {
		set_errstr(errstr, errstr_size, "%s already exists: import creates a new state",
			   dir);
		return -1;
	}
	in = fopen(path, "rb");
	if (in == NULL) {
		set_errstr(errstr, errstr_size, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fread(magic, 1, sizeof EXPORT_MAGIC - 1, in) != sizeof EXPORT_MAGIC - 1 ||
	    memcmp(magic, EXPORT_MAGIC, sizeof EXPORT_MAGIC - 1) != 0) {
		set_errstr(errstr, errstr_size, "%s: not a streamrec export file", path);
		fclose(in);
		return -1;
	}
	struct store_config sc = {.path = dir};
	store = store_open(&sc, errstr, errstr_size);
	batch = store_batch_new();
	key = malloc(1 << 16);
	value = malloc(ROW_BUFFER);
	if (store == NULL || batch == NULL || key == NULL || value == NULL) {
		if (store != NULL)
			set_errstr(errstr, errstr_size, "out of memory importing %s", path);
		goto out_fail;
	}
	for (;;) {
		unsigned char head[5];
		size_t got = fread(head, 1, 5, in);
		if (got == 0 && feof(in))
			break;
		uint32_t key_len = got == 5 ? bytes_get_be32(head + 1) : 0, value_len = 0;
		if (got != 5 || head[0] >= STORE_FAMILY_COUNT || key_len > (1 << 16) ||
		    fread(key, 1, key_len, in) != key_len || fread(head + 1, 1, 4, in) != 4 ||
		    (value_len = bytes_get_be32(head + 1)) > ROW_BUFFER ||
		    fread(value, 1, value_len, in) != value_len) {
			set_errstr(errstr, errstr_size, "%s: entry %ld is truncated or malformed",
				   path, entries + 1);
			goto out_fail;
		}
		entries++;
		if (head[0] == STORE_META && key_len > 7 && memcmp(key, "offset/", 7) == 0) {
			/* offsets go through the store's own API: "offset/<topic>/<partition>" */
			char name[300];
			const unsigned char *slash = memrchr(key, '/', key_len);
			int64_t offset = 0;
			if (slash == NULL || slash - key <= 7 || value_len != 8 ||
			    (size_t)(slash - key - 7) >= sizeof name) {
				set_errstr(errstr, errstr_size, "%s: entry %ld: malformed offset",
					   path, entries);
				goto out_fail;
			}
			memcpy(name, key + 7, (size_t)(slash - key - 7));
			name[slash - key - 7] = '\0';
			for (int b = 0; b < 8; b++)
				offset = (int64_t)(((uint64_t)offset << 8) | value[b]);
			char partition[16];
			size_t plen = key_len - (size_t)(slash - key) - 1;
			if (plen == 0 || plen >= sizeof partition) {
				set_errstr(errstr, errstr_size, "%s: entry %ld: malformed offset",
					   path, entries);
				goto out_fail;
			}
			memcpy(partition, slash + 1, plen);
			partition[plen] = '\0';
			store_batch_set_offset(batch, name, (int32_t)atoi(partition), offset);
			continue;
		}
		if (head[0] == STORE_META &&
		    ((key_len == 6 && memcmp(key, "format", 6) == 0) ||
		     (key_len == 14 && memcmp(key, "format_version", 14) == 0) ||
		     (key_len == 11 && memcmp(key, "fingerprint", 11) == 0)))
			continue; /* the new store writes its own */
		store_batch_put(batch, (enum store_family)head[0], key, key_len, value, value_len);
	}
	if (store_commit(store, batch, why, sizeof why) != 0) {
		set_errstr(errstr, errstr_size, "%s: %s", dir, why);
		goto out_fail;
	}
	store_batch_free(batch);
	store_close(store);
	free(key);
	free(value);
	fclose(in);
	return entries;
out_fail:
	store_batch_free(batch);
	store_close(store);
	free(key);
	free(value);
	fclose(in);
	if (store != NULL) {
		char command[4200];
		snprintf(command, sizeof command, "rm -rf -- '%s'", dir);
		if (system(command) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	return -1;
}
