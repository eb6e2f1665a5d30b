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

// Whether the kernels with AVX-512 paths take them: the CPU has AVX-512F (cpu_features(), which applies
// RESNETFUSION_ISA) and ck_set_avx512_allowed has not switched them off.
int ck_cpu_has_avx512(void);

// Lazily applies ck_set_num_threads(0) the first time any kernel runs.
void ck_ensure_threads(void);

// Splits [0, total) into `parts` near-equal blocks; block `index` is [*begin, *end).
static inline void ck_block_range(int total, int parts, int index, int *begin, int *end) {
    int base = total / parts, extra = total % parts;
    *begin = index * base + (index < extra ? index : extra);
    *end = *begin + base + (index < extra ? 1 : 0);
}

// Where the packed GEMM (gemm.c) takes its B operand from: a matrix, a row of images, or a callback
// that writes one packed panel itself (a convolution lowering its input straight into the panel).
#define CK_GEMM_NR 64
#define CK_GEMM_MR 6  // rows of C a micro-kernel call computes (gemm_pack.h says why)
typedef void (*ck_pack_panel_fn)(const void *context, float *panel, int p0, int kc, long j0, int cols);
typedef struct {
    const float *b;          // op(B) rows are b rows (transpose_b 0) or b columns (1)
    int ldb;
    int transpose_b;         // only with count 1 (one image)
    size_t stride_b;         // distance between images
    // When set, replaces all of the above: writes rows [p0, p0+kc) of columns [j0, j0+cols) of B into
    // panel as kc rows of CK_GEMM_NR floats, zeros past cols.
    ck_pack_panel_fn pack_panel;
    const void *context;
} ck_gemm_b;

// What the packed GEMM applies to C as it stores the last K block, while each tile is still in registers:
// C = relu?(A·B + (bias[row] + residual)). residual is laid out as C (same ldc and image stride) and starts where C
// does; NULL fields (and relu 0) add nothing. The arithmetic is ck_conv_apply_epilogue's, so both give the same bits.
typedef struct {
    const float *bias;      // (m) or NULL
    const float *residual;  // like C, or NULL
    int relu;
} ck_gemm_epilogue;

// Columns [j_begin, j_end) of C = A·B (alpha 1, beta 0; A untransposed, m × k), with C made of images of
// n columns at c + i·stride_c (row stride ldc), by the packed GEMM of `backend` (the caller read
// ck_get_gemm_backend() once, and chose source->pack_panel's instructions to match it). packed_a, when not
// NULL, is A packed beforehand by ck_gemm_prepack_a for this backend (a is then unused). Returns 0, doing
// nothing, when backend is not a packed GEMM or its packing buffer is missing: the caller then lowers and
// calls ck_sgemm itself. epilogue: applied to the columns it computes, or NULL.
int ck_sgemm_packing(int backend, int m, int n, int k, const float *a, int lda, const float *packed_a,
                     const ck_gemm_b *source, float *c, int ldc, size_t stride_c, long j_begin, long j_end,
                     const ck_gemm_epilogue *epilogue);
// 1 when ck_sgemm_packing can run on this thread with `backend`: a packed GEMM whose packing buffer this thread has
// (allocated now if it had none). A buffer once allocated stays until the thread exits, so a 1 holds for the call.
int ck_gemm_packing_ready(int backend);

// A product's whole A (m × k, untransposed), packed once for every ck_sgemm_packing call that multiplies by it:
// a convolution's weights are packed once per call instead of once per thread and column piece. Floats it
// takes (0 on overflow); then the blocks numbered part, part + parts, … of it (threads split the packing), for
// the packed GEMM of `backend`.
size_t ck_gemm_packed_a_floats(int m, int k);
void ck_gemm_prepack_a(float *packed, const float *a, int lda, int m, int k, int backend, int part, int parts);

#define CK_REQUIRE(condition, status) \
    do { if (!(condition)) return (status); } while (0)

// Checked size arithmetic: returns 0 (an invalid size) on overflow.
static inline size_t ck_mul_size(size_t a, size_t b) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) return 0;
    return r;
}

#endif
