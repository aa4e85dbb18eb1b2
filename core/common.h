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

/* The one way osp ends on a fatal error. Every error path (osp_die, OSP_CHECK, out of memory,
 * CUDA/cuBLAS/cuDNN failures) prints its one line and then calls osp_exit, never exit():
 * osp_exit runs the hook installed with osp_set_fatal_hook (the parallel layer points it at
 * MPI_Abort, so one rank's error takes the whole job down), then exits with `code`. */
typedef void (*osp_fatal_hook)(int code);
void osp_set_fatal_hook(osp_fatal_hook hook);
void osp_exit(int code) __attribute__((noreturn));

/* Text put before every error line ("" by default; "rank 3: " under MPI), so a message from
 * one of many ranks says which one it came from. */
void osp_set_error_prefix(const char *prefix);
const char *osp_error_prefix(void);

/* Print "osp: error: <msg>" and osp_exit(1). Used for user-facing errors (bad files, bad
 * config) where the message already names the file/key. */
void osp_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* Internal invariant check: prints file:line, the failed expression and a hint. */
#define OSP_CHECK(cond, hint)                                                       \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "osp: error: %sinternal error at %s:%d: check `%s` failed (%s)\n", \
                    osp_error_prefix(), __FILE__, __LINE__, #cond, hint);           \
            osp_exit(1);                                                            \
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

/* 0 when `path` is a regular file; else -1 and "PATH: cannot open (reason)" in err. It only
 * stat()s, so a FIFO or device is refused before an open() or read() could block on it. */
int osp_check_regular(const char *path, char *err, size_t errlen);

/* Temp files being written (at most OSP_MAX_TEMPS at once): a registered path is removed when
 * osp ends on a fatal error (osp_exit) or is killed by SIGINT / SIGTERM (where no other handler
 * was installed), so an interrupted write leaves nothing behind. Unregister once the temp file
 * has been renamed or removed. */
#define OSP_MAX_TEMPS 4
void osp_temp_register(const char *path);
void osp_temp_unregister(const char *path);

/* mkdir -p; 0 on success (or if it exists), -1 otherwise. */
int osp_mkdir_p(const char *path);

/* fsync the directory holding `path` (after a rename), best effort. */
void osp_fsync_dir_of(const char *path);

#endif
