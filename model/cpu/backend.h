/*
 * model/cpu/backend.h — functions shared between the files of the CPU backend (model/cpu/backend.c holds
 * the backend table; model/cpu/attn.c the tiled attention).
 */
#ifndef OSP_OPS_CPU_H
#define OSP_OPS_CPU_H

#include <stdint.h>

void cpu_attn_fwd(float *o, float *lse, const float *q, const float *k, const float *v, const uint8_t *kvalid,
                  int64_t R, int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d);
void cpu_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *o, const float *lse,
                  const float *q, const float *k, const float *v, const uint8_t *kvalid, int64_t R, int64_t Rkv,
                  int64_t Nq, int64_t Nk, int H, int d);

#endif
