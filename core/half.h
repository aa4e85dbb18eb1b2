/*
 * half.h — scalar conversions between float32 and the two 16-bit storage types osp reads and
 * writes (bfloat16, IEEE binary16). F32 -> BF16/F16 round to nearest, ties to even; NaN stays
 * NaN (quiet), overflow in F16 gives +-inf, F16 subnormals are handled both ways.
 */
#ifndef OSP_HALF_H
#define OSP_HALF_H

#include <stdint.h>

float half_bf16_to_f32(uint16_t h);
uint16_t half_f32_to_bf16(float f);
float half_f16_to_f32(uint16_t h);
uint16_t half_f32_to_f16(float f);

#endif
