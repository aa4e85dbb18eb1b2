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
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static osp_fatal_hook fatal_hook;
static char error_prefix[64];

void osp_set_fatal_hook(osp_fatal_hook hook) { fatal_hook = hook; }

static char temp_path[OSP_MAX_TEMPS][4352];
static volatile sig_atomic_t temp_used[OSP_MAX_TEMPS];

static void temps_remove(void) {
    for (int i = 0; i < OSP_MAX_TEMPS; i++)
        if (temp_used[i]) unlink(temp_path[i]); /* async-signal-safe */
}

static void temp_on_signal(int sig) {
    temps_remove();
    signal(sig, SIG_DFL);
    raise(sig);
}

void osp_temp_register(const char *path) {
    static bool handlers = false;
    if (!handlers) { /* only where nobody else handles the signal (osp train saves on SIGTERM) */
        int sigs[2] = {SIGINT, SIGTERM};
        for (int k = 0; k < 2; k++) {
            struct sigaction old;
            if (sigaction(sigs[k], NULL, &old) == 0 && old.sa_handler == SIG_DFL) signal(sigs[k], temp_on_signal);
        }
        handlers = true;
    }
    for (int i = 0; i < OSP_MAX_TEMPS; i++)
        if (!temp_used[i] && strlen(path) < sizeof temp_path[i]) {
            memcpy(temp_path[i], path, strlen(path) + 1);
            temp_used[i] = 1;
            return;
        }
}

void osp_temp_unregister(const char *path) {
    for (int i = 0; i < OSP_MAX_TEMPS; i++)
        if (temp_used[i] && !strcmp(temp_path[i], path)) temp_used[i] = 0;
}

void osp_exit(int code) {
    temps_remove();
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
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* one line, whatever the message carries: a path or value with a newline or other control
     * byte is written escaped (\n, \xNN) */
    fprintf(stderr, "osp: error: %s", error_prefix);
    for (const unsigned char *c = (const unsigned char *)msg; *c; c++) {
        if (*c == '\n') fputs("\\n", stderr);
        else if (*c == '\t') fputs("\\t", stderr);
        else if (*c < 0x20 || *c == 0x7f) fprintf(stderr, "\\x%02x", *c);
        else fputc(*c, stderr);
    }
    fputc('\n', stderr);
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

int osp_check_regular(const char *path, char *err, size_t errlen) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: cannot open (not a regular file)", path);
        return -1;
    }
    return 0;
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
