// conv2d forward, backward-input and backward-weight, optimized (im2col + sgemm, OpenMP) and reference.
//
// Lowering, per image n: y_n (K × PQ) = weight (K × CRS) · col_n (CRS × PQ). A 1x1 stride-1 unpadded
// convolution needs no lowering: col_n is x_n itself (C × HW).
//
// Threads: OpenBLAS runs single-threaded inside each OpenMP thread. With at least as many images as
// threads, each thread takes whole images (big, well-shaped GEMMs, no synchronisation). With fewer
// images, threads split each image: forward by output columns, backward-input by input channels (their
// col2im writes never overlap), backward-weight by output channels.
#include "im2col.h"
#include "winograd.h"
#include <stdlib.h>

typedef struct {
    int N, C, H, W, K, R, S, P, Q;
    size_t CRS, PQ, HW;
    int pointwise;  // 1x1, stride 1, no padding: the input is its own column matrix
    int group;      // images one thread multiplies at once (conv_group_images); 1 for large images
} conv_dims;

static int conv_check(const ck_conv2d_shape *s, conv_dims *d) {
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

int ck_conv2d_output_height(const ck_conv2d_shape *shape) {
    conv_dims d;
    return conv_check(shape, &d) == CK_OK ? d.P : 0;
}

int ck_conv2d_output_width(const ck_conv2d_shape *shape) {
    conv_dims d;
    return conv_check(shape, &d) == CK_OK ? d.Q : 0;
}

// Small images (layer3/layer4: 14×14, 7×7 pixels) give skinny products whose last register tile is
// mostly padding, and each would pack the weights again. Forward and backward-input then multiply a group
// of a thread's images in one ck_sgemm_images call: enough images for about 256 columns, no more than a
// thread's share of the batch. Sets d->group (1: one image at a time).
static void conv_group_images(conv_dims *d, int threads) {
    int wanted = (int)((256 + d->PQ - 1) / d->PQ);
    int share = (d->N + threads - 1) / threads;
    d->group = d->N >= threads && wanted > 1 ? (wanted < share ? wanted : share) : 1;
}

// Per thread: column matrices for a group of images (none for pointwise) and a private weight gradient
// for backward-weight's reduction. conv_check has bounded each product; the group multiplies in checked.
static size_t per_thread_floats(const conv_dims *d) {
    size_t col = d->pointwise ? 0 : ck_mul_size(d->CRS * d->PQ, (size_t)d->group);
    if (!d->pointwise && col == 0) return 0;
    return col + (size_t)d->K * d->CRS;
}

// Every algorithm's workspace fits in one size, so callers query once per shape. 0 on overflow.
static size_t workspace_bytes_for(const ck_conv2d_shape *shape, const conv_dims *given, int threads) {
    conv_dims grouped = *given, *d = &grouped;
    conv_group_images(d, threads);
    size_t floats = ck_mul_size(per_thread_floats(d), (size_t)threads);
    if (floats && ck_winograd_applies(shape)) {
        size_t winograd = ck_winograd_workspace_floats(shape, threads);
        floats = winograd == 0 ? 0 : (winograd > floats ? winograd : floats);
    }
    return ck_mul_size(floats, sizeof(float));
}

size_t ck_conv2d_workspace_size(const ck_conv2d_shape *shape) {
    conv_dims d;
    if (conv_check(shape, &d) != CK_OK) return 0;
    return workspace_bytes_for(shape, &d, ck_get_num_threads());
}

// The thread count is read once per call and passed along, so the team that runs is the team the
// workspace was checked for, whatever another thread sets meanwhile.
static int workspace_check(const ck_conv2d_shape *shape, const conv_dims *d, int threads, const void *workspace,
                           size_t bytes) {
    size_t need = workspace_bytes_for(shape, d, threads);
    if (need == 0) return CK_ERR_BAD_SIZE;
    return (workspace && bytes >= need) ? CK_OK : CK_ERR_WORKSPACE;
}

// Columns per lowering chunk: about 2 MiB of column matrix (L2-sized), at least 256 columns so each sgemm stays
// wide enough to run at full rate.
static inline int lowering_chunk(const conv_dims *d) {
    size_t columns = ((size_t)2048 << 10) / (sizeof(float) * d->CRS);
    if (columns < 256) columns = 256;
    return columns > d->PQ ? (int)d->PQ : (int)columns;
}

// The checks every convolution entry point starts with: shape, pointers, thread count (read once) and
// workspace. Pointwise forward and backward-input need no workspace; backward-weight always does.
static int conv_begin(const ck_conv2d_shape *shape, int pointers_present, int workspace_even_if_pointwise,
                      const void *workspace, size_t workspace_bytes, conv_dims *d, int *threads) {
    int status = conv_check(shape, d);
    if (status != CK_OK) return status;
    CK_REQUIRE(pointers_present, CK_ERR_NULL_POINTER);
    *threads = ck_get_num_threads();
    conv_group_images(d, *threads);
    if (d->pointwise && !workspace_even_if_pointwise) return CK_OK;
    return workspace_check(shape, d, *threads, workspace, workspace_bytes);
}

// Group g of d->group images (conv_group_images): its first image, and how many it holds (the last may
// hold fewer).
static inline int group_first_image(const conv_dims *d, int g, int *count) {
    const int n0 = g * d->group;
    *count = d->N - n0 < d->group ? d->N - n0 : d->group;
    return n0;
}

// Blocks each image is split into: one when the images alone feed every thread.
static inline int blocks_per_image(int images, int threads) {
    return images >= threads ? 1 : (threads + images - 1) / images;
}

static inline float *thread_columns(void *workspace, const conv_dims *d, int thread) {
    return (float *)workspace + (size_t)thread * per_thread_floats(d);
}

static inline float *thread_weight_grad(void *workspace, const conv_dims *d, int thread) {
    return thread_columns(workspace, d, thread) + (d->pointwise ? 0 : d->CRS * d->PQ * d->group);
}

// ------------------------------------------------------------------------------------------ forward

// Winograd for 3x3 stride-1 layers only where it measures faster (make bench-kernels prints both).
static _Atomic int winograd_mode = CK_WINOGRAD_AUTO;

void ck_conv2d_set_winograd(int mode) {
    winograd_mode = mode == CK_WINOGRAD_NEVER || mode == CK_WINOGRAD_ALWAYS ? mode : CK_WINOGRAD_AUTO;
}

static int conv_uses_winograd(const ck_conv2d_shape *shape) {
    if (!shape || !ck_winograd_applies(shape)) return 0;
    const int mode = winograd_mode;
    if (mode != CK_WINOGRAD_AUTO) return mode == CK_WINOGRAD_ALWAYS;
    const long outputs = (long)ck_conv2d_output_height(shape) * ck_conv2d_output_width(shape);
    return ck_cpu_has_avx512() && outputs >= 196;
}

// y block (K rows of `width`, row stride ld) = act(y + bias + residual), while it is still in cache.
void ck_conv_apply_epilogue(float *y, size_t ld, int K, int width, const ck_conv_epilogue *e,
                            const float *residual) {
    if (!e->bias && !residual && !e->relu) return;
    for (int k = 0; k < K; k++) {
        float *row = y + (size_t)k * ld;
        const float b = e->bias ? e->bias[k] : 0.0f;
        const float *res = residual ? residual + (size_t)k * ld : NULL;
        if (res) for (int j = 0; j < width; j++) row[j] += b + res[j];
        else if (b != 0.0f) for (int j = 0; j < width; j++) row[j] += b;
        if (e->relu) for (int j = 0; j < width; j++) row[j] = row[j] < 0.0f ? 0.0f : row[j];
    }
}

static int conv_forward_winograd(float *y, const float *x, const float *weight, const ck_conv_epilogue *epilogue,
                                 const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    if (shape && !ck_winograd_applies(shape)) return CK_ERR_BAD_SIZE;
    conv_dims d;
    int threads;
    int status = conv_begin(shape, y && x && weight, 1, workspace, workspace_bytes, &d, &threads);
    if (status != CK_OK) return status;
    return ck_winograd_forward(y, x, weight, epilogue, shape, d.P, d.Q, threads, (float *)workspace);
}

static int conv_forward_gemm(float *y, const float *x, const float *weight, const ck_conv_epilogue *epilogue,
                             const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    conv_dims d;
    int threads;
    int status = conv_begin(shape, y && x && weight, 0, workspace, workspace_bytes, &d, &threads);
    if (status != CK_OK) return status;

#if defined(__x86_64__)
    // Strided layers lower by gathers: measured faster on wide rows of spatial kernels (conv1, layer2.0 and
    // layer3.0 3x3/2), slower on 14×14 rows and on 1x1/2 downsamples, whose column matrix is small anyway.
    if (!d.pointwise && ck_get_gemm_backend() == CK_GEMM_AVX512 && (shape->stride_width == 1 || (d.R > 1 && d.W >= 28))) {
        // Implicit GEMM: the packed GEMM lowers the input straight into its panels. Each thread takes an
        // equal run of the batch's columns, in NC-sized pieces whose epilogue runs while they are in cache.
        const ck_im2col_panel lowering = {x, shape, d.P, d.Q};
        const ck_gemm_b source = {.pack_panel = ck_im2col_pack_panel, .context = &lowering};
        const long total = (long)d.N * (long)d.PQ, panels = (total + CK_GEMM_NR - 1) / CK_GEMM_NR;
        const long piece = 512;
        int failed = 0;  // a thread without packing memory: the whole convolution takes the path below
        #pragma omp parallel num_threads(threads) reduction(| : failed)
        {
            const int t = omp_get_thread_num(), team = omp_get_num_threads();
            const long begin = panels * t / team * CK_GEMM_NR;
            long end = panels * (t + 1) / team * CK_GEMM_NR;
            if (end > total) end = total;
            for (long j = begin; j < end; j += piece) {
                const long j_end = j + piece < end ? j + piece : end;
                if (!ck_sgemm_packing(d.K, (int)d.PQ, (int)d.CRS, weight, (int)d.CRS, &source, y, (int)d.PQ,
                                      (size_t)d.K * d.PQ, j, j_end)) {
                    failed = 1;
                    break;
                }
                for (long J = j; J < j_end;) {
                    const int n = (int)(J / (long)d.PQ), column = (int)(J % (long)d.PQ);
                    const int width = (int)((long)d.PQ - column < j_end - J ? (long)d.PQ - column : j_end - J);
                    const size_t offset = (size_t)n * d.K * d.PQ + column;
                    ck_conv_apply_epilogue(y + offset, d.PQ, d.K, width, epilogue,
                                           epilogue->residual ? epilogue->residual + offset : NULL);
                    J += width;
                }
            }
        }
        if (!failed) return CK_OK;
    }
#endif
    if (d.group > 1) {
        // Work items: groups of images, each one product over the group's columns side by side.
        const int groups = (d.N + d.group - 1) / d.group;
        #pragma omp parallel for schedule(static) num_threads(threads)
        for (int g = 0; g < groups; g++) {
            int count;
            const int n0 = group_first_image(&d, g, &count);
            const float *b = x + (size_t)n0 * d.C * d.HW;
            size_t stride_b = (size_t)d.C * d.HW;
            if (!d.pointwise) {
                float *col = thread_columns(workspace, &d, omp_get_thread_num());
                for (int i = 0; i < count; i++)
                    ck_im2col_columns(col + (size_t)i * d.CRS * d.PQ, b + (size_t)i * stride_b, shape, d.Q, 0, (int)d.PQ);
                b = col;
                stride_b = d.CRS * d.PQ;
            }
            const size_t out_offset = (size_t)n0 * d.K * d.PQ;
            ck_sgemm_images(0, d.K, (int)d.PQ, (int)d.CRS, 1.0f, weight, (int)d.CRS, b, (int)d.PQ, stride_b, 0.0f,
                            y + out_offset, (int)d.PQ, (size_t)d.K * d.PQ, count);
            for (int i = 0; i < count; i++) {
                const size_t offset = out_offset + (size_t)i * d.K * d.PQ;
                ck_conv_apply_epilogue(y + offset, d.PQ, d.K, (int)d.PQ, epilogue,
                                       epilogue->residual ? epilogue->residual + offset : NULL);
            }
        }
        return CK_OK;
    }

    // Work items: (image, column block).
    const int blocks = blocks_per_image(d.N, threads);
    const int items = d.N * blocks;
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int item = 0; item < items; item++) {
        const int n = item / blocks, block = item % blocks;
        int j0, j1;
        ck_block_range((int)d.PQ, blocks, block, &j0, &j1);
        if (j1 <= j0) continue;
        const int width = j1 - j0;
        const size_t out_offset = (size_t)n * d.K * d.PQ + j0;
        float *yn = y + out_offset;
        const float *xn = x + (size_t)n * d.C * d.HW;
        if (d.pointwise) {
            ck_sgemm(0, 0, d.K, width, d.C, 1.0f, weight, d.C, xn + j0, (int)d.HW, 0.0f, yn, (int)d.PQ);
        } else {
            // Lower and multiply a cache-sized run of columns at a time, so sgemm reads the column
            // matrix from L2 rather than from memory.
            float *col = thread_columns(workspace, &d, omp_get_thread_num());
            const int chunk = lowering_chunk(&d);
            for (int c0 = j0; c0 < j1; c0 += chunk) {
                const int c1 = c0 + chunk < j1 ? c0 + chunk : j1;
                ck_im2col_columns(col, xn, shape, d.Q, c0, c1);
                ck_sgemm(0, 0, d.K, c1 - c0, (int)d.CRS, 1.0f, weight, (int)d.CRS, col, c1 - c0, 0.0f,
                         yn + (c0 - j0), (int)d.PQ);
            }
        }
        ck_conv_apply_epilogue(yn, d.PQ, d.K, width, epilogue,
                               epilogue->residual ? epilogue->residual + out_offset : NULL);
    }
    return CK_OK;
}

int ck_conv2d_forward_f32(float *y, const float *x, const float *weight, const float *bias,
                          const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    return ck_conv2d_forward_fused_f32(y, x, weight, bias, NULL, 0, shape, workspace, workspace_bytes);
}

int ck_conv2d_forward_fused_f32(float *y, const float *x, const float *weight, const float *bias,
                                const float *residual, int relu, const ck_conv2d_shape *shape,
                                void *workspace, size_t workspace_bytes) {
    const ck_conv_epilogue epilogue = {bias, residual, relu};
    if (conv_uses_winograd(shape))
        return conv_forward_winograd(y, x, weight, &epilogue, shape, workspace, workspace_bytes);
    return conv_forward_gemm(y, x, weight, &epilogue, shape, workspace, workspace_bytes);
}

int ck_conv2d_forward_winograd_f32(float *y, const float *x, const float *weight, const float *bias,
                                   const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    const ck_conv_epilogue epilogue = {bias, NULL, 0};
    return conv_forward_winograd(y, x, weight, &epilogue, shape, workspace, workspace_bytes);
}

int ck_conv2d_forward_gemm_f32(float *y, const float *x, const float *weight, const float *bias,
                               const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    const ck_conv_epilogue epilogue = {bias, NULL, 0};
    return conv_forward_gemm(y, x, weight, &epilogue, shape, workspace, workspace_bytes);
}

int ck_conv2d_forward_fused_f32_ref(float *y, const float *x, const float *weight, const float *bias,
                                    const float *residual, int relu, const ck_conv2d_shape *shape,
                                    void *workspace, size_t workspace_bytes) {
    int status = ck_conv2d_forward_f32_ref(y, x, weight, bias, shape, workspace, workspace_bytes);
    if (status != CK_OK) return status;
    const size_t count = (size_t)shape->batch * shape->out_channels * ck_conv2d_output_height(shape) *
                         ck_conv2d_output_width(shape);
    for (size_t i = 0; i < count; i++) {
        float v = y[i] + (residual ? residual[i] : 0.0f);
        y[i] = relu && v < 0.0f ? 0.0f : v;  // NaN passes, as in PyTorch
    }
    return CK_OK;
}

int ck_conv2d_forward_f32_ref(float *y, const float *x, const float *weight, const float *bias,
                              const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    (void)workspace; (void)workspace_bytes;
    conv_dims d;
    int status = conv_check(shape, &d);
    if (status != CK_OK) return status;
    CK_REQUIRE(y && x && weight, CK_ERR_NULL_POINTER);
    const ck_conv2d_shape *s = shape;
    for (int n = 0; n < d.N; n++)
        for (int k = 0; k < d.K; k++)
            for (int p = 0; p < d.P; p++)
                for (int q = 0; q < d.Q; q++) {
                    float acc = bias ? bias[k] : 0.0f;
                    for (int c = 0; c < d.C; c++)
                        for (int r = 0; r < d.R; r++) {
                            const int ih = p * s->stride_height - s->pad_height + r;
                            if (ih < 0 || ih >= d.H) continue;
                            for (int t = 0; t < d.S; t++) {
                                const int iw = q * s->stride_width - s->pad_width + t;
                                if (iw < 0 || iw >= d.W) continue;
                                acc += x[(((size_t)n * d.C + c) * d.H + ih) * d.W + iw] *
                                       weight[(((size_t)k * d.C + c) * d.R + r) * d.S + t];
                            }
                        }
                    y[(((size_t)n * d.K + k) * d.P + p) * d.Q + q] = acc;
                }
    return CK_OK;
}

// ------------------------------------------------------------------------------------ backward input

int ck_conv2d_backward_input_f32(float *dx, const float *dy, const float *weight,
                                 const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    conv_dims d;
    int threads;
    int status = conv_begin(shape, dx && dy && weight, 0, workspace, workspace_bytes, &d, &threads);
    if (status != CK_OK) return status;

    const size_t RS = (size_t)d.R * d.S;
    if (d.group > 1) {
        // Work items: groups of images; dcol_i = weightᵀ · dy_i for the whole group in one product.
        const int groups = (d.N + d.group - 1) / d.group;
        #pragma omp parallel for schedule(static) num_threads(threads)
        for (int g = 0; g < groups; g++) {
            int count;
            const int n0 = group_first_image(&d, g, &count);
            const float *dyn = dy + (size_t)n0 * d.K * d.PQ;
            float *dxn = dx + (size_t)n0 * d.C * d.HW;
            if (d.pointwise) {
                ck_sgemm_images(1, d.C, (int)d.HW, d.K, 1.0f, weight, d.C, dyn, (int)d.PQ, (size_t)d.K * d.PQ, 0.0f,
                                dxn, (int)d.HW, (size_t)d.C * d.HW, count);
                continue;
            }
            float *col = thread_columns(workspace, &d, omp_get_thread_num());
            ck_sgemm_images(1, (int)d.CRS, (int)d.PQ, d.K, 1.0f, weight, (int)d.CRS, dyn, (int)d.PQ,
                            (size_t)d.K * d.PQ, 0.0f, col, (int)d.PQ, d.CRS * d.PQ, count);
            memset(dxn, 0, sizeof(float) * (size_t)count * d.C * d.HW);
            for (int i = 0; i < count; i++)
                ck_col2im_channels(dxn + (size_t)i * d.C * d.HW, col + (size_t)i * d.CRS * d.PQ, shape, d.P, d.Q, 0, d.C);
        }
        return CK_OK;
    }

    // Work items: (image, input-channel block); dcol rows of channels c0..c1 = weightᵀ rows c0..c1 · dy_n.
    const int blocks = blocks_per_image(d.N, threads);
    const int items = d.N * blocks;
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int item = 0; item < items; item++) {
        const int n = item / blocks, block = item % blocks;
        int c0, c1;
        ck_block_range(d.C, blocks, block, &c0, &c1);
        if (c1 <= c0) continue;
        const float *dyn = dy + (size_t)n * d.K * d.PQ;
        float *dxn = dx + (size_t)n * d.C * d.HW;
        if (d.pointwise) {
            // dx_n[c0:c1] (C' × HW) = weight[:, c0:c1]ᵀ · dy_n.
            ck_sgemm(1, 0, c1 - c0, (int)d.HW, d.K, 1.0f, weight + c0, d.C, dyn, (int)d.PQ,
                     0.0f, dxn + (size_t)c0 * d.HW, (int)d.HW);
        } else {
            float *col = thread_columns(workspace, &d, omp_get_thread_num());
            const int rows = (int)((size_t)(c1 - c0) * RS);
            ck_sgemm(1, 0, rows, (int)d.PQ, d.K, 1.0f, weight + (size_t)c0 * RS, (int)d.CRS, dyn, (int)d.PQ,
                     0.0f, col, (int)d.PQ);
            memset(dxn + (size_t)c0 * d.HW, 0, sizeof(float) * (size_t)(c1 - c0) * d.HW);
            ck_col2im_channels(dxn, col, shape, d.P, d.Q, c0, c1);
        }
    }
    return CK_OK;
}

int ck_conv2d_backward_input_f32_ref(float *dx, const float *dy, const float *weight,
                                     const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    (void)workspace; (void)workspace_bytes;
    conv_dims d;
    int status = conv_check(shape, &d);
    if (status != CK_OK) return status;
    CK_REQUIRE(dx && dy && weight, CK_ERR_NULL_POINTER);
    const ck_conv2d_shape *s = shape;
    memset(dx, 0, sizeof(float) * (size_t)d.N * d.C * d.HW);
    for (int n = 0; n < d.N; n++)
        for (int k = 0; k < d.K; k++)
            for (int p = 0; p < d.P; p++)
                for (int q = 0; q < d.Q; q++) {
                    const float g = dy[(((size_t)n * d.K + k) * d.P + p) * d.Q + q];
                    for (int c = 0; c < d.C; c++)
                        for (int r = 0; r < d.R; r++) {
                            const int ih = p * s->stride_height - s->pad_height + r;
                            if (ih < 0 || ih >= d.H) continue;
                            for (int t = 0; t < d.S; t++) {
                                const int iw = q * s->stride_width - s->pad_width + t;
                                if (iw < 0 || iw >= d.W) continue;
                                dx[(((size_t)n * d.C + c) * d.H + ih) * d.W + iw] +=
                                    g * weight[(((size_t)k * d.C + c) * d.R + r) * d.S + t];
                            }
                        }
                }
    return CK_OK;
}

// ----------------------------------------------------------------------------------- backward weight

static void accumulate_bias_grad(float *dbias, const float *dy, const conv_dims *d, int threads) {
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int k = 0; k < d->K; k++) {
        double sum = 0.0;
        for (int n = 0; n < d->N; n++) {
            const float *row = dy + ((size_t)n * d->K + k) * d->PQ;
            float partial = 0.0f;
            #pragma omp simd reduction(+ : partial)
            for (size_t j = 0; j < d->PQ; j++) partial += row[j];
            sum += partial;
        }
        dbias[k] += (float)sum;
    }
}

int ck_conv2d_backward_weight_f32(float *dweight, float *dbias, const float *dy, const float *x,
                                  const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    conv_dims d;
    int threads;
    int status = conv_begin(shape, dweight && dy && x, 1, workspace, workspace_bytes, &d, &threads);
    if (status != CK_OK) return status;

    const size_t weight_count = (size_t)d.K * d.CRS;
    if (d.N >= threads) {
        // Each thread sums its images into a private gradient; thread 0 uses dweight itself.
        #pragma omp parallel num_threads(threads)
        {
            const int t = omp_get_thread_num(), team = omp_get_num_threads();
            float *target = t == 0 ? dweight : thread_weight_grad(workspace, &d, t);
            if (t != 0) memset(target, 0, sizeof(float) * weight_count);
            int n0, n1;
            ck_block_range(d.N, team, t, &n0, &n1);
            float *col = thread_columns(workspace, &d, t);
            for (int n = n0; n < n1; n++) {
                const float *xn = x + (size_t)n * d.C * d.HW;
                const float *dyn = dy + (size_t)n * d.K * d.PQ;
                if (d.pointwise) {
                    ck_sgemm(0, 1, d.K, (int)d.CRS, (int)d.PQ, 1.0f, dyn, (int)d.PQ, xn, (int)d.PQ,
                             1.0f, target, (int)d.CRS);
                    continue;
                }
                // dW += dy_n[:, chunk] · col[:, chunk]ᵀ, chunk by chunk, while the lowered columns are in cache.
                const int chunk = lowering_chunk(&d);
                for (int c0 = 0; c0 < (int)d.PQ; c0 += chunk) {
                    const int c1 = c0 + chunk < (int)d.PQ ? c0 + chunk : (int)d.PQ;
                    ck_im2col_columns(col, xn, shape, d.Q, c0, c1);
                    ck_sgemm(0, 1, d.K, (int)d.CRS, c1 - c0, 1.0f, dyn + c0, (int)d.PQ, col, c1 - c0,
                             1.0f, target, (int)d.CRS);
                }
            }
            #pragma omp barrier
            // Reduce the private gradients into dweight, each thread a slice of it.
            size_t i0 = weight_count * (size_t)t / (size_t)team, i1 = weight_count * (size_t)(t + 1) / (size_t)team;
            for (int other = 1; other < team; other++) {
                const float *src = thread_weight_grad(workspace, &d, other);
                for (size_t i = i0; i < i1; i++) dweight[i] += src[i];
            }
        }
    } else {
        // Few images: threads own blocks of output channels (rows of dweight), image by image.
        for (int n = 0; n < d.N; n++) {
            const float *xn = x + (size_t)n * d.C * d.HW;
            const float *dyn = dy + (size_t)n * d.K * d.PQ;
            #pragma omp parallel num_threads(threads)
            {
                const int t = omp_get_thread_num(), team = omp_get_num_threads();
                int k0, k1;
                ck_block_range(d.K, team, t, &k0, &k1);
                const float *columns = xn;
                if (!d.pointwise) {
                    // Every thread lowers the whole image: cheaper than synchronising on a shared copy.
                    float *col = thread_columns(workspace, &d, t);
                    ck_im2col_columns(col, xn, shape, d.Q, 0, (int)d.PQ);
                    columns = col;
                }
                if (k1 > k0)
                    ck_sgemm(0, 1, k1 - k0, (int)d.CRS, (int)d.PQ, 1.0f, dyn + (size_t)k0 * d.PQ, (int)d.PQ,
                             columns, (int)d.PQ, 1.0f, dweight + (size_t)k0 * d.CRS, (int)d.CRS);
            }
        }
    }
    if (dbias) accumulate_bias_grad(dbias, dy, &d, threads);
    return CK_OK;
}

int ck_conv2d_backward_weight_f32_ref(float *dweight, float *dbias, const float *dy, const float *x,
                                      const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    (void)workspace; (void)workspace_bytes;
    conv_dims d;
    int status = conv_check(shape, &d);
    if (status != CK_OK) return status;
    CK_REQUIRE(dweight && dy && x, CK_ERR_NULL_POINTER);
    const ck_conv2d_shape *s = shape;
    for (int k = 0; k < d.K; k++)
        for (int c = 0; c < d.C; c++)
            for (int r = 0; r < d.R; r++)
                for (int t = 0; t < d.S; t++) {
                    float acc = 0.0f;
                    for (int n = 0; n < d.N; n++)
                        for (int p = 0; p < d.P; p++) {
                            const int ih = p * s->stride_height - s->pad_height + r;
                            if (ih < 0 || ih >= d.H) continue;
                            for (int q = 0; q < d.Q; q++) {
                                const int iw = q * s->stride_width - s->pad_width + t;
                                if (iw < 0 || iw >= d.W) continue;
                                acc += dy[(((size_t)n * d.K + k) * d.P + p) * d.Q + q] *
                                       x[(((size_t)n * d.C + c) * d.H + ih) * d.W + iw];
                            }
                        }
                    dweight[(((size_t)k * d.C + c) * d.R + r) * d.S + t] += acc;
                }
    if (dbias)
        for (int k = 0; k < d.K; k++) {
            float acc = 0.0f;
            for (int n = 0; n < d.N; n++)
                for (size_t j = 0; j < d.PQ; j++) acc += dy[((size_t)n * d.K + k) * d.PQ + j];
            dbias[k] += acc;
        }
    return CK_OK;
}
