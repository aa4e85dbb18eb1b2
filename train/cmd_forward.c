/*
 * cmd_forward.c — `osp forward`: one DiT forward (and, given a cotangent R, the backward
 * of loss = sum(out * R)) from HDF5 inputs, writing outputs and per-parameter gradients
 * under the original Wan2.1 key names. This is the interop check against PyTorch
 * implementations of Wan2.1. Under mpirun/srun the batch is split over the dp ranks (rank r
 * runs samples [r·B/dp, (r+1)·B/dp)); outputs and input gradients are gathered in sample
 * order, parameter gradients summed, and rank 0 writes the same OUT.h5 as one process.
 */
#include <stdio.h>
#include <string.h>

#include "train/cli.h"
#include "data/h5util.h"
#include "core/common.h"
#include "model/io/wan_io.h"
#include "parallel/comm.h"
#include "parallel/mesh.h"
#include "parallel/mpi_boot.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: osp forward --ckpt PATH --inputs IN.h5 --out OUT.h5 [--heads N] [--config FILE]\n"
            "                   [--set key=value ...] [--device auto|cpu|cuda]\n\n"
            "Runs the Wan DiT of checkpoint PATH (a .safetensors file, a sharded *.index.json, or a\n"
            "directory; original, diffusers or 'model.diffusion_model.'-prefixed keys; F32/BF16/F16).\n"
            "Model dims come from the tensor shapes; heads from --heads, else from the config (--config\n"
            "or --set model.num_heads=N), else dim/128; attention mode and quantisation from the config\n"
            "/ --set (e.g. --set model.attention.mode=hybrid).\n\n"
            "IN.h5 datasets: latents [B,C,T,H,W] f32, timesteps [B] f32, text [B,L,text_dim] f32\n"
            "(L rows, zero-padded), optional R [B,Cout,T,H,W].\n"
            "OUT.h5: out [B,Cout,T,H,W]; with R also grads/<Wan key> for every parameter of\n"
            "loss = sum(out * R), and grads_input/latents, grads_input/text.\n");
}

static float *read_input(const char *path, const char *name, int rank, int64_t *dims) {
    char err[1024];
    float *d = NULL;
    if (h5_read_f32(path, name, rank, dims, &d, err, sizeof err)) osp_die("%s", err);
    return d;
}

int cmd_forward(int argc, char **argv) {
    const char *ckpt = NULL, *in = NULL, *outp = NULL, *yaml = NULL, *device = NULL;
    int heads = 0;
    char **sets = osp_calloc((size_t)argc, sizeof(char *));
    int nset = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--ckpt")) ckpt = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--inputs")) in = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--out")) outp = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--config")) yaml = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--heads")) heads = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--device")) device = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--set")) sets[nset++] = (char *)cli_value(argc, argv, &i);
        else osp_die("forward: unknown option '%s' (see osp forward --help)", a);
    }
    if (!ckpt || !in || !outp)
        osp_die("forward: missing %s (--ckpt, --inputs and --out are required; see osp forward --help)",
                !ckpt ? "--ckpt" : !in ? "--inputs" : "--out");
    osp_config cfg;
    config_defaults(&cfg);
    cli_config_load(&cfg, yaml, nset, sets, false);
    if (device) snprintf(cfg.device, sizeof cfg.device, "%s", device);
    char err[1024], wpath[4400];
    cli_resolve_ckpt(ckpt, NULL, false, wpath, sizeof wpath);
    st_set *st;
    if (st_open(&st, wpath, err, sizeof err)) osp_die("%s", err);
    wan_dims dims;
    if (wan_infer_dims(st, &dims, err, sizeof err)) osp_die("%s", err);

    int64_t ld[8], td[8], tsd[8];
    float *lat = read_input(in, "latents", 5, ld);
    float *ts = read_input(in, "timesteps", 1, tsd);
    float *text = read_input(in, "text", 3, td);
    /* shapes from the file become ints and buffer sizes: bound them before any arithmetic */
    for (int k = 0; k < 5; k++)
        if (ld[k] < 1 || ld[k] > 65536)
            osp_die("%s: latents dimension %d is %lld (want 1 to 65536)", in, k, (long long)ld[k]);
    for (int k = 0; k < 3; k++)
        if (td[k] < 1 || td[k] > 65536)
            osp_die("%s: text dimension %d is %lld (want 1 to 65536)", in, k, (long long)td[k]);
    int B = (int)ld[0];
    if (ld[1] != dims.in_channels)
        osp_die("%s: latents have %lld channels, the checkpoint expects %d", in, (long long)ld[1], dims.in_channels);
    if (tsd[0] != B) osp_die("%s: timesteps has %lld entries for a batch of %d", in, (long long)tsd[0], B);
    if (td[0] != B || td[2] != dims.text_dim)
        osp_die("%s: text is [%lld,%lld,%lld], expected [%d, L, %d]", in, (long long)td[0], (long long)td[1],
                (long long)td[2], B, dims.text_dim);

    /* dims come from the weights, text rows from IN.h5; heads from --heads, else from the
     * config when one is given (--config, or --set model.num_heads=N), else dim/128 (Wan's
     * head dim): the shapes cannot tell the head count */
    bool heads_set = yaml != NULL;
    for (int i = 0; i < nset; i++)
        if (!strncmp(sets[i], "model.num_heads=", 16)) heads_set = true;
    int cfg_heads = cfg.model.num_heads;
    cli_config_from_dims(&cfg, &dims);
    cfg.model.num_heads = heads > 0 ? heads : heads_set ? cfg_heads : wan_default_heads(dims.dim);
    cfg.model.text_len = (int)td[1];
    cli_config_validate(&cfg);
    wan_config wc = cli_wan_config(&cfg);
    /* ranks: the batch is split over dp (a plain run is one rank without MPI) */
    const par_world *pw = par_boot();
    int dpw = cfg.parallel.dp ? cfg.parallel.dp : pw->size / (cfg.parallel.sp * cfg.parallel.ssp);
    if (dpw > 0 && B % dpw) {
        if (pw->rank != 0) par_barrier(par_group_world()); /* rank 0 says it once and aborts */
        osp_die("%s: a batch of %d samples cannot be split over %d dp ranks", in, B, dpw);
    }
    par_mesh mesh;
    par_mesh_spec ms = {cfg.parallel.dp, cfg.parallel.sp, cfg.parallel.ssp, wc.num_heads, wc.hybrid,
                        wc.sparse_ratio, B, "none", cfg.parallel.transport, (double)cfg.parallel.timeout_s};
    mesh_init(&mesh, &ms);
    int nr = mesh.dp, Bl = B / nr, b0 = mesh.dp_rank * Bl; /* this rank's samples [b0, b0 + Bl) */
    osp_cuda_options cuda = cli_cuda_options(&cfg);
    const osp_backend *be = cli_backend(cfg.device, 0, &cuda);
    wan_model *m = wan_init(&wc, be);
    if (wan_load(m, NULL, st, true, false, NULL, err, sizeof err)) osp_die("%s", err);
    st_close(st);
    wan_set_shape(m, Bl, (int)ld[2], (int)ld[3], (int)ld[4]);

    int64_t nlat = ld[0] * ld[1] * ld[2] * ld[3] * ld[4];
    int64_t nout = (int64_t)B * wc.out_channels * ld[2] * ld[3] * ld[4];
    int64_t ntext = td[0] * td[1] * td[2];
    /* per-rank slices (the whole arrays at one rank) */
    int64_t plat = nlat / B, pout = nout / B, ptext = ntext / B;
    int64_t nlat_l = plat * Bl, nout_l = pout * Bl, ntext_l = ptext * Bl;
    float *d_lat = be->alloc(sizeof(float) * nlat_l), *d_text = be->alloc(sizeof(float) * ntext_l);
    float *d_out = be->alloc(sizeof(float) * nout_l);
    be->upload(d_lat, lat + b0 * plat, sizeof(float) * nlat_l);
    be->upload(d_text, text + b0 * ptext, sizeof(float) * ntext_l);
    double t0 = osp_now();
    wan_forward(m, d_lat, ts + b0, d_text, d_out);
    be->sync();
    double t1 = osp_now();
    float *out = osp_malloc(sizeof(float) * nout);
    be->download(out + b0 * pout, d_out, sizeof(float) * nout_l);
    /* rank r's samples are chunk r: an all-gather puts them in sample order */
    par_allgather(mesh.dp_g, out + b0 * pout, out, nout_l, PAR_F32);

    h5_writer *w = NULL;
    if (mesh.rank == 0 && !(w = h5w_open(outp, err, sizeof err))) osp_die("%s", err);
    int64_t od[5] = {B, wc.out_channels, ld[2], ld[3], ld[4]};
    if (w) h5w_f32(w, "out", 5, od, out);
    bool has_r = h5_has(in, "R");
    if (has_r) {
        int64_t rd[8];
        float *R = read_input(in, "R", 5, rd);
        for (int k = 0; k < 5; k++)
            if (rd[k] != od[k]) osp_die("%s: R must have the shape of out [%lld,%lld,%lld,%lld,%lld]", in,
                                        (long long)od[0], (long long)od[1], (long long)od[2], (long long)od[3],
                                        (long long)od[4]);
        float *d_R = be->alloc(sizeof(float) * nout_l);
        be->upload(d_R, R + b0 * pout, sizeof(float) * nout_l);
        float *d_dlat = be->alloc(sizeof(float) * nlat_l), *d_dtext = be->alloc(sizeof(float) * ntext_l);
        wan_zero_grads(m);
        wan_backward(m, d_R, d_dlat, d_dtext);
        be->sync();
        int64_t total = wan_arena_floats(m);
        float *g = osp_malloc(sizeof(float) * total);
        be->download(g, wan_grads(m), sizeof(float) * total);
        /* loss = sum(out * R) over all samples: parameter gradients add up over the ranks */
        par_allreduce(mesh.world_g, g, total, PAR_F32, PAR_SUM);
        for (int i = 0; i < wan_param_count(m) && w; i++) {
            const wan_param_info *p = wan_param(m, i);
            char name[160];
            snprintf(name, sizeof name, "grads/%s", p->name);
            h5w_f32(w, name, p->ndim, p->shape, g + p->offset);
        }
        float *h = osp_malloc(sizeof(float) * (nlat > ntext ? nlat : ntext));
        be->download(h + b0 * plat, d_dlat, sizeof(float) * nlat_l);
        par_allgather(mesh.dp_g, h + b0 * plat, h, nlat_l, PAR_F32);
        if (w) h5w_f32(w, "grads_input/latents", 5, ld, h);
        be->download(h + b0 * ptext, d_dtext, sizeof(float) * ntext_l);
        par_allgather(mesh.dp_g, h + b0 * ptext, h, ntext_l, PAR_F32);
        if (w) h5w_f32(w, "grads_input/text", 3, td, h);
        free(h);
        free(g);
        free(R);
        be->free(d_R);
        be->free(d_dlat);
        be->free(d_dtext);
    }
    if (w && h5w_close(w, err, sizeof err)) osp_die("%s", err);
    if (mesh.rank == 0)
        fprintf(stderr, "forward: %s  B=%d grid %dx%dx%d tokens/sample %lld  %s attention  %.3f s%s -> %s\n", be->name,
            B, (int)ld[2] / wc.patch[0], (int)ld[3] / wc.patch[1], (int)ld[4] / wc.patch[2],
            (long long)(ld[2] / wc.patch[0] * (ld[3] / wc.patch[1]) * (ld[4] / wc.patch[2])),
            wc.hybrid ? "hybrid" : "full", t1 - t0, has_r ? " (+backward)" : "", outp);
    be->free(d_lat);
    be->free(d_text);
    be->free(d_out);
    wan_free(m);
    mesh_free(&mesh);
    cli_backend_free(be);
    free(lat);
    free(ts);
    free(text);
    free(out);
    free(sets);
    return 0;
}
