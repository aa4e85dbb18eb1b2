/*
 * model/cuda/options.c — the options of a CUDA backend instance (model/cuda/backend.h): defaults,
 * names and the environment overrides, which init reads once. Plain C, in every build, so the CLI
 * and the config can name GEMM modes and attention implementations without CUDA.
 */
#include "model/cuda/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *gemm_names[] = {"bf16", "fast16bf", "tf32", "fp32"};
static const char *attn_names[] = {"auto", "cudnn", "osp"};
#define NGEMM ((int)(sizeof gemm_names / sizeof gemm_names[0]))
#define NATTN ((int)(sizeof attn_names / sizeof attn_names[0]))

osp_cuda_options osp_cuda_options_default(void) {
    osp_cuda_options o;
    memset(&o, 0, sizeof o);
    o.gemm = OSP_CUDA_GEMM_BF16;
    o.act16 = true;
    o.attn = OSP_CUDA_ATTN_AUTO;
    o.deterministic = false;
    o.cudnn_pad = true;
    o.sync_each_launch = false;
    return o;
}

int osp_cuda_gemm_parse(const char *name) {
    for (int i = 0; i < NGEMM; i++)
        if (!strcmp(name, gemm_names[i])) return i;
    return -1;
}
const char *osp_cuda_gemm_name(int gemm) { return gemm >= 0 && gemm < NGEMM ? gemm_names[gemm] : "?"; }

int osp_cuda_attn_parse(const char *name) {
    for (int i = 0; i < NATTN; i++)
        if (!strcmp(name, attn_names[i])) return i;
    return -1;
}
const char *osp_cuda_attn_name(int attn) { return attn >= 0 && attn < NATTN ? attn_names[attn] : "?"; }

/* a set, non-empty variable, or NULL */
static const char *env_of(const char *name) {
    const char *e = getenv(name);
    return e && *e ? e : NULL;
}
/* the 0/1 switches: "0" turns off, any other value on */
static void env_bool(const char *name, bool *v) {
    const char *e = env_of(name);
    if (e) *v = strcmp(e, "0") != 0;
}

int osp_cuda_options_env(osp_cuda_options *o, char *err, size_t errlen) {
    const char *e;
    if ((e = env_of("OSP_CUDA_GEMM"))) {
        int g = osp_cuda_gemm_parse(e);
        if (g < 0) {
            snprintf(err, errlen, "OSP_CUDA_GEMM=%s: unknown mode (hint: bf16, fast16bf, tf32 or fp32)", e);
            return -1;
        }
        o->gemm = (osp_cuda_gemm)g;
    }
    if ((e = env_of("OSP_ATTN_IMPL"))) {
        int a = osp_cuda_attn_parse(e);
        if (a < 0) {
            snprintf(err, errlen, "OSP_ATTN_IMPL=%s: expected auto, cudnn or osp", e);
            return -1;
        }
        o->attn = (osp_cuda_attn)a;
    }
    env_bool("OSP_ACT16", &o->act16);
    env_bool("OSP_DETERMINISTIC", &o->deterministic);
    env_bool("OSP_CUDA_SYNC", &o->sync_each_launch);
    env_bool("OSP_CUDNN_PAD", &o->cudnn_pad);
    if ((e = env_of("OSP_HIF8_EXEC"))) {
        if (strcmp(e, "emulate") && strcmp(e, "fp8")) {
            snprintf(err, errlen, "OSP_HIF8_EXEC=%s: expected emulate or fp8", e);
            return -1;
        }
        o->hif8_fp8 = !strcmp(e, "fp8");
    }
    if ((e = env_of("OSP_CUDNN_LIB"))) {
        if (strlen(e) >= sizeof o->cudnn_lib) {
            snprintf(err, errlen, "OSP_CUDNN_LIB: path longer than %zu bytes", sizeof o->cudnn_lib - 1);
            return -1;
        }
        snprintf(o->cudnn_lib, sizeof o->cudnn_lib, "%s", e);
    }
    return 0;
}
