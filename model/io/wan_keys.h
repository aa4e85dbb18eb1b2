/*
 * model/io/wan_keys.h — Wan2.1 T2V checkpoint key names: canonicalization of the three layouts met
 * in the wild to the ORIGINAL Wan2.1 names (the ones osp uses internally and writes), the
 * reverse map to diffusers names, the expected key list with shapes for a given config,
 * and inference of the config from a checkpoint's tensor shapes.
 *
 * Layouts (docs/model.md §10 lists the full mapping):
 *   original   "blocks.3.self_attn.q.weight", "head.head.weight", "blocks.3.norm3.weight"
 *   diffusers  "blocks.3.attn1.to_q.weight", "proj_out.weight",  "blocks.3.norm2.weight"
 *   prefixed   "model.diffusion_model." + either of the above (ComfyUI repacks)
 * The mapping is pure renaming: shapes are identical in every layout. Note the swap: the
 * affine cross-attention pre-norm is original norm3 == diffusers norm2.
 * Only T2V keys are known; I2V extras (img_emb.*, *_img) are reported as unknown.
 */
#ifndef OSP_WAN_KEYS_H
#define OSP_WAN_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "model/io/safetensors.h"
#include "model/wan_arch.h"

/* Canonicalize a stored key to the original Wan2.1 name. Returns 0 when the result is a
 * known Wan2.1 T2V key, 1 when it is unknown (then out = in, unchanged), -1 when out is
 * too small. Original keys pass through unchanged. */
int wan_key_canonical(const char *in, char *out, size_t outlen);

/* Map any layout's key to its diffusers name (for `osp ckpt convert`). Same returns. */
int wan_key_to_diffusers(const char *key, char *out, size_t outlen);

/* Number of tensors in a T2V state dict: 12 + 27 * num_layers + 3 (wan_arch_count). */
int wan_keys_count(int num_layers);

/* The i-th expected key (original name, in the parameter order of model/wan_arch.h) and
 * its shape. Returns ndim, or -1 if i is out of range or `name` is too small. */
int wan_keys_get(const wan_dims *d, int i, char *name, size_t namelen, int64_t shape[ST_MAX_DIMS]);

/* Find a tensor by its canonical (original) name in any layout of the stored names. */
const st_tensor *wan_find(const st_set *s, const char *canonical);

/* Read dim, in/out channels, patch, num_layers, ffn/text/freq dims from the shapes of
 * patch_embedding.weight, blocks.0.ffn.0.weight, text_embedding.0.weight,
 * time_embedding.0.weight, head.head.weight and the highest block index, in whatever
 * layout they are stored (num_heads and text_len are not in the weights: left 0; see
 * wan_default_heads). Error (one line, naming the checkpoint and key) if one is
 * missing or has the wrong rank. */
int wan_infer_dims(const st_set *s, wan_dims *d, char *err, size_t errlen);

/* Check that the checkpoint holds exactly the T2V state dict of `d`: every expected key
 * present once (in any layout) with the expected shape, and no unknown key. The first
 * problem is reported. */
int wan_check_keys(const st_set *s, const wan_dims *d, char *err, size_t errlen);

#endif
