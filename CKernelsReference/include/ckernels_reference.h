// ckernels_reference.h — the reference twins of the kernels in ckernels.h.
//
// Each `..._ref` is the straightforward loop nest that defines its op: no BLAS, no OpenMP, no workspace
// (the workspace arguments are accepted and ignored so that the signatures match), no allocation. This
// target is compiled at plain -O2 for baseline x86-64 with -ffp-contract=off, so every multiply and add
// rounds as written. The twins check their arguments with the same ck_..._check functions as the optimized
// kernels and return the same statuses; sums run in double where the op's definition is a long sum.
// Meaning, layouts and gradient conventions are those of the optimized kernel of the same name without
// `_ref` in ckernels.h.
#ifndef CKERNELS_REFERENCE_H
#define CKERNELS_REFERENCE_H

#include "ckernels.h"

#ifdef __cplusplus
extern "C" {
#endif

// conv2d (conv2d_ref.c). The twin of ck_conv2d_forward_f32 is also the twin of its two strategies,
// ck_conv2d_forward_gemm_f32 and ck_conv2d_forward_winograd_f32; the backward twins also twin the Winograd forms
// ck_conv2d_backward_input_winograd_f32 and ck_conv2d_backward_weight_winograd_f32.
int ck_conv2d_forward_f32_ref(float *y, const float *x, const float *weight, const float *bias,
                              const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);
size_t ck_conv2d_packed_weights_size_ref(const ck_conv2d_shape *shape);
int ck_conv2d_pack_weights_f32_ref(void *packed, size_t packed_bytes, const float *weight, const ck_conv2d_shape *shape,
                                   void *workspace, size_t workspace_bytes);
int ck_conv2d_forward_fused_packed_f32_ref(float *y, const float *x, const float *weight, const void *packed,
                                           size_t packed_bytes, const float *bias, const float *residual, int relu,
                                           const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);
int ck_conv2d_forward_fused_f32_ref(float *y, const float *x, const float *weight, const float *bias,
                                    const float *residual, int relu, const ck_conv2d_shape *shape,
                                    void *workspace, size_t workspace_bytes);
int ck_conv2d_backward_input_f32_ref(float *dx, const float *dy, const float *weight,
                                     const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);
int ck_conv2d_backward_weight_f32_ref(float *dweight, float *dbias, const float *dy, const float *x,
                                      const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);

// batchnorm2d (batchnorm_ref.c)
int ck_batchnorm2d_forward_train_f32_ref(float *y, float *save_mean, float *save_invstd,
                                         float *running_mean, float *running_var,
                                         const float *x, const float *gamma, const float *beta,
                                         int batch, int channels, int spatial, float momentum, float eps);
int ck_batchnorm2d_forward_train_fused_f32_ref(float *y, float *save_mean, float *save_invstd,
                                               float *running_mean, float *running_var,
                                               const float *x, const float *gamma, const float *beta,
                                               const float *residual, int relu,
                                               int batch, int channels, int spatial, float momentum, float eps);
int ck_batchnorm2d_forward_infer_f32_ref(float *y, const float *x, const float *gamma, const float *beta,
                                         const float *running_mean, const float *running_var,
                                         int batch, int channels, int spatial, float eps);
int ck_batchnorm2d_backward_f32_ref(float *dx, float *dgamma, float *dbeta,
                                    const float *dy, const float *x, const float *save_mean,
                                    const float *save_invstd, const float *gamma,
                                    int batch, int channels, int spatial);
int ck_batchnorm2d_backward_fused_f32_ref(float *dx, float *dgamma, float *dbeta, float *dz,
                                          const float *dy, const float *y, const float *x, const float *save_mean,
                                          const float *save_invstd, const float *gamma,
                                          int batch, int channels, int spatial);
int ck_batchnorm2d_backward_infer_f32_ref(float *dx, float *dgamma, float *dbeta,
                                          const float *dy, const float *x, const float *gamma,
                                          const float *running_mean, const float *running_var,
                                          int batch, int channels, int spatial, float eps);
int ck_batchnorm2d_fold_into_conv_f32_ref(float *folded_weight, float *folded_bias,
                                          const float *weight, const float *bias,
                                          const float *gamma, const float *beta,
                                          const float *running_mean, const float *running_var,
                                          int out_channels, int per_channel, float eps);

// pooling (pool_ref.c)
int ck_maxpool2d_forward_f32_ref(float *y, int32_t *argmax, const float *x, const ck_pool2d_shape *shape);
int ck_maxpool2d_backward_f32_ref(float *dx, const float *dy, const int32_t *argmax,
                                  const ck_pool2d_shape *shape);
int ck_global_avgpool_forward_f32_ref(float *y, const float *x, int batch, int channels, int spatial);
int ck_global_avgpool_backward_f32_ref(float *dx, const float *dy, int batch, int channels, int spatial);

// elementwise (elementwise_ref.c)
int ck_relu_forward_f32_ref(float *y, const float *x, size_t count);
int ck_relu_backward_f32_ref(float *dx, const float *dy, const float *y, size_t count);
int ck_add_f32_ref(float *y, const float *a, const float *b, size_t count);
int ck_accumulate_f32_ref(float *y, const float *x, size_t count);

// optimizer (optimizer_ref.c)
int ck_adam_update_f32_ref(float *param, float *exp_avg, float *exp_avg_sq, const float *grad, size_t count,
                           const ck_adam_step *step);

// linear (linear_ref.c)
int ck_linear_forward_f32_ref(float *y, const float *x, const float *weight, const float *bias,
                              int batch, int in_features, int out_features);
int ck_linear_backward_f32_ref(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                               const float *weight, int batch, int in_features, int out_features);

// Matrix products (gemm_ref.c), double accumulation.
void ck_sgemm_ref(int transpose_a, int transpose_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
void ck_sgemm_images_ref(int transpose_a, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                         int ldb, size_t stride_b, float beta, float *c, int ldc, size_t stride_c, int count);

/// The twins above as a ck_kernel_table (kernel_table_ref.c); its conv2d_workspace_size is always 0.
const ck_kernel_table *ck_reference_kernels(void);

#ifdef __cplusplus
}
#endif
#endif
