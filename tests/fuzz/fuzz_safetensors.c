/*
 * tests/fuzz/fuzz_safetensors.c — fuzz target for the safetensors reader: the 8-byte length,
 * the JSON header (dtypes, shapes, data_offsets, __metadata__), sharded *.index.json files,
 * and what the Wan key map infers from the shapes (wan_infer_dims, wan_check_keys).
 * First input byte: even = the rest is a .safetensors file; odd = the rest is an index JSON
 * next to two valid shards (a.safetensors, b.safetensors).
 */
#include "tests/fuzz/fuzz_util.h"

#include "model/io/safetensors.h"
#include "model/io/wan_keys.h"

/* two small shards the index inputs can point at */
static void make_shards(void) {
    static int done = 0;
    if (done) return;
    static float a[6] = {1, 2, 3, 4, 5, 6}, b[4] = {-1, 0.5f, 2, 8};
    int64_t sa[2] = {2, 3}, sb[1] = {4};
    const char *names[2] = {"a.safetensors", "b.safetensors"};
    for (int k = 0; k < 2; k++) {
        st_writer *w = st_writer_init();
        if (k == 0) st_writer_add(w, "x.weight", ST_F32, 2, sa, a);
        else st_writer_add(w, "y.bias", ST_F32, 1, sb, b);
        char path[700], err[512];
        snprintf(path, sizeof path, "%s/%s", fz_dir(), names[k]);
        if (st_writer_save(w, path, NULL, err, sizeof err)) {
            fprintf(stderr, "fuzz: %s\n", err);
            abort();
        }
        st_writer_free(w);
    }
    done = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *path;
    if (data[0] & 1) {
        make_shards();
        path = fz_write(0, "m.safetensors.index.json", data + 1, size - 1);
    } else {
        path = fz_write(0, "t.safetensors", data + 1, size - 1);
    }
    char err[1024];
    st_set *s = NULL;
    FZ_TRY {
        if (st_open(&s, path, err, sizeof err) == 0) {
            float buf[256];
            for (int i = 0; i < st_count(s); i++) {
                const st_tensor *t = st_get(s, i);
                int64_t n = st_numel(t);
                if (n >= 0 && n <= 256) st_read_f32(t, buf, (size_t)n, err, sizeof err);
            }
            st_metadata(s, "format");
            wan_dims d;
            if (wan_infer_dims(s, &d, err, sizeof err) == 0) wan_check_keys(s, &d, err, sizeof err);
        }
    }
    if (s) st_close(s);
    return 0;
}
