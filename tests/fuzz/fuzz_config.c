/*
 * tests/fuzz/fuzz_config.c — fuzz target for the run configuration: the YAML loader
 * (libyaml document walk, typed values, ranges, suggestions), `--set key=value` overrides,
 * cross-field validation, and the saved YAML read back.
 * Input: YAML text, then optionally a line "--set" followed by one assignment per line.
 */
#include "tests/fuzz/fuzz_util.h"

#include "train/config.h"

static const char sep[] = "\n--set\n";

/* length of the YAML part: up to the first "\n--set\n", else all */
static size_t yaml_len(const uint8_t *data, size_t size) {
    for (size_t i = 0; i + sizeof sep - 1 <= size; i++)
        if (!memcmp(data + i, sep, sizeof sep - 1)) return i;
    return size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const size_t ylen = yaml_len(data, size);
    const int has_sets = ylen < size;
    const char *path = fz_write(0, "c.yaml", data, ylen);
    char *sets = NULL;
    if (has_sets) {
        size_t n = size - ylen - (sizeof sep - 1);
        sets = malloc(n + 1);
        memcpy(sets, data + ylen + sizeof sep - 1, n);
        sets[n] = '\0';
    }
    char err[1024];
    osp_config c;
    FZ_TRY {
        config_defaults(&c);
        if (config_load_yaml(&c, path, err, sizeof err) == 0) {
            for (char *line = sets, *next; line; line = next) {
                next = strchr(line, '\n');
                if (next) *next++ = '\0';
                config_set(&c, line, err, sizeof err);
            }
            if (config_validate(&c, err, sizeof err) == 0) {
                /* a valid config saves and loads back to the same values */
                char out[700];
                snprintf(out, sizeof out, "%s/saved.yaml", fz_dir());
                osp_config d;
                config_defaults(&d);
                if (config_save_yaml(&c, out, err, sizeof err) == 0 && config_load_yaml(&d, out, err, sizeof err))
                    fprintf(stderr, "fuzz: a saved config does not load back: %s\n", err), abort();
            }
        }
    }
    free(sets);
    return 0;
}
