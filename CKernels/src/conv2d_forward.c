// conv2d forward: ck_conv2d_forward_f32 and its fused form choose, per shape, between Winograd F(2x2, 3x3)
// (winograd.c) and a GEMM; the GEMM lowers the input one of three ways:
//   - implicit GEMM (packed backends, AVX-512 or AVX2): the packed GEMM lowers input columns straight into
//     its panels;
//   - grouped: small images, several per ck_sgemm_images call (see ck_conv_group_images);
//   - per image, by column blocks: im2col a cache-sized chunk, then sgemm (1x1 stride-1 layers need no
//     lowering: x_n is its own column matrix, C × HW).
// y_n (K × PQ) = weight (K × CRS) · col_n (CRS × PQ); the epilogue runs on each block while it is in cache.
// Twin: ck_conv2d_forward_f32_ref (CKernelsReference/conv2d_ref.c), for every strategy.
#include "conv2d.h"
#include "im2col.h"
#include "winograd.h"

static int conv_forward_winograd(float *y, const float *x, const float *weight, const ck_conv_epilogue *epilogue,
                                 const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    if (shape && !ck_winograd_applies(shape)) return CK_ERR_BAD_SIZE;
    ck_conv_dims d;
    int threads;
    int status = ck_conv_begin(shape, y && x && weight, 1, workspace, workspace_bytes, &d, &threads);
    if (status != CK_OK) return status;
    const ck_winograd_filters filters = {weight, d.CRS, 9, 0};
    return ck_winograd_forward(y, x, &filters, epilogue, shape, d.P, d.Q, threads, (float *)workspace,
                               ck_conv_packed_weights(workspace, workspace_bytes, shape, &d, threads));
}

// The weights (K × CRS) packed once for the packed GEMM of `backend`, the team splitting the blocks: otherwise every
// thread packs them again for every piece of columns it multiplies (7.9% of inference, measured with perf).
// NULL (nothing packed) without a packed backend or room in the workspace.
static const float *prepack_weights(const float *weight, const ck_conv2d_shape *shape, const ck_conv_dims *d,
                                    int backend, int threads, void *workspace, size_t workspace_bytes) {
    if (backend != CK_GEMM_AVX512 && backend != CK_GEMM_AVX2) return NULL;
    float *packed = ck_conv_packed_weights(workspace, workspace_bytes, shape, d, threads);
    if (!packed) return NULL;
    #pragma omp parallel num_threads(threads)
    ck_gemm_prepack_a(packed, weight, (int)d->CRS, d->K, (int)d->CRS, backend, omp_get_thread_num(),
                      omp_get_num_threads());
    return packed;
}

// y (K × cols, rows ldc apart, images stride_c apart) = weight · B for `images` images of `cols` columns: through the
// prepacked weights when there are some, else ck_sgemm_images.
static void multiply_weights(int backend, const float *weight, const float *packed, const ck_conv_dims *d, int cols,
                             const float *b, int ldb, size_t stride_b, float *y, int ldc, size_t stride_c, int images) {
    const ck_gemm_b source = {.b = b, .ldb = ldb, .stride_b = stride_b};
    if (packed && ck_sgemm_packing(backend, d->K, cols, (int)d->CRS, weight, (int)d->CRS, packed, &source, y, ldc,
                                   stride_c, 0, (long)cols * images))
        return;
    ck_sgemm_images(0, d->K, cols, (int)d->CRS, 1.0f, weight, (int)d->CRS, b, ldb, stride_b, 0.0f, y, ldc, stride_c,
                    images);
}

static int conv_forward_gemm(float *y, const float *x, const float *weight, const ck_conv_epilogue *epilogue,
                             const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    ck_conv_dims d;
    int threads;
    int status = ck_conv_begin(shape, y && x && weight, 0, workspace, workspace_bytes, &d, &threads);
    if (status != CK_OK) return status;
    // The backend is read once: the panel lowering's instructions must match the micro-kernel's tier.
    const int backend = ck_get_gemm_backend();
    const float *packed_weights = prepack_weights(weight, shape, &d, backend, threads, workspace, workspace_bytes);

#if defined(__x86_64__)
    // Strided layers lower by gathers: measured faster on wide rows of spatial kernels (conv1, layer2.0 and
    // layer3.0 3x3/2), slower on 14×14 rows and on 1x1/2 downsamples, whose column matrix is small anyway.
    const int packed = backend == CK_GEMM_AVX512 || backend == CK_GEMM_AVX2;
    if (!d.pointwise && packed && (shape->stride_width == 1 || (d.R > 1 && d.W >= 28))) {
        // Implicit GEMM: the packed GEMM lowers the input straight into its panels. Each thread takes an
        // equal run of the batch's columns, in NC-sized pieces whose epilogue runs while they are in cache.
        const ck_im2col_panel lowering = {x, shape, d.P, d.Q};
        const ck_gemm_b source = {.pack_panel = backend == CK_GEMM_AVX512 ? ck_im2col_pack_panel
                                                                          : ck_im2col_pack_panel_avx2,
                                  .context = &lowering};
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
                if (!ck_sgemm_packing(backend, d.K, (int)d.PQ, (int)d.CRS, weight, (int)d.CRS, packed_weights, &source,
                                      y, (int)d.PQ, (size_t)d.K * d.PQ, j, j_end)) {
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
                    ck_im2col_columns(col + (size_t)i * d.CRS * d.PQ, d.PQ, b + (size_t)i * stride_b, shape, d.Q, 0,
                                      (int)d.PQ);
                b = col;
                stride_b = d.CRS * d.PQ;
            }
            const size_t out_offset = (size_t)n0 * d.K * d.PQ;
            multiply_weights(backend, weight, packed_weights, &d, (int)d.PQ, b, (int)d.PQ, stride_b, y + out_offset,
                             (int)d.PQ, (size_t)d.K * d.PQ, count);
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
            multiply_weights(backend, weight, packed_weights, &d, width, xn + j0, (int)d.HW, 0, yn, (int)d.PQ, 0, 1);
        } else {
            // Lower and multiply a cache-sized run of columns at a time, so sgemm reads the column
            // matrix from L2 rather than from memory.
            float *col = thread_columns(workspace, &d, omp_get_thread_num());
            const int chunk = lowering_chunk(&d);
            for (int c0 = j0; c0 < j1; c0 += chunk) {
                const int c1 = c0 + chunk < j1 ? c0 + chunk : j1;
                ck_im2col_columns(col, (size_t)(c1 - c0), xn, shape, d.Q, c0, c1);
                multiply_weights(backend, weight, packed_weights, &d, c1 - c0, col, c1 - c0, 0, yn + (c0 - j0),
                                 (int)d.PQ, 0, 1);
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
    if (ck_winograd_chosen(shape, 0))
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
