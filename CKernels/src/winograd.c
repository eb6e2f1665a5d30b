// Winograd F(2x2, 3x3) forward convolution for 3x3, stride-1, padding-1 layers (37% of ResNet-50's
// FLOPs): each 2x2 output tile costs 16 multiplies per (k, c) instead of 36, 2.25x fewer; the
// multiplies become 16 independent sgemms. Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016 (arXiv:1509.09308). F(2x2, 3x3) rather than F(4x4, 3x3): its transforms have only
// ±1 and ½ coefficients, so float results stay within the reference twin's 1e-4 tolerance.
//
//   U = G g Gᵀ (per k, c)   V = Bᵀ d B (per c, tile)   M_ξ = U_ξ · V_ξ (16 sgemms)   Y = Aᵀ M A
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

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
// transform_kernels for 16 input channels at a time (one per lane): 9 gathers, U rows written contiguously.
__attribute__((target("avx512f")))
static int transform_kernels_16(float *U, const float *weight, int K, int C, int k, int c0) {
    const size_t KC = (size_t)K * C;
    const int count = C - c0 < 16 ? C - c0 : 16;
    const __mmask16 in_run = (__mmask16)((1u << count) - 1);
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i nine = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(9));
    const float *g = weight + ((size_t)k * C + c0) * 9;
    const __m512 half = _mm512_set1_ps(0.5f);
    __m512 t[4][3];  // G g
    for (int col = 0; col < 3; col++) {
        const __m512 g0 = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in_run, nine, g + col, 4);
        const __m512 g1 = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in_run, nine, g + 3 + col, 4);
        const __m512 g2 = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in_run, nine, g + 6 + col, 4);
        t[0][col] = g0;
        t[1][col] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(g0, g1), g2));
        t[2][col] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(g0, g1), g2));
        t[3][col] = g2;
    }
    for (int i = 0; i < 4; i++) {
        const __m512 a = t[i][0], b = t[i][1], cc = t[i][2];
        const __m512 u[4] = {a, _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(a, b), cc)),
                             _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(a, b), cc)), cc};
        for (int j = 0; j < 4; j++) _mm512_mask_storeu_ps(U + (size_t)(4 * i + j) * KC + (size_t)k * C + c0, in_run, u[j]);
    }
    return count;
}
#endif

// U_ξ (K × C) for ξ = 4·i + j: G g Gᵀ with G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1].
static void transform_kernels(float *U, const float *weight, int K, int C, int threads) {
    const size_t KC = (size_t)K * C;
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    if (ck_cpu_has_avx512()) {
        #pragma omp parallel for schedule(static) num_threads(threads)
        for (int k = 0; k < K; k++)
            for (int c = 0; c < C;) c += transform_kernels_16(U, weight, K, C, k, c);
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

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define CK_HAVE_AVX512_WINOGRAD 1

// The AVX-512 transforms work on 16 neighbouring tiles of one tile row at a time, one tile per lane, so
// V and M are read and written as contiguous vectors (the scalar versions above scatter by 16 strides).

// Input column base + j + 2·l for lanes l < count, 0 outside [0, W): the j-th column of 16 tiles.
__attribute__((target("avx512f")))
static inline __m512 tile_columns(const float *row, int W, int base, int j, __mmask16 in_run) {
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i index = _mm512_add_epi32(_mm512_set1_epi32(base + j), _mm512_add_epi32(lanes, lanes));
    const __mmask16 valid = in_run & _mm512_cmpge_epi32_mask(index, _mm512_setzero_si512()) &
                            _mm512_cmplt_epi32_mask(index, _mm512_set1_epi32(W));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, index, row, 4);
}

__attribute__((target("avx512f")))
static void transform_inputs_avx512(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                                    int tile_begin, int tile_end) {
    const int C = s->in_channels, H = s->in_height, W = s->in_width;
    const int width = tile_end - tile_begin, per_image = tiles_h * tiles_w;
    const size_t plane_stride = (size_t)C * width;
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i even = _mm512_add_epi32(lanes, lanes), odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int t = tile_begin; t < tile_end;) {
        const int n = t / per_image, r = t % per_image, tile_row = r / tiles_w, tile_col = r % tiles_w;
        const int count = tiles_w - tile_col < tile_end - t ? (tiles_w - tile_col < 16 ? tiles_w - tile_col : 16)
                                                            : (tile_end - t < 16 ? tile_end - t : 16);
        const __mmask16 in_run = (__mmask16)((1u << count) - 1);
        const int h0 = tile_row * 2 - 1, base = tile_col * 2 - 1;
        // Inside the image: four plain loads per row and even/odd lanes; at an edge, masked gathers.
        const int inside = count == 16 && base >= 0 && base + 34 <= W;
        for (int c = 0; c < C; c++) {
            const float *plane = x + ((size_t)n * C + c) * H * W;
            __m512 d[4][4];
            for (int i = 0; i < 4; i++) {
                const int h = h0 + i;
                if (h < 0 || h >= H) {
                    for (int j = 0; j < 4; j++) d[i][j] = _mm512_setzero_ps();
                    continue;
                }
                const float *row = plane + (size_t)h * W;
                if (inside) {
                    const __m512 a = _mm512_loadu_ps(row + base), b = _mm512_loadu_ps(row + base + 16);
                    const __m512 a2 = _mm512_loadu_ps(row + base + 2), b2 = _mm512_loadu_ps(row + base + 18);
                    d[i][0] = _mm512_permutex2var_ps(a, even, b);
                    d[i][1] = _mm512_permutex2var_ps(a, odd, b);
                    d[i][2] = _mm512_permutex2var_ps(a2, even, b2);
                    d[i][3] = _mm512_permutex2var_ps(a2, odd, b2);
                } else {
                    for (int j = 0; j < 4; j++) d[i][j] = tile_columns(row, W, base, j, in_run);
                }
            }
            __m512 bd[4][4];  // Bᵀ d
            for (int j = 0; j < 4; j++) {
                bd[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
                bd[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
                bd[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
                bd[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
            }
            float *out = V + (size_t)c * width + (t - tile_begin);
            for (int i = 0; i < 4; i++) {
                _mm512_mask_storeu_ps(out + (size_t)(4 * i + 0) * plane_stride, in_run, _mm512_sub_ps(bd[i][0], bd[i][2]));
                _mm512_mask_storeu_ps(out + (size_t)(4 * i + 1) * plane_stride, in_run, _mm512_add_ps(bd[i][1], bd[i][2]));
                _mm512_mask_storeu_ps(out + (size_t)(4 * i + 2) * plane_stride, in_run, _mm512_sub_ps(bd[i][2], bd[i][1]));
                _mm512_mask_storeu_ps(out + (size_t)(4 * i + 3) * plane_stride, in_run, _mm512_sub_ps(bd[i][1], bd[i][3]));
            }
        }
        t += count;
    }
}

// Stores the 2 outputs of each of `count` tiles along one output row (columns q0 + 2l, q0 + 2l + 1, clipped
// at Q), after bias, residual and ReLU.
__attribute__((target("avx512f")))
static inline void store_tile_row(float *plane_row, const float *residual_row, int q0, int Q, __m512 left, __m512 right,
                                  int count, float bias, int relu) {
    // Interleave: outputs 2l and 2l + 1 of tile l.
    const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i second = _mm512_add_epi32(first, _mm512_set1_epi32(8));
    const __m512 b = _mm512_set1_ps(bias);
    __m512 halves[2] = {_mm512_add_ps(_mm512_permutex2var_ps(left, first, right), b),
                        _mm512_add_ps(_mm512_permutex2var_ps(left, second, right), b)};
    int columns = 2 * count;
    if (q0 + columns > Q) columns = Q - q0;
    for (int h = 0; h < 2; h++) {
        const int left_columns = columns - 16 * h;
        if (left_columns <= 0) break;
        const __mmask16 mask = left_columns >= 16 ? 0xFFFF : (__mmask16)((1u << left_columns) - 1);
        __m512 v = halves[h];
        if (residual_row) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, residual_row + q0 + 16 * h));
        // NaN passes, as in PyTorch: only values below zero become zero.
        if (relu) v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps());
        _mm512_mask_storeu_ps(plane_row + q0 + 16 * h, mask, v);
    }
}

__attribute__((target("avx512f")))
static void transform_outputs_avx512(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s,
                                     int P, int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    const int K = s->out_channels;
    const int width = tile_end - tile_begin, per_image = tiles_h * tiles_w;
    const size_t plane_stride = (size_t)K * width;
    for (int t = tile_begin; t < tile_end;) {
        const int n = t / per_image, r = t % per_image, tile_row = r / tiles_w, tile_col = r % tiles_w;
        const int count = tiles_w - tile_col < tile_end - t ? (tiles_w - tile_col < 16 ? tiles_w - tile_col : 16)
                                                            : (tile_end - t < 16 ? tile_end - t : 16);
        const __mmask16 in_run = (__mmask16)((1u << count) - 1);
        const int p0 = tile_row * 2, q0 = tile_col * 2;
        for (int k = 0; k < K; k++) {
            const float *in = M + (size_t)k * width + (t - tile_begin);
            __m512 m[16];
            for (int xi = 0; xi < 16; xi++) m[xi] = _mm512_maskz_loadu_ps(in_run, in + (size_t)xi * plane_stride);
            __m512 am[2][4];  // Aᵀ m
            for (int j = 0; j < 4; j++) {
                am[0][j] = _mm512_add_ps(_mm512_add_ps(m[j], m[4 + j]), m[8 + j]);
                am[1][j] = _mm512_sub_ps(_mm512_sub_ps(m[4 + j], m[8 + j]), m[12 + j]);
            }
            const size_t plane_offset = ((size_t)n * K + k) * P * Q;
            const float bias = e->bias ? e->bias[k] : 0.0f;
            for (int i = 0; i < 2 && p0 + i < P; i++) {
                const __m512 left = _mm512_add_ps(_mm512_add_ps(am[i][0], am[i][1]), am[i][2]);
                const __m512 right = _mm512_sub_ps(_mm512_sub_ps(am[i][1], am[i][2]), am[i][3]);
                const size_t row_offset = plane_offset + (size_t)(p0 + i) * Q;
                store_tile_row(y + row_offset, e->residual ? e->residual + row_offset : NULL, q0, Q, left, right, count,
                               bias, e->relu);
            }
        }
        t += count;
    }
}
#endif

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
            if (vector_transforms) transform_inputs_avx512(V, x, s, tiles_h, tiles_w, t0, t1);
            else
#endif
                transform_inputs(V, x, s, tiles_h, tiles_w, t0, t1);
            for (int xi = 0; xi < 16; xi++)
                ck_sgemm(0, 0, K, width, C, 1.0f, U + (size_t)xi * K * C, C, V + (size_t)xi * C * width, width,
                         0.0f, M + (size_t)xi * K * width, width);
#ifdef CK_HAVE_AVX512_WINOGRAD
            if (vector_transforms) transform_outputs_avx512(y, M, epilogue, s, P, Q, tiles_h, tiles_w, t0, t1);
            else
#endif
                transform_outputs(y, M, epilogue, s, P, Q, tiles_h, tiles_w, t0, t1);
        }
    }
    return CK_OK;
}
