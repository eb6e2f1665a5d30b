// The AVX-512 transforms of Winograd F(2x2, 3x3) (winograd.c): kernels 16 input channels at a time, inputs and
// outputs 16 neighbouring tiles of one tile row at a time (one tile per lane). winograd_avx2.c is the 8-lane twin.
#include "winograd.h"

// U for 16 input channels at a time (one per lane): 9 gathers, U rows written contiguously.
__attribute__((target("avx512f")))
int ck_winograd_transform_kernels_avx512(float *U, const ck_winograd_filters *f, int K, int C, int k, int c0) {
    if (f->c_stride > (size_t)(INT32_MAX / 16)) return 0;  // lane offsets must fit the gather's 32-bit index
    const size_t KC = (size_t)K * C;
    const int count = C - c0 < 16 ? C - c0 : 16;
    const __mmask16 in_run = (__mmask16)((1u << count) - 1);
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i offsets = _mm512_mullo_epi32(lanes, _mm512_set1_epi32((int)f->c_stride));
    const float *taps = f->weight + (size_t)k * f->k_stride + (size_t)c0 * f->c_stride;
    const __m512 half = _mm512_set1_ps(0.5f);
#define TAP(i) _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in_run, offsets, taps + (f->reversed ? 8 - (i) : (i)), 4)
    __m512 t[4][3];  // G g
    for (int col = 0; col < 3; col++) {
        const __m512 g0 = TAP(col), g1 = TAP(3 + col), g2 = TAP(6 + col);
        t[0][col] = g0;
        t[1][col] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(g0, g1), g2));
        t[2][col] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(g0, g1), g2));
        t[3][col] = g2;
    }
#undef TAP
    for (int i = 0; i < 4; i++) {
        const __m512 a = t[i][0], b = t[i][1], cc = t[i][2];
        const __m512 u[4] = {a, _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(a, b), cc)),
                             _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(a, b), cc)), cc};
        for (int j = 0; j < 4; j++) _mm512_mask_storeu_ps(U + (size_t)(4 * i + j) * KC + (size_t)k * C + c0, in_run, u[j]);
    }
    return count;
}

// The AVX-512 transforms work on 16 neighbouring tiles of one tile row at a time, one tile per lane, so
// V and M are read and written as contiguous vectors (the scalar versions in winograd.c scatter by 16 strides).

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
void ck_winograd_transform_inputs_avx512(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
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
void ck_winograd_transform_outputs_avx512(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s,
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

// Output-gradient columns q0 + 2·l + j (j = 0, 1) of `count` tiles along one dy row, 0 at and past Q.
__attribute__((target("avx512f")))
static inline void gradient_columns(const float *row, int q0, int Q, int count, __m512 *even, __m512 *odd) {
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i even_index = _mm512_add_epi32(lanes, lanes), odd_index = _mm512_add_epi32(even_index, _mm512_set1_epi32(1));
    if (count == 16 && q0 + 32 <= Q) {
        const __m512 a = _mm512_loadu_ps(row + q0), b = _mm512_loadu_ps(row + q0 + 16);
        *even = _mm512_permutex2var_ps(a, even_index, b);
        *odd = _mm512_permutex2var_ps(a, odd_index, b);
        return;
    }
    const __mmask16 in_run = (__mmask16)((1u << count) - 1);
    const __m512i limit = _mm512_set1_epi32(Q - q0);
    *even = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in_run & _mm512_cmplt_epi32_mask(even_index, limit), even_index,
                                     row + q0, 4);
    *odd = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in_run & _mm512_cmplt_epi32_mask(odd_index, limit), odd_index,
                                    row + q0, 4);
}

__attribute__((target("avx512f")))
void ck_winograd_transform_output_gradients_avx512(float *Y, const float *dy, const ck_conv2d_shape *s, int P, int Q,
                                                   int tiles_h, int tiles_w, int tile_begin, int tile_end) {
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
            const float *plane = dy + ((size_t)n * K + k) * P * Q;
            __m512 g[2][2];
            gradient_columns(plane + (size_t)p0 * Q, q0, Q, count, &g[0][0], &g[0][1]);
            if (p0 + 1 < P) gradient_columns(plane + (size_t)(p0 + 1) * Q, q0, Q, count, &g[1][0], &g[1][1]);
            else g[1][0] = g[1][1] = _mm512_setzero_ps();
            __m512 a[4][2];  // A g
            for (int j = 0; j < 2; j++) {
                a[0][j] = g[0][j];
                a[1][j] = _mm512_add_ps(g[0][j], g[1][j]);
                a[2][j] = _mm512_sub_ps(g[0][j], g[1][j]);
                a[3][j] = _mm512_sub_ps(_mm512_setzero_ps(), g[1][j]);
            }
            float *out = Y + (size_t)k * width + (t - tile_begin);
            for (int i = 0; i < 4; i++) {
                _mm512_mask_storeu_ps(out + (size_t)(4 * i + 0) * plane_stride, in_run, a[i][0]);
                _mm512_mask_storeu_ps(out + (size_t)(4 * i + 1) * plane_stride, in_run, _mm512_add_ps(a[i][0], a[i][1]));
                _mm512_mask_storeu_ps(out + (size_t)(4 * i + 2) * plane_stride, in_run, _mm512_sub_ps(a[i][0], a[i][1]));
                _mm512_mask_storeu_ps(out + (size_t)(4 * i + 3) * plane_stride, in_run,
                                      _mm512_sub_ps(_mm512_setzero_ps(), a[i][1]));
            }
        }
        t += count;
    }
}
