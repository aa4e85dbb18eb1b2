/*
 * model/cuda/cudnn_lib.cu — finding and opening libcudnn.so.9 for model/cuda/cudnn.cu (which loads
 * it with dlopen, so the build never needs cuDNN), and that file's verbose trace and switches.
 * Host code only.
 */
#include "model/cuda/cudnn_lib.cuh"

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

/* The first library matching a glob pattern (the pip wheels' site-packages/nvidia/cudnn/lib). */
static void *cdn_open_glob(const char *pattern) {
    glob_t g;
    void *h = NULL;
    if (glob(pattern, 0, NULL, &g) == 0)
        for (size_t i = 0; i < g.gl_pathc && !h; i++) h = cdn_open(g.gl_pathv[i]);
    globfree(&g);
    return h;
}

/* given (the option cudnn_lib, OSP_CUDNN_LIB) when not empty; else libcudnn.so.9 through the
 * loader path, else the pip wheel of a python environment next to a $PATH entry, of ~/.local,
 * /usr/local or /usr: the first found.
 * (Features differ within 9.x: the SDPA forward takes sequence lengths in 9.19, not in 9.14; a
 * machine with an older system cuDNN and a newer PyTorch wheel wants OSP_CUDNN_LIB.) */
void *cdn_search(const char *given) {
    const char *wheel = "lib/python3*/*-packages/nvidia/cudnn/lib/libcudnn.so.9";
    char pat[1200];
    void *h = NULL;
    if (given && *given && (h = cdn_open(given))) return h;
    if ((h = cdn_open("libcudnn.so.9"))) return h;
    const char *path = getenv("PATH");
    while (path && *path && !h) {
        size_t n = strcspn(path, ":");
        if (n > 0 && n < 900) {
            snprintf(pat, sizeof pat, "%.*s/../%s", (int)n, path, wheel);
            h = cdn_open_glob(pat);
        }
        path += n + (path[n] == ':');
    }
    const char *home = getenv("HOME");
    if (!h && home && strlen(home) < 900) {
        snprintf(pat, sizeof pat, "%s/.local/%s", home, wheel);
        h = cdn_open_glob(pat);
    }
    if (!h) h = cdn_open_glob("/usr/local/lib/python3*/dist-packages/nvidia/cudnn/lib/libcudnn.so.9");
    if (!h) h = cdn_open_glob("/usr/lib/python3*/dist-packages/nvidia/cudnn/lib/libcudnn.so.9");
    return h;
}
