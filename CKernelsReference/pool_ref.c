// Reference pooling: max pooling (with argmax) forward and backward, global average pooling forward and backward.
#include "reference.h"
#include <math.h>

typedef struct { int N, C, H, W, P, Q; } ref_pool_dims;

// The optimized kernels' shape rule (ck_pool2d_check_shape), then the sizes the loops run over.
static int ref_pool_check(const ck_pool2d_shape *s, ref_pool_dims *d) {
    int status = ck_pool2d_check_shape(s);
    if (status != CK_OK) return status;
    d->N = s->batch; d->C = s->channels; d->H = s->in_height; d->W = s->in_width;
    d->P = ck_pool2d_output_height(s);
    d->Q = ck_pool2d_output_width(s);
    return CK_OK;
}

int ck_maxpool2d_forward_f32_ref(float *y, int32_t *argmax, const float *x, const ck_pool2d_shape *shape) {
    ref_pool_dims d;
    int status = ref_pool_check(shape, &d);
    if (status != CK_OK) return status;
    CK_REQUIRE(y && x, CK_ERR_NULL_POINTER);
    for (int plane = 0; plane < d.N * d.C; plane++)
        for (int p = 0; p < d.P; p++)
            for (int q = 0; q < d.Q; q++) {
                float best = -INFINITY;
                int32_t best_index = -1;
                for (int i = 0; i < shape->kernel_height; i++)
                    for (int j = 0; j < shape->kernel_width; j++) {
                        const int h = p * shape->stride_height - shape->pad_height + i;
                        const int w = q * shape->stride_width - shape->pad_width + j;
                        if (h < 0 || h >= d.H || w < 0 || w >= d.W) continue;
                        const float v = x[(size_t)plane * d.H * d.W + h * d.W + w];
                        if (best_index < 0 || v > best || (isnan(v) && !isnan(best))) { best = v; best_index = h * d.W + w; }
                    }
                y[((size_t)plane * d.P + p) * d.Q + q] = best;
                if (argmax) argmax[((size_t)plane * d.P + p) * d.Q + q] = best_index;
            }
    return CK_OK;
}

int ck_maxpool2d_backward_f32_ref(float *dx, const float *dy, const int32_t *argmax, const ck_pool2d_shape *shape) {
    ref_pool_dims d;
    int status = ref_pool_check(shape, &d);
    if (status != CK_OK) return status;
    CK_REQUIRE(dx && dy && argmax, CK_ERR_NULL_POINTER);
    const size_t in_plane = (size_t)d.H * d.W, out_plane = (size_t)d.P * d.Q;
    memset(dx, 0, sizeof(float) * in_plane * d.N * d.C);
    for (size_t plane = 0; plane < (size_t)d.N * d.C; plane++)
        for (size_t i = 0; i < out_plane; i++) {
            const int32_t at = argmax[plane * out_plane + i];
            if (at >= 0 && (size_t)at < in_plane) dx[plane * in_plane + at] += dy[plane * out_plane + i];
        }
    return CK_OK;
}

int ck_global_avgpool_forward_f32_ref(float *y, const float *x, int batch, int channels, int spatial) {
    int status = ck_global_avgpool_check_sizes(batch, channels, spatial);
    if (status != CK_OK) return status;
    CK_REQUIRE(y && x, CK_ERR_NULL_POINTER);
    for (size_t plane = 0; plane < (size_t)batch * channels; plane++) {
        double sum = 0.0;
        for (int i = 0; i < spatial; i++) sum += x[plane * spatial + i];
        y[plane] = (float)(sum / spatial);
    }
    return CK_OK;
}

int ck_global_avgpool_backward_f32_ref(float *dx, const float *dy, int batch, int channels, int spatial) {
    int status = ck_global_avgpool_check_sizes(batch, channels, spatial);
    if (status != CK_OK) return status;
    CK_REQUIRE(dx && dy, CK_ERR_NULL_POINTER);
    for (size_t plane = 0; plane < (size_t)batch * channels; plane++)
        for (int i = 0; i < spatial; i++) dx[plane * spatial + i] = dy[plane] / (float)spatial;
    return CK_OK;
}
