// Elementwise kernels, OpenMP above CK_PARALLEL_MIN floats: ReLU forward/backward, add, accumulate.
// Twins: CKernelsReference/elementwise_ref.c.
// ReLU is written x < 0 ? 0 : x so that NaN passes through, as in PyTorch: a diverging run stays visible.
#include "internal.h"

// Below this many floats a parallel region costs more than it saves.
#define CK_PARALLEL_MIN 32768

int ck_relu_forward_f32(float *y, const float *x, size_t count) {
    CK_REQUIRE(y && x, CK_ERR_NULL_POINTER);
    ck_ensure_threads();
    #pragma omp parallel for schedule(static) num_threads(ck_get_num_threads()) if (count >= CK_PARALLEL_MIN)
    for (size_t i = 0; i < count; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
    return CK_OK;
}

int ck_relu_backward_f32(float *dx, const float *dy, const float *y, size_t count) {
    CK_REQUIRE(dx && dy && y, CK_ERR_NULL_POINTER);
    ck_ensure_threads();
    #pragma omp parallel for schedule(static) num_threads(ck_get_num_threads()) if (count >= CK_PARALLEL_MIN)
    for (size_t i = 0; i < count; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    return CK_OK;
}

int ck_add_f32(float *y, const float *a, const float *b, size_t count) {
    CK_REQUIRE(y && a && b, CK_ERR_NULL_POINTER);
    ck_ensure_threads();
    #pragma omp parallel for schedule(static) num_threads(ck_get_num_threads()) if (count >= CK_PARALLEL_MIN)
    for (size_t i = 0; i < count; i++) y[i] = a[i] + b[i];
    return CK_OK;
}

int ck_accumulate_f32(float *y, const float *x, size_t count) {
    CK_REQUIRE(y && x, CK_ERR_NULL_POINTER);
    ck_ensure_threads();
    #pragma omp parallel for schedule(static) num_threads(ck_get_num_threads()) if (count >= CK_PARALLEL_MIN)
    for (size_t i = 0; i < count; i++) y[i] += x[i];
    return CK_OK;
}

