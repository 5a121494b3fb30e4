#include "memkeep.h"

#include <limits.h>
#include <malloc.h>

/* glibc's largest mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX):
 * blocks above it are mapped whatever the setting. */
#define KEEP_MMAP_THRESHOLD (32 * 1024 * 1024)
/* the free top a heap keeps before glibc trims it: the most mallopt() takes */
#define KEEP_TRIM_THRESHOLD INT_MAX

bool memkeep_process(void)
{
	/* mallopt() returns 1 on success; setting either fixes it (glibc stops
	 * adjusting both thresholds as it frees mapped blocks) */
	int mmap_ok = mallopt(M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD);
	int trim_ok = mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD);
	return mmap_ok == 1 && trim_ok == 1;
}
