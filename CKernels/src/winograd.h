// Winograd F(2x2, 3x3) forward, internal to conv2d_forward.c's choice of strategy.
#ifndef CKERNELS_WINOGRAD_H
#define CKERNELS_WINOGRAD_H
#include "conv2d.h"

// 1 for 3x3, stride 1, padding 1: the shapes the Winograd path handles.
int ck_winograd_applies(const ck_conv2d_shape *shape);
// Floats of workspace for `threads` threads; 0 on overflow.
size_t ck_winograd_workspace_floats(const ck_conv2d_shape *shape, int threads);
// y is (N, K, P, Q); x is (N, C, H, W); weight is (K, C, 3, 3).
int ck_winograd_forward(float *y, const float *x, const float *weight, const ck_conv_epilogue *epilogue,
                        const ck_conv2d_shape *shape, int P, int Q, int threads, float *workspace);
#endif
