// The arithmetic of Winograd F(4x4, 3x3) (Lavin & Gray, arXiv:1509.09308, with interpolation points 0, ±1, ±2, ∞),
// written once for both CPU tiers: winograd_f4_avx512.c and winograd_f4_avx2.c define LANES, `vec`, TARGET and the
// vector ops (vset1, vadd, vsub, vmul, vfmadd, vfnmadd) and include this file. One lane is one tile (inputs,
// outputs) or one input channel (kernels).
//
//        ⎡4  0 −5  0  1  0⎤        ⎡ 1/4    0    0 ⎤        ⎡1  1  1  1  1  0⎤
//        ⎢0 −4 −4  1  1  0⎥        ⎢−1/6 −1/6 −1/6 ⎥   Aᵀ = ⎢0  1 −1  2 −2  0⎥
//   Bᵀ = ⎢0  4 −4 −1  1  0⎥   G =  ⎢−1/6  1/6 −1/6 ⎥        ⎢0  1  1  4  4  0⎥
//        ⎢0 −2 −1  2  1  0⎥        ⎢1/24 1/12  1/6 ⎥        ⎣0  1 −1  8 −8  1⎦
//        ⎢0  2 −1 −2  1  0⎥        ⎢1/24 −1/12 1/6 ⎥
//        ⎣0  4  0 −5  0  1⎦        ⎣  0    0    1  ⎦
//
// Coefficients up to 8 (and 1/6, not exact in binary) make its rounding error about 10x F(2x2, 3x3)'s; the
// tests hold it to 1e-3 relative, and ck_winograd_tile chooses it only where it measures faster.
#ifndef CKERNELS_WINOGRAD_F4_TIER_H
#define CKERNELS_WINOGRAD_F4_TIER_H

// Floats an input row is staged in: the 4·LANES + 2 columns that LANES neighbouring tiles read.
#define STAGED_FLOATS (4 * LANES + 2)

// A run of up to LANES neighbouring tiles in one tile row, starting at global tile t: image n, the first input
// row and column the first tile reads (−1 at the top and left edges, padding), and how many tiles.
typedef struct {
    int n, h0, base, count;
} tile_run;

static inline tile_run tile_run_at(int t, int tile_end, int tiles_h, int tiles_w) {
    const int per_image = tiles_h * tiles_w, r = t % per_image, tile_row = r / tiles_w, tile_col = r % tiles_w;
    int count = tiles_w - tile_col;
    if (count > tile_end - t) count = tile_end - t;
    if (count > LANES) count = LANES;
    return (tile_run){t / per_image, tile_row * 4 - 1, tile_col * 4 - 1, count};
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
    int copied = end - begin;
    if (copied < 0) copied = 0;
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

// v[6i + j] = (Bᵀ d B)[i][j] for d[row][column].
TARGET static inline void input_transform(vec v[36], vec d[6][6]) {
    vec bd[6][6];  // bd[j] = column j of Bᵀ d
    for (int j = 0; j < 6; j++) input_transform6(bd[j], d[0][j], d[1][j], d[2][j], d[3][j], d[4][j], d[5][j]);
    for (int i = 0; i < 6; i++) {
        vec r[6];
        input_transform6(r, bd[0][i], bd[1][i], bd[2][i], bd[3][i], bd[4][i], bd[5][i]);
        for (int j = 0; j < 6; j++) v[6 * i + j] = r[j];
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

// u[6i + j] = (G g Gᵀ)[i][j] for the 9 taps g in row-major order.
TARGET static inline void kernel_transform(vec u[36], const vec g[9]) {
    vec gg[3][6];  // gg[col] = column col of G g
    for (int col = 0; col < 3; col++) kernel_transform6(gg[col], g[col], g[3 + col], g[6 + col]);
    for (int i = 0; i < 6; i++) {
        vec r[6];
        kernel_transform6(r, gg[0][i], gg[1][i], gg[2][i]);
        for (int j = 0; j < 6; j++) u[6 * i + j] = r[j];
    }
}
#endif
