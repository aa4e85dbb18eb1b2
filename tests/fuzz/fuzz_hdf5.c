/*
 * tests/fuzz/fuzz_hdf5.c — fuzz target for the HDF5 schema checks: dataset_open (buckets,
 * ranks, dims, dtypes and their `dtype` attributes, text_len, prompts) and one batch read,
 * then the prompt-file reads of `osp sample` (h5_read_f32 of `text`, the prompt strings).
 * Input: the bytes of an HDF5 file.
 */
#include "tests/fuzz/fuzz_util.h"

#include "data/dataset.h"
#include "data/h5util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write(0, "d.h5", data, size);
    char err[1024];
    osp_dataset *ds = NULL;
    float *text = NULL;
    FZ_TRY {
        if (dataset_open(&ds, path, 0, 1, 7, 1, 0, err, sizeof err) == 0) {
            osp_batch b;
            dataset_next(ds, &b, err, sizeof err);
            char prompt[256];
            dataset_prompt(ds, 0, prompt, sizeof prompt);
        }
        int64_t d[8];
        if (h5_read_f32(path, "text", 3, d, &text, err, sizeof err) == 0) {
            hid_t f = h5u_open_ro(path, err, sizeof err);
            if (f >= 0) {
                h5_lock();
                hid_t p = h5u_exists(f, "prompts") ? H5Dopen2(f, "prompts", H5P_DEFAULT) : -1;
                char name[256];
                for (int i = 0; p >= 0 && i < 4; i++) h5u_read_string(p, i, name, sizeof name);
                if (p >= 0) H5Dclose(p);
                H5Fclose(f);
                h5_unlock();
            }
        }
    }
    if (ds) dataset_close(ds);
    free(text);
    return 0;
}
