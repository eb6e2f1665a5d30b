// The Winograd transforms written once for both CPU tiers. winograd_avx512.c and winograd_avx2.c each define a small
// vector vocabulary and include this file:
//   LANES (16 or 8), TARGET (the function attribute the tier needs), TIER(name) (the exported name's suffix);
//   vec, ivec (32-bit lanes), vmask (a lane mask); vzero, vset1, vadd, vsub, vmul, vfmadd, vfnmadd, vstoreu; iset1,
//   iadd, imul, iload, ilanes (0, 1, …); lanes_below(count), mask_and, within(v, limit) (0 ≤ v < limit);
//   load_masked, store_masked (lanes outside the mask are neither read nor written), gather_masked (0 outside the
//   mask), relu_of;
//   and the shuffles that differ by vector width: interleave_pairs (F(2x2, 3x3) output rows), tile_columns4 and
//   interleave_tiles4 (F(4x4, 3x3) input and output rows).
// One lane is one tile (inputs, outputs, output gradients) or one input channel (kernels).
#ifndef CKERNELS_WINOGRAD_TIER_H
#define CKERNELS_WINOGRAD_TIER_H

// ------------------------------------------------------------------------------------------------ image runs
// Lane masks of an image run's pixels (ck_winograd_image_run): rows top + offset + i inside [0, rows) (and the lane
// in the run), columns left + offset + j inside [0, columns), for i, j < extent; and the plane offset of each lane's
// (top + offset, left + offset). Outputs start one row and column after their tile's inputs (offset 1).
typedef struct {
    vmask row_inside[6], column_inside[6];
    ivec corner;
} run_masks;

TARGET static inline run_masks masks_of(const ck_winograd_image_run *run, int offset, int extent, int rows,
                                        int columns) {
    run_masks m;
    const ivec top = iadd(iload(run->top), iset1(offset)), left = iadd(iload(run->left), iset1(offset));
    const vmask in_run = lanes_below(run->count);
    for (int i = 0; i < extent; i++) {
        m.row_inside[i] = mask_and(in_run, within(iadd(top, iset1(i)), rows));
        m.column_inside[i] = within(iadd(left, iset1(i)), columns);
    }
    m.corner = iadd(imul(top, iset1(columns)), left);
    return m;
}

// Pixel (i, j) of each lane's tile, 0 outside the plane (rows of `columns` pixels).
TARGET static inline vec gather_pixel(const float *plane, const run_masks *m, int columns, int i, int j) {
    return gather_masked(plane, iadd(m->corner, iset1(i * columns + j)), mask_and(m->row_inside[i], m->column_inside[j]));
}

// bias, then the residual (gathered, when there is one), then ReLU (NaN passes, as in PyTorch: only values below zero
// become zero), on output (i, j) of each lane's tile.
TARGET static inline vec epilogue_on_lanes(vec v, vec bias, const float *residual, const run_masks *m, int Q, int i,
                                           int j, int relu) {
    v = vadd(v, bias);
    if (residual) v = vadd(v, gather_pixel(residual, m, Q, i, j));
    return relu ? relu_of(v) : v;
}

// Row i of each tile of an image run, made tile-major in `staged` (tile_width floats a tile), stored tile by tile,
// clipped at P and Q.
static inline void store_run_row(float *plane, const ck_winograd_image_run *run, const float *staged, int tile_width,
                                 int i, int P, int Q) {
    for (int l = 0; l < run->count; l++) {
        const int p = run->top[l] + 1 + i, q0 = run->left[l] + 1;
        if (p >= P) continue;
        const int columns = q0 + tile_width <= Q ? tile_width : Q - q0;
        memcpy(plane + (size_t)p * Q + q0, staged + tile_width * l, (size_t)columns * sizeof(float));
    }
}

// The 9 taps of the filters of output channel k and input channels [c0, c0 + count), one channel per lane. The
// caller checks that the lane offsets (c_stride · LANES) fit a 32-bit gather index.
TARGET static inline void gather_taps(vec g[9], const ck_winograd_filters *f, int k, int c0, vmask in_run) {
    const ivec offsets = imul(ilanes(), iset1((int)f->c_stride));
    const float *taps = f->weight + (size_t)k * f->k_stride + (size_t)c0 * f->c_stride;
    for (int i = 0; i < 9; i++) g[i] = gather_masked(taps + (f->reversed ? 8 - i : i), offsets, in_run);
}

// ---------------------------------------------------------------------------------------------- F(2x2, 3x3)
// G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]: U for output channel k and input channels [c0, c0 + LANES) (fewer at the end).
TARGET int TIER(ck_winograd_transform_kernels)(float *U, const ck_winograd_filters *f, int K, int C, int k, int c0) {
    if (f->c_stride > (size_t)(INT32_MAX / LANES)) return 0;  // lane offsets must fit the gather's 32-bit index
    const size_t KC = (size_t)K * C;
    const int count = C - c0 < LANES ? C - c0 : LANES;
    const vmask in_run = lanes_below(count);
    const vec half = vset1(0.5f);
    vec g[9], t[4][3];  // t = G g
    gather_taps(g, f, k, c0, in_run);
    for (int col = 0; col < 3; col++) {
        const vec g0 = g[col], g1 = g[3 + col], g2 = g[6 + col];
        t[0][col] = g0;
        t[1][col] = vmul(half, vadd(vadd(g0, g1), g2));
        t[2][col] = vmul(half, vadd(vsub(g0, g1), g2));
        t[3][col] = g2;
    }
    for (int i = 0; i < 4; i++) {
        const vec a = t[i][0], b = t[i][1], c = t[i][2];
        const vec u[4] = {a, vmul(half, vadd(vadd(a, b), c)), vmul(half, vadd(vsub(a, b), c)), c};
        for (int j = 0; j < 4; j++) store_masked(U + (size_t)(4 * i + j) * KC + (size_t)k * C + c0, in_run, u[j]);
    }
    return count;
}

// Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]: V_ξ = (Bᵀ d B)_ξ, stored at out + ξ·plane_stride for the lanes in
// the run.
TARGET static inline void transform_and_store_input2(float *out, size_t plane_stride, vmask in_run, vec d[4][4]) {
    vec bd[4][4];  // Bᵀ d
    for (int j = 0; j < 4; j++) {
        bd[0][j] = vsub(d[0][j], d[2][j]);
        bd[1][j] = vadd(d[1][j], d[2][j]);
        bd[2][j] = vsub(d[2][j], d[1][j]);
        bd[3][j] = vsub(d[1][j], d[3][j]);
    }
    for (int i = 0; i < 4; i++) {
        store_masked(out + (size_t)(4 * i + 0) * plane_stride, in_run, vsub(bd[i][0], bd[i][2]));
        store_masked(out + (size_t)(4 * i + 1) * plane_stride, in_run, vadd(bd[i][1], bd[i][2]));
        store_masked(out + (size_t)(4 * i + 2) * plane_stride, in_run, vsub(bd[i][2], bd[i][1]));
        store_masked(out + (size_t)(4 * i + 3) * plane_stride, in_run, vsub(bd[i][1], bd[i][3]));
    }
}

// Aᵀ = [1 1 1 0; 0 1 −1 −1]: Aᵀ m A, with left[i] and right[i] output row i's two columns.
TARGET static inline void transform_output2(const vec m[16], vec left[2], vec right[2]) {
    for (int i = 0; i < 2; i++) {
        vec am[4];  // row i of Aᵀ m
        for (int j = 0; j < 4; j++)
            am[j] = i == 0 ? vadd(vadd(m[j], m[4 + j]), m[8 + j]) : vsub(vsub(m[4 + j], m[8 + j]), m[12 + j]);
        left[i] = vadd(vadd(am[0], am[1]), am[2]);
        right[i] = vsub(vsub(am[1], am[2]), am[3]);
    }
}

// A = [1 0; 1 1; 1 −1; 0 −1]: Ŷ_ξ = (A g Aᵀ)_ξ of each tile's 2x2 output gradients g, stored at
// out + ξ·plane_stride for the lanes in the run.
TARGET static inline void transform_and_store_gradient2(float *out, size_t plane_stride, vmask in_run, vec g[2][2]) {
    vec a[4][2];  // A g
    for (int j = 0; j < 2; j++) {
        a[0][j] = g[0][j];
        a[1][j] = vadd(g[0][j], g[1][j]);
        a[2][j] = vsub(g[0][j], g[1][j]);
        a[3][j] = vsub(vzero(), g[1][j]);
    }
    for (int i = 0; i < 4; i++) {
        store_masked(out + (size_t)(4 * i + 0) * plane_stride, in_run, a[i][0]);
        store_masked(out + (size_t)(4 * i + 1) * plane_stride, in_run, vadd(a[i][0], a[i][1]));
        store_masked(out + (size_t)(4 * i + 2) * plane_stride, in_run, vsub(a[i][0], a[i][1]));
        store_masked(out + (size_t)(4 * i + 3) * plane_stride, in_run, vsub(vzero(), a[i][1]));
    }
}

// V for tiles [tile_begin, tile_end) of a plane narrower than LANES tiles, a whole image's run at a time.
TARGET static void inputs_by_image2(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h, int tiles_w,
                                    int tile_begin, int tile_end) {
    const int C = s->in_channels, H = s->in_height, W = s->in_width;
    const int width = tile_end - tile_begin;
    for (int t = tile_begin; t < tile_end;) {
        const ck_winograd_image_run run = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 2, LANES);
        const run_masks m = masks_of(&run, 0, 4, H, W);
        for (int c = 0; c < C; c++) {
            const float *plane = x + ((size_t)run.n * C + c) * H * W;
            vec d[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) d[i][j] = gather_pixel(plane, &m, W, i, j);
            transform_and_store_input2(V + (size_t)c * width + (t - tile_begin), (size_t)C * width,
                                       lanes_below(run.count), d);
        }
        t += run.count;
    }
}

// y for tiles [tile_begin, tile_end) of a plane narrower than LANES tiles, a whole image's run at a time: the
// epilogue on each lane, then each tile's rows stored on their own.
TARGET static void outputs_by_image2(float *y, const float *M, const ck_conv_epilogue *e, const ck_conv2d_shape *s,
                                     int P, int Q, int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    const int K = s->out_channels;
    const int width = tile_end - tile_begin;
    const size_t plane_stride = (size_t)K * width;
    float staged[2 * LANES];
    for (int t = tile_begin; t < tile_end;) {
        const ck_winograd_image_run run = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 2, LANES);
        const vmask in_run = lanes_below(run.count);
        const run_masks masks = masks_of(&run, 1, 2, P, Q);
        for (int k = 0; k < K; k++) {
            const float *in = M + (size_t)k * width + (t - tile_begin);
            vec m[16], columns[2][2];  // columns[j][i]: column j of output row i
            for (int xi = 0; xi < 16; xi++) m[xi] = load_masked(in + (size_t)xi * plane_stride, in_run);
            transform_output2(m, columns[0], columns[1]);
            const size_t plane_offset = ((size_t)run.n * K + k) * P * Q;
            const float *residual = e->residual ? e->residual + plane_offset : NULL;
            const vec bias = vset1(e->bias ? e->bias[k] : 0.0f);
            for (int i = 0; i < 2; i++) {
                interleave_pairs(epilogue_on_lanes(columns[0][i], bias, residual, &masks, Q, i, 0, e->relu),
                                 epilogue_on_lanes(columns[1][i], bias, residual, &masks, Q, i, 1, e->relu), staged);
                store_run_row(y + plane_offset, &run, staged, 2, i, P, Q);
            }
        }
        t += run.count;
    }
}

// Ŷ for tiles [tile_begin, tile_end) of a plane narrower than LANES tiles, a whole image's run at a time.
TARGET static void output_gradients_by_image2(float *Y, const float *dy, const ck_conv2d_shape *s, int P, int Q,
                                              int tiles_h, int tiles_w, int tile_begin, int tile_end) {
    const int K = s->out_channels;
    const int width = tile_end - tile_begin;
    for (int t = tile_begin; t < tile_end;) {
        const ck_winograd_image_run run = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 2, LANES);
        const run_masks masks = masks_of(&run, 1, 2, P, Q);
        for (int k = 0; k < K; k++) {
            const float *plane = dy + ((size_t)run.n * K + k) * P * Q;
            vec g[2][2];
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) g[i][j] = gather_pixel(plane, &masks, Q, i, j);
            transform_and_store_gradient2(Y + (size_t)k * width + (t - tile_begin), (size_t)K * width,
                                          lanes_below(run.count), g);
        }
        t += run.count;
    }
}

// ---------------------------------------------------------------------------------------------- F(4x4, 3x3)
// Lavin & Gray (arXiv:1509.09308), interpolation points 0, ±1, ±2, ∞:
//
//        ⎡4  0 −5  0  1  0⎤        ⎡ 1/4    0    0 ⎤        ⎡1  1  1  1  1  0⎤
//        ⎢0 −4 −4  1  1  0⎥        ⎢−1/6 −1/6 −1/6 ⎥   Aᵀ = ⎢0  1 −1  2 −2  0⎥
//   Bᵀ = ⎢0  4 −4 −1  1  0⎥   G =  ⎢−1/6  1/6 −1/6 ⎥        ⎢0  1  1  4  4  0⎥
//        ⎢0 −2 −1  2  1  0⎥        ⎢1/24 1/12  1/6 ⎥        ⎣0  1 −1  8 −8  1⎦
//        ⎢0  2 −1 −2  1  0⎥        ⎢1/24 −1/12 1/6 ⎥
//        ⎣0  4  0 −5  0  1⎦        ⎣  0    0    1  ⎦
//
// Coefficients up to 8, and 1/6 and 1/12, which floats do not hold exactly, make its rounding error about 6x
// F(2x2, 3x3)'s; the tests hold both to 1e-4 relative.

// Floats an input row is staged in: the 4·LANES + 2 columns that LANES neighbouring tiles read.
#define STAGED_FLOATS (4 * LANES + 2)

// A run of up to LANES neighbouring tiles in one tile row, starting at global tile t: image n, the first input
// row and column the first tile reads (−1 at the top and left edges, padding), and how many tiles.
typedef struct {
    int n, h0, base, count;
} row_run;

static inline row_run row_run_at(int t, int tile_end, int tiles_h, int tiles_w) {
    const int per_image = tiles_h * tiles_w, r = t % per_image, tile_row = r / tiles_w, tile_col = r % tiles_w;
    int count = tiles_w - tile_col;
    if (count > tile_end - t) count = tile_end - t;
    if (count > LANES) count = LANES;
    return (row_run){t / per_image, tile_row * 4 - 1, tile_col * 4 - 1, count};
}

// Input row h of `plane` from column `base` on, for a run of `count` tiles: the row itself when all LANES tiles'
// columns lie inside it, otherwise staged with zeros outside [0, W) and past the run. NULL above or below the image
// (an all-zero row).
static inline const float *input_row(const float *plane, int H, int W, int h, int base, int count,
                                     float staged[STAGED_FLOATS]) {
    if (h < 0 || h >= H) return NULL;
    const float *row = plane + (size_t)h * W;
    if (count == LANES && base >= 0 && base + STAGED_FLOATS <= W) return row + base;
    const int begin = base < 0 ? 0 : base;
    int end = base + 4 * count + 2;
    if (end > W) end = W;
    const int copied = end > begin ? end - begin : 0;
    memset(staged, 0, sizeof(float) * STAGED_FLOATS);
    memcpy(staged + (begin - base), row + begin, sizeof(float) * (size_t)copied);
    return staged;
}

// One 6-point input transform, r = Bᵀ d.
TARGET static inline void input_transform6(vec r[6], vec d0, vec d1, vec d2, vec d3, vec d4, vec d5) {
    const vec four = vset1(4.0f), five = vset1(5.0f), two = vset1(2.0f);
    const vec d4_minus_d2 = vsub(d4, d2), d3_minus_d1 = vsub(d3, d1);
    r[0] = vfmadd(four, d0, vfnmadd(five, d2, d4));
    r[1] = vfnmadd(four, vadd(d1, d2), vadd(d3, d4));
    r[2] = vfmadd(four, vsub(d1, d2), vsub(d4, d3));
    r[3] = vfmadd(two, d3_minus_d1, d4_minus_d2);
    r[4] = vfnmadd(two, d3_minus_d1, d4_minus_d2);
    r[5] = vfmadd(four, d1, vfnmadd(five, d3, d5));
}

// V_ξ = (Bᵀ d B)_ξ for d[row][column], ξ = 6i + j, stored at out + ξ·plane_stride for the lanes in the run.
TARGET static inline void transform_and_store_input4(float *out, size_t plane_stride, vmask in_run, vec d[6][6]) {
    vec bd[6][6];  // bd[j] = column j of Bᵀ d
    for (int j = 0; j < 6; j++) input_transform6(bd[j], d[0][j], d[1][j], d[2][j], d[3][j], d[4][j], d[5][j]);
    for (int i = 0; i < 6; i++) {
        vec r[6];
        input_transform6(r, bd[0][i], bd[1][i], bd[2][i], bd[3][i], bd[4][i], bd[5][i]);
        for (int j = 0; j < 6; j++) store_masked(out + (size_t)(6 * i + j) * plane_stride, in_run, r[j]);
    }
}

// One 6-point output transform, o = Aᵀ m.
TARGET static inline void output_transform6(vec o[4], vec m0, vec m1, vec m2, vec m3, vec m4, vec m5) {
    const vec sum12 = vadd(m1, m2), difference12 = vsub(m1, m2), sum34 = vadd(m3, m4), difference34 = vsub(m3, m4);
    o[0] = vadd(vadd(m0, sum12), sum34);
    o[1] = vfmadd(vset1(2.0f), difference34, difference12);
    o[2] = vfmadd(vset1(4.0f), sum34, sum12);
    o[3] = vadd(vfmadd(vset1(8.0f), difference34, difference12), m5);
}

// o[i][j] = (Aᵀ m A)[i][j] for m[6i + j].
TARGET static inline void output_transform(vec o[4][4], const vec m[36]) {
    vec am[6][4];  // am[j] = column j of Aᵀ m
    for (int j = 0; j < 6; j++) output_transform6(am[j], m[j], m[6 + j], m[12 + j], m[18 + j], m[24 + j], m[30 + j]);
    for (int i = 0; i < 4; i++) output_transform6(o[i], am[0][i], am[1][i], am[2][i], am[3][i], am[4][i], am[5][i]);
}

// One 3-point kernel transform, u = G g.
TARGET static inline void kernel_transform6(vec u[6], vec g0, vec g1, vec g2) {
    const vec sixth = vset1(1.0f / 6.0f), outer = vadd(g0, g2);
    const vec weighted = vfmadd(vset1(1.0f / 24.0f), g0, vmul(sixth, g2));
    u[0] = vmul(vset1(0.25f), g0);
    u[1] = vmul(vset1(-1.0f / 6.0f), vadd(outer, g1));
    u[2] = vmul(vset1(-1.0f / 6.0f), vsub(outer, g1));
    u[3] = vfmadd(vset1(1.0f / 12.0f), g1, weighted);
    u[4] = vfnmadd(vset1(1.0f / 12.0f), g1, weighted);
    u[5] = g2;
}

// U = G g Gᵀ for output channel k and input channels [c0, c0 + LANES) (fewer at the end).
TARGET int TIER(ck_winograd4_transform_kernels)(float *U, const ck_winograd_filters *f, int K, int C, int k, int c0) {
    if (f->c_stride > (size_t)(INT32_MAX / LANES)) return 0;  // lane offsets must fit the gather's 32-bit index
    const size_t KC = (size_t)K * C;
    const int count = C - c0 < LANES ? C - c0 : LANES;
    const vmask in_run = lanes_below(count);
    vec g[9], gg[3][6];  // gg[col] = column col of G g
    gather_taps(g, f, k, c0, in_run);  // gg[col] = column col of G g
    for (int col = 0; col < 3; col++) kernel_transform6(gg[col], g[col], g[3 + col], g[6 + col]);
    for (int i = 0; i < 6; i++) {
        vec u[6];
        kernel_transform6(u, gg[0][i], gg[1][i], gg[2][i]);
        for (int j = 0; j < 6; j++) store_masked(U + (size_t)(6 * i + j) * KC + (size_t)k * C + c0, in_run, u[j]);
    }
    return count;
}

TARGET void TIER(ck_winograd4_transform_inputs)(float *V, const float *x, const ck_conv2d_shape *s, int tiles_h,
                                                int tiles_w, int tile_begin, int tile_end) {
    const int C = s->in_channels, H = s->in_height, W = s->in_width;
    const int width = tile_end - tile_begin;
    const size_t plane_stride = (size_t)C * width;
    const int by_image = ck_winograd_runs_by_image(tiles_w, LANES, H, W);
    float staged[STAGED_FLOATS];
    for (int t = tile_begin; t < tile_end;) {
        // Either an image's run, gathered, or a run along one tile row, read row by row.
        ck_winograd_image_run image;
        run_masks masks;
        row_run row;
        if (by_image) {
            image = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 4, LANES);
            masks = masks_of(&image, 0, 6, H, W);
            row = (row_run){image.n, 0, 0, image.count};
        } else {
            row = row_run_at(t, tile_end, tiles_h, tiles_w);
        }
        for (int c = 0; c < C; c++) {
            const float *plane = x + ((size_t)row.n * C + c) * H * W;
            vec d[6][6];
            for (int i = 0; i < 6; i++) {
                if (by_image) {
                    for (int j = 0; j < 6; j++) d[i][j] = gather_pixel(plane, &masks, W, i, j);
                    continue;
                }
                const float *input = input_row(plane, H, W, row.h0 + i, row.base, row.count, staged);
                if (input) tile_columns4(input, d[i]);
                else for (int j = 0; j < 6; j++) d[i][j] = vzero();
            }
            transform_and_store_input4(V + (size_t)c * width + (t - tile_begin), plane_stride, lanes_below(row.count), d);
        }
        t += row.count;
    }
}

// One output row of a tile-row run: o[j] holds column j of each tile; stored as 4·LANES contiguous columns from
// q0, clipped at Q, after bias, residual and ReLU.
TARGET static inline void store_output_row4(float *row, const float *residual_row, int q0, int Q, const vec o[4],
                                            int count, vec bias, int relu) {
    vec out[4];
    interleave_tiles4(o, out);
    int columns = 4 * count;
    if (q0 + columns > Q) columns = Q - q0;
    for (int part = 0; part < 4; part++) {
        const int left = columns - LANES * part;
        if (left <= 0) break;
        const vmask mask = lanes_below(left >= LANES ? LANES : left);
        vec v = vadd(out[part], bias);
        if (residual_row) v = vadd(v, load_masked(residual_row + q0 + LANES * part, mask));
        store_masked(row + q0 + LANES * part, mask, relu ? relu_of(v) : v);
    }
}

TARGET void TIER(ck_winograd4_transform_outputs)(float *y, const float *M, const ck_conv_epilogue *e,
                                                 const ck_conv2d_shape *s, int P, int Q, int tiles_h, int tiles_w,
                                                 int tile_begin, int tile_end) {
    const int K = s->out_channels;
    const int width = tile_end - tile_begin;
    const size_t plane_stride = (size_t)K * width;
    const int by_image = ck_winograd_runs_by_image(tiles_w, LANES, P, Q);
    float staged[4 * LANES];
    for (int t = tile_begin; t < tile_end;) {
        // Either an image's run (the epilogue on each lane, then each tile's rows stored on their own), or a run
        // along one tile row, stored row by row.
        ck_winograd_image_run image;
        run_masks masks;
        row_run row;
        if (by_image) {
            image = ck_winograd_image_run_at(t, tile_end, tiles_h, tiles_w, 4, LANES);
            masks = masks_of(&image, 1, 4, P, Q);
            row = (row_run){image.n, 0, 0, image.count};
        } else {
            row = row_run_at(t, tile_end, tiles_h, tiles_w);
        }
        const vmask in_run = lanes_below(row.count);
        for (int k = 0; k < K; k++) {
            const float *in = M + (size_t)k * width + (t - tile_begin);
            vec m[36], o[4][4];
            for (int xi = 0; xi < 36; xi++) m[xi] = load_masked(in + (size_t)xi * plane_stride, in_run);
            output_transform(o, m);
            const size_t plane_offset = ((size_t)row.n * K + k) * P * Q;
            const float *residual = e->residual ? e->residual + plane_offset : NULL;
            const vec bias = vset1(e->bias ? e->bias[k] : 0.0f);
            for (int i = 0; i < 4; i++) {
                if (by_image) {
                    vec out[4];
                    for (int j = 0; j < 4; j++) o[i][j] = epilogue_on_lanes(o[i][j], bias, residual, &masks, Q, i, j, e->relu);
                    interleave_tiles4(o[i], out);
                    for (int q = 0; q < 4; q++) vstoreu(staged + LANES * q, out[q]);
                    store_run_row(y + plane_offset, &image, staged, 4, i, P, Q);
                } else if (row.h0 + 1 + i < P) {
                    const size_t row_offset = plane_offset + (size_t)(row.h0 + 1 + i) * Q;
                    store_output_row4(y + row_offset, residual ? e->residual + row_offset : NULL, row.base + 1, Q, o[i],
                                      row.count, bias, e->relu);
                }
            }
        }
        t += row.count;
    }
}
#endif
