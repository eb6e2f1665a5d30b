// im2col / col2im, internal to the convolution kernels.
#ifndef CKERNELS_IM2COL_H
#define CKERNELS_IM2COL_H
#include "internal.h"

// col is (C·R·S, column_end − column_begin), its rows ld floats apart; x is (C, H, W): one image.
void ck_im2col_columns(float *col, size_t ld, const float *x, const ck_conv2d_shape *shape, int Q,
                       int column_begin, int column_end);
// dx is (C, H, W), zeroed by the caller for the channel range; col is ((channel_end − channel_begin)·R·S, P·Q).
void ck_col2im_channels(float *dx, const float *col, const ck_conv2d_shape *shape, int P, int Q,
                        int channel_begin, int channel_end);

// What ck_im2col_pack_panel lowers: x is (N, C, H, W); columns run over (image, output row, output column).
typedef struct {
    const float *x;
    const ck_conv2d_shape *shape;
    int P, Q;
} ck_im2col_panel;
#if defined(__x86_64__)
// A ck_pack_panel_fn (internal.h) over the column matrix of all images side by side: AVX-512 instructions
// (for the AVX-512 GEMM backend) and AVX2 only (for the AVX2 GEMM backend), the same panel.
void ck_im2col_pack_panel(const void *context, float *panel, int p0, int kc, long j0, int cols);
void ck_im2col_pack_panel_avx2(const void *context, float *panel, int p0, int kc, long j0, int cols);
#endif
#endif
