/*
 * core/common.c — error reporting, checked allocation, clock and atomic file writes
 * shared by all of osp.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static osp_fatal_hook fatal_hook;
static char error_prefix[64];

void osp_set_fatal_hook(osp_fatal_hook hook) { fatal_hook = hook; }

void osp_exit(int code) {
    fflush(stdout);
    fflush(stderr);
    osp_fatal_hook hook = fatal_hook;
    fatal_hook = NULL; /* a failure inside the hook must not recurse */
    if (hook) hook(code);
    exit(code);
}

void osp_set_error_prefix(const char *prefix) { snprintf(error_prefix, sizeof error_prefix, "%s", prefix ? prefix : ""); }
const char *osp_error_prefix(void) { return error_prefix; }

void osp_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "osp: error: %s", error_prefix);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    osp_exit(1);
}

void *osp_malloc_at(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "osp: error: %sout of memory at %s:%d allocating %zu bytes (hint: smaller batch/shape)\n",
                error_prefix, file, line, n);
        osp_exit(1);
    }
    return p;
}

void *osp_calloc_at(size_t n, size_t sz, const char *file, int line) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) {
        fprintf(stderr, "osp: error: %sout of memory at %s:%d allocating %zu x %zu bytes (hint: smaller batch/shape)\n",
                error_prefix, file, line, n, sz);
        osp_exit(1);
    }
    return p;
}

double osp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void osp_fsync_dir_of(const char *path) {
    char *tmp = strdup(path);
    if (!tmp) return;
    int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(tmp);
}

int osp_write_atomic(const char *path, const void *data, size_t nbytes, char *err, size_t errlen) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create (%s)", tmp, strerror(errno));
        return -1;
    }
    const char *p = data;
    size_t left = nbytes;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            snprintf(err, errlen, "%s: write failed (%s)", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        snprintf(err, errlen, "%s: fsync/close failed (%s)", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: rename failed (%s)", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    osp_fsync_dir_of(path);
    return 0;
}

int osp_mkdir_p(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0755);
            *p = '/';
        }
    if (mkdir(tmp, 0755) == 0 || errno == EEXIST) return 0;
    return -1;
}

int osp_edit_distance(const char *a, size_t na, const char *b, size_t nb) {
    int row[129];
    if (na > 128 || nb > 128) return 1 << 20;
    for (size_t j = 0; j <= nb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}
