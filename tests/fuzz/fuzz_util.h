/*
 * tests/fuzz/fuzz_util.h — what every fuzz target shares: a private scratch directory the
 * loaders read their input from (they take paths, as osp does), and a way back from osp's
 * fatal path. A loader that ends in osp_die is a clean rejection, not a finding: the hook
 * installed by FZ_TRY jumps back to the target instead of exiting the fuzzer.
 */
#ifndef OSP_FUZZ_UTIL_H
#define OSP_FUZZ_UTIL_H

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Under ASan: a claimed size the allocator refuses (over 2 GiB) comes back as NULL, so osp's
 * own out-of-memory error (a clean rejection) runs instead of an allocator report; leaks of
 * inputs rejected by a jump out of osp_die are expected. */
#if defined(__SANITIZE_ADDRESS__)
#define FZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FZ_ASAN 1
#endif
#endif
#ifdef FZ_ASAN
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1:max_allocation_size_mb=2048:detect_leaks=0";
}
#endif

static char fz_dir_buf[512];

static void fz_cleanup(void) {
    if (!fz_dir_buf[0]) return;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir_buf);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fz_dir_buf);
}

/* the scratch directory, made on first use and removed at exit */
__attribute__((unused)) static const char *fz_dir(void) {
    if (!fz_dir_buf[0]) {
        /* memory-backed when it can be: the loaders write (and fsync) files at every input */
        const char *t = getenv("TMPDIR");
        if (!t || !*t) t = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fz_dir_buf, sizeof fz_dir_buf, "%s/osp_fuzz_XXXXXX", t);
        if (!mkdtemp(fz_dir_buf)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fz_cleanup);
    }
    return fz_dir_buf;
}

/* write bytes to DIR/name; returns the path (a static buffer per slot 0..3) */
__attribute__((unused)) static const char *fz_write(int slot, const char *name, const void *data, size_t n) {
    static char paths[4][640];
    char *p = paths[slot & 3];
    snprintf(p, sizeof paths[0], "%s/%s", fz_dir(), name);
    /* a fresh inode for every input: HDF5 shares an open file by inode, so a handle left open by
     * an input rejected through osp_die must not stand for the next input's file */
    unlink(p);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror("fuzz: write");
        abort();
    }
    return p;
}

static jmp_buf fz_jmp;
static void fz_fatal(int code) {
    (void)code;
    longjmp(fz_jmp, 1);
}

/* FZ_TRY { ... }: the block runs; an osp_die / OSP_CHECK inside it returns here */
#define FZ_TRY if ((osp_set_fatal_hook(fz_fatal), setjmp(fz_jmp) == 0))

#endif
