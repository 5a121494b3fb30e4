/*
 * statefile: the state's export file, for backup, migration and inspection
 * (format in state.h, state_export()).
 */
#ifndef STREAMREC_STATEFILE_H
#define STREAMREC_STATEFILE_H

#include "store.h"

/** @brief state_export() over an open store (borrowed). */
long statefile_export(struct store *store, const char *path, char *errstr, size_t errstr_size);

/** @brief state_import(): a new state directory from an export file. */
long statefile_import(const char *dir, const char *path, char *errstr, size_t errstr_size);

#endif
