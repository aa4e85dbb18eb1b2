/*
 * test_safetensors.c — checkpoint I/O: dtype conversions (exhaustive for 16-bit types),
 * single-file and sharded round trips, directory/index resolution, Wan2.1 key maps in all
 * three layouts, config inference on a generated tiny Wan2.1 checkpoint, and malformed
 * files (each must give a one-line error naming the file, never a crash; run under
 * ASan/UBSan to make "never a crash" meaningful).
 */
#include "core/common.h"
#include "core/half.h"
#include "core/rng.h"
#include "model/io/safetensors.h"
#include "model/io/wan_keys.h"

#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int g_fail = 0;
#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            g_fail++;                                                      \
        }                                                                  \
    } while (0)

static char g_dir[256];
static char *tpath(const char *name) { /* rotating buffers: a few live at once */
    static char buf[8][512];
    static int k = 0;
    char *p = buf[k++ & 7];
    snprintf(p, 512, "%s/%s", g_dir, name);
    return p;
}

/* the dimensions a checkpoint tells (patch 1x2x2): dim, ffn, layers, in/out channels, text, freq */
#define WAN_T2V_DIMS(D, F, L, CI, CO, TD, FD)                                                                 \
    {.dim = (D), .ffn_dim = (F), .num_layers = (L), .in_channels = (CI), .out_channels = (CO), .text_dim = (TD), \
     .freq_dim = (FD), .patch = {1, 2, 2}}

static uint64_t g_rng = OSP_RNG_GOLDEN;
static uint64_t rng_u64(void) { return osp_rng_next(&g_rng); }
static float rng_normal(void) {
    double u1 = ((rng_u64() >> 11) + 1.0) / 9007199254740993.0, u2 = osp_rng_uniform(&g_rng);
    return (float)osp_box_muller(u1, u2);
}
static float *rand_f32(size_t n) {
    float *x = osp_malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = rng_normal();
    return x;
}
static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += (double)(a[i] - b[i]) * (a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    OSP_CHECK(f, "cannot create test file");
    if (n) OSP_CHECK(fwrite(p, 1, n, f) == n, "short write");
    fclose(f);
}
/* A safetensors file with a verbatim header (no padding) and `ndata` bytes of data. */
static void write_raw(const char *path, const char *hdr, size_t ndata) {
    size_t h = strlen(hdr), n = 8 + h + ndata;
    unsigned char *b = osp_calloc(n, 1);
    uint64_t h64 = h;
    memcpy(b, &h64, 8);
    memcpy(b + 8, hdr, h);
    for (size_t i = 0; i < ndata; i++) b[8 + h + i] = (unsigned char)rng_u64();
    write_bytes(path, b, n);
    free(b);
}

/* st_open must fail with one line naming `name` and containing `want`. */
static void expect_open_fail(const char *path, const char *name, const char *want) {
    char err[512] = "";
    st_set *s = (st_set *)1;
    int rc = st_open(&s, path, err, sizeof err);
    CHECK(rc != 0 && s == NULL, "%s opened but should fail", path);
    CHECK(strstr(err, name) != NULL, "error does not name %s: %s", name, err);
    CHECK(!want || strstr(err, want), "error lacks '%s': %s", want, err);
    CHECK(!strchr(err, '\n'), "multi-line error: %s", err);
    if (rc == 0) st_close(s);
}

/* ---------------------------------------------------------------- conversions */
static void test_convert(void) {
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = half_f16_to_f32((uint16_t)h), g = half_bf16_to_f32((uint16_t)h);
        if (isnan(f)) bad16 += !isnan(half_f16_to_f32(half_f32_to_f16(f)));
        else bad16 += half_f32_to_f16(f) != h;
        if (isnan(g)) badbf += !isnan(half_bf16_to_f32(half_f32_to_bf16(g)));
        else badbf += half_f32_to_bf16(g) != h;
    }
    CHECK(bad16 == 0 && badbf == 0, "16-bit round trips: %d f16, %d bf16 mismatches", bad16, badbf);
    /* random f32: the result must be the nearest representable, ties to even */
    int nbad = 0;
    for (int it = 0; it < 400000; it++) {
        float f = rng_normal() * ldexpf(1.0f, (int)(rng_u64() % 40) - 26);
        if (it % 4 == 0) { /* exact ties: an f32 whose dropped bits are exactly half */
            uint32_t u;
            memcpy(&u, &f, 4);
            u = (u & ~0xffffu) | 0x8000u;
            memcpy(&f, &u, 4);
        }
        for (int ty = 0; ty < 2; ty++) {
            if (ty == 1 && fabsf(f) >= 65504.0f) continue;
            float (*dec)(uint16_t) = ty ? half_f16_to_f32 : half_bf16_to_f32;
            uint16_t h = ty ? half_f32_to_f16(f) : half_f32_to_bf16(f);
            double e0 = fabs((double)dec(h) - f);
            for (int dlt = -1; dlt <= 1; dlt += 2) {
                uint16_t n = (uint16_t)(h + dlt);
                if (((n ^ h) & 0x8000) || isnan(dec(n)) || isinf(dec(n))) continue;
                double e1 = fabs((double)dec(n) - f);
                if (e1 < e0 || (e1 == e0 && (h & 1))) nbad++;
            }
        }
    }
    CHECK(nbad == 0, "%d non-nearest-even conversions", nbad);
    CHECK(half_f32_to_f16(65519.0f) == 0x7bff && half_f32_to_f16(65520.0f) == 0x7c00, "f16 overflow edge");
    CHECK(half_f32_to_f16(ldexpf(1, -25)) == 0 && half_f32_to_f16(ldexpf(1.5f, -25)) == 1, "f16 subnormal edge");
    CHECK(half_f32_to_bf16(3.4028235e38f) == 0x7f80, "bf16 overflow rounds to inf");
    CHECK(isnan(half_bf16_to_f32(half_f32_to_bf16(NAN))), "bf16 NaN");
}

/* ---------------------------------------------------------------- round trips */
typedef struct {
    const char *name;
    st_dtype dt;
    int ndim;
    int64_t shape[4];
} spec;

static size_t spec_numel(const spec *s) {
    size_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= (size_t)s->shape[i];
    return n;
}

static void test_roundtrip(void) {
    spec sp[] = {{"z.f32", ST_F32, 3, {3, 5, 7}}, {"b.bf16", ST_BF16, 2, {4, 9}}, {"c.f16", ST_F16, 4, {2, 3, 4, 5}},
                 {"d.scalar", ST_F32, 0, {0}}, {"e.empty", ST_F32, 2, {0, 3}}};
    enum { NS = sizeof sp / sizeof sp[0] };
    float *src[NS];
    void *raw[NS];
    st_writer *w = st_writer_init();
    for (int i = 0; i < NS; i++) {
        size_t n = spec_numel(&sp[i]);
        src[i] = rand_f32(n);
        raw[i] = osp_malloc(n * st_dtype_size(sp[i].dt) + 1);
        st_convert(raw[i], sp[i].dt, src[i], ST_F32, n);
        st_writer_add(w, sp[i].name, sp[i].dt, sp[i].ndim, sp[i].shape, raw[i]);
    }
    float *own = rand_f32(6);
    float *own_copy = osp_malloc(6 * sizeof *own);
    memcpy(own_copy, own, 6 * sizeof *own);
    st_writer_add_owned(w, "a.owned", ST_F32, 1, (int64_t[]){6}, own);
    char err[512];
    int rc = st_writer_save(w, tpath("rt.safetensors"), "{\"step\": \"12\"}", err, sizeof err);
    CHECK(rc == 0, "save: %s", err);
    CHECK(st_writer_save(w, tpath("bad.safetensors"), "[1]", err, sizeof err) != 0, "array metadata accepted");
    st_writer_free(w);

    st_set *s;
    rc = st_open(&s, tpath("rt.safetensors"), err, sizeof err);
    CHECK(rc == 0, "open: %s", err);
    if (rc) return;
    CHECK(st_count(s) == NS + 1, "count %d", st_count(s));
    for (int i = 1; i < st_count(s); i++) CHECK(strcmp(st_get(s, i - 1)->name, st_get(s, i)->name) < 0, "unsorted");
    CHECK(st_find(s, "nope") == NULL, "found a missing name");
    for (int i = 0; i < NS; i++) {
        const st_tensor *t = st_find(s, sp[i].name);
        CHECK(t != NULL, "missing %s", sp[i].name);
        if (!t) continue;
        size_t n = spec_numel(&sp[i]);
        CHECK(t->dtype == sp[i].dt && t->ndim == sp[i].ndim, "%s dtype/ndim", t->name);
        CHECK(!memcmp(t->shape, sp[i].shape, (size_t)sp[i].ndim * 8), "%s shape", t->name);
        CHECK(t->nbytes == n * st_dtype_size(sp[i].dt), "%s nbytes", t->name);
        CHECK(n == 0 || !memcmp(t->data, raw[i], t->nbytes), "%s bytes differ", t->name);
        float *back = osp_malloc(n * sizeof *back + 4);
        CHECK(st_read_f32(t, back, n, err, sizeof err) == 0, "read: %s", err);
        /* unit roundoff bounds every element's relative error: F32 exact, BF16 2^-8, F16 2^-11 */
        double tol = sp[i].dt == ST_F32 ? 0 : sp[i].dt == ST_BF16 ? 1.0 / 256 : 1.0 / 2048, e = rel_err(back, src[i], n);
        CHECK(e <= tol, "%s rel err %.3g > %.3g", t->name, e, tol);
        if (n > 1) printf("  %-8s %-4s rel err %.3g (tol %.3g)\n", t->name, st_dtype_name(t->dtype), e, tol);
        CHECK(st_read_f32(t, back, n + 1, err, sizeof err) != 0 && strstr(err, "rt.safetensors"), "n mismatch ok");
        free(back);
        free(src[i]);
        free(raw[i]);
    }
    const st_tensor *o = st_find(s, "a.owned");
    CHECK(o && !memcmp(o->data, own_copy, 24), "owned tensor data");
    free(own_copy);
    CHECK(st_metadata(s, "step") && !strcmp(st_metadata(s, "step"), "12"), "metadata step");
    CHECK(st_metadata(s, "format") && !strcmp(st_metadata(s, "format"), "pt"), "metadata format");
    /* layout: data area 8-aligned, header padded with spaces, keys in sorted order */
    const st_tensor *first = st_get(s, 0);
    FILE *f = fopen(tpath("rt.safetensors"), "rb");
    uint64_t hl = 0;
    OSP_CHECK(f && fread(&hl, 8, 1, f) == 1, "reread");
    char *hdr = osp_calloc(hl + 1, 1);
    OSP_CHECK(fread(hdr, 1, hl, f) == hl, "reread");
    fclose(f);
    CHECK((8 + hl) % 8 == 0, "data area at %llu not 8-aligned", (unsigned long long)(8 + hl));
    CHECK(hl == strlen(hdr) && (hdr[hl - 1] == ' ' || hdr[hl - 1] == '}'), "padding");
    CHECK(strstr(hdr, "\"a.owned\"") < strstr(hdr, "\"b.bf16\"") && strstr(hdr, "\"b.bf16\"") < strstr(hdr, "\"z.f32\""),
          "header keys not sorted");
    CHECK(!strcmp(first->name, "a.owned") && (uintptr_t)first->data % 8 == 0, "first tensor offset");
    free(hdr);
    st_close(s);

    /* duplicate names are refused at save */
    w = st_writer_init();
    float x[2] = {1, 2};
    st_writer_add(w, "x", ST_F32, 1, (int64_t[]){2}, x);
    st_writer_add(w, "x", ST_F32, 1, (int64_t[]){2}, x);
    CHECK(st_writer_save(w, tpath("dup.safetensors"), NULL, err, sizeof err) != 0 && strstr(err, "x"), "dup save");
    CHECK(access(tpath("dup.safetensors"), F_OK) != 0, "dup save left a file");
    st_writer_free(w);

    /* hand-made file with an unaligned data area (header length 8+N not a multiple of 4) */
    const char *h = "{\"u\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}";
    OSP_CHECK((8 + strlen(h)) % 4 != 0, "test needs an unaligned header");
    write_raw(tpath("unaligned.safetensors"), h, 12);
    rc = st_open(&s, tpath("unaligned.safetensors"), err, sizeof err);
    CHECK(rc == 0, "unaligned open: %s", err);
    if (!rc) {
        float v[3], ref[3];
        memcpy(ref, st_find(s, "u")->data, 12);
        CHECK(st_read_f32(st_find(s, "u"), v, 3, err, sizeof err) == 0 && !memcmp(v, ref, 12), "unaligned read");
        st_close(s);
    }
}

/* ---------------------------------------------------------------- sharding */
static int same_tensors(const st_set *a, const st_set *b) {
    if (st_count(a) != st_count(b)) return 0;
    for (int i = 0; i < st_count(a); i++) {
        const st_tensor *x = st_get(a, i), *y = st_find(b, x->name);
        if (!y || y->nbytes != x->nbytes || y->dtype != x->dtype || y->ndim != x->ndim ||
            memcmp(x->data, y->data, x->nbytes) || memcmp(x->shape, y->shape, sizeof x->shape))
            return 0;
    }
    return 1;
}

static void test_sharded(void) {
    mkdir(tpath("sh"), 0755);
    st_writer *w = st_writer_init();
    float *bufs[12];
    size_t maxb = 4000;
    for (int i = 0; i < 12; i++) {
        int64_t n = i == 5 ? 1500 : 50 + (int64_t)(rng_u64() % 300); /* #5 alone exceeds a shard */
        bufs[i] = rand_f32((size_t)n);
        char name[32];
        snprintf(name, sizeof name, "t%02d.weight", i);
        st_writer_add(w, name, ST_F32, 2, (int64_t[]){1, n}, bufs[i]);
    }
    char err[512];
    int rc = st_writer_save_sharded(w, tpath("sh"), "diffusion_pytorch_model", maxb, err, sizeof err);
    CHECK(rc == 0, "save sharded: %s", err);
    CHECK(st_writer_save(w, tpath("single.safetensors"), NULL, err, sizeof err) == 0, "save: %s", err);
    st_writer_free(w);
    for (int i = 0; i < 12; i++) free(bufs[i]);

    json_error_t je;
    json_t *idx = json_load_file(tpath("sh/diffusion_pytorch_model.safetensors.index.json"), 0, &je);
    CHECK(idx != NULL, "index unreadable: %s", je.text);
    if (!idx) return;
    json_t *wm = json_object_get(idx, "weight_map");
    const char *sh5 = json_string_value(json_object_get(wm, "t05.weight"));
    int nshard = 0;
    CHECK(sh5 && sscanf(sh5, "diffusion_pytorch_model-%*5d-of-%5d.safetensors", &nshard) == 1 && nshard >= 3,
          "shard names / count: %s", sh5 ? sh5 : "(none)");
    long long total = json_integer_value(json_object_get(json_object_get(idx, "metadata"), "total_size"));
    st_set *one, *viaidx, *viadir;
    CHECK(st_open(&one, tpath("single.safetensors"), err, sizeof err) == 0, "%s", err);
    CHECK(st_open(&viaidx, tpath("sh/diffusion_pytorch_model.safetensors.index.json"), err, sizeof err) == 0, "%s", err);
    CHECK(st_open(&viadir, tpath("sh"), err, sizeof err) == 0, "%s", err);
    long long sum = 0;
    for (int i = 0; i < st_count(one); i++) sum += (long long)st_get(one, i)->nbytes;
    CHECK(total == sum, "total_size %lld != %lld", total, sum);
    CHECK(same_tensors(one, viaidx) && same_tensors(one, viadir), "sharded contents differ");
    /* every shard within the limit unless it holds a single oversized tensor */
    for (int k = 1; k <= nshard; k++) {
        char nm[128];
        snprintf(nm, sizeof nm, "sh/diffusion_pytorch_model-%05d-of-%05d.safetensors", k, nshard);
        st_set *p;
        if (st_open(&p, tpath(nm), err, sizeof err)) {
            CHECK(0, "shard %s: %s", nm, err);
            continue;
        }
        size_t b = 0;
        for (int i = 0; i < st_count(p); i++) b += st_get(p, i)->nbytes;
        CHECK(b <= maxb || st_count(p) == 1, "shard %d holds %zu bytes", k, b);
        st_close(p);
    }
    printf("  sharded: %d shards, %lld bytes, read back via index and dir\n", nshard, total);
    st_close(one);
    st_close(viaidx);
    st_close(viadir);
    json_decref(idx);

    /* directory rules: named file, one *.safetensors, ambiguity */
    mkdir(tpath("d1"), 0755);
    mkdir(tpath("d2"), 0755);
    write_raw(tpath("d1/diffusion_pytorch_model.safetensors"), "{}", 0);
    write_raw(tpath("d1/other.safetensors"), "{}", 0);
    write_raw(tpath("d2/a.safetensors"), "{\"k\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    st_set *s;
    CHECK(st_open(&s, tpath("d1"), err, sizeof err) == 0 && st_count(s) == 0, "d1: %s", err);
    if (s) st_close(s);
    CHECK(st_open(&s, tpath("d2"), err, sizeof err) == 0 && st_find(s, "k"), "d2: %s", err);
    if (s) st_close(s);
    write_raw(tpath("d2/b.safetensors"), "{}", 0);
    expect_open_fail(tpath("d2"), "d2", "exactly one");
}

/* ---------------------------------------------------------------- key maps */
static void test_keys(void) {
    static const char *pairs[][2] = {
        {"blocks.7.norm2.weight", "blocks.7.norm3.weight"},
        {"blocks.7.norm2.bias", "blocks.7.norm3.bias"},
        {"scale_shift_table", "head.modulation"},
        {"blocks.2.scale_shift_table", "blocks.2.modulation"},
        {"proj_out.bias", "head.head.bias"},
        {"blocks.0.attn1.to_out.0.weight", "blocks.0.self_attn.o.weight"},
        {"blocks.11.attn2.to_k.bias", "blocks.11.cross_attn.k.bias"},
        {"blocks.1.ffn.net.0.proj.bias", "blocks.1.ffn.0.bias"},
        {"blocks.1.ffn.net.2.weight", "blocks.1.ffn.2.weight"},
        {"condition_embedder.time_proj.weight", "time_projection.1.weight"},
        {"condition_embedder.text_embedder.linear_2.bias", "text_embedding.2.bias"},
        {"model.diffusion_model.blocks.3.attn2.norm_k.weight", "blocks.3.cross_attn.norm_k.weight"},
        {"model.diffusion_model.head.modulation", "head.modulation"},
        {"blocks.5.norm3.weight", "blocks.5.norm3.weight"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        int rc = wan_key_canonical(pairs[i][0], out, sizeof out);
        CHECK(rc == 0 && !strcmp(out, pairs[i][1]), "%s -> %s (rc %d), want %s", pairs[i][0], out, rc, pairs[i][1]);
    }
    static const char *unknown[] = {"img_emb.proj.0.weight", "blocks.01.norm3.weight", "blocks.x.norm3.weight",
                                    "blocks.0.norm1.weight", "blocks.3", "blocks..ffn.0.weight", "",
                                    "model.diffusion_model.", "head.head.weight.extra", "blocks.12345678.ffn.0.bias"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        int rc = wan_key_canonical(unknown[i], out, sizeof out);
        CHECK(rc == 1 && !strcmp(out, unknown[i]), "'%s' should be unknown (rc %d, %s)", unknown[i], rc, out);
    }
    CHECK(wan_key_to_diffusers("blocks.4.norm3.bias", out, sizeof out) == 0 && !strcmp(out, "blocks.4.norm2.bias"),
          "to_diffusers norm3: %s", out);
    CHECK(wan_key_to_diffusers("head.modulation", out, sizeof out) == 0 && !strcmp(out, "scale_shift_table"), "%s",
          out);
    CHECK(wan_key_canonical("blocks.10.attn1.to_q.weight", out, 10) == -1, "short buffer");
    CHECK(wan_keys_count(30) == 825 && wan_keys_count(40) == 1095, "state dict sizes");

    /* every key of a 3-layer model, in all layouts, canonicalizes back; names are distinct */
    wan_dims d = WAN_T2V_DIMS(32, 80, 3, 4, 6, 24, 16);
    int n = wan_keys_count(d.num_layers), bad = 0;
    char (*diff)[128] = osp_malloc((size_t)n * 128);
    for (int i = 0; i < n; i++) {
        char name[128], buf[256], c[256];
        int64_t shape[ST_MAX_DIMS];
        CHECK(wan_keys_get(&d, i, name, sizeof name, shape) > 0, "key %d", i);
        bad += wan_key_canonical(name, c, sizeof c) != 0 || strcmp(c, name);
        bad += wan_key_to_diffusers(name, diff[i], 128) != 0;
        bad += wan_key_canonical(diff[i], c, sizeof c) != 0 || strcmp(c, name);
        snprintf(buf, sizeof buf, "model.diffusion_model.%s", diff[i]);
        bad += wan_key_canonical(buf, c, sizeof c) != 0 || strcmp(c, name);
        snprintf(buf, sizeof buf, "model.diffusion_model.%s", name);
        bad += wan_key_canonical(buf, c, sizeof c) != 0 || strcmp(c, name);
        for (int j = 0; j < i; j++) bad += !strcmp(diff[i], diff[j]);
    }
    CHECK(bad == 0, "%d layout mapping failures over %d keys", bad, n);
    free(diff);

    /* parameter totals of the two published configs (docs/model.md §9: 1,418,996,800 and 14,288,491,584) */
    wan_dims cfg[2] = {WAN_T2V_DIMS(1536, 8960, 30, 16, 16, 4096, 256),
                       WAN_T2V_DIMS(5120, 13824, 40, 16, 16, 4096, 256)};
    long long want[2] = {1418996800LL, 14288491584LL};
    for (int c = 0; c < 2; c++) {
        long long tot = 0;
        for (int i = 0; i < wan_keys_count(cfg[c].num_layers); i++) {
            char name[128];
            int64_t sh[ST_MAX_DIMS];
            int nd = wan_keys_get(&cfg[c], i, name, sizeof name, sh);
            long long p = 1;
            for (int k = 0; k < nd; k++) p *= sh[k];
            tot += p;
        }
        CHECK(tot == want[c], "config %d: %lld params, spec says %lld", c, tot, want[c]);
    }
}

/* Write the tiny model in one layout: 0 original, 1 diffusers, 2 prefixed diffusers. */
static void write_wan(const wan_dims *d, int layout, st_dtype dt, float **vals, const char *path, int sharded,
                      const char *skip, const char *extra) {
    st_writer *w = st_writer_init();
    for (int i = 0; i < wan_keys_count(d->num_layers); i++) {
        char name[128], diff[128], out[160];
        int64_t sh[ST_MAX_DIMS];
        int nd = wan_keys_get(d, i, name, sizeof name, sh);
        if (skip && !strcmp(name, skip)) continue;
        size_t n = 1;
        for (int k = 0; k < nd; k++) n *= (size_t)sh[k];
        wan_key_to_diffusers(name, diff, sizeof diff);
        snprintf(out, sizeof out, "%s%s", layout == 2 ? "model.diffusion_model." : "", layout ? diff : name);
        void *buf = osp_malloc(n * st_dtype_size(dt));
        st_convert(buf, dt, vals[i], ST_F32, n);
        st_writer_add_owned(w, out, dt, nd, sh, buf);
    }
    if (extra) st_writer_add_owned(w, extra, ST_F32, 1, (int64_t[]){1}, rand_f32(1));
    char err[512];
    int rc = sharded ? st_writer_save_sharded(w, path, "diffusion_pytorch_model", 20000, err, sizeof err)
                     : st_writer_save(w, path, NULL, err, sizeof err);
    CHECK(rc == 0, "write_wan: %s", err);
    st_writer_free(w);
}

static void test_wan_ckpt(void) {
    wan_dims d = WAN_T2V_DIMS(32, 80, 3, 4, 6, 24, 16), got;
    int n = wan_keys_count(d.num_layers);
    float **vals = osp_malloc((size_t)n * sizeof *vals);
    for (int i = 0; i < n; i++) {
        char name[128];
        int64_t sh[ST_MAX_DIMS];
        int nd = wan_keys_get(&d, i, name, sizeof name, sh);
        size_t m = 1;
        for (int k = 0; k < nd; k++) m *= (size_t)sh[k];
        vals[i] = rand_f32(m);
    }
    mkdir(tpath("wan_diff"), 0755);
    write_wan(&d, 0, ST_F32, vals, tpath("wan_orig.safetensors"), 0, NULL, NULL);
    write_wan(&d, 1, ST_BF16, vals, tpath("wan_diff"), 1, NULL, NULL);
    write_wan(&d, 2, ST_F16, vals, tpath("wan_comfy.safetensors"), 0, NULL, NULL);
    char paths[3][512];
    snprintf(paths[0], 512, "%s", tpath("wan_orig.safetensors"));
    snprintf(paths[1], 512, "%s", tpath("wan_diff"));
    snprintf(paths[2], 512, "%s", tpath("wan_comfy.safetensors"));
    double tol[3] = {0, 1.0 / 256, 1.0 / 2048}; /* unit roundoff of F32 (stored as is), BF16, F16 */
    char err[512];
    for (int l = 0; l < 3; l++) {
        st_set *s;
        if (st_open(&s, paths[l], err, sizeof err)) {
            CHECK(0, "open %s: %s", paths[l], err);
            continue;
        }
        int rc = wan_infer_dims(s, &got, err, sizeof err);
        CHECK(rc == 0 && !memcmp(&got, &d, sizeof d),
              "layout %d: inferred dim %d ffn %d L %d in %d out %d text %d freq %d patch %d,%d,%d (%s)", l, got.dim,
              got.ffn_dim, got.num_layers, got.in_channels, got.out_channels, got.text_dim, got.freq_dim, got.patch[0],
              got.patch[1], got.patch[2], rc ? err : "");
        CHECK(wan_check_keys(s, &d, err, sizeof err) == 0, "layout %d check: %s", l, err);
        double worst = 0;
        for (int i = 0; i < n; i++) {
            char name[128];
            int64_t sh[ST_MAX_DIMS];
            int nd = wan_keys_get(&d, i, name, sizeof name, sh);
            size_t m = 1;
            for (int k = 0; k < nd; k++) m *= (size_t)sh[k];
            const st_tensor *t = wan_find(s, name);
            float *b = osp_malloc(m * sizeof *b);
            if (!t || st_read_f32(t, b, m, err, sizeof err)) CHECK(0, "layout %d: %s unreadable", l, name);
            else worst = fmax(worst, rel_err(b, vals[i], m));
            free(b);
        }
        CHECK(worst <= tol[l], "layout %d: worst rel err %.3g > %.3g", l, worst, tol[l]);
        printf("  wan layout %d (%s): %d tensors, dims ok, worst rel err %.3g (tol %.3g)\n", l,
               st_dtype_name(st_get(s, 0)->dtype), st_count(s), worst, tol[l]);
        st_close(s);
    }
    /* wan_check_keys / wan_infer_dims failures */
    struct {
        const char *skip, *extra, *want;
    } cases[] = {{"blocks.2.cross_attn.norm_k.weight", NULL, "missing tensor blocks.2.cross_attn.norm_k.weight"},
                 {NULL, "img_emb.proj.0.weight", "unexpected tensor img_emb.proj.0.weight"},
                 {NULL, "blocks.0.attn2.to_v.bias", "stored under two names"},
                 {"patch_embedding.weight", NULL, "missing tensor patch_embedding.weight"}};
    for (int c = 0; c < 4; c++) {
        write_wan(&d, 0, ST_F32, vals, tpath("wan_bad.safetensors"), 0, cases[c].skip, cases[c].extra);
        st_set *s;
        if (st_open(&s, tpath("wan_bad.safetensors"), err, sizeof err)) {
            CHECK(0, "%s", err);
            continue;
        }
        int rc = c == 3 ? wan_infer_dims(s, &got, err, sizeof err) : wan_check_keys(s, &d, err, sizeof err);
        CHECK(rc != 0 && strstr(err, cases[c].want) && strstr(err, "wan_bad.safetensors"), "case %d: %s", c, err);
        st_close(s);
    }
    wan_dims d2 = d;
    d2.ffn_dim = 96;
    st_set *s;
    if (!st_open(&s, paths[0], err, sizeof err)) {
        CHECK(wan_check_keys(s, &d2, err, sizeof err) != 0 && strstr(err, "blocks.0.ffn.0.weight") &&
                  strstr(err, "[80,32]") && strstr(err, "[96,32]"),
              "shape mismatch: %s", err);
        st_close(s);
    }
    for (int i = 0; i < n; i++) free(vals[i]);
    free(vals);
}

/* ---------------------------------------------------------------- malformed input */
static void test_bad(void) {
    write_bytes(tpath("empty.safetensors"), "", 0);
    expect_open_fail(tpath("empty.safetensors"), "empty.safetensors", "too short");
    write_bytes(tpath("short.safetensors"), "\x10\0\0\0\0", 5);
    expect_open_fail(tpath("short.safetensors"), "short.safetensors", "too short");
    unsigned char past[28] = {0xe8, 0x03}; /* header length 1000 in a 28-byte file */
    write_bytes(tpath("past.safetensors"), past, sizeof past);
    expect_open_fail(tpath("past.safetensors"), "past.safetensors", "past end");
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    write_bytes(tpath("huge.safetensors"), huge, sizeof huge);
    expect_open_fail(tpath("huge.safetensors"), "huge.safetensors", "past end");
    struct {
        const char *file, *hdr, *want;
        size_t ndata;
    } c[] = {
        {"malformed.safetensors", "{\"a\": {\"dtype\": ", "malformed JSON", 0},
        {"array.safetensors", "[1, 2, 3]", NULL, 0},
        {"string.safetensors", "\"F32\"", NULL, 0},
        {"xyz.safetensors", "{\"w.q\":{\"dtype\":\"XYZ\",\"shape\":[2],\"data_offsets\":[0,8]}}", "dtype XYZ for tensor w.q", 8},
        {"i64.safetensors", "{\"ids\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", "dtype I64 for tensor ids", 8},
        {"past_data.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[0,64]}}", "out of range", 16},
        {"back.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", "out of range", 16},
        {"size.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", "needs 24", 24},
        {"nodtype.safetensors", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "dtype", 4},
        {"noshape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "shape", 4},
        {"nooffs.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", "data_offsets", 4},
        {"negshape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "shape", 4},
        {"fshape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", "shape", 4},
        {"negoff.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", "data_offsets", 4},
        {"ovf.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", "overflow", 4},
        {"dims.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", "dims", 4},
        {"entry.safetensors", "{\"w\":[1]}", "not an object", 4},
        {"dupkey.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", NULL, 4},
        {"ctrl.safetensors", "{\"a\\nb\":{\"dtype\":\"XYZ\",\"shape\":[1],\"data_offsets\":[0,4]}}", "a?b", 4},
        {"meta.safetensors", "{\"__metadata__\":[1]}", "__metadata__", 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        write_raw(tpath(c[i].file), c[i].hdr, c[i].ndata);
        expect_open_fail(tpath(c[i].file), c[i].file, c[i].want);
    }
    expect_open_fail(tpath("does_not_exist.safetensors"), "does_not_exist.safetensors", "cannot open");

    /* indexes: missing shard, malformed, key not in its shard, key in two shards */
    const char *w1 = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    const char *w2 = "{\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    write_raw(tpath("s1.safetensors"), w1, 4);
    write_raw(tpath("s2.safetensors"), w2, 8);
    struct {
        const char *file, *json, *want;
    } ix[] = {
        {"miss.index.json", "{\"weight_map\":{\"w\":\"s1.safetensors\",\"q\":\"nope.safetensors\"}}", "nope.safetensors"},
        {"mal.index.json", "{\"weight_map\":{", "malformed"},
        {"nomap.index.json", "{\"metadata\":{}}", "weight_map"},
        {"notin.index.json", "{\"weight_map\":{\"q\":\"s1.safetensors\"}}", "tensor q"},
        {"twice.index.json", "{\"weight_map\":{\"w\":\"s1.safetensors\",\"v\":\"s2.safetensors\"}}", "stored twice"},
        {"badval.index.json", "{\"weight_map\":{\"w\":3}}", "not a file name"},
    };
    for (size_t i = 0; i < sizeof ix / sizeof ix[0]; i++) {
        write_bytes(tpath(ix[i].file), ix[i].json, strlen(ix[i].json));
        expect_open_fail(tpath(ix[i].file), ix[i].file, ix[i].want);
    }
    /* a bad shard behind a good index is reported with the shard's name */
    write_raw(tpath("s3.safetensors"), "{\"w\":{\"dtype\":\"XYZ\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    const char *bads = "{\"weight_map\":{\"w\":\"s3.safetensors\"}}";
    write_bytes(tpath("bads.index.json"), bads, strlen(bads));
    expect_open_fail(tpath("bads.index.json"), "s3.safetensors", "XYZ");
}

/* Every truncation and many random byte corruptions of a valid file: open either fails
 * cleanly or yields tensors that read back within bounds (ASan checks the "within"). */
static void test_fuzz(void) {
    float a[7];
    uint16_t b[5] = {1, 2, 3, 4, 5};
    for (int i = 0; i < 7; i++) a[i] = rng_normal();
    st_writer *w = st_writer_init();
    st_writer_add(w, "alpha", ST_F32, 1, (int64_t[]){7}, a);
    st_writer_add(w, "beta", ST_BF16, 2, (int64_t[]){5, 1}, b);
    char err[512];
    OSP_CHECK(st_writer_save(w, tpath("fz.safetensors"), NULL, err, sizeof err) == 0, err);
    st_writer_free(w);
    FILE *f = fopen(tpath("fz.safetensors"), "rb");
    unsigned char orig[4096];
    size_t n = fread(orig, 1, sizeof orig, f);
    fclose(f);
    int opened = 0, failed = 0;
    for (int it = 0; it < (int)n + 1500; it++) {
        unsigned char buf[4096];
        size_t len = n;
        memcpy(buf, orig, n);
        if (it < (int)n) len = (size_t)it;
        else
            for (int k = 0; k < 1 + it % 3; k++) buf[rng_u64() % n] = (unsigned char)rng_u64();
        write_bytes(tpath("fz2.safetensors"), buf, len);
        st_set *s;
        if (st_open(&s, tpath("fz2.safetensors"), err, sizeof err)) {
            failed++;
            CHECK(strstr(err, "fz2.safetensors") && !strchr(err, '\n'), "fuzz error: %s", err);
            continue;
        }
        opened++;
        for (int i = 0; i < st_count(s); i++) {
            const st_tensor *t = st_get(s, i);
            size_t m = (size_t)st_numel(t);
            float *dst = osp_malloc(m * sizeof *dst);
            CHECK(st_read_f32(t, dst, m, err, sizeof err) == 0, "fuzz read: %s", err);
            free(dst);
        }
        st_close(s);
    }
    CHECK(failed > (int)n, "fuzz: too few failures (%d)", failed);
    printf("  fuzz: %d inputs opened, %d rejected cleanly\n", opened, failed);
}

/* issue 21: empty tensors with absurd dims, Wan shapes that do not fit an int, non-regular files */
static void test_hostile(void) {
    /* zero bytes, but dims whose product (ignoring the 0) overflows: refused at open */
    write_raw(tpath("zero_huge.safetensors"),
              "{\"w\":{\"dtype\":\"F32\",\"shape\":[0,9223372036854775807,4611686018427387904],"
              "\"data_offsets\":[0,0]}}",
              0);
    expect_open_fail(tpath("zero_huge.safetensors"), "zero_huge.safetensors", "overflows");
    /* empty Wan tensors whose dims become ints: wan_infer_dims refuses them (ckpt inspect printed garbage) */
    write_raw(tpath("wan_empty.safetensors"),
              "{\"patch_embedding.weight\":{\"dtype\":\"F32\",\"shape\":[2147483648,0,1,1,1],\"data_offsets\":[0,0]},"
              "\"text_embedding.0.weight\":{\"dtype\":\"F32\",\"shape\":[2147483648,0],\"data_offsets\":[0,0]},"
              "\"time_embedding.0.weight\":{\"dtype\":\"F32\",\"shape\":[2147483648,0],\"data_offsets\":[0,0]},"
              "\"blocks.0.ffn.0.weight\":{\"dtype\":\"F32\",\"shape\":[0,2147483648],\"data_offsets\":[0,0]},"
              "\"head.head.weight\":{\"dtype\":\"F32\",\"shape\":[0,2147483648],\"data_offsets\":[0,0]}}",
              0);
    char err[512] = "";
    st_set *s = NULL;
    CHECK(st_open(&s, tpath("wan_empty.safetensors"), err, sizeof err) == 0, "%s", err);
    if (s) {
        wan_dims d;
        CHECK(wan_infer_dims(s, &d, err, sizeof err) != 0 && strstr(err, "dimension"), "infer dims: '%s'", err);
        st_close(s);
    }
    /* a FIFO as checkpoint or index, and a directory as index: refused without blocking */
    CHECK(mkfifo(tpath("fifo.safetensors"), 0600) == 0, "mkfifo");
    CHECK(mkfifo(tpath("fifo.safetensors.index.json"), 0600) == 0, "mkfifo");
    alarm(20); /* a hang fails the test instead of stalling ctest */
    expect_open_fail(tpath("fifo.safetensors"), "fifo.safetensors", "not a regular file");
    expect_open_fail(tpath("fifo.safetensors.index.json"), "fifo.safetensors.index.json", "not a regular file");
    alarm(0);
}

int main(void) {
    const char *root = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/osp_st_XXXXXX", root && *root ? root : "/tmp");
    OSP_CHECK(mkdtemp(g_dir), "mkdtemp failed");
    printf("test_safetensors (tmp %s)\n", g_dir);
    test_convert();
    test_roundtrip();
    test_sharded();
    test_keys();
    test_wan_ckpt();
    test_bad();
    test_fuzz();
    test_hostile();
    if (g_fail == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", g_dir);
    }
    printf("%s (%d failures)\n", g_fail ? "FAIL" : "OK", g_fail);
    return g_fail ? 1 : 0;
}
