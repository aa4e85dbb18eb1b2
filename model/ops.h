/*
 * ops.h — the one op interface of osp. Model code (model/wan.c) calls every numeric
 * op through an osp_backend table, so the CPU reference (model/cpu/backend.c) and the CUDA
 * backend (model/cuda/backend.cu) are interchangeable and the Skiparse layouts need no model
 * changes (layouts are index tables consumed by gather/scatter ops).
 *
 * Conventions (all backends):
 *  - Tensors are float32 arrays in the backend's memory (host for CPU, device for CUDA),
 *    row-major; only the optional "bf16 activation storage" ops also take osp_bf16 arrays.
 *    "Token rows" are [R, N, D] = R rows (samples, or subsequence-major rows s*B+b inside the
 *    sparse region) of N tokens of width D.
 *  - Per-sample vectors (modulation shift/scale/gate) are addressed as
 *    base + (r % B) * stride: the sample of token row r is r % B. This serves both the
 *    raster layout (R = B) and the Skiparse layout (R = P*P*B) without copies.
 *  - Every backward op ADDS into all of its gradient outputs (inputs and parameters);
 *    callers zero gradient buffers. A NULL gradient pointer means "not needed".
 *  - Forward ops may save statistics (mean/rstd/lse) that their backward consumes.
 */
#ifndef OSP_OPS_H
#define OSP_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct osp_rope osp_rope; /* per-axis cos/sin tables, built by the backend */
typedef uint16_t osp_bf16;        /* a bfloat16 bit pattern (the top half of an fp32) */

typedef struct osp_backend {
    const char *name;

    /* ---- memory ---- */
    void *(*alloc)(size_t bytes);                     /* zero-filled */
    void (*free)(void *p);
    void (*upload)(void *dst, const void *src, size_t bytes);   /* host -> backend */
    void (*download)(void *dst, const void *src, size_t bytes); /* backend -> host */
    void (*copy)(void *dst, const void *src, size_t bytes);     /* backend -> backend */
    void (*zero)(void *dst, size_t bytes);
    void (*sync)(void);

    /* ---- dense algebra ---- */
    /* y[N,O] = x[N,K] W[O,K]^T + b[O]   (b may be NULL) */
    void (*linear_fwd)(float *y, const float *x, const float *W, const float *b, int64_t N, int K, int O);
    /* dx[N,K] += dy W;  dW[O,K] += dy^T x;  db[O] += colsum(dy)   (any may be NULL) */
    void (*linear_bwd)(float *dx, float *dW, float *db, const float *dy, const float *x, const float *W,
                       int64_t N, int K, int O);

    /* HiF8 fake-quantised linear (model/qlinear.h), offered where the backend fuses the quantisation
     * into its operand preparation (CUDA: the quantiser writes the bf16 GEMM operands, no fp32
     * copies); NULL otherwise (the CPU: qlinear then quantises into scratch and calls linear_*).
     * Same result as hif8_fq(x; sx), hif8_fq(W; sw), hif8_fq(dy; sg) followed by linear_fwd /
     * linear_bwd on the copies, db included (colsum of the quantised dy). */
    void (*linear_fq_fwd)(float *y, const float *x, float sx, const float *W, float sw, const float *b, int64_t N,
                          int K, int O, bool saturate);
    void (*linear_fq_bwd)(float *dx, float *dW, float *db, const float *dy, float sg, const float *x, float sx,
                          const float *W, float sw, int64_t N, int K, int O, bool saturate);

    /* ---- normalisation ---- */
    /* y = (x - mean)/sqrt(var + eps) [* w + b]  over the last dim D; saves mean, rstd [N] */
    void (*layernorm_fwd)(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b,
                          int64_t N, int D, float eps);
    void (*layernorm_bwd)(float *dx, float *dw, float *db, const float *dy, const float *x, const float *mean,
                          const float *rstd, const float *w, int64_t N, int D);
    /* Fused LayerNorm (no affine) + modulation: y = LN(x) * (1 + scale[b]) + shift[b],
     * x,y [R,N,D], shift/scale at base + (r % B)*stride. Saves mean, rstd [R*N]. */
    void (*ln_mod_fwd)(float *y, float *mean, float *rstd, const float *x, const float *shift,
                       const float *scale, int64_t R, int64_t N, int D, int B, int64_t stride, float eps);
    void (*ln_mod_bwd)(float *dx, float *dshift, float *dscale, const float *dy, const float *x,
                       const float *mean, const float *rstd, const float *scale, int64_t R, int64_t N, int D,
                       int B, int64_t stride);
    /* y = x * rsqrt(mean(x^2) + eps) * w over D; saves rstd [N] */
    void (*rmsnorm_fwd)(float *y, float *rstd, const float *x, const float *w, int64_t N, int D, float eps);
    void (*rmsnorm_bwd)(float *dx, float *dw, const float *dy, const float *x, const float *rstd, const float *w,
                        int64_t N, int D);

    /* ---- elementwise ---- */
    void (*gelu_fwd)(float *y, const float *x, int64_t n); /* tanh approximation */
    void (*gelu_bwd)(float *dx, const float *dy, const float *x, int64_t n);
    /* The FFN's first layer with its activation: pre = x W^T + b (kept for gelu_bwd), y = gelu(pre).
     * Same result as linear_fwd then gelu_fwd; the CUDA backend does it in the GEMM epilogue. */
    void (*linear_gelu_fwd)(float *y, float *pre, const float *x, const float *W, const float *b, int64_t N, int K,
                            int O);
    void (*silu_fwd)(float *y, const float *x, int64_t n);
    void (*silu_bwd)(float *dx, const float *dy, const float *x, int64_t n);
    /* Gated residual out = x + y * gate[b] over token rows [R,N,D] (gate at base + (r % B)*stride);
     * out may alias x. With idx, a layout move is fused in (one pass instead of residual then
     * gather): out has nout rows, out[j] = x[s] + y[s] * gate[(s / N) % B] for s = idx[j] >= 0 and
     * 0 for idx[j] < 0 (gather_rows' convention); out must not alias x or y then. */
    void (*gate_res_fwd)(float *out, const float *x, const float *y, const float *gate, const int32_t *idx,
                         int64_t nout, int64_t R, int64_t N, int D, int B, int64_t stride);
    /* dy += dx * gate[b];  dgate[b] += sum_n dx * y */
    void (*gate_res_bwd)(float *dy, float *dgate, const float *dx, const float *y, const float *gate, int64_t R,
                         int64_t N, int D, int B, int64_t stride);
    void (*add)(float *y, const float *x, int64_t n);            /* y += x */
    void (*axpby)(float *y, float a, const float *x, float b, int64_t n); /* y = a*x + b*y (tests only, so far) */

    /* ---- positional ---- */
    /* 3D RoPE, interleaved pairs, head dim d split (d-4*(d/6), 2*(d/6), 2*(d/6)).
     * x,y [ntok, H*d]; pos [ntok,3] = original (t,h,w) of each token. y may alias x.
     * The model calls the fused qk_norm_rope_* below; rope_fwd / rope_bwd are its unfused steps,
     * which the tests check on their own (and the CPU backend composes the fused op from). */
    osp_rope *(*rope_init)(int head_dim, int max_pos, double theta);
    void (*rope_free)(osp_rope *r);
    void (*rope_fwd)(float *y, const float *x, const int32_t *pos, const osp_rope *r, int64_t ntok, int H);
    /* dx += R(-theta) dy.  dx may alias dy only if the caller zeroed nothing else into it. */
    void (*rope_bwd)(float *dx, const float *dy, const int32_t *pos, const osp_rope *r, int64_t ntok, int H);
    /* The self-attention's q / k path fused: y = RoPE(RMSNorm(x) * w) over rows of D = H * head_dim
     * (the norm spans all heads, the rotation acts per head); saves rstd [N]. One pass over x
     * instead of a norm pass and a rotation pass. y may alias x. */
    void (*qk_norm_rope_fwd)(float *y, float *rstd, const float *x, const float *w, const int32_t *pos,
                             const osp_rope *r, int64_t N, int H, float eps);
    /* Its backward: dx += d/dx, dw += d/dw. dy is consumed: on return it holds R(-theta) dy,
     * the gradient at the norm's output (the caller's gradient scratch, so no extra buffer). */
    void (*qk_norm_rope_bwd)(float *dx, float *dw, float *dy, const float *x, const float *rstd, const float *w,
                             const int32_t *pos, const osp_rope *r, int64_t N, int H);

    /* ---- attention ---- */
    /* o = softmax(q k^T / sqrt(d)) v per (row, head).  q,o [R,Nq,H*d]; k,v [Rkv,Nk,H*d]
     * with q row r reading k/v row r % Rkv (cross-attention shares the text rows).
     * kvalid [Rkv,Nk] (1 = key may be attended) or NULL. A query with no valid key gets 0.
     * Saves lse [R,H,Nq]. Never materialises an Nq x Nk matrix.
     * Self-attention over a padded layout (kvalid given, Nq == Nk, R == Rkv): kvalid marks the
     * valid queries too. Outputs (o, lse) at padding queries are finite but unspecified, and the
     * caller passes dout = 0 there (no loss sees a padding token), so every backend agrees on
     * all gradients. The CPU twin and osp's kernels still compute them exactly. */
    void (*attn_fwd)(float *o, float *lse, const float *q, const float *k, const float *v, const uint8_t *kvalid,
                     int64_t R, int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d);
    void (*attn_bwd)(float *dq, float *dk, float *dv, const float *dout, const float *o, const float *lse,
                     const float *q, const float *k, const float *v, const uint8_t *kvalid, int64_t R, int64_t Rkv,
                     int64_t Nq, int64_t Nk, int H, int d);

    /* ---- layouts ---- */
    /* dst[i,:] = idx[i] >= 0 ? src[idx[i],:] : 0   for i < n; rows of width D */
    void (*gather_rows)(float *dst, const float *src, const int32_t *idx, int64_t n, int D);
    /* dst[idx[i],:] += src[i,:] for idx[i] >= 0 (backward of gather_rows; idx must be injective) */
    void (*scatter_add_rows)(float *dst, const float *src, const int32_t *idx, int64_t n, int D);
    /* video [B,C,T,Hs,Ws] <-> patch tokens [B, T/pt*Hs/ph*Ws/pw, C*pt*ph*pw].
     * c_first: feature order (c,pt,ph,pw) (patch embed input) else (pt,ph,pw,c) (head output).
     * to_tokens: video -> tokens, else tokens -> video. Writes (no accumulation). */
    void (*patch_map)(float *tok, float *vid, int B, int C, int T, int Hs, int Ws, int pt, int ph, int pw,
                      bool c_first, bool to_tokens);

    /* ---- losses, reductions, optimizer ---- */
    /* returns mean((pred-target)^2) (double accumulation); dpred = scale*2*(pred-target)/n if dpred */
    double (*mse)(float *dpred, const float *pred, const float *target, int64_t n, float scale);
    double (*sumsq)(const float *x, int64_t n);
    float (*absmax)(const float *x, int64_t n);
    void (*scale)(float *x, float a, int64_t n);
    /* AdamW with decoupled weight decay; bc1 = 1-b1^t, bc2 = 1-b2^t; g scaled by gscale first */
    void (*adamw)(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2, float eps,
                  float wd, float bc1, float bc2, float gscale);
    void (*ema)(float *e, const float *p, int64_t n, float decay); /* e = decay*e + (1-decay)*p */
    /* HiF8 fake quantisation: y = decode(encode(x*s))/s  (saturate as in quant/hif8.h) */
    void (*hif8_fq)(float *y, const float *x, int64_t n, float s, bool saturate);
    /* Device-resident HiF8 scales (optional: NULL on the CPU; the CUDA backend's bf16 HiF8 entries
     * below read their scales from device floats, so no quantised GEMM waits for the host).
     * hif8_scale_dev: *ds = target / max(amax, 1e-8) with amax = max |x| of the fp32 (x) or
     * bf16-stored (x16) tensor, exactly one non-NULL: fq_scaler_scale's current rule applied to
     * fq_absmax (quant/fakequant.h), bit for bit, NaN propagating (a NaN anywhere gives the CPU's
     * NaN scale), computed and written on the device in stream order with no host sync. n = 0
     * gives target / 1e-8. hif8_scale_set: *ds = s in stream order, no sync (a scale the host
     * computed, e.g. delayed scaling's). ds is a device float of the caller's (be->alloc). */
    void (*hif8_scale_dev)(float *ds, const float *x, const osp_bf16 *x16, int64_t n, float target);
    void (*hif8_scale_set)(float *ds, float s);
    /* number of non-finite values in x (the tests' NaN/Inf census) */
    int64_t (*count_nonfinite)(const float *x, int64_t n);

    /* ---- bf16 activation storage (optional: NULL where every activation stays fp32, the CPU) ----
     * The tensors that only ever feed a GEMM or an attention (the norm outputs, q/k/v/o, the FFN
     * hidden) are stored as bf16, rounded to nearest even once by their producer, instead of fp32
     * that every consumer rounds again. A GEMM or attention given bf16 inputs computes exactly what
     * it computes from the fp32 tensor (it multiplies bf16 operands either way); what changes is
     * memory traffic: no conversion passes, half the bytes. In each pair below exactly one of the
     * fp32 / bf16 pointers of an operand is non-NULL. Same contracts as the fp32 ops above. */
    int (*act16_on)(void); /* whether bf16 storage is in effect now (CUDA: options gemm bf16 and act16) */
    void (*linear16_fwd)(float *y, osp_bf16 *y16, const float *x, const osp_bf16 *x16, const float *W,
                         const float *b, int64_t N, int K, int O);
    void (*linear16_bwd)(float *dx, float *dW, float *db, const float *dy, const float *x, const osp_bf16 *x16,
                         const float *W, int64_t N, int K, int O);
    /* linear_gelu_fwd with x, y and pre stored bf16 */
    void (*linear_gelu16_fwd)(osp_bf16 *y, osp_bf16 *pre, const osp_bf16 *x, const float *W, const float *b,
                              int64_t N, int K, int O);
    void (*gelu16_bwd)(float *dx, const float *dy, const osp_bf16 *pre, int64_t n);
    /* max |x| of a bf16-stored tensor, to the host (synchronises): fq_absmax of its float values,
     * bit for bit (an integer max over the magnitude bits: NaN propagates, unlike absmax above,
     * which is the twin of the CPU's comparison loop and skips NaNs) */
    float (*absmax16)(const osp_bf16 *x, int64_t n);
    /* HiF8 fake-quantised linear (linear_fq_*) reading an fp32 or bf16-stored x (and writing an
     * fp32 or bf16 y): the quantiser sees the stored values. The scales are DEVICE pointers (dsx for
     * x, dsw for W, dsg for dy; each one device float, from hif8_scale_dev or hif8_scale_set), read
     * by the kernels, never by the host: the call does not synchronise. Same numbers as
     * linear_fq_fwd / linear_fq_bwd given those values as host floats; a scale of 0 (amax = Inf)
     * gives NaN as fq does (x * 0 / 0), db included. */
    void (*linear_fq16_fwd)(float *y, osp_bf16 *y16, const float *x, const osp_bf16 *x16, const float *dsx,
                            const float *W, const float *dsw, const float *b, int64_t N, int K, int O, bool saturate);
    void (*linear_fq16_bwd)(float *dx, float *dW, float *db, const float *dy, const float *dsg, const float *x,
                            const osp_bf16 *x16, const float *dsx, const float *W, const float *dsw, int64_t N, int K,
                            int O, bool saturate);
    /* linear_gelu16_fwd on the fake-quantised operands fq(x; *dsx), fq(W; *dsw) (device scales) */
    void (*linear_fq_gelu16_fwd)(osp_bf16 *y, osp_bf16 *pre, const osp_bf16 *x, const float *dsx, const float *W,
                                 const float *dsw, const float *b, int64_t N, int K, int O, bool saturate);
    /* ln_mod_fwd / layernorm_fwd / rmsnorm_fwd / qk_norm_rope_fwd writing y as bf16 (statistics fp32) */
    void (*ln_mod16_fwd)(osp_bf16 *y, float *mean, float *rstd, const float *x, const float *shift,
                         const float *scale, int64_t R, int64_t N, int D, int B, int64_t stride, float eps);
    void (*layernorm16_fwd)(osp_bf16 *y, float *mean, float *rstd, const float *x, const float *w, const float *b,
                            int64_t N, int D, float eps);
    void (*rmsnorm16_fwd)(osp_bf16 *y, float *rstd, const float *x, const float *w, int64_t N, int D, float eps);
    void (*qk_norm_rope16_fwd)(osp_bf16 *y, float *rstd, const float *x, const float *w, const int32_t *pos,
                               const osp_rope *r, int64_t N, int H, float eps);
    /* attn_fwd / attn_bwd over bf16 q, k, v, o (lse, dout and the gradients fp32). With kvalid the
     * forward may overwrite the masked rows of k and v with zeros (no output depends on them); the
     * backward takes k and v as the forward left them. */
    void (*attn16_fwd)(osp_bf16 *o, float *lse, const osp_bf16 *q, osp_bf16 *k, osp_bf16 *v, const uint8_t *kvalid,
                       int64_t R, int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d);
    void (*attn16_bwd)(float *dq, float *dk, float *dv, const float *dout, const osp_bf16 *o, const float *lse,
                       const osp_bf16 *q, const osp_bf16 *k, const osp_bf16 *v, const uint8_t *kvalid, int64_t R,
                       int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d);
} osp_backend;

const osp_backend *osp_backend_cpu(void);
/* The CUDA backend is an instance made for one device with its options: osp_backend_cuda_init in
 * model/cuda/backend.h. */

#endif
