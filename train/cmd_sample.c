/*
 * cmd_sample.c — `osp sample`: text-to-video sampling with the shifted flow-matching
 * schedule (docs/model.md §12), Euler or UniPC, and classifier-free guidance against an empty
 * (all-zero) or given negative prompt embedding. Writes latents to HDF5; for pixel-space
 * models (3 channels) also an animated GIF and PNG frames per prompt, named after the
 * prompt, and the shapes-world probe's verdict when the prompt is a shapes prompt.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h> /* mkdir */

#include "train/cli.h"
#include "data/gif.h"
#include "data/h5util.h"
#include "data/probe.h"
#include "data/shapes.h"
#include "core/common.h"
#include "model/io/wan_io.h"
#include "parallel/mpi_boot.h"
#include "train/checkpoint.h"
#include "train/flow.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: osp sample [CONFIG.yaml] [--ckpt PATH] (--prompt TEXT ... | --prompts FILE.h5)\n"
            "                  [--steps N] [--shift S] [--cfg W] [--solver euler|unipc] [--seed K]\n"
            "                  [--ema] [--batch K] [--out DIR] [--set key=value ...]\n\n"
            "--ckpt: a .safetensors file, a checkpoint directory, or a run directory (newest checkpoint);\n"
            "        default: the newest checkpoint of run_dir. --ema uses ema.safetensors of a checkpoint.\n"
            "--prompt: a shapes-world prompt (\"red circle moving left\"), embedded with the built-in word\n"
            "        table; repeatable. --prompts FILE.h5: `text` [N,L,Dt] embeddings (e.g. umT5 outputs),\n"
            "        optional `prompts` [N] strings and `negative` [L,Dt] (default: all-zero embedding).\n"
            "Latent grid: sample.num_frames x sample.height x sample.width, model.in_channels channels.\n"
            "Writes DIR/latents.h5 (latents [N,C,T,H,W], prompts) and, for 3-channel models,\n"
            "DIR/<prompt_with_underscores>.gif plus DIR/<prompt_with_underscores>/frame_XX.png.\n"
            "Default DIR: <run_dir>/samples. --batch K: prompts per forward (default 8; with CFG the\n"
            "forward batch is 2K: conditional and unconditional rows).\n");
}

/* The position table has no weights, so a checkpoint cannot tell whether it was trained with one;
 * an osp checkpoint directory keeps its training config (config.yaml), so a mismatch is an error
 * here instead of silently wrong samples. */
static void check_pos_embed(const char *wpath, const osp_config *cfg) {
    char dir[4400], path[4500];
    snprintf(dir, sizeof dir, "%s", wpath);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else *slash = 0;
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    osp_config saved;
    config_defaults(&saved);
    char err[1024];
    if (config_load_yaml(&saved, path, err, sizeof err)) return; /* none (not an osp checkpoint): nothing to compare */
    if (strcmp(saved.model.pos_embed, cfg->model.pos_embed))
        osp_die("%s: this checkpoint was trained with model.pos_embed=%s, the sampling config has %s "
                "(sample with the training config, or --set model.pos_embed=%s)",
                path, saved.model.pos_embed, cfg->model.pos_embed, saved.model.pos_embed);
}

static void slug(const char *p, char *out, size_t n) {
    size_t k = 0;
    for (; *p && k + 1 < n; p++) out[k++] = isalnum((unsigned char)*p) ? (char)tolower((unsigned char)*p) : '_';
    out[k] = 0;
}

/* DIR/<slug>.gif and DIR/<slug>/frame_XX.png of a clip [3,T,H,W] in [-1,1] */
static void write_frames(const char *dir, const char *sl, const float *x, int T, int H, int W) {
    char path[4400], err[1024];
    snprintf(path, sizeof path, "%s/%s.gif", dir, sl);
    if (gif_write(path, x, T, H, W, 4, 12, err, sizeof err)) osp_die("%s", err);
    snprintf(path, sizeof path, "%s/%s", dir, sl);
    mkdir(path, 0755);
    float *frame = osp_malloc(sizeof(float) * 3 * H * W);
    for (int f = 0; f < T; f++) {
        for (int c = 0; c < 3; c++)
            memcpy(frame + (int64_t)c * H * W, x + ((int64_t)c * T + f) * H * W, sizeof(float) * H * W);
        snprintf(path, sizeof path, "%s/%s/frame_%02d.png", dir, sl, f);
        if (png_write(path, frame, H, W, 4, err, sizeof err)) osp_die("%s", err);
    }
    free(frame);
}

int cmd_sample(int argc, char **argv) {
    const char *yaml = NULL, *ckpt = NULL, *prompts_file = NULL, *outdir = NULL;
    const char **prompts = osp_calloc((size_t)argc + 1, sizeof(char *));
    char **sets = osp_calloc((size_t)argc + 1, sizeof(char *));
    int np = 0, nset = 0, steps = -1, seed = -1, batch = 8;
    double shift = -1, cfgw = -1;
    const char *solver = NULL;
    bool ema = false;
    /* sampling is not split over ranks yet: under mpirun/srun rank 0 samples alone (the other
     * ranks would write the same files at the same time) */
    if (par_boot()->rank != 0) return 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--ckpt")) ckpt = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--prompt")) prompts[np++] = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--prompts")) prompts_file = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--steps")) steps = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--shift")) shift = cli_double(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--cfg")) cfgw = cli_double(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--solver")) solver = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--seed")) seed = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--out")) outdir = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--ema")) ema = true;
        else if (!strcmp(a, "--batch")) batch = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--set")) sets[nset++] = (char *)cli_value(argc, argv, &i);
        else if (!strcmp(a, "--config")) yaml = cli_value(argc, argv, &i);
        else if (a[0] == '-') osp_die("sample: unknown option '%s' (see osp sample --help)", a);
        else yaml = a;
    }
    if (!np && !prompts_file) osp_die("sample: give --prompt TEXT or --prompts FILE.h5 (see osp sample --help)");
    if (batch < 1) osp_die("sample: --batch must be >= 1");
    osp_config cfg;
    config_defaults(&cfg);
    cli_config_load(&cfg, yaml, nset, sets, false);
    osp_sample_cfg *sc = &cfg.sample;
    if (steps > 0) sc->steps = steps;
    if (shift > 0) sc->shift = (float)shift;
    if (cfgw >= 0) sc->cfg = (float)cfgw;
    if (seed >= 0) sc->seed = seed;
    if (solver) snprintf(sc->solver, sizeof sc->solver, "%s", solver);
    if (strcmp(sc->solver, "euler") && strcmp(sc->solver, "unipc")) osp_die("sample: --solver must be euler or unipc");
    char err[1024], wpath[4400];
    cli_resolve_ckpt(ckpt, cfg.run_dir, ema, wpath, sizeof wpath);
    check_pos_embed(wpath, &cfg);
    st_set *st;
    if (st_open(&st, wpath, err, sizeof err)) osp_die("%s", err);
    wan_dims dims;
    if (wan_infer_dims(st, &dims, err, sizeof err)) osp_die("%s", err);
    cli_config_from_dims(&cfg, &dims);
    if (dims.out_channels != dims.in_channels)
        osp_die("%s: out_channels %d differs from in_channels %d; sampling integrates a velocity of the latents' "
                "shape",
                wpath, dims.out_channels, dims.in_channels);
    if (cfg.model.num_heads <= 0 || dims.dim % cfg.model.num_heads)
        cfg.model.num_heads = wan_default_heads(dims.dim);

    /* prompt embeddings */
    int L = cfg.model.text_len, Dt = dims.text_dim, N = np;
    float *emb = NULL, *neg = osp_calloc((size_t)L * Dt, sizeof(float));
    char **names = NULL;
    if (prompts_file) {
        int64_t d[8];
        if (h5_read_f32(prompts_file, "text", 3, d, &emb, err, sizeof err)) osp_die("%s", err);
        if (d[2] != Dt) osp_die("%s: text dim %lld, the model expects %d", prompts_file, (long long)d[2], Dt);
        N = (int)d[0];
        L = (int)d[1];
        cfg.model.text_len = L;
        free(neg);
        neg = osp_calloc((size_t)L * Dt, sizeof(float));
        if (h5_has(prompts_file, "negative")) {
            float *ng;
            int64_t nd[8];
            if (h5_read_f32(prompts_file, "negative", 2, nd, &ng, err, sizeof err)) osp_die("%s", err);
            if (nd[0] != L || nd[1] != Dt) osp_die("%s: negative must be [%d,%d]", prompts_file, L, Dt);
            memcpy(neg, ng, sizeof(float) * L * Dt);
            free(ng);
        }
        names = osp_calloc((size_t)N, sizeof(char *));
        hid_t f = h5u_open_ro(prompts_file, err, sizeof err);
        hid_t ds = f >= 0 && h5u_exists(f, "prompts") ? H5Dopen2(f, "prompts", H5P_DEFAULT) : -1;
        for (int i = 0; i < N; i++) {
            names[i] = osp_malloc(256);
            if (ds < 0 || h5u_read_string(ds, i, names[i], 256)) snprintf(names[i], 256, "prompt_%03d", i);
        }
        if (ds >= 0) H5Dclose(ds);
        if (f >= 0) H5Fclose(f);
    } else {
        emb = osp_calloc((size_t)N * L * Dt, sizeof(float));
        names = osp_calloc((size_t)N, sizeof(char *));
        for (int i = 0; i < N; i++) {
            int len;
            if (shapes_embed_prompt(prompts[i], L, Dt, emb + (int64_t)i * L * Dt, &len))
                osp_die("--prompt '%s': not a shapes-world prompt (words: colors, shapes, 'moving', directions; at most "
                        "%d words); use --prompts FILE.h5 for other text encoders",
                        prompts[i], L);
            names[i] = strdup(prompts[i]);
        }
    }
    cli_config_validate(&cfg);
    osp_cuda_options cuda = cli_cuda_options(&cfg);
    const osp_backend *be = cli_backend(cfg.device, 0, &cuda);
    wan_config wc = cli_wan_config(&cfg);
    wan_model *m = wan_init(&wc, be);
    if (wan_load(m, NULL, st, true, false, NULL, err, sizeof err)) osp_die("%s", err);
    st_close(st);

    int C = dims.in_channels, T = sc->num_frames, H = sc->height, W = sc->width;
    bool guided = sc->cfg != 1.0f, unipc = !strcmp(sc->solver, "unipc");
    int G = batch < N ? batch : N; /* prompts per forward; rows [0,G) conditional, [G,2G) unconditional */
    int B = guided ? 2 * G : G;
    int64_t n = (int64_t)C * T * H * W;
    wan_set_shape(m, B, T, H, W);
    float *sig = osp_malloc(sizeof(float) * (sc->steps + 1)), *tst = osp_malloc(sizeof(float) * sc->steps);
    flow_schedule(sc->steps, sc->shift, sig, tst);
    float *x = osp_malloc(sizeof(float) * G * n), *vout = osp_malloc(sizeof(float) * B * n);
    float *v = osp_malloc(sizeof(float) * G * n), *ts = osp_malloc(sizeof(float) * B);
    float *text = osp_calloc((size_t)B * L * Dt, sizeof(float)), *all = osp_malloc(sizeof(float) * N * n);
    float *d_x = be->alloc(sizeof(float) * B * n), *d_v = be->alloc(sizeof(float) * B * n);
    float *d_text = be->alloc(sizeof(float) * B * L * Dt);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", outdir ? outdir : cfg.run_dir);
    if (!outdir) snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/samples");
    if (osp_mkdir_p(dir)) osp_die("sample: cannot create the output directory %s", dir);
    printf("sampling %d prompt(s): %s, %d steps, shift %.2f, cfg %.2f, seed %d, latent [%d,%d,%d,%d], %d per batch, %s\n",
           N, sc->solver, sc->steps, sc->shift, sc->cfg, sc->seed, C, T, H, W, G, be->name);
    int probed = 0, right = 0, right_color = 0, right_dir = 0;
    for (int p0 = 0; p0 < N; p0 += G) {
        int g = N - p0 < G ? N - p0 : G; /* prompts in this batch (the last one may be short) */
        double t0 = osp_now();
        for (int j = 0; j < G; j++) {
            int p = p0 + (j < g ? j : 0); /* pad a short batch by repeating its first prompt */
            flow_randn(x + (int64_t)j * n, n, flow_key((uint64_t)sc->seed, 0x5a3, (uint64_t)p));
            memcpy(text + (int64_t)j * L * Dt, emb + (int64_t)p * L * Dt, sizeof(float) * L * Dt);
            if (guided) memcpy(text + (int64_t)(G + j) * L * Dt, neg, sizeof(float) * L * Dt);
        }
        be->upload(d_text, text, sizeof(float) * B * L * Dt);
        flow_unipc u;
        if (unipc) flow_unipc_init(&u, sc->steps, sig, G * n);
        for (int k = 0; k < sc->steps; k++) {
            for (int b = 0; b < B; b++) ts[b] = tst[k];
            be->upload(d_x, x, sizeof(float) * G * n);
            if (guided) be->upload(d_x + G * n, x, sizeof(float) * G * n);
            wan_forward(m, d_x, ts, d_text, d_v);
            be->download(vout, d_v, sizeof(float) * B * n);
            for (int64_t i = 0; i < G * n; i++)
                v[i] = guided ? vout[G * n + i] + sc->cfg * (vout[i] - vout[G * n + i]) : vout[i];
            if (unipc)
                flow_unipc_step(&u, k, x, v);
            else
                flow_euler_step(sig, k, x, v, G * n);
        }
        if (unipc) flow_unipc_free(&u);
        double dt = osp_now() - t0;
        for (int j = 0; j < g; j++) {
            int p = p0 + j;
            float *xp = x + (int64_t)j * n;
            memcpy(all + (int64_t)p * n, xp, sizeof(float) * n);
            char line[512] = "", sl[256];
            slug(names[p], sl, sizeof sl);
            if (C == 3) {
                for (int64_t i = 0; i < n; i++) xp[i] = xp[i] < -1 ? -1 : (xp[i] > 1 ? 1 : xp[i]);
                write_frames(dir, sl, xp, T, H, W);
                int pc, ps, pd, gc, gd;
                float conf;
                if (probe_parse_prompt(names[p], &pc, &ps, &pd) == 0 && probe_video(xp, T, H, W, &gc, &gd, &conf) == 0) {
                    bool ok = gc == pc && gd == pd;
                    probed++;
                    right += ok;
                    right_color += gc == pc;
                    right_dir += gd == pd;
                    snprintf(line, sizeof line, "  probe: %s, moving %s -> %s", probe_color_name(gc),
                             probe_direction_name(gd), ok ? "matches" : "MISMATCH");
                }
            }
            printf("[%d/%d] %-34s -> %s/%s%s%s\n", p + 1, N, names[p], dir, sl, C == 3 ? ".gif" : "", line);
        }
        printf("  batch of %d sampled in %.1f s\n", g, dt);
    }
    char path[4400];
    snprintf(path, sizeof path, "%s/latents.h5", dir);
    h5_writer *w = h5w_open(path, err, sizeof err);
    if (!w) osp_die("%s", err);
    int64_t dd[5] = {N, C, T, H, W};
    h5w_f32(w, "latents", 5, dd, all);
    h5w_strings(w, "prompts", N, (const char *const *)names);
    if (h5w_close(w, err, sizeof err)) osp_die("%s", err);
    printf("latents -> %s\n", path);
    if (probed)
        printf("prompt adherence (automatic probe): color and direction %d/%d (color %d/%d, direction %d/%d)\n", right,
               probed, right_color, probed, right_dir, probed);
    for (int i = 0; i < N; i++) free(names[i]);
    free(names), free(emb), free(neg), free(sig), free(tst), free(x), free(vout), free(v), free(text), free(ts);
    free(all), free(prompts), free(sets);
    be->free(d_x), be->free(d_v), be->free(d_text);
    wan_free(m);
    cli_backend_free(be);
    return 0;
}
