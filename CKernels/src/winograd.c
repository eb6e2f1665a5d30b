// Winograd convolution for 3x3, stride-1, padding-1 layers (37% of ResNet-50's FLOPs). Lavin & Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2016 (arXiv:1509.09308). Two tile sizes:
//   - F(2x2, 3x3): each 2x2 output tile costs 16 multiplies per (k, c) instead of 36, 2.25x fewer. Its transforms
//     have only ±1 and ½ coefficients, so float results stay within the reference twin's 1e-4.
//   - F(4x4, 3x3): each 4x4 tile costs 36 instead of 144, 4x fewer, but its transforms cost more per output and
//     round more (coefficients up to 8, and 1/6): about 6x F(2x2, 3x3)'s error, still within 1e-4 on ResNet-50's
//     shapes. ck_winograd_tile chooses per shape.
//
//   U = G g Gᵀ (per k, c)   V = Bᵀ d B (per c, tile)   M_ξ = U_ξ · V_ξ (16 or 36 sgemms)   Y = Aᵀ M A
//
// Backward-input of such a layer is itself one (dx = conv(dy, filters transposed and turned 180°), padding 1),
// so it runs through the same driver; only where the filters are read differs (ck_winograd_filters).
//
// This file: the choices, workspace sizing, the scalar kernel transform (the vector ones' fallback) and the
// driver; the transforms proper are in winograd_tier.h (written once for both CPU tiers) and winograd_avx512.c and
// winograd_avx2.c (what differs by vector width). Entered from conv2d_forward.c and conv2d_backward.c.
#include "winograd.h"
#include <stdint.h>
#include <stdlib.h>

// Tiles of one thread's share are transformed and multiplied in chunks whose V and M stay cache-sized.
static int chunk_tiles(int C, int K, int products) {
    const uint64_t per_tile_bytes = 4ull * (uint64_t)products * ((uint64_t)C + (uint64_t)K);
    uint64_t chunk = (2ull << 20) / per_tile_bytes;
    if (chunk < 64) chunk = 64;
    if (chunk > 1024) chunk = 1024;
    return (int)chunk;
}

int ck_winograd_applies(const ck_conv2d_shape *s) {
    return s->kernel_height == 3 && s->kernel_width == 3 && s->stride_height == 1 && s->stride_width == 1 &&
           s->pad_height == 1 && s->pad_width == 1;
}

// Winograd for 3x3 stride-1 layers only where it measures faster (make bench-kernels prints both). -1: not
// decided yet; then RESNETFUSION_WINOGRAD=never|always sets it for a whole process (to compare whole models).
static _Atomic int winograd_mode = -1;

static int mode_from_environment(void) {
    const char *forced = getenv("RESNETFUSION_WINOGRAD");
    if (forced && strcmp(forced, "never") == 0) return CK_WINOGRAD_NEVER;
    if (forced && strcmp(forced, "always") == 0) return CK_WINOGRAD_ALWAYS;
    return CK_WINOGRAD_AUTO;
}

void ck_conv2d_set_winograd(int mode) {
    winograd_mode = mode == CK_WINOGRAD_NEVER || mode == CK_WINOGRAD_ALWAYS ? mode : CK_WINOGRAD_AUTO;
}

// Outputs per plane of a layer Winograd applies to (3x3, stride 1, padding 1: the input's size). Not through
// ck_conv2d_output_height, whose shape check reads the tile.
static long plane_outputs(const ck_conv2d_shape *shape) { return (long)shape->in_height * shape->in_width; }

int ck_winograd_chosen(const ck_conv2d_shape *shape) {
    if (!shape || !ck_winograd_applies(shape)) return 0;
    int mode = winograd_mode;
    if (mode < 0) winograd_mode = mode = mode_from_environment();
    if (mode != CK_WINOGRAD_AUTO) return mode == CK_WINOGRAD_ALWAYS;
    // Measured (make bench-kernels, batch 8): the fastest Winograd is 1.5–3x the GEMM on 14×14 and larger planes, in
    // all three kernels and on both tiers. On 7×7 (layer4), with an image's 16 tiles of 2x2 in one vector of lanes,
    // it is 1.17–1.36x in the forward and backward-input on both tiers (the weight gradient: below). Smaller planes
    // were not measured: the GEMM keeps them.
    return plane_outputs(shape) >= 49;
}

int ck_winograd_chosen_for_weight_gradient(const ck_conv2d_shape *shape) {
    if (!ck_winograd_chosen(shape)) return 0;
    if (winograd_mode == CK_WINOGRAD_ALWAYS) return 1;
    // Measured on 7×7 (layer4 3x3, make bench-kernels, batch 8, four runs): F(2x2, 3x3)'s weight gradient took
    // 8.6–9.4 ms against the AVX-512 GEMM's 7.9–8.2 (0.86–0.96x), and 12.1 against 13.1 with AVX2 (1.08–1.10x).
    // OpenBLAS, the other backend, is slower than either.
    return plane_outputs(shape) >= 196 || ck_get_gemm_backend() != CK_GEMM_AVX512;
}

// The output tile: 2 or 4 for the whole process (ck_conv2d_set_winograd_tile, RESNETFUSION_WINOGRAD_TILE=2|4),
// or 0, chosen per shape. -1: not read from the environment yet.
static _Atomic int winograd_tile_mode = -1;

void ck_conv2d_set_winograd_tile(int tile) { winograd_tile_mode = tile == 2 || tile == 4 ? tile : 0; }

int ck_winograd_tile(const ck_conv2d_shape *shape) {
    int mode = winograd_tile_mode;
    if (mode < 0) {
        const char *forced = getenv("RESNETFUSION_WINOGRAD_TILE");
        mode = forced && strcmp(forced, "2") == 0 ? 2 : forced && strcmp(forced, "4") == 0 ? 4 : 0;
        winograd_tile_mode = mode;
    }
    if (mode) return mode;
    // Measured (batch 8, forward, F(2x2, 3x3) → F(4x4, 3x3) ms), AVX-512: 56×56×64 6.2 → 4.7, 28×28×128 4.6 → 3.5,
    // 14×14×256 4.4 → 3.8, but 7×7×512 5.8 → 13.5 (4 tiles of 4x4 an image, 64 outputs for 49: the 36 products are
    // too narrow for the GEMM); AVX2: 11.7 → 7.7, 8.0 → 5.5, 7.6 → 6.6, 10.7 → 14.7. Backward-input alike.
    return plane_outputs(shape) >= 196 ? 4 : 2;
}

// U (or the weight gradient's first accumulator, M), then per thread its V and M chunks, then (F(2x2, 3x3) only)
// the weight gradient's accumulators of threads 2 and up: thread 1's lives in the packed kernels' room, which every
// Winograd layer's workspace has after its scratch (16 products or more, each at least K·C) and which the weight
// gradient does not use. 0 on overflow.
static size_t workspace_floats_for(const ck_conv2d_shape *s, int threads, int tile) {
    const size_t C = (size_t)s->in_channels, K = (size_t)s->out_channels;
    const size_t products = (size_t)ck_winograd_products(tile);
    const size_t chunk = (size_t)chunk_tiles((int)C, (int)K, (int)products);
    const size_t kernels = ck_mul_size(ck_mul_size(products, K), C);
    const size_t per_thread = ck_mul_size(ck_mul_size(products * chunk, C + K), (size_t)threads);
    const size_t others = tile == 2 && threads > 2 ? (size_t)threads - 2 : 0;
    const size_t accumulators = ck_mul_size(kernels, others);
    if (!kernels || !per_thread || (others && !accumulators)) return 0;
    const size_t total = kernels + per_thread + accumulators;
    return total < kernels + per_thread ? 0 : total;
}

size_t ck_winograd_workspace_floats(const ck_conv2d_shape *s, int threads, int tile) {
    const size_t small = workspace_floats_for(s, threads, 2);
    if (!small || tile == 2) return small;
    const size_t large = workspace_floats_for(s, threads, 4);
    return !large ? 0 : large > small ? large : small;
}

// The transforms this CPU runs: 512 (AVX-512) or 256 (AVX2 + FMA, the build floor).
static int vector_bits(void) { return ck_cpu_has_avx512() ? 512 : 256; }

// G of each tile (alpha × 3, alpha = tile + 2): F(2x2, 3x3)'s, then F(4x4, 3x3)'s (winograd_tier.h).
static const float G2[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
static const float G4[6][3] = {{0.25f, 0, 0},
                               {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                               {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                               {1.0f / 24, 1.0f / 12, 1.0f / 6},
                               {1.0f / 24, -1.0f / 12, 1.0f / 6},
                               {0, 0, 1}};

// U_ξ (K × C) for ξ = alpha·i + j: G g Gᵀ, one (k, c) at a time: the vector transforms' fallback.
static void transform_kernel(float *U, const ck_winograd_filters *f, size_t KC, int C, int k, int c, int tile) {
    const int alpha = tile + 2;
    const float(*G)[3] = tile == 2 ? G2 : G4;
    const float *taps = f->weight + (size_t)k * f->k_stride + (size_t)c * f->c_stride;
    float g[9];
    for (int i = 0; i < 9; i++) g[i] = taps[f->reversed ? 8 - i : i];
    float t[6][3];  // G g
    for (int i = 0; i < alpha; i++)
        for (int col = 0; col < 3; col++) t[i][col] = G[i][0] * g[col] + G[i][1] * g[3 + col] + G[i][2] * g[6 + col];
    for (int i = 0; i < alpha; i++)
        for (int j = 0; j < alpha; j++)
            U[(size_t)(alpha * i + j) * KC + (size_t)k * C + c] = t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2];
}

static void transform_kernels(float *U, const ck_winograd_filters *f, int K, int C, int tile, int bits, int threads) {
    const size_t KC = (size_t)K * C;
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int k = 0; k < K; k++) {
        for (int c = 0; c < C;) {
            int done = tile == 4 ? (bits == 512 ? ck_winograd4_transform_kernels_avx512(U, f, K, C, k, c)
                                                : ck_winograd4_transform_kernels_avx2(U, f, K, C, k, c))
                                 : (bits == 512 ? ck_winograd_transform_kernels_avx512(U, f, K, C, k, c)
                                                : ck_winograd_transform_kernels_avx2(U, f, K, C, k, c));
            if (done == 0) {  // a filter stride past the gathers' reach
                transform_kernel(U, f, KC, C, k, c, tile);
                done = 1;
            }
            c += done;
        }
    }
}

// How a layer's tiles are shared out: a global tile index walks images, then tile rows, then tile columns; each
// thread takes an even run of them, in chunks whose transformed tiles stay cache-sized, with per-thread buffers for
// one chunk: the input side V (products·C·chunk floats), then the output side (products·K·chunk).
typedef struct {
    int tile, products, tiles_h, tiles_w, total, chunk;
    size_t per_thread_floats;
} tiling;

static tiling tiling_for(const ck_conv2d_shape *s, int P, int Q, int tile) {
    const int C = s->in_channels, K = s->out_channels, products = ck_winograd_products(tile);
    tiling g = {tile, products, (P + tile - 1) / tile, (Q + tile - 1) / tile, 0, chunk_tiles(C, K, products), 0};
    g.total = s->batch * g.tiles_h * g.tiles_w;
    g.per_thread_floats = (size_t)products * ((size_t)C + (size_t)K) * (size_t)g.chunk;
    return g;
}

// V_ξ[c][t − t0] = (Bᵀ d B)_ξ for tiles [t0, t1): this tile's and tier's transform. F(2x2, 3x3)'s
// Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]; F(4x4, 3x3)'s is in winograd_tier.h.
static void transform_inputs(float *V, const float *x, const ck_conv2d_shape *s, const tiling *g, int t0, int t1,
                             int bits) {
    if (g->tile == 4) {
        if (bits == 512) ck_winograd4_transform_inputs_avx512(V, x, s, g->tiles_h, g->tiles_w, t0, t1);
        else ck_winograd4_transform_inputs_avx2(V, x, s, g->tiles_h, g->tiles_w, t0, t1);
    } else {
        if (bits == 512) ck_winograd_transform_inputs_avx512(V, x, s, g->tiles_h, g->tiles_w, t0, t1);
        else ck_winograd_transform_inputs_avx2(V, x, s, g->tiles_h, g->tiles_w, t0, t1);
    }
}

// y from M for tiles [t0, t1), with the epilogue: this tile's and tier's transform. F(2x2, 3x3)'s
// Aᵀ = [1 1 1 0; 0 1 −1 −1], clipped at the image's last row and column.
static void transform_outputs(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s, int P,
                              int Q, const tiling *g, int t0, int t1, int bits) {
    if (g->tile == 4) {
        if (bits == 512) ck_winograd4_transform_outputs_avx512(y, M, e, s, P, Q, g->tiles_h, g->tiles_w, t0, t1);
        else ck_winograd4_transform_outputs_avx2(y, M, e, s, P, Q, g->tiles_h, g->tiles_w, t0, t1);
    } else {
        if (bits == 512) ck_winograd_transform_outputs_avx512(y, M, e, s, P, Q, g->tiles_h, g->tiles_w, t0, t1);
        else ck_winograd_transform_outputs_avx2(y, M, e, s, P, Q, g->tiles_h, g->tiles_w, t0, t1);
    }
}

// The products' U_ξ (K × C each, in U) packed for the packed GEMM of `backend`, one after another.
static void pack_kernels(float *packed, const float *U, int K, int C, int products, int backend, int threads) {
    const size_t packed_floats = ck_gemm_packed_a_floats(K, C);
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int xi = 0; xi < products; xi++)
        ck_gemm_prepack_a(packed + (size_t)xi * packed_floats, U + (size_t)xi * K * C, C, K, C, backend, 0, 1);
}

void ck_winograd_pack_kernels(float *packed, const ck_winograd_filters *filters, int K, int C, int tile, int backend,
                              int threads, float *workspace) {
    transform_kernels(workspace, filters, K, C, tile, vector_bits(), threads);
    pack_kernels(packed, workspace, K, C, ck_winograd_products(tile), backend, threads);
}

int ck_winograd_forward(float *y, const float *x, const ck_winograd_filters *filters, const ck_conv_epilogue *epilogue,
                        const ck_conv2d_shape *s, int P, int Q, int tile, int threads, float *workspace,
                        float *packed_kernels, int kernels_packed) {
    const int C = s->in_channels, K = s->out_channels;
    const tiling g = tiling_for(s, P, Q, tile);
    float *U = workspace;
    float *per_thread = workspace + (size_t)g.products * K * C;
    const int bits = vector_bits();
    // Each U_ξ packed once for the packed GEMM, not once per chunk of tiles by every thread, or packed ahead by the
    // caller. Kernels packed ahead are not transformed again: U is then needed only by a thread whose packing buffer
    // is missing (out of memory), which multiplies with ck_sgemm instead, and is made for it below. Transforming
    // them on every call had been 1.6% of inference and of frozen-train-bn (perf).
    const int backend = ck_get_gemm_backend();
    if (backend != CK_GEMM_AVX512 && backend != CK_GEMM_AVX2) packed_kernels = NULL;
    const size_t packed_floats = ck_gemm_packed_a_floats(K, C);
    const int ahead = packed_kernels && kernels_packed;
    if (!ahead) {
        transform_kernels(U, filters, K, C, tile, bits, threads);
        if (packed_kernels) pack_kernels(packed_kernels, U, K, C, g.products, backend, threads);
    }
    int some_thread_without_buffer = 0;
    #pragma omp parallel num_threads(threads)
    {
        if (ahead) {
            // The team is fixed inside the region and a thread's buffer, once there, stays: checked here, the
            // products below cannot fail for want of one.
            if (!ck_gemm_packing_ready(backend)) {
                #pragma omp atomic write
                some_thread_without_buffer = 1;
            }
            #pragma omp barrier
            #pragma omp single
            {
                int missing;
                #pragma omp atomic read
                missing = some_thread_without_buffer;
                if (missing) transform_kernels(U, filters, K, C, tile, bits, 1);
            }  // the single's barrier: U is complete before any thread multiplies
        }
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        float *V = per_thread + (size_t)t * g.per_thread_floats;
        float *M = V + (size_t)g.products * C * g.chunk;
        int begin, end;
        ck_block_range(g.total, team, t, &begin, &end);
        for (int t0 = begin; t0 < end; t0 += g.chunk) {
            const int t1 = end < t0 + g.chunk ? end : t0 + g.chunk, width = t1 - t0;
            transform_inputs(V, x, s, &g, t0, t1, bits);
            for (int xi = 0; xi < g.products; xi++) {
                const float *u = U + (size_t)xi * K * C, *v = V + (size_t)xi * C * width;
                float *m = M + (size_t)xi * K * width;
                const ck_gemm_b source = {.b = v, .ldb = width};
                if (packed_kernels && ck_sgemm_packing(backend, K, width, C, u, C,
                                                       packed_kernels + (size_t)xi * packed_floats, &source, m, width,
                                                       0, 0, width, NULL))
                    continue;
                ck_sgemm(0, 0, K, width, C, 1.0f, u, C, v, width, 0.0f, m, width);
            }
            transform_outputs(y, M, epilogue, s, P, Q, &g, t0, t1, bits);
        }
    }
    return CK_OK;
}

// ---------------------------------------------------------------------------------------------- weight gradient
// The forward's adjoint in g: y_t = Aᵀ [Σ_c (G g_kc Gᵀ) ⊙ V_ct] A gives
//   dg_kc = Gᵀ [Σ_t (A dy_kt Aᵀ) ⊙ V_ct] G,
// so the 16 products M_ξ (K × C) = Ŷ_ξ (K × tiles) · V_ξ (C × tiles)ᵀ reduce over tiles: long, cache-friendly
// reductions where the direct backward-weight reduces over one image's pixels (49 on layer4).

// Thread t's accumulator for the 16 products (16·K·C floats): thread 0's at the start of the workspace, thread 1's in
// the spare room, the others' after the per-thread buffers.
static float *weight_accumulator(float *workspace, float *spare, float *others, size_t kernels, int t) {
    return t == 0 ? workspace : t == 1 ? spare : others + (size_t)(t - 2) * kernels;
}

int ck_winograd_backward_weight(float *dweight, const float *dy, const float *x, const ck_conv2d_shape *s, int P, int Q,
                                int threads, float *workspace, float *spare) {
    const int C = s->in_channels, K = s->out_channels;
    const tiling g = tiling_for(s, P, Q, 2);
    const size_t KC = (size_t)K * C, kernels = 16 * KC;
    float *per_thread = workspace + kernels;
    float *others = per_thread + (size_t)threads * g.per_thread_floats;
    const int bits = vector_bits();
    #pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        float *M = weight_accumulator(workspace, spare, others, kernels, t);
        float *V = per_thread + (size_t)t * g.per_thread_floats;
        float *Y = V + (size_t)16 * C * g.chunk;
        int begin, end;
        ck_block_range(g.total, team, t, &begin, &end);
        for (int t0 = begin; t0 < end; t0 += g.chunk) {
            const int t1 = end < t0 + g.chunk ? end : t0 + g.chunk, width = t1 - t0;
            transform_inputs(V, x, s, &g, t0, t1, bits);
            // Ŷ_ξ[k][t − t0] = (A dy Aᵀ)_ξ for each tile's 2x2 of dy (zero past P, Q), A = [1 0; 1 1; 1 −1; 0 −1].
            if (bits == 512) ck_winograd_transform_output_gradients_avx512(Y, dy, s, P, Q, g.tiles_h, g.tiles_w, t0, t1);
            else ck_winograd_transform_output_gradients_avx2(Y, dy, s, P, Q, g.tiles_h, g.tiles_w, t0, t1);
            const float beta = t0 == begin ? 0.0f : 1.0f;  // the first chunk starts the accumulator
            for (int xi = 0; xi < 16; xi++)
                ck_sgemm(0, 1, K, C, width, 1.0f, Y + (size_t)xi * K * width, width, V + (size_t)xi * C * width, width,
                         beta, M + (size_t)xi * KC, C);
        }
        if (begin >= end) memset(M, 0, sizeof(float) * kernels);  // a thread without tiles adds nothing
        #pragma omp barrier
        // dweight += Gᵀ (Σ_threads M) G, G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1], each thread a run of (k, c).
        size_t i0 = KC * (size_t)t / (size_t)team, i1 = KC * (size_t)(t + 1) / (size_t)team;
        for (size_t kc = i0; kc < i1; kc++) {
            float m[4][4];
            for (int xi = 0; xi < 16; xi++) {
                float sum = workspace[(size_t)xi * KC + kc];
                for (int other = 1; other < team; other++)
                    sum += weight_accumulator(workspace, spare, others, kernels, other)[(size_t)xi * KC + kc];
                m[xi / 4][xi % 4] = sum;
            }
            float gm[3][4];  // Gᵀ m
            for (int j = 0; j < 4; j++) {
                gm[0][j] = m[0][j] + 0.5f * (m[1][j] + m[2][j]);
                gm[1][j] = 0.5f * (m[1][j] - m[2][j]);
                gm[2][j] = 0.5f * (m[1][j] + m[2][j]) + m[3][j];
            }
            float *g = dweight + kc * 9;
            for (int i = 0; i < 3; i++) {
                g[3 * i + 0] += gm[i][0] + 0.5f * (gm[i][1] + gm[i][2]);
                g[3 * i + 1] += 0.5f * (gm[i][1] - gm[i][2]);
                g[3 * i + 2] += 0.5f * (gm[i][1] + gm[i][2]) + gm[i][3];
            }
        }
    }
    return CK_OK;
}
