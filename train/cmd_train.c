/*
 * cmd_train.c — `osp train CONFIG`: flow-matching training (wan21.md §8) of the hybrid
 * Wan DiT on HDF5 latents with AdamW, gradient accumulation, validation, metrics,
 * crash-safe checkpoints, bit-exact resume and SLURM-style preemption (SIGTERM/SIGUSR1
 * save a checkpoint and exit 0). `--init CKPT` starts from any Wan2.1 checkpoint
 * (sparse fine-tuning).
 */
#include <math.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/cli.h"
#include "data/dataset.h"
#include "core/common.h"
#include "model/io/wan_io.h"
#include "optim/adamw.h"
#include "train/checkpoint.h"
#include "train/flow.h"
#include "train/metrics.h"

static volatile sig_atomic_t g_stop_signal = 0;
static void on_signal(int sig) { g_stop_signal = sig; }

static void usage(FILE *f) {
    fprintf(f, "usage: osp train [CONFIG.yaml] [--set key=value ...] [--init CKPT] [--resume]\n\n"
               "Flow-matching training of the Wan DiT (hybrid Skiparse attention, optional HiF8) on HDF5\n"
               "latents. Without CONFIG the built-in tiny demo config is used.\n"
               "  --init CKPT   start from a Wan2.1 checkpoint (any key layout; missing keys keep the init)\n"
               "  --resume      continue from the newest complete checkpoint in run_dir (bit-exact)\n"
               "SIGTERM / SIGUSR1 save a checkpoint and exit 0 (SLURM preemption).\n\nconfig keys:\n");
    config_print_keys(f);
}

typedef struct {
    osp_config cfg;
    const osp_backend *be;
    wan_model *m;
    adamw_state opt;
    adamw_hparams hp;
    osp_dataset *train, *val;
    int C, T, H, W;
    int64_t n;          /* latent elements per sample */
    float *h_x, *h_eps, *h_t, *h_tgt, *h_text, *sigma, *tsteps;
    float *d_x, *d_tgt, *d_text, *d_pred;
} trainer;

static void alloc_batch(trainer *t, int B, int C, int T, int H, int W) {
    if (t->C == C && t->T == T && t->H == H && t->W == W && t->h_x) return;
    const osp_backend *be = t->be;
    if (t->h_x) {
        free(t->h_x), free(t->h_eps), free(t->h_tgt), free(t->h_text), free(t->sigma), free(t->tsteps);
        be->free(t->d_x), be->free(t->d_tgt), be->free(t->d_text), be->free(t->d_pred);
    }
    t->C = C, t->T = T, t->H = H, t->W = W;
    t->n = (int64_t)C * T * H * W;
    int64_t nt = (int64_t)B * t->cfg.model.text_len * t->cfg.model.text_dim;
    t->h_x = osp_malloc(sizeof(float) * B * t->n);
    t->h_eps = osp_malloc(sizeof(float) * B * t->n);
    t->h_tgt = osp_malloc(sizeof(float) * B * t->n);
    t->h_text = osp_calloc((size_t)nt, sizeof(float));
    t->sigma = osp_malloc(sizeof(float) * B);
    t->tsteps = osp_malloc(sizeof(float) * B);
    t->d_x = be->alloc(sizeof(float) * B * t->n);
    t->d_tgt = be->alloc(sizeof(float) * B * t->n);
    t->d_pred = be->alloc(sizeof(float) * B * t->n);
    t->d_text = be->alloc(sizeof(float) * nt);
    wan_set_shape(t->m, B, T, H, W);
}

/* Check a batch (from file `src`) against the model and copy its text into the model's
 * text_len rows. */
static void stage_batch(trainer *t, const osp_batch *b, const char *src) {
    const osp_model_cfg *mc = &t->cfg.model;
    if (b->C != mc->in_channels)
        osp_die("%s: latents have %d channels, model.in_channels is %d", src, b->C, mc->in_channels);
    if (b->Dt != mc->text_dim)
        osp_die("%s: text dim %d, model.text_dim is %d", src, b->Dt, mc->text_dim);
    if (b->L > mc->text_len)
        osp_die("%s: %d text rows exceed model.text_len %d", src, b->L, mc->text_len);
    alloc_batch(t, b->B, b->C, b->T, b->H, b->W);
    memset(t->h_text, 0, sizeof(float) * b->B * mc->text_len * mc->text_dim);
    for (int i = 0; i < b->B; i++)
        memcpy(t->h_text + (int64_t)i * mc->text_len * mc->text_dim, b->text + (int64_t)i * b->L * b->Dt,
               sizeof(float) * b->L * b->Dt);
}

/* One micro-batch: noise, sigma, forward, MSE, backward (if grads). Returns the loss. */
static double run_micro(trainer *t, const osp_batch *b, const float *sigma, uint64_t noise_key, float grad_scale,
                        bool grads) {
    const osp_backend *be = t->be;
    int B = b->B;
    flow_randn(t->h_eps, B * t->n, noise_key);
    flow_make_pair(t->h_x, t->h_tgt, b->latents, t->h_eps, sigma, B, t->n);
    for (int i = 0; i < B; i++) t->tsteps[i] = 1000.0f * sigma[i];
    be->upload(t->d_x, t->h_x, sizeof(float) * B * t->n);
    be->upload(t->d_tgt, t->h_tgt, sizeof(float) * B * t->n);
    be->upload(t->d_text, t->h_text, sizeof(float) * B * t->cfg.model.text_len * t->cfg.model.text_dim);
    wan_forward(t->m, t->d_x, t->tsteps, t->d_text, t->d_pred);
    double loss = be->mse(grads ? t->d_pred : NULL, t->d_pred, t->d_tgt, B * t->n, grad_scale);
    if (grads) wan_backward(t->m, t->d_pred, NULL, NULL);
    return loss;
}

/* Validation: the first val_batches batches of the held-out file, with fixed noise and
 * an evenly spaced sigma per sample, so successive evaluations are comparable. */
static double validate(trainer *t) {
    if (!t->val) return NAN;
    char err[1024];
    dataset_seek(t->val, 0);
    double s = 0;
    int nb = 0;
    for (int v = 0; v < t->cfg.train.val_batches; v++) {
        osp_batch b;
        if (dataset_next(t->val, &b, err, sizeof err)) osp_die("%s", err);
        stage_batch(t, &b, dataset_path(t->val));
        for (int i = 0; i < b.B; i++) t->sigma[i] = (i + 0.5f) / b.B;
        s += run_micro(t, &b, t->sigma, flow_key(t->cfg.seed, 0x7a1, (uint64_t)v), 1.0f, false);
        nb++;
    }
    return nb ? s / nb : NAN;
}

static void save_ckpt(trainer *t, int64_t step) {
    char err[1024];
    train_state st = {step, dataset_position(t->train), (uint64_t)t->cfg.seed};
    double t0 = osp_now();
    if (ckpt_save(t->cfg.run_dir, t->m, &t->opt, &st, &t->cfg, t->cfg.train.keep_last, err, sizeof err))
        osp_die("checkpoint: %s", err);
    metrics_note("checkpoint step %lld saved in %.2f s -> %s/checkpoints/step_%08lld", (long long)step,
                 osp_now() - t0, t->cfg.run_dir, (long long)step);
}

int cmd_train(int argc, char **argv) {
    const char *yaml = NULL, *init = NULL;
    bool resume = false;
    char **sets = osp_calloc((size_t)argc + 1, sizeof(char *));
    int nset = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--set")) sets[nset++] = (char *)cli_value(argc, argv, &i);
        else if (!strcmp(a, "--init")) init = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--resume")) resume = true;
        else if (!strcmp(a, "--config")) yaml = cli_value(argc, argv, &i);
        else if (a[0] == '-') osp_die("train: unknown option '%s' (see osp train --help)", a);
        else yaml = a;
    }
    trainer T;
    memset(&T, 0, sizeof T);
    trainer *t = &T;
    config_defaults(&t->cfg);
    cli_config_load(&t->cfg, yaml, nset, sets, true);
    free(sets);
    osp_config *c = &t->cfg;
    const osp_train_cfg *tc = &c->train;
    char err[1024], path[4200];
    t->be = cli_backend(c->device);
    /* read per call by the CUDA attention (model/cuda/cudnn.cu): keep the backward on
     * osp's deterministic kernels so a resumed run repeats the uninterrupted one bit for bit */
    if (tc->deterministic) setenv("OSP_DETERMINISTIC", "1", 1);
    if (osp_mkdir_p(c->run_dir) || access(c->run_dir, W_OK)) osp_die("run_dir %s: cannot create or write", c->run_dir);
    printf("osp train — config %s, backend %s\n", c->source[0] ? c->source : "(built-in defaults)", t->be->name);
    config_print(c, stdout);
    /* flow matching regresses a velocity of the latents' shape */
    if (c->model.out_channels != c->model.in_channels)
        osp_die("model.out_channels (%d) must equal model.in_channels (%d): the predicted velocity has the "
                "latents' shape",
                c->model.out_channels, c->model.in_channels);

    if (dataset_open(&t->train, c->data.train, 0, 1, (uint64_t)c->seed, tc->batch_size, c->data.prefetch, err,
                     sizeof err))
        osp_die("%s (hint: `osp data synth --out %s` makes the demo data)", err, c->data.train);
    if (c->data.val[0] && dataset_open(&t->val, c->data.val, 0, 1, (uint64_t)c->seed, tc->batch_size, 0, err,
                                       sizeof err))
        osp_die("%s", err);
    for (int k = 0; k < dataset_num_buckets(t->train); k++)
        if (dataset_C(t->train, k) != c->model.in_channels)
            osp_die("%s: latents have %d channels, model.in_channels is %d", c->data.train,
                    dataset_C(t->train, k), c->model.in_channels);

    wan_config wc = cli_wan_config(c);
    t->m = wan_init(&wc, t->be);
    wan_init_weights(t->m, (uint64_t)c->seed);
    if (init) {
        st_set *s;
        if (st_open(&s, init, err, sizeof err)) osp_die("%s", err);
        printf("--init %s:\n", init);
        if (wan_load(t->m, NULL, s, false, true, NULL, err, sizeof err)) osp_die("%s", err);
        st_close(s);
    }
    int64_t np = wan_num_params(t->m);
    t->hp = (adamw_hparams){tc->lr, tc->beta1, tc->beta2, tc->adam_eps, tc->weight_decay, tc->grad_clip, tc->ema_decay,
                            tc->max_skipped};
    adamw_init(&t->opt, t->be, wan_arena_floats(t->m), true, wan_params(t->m));
    int64_t step = 0;
    if (resume) {
        char dir[4096];
        if (ckpt_find_latest(c->run_dir, dir, sizeof dir)) {
            printf("--resume: no complete checkpoint in %s/checkpoints, starting from scratch\n", c->run_dir);
        } else {
            train_state st;
            if (ckpt_load(dir, t->m, &t->opt, &st, err, sizeof err)) osp_die("%s", err);
            step = st.step;
            dataset_seek(t->train, st.data_pos);
            printf("--resume: continuing from %s (step %lld)\n", dir, (long long)step);
        }
    }
    /* only now, with the inputs checked, so a failed start keeps the previous run's config */
    snprintf(path, sizeof path, "%s/config.yaml", c->run_dir);
    if (config_save_yaml(c, path, err, sizeof err)) osp_die("%s", err);
    snprintf(path, sizeof path, "%s/metrics.jsonl", c->run_dir);
    metrics_open(path, resume ? step : -1);
    printf("model: %lld parameters, %s attention, %s\n", (long long)np, wc.hybrid ? "hybrid" : "full",
           wc.quant ? "HiF8 fake-quantised GEMMs" : "fp32 GEMMs");

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    const char *sig_at = getenv("OSP_TEST_SIGNAL_AT_STEP"); /* deterministic preemption for tests */

    bool cosine = !strcmp(tc->schedule, "cosine"), logit = !strcmp(tc->sigma_sampling, "logit_normal");
    double loss_win = 0, t_win = osp_now(), t_start = osp_now();
    int n_win = 0;
    int64_t samples_win = 0, tokens_win = 0, start_step = step;
    double last_loss = NAN, last_val = NAN;
    while (step < tc->steps) {
        float lr = lr_schedule(tc->lr, tc->min_lr, tc->warmup, tc->steps, cosine, step);
        wan_zero_grads(t->m);
        double loss = 0;
        for (int mb = 0; mb < tc->grad_accum; mb++) {
            osp_batch b;
            if (dataset_next(t->train, &b, err, sizeof err)) osp_die("%s", err);
            stage_batch(t, &b, dataset_path(t->train));
            /* text dropout: the unconditional model that classifier-free guidance needs */
            for (int i = 0; i < b.B && tc->text_dropout > 0; i++)
                if (flow_uniform(flow_key((uint64_t)c->seed, (uint64_t)step, 0xd709), (uint64_t)(mb * 65536 + i)) <
                    tc->text_dropout)
                    memset(t->h_text + (int64_t)i * c->model.text_len * c->model.text_dim, 0,
                           sizeof(float) * c->model.text_len * c->model.text_dim);
            for (int i = 0; i < b.B; i++)
                t->sigma[i] = flow_train_sigma(logit, tc->logit_mean, tc->logit_std, tc->shift,
                                               flow_key((uint64_t)c->seed, (uint64_t)step, (uint64_t)(mb * 65536 + i + 1)));
            loss += run_micro(t, &b, t->sigma, flow_key((uint64_t)c->seed, (uint64_t)step, (uint64_t)mb * 65536),
                              1.0f / tc->grad_accum, true) / tc->grad_accum;
            samples_win += b.B;
            tokens_win += (int64_t)b.B * (b.T / wc.patch[0]) * (b.H / wc.patch[1]) * (b.W / wc.patch[2]);
        }
        double gnorm;
        int skipped = adamw_step(&t->opt, &t->hp, lr, wan_params(t->m), wan_grads(t->m), &gnorm);
        if (skipped || !isfinite(loss)) {
            metrics_note("step %lld: non-finite loss/gradients (loss %g, grad norm %g): update skipped (%d in a row)",
                         (long long)step + 1, loss, gnorm, t->opt.skipped_run);
            if (t->opt.skipped_run > tc->max_skipped)
                osp_die("%d consecutive non-finite updates at step %lld (loss %g): stopping; lower train.lr or check "
                        "the data",
                        t->opt.skipped_run, (long long)step + 1, loss);
        } else {
            loss_win += loss;
            n_win++;
            last_loss = loss;
        }
        step++;
        metrics_progress(step, tc->steps, loss, osp_now() - t_start, step - start_step);
        if (step % tc->log_every == 0 || step == tc->steps) {
            double now = osp_now(), dt = now - t_win;
            int64_t ns = step - start_step;
            double per = (now - t_start) / (double)(ns > 0 ? ns : 1);
            metrics_log(step, tc->steps, n_win ? loss_win / n_win : NAN, gnorm, lr, samples_win / dt, tokens_win / dt,
                        1000.0 * dt / (n_win ? n_win : 1), per * (tc->steps - step), t->opt.skipped_total);
            loss_win = 0, n_win = 0, samples_win = 0, tokens_win = 0, t_win = osp_now();
        }
        if (t->val && tc->val_every > 0 && (step % tc->val_every == 0 || step == tc->steps)) {
            last_val = validate(t);
            metrics_val(step, last_val);
            t_win = osp_now();
        }
        if (sig_at && step == atoll(sig_at)) raise(SIGUSR1);
        if (g_stop_signal) {
            metrics_note("signal %d: saving a checkpoint at step %lld and exiting", (int)g_stop_signal, (long long)step);
            save_ckpt(t, step);
            metrics_close();
            return 0;
        }
        if ((tc->ckpt_every > 0 && step % tc->ckpt_every == 0) || step == tc->steps) save_ckpt(t, step);
    }
    metrics_close();
    printf("done: %lld steps in %.1f s; final train loss %.5f, validation loss %.5f; checkpoints in %s/checkpoints\n",
           (long long)step, osp_now() - t_start, last_loss, last_val, c->run_dir);
    adamw_free(&t->opt);
    wan_free(t->m);
    dataset_close(t->train);
    if (t->val) dataset_close(t->val);
    return 0;
}
