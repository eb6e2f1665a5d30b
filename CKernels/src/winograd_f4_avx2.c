// The AVX2 + FMA transforms of Winograd F(4x4, 3x3) (winograd.c): the 8-lane twin of winograd_f4_avx512.c, for CPUs
// without AVX-512 (x86-64-v3, the build floor). Kernels 8 input channels at a time; inputs and outputs 8
// neighbouring tiles of one tile row at a time (one tile per lane).
#include "winograd.h"

#define LANES 8
typedef __m256 vec;
#define TARGET
#define vset1(x) _mm256_set1_ps(x)
#define vadd _mm256_add_ps
#define vsub _mm256_sub_ps
#define vmul _mm256_mul_ps
#define vfmadd _mm256_fmadd_ps
#define vfnmadd _mm256_fnmadd_ps
#include "winograd_f4_tier.h"

// All-ones in the first `count` (0..8) lanes.
static inline __m256i lanes_below(int count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

int ck_winograd4_transform_kernels_avx2(float *U, const ck_winograd_filters *f, int K, int C, int k, int c0) {
    if (f->c_stride > (size_t)(INT32_MAX / LANES)) return 0;  // lane offsets must fit the gather's 32-bit index
    const size_t KC = (size_t)K * C;
    const int count = C - c0 < LANES ? C - c0 : LANES;
    const __m256i in_run = lanes_below(count);
    const __m256i offsets = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)f->c_stride));
    const float *taps = f->weight + (size_t)k * f->k_stride + (size_t)c0 * f->c_stride;
    vec g[9];
    for (int i = 0; i < 9; i++)
        g[i] = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), taps + (f->reversed ? 8 - i : i), offsets,
                                        _mm256_castsi256_ps(in_run), 4);
    vec u[36];
    kernel_transform(u, g);
    for (int xi = 0; xi < 36; xi++) _mm256_maskstore_ps(U + (size_t)xi * KC + (size_t)k * C + c0, in_run, u[xi]);
    return count;
}

// The 6 input columns of 8 tiles, p[4l + j] for j < 6: p must hold 34 readable floats.
static inline void tile_columns(const float *p, vec d[6]) {
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

// 0 ≤ v < limit in each lane, as a lane mask.
static inline __m256i within(__m256i v, int limit) {
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), v), _mm256_cmpgt_epi32(_mm256_set1_epi32(limit), v));
}

// V for tiles [tile_begin, tile_end) of a plane narrower than 8 tiles, a whole image's run at a time: masked
// gathers, zero outside the image.
static void inputs_by_image(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                            int tile_begin, int tile_end) {
    const int C = s->in_channels, H = s->in_height, W = s->in_width;
    const int width = tile_end - tile_begin;
    const size_t plane_stride = (size_t)C * width;
    for (int t = tile_begin; t < tile_end;) {
        const ck_winograd_image_run run = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 4, LANES);
        const __m256i in_run = lanes_below(run.count);
        const __m256i top = _mm256_loadu_si256((const __m256i *)run.top), left = _mm256_loadu_si256((const __m256i *)run.left);
        __m256i row_inside[6], column_inside[6];
        for (int i = 0; i < 6; i++) {
            row_inside[i] = _mm256_and_si256(in_run, within(_mm256_add_epi32(top, _mm256_set1_epi32(i)), H));
            column_inside[i] = within(_mm256_add_epi32(left, _mm256_set1_epi32(i)), W);
        }
        const __m256i corner = _mm256_add_epi32(_mm256_mullo_epi32(top, _mm256_set1_epi32(W)), left);
        for (int c = 0; c < C; c++) {
            const float *plane = x + ((size_t)run.n * C + c) * H * W;
            vec d[6][6];
            for (int i = 0; i < 6; i++) {
                const __m256i row = _mm256_add_epi32(corner, _mm256_set1_epi32(i * W));
                for (int j = 0; j < 6; j++)
                    d[i][j] = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), plane, _mm256_add_epi32(row, _mm256_set1_epi32(j)),
                                                       _mm256_castsi256_ps(_mm256_and_si256(row_inside[i], column_inside[j])), 4);
            }
            vec v[36];
            input_transform(v, d);
            float *out = V + (size_t)c * width + (t - tile_begin);
            for (int xi = 0; xi < 36; xi++) _mm256_maskstore_ps(out + (size_t)xi * plane_stride, in_run, v[xi]);
        }
        t += run.count;
    }
}

void ck_winograd4_transform_inputs_avx2(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
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
        const __m256i in_run = lanes_below(run.count);
        for (int c = 0; c < C; c++) {
            const float *plane = x + ((size_t)run.n * C + c) * H * W;
            vec d[6][6];
            for (int i = 0; i < 6; i++) {
                const float *row = input_row(plane, H, W, run.h0 + i, run.base, run.count, staged);
                if (row) tile_columns(row, d[i]);
                else for (int j = 0; j < 6; j++) d[i][j] = _mm256_setzero_ps();
            }
            vec v[36];
            input_transform(v, d);
            float *out = V + (size_t)c * width + (t - tile_begin);
            for (int xi = 0; xi < 36; xi++) _mm256_maskstore_ps(out + (size_t)xi * plane_stride, in_run, v[xi]);
        }
        t += run.count;
    }
}

// One output row of 8 tiles, o[j] holding column j of each tile, made tile-major: out[q] holds tiles 2q and 2q + 1,
// 4 columns each.
static inline void interleave_tiles(const vec o[4], vec out[4]) {
    // tile_columns run backwards: tiles reordered 0, 2, 4, 6 | 1, 3, 5, 7, then a 4x4 transpose in each half
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

// NaN passes, as in PyTorch: only values below zero become zero.
static inline __m256 relu_of(__m256 v) { return _mm256_andnot_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ), v); }

// One output row of 8 tiles: o[j] holds column j of each tile; stored as 32 contiguous columns from q0, clipped at
// Q, after bias, residual and ReLU.
static inline void store_output_row(float *row, const float *residual_row, int q0, int Q, const vec o[4], int count,
                                    float bias, int relu) {
    vec out[4];
    interleave_tiles(o, out);
    int columns = 4 * count;
    if (q0 + columns > Q) columns = Q - q0;
    const __m256 b = _mm256_set1_ps(bias);
    for (int part = 0; part < 4; part++) {
        const int left = columns - 8 * part;
        if (left <= 0) break;
        const __m256i mask = lanes_below(left >= 8 ? 8 : left);
        __m256 v = _mm256_add_ps(out[part], b);
        if (residual_row) v = _mm256_add_ps(v, _mm256_maskload_ps(residual_row + q0 + 8 * part, mask));
        if (relu) v = relu_of(v);
        _mm256_maskstore_ps(row + q0 + 8 * part, mask, v);
    }
}

// y for tiles [tile_begin, tile_end) of a plane narrower than 8 tiles, a whole image's run at a time: the epilogue
// on each lane (the residual gathered), then each tile's rows stored on their own, clipped at P and Q.
static void outputs_by_image(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s, int P,
                             int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    const int K = s->out_channels;
    const int width = tile_end - tile_begin;
    const size_t plane_stride = (size_t)K * width;
    float staged[4 * LANES];
    for (int t = tile_begin; t < tile_end;) {
        const ck_winograd_image_run run = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 4, LANES);
        const __m256i in_run = lanes_below(run.count), one = _mm256_set1_epi32(1);
        const __m256i top = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)run.top), one);  // first output row
        const __m256i left = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)run.left), one);
        __m256i row_inside[4], column_inside[4];
        for (int i = 0; i < 4; i++) {
            row_inside[i] = _mm256_and_si256(in_run, within(_mm256_add_epi32(top, _mm256_set1_epi32(i)), P));
            column_inside[i] = within(_mm256_add_epi32(left, _mm256_set1_epi32(i)), Q);
        }
        const __m256i corner = _mm256_add_epi32(_mm256_mullo_epi32(top, _mm256_set1_epi32(Q)), left);
        for (int k = 0; k < K; k++) {
            const float *in = M + (size_t)k * width + (t - tile_begin);
            vec m[36];
            for (int xi = 0; xi < 36; xi++) m[xi] = _mm256_maskload_ps(in + (size_t)xi * plane_stride, in_run);
            vec o[4][4];
            output_transform(o, m);
            const size_t plane_offset = ((size_t)run.n * K + k) * P * Q;
            float *plane = y + plane_offset;
            const float *residual = e->residual ? e->residual + plane_offset : NULL;
            const __m256 bias = _mm256_set1_ps(e->bias ? e->bias[k] : 0.0f);
            for (int i = 0; i < 4; i++) {
                for (int j = 0; j < 4; j++) {
                    __m256 v = _mm256_add_ps(o[i][j], bias);
                    if (residual) {
                        const __m256i index = _mm256_add_epi32(corner, _mm256_set1_epi32(i * Q + j));
                        const __m256i inside = _mm256_and_si256(row_inside[i], column_inside[j]);
                        v = _mm256_add_ps(v, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), residual, index,
                                                                      _mm256_castsi256_ps(inside), 4));
                    }
                    o[i][j] = e->relu ? relu_of(v) : v;
                }
                vec out[4];
                interleave_tiles(o[i], out);
                for (int q = 0; q < 4; q++) _mm256_storeu_ps(staged + 8 * q, out[q]);
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

void ck_winograd4_transform_outputs_avx2(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s,
                                         int P, int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    if (ck_winograd_runs_by_image(tiles_w, LANES, P, Q)) {
        outputs_by_image(y, M, e, s, P, Q, tiles_h, tiles_w, tile_begin, tile_end);
        return;
    }
    const int K = s->out_channels;
    const int width = tile_end - tile_begin;
    const size_t plane_stride = (size_t)K * width;
    for (int t = tile_begin; t < tile_end;) {
        tile_run run = tile_run_at(t, tile_end, tiles_h, tiles_w);
        const __m256i in_run = lanes_below(run.count);
        const int p0 = run.h0 + 1, q0 = run.base + 1;
        for (int k = 0; k < K; k++) {
            const float *in = M + (size_t)k * width + (t - tile_begin);
            vec m[36];
            for (int xi = 0; xi < 36; xi++) m[xi] = _mm256_maskload_ps(in + (size_t)xi * plane_stride, in_run);
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
