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

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define CK_HAVE_AVX512_WINOGRAD 1
#include <immintrin.h>
// The vectorised transforms (winograd_avx512.c), taken when ck_cpu_has_avx512(); same results as the scalar ones.
// U for kernel k and input channels [c0, c0 + 16) (fewer at the end); returns how many channels it did.
int ck_winograd_transform_kernels_16(float *U, const float *weight, int K, int C, int k, int c0);
// V for global tiles [tile_begin, tile_end).
void ck_winograd_transform_inputs_avx512(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                                         int tile_begin, int tile_end);
// y from M for global tiles [tile_begin, tile_end), with the epilogue.
void ck_winograd_transform_outputs_avx512(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s,
                                          int P, int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end);
#endif
#endif
