/*
 * core/size.c — the dying forms of the checked size helpers (see core/size.h).
 */
#include "core/size.h"

#include "core/common.h"

int64_t osp_size_mul(int64_t a, int64_t b, const char *what) {
    int64_t r;
    if (!osp_mul_ok(a, b, &r))
        osp_die("size of %s overflows (%lld x %lld)", what, (long long)a, (long long)b);
    return r;
}

int64_t osp_size_add(int64_t a, int64_t b, const char *what) {
    int64_t r;
    if (!osp_add_ok(a, b, &r))
        osp_die("size of %s overflows (%lld + %lld)", what, (long long)a, (long long)b);
    return r;
}

size_t osp_size_bytes(int64_t n, size_t elem, const char *what) {
    int64_t r;
    if (elem > INT64_MAX || !osp_mul_ok(n, (int64_t)elem, &r) || (uint64_t)r > SIZE_MAX)
        osp_die("size of %s overflows (%lld elements of %zu bytes)", what, (long long)n, elem);
    return (size_t)r;
}

int64_t osp_dims_product(const int64_t *dims, int n) {
    int64_t p = 1;
    for (int i = 0; i < n; i++)
        if (!osp_mul_ok(p, dims[i], &p)) return -1;
    return p;
}
