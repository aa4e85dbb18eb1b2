/*
 * cmd_train.c — `osp train CONFIG`: flow-matching training (docs/model.md §11) of the hybrid
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
#include "parallel/dp.h"
#include "parallel/mesh.h"
#include "parallel/mpi_boot.h"
#include "parallel/watchdog.h"
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
               "SIGTERM / SIGUSR1 save a checkpoint and exit 0 (SLURM preemption).\n"
               "Under mpirun/srun the ranks train data-parallel (parallel.* keys; README, Running on\n"
               "several ranks); train.batch_size stays the global batch.\n\nconfig keys:\n");
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
    /* data parallelism: this rank holds samples g = i·dp + dp_rank of each global batch
     * (data/dataset.h), and draws their random numbers by g, as one process would */
    par_mesh mesh;
    par_dp dp;
    par_nccl *nccl;      /* GPU collectives of the dp group (NULL: MPI through host memory) */
    int ndp, rdp;        /* dp size and this rank's dp index */
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
    if (t->ndp == 1)
        flow_randn(t->h_eps, B * t->n, noise_key);
    else /* sample i is the global sample i·W + R: its slice of the batch's noise stream */
        for (int i = 0; i < B; i++)
            flow_randn_at(t->h_eps + (int64_t)i * t->n, t->n, noise_key, ((int64_t)i * t->ndp + t->rdp) * t->n);
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
        for (int i = 0; i < b.B; i++) t->sigma[i] = (i * t->ndp + t->rdp + 0.5f) / (b.B * t->ndp);
        s += run_micro(t, &b, t->sigma, flow_key(t->cfg.seed, 0x7a1, (uint64_t)v), 1.0f, false);
        nb++;
    }
    /* each rank's mean over its equal share of every batch: the global mean is their mean */
    if (t->ndp > 1) s = par_sum_f64(t->dp.g, s) / t->ndp;
    return nb ? s / nb : NAN;
}

/* Gradients on a GPU travel by NCCL when every rank has a GPU of its own (parallel.transport
 * auto or nccl), otherwise through host memory over MPI (ranks sharing a GPU, the CPU). */
static void choose_transport(trainer *t) {
    const par_world *pw = par_world_get();
    const char *tr = t->cfg.parallel.transport;
    bool gpu = strcmp(t->be->name, "cpu") != 0, own_gpu = pw->local_size <= pw->gpus;
    snprintf(t->mesh.transport, sizeof t->mesh.transport, "mpi");
    if (t->ndp == 1) return;
    if (!strcmp(tr, "nccl") && !gpu)
        osp_die("parallel.transport: nccl needs the CUDA backend (this run uses the %s backend)", t->be->name);
    if (!strcmp(tr, "nccl") && !own_gpu)
        osp_die("parallel.transport: nccl needs one GPU per rank, but %d ranks share %d GPU(s) on %s; use mpi",
                pw->local_size, pw->gpus, pw->host);
    if (!gpu || !(!strcmp(tr, "nccl") || (!strcmp(tr, "auto") && par_nccl_available() && own_gpu))) return;
    char err[512];
    if (!(t->nccl = par_nccl_init(t->mesh.dp_g, err, sizeof err))) osp_die("%s", err);
    snprintf(t->mesh.transport, sizeof t->mesh.transport, "nccl");
}

/* HiF8 delayed scaling under dp: each rank recorded the amax of its own samples this step;
 * the max over ranks is the global batch's amax, so after this every rank holds the history
 * one process would (the history's length/count/position entries agree already). Current
 * scaling takes each tensor's amax on the fly, per rank (notes/parallel.md). */
static void sync_quant_history(trainer *t) {
    int64_t nq = wan_quant_state_size(t->m);
    if (!nq || strcmp(t->cfg.quant.scaling, "delayed")) return;
    float *q = osp_malloc(sizeof(float) * nq);
    wan_quant_state_get(t->m, q);
    par_allreduce(t->dp.g, q, nq, PAR_F32, PAR_MAX);
    wan_quant_state_set(t->m, q);
    free(q);
}

/* A barrier where ranks legitimately wait long (rank 0 writing a big checkpoint, ranks
 * loading one at start): the watchdog allows an hour more than for a collective. */
static void slow_barrier(trainer *t) {
    double to = wd_timeout();
    if (to > 0) wd_set_timeout(to + 3600);
    par_barrier(t->mesh.world_g);
    wd_set_timeout(to);
}

/* One checkpoint format at every world size: rank 0 writes the full tensors (ZeRO-1 shards
 * are gathered first), the others wait for it, so a run saved at N ranks resumes at M. */
static void save_ckpt(trainer *t, int64_t step) {
    char err[1024];
    train_state st = {step, dataset_position(t->train), (uint64_t)t->cfg.seed};
    double t0 = osp_now();
    adamw_state full;
    bool owned;
    dp_full_optimizer(&t->dp, &t->opt, &full, &owned);
    if (t->mesh.rank == 0 &&
        ckpt_save(t->cfg.run_dir, t->m, &full, &st, &t->cfg, t->cfg.train.keep_last, err, sizeof err))
        osp_die("checkpoint: %s", err);
    if (owned) adamw_free(&full);
    slow_barrier(t); /* the others wait while rank 0 writes */
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
    /* ranks: a plain run is a world of one and touches no MPI */
    par_boot();
    wan_config wc0 = cli_wan_config(c);
    par_mesh_spec ms = {c->parallel.dp, c->parallel.sp, c->parallel.ssp, wc0.num_heads, wc0.hybrid,
                        wc0.sparse_ratio, tc->batch_size, c->parallel.shard, c->parallel.transport,
                        (double)c->parallel.timeout_s};
    mesh_init(&t->mesh, &ms);
    t->ndp = t->mesh.dp, t->rdp = t->mesh.dp_rank;
    /* the rank's GPU is chosen in par_boot (CUDA_VISIBLE_DEVICES holds the node-local rank's
     * card), so the instance is made for device 0 of what this rank sees. The CUDA options carry
     * train.deterministic: the attention backward stays on osp's deterministic kernels so a
     * resumed run repeats the uninterrupted one bit for bit. */
    osp_cuda_options cuda = cli_cuda_options(c);
    t->be = cli_backend(c->device, 0, &cuda);
    choose_transport(t);
    if (t->mesh.rank == 0 && (osp_mkdir_p(c->run_dir) || access(c->run_dir, W_OK)))
        osp_die("run_dir %s: cannot create or write", c->run_dir);
    printf("osp train — config %s, backend %s\n", c->source[0] ? c->source : "(built-in defaults)", t->be->name);
    if (t->mesh.world > 1) {
        char desc[256];
        mesh_describe(&t->mesh, desc, sizeof desc);
        printf("ranks: %s; %d sample(s) per rank of the global batch %d\n", desc, tc->batch_size / t->ndp,
               tc->batch_size);
    }
    config_print(c, stdout);
    /* flow matching regresses a velocity of the latents' shape */
    if (c->model.out_channels != c->model.in_channels)
        osp_die("model.out_channels (%d) must equal model.in_channels (%d): the predicted velocity has the "
                "latents' shape",
                c->model.out_channels, c->model.in_channels);

    int Bl = tc->batch_size / t->ndp; /* the global batch stays train.batch_size at any world size */
    if (dataset_open(&t->train, c->data.train, t->rdp, t->ndp, (uint64_t)c->seed, Bl, c->data.prefetch, err,
                     sizeof err))
        osp_die("%s (hint: `osp data synth --out %s` makes the demo data)", err, c->data.train);
    if (c->data.val[0] && dataset_open(&t->val, c->data.val, t->rdp, t->ndp, (uint64_t)c->seed, Bl, 0, err,
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
    /* every rank loaded the same full state; ZeRO-1 keeps only its slice */
    dp_init(&t->dp, t->mesh.dp_g, t->mesh.shard, t->be, wan_arena_floats(t->m));
    dp_shard_optimizer(&t->dp, &t->opt);
    if (t->nccl) dp_use_nccl(&t->dp, t->nccl);
    slow_barrier(t); /* everyone built and loaded before the first timed collective */
    /* only now, with the inputs checked, so a failed start keeps the previous run's config */
    snprintf(path, sizeof path, "%s/config.yaml", c->run_dir);
    if (t->mesh.rank == 0 && config_save_yaml(c, path, err, sizeof err)) osp_die("%s", err);
    snprintf(path, sizeof path, "%s/metrics.jsonl", c->run_dir);
    if (t->mesh.rank == 0)
        metrics_open(path, resume ? step : -1);
    else
        metrics_quiet();
    printf("model: %lld parameters, %s attention, %s\n", (long long)np, wc.hybrid ? "hybrid" : "full",
           wc.quant ? "HiF8 fake-quantised GEMMs" : "fp32 GEMMs");

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    const char *sig_at = getenv("OSP_TEST_SIGNAL_AT_STEP"); /* deterministic preemption for tests */
    const char *sig_rank = getenv("OSP_TEST_SIGNAL_RANK");   /* ... on this world rank only */
    if (sig_rank && atoi(sig_rank) != t->mesh.rank) sig_at = NULL;
    const char *kill_at = getenv("OSP_TEST_HANG_AT_STEP");   /* fault tests: this rank stops answering */
    const char *kill_rank = getenv("OSP_TEST_HANG_RANK");
    if (!kill_rank || atoi(kill_rank) != t->mesh.rank) kill_at = NULL;

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
                if (flow_uniform(flow_key((uint64_t)c->seed, (uint64_t)step, 0xd709),
                                 (uint64_t)(mb * 65536 + i * t->ndp + t->rdp)) <
                    tc->text_dropout)
                    memset(t->h_text + (int64_t)i * c->model.text_len * c->model.text_dim, 0,
                           sizeof(float) * c->model.text_len * c->model.text_dim);
            for (int i = 0; i < b.B; i++)
                t->sigma[i] = flow_train_sigma(
                    logit, tc->logit_mean, tc->logit_std, tc->shift,
                    flow_key((uint64_t)c->seed, (uint64_t)step, (uint64_t)(mb * 65536 + i * t->ndp + t->rdp + 1)));
            /* 1/(accum·W): the dp-summed gradient is the global batch's mean-loss gradient */
            loss += run_micro(t, &b, t->sigma, flow_key((uint64_t)c->seed, (uint64_t)step, (uint64_t)mb * 65536),
                              1.0f / (tc->grad_accum * t->ndp), true) / tc->grad_accum;
            samples_win += (int64_t)b.B * t->ndp;
            tokens_win += (int64_t)b.B * t->ndp * (b.T / wc.patch[0]) * (b.H / wc.patch[1]) * (b.W / wc.patch[2]);
        }
        if (kill_at && step + 1 == atoll(kill_at)) {
            fprintf(stderr, "osp: test: rank %d (pid %d) stops answering at step %lld\n", t->mesh.rank, (int)getpid(),
                    (long long)step + 1);
            for (;;) pause();
        }
        /* one all-reduce per step carries the loss and the stop flag: every rank logs the
         * global loss and stops at the same step when any of them got a signal */
        int agreed_stop = 0; /* several ranks: a signal counts from the step all ranks heard of it */
        if (t->mesh.world > 1) {
            double v[2] = {loss, (double)g_stop_signal};
            par_allreduce(t->mesh.world_g, v, 2, PAR_F64, PAR_SUM);
            loss = v[0] / t->mesh.world;
            agreed_stop = v[1] <= 0 ? 0 : g_stop_signal ? (int)g_stop_signal : v[1] < 65 ? (int)v[1] : SIGTERM;
        }
        double gnorm;
        int skipped = dp_step(&t->dp, &t->opt, &t->hp, lr, wan_params(t->m), wan_grads(t->m), &gnorm);
        if (t->ndp > 1) sync_quant_history(t);
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
            if (t->ndp > 1) sync_quant_history(t); /* validation forwards record amaxes too */
            metrics_val(step, last_val);
            t_win = osp_now();
        }
        if (sig_at && step == atoll(sig_at)) raise(SIGUSR1);
        int stop = t->mesh.world > 1 ? agreed_stop : (int)g_stop_signal;
        if (stop) {
            metrics_note("signal %d: saving a checkpoint at step %lld and exiting", stop, (long long)step);
            save_ckpt(t, step);
            metrics_close();
            dp_free(&t->dp);
            par_nccl_free(t->nccl);
            mesh_free(&t->mesh);
            return 0;
        }
        if ((tc->ckpt_every > 0 && step % tc->ckpt_every == 0) || step == tc->steps) save_ckpt(t, step);
    }
    if (t->mesh.world > 1) { /* what this rank (0) sent, by group and kind */
        char a[512], b[512];
        par_stats_format(t->mesh.world_g, a, sizeof a);
        par_stats_format(t->mesh.dp_g, b, sizeof b);
        metrics_note("communication of rank 0 (transport %s): %s | %s", t->mesh.transport, a, b);
    }
    metrics_close();
    printf("done: %lld steps in %.1f s; final train loss %.5f, validation loss %.5f; checkpoints in %s/checkpoints\n",
           (long long)step, osp_now() - t_start, last_loss, last_val, c->run_dir);
    adamw_free(&t->opt);
    dp_free(&t->dp);
    par_nccl_free(t->nccl);
    mesh_free(&t->mesh);
    wan_free(t->m);
    cli_backend_free(t->be);
    dataset_close(t->train);
    if (t->val) dataset_close(t->val);
    return 0;
}
