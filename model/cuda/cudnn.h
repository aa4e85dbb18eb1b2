/*
 * model/cuda/cudnn.h — the optional cuDNN fused-attention path of the CUDA backend
 * (model/cuda/cudnn.cu): entry points for the attention launchers, the test and the
 * benchmark. C and CUDA C. Every function exists only in builds with the CUDA backend.
 *
 * attn_cudnn_fwd / attn_cudnn_bwd take osp's fp32 layouts (model/ops.h attn_fwd / attn_bwd,
 * Rkv == R only; kvalid [R, Nk] or NULL; the backward accumulates into dq, dk, dv) and return 0
 * when cuDNN ran the call, -1 when cuDNN is unavailable or declined it (then nothing is added).
 */
#ifndef OSP_CUDA_ATTN_CUDNN_H
#define OSP_CUDA_ATTN_CUDNN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int attn_cudnn_fwd(float *o, float *lse, const float *q, const float *k, const float *v, const uint8_t *kvalid,
                   int64_t R, int64_t Nq, int64_t Nk, int H, int d);
int attn_cudnn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *o, const float *lse,
                   const float *q, const float *k, const float *v, const uint8_t *kvalid, int64_t R, int64_t Nq,
                   int64_t Nk, int H, int d);
/* the same over bf16 storage (ops.h attn16_*; bf16 bit patterns): q, k, v, o are cuDNN's operands
 * as they are; with kvalid the forward zeroes the masked rows of k and v in place, and the
 * backward reads them as the forward left them */
int attn_cudnn_fwd16(uint16_t *o, float *lse, const uint16_t *q, uint16_t *k, uint16_t *v, const uint8_t *kvalid,
                     int64_t R, int64_t Nq, int64_t Nk, int H, int d);
int attn_cudnn_bwd16(float *dq, float *dk, float *dv, const float *dout, const uint16_t *o, const float *lse,
                     const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint8_t *kvalid, int64_t R,
                     int64_t Nq, int64_t Nk, int H, int d);
/* These act for the live instance (model/cuda/backend.h); the status and counters below answer
 * 0 / "" when there is none. */
int attn_cudnn_enabled(void);     /* the option attn is not osp */
int attn_cudnn_bwd_enabled(void); /* ... and the option deterministic is off */
/* after a declined call: stops with the reason when attn is cudnn, else nothing */
void attn_cudnn_declined(const char *what, int64_t R, int64_t Nq, int64_t Nk, int H, int d);
int attn_cudnn_available(void);       /* 1 when libcudnn loaded */
const char *attn_cudnn_status(void);  /* the latest failure, "" if none */
int64_t attn_cudnn_calls(int bwd);    /* calls served so far (forward, backward) */
/* forward calls served with per-row lengths (the padding mask of a padded self-attention); a
 * cuDNN without sequence lengths on its SDPA_FWD operation (9.14 has none, 9.19 has them) serves
 * those calls without, computing and correcting for the padding instead */
int64_t attn_cudnn_calls_padded(void);
void attn_cudnn_free(void);           /* the instance's plans and handle (the library stays loaded) */

#ifdef __cplusplus
}
#endif
#endif
