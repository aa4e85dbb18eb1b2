/*
 * shapes.c — the synthetic shapes video world: rendering, prompts, the fixed word
 * embedding, the held-out split and the HDF5 writer (see shapes.h for the definitions).
 */
#include "data/shapes.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "core/common.h"
#include "core/rng.h"
#include "data/h5util.h"

const char *const shapes_color_names[SHAPES_NCOLORS] = {"red", "green", "blue", "yellow",
                                                        "magenta", "cyan", "white"};
const char *const shapes_shape_names[SHAPES_NSHAPES] = {"square", "circle", "triangle"};
const char *const shapes_dir_names[SHAPES_NDIRS] = {"left", "right", "up", "down"};
const float shapes_color_rgb[SHAPES_NCOLORS][3] = {
    {1, -1, -1}, {-1, 1, -1}, {-1, -1, 1}, {1, 1, -1}, {1, -1, 1}, {-1, 1, 1}, {1, 1, 1}};

/* vocabulary order defines the word index used by the embedding */
static const char *const vocab[SHAPES_NVOCAB] = {"red",    "green",  "blue",   "yellow",   "magenta",
                                                 "cyan",   "white",  "square", "circle",   "triangle",
                                                 "moving", "left",   "right",  "up",       "down"};

/* ------------------------------------------------------------------ words */

int shapes_word_index(const char *word) {
    for (int v = 0; v < SHAPES_NVOCAB; v++)
        if (strcasecmp(word, vocab[v]) == 0) return v;
    return -1;
}

/* entry d of word v (mix = splitmix64, u01 = top 53 bits, core/rng.h):
 * key = mix(SHAPES_EMB_SEED ^ mix(v)); u1 = 1 - u01(mix(key + 2d)), u2 = u01(mix(key + 2d + 1));
 * z = sqrt(-2 ln u1) cos(2 pi u2); value = z / sqrt(Dt) */
void shapes_word_vector(int v, int text_dim, float *out) {
    uint64_t key = osp_splitmix64(SHAPES_EMB_SEED ^ osp_splitmix64((uint64_t)v));
    double scale = 1.0 / sqrt((double)text_dim);
    for (int d = 0; d < text_dim; d++) {
        double u1 = 1.0 - osp_u01(osp_splitmix64(key + 2 * (uint64_t)d)); /* (0,1]: log is finite */
        double u2 = osp_u01(osp_splitmix64(key + 2 * (uint64_t)d + 1));
        out[d] = (float)(osp_box_muller(u1, u2) * scale);
    }
}

/* split into lowercase words on whitespace/punctuation; returns count (<= maxw) or -1 */
static int split_words(const char *s, char words[][32], int maxw) {
    int n = 0;
    while (*s) {
        while (*s && !isalnum((unsigned char)*s)) s++;
        if (!*s) break;
        int len = 0;
        char w[32];
        while (*s && isalnum((unsigned char)*s)) {
            if (len < 31) w[len++] = (char)tolower((unsigned char)*s);
            s++;
        }
        w[len] = '\0';
        if (n >= maxw) return -1;
        memcpy(words[n++], w, 32);
    }
    return n;
}

int shapes_embed_prompt(const char *prompt, int text_len, int text_dim, float *out, int *len_out) {
    char words[64][32];
    int n = split_words(prompt, words, 64);
    memset(out, 0, (size_t)text_len * (size_t)text_dim * sizeof(float));
    *len_out = 0;
    if (n < 0) return -2;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        int v = shapes_word_index(words[i]);
        if (v < 0) return -1;
        if (i >= text_len) {
            rc = -2;
            continue;
        }
        shapes_word_vector(v, text_dim, out + (size_t)i * text_dim);
        *len_out = i + 1;
    }
    return rc;
}

int shapes_parse_prompt(const char *prompt, int *color, int *shape, int *dir) {
    char w[8][32];
    int n = split_words(prompt, w, 8), i = 0;
    *color = *shape = *dir = -1;
    if (n < 3) return -1;
    for (int c = 0; c < SHAPES_NCOLORS; c++)
        if (strcmp(w[i], shapes_color_names[c]) == 0) *color = c;
    i++;
    for (int s = 0; s < SHAPES_NSHAPES; s++)
        if (strcmp(w[i], shapes_shape_names[s]) == 0) *shape = s;
    i++;
    if (strcmp(w[i], "moving") == 0) i++;
    if (i != n - 1) return -1;
    for (int d = 0; d < SHAPES_NDIRS; d++)
        if (strcmp(w[i], shapes_dir_names[d]) == 0) *dir = d;
    return (*color < 0 || *shape < 0 || *dir < 0) ? -1 : 0;
}

void shapes_prompt(int color, int shape, int dir, char *buf, size_t buflen) {
    snprintf(buf, buflen, "%s %s moving %s", shapes_color_names[color], shapes_shape_names[shape],
             shapes_dir_names[dir]);
}

/* ------------------------------------------------------------------ held-out split */

void shapes_heldout_combo(int i, int *color, int *shape, int *dir) {
    *color = i % SHAPES_NCOLORS;
    *shape = i % SHAPES_NSHAPES;
    *dir = i % SHAPES_NDIRS;
}

int shapes_is_heldout(int color, int shape, int dir) {
    for (int i = 0; i < SHAPES_NHELDOUT; i++) {
        int c, s, d;
        shapes_heldout_combo(i, &c, &s, &d);
        if (c == color && s == shape && d == dir) return 1;
    }
    return 0;
}

static char heldout_text[SHAPES_NHELDOUT][64];
static const char *heldout_ptr[SHAPES_NHELDOUT];
static pthread_once_t heldout_once = PTHREAD_ONCE_INIT;

static void heldout_init(void) {
    for (int i = 0; i < SHAPES_NHELDOUT; i++) {
        int c, s, d;
        shapes_heldout_combo(i, &c, &s, &d);
        shapes_prompt(c, s, d, heldout_text[i], sizeof heldout_text[i]);
        heldout_ptr[i] = heldout_text[i];
    }
}

int shapes_heldout_prompts(const char *const **out) {
    pthread_once(&heldout_once, heldout_init);
    *out = heldout_ptr;
    return SHAPES_NHELDOUT;
}

/* ------------------------------------------------------------------ rendering */

static int inside(int shape, double X, double Y, double px, double py, double sz) {
    if (X < px || X >= px + sz || Y < py || Y >= py + sz) return 0;
    double cx = px + 0.5 * sz;
    if (shape == 0) return 1;
    if (shape == 1) {
        double dx = X - cx, dy = Y - (py + 0.5 * sz), r = 0.5 * sz;
        return dx * dx + dy * dy <= r * r;
    }
    /* triangle: apex at the top middle, base along the bottom edge */
    return fabs(X - cx) <= 0.5 * (Y - py);
}

static double shape_side(int S) {
    double sz = floor(0.34 * S + 0.5);
    return sz < 3 ? 3 : sz;
}

/* The default sweeps the shape from one edge to the other over the clip, so the direction word
 * fixes where the shape is along the motion in every frame (only the position across the motion
 * is free); slower clips also start anywhere along the motion. */
double shapes_speed(int frames, int size, double speed) {
    if (frames < 2) return 0;
    double full = (size - shape_side(size)) / (frames - 1);
    return speed > 0 && speed < full ? speed : full;
}

void shapes_render(float *video, int color, int shape, int dir, int frames, int size, double speed, uint64_t seed) {
    const int S = size, T = frames, SS = 4;
    double sz = shape_side(S), v = shapes_speed(T, S, speed);
    double travel = v * (T - 1); /* shapes_speed is 0 for a single frame */
    uint64_t k = osp_splitmix64(seed);
    double a0 = osp_u01(osp_splitmix64(k + 1)) * (S - sz - travel); /* along the motion */
    double b0 = osp_u01(osp_splitmix64(k + 2)) * (S - sz);          /* across it */
    const float *rgb = shapes_color_rgb[color];
    size_t plane = (size_t)S * S, chan = (size_t)T * plane;
    for (size_t i = 0; i < 3 * chan; i++) video[i] = -1.0f;
    for (int t = 0; t < T; t++) {
        double a = (dir == SHAPES_RIGHT || dir == SHAPES_DOWN) ? a0 + v * t : a0 + travel - v * t;
        double px = (dir == SHAPES_LEFT || dir == SHAPES_RIGHT) ? a : b0;
        double py = (dir == SHAPES_LEFT || dir == SHAPES_RIGHT) ? b0 : a;
        int x0 = (int)floor(px), y0 = (int)floor(py), x1 = (int)ceil(px + sz), y1 = (int)ceil(py + sz);
        for (int y = y0 < 0 ? 0 : y0; y < y1 && y < S; y++)
            for (int x = x0 < 0 ? 0 : x0; x < x1 && x < S; x++) {
                int hit = 0;
                for (int j = 0; j < SS; j++)
                    for (int i = 0; i < SS; i++)
                        hit += inside(shape, x + (i + 0.5) / SS, y + (j + 0.5) / SS, px, py, sz);
                if (!hit) continue;
                float cov = (float)hit / (SS * SS);
                for (int c = 0; c < 3; c++)
                    video[c * chan + (size_t)t * plane + (size_t)y * S + x] = -1.0f + cov * (rgb[c] + 1.0f);
            }
    }
}

/* ------------------------------------------------------------------ files */

void shapes_val_path(const char *train_path, char *out, size_t outlen) {
    size_t n = strlen(train_path);
    if (n > 9 && strcmp(train_path + n - 9, "_train.h5") == 0) /* x_train.h5 -> x_val.h5 */
        snprintf(out, outlen, "%.*s_val.h5", (int)(n - 9), train_path);
    else if (n > 3 && strcmp(train_path + n - 3, ".h5") == 0)
        snprintf(out, outlen, "%.*s_val.h5", (int)(n - 3), train_path);
    else
        snprintf(out, outlen, "%s_val.h5", train_path);
}

/* write one file: sample i uses combos[i % ncombo] and clip seed osp_splitmix64(stream + i) */
static int write_split(const char *path, const int (*combos)[3], int ncombo, int num, int T, int S, double speed,
                       int L, int Dt, uint64_t seed, uint64_t stream, char *err, size_t errlen) {
    h5_writer *w = h5w_open(path, err, errlen);
    if (!w) return -1;
    const int chunk = 128;
    size_t clip = (size_t)3 * T * S * S;
    float *vid = osp_malloc((size_t)chunk * clip * sizeof(float));
    float *text = osp_calloc((size_t)num * L * Dt, sizeof(float));
    int32_t *tlen = osp_malloc((size_t)num * sizeof(int32_t));
    int32_t *labels = osp_malloc((size_t)num * 3 * sizeof(int32_t));
    char **prompts = osp_malloc((size_t)num * sizeof(char *));
    int64_t ld[5] = {num, 3, T, S, S};
    h5w_f32_create(w, "latents", 5, ld);
    uint64_t key = osp_splitmix64(seed ^ stream);
    for (int i0 = 0; i0 < num; i0 += chunk) {
        int n = num - i0 < chunk ? num - i0 : chunk;
        for (int r = 0; r < n; r++) {
            int i = i0 + r;
            const int *cb = combos[i % ncombo];
            shapes_render(vid + (size_t)r * clip, cb[0], cb[1], cb[2], T, S, speed,
                          osp_splitmix64(key + (uint64_t)i));
            char p[64];
            shapes_prompt(cb[0], cb[1], cb[2], p, sizeof p);
            prompts[i] = strdup(p);
            int len = 0;
            shapes_embed_prompt(p, L, Dt, text + (size_t)i * L * Dt, &len);
            tlen[i] = len;
            labels[3 * i] = cb[0], labels[3 * i + 1] = cb[1], labels[3 * i + 2] = cb[2];
        }
        h5w_f32_rows(w, "latents", i0, n, vid);
    }
    int64_t td[3] = {num, L, Dt}, nd[1] = {num}, lbd[2] = {num, 3};
    h5w_f32(w, "text", 3, td, text);
    h5w_i32(w, "text_len", 1, nd, tlen);
    h5w_i32(w, "labels", 2, lbd, labels);
    h5w_strings(w, "prompts", num, (const char *const *)prompts);
    h5w_attr_str(w, "/", "world", "shapes");
    h5w_attr_i64(w, "/", "frames", T);
    h5w_attr_i64(w, "/", "size", S);
    h5w_attr_f64(w, "/", "speed", shapes_speed(T, S, speed));
    h5w_attr_i64(w, "/", "text_len", L);
    h5w_attr_i64(w, "/", "text_dim", Dt);
    h5w_attr_i64(w, "/", "seed", (int64_t)seed);
    for (int i = 0; i < num; i++) free(prompts[i]);
    free(prompts), free(labels), free(tlen), free(text), free(vid);
    return h5w_close(w, err, errlen);
}

int shapes_synth(const char *train_path, const char *val_path, int num, int num_val, int frames, int size,
                 double speed, int text_len, int text_dim, uint64_t seed, char *err, size_t errlen) {
    /* upper bounds keep every clip and embedding size well inside an int */
    if (num < 1 || num_val < 0 || frames < 1 || size < 8 || text_len < 4 || text_dim < 1 || num > (1 << 24) ||
        num_val > (1 << 24) || frames > 1024 || size > 4096 || text_len > 4096 || text_dim > 65536 ||
        (int64_t)3 * frames * size * size > (1 << 28) || (int64_t)text_len * text_dim > (1 << 24)) {
        snprintf(err, errlen,
                 "%s: bad shapes settings (num %d in 1..2^24, num_val %d in 0..2^24, frames %d in 1..1024, size %d "
                 "in 8..4096, text_len %d in 4..4096, text_dim %d in 1..65536; a clip at most 2^28 values)",
                 train_path, num, num_val, frames, size, text_len, text_dim);
        return -1;
    }
    int train[SHAPES_NCOLORS * SHAPES_NSHAPES * SHAPES_NDIRS][3], held[SHAPES_NHELDOUT][3], nt = 0;
    for (int c = 0; c < SHAPES_NCOLORS; c++)
        for (int s = 0; s < SHAPES_NSHAPES; s++)
            for (int d = 0; d < SHAPES_NDIRS; d++)
                if (!shapes_is_heldout(c, s, d)) train[nt][0] = c, train[nt][1] = s, train[nt][2] = d, nt++;
    for (int i = 0; i < SHAPES_NHELDOUT; i++) shapes_heldout_combo(i, &held[i][0], &held[i][1], &held[i][2]);
    if (write_split(train_path, (const int (*)[3])train, nt, num, frames, size, speed, text_len, text_dim, seed,
                    0x7a41ull, err, errlen) != 0)
        return -1;
    if (val_path && num_val > 0)
        return write_split(val_path, (const int (*)[3])held, SHAPES_NHELDOUT, num_val, frames, size, speed,
                           text_len, text_dim, seed, 0x5a11ull, err, errlen);
    return 0;
}
