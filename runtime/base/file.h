/* Whole-file reading and atomic writing. */
#ifndef PC_FILE_H
#define PC_FILE_H

#include <stddef.h>

#include "runtime/base/err.h"

/* The file's bytes plus a terminating NUL (malloc'ed); *len (if non-NULL)
 * gets the length without it. NULL with err set ("PATH: reason") on failure. */
char *pc_read_file(const char *path, size_t *len, PcError *err);
/* Writes to PATH.tmp, fsyncs, renames over PATH. */
int pc_write_file_atomic(const char *path, const void *data, size_t len, PcError *err);
/* Whether a path (or any string) ends with suffix: ".so", ".json". */
int pc_ends_with(const char *s, const char *suffix);

#endif
