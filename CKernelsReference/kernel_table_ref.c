// The reference twins as one ck_kernel_table (see ckernels.h), the table Kernels.backend = .reference selects.
#include "reference.h"

// The twins take no workspace: asking for none keeps the caller's buffer untouched.
static size_t reference_conv2d_workspace_size(const ck_conv2d_shape *shape) {
    (void)shape;
    return 0;
}

static const ck_kernel_table reference_kernels = {
    .conv2d_workspace_size = reference_conv2d_workspace_size,
    .conv2d_forward = ck_conv2d_forward_f32_ref,
    .conv2d_forward_fused = ck_conv2d_forward_fused_f32_ref,
    .conv2d_packed_weights_size = ck_conv2d_packed_weights_size_ref,
    .conv2d_pack_weights = ck_conv2d_pack_weights_f32_ref,
    .conv2d_forward_fused_packed = ck_conv2d_forward_fused_packed_f32_ref,
    .conv2d_backward_input = ck_conv2d_backward_input_f32_ref,
    .conv2d_backward_weight = ck_conv2d_backward_weight_f32_ref,
    .batchnorm2d_forward_train_fused = ck_batchnorm2d_forward_train_fused_f32_ref,
    .batchnorm2d_forward_infer = ck_batchnorm2d_forward_infer_f32_ref,
    .batchnorm2d_backward_fused = ck_batchnorm2d_backward_fused_f32_ref,
    .batchnorm2d_backward_infer = ck_batchnorm2d_backward_infer_f32_ref,
    .batchnorm2d_fold_into_conv = ck_batchnorm2d_fold_into_conv_f32_ref,
    .maxpool2d_forward = ck_maxpool2d_forward_f32_ref,
    .maxpool2d_backward = ck_maxpool2d_backward_f32_ref,
    .global_avgpool_forward = ck_global_avgpool_forward_f32_ref,
    .global_avgpool_backward = ck_global_avgpool_backward_f32_ref,
    .relu_forward = ck_relu_forward_f32_ref,
    .relu_backward = ck_relu_backward_f32_ref,
    .add = ck_add_f32_ref,
    .accumulate = ck_accumulate_f32_ref,
    .adam_update = ck_adam_update_f32_ref,
    .linear_forward = ck_linear_forward_f32_ref,
    .linear_backward = ck_linear_backward_f32_ref,
};

const ck_kernel_table *ck_reference_kernels(void) { return &reference_kernels; }
