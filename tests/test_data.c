/*
 * test_data.c — the data layer: shapes synthesis and held-out split, the HDF5 reader
 * (schema errors, deterministic shuffling, sharding, prefetch, resume, buckets, f16/bf16),
 * h5util writing, the GIF/PNG writers (decoded back here by an independent decoder) and
 * the prompt-adherence probe.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/common.h"
#include "core/half.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/gif.h"
#include "data/h5util.h"
#include "model/io/safetensors.h"
#include "data/probe.h"
#include "data/shapes.h"

#include "tests/testutil.h"
#include "tests/fuzz/h5_seeds.h"
#define EXPECT TU_EXPECT /* one failure counter for all C tests: tu_nfail */

static char tmpdir[512];
static void tpath(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmpdir, name); }

/* seeded test randomness (fresh per test, never zeros) */
static uint64_t rng_state = 0x1234567ull;
static double urand(void) { return osp_u01(osp_splitmix64(rng_state++)); }
static float nrand(void) { return (float)(sqrt(-2.0 * log(1.0 - urand())) * cos(6.283185307179586 * urand())); }

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

/* ------------------------------------------------------------------ shapes + probe */

static void test_shapes(const char *train, const char *val, int ntrain, int nval) {
    char err[1024];
    int rc = shapes_synth(train, val, ntrain, nval, 8, 32, 0, 8, 32, 7, err, sizeof err);
    EXPECT(rc == 0, "shapes_synth: %s", err);
    if (rc) return;
    const char *const *held;
    int nh = shapes_heldout_prompts(&held);
    EXPECT(nh == 12, "12 held-out prompts");
    int seen_c[7] = {0}, seen_s[3] = {0}, seen_d[4] = {0}, ok_cd = 0, ok_shape = 0, total = 0;
    for (int split = 0; split < 2; split++) {
        const char *path = split ? val : train;
        int64_t d[8], dl[8];
        float *vid;
        int32_t *lab;
        EXPECT(h5_read_f32(path, "latents", 5, d, &vid, err, sizeof err) == 0, "%s", err);
        EXPECT(h5_read_i32(path, "labels", 2, dl, &lab, err, sizeof err) == 0, "%s", err);
        EXPECT(d[0] == (split ? nval : ntrain) && d[1] == 3 && d[2] == 8 && d[3] == 32 && d[4] == 32, "shape");
        osp_dataset *ds;
        EXPECT(dataset_open(&ds, path, 0, 1, 1, 1, 0, err, sizeof err) == 0, "%s", err);
        size_t clip = (size_t)3 * 8 * 32 * 32;
        float lo = 1e9f, hi = -1e9f;
        for (int i = 0; i < d[0]; i++) {
            char p[128];
            int c, s, dir;
            dataset_prompt(ds, i, p, sizeof p);
            EXPECT(shapes_parse_prompt(p, &c, &s, &dir) == 0, "parse '%s'", p);
            EXPECT(c == lab[3 * i] && s == lab[3 * i + 1] && dir == lab[3 * i + 2], "labels match prompt '%s'", p);
            int in_held = 0;
            for (int h = 0; h < nh; h++) in_held |= strcmp(p, held[h]) == 0;
            EXPECT(in_held == split, "%s prompt '%s' %s the held-out list", split ? "val" : "train", p,
                   split ? "not in" : "in");
            if (!split) seen_c[c] = seen_s[s] = seen_d[dir] = 1;
            const float *v = vid + (size_t)i * clip;
            for (size_t k = 0; k < clip; k++) lo = fminf(lo, v[k]), hi = fmaxf(hi, v[k]);
            int pc, pd, ps;
            float conf, sconf;
            probe_video(v, 8, 32, 32, &pc, &pd, &conf);
            probe_shape(v, 8, 32, 32, &ps, &sconf);
            ok_cd += pc == c && pd == dir;
            ok_shape += ps == s;
            total++;
        }
        EXPECT(lo >= -1.0f && hi <= 1.0f && hi > 0.9f, "pixel range [%g, %g]", lo, hi);
        dataset_close(ds);
        free(vid);
        free(lab);
    }
    for (int i = 0; i < 7; i++) EXPECT(seen_c[i], "color %d in train", i);
    for (int i = 0; i < 3; i++) EXPECT(seen_s[i], "shape %d in train", i);
    for (int i = 0; i < 4; i++) EXPECT(seen_d[i], "direction %d in train", i);
    printf("probe: color+direction %d/%d correct, shape %d/%d\n", ok_cd, total, ok_shape, total);
    EXPECT(ok_cd == total, "probe color+direction must be 100%%");
    EXPECT(ok_shape >= total * 95 / 100, "probe shape >= 95%%");
    /* held-out combos: 12 distinct, none of them in the training combination set */
    int cnt = 0;
    for (int c = 0; c < 7; c++)
        for (int s = 0; s < 3; s++)
            for (int d = 0; d < 4; d++) cnt += shapes_is_heldout(c, s, d);
    EXPECT(cnt == 12, "12 distinct held-out combos (got %d)", cnt);

    /* motion: by default the shape (11 px at 32) sweeps from one edge to the other over the clip
     * (3 px/frame at 8 frames); a slower --speed moves it speed*(T-1) px, starting anywhere */
    EXPECT(fabs(shapes_speed(8, 32, 0) - 3.0) < 1e-12 && fabs(shapes_speed(8, 32, 9) - 3.0) < 1e-12 &&
               fabs(shapes_speed(8, 32, 1.5) - 1.5) < 1e-12 && shapes_speed(1, 32, 0) == 0,
           "shapes_speed: default/too fast -> edge to edge 3, slower kept");
    float *clip = osp_malloc(sizeof(float) * 3 * 8 * 32 * 32);
    for (int d = 0; d < 4; d++)
        for (int k = 0; k < 2; k++) {
            double speed = k ? 1.5 : 0;
            shapes_render(clip, 6, 0, d, 8, 32, speed, 99 + (uint64_t)d); /* white square */
            int lo[8], hi[8]; /* lit extent along the motion per frame */
            for (int t = 0; t < 8; t++) {
                lo[t] = 32, hi[t] = -1;
                for (int y = 0; y < 32; y++)
                    for (int x = 0; x < 32; x++)
                        if (clip[(size_t)t * 1024 + y * 32 + x] > 0.0f) {
                            int a = d < 2 ? x : y;
                            lo[t] = a < lo[t] ? a : lo[t], hi[t] = a > hi[t] ? a : hi[t];
                        }
            }
            int sign = (d == SHAPES_RIGHT || d == SHAPES_DOWN) ? 1 : -1, first = sign > 0 ? 0 : 7;
            double travel = sign * (lo[7] - lo[0]);
            if (!k)
                EXPECT(lo[first] == 0 && hi[7 - first] == 31 && fabs(travel - 21) <= 1,
                       "direction %d: edge to edge (start %d, end %d, travel %.0f)", d, lo[first], hi[7 - first], travel);
            else
                EXPECT(fabs(travel - 10.5) <= 1, "direction %d at 1.5 px/frame: travel %.0f ~ 10.5", d, travel);
        }
    free(clip);
    double sp = 0;
    hid_t f = H5Fopen(train, H5F_ACC_RDONLY, H5P_DEFAULT), a = f >= 0 ? H5Aopen(f, "speed", H5P_DEFAULT) : -1;
    EXPECT(a >= 0 && H5Aread(a, H5T_NATIVE_DOUBLE, &sp) >= 0 && sp == 3.0, "file attribute speed %g", sp);
    if (a >= 0) H5Aclose(a);
    if (f >= 0) H5Fclose(f);
}

static void test_embedding(const char *train) {
    float e[8 * 32], w[32];
    int len = 0;
    EXPECT(shapes_embed_prompt("Red circle moving LEFT", 8, 32, e, &len) == 0 && len == 4, "embed ok");
    const char *words[4] = {"red", "circle", "moving", "left"};
    for (int i = 0; i < 4; i++) {
        shapes_word_vector(shapes_word_index(words[i]), 32, w);
        EXPECT(rel_err(e + i * 32, w, 32) == 0.0, "row %d = vector of '%s'", i, words[i]);
    }
    double z = 0;
    for (int i = 4 * 32; i < 8 * 32; i++) z += fabs(e[i]);
    EXPECT(z == 0.0, "padding rows are zero");
    EXPECT(shapes_embed_prompt("red banana moving left", 8, 32, e, &len) == -1, "unknown word -> -1");
    EXPECT(shapes_embed_prompt("red circle moving left", 3, 32, e, &len) == -2 && len == 3, "too long -> -2");
    /* entries ~ N(0, 1/Dt): check the second moment over the vocabulary */
    double m2 = 0;
    for (int v = 0; v < SHAPES_NVOCAB; v++) {
        shapes_word_vector(v, 32, w);
        for (int d = 0; d < 32; d++) m2 += (double)w[d] * w[d];
    }
    m2 /= SHAPES_NVOCAB;
    EXPECT(fabs(m2 - 1.0) < 0.25, "mean squared norm of word vectors %.3f ~ 1", m2);
    /* the file's text rows equal the embedding of its prompts */
    char err[512], p[128];
    int64_t d[8], dn[8];
    float *txt;
    int32_t *tl;
    EXPECT(h5_read_f32(train, "text", 3, d, &txt, err, sizeof err) == 0, "%s", err);
    EXPECT(h5_read_i32(train, "text_len", 1, dn, &tl, err, sizeof err) == 0, "%s", err);
    osp_dataset *ds;
    EXPECT(dataset_open(&ds, train, 0, 1, 1, 1, 0, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 5; i++) {
        dataset_prompt(ds, i, p, sizeof p);
        shapes_embed_prompt(p, 8, 32, e, &len);
        EXPECT(rel_err(txt + (size_t)i * 8 * 32, e, 8 * 32) == 0.0 && tl[i] == len, "text row %d", i);
    }
    dataset_close(ds);
    free(txt);
    free(tl);
}

/* ------------------------------------------------------------------ schema errors */

static void expect_open_error(const char *path, const char *needle) {
    osp_dataset *ds = NULL;
    char err[1024] = "";
    int rc = dataset_open(&ds, path, 0, 1, 1, 2, 0, err, sizeof err);
    EXPECT(rc != 0 && ds == NULL, "%s: open should fail", path);
    EXPECT(strstr(err, path) != NULL, "error names the file: '%s'", err);
    EXPECT(strchr(err, '\n') == NULL && strlen(err) > 0, "one-line error: '%s'", err);
    EXPECT(strstr(err, needle) != NULL, "error mentions '%s': '%s'", needle, err);
    printf("  error ok: %s\n", err);
}

static void write_file(const char *path, int nl, int rank_l, int nt, int with_text, int int_latents, int ntl) {
    char err[512];
    h5_writer *w = h5w_open(path, err, sizeof err);
    EXPECT(w != NULL, "%s", err);
    int64_t dl[5] = {nl, 3, 2, 4, 4}, dt[3] = {nt, 6, 5}, dn[1] = {ntl};
    size_t nlat = (size_t)(nl ? nl : 1) * 3 * 2 * 4 * 4, ntxt = (size_t)(nt ? nt : 1) * 30;
    float *a = osp_malloc(nlat * sizeof(float)), *b = osp_malloc(ntxt * sizeof(float));
    int32_t *ia = osp_calloc(nlat, sizeof(int32_t)), *tl = osp_calloc((size_t)(ntl > 0 ? ntl : 1), sizeof(int32_t));
    for (size_t i = 0; i < nlat; i++) a[i] = nrand();
    for (size_t i = 0; i < ntxt; i++) b[i] = nrand();
    if (int_latents) h5w_i32(w, "latents", 5, dl, ia);
    else h5w_f32(w, "latents", rank_l, dl, a);
    if (with_text) h5w_f32(w, "text", 3, dt, b);
    if (ntl >= 0) h5w_i32(w, "text_len", 1, dn, tl);
    EXPECT(h5w_close(w, err, sizeof err) == 0, "%s", err);
    free(a), free(b), free(ia), free(tl);
}

static void test_schema_errors(void) {
    char p[600];
    tpath(p, sizeof p, "no_text.h5");
    write_file(p, 6, 5, 6, 0, 0, -1);
    expect_open_error(p, "missing dataset `text`");
    tpath(p, sizeof p, "rank4.h5");
    write_file(p, 6, 4, 6, 1, 0, -1);
    expect_open_error(p, "rank 4, expected 5");
    tpath(p, sizeof p, "nmismatch.h5");
    write_file(p, 6, 5, 5, 1, 0, -1);
    expect_open_error(p, "N=5");
    tpath(p, sizeof p, "tlmismatch.h5");
    write_file(p, 6, 5, 6, 1, 0, 4);
    expect_open_error(p, "text_len");
    tpath(p, sizeof p, "empty.h5");
    write_file(p, 0, 5, 0, 1, 0, -1);
    expect_open_error(p, "empty (N=0)");
    tpath(p, sizeof p, "intlat.h5");
    write_file(p, 6, 5, 6, 1, 1, -1);
    expect_open_error(p, "unsupported dtype int32");
    tpath(p, sizeof p, "not_hdf5.h5");
    FILE *f = fopen(p, "w");
    fputs("this is not HDF5\n", f);
    fclose(f);
    expect_open_error(p, "not an HDF5 file");
    tpath(p, sizeof p, "does_not_exist.h5");
    expect_open_error(p, "cannot open");
    tpath(p, sizeof p, "small.h5"); /* 6 samples cannot make a batch of 2 on 4 ranks */
    write_file(p, 6, 5, 6, 1, 0, -1);
    osp_dataset *ds;
    char err[1024];
    EXPECT(dataset_open(&ds, p, 0, 4, 1, 2, 0, err, sizeof err) != 0 && strstr(err, "no full batch"), "%s", err);
}

/* ------------------------------------------------------------------ ordering */

typedef struct {
    int n, cap;
    int64_t *idx;
    float *lat_sum; /* cheap fingerprint of the whole batch contents, compared bit-exactly */
    int *epoch;
} trace_t;

static void trace_run(trace_t *tr, osp_dataset *ds, int steps) {
    char err[512];
    for (int s = 0; s < steps; s++) {
        osp_batch b;
        if (dataset_next(ds, &b, err, sizeof err) != 0) {
            EXPECT(0, "dataset_next: %s", err);
            return;
        }
        if (tr->n + b.B > tr->cap) {
            tr->cap = 2 * (tr->n + b.B);
            tr->idx = realloc(tr->idx, (size_t)tr->cap * sizeof *tr->idx);
            tr->lat_sum = realloc(tr->lat_sum, (size_t)tr->cap * sizeof *tr->lat_sum);
            tr->epoch = realloc(tr->epoch, (size_t)tr->cap * sizeof *tr->epoch);
        }
        size_t le = (size_t)b.C * b.T * b.H * b.W, te = (size_t)b.L * b.Dt;
        for (int i = 0; i < b.B; i++) {
            double s1 = 0;
            for (size_t k = 0; k < le; k++) s1 += b.latents[i * le + k] * (double)(k % 7 + 1);
            for (size_t k = 0; k < te; k++) s1 += b.text[i * te + k] * (double)(k % 5 + 1);
            s1 += b.text_len[i];
            tr->idx[tr->n] = b.index[i];
            tr->lat_sum[tr->n] = (float)s1;
            tr->epoch[tr->n] = b.epoch;
            tr->n++;
        }
    }
}

static int trace_eq(const trace_t *a, int a0, const trace_t *b, int b0, int n) {
    for (int i = 0; i < n; i++)
        if (a->idx[a0 + i] != b->idx[b0 + i] || memcmp(&a->lat_sum[a0 + i], &b->lat_sum[b0 + i], sizeof(float)))
            return 0;
    return 1;
}

static void trace_free(trace_t *t) { free(t->idx), free(t->lat_sum), free(t->epoch); }

static osp_dataset *open_ok(const char *p, int rank, int world, uint64_t seed, int B, int pf) {
    osp_dataset *ds = NULL;
    char err[1024];
    int rc = dataset_open(&ds, p, rank, world, seed, B, pf, err, sizeof err);
    EXPECT(rc == 0, "%s", err);
    if (rc) exit(1);
    return ds;
}

static void test_ordering(const char *train, int N) {
    const int B = 4;
    osp_dataset *a = open_ok(train, 0, 1, 11, B, 0), *b = open_ok(train, 0, 1, 11, B, 0),
                *c = open_ok(train, 0, 1, 12, B, 0);
    int spe = (int)dataset_steps_per_epoch(a), per = spe * B;
    EXPECT(spe == N / B, "steps per epoch %d (N=%d, B=%d)", spe, N, B);
    trace_t ta = {0}, tb = {0}, tc = {0};
    trace_run(&ta, a, 2 * spe);
    trace_run(&tb, b, 2 * spe);
    trace_run(&tc, c, spe);
    EXPECT(trace_eq(&ta, 0, &tb, 0, 2 * per), "same seed -> same order");
    EXPECT(!trace_eq(&ta, 0, &ta, per, per), "epoch 0 and 1 differ");
    EXPECT(!trace_eq(&ta, 0, &tc, 0, per), "different seeds differ");
    EXPECT(ta.epoch[0] == 0 && ta.epoch[per] == 1, "epoch counter");
    char *seen = calloc((size_t)N, 1); /* no sample twice in one epoch */
    int dup = 0;
    for (int i = 0; i < per; i++) dup += seen[ta.idx[i]]++ != 0;
    EXPECT(dup == 0, "%d duplicates within an epoch", dup);
    free(seen);
    /* batch contents are the file's rows: compare against a direct read */
    char err[512];
    int64_t d[8];
    float *all;
    EXPECT(h5_read_f32(train, "latents", 5, d, &all, err, sizeof err) == 0, "%s", err);
    osp_batch bt;
    osp_dataset *e = open_ok(train, 0, 1, 3, B, 0);
    dataset_next(e, &bt, err, sizeof err);
    size_t le = (size_t)bt.C * bt.T * bt.H * bt.W;
    for (int i = 0; i < B; i++)
        EXPECT(memcmp(bt.latents + i * le, all + bt.index[i] * le, le * sizeof(float)) == 0, "row %d content", i);
    dataset_close(e);
    free(all);
    trace_free(&ta), trace_free(&tb), trace_free(&tc);
    dataset_close(a), dataset_close(b), dataset_close(c);

    /* sharding: two ranks see disjoint halves, union = all but the dropped tail */
    osp_dataset *r0 = open_ok(train, 0, 2, 11, B, 0), *r1 = open_ok(train, 1, 2, 11, B, 2);
    int s2 = (int)dataset_steps_per_epoch(r0);
    EXPECT(s2 == N / (2 * B) && s2 == dataset_steps_per_epoch(r1), "world=2 steps %d", s2);
    trace_t t0 = {0}, t1 = {0};
    trace_run(&t0, r0, 2 * s2);
    trace_run(&t1, r1, 2 * s2);
    for (int ep = 0; ep < 2; ep++) {
        char *own = calloc((size_t)N, 1);
        int overlap = 0, dups = 0;
        for (int i = 0; i < s2 * B; i++) dups += own[t0.idx[ep * s2 * B + i]]++ != 0;
        for (int i = 0; i < s2 * B; i++) overlap += own[t1.idx[ep * s2 * B + i]] == 1, dups += own[t1.idx[ep * s2 * B + i]]++ > 1;
        EXPECT(overlap == 0 && dups == 0, "epoch %d: ranks overlap in %d samples (%d dups)", ep, overlap, dups);
        free(own);
    }
    printf("sharding: world=2, %d steps/epoch, %d samples per rank per epoch, %d dropped\n", s2, s2 * B,
           N - 2 * s2 * B);
    trace_free(&t0), trace_free(&t1);
    dataset_close(r0), dataset_close(r1);

    /* prefetch 0 vs 2 (and 5): identical over 3 epochs */
    osp_dataset *p0 = open_ok(train, 0, 1, 5, B, 0), *p2 = open_ok(train, 0, 1, 5, B, 2),
                *p5 = open_ok(train, 0, 1, 5, B, 5);
    trace_t q0 = {0}, q2 = {0}, q5 = {0};
    trace_run(&q0, p0, 3 * spe);
    trace_run(&q2, p2, 3 * spe);
    trace_run(&q5, p5, 3 * spe);
    EXPECT(trace_eq(&q0, 0, &q2, 0, 3 * per) && trace_eq(&q0, 0, &q5, 0, 3 * per), "prefetch changes results");

    /* resume: a fresh reader seeked to position P continues bit-identically */
    int P = spe + 3;
    osp_dataset *r = open_ok(train, 0, 1, 5, B, 2);
    trace_t tr = {0};
    EXPECT(dataset_seek(r, P) == 0 && dataset_position(r) == P, "seek/position");
    trace_run(&tr, r, 3 * spe - P);
    EXPECT(trace_eq(&q0, P * B, &tr, 0, (3 * spe - P) * B), "resume after seek is bit-identical");
    EXPECT(dataset_position(p0) == 3 * spe, "position counts batches");
    /* seek backwards on a reader whose prefetch thread is running ahead */
    dataset_seek(p5, 2);
    trace_t tb2 = {0};
    trace_run(&tb2, p5, 4);
    EXPECT(trace_eq(&q0, 2 * B, &tb2, 0, 4 * B), "seek back on a prefetching reader");
    trace_free(&q0), trace_free(&q2), trace_free(&q5), trace_free(&tr), trace_free(&tb2);
    dataset_close(p0), dataset_close(p2), dataset_close(p5), dataset_close(r);
}

/* ------------------------------------------------------------------ buckets, f16/bf16 */

/* issue 21: hostile files (the fuzz corpus's seeds) end in one error, not a stack/heap overflow
 * (array-valued dtype attribute), a permutation wrapped to 0 bytes (2^62 clips) or an
 * overflowed product (per-clip dims); a FIFO is refused without blocking */
static void test_hostile(void) {
    static const char *needle[SEED_N] = {NULL, NULL, "unsupported dtype", "unsupported dtype", "claims N=",
                                         "elements per clip"};
    char p[600], err[1024];
    for (int k = 0; k < SEED_N; k++) {
        tpath(p, sizeof p, seed_names[k]);
        EXPECT(seed_write((seed_kind)k, p) == 0, "write %s", p);
        if (needle[k]) {
            expect_open_error(p, needle[k]);
        } else {
            osp_dataset *ds = open_ok(p, 0, 1, 3, 1, 0);
            osp_batch b;
            EXPECT(dataset_next(ds, &b, err, sizeof err) == 0, "%s", err);
            dataset_close(ds);
        }
    }
    /* the same shapes through h5_read_f32 (osp forward --inputs, osp sample --prompts) */
    int64_t dims[8];
    float *x = NULL;
    tpath(p, sizeof p, seed_names[SEED_DIMS_OVERFLOW]);
    EXPECT(h5_read_f32(p, "latents", 5, dims, &x, err, sizeof err) != 0 && strstr(err, "too large"),
           "dims overflow: '%s'", err);
    tpath(p, sizeof p, seed_names[SEED_HUGE_N]);
    EXPECT(h5_read_f32(p, "text", 3, dims, &x, err, sizeof err) != 0, "2^62 text rows must not be read");
    tpath(p, sizeof p, "fifo.h5");
    EXPECT(mkfifo(p, 0600) == 0, "mkfifo %s", p);
    alarm(20); /* a hang fails the test instead of stalling ctest */
    expect_open_error(p, "not a regular file");
    EXPECT(h5_read_f32(p, "latents", 5, dims, &x, err, sizeof err) != 0 && strstr(err, "not a regular file"), "%s",
           err);
    alarm(0);
}

/* issue 21: an `osp forward` killed while writing OUT.h5 left OUT.h5.tmp.PID behind; a writer's
 * temp file is now removed by SIGINT / SIGTERM (and by a fatal error) */
static void test_killed_writer(void) {
    char p[600], tmp[700];
    tpath(p, sizeof p, "killed.h5");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        char err[256];
        h5_writer *w = h5w_open(p, err, sizeof err);
        if (!w) _exit(3);
        int64_t d[1] = {4};
        float v[4] = {1, 2, 3, 4};
        h5w_f32(w, "x", 1, d, v);
        raise(SIGTERM); /* as `kill PID` would, mid-write */
        _exit(4);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", p, (int)pid);
    EXPECT(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "writer child: status %d", st);
    EXPECT(access(tmp, F_OK) != 0 && access(p, F_OK) != 0, "a killed writer left %s", tmp);
    printf("killed writer: no %s left\n", tmp);
}

static void test_buckets(void) {
    char p[600], err[512];
    tpath(p, sizeof p, "buckets.h5");
    h5_writer *w = h5w_open(p, err, sizeof err);
    const int n1 = 20, n2 = 13;
    int64_t d1[5] = {n1, 3, 4, 16, 16}, d2[5] = {n2, 3, 4, 8, 32}, t1[3] = {n1, 6, 5}, t2[3] = {n2, 6, 5};
    size_t z1 = (size_t)n1 * 3 * 4 * 256, z2 = (size_t)n2 * 3 * 4 * 256;
    float *a = osp_malloc(z1 * 4), *b = osp_malloc(z2 * 4), *t = osp_malloc((size_t)n1 * 30 * 4);
    for (size_t i = 0; i < z1; i++) a[i] = nrand();
    for (size_t i = 0; i < z2; i++) b[i] = nrand();
    for (int i = 0; i < n1 * 30; i++) t[i] = nrand();
    h5w_f32(w, "bucket_16x16/latents", 5, d1, a);
    h5w_f32(w, "bucket_16x16/text", 3, t1, t);
    h5w_f32(w, "bucket_8x32/latents", 5, d2, b);
    h5w_f32(w, "bucket_8x32/text", 3, t2, t);
    int64_t one[1] = {1};
    h5w_f32(w, "meta/info", 1, one, t); /* a group without latents/text: ignored */
    EXPECT(h5w_close(w, err, sizeof err) == 0, "%s", err);
    osp_dataset *ds = open_ok(p, 0, 1, 9, 4, 1);
    EXPECT(dataset_num_buckets(ds) == 2 && dataset_num_samples(ds) == n1 + n2, "2 buckets, %d samples",
           dataset_num_samples(ds));
    EXPECT(dataset_steps_per_epoch(ds) == n1 / 4 + n2 / 4, "steps %lld", (long long)dataset_steps_per_epoch(ds));
    EXPECT(strcmp(dataset_bucket_name(ds, 1), "bucket_8x32") == 0 && dataset_H(ds, 1) == 8 && dataset_W(ds, 1) == 32,
           "bucket 1 shape");
    int per_bucket[2] = {0, 0};
    for (int s = 0; s < 2 * dataset_steps_per_epoch(ds); s++) {
        osp_batch bt;
        EXPECT(dataset_next(ds, &bt, err, sizeof err) == 0, "%s", err);
        int k = bt.bucket;
        per_bucket[k]++;
        EXPECT(bt.H == (k ? 8 : 16) && bt.W == (k ? 32 : 16), "batch shape matches bucket");
        for (int i = 0; i < bt.B; i++) {
            int64_t ix = bt.index[i], lo = k ? n1 : 0, hi = k ? n1 + n2 : n1;
            EXPECT(ix >= lo && ix < hi, "batch mixes buckets (index %lld in bucket %d)", (long long)ix, k);
            const float *src = (k ? b : a) + (size_t)(ix - lo) * 3 * 4 * 256;
            EXPECT(memcmp(bt.latents + (size_t)i * 3 * 4 * 256, src, 3 * 4 * 256 * 4) == 0, "bucket row content");
            EXPECT(bt.text_len[i] == 6, "default text_len = L");
        }
    }
    EXPECT(per_bucket[0] == 2 * (n1 / 4) && per_bucket[1] == 2 * (n2 / 4), "batches per bucket %d %d",
           per_bucket[0], per_bucket[1]);
    dataset_close(ds);
    free(a), free(b), free(t);
}

static void test_half(void) {
    char p32[600], p16[600], pbf[600], pu16[600], err[512];
    tpath(p32, sizeof p32, "lat_f32.h5");
    tpath(p16, sizeof p16, "lat_f16.h5");
    tpath(pbf, sizeof pbf, "lat_bf16.h5");
    tpath(pu16, sizeof pu16, "lat_u16f16.h5");
    const int N = 8;
    int64_t dl[5] = {N, 4, 3, 6, 5}, dt[3] = {N, 7, 9};
    size_t nl = (size_t)N * 4 * 3 * 6 * 5, nt = (size_t)N * 63;
    float *lat = osp_malloc(nl * 4), *txt = osp_malloc(nt * 4);
    uint16_t *bits = osp_malloc(nl * 2);
    for (size_t i = 0; i < nl; i++) lat[i] = 3.0f * nrand(), bits[i] = half_f32_to_f16(lat[i]);
    for (size_t i = 0; i < nt; i++) txt[i] = nrand();
    const char *paths[4] = {p32, p16, pbf, pu16};
    for (int f = 0; f < 4; f++) {
        h5_writer *w = h5w_open(paths[f], err, sizeof err);
        if (f == 0) h5w_f32(w, "latents", 5, dl, lat), h5w_f32(w, "text", 3, dt, txt);
        if (f == 1) h5w_f16(w, "latents", 5, dl, lat), h5w_f16(w, "text", 3, dt, txt);
        if (f == 2) h5w_bf16(w, "latents", 5, dl, lat), h5w_bf16(w, "text", 3, dt, txt);
        if (f == 3) h5w_f32(w, "text", 3, dt, txt); /* latents: raw HDF5 below */
        EXPECT(h5w_close(w, err, sizeof err) == 0, "%s", err);
    }
    /* write the uint16 variant directly with HDF5 (h5util has no raw-uint16 writer) */
    {
        h5_lock();
        hid_t f = H5Fopen(pu16, H5F_ACC_RDWR, H5P_DEFAULT);
        hsize_t hd[5] = {N, 4, 3, 6, 5};
        hid_t sp = H5Screate_simple(5, hd, NULL);
        hid_t d = H5Dcreate2(f, "latents", H5T_STD_U16LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, bits);
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, 7);
        hid_t as = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(d, "dtype", st, as, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, st, "float16");
        H5Aclose(a), H5Sclose(as), H5Tclose(st), H5Dclose(d), H5Sclose(sp), H5Fclose(f);
        h5_unlock();
    }
    float *exp16 = osp_malloc(nl * 4), *expbf = osp_malloc(nl * 4);
    for (size_t i = 0; i < nl; i++) exp16[i] = half_f16_to_f32(bits[i]), expbf[i] = half_bf16_to_f32(half_f32_to_bf16(lat[i]));
    const float *expect[4] = {lat, exp16, expbf, exp16};
    const double tol[4] = {0, 1e-3, 8e-3, 1e-3};
    for (int f = 0; f < 4; f++) {
        osp_dataset *ds = open_ok(paths[f], 0, 1, 4, 2, 0);
        double worst = 0;
        for (int s = 0; s < N / 2; s++) {
            osp_batch b;
            EXPECT(dataset_next(ds, &b, err, sizeof err) == 0, "%s", err);
            size_t le = 4 * 3 * 6 * 5;
            for (int i = 0; i < b.B; i++) {
                const float *want = expect[f] + b.index[i] * le;
                EXPECT(memcmp(b.latents + i * le, want, le * 4) == 0, "%s: decoded bits", paths[f]);
                double r = rel_err(b.latents + i * le, lat + b.index[i] * le, le);
                if (r > worst) worst = r;
            }
        }
        printf("half: %s ||read-f32||/||f32|| = %.2e (tol %.0e)\n", paths[f], worst, tol[f]);
        EXPECT(worst <= tol[f] && (f == 0 || worst > 0), "%s: relative error %.3e", paths[f], worst);
        dataset_close(ds);
        int64_t dims[8];
        float *all;
        EXPECT(h5_read_f32(paths[f], "latents", 5, dims, &all, err, sizeof err) == 0, "%s", err);
        EXPECT(memcmp(all, expect[f], nl * 4) == 0, "h5_read_f32 of %s", paths[f]);
        free(all);
    }
    /* conversion corner cases */
    EXPECT(half_f32_to_f16(65504.0f) == 0x7bff && half_f32_to_f16(65520.0f) == 0x7c00, "f16 max/overflow");
    EXPECT(half_f16_to_f32(0x0001) == 5.9604644775390625e-08f && half_f32_to_f16(5.9604644775390625e-08f) == 1,
           "f16 subnormal");
    EXPECT(half_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00 && half_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02, "f16 RNE");
    EXPECT(half_f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80 && half_f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82, "bf16 RNE");
    free(lat), free(txt), free(bits), free(exp16), free(expbf);
}

/* ------------------------------------------------------------------ h5util writer */

static void test_h5util(void) {
    char p[600], tmp[700], err[512];
    tpath(p, sizeof p, "util.h5");
    h5_writer *w = h5w_open(p, err, sizeof err);
    float v[6];
    for (int i = 0; i < 6; i++) v[i] = nrand();
    int64_t d[2] = {2, 3};
    const char *s[3] = {"alpha", "", "gamma delta"};
    EXPECT(h5w_f32(w, "deep/group/x", 2, d, v) == 0, "nested dataset");
    EXPECT(h5w_strings(w, "names", 3, s) == 0, "strings");
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", p, (int)getpid());
    EXPECT(access(p, F_OK) != 0 && access(tmp, F_OK) == 0, "only the temp file exists before close");
    EXPECT(h5w_close(w, err, sizeof err) == 0, "%s", err);
    EXPECT(access(p, F_OK) == 0 && access(tmp, F_OK) != 0, "renamed at close");
    EXPECT(h5_has(p, "deep/group/x") && !h5_has(p, "deep/nothing/x") && !h5_has(p, "nope"), "h5_has");
    int64_t dims[8];
    float *r;
    EXPECT(h5_read_f32(p, "deep/group/x", 2, dims, &r, err, sizeof err) == 0 && dims[0] == 2 && dims[1] == 3 &&
               memcmp(r, v, sizeof v) == 0, "read back");
    free(r);
    EXPECT(h5_read_f32(p, "deep/group/x", 3, dims, &r, err, sizeof err) != 0 && strstr(err, "rank 2, expected 3") &&
               strstr(err, p), "rank error: %s", err);
    EXPECT(h5_read_f32(p, "missing", -1, dims, &r, err, sizeof err) != 0 && strstr(err, "missing dataset"), "%s", err);
    EXPECT(h5_read_f32(p, "names", -1, dims, &r, err, sizeof err) != 0 && strstr(err, "unsupported dtype"), "%s", err);
    /* a failing writer leaves neither the final nor the temp file */
    char q[600];
    tpath(q, sizeof q, "fail.h5");
    w = h5w_open(q, err, sizeof err);
    h5w_f32(w, "x", 2, d, v);
    EXPECT(h5w_f32(w, "x", 2, d, v) != 0, "duplicate dataset tu_nfail");
    EXPECT(h5w_close(w, err, sizeof err) != 0 && strstr(err, "already exists") && strstr(err, q), "%s", err);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", q, (int)getpid());
    EXPECT(access(q, F_OK) != 0 && access(tmp, F_OK) != 0, "failed writer cleaned up");
    EXPECT(h5w_open("/nonexistent-dir/x.h5", err, sizeof err) == NULL && strstr(err, "/nonexistent-dir/x.h5"), "%s",
           err);
}

/* ------------------------------------------------------------------ GIF / PNG decoders */

/* an independent GIF reader: header, global table, extensions, LZW image data */
static int gif_decode(const uint8_t *g, size_t n, int *W, int *H, uint8_t *pal, uint8_t *frames, int maxf) {
    if (n < 13 || memcmp(g, "GIF89a", 6) != 0) return -1;
    *W = g[6] | g[7] << 8, *H = g[8] | g[9] << 8;
    size_t p = 13;
    if (g[10] & 0x80) {
        int sz = 3 << ((g[10] & 7) + 1);
        memcpy(pal, g + p, (size_t)sz);
        p += (size_t)sz;
    }
    int nf = 0;
    static uint16_t prefix[4096];
    static uint8_t suffix[4096], stack[4097];
    uint8_t *data = malloc(n);
    while (p < n) {
        uint8_t b = g[p++];
        if (b == 0x3B) break;
        if (b == 0x21) {
            p++;
            while (p < n && g[p]) p += g[p] + 1u;
            p++;
            continue;
        }
        if (b != 0x2C || nf >= maxf) { free(data); return -1; }
        int w = g[p + 4] | g[p + 5] << 8, h = g[p + 6] | g[p + 7] << 8;
        p += 9;
        int minsz = g[p++];
        size_t dn = 0;
        while (p < n && g[p]) {
            memcpy(data + dn, g + p + 1, g[p]);
            dn += g[p];
            p += g[p] + 1u;
        }
        p++;
        uint8_t *out = frames + (size_t)nf * w * h;
        size_t o = 0, bitpos = 0;
        int clear = 1 << minsz, eoi = clear + 1, next = eoi + 1, cs = minsz + 1, prev = -1;
        for (;;) {
            if (bitpos + (size_t)cs > dn * 8) { free(data); return -2; }
            int code = 0;
            for (int i = 0; i < cs; i++, bitpos++) code |= ((data[bitpos >> 3] >> (bitpos & 7)) & 1) << i;
            if (code == clear) { cs = minsz + 1, next = eoi + 1, prev = -1; continue; }
            if (code == eoi) break;
            int cur = code, sp = 0;
            if (prev < 0) {
                if (code >= clear) { free(data); return -3; }
                out[o++] = (uint8_t)code;
                prev = code;
                continue;
            }
            if (code > next || (code == next && next >= 4096)) { free(data); return -4; }
            if (code == next) cur = prev;
            while (cur >= clear) stack[sp++] = suffix[cur], cur = prefix[cur];
            stack[sp++] = (uint8_t)cur; /* first byte of the string */
            uint8_t first = (uint8_t)cur;
            if ((size_t)sp + (code == next) + o > (size_t)w * h) { free(data); return -5; }
            while (sp) out[o++] = stack[--sp];
            if (code == next) out[o++] = first;
            if (next < 4096) prefix[next] = (uint16_t)prev, suffix[next] = first, next++;
            if (next == (1 << cs) && cs < 12) cs++;
            prev = code;
        }
        if (o != (size_t)w * h || w != *W || h != *H) { free(data); return -6; }
        nf++;
    }
    free(data);
    return nf;
}

static void check_gif(const float *video, int T, int H, int W, int up, const char *what) {
    uint8_t *g;
    size_t n;
    EXPECT(gif_encode(video, T, H, W, up, 10, &g, &n) == 0, "encode %s", what);
    int OW = 0, OH = 0;
    uint8_t pal[768];
    uint8_t *frames = malloc((size_t)T * H * up * W * up);
    int nf = gif_decode(g, n, &OW, &OH, pal, frames, T);
    EXPECT(nf == T && OW == W * up && OH == H * up, "%s: decoded %d frames %dx%d", what, nf, OW, OH);
    size_t plane = (size_t)H * W, chan = (size_t)T * plane, bad = 0;
    double maxerr = 0;
    for (int t = 0; t < T && nf == T; t++)
        for (int y = 0; y < OH; y++)
            for (int x = 0; x < OW; x++) {
                size_t s = (size_t)t * plane + (size_t)(y / up) * W + x / up;
                int ix = frames[((size_t)t * OH + y) * OW + x];
                bad += ix != gif_palette_index(video[s], video[chan + s], video[2 * chan + s]);
                for (int c = 0; c < 3; c++) {
                    double orig = fmin(1, fmax(-1, video[c * chan + s]));
                    double e = fabs(pal[3 * ix + c] / 127.5 - 1.0 - orig);
                    if (e > maxerr) maxerr = e;
                }
            }
    printf("gif %s: %zu bytes, %d frames %dx%d, index mismatches %zu, max |err| %.3f\n", what, n, nf, OW, OH, bad,
           maxerr);
    EXPECT(bad == 0 && maxerr <= 25.5 / 127.5 + 1e-6 + 0.5 / 127.5, "%s: GIF round trip", what);
    free(frames);
    free(g);
}

static void test_gif_png(const char *train) {
    /* random frames: incompressible, so the LZW table fills and clears many times */
    int T = 3, H = 96, W = 128; /* > 4096 codes per frame: several table clears */
    size_t n = (size_t)3 * T * H * W;
    float *v = osp_malloc(n * 4);
    for (size_t i = 0; i < n; i++) v[i] = (float)(2.2 * urand() - 1.1);
    check_gif(v, T, H, W, 1, "noise");
    check_gif(v, T, H, W, 3, "noise x3");
    free(v);
    int64_t d[8];
    float *all;
    char err[512], p[600];
    EXPECT(h5_read_f32(train, "latents", 5, d, &all, err, sizeof err) == 0, "%s", err);
    check_gif(all, 8, 32, 32, 4, "shapes clip x4");
    tpath(p, sizeof p, "clip.gif");
    EXPECT(gif_write(p, all, 8, 32, 32, 4, 12, err, sizeof err) == 0, "%s", err);
    EXPECT(gif_write(p, all, 0, 32, 32, 4, 12, err, sizeof err) != 0 && strstr(err, p), "bad GIF shape error");
    /* PNG: parse chunks, check CRCs, inflate the stored blocks, compare pixels */
    tpath(p, sizeof p, "frame.png");
    const int up = 3, OH = 32 * up, OW = 32 * up;
    /* png_write reads [3,H,W]: frame 0 of the clip as its own planes */
    float *rgb = osp_malloc(3 * 32 * 32 * 4);
    for (int c = 0; c < 3; c++) memcpy(rgb + c * 1024, all + (size_t)c * 8 * 1024, 1024 * 4);
    EXPECT(png_write(p, rgb, 32, 32, up, err, sizeof err) == 0, "%s", err);
    FILE *f = fopen(p, "rb");
    uint8_t *buf = malloc(1 << 20);
    size_t fn = f ? fread(buf, 1, 1 << 20, f) : 0;
    if (f) fclose(f);
    EXPECT(fn > 8 && memcmp(buf, "\x89PNG\r\n\x1a\n", 8) == 0, "PNG signature");
    uint8_t *raw = malloc((size_t)OH * (1 + 3 * OW) + 16);
    size_t rn = 0, q = 8;
    int crc_ok = 1, got_end = 0;
    while (q + 12 <= fn) {
        uint32_t len = (uint32_t)buf[q] << 24 | buf[q + 1] << 16 | buf[q + 2] << 8 | buf[q + 3];
        const uint8_t *type = buf + q + 4, *dat = buf + q + 8;
        uint32_t c = 0xFFFFFFFFu;
        for (uint32_t i = 0; i < len + 4; i++) {
            c ^= type[i];
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        c ^= 0xFFFFFFFFu;
        const uint8_t *cp = dat + len;
        crc_ok &= c == ((uint32_t)cp[0] << 24 | cp[1] << 16 | cp[2] << 8 | cp[3]);
        if (!memcmp(type, "IDAT", 4)) {
            size_t z = 2;
            for (;;) {
                int final = dat[z] & 1;
                unsigned bl = dat[z + 1] | dat[z + 2] << 8, nl = dat[z + 3] | dat[z + 4] << 8;
                EXPECT((bl ^ nl) == 0xFFFF && (dat[z] & 6) == 0, "stored block header");
                memcpy(raw + rn, dat + z + 5, bl);
                rn += bl, z += 5 + bl;
                if (final) break;
            }
        }
        if (!memcmp(type, "IEND", 4)) got_end = 1;
        q += 12 + len;
    }
    EXPECT(crc_ok && got_end && rn == (size_t)OH * (1 + 3 * OW), "PNG chunks (crc %d, end %d, %zu bytes)", crc_ok,
           got_end, rn);
    size_t badpx = 0;
    for (int y = 0; y < OH && rn == (size_t)OH * (1 + 3 * OW); y++)
        for (int x = 0; x < OW; x++)
            for (int c = 0; c < 3; c++)
                badpx += raw[(size_t)y * (1 + 3 * OW) + 1 + 3 * x + c] != gif_to_u8(rgb[c * 1024 + (y / up) * 32 + x / up]);
    EXPECT(badpx == 0, "PNG pixels (%zu wrong)", badpx);
    free(raw), free(buf), free(rgb), free(all);
}

int main(void) {
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/osp_test_data_XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    char train[600], val[700];
    tpath(train, sizeof train, "shapes.h5");
    shapes_val_path(train, val, sizeof val);
    EXPECT(strstr(val, "/shapes_val.h5") != NULL, "val path %s", val);
    char vp2[64];
    shapes_val_path("data/shapes_train.h5", vp2, sizeof vp2);
    EXPECT(strcmp(vp2, "data/shapes_val.h5") == 0, "val path of x_train.h5: %s", vp2);
    const int NTRAIN = 150, NVAL = 36;
    test_shapes(train, val, NTRAIN, NVAL);
    test_embedding(train);
    test_schema_errors();
    test_hostile();
    test_killed_writer();
    test_ordering(train, NTRAIN);
    test_buckets();
    test_half();
    test_h5util();
    test_gif_png(train);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (tu_nfail == 0 && system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    printf("%s (%d failures)\n", tu_nfail ? "FAILED" : "OK", tu_nfail);
    return tu_nfail ? 1 : 0;
}
