// Winograd F(2x2, 3x3) forward convolution for 3x3, stride-1, padding-1 layers (37% of ResNet-50's
// FLOPs): each 2x2 output tile costs 16 multiplies per (k, c) instead of 36, 2.25x fewer; the
// multiplies become 16 independent sgemms. Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016 (arXiv:1509.09308). F(2x2, 3x3) rather than F(4x4, 3x3): its transforms have only
// ±1 and ½ coefficients, so float results stay within the reference twin's 1e-4 tolerance.
//
//   U = G g Gᵀ (per k, c)   V = Bᵀ d B (per c, tile)   M_ξ = U_ξ · V_ξ (16 sgemms)   Y = Aᵀ M A
//
// This file: workspace sizing, the scalar transforms and the driver; the AVX-512 transforms are in
// winograd_avx512.c. Entered from conv2d_forward.c.
#include "winograd.h"
#include <stdint.h>

// Tiles of one thread's share are transformed and multiplied in chunks whose V and M stay cache-sized.
static int chunk_tiles(int C, int K) {
    const uint64_t per_tile_bytes = 64ull * ((uint64_t)C + (uint64_t)K);
    uint64_t chunk = (2ull << 20) / per_tile_bytes;
    if (chunk < 64) chunk = 64;
    if (chunk > 1024) chunk = 1024;
    return (int)chunk;
}

int ck_winograd_applies(const ck_conv2d_shape *s) {
    return s->kernel_height == 3 && s->kernel_width == 3 && s->stride_height == 1 && s->stride_width == 1 &&
           s->pad_height == 1 && s->pad_width == 1;
}

size_t ck_winograd_workspace_floats(const ck_conv2d_shape *s, int threads) {
    const size_t C = (size_t)s->in_channels, K = (size_t)s->out_channels;
    const size_t chunk = (size_t)chunk_tiles((int)C, (int)K);
    const size_t kernels = ck_mul_size(ck_mul_size(16, K), C);
    const size_t per_thread = ck_mul_size(ck_mul_size(16 * chunk, C + K), (size_t)threads);
    if (!kernels || !per_thread || kernels + per_thread < kernels) return 0;
    return kernels + per_thread;
}


// U_ξ (K × C) for ξ = 4·i + j: G g Gᵀ with G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1].
static void transform_kernels(float *U, const float *weight, int K, int C, int threads) {
    const size_t KC = (size_t)K * C;
#ifdef CK_HAVE_AVX512_WINOGRAD
    if (ck_cpu_has_avx512()) {
        #pragma omp parallel for schedule(static) num_threads(threads)
        for (int k = 0; k < K; k++)
            for (int c = 0; c < C;) c += ck_winograd_transform_kernels_16(U, weight, K, C, k, c);
        return;
    }
#endif
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++) {
            const float *g = weight + ((size_t)k * C + c) * 9;
            float t[4][3];  // G g
            for (int col = 0; col < 3; col++) {
                const float g0 = g[col], g1 = g[3 + col], g2 = g[6 + col];
                t[0][col] = g0;
                t[1][col] = 0.5f * (g0 + g1 + g2);
                t[2][col] = 0.5f * (g0 - g1 + g2);
                t[3][col] = g2;
            }
            for (int i = 0; i < 4; i++) {
                const float a = t[i][0], b = t[i][1], cc = t[i][2];
                const float u[4] = {a, 0.5f * (a + b + cc), 0.5f * (a - b + cc), cc};
                for (int j = 0; j < 4; j++) U[(size_t)(4 * i + j) * KC + (size_t)k * C + c] = u[j];
            }
        }
}

// V_ξ[c][t − tile_begin] = (Bᵀ d B)_ξ for global tiles [tile_begin, tile_end), Bᵀ = [1 0 −1 0; 0 1 1 0;
// 0 −1 1 0; 0 1 0 −1]. A global tile index walks images, then tile rows, then tile columns.
static void transform_inputs(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                             int tile_begin, int tile_end) {
    const int C = s->in_channels, H = s->in_height, W = s->in_width;
    const int width = tile_end - tile_begin, per_image = tiles_h * tiles_w;
    const size_t plane_stride = (size_t)C * width;
    for (int c = 0; c < C; c++) {
        for (int t = tile_begin; t < tile_end; t++) {
            const int n = t / per_image, r = t % per_image;
            const int h0 = (r / tiles_w) * 2 - 1, w0 = (r % tiles_w) * 2 - 1;
            const float *plane = x + ((size_t)n * C + c) * H * W;
            float d[4][4];
            if (h0 >= 0 && w0 >= 0 && h0 + 4 <= H && w0 + 4 <= W) {
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) d[i][j] = plane[(size_t)(h0 + i) * W + w0 + j];
            } else {
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) {
                        const int h = h0 + i, w = w0 + j;
                        d[i][j] = (h >= 0 && h < H && w >= 0 && w < W) ? plane[(size_t)h * W + w] : 0.0f;
                    }
            }
            float bd[4][4];  // Bᵀ d
            for (int j = 0; j < 4; j++) {
                bd[0][j] = d[0][j] - d[2][j];
                bd[1][j] = d[1][j] + d[2][j];
                bd[2][j] = d[2][j] - d[1][j];
                bd[3][j] = d[1][j] - d[3][j];
            }
            float *out = V + (size_t)c * width + (t - tile_begin);
            for (int i = 0; i < 4; i++) {
                out[(size_t)(4 * i + 0) * plane_stride] = bd[i][0] - bd[i][2];
                out[(size_t)(4 * i + 1) * plane_stride] = bd[i][1] + bd[i][2];
                out[(size_t)(4 * i + 2) * plane_stride] = bd[i][2] - bd[i][1];
                out[(size_t)(4 * i + 3) * plane_stride] = bd[i][1] - bd[i][3];
            }
        }
    }
}

// y tile = Aᵀ m A (+ bias) with Aᵀ = [1 1 1 0; 0 1 −1 −1], clipped at the image's last row/column.
static void transform_outputs(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s, int P,
                              int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    const int K = s->out_channels;
    const int width = tile_end - tile_begin, per_image = tiles_h * tiles_w;
    const size_t plane_stride = (size_t)K * width;
    for (int k = 0; k < K; k++) {
        const float b = e->bias ? e->bias[k] : 0.0f;
        for (int t = tile_begin; t < tile_end; t++) {
            const int n = t / per_image, r = t % per_image;
            const int p0 = (r / tiles_w) * 2, q0 = (r % tiles_w) * 2;
            const float *in = M + (size_t)k * width + (t - tile_begin);
            float m[4][4];
            for (int xi = 0; xi < 16; xi++) m[xi / 4][xi % 4] = in[(size_t)xi * plane_stride];
            float am[2][4];  // Aᵀ m
            for (int j = 0; j < 4; j++) {
                am[0][j] = m[0][j] + m[1][j] + m[2][j];
                am[1][j] = m[1][j] - m[2][j] - m[3][j];
            }
            const size_t plane_offset = ((size_t)n * K + k) * P * Q;
            float *plane = y + plane_offset;
            const float *residual = e->residual ? e->residual + plane_offset : NULL;
            for (int i = 0; i < 2 && p0 + i < P; i++) {
                for (int j = 0; j < 2 && q0 + j < Q; j++) {
                    const size_t at = (size_t)(p0 + i) * Q + q0 + j;
                    float v = (j == 0 ? am[i][0] + am[i][1] + am[i][2] : am[i][1] - am[i][2] - am[i][3]) + b;
                    if (residual) v += residual[at];
                    plane[at] = e->relu && v < 0.0f ? 0.0f : v;  // NaN passes, as in PyTorch
                }
            }
        }
    }
}


int ck_winograd_forward(float *y, const float *x, const float *weight, const ck_conv_epilogue *epilogue,
                        const ck_conv2d_shape *s, int P, int Q, int threads, float *workspace) {
    const int C = s->in_channels, K = s->out_channels;
    const int tiles_h = (P + 1) / 2, tiles_w = (Q + 1) / 2;
    const int total_tiles = s->batch * tiles_h * tiles_w;
    const int chunk = chunk_tiles(C, K);
    float *U = workspace;
    float *per_thread = workspace + (size_t)16 * K * C;
    const size_t per_thread_floats = (size_t)16 * ((size_t)C + (size_t)K) * (size_t)chunk;
    transform_kernels(U, weight, K, C, threads);
    const int vector_transforms = ck_cpu_has_avx512();
    #pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        float *V = per_thread + (size_t)t * per_thread_floats;
        float *M = V + (size_t)16 * C * chunk;
        int begin, end;
        ck_block_range(total_tiles, team, t, &begin, &end);
        for (int t0 = begin; t0 < end; t0 += chunk) {
            const int t1 = end < t0 + chunk ? end : t0 + chunk, width = t1 - t0;
#ifdef CK_HAVE_AVX512_WINOGRAD
            if (vector_transforms) ck_winograd_transform_inputs_avx512(V, x, s, tiles_h, tiles_w, t0, t1);
            else
#endif
                transform_inputs(V, x, s, tiles_h, tiles_w, t0, t1);
            for (int xi = 0; xi < 16; xi++)
                ck_sgemm(0, 0, K, width, C, 1.0f, U + (size_t)xi * K * C, C, V + (size_t)xi * C * width, width,
                         0.0f, M + (size_t)xi * K * width, width);
#ifdef CK_HAVE_AVX512_WINOGRAD
            if (vector_transforms) ck_winograd_transform_outputs_avx512(y, M, epilogue, s, P, Q, tiles_h, tiles_w, t0, t1);
            else
#endif
                transform_outputs(y, M, epilogue, s, P, Q, tiles_h, tiles_w, t0, t1);
        }
    }
    return CK_OK;
}
