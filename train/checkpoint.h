/*
 * checkpoint.h — crash-safe training checkpoints. A checkpoint is a directory
 * RUN/checkpoints/step_00001234/ holding
 *   model.safetensors   weights, original Wan2.1 keys (readable by Wan2.1 tools, diffusers'
 *                       converter and `osp sample/forward --ckpt`)
 *   ema.safetensors     EMA weights, same layout
 *   optim.safetensors   AdamW moments adam.m / adam.v (flat, in the parameter arena's
 *                       layout) and the HiF8 delayed-scaling state quant.state if any
 *   state.json          step, data position, optimizer counters, seed
 *   config.yaml         the resolved config
 *   DONE                written last
 * It is written under step_X.tmp.PID, every file fsync'ed, the directory renamed into
 * place and DONE created, so a crash at any point leaves the previous checkpoint intact
 * and the partial one ignored. Random numbers are counter-based (flow.h), so the seed
 * and the step are the whole RNG state.
 */
#ifndef OSP_CHECKPOINT_H
#define OSP_CHECKPOINT_H

#include <stdint.h>

#include "model/wan.h"
#include "optim/adamw.h"
#include "train/config.h"

typedef struct {
    int64_t step;      /* optimizer steps completed */
    int64_t data_pos;  /* dataset_position() after the last consumed batch */
    uint64_t seed;
} train_state;

int ckpt_save(const char *run_dir, const wan_model *m, const adamw_state *opt, const train_state *st,
              const osp_config *cfg, int keep_last, char *err, size_t errlen);
/* Newest complete checkpoint directory of a run (0), or -1 when there is none. */
int ckpt_find_latest(const char *run_dir, char *out, size_t outlen);
/* Restore weights, EMA, optimizer and quantisation state; fill st. */
int ckpt_load(const char *dir, wan_model *m, adamw_state *opt, train_state *st, char *err, size_t errlen);

#endif
