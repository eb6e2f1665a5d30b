// Reference conv2d: forward (also the twin of the GEMM and Winograd strategies), forward with the fused
// epilogue, backward-input and backward-weight, as direct loop nests over every output and tap.
#include "reference.h"

typedef struct { int N, C, H, W, K, R, S, P, Q; size_t HW, PQ; } ref_conv_dims;

// The optimized kernels' shape rule (ck_conv2d_check_shape), then the sizes the loops run over.
static int ref_conv_check(const ck_conv2d_shape *s, ref_conv_dims *d) {
    int status = ck_conv2d_check_shape(s);
    if (status != CK_OK) return status;
    d->N = s->batch; d->C = s->in_channels; d->H = s->in_height; d->W = s->in_width;
    d->K = s->out_channels; d->R = s->kernel_height; d->S = s->kernel_width;
    d->P = ck_conv2d_output_height(s);
    d->Q = ck_conv2d_output_width(s);
    d->HW = (size_t)d->H * d->W;
    d->PQ = (size_t)d->P * d->Q;
    return CK_OK;
}

int ck_conv2d_forward_f32_ref(float *y, const float *x, const float *weight, const float *bias,
                              const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    (void)workspace; (void)workspace_bytes;
    ref_conv_dims d;
    int status = ref_conv_check(shape, &d);
    if (status != CK_OK) return status;
    CK_REQUIRE(y && x && weight, CK_ERR_NULL_POINTER);
    const ck_conv2d_shape *s = shape;
    for (int n = 0; n < d.N; n++)
        for (int k = 0; k < d.K; k++)
            for (int p = 0; p < d.P; p++)
                for (int q = 0; q < d.Q; q++) {
                    float acc = bias ? bias[k] : 0.0f;
                    for (int c = 0; c < d.C; c++)
                        for (int r = 0; r < d.R; r++) {
                            const int ih = p * s->stride_height - s->pad_height + r;
                            if (ih < 0 || ih >= d.H) continue;
                            for (int t = 0; t < d.S; t++) {
                                const int iw = q * s->stride_width - s->pad_width + t;
                                if (iw < 0 || iw >= d.W) continue;
                                acc += x[(((size_t)n * d.C + c) * d.H + ih) * d.W + iw] *
                                       weight[(((size_t)k * d.C + c) * d.R + r) * d.S + t];
                            }
                        }
                    y[(((size_t)n * d.K + k) * d.P + p) * d.Q + q] = acc;
                }
    return CK_OK;
}

// The reference packs nothing ahead: its size is 0, its pack refuses after the shape check, and its packed forward
// is the fused forward with the buffer ignored.
size_t ck_conv2d_packed_weights_size_ref(const ck_conv2d_shape *shape) {
    (void)shape;
    return 0;
}

int ck_conv2d_pack_weights_f32_ref(void *packed, size_t packed_bytes, const float *weight, const ck_conv2d_shape *shape,
                                   void *workspace, size_t workspace_bytes) {
    (void)packed_bytes; (void)workspace; (void)workspace_bytes;
    int status = ck_conv2d_check_shape(shape);
    if (status != CK_OK) return status;
    CK_REQUIRE(packed && weight, CK_ERR_NULL_POINTER);
    return CK_ERR_BAD_SIZE;
}

int ck_conv2d_forward_fused_packed_f32_ref(float *y, const float *x, const float *weight, const void *packed,
                                           size_t packed_bytes, const float *bias, const float *residual, int relu,
                                           const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    (void)packed; (void)packed_bytes;
    return ck_conv2d_forward_fused_f32_ref(y, x, weight, bias, residual, relu, shape, workspace, workspace_bytes);
}

int ck_conv2d_forward_fused_f32_ref(float *y, const float *x, const float *weight, const float *bias,
                                    const float *residual, int relu, const ck_conv2d_shape *shape,
                                    void *workspace, size_t workspace_bytes) {
    int status = ck_conv2d_forward_f32_ref(y, x, weight, bias, shape, workspace, workspace_bytes);
    if (status != CK_OK) return status;
    const size_t count = (size_t)shape->batch * shape->out_channels * ck_conv2d_output_height(shape) *
                         ck_conv2d_output_width(shape);
    for (size_t i = 0; i < count; i++) {
        float v = y[i] + (residual ? residual[i] : 0.0f);
        y[i] = relu && v < 0.0f ? 0.0f : v;  // NaN passes, as in PyTorch
    }
    return CK_OK;
}

int ck_conv2d_backward_input_f32_ref(float *dx, const float *dy, const float *weight,
                                     const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    (void)workspace; (void)workspace_bytes;
    ref_conv_dims d;
    int status = ref_conv_check(shape, &d);
    if (status != CK_OK) return status;
    CK_REQUIRE(dx && dy && weight, CK_ERR_NULL_POINTER);
    const ck_conv2d_shape *s = shape;
    memset(dx, 0, sizeof(float) * (size_t)d.N * d.C * d.HW);
    for (int n = 0; n < d.N; n++)
        for (int k = 0; k < d.K; k++)
            for (int p = 0; p < d.P; p++)
                for (int q = 0; q < d.Q; q++) {
                    const float g = dy[(((size_t)n * d.K + k) * d.P + p) * d.Q + q];
                    for (int c = 0; c < d.C; c++)
                        for (int r = 0; r < d.R; r++) {
                            const int ih = p * s->stride_height - s->pad_height + r;
                            if (ih < 0 || ih >= d.H) continue;
                            for (int t = 0; t < d.S; t++) {
                                const int iw = q * s->stride_width - s->pad_width + t;
                                if (iw < 0 || iw >= d.W) continue;
                                dx[(((size_t)n * d.C + c) * d.H + ih) * d.W + iw] +=
                                    g * weight[(((size_t)k * d.C + c) * d.R + r) * d.S + t];
                            }
                        }
                }
    return CK_OK;
}

int ck_conv2d_backward_weight_f32_ref(float *dweight, float *dbias, const float *dy, const float *x,
                                      const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    (void)workspace; (void)workspace_bytes;
    ref_conv_dims d;
    int status = ref_conv_check(shape, &d);
    if (status != CK_OK) return status;
    CK_REQUIRE(dweight && dy && x, CK_ERR_NULL_POINTER);
    const ck_conv2d_shape *s = shape;
    for (int k = 0; k < d.K; k++)
        for (int c = 0; c < d.C; c++)
            for (int r = 0; r < d.R; r++)
                for (int t = 0; t < d.S; t++) {
                    float acc = 0.0f;
                    for (int n = 0; n < d.N; n++)
                        for (int p = 0; p < d.P; p++) {
                            const int ih = p * s->stride_height - s->pad_height + r;
                            if (ih < 0 || ih >= d.H) continue;
                            for (int q = 0; q < d.Q; q++) {
                                const int iw = q * s->stride_width - s->pad_width + t;
                                if (iw < 0 || iw >= d.W) continue;
                                acc += dy[(((size_t)n * d.K + k) * d.P + p) * d.Q + q] *
                                       x[(((size_t)n * d.C + c) * d.H + ih) * d.W + iw];
                            }
                        }
                    dweight[(((size_t)k * d.C + c) * d.R + r) * d.S + t] += acc;
                }
    if (dbias)
        for (int k = 0; k < d.K; k++) {
            float acc = 0.0f;
            for (int n = 0; n < d.N; n++)
                for (size_t j = 0; j < d.PQ; j++) acc += dy[((size_t)n * d.K + k) * d.PQ + j];
            dbias[k] += acc;
        }
    return CK_OK;
}
