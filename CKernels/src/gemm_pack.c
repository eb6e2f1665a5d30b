// Packing for the packed GEMM (gemm.c): blocks of op(A) into MR-tall row panels and of op(B) into
// NR-wide column panels, zero-padded at the edges so that the micro-kernel never branches on sizes.
// Each routine that uses AVX-512 has an AVX2 twin producing the same bytes: the AVX2 tier must never
// execute a target("avx512f") function.
#include "gemm_pack.h"

#ifdef CK_HAVE_PACKED_GEMM
// One full panel of untransposed A: panel[p·6 + i] = a[i·lda + p]. Eight values of p at a time: the six
// rows' runs of 8 (48 floats in three registers) are interleaved by permutes into three full stores,
// twice as fast as the element-by-element copy.
__attribute__((target("avx512f")))
static void pack_a_panel6(float *restrict panel, const float *a, int lda, int kc) {
    // Output element o = 6·pp + i comes from input position 8·i + pp (row i's run of 8 values).
    const __m512i from0 = _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 1, 9, 17, 25, 33, 41, 2, 10, 18, 26);
    const __m512i from1 = _mm512_setr_epi32(34, 42, 3, 11, 19, 27, 35, 43, 4, 12, 20, 28, 36, 44, 5, 13);
    const __m512i from2 = _mm512_setr_epi32(21, 29, 37, 45, 6, 14, 22, 30, 38, 46, 7, 15, 23, 31, 39, 47);
    const __m512i upper = _mm512_set1_epi32(32);
    int p = 0;
    for (; p + 8 <= kc; p += 8) {
        __m512 rows01 = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(a + p))),
                                                            _mm256_castps_pd(_mm256_loadu_ps(a + lda + p)), 1));
        __m512 rows23 = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(a + 2 * (size_t)lda + p))),
                                                            _mm256_castps_pd(_mm256_loadu_ps(a + 3 * (size_t)lda + p)), 1));
        __m512 rows45 = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(a + 4 * (size_t)lda + p))),
                                                            _mm256_castps_pd(_mm256_loadu_ps(a + 5 * (size_t)lda + p)), 1));
        float *out = panel + (size_t)p * GEMM_MR;
        const __m512i from[3] = {from0, from1, from2};
        for (int v = 0; v < 3; v++) {
            // Positions 0..31 are in rows01:rows23, 32..47 in rows45.
            __m512 low = _mm512_permutex2var_ps(rows01, from[v], rows23);
            __m512 high = _mm512_permutexvar_ps(_mm512_sub_epi32(from[v], upper), rows45);
            _mm512_storeu_ps(out + 16 * v, _mm512_mask_blend_ps(_mm512_cmpge_epi32_mask(from[v], upper), low, high));
        }
    }
    for (; p < kc; p++)
        for (int i = 0; i < GEMM_MR; i++) panel[(size_t)p * GEMM_MR + i] = a[(size_t)i * lda + p];
}

static void pack_a_panel6_avx2(float *restrict panel, const float *a, int lda, int kc);

// Packs rows [i0, i0+mc) × columns [p0, p0+kc) of op(A) into MR-tall panels: panel r holds, for each
// p, the MR values op(A)[i0 + r·MR + 0..MR-1][p0 + p], zero past row mc.
void ck_gemm_pack_a(float *restrict dst, const float *a, int lda, int transpose_a, int i0, int mc, int p0, int kc,
                    int avx512) {
    for (int r = 0; r < mc; r += GEMM_MR) {
        int rows = mc - r < GEMM_MR ? mc - r : GEMM_MR;
        float *panel = dst + (size_t)r * kc;
        if (transpose_a) {
            // op(A)[i][p] = a[p·lda + i]: each p gives `rows` contiguous values. A whole panel copies a constant
            // size, which compiles to two moves; the loop below becomes a memcpy call per p (24 bytes each), which
            // took 4% of a training step in backward-input's weight packing.
            if (rows == GEMM_MR) {
                for (int p = 0; p < kc; p++)
                    memcpy(panel + (size_t)p * GEMM_MR, a + (size_t)(p0 + p) * lda + i0 + r, sizeof(float) * GEMM_MR);
                continue;
            }
            for (int p = 0; p < kc; p++) {
                const float *src = a + (size_t)(p0 + p) * lda + i0 + r;
                float *out = panel + (size_t)p * GEMM_MR;
                for (int i = 0; i < rows; i++) out[i] = src[i];
                for (int i = rows; i < GEMM_MR; i++) out[i] = 0.0f;
            }
        } else if (rows == GEMM_MR) {
            if (avx512) pack_a_panel6(panel, a + (size_t)(i0 + r) * lda + p0, lda, kc);
            else pack_a_panel6_avx2(panel, a + (size_t)(i0 + r) * lda + p0, lda, kc);
        } else {
            for (int i = 0; i < rows; i++) {
                const float *src = a + (size_t)(i0 + r + i) * lda + p0;
                for (int p = 0; p < kc; p++) panel[(size_t)p * GEMM_MR + i] = src[p];
            }
            for (int i = rows; i < GEMM_MR; i++)
                for (int p = 0; p < kc; p++) panel[(size_t)p * GEMM_MR + i] = 0.0f;
        }
    }
}

// rows[i][j] becomes rows[j][i]. Three rounds of in-lane unpacks and two of 128-bit lane shuffles: after
// the unpacks, t[4g+e] holds element 4L+e of rows 4g..4g+3 in lane L; the lane shuffles gather the four
// groups of each output row.
__attribute__((target("avx512f"), always_inline))
static inline void transpose_16x16(__m512 rows[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(rows[i], rows[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(rows[i], rows[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) {
        __m512d t0 = _mm512_castps_pd(t[g]), t1 = _mm512_castps_pd(t[g + 1]);
        __m512d t2 = _mm512_castps_pd(t[g + 2]), t3 = _mm512_castps_pd(t[g + 3]);
        u[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    for (int e = 0; e < 4; e++) {
        t[e] = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x88);       // groups 0,1 · lanes 0,2
        t[4 + e] = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xdd);   // groups 0,1 · lanes 1,3
        t[8 + e] = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x88);
        t[12 + e] = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xdd);
    }
    for (int e = 0; e < 4; e++) {
        rows[e] = _mm512_shuffle_f32x4(t[e], t[8 + e], 0x88);           // lane 0 of groups 0..3
        rows[8 + e] = _mm512_shuffle_f32x4(t[e], t[8 + e], 0xdd);       // lane 2
        rows[4 + e] = _mm512_shuffle_f32x4(t[4 + e], t[12 + e], 0x88);  // lane 1
        rows[12 + e] = _mm512_shuffle_f32x4(t[4 + e], t[12 + e], 0xdd); // lane 3
    }
}

// Packs rows [p0, p0+kc) × columns [j0, j0+nc) of op(B) into NR-wide panels: panel q holds, for each p,
// the NR values op(B)[p0 + p][j0 + q·NR + 0..NR-1], zero past column nc. Untransposed B may be a row of
// images side by side: columns [i·n, (i+1)·n) come from b + i·stride_b (one image when nc <= n).
__attribute__((target("avx512f")))
static void pack_b_avx512(float *restrict dst, const ck_gemm_b *source, int n, int p0, int kc, long j0, int nc) {
    const float *b = source->b;
    const int ldb = source->ldb;
    const size_t stride_b = source->stride_b;
    for (int q = 0; q < nc; q += GEMM_NR) {
        int cols = nc - q < GEMM_NR ? nc - q : GEMM_NR;
        float *panel = dst + (size_t)q * kc;
        if (source->pack_panel) {
            source->pack_panel(source->context, panel, p0, kc, j0 + q, cols);
        } else if (!source->transpose_b) {
            // Column J of the whole B is column J mod n of image J / n: a panel may span images.
            for (int start = 0; start < cols;) {
                int column = (int)((j0 + q + start) % n), image = (int)((j0 + q + start) / n);
                int run = n - column < cols - start ? n - column : cols - start;
                const float *src = b + (size_t)image * stride_b + (size_t)p0 * ldb + column;
                for (int p = 0; p < kc; p++) {
                    const float *row = src + (size_t)p * ldb;
                    float *out = panel + (size_t)p * GEMM_NR + start;
                    int v = 0;
                    for (; v + 16 <= run; v += 16) _mm512_storeu_ps(out + v, _mm512_loadu_ps(row + v));
                    if (v < run) {
                        __mmask16 mask = (__mmask16)((1u << (run - v)) - 1);
                        _mm512_mask_storeu_ps(out + v, mask, _mm512_maskz_loadu_ps(mask, row + v));
                    }
                }
                start += run;
            }
            if (cols < GEMM_NR)
                for (int p = 0; p < kc; p++) memset(panel + (size_t)p * GEMM_NR + cols, 0, sizeof(float) * (GEMM_NR - cols));
        } else {
            // op(B)[p][j] = b[j·ldb + p]: transpose 16×16 tiles in registers, reading runs of p.
            for (int p = 0; p < kc; p += 16) {
                int depth = kc - p < 16 ? kc - p : 16;
                __mmask16 depth_mask = (__mmask16)((1u << depth) - 1);
                for (int v = 0; v < GEMM_NR; v += 16) {
                    __m512 tile[16];
                    for (int j = 0; j < 16; j++) {
                        tile[j] = v + j < cols
                            ? _mm512_maskz_loadu_ps(depth_mask, b + (size_t)(j0 + q + v + j) * ldb + p0 + p)
                            : _mm512_setzero_ps();
                    }
                    transpose_16x16(tile);
                    for (int i = 0; i < depth; i++) _mm512_store_ps(panel + (size_t)(p + i) * GEMM_NR + v, tile[i]);
                }
            }
        }
    }
}

// rows[i][j] becomes rows[j][i] for 8×8: unpacks pair rows, shuffles gather groups of four, 128-bit lane
// permutes join the halves.
static inline void transpose_8x8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 8; g += 4) {
        s[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
        s[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
        s[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        s[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int e = 0; e < 4; e++) {
        r[e] = _mm256_permute2f128_ps(s[e], s[4 + e], 0x20);
        r[4 + e] = _mm256_permute2f128_ps(s[e], s[4 + e], 0x31);
    }
}

// The first `count` (0..8) lanes of a ymm mask: -1 where the lane is taken.
static inline __m256i lanes_below(int count) {
    static const int32_t table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(table + 8 - count));
}

// pack_a_panel6 with AVX2 only: the six rows' runs of 8 and two zero rows, transposed 8x8 in registers, give one
// column of 8 per p; stored in ascending p, each store's last two (zero) lanes are overwritten by the next one's
// first two, and the last store is masked to its 6 lanes so nothing is written past the 48 values.
static void pack_a_panel6_avx2(float *restrict panel, const float *a, int lda, int kc) {
    const __m256i six = lanes_below(GEMM_MR);
    int p = 0;
    for (; p + 8 <= kc; p += 8) {
        __m256 tile[8];
        for (int i = 0; i < GEMM_MR; i++) tile[i] = _mm256_loadu_ps(a + (size_t)i * lda + p);
        tile[6] = tile[7] = _mm256_setzero_ps();
        transpose_8x8(tile);
        float *out = panel + (size_t)p * GEMM_MR;
        for (int j = 0; j < 7; j++) _mm256_storeu_ps(out + GEMM_MR * j, tile[j]);
        _mm256_maskstore_ps(out + GEMM_MR * 7, six, tile[7]);
    }
    for (; p < kc; p++)
        for (int i = 0; i < GEMM_MR; i++) panel[(size_t)p * GEMM_MR + i] = a[(size_t)i * lda + p];
}

// ck_gemm_pack_b with AVX2 only: the same panels as pack_b_avx512.
static void pack_b_avx2(float *restrict dst, const ck_gemm_b *source, int n, int p0, int kc, long j0, int nc) {
    const float *b = source->b;
    const int ldb = source->ldb;
    const size_t stride_b = source->stride_b;
    for (int q = 0; q < nc; q += GEMM_NR) {
        int cols = nc - q < GEMM_NR ? nc - q : GEMM_NR;
        float *panel = dst + (size_t)q * kc;
        if (source->pack_panel) {
            source->pack_panel(source->context, panel, p0, kc, j0 + q, cols);
        } else if (!source->transpose_b) {
            for (int start = 0; start < cols;) {
                int column = (int)((j0 + q + start) % n), image = (int)((j0 + q + start) / n);
                int run = n - column < cols - start ? n - column : cols - start;
                const float *src = b + (size_t)image * stride_b + (size_t)p0 * ldb + column;
                // Vector copies, not memcpy: a call per row of `run` floats cost 3% of an AVX2 training step.
                const __m256i tail = lanes_below(run % 8);
                for (int p = 0; p < kc; p++) {
                    const float *row = src + (size_t)p * ldb;
                    float *out = panel + (size_t)p * GEMM_NR + start;
                    int v = 0;
                    for (; v + 8 <= run; v += 8) _mm256_storeu_ps(out + v, _mm256_loadu_ps(row + v));
                    if (v < run) _mm256_maskstore_ps(out + v, tail, _mm256_maskload_ps(row + v, tail));
                }
                start += run;
            }
            if (cols < GEMM_NR)
                for (int p = 0; p < kc; p++) memset(panel + (size_t)p * GEMM_NR + cols, 0, sizeof(float) * (GEMM_NR - cols));
        } else {
            // op(B)[p][j] = b[j·ldb + p]: 8×8 tiles transposed in registers, reading runs of p. Masked
            // loads never touch memory past the depth; columns past cols are zeros.
            for (int p = 0; p < kc; p += 8) {
                int depth = kc - p < 8 ? kc - p : 8;
                const __m256i depth_mask = lanes_below(depth);
                for (int v = 0; v < GEMM_NR; v += 8) {
                    __m256 tile[8];
                    for (int j = 0; j < 8; j++) {
                        tile[j] = v + j < cols
                            ? _mm256_maskload_ps(b + (size_t)(j0 + q + v + j) * ldb + p0 + p, depth_mask)
                            : _mm256_setzero_ps();
                    }
                    transpose_8x8(tile);
                    for (int i = 0; i < depth; i++) _mm256_store_ps(panel + (size_t)(p + i) * GEMM_NR + v, tile[i]);
                }
            }
        }
    }
}

void ck_gemm_pack_b(float *restrict dst, const ck_gemm_b *source, int n, int p0, int kc, long j0, int nc, int avx512) {
    if (avx512) pack_b_avx512(dst, source, n, p0, kc, j0, nc);
    else pack_b_avx2(dst, source, n, p0, kc, j0, nc);
}
#endif
