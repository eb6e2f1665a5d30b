// Reference fully connected layer, PyTorch layout: y = x·weightᵀ + bias and its backward.
#include "reference.h"

int ck_linear_forward_f32_ref(float *y, const float *x, const float *weight, const float *bias,
                              int batch, int in_features, int out_features) {
    int status = ck_linear_check_sizes(batch, in_features, out_features);
    if (status != CK_OK) return status;
    CK_REQUIRE(y && x && weight, CK_ERR_NULL_POINTER);
    for (int b = 0; b < batch; b++)
        for (int o = 0; o < out_features; o++) {
            float acc = bias ? bias[o] : 0.0f;
            for (int i = 0; i < in_features; i++)
                acc += x[(size_t)b * in_features + i] * weight[(size_t)o * in_features + i];
            y[(size_t)b * out_features + o] = acc;
        }
    return CK_OK;
}

int ck_linear_backward_f32_ref(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                               const float *weight, int batch, int in_features, int out_features) {
    int status = ck_linear_check_sizes(batch, in_features, out_features);
    if (status != CK_OK) return status;
    CK_REQUIRE(dy && x && weight, CK_ERR_NULL_POINTER);
    if (dx)
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < in_features; i++) {
                float acc = 0.0f;
                for (int o = 0; o < out_features; o++)
                    acc += dy[(size_t)b * out_features + o] * weight[(size_t)o * in_features + i];
                dx[(size_t)b * in_features + i] = acc;
            }
    if (dweight)
        for (int o = 0; o < out_features; o++)
            for (int i = 0; i < in_features; i++) {
                float acc = 0.0f;
                for (int b = 0; b < batch; b++)
                    acc += dy[(size_t)b * out_features + o] * x[(size_t)b * in_features + i];
                dweight[(size_t)o * in_features + i] += acc;
            }
    if (dbias)
        for (int o = 0; o < out_features; o++) {
            float acc = 0.0f;
            for (int b = 0; b < batch; b++) acc += dy[(size_t)b * out_features + o];
            dbias[o] += acc;
        }
    return CK_OK;
}
