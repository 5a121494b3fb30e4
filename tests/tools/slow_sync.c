/*
 * slow_sync: an LD_PRELOAD library for end-to-end tests that makes a real
 * disk slow on demand. While the file named by STREAMREC_TEST_SLOW_SYNC
 * exists, every fsync() and fdatasync() of the process first sleeps for
 * the number of milliseconds the file holds (1000 when it holds none),
 * then syncs. RocksDB, the broker and the daemon stay real: only the time
 * a sync takes changes, as on a busy or network disk.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int fsync(int fd);
int fdatasync(int fd);

/* Sleeps while the switch file exists: the milliseconds it holds. */
static void maybe_sleep(void)
{
	const char *path = getenv("STREAMREC_TEST_SLOW_SYNC");
	if (path == NULL || path[0] == '\0')
		return;
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return;
	long ms = 1000;
	if (fscanf(f, "%ld", &ms) != 1 || ms < 0)
		ms = 1000;
	fclose(f);
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Sleeps when switched on, then calls the C library's function `name`. */
static int slow_then(int (**real)(int), const char *name, int fd)
{
	if (*real == NULL)
		*real = (int (*)(int))dlsym(RTLD_NEXT, name);
	maybe_sleep();
	return (*real)(fd);
}

int fsync(int fd)
{
	static int (*real)(int);
	return slow_then(&real, "fsync", fd);
}

int fdatasync(int fd)
{
	static int (*real)(int);
	return slow_then(&real, "fdatasync", fd);
}
