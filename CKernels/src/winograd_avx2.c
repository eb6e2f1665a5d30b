// The AVX2 + FMA Winograd transforms (winograd.c): the 8-lane twin of winograd_avx512.c, for CPUs without AVX-512
// (x86-64-v3, the build floor). The transforms shared with the AVX-512 tier are written once, in winograd_tier.h,
// over the vocabulary defined here; what stays in this file is what differs by vector width: F(2x2, 3x3)'s runs
// along one tile row, read and stored with in-register shuffles.
#include "winograd.h"

#define LANES 8
#define TARGET
#define TIER(name) name##_avx2
typedef __m256 vec;
typedef __m256i ivec;
typedef __m256i vmask;  // all-ones lanes
#define vzero _mm256_setzero_ps
#define vset1 _mm256_set1_ps
#define vadd _mm256_add_ps
#define vsub _mm256_sub_ps
#define vmul _mm256_mul_ps
#define vfmadd _mm256_fmadd_ps
#define vfnmadd _mm256_fnmadd_ps
#define vstoreu _mm256_storeu_ps
#define iset1 _mm256_set1_epi32
#define iadd _mm256_add_epi32
#define imul _mm256_mullo_epi32
#define mask_and _mm256_and_si256
static inline ivec iload(const int32_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline ivec ilanes(void) { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
static inline vmask lanes_below(int count) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), ilanes()); }
static inline vmask within(ivec v, int limit) {
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), v), _mm256_cmpgt_epi32(_mm256_set1_epi32(limit), v));
}
static inline vec load_masked(const float *p, vmask m) { return _mm256_maskload_ps(p, m); }
static inline void store_masked(float *p, vmask m, vec v) { _mm256_maskstore_ps(p, m, v); }
static inline vec gather_masked(const float *base, ivec index, vmask m) {
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base, index, _mm256_castsi256_ps(m), 4);
}
// NaN passes, as in PyTorch: only values below zero become zero.
static inline vec relu_of(vec v) { return _mm256_andnot_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ), v); }

// Interleaves the two columns of 8 tiles' output row (left, right) into staged[0..16): unpack works within 128-bit
// halves, permute2f128 joins them.
static inline void interleave_pairs(vec left, vec right, float *staged) {
    const __m256 low = _mm256_unpacklo_ps(left, right), high = _mm256_unpackhi_ps(left, right);
    _mm256_storeu_ps(staged, _mm256_permute2f128_ps(low, high, 0x20));
    _mm256_storeu_ps(staged + 8, _mm256_permute2f128_ps(low, high, 0x31));
}

// The 6 input columns of 8 tiles of 4x4, p[4l + j] for j < 6: p must hold 34 readable floats.
static inline void tile_columns4(const float *p, vec d[6]) {
    // Tiles 2q and 2q + 1 are the two halves of p[8q .. 8q + 8): a 4x4 transpose in each 128-bit half gives column j
    // of tiles 0, 2, 4, 6 (low half) and 1, 3, 5, 7 (high half), then one permute puts the tiles in order.
    const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8), c = _mm256_loadu_ps(p + 16),
                 e = _mm256_loadu_ps(p + 24);
    const __m256 ab_low = _mm256_unpacklo_ps(a, b), ab_high = _mm256_unpackhi_ps(a, b);
    const __m256 ce_low = _mm256_unpacklo_ps(c, e), ce_high = _mm256_unpackhi_ps(c, e);
    const __m256i in_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    d[0] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(ab_low, ce_low, _MM_SHUFFLE(1, 0, 1, 0)), in_order);
    d[1] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(ab_low, ce_low, _MM_SHUFFLE(3, 2, 3, 2)), in_order);
    d[2] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(ab_high, ce_high, _MM_SHUFFLE(1, 0, 1, 0)), in_order);
    d[3] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(ab_high, ce_high, _MM_SHUFFLE(3, 2, 3, 2)), in_order);
    // Columns 4 and 5 of tile l are columns 0 and 1 of tile l + 1; the last tile's are p[32], p[33].
    const __m256i after = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7);
    d[4] = _mm256_blend_ps(_mm256_permutevar8x32_ps(d[0], after), _mm256_broadcast_ss(p + 32), 0x80);
    d[5] = _mm256_blend_ps(_mm256_permutevar8x32_ps(d[1], after), _mm256_broadcast_ss(p + 33), 0x80);
}

// One output row of 8 tiles of 4x4, o[j] holding column j of each tile, made tile-major: out[q] holds tiles 2q and
// 2q + 1, 4 columns each.
static inline void interleave_tiles4(const vec o[4], vec out[4]) {
    // tile_columns4 run backwards: tiles reordered 0, 2, 4, 6 | 1, 3, 5, 7, then a 4x4 transpose in each half
    // leaves tile 2q in the low half and tile 2q + 1 in the high half of out[q].
    const __m256i halves = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256 o0 = _mm256_permutevar8x32_ps(o[0], halves), o1 = _mm256_permutevar8x32_ps(o[1], halves);
    const __m256 o2 = _mm256_permutevar8x32_ps(o[2], halves), o3 = _mm256_permutevar8x32_ps(o[3], halves);
    const __m256 low01 = _mm256_unpacklo_ps(o0, o1), high01 = _mm256_unpackhi_ps(o0, o1);
    const __m256 low23 = _mm256_unpacklo_ps(o2, o3), high23 = _mm256_unpackhi_ps(o2, o3);
    out[0] = _mm256_shuffle_ps(low01, low23, _MM_SHUFFLE(1, 0, 1, 0));
    out[1] = _mm256_shuffle_ps(low01, low23, _MM_SHUFFLE(3, 2, 3, 2));
    out[2] = _mm256_shuffle_ps(high01, high23, _MM_SHUFFLE(1, 0, 1, 0));
    out[3] = _mm256_shuffle_ps(high01, high23, _MM_SHUFFLE(3, 2, 3, 2));
}

#include "winograd_tier.h"

// ---------------------------------------------------------------- F(2x2, 3x3), runs along one tile row

// Input columns base + j + 2·l for lanes l < count, 0 outside [0, W): the j-th column of 8 tiles.
static inline __m256 tile_columns(const float *row, int W, int base, int j, __m256i in_run) {
    const __m256i lanes = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m256i index = _mm256_add_epi32(_mm256_set1_epi32(base + j), lanes);
    const __m256i valid = _mm256_and_si256(
        in_run, _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), index),
                                    _mm256_cmpgt_epi32(_mm256_set1_epi32(W), index)));
    return gather_masked(row, index, valid);
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
    if (ck_winograd_runs_by_image(tiles_w, LANES, H, W)) {
        inputs_by_image2(V, x, s, tiles_h, tiles_w, tile_begin, tile_end);
        return;
    }
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
            transform_and_store_input2(V + (size_t)c * width + (t - tile_begin), plane_stride, in_run, d);
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
        if (relu) v = relu_of(v);
        _mm256_maskstore_ps(plane_row + q0 + 8 * h, mask, v);
    }
}

void ck_winograd_transform_outputs_avx2(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s,
                                        int P, int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    if (ck_winograd_runs_by_image(tiles_w, LANES, P, Q)) {
        outputs_by_image2(y, M, e, s, P, Q, tiles_h, tiles_w, tile_begin, tile_end);
        return;
    }
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
            __m256 m[16], left[2], right[2];
            for (int xi = 0; xi < 16; xi++) m[xi] = _mm256_maskload_ps(in + (size_t)xi * plane_stride, in_run);
            transform_output2(m, left, right);
            const size_t plane_offset = ((size_t)n * K + k) * P * Q;
            const float bias = e->bias ? e->bias[k] : 0.0f;
            for (int i = 0; i < 2 && p0 + i < P; i++) {
                const size_t row_offset = plane_offset + (size_t)(p0 + i) * Q;
                store_tile_row(y + row_offset, e->residual ? e->residual + row_offset : NULL, q0, Q, left[i], right[i],
                               count, bias, e->relu);
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
    *even = gather_masked(row + q0, even_index, _mm256_and_si256(in_run, _mm256_cmpgt_epi32(limit, even_index)));
    *odd = gather_masked(row + q0, odd_index, _mm256_and_si256(in_run, _mm256_cmpgt_epi32(limit, odd_index)));
}

void ck_winograd_transform_output_gradients_avx2(float *Y, const float *dy, const ck_conv2d_shape *s, int P, int Q,
                                                 int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    const int K = s->out_channels;
    if (ck_winograd_runs_by_image(tiles_w, LANES, P, Q)) {
        output_gradients_by_image2(Y, dy, s, P, Q, tiles_h, tiles_w, tile_begin, tile_end);
        return;
    }
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
            transform_and_store_gradient2(Y + (size_t)k * width + (t - tile_begin), plane_stride, in_run, g);
        }
        t += count;
    }
}
