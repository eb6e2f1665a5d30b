// conv2d's shared arithmetic: the shape check (also the reference twins' rule), output sizes, how a thread's
// images are grouped into one product, and the workspace every conv2d kernel sizes and checks the same way.
#include "conv2d.h"
#include "winograd.h"

int ck_conv_check(const ck_conv2d_shape *s, ck_conv_dims *d) {
    if (!s) return CK_ERR_NULL_POINTER;
    if (s->batch <= 0 || s->in_channels <= 0 || s->in_height <= 0 || s->in_width <= 0 ||
        s->out_channels <= 0 || s->kernel_height <= 0 || s->kernel_width <= 0 ||
        s->stride_height <= 0 || s->stride_width <= 0 || s->pad_height < 0 || s->pad_width < 0)
        return CK_ERR_BAD_SIZE;
    // Index arithmetic is int: keep every coordinate a product or sum of these can reach below INT_MAX.
    const int limit = 1 << 24;
    if (s->in_height > limit || s->in_width > limit || s->kernel_height > limit || s->kernel_width > limit ||
        s->stride_height > limit || s->stride_width > limit || s->pad_height > limit || s->pad_width > limit)
        return CK_ERR_BAD_SIZE;
    long ph = (long)s->in_height + 2L * s->pad_height - s->kernel_height;
    long pw = (long)s->in_width + 2L * s->pad_width - s->kernel_width;
    if (ph < 0 || pw < 0) return CK_ERR_BAD_SIZE;
    d->N = s->batch; d->C = s->in_channels; d->H = s->in_height; d->W = s->in_width;
    d->K = s->out_channels; d->R = s->kernel_height; d->S = s->kernel_width;
    d->P = (int)(ph / s->stride_height + 1);
    d->Q = (int)(pw / s->stride_width + 1);
    d->CRS = (size_t)d->C * d->R * d->S;
    d->PQ = (size_t)d->P * d->Q;
    d->HW = (size_t)d->H * d->W;
    d->group = 1;
    d->winograd_tile = ck_winograd_applies(s) ? ck_winograd_tile(s) : 0;
    d->pointwise = d->R == 1 && d->S == 1 && s->stride_height == 1 && s->stride_width == 1 &&
                   s->pad_height == 0 && s->pad_width == 0;
    // Every buffer must be indexable with size_t and every GEMM dimension must fit an int.
    if (!ck_mul_size(ck_mul_size((size_t)d->N, (size_t)d->C), d->HW) ||
        !ck_mul_size(ck_mul_size((size_t)d->N, (size_t)d->K), d->PQ) ||
        d->CRS > 0x7fffffff || d->PQ > 0x7fffffff || d->HW > 0x7fffffff ||
        (long long)d->N * d->PQ > 0x7fffffff || !ck_mul_size((size_t)d->K, d->CRS) ||
        !ck_mul_size(d->CRS, d->PQ))
        return CK_ERR_BAD_SIZE;
    return CK_OK;
}

int ck_conv2d_check_shape(const ck_conv2d_shape *shape) {
    ck_conv_dims d;
    return ck_conv_check(shape, &d);
}

int ck_conv2d_output_height(const ck_conv2d_shape *shape) {
    ck_conv_dims d;
    return ck_conv_check(shape, &d) == CK_OK ? d.P : 0;
}

int ck_conv2d_output_width(const ck_conv2d_shape *shape) {
    ck_conv_dims d;
    return ck_conv_check(shape, &d) == CK_OK ? d.Q : 0;
}

// Small images (layer3/layer4: 14×14, 7×7 pixels) give skinny products whose last register tile is
// mostly padding, and each would pack the weights again. Forward and backward-input then multiply a group
// of a thread's images in one ck_sgemm_images call: enough images for about 256 columns, no more than a
// thread's share of the batch. Sets d->group (1: one image at a time).
void ck_conv_group_images(ck_conv_dims *d, int threads) {
    int wanted = (int)((256 + d->PQ - 1) / d->PQ);
    int share = (d->N + threads - 1) / threads;
    d->group = d->N >= threads && wanted > 1 ? (wanted < share ? wanted : share) : 1;
}

// Per thread: column matrices for a group of images (none for pointwise layers one image at a time), the
// group's dy rows side by side (backward-weight, ck_conv_staged_dy), and a private weight gradient for
// backward-weight's reduction. ck_conv_check has bounded each product; the group multiplies in checked.
size_t ck_conv_columns_floats(const ck_conv_dims *d) {
    return d->pointwise && d->group == 1 ? 0 : ck_mul_size(d->CRS * d->PQ, (size_t)d->group);
}

size_t ck_conv_staged_dy_floats(const ck_conv_dims *d) {
    return d->group == 1 ? 0 : ck_mul_size((size_t)d->K * d->PQ, (size_t)d->group);
}

size_t ck_conv_per_thread_floats(const ck_conv_dims *d) {
    const size_t col = ck_conv_columns_floats(d), staged = ck_conv_staged_dy_floats(d);
    if ((col == 0 && !(d->pointwise && d->group == 1)) || (staged == 0 && d->group > 1)) return 0;
    const size_t total = col + staged + (size_t)d->K * d->CRS;
    return total < col + staged ? 0 : total;
}

// Scratch of every algorithm: per-thread columns and gradients, or Winograd's buffers. 0 on overflow.
static size_t scratch_floats(const ck_conv2d_shape *shape, const ck_conv_dims *given, int threads) {
    ck_conv_dims grouped = *given, *d = &grouped;
    ck_conv_group_images(d, threads);
    size_t floats = ck_mul_size(ck_conv_per_thread_floats(d), (size_t)threads);
    if (floats && given->winograd_tile) {
        size_t winograd = ck_winograd_workspace_floats(shape, threads, given->winograd_tile);
        floats = winograd == 0 ? 0 : (winograd > floats ? winograd : floats);
    }
    return floats;
}

// The weights packed once per call for the packed GEMM (ck_gemm_prepack_a): K × CRS for the GEMM forward; for a
// Winograd layer, its tile's 16 or 36 transformed kernels, (K × C) forward or (C × K) for its backward-input. 0 on overflow.
static size_t packed_weight_floats(const ck_conv_dims *d) {
    size_t floats = ck_gemm_packed_a_floats(d->K, (int)d->CRS);
    if (floats && d->winograd_tile) {
        const size_t products = (size_t)ck_winograd_products(d->winograd_tile);
        const size_t forward = ck_mul_size(products, ck_gemm_packed_a_floats(d->K, d->C));
        const size_t input = ck_mul_size(products, ck_gemm_packed_a_floats(d->C, d->K));
        if (!forward || !input) return 0;
        if (forward > floats) floats = forward;
        if (input > floats) floats = input;
    }
    return floats;
}

// Every algorithm's workspace fits in one size, so callers query once per shape: the scratch, then the packed
// weights. 0 on overflow.
static size_t workspace_bytes_for(const ck_conv2d_shape *shape, const ck_conv_dims *d, int threads) {
    const size_t scratch = scratch_floats(shape, d, threads), packed = packed_weight_floats(d);
    if (!scratch || !packed || scratch + packed < scratch) return 0;
    return ck_mul_size(scratch + packed, sizeof(float));
}

float *ck_conv_packed_weights(void *workspace, size_t workspace_bytes, const ck_conv2d_shape *shape,
                              const ck_conv_dims *d, int threads) {
    // Pointwise forwards may run without a workspace (or with a short one): then nothing is packed ahead.
    const size_t need = workspace_bytes_for(shape, d, threads);
    if (!workspace || need == 0 || workspace_bytes < need) return NULL;
    return (float *)workspace + scratch_floats(shape, d, threads);
}

size_t ck_conv2d_workspace_size(const ck_conv2d_shape *shape) {
    ck_conv_dims d;
    if (ck_conv_check(shape, &d) != CK_OK) return 0;
    return workspace_bytes_for(shape, &d, ck_get_num_threads());
}

// The thread count is read once per call and passed along, so the team that runs is the team the
// workspace was checked for, whatever another thread sets meanwhile.
static int workspace_check(const ck_conv2d_shape *shape, const ck_conv_dims *d, int threads, const void *workspace,
                           size_t bytes) {
    size_t need = workspace_bytes_for(shape, d, threads);
    if (need == 0) return CK_ERR_BAD_SIZE;
    return (workspace && bytes >= need) ? CK_OK : CK_ERR_WORKSPACE;
}

// The checks every convolution entry point starts with: shape, pointers, thread count (read once) and
// workspace. Pointwise forward and backward-input need no workspace; backward-weight always does.
int ck_conv_begin(const ck_conv2d_shape *shape, int pointers_present, int workspace_even_if_pointwise,
                  const void *workspace, size_t workspace_bytes, ck_conv_dims *d, int *threads) {
    int status = ck_conv_check(shape, d);
    if (status != CK_OK) return status;
    CK_REQUIRE(pointers_present, CK_ERR_NULL_POINTER);
    *threads = ck_get_num_threads();
    ck_conv_group_images(d, *threads);
    if (d->pointwise && !workspace_even_if_pointwise) return CK_OK;
    return workspace_check(shape, d, *threads, workspace, workspace_bytes);
}
