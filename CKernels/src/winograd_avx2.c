// The AVX2 + FMA transforms of Winograd F(2x2, 3x3) (winograd.c): the 8-lane twin of winograd_avx512.c, for
// CPUs without AVX-512 (x86-64-v3, the build floor). Kernels 8 input channels at a time; inputs and outputs 8
// neighbouring tiles of one tile row at a time (one tile per lane), so V and M are read and written as
// contiguous vectors.
#include "winograd.h"

// All-ones in the first `count` (0..8) lanes.
static inline __m256i lanes_below(int count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __m256 gather_or_zero(const float *base, __m256i index, __m256i mask) {
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base, index, _mm256_castsi256_ps(mask), 4);
}

int ck_winograd_transform_kernels_avx2(float *U, const ck_winograd_filters *f, int K, int C, int k, int c0) {
    if (f->c_stride > (size_t)(INT32_MAX / 8)) return 0;  // lane offsets must fit the gather's 32-bit index
    const size_t KC = (size_t)K * C;
    const int count = C - c0 < 8 ? C - c0 : 8;
    const __m256i in_run = lanes_below(count);
    const __m256i offsets = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)f->c_stride));
    const float *taps = f->weight + (size_t)k * f->k_stride + (size_t)c0 * f->c_stride;
    const __m256 half = _mm256_set1_ps(0.5f);
#define TAP(i) gather_or_zero(taps + (f->reversed ? 8 - (i) : (i)), offsets, in_run)
    __m256 t[4][3];  // G g
    for (int col = 0; col < 3; col++) {
        const __m256 g0 = TAP(col), g1 = TAP(3 + col), g2 = TAP(6 + col);
        t[0][col] = g0;
        t[1][col] = _mm256_mul_ps(half, _mm256_add_ps(_mm256_add_ps(g0, g1), g2));
        t[2][col] = _mm256_mul_ps(half, _mm256_add_ps(_mm256_sub_ps(g0, g1), g2));
        t[3][col] = g2;
    }
#undef TAP
    for (int i = 0; i < 4; i++) {
        const __m256 a = t[i][0], b = t[i][1], cc = t[i][2];
        const __m256 u[4] = {a, _mm256_mul_ps(half, _mm256_add_ps(_mm256_add_ps(a, b), cc)),
                             _mm256_mul_ps(half, _mm256_add_ps(_mm256_sub_ps(a, b), cc)), cc};
        for (int j = 0; j < 4; j++) _mm256_maskstore_ps(U + (size_t)(4 * i + j) * KC + (size_t)k * C + c0, in_run, u[j]);
    }
    return count;
}

// Input columns base + j + 2·l for lanes l < count, 0 outside [0, W): the j-th column of 8 tiles.
static inline __m256 tile_columns(const float *row, int W, int base, int j, __m256i in_run) {
    const __m256i lanes = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m256i index = _mm256_add_epi32(_mm256_set1_epi32(base + j), lanes);
    const __m256i valid = _mm256_and_si256(
        in_run, _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), index),
                                    _mm256_cmpgt_epi32(_mm256_set1_epi32(W), index)));
    return gather_or_zero(row, index, valid);
}

// The even (0, 2, …, 14) and odd (1, 3, …, 15) elements of the 16 floats a ‖ b.
static inline void deinterleave(__m256 a, __m256 b, __m256 *even, __m256 *odd) {
    // Within each 128-bit half: a0 a2 b0 b2 | a4 a6 b4 b6; then the 64-bit pairs reordered 0, 2, 1, 3.
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))),
                                                   _MM_SHUFFLE(3, 1, 2, 0)));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))),
                                                  _MM_SHUFFLE(3, 1, 2, 0)));
}

// Tiles from global tile t on that run along one tile row and stay before tile_end: at most 8.
static inline int tile_run(int tile_col, int tiles_w, int t, int tile_end) {
    const int in_row = tiles_w - tile_col, left = tile_end - t;
    const int count = in_row < left ? in_row : left;
    return count < 8 ? count : 8;
}

void ck_winograd_transform_inputs_avx2(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                                       int tile_begin, int tile_end) {
    const int C = s->in_channels, H = s->in_height, W = s->in_width;
    const int width = tile_end - tile_begin, per_image = tiles_h * tiles_w;
    const size_t plane_stride = (size_t)C * width;
    for (int t = tile_begin; t < tile_end;) {
        const int n = t / per_image, r = t % per_image, tile_row = r / tiles_w, tile_col = r % tiles_w;
        const int count = tile_run(tile_col, tiles_w, t, tile_end);
        const __m256i in_run = lanes_below(count);
        const int h0 = tile_row * 2 - 1, base = tile_col * 2 - 1;
        // Inside the image: four plain loads per row and even/odd lanes; at an edge, masked gathers.
        const int inside = count == 8 && base >= 0 && base + 18 <= W;
        for (int c = 0; c < C; c++) {
            const float *plane = x + ((size_t)n * C + c) * H * W;
            __m256 d[4][4];
            for (int i = 0; i < 4; i++) {
                const int h = h0 + i;
                if (h < 0 || h >= H) {
                    for (int j = 0; j < 4; j++) d[i][j] = _mm256_setzero_ps();
                    continue;
                }
                const float *row = plane + (size_t)h * W;
                if (inside) {
                    deinterleave(_mm256_loadu_ps(row + base), _mm256_loadu_ps(row + base + 8), &d[i][0], &d[i][1]);
                    deinterleave(_mm256_loadu_ps(row + base + 2), _mm256_loadu_ps(row + base + 10), &d[i][2], &d[i][3]);
                } else {
                    for (int j = 0; j < 4; j++) d[i][j] = tile_columns(row, W, base, j, in_run);
                }
            }
            __m256 bd[4][4];  // Bᵀ d
            for (int j = 0; j < 4; j++) {
                bd[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
                bd[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
                bd[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
                bd[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
            }
            float *out = V + (size_t)c * width + (t - tile_begin);
            for (int i = 0; i < 4; i++) {
                _mm256_maskstore_ps(out + (size_t)(4 * i + 0) * plane_stride, in_run, _mm256_sub_ps(bd[i][0], bd[i][2]));
                _mm256_maskstore_ps(out + (size_t)(4 * i + 1) * plane_stride, in_run, _mm256_add_ps(bd[i][1], bd[i][2]));
                _mm256_maskstore_ps(out + (size_t)(4 * i + 2) * plane_stride, in_run, _mm256_sub_ps(bd[i][2], bd[i][1]));
                _mm256_maskstore_ps(out + (size_t)(4 * i + 3) * plane_stride, in_run, _mm256_sub_ps(bd[i][1], bd[i][3]));
            }
        }
        t += count;
    }
}

// Stores the 2 outputs of each of `count` tiles along one output row (columns q0 + 2l, q0 + 2l + 1, clipped
// at Q), after bias, residual and ReLU.
static inline void store_tile_row(float *plane_row, const float *residual_row, int q0, int Q, __m256 left, __m256 right,
                                  int count, float bias, int relu) {
    // Interleave: outputs 2l and 2l + 1 of tile l. unpack works within 128-bit halves; permute2f128 joins them.
    const __m256 low = _mm256_unpacklo_ps(left, right), high = _mm256_unpackhi_ps(left, right);
    const __m256 b = _mm256_set1_ps(bias);
    __m256 halves[2] = {_mm256_add_ps(_mm256_permute2f128_ps(low, high, 0x20), b),
                        _mm256_add_ps(_mm256_permute2f128_ps(low, high, 0x31), b)};
    int columns = 2 * count;
    if (q0 + columns > Q) columns = Q - q0;
    for (int h = 0; h < 2; h++) {
        const int left_columns = columns - 8 * h;
        if (left_columns <= 0) break;
        const __m256i mask = lanes_below(left_columns < 8 ? left_columns : 8);
        __m256 v = halves[h];
        if (residual_row) v = _mm256_add_ps(v, _mm256_maskload_ps(residual_row + q0 + 8 * h, mask));
        // NaN passes, as in PyTorch: only values below zero become zero.
        if (relu) v = _mm256_blendv_ps(v, _mm256_setzero_ps(), _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
        _mm256_maskstore_ps(plane_row + q0 + 8 * h, mask, v);
    }
}

void ck_winograd_transform_outputs_avx2(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s,
                                        int P, int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    const int K = s->out_channels;
    const int width = tile_end - tile_begin, per_image = tiles_h * tiles_w;
    const size_t plane_stride = (size_t)K * width;
    for (int t = tile_begin; t < tile_end;) {
        const int n = t / per_image, r = t % per_image, tile_row = r / tiles_w, tile_col = r % tiles_w;
        const int count = tile_run(tile_col, tiles_w, t, tile_end);
        const __m256i in_run = lanes_below(count);
        const int p0 = tile_row * 2, q0 = tile_col * 2;
        for (int k = 0; k < K; k++) {
            const float *in = M + (size_t)k * width + (t - tile_begin);
            __m256 m[16];
            for (int xi = 0; xi < 16; xi++) m[xi] = _mm256_maskload_ps(in + (size_t)xi * plane_stride, in_run);
            __m256 am[2][4];  // Aᵀ m
            for (int j = 0; j < 4; j++) {
                am[0][j] = _mm256_add_ps(_mm256_add_ps(m[j], m[4 + j]), m[8 + j]);
                am[1][j] = _mm256_sub_ps(_mm256_sub_ps(m[4 + j], m[8 + j]), m[12 + j]);
            }
            const size_t plane_offset = ((size_t)n * K + k) * P * Q;
            const float bias = e->bias ? e->bias[k] : 0.0f;
            for (int i = 0; i < 2 && p0 + i < P; i++) {
                const __m256 left = _mm256_add_ps(_mm256_add_ps(am[i][0], am[i][1]), am[i][2]);
                const __m256 right = _mm256_sub_ps(_mm256_sub_ps(am[i][1], am[i][2]), am[i][3]);
                const size_t row_offset = plane_offset + (size_t)(p0 + i) * Q;
                store_tile_row(y + row_offset, e->residual ? e->residual + row_offset : NULL, q0, Q, left, right, count,
                               bias, e->relu);
            }
        }
        t += count;
    }
}

// Output-gradient columns q0 + 2·l + j (j = 0, 1) of `count` tiles along one dy row, 0 at and past Q.
static inline void gradient_columns(const float *row, int q0, int Q, int count, __m256 *even, __m256 *odd) {
    if (count == 8 && q0 + 16 <= Q) {
        deinterleave(_mm256_loadu_ps(row + q0), _mm256_loadu_ps(row + q0 + 8), even, odd);
        return;
    }
    const __m256i even_index = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m256i odd_index = _mm256_add_epi32(even_index, _mm256_set1_epi32(1));
    const __m256i in_run = lanes_below(count), limit = _mm256_set1_epi32(Q - q0);
    *even = gather_or_zero(row + q0, even_index, _mm256_and_si256(in_run, _mm256_cmpgt_epi32(limit, even_index)));
    *odd = gather_or_zero(row + q0, odd_index, _mm256_and_si256(in_run, _mm256_cmpgt_epi32(limit, odd_index)));
}

void ck_winograd_transform_output_gradients_avx2(float *Y, const float *dy, const ck_conv2d_shape *s, int P, int Q,
                                                 int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    const int K = s->out_channels;
    const int width = tile_end - tile_begin, per_image = tiles_h * tiles_w;
    const size_t plane_stride = (size_t)K * width;
    for (int t = tile_begin; t < tile_end;) {
        const int n = t / per_image, r = t % per_image, tile_row = r / tiles_w, tile_col = r % tiles_w;
        const int count = tile_run(tile_col, tiles_w, t, tile_end);
        const __m256i in_run = lanes_below(count);
        const int p0 = tile_row * 2, q0 = tile_col * 2;
        for (int k = 0; k < K; k++) {
            const float *plane = dy + ((size_t)n * K + k) * P * Q;
            __m256 g[2][2];
            gradient_columns(plane + (size_t)p0 * Q, q0, Q, count, &g[0][0], &g[0][1]);
            if (p0 + 1 < P) gradient_columns(plane + (size_t)(p0 + 1) * Q, q0, Q, count, &g[1][0], &g[1][1]);
            else g[1][0] = g[1][1] = _mm256_setzero_ps();
            __m256 a[4][2];  // A g
            for (int j = 0; j < 2; j++) {
                a[0][j] = g[0][j];
                a[1][j] = _mm256_add_ps(g[0][j], g[1][j]);
                a[2][j] = _mm256_sub_ps(g[0][j], g[1][j]);
                a[3][j] = _mm256_sub_ps(_mm256_setzero_ps(), g[1][j]);
            }
            float *out = Y + (size_t)k * width + (t - tile_begin);
            for (int i = 0; i < 4; i++) {
                _mm256_maskstore_ps(out + (size_t)(4 * i + 0) * plane_stride, in_run, a[i][0]);
                _mm256_maskstore_ps(out + (size_t)(4 * i + 1) * plane_stride, in_run, _mm256_add_ps(a[i][0], a[i][1]));
                _mm256_maskstore_ps(out + (size_t)(4 * i + 2) * plane_stride, in_run, _mm256_sub_ps(a[i][0], a[i][1]));
                _mm256_maskstore_ps(out + (size_t)(4 * i + 3) * plane_stride, in_run, _mm256_sub_ps(_mm256_setzero_ps(), a[i][1]));
            }
        }
        t += count;
    }
}
