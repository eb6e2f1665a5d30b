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

// V_ξ = (Bᵀ d B)_ξ of 16 tiles, stored at out + ξ·plane_stride for the lanes in the run.
__attribute__((target("avx512f")))
static inline void transform_and_store_input(float *out, size_t plane_stride, __mmask16 in_run, __m512 d[4][4]) {
    __m512 bd[4][4];  // Bᵀ d
    for (int j = 0; j < 4; j++) {
        bd[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
        bd[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
        bd[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
        bd[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
    }
    for (int i = 0; i < 4; i++) {
        _mm512_mask_storeu_ps(out + (size_t)(4 * i + 0) * plane_stride, in_run, _mm512_sub_ps(bd[i][0], bd[i][2]));
        _mm512_mask_storeu_ps(out + (size_t)(4 * i + 1) * plane_stride, in_run, _mm512_add_ps(bd[i][1], bd[i][2]));
        _mm512_mask_storeu_ps(out + (size_t)(4 * i + 2) * plane_stride, in_run, _mm512_sub_ps(bd[i][2], bd[i][1]));
        _mm512_mask_storeu_ps(out + (size_t)(4 * i + 3) * plane_stride, in_run, _mm512_sub_ps(bd[i][1], bd[i][3]));
    }
}

// Lane masks of an image run's pixels: rows top + i inside [0, rows) (and in the run), columns left + j inside
// [0, columns), for i, j < extent; and the plane offset of each lane's (top, left).
typedef struct {
    __mmask16 row_inside[4], column_inside[4];
    __m512i corner;
} run_masks;

__attribute__((target("avx512f")))
static inline run_masks masks_of(const ck_winograd_image_run *run, int top_offset, int extent, int rows, int columns) {
    run_masks m;
    const __m512i zero = _mm512_setzero_si512();
    const __m512i top = _mm512_add_epi32(_mm512_loadu_si512(run->top), _mm512_set1_epi32(top_offset));
    const __m512i left = _mm512_add_epi32(_mm512_loadu_si512(run->left), _mm512_set1_epi32(top_offset));
    const __mmask16 in_run = (__mmask16)((1u << run->count) - 1);
    for (int i = 0; i < extent; i++) {
        const __m512i h = _mm512_add_epi32(top, _mm512_set1_epi32(i)), w = _mm512_add_epi32(left, _mm512_set1_epi32(i));
        m.row_inside[i] = in_run & _mm512_cmpge_epi32_mask(h, zero) & _mm512_cmplt_epi32_mask(h, _mm512_set1_epi32(rows));
        m.column_inside[i] = _mm512_cmpge_epi32_mask(w, zero) & _mm512_cmplt_epi32_mask(w, _mm512_set1_epi32(columns));
    }
    m.corner = _mm512_add_epi32(_mm512_mullo_epi32(top, _mm512_set1_epi32(columns)), left);
    return m;
}

// Pixel (i, j) of each lane's tile, 0 outside the plane (row length `columns`).
__attribute__((target("avx512f")))
static inline __m512 gather_pixel(const float *plane, const run_masks *m, int columns, int i, int j) {
    const __m512i index = _mm512_add_epi32(m->corner, _mm512_set1_epi32(i * columns + j));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m->row_inside[i] & m->column_inside[j], index, plane, 4);
}

// V for a plane narrower than 16 tiles, a whole image's run at a time (ck_winograd_image_run).
__attribute__((target("avx512f")))
static void inputs_by_image(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                            int tile_begin, int tile_end) {
    const int C = s->in_channels, H = s->in_height, W = s->in_width;
    const int width = tile_end - tile_begin;
    const size_t plane_stride = (size_t)C * width;
    for (int t = tile_begin; t < tile_end;) {
        const ck_winograd_image_run run = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 2, 16);
        const run_masks m = masks_of(&run, 0, 4, H, W);
        for (int c = 0; c < C; c++) {
            const float *plane = x + ((size_t)run.n * C + c) * H * W;
            __m512 d[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) d[i][j] = gather_pixel(plane, &m, W, i, j);
            transform_and_store_input(V + (size_t)c * width + (t - tile_begin), plane_stride,
                                      (__mmask16)((1u << run.count) - 1), d);
        }
        t += run.count;
    }
}

__attribute__((target("avx512f")))
void ck_winograd_transform_inputs_avx512(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                                         int tile_begin, int tile_end) {
    const int C = s->in_channels, H = s->in_height, W = s->in_width;
    if (ck_winograd_runs_by_image(tiles_w, 16, H, W)) {
        inputs_by_image(V, x, s, tiles_h, tiles_w, tile_begin, tile_end);
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
            transform_and_store_input(V + (size_t)c * width + (t - tile_begin), plane_stride, in_run, d);
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

// Aᵀ m A of 16 tiles: left[i] and right[i] are output row i's two columns.
__attribute__((target("avx512f")))
static inline void transform_output(const __m512 m[16], __m512 left[2], __m512 right[2]) {
    for (int i = 0; i < 2; i++) {
        __m512 am[4];  // row i of Aᵀ m
        for (int j = 0; j < 4; j++)
            am[j] = i == 0 ? _mm512_add_ps(_mm512_add_ps(m[j], m[4 + j]), m[8 + j])
                           : _mm512_sub_ps(_mm512_sub_ps(m[4 + j], m[8 + j]), m[12 + j]);
        left[i] = _mm512_add_ps(_mm512_add_ps(am[0], am[1]), am[2]);
        right[i] = _mm512_sub_ps(_mm512_sub_ps(am[1], am[2]), am[3]);
    }
}

// y for a plane narrower than 16 tiles, a whole image's run at a time (ck_winograd_image_run): the epilogue on each
// lane (the residual gathered), then each tile's rows stored on their own, clipped at P and Q.
__attribute__((target("avx512f")))
static void outputs_by_image(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s, int P,
                             int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    const int K = s->out_channels;
    const int width = tile_end - tile_begin;
    const size_t plane_stride = (size_t)K * width;
    const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i second = _mm512_add_epi32(first, _mm512_set1_epi32(8));
    float staged[32];
    for (int t = tile_begin; t < tile_end;) {
        const ck_winograd_image_run run = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 2, 16);
        const __mmask16 in_run = (__mmask16)((1u << run.count) - 1);
        const run_masks masks = masks_of(&run, 1, 2, P, Q);  // outputs start one row and column after the inputs
        for (int k = 0; k < K; k++) {
            const float *in = M + (size_t)k * width + (t - tile_begin);
            __m512 m[16], o[2][2];
            for (int xi = 0; xi < 16; xi++) m[xi] = _mm512_maskz_loadu_ps(in_run, in + (size_t)xi * plane_stride);
            transform_output(m, o[0], o[1]);  // o[0][i], o[1][i]: the left and right column of row i
            const size_t plane_offset = ((size_t)run.n * K + k) * P * Q;
            float *plane = y + plane_offset;
            const float *residual = e->residual ? e->residual + plane_offset : NULL;
            const __m512 bias = _mm512_set1_ps(e->bias ? e->bias[k] : 0.0f);
            for (int i = 0; i < 2; i++) {
                __m512 v[2];
                for (int j = 0; j < 2; j++) {
                    v[j] = _mm512_add_ps(o[j][i], bias);
                    if (residual) v[j] = _mm512_add_ps(v[j], gather_pixel(residual, &masks, Q, i, j));
                    // NaN passes, as in PyTorch: only values below zero become zero.
                    if (e->relu)
                        v[j] = _mm512_mask_mov_ps(v[j], _mm512_cmp_ps_mask(v[j], _mm512_setzero_ps(), _CMP_LT_OQ),
                                                  _mm512_setzero_ps());
                }
                _mm512_storeu_ps(staged, _mm512_permutex2var_ps(v[0], first, v[1]));
                _mm512_storeu_ps(staged + 16, _mm512_permutex2var_ps(v[0], second, v[1]));
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

__attribute__((target("avx512f")))
void ck_winograd_transform_outputs_avx512(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s,
                                          int P, int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    if (ck_winograd_runs_by_image(tiles_w, 16, P, Q)) {
        outputs_by_image(y, M, e, s, P, Q, tiles_h, tiles_w, tile_begin, tile_end);
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

// Ŷ_ξ = (A g Aᵀ)_ξ of 16 tiles' 2x2 output gradients g, stored at out + ξ·plane_stride for the lanes in the run.
__attribute__((target("avx512f")))
static inline void transform_and_store_gradient(float *out, size_t plane_stride, __mmask16 in_run, __m512 g[2][2]) {
    __m512 a[4][2];  // A g
    for (int j = 0; j < 2; j++) {
        a[0][j] = g[0][j];
        a[1][j] = _mm512_add_ps(g[0][j], g[1][j]);
        a[2][j] = _mm512_sub_ps(g[0][j], g[1][j]);
        a[3][j] = _mm512_sub_ps(_mm512_setzero_ps(), g[1][j]);
    }
    for (int i = 0; i < 4; i++) {
        _mm512_mask_storeu_ps(out + (size_t)(4 * i + 0) * plane_stride, in_run, a[i][0]);
        _mm512_mask_storeu_ps(out + (size_t)(4 * i + 1) * plane_stride, in_run, _mm512_add_ps(a[i][0], a[i][1]));
        _mm512_mask_storeu_ps(out + (size_t)(4 * i + 2) * plane_stride, in_run, _mm512_sub_ps(a[i][0], a[i][1]));
        _mm512_mask_storeu_ps(out + (size_t)(4 * i + 3) * plane_stride, in_run, _mm512_sub_ps(_mm512_setzero_ps(), a[i][1]));
    }
}

__attribute__((target("avx512f")))
void ck_winograd_transform_output_gradients_avx512(float *Y, const float *dy, const ck_conv2d_shape *s, int P, int Q,
                                                   int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    const int K = s->out_channels;
    if (ck_winograd_runs_by_image(tiles_w, 16, P, Q)) {  // a whole image's run at a time, gathered
        const int width = tile_end - tile_begin;
        for (int t = tile_begin; t < tile_end;) {
            const ck_winograd_image_run run = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 2, 16);
            const run_masks masks = masks_of(&run, 1, 2, P, Q);
            for (int k = 0; k < K; k++) {
                const float *plane = dy + ((size_t)run.n * K + k) * P * Q;
                __m512 g[2][2];
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++) g[i][j] = gather_pixel(plane, &masks, Q, i, j);
                transform_and_store_gradient(Y + (size_t)k * width + (t - tile_begin), (size_t)K * width,
                                             (__mmask16)((1u << run.count) - 1), g);
            }
            t += run.count;
        }
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
            transform_and_store_gradient(Y + (size_t)k * width + (t - tile_begin), plane_stride, in_run, g);
        }
        t += count;
    }
}
