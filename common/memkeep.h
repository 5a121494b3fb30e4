/*
 * memkeep: memory a process frees stays its own. glibc's malloc hands
 * freed memory back to the kernel (the heap's top above a trim threshold,
 * blocks above an mmap threshold unmapped), and both thresholds move with
 * the sizes it sees. A daemon that cycles large buffers (RocksDB's
 * memtables, the commit batches, a round's scratch) then faults the same
 * amount in again, page by page, on whichever thread touches it first: the
 * event loop, the state writer. Where page faults are dear (a VM whose
 * freed pages go back to its host) that costs the writer time and can
 * stall the loop (measured end to end on such a VM; how much of it is
 * faults was not isolated). Fixing the thresholds keeps what was freed
 * for the next allocation; memory already returned is not affected.
 */
#ifndef STREAMREC_MEMKEEP_H
#define STREAMREC_MEMKEEP_H

#include <stdbool.h>

/**
 * @brief Keep freed memory in the process: blocks up to 32 MiB come from
 * the heap (not from mmap, and are reused), and the heap is not trimmed
 * below its peak. Call once at start, before the threads.
 * @returns true when the allocator took both settings (false under an
 * allocator without mallopt(), such as a sanitizer's: nothing changed).
 */
bool memkeep_process(void);

#endif
