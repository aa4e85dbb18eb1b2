/*
 * tests/fuzz/fuzz_cli.c — fuzz target for the command-line value parsing shared by the `osp`
 * subcommands: integer and number options (cli_int, cli_double), option values at the end
 * of argv (cli_value), and `--set key=value` (config_set, then validation). Every rejection
 * must be an osp_die (caught here) or an error return; a wrong value accepted silently is
 * a finding too: an accepted integer must read back as the text it came from.
 * Input: argv tokens separated by newlines.
 */
#include "tests/fuzz/fuzz_util.h"

#include <errno.h>
#include <limits.h>

#include "train/cli.h"
#include "train/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char *argv[64];
    int argc = 0;
    for (char *t = text, *next; t && argc < 64; t = next) {
        next = strchr(t, '\n');
        if (next) *next++ = '\0';
        argv[argc++] = t;
    }
    osp_config c;
    config_defaults(&c);
    char err[1024];
    for (int i = 0; i < argc; i++) {
        int j = i;
        FZ_TRY {
            const char *v = cli_value(argc, argv, &j); /* dies at the end of argv */
            int x = cli_int(argv[i], v);
            /* accepted: the text is exactly that integer (no silent truncation) */
            errno = 0;
            char *end;
            long long back = strtoll(v, &end, 10);
            if (errno || *end || back != x) {
                fprintf(stderr, "fuzz_cli: '%s' accepted as %d\n", v, x);
                abort();
            }
        }
        FZ_TRY { cli_double(argv[i], argv[i]); }
        if (strchr(argv[i], '=')) config_set(&c, argv[i], err, sizeof err);
    }
    config_validate(&c, err, sizeof err);
    free(text);
    return 0;
}
