/*
 * model/io/wan_io.h — Wan DiT weights <-> safetensors checkpoints (see model/io/wan_io.c).
 */
#ifndef OSP_WAN_IO_H
#define OSP_WAN_IO_H

#include <stdbool.h>
#include <stddef.h>

#include "model/io/safetensors.h"
#include "model/wan.h"
#include "model/io/wan_keys.h"

/* Load every model parameter from s into `arena` (NULL: the model's weights; or e.g. an
 * EMA copy with the same layout) (any key layout, F32/BF16/F16). strict: a missing or
 * unexpected tensor is an error; otherwise missing ones keep their current values (the
 * init) and unexpected ones are ignored. report: print one line per missing/unexpected
 * key and a summary. A shape mismatch is always an error naming file, key and shapes. */
int wan_load(wan_model *m, float *arena, const st_set *s, bool strict, bool report, int *n_loaded, char *err, size_t errlen);

/* Save an arena with the model's parameter layout (the weights, or an EMA copy) as F32
 * safetensors in the original Wan2.1 key layout, atomically. */
int wan_save(const wan_model *m, const float *arena, const char *path, const char *metadata_json, char *err,
             size_t errlen);

#endif
