// The AVX-512 Winograd transforms (winograd.c): F(2x2, 3x3)'s and F(4x4, 3x3)'s, 16 lanes. The transforms shared
// with the AVX2 tier are written once, in winograd_tier.h, over the vocabulary defined here; what stays in this file
// is what differs by vector width: F(2x2, 3x3)'s kernel transform and its runs along one tile row, read and stored
// with in-register shuffles. winograd_avx2.c is the 8-lane twin.
#include "winograd.h"

#define LANES 16
#define TARGET __attribute__((target("avx512f")))
#define TIER(name) name##_avx512
typedef __m512 vec;
typedef __m512i ivec;
typedef __mmask16 vmask;
#define vzero _mm512_setzero_ps
#define vset1 _mm512_set1_ps
#define vadd _mm512_add_ps
#define vsub _mm512_sub_ps
#define vmul _mm512_mul_ps
#define vfmadd _mm512_fmadd_ps
#define vfnmadd _mm512_fnmadd_ps
#define vstoreu _mm512_storeu_ps
#define iset1 _mm512_set1_epi32
#define iadd _mm512_add_epi32
#define imul _mm512_mullo_epi32
TARGET static inline ivec iload(const int32_t *p) { return _mm512_loadu_si512(p); }
TARGET static inline ivec ilanes(void) { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
static inline vmask lanes_below(int count) { return (vmask)((1u << count) - 1); }  // count ≤ 16
static inline vmask mask_and(vmask a, vmask b) { return a & b; }
TARGET static inline vmask within(ivec v, int limit) {
    return _mm512_cmpge_epi32_mask(v, _mm512_setzero_si512()) & _mm512_cmplt_epi32_mask(v, _mm512_set1_epi32(limit));
}
TARGET static inline vec load_masked(const float *p, vmask m) { return _mm512_maskz_loadu_ps(m, p); }
TARGET static inline void store_masked(float *p, vmask m, vec v) { _mm512_mask_storeu_ps(p, m, v); }
TARGET static inline vec gather_masked(const float *base, ivec index, vmask m) {
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, index, base, 4);
}
// NaN passes, as in PyTorch: only values below zero become zero.
TARGET static inline vec relu_of(vec v) {
    return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps());
}

// Interleaves the two columns of 16 tiles' output row (left, right) into staged[0..32).
TARGET static inline void interleave_pairs(vec left, vec right, float *staged) {
    const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    _mm512_storeu_ps(staged, _mm512_permutex2var_ps(left, first, right));
    _mm512_storeu_ps(staged + 16, _mm512_permutex2var_ps(left, _mm512_add_epi32(first, _mm512_set1_epi32(8)), right));
}

// The 6 input columns of 16 tiles of 4x4, p[4l + j] for j < 6: p must hold 66 readable floats.
TARGET static inline void tile_columns4(const float *p, vec d[6]) {
    const __m512i stride4 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    const __m512 a = _mm512_loadu_ps(p), b = _mm512_loadu_ps(p + 16), c = _mm512_loadu_ps(p + 32),
                 e = _mm512_loadu_ps(p + 48);
    for (int j = 0; j < 4; j++) {
        const __m512i index = _mm512_add_epi32(stride4, _mm512_set1_epi32(j));
        // Tiles 0–7 from a ‖ b in the low half, tiles 8–15 from c ‖ e in the high half.
        d[j] = _mm512_shuffle_f32x4(_mm512_permutex2var_ps(a, index, b), _mm512_permutex2var_ps(c, index, e),
                                    _MM_SHUFFLE(1, 0, 1, 0));
    }
    // Columns 4 and 5 of tile l are columns 0 and 1 of tile l + 1; the last tile's come from p[64], p[65].
    const __m512 next = _mm512_maskz_loadu_ps(0x3, p + 64);
    const __m512i after_0 = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
    const __m512i after_1 = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17);
    d[4] = _mm512_permutex2var_ps(d[0], after_0, next);
    d[5] = _mm512_permutex2var_ps(d[1], after_1, next);
}

// One output row of 16 tiles of 4x4, o[j] holding column j of each tile, made tile-major: out[q] holds tiles 4q to
// 4q + 3, 4 columns each.
TARGET static inline void interleave_tiles4(const vec o[4], vec out[4]) {
    // First pairs (o0, o1) and (o2, o3), then pairs of pairs.
    const __m512i pairs = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i upper = _mm512_add_epi32(pairs, _mm512_set1_epi32(8));
    const __m512i quads = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const __m512i quads_upper = _mm512_add_epi32(quads, _mm512_set1_epi32(8));
    const __m512 low01 = _mm512_permutex2var_ps(o[0], pairs, o[1]), high01 = _mm512_permutex2var_ps(o[0], upper, o[1]);
    const __m512 low23 = _mm512_permutex2var_ps(o[2], pairs, o[3]), high23 = _mm512_permutex2var_ps(o[2], upper, o[3]);
    out[0] = _mm512_permutex2var_ps(low01, quads, low23);
    out[1] = _mm512_permutex2var_ps(low01, quads_upper, low23);
    out[2] = _mm512_permutex2var_ps(high01, quads, high23);
    out[3] = _mm512_permutex2var_ps(high01, quads_upper, high23);
}

#include "winograd_tier.h"

// ---------------------------------------------------------------- F(2x2, 3x3), runs along one tile row
// Input column base + j + 2·l for lanes l < count, 0 outside [0, W): the j-th column of 16 tiles.
TARGET
static inline __m512 tile_columns(const float *row, int W, int base, int j, __mmask16 in_run) {
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i index = _mm512_add_epi32(_mm512_set1_epi32(base + j), _mm512_add_epi32(lanes, lanes));
    const __mmask16 valid = in_run & _mm512_cmpge_epi32_mask(index, _mm512_setzero_si512()) &
                            _mm512_cmplt_epi32_mask(index, _mm512_set1_epi32(W));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, index, row, 4);
}

TARGET
void ck_winograd_transform_inputs_avx512(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                                         int tile_begin, int tile_end) {
    const int C = s->in_channels, H = s->in_height, W = s->in_width;
    if (ck_winograd_runs_by_image(tiles_w, LANES, H, W)) {
        inputs_by_image2(V, x, s, tiles_h, tiles_w, tile_begin, tile_end);
        return;
    }
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
            transform_and_store_input2(V + (size_t)c * width + (t - tile_begin), plane_stride, in_run, d);
        }
        t += count;
    }
}

// Stores the 2 outputs of each of `count` tiles along one output row (columns q0 + 2l, q0 + 2l + 1, clipped
// at Q), after bias, residual and ReLU.
TARGET
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

TARGET
void ck_winograd_transform_outputs_avx512(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s,
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
        const int count = tiles_w - tile_col < tile_end - t ? (tiles_w - tile_col < 16 ? tiles_w - tile_col : 16)
                                                            : (tile_end - t < 16 ? tile_end - t : 16);
        const __mmask16 in_run = (__mmask16)((1u << count) - 1);
        const int p0 = tile_row * 2, q0 = tile_col * 2;
        for (int k = 0; k < K; k++) {
            const float *in = M + (size_t)k * width + (t - tile_begin);
            __m512 m[16], left[2], right[2];
            for (int xi = 0; xi < 16; xi++) m[xi] = _mm512_maskz_loadu_ps(in_run, in + (size_t)xi * plane_stride);
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
TARGET
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

TARGET
void ck_winograd_transform_output_gradients_avx512(float *Y, const float *dy, const ck_conv2d_shape *s, int P, int Q,
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
            transform_and_store_gradient2(Y + (size_t)k * width + (t - tile_begin), plane_stride, in_run, g);
        }
        t += count;
    }
}
