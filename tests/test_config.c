/*
 * test_config.c — the run configuration (train/config.c): defaults validate, a nested YAML
 * fixture loads, bad input gives one-line errors with file:line, --set parses typed values
 * and lists, save -> load round-trips bit-exactly on seeded random values, and the
 * cross-field rules (hybrid num_full_blocks % 4, heads, patch grid) fire.
 */
#include "train/config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int n_fail = 0, n_pass = 0;
static char tmpdir[512];

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (cond) {                                                         \
            n_pass++;                                                       \
        } else {                                                            \
            n_fail++;                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fprintf(stderr, "\n");                                          \
        }                                                                   \
    } while (0)

/* Write text to a fresh file in the temp dir; returns its path (static buffer per call). */
static const char *write_yaml(const char *name, const char *text) {
    static char paths[8][600];
    static int slot = 0;
    char *p = paths[slot++ % 8];
    snprintf(p, 600, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    return p;
}

/* Same config apart from where it came from. */
static bool cfg_equal(const osp_config *a, const osp_config *b) {
    osp_config x = *a, y = *b;
    memset(x.source, 0, sizeof x.source);
    memset(y.source, 0, sizeof y.source);
    return memcmp(&x, &y, sizeof x) == 0;
}

/* Load `text` as a YAML file over the defaults; expect failure with every needle in err
 * (a NULL-terminated list), the "path:line:" prefix, one line, and c left untouched. */
static void expect_yaml_error(const char *text, int line, ...) {
    osp_config c, d;
    char err[1024] = "", want[700];
    config_defaults(&c);
    d = c;
    const char *path = write_yaml("bad.yaml", text);
    int rc = config_load_yaml(&c, path, err, sizeof err);
    CHECK(rc == -1, "expected an error for:\n%s", text);
    snprintf(want, sizeof want, "%s:%d: ", path, line);
    CHECK(strncmp(err, want, strlen(want)) == 0, "error '%s' should start with '%s'", err, want);
    CHECK(!strchr(err, '\n'), "error must be one line: '%s'", err);
    CHECK(cfg_equal(&c, &d) && c.source[0] == '\0', "failed load must leave the config untouched");
    va_list ap;
    va_start(ap, line);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        CHECK(strstr(err, needle), "error '%s' should contain '%s'", err, needle);
    va_end(ap);
}

static void expect_set_error(const char *assignment, const char *needle) {
    osp_config c, d;
    char err[1024] = "";
    config_defaults(&c);
    d = c;
    CHECK(config_set(&c, assignment, err, sizeof err) == -1, "--set %s should fail", assignment);
    CHECK(strstr(err, needle), "--set %s: error '%s' should contain '%s'", assignment, err, needle);
    CHECK(!strchr(err, '\n') && strncmp(err, "--set ", 6) == 0, "bad --set error form: '%s'", err);
    CHECK(cfg_equal(&c, &d), "failed --set must leave the config untouched");
}

/* Apply a list of --set assignments to c, then expect config_validate to fail naming key. */
static void expect_invalid(const char *key, const char *needle, ...) {
    osp_config c;
    char err[1024] = "";
    config_defaults(&c);
    va_list ap;
    va_start(ap, needle);
    for (const char *a; (a = va_arg(ap, const char *));)
        CHECK(config_set(&c, a, err, sizeof err) == 0, "--set %s: %s", a, err);
    va_end(ap);
    CHECK(config_validate(&c, err, sizeof err) == -1, "validate should reject (%s)", key);
    CHECK(strncmp(err, key, strlen(key)) == 0 && err[strlen(key)] == ':', "error '%s' should name %s", err, key);
    CHECK(strstr(err, needle), "error '%s' should contain '%s'", err, needle);
}

static void test_defaults(void) {
    osp_config c;
    char err[1024];
    config_defaults(&c);
    CHECK(config_validate(&c, err, sizeof err) == 0, "defaults must validate: %s", err);
    CHECK(c.model.dim == 64 && c.model.ffn_dim == 256 && c.model.num_heads == 2 && c.model.num_layers == 4, "model");
    CHECK(c.model.patch[0] == 1 && c.model.patch[1] == 4 && c.model.patch[2] == 4, "patch");
    CHECK(c.model.eps == 1e-6f && !c.model.recompute && !strcmp(c.model.attention.mode, "full"), "model misc");
    CHECK(!strcmp(c.quant.format, "none") && c.quant.n_skip_blocks == 0 && c.quant.grad_target == 224.f, "quant");
    CHECK(!strcmp(c.data.train, "data/shapes_train.h5") && !strcmp(c.data.val, "data/shapes_val.h5"), "data");
    CHECK(c.train.steps == 1000 && c.train.lr == 1e-3f && c.train.min_lr == 1e-4f && c.train.beta2 == 0.999f, "train");
    CHECK(!strcmp(c.train.schedule, "cosine") && !strcmp(c.train.sigma_sampling, "logit_normal"), "train enums");
    CHECK(c.sample.steps == 30 && c.sample.cfg == 3.f && c.sample.height == 32 && !strcmp(c.sample.solver, "euler"),
          "sample");
    CHECK(!strcmp(c.device, "auto") && !strcmp(c.run_dir, "runs/demo") && c.source[0] == '\0', "top level");

    /* an empty file and a comments-only file leave the defaults */
    osp_config e;
    const char *texts[] = {"", "# nothing here\n\n", "---\n"};
    for (int i = 0; i < 3; i++) {
        config_defaults(&e);
        const char *p = write_yaml("empty.yaml", texts[i]);
        CHECK(config_load_yaml(&e, p, err, sizeof err) == 0, "empty file %d: %s", i, err);
        CHECK(cfg_equal(&e, &c) && !strcmp(e.source, p), "empty file %d must give the defaults", i);
    }
}

static void test_fixture(void) {
    /* the checked-in fixture, found next to this source file */
    char path[1024];
    snprintf(path, sizeof path, "%s", __FILE__);
    char *slash = strrchr(path, '/');
    snprintf(slash ? slash + 1 : path, sizeof path - (size_t)(slash ? slash + 1 - path : 0), "data_config/hybrid.yaml");
    osp_config c;
    char err[1024];
    config_defaults(&c);
    int rc = config_load_yaml(&c, path, err, sizeof err);
    CHECK(rc == 0, "fixture %s: %s", path, err);
    if (rc) return;
    CHECK(!strcmp(c.device, "cpu") && c.seed == 1234 && !strcmp(c.run_dir, "runs/hybrid demo"), "top level");
    CHECK(c.model.dim == 96 && c.model.num_heads == 3 && c.model.num_layers == 8 && c.model.recompute, "model");
    CHECK(c.model.patch[0] == 1 && c.model.patch[1] == 2 && c.model.patch[2] == 2, "block list patch");
    CHECK(c.model.eps == 1e-5f && c.model.ffn_dim == 256, "eps set, ffn_dim default kept");
    CHECK(!strcmp(c.model.attention.mode, "hybrid") && c.model.attention.num_full_blocks == 4, "nested attention");
    CHECK(!strcmp(c.quant.format, "hif8") && !strcmp(c.quant.scaling, "delayed") && c.quant.history == 32, "quant");
    CHECK(c.quant.n_skip_blocks == 2 && c.quant.skip_blocks[0] == 0 && c.quant.skip_blocks[1] == 7, "flow list");
    CHECK(c.data.val[0] == '\0' && !strcmp(c.data.train, "data/shapes_train.h5"), "null string");
    CHECK(c.train.steps == 2000 && c.train.lr == 2e-4f && c.train.min_lr == 2e-5f, "train numbers");
    CHECK(!strcmp(c.train.schedule, "constant") && !strcmp(c.train.sigma_sampling, "uniform"), "train enums");
    CHECK(!strcmp(c.sample.solver, "unipc") && c.sample.height == 64 && c.sample.width == 32, "flat dotted keys");
    CHECK(!strcmp(c.source, path), "source recorded: '%s'", c.source);
    CHECK(config_validate(&c, err, sizeof err) == 0, "fixture must validate: %s", err);
}

static void test_yaml_errors(void) {
    expect_yaml_error("model:\n  dim: 32\n  num_head: 4\n", 3, "unknown key 'model.num_head'",
                      "did you mean 'model.num_heads'", NULL);
    expect_yaml_error("seed: 1\ntrian:\n  steps: 5\n", 2, "unknown key 'trian'", "did you mean 'train'", NULL);
    expect_yaml_error("model:\n  steps: 5\n", 2, "unknown key 'model.steps'", "train.steps", NULL);
    expect_yaml_error("# c\n\ntrain:\n  lr: 1e-4\n  steps: abc\n", 5, "expected integer for train.steps, got 'abc'",
                      NULL);
    expect_yaml_error("train:\n  lr: fast\n", 2, "expected number for train.lr", NULL);
    expect_yaml_error("model:\n  recompute: maybe\n", 2, "true or false", "model.recompute", NULL);
    expect_yaml_error("model:\n  attention:\n    mode: sparse\n", 3, "full|hybrid", "model.attention.mode", "'sparse'",
                      NULL);
    expect_yaml_error("train:\n  batch_size: 0\n", 2, "train.batch_size must be in [1,65536], got 0", NULL);
    expect_yaml_error("train:\n  beta2: 1.0\n", 2, "train.beta2 must be in [0,1)", NULL);
    expect_yaml_error("model:\n  dim: 99999999999\n", 2, "out of range", NULL);
    expect_yaml_error("model:\n  dim:\n", 2, "got no value", NULL);
    /* structure: mapping where a scalar is expected and vice versa, lists */
    expect_yaml_error("model:\n  dim:\n    x: 1\n", 2, "expected integer for model.dim, got a mapping", NULL);
    expect_yaml_error("seed: 3\nmodel: 64\n", 2, "model is a section", NULL);
    expect_yaml_error("model:\n  dim: [64]\n", 2, "got a list", NULL);
    expect_yaml_error("model:\n  patch: [1, 2]\n", 2, "expected 3 integers for model.patch, got 2", NULL);
    expect_yaml_error("model:\n  patch:\n    - 1\n    - x\n    - 2\n", 4, "expected integer for model.patch", NULL);
    expect_yaml_error("model:\n  patch: [1, 0, 2]\n", 2, "model.patch must be in [1,64], got 0", NULL);
    expect_yaml_error("quant:\n  skip_blocks: 3\n", 2, "expected list of integers for quant.skip_blocks", NULL);
    expect_yaml_error("- 1\n- 2\n", 1, "top level must be a mapping", NULL);
    expect_yaml_error("model:\n  dim: 32\n  dim: 48\n", 3, "duplicate key 'model.dim' (first at line 2)", NULL);
    expect_yaml_error("model.dim: 32\nmodel:\n  dim: 48\n", 3, "duplicate key 'model.dim'", NULL);
    /* malformed YAML: libyaml's problem with the line */
    expect_yaml_error("model:\n  dim: 32\n\tffn_dim: 64\n", 3, "malformed YAML", NULL);
    expect_yaml_error("model:\n  patch: [1, 2, 2\ntrain:\n  steps: 4\n", 3, "malformed YAML", "flow sequence at line 2",
                      NULL);
    expect_yaml_error("seed: 1\nmodel: {dim: 3\n", 3, "malformed YAML", NULL);
    expect_yaml_error("run_dir: \"abc\n", 2, "malformed YAML", "quoted scalar at line 1", NULL);
    expect_yaml_error("seed: 1\n---\nseed: 2\n", 3, "one YAML document", NULL);

    char err[1024];
    osp_config c;
    config_defaults(&c);
    CHECK(config_load_yaml(&c, "/nonexistent/osp.yaml", err, sizeof err) == -1 &&
              strstr(err, "/nonexistent/osp.yaml: cannot open"),
          "missing file: '%s'", err);
}

static void test_set(void) {
    osp_config c;
    char err[1024];
    config_defaults(&c);
    const char *ok[] = {"model.attention.mode=hybrid",
                        "train.steps=123",
                        " train.lr = 5e-4 ",
                        "model.recompute=true",
                        "model.patch=1,2,2",
                        "quant.skip_blocks=[3, 1,2]",
                        "data.val=",
                        "run_dir=runs/x y",
                        "train.ema_decay=0.5",
                        "quant.saturate=off",
                        "sample.cfg=4"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        CHECK(config_set(&c, ok[i], err, sizeof err) == 0, "--set %s: %s", ok[i], err);
    CHECK(!strcmp(c.model.attention.mode, "hybrid") && c.train.steps == 123 && c.train.lr == 5e-4f, "typed set");
    CHECK(c.model.recompute && !c.quant.saturate && c.train.ema_decay == 0.5f && c.sample.cfg == 4.f, "bools");
    CHECK(c.model.patch[0] == 1 && c.model.patch[1] == 2 && c.model.patch[2] == 2, "list 1,2,2");
    CHECK(c.quant.n_skip_blocks == 3 && c.quant.skip_blocks[0] == 3 && c.quant.skip_blocks[2] == 2, "list [3,1,2]");
    CHECK(c.data.val[0] == '\0' && !strcmp(c.run_dir, "runs/x y"), "strings");
    CHECK(config_set(&c, "quant.skip_blocks=[]", err, sizeof err) == 0 && c.quant.n_skip_blocks == 0, "empty list");
    CHECK(config_set(&c, "model.patch=[1,4,4]", err, sizeof err) == 0 && c.model.patch[1] == 4, "bracket list");

    expect_set_error("model.foo=1", "--set model.foo: unknown key");
    expect_set_error("model.num_head=4", "did you mean 'model.num_heads'");
    expect_set_error("train.steps=abc", "--set train.steps: expected integer, got 'abc'");
    expect_set_error("train.steps=1.5", "expected integer");
    expect_set_error("train.lr=nan", "--set train.lr: expected finite number");
    expect_set_error("model.attention.mode=sparse", "--set model.attention.mode: expected one of full|hybrid");
    expect_set_error("model.patch=1,2", "--set model.patch: expected 3 integers, got 2");
    expect_set_error("model.patch=[1,2,2", "unclosed");
    expect_set_error("model.patch=1,x,2", "expected integer, got 'x'");
    expect_set_error("quant.skip_blocks=-1", "must be in [0,1023], got -1");
    expect_set_error("train.grad_accum=0", "--set train.grad_accum: must be in [1,65536], got 0");
    expect_set_error("model=3", "--set model: is a section");
    expect_set_error("train.steps", "expected key=value");
    expect_set_error("model.recompute=maybe", "true or false");
    char longv[OSP_CFG_STR + 40];
    memset(longv, 'a', sizeof longv);
    memcpy(longv, "run_dir=", 8);
    longv[sizeof longv - 1] = '\0';
    expect_set_error(longv, "too long");
}

/* Seeded random values for every key, save, load into fresh defaults, compare bytes. */
static void test_round_trip(void) {
    static const char *float_keys[] = {
        "model.eps",        "quant.forward_target", "quant.grad_target", "train.lr",        "train.weight_decay",
        "train.beta1",      "train.beta2",          "train.adam_eps",    "train.grad_clip", "train.ema_decay",
        "train.logit_mean", "train.logit_std",      "train.shift",       "sample.shift",    "sample.cfg"};
    static const char *int_keys[] = {"seed",
                                     "model.ffn_dim",
                                     "model.in_channels",
                                     "model.out_channels",
                                     "model.text_dim",
                                     "model.text_len",
                                     "quant.history",
                                     "data.prefetch",
                                     "train.steps",
                                     "train.batch_size",
                                     "train.grad_accum",
                                     "train.warmup",
                                     "train.log_every",
                                     "train.val_every",
                                     "train.val_batches",
                                     "train.ckpt_every",
                                     "train.keep_last",
                                     "train.max_skipped",
                                     "sample.steps",
                                     "sample.seed"};
    static const char *strs[] = {"runs/with \"quotes\" and \\ slash",
                                 "a: b # not a comment",
                                 "  lead space",
                                 "unicode \xc3\xa9t\xc3\xa9",
                                 "yes",
                                 "123",
                                 "[1, 2]",
                                 "tab\there"};
    char err[1024], a[700], path[600];
    srand(20240607);
    snprintf(path, sizeof path, "%s/saved.yaml", tmpdir);
    int rounds = 40, ok_rounds = 0;
    for (int r = 0; r < rounds; r++) {
        osp_config c, d;
        config_defaults(&c);
        for (size_t i = 0; i < sizeof float_keys / sizeof float_keys[0]; i++) {
            /* random bits in (0.01, 0.99): needs the shortest-repr float printing to round-trip */
            float u = 0.01f + 0.98f * (float)rand() / (float)RAND_MAX;
            snprintf(a, sizeof a, "%s=%.9g", float_keys[i], (double)u);
            CHECK(config_set(&c, a, err, sizeof err) == 0, "%s", err);
        }
        snprintf(a, sizeof a, "train.min_lr=%.9g", (double)(c.train.lr * 0.37f));
        CHECK(config_set(&c, a, err, sizeof err) == 0, "%s", err);
        for (size_t i = 0; i < sizeof int_keys / sizeof int_keys[0]; i++) {
            snprintf(a, sizeof a, "%s=%d", int_keys[i], 1 + rand() % 64); /* within every key's bounds */
            CHECK(config_set(&c, a, err, sizeof err) == 0, "%s", err);
        }
        int nskip = rand() % 6;
        int o = snprintf(a, sizeof a, "quant.skip_blocks=[");
        for (int i = 0; i < nskip; i++) o += snprintf(a + o, sizeof a - (size_t)o, "%s%d", i ? "," : "", rand() % 4);
        snprintf(a + o, sizeof a - (size_t)o, "]");
        CHECK(config_set(&c, a, err, sizeof err) == 0, "%s", err);
        snprintf(a, sizeof a, "run_dir=%s", strs[r % 8]);
        CHECK(config_set(&c, a, err, sizeof err) == 0, "%s", err);
        snprintf(a, sizeof a, "data.val=%s", strs[(r + 3) % 8]);
        CHECK(config_set(&c, a, err, sizeof err) == 0, "%s", err);
        const char *sets[] = {r % 2 ? "model.recompute=true" : "quant.attention=true",
                              r % 3 ? "train.schedule=constant" : "sample.solver=unipc",
                              r % 2 ? "device=cuda" : "quant.format=hif8", r % 4 ? "data.train=" : "quant.saturate=1"};
        for (int i = 0; i < 4; i++) CHECK(config_set(&c, sets[i], err, sizeof err) == 0, "%s", err);
        snprintf(a, sizeof a, "model.patch=%d,%d,%d", 1 + rand() % 3, 1 + rand() % 3, 1 + rand() % 3);
        CHECK(config_set(&c, a, err, sizeof err) == 0, "%s", err);

        CHECK(config_save_yaml(&c, path, err, sizeof err) == 0, "save: %s", err);
        config_defaults(&d);
        int rc = config_load_yaml(&d, path, err, sizeof err);
        CHECK(rc == 0, "reload of saved config: %s", err);
        bool same = rc == 0 && cfg_equal(&c, &d);
        CHECK(same, "round %d: saved config must load back identically", r);
        if (same) ok_rounds++;
        if (!same && r == 0) {
            config_print(&c, stderr);
            config_print(&d, stderr);
        }
    }
    printf("round trip: %d/%d random configs identical after save -> load\n", ok_rounds, rounds);
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    CHECK(access(tmp, F_OK) != 0, "atomic save leaves no temp file");
}

static void test_validate(void) {
    const char *hy = "model.attention.mode=hybrid";
    expect_invalid("model.attention.num_full_blocks", "multiple of 4", hy, "model.num_layers=8",
                   "model.attention.num_full_blocks=6", NULL);
    expect_invalid("model.attention.num_full_blocks", "multiple of 4", hy, "model.num_layers=8",
                   "model.attention.num_full_blocks=2", NULL);
    expect_invalid("model.attention.num_full_blocks", "exceeds model.num_layers", hy,
                   "model.attention.num_full_blocks=8", NULL);
    expect_invalid("model.num_layers", "even in hybrid", hy, "model.num_layers=5", NULL);
    expect_invalid("model.attention.sparse_ratio", ">= 2", hy, "model.attention.sparse_ratio=1", NULL);
    expect_invalid("model.num_heads", "not divisible", "model.num_heads=3", NULL);
    expect_invalid("model.num_heads", "even and >= 6", "model.dim=60", "model.num_heads=12", NULL);
    expect_invalid("model.num_heads", "even and >= 6", "model.dim=66", "model.num_heads=2", NULL);
    expect_invalid("model.num_heads", "not divisible", "model.dim=400", "model.num_heads=0", NULL);
    expect_invalid("model.freq_dim", "even", "model.freq_dim=63", NULL);
    expect_invalid("quant.skip_blocks", "outside", "quant.skip_blocks=[1,4]", NULL);
    expect_invalid("train.min_lr", "exceeds train.lr", "train.lr=1e-5", NULL);
    expect_invalid("sample.height", "multiple of model.patch[1]", "sample.height=30", NULL);
    expect_invalid("run_dir", "empty", "run_dir=", NULL);

    /* valid hybrid settings pass, including F = 0 and the default head-count rule */
    osp_config c;
    char err[1024];
    config_defaults(&c);
    const char *good[] = {hy, "model.num_layers=8", "model.attention.num_full_blocks=4", "model.dim=256",
                          "model.num_heads=0"};
    for (int i = 0; i < 5; i++) CHECK(config_set(&c, good[i], err, sizeof err) == 0, "%s", err);
    CHECK(config_validate(&c, err, sizeof err) == 0, "valid hybrid config rejected: %s", err);

    /* structs built in code are range-checked too, and the source file is named */
    config_defaults(&c);
    c.train.beta1 = 1.0f;
    snprintf(c.source, sizeof c.source, "configs/x.yaml");
    CHECK(config_validate(&c, err, sizeof err) == -1 && strstr(err, "configs/x.yaml: train.beta1: must be in [0,1)"),
          "code-built range: '%s'", err);
    config_defaults(&c);
    c.train.lr = NAN;
    CHECK(config_validate(&c, err, sizeof err) == -1 && strstr(err, "train.lr"), "NaN: '%s'", err);
    config_defaults(&c);
    strcpy(c.sample.solver, "rk4");
    CHECK(config_validate(&c, err, sizeof err) == -1 && strstr(err, "sample.solver"), "enum: '%s'", err);
}

static void test_print(void) {
    osp_config c;
    config_defaults(&c);
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    config_print(&c, f);
    fclose(f);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += buf[i] == '\n';
    CHECK(lines >= 60, "config_print prints every key (%d lines)", lines);
    CHECK(strstr(buf, "model.attention.num_full_blocks  0\n") && strstr(buf, "\nmodel.patch ") &&
              strstr(buf, "[1, 4, 4]\n"),
          "table content:\n%s", buf);
    /* aligned: every value starts in the same column */
    const char *p = buf;
    long col = -1;
    bool aligned = true;
    for (const char *nl; (nl = strchr(p, '\n')); p = nl + 1) {
        const char *sp = strstr(p, "  ");
        while (sp && sp[0] == ' ') sp++;
        if (!sp || sp > nl) continue;
        if (col < 0) col = sp - p;
        aligned &= (sp - p) == col;
    }
    CHECK(aligned && col > 10, "values aligned in one column");
    free(buf);
    buf = NULL;
    f = open_memstream(&buf, &n);
    config_print_keys(f);
    fclose(f);
    CHECK(strstr(buf, "train.steps") && strstr(buf, "full|hybrid") && strstr(buf, "optimizer steps"), "key list:\n%s",
          buf);
    free(buf);
}

/* issue 21: integers bounded to what the code can hold, integer messages, FIFOs refused */
static void test_bounds(void) {
    expect_set_error("model.attention.sparse_ratio=65536", "must be in [1,32], got 65536");
    expect_set_error("data.prefetch=2147483647", "must be in [1,64], got 2147483647");
    expect_set_error("sample.steps=2147483646", "must be in [1,100000], got 2147483646");
    expect_set_error("model.dim=2147483647", "must be in [1,65536], got 2147483647");
    expect_set_error("model.patch=[1,1,1000000]", "must be in [1,64], got 1000000");
    /* an integer is printed as an integer, not as -2.14748365e+09 */
    expect_set_error("train.val_batches=-2147483648", "must be in [0,1000000], got -2147483648");
    expect_set_error("train.steps=4294967297", "out of range");
    /* found by fuzz_config: a non-UTF-8 string was saved into a config.yaml that could not load back */
    expect_set_error("run_dir=x\xab y", "expected UTF-8 text");
    /* ... and DEL, C1 controls and U+FFFE must be escaped in the saved YAML (libyaml refuses them raw) */
    {
        osp_config a, b2;
        char path[600], e2[1024];
        config_defaults(&a);
        CHECK(config_set(&a, "run_dir=a\x7f\xc2\x80\xc2\x85z\xef\xbf\xbe\xe2\x80\xa8y", e2, sizeof e2) == 0, "%s", e2);
        snprintf(path, sizeof path, "%s/controls.yaml", tmpdir);
        CHECK(config_save_yaml(&a, path, e2, sizeof e2) == 0, "%s", e2);
        config_defaults(&b2);
        CHECK(config_load_yaml(&b2, path, e2, sizeof e2) == 0, "controls load back: %s", e2);
        CHECK(!strcmp(a.run_dir, b2.run_dir), "run_dir round trip: '%s'", b2.run_dir);
    }
    /* a FIFO as config: refused at once (an open() would wait for a writer forever) */
    char fifo[600], err[1024];
    snprintf(fifo, sizeof fifo, "%s/fifo.yaml", tmpdir);
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo %s", fifo);
    osp_config c;
    config_defaults(&c);
    alarm(20); /* a hang fails the test instead of stalling ctest */
    CHECK(config_load_yaml(&c, fifo, err, sizeof err) != 0 && strstr(err, "not a regular file"), "fifo: '%s'", err);
    alarm(0);
    snprintf(fifo, sizeof fifo, "%s", tmpdir);
    CHECK(config_load_yaml(&c, fifo, err, sizeof err) != 0 && strstr(err, "not a regular file"), "dir: '%s'", err);
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/osp_test_config_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_defaults();
    test_fixture();
    test_yaml_errors();
    test_set();
    test_round_trip();
    test_validate();
    test_print();
    test_bounds();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", tmpdir);
    printf("test_config: %d checks passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
