/*
 * cuda_attn_cudnn_lib.cu — finding and opening libcudnn.so.9 for cuda_attn_cudnn.cu (which loads
 * it with dlopen, so the build never needs cuDNN), and that file's verbose trace and switches.
 * Host code only.
 */
#include "cuda_attn_cudnn_lib.cuh"

#include <dlfcn.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cdn_env_bool(const char *name, int dflt) {
    const char *e = getenv(name);
    return e && *e ? strcmp(e, "0") != 0 : dflt;
}

int cdn_verbose(void) {
    static int v = -1;
    return v < 0 ? (v = cdn_env_bool("OSP_CUDNN_VERBOSE", 0)) : v;
}

void cdn_note(const char *fmt, ...) {
    if (!cdn_verbose()) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("osp: cudnn: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void *cdn_open(const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    const char *e = h ? NULL : dlerror();
    cdn_note("dlopen(%s): %s", path, h ? "ok" : e ? e : "failed");
    return h;
}

/* Keep the newer of two opened libraries (cudnnGetVersion; nothing else of it has run, so the
 * loser is closed before it loads any of its sub-libraries). */
static void *cdn_newer(void *best, size_t *best_ver, void *h) {
    if (!h) return best;
    size_t (*ver)(void) = (size_t(*)(void))dlsym(h, "cudnnGetVersion");
    size_t v = ver ? ver() : 0;
    cdn_note("  candidate version %zu", v);
    if (best && v <= *best_ver) {
        dlclose(h); /* the same file opened twice is one handle: this drops the second reference */
        return best;
    }
    if (best) dlclose(best);
    *best_ver = v;
    return h;
}

/* Every library matching a glob pattern (the pip wheels' site-packages/nvidia/cudnn/lib), the
 * newest kept in *best. */
static void *cdn_open_glob(void *best, size_t *best_ver, const char *pattern) {
    glob_t g;
    if (glob(pattern, 0, NULL, &g) == 0)
        for (size_t i = 0; i < g.gl_pathc; i++) best = cdn_newer(best, best_ver, cdn_open(g.gl_pathv[i]));
    globfree(&g);
    return best;
}

/* $OSP_CUDNN_LIB when set; else the newest of libcudnn.so.9 on the loader path and the pip wheels
 * (a python environment next to each $PATH entry, ~/.local, /usr/local, /usr). Newest because
 * features differ within 9.x (the SDPA forward takes sequence lengths in 9.19, not in 9.14), and
 * a PyTorch environment often brings a newer cuDNN than the system's. */
void *cdn_search(void) {
    const char *wheel = "lib/python3*/*-packages/nvidia/cudnn/lib/libcudnn.so.9";
    char pat[1200];
    const char *env = getenv("OSP_CUDNN_LIB");
    if (env && *env) {
        void *h = cdn_open(env);
        if (h) return h;
    }
    size_t ver = 0;
    void *h = cdn_newer(NULL, &ver, cdn_open("libcudnn.so.9"));
    const char *path = getenv("PATH");
    while (path && *path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && n < 900) {
            snprintf(pat, sizeof pat, "%.*s/../%s", (int)n, path, wheel);
            h = cdn_open_glob(h, &ver, pat);
        }
        path += n + (path[n] == ':');
    }
    const char *home = getenv("HOME");
    if (home && strlen(home) < 900) {
        snprintf(pat, sizeof pat, "%s/.local/%s", home, wheel);
        h = cdn_open_glob(h, &ver, pat);
    }
    h = cdn_open_glob(h, &ver, "/usr/local/lib/python3*/dist-packages/nvidia/cudnn/lib/libcudnn.so.9");
    h = cdn_open_glob(h, &ver, "/usr/lib/python3*/dist-packages/nvidia/cudnn/lib/libcudnn.so.9");
    return h;
}
