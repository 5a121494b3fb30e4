/*
 * errstr: filling the caller's error buffer, the one convention of every
 * action function in the tree (STYLE.md rule 4: return 0 or -1 and fill
 * `char *errstr, size_t errstr_size`).
 */
#ifndef STREAMREC_ERRSTR_H
#define STREAMREC_ERRSTR_H

#include <stddef.h>

/**
 * @brief printf into errstr, truncated to errstr_size; errstr may be NULL
 * or errstr_size 0 (the message is dropped).
 */
void set_errstr(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
