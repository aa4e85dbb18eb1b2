/*
 * model/cuda/cudnn_conv.cuh — host wrappers of the element-wise kernels around cuDNN attention
 * (model/cuda/cudnn_conv.cu), for model/cuda/cudnn.cu only. All run on the instance's stream.
 */
#ifndef OSP_CUDA_ATTN_CUDNN_CONV_CUH
#define OSP_CUDA_ATTN_CUDNN_CONV_CUH

#include "model/cuda/attn.cuh"

void cdn_to_f32(float *dst, const bf16 *src, int64_t n);
void cdn_add(float *dst, const bf16 *src, int64_t n); /* dst += src; no-op for dst NULL */
/* as cuda_to_bf16 (model/cuda/common.cuh) / cdn_add with rows (HD values each) of kvalid == 0 zeroed / not added;
 * kvalid NULL: plain */
void cdn_to_bf16_masked(bf16 *dst, const float *src, const uint8_t *kvalid, int64_t HD, int64_t n);
void cdn_add_masked(float *dst, const bf16 *src, const uint8_t *kvalid, int64_t HD, int64_t n);
/* rows of kvalid == 0 of a bf16 tensor set to zero in place (bf16 storage); kvalid NULL: nothing */
void cdn_zero_masked(uint16_t *x, const uint8_t *kvalid, int64_t HD, int64_t n);
/* nmask[r] = masked keys of kvalid row r (R rows of N); *flag = 1 when a row has none valid.
 * With len (else NULL): len[r] = 1 + the row's last valid key (N if none), and nmask[r] counts
 * the masked keys before it only (the padding mask cuts the rest) */
void cdn_count_masked(float *nmask, int *len, int *flag, const uint8_t *kvalid, int64_t R, int64_t N);
/* o = ob / (1 - x) (o NULL: into ob itself, bf16), lse += log(1 - x), x = nmask[r] exp(-lse) (the
 * zeroed keys' share, x clamped to 0.99); *flag = 1 where x > 0.99 for a query with qvalid[r, t] != 0
 * (every query if qvalid is NULL): the result would lose precision, so the caller runs osp's
 * kernels instead. With len (cuDNN ran with per-row lengths): queries t >= len[r] get o = 0 and a
 * large finite lse (the backward's P is then 0 for them). */
void cdn_fix_masked(float *o, bf16 *ob, float *lse, const float *nmask, const int *len, const uint8_t *qvalid,
                    int *flag, int64_t R, int64_t Nq, int H, int d);
/* a device int set to 0 on the stream / read back (synchronises the stream) */
int *cdn_flag_clear(void);
int cdn_flag_read(const int *d_flag);

#endif
