/*
 * config.h — the resolved run configuration of osp. One struct, filled from defaults,
 * then a YAML file (libyaml), then --set key=value overrides. The schema is a table in
 * config.c (dotted key, type, field, default, help) from which parsing, validation,
 * `--set`, the printed table and the saved YAML are all generated, so they cannot drift.
 * Unknown keys, wrong types and out-of-range values are errors naming file:line.
 */
#ifndef OSP_CONFIG_H
#define OSP_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "model/wan_arch.h"

#define OSP_CFG_STR 512
#define OSP_CFG_MAXLIST 64

typedef struct {
    WAN_DIMS_UNION;                            /* dim ... patch, or .dims (model/wan_arch.h) */
    float eps;
    bool recompute;                            /* per-block activation recomputation */
    char pos_embed[16];                        /* rope | rope+sincos */
    struct {
        char mode[16];                         /* full | hybrid */
        int sparse_ratio;                      /* P */
        int num_full_blocks;                   /* K, multiple of 4 */
    } attention;
} osp_model_cfg;

typedef struct {
    char format[16];                           /* none | hif8 */
    char scaling[16];                          /* current | delayed */
    int history;                               /* amax history length (delayed) */
    float forward_target, grad_target;         /* 15, 224 */
    bool saturate;
    bool attention;                            /* fake-quantise q,k,v and dq,dk,dv */
    char hif8_exec[16];                        /* emulate | fp8 (CUDA: E4M3 tensor cores) */
    int skip_blocks[OSP_CFG_MAXLIST];          /* blocks kept unquantised */
    int n_skip_blocks;
} osp_quant_cfg;

typedef struct {
    char train[OSP_CFG_STR];                   /* HDF5 training file */
    char val[OSP_CFG_STR];                     /* HDF5 held-out file ("" = none) */
    int prefetch;                              /* batches prefetched by the reader thread */
} osp_data_cfg;

typedef struct {
    int steps, batch_size, grad_accum;
    float lr, min_lr, weight_decay, beta1, beta2, adam_eps, grad_clip, ema_decay;
    int warmup;
    char schedule[16];                         /* constant | cosine */
    char sigma_sampling[16];                   /* logit_normal | uniform */
    float logit_mean, logit_std, shift, text_dropout;
    bool deterministic; /* GPU: osp's attention backward, bit-reproducible (cuDNN's dQ uses atomics) */
    int log_every, val_every, val_batches, ckpt_every, keep_last, max_skipped;
} osp_train_cfg;

typedef struct {
    int steps;
    float shift, cfg;
    char solver[16];                           /* euler | unipc */
    int seed;
    int num_frames, height, width;             /* latent/pixel grid of generated samples */
} osp_sample_cfg;

/* options of the CUDA backend instance (model/cuda/backend.h; environment variables override) */
typedef struct {
    char gemm[16];                             /* bf16 | fast16bf | tf32 | fp32 */
    char attention[16];                        /* auto | cudnn | osp */
    bool act16;                                /* bf16 storage of GEMM/attention-only activations */
} osp_cuda_cfg;

typedef struct {
    int dp, sp, ssp;                           /* mesh dp x ssp x sp; dp 0 = world / (sp*ssp) */
    char transport[16];                        /* auto | nccl | mpi */
    char shard[16];                            /* none | optimizer | full */
    int timeout_s;                             /* a collective hung this long ends the job */
} osp_parallel_cfg;

typedef struct {
    char device[16];                           /* auto | cpu | cuda */
    int seed;
    char run_dir[OSP_CFG_STR];
    osp_cuda_cfg cuda;
    osp_model_cfg model;
    osp_quant_cfg quant;
    osp_data_cfg data;
    osp_train_cfg train;
    osp_sample_cfg sample;
    osp_parallel_cfg parallel;
    char source[OSP_CFG_STR];                  /* file the config came from ("" = defaults) */
} osp_config;

/* Fill with the built-in defaults (the tiny demo model). */
void config_defaults(osp_config *c);
/* Load YAML over the current values. Returns 0, or -1 with "file:line: message" in err. */
int config_load_yaml(osp_config *c, const char *path, char *err, size_t errlen);
/* Apply one "dotted.key=value" override. Returns 0, or -1 with a message in err. */
int config_set(osp_config *c, const char *assignment, char *err, size_t errlen);
/* Cross-field validation (e.g. num_full_blocks % 4, dim % heads). 0 or -1 + err. */
int config_validate(const osp_config *c, char *err, size_t errlen);
/* Print the resolved config as an aligned two-column table. */
void config_print(const osp_config *c, FILE *f);
/* Write the resolved config as YAML that config_load_yaml reads back identically. */
int config_save_yaml(const osp_config *c, const char *path, char *err, size_t errlen);
/* Print the documented key list (key, type, default, help) for --help output. */
void config_print_keys(FILE *f);

#endif
