/*
 * hif8.h — the HiFloat8 (HiF8) 8-bit float codec: float32 -> byte encoder, byte -> float32
 * decoder and the fused round trip used by fake quantization. Bit-exact with the public
 * references (round to nearest, ties away from zero, on the binade of the input).
 *
 * Byte = S | Dot | E | M: a prefix code (Dot) gives the width D of a sign-magnitude exponent
 * E (implicit leading 1), and the remaining bits are the mantissa:
 *   |E| in 0..3  -> 3 mantissa bits,   |E| in 4..7 -> 2 bits,   |E| in 8..15 -> 1 bit,
 *   2^-22 .. 2^-16 -> denormals (powers of two only).
 * Specials: 0x00 = 0 (the only zero), 0x80 = NaN (the only NaN), 0x6F / 0xEF = +Inf / -Inf,
 * 0x6E / 0xEE = +-32768 (max finite), 0x7E = 2^-15 (min normal), 0x01 = 2^-22 (min denormal).
 *
 * Encoding rules (float32 in):
 *   NaN -> 0x80; +-Inf -> 0x6F / 0xEF; -0 and every |x| < 2^-23 -> 0x00;
 *   2^-23 <= |x| < 2^-22 -> +-2^-22 (tie goes away from zero);
 *   finite |x| >= 40960 (= 1.25 * 2^15, the rounding midpoint above 32768) -> +-Inf,
 *   or +-32768 (0x6E / 0xEE) when `saturate` is set. NaN and Inf map the same in both modes.
 *
 * WARNING — code order is not value order. The exponent is sign-magnitude, so raw bytes do
 * not sort by value (0x10 = 2, 0x18 = 0.5, 0x20 = 4, 0x30 = 0.25, 0x40 = 16, 0x50 = 0.0625).
 * Never compare, max-reduce or sort raw codes: decode first.
 *
 * Thread safety: every function is pure (the decode table is a compile-time constant).
 */
#ifndef OSP_HIF8_H
#define OSP_HIF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HIF8_NAN 0x80u
#define HIF8_POS_INF 0x6Fu
#define HIF8_NEG_INF 0xEFu
#define HIF8_POS_MAX 0x6Eu  /* 32768 */
#define HIF8_MAX 32768.0f   /* largest finite magnitude */
#define HIF8_OVERFLOW 40960.0f /* finite |x| >= this encodes to Inf (non-saturating) */

/* float32 -> HiF8 byte (rules above). */
uint8_t hif8_from_float(float x, bool saturate);

/* HiF8 byte -> float32 (exact; 0x80 -> NaN, 0x6F/0xEF -> +-Inf). */
float hif8_to_float(uint8_t code);

/* hif8_to_float(hif8_from_float(x, saturate)), bit for bit, without the table round trip. */
float hif8_round(float x, bool saturate);

/* Array versions (OpenMP-parallel for large n). */
void hif8_encode_array(uint8_t *dst, const float *src, size_t n, bool saturate);
void hif8_decode_array(float *dst, const uint8_t *src, size_t n);

#ifdef OSP_HAVE_CUDA
/* CUDA twins (quant/hif8_cuda.cu), bit-identical to the CPU functions. Pointers named d_* are
 * device pointers; `s` is a cudaStream_t (declared here as its underlying struct so this
 * header stays plain C). Launches are asynchronous on `s` except hif8_absmax_cuda, which
 * synchronizes `s` to return the result. */
struct CUstream_st;
void hif8_encode_cuda(uint8_t *d_dst, const float *d_src, size_t n, bool sat, struct CUstream_st *s);
void hif8_decode_cuda(float *d_dst, const uint8_t *d_src, size_t n, struct CUstream_st *s);
/* d_y = decode(encode(d_x * scale)) / scale, every step in IEEE fp32 round-to-nearest
 * (exactly fq_apply of quant/fakequant.h). In-place (d_y == d_x) allowed. */
void hif8_fq_cuda(float *d_y, const float *d_x, size_t n, float scale, bool sat, struct CUstream_st *s);
/* max |x| over d_x (0 for n == 0; NaN if any element is NaN, as fq_absmax). */
float hif8_absmax_cuda(const float *d_x, size_t n, struct CUstream_st *s);

/* Device-resident variants that avoid a host round trip per tensor (current scaling):
 * hif8_absmax_cuda_async writes max |x| to *d_amax (a device float) without synchronizing;
 * hif8_fq_amax_cuda computes scale = target / max(*d_amax, 1e-8) on the device (the
 * fq_scaler current-scaling rule) and then does what hif8_fq_cuda does. If d_scale_out is
 * not NULL the scale used is also stored there (device float) for de-scaling GEMM outputs;
 * it must not alias d_amax. */
void hif8_absmax_cuda_async(float *d_amax, const float *d_x, size_t n, struct CUstream_st *s);
void hif8_fq_amax_cuda(float *d_y, const float *d_x, size_t n, const float *d_amax, float target, bool sat,
                       float *d_scale_out, struct CUstream_st *s);
#endif

#ifdef __cplusplus
}
#endif

#endif
