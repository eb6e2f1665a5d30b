// The AVX-512 transforms of Winograd F(4x4, 3x3) (winograd.c): kernels 16 input channels at a time, inputs and
// outputs 16 neighbouring tiles of one tile row at a time (one tile per lane), so V and M are read and written as
// contiguous vectors. winograd_f4_avx2.c is the 8-lane twin; winograd_f4_tier.h holds the matrices and the
// arithmetic both share.
#include "winograd.h"

#define LANES 16
typedef __m512 vec;
#define TARGET __attribute__((target("avx512f")))
#define vset1(x) _mm512_set1_ps(x)
#define vadd _mm512_add_ps
#define vsub _mm512_sub_ps
#define vmul _mm512_mul_ps
#define vfmadd _mm512_fmadd_ps
#define vfnmadd _mm512_fnmadd_ps
#include "winograd_f4_tier.h"

TARGET
int ck_winograd4_transform_kernels_avx512(float *U, const ck_winograd_filters *f, int K, int C, int k, int c0) {
    if (f->c_stride > (size_t)(INT32_MAX / LANES)) return 0;  // lane offsets must fit the gather's 32-bit index
    const size_t KC = (size_t)K * C;
    const int count = C - c0 < LANES ? C - c0 : LANES;
    const __mmask16 in_run = (__mmask16)((1u << count) - 1);
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i offsets = _mm512_mullo_epi32(lanes, _mm512_set1_epi32((int)f->c_stride));
    const float *taps = f->weight + (size_t)k * f->k_stride + (size_t)c0 * f->c_stride;
    vec g[9];
    for (int i = 0; i < 9; i++)
        g[i] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in_run, offsets, taps + (f->reversed ? 8 - i : i), 4);
    vec u[36];
    kernel_transform(u, g);
    for (int xi = 0; xi < 36; xi++) _mm512_mask_storeu_ps(U + (size_t)xi * KC + (size_t)k * C + c0, in_run, u[xi]);
    return count;
}

// The 6 input columns of 16 tiles, p[4l + j] for j < 6: p must hold 66 readable floats.
TARGET
static inline void tile_columns(const float *p, vec d[6]) {
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

// V for tiles [tile_begin, tile_end) of a plane narrower than 16 tiles, a whole image's run at a time: masked
// gathers, zero outside the image.
TARGET
static void inputs_by_image(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                            int tile_begin, int tile_end) {
    const int C = s->in_channels, H = s->in_height, W = s->in_width;
    const int width = tile_end - tile_begin;
    const size_t plane_stride = (size_t)C * width;
    const __m512i zero = _mm512_setzero_si512();
    for (int t = tile_begin; t < tile_end;) {
        const ck_winograd_image_run run = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 4, LANES);
        const __mmask16 in_run = (__mmask16)((1u << run.count) - 1);
        const __m512i top = _mm512_loadu_si512(run.top), left = _mm512_loadu_si512(run.left);
        __mmask16 row_inside[6], column_inside[6];
        for (int i = 0; i < 6; i++) {
            const __m512i h = _mm512_add_epi32(top, _mm512_set1_epi32(i)), w = _mm512_add_epi32(left, _mm512_set1_epi32(i));
            row_inside[i] = in_run & _mm512_cmpge_epi32_mask(h, zero) & _mm512_cmplt_epi32_mask(h, _mm512_set1_epi32(H));
            column_inside[i] = _mm512_cmpge_epi32_mask(w, zero) & _mm512_cmplt_epi32_mask(w, _mm512_set1_epi32(W));
        }
        const __m512i corner = _mm512_add_epi32(_mm512_mullo_epi32(top, _mm512_set1_epi32(W)), left);
        for (int c = 0; c < C; c++) {
            const float *plane = x + ((size_t)run.n * C + c) * H * W;
            vec d[6][6];
            for (int i = 0; i < 6; i++) {
                const __m512i row = _mm512_add_epi32(corner, _mm512_set1_epi32(i * W));
                for (int j = 0; j < 6; j++)
                    d[i][j] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), row_inside[i] & column_inside[j],
                                                       _mm512_add_epi32(row, _mm512_set1_epi32(j)), plane, 4);
            }
            vec v[36];
            input_transform(v, d);
            float *out = V + (size_t)c * width + (t - tile_begin);
            for (int xi = 0; xi < 36; xi++) _mm512_mask_storeu_ps(out + (size_t)xi * plane_stride, in_run, v[xi]);
        }
        t += run.count;
    }
}

TARGET
void ck_winograd4_transform_inputs_avx512(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                                          int tile_begin, int tile_end) {
    const int C = s->in_channels, H = s->in_height, W = s->in_width;
    if (ck_winograd_runs_by_image(tiles_w, LANES, H, W)) {
        inputs_by_image(V, x, s, tiles_h, tiles_w, tile_begin, tile_end);
        return;
    }
    const int width = tile_end - tile_begin;
    const size_t plane_stride = (size_t)C * width;
    float staged[STAGED_FLOATS];
    for (int t = tile_begin; t < tile_end;) {
        tile_run run = tile_run_at(t, tile_end, tiles_h, tiles_w);
        const __mmask16 in_run = (__mmask16)((1u << run.count) - 1);
        for (int c = 0; c < C; c++) {
            const float *plane = x + ((size_t)run.n * C + c) * H * W;
            vec d[6][6];
            for (int i = 0; i < 6; i++) {
                const float *row = input_row(plane, H, W, run.h0 + i, run.base, run.count, staged);
                if (row) tile_columns(row, d[i]);
                else for (int j = 0; j < 6; j++) d[i][j] = _mm512_setzero_ps();
            }
            vec v[36];
            input_transform(v, d);
            float *out = V + (size_t)c * width + (t - tile_begin);
            for (int xi = 0; xi < 36; xi++) _mm512_mask_storeu_ps(out + (size_t)xi * plane_stride, in_run, v[xi]);
        }
        t += run.count;
    }
}

// One output row of 16 tiles, o[j] holding column j of each tile, made tile-major: out[q] holds tiles 4q to 4q + 3,
// 4 columns each.
TARGET
static inline void interleave_tiles(const vec o[4], vec out[4]) {
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

// One output row of 16 tiles: o[j] holds column j of each tile; stored as 64 contiguous columns from q0, clipped
// at Q, after bias, residual and ReLU.
TARGET
static inline void store_output_row(float *row, const float *residual_row, int q0, int Q, const vec o[4], int count,
                                    float bias, int relu) {
    vec out[4];
    interleave_tiles(o, out);
    int columns = 4 * count;
    if (q0 + columns > Q) columns = Q - q0;
    const __m512 b = _mm512_set1_ps(bias);
    for (int part = 0; part < 4; part++) {
        const int left = columns - 16 * part;
        if (left <= 0) break;
        const __mmask16 mask = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        __m512 v = _mm512_add_ps(out[part], b);
        if (residual_row) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, residual_row + q0 + 16 * part));
        // NaN passes, as in PyTorch: only values below zero become zero.
        if (relu) v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps());
        _mm512_mask_storeu_ps(row + q0 + 16 * part, mask, v);
    }
}

// y for tiles [tile_begin, tile_end) of a plane narrower than 16 tiles, a whole image's run at a time: the epilogue
// on each lane (the residual gathered), then each tile's rows stored on their own, clipped at P and Q.
TARGET
static void outputs_by_image(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s, int P,
                             int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    const int K = s->out_channels;
    const int width = tile_end - tile_begin;
    const size_t plane_stride = (size_t)K * width;
    float staged[4 * LANES];
    for (int t = tile_begin; t < tile_end;) {
        const ck_winograd_image_run run = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 4, LANES);
        const __mmask16 in_run = (__mmask16)((1u << run.count) - 1);
        const __m512i one = _mm512_set1_epi32(1);
        const __m512i top = _mm512_add_epi32(_mm512_loadu_si512(run.top), one);  // the tile's first output row
        const __m512i left = _mm512_add_epi32(_mm512_loadu_si512(run.left), one);
        __mmask16 row_inside[4], column_inside[4];
        for (int i = 0; i < 4; i++) {
            row_inside[i] = in_run & _mm512_cmplt_epi32_mask(_mm512_add_epi32(top, _mm512_set1_epi32(i)), _mm512_set1_epi32(P));
            column_inside[i] = _mm512_cmplt_epi32_mask(_mm512_add_epi32(left, _mm512_set1_epi32(i)), _mm512_set1_epi32(Q));
        }
        const __m512i corner = _mm512_add_epi32(_mm512_mullo_epi32(top, _mm512_set1_epi32(Q)), left);
        for (int k = 0; k < K; k++) {
            const float *in = M + (size_t)k * width + (t - tile_begin);
            vec m[36];
            for (int xi = 0; xi < 36; xi++) m[xi] = _mm512_maskz_loadu_ps(in_run, in + (size_t)xi * plane_stride);
            vec o[4][4];
            output_transform(o, m);
            const size_t plane_offset = ((size_t)run.n * K + k) * P * Q;
            float *plane = y + plane_offset;
            const float *residual = e->residual ? e->residual + plane_offset : NULL;
            const __m512 bias = _mm512_set1_ps(e->bias ? e->bias[k] : 0.0f);
            for (int i = 0; i < 4; i++) {
                for (int j = 0; j < 4; j++) {
                    __m512 v = _mm512_add_ps(o[i][j], bias);
                    if (residual) {
                        const __m512i index = _mm512_add_epi32(corner, _mm512_set1_epi32(i * Q + j));
                        v = _mm512_add_ps(v, _mm512_mask_i32gather_ps(_mm512_setzero_ps(),
                                                                      row_inside[i] & column_inside[j], index,
                                                                      residual, 4));
                    }
                    // NaN passes, as in PyTorch: only values below zero become zero.
                    if (e->relu)
                        v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ),
                                               _mm512_setzero_ps());
                    o[i][j] = v;
                }
                vec out[4];
                interleave_tiles(o[i], out);
                for (int q = 0; q < 4; q++) _mm512_storeu_ps(staged + 16 * q, out[q]);
                for (int l = 0; l < run.count; l++) {
                    const int p = run.top[l] + 1 + i, q0 = run.left[l] + 1;
                    if (p >= P) continue;
                    float *dst = plane + (size_t)p * Q + q0;
                    memcpy(dst, staged + 4 * l, (size_t)(q0 + 4 <= Q ? 4 : Q - q0) * sizeof(float));
                }
            }
        }
        t += run.count;
    }
}

TARGET
void ck_winograd4_transform_outputs_avx512(float *y, const float *M, const ck_conv_epilogue *e,
                                           const ck_conv2d_shape *s, int P, int Q, int tiles_h, int tiles_w,
                                           int tile_begin, int tile_end) {
    if (ck_winograd_runs_by_image(tiles_w, LANES, P, Q)) {
        outputs_by_image(y, M, e, s, P, Q, tiles_h, tiles_w, tile_begin, tile_end);
        return;
    }
    const int K = s->out_channels;
    const int width = tile_end - tile_begin;
    const size_t plane_stride = (size_t)K * width;
    for (int t = tile_begin; t < tile_end;) {
        tile_run run = tile_run_at(t, tile_end, tiles_h, tiles_w);
        const __mmask16 in_run = (__mmask16)((1u << run.count) - 1);
        const int p0 = run.h0 + 1, q0 = run.base + 1;
        for (int k = 0; k < K; k++) {
            const float *in = M + (size_t)k * width + (t - tile_begin);
            vec m[36];
            for (int xi = 0; xi < 36; xi++) m[xi] = _mm512_maskz_loadu_ps(in_run, in + (size_t)xi * plane_stride);
            vec o[4][4];
            output_transform(o, m);
            const size_t plane_offset = ((size_t)run.n * K + k) * P * Q;
            const float bias = e->bias ? e->bias[k] : 0.0f;
            for (int i = 0; i < 4 && p0 + i < P; i++) {
                const size_t row_offset = plane_offset + (size_t)(p0 + i) * Q;
                store_output_row(y + row_offset, e->residual ? e->residual + row_offset : NULL, q0, Q, o[i], run.count,
                                 bias, e->relu);
            }
        }
        t += run.count;
    }
}
