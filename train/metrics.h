/*
 * metrics.h — what a run reports: log lines on stdout, a live progress line on a
 * terminal (stderr), and every logged value as one JSON object per line in
 * RUN/metrics.jsonl (read by scripts/plot_metrics.py).
 */
#ifndef OSP_METRICS_H
#define OSP_METRICS_H

#include <stdbool.h>
#include <stdint.h>

/* resume_step >= 0: append, dropping entries of steps after resume_step; -1: start afresh */
void metrics_open(const char *path, int64_t resume_step);
void metrics_close(void);
/* Ranks other than 0: no progress line on the terminal (and no metrics_open). */
void metrics_quiet(void);
void metrics_log(int64_t step, int64_t total, double loss, double gnorm, double lr, double samples_s, double tokens_s,
                 double step_ms, double eta_s, int64_t skipped);
void metrics_val(int64_t step, double val_loss);
void metrics_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Redraw the progress line (only when stderr is a terminal). */
void metrics_progress(int64_t step, int64_t total, double loss, double elapsed_s, int64_t steps_done);

#endif
