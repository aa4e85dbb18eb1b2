/*
 * config.c — the run configuration: one static schema table (dotted key, type, struct
 * field, default, help) from which defaults, YAML loading (libyaml document API),
 * `--set key=value` overrides, validation, the printed table, the saved YAML and the
 * `--help` key list are all generated. Adding a setting is one table line plus a field in
 * config.h; nothing else can drift out of step.
 *
 * Errors for bad input are one line: "FILE:LINE: message" for YAML, "--set KEY: message"
 * for overrides, "KEY: message" for cross-field validation. Loading and setting work on a
 * copy, so on error the caller's struct is left untouched.
 */
#include "train/config.h"
#include "core/common.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

/* ---------------------------------------------------------------- the schema -- */

typedef enum { CFG_INT, CFG_FLOAT, CFG_BOOL, CFG_STR, CFG_ENUM, CFG_INT_LIST, CFG_INT3 } cfg_type;

typedef struct {
    const char *key; /* dotted path; keys of one section must be contiguous */
    cfg_type type;
    size_t off;          /* offsetof(osp_config, field) */
    size_t size;         /* sizeof the field (buffer size for strings, capacity for lists) */
    size_t count_off;    /* CFG_INT_LIST: offsetof the element count */
    const char *allowed; /* CFG_ENUM: "a|b|c" */
    const char *def;     /* default, written as it would be passed to --set */
    const char *range;   /* numbers and list items: ">0", ">=1", "[0,1)" or NULL (any) */
    const char *help;
} cfg_key;

/* The _Generic factor is 1 when the field has the declared C type and a compile error
 * otherwise, so a type change in config.h cannot silently reinterpret memory. */
#define F_(f) (((osp_config *)0)->f)
#define E_(t, ct, k, f, cnt, a, d, r, h) \
    { k, t, offsetof(osp_config, f), sizeof(F_(f)) * _Generic(F_(f), ct : 1), cnt, a, d, r, h }
#define K_INT(k, f, d, r, h) E_(CFG_INT, int, k, f, 0, NULL, d, r, h)
#define K_FLT(k, f, d, r, h) E_(CFG_FLOAT, float, k, f, 0, NULL, d, r, h)
#define K_BOOL(k, f, d, h) E_(CFG_BOOL, _Bool, k, f, 0, NULL, d, NULL, h)
#define K_STR(k, f, d, h) E_(CFG_STR, char *, k, f, 0, NULL, d, NULL, h)
#define K_ENUM(k, f, a, d, h) E_(CFG_ENUM, char *, k, f, 0, a, d, NULL, h)
#define K_INT3(k, f, d, r, h) E_(CFG_INT3, int *, k, f, 0, NULL, d, r, h)
#define K_LIST(k, f, n, d, r, h) E_(CFG_INT_LIST, int *, k, f, offsetof(osp_config, n), NULL, d, r, h)

/* The defaults are the tiny demo on the synthetic shapes world (pixel video 3x8x32x32). */
static const cfg_key KEYS[] = {
    K_ENUM("device", device, "auto|cpu|cuda", "auto", "compute backend (auto = cuda when a GPU is present)"),
    K_INT("seed", seed, "0", NULL, "seed of parameter init, data order and noise"),
    K_STR("run_dir", run_dir, "runs/demo", "directory for checkpoints, logs and samples"),

    K_ENUM("cuda.gemm", cuda.gemm, "bf16|fast16bf|tf32|fp32", "bf16",
           "CUDA GEMM precision: bf16 operands (fp32 accumulation), or fp32 ones as fast16bf/tf32/fp32 compute"),
    K_ENUM("cuda.attention", cuda.attention, "auto|cudnn|osp", "auto",
           "CUDA attention: cuDNN where it serves (auto), cuDNN or stop (cudnn), osp's kernels (osp)"),
    K_BOOL("cuda.act16", cuda.act16, "true", "CUDA: store GEMM/attention-only activations bf16 (with cuda.gemm bf16)"),

    K_INT("model.dim", model.dim, "64", "[1,65536]", "hidden size d"),
    K_INT("model.ffn_dim", model.ffn_dim, "256", "[1,262144]", "FFN inner size"),
    K_INT("model.num_heads", model.num_heads, "2", "[0,1024]", "attention heads (0 = dim/128, at least 1)"),
    K_INT("model.num_layers", model.num_layers, "4", "[1,1024]", "transformer blocks"),
    K_INT("model.in_channels", model.in_channels, "3", "[1,4096]", "channels of the input video/latent"),
    K_INT("model.out_channels", model.out_channels, "3", "[1,4096]", "channels of the predicted velocity"),
    K_INT("model.text_dim", model.text_dim, "32", "[1,65536]", "width of the text embeddings"),
    K_INT("model.text_len", model.text_len, "8", "[1,65536]", "text tokens per sample"),
    K_INT("model.freq_dim", model.freq_dim, "64", "[2,65536]", "sinusoidal timestep embedding size (even)"),
    K_INT3("model.patch", model.patch, "[1,4,4]", "[1,64]", "patch size (pt, ph, pw)"),
    K_FLT("model.eps", model.eps, "1e-6", ">0", "epsilon of the layer/RMS norms"),
    K_BOOL("model.recompute", model.recompute, "false", "recompute block activations in backward"),
    K_ENUM("model.pos_embed", model.pos_embed, "rope|rope+sincos", "rope",
           "positions: RoPE (Wan2.1), or also a fixed sin-cos table of absolute positions"),
    K_ENUM("model.attention.mode", model.attention.mode, "full|hybrid", "full",
           "full attention, or hybrid full/Skiparse"),
    K_INT("model.attention.sparse_ratio", model.attention.sparse_ratio, "2", "[1,32]",
          "Skiparse ratio P per spatial axis (hybrid: >= 2)"),
    K_INT("model.attention.num_full_blocks", model.attention.num_full_blocks, "0", "[0,1024]",
          "full blocks F, F/2 at each end (hybrid: multiple of 4)"),

    K_ENUM("quant.format", quant.format, "none|hif8", "none", "fake-quantisation format of GEMM inputs"),
    K_ENUM("quant.scaling", quant.scaling, "current|delayed", "current", "per-tensor scale from this or past amax"),
    K_INT("quant.history", quant.history, "16", "[1,65536]", "amax history length (delayed scaling)"),
    K_FLT("quant.forward_target", quant.forward_target, "15", ">0", "amax target of forward tensors"),
    K_FLT("quant.grad_target", quant.grad_target, "224", ">0", "amax target of gradient tensors"),
    K_BOOL("quant.saturate", quant.saturate, "false", "clamp out-of-range values instead of inf"),
    K_BOOL("quant.attention", quant.attention, "false", "also fake-quantise q,k,v and dq,dk,dv"),
    K_ENUM("quant.hif8_exec", quant.hif8_exec, "emulate|fp8", "emulate",
           "CUDA: HiF8 GEMMs as bf16 emulation or on E4M3 tensor cores (Hopper; else emulation)"),
    K_LIST("quant.skip_blocks", quant.skip_blocks, quant.n_skip_blocks, "[]", "[0,1023]", "blocks kept unquantised"),

    K_STR("data.train", data.train, "data/shapes_train.h5", "HDF5 training file"),
    K_STR("data.val", data.val, "data/shapes_val.h5", "HDF5 held-out file (\"\" = none)"),
    K_INT("data.prefetch", data.prefetch, "2", "[1,64]", "batches prefetched by the reader thread"),

    K_INT("train.steps", train.steps, "1000", "[0,1000000000]", "optimizer steps"),
    K_INT("train.batch_size", train.batch_size, "8", "[1,65536]", "global samples per micro-step"),
    K_INT("train.grad_accum", train.grad_accum, "1", "[1,65536]", "micro-steps per optimizer step"),
    K_FLT("train.lr", train.lr, "1e-3", ">=0", "peak learning rate"),
    K_FLT("train.min_lr", train.min_lr, "1e-4", ">=0", "final learning rate of the cosine schedule"),
    K_FLT("train.weight_decay", train.weight_decay, "0.01", ">=0", "AdamW decoupled weight decay"),
    K_FLT("train.beta1", train.beta1, "0.9", "[0,1)", "AdamW beta1"),
    K_FLT("train.beta2", train.beta2, "0.999", "[0,1)", "AdamW beta2"),
    K_FLT("train.adam_eps", train.adam_eps, "1e-8", ">0", "AdamW epsilon"),
    K_FLT("train.grad_clip", train.grad_clip, "1.0", ">=0", "global gradient-norm clip (0 = off)"),
    K_FLT("train.ema_decay", train.ema_decay, "0.999", "[0,1)", "EMA decay of the weights (0 = no EMA)"),
    K_INT("train.warmup", train.warmup, "50", ">=0", "linear warm-up steps"),
    K_ENUM("train.schedule", train.schedule, "constant|cosine", "cosine", "learning-rate schedule after warm-up"),
    K_ENUM("train.sigma_sampling", train.sigma_sampling, "logit_normal|uniform", "logit_normal",
           "distribution of the training noise level"),
    K_FLT("train.logit_mean", train.logit_mean, "0", NULL, "mean of logit-normal sigma"),
    K_FLT("train.logit_std", train.logit_std, "1", ">0", "std of logit-normal sigma"),
    K_FLT("train.shift", train.shift, "1.0", ">0", "sigma shift s: s*t/(1+(s-1)*t)"),
    K_BOOL("train.deterministic", train.deterministic, "false",
           "GPU: bit-reproducible steps (osp's attention backward instead of cuDNN's)"),
    K_FLT("train.text_dropout", train.text_dropout, "0.1", "[0,1)",
          "probability a sample's text embedding is zeroed (enables classifier-free guidance)"),
    K_INT("train.log_every", train.log_every, "10", ">=1", "steps between log lines"),
    K_INT("train.val_every", train.val_every, "100", ">=0", "steps between validations (0 = off)"),
    K_INT("train.val_batches", train.val_batches, "4", "[0,1000000]", "batches per validation"),
    K_INT("train.ckpt_every", train.ckpt_every, "250", ">=0", "steps between checkpoints (0 = only at the end)"),
    K_INT("train.keep_last", train.keep_last, "2", "[1,10000]", "checkpoints kept on disk"),
    K_INT("train.max_skipped", train.max_skipped, "10", ">=0", "non-finite steps skipped before aborting"),

    K_INT("sample.steps", sample.steps, "30", "[1,100000]", "solver steps"),
    K_FLT("sample.shift", sample.shift, "1.0", ">0", "sigma shift of the sampling schedule"),
    K_FLT("sample.cfg", sample.cfg, "3.0", ">=0", "classifier-free guidance scale"),
    K_ENUM("sample.solver", sample.solver, "euler|unipc", "euler", "ODE solver"),
    K_INT("sample.seed", sample.seed, "0", NULL, "seed of the initial noise"),
    K_INT("sample.num_frames", sample.num_frames, "8", "[1,65536]", "frames of the generated grid"),
    K_INT("sample.height", sample.height, "32", "[1,65536]", "height of the generated grid"),
    K_INT("sample.width", sample.width, "32", "[1,65536]", "width of the generated grid"),

    K_INT("parallel.dp", parallel.dp, "0", "[0,65536]", "data-parallel ranks (0 = world size / (sp x ssp))"),
    K_INT("parallel.sp", parallel.sp, "1", "[1,1024]", "Ulysses sequence-parallel ranks (must divide the heads)"),
    K_INT("parallel.ssp", parallel.ssp, "1", "[1,1024]", "Skiparse sequence-parallel ranks (must divide P^2)"),
    K_ENUM("parallel.transport", parallel.transport, "auto|nccl|mpi", "auto",
           "collectives: NCCL for GPU tensors, MPI (host memory); auto picks"),
    K_ENUM("parallel.shard", parallel.shard, "none|optimizer|full", "none",
           "sharded state over dp ranks: none, optimizer (ZeRO-1), full (ZeRO-3)"),
    K_INT("parallel.timeout_s", parallel.timeout_s, "300", "[0,604800]",
          "seconds a collective may wait before the job is aborted (0 = never)"),
};
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

/* ------------------------------------------------------------------ helpers -- */

static void *fld(osp_config *c, const cfg_key *k) { return (char *)c + k->off; }
static const void *cfld(const osp_config *c, const cfg_key *k) { return (const char *)c + k->off; }

static const cfg_key *key_find(const char *name) {
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].key, name) == 0) return &KEYS[i];
    return NULL;
}

/* "model" and "model.attention" are sections: some key starts with "name." */
static bool key_is_section(const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < NKEYS; i++)
        if (strncmp(KEYS[i].key, name, n) == 0 && KEYS[i].key[n] == '.') return true;
    return false;
}

static const char *type_name(const cfg_key *k) {
    switch (k->type) {
    case CFG_INT: return "integer";
    case CFG_FLOAT: return "number";
    case CFG_BOOL: return "true or false";
    case CFG_STR: return "string";
    case CFG_ENUM: return k->allowed;
    case CFG_INT_LIST: return "list of integers";
    case CFG_INT3: return "list of 3 integers";
    }
    return "?";
}

/* Writes " (did you mean 'X'?)" or "". A key with the same last component in another
 * section wins (model.steps -> train.steps), else the closest spelling among all keys and
 * sections if it is close enough. */
static void key_suggest(const char *name, char *out, size_t outlen) {
    const char *leaf = strrchr(name, '.');
    leaf = leaf ? leaf + 1 : name;
    for (int i = 0; i < NKEYS; i++) {
        const char *kl = strrchr(KEYS[i].key, '.');
        if (strcmp(kl ? kl + 1 : KEYS[i].key, leaf) == 0) {
            snprintf(out, outlen, " (did you mean '%s'?)", KEYS[i].key);
            return;
        }
    }
    size_t n = strlen(name), bl = 0;
    int best = 1 << 20;
    const char *bk = NULL;
    for (int i = 0; i < NKEYS; i++) {
        const char *k = KEYS[i].key;
        for (size_t l = 1; l <= strlen(k); l++) {
            if (k[l] != '.' && k[l] != '\0') continue;
            int d = osp_edit_distance(name, n, k, l);
            if (d < best) best = d, bk = k, bl = l;
        }
    }
    if (bk && (best <= 2 || (size_t)best * 4 <= n)) {
        snprintf(out, outlen, " (did you mean '%.*s'?)", (int)bl, bk);
        return;
    }
    /* an abbreviation inside the same section: model.attn -> model.attention */
    size_t pl = (size_t)(leaf - name), ll = strlen(leaf);
    for (int i = 0; i < NKEYS && ll >= 3; i++) {
        const char *k = KEYS[i].key, *c = k + pl, *q = leaf;
        if (strncmp(k, name, pl) != 0) continue;
        for (; *c && *c != '.' && *q; c++) q += *c == *q;
        if (!*q && k[pl] == leaf[0]) {
            snprintf(out, outlen, " (did you mean '%.*s'?)", (int)(strcspn(k + pl, ".") + pl), k);
            return;
        }
    }
    out[0] = '\0';
}

/* Format a one-line error into buf; returns -1 so callers can `return fail(...)`. */
static int fail(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *buf, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return -1;
}

/* A user value echoed back in a message: one line, bounded. */
static const char *shown(const char *s, char *buf, size_t len) {
    size_t j = 0, i = 0;
    for (; s[i] && j + 4 < len && i < 60; i++) buf[j++] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    if (s[i] && len >= 4) buf[j++] = '.', buf[j++] = '.', buf[j++] = '.';
    buf[j] = '\0';
    return buf;
}

/* Well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). */
static bool utf8_valid(const char *str) {
    const unsigned char *p = (const unsigned char *)str;
    while (*p) {
        unsigned c = *p, n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 9;
        if (n == 9) return false;
        unsigned cp = n == 0 ? c : n == 1 ? c & 0x1f : n == 2 ? c & 0x0f : c & 0x07;
        for (unsigned i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += n + 1;
    }
    return true;
}

/* Shortest %g that reads back as the same float, so saved configs round-trip exactly. */
static void fmt_float(float v, char *buf, size_t len) {
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, len, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    if (isfinite(v) && !strpbrk(buf, ".eEn")) strncat(buf, ".0", len - strlen(buf) - 1);
}

/* ---------------------------------------------------------- typed parsing -- */
/* Each parser reads one text value. `fk` is " for KEY" (YAML) or "" (--set, where the
 * key already leads the message); errors go to msg without any location prefix. */

static int parse_int(const char *s, const char *fk, int *out, char *msg, size_t ml) {
    char b[80];
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno) {
        /* also accept integral numbers in float notation (steps: 1e5) */
        double d = strtod(s, &end);
        if (end == s || *end || !isfinite(d) || d != floor(d))
            return fail(msg, ml, "expected integer%s, got '%s'", fk, shown(s, b, sizeof b));
        if (d < INT_MIN || d > INT_MAX)
            v = d < 0 ? LONG_MIN : LONG_MAX;
        else
            v = (long)d;
    }
    if (v < INT_MIN || v > INT_MAX) return fail(msg, ml, "integer%s out of range, got '%s'", fk, shown(s, b, sizeof b));
    *out = (int)v;
    return 0;
}

static int parse_float(const char *s, const char *fk, float *out, char *msg, size_t ml) {
    char b[80];
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v))
        return fail(msg, ml, "expected %snumber%s, got '%s'", end != s && !*end ? "finite " : "", fk,
                    shown(s, b, sizeof b));
    if (fabs(v) > FLT_MAX) return fail(msg, ml, "number%s out of float range, got '%s'", fk, shown(s, b, sizeof b));
    *out = (float)v;
    return 0;
}

static int parse_bool(const char *s, const char *fk, bool *out, char *msg, size_t ml) {
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = true, 0;
        if (strcasecmp(s, no[i]) == 0) return *out = false, 0;
    }
    char b[80];
    return fail(msg, ml, "expected true or false%s, got '%s'", fk, shown(s, b, sizeof b));
}

static bool enum_allows(const char *allowed, const char *s) {
    size_t n = strlen(s);
    for (const char *p = allowed; *p;) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == n && strncmp(p, s, n) == 0) return true;
        if (!bar) break;
        p = bar + 1;
    }
    return false;
}

/* Range strings: ">0", ">=1", "[0,1)". Checked at parse time (so YAML errors carry the
 * line) and again in config_validate (for structs built in code). */
static bool range_ok(const char *r, double v) {
    if (!r) return true;
    if (r[0] == '>') return r[1] == '=' ? v >= atof(r + 2) : v > atof(r + 1);
    char *e;
    double lo = strtod(r + 1, &e), hi = strtod(e + 1, &e);
    return (r[0] == '[' ? v >= lo : v > lo) && (*e == ']' ? v <= hi : v < hi);
}

/* "KEY must be >= 1, got 0" (fk = " for KEY") or "must be >= 1, got 0" (fk = ""). */
static int range_check(const cfg_key *k, double v, const char *fk, char *msg, size_t ml) {
    if (range_ok(k->range, v)) return 0;
    const char *r = k->range;
    int op = r[0] != '>' ? 0 : r[1] == '=' ? 2 : 1;
    char got[64]; /* an integer key's value as an integer, not as 9 significant digits */
    if (k->type != CFG_FLOAT && fabs(v) < 1e15) snprintf(got, sizeof got, "%.0f", v);
    else snprintf(got, sizeof got, "%.9g", v);
    return fail(msg, ml, "%s%smust be %s%.*s%s%s, got %s", fk[0] ? fk + 5 : "", fk[0] ? " " : "", op ? "" : "in ", op,
                r, op ? " " : "", r + op, got);
}

/* Apply one scalar text to a non-list key of c. */
static int apply_scalar(osp_config *c, const cfg_key *k, const char *s, const char *fk, char *msg, size_t ml) {
    char b[80];
    int iv = 0;
    float fv = 0;
    switch (k->type) {
    case CFG_INT:
        if (parse_int(s, fk, &iv, msg, ml) || range_check(k, iv, fk, msg, ml)) return -1;
        *(int *)fld(c, k) = iv;
        return 0;
    case CFG_FLOAT:
        if (parse_float(s, fk, &fv, msg, ml) || range_check(k, fv, fk, msg, ml)) return -1;
        *(float *)fld(c, k) = fv;
        return 0;
    case CFG_BOOL: return parse_bool(s, fk, (bool *)fld(c, k), msg, ml);
    case CFG_ENUM:
        if (!enum_allows(k->allowed, s))
            return fail(msg, ml, "expected one of %s%s, got '%s'", k->allowed, fk, shown(s, b, sizeof b));
        /* fall through - an enum is stored as its string */
    case CFG_STR:
        if (!utf8_valid(s)) /* the saved config.yaml must load back, and YAML is UTF-8 */
            return fail(msg, ml, "expected UTF-8 text%s, got '%s'", fk, shown(s, b, sizeof b));
        if (strlen(s) >= k->size)
            return fail(msg, ml, "string%s too long (%zu bytes, at most %zu)", fk, strlen(s), k->size - 1);
        memset(fld(c, k), 0, k->size); /* zero the tail so configs compare with memcmp */
        memcpy(fld(c, k), s, strlen(s));
        return 0;
    default: break;
    }
    return fail(msg, ml, "expected %s%s", type_name(k), fk);
}

/* Store a parsed int list into a list key. */
static int apply_list(osp_config *c, const cfg_key *k, const int *v, int n, const char *fk, char *msg, size_t ml) {
    int cap = (int)(k->size / sizeof(int));
    if (k->type == CFG_INT3 && n != 3) return fail(msg, ml, "expected 3 integers%s, got %d", fk, n);
    if (n > cap) return fail(msg, ml, "too many values%s (%d, at most %d)", fk, n, cap);
    for (int i = 0; i < n; i++)
        if (range_check(k, v[i], fk, msg, ml)) return -1;
    int *dst = (int *)fld(c, k);
    memset(dst, 0, k->size);
    memcpy(dst, v, (size_t)n * sizeof(int));
    if (k->type == CFG_INT_LIST) *(int *)((char *)c + k->count_off) = n;
    return 0;
}

/* A list written as text: "1,2,2", "[1, 2, 2]", "1 2 2", "[]" or "". */
static int apply_list_text(osp_config *c, const cfg_key *k, const char *s, const char *fk, char *msg, size_t ml) {
    char buf[1024], b[80], *save = NULL;
    int v[OSP_CFG_MAXLIST + 1], n = 0;
    size_t len = strlen(s);
    if (len >= sizeof buf) return fail(msg, ml, "list%s too long", fk);
    memcpy(buf, s, len + 1);
    while (len && isspace((unsigned char)buf[len - 1])) buf[--len] = '\0';
    char *p = buf + strspn(buf, " \t");
    if (*p == '[') {
        if (buf[len - 1] != ']' || p == buf + len - 1)
            return fail(msg, ml, "expected %s%s, got '%s' (unclosed '[')", type_name(k), fk, shown(s, b, sizeof b));
        p++, buf[len - 1] = '\0';
    }
    for (char *t = strtok_r(p, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save), n++)
        if (n <= OSP_CFG_MAXLIST && parse_int(t, fk, &v[n], msg, ml)) return -1;
    return apply_list(c, k, v, n, fk, msg, ml); /* reports a count over capacity */
}

static int apply_text(osp_config *c, const cfg_key *k, const char *s, const char *fk, char *msg, size_t ml) {
    if (k->type == CFG_INT_LIST || k->type == CFG_INT3) return apply_list_text(c, k, s, fk, msg, ml);
    return apply_scalar(c, k, s, fk, msg, ml);
}

/* The sections must be contiguous in the table (the YAML writer opens each once). */
static void table_check(void) {
    static bool done = false;
    if (done) return;
    for (int i = 0; i < NKEYS; i++) {
        const cfg_key *k = &KEYS[i];
        OSP_CHECK(k->type != CFG_INT3 || k->size == 3 * sizeof(int), "CFG_INT3 field must be int[3]");
        for (int j = i + 2; j < NKEYS; j++) {
            const char *a = KEYS[i].key, *b = KEYS[j].key, *m = KEYS[j - 1].key;
            const char *da = strrchr(a, '.');
            size_t sa = da ? (size_t)(da - a) : 0;
            bool same = sa && strncmp(a, b, sa) == 0 && b[sa] == '.';
            bool mid = sa && strncmp(a, m, sa) == 0 && m[sa] == '.';
            OSP_CHECK(!same || mid, "config keys of one section must be contiguous in KEYS");
        }
    }
    done = true;
}

void config_defaults(osp_config *c) {
    table_check();
    memset(c, 0, sizeof *c);
    char msg[256];
    for (int i = 0; i < NKEYS; i++) {
        int rc = apply_text(c, &KEYS[i], KEYS[i].def, "", msg, sizeof msg);
        if (rc) osp_die("internal error: the built-in default of %s does not parse: %s", KEYS[i].key, msg);
    }
}

/* ------------------------------------------------------------- YAML loading -- */

typedef struct {
    yaml_document_t *doc;
    const char *path;
    osp_config *c;
    int seen_line[NKEYS]; /* line of each key set by this file, 0 = not yet */
    char *err;
    size_t errlen;
} yaml_ctx;

static int yerr(yaml_ctx *x, const yaml_node_t *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int yerr(yaml_ctx *x, const yaml_node_t *at, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(x->err, x->errlen, "%s:%d: %s", x->path, (int)at->start_mark.line + 1, msg);
    return -1;
}

static bool scalar_is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* A YAML sequence into a list key; an item error names the item's own line. */
static int yaml_apply_seq(yaml_ctx *x, const cfg_key *k, const yaml_node_t *kn, const yaml_node_t *seq,
                          const char *fk) {
    int v[OSP_CFG_MAXLIST + 1], n = 0;
    char msg[512];
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        const yaml_node_t *item = yaml_document_get_node(x->doc, *it);
        if (item->type != YAML_SCALAR_NODE)
            return yerr(x, item, "expected %s%s, got a nested %s", type_name(k), fk,
                        item->type == YAML_MAPPING_NODE ? "mapping" : "list");
        if (n <= OSP_CFG_MAXLIST && parse_int((const char *)item->data.scalar.value, fk, &v[n], msg, sizeof msg))
            return yerr(x, item, "%s", msg);
        n++;
    }
    return apply_list(x->c, k, v, n, fk, msg, sizeof msg) ? yerr(x, kn, "%s", msg) : 0;
}

static int yaml_walk(yaml_ctx *x, const yaml_node_t *map, const char *prefix) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = yaml_document_get_node(x->doc, p->key);
        const yaml_node_t *vn = yaml_document_get_node(x->doc, p->value);
        if (kn->type != YAML_SCALAR_NODE)
            return yerr(x, kn, "a key must be a plain name, got a %s",
                        kn->type == YAML_MAPPING_NODE ? "mapping" : "list");
        const char *name = (const char *)kn->data.scalar.value;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            const yaml_node_t *qk = yaml_document_get_node(x->doc, q->key);
            if (qk->type == YAML_SCALAR_NODE && strcmp((const char *)qk->data.scalar.value, name) == 0)
                return yerr(x, kn, "duplicate key '%s%s%s' (first at line %d)", prefix, *prefix ? "." : "", name,
                            (int)qk->start_mark.line + 1);
        }
        char dotted[300], sug[300], fk[320], b[80];
        if (strlen(prefix) + strlen(name) + 2 > sizeof dotted)
            return yerr(x, kn, "unknown key '%s'", shown(name, b, sizeof b));
        size_t np = strlen(prefix);
        memcpy(dotted, prefix, np);
        if (np) dotted[np++] = '.';
        strcpy(dotted + np, name);
        snprintf(fk, sizeof fk, " for %s", dotted);
        const cfg_key *k = key_find(dotted);
        bool section = !k && key_is_section(dotted);
        if (!k && !section) {
            key_suggest(dotted, sug, sizeof sug);
            return yerr(x, kn, "unknown key '%s'%s", dotted, sug);
        }
        if (section) {
            if (vn->type == YAML_MAPPING_NODE) {
                if (yaml_walk(x, vn, dotted)) return -1;
            } else if (!scalar_is_null(vn)) { /* "quant:" with nothing under it is fine */
                return yerr(x, kn, "%s is a section (a mapping of keys), got %s", dotted,
                            vn->type == YAML_SEQUENCE_NODE ? "a list"
                                                           : shown((const char *)vn->data.scalar.value, b, sizeof b));
            }
            continue;
        }
        int ki = (int)(k - KEYS);
        if (x->seen_line[ki]) /* the same key reached twice, e.g. via an alias */
            return yerr(x, kn, "duplicate key '%s' (first at line %d)", dotted, x->seen_line[ki]);
        x->seen_line[ki] = (int)kn->start_mark.line + 1;
        bool is_list = k->type == CFG_INT_LIST || k->type == CFG_INT3;
        char msg[512];
        if (vn->type == YAML_MAPPING_NODE) return yerr(x, kn, "expected %s%s, got a mapping", type_name(k), fk);
        if (vn->type == YAML_SEQUENCE_NODE) {
            if (!is_list) return yerr(x, kn, "expected %s%s, got a list", type_name(k), fk);
            if (yaml_apply_seq(x, k, kn, vn, fk)) return -1;
            continue;
        }
        const char *s = (const char *)vn->data.scalar.value;
        if (scalar_is_null(vn)) {
            if (k->type == CFG_STR)
                s = ""; /* "val:" or "val: null" = no file */
            else if (k->type == CFG_INT_LIST)
                s = "[]"; /* "skip_blocks:" = empty list */
            else
                return yerr(x, kn, "expected %s%s, got no value", type_name(k), fk);
        } else if (is_list) {
            return yerr(x, kn, "expected %s%s (e.g. [1, 2]), got '%s'", type_name(k), fk, shown(s, b, sizeof b));
        }
        if (apply_text(x->c, k, s, fk, msg, sizeof msg)) return yerr(x, kn, "%s", msg);
    }
    return 0;
}

/* libyaml's own diagnosis: the problem at its line, plus what it was parsing and where. */
static int yaml_problem(const yaml_parser_t *p, const char *path, char *err, size_t errlen) {
    char ctx[160] = "";
    if (p->context) snprintf(ctx, sizeof ctx, " %s at line %d", p->context, (int)p->context_mark.line + 1);
    return fail(err, errlen, "%s:%d: malformed YAML: %s%s", path, (int)p->problem_mark.line + 1,
                p->problem ? p->problem : "parse error", ctx);
}

int config_load_yaml(osp_config *c, const char *path, char *err, size_t errlen) {
    struct stat st;
    /* stat first: opening a FIFO (or a device) for reading can block forever */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: cannot open (not a regular file)", path);
        return -1;
    }
    FILE *f = fopen(path, "rb");
    if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: cannot open (%s)", path, f ? "not a regular file" : strerror(errno));
        if (f) fclose(f);
        return -1;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return fail(err, errlen, "%s: cannot initialise the YAML parser", path);
    }
    yaml_parser_set_input_file(&parser, f);
    int rc = 0;
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_problem(&parser, path, err, errlen);
        yaml_parser_delete(&parser);
        fclose(f);
        return -1;
    }
    osp_config tmp = *c;
    yaml_ctx x = {.doc = &doc, .path = path, .c = &tmp, .err = err, .errlen = errlen};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || scalar_is_null(root)) {
        /* empty file (or only comments): the defaults stand */
    } else if (root->type != YAML_MAPPING_NODE) {
        rc = yerr(&x, root, "the top level must be a mapping of keys (e.g. 'model:'), got a %s",
                  root->type == YAML_SEQUENCE_NODE ? "list" : "single value");
    } else {
        rc = yaml_walk(&x, root, "");
    }
    if (rc == 0) { /* a second document would be silently ignored: refuse it */
        yaml_document_t doc2;
        if (!yaml_parser_load(&parser, &doc2)) {
            rc = yaml_problem(&parser, path, err, errlen);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&doc2);
            if (r2) rc = yerr(&x, r2, "a config file holds one YAML document; found a second");
            yaml_document_delete(&doc2);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    if (rc == 0) {
        memset(tmp.source, 0, sizeof tmp.source);
        snprintf(tmp.source, sizeof tmp.source, "%s", path);
        *c = tmp;
    }
    return rc;
}

/* --------------------------------------------------------------- --set k=v -- */

int config_set(osp_config *c, const char *assignment, char *err, size_t errlen) {
    char key[300], sug[300], msg[512], b[80];
    const char *eq = strchr(assignment, '=');
    if (!eq) return fail(err, errlen, "--set '%s': expected key=value", shown(assignment, b, sizeof b));
    const char *ks = assignment, *ke = eq;
    while (ks < ke && isspace((unsigned char)*ks)) ks++;
    while (ke > ks && isspace((unsigned char)ke[-1])) ke--;
    if ((size_t)(ke - ks) >= sizeof key || ke == ks)
        return fail(err, errlen, "--set '%s': expected key=value", shown(assignment, b, sizeof b));
    memcpy(key, ks, (size_t)(ke - ks));
    key[ke - ks] = '\0';
    const cfg_key *k = key_find(key);
    if (!k) {
        if (key_is_section(key)) {
            snprintf(err, errlen, "--set %s: is a section; set one of its keys (osp train --help lists them)", key);
        } else {
            key_suggest(key, sug, sizeof sug);
            snprintf(err, errlen, "--set %s: unknown key%s", key, sug);
        }
        return -1;
    }
    /* trim the value, except for strings where spaces may be meant */
    char val[OSP_CFG_STR + 8];
    const char *vs = eq + 1;
    if (strlen(vs) >= sizeof val) return fail(err, errlen, "--set %s: value too long (%zu bytes)", key, strlen(vs));
    if (k->type != CFG_STR)
        while (isspace((unsigned char)*vs)) vs++;
    strcpy(val, vs);
    if (k->type != CFG_STR)
        for (size_t n = strlen(val); n && isspace((unsigned char)val[n - 1]);) val[--n] = '\0';
    osp_config tmp = *c;
    if (apply_text(&tmp, k, val, "", msg, sizeof msg)) return fail(err, errlen, "--set %s: %s", key, msg);
    *c = tmp;
    return 0;
}

/* -------------------------------------------------------------- validation -- */

static int verr(const osp_config *c, char *err, size_t errlen, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int verr(const osp_config *c, char *err, size_t errlen, const char *key, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (memchr(c->source, 0, sizeof c->source) && c->source[0])
        return fail(err, errlen, "%s: %s: %s", c->source, key, msg);
    return fail(err, errlen, "%s: %s", key, msg);
}

#define REQ(cond, key, ...)                                         \
    do {                                                            \
        if (!(cond)) return verr(c, err, errlen, key, __VA_ARGS__); \
    } while (0)

int config_validate(const osp_config *c, char *err, size_t errlen) {
    char msg[512];
    /* per-key checks that the parsers already apply, repeated for structs built in code */
    for (int i = 0; i < NKEYS; i++) {
        const cfg_key *k = &KEYS[i];
        const void *p = cfld(c, k);
        int n = k->type == CFG_INT3 ? 3 : k->type == CFG_INT_LIST ? *(const int *)((const char *)c + k->count_off) : 0;
        if (k->type == CFG_FLOAT) REQ(isfinite(*(const float *)p), k->key, "must be a finite number");
        if (k->type == CFG_INT && range_check(k, *(const int *)p, "", msg, sizeof msg)) REQ(0, k->key, "%s", msg);
        if (k->type == CFG_FLOAT && range_check(k, *(const float *)p, "", msg, sizeof msg)) REQ(0, k->key, "%s", msg);
        if (k->type == CFG_STR || k->type == CFG_ENUM) REQ(memchr(p, 0, k->size), k->key, "string not terminated");
        if (k->type == CFG_ENUM)
            REQ(enum_allows(k->allowed, p), k->key, "must be one of %s, got '%s'", k->allowed, (const char *)p);
        REQ(n >= 0 && n <= (int)(k->size / sizeof(int)), k->key, "list length %d out of range", n);
        for (int j = 0; j < n; j++)
            if (range_check(k, ((const int *)p)[j], "", msg, sizeof msg)) REQ(0, k->key, "%s", msg);
    }
    /* cross-field rules */
    const osp_model_cfg *m = &c->model;
    REQ(c->run_dir[0], "run_dir", "must not be empty");
    int heads = m->num_heads ? m->num_heads : wan_default_heads(m->dim);
    REQ(m->dim % heads == 0, "model.num_heads", "model.dim %d is not divisible by %d heads%s", m->dim, heads,
        m->num_heads ? "" : " (num_heads 0 = dim/128)");
    int hd = m->dim / heads;
    REQ(hd % 2 == 0 && hd >= 6, "model.num_heads",
        "head dim model.dim/num_heads = %d must be even and >= 6 (3D RoPE splits it over t, h, w)", hd);
    REQ(m->freq_dim % 2 == 0, "model.freq_dim", "must be even (cos and sin halves), got %d", m->freq_dim);
    if (!strcmp(m->attention.mode, "hybrid")) {
        /* dual_end schedule: F/2 full blocks at each end; F % 4 == 0 and an even layer count
         * make the first sparse block a token block and the last a group block. */
        int f = m->attention.num_full_blocks;
        REQ(m->attention.sparse_ratio >= 2, "model.attention.sparse_ratio", "must be >= 2 in hybrid mode, got %d",
            m->attention.sparse_ratio);
        REQ(f % 4 == 0, "model.attention.num_full_blocks",
            "must be a multiple of 4 in hybrid mode (F/2 full blocks at each end, F/2 even), got %d", f);
        REQ(f <= m->num_layers, "model.attention.num_full_blocks", "%d exceeds model.num_layers %d", f, m->num_layers);
        REQ(m->num_layers % 2 == 0, "model.num_layers", "must be even in hybrid mode, got %d", m->num_layers);
    }
    /* E4M3 execution maps HiF8 values x16 (forward) and x2 (gradients) into E4M3's 448 */
    REQ(strcmp(c->quant.hif8_exec, "fp8") || c->quant.forward_target <= 28.0f, "quant.forward_target",
        "%g: with quant.hif8_exec fp8 it must be <= 28 (x16 must stay within E4M3's 448)", c->quant.forward_target);
    REQ(strcmp(c->quant.hif8_exec, "fp8") || c->quant.grad_target <= 224.0f, "quant.grad_target",
        "%g: with quant.hif8_exec fp8 it must be <= 224 (x2 must stay within E4M3's 448)", c->quant.grad_target);
    for (int i = 0; i < c->quant.n_skip_blocks; i++)
        REQ(c->quant.skip_blocks[i] < m->num_layers, "quant.skip_blocks", "block %d outside [0, model.num_layers = %d)",
            c->quant.skip_blocks[i], m->num_layers);
    REQ(strcmp(c->train.schedule, "cosine") || c->train.min_lr <= c->train.lr, "train.min_lr",
        "%g exceeds train.lr %g (cosine decays from lr to min_lr)", c->train.min_lr, c->train.lr);
    const osp_sample_cfg *s = &c->sample;
    const char *gk[3] = {"sample.num_frames", "sample.height", "sample.width"};
    const int g[3] = {s->num_frames, s->height, s->width};
    for (int i = 0; i < 3; i++)
        REQ(g[i] % m->patch[i] == 0, gk[i], "%d is not a multiple of model.patch[%d] = %d", g[i], i, m->patch[i]);
    return 0;
}
#undef REQ

/* ------------------------------------------------- printing and saving -- */

/* Text of one value. yaml=true quotes strings so that they load back unchanged. */
static void fmt_value(const osp_config *c, const cfg_key *k, bool yaml, char *buf, size_t len) {
    const void *p = cfld(c, k);
    size_t j = 0;
    switch (k->type) {
    case CFG_INT: snprintf(buf, len, "%d", *(const int *)p); return;
    case CFG_FLOAT: fmt_float(*(const float *)p, buf, len); return;
    case CFG_BOOL: snprintf(buf, len, "%s", *(const bool *)p ? "true" : "false"); return;
    case CFG_ENUM: snprintf(buf, len, "%.*s", (int)k->size, (const char *)p); return;
    case CFG_STR:
        if (!yaml) {
            snprintf(buf, len, "%s", *(const char *)p ? (const char *)p : "\"\"");
            return;
        }
        /* YAML double-quoted scalar: escape quote, backslash and control bytes */
        buf[j++] = '"';
        for (const unsigned char *s = p; *s && j + 6 < len; s++) {
            if (*s == '"' || *s == '\\')
                buf[j++] = '\\', buf[j++] = (char)*s;
            else if (*s < 0x20 || *s == 0x7f)
                j += (size_t)snprintf(buf + j, len - j, "\\x%02x", *s);
            else if (*s == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f) /* C1 controls (NEL would fold to a space) */
                j += (size_t)snprintf(buf + j, len - j, "\\u%04x", s[1]), s++;
            else if (*s == 0xe2 && s[1] == 0x80 && (s[2] == 0xa8 || s[2] == 0xa9)) /* LS, PS: YAML line breaks */
                j += (size_t)snprintf(buf + j, len - j, "\\u%04x", s[2] == 0xa8 ? 0x2028u : 0x2029u), s += 2;
            else if (*s == 0xef && s[1] == 0xbf && (s[2] == 0xbe || s[2] == 0xbf)) /* U+FFFE, U+FFFF */
                j += (size_t)snprintf(buf + j, len - j, "\\u%04x", s[2] == 0xbe ? 0xfffeu : 0xffffu), s += 2;
            else
                buf[j++] = (char)*s;
        }
        buf[j++] = '"';
        buf[j] = '\0';
        return;
    case CFG_INT_LIST:
    case CFG_INT3: {
        int n = k->type == CFG_INT3 ? 3 : *(const int *)((const char *)c + k->count_off);
        j = (size_t)snprintf(buf, len, "[");
        for (int i = 0; i < n && j + 16 < len; i++)
            j += (size_t)snprintf(buf + j, len - j, "%s%d", i ? ", " : "", ((const int *)p)[i]);
        snprintf(buf + j, len - j, "]");
        return;
    }
    }
}

void config_print(const osp_config *c, FILE *f) {
    int w = 0;
    for (int i = 0; i < NKEYS; i++)
        if ((int)strlen(KEYS[i].key) > w) w = (int)strlen(KEYS[i].key);
    char v[2 * OSP_CFG_STR + 16];
    for (int i = 0; i < NKEYS; i++) {
        fmt_value(c, &KEYS[i], false, v, sizeof v);
        fprintf(f, "%-*s  %s\n", w, KEYS[i].key, v);
    }
}

void config_print_keys(FILE *f) {
    char t[NKEYS][64];
    int wk = 3, wt = 4, wd = 7;
    for (int i = 0; i < NKEYS; i++) {
        snprintf(t[i], sizeof t[i], "%s%s%s", type_name(&KEYS[i]), KEYS[i].range ? " " : "",
                 KEYS[i].range ? KEYS[i].range : "");
        int a = (int)strlen(KEYS[i].key), b = (int)strlen(t[i]), d = (int)strlen(KEYS[i].def);
        wk = a > wk ? a : wk, wt = b > wt ? b : wt, wd = d > wd ? d : wd;
    }
    fprintf(f, "%-*s  %-*s  %-*s  %s\n", wk, "key", wt, "type", wd, "default", "meaning");
    for (int i = 0; i < NKEYS; i++)
        fprintf(f, "%-*s  %-*s  %-*s  %s\n", wk, KEYS[i].key, wt, t[i], wd, *KEYS[i].def ? KEYS[i].def : "\"\"",
                KEYS[i].help);
}

int config_save_yaml(const osp_config *c, const char *path, char *err, size_t errlen) {
    char *text = NULL, v[2 * OSP_CFG_STR + 16];
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    OSP_CHECK(f, "open_memstream");
    fprintf(f, "# osp run configuration, resolved (loads back identically)\n");
    const char *prev = "";
    for (int i = 0; i < NKEYS; i++) {
        const char *key = KEYS[i].key;
        /* open the sections of this key that the previous key did not share */
        size_t common = 0; /* length of the shared section path including its '.' */
        for (size_t l = 0; key[l] && key[l] == prev[l]; l++)
            if (key[l] == '.') common = l + 1;
        int depth = 0;
        for (size_t l = 0; l < common; l++) depth += key[l] == '.';
        if (common == 0 && strchr(key, '.')) fprintf(f, "\n");
        const char *seg = key + common;
        for (const char *dot; (dot = strchr(seg, '.')); seg = dot + 1, depth++)
            fprintf(f, "%*s%.*s:\n", 2 * depth, "", (int)(dot - seg), seg);
        fmt_value(c, &KEYS[i], true, v, sizeof v);
        fprintf(f, "%*s%s: %s\n", 2 * depth, "", seg, v);
        prev = key;
    }
    OSP_CHECK(fclose(f) == 0, "memstream close");
    int rc = osp_write_atomic(path, text, n, err, errlen);
    free(text);
    return rc;
}
