/*
 * core/size.h — checked size arithmetic. Every element count or byte size computed from
 * input (file headers, config integers, command-line shapes) goes through these, so a
 * product that does not fit ends with one named error instead of wrapping to a small
 * buffer that is then written past.
 */
#ifndef OSP_SIZE_H
#define OSP_SIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* *out = a*b (a+b); false when an operand is negative or the result does not fit int64_t
 * (*out is then left unspecified). For callers that report the error themselves. */
static inline bool osp_mul_ok(int64_t a, int64_t b, int64_t *out) {
    return a >= 0 && b >= 0 && !__builtin_mul_overflow(a, b, out);
}
static inline bool osp_add_ok(int64_t a, int64_t b, int64_t *out) {
    return a >= 0 && b >= 0 && !__builtin_add_overflow(a, b, out);
}

/* a*b, a+b, n*elem bytes; on overflow (or a negative operand) "osp: error: size of WHAT
 * overflows (A x B)" and exit. `what` names the buffer or quantity, e.g. "model.dim x 6". */
int64_t osp_size_mul(int64_t a, int64_t b, const char *what);
int64_t osp_size_add(int64_t a, int64_t b, const char *what);
size_t osp_size_bytes(int64_t n, size_t elem, const char *what);

/* Product of n non-negative dims; -1 when a dim is negative or the product overflows. */
int64_t osp_dims_product(const int64_t *dims, int n);

#endif
