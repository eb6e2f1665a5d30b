// Winograd F(2x2, 3x3) and F(4x4, 3x3), internal to the conv2d kernels: the forward of 3x3 stride-1 padding-1
// layers, and their backward-input, which is itself such a convolution (of dy, with the filters transposed and
// turned 180°); the weight gradient through F(2x2, 3x3).
#ifndef CKERNELS_WINOGRAD_H
#define CKERNELS_WINOGRAD_H
#include "conv2d.h"
#include <immintrin.h>

// 1 for 3x3, stride 1, padding 1: the shapes the Winograd path handles.
int ck_winograd_applies(const ck_conv2d_shape *shape);
// 1 when this layer's forward and backward-input should take the Winograd path (ck_conv2d_set_winograd).
int ck_winograd_chosen(const ck_conv2d_shape *shape);
// The same for its backward-weight, whose F(2x2, 3x3) loses to the AVX-512 GEMM on the smallest planes.
int ck_winograd_chosen_for_weight_gradient(const ck_conv2d_shape *shape);
// The output tile, 2 or 4 (F(2x2, 3x3) or F(4x4, 3x3)), of the forward and backward-input of a layer Winograd
// applies to, when they take the Winograd path (ck_conv2d_set_winograd_tile). The weight gradient always uses 2.
// Callers read it once per call (ck_conv_dims.winograd_tile).
int ck_winograd_tile(const ck_conv2d_shape *shape);
// Products (transformed kernels) of a tile: 16 for 2, 36 for 4.
static inline int ck_winograd_products(int tile) { return (tile + 2) * (tile + 2); }
// Floats of workspace for `threads` threads and `tile` (and F(2x2, 3x3)'s, which the weight gradient uses); 0 on
// overflow. The same for a layer and for its backward-input (it is symmetric in C and K).
size_t ck_winograd_workspace_floats(const ck_conv2d_shape *shape, int threads, int tile);

// Where the Winograd convolution's filter g(k, c) of output channel k and input channel c is:
// weight + k·k_stride + c·c_stride, its 9 taps in row-major order, or in reverse when `reversed`.
// The forward reads a layer's own (K, C, 3, 3) weight (C·9, 9, 0); the backward-input reads the same
// weight as (C, K) filters turned 180° (9, C·9, 1).
typedef struct {
    const float *weight;
    size_t k_stride, c_stride;
    int reversed;
} ck_winograd_filters;

// y is (N, K, P, Q); x is (N, C, H, W); `shape` is the Winograd convolution's own (C, K as it sees them); tile is
// 2 or 4, and the workspace sized for it. packed_kernels: room for the tile's products packed for the GEMM
// (ck_winograd_products(tile) × ck_gemm_packed_a_floats(K, C)), or NULL; kernels_packed: 1 when it already holds
// them (ck_winograd_pack_kernels, for the current GEMM backend).
int ck_winograd_forward(float *y, const float *x, const ck_winograd_filters *filters, const ck_conv_epilogue *epilogue,
                        const ck_conv2d_shape *shape, int P, int Q, int tile, int threads, float *workspace,
                        float *packed_kernels, int kernels_packed);
// The tile's transformed kernels packed for the packed GEMM of `backend` (a packed backend), as ck_winograd_forward
// packs them; workspace holds U on the way (products·K·C floats).
void ck_winograd_pack_kernels(float *packed, const ck_winograd_filters *filters, int K, int C, int tile, int backend,
                              int threads, float *workspace);

// dweight (K, C, 3, 3) += the weight gradient of the layer `shape` (3x3, stride 1, padding 1): dy is (N, K, P, Q),
// x is (N, C, H, W). Accumulates, as ck_conv2d_backward_weight_f32 does. spare: 16·K·C floats the forward's packed
// kernels use, free during the weight gradient (the second thread's accumulator; ck_winograd_workspace_floats
// counts on it).
int ck_winograd_backward_weight(float *dweight, const float *dy, const float *x, const ck_conv2d_shape *shape, int P,
                                int Q, int threads, float *workspace, float *spare);

// The transforms below take `lanes` neighbouring tiles of one tile row at a time (one tile per lane). Planes
// narrower than `lanes` tiles would leave most lanes idle (a 14x14 plane has 4 tiles of 4x4 per row, 7 of 2x2):
// they are taken an image at a time instead. A run is then up to `lanes` consecutive tiles of one image, across
// tile rows; each lane gathers its own tile's pixels and stores its own outputs. Offsets within a plane (padding
// included) are 32-bit gather indices, so the plane must be well below 2^31 pixels.
static inline int ck_winograd_runs_by_image(int tiles_w, int lanes, int H, int W) {
    return tiles_w < lanes && ((int64_t)H + 8) * ((int64_t)W + 8) < (1 << 30);
}

typedef struct {
    int n, count;
    int32_t top[16], left[16];  // per lane: the tile's first input row and column (−1 at the edges: padding)
} ck_winograd_image_run;

// The run from global tile t: image n, at most `lanes` (≤ 16) tiles, none at or past tile_end. Lanes past the run
// repeat its first tile, so their indices stay in range.
static inline ck_winograd_image_run ck_winograd_image_run_at(int t, int tile_end, int tiles_h, int tiles_w, int tile,
                                                             int lanes) {
    const int per_image = tiles_h * tiles_w, r = t % per_image;
    ck_winograd_image_run run = {t / per_image, per_image - r, {0}, {0}};
    if (run.count > tile_end - t) run.count = tile_end - t;
    if (run.count > lanes) run.count = lanes;
    for (int l = 0; l < lanes; l++) {
        const int index = r + (l < run.count ? l : 0);
        run.top[l] = (index / tiles_w) * tile - 1;
        run.left[l] = (index % tiles_w) * tile - 1;
    }
    return run;
}

// The vectorised transforms of F(2x2, 3x3) and F(4x4, 3x3) (ck_winograd4_…), one set per CPU tier, one tile or
// channel per lane (winograd_tier.h, instantiated by winograd_avx512.c and winograd_avx2.c).
// kernels: U for output channel k and input channels [c0, c0 + lanes) (fewer at the end); returns how many
// it did, 0 when it cannot (a filter stride too large for a 32-bit gather index): the caller loops instead.
// inputs: V for global tiles [tile_begin, tile_end). outputs: y from M for those tiles, with the epilogue.
// output_gradients: Ŷ = A dy Aᵀ for those tiles (the weight gradient's, winograd.c).
int ck_winograd_transform_kernels_avx512(float *U, const ck_winograd_filters *f, int K, int C, int k, int c0);
void ck_winograd_transform_inputs_avx512(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                                         int tile_begin, int tile_end);
void ck_winograd_transform_outputs_avx512(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s,
                                          int P, int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end);
void ck_winograd_transform_output_gradients_avx512(float *Y, const float *dy, const ck_conv2d_shape *s, int P, int Q,
                                                   int tiles_h, int tiles_w, int tile_begin, int tile_end);
int ck_winograd_transform_kernels_avx2(float *U, const ck_winograd_filters *f, int K, int C, int k, int c0);
void ck_winograd_transform_inputs_avx2(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                                       int tile_begin, int tile_end);
void ck_winograd_transform_outputs_avx2(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s,
                                        int P, int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end);
void ck_winograd_transform_output_gradients_avx2(float *Y, const float *dy, const ck_conv2d_shape *s, int P, int Q,
                                                 int tiles_h, int tiles_w, int tile_begin, int tile_end);
int ck_winograd4_transform_kernels_avx512(float *U, const ck_winograd_filters *f, int K, int C, int k, int c0);
void ck_winograd4_transform_inputs_avx512(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                                          int tile_begin, int tile_end);
void ck_winograd4_transform_outputs_avx512(float *y, const float *M, const ck_conv_epilogue *e,
                                           const ck_conv2d_shape *s, int P, int Q, int tiles_h, int tiles_w,
                                           int tile_begin, int tile_end);
int ck_winograd4_transform_kernels_avx2(float *U, const ck_winograd_filters *f, int K, int C, int k, int c0);
void ck_winograd4_transform_inputs_avx2(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                                        int tile_begin, int tile_end);
void ck_winograd4_transform_outputs_avx2(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s,
                                         int P, int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end);
#endif
