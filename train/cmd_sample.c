/*
 * cmd_sample.c — `osp sample`: text-to-video sampling with the shifted flow-matching
 * schedule (wan21.md §9), Euler or UniPC, and classifier-free guidance against an empty
 * (all-zero) or given negative prompt embedding. Writes latents to HDF5; for pixel-space
 * models (3 channels) also an animated GIF and PNG frames per prompt, named after the
 * prompt, and the shapes-world probe's verdict when the prompt is a shapes prompt.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "data/gif.h"
#include "data/h5util.h"
#include "data/probe.h"
#include "data/shapes.h"
#include "model/common.h"
#include "model/wan_io.h"
#include "train/checkpoint.h"
#include "train/flow.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: osp sample [CONFIG.yaml] [--ckpt PATH] (--prompt TEXT ... | --prompts FILE.h5)\n"
            "                  [--steps N] [--shift S] [--cfg W] [--solver euler|unipc] [--seed K]\n"
            "                  [--ema] [--out DIR] [--set key=value ...]\n\n"
            "--ckpt: a .safetensors file, a checkpoint directory, or a run directory (newest checkpoint);\n"
            "        default: the newest checkpoint of run_dir. --ema uses ema.safetensors of a checkpoint.\n"
            "--prompt: a shapes-world prompt (\"red circle moving left\"), embedded with the built-in word\n"
            "        table; repeatable. --prompts FILE.h5: `text` [N,L,Dt] embeddings (e.g. umT5 outputs),\n"
            "        optional `prompts` [N] strings and `negative` [L,Dt] (default: all-zero embedding).\n"
            "Latent grid: sample.num_frames x sample.height x sample.width, model.in_channels channels.\n"
            "Writes DIR/latents.h5 (latents [N,C,T,H,W], prompts) and, for 3-channel models,\n"
            "DIR/<prompt_with_underscores>.gif plus DIR/<prompt_with_underscores>/frame_XX.png.\n"
            "Default DIR: <run_dir>/samples.\n");
}

static void slug(const char *p, char *out, size_t n) {
    size_t k = 0;
    for (; *p && k + 1 < n; p++) out[k++] = isalnum((unsigned char)*p) ? (char)tolower((unsigned char)*p) : '_';
    out[k] = 0;
}

/* resolve --ckpt to a weights file */
static void resolve_ckpt(const char *given, const char *run_dir, bool ema, char *out, size_t n) {
    char dir[4096];
    struct stat sb;
    if (!given) {
        if (ckpt_find_latest(run_dir, dir, sizeof dir))
            osp_die("sample: no --ckpt given and no complete checkpoint in %s/checkpoints (train first)", run_dir);
    } else if (stat(given, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/DONE", given);
        if (stat(probe, &sb) == 0)
            snprintf(dir, sizeof dir, "%s", given);
        else if (ckpt_find_latest(given, dir, sizeof dir)) {
            snprintf(out, n, "%s", given); /* a Wan2.1 model directory: let st_open resolve it */
            return;
        }
    } else {
        snprintf(out, n, "%s", given);
        return;
    }
    snprintf(out, n, "%s/%s", dir, ema ? "ema.safetensors" : "model.safetensors");
}

int cmd_sample(int argc, char **argv) {
    const char *yaml = NULL, *ckpt = NULL, *prompts_file = NULL, *outdir = NULL;
    const char **prompts = osp_calloc((size_t)argc + 1, sizeof(char *));
    char **sets = osp_calloc((size_t)argc + 1, sizeof(char *));
    int np = 0, nset = 0, steps = -1, seed = -1;
    double shift = -1, cfgw = -1;
    const char *solver = NULL;
    bool ema = false;
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
        else if (!strcmp(a, "--set")) sets[nset++] = (char *)cli_value(argc, argv, &i);
        else if (!strcmp(a, "--config")) yaml = cli_value(argc, argv, &i);
        else if (a[0] == '-') osp_die("sample: unknown option '%s' (see osp sample --help)", a);
        else yaml = a;
    }
    if (!np && !prompts_file) osp_die("sample: give --prompt TEXT or --prompts FILE.h5 (see osp sample --help)");
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
    resolve_ckpt(ckpt, cfg.run_dir, ema, wpath, sizeof wpath);
    st_set *st;
    if (st_open(&st, wpath, err, sizeof err)) osp_die("%s", err);
    wan_dims dims;
    if (wan_infer_dims(st, &dims, err, sizeof err)) osp_die("%s", err);
    cli_config_from_dims(&cfg, &dims);
    if (cfg.model.num_heads <= 0 || dims.dim % cfg.model.num_heads) cfg.model.num_heads = dims.dim / 128 > 0 ? dims.dim / 128 : 1;

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
    const osp_backend *be = cli_backend(cfg.device);
    wan_config wc = cli_wan_config(&cfg);
    wan_model *m = wan_init(&wc, be);
    if (wan_load(m, NULL, st, true, false, NULL, err, sizeof err)) osp_die("%s", err);
    st_close(st);

    int C = dims.in_channels, T = sc->num_frames, H = sc->height, W = sc->width;
    bool guided = sc->cfg != 1.0f;
    int B = guided ? 2 : 1;
    int64_t n = (int64_t)C * T * H * W;
    wan_set_shape(m, B, T, H, W);
    float *sig = osp_malloc(sizeof(float) * (sc->steps + 1)), *tst = osp_malloc(sizeof(float) * sc->steps);
    flow_schedule(sc->steps, sc->shift, sig, tst);
    float *x = osp_malloc(sizeof(float) * n), *xin = osp_malloc(sizeof(float) * B * n);
    float *vout = osp_malloc(sizeof(float) * B * n), *v = osp_malloc(sizeof(float) * n);
    float *text = osp_malloc(sizeof(float) * B * L * Dt), *all = osp_malloc(sizeof(float) * N * n);
    float *d_x = be->alloc(sizeof(float) * B * n), *d_v = be->alloc(sizeof(float) * B * n);
    float *d_text = be->alloc(sizeof(float) * B * L * Dt);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", outdir ? outdir : cfg.run_dir);
    if (!outdir) snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/samples");
    mkdir(dir, 0755);
    printf("sampling %d prompt(s): %s, %d steps, shift %.2f, cfg %.2f, seed %d, latent [%d,%d,%d,%d], %s\n", N,
           sc->solver, sc->steps, sc->shift, sc->cfg, sc->seed, C, T, H, W, be->name);
    int probed = 0, right = 0;
    for (int p = 0; p < N; p++) {
        double t0 = osp_now();
        flow_randn(x, n, flow_key((uint64_t)sc->seed, 0x5a3, (uint64_t)p));
        memcpy(text, emb + (int64_t)p * L * Dt, sizeof(float) * L * Dt);
        if (guided) memcpy(text + (int64_t)L * Dt, neg, sizeof(float) * L * Dt);
        be->upload(d_text, text, sizeof(float) * B * L * Dt);
        flow_unipc u;
        bool unipc = !strcmp(sc->solver, "unipc");
        if (unipc) flow_unipc_init(&u, sc->steps, sig, n);
        for (int k = 0; k < sc->steps; k++) {
            for (int b = 0; b < B; b++) memcpy(xin + b * n, x, sizeof(float) * n);
            float ts[2] = {tst[k], tst[k]};
            be->upload(d_x, xin, sizeof(float) * B * n);
            wan_forward(m, d_x, ts, d_text, d_v);
            be->download(vout, d_v, sizeof(float) * B * n);
            for (int64_t i = 0; i < n; i++) v[i] = guided ? vout[n + i] + sc->cfg * (vout[i] - vout[n + i]) : vout[i];
            if (unipc)
                flow_unipc_step(&u, k, x, v);
            else
                flow_euler_step(sig, k, x, v, n);
        }
        if (unipc) flow_unipc_free(&u);
        memcpy(all + (int64_t)p * n, x, sizeof(float) * n);
        char s[256], line[512] = "";
        slug(names[p], s, sizeof s);
        if (C == 3) {
            char path[4400];
            for (int64_t i = 0; i < n; i++) x[i] = x[i] < -1 ? -1 : (x[i] > 1 ? 1 : x[i]);
            snprintf(path, sizeof path, "%s/%s.gif", dir, s);
            if (gif_write(path, x, T, H, W, 4, 12, err, sizeof err)) osp_die("%s", err);
            snprintf(path, sizeof path, "%s/%s", dir, s);
            mkdir(path, 0755);
            float *frame = osp_malloc(sizeof(float) * 3 * H * W);
            for (int f = 0; f < T; f++) {
                for (int c = 0; c < 3; c++)
                    memcpy(frame + (int64_t)c * H * W, x + ((int64_t)c * T + f) * H * W, sizeof(float) * H * W);
                snprintf(path, sizeof path, "%s/%s/frame_%02d.png", dir, s, f);
                if (png_write(path, frame, H, W, 4, err, sizeof err)) osp_die("%s", err);
            }
            free(frame);
            int pc, ps, pd, gc, gd;
            float conf;
            if (probe_parse_prompt(names[p], &pc, &ps, &pd) == 0 && probe_video(x, T, H, W, &gc, &gd, &conf) == 0) {
                bool ok = gc == pc && gd == pd;
                probed++;
                right += ok;
                snprintf(line, sizeof line, "  probe: %s, moving %s -> %s", probe_color_name(gc),
                         probe_direction_name(gd), ok ? "matches" : "MISMATCH");
            }
        }
        printf("[%d/%d] %-36s %.1f s -> %s/%s%s%s\n", p + 1, N, names[p], osp_now() - t0, dir, s, C == 3 ? ".gif" : "",
               line);
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
    if (probed) printf("prompt adherence (color and direction, automatic probe): %d/%d\n", right, probed);
    for (int i = 0; i < N; i++) free(names[i]);
    free(names), free(emb), free(neg), free(sig), free(tst), free(x), free(xin), free(vout), free(v), free(text);
    free(all), free(prompts), free(sets);
    be->free(d_x), be->free(d_v), be->free(d_text);
    wan_free(m);
    return 0;
}
