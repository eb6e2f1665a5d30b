// conv2d backward: input gradient (weightᵀ · dy, then col2im) and weight/bias gradients (dy · colᵀ), through
// sgemm with OpenMP. With at least as many images as threads, each thread takes whole images (grouped when
// they are small); with fewer, threads split each image: backward-input by input channels (their col2im
// writes never overlap), backward-weight by output channels.
// A 3x3 stride-1 padding-1 layer's backward-input is itself such a convolution, of dy with the filters
// transposed and turned 180°, and its backward-weight the Winograd forward's adjoint: both take Winograd where
// it measures faster (ck_winograd_chosen and ck_winograd_chosen_for_weight_gradient, winograd.c).
// Twins: ck_conv2d_backward_input_f32_ref and ck_conv2d_backward_weight_f32_ref (CKernelsReference/conv2d_ref.c).
#include "conv2d.h"
#include "im2col.h"
#include "winograd.h"

// dx = conv(dy, g') with g'(c, k) = weight(k, c) turned 180°, padding 1: an (N, K, P, Q) → (N, C, H, W)
// convolution whose workspace is the forward's (ck_winograd_workspace_floats is symmetric in C and K).
// The layer's own tile (d->winograd_tile), which its workspace was checked for.
static int backward_input_winograd(float *dx, const float *dy, const float *weight, const ck_conv_dims *d, int threads,
                                   void *workspace, float *packed_kernels) {
    const ck_conv2d_shape transposed = {
        .batch = d->N, .in_channels = d->K, .in_height = d->P, .in_width = d->Q, .out_channels = d->C,
        .kernel_height = 3, .kernel_width = 3, .stride_height = 1, .stride_width = 1, .pad_height = 1, .pad_width = 1};
    const ck_winograd_filters filters = {weight, 9, d->CRS, 1};
    const ck_conv_epilogue none = {NULL, NULL, 0};
    return ck_winograd_forward(dx, dy, &filters, &none, &transposed, d->H, d->W, d->winograd_tile, threads,
                               (float *)workspace, packed_kernels, 0);
}

static int backward_input(float *dx, const float *dy, const float *weight, const ck_conv2d_shape *shape,
                          void *workspace, size_t workspace_bytes, int winograd) {
    ck_conv_dims d;
    int threads;
    int status = ck_conv_begin(shape, dx && dy && weight, 0, workspace, workspace_bytes, &d, &threads);
    if (status != CK_OK) return status;
    if (winograd)
        return backward_input_winograd(dx, dy, weight, &d, threads, workspace,
                                       ck_conv_packed_weights(workspace, workspace_bytes, shape, &d, threads));

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

int ck_conv2d_backward_input_f32(float *dx, const float *dy, const float *weight,
                                 const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    return backward_input(dx, dy, weight, shape, workspace, workspace_bytes, ck_winograd_chosen(shape));
}

int ck_conv2d_backward_input_winograd_f32(float *dx, const float *dy, const float *weight,
                                          const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    if (shape && !ck_winograd_applies(shape)) return CK_ERR_BAD_SIZE;
    return backward_input(dx, dy, weight, shape, workspace, workspace_bytes, 1);
}

static void accumulate_bias_grad(float *dbias, const float *dy, const ck_conv_dims *d, int threads) {
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

// The share of the packed GEMM's MR x NR register tiles an M x N product fills.
static double tile_fill(size_t M, size_t N) {
    const size_t padded_m = (M + CK_GEMM_MR - 1) / CK_GEMM_MR * CK_GEMM_MR;
    const size_t padded_n = (N + CK_GEMM_NR - 1) / CK_GEMM_NR * CK_GEMM_NR;
    return (double)M / (double)padded_m * (double)N / (double)padded_n;
}

static int backward_weight(float *dweight, float *dbias, const float *dy, const float *x, const ck_conv2d_shape *shape,
                           void *workspace, size_t workspace_bytes, int winograd) {
    ck_conv_dims d;
    int threads;
    int status = ck_conv_begin(shape, dweight && dy && x, 1, workspace, workspace_bytes, &d, &threads);
    if (status != CK_OK) return status;
    if (winograd) {
        // ck_conv_begin checked the whole workspace, so the packed kernels' room is there.
        ck_winograd_backward_weight(dweight, dy, x, shape, d.P, d.Q, threads, (float *)workspace,
                                    ck_conv_packed_weights(workspace, workspace_bytes, shape, &d, threads));
        if (dbias) accumulate_bias_grad(dbias, dy, &d, threads);
        return CK_OK;
    }

    const size_t weight_count = (size_t)d.K * d.CRS;
    if (d.N >= threads) {
        // Images one at a time, lowered chunk by chunk, may multiply transposed, dWᵀ (CRS × K) += col · dyᵀ, when that
        // fills the register tiles better: conv1 (K 64, CRS 147) fills 74% of them as dW, 98% as dWᵀ.
        const int transposed = !d.pointwise && d.group == 1 && tile_fill(d.CRS, d.K) > 1.1 * tile_fill(d.K, d.CRS);
        // Each thread sums its images into a private gradient; thread 0 uses dweight itself unless transposed.
        #pragma omp parallel num_threads(threads)
        {
            const int t = omp_get_thread_num(), team = omp_get_num_threads();
            float *target = t == 0 && !transposed ? dweight : thread_weight_grad(workspace, &d, t);
            if (target != dweight) memset(target, 0, sizeof(float) * weight_count);
            int n0, n1;
            ck_block_range(d.N, team, t, &n0, &n1);
            float *col = thread_columns(workspace, &d, t);
            if (d.group > 1) {
                // Small images: a group's columns and dy rows side by side, so one product reduces over all their
                // pixels (layer4's 49 alone leave the product waiting on loads and stores of dW).
                float *staged_dy = thread_staged_dy(workspace, &d, t);
                for (int n = n0; n < n1; n += d.group) {
                    const int count = n1 - n < d.group ? n1 - n : d.group;
                    const size_t width = (size_t)count * d.PQ;
                    for (int i = 0; i < count; i++) {
                        const float *xn = x + (size_t)(n + i) * d.C * d.HW;
                        const float *dyn = dy + (size_t)(n + i) * d.K * d.PQ;
                        for (int k = 0; k < d.K; k++)
                            memcpy(staged_dy + k * width + i * d.PQ, dyn + k * d.PQ, sizeof(float) * d.PQ);
                        if (d.pointwise) {
                            for (int c = 0; c < d.C; c++)
                                memcpy(col + c * width + i * d.PQ, xn + c * d.HW, sizeof(float) * d.PQ);
                        } else {
                            ck_im2col_columns(col + i * d.PQ, width, xn, shape, d.Q, 0, (int)d.PQ);
                        }
                    }
                    ck_sgemm(0, 1, d.K, (int)d.CRS, (int)width, 1.0f, staged_dy, (int)width, col, (int)width, 1.0f,
                             target, (int)d.CRS);
                }
            }
            for (int n = n0; n < n1 && d.group == 1; n++) {
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
                    ck_im2col_columns(col, (size_t)(c1 - c0), xn, shape, d.Q, c0, c1);
                    if (transposed)
                        ck_sgemm(0, 1, (int)d.CRS, d.K, c1 - c0, 1.0f, col, c1 - c0, dyn + c0, (int)d.PQ, 1.0f, target,
                                 d.K);
                    else
                        ck_sgemm(0, 1, d.K, (int)d.CRS, c1 - c0, 1.0f, dyn + c0, (int)d.PQ, col, c1 - c0, 1.0f, target,
                                 (int)d.CRS);
                }
            }
            #pragma omp barrier
            // Reduce the private gradients into dweight, each thread a slice of it.
            size_t i0 = weight_count * (size_t)t / (size_t)team, i1 = weight_count * (size_t)(t + 1) / (size_t)team;
            for (int other = transposed ? 0 : 1; other < team; other++) {
                const float *src = thread_weight_grad(workspace, &d, other);
                if (transposed)
                    for (size_t i = i0; i < i1; i++) dweight[i] += src[(i % d.CRS) * (size_t)d.K + i / d.CRS];
                else
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
                    ck_im2col_columns(col, d.PQ, xn, shape, d.Q, 0, (int)d.PQ);
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

int ck_conv2d_backward_weight_f32(float *dweight, float *dbias, const float *dy, const float *x,
                                  const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    return backward_weight(dweight, dbias, dy, x, shape, workspace, workspace_bytes,
                           ck_winograd_chosen_for_weight_gradient(shape));
}

int ck_conv2d_backward_weight_winograd_f32(float *dweight, float *dbias, const float *dy, const float *x,
                                           const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    if (shape && !ck_winograd_applies(shape)) return CK_ERR_BAD_SIZE;
    return backward_weight(dweight, dbias, dy, x, shape, workspace, workspace_bytes, 1);
}
