// Internal to the conv2d kernels: the checked sizes of one call, the workspace layout, how images are grouped,
// and the epilogue the GEMM and Winograd forwards apply. Not part of the public API.
#ifndef CKERNELS_CONV2D_H
#define CKERNELS_CONV2D_H
#include "internal.h"

typedef struct {
    int N, C, H, W, K, R, S, P, Q;
    size_t CRS, PQ, HW;
    int pointwise;  // 1x1, stride 1, no padding: the input is its own column matrix
    int group;      // images one thread multiplies at once (ck_conv_group_images); 1 for large images
    // The Winograd tile (ck_winograd_tile) for shapes Winograd handles, 0 for others: read once per call, so the
    // workspace checked and the buffers used agree whatever another thread sets meanwhile.
    int winograd_tile;
} ck_conv_dims;

// Fills d from a valid shape; CK_ERR_NULL_POINTER or CK_ERR_BAD_SIZE otherwise (ck_conv2d_check_shape).
int ck_conv_check(const ck_conv2d_shape *s, ck_conv_dims *d);

// Sets d->group for a team of `threads` (see conv2d_shape.c).
void ck_conv_group_images(ck_conv_dims *d, int threads);

// Floats of workspace each thread owns: column matrices for its group of images, the group's dy rows side by side,
// then a private weight gradient. 0 on overflow.
size_t ck_conv_per_thread_floats(const ck_conv_dims *d);
size_t ck_conv_columns_floats(const ck_conv_dims *d);
size_t ck_conv_staged_dy_floats(const ck_conv_dims *d);

// The checks every convolution entry point starts with: shape, pointers, thread count (read once) and
// workspace. Pointwise forward and backward-input need no workspace; backward-weight always does.
int ck_conv_begin(const ck_conv2d_shape *shape, int pointers_present, int workspace_even_if_pointwise,
                  const void *workspace, size_t workspace_bytes, ck_conv_dims *d, int *threads);

// Where the weights packed once per call go (after every algorithm's scratch) for this team size; NULL when the
// workspace is missing or too short for them (allowed for pointwise forwards), so nothing is packed ahead.
float *ck_conv_packed_weights(void *workspace, size_t workspace_bytes, const ck_conv2d_shape *shape,
                              const ck_conv_dims *d, int threads);

// Columns per lowering chunk: about 2 MiB of column matrix (L2-sized), at least 256 columns so each sgemm stays
// wide enough to run at full rate.
static inline int lowering_chunk(const ck_conv_dims *d) {
    size_t columns = ((size_t)2048 << 10) / (sizeof(float) * d->CRS);
    if (columns < 256) columns = 256;
    return columns > d->PQ ? (int)d->PQ : (int)columns;
}

// Group g of d->group images (ck_conv_group_images): its first image, and how many it holds (the last may
// hold fewer).
static inline int group_first_image(const ck_conv_dims *d, int g, int *count) {
    const int n0 = g * d->group;
    *count = d->N - n0 < d->group ? d->N - n0 : d->group;
    return n0;
}

// Blocks each image is split into: one when the images alone feed every thread.
static inline int blocks_per_image(int images, int threads) {
    return images >= threads ? 1 : (threads + images - 1) / images;
}

static inline float *thread_columns(void *workspace, const ck_conv_dims *d, int thread) {
    return (float *)workspace + (size_t)thread * ck_conv_per_thread_floats(d);
}

static inline float *thread_staged_dy(void *workspace, const ck_conv_dims *d, int thread) {
    return thread_columns(workspace, d, thread) + ck_conv_columns_floats(d);
}

static inline float *thread_weight_grad(void *workspace, const ck_conv_dims *d, int thread) {
    return thread_staged_dy(workspace, d, thread) + ck_conv_staged_dy_floats(d);
}

// What a convolution's forward adds to its output before it leaves cache: y = relu?(y + (bias + residual)), the
// packed GEMM's epilogue with bias (K) and residual (N, K, P, Q), the whole output's, or NULL.
typedef ck_gemm_epilogue ck_conv_epilogue;

// y and residual point at the same position of their (N, K, P, Q) tensors; rows are ld apart.
void ck_conv_apply_epilogue(float *y, size_t ld, int K, int width, const ck_conv_epilogue *epilogue,
                            const float *residual);
#endif
