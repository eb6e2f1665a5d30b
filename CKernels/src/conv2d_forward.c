// conv2d forward: ck_conv2d_forward_f32 and its fused form choose, per shape, between Winograd F(2x2, 3x3) or
// F(4x4, 3x3) (winograd.c) and a GEMM; the GEMM lowers the input one of three ways:
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

// ------------------------------------------------------------------------------ weights packed ahead
// A buffer of weights packed ahead (ck_conv2d_pack_weights_f32) starts with what it was packed for. A forward
// uses it only when that is its own choice now (the GEMM backend or the Winograd mode may have changed since)
// and packs as usual otherwise, so a stale buffer costs time, never a wrong result.
#define PACKED_MAGIC 0x57504b43u  // "CKPW"
#define PACKED_HEADER_BYTES 64
typedef struct {
    uint32_t magic;
    int32_t backend, winograd_tile, K, C, R, S;  // winograd_tile 0: the GEMM's
    uint64_t floats;
} packed_header;
_Static_assert(sizeof(packed_header) <= PACKED_HEADER_BYTES, "the header fits its 64 bytes");

// Floats of the packed weights: the GEMM's K × CRS, or the Winograd tile's 16 or 36 transformed K × C kernels.
// 0 on overflow.
static size_t packed_floats_for(const ck_conv_dims *d, int winograd_tile) {
    return winograd_tile ? ck_mul_size((size_t)ck_winograd_products(winograd_tile), ck_gemm_packed_a_floats(d->K, d->C))
                         : ck_gemm_packed_a_floats(d->K, (int)d->CRS);
}

// The Winograd tile this layer's forward takes (d holds the tile read for this call); 0 for the GEMM.
static int forward_winograd_tile(const ck_conv2d_shape *shape, const ck_conv_dims *d) {
    return d->winograd_tile && ck_winograd_chosen(shape) ? d->winograd_tile : 0;
}

// Bytes of a packed-weights buffer for `backend` and this choice; 0 when nothing is packed ahead, or on overflow.
static size_t packed_bytes_for(const ck_conv_dims *d, int backend, int winograd_tile) {
    if (backend != CK_GEMM_AVX512 && backend != CK_GEMM_AVX2) return 0;
    const size_t bytes = ck_mul_size(packed_floats_for(d, winograd_tile), sizeof(float));
    if (!bytes || bytes + PACKED_HEADER_BYTES < bytes) return 0;
    return bytes + PACKED_HEADER_BYTES;
}

size_t ck_conv2d_packed_weights_size(const ck_conv2d_shape *shape) {
    ck_conv_dims d;
    if (ck_conv_check(shape, &d) != CK_OK) return 0;
    return packed_bytes_for(&d, ck_get_gemm_backend(), forward_winograd_tile(shape, &d));
}

// The packed weights when the buffer holds them for this call's choice; NULL otherwise.
static const float *packed_weights_for(const void *packed, size_t packed_bytes, const ck_conv_dims *d, int backend,
                                       int winograd_tile) {
    if (!packed || packed_bytes < PACKED_HEADER_BYTES) return NULL;
    const packed_header *h = packed;
    const size_t floats = packed_floats_for(d, winograd_tile);
    if (h->magic != PACKED_MAGIC || h->backend != backend || h->winograd_tile != winograd_tile || h->K != d->K ||
        h->C != d->C || h->R != d->R || h->S != d->S || floats == 0 || h->floats != floats ||
        (packed_bytes - PACKED_HEADER_BYTES) / sizeof(float) < floats)
        return NULL;
    return (const float *)((const char *)packed + PACKED_HEADER_BYTES);
}

int ck_conv2d_pack_weights_f32(void *packed, size_t packed_bytes, const float *weight, const ck_conv2d_shape *shape,
                               void *workspace, size_t workspace_bytes) {
    ck_conv_dims d;
    int threads;
    int status = ck_conv_begin(shape, packed && weight, 1, workspace, workspace_bytes, &d, &threads);
    if (status != CK_OK) return status;
    // The backend and the choice read once: the size checked is the size packed.
    const int backend = ck_get_gemm_backend(), winograd_tile = forward_winograd_tile(shape, &d);
    const size_t need = packed_bytes_for(&d, backend, winograd_tile);
    if (need == 0) return CK_ERR_BAD_SIZE;  // nothing to pack for this GEMM backend
    if (packed_bytes < need) return CK_ERR_WORKSPACE;
    float *data = (float *)((char *)packed + PACKED_HEADER_BYTES);
    if (winograd_tile) {
        const ck_winograd_filters filters = {weight, d.CRS, 9, 0};
        ck_winograd_pack_kernels(data, &filters, d.K, d.C, winograd_tile, backend, threads, (float *)workspace);
    } else {
        #pragma omp parallel num_threads(threads)
        ck_gemm_prepack_a(data, weight, (int)d.CRS, d.K, (int)d.CRS, backend, omp_get_thread_num(),
                          omp_get_num_threads());
    }
    memset(packed, 0, PACKED_HEADER_BYTES);
    const packed_header header = {PACKED_MAGIC, backend, winograd_tile, d.K, d.C, d.R, d.S,
                                  packed_floats_for(&d, winograd_tile)};
    memcpy(packed, &header, sizeof header);
    return CK_OK;
}

// ------------------------------------------------------------------------------------------ forward
static int conv_forward_winograd(float *y, const float *x, const float *weight, const void *packed, size_t packed_bytes,
                                 const ck_conv_epilogue *epilogue, const ck_conv2d_shape *shape, void *workspace,
                                 size_t workspace_bytes) {
    if (shape && !ck_winograd_applies(shape)) return CK_ERR_BAD_SIZE;
    ck_conv_dims d;
    int threads;
    int status = ck_conv_begin(shape, y && x && weight, 1, workspace, workspace_bytes, &d, &threads);
    if (status != CK_OK) return status;
    const ck_winograd_filters filters = {weight, d.CRS, 9, 0};
    const float *given = packed_weights_for(packed, packed_bytes, &d, ck_get_gemm_backend(), d.winograd_tile);
    float *region = given ? (float *)given : ck_conv_packed_weights(workspace, workspace_bytes, shape, &d, threads);
    return ck_winograd_forward(y, x, &filters, epilogue, shape, d.P, d.Q, d.winograd_tile, threads, (float *)workspace,
                               region, given != NULL);
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

// y (K × cols, rows ldc apart, images stride_c apart) = the epilogue of weight · B for `images` images of `cols`
// columns; the epilogue's residual starts where y does. Through the prepacked weights when there are some, with the
// epilogue in the GEMM's stores; else ck_sgemm_images, then the epilogue on each image's block.
static void multiply_weights(int backend, const float *weight, const float *packed, const ck_conv_dims *d, int cols,
                             const float *b, int ldb, size_t stride_b, float *y, int ldc, size_t stride_c, int images,
                             const ck_conv_epilogue *epilogue) {
    const ck_gemm_b source = {.b = b, .ldb = ldb, .stride_b = stride_b};
    if (packed && ck_sgemm_packing(backend, d->K, cols, (int)d->CRS, weight, (int)d->CRS, packed, &source, y, ldc,
                                   stride_c, 0, (long)cols * images, epilogue))
        return;
    ck_sgemm_images(0, d->K, cols, (int)d->CRS, 1.0f, weight, (int)d->CRS, b, ldb, stride_b, 0.0f, y, ldc, stride_c,
                    images);
    for (int i = 0; i < images; i++)
        ck_conv_apply_epilogue(y + (size_t)i * stride_c, (size_t)ldc, d->K, cols, epilogue,
                               epilogue->residual ? epilogue->residual + (size_t)i * stride_c : NULL);
}

// The epilogue with its residual moved to output position `offset` (where the y passed alongside starts).
static ck_conv_epilogue epilogue_at(const ck_conv_epilogue *e, size_t offset) {
    return (ck_conv_epilogue){e->bias, e->residual ? e->residual + offset : NULL, e->relu};
}

static int conv_forward_gemm(float *y, const float *x, const float *weight, const void *packed, size_t packed_bytes,
                             const ck_conv_epilogue *epilogue, const ck_conv2d_shape *shape, void *workspace,
                             size_t workspace_bytes) {
    ck_conv_dims d;
    int threads;
    int status = ck_conv_begin(shape, y && x && weight, 0, workspace, workspace_bytes, &d, &threads);
    if (status != CK_OK) return status;
    // The backend is read once: the panel lowering's instructions must match the micro-kernel's tier.
    const int backend = ck_get_gemm_backend();
    const float *packed_weights = packed_weights_for(packed, packed_bytes, &d, backend, 0);
    if (!packed_weights) packed_weights = prepack_weights(weight, shape, &d, backend, threads, workspace, workspace_bytes);

#if defined(__x86_64__)
    // Strided layers lower by gathers: measured faster on wide rows of spatial kernels (conv1, layer2.0 and
    // layer3.0 3x3/2), slower on 14×14 rows and on 1x1/2 downsamples, whose column matrix is small anyway.
    const int packed_backend = backend == CK_GEMM_AVX512 || backend == CK_GEMM_AVX2;
    if (!d.pointwise && packed_backend && (shape->stride_width == 1 || (d.R > 1 && d.W >= 28))) {
        // Implicit GEMM: the packed GEMM lowers the input straight into its panels and applies the epilogue in its
        // stores. Each thread takes an equal run of the batch's columns, in NC-sized pieces.
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
                                      y, (int)d.PQ, (size_t)d.K * d.PQ, j, j_end, epilogue)) {
                    failed = 1;  // no packing buffer: the path below computes all of y afresh
                    break;
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
            const ck_conv_epilogue here = epilogue_at(epilogue, out_offset);
            multiply_weights(backend, weight, packed_weights, &d, (int)d.PQ, b, (int)d.PQ, stride_b, y + out_offset,
                             (int)d.PQ, (size_t)d.K * d.PQ, count, &here);
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
            const ck_conv_epilogue here = epilogue_at(epilogue, out_offset);
            multiply_weights(backend, weight, packed_weights, &d, width, xn + j0, (int)d.HW, 0, yn, (int)d.PQ, 0, 1,
                             &here);
        } else {
            // Lower and multiply a cache-sized run of columns at a time, so sgemm reads the column
            // matrix from L2 rather than from memory.
            float *col = thread_columns(workspace, &d, omp_get_thread_num());
            const int chunk = lowering_chunk(&d);
            for (int c0 = j0; c0 < j1; c0 += chunk) {
                const int c1 = c0 + chunk < j1 ? c0 + chunk : j1;
                ck_im2col_columns(col, (size_t)(c1 - c0), xn, shape, d.Q, c0, c1);
                const ck_conv_epilogue here = epilogue_at(epilogue, out_offset + (size_t)(c0 - j0));
                multiply_weights(backend, weight, packed_weights, &d, c1 - c0, col, c1 - c0, 0, yn + (c0 - j0),
                                 (int)d.PQ, 0, 1, &here);
            }
        }
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
    return ck_conv2d_forward_fused_packed_f32(y, x, weight, NULL, 0, bias, residual, relu, shape, workspace,
                                              workspace_bytes);
}

int ck_conv2d_forward_fused_packed_f32(float *y, const float *x, const float *weight, const void *packed,
                                       size_t packed_bytes, const float *bias, const float *residual, int relu,
                                       const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    const ck_conv_epilogue epilogue = {bias, residual, relu};
    if (ck_winograd_chosen(shape))
        return conv_forward_winograd(y, x, weight, packed, packed_bytes, &epilogue, shape, workspace, workspace_bytes);
    return conv_forward_gemm(y, x, weight, packed, packed_bytes, &epilogue, shape, workspace, workspace_bytes);
}

int ck_conv2d_forward_winograd_f32(float *y, const float *x, const float *weight, const float *bias,
                                   const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    const ck_conv_epilogue epilogue = {bias, NULL, 0};
    return conv_forward_winograd(y, x, weight, NULL, 0, &epilogue, shape, workspace, workspace_bytes);
}

int ck_conv2d_forward_gemm_f32(float *y, const float *x, const float *weight, const float *bias,
                               const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes) {
    const ck_conv_epilogue epilogue = {bias, NULL, 0};
    return conv_forward_gemm(y, x, weight, NULL, 0, &epilogue, shape, workspace, workspace_bytes);
}
