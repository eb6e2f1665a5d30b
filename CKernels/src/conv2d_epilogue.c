// The convolution forward's epilogue, y = relu?(y + bias + residual) on an output block still in cache:
// shared by the GEMM forward (conv2d_forward.c) and the Winograd forward (winograd.c).
#include "conv2d.h"

// y block (K rows of `width`, row stride ld) = act(y + bias + residual), while it is still in cache.
void ck_conv_apply_epilogue(float *y, size_t ld, int K, int width, const ck_conv_epilogue *e,
                            const float *residual) {
    if (!e->bias && !residual && !e->relu) return;
    for (int k = 0; k < K; k++) {
        float *row = y + (size_t)k * ld;
        const float b = e->bias ? e->bias[k] : 0.0f;
        const float *res = residual ? residual + (size_t)k * ld : NULL;
        if (res) for (int j = 0; j < width; j++) row[j] += b + res[j];
        else if (b != 0.0f) for (int j = 0; j < width; j++) row[j] += b;
        if (e->relu) for (int j = 0; j < width; j++) row[j] = row[j] < 0.0f ? 0.0f : row[j];
    }
}
