// Fully connected layer, PyTorch layout (weight is (out, in)): y = x·weightᵀ + bias.
// Head-sized matrices (batch 8, a few thousand features): one sgemm call each, no threading of our own.
// Twins: CKernelsReference/linear_ref.c.
#include "internal.h"

int ck_linear_check_sizes(int batch, int in_features, int out_features) {
    return (batch > 0 && in_features > 0 && out_features > 0) ? CK_OK : CK_ERR_BAD_SIZE;
}

int ck_linear_forward_f32(float *y, const float *x, const float *weight, const float *bias,
                          int batch, int in_features, int out_features) {
    int status = ck_linear_check_sizes(batch, in_features, out_features);
    if (status != CK_OK) return status;
    CK_REQUIRE(y && x && weight, CK_ERR_NULL_POINTER);
    ck_ensure_threads();
    ck_sgemm(0, 1, batch, out_features, in_features, 1.0f, x, in_features, weight, in_features, 0.0f, y,
             out_features);
    if (bias)
        for (int b = 0; b < batch; b++)
            for (int o = 0; o < out_features; o++) y[(size_t)b * out_features + o] += bias[o];
    return CK_OK;
}

int ck_linear_backward_f32(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                           const float *weight, int batch, int in_features, int out_features) {
    int status = ck_linear_check_sizes(batch, in_features, out_features);
    if (status != CK_OK) return status;
    CK_REQUIRE(dy && x && weight, CK_ERR_NULL_POINTER);
    ck_ensure_threads();
    if (dx)
        ck_sgemm(0, 0, batch, in_features, out_features, 1.0f, dy, out_features, weight, in_features, 0.0f, dx,
                 in_features);
    if (dweight)
        ck_sgemm(1, 0, out_features, in_features, batch, 1.0f, dy, out_features, x, in_features, 1.0f, dweight,
                 in_features);
    if (dbias)
        for (int b = 0; b < batch; b++)
            for (int o = 0; o < out_features; o++) dbias[o] += dy[(size_t)b * out_features + o];
    return CK_OK;
}

