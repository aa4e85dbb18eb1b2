/*
 * metrics.c — log lines, progress line and metrics.jsonl (see metrics.h).
 */
#include "train/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static FILE *g_jsonl;
static int g_tty = -1;

static bool tty(void) {
    if (g_tty < 0) g_tty = isatty(2);
    return g_tty;
}

static void clear_progress(void) {
    if (tty()) fprintf(stderr, "\r\033[K");
}

static void fmt_eta(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    int h = (int)(s / 3600), m = (int)(fmod(s, 3600) / 60), sec = (int)fmod(s, 60);
    if (h)
        snprintf(buf, n, "%dh%02dm", h, m);
    else
        snprintf(buf, n, "%dm%02ds", m, sec);
}

/* JSON has no NaN: non-finite values are written as null */
static void jnum(const char *key, double v, bool last) {
    if (isfinite(v))
        fprintf(g_jsonl, "\"%s\": %.17g%s", key, v, last ? "" : ", ");
    else
        fprintf(g_jsonl, "\"%s\": null%s", key, last ? "" : ", ");
}

/* On resume, drop entries logged after the checkpoint we resume from (a preempted run
 * may have logged steps past its last checkpoint), so every step appears once. */
static void truncate_after(const char *path, int64_t step) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char tmp[4200], line[8192];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *o = fopen(tmp, "w");
    if (!o) {
        fclose(f);
        return;
    }
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"step\": ");
        if (p && atoll(p + 8) > step) continue;
        fputs(line, o);
    }
    fclose(f);
    fclose(o);
    rename(tmp, path);
}

void metrics_open(const char *path, int64_t resume_step) {
    if (resume_step >= 0) truncate_after(path, resume_step);
    g_jsonl = fopen(path, resume_step >= 0 ? "a" : "w");
    if (!g_jsonl) fprintf(stderr, "osp: warning: cannot write %s; metrics go to stdout only\n", path);
}

void metrics_quiet(void) { g_tty = 0; }

void metrics_close(void) {
    clear_progress();
    if (g_jsonl) fclose(g_jsonl);
    g_jsonl = NULL;
}

void metrics_log(int64_t step, int64_t total, double loss, double gnorm, double lr, double samples_s, double tokens_s,
                 double step_ms, double eta_s, int64_t skipped) {
    char eta[32];
    fmt_eta(eta, sizeof eta, eta_s);
    clear_progress();
    printf("step %6lld/%lld  loss %.5f  grad_norm %.4f  lr %.3e  %.1f samples/s  %.0f tokens/s  %.0f ms/step  ETA %s%s\n",
           (long long)step, (long long)total, loss, gnorm, lr, samples_s, tokens_s, step_ms, eta,
           skipped ? "  (skipped updates so far: see log)" : "");
    if (!g_jsonl) return;
    fprintf(g_jsonl, "{\"kind\": \"train\", \"step\": %lld, ", (long long)step);
    jnum("loss", loss, false);
    jnum("grad_norm", gnorm, false);
    jnum("lr", lr, false);
    jnum("samples_per_s", samples_s, false);
    jnum("tokens_per_s", tokens_s, false);
    jnum("step_ms", step_ms, false);
    jnum("eta_s", eta_s, false);
    fprintf(g_jsonl, "\"skipped_updates\": %lld}\n", (long long)skipped);
    fflush(g_jsonl);
}

void metrics_val(int64_t step, double val_loss) {
    clear_progress();
    printf("step %6lld  validation loss %.5f\n", (long long)step, val_loss);
    if (!g_jsonl) return;
    fprintf(g_jsonl, "{\"kind\": \"val\", \"step\": %lld, ", (long long)step);
    jnum("val_loss", val_loss, true);
    fprintf(g_jsonl, "}\n");
    fflush(g_jsonl);
}

void metrics_note(const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    clear_progress();
    printf("%s\n", buf);
    if (!g_jsonl) return;
    fprintf(g_jsonl, "{\"kind\": \"note\", \"text\": \"");
    for (const char *p = buf; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', g_jsonl);
        fputc(*p == '\n' ? ' ' : *p, g_jsonl);
    }
    fprintf(g_jsonl, "\"}\n");
    fflush(g_jsonl);
}

void metrics_progress(int64_t step, int64_t total, double loss, double elapsed_s, int64_t steps_done) {
    if (!tty()) return;
    int width = 30, fill = total > 0 ? (int)(width * step / total) : 0;
    char bar[64], eta[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    double per = steps_done > 0 ? elapsed_s / steps_done : 0;
    fmt_eta(eta, sizeof eta, per * (total - step));
    fprintf(stderr, "\r[%s] %lld/%lld loss %.4f ETA %s\033[K", bar, (long long)step, (long long)total, loss, eta);
}
