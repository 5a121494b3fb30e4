/*
 * nice: stepping one thread back. Linux's nice value is per thread
 * (setpriority on a thread id), and raising it needs no privilege, so a
 * background thread (a refresh worker, the state writer) can give way to
 * the event loop when the cores are short.
 */
#ifndef STREAMREC_NICE_H
#define STREAMREC_NICE_H

#include <stddef.h>

/**
 * @brief Lower the calling thread's CPU priority by increment (a nice
 * increment above the process's, capped at 19; 0 does nothing).
 * @returns 0, or -1 with errstr filled (errno's reason).
 */
int nice_thread(unsigned increment, char *errstr, size_t errstr_size);

#endif
