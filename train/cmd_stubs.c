/* placeholder, replaced as the subcommands land */
#include "cli.h"
#include "model/common.h"
int cmd_bench(int argc, char **argv) { (void)argc; (void)argv; osp_die("bench: not built yet"); }
