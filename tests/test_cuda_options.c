/*
 * test_cuda_options.c — the options of a CUDA backend instance (model/cuda/backend.h,
 * model/cuda/options.c) and their way from the config (train/cli.c cli_cuda_options): defaults,
 * names, the environment overrides (each variable alone, bad values refused with a message naming
 * it), and the config keys cuda.* plus train.deterministic. Runs everywhere: none of it needs a
 * GPU. Where a GPU is visible it also makes an instance and checks that the options in effect
 * are the given ones with the environment's overrides on top, read once at init, that a freed
 * instance can be made again, and that the CPU backend is not a CUDA instance.
 */
#include <stdlib.h>
#include <string.h>

#include "model/cuda/backend.h"
#include "tests/testutil.h"
#include "train/cli.h"
#include "train/config.h"

static const char *env_vars[] = {"OSP_CUDA_GEMM", "OSP_ACT16",     "OSP_ATTN_IMPL", "OSP_DETERMINISTIC",
                                 "OSP_CUDA_SYNC", "OSP_CUDNN_PAD", "OSP_CUDNN_LIB"};

static void env_clear(void) {
    for (size_t i = 0; i < sizeof env_vars / sizeof env_vars[0]; i++) unsetenv(env_vars[i]);
}

static int opts_equal(const osp_cuda_options *a, const osp_cuda_options *b) {
    return a->gemm == b->gemm && a->act16 == b->act16 && a->attn == b->attn && a->deterministic == b->deterministic &&
           a->cudnn_pad == b->cudnn_pad && a->sync_each_launch == b->sync_each_launch &&
           !strcmp(a->cudnn_lib, b->cudnn_lib);
}

static void test_defaults_and_names(void) {
    osp_cuda_options o = osp_cuda_options_default();
    TU_EXPECT(o.gemm == OSP_CUDA_GEMM_BF16 && o.act16 && o.attn == OSP_CUDA_ATTN_AUTO && !o.deterministic &&
                  o.cudnn_pad && !o.sync_each_launch && o.cudnn_lib[0] == 0,
              "defaults: bf16, act16, auto, not deterministic, cudnn_pad, no sync, no library path");
    const char *g[] = {"bf16", "fast16bf", "tf32", "fp32"}, *a[] = {"auto", "cudnn", "osp"};
    for (int i = 0; i < 4; i++)
        TU_EXPECT(osp_cuda_gemm_parse(g[i]) == i && !strcmp(osp_cuda_gemm_name(i), g[i]), "gemm name %s", g[i]);
    for (int i = 0; i < 3; i++)
        TU_EXPECT(osp_cuda_attn_parse(a[i]) == i && !strcmp(osp_cuda_attn_name(i), a[i]), "attn name %s", a[i]);
    TU_EXPECT(osp_cuda_gemm_parse("fp16") == -1 && osp_cuda_attn_parse("flash") == -1 && osp_cuda_gemm_parse("") == -1,
              "unknown names give -1");
    TU_EXPECT(!strcmp(osp_cuda_gemm_name(7), "?") && !strcmp(osp_cuda_attn_name(-1), "?"), "bad values name '?'");
}

static void test_env(void) {
    char err[256];
    env_clear();
    osp_cuda_options d = osp_cuda_options_default(), o = d;
    TU_EXPECT(osp_cuda_options_env(&o, err, sizeof err) == 0 && opts_equal(&o, &d),
              "no variable set: options unchanged");
    setenv("OSP_CUDA_GEMM", "tf32", 1);
    setenv("OSP_ACT16", "0", 1);
    setenv("OSP_ATTN_IMPL", "osp", 1);
    setenv("OSP_DETERMINISTIC", "1", 1);
    setenv("OSP_CUDA_SYNC", "yes", 1);
    setenv("OSP_CUDNN_PAD", "0", 1);
    setenv("OSP_CUDNN_LIB", "/opt/cudnn/libcudnn.so.9", 1);
    o = d;
    TU_EXPECT(osp_cuda_options_env(&o, err, sizeof err) == 0, "all overrides valid");
    TU_EXPECT(o.gemm == OSP_CUDA_GEMM_TF32 && !o.act16 && o.attn == OSP_CUDA_ATTN_OSP && o.deterministic &&
                  o.sync_each_launch && !o.cudnn_pad && !strcmp(o.cudnn_lib, "/opt/cudnn/libcudnn.so.9"),
              "every override applied");
    env_clear();
    setenv("OSP_ACT16", "1", 1); /* on over a config that says off */
    o = d;
    o.act16 = false;
    TU_EXPECT(osp_cuda_options_env(&o, err, sizeof err) == 0 && o.act16, "OSP_ACT16=1 turns act16 on");
    setenv("OSP_ACT16", "", 1); /* empty: unset */
    o.act16 = false;
    TU_EXPECT(osp_cuda_options_env(&o, err, sizeof err) == 0 && !o.act16, "an empty variable overrides nothing");
    env_clear();
    setenv("OSP_CUDA_GEMM", "fp16", 1);
    o = d;
    TU_EXPECT(osp_cuda_options_env(&o, err, sizeof err) == -1 && strstr(err, "OSP_CUDA_GEMM=fp16"),
              "bad GEMM mode refused naming it: '%s'", err);
    env_clear();
    setenv("OSP_ATTN_IMPL", "flash", 1);
    TU_EXPECT(osp_cuda_options_env(&o, err, sizeof err) == -1 && strstr(err, "OSP_ATTN_IMPL=flash"),
              "bad attention implementation refused naming it: '%s'", err);
    env_clear();
    char longp[700];
    memset(longp, 'x', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    setenv("OSP_CUDNN_LIB", longp, 1);
    TU_EXPECT(osp_cuda_options_env(&o, err, sizeof err) == -1 && strstr(err, "OSP_CUDNN_LIB"),
              "an over-long library path refused: '%s'", err);
    env_clear();
}

static void test_config(void) {
    char err[256];
    osp_config c;
    config_defaults(&c);
    osp_cuda_options o = cli_cuda_options(&c), d = osp_cuda_options_default();
    TU_EXPECT(opts_equal(&o, &d), "the config's defaults are the backend's defaults");
    const char *sets[] = {"cuda.gemm=fp32", "cuda.attention=cudnn", "cuda.act16=false", "train.deterministic=true"};
    for (int i = 0; i < 4; i++) TU_EXPECT(config_set(&c, sets[i], err, sizeof err) == 0, "--set %s: %s", sets[i], err);
    o = cli_cuda_options(&c);
    TU_EXPECT(o.gemm == OSP_CUDA_GEMM_FP32 && o.attn == OSP_CUDA_ATTN_CUDNN && !o.act16 && o.deterministic,
              "cuda.* and train.deterministic reach the options");
    TU_EXPECT(config_set(&c, "cuda.gemm=fp16", err, sizeof err) == -1 && strstr(err, "bf16|fast16bf|tf32|fp32"),
              "cuda.gemm refuses an unknown mode: '%s'", err);
}

/* with a GPU only: the instance's options are the given ones plus the environment, read once */
static void test_instance(void) {
    env_clear();
    TU_EXPECT(osp_backend_cuda_options(osp_backend_cpu()) == NULL, "the CPU backend is not a CUDA instance");
    osp_cuda_options o = osp_cuda_options_default();
    o.gemm = OSP_CUDA_GEMM_FP32;
    o.deterministic = true;
    setenv("OSP_ATTN_IMPL", "osp", 1);
    const osp_backend *be = osp_backend_cuda_init(0, &o);
    unsetenv("OSP_ATTN_IMPL");
    if (!be) {
        printf("no CUDA backend or no GPU visible: the instance checks are skipped\n");
        return;
    }
    const osp_cuda_options *e = osp_backend_cuda_options(be);
    TU_EXPECT(e && e->gemm == OSP_CUDA_GEMM_FP32 && e->deterministic && e->attn == OSP_CUDA_ATTN_OSP,
              "in effect: the given options with OSP_ATTN_IMPL on top");
    setenv("OSP_CUDA_GEMM", "tf32", 1); /* after init: not read */
    TU_EXPECT(osp_backend_cuda_options(be)->gemm == OSP_CUDA_GEMM_FP32, "the environment is read once, at init");
    unsetenv("OSP_CUDA_GEMM");
    osp_cuda_options s = *e;
    s.gemm = OSP_CUDA_GEMM_BF16;
    osp_backend_cuda_set_options(be, &s);
    TU_EXPECT(osp_backend_cuda_options(be)->gemm == OSP_CUDA_GEMM_BF16, "set_options replaces them");
    osp_backend_cuda_free(be);
    be = osp_backend_cuda_init(0, NULL);
    TU_EXPECT(be && osp_backend_cuda_options(be)->gemm == OSP_CUDA_GEMM_BF16, "a freed instance can be made again");
    osp_backend_cuda_free(be);
}

int main(void) {
    test_defaults_and_names();
    test_env();
    test_config();
    test_instance();
    return tu_summary("test_cuda_options");
}
