/*
 * cmd_ckpt.c — `osp ckpt inspect PATH` (tensors, dtypes, shapes, parameter count and the
 * inferred Wan config) and `osp ckpt convert IN OUT` (key layout and dtype changes,
 * optional sharding).
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "train/cli.h"
#include "core/common.h"
#include "model/io/safetensors.h"
#include "model/io/wan_keys.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: osp ckpt inspect PATH [--all]\n"
            "       osp ckpt convert IN OUT [--to original|diffusers] [--dtype f32|bf16|f16] [--shard-gb G]\n\n"
            "PATH/IN: a .safetensors file, a *.safetensors.index.json or a checkpoint directory.\n"
            "inspect prints every tensor (the first 40 unless --all), the parameter count and the\n"
            "Wan2.1 config inferred from the shapes. convert renames keys to the original Wan2.1 or the\n"
            "diffusers layout and changes dtype; with --shard-gb OUT is a directory of shards + index.\n");
}

static int inspect(const char *given, bool all) {
    char err[1024], path[4400];
    cli_resolve_ckpt(given, NULL, false, path, sizeof path);
    st_set *s;
    if (st_open(&s, path, err, sizeof err)) osp_die("%s", err);
    int64_t nparam = 0;
    size_t bytes = 0;
    int counts[3] = {0, 0, 0};
    printf("%-60s %-5s %s\n", "tensor", "dtype", "shape");
    for (int i = 0; i < st_count(s); i++) {
        const st_tensor *t = st_get(s, i);
        nparam += st_numel(t);
        bytes += t->nbytes;
        counts[t->dtype]++;
        if (all || i < 40) {
            char sh[128] = "";
            for (int k = 0; k < t->ndim; k++)
                snprintf(sh + strlen(sh), sizeof sh - strlen(sh), "%s%lld", k ? ", " : "", (long long)t->shape[k]);
            printf("%-60s %-5s [%s]\n", t->name, st_dtype_name(t->dtype), sh);
        } else if (i == 40) {
            printf("... (%d more; --all lists every tensor)\n", st_count(s) - 40);
        }
    }
    printf("\n%d tensors (F32 %d, BF16 %d, F16 %d), %lld parameters, %.2f MB\n", st_count(s), counts[0], counts[1],
           counts[2], (long long)nparam, bytes / 1e6);
    wan_dims d;
    if (wan_infer_dims(s, &d, err, sizeof err)) {
        printf("not a Wan2.1 T2V checkpoint: %s\n", err);
    } else {
        int heads = wan_default_heads(d.dim);
        printf("inferred Wan2.1 config: dim %d, ffn_dim %d, num_layers %d, heads %d (dim/128; override with --heads),\n"
               "  in_channels %d, out_channels %d, patch %dx%dx%d, text_dim %d, freq_dim %d\n",
               d.dim, d.ffn_dim, d.num_layers, heads, d.in_channels, d.out_channels, d.patch[0], d.patch[1],
               d.patch[2], d.text_dim, d.freq_dim);
        if (wan_check_keys(s, &d, err, sizeof err))
            printf("key check: %s\n", err);
        else
            printf("key check: all %d Wan2.1 tensors present with the expected shapes\n", wan_keys_count(d.num_layers));
    }
    st_close(s);
    return 0;
}

static int convert(const char *in, const char *out, const char *to, const char *dtype, double shard_gb) {
    char err[1024], path[4400];
    cli_resolve_ckpt(in, NULL, false, path, sizeof path);
    st_set *s;
    if (st_open(&s, path, err, sizeof err)) osp_die("%s", err);
    st_dtype dt = ST_F32;
    bool keep = !dtype;
    if (dtype && !strcmp(dtype, "f32")) dt = ST_F32;
    else if (dtype && !strcmp(dtype, "bf16")) dt = ST_BF16;
    else if (dtype && !strcmp(dtype, "f16")) dt = ST_F16;
    else if (dtype) osp_die("ckpt convert: --dtype must be f32, bf16 or f16, got '%s'", dtype);
    bool diff = !strcmp(to, "diffusers");
    if (!diff && strcmp(to, "original")) osp_die("ckpt convert: --to must be original or diffusers, got '%s'", to);
    st_writer *w = st_writer_init();
    for (int i = 0; i < st_count(s); i++) {
        const st_tensor *t = st_get(s, i);
        char name[256];
        int rc = diff ? wan_key_to_diffusers(t->name, name, sizeof name) : wan_key_canonical(t->name, name, sizeof name);
        if (rc < 0) osp_die("%s: key too long: %s", in, t->name);
        st_dtype odt = keep ? t->dtype : dt;
        void *buf = osp_malloc((size_t)st_numel(t) * st_dtype_size(odt));
        st_convert(buf, odt, t->data, t->dtype, (size_t)st_numel(t));
        st_writer_add_owned(w, name, odt, t->ndim, t->shape, buf);
    }
    int rc;
    if (shard_gb > 0) {
        mkdir(out, 0755);
        rc = st_writer_save_sharded(w, out, "diffusion_pytorch_model", (size_t)(shard_gb * 1e9), err, sizeof err);
    } else {
        rc = st_writer_save(w, out, NULL, err, sizeof err);
    }
    if (rc) osp_die("%s", err);
    printf("converted %d tensors to %s layout -> %s\n", st_count(s), to, out);
    st_writer_free(w);
    st_close(s);
    return 0;
}

int cmd_ckpt(int argc, char **argv) {
    if (argc < 1 || cli_is_help(argv[0])) {
        usage(argc < 1 ? stderr : stdout);
        if (argc < 1) {
            fprintf(stderr, "osp: error: ckpt: no action given (inspect or convert) (see osp ckpt --help)\n");
            osp_exit(2); /* every failing exit goes through osp_exit */
        }
        return 0;
    }
    if (!strcmp(argv[0], "inspect")) {
        const char *path = NULL;
        bool all = false;
        for (int i = 1; i < argc; i++) {
            if (cli_is_help(argv[i])) {
                usage(stdout);
                return 0;
            } else if (!strcmp(argv[i], "--all")) all = true;
            else if (argv[i][0] == '-') osp_die("ckpt inspect: unknown option '%s'", argv[i]);
            else path = argv[i];
        }
        if (!path) osp_die("ckpt inspect: missing PATH (see osp ckpt --help)");
        return inspect(path, all);
    }
    if (!strcmp(argv[0], "convert")) {
        const char *pos[2] = {NULL, NULL}, *to = "original", *dtype = NULL;
        double shard = 0;
        int np = 0;
        for (int i = 1; i < argc; i++) {
            if (!strcmp(argv[i], "--to")) to = cli_value(argc, argv, &i);
            else if (!strcmp(argv[i], "--dtype")) dtype = cli_value(argc, argv, &i);
            else if (!strcmp(argv[i], "--shard-gb")) shard = cli_double(argv[i], cli_value(argc, argv, &i));
            else if (argv[i][0] == '-') osp_die("ckpt convert: unknown option '%s'", argv[i]);
            else if (np < 2) pos[np++] = argv[i];
            else osp_die("ckpt convert: too many arguments");
        }
        if (np != 2) osp_die("ckpt convert: needs IN and OUT (see osp ckpt --help)");
        return convert(pos[0], pos[1], to, dtype, shard);
    }
    osp_die("ckpt: unknown action '%s' (inspect or convert)", argv[0]);
}
