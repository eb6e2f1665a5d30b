// Internal helpers shared by the kernel files. Not part of the public API.
#ifndef CKERNELS_INTERNAL_H
#define CKERNELS_INTERNAL_H

#include "ckernels.h"
#include <string.h>

// The OpenMP runtime entry points we use. Declared here instead of including <omp.h>, which Debian's
// libomp-dev installs inside clang 14's private include folder, not where the Swift toolchain's clang
// looks; the ABI of these functions is stable.
int omp_get_max_threads(void);
int omp_get_thread_num(void);
int omp_get_num_threads(void);
void omp_set_num_threads(int n);

// Lazily applies ck_set_num_threads(0) the first time any kernel runs.
void ck_ensure_threads(void);

// Splits [0, total) into `parts` near-equal blocks; block `index` is [*begin, *end).
static inline void ck_block_range(int total, int parts, int index, int *begin, int *end) {
    int base = total / parts, extra = total % parts;
    *begin = index * base + (index < extra ? index : extra);
    *end = *begin + base + (index < extra ? 1 : 0);
}

// What a convolution's forward adds to its output block before it leaves cache: y = act(y + bias + residual).
typedef struct {
    const float *bias;      // (K) or NULL
    const float *residual;  // (N, K, P, Q) or NULL, the whole output's shape
    int relu;
} ck_conv_epilogue;

// y and residual point at the same position of their (N, K, P, Q) tensors; rows are ld apart.
void ck_conv_apply_epilogue(float *y, size_t ld, int K, int width, const ck_conv_epilogue *epilogue,
                            const float *residual);

#define CK_REQUIRE(condition, status) \
    do { if (!(condition)) return (status); } while (0)

// Checked size arithmetic: returns 0 (an invalid size) on overflow.
static inline size_t ck_mul_size(size_t a, size_t b) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) return 0;
    return r;
}

#endif
