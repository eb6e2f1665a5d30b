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

// V_ξ = (Bᵀ d B)_ξ of 8 tiles, stored at out + ξ·plane_stride for the lanes in the run.
static inline void transform_and_store_input(float *out, size_t plane_stride, __m256i in_run, __m256 d[4][4]) {
    __m256 bd[4][4];  // Bᵀ d
    for (int j = 0; j < 4; j++) {
        bd[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
        bd[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
        bd[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
        bd[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
    }
    for (int i = 0; i < 4; i++) {
        _mm256_maskstore_ps(out + (size_t)(4 * i + 0) * plane_stride, in_run, _mm256_sub_ps(bd[i][0], bd[i][2]));
        _mm256_maskstore_ps(out + (size_t)(4 * i + 1) * plane_stride, in_run, _mm256_add_ps(bd[i][1], bd[i][2]));
        _mm256_maskstore_ps(out + (size_t)(4 * i + 2) * plane_stride, in_run, _mm256_sub_ps(bd[i][2], bd[i][1]));
        _mm256_maskstore_ps(out + (size_t)(4 * i + 3) * plane_stride, in_run, _mm256_sub_ps(bd[i][1], bd[i][3]));
    }
}

// 0 ≤ v < limit in each lane, as a lane mask.
static inline __m256i within(__m256i v, int limit) {
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), v), _mm256_cmpgt_epi32(_mm256_set1_epi32(limit), v));
}

// Lane masks of an image run's pixels: rows top + i inside [0, rows) (and in the run), columns left + j inside
// [0, columns), for i, j < extent; and the plane offset of each lane's (top, left).
typedef struct {
    __m256i row_inside[4], column_inside[4], corner;
} run_masks;

static inline run_masks masks_of(const ck_winograd_image_run *run, int top_offset, int extent, int rows, int columns) {
    run_masks m;
    const __m256i offset = _mm256_set1_epi32(top_offset), in_run = lanes_below(run->count);
    const __m256i top = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)run->top), offset);
    const __m256i left = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)run->left), offset);
    for (int i = 0; i < extent; i++) {
        m.row_inside[i] = _mm256_and_si256(in_run, within(_mm256_add_epi32(top, _mm256_set1_epi32(i)), rows));
        m.column_inside[i] = within(_mm256_add_epi32(left, _mm256_set1_epi32(i)), columns);
    }
    m.corner = _mm256_add_epi32(_mm256_mullo_epi32(top, _mm256_set1_epi32(columns)), left);
    return m;
}

// Pixel (i, j) of each lane's tile, 0 outside the plane (row length `columns`).
static inline __m256 gather_pixel(const float *plane, const run_masks *m, int columns, int i, int j) {
    const __m256i index = _mm256_add_epi32(m->corner, _mm256_set1_epi32(i * columns + j));
    return gather_or_zero(plane, index, _mm256_and_si256(m->row_inside[i], m->column_inside[j]));
}

// V for a plane narrower than 8 tiles, a whole image's run at a time (ck_winograd_image_run).
static void inputs_by_image(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                            int tile_begin, int tile_end) {
    const int C = s->in_channels, H = s->in_height, W = s->in_width;
    const int width = tile_end - tile_begin;
    const size_t plane_stride = (size_t)C * width;
    for (int t = tile_begin; t < tile_end;) {
        const ck_winograd_image_run run = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 2, 8);
        const run_masks m = masks_of(&run, 0, 4, H, W);
        for (int c = 0; c < C; c++) {
            const float *plane = x + ((size_t)run.n * C + c) * H * W;
            __m256 d[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) d[i][j] = gather_pixel(plane, &m, W, i, j);
            transform_and_store_input(V + (size_t)c * width + (t - tile_begin), plane_stride, lanes_below(run.count), d);
        }
        t += run.count;
    }
}

void ck_winograd_transform_inputs_avx2(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                                       int tile_begin, int tile_end) {
    const int C = s->in_channels, H = s->in_height, W = s->in_width;
    if (ck_winograd_runs_by_image(tiles_w, 8, H, W)) {
        inputs_by_image(V, x, s, tiles_h, tiles_w, tile_begin, tile_end);
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
            transform_and_store_input(V + (size_t)c * width + (t - tile_begin), plane_stride, in_run, d);
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

// Aᵀ m A of 8 tiles: left[i] and right[i] are output row i's two columns.
static inline void transform_output(const __m256 m[16], __m256 left[2], __m256 right[2]) {
    for (int i = 0; i < 2; i++) {
        __m256 am[4];  // row i of Aᵀ m
        for (int j = 0; j < 4; j++)
            am[j] = i == 0 ? _mm256_add_ps(_mm256_add_ps(m[j], m[4 + j]), m[8 + j])
                           : _mm256_sub_ps(_mm256_sub_ps(m[4 + j], m[8 + j]), m[12 + j]);
        left[i] = _mm256_add_ps(_mm256_add_ps(am[0], am[1]), am[2]);
        right[i] = _mm256_sub_ps(_mm256_sub_ps(am[1], am[2]), am[3]);
    }
}

// y for a plane narrower than 8 tiles, a whole image's run at a time (ck_winograd_image_run): the epilogue on each
// lane (the residual gathered), then each tile's rows stored on their own, clipped at P and Q.
static void outputs_by_image(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s, int P,
                             int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    const int K = s->out_channels;
    const int width = tile_end - tile_begin;
    const size_t plane_stride = (size_t)K * width;
    float staged[16];
    for (int t = tile_begin; t < tile_end;) {
        const ck_winograd_image_run run = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 2, 8);
        const __m256i in_run = lanes_below(run.count);
        const run_masks masks = masks_of(&run, 1, 2, P, Q);  // outputs start one row and column after the inputs
        for (int k = 0; k < K; k++) {
            const float *in = M + (size_t)k * width + (t - tile_begin);
            __m256 m[16], o[2][2];
            for (int xi = 0; xi < 16; xi++) m[xi] = _mm256_maskload_ps(in + (size_t)xi * plane_stride, in_run);
            transform_output(m, o[0], o[1]);  // o[0][i], o[1][i]: the left and right column of row i
            const size_t plane_offset = ((size_t)run.n * K + k) * P * Q;
            float *plane = y + plane_offset;
            const float *residual = e->residual ? e->residual + plane_offset : NULL;
            const __m256 bias = _mm256_set1_ps(e->bias ? e->bias[k] : 0.0f);
            for (int i = 0; i < 2; i++) {
                __m256 v[2];
                for (int j = 0; j < 2; j++) {
                    v[j] = _mm256_add_ps(o[j][i], bias);
                    if (residual) v[j] = _mm256_add_ps(v[j], gather_pixel(residual, &masks, Q, i, j));
                    // NaN passes, as in PyTorch: only values below zero become zero.
                    if (e->relu) v[j] = _mm256_blendv_ps(v[j], _mm256_setzero_ps(), _mm256_cmp_ps(v[j], _mm256_setzero_ps(), _CMP_LT_OQ));
                }
                // Interleave: outputs 2l and 2l + 1 of tile l.
                const __m256 low = _mm256_unpacklo_ps(v[0], v[1]), high = _mm256_unpackhi_ps(v[0], v[1]);
                _mm256_storeu_ps(staged, _mm256_permute2f128_ps(low, high, 0x20));
                _mm256_storeu_ps(staged + 8, _mm256_permute2f128_ps(low, high, 0x31));
                for (int l = 0; l < run.count; l++) {
                    const int p = run.top[l] + 1 + i, q0 = run.left[l] + 1;
                    if (p >= P) continue;
                    memcpy(plane + (size_t)p * Q + q0, staged + 2 * l, (size_t)(q0 + 2 <= Q ? 2 : 1) * sizeof(float));
                }
            }
        }
        t += run.count;
    }
}

void ck_winograd_transform_outputs_avx2(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s,
                                        int P, int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    if (ck_winograd_runs_by_image(tiles_w, 8, P, Q)) {
        outputs_by_image(y, M, e, s, P, Q, tiles_h, tiles_w, tile_begin, tile_end);
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
            transform_output(m, left, right);
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
    *even = gather_or_zero(row + q0, even_index, _mm256_and_si256(in_run, _mm256_cmpgt_epi32(limit, even_index)));
    *odd = gather_or_zero(row + q0, odd_index, _mm256_and_si256(in_run, _mm256_cmpgt_epi32(limit, odd_index)));
}

// Ŷ_ξ = (A g Aᵀ)_ξ of 8 tiles' 2x2 output gradients g, stored at out + ξ·plane_stride for the lanes in the run.
static inline void transform_and_store_gradient(float *out, size_t plane_stride, __m256i in_run, __m256 g[2][2]) {
    __m256 a[4][2];  // A g
    for (int j = 0; j < 2; j++) {
        a[0][j] = g[0][j];
        a[1][j] = _mm256_add_ps(g[0][j], g[1][j]);
        a[2][j] = _mm256_sub_ps(g[0][j], g[1][j]);
        a[3][j] = _mm256_sub_ps(_mm256_setzero_ps(), g[1][j]);
    }
    for (int i = 0; i < 4; i++) {
        _mm256_maskstore_ps(out + (size_t)(4 * i + 0) * plane_stride, in_run, a[i][0]);
        _mm256_maskstore_ps(out + (size_t)(4 * i + 1) * plane_stride, in_run, _mm256_add_ps(a[i][0], a[i][1]));
        _mm256_maskstore_ps(out + (size_t)(4 * i + 2) * plane_stride, in_run, _mm256_sub_ps(a[i][0], a[i][1]));
        _mm256_maskstore_ps(out + (size_t)(4 * i + 3) * plane_stride, in_run, _mm256_sub_ps(_mm256_setzero_ps(), a[i][1]));
    }
}

void ck_winograd_transform_output_gradients_avx2(float *Y, const float *dy, const ck_conv2d_shape *s, int P, int Q,
                                                 int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    const int K = s->out_channels;
    if (ck_winograd_runs_by_image(tiles_w, 8, P, Q)) {  // a whole image's run at a time, gathered
        const int width = tile_end - tile_begin;
        for (int t = tile_begin; t < tile_end;) {
            const ck_winograd_image_run run = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 2, 8);
            const run_masks masks = masks_of(&run, 1, 2, P, Q);
            for (int k = 0; k < K; k++) {
                const float *plane = dy + ((size_t)run.n * K + k) * P * Q;
                __m256 g[2][2];
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++) g[i][j] = gather_pixel(plane, &masks, Q, i, j);
                transform_and_store_gradient(Y + (size_t)k * width + (t - tile_begin), (size_t)K * width,
                                             lanes_below(run.count), g);
            }
            t += run.count;
        }
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
            transform_and_store_gradient(Y + (size_t)k * width + (t - tile_begin), plane_stride, in_run, g);
        }
        t += count;
    }
}
