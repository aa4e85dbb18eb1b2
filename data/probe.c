/*
 * probe.c — color / direction / shape read-back of shapes-world clips (see probe.h).
 */
#include "data/probe.h"

#include <math.h>
#include <stdlib.h>

#include "data/shapes.h"

static int lit(const float *v, size_t chan, size_t s) {
    float m = v[s];
    if (v[chan + s] > m) m = v[chan + s];
    if (v[2 * chan + s] > m) m = v[2 * chan + s];
    return m > 0.0f;
}

int probe_video(const float *video, int T, int H, int W, int *color, int *direction, float *confidence) {
    const size_t plane = (size_t)H * W, chan = (size_t)T * plane;
    double rgb[3] = {0, 0, 0}, st = 0, stt = 0, sx = 0, sy = 0, stx = 0, sty = 0;
    long total = 0;
    int frames = 0;
    *color = *direction = -1;
    *confidence = 0.0f;
    for (int t = 0; t < T; t++) {
        double cx = 0, cy = 0;
        long n = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                size_t s = (size_t)t * plane + (size_t)y * W + x;
                if (!lit(video, chan, s)) continue;
                for (int c = 0; c < 3; c++) rgb[c] += video[c * chan + s];
                cx += x, cy += y, n++;
            }
        if (!n) continue;
        total += n;
        cx /= (double)n, cy /= (double)n;
        frames++, st += t, stt += (double)t * t, sx += cx, sy += cy, stx += t * cx, sty += t * cy;
    }
    if (!total) return -1;
    double d1 = 1e30, d2 = 1e30;
    for (int k = 0; k < SHAPES_NCOLORS; k++) {
        double d = 0;
        for (int c = 0; c < 3; c++) {
            double e = rgb[c] / (double)total - shapes_color_rgb[k][c];
            d += e * e;
        }
        d = sqrt(d);
        if (d < d1) d2 = d1, d1 = d, *color = k;
        else if (d < d2) d2 = d;
    }
    double ccol = d2 > 0 ? 1.0 - d1 / d2 : 0.0;
    double den = frames * stt - st * st;
    if (frames < 2 || den <= 0) return -1;
    double vx = (frames * stx - st * sx) / den, vy = (frames * sty - st * sy) / den;
    double ax = fabs(vx), ay = fabs(vy), major = ax > ay ? ax : ay, minor = ax > ay ? ay : ax;
    if (ax >= ay) *direction = vx > 0 ? SHAPES_RIGHT : SHAPES_LEFT;
    else *direction = vy > 0 ? SHAPES_DOWN : SHAPES_UP;
    double cdir = major + minor > 0 ? (major - minor) / (major + minor) : 0.0;
    if (major < 0.5) cdir *= major / 0.5;
    *confidence = (float)(ccol < cdir ? ccol : cdir);
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int probe_shape(const float *video, int T, int H, int W, int *shape, float *confidence) {
    const size_t plane = (size_t)H * W, chan = (size_t)T * plane;
    double *ratio = malloc((size_t)(T > 0 ? T : 1) * sizeof *ratio);
    int nr = 0;
    *shape = -1;
    *confidence = 0.0f;
    if (!ratio) return -1;
    for (int t = 0; t < T; t++) {
        int x0 = W, x1 = -1, y0 = H, y1 = -1;
        long n = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                if (lit(video, chan, (size_t)t * plane + (size_t)y * W + x)) {
                    n++;
                    if (x < x0) x0 = x;
                    if (x > x1) x1 = x;
                    if (y < y0) y0 = y;
                    if (y > y1) y1 = y;
                }
        if (n) ratio[nr++] = (double)n / ((double)(x1 - x0 + 1) * (y1 - y0 + 1));
    }
    if (!nr) {
        free(ratio);
        return -1;
    }
    qsort(ratio, (size_t)nr, sizeof *ratio, cmp_double);
    double r = ratio[nr / 2];
    free(ratio);
    /* class centres 1, pi/4, 1/2; the margin to the nearest threshold gives the confidence */
    const double hi = 0.89, lo = 0.64;
    *shape = r >= hi ? 0 : r >= lo ? 1 : 2;
    double m = *shape == 0 ? (r - hi) / (1.0 - hi) : *shape == 1 ? fmin(r - lo, hi - r) / ((hi - lo) / 2) : (lo - r) / (lo - 0.5);
    *confidence = (float)(m < 0 ? 0 : m > 1 ? 1 : m);
    return 0;
}

int probe_parse_prompt(const char *prompt, int *color, int *shape, int *direction) {
    return shapes_parse_prompt(prompt, color, shape, direction);
}

const char *probe_color_name(int c) { return c >= 0 && c < SHAPES_NCOLORS ? shapes_color_names[c] : "?"; }
const char *probe_shape_name(int s) { return s >= 0 && s < SHAPES_NSHAPES ? shapes_shape_names[s] : "?"; }
const char *probe_direction_name(int d) { return d >= 0 && d < SHAPES_NDIRS ? shapes_dir_names[d] : "?"; }
