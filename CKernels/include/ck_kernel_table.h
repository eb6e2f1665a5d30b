// ck_kernel_table.h — part of ckernels.h (included at its end); a file of its own because its entries carry
// nullability annotations, which would otherwise make clang ask for them on every pointer of ckernels.h.
#ifndef CK_KERNEL_TABLE_H
#define CK_KERNEL_TABLE_H

#ifdef __cplusplus
extern "C" {
#endif

// Kernel tables (kernel_table.c): every op the Swift side calls, as function pointers, so that a caller
// chooses an implementation once (ck_optimized_kernels() here, ck_reference_kernels() in
// CKernelsReference) and calls through it without naming either. Entries are never NULL.

// The parameters keep C's unannotated pointers (NULL allowed where ckernels.h says so); only the entries are _Nonnull.
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wnullability-completeness"
typedef struct {
    /// Bytes of workspace the table's conv2d kernels need (0 for the reference, which takes none).
    size_t (* _Nonnull conv2d_workspace_size)(const ck_conv2d_shape *shape);
    int (* _Nonnull conv2d_forward)(float *y, const float *x, const float *weight, const float *bias,
                                    const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);
    int (* _Nonnull conv2d_forward_fused)(float *y, const float *x, const float *weight, const float *bias,
                                          const float *residual, int relu, const ck_conv2d_shape *shape,
                                          void *workspace, size_t workspace_bytes);
    size_t (* _Nonnull conv2d_packed_weights_size)(const ck_conv2d_shape *shape);
    int (* _Nonnull conv2d_pack_weights)(void *packed, size_t packed_bytes, const float *weight,
                                         const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);
    int (* _Nonnull conv2d_forward_fused_packed)(float *y, const float *x, const float *weight, const void *packed,
                                                 size_t packed_bytes, const float *bias, const float *residual,
                                                 int relu, const ck_conv2d_shape *shape, void *workspace,
                                                 size_t workspace_bytes);
    int (* _Nonnull conv2d_backward_input)(float *dx, const float *dy, const float *weight,
                                           const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);
    int (* _Nonnull conv2d_backward_weight)(float *dweight, float *dbias, const float *dy, const float *x,
                                            const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);
    int (* _Nonnull batchnorm2d_forward_train_fused)(float *y, float *save_mean, float *save_invstd,
                                                     float *running_mean, float *running_var,
                                                     const float *x, const float *gamma, const float *beta,
                                                     const float *residual, int relu,
                                                     int batch, int channels, int spatial, float momentum, float eps);
    int (* _Nonnull batchnorm2d_forward_infer)(float *y, const float *x, const float *gamma, const float *beta,
                                               const float *running_mean, const float *running_var,
                                               int batch, int channels, int spatial, float eps);
    int (* _Nonnull batchnorm2d_backward_fused)(float *dx, float *dgamma, float *dbeta, float *dz,
                                                const float *dy, const float *y, const float *x, const float *save_mean,
                                                const float *save_invstd, const float *gamma,
                                                int batch, int channels, int spatial);
    int (* _Nonnull batchnorm2d_backward_infer)(float *dx, float *dgamma, float *dbeta,
                                                const float *dy, const float *x, const float *gamma,
                                                const float *running_mean, const float *running_var,
                                                int batch, int channels, int spatial, float eps);
    int (* _Nonnull batchnorm2d_fold_into_conv)(float *folded_weight, float *folded_bias,
                                                const float *weight, const float *bias,
                                                const float *gamma, const float *beta,
                                                const float *running_mean, const float *running_var,
                                                int out_channels, int per_channel, float eps);
    int (* _Nonnull maxpool2d_forward)(float *y, int32_t *argmax, const float *x, const ck_pool2d_shape *shape);
    int (* _Nonnull maxpool2d_backward)(float *dx, const float *dy, const int32_t *argmax,
                                        const ck_pool2d_shape *shape);
    int (* _Nonnull global_avgpool_forward)(float *y, const float *x, int batch, int channels, int spatial);
    int (* _Nonnull global_avgpool_backward)(float *dx, const float *dy, int batch, int channels, int spatial);
    int (* _Nonnull relu_forward)(float *y, const float *x, size_t count);
    int (* _Nonnull relu_backward)(float *dx, const float *dy, const float *y, size_t count);
    int (* _Nonnull add)(float *y, const float *a, const float *b, size_t count);
    int (* _Nonnull accumulate)(float *y, const float *x, size_t count);
    int (* _Nonnull adam_update)(float *param, float *exp_avg, float *exp_avg_sq, const float *grad, size_t count,
                                 const ck_adam_step *step);
    int (* _Nonnull linear_forward)(float *y, const float *x, const float *weight, const float *bias,
                                    int batch, int in_features, int out_features);
    int (* _Nonnull linear_backward)(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                                     const float *weight, int batch, int in_features, int out_features);
} ck_kernel_table;

/// The optimized kernels of ckernels.h. A static table: the same pointer on every call.
const ck_kernel_table *ck_optimized_kernels(void);
#pragma clang diagnostic pop

#ifdef __cplusplus
}
#endif
#endif
