/*
 * core/common.h — small shared helpers for every osp translation unit: error reporting
 * with file:line and a hint, checked allocation, and the few scalar utilities that
 * are used everywhere (timers, sizes). Keep it tiny: anything with a topic of its own
 * gets its own file.
 */
#ifndef OSP_COMMON_H
#define OSP_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>

/* Print "osp: error: <msg>" plus a hint and exit(1). Used for user-facing errors
 * (bad files, bad config) where the message already names the file/key. */
void osp_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* Internal invariant check: prints file:line, the failed expression and a hint. */
#define OSP_CHECK(cond, hint)                                                       \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "osp: internal error at %s:%d: check `%s` failed (%s)\n", \
                    __FILE__, __LINE__, #cond, hint);                               \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

/* malloc/calloc that die with file:line on failure (these are the only allocators
 * used outside arenas). */
void *osp_malloc_at(size_t n, const char *file, int line);
void *osp_calloc_at(size_t n, size_t sz, const char *file, int line);
#define osp_malloc(n) osp_malloc_at((n), __FILE__, __LINE__)
#define osp_calloc(n, sz) osp_calloc_at((n), (sz), __FILE__, __LINE__)

/* Monotonic wall clock in seconds. */
double osp_now(void);

/* Write `nbytes` of `data` to `path` atomically: temp file, fsync, rename, fsync dir.
 * Returns 0 on success, -1 (with errno-based message in err) on failure. */
int osp_write_atomic(const char *path, const void *data, size_t nbytes, char *err, size_t errlen);

/* Levenshtein distance of a[0..na) and b[0..nb) (inputs over 128 chars: a huge value);
 * used to suggest the key a user probably meant. */
int osp_edit_distance(const char *a, size_t na, const char *b, size_t nb);

/* mkdir -p; 0 on success (or if it exists), -1 otherwise. */
int osp_mkdir_p(const char *path);

/* fsync the directory holding `path` (after a rename), best effort. */
void osp_fsync_dir_of(const char *path);

#endif
