// Reference elementwise kernels: ReLU forward/backward (x < 0 ? 0 : x, so NaN passes), add, accumulate.
#include "reference.h"

int ck_relu_forward_f32_ref(float *y, const float *x, size_t count) {
    CK_REQUIRE(y && x, CK_ERR_NULL_POINTER);
    for (size_t i = 0; i < count; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
    return CK_OK;
}

int ck_relu_backward_f32_ref(float *dx, const float *dy, const float *y, size_t count) {
    CK_REQUIRE(dx && dy && y, CK_ERR_NULL_POINTER);
    for (size_t i = 0; i < count; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    return CK_OK;
}

int ck_add_f32_ref(float *y, const float *a, const float *b, size_t count) {
    CK_REQUIRE(y && a && b, CK_ERR_NULL_POINTER);
    for (size_t i = 0; i < count; i++) y[i] = a[i] + b[i];
    return CK_OK;
}

int ck_accumulate_f32_ref(float *y, const float *x, size_t count) {
    CK_REQUIRE(y && x, CK_ERR_NULL_POINTER);
    for (size_t i = 0; i < count; i++) y[i] += x[i];
    return CK_OK;
}
