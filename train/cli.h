/*
 * cli.h — shared pieces of the `osp` subcommands: option parsing helpers, the config
 * pipeline (defaults -> YAML -> --set), backend selection and the mapping from the run
 * config to the model config.
 */
#ifndef OSP_CLI_H
#define OSP_CLI_H

#include <stdbool.h>

#include "model/cuda/backend.h"
#include "model/ops.h"
#include "model/wan.h"
#include "model/io/wan_keys.h"
#include "train/config.h"

/* Option value after argv[*i] (advances *i); dies with a one-line message if absent. */
const char *cli_value(int argc, char **argv, int *i);
int cli_int(const char *opt, const char *v);
double cli_double(const char *opt, const char *v);
bool cli_is_help(const char *a);

/* Apply --config FILE (or a positional YAML) and --set overrides collected by the caller,
 * then (if validate) validate; any error exits with a one-line message. */
void cli_config_load(osp_config *c, const char *yaml_path, int nset, char **sets, bool validate);
void cli_config_validate(const osp_config *c);
/* Overwrite the model dims of a config with those read from a checkpoint. */
void cli_config_from_dims(osp_config *c, const wan_dims *d);

/* The CUDA backend's options from the config (cuda.*, train.deterministic). */
osp_cuda_options cli_cuda_options(const osp_config *c);
/* device: auto -> CUDA when built with it and a GPU is visible, else CPU; cpu; cuda (or stop).
 * A CUDA backend is made for GPU gpu (an index among the visible ones) with options cuda (NULL:
 * the defaults), environment overrides on top (model/cuda/backend.h). */
const osp_backend *cli_backend(const char *device, int gpu, const osp_cuda_options *cuda);
/* Frees what cli_backend made (the CUDA instance; the CPU backend is static). */
void cli_backend_free(const osp_backend *be);

/* The model part of the run config as a wan_config. */
wan_config cli_wan_config(const osp_config *c);

/* Resolve a --ckpt argument to something st_open reads: an osp checkpoint directory
 * (with DONE) -> its model.safetensors (ema.safetensors if ema); a run directory -> its
 * newest checkpoint; anything else (a .safetensors file, an index, a Wan2.1 model
 * directory) unchanged. NULL -> the newest checkpoint of run_dir. */
void cli_resolve_ckpt(const char *given, const char *run_dir, bool ema, char *out, size_t n);

/* Subcommands */
int cmd_forward(int argc, char **argv);
int cmd_ckpt(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_version(int argc, char **argv); /* osp --version */

#endif
