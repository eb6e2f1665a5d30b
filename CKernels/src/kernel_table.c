// The optimized kernels as one ck_kernel_table (see ckernels.h), the table Kernels.backend = .optimized selects.
#include "internal.h"

static const ck_kernel_table optimized_kernels = {
    .conv2d_workspace_size = ck_conv2d_workspace_size,
    .conv2d_forward = ck_conv2d_forward_f32,
    .conv2d_forward_fused = ck_conv2d_forward_fused_f32,
    .conv2d_packed_weights_size = ck_conv2d_packed_weights_size,
    .conv2d_pack_weights = ck_conv2d_pack_weights_f32,
    .conv2d_forward_fused_packed = ck_conv2d_forward_fused_packed_f32,
    .conv2d_backward_input = ck_conv2d_backward_input_f32,
    .conv2d_backward_weight = ck_conv2d_backward_weight_f32,
    .batchnorm2d_forward_train_fused = ck_batchnorm2d_forward_train_fused_f32,
    .batchnorm2d_forward_infer = ck_batchnorm2d_forward_infer_f32,
    .batchnorm2d_backward_fused = ck_batchnorm2d_backward_fused_f32,
    .batchnorm2d_backward_infer = ck_batchnorm2d_backward_infer_f32,
    .batchnorm2d_fold_into_conv = ck_batchnorm2d_fold_into_conv_f32,
    .maxpool2d_forward = ck_maxpool2d_forward_f32,
    .maxpool2d_backward = ck_maxpool2d_backward_f32,
    .global_avgpool_forward = ck_global_avgpool_forward_f32,
    .global_avgpool_backward = ck_global_avgpool_backward_f32,
    .relu_forward = ck_relu_forward_f32,
    .relu_backward = ck_relu_backward_f32,
    .add = ck_add_f32,
    .accumulate = ck_accumulate_f32,
    .adam_update = ck_adam_update_f32,
    .linear_forward = ck_linear_forward_f32,
    .linear_backward = ck_linear_backward_f32,
};

const ck_kernel_table *ck_optimized_kernels(void) { return &optimized_kernels; }
