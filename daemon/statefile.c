#include "statefile.h"

#include "errstr.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "statekeys.h"

#define ROW_BUFFER (1u << 20) /* the largest value an entry may carry */

/* Version 2 ends with an end record: family byte END_FAMILY, key length 0,
 * value length 8, the entry count (big-endian); an import refuses a file
 * without it (a copy or an export cut short). Version 1 had none. */
#define EXPORT_MAGIC    "streamrec-export 2\n"
#define EXPORT_MAGIC_V1 "streamrec-export 1\n"
#define END_FAMILY      0xff

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

/* Whether the file at path starts as an export of any version. */
static bool is_export_file(const char *path)
{
	char magic[sizeof EXPORT_MAGIC - 1];
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return false;
	bool is = fread(magic, 1, sizeof magic, f) == sizeof magic &&
		  (memcmp(magic, EXPORT_MAGIC, sizeof magic) == 0 ||
		   memcmp(magic, EXPORT_MAGIC_V1, sizeof magic) == 0);
	fclose(f);
	return is;
}

/*
 * Written to a temporary file beside path, synced, then renamed over it: a
 * failed or interrupted export leaves an earlier one at path as it was. A
 * file at path that is no export is not replaced (a mistyped --out).
 */
long statefile_export(struct store *store, const char *path, char *errstr, size_t errstr_size)
{
	char why[256], tmp[PATH_MAX];
	struct stat st;
	if (stat(path, &st) == 0 && !is_export_file(path)) {
		set_errstr(errstr, errstr_size,
			   "%s exists and is not a streamrec export: not replaced", path);
		return -1;
	}
	if (snprintf(tmp, sizeof tmp, "%s.partial-XXXXXX", path) >= (int)sizeof tmp) {
		set_errstr(errstr, errstr_size, "%s: path too long", path);
		return -1;
	}
	int fd = mkstemp(tmp);
	FILE *out = fd >= 0 ? fdopen(fd, "wb") : NULL;
	if (out == NULL) {
		set_errstr(errstr, errstr_size, "%s: %s", tmp, strerror(errno));
		if (fd >= 0) {
			close(fd);
			remove(tmp);
		}
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
			remove(tmp);
			return -1;
		}
	}
	unsigned char end[1 + 4 + 4 + 8] = {END_FAMILY, 0, 0, 0, 0, 0, 0, 0, 8};
	for (int b = 0; b < 8; b++)
		end[9 + b] = (unsigned char)((uint64_t)c.entries >> (56 - 8 * b));
	if (c.failed || fwrite(end, 1, sizeof end, out) != sizeof end || fflush(out) != 0 ||
	    fsync(fileno(out)) != 0 || fclose(out) != 0) {
		set_errstr(errstr, errstr_size, "%s: write failed: %s", tmp, strerror(errno));
		remove(tmp);
		return -1;
	}
	if (rename(tmp, path) != 0) {
		set_errstr(errstr, errstr_size, "%s: rename from %s: %s", path, tmp,
			   strerror(errno));
		remove(tmp);
		return -1;
	}
	return c.entries;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
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
	bool v1 = false;
	if (fread(magic, 1, sizeof EXPORT_MAGIC - 1, in) != sizeof EXPORT_MAGIC - 1 ||
	    (memcmp(magic, EXPORT_MAGIC, sizeof EXPORT_MAGIC - 1) != 0 &&
	     !(v1 = memcmp(magic, EXPORT_MAGIC_V1, sizeof EXPORT_MAGIC - 1) == 0))) {
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
	bool ended = false;
	for (;;) {
		unsigned char head[5];
		size_t got = fread(head, 1, 5, in);
		if (got == 0 && feof(in))
			break;
		if (got == 5 && head[0] == END_FAMILY && !v1) {
			/* the end record: key length 0, value length 8, the count */
			unsigned char tail[12];
			uint64_t count = 0;
			bool ok = bytes_get_be32(head + 1) == 0 && fread(tail, 1, 12, in) == 12 &&
				  bytes_get_be32(tail) == 8;
			for (int b = 0; ok && b < 8; b++)
				count = count << 8 | tail[4 + b];
			if (!ok || count != (uint64_t)entries || fgetc(in) != EOF) {
				set_errstr(errstr, errstr_size,
					   "%s: malformed end record after %ld entries", path,
					   entries);
				goto out_fail;
			}
			ended = true;
			break;
		}
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
	if (!v1 && !ended) {
		set_errstr(errstr, errstr_size,
			   "%s: cut short: it ends after %ld entries without its end record", path,
			   entries);
		goto out_fail;
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
	/* the half-made state goes (nftw: no shell, whatever the path holds) */
	if (store != NULL && nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		fprintf(stderr, "could not remove %s: %s\n", dir, strerror(errno));
	return -1;
}
