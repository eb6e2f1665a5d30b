// gemm.c — the matrix product under every convolution and linear layer.
//
// Two implementations behind ck_sgemm:
//   - OpenBLAS (cblas_sgemm), single-threaded per call: used on CPUs without AVX-512 and whenever
//     ck_set_gemm_backend(CK_GEMM_OPENBLAS) asks for it;
//   - our own packed GEMM with an AVX-512 micro-kernel, chosen at run time by cpuid. OpenBLAS picks its
//     kernels from OPENBLAS_CORETYPE, which a machine may pin to AVX2 (this workplace does); the CPU's
//     own width then goes unused. Ours depends on the CPU alone.
//
// The packed GEMM follows the Goto/BLIS layering: B is packed a KC×NC block at a time into NR-wide
// column panels, A an MC×KC block at a time into MR-tall row panels, and a register-blocked MR×NR
// micro-kernel runs over a packed A panel and a packed B panel. The A panel (MR×KC, a few KB) stays in
// L1 while the B panels stream from L2. Packing pads edges with zeros, so the micro-kernel never
// branches on sizes; only the store of an edge tile is masked.
//
// Packing buffers are per thread, allocated on a thread's first call and freed when it exits (this is
// the one place CKernels allocates, as ckernels.h states: the buffers are an implementation detail of the
// matrix product, as they are inside OpenBLAS). If the allocation fails, the call falls back to OpenBLAS.
// The reference twins ck_sgemm_ref and ck_sgemm_images_ref are in CKernelsReference/gemm_ref.c.
#include "internal.h"
#include "cpu_features.h"
#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define CK_HAVE_AVX512_GEMM 1
#include <immintrin.h>
#endif

static _Atomic int gemm_backend = -1;   // -1: not decided yet

static _Atomic int avx512_allowed = 1;
static _Atomic int backend_set_by_disallow = 0;  // the AVX-512 GEMM was switched off by ck_set_avx512_allowed(0)

void ck_set_avx512_allowed(int allowed) {
    avx512_allowed = allowed != 0;
    if (!avx512_allowed && gemm_backend == CK_GEMM_AVX512) {
        gemm_backend = CK_GEMM_OPENBLAS;
        backend_set_by_disallow = 1;
    } else if (avx512_allowed && backend_set_by_disallow) {
        gemm_backend = -1;  // choose again, as CK_GEMM_AUTO says
        backend_set_by_disallow = 0;
    }
}

int ck_cpu_has_avx512(void) {
#ifdef CK_HAVE_AVX512_GEMM
    // cpu_features() applies RESNETFUSION_ISA=avx2 (an AVX2-only CPU, for benchmarks) once per process.
    return avx512_allowed && (cpu_features() & CPU_FEATURE_AVX512F) != 0;
#else
    return 0;
#endif
}

int ck_set_gemm_backend(int backend) {
    if (backend == CK_GEMM_AUTO) {
        // RESNETFUSION_GEMM=openblas keeps OpenBLAS for a whole process (benchmarks compare the two).
        const char *forced = getenv("RESNETFUSION_GEMM");
        int want_openblas = forced && strcmp(forced, "openblas") == 0;
        gemm_backend = (!want_openblas && ck_cpu_has_avx512()) ? CK_GEMM_AVX512 : CK_GEMM_OPENBLAS;
    } else if (backend == CK_GEMM_AVX512) {
        if (!ck_cpu_has_avx512()) return CK_ERR_BAD_SIZE;
        gemm_backend = CK_GEMM_AVX512;
    } else if (backend == CK_GEMM_OPENBLAS) {
        gemm_backend = CK_GEMM_OPENBLAS;
    } else {
        return CK_ERR_BAD_SIZE;
    }
    backend_set_by_disallow = 0;  // an explicit choice stands
    return CK_OK;
}

int ck_get_gemm_backend(void) {
    if (gemm_backend < 0) ck_set_gemm_backend(CK_GEMM_AUTO);
    return gemm_backend;
}

static void openblas_sgemm(int transpose_a, int transpose_b, int m, int n, int k, float alpha,
                           const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
                transpose_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

#ifdef CK_HAVE_AVX512_GEMM

// Register blocking: MR rows × NR columns of C live in MR·NR/16 zmm accumulators (24 of 32), plus
// NR/16 registers for a row of the B panel; A values are broadcast from memory into the FMAs.
#define GEMM_MR 6
#define GEMM_NR CK_GEMM_NR
// Cache blocking: an MR×KC A panel (6 KB) in L1; the KC×NC packed B block (512 KB) in L2, streamed
// panel by panel; the MC×KC packed A block (144 KB) in L2.
#ifndef GEMM_KC
#define GEMM_KC 256
#endif
#ifndef GEMM_MC
#define GEMM_MC 144
#endif
#ifndef GEMM_NC
#define GEMM_NC 512
#endif

static pthread_key_t pack_key;
static pthread_once_t pack_key_once = PTHREAD_ONCE_INIT;

static void make_pack_key(void) { pthread_key_create(&pack_key, free); }

// This thread's packing buffer: the A block, then the B block, 64-byte aligned. NULL when out of memory.
static float *pack_buffer(void) {
    pthread_once(&pack_key_once, make_pack_key);
    float *buffer = pthread_getspecific(pack_key);
    if (!buffer) {
        size_t floats = (size_t)GEMM_MC * GEMM_KC + (size_t)GEMM_KC * GEMM_NC;
        buffer = aligned_alloc(64, floats * sizeof(float));
        if (buffer && pthread_setspecific(pack_key, buffer) != 0) {
            free(buffer);
            buffer = NULL;
        }
    }
    return buffer;
}

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

// Packs rows [i0, i0+mc) × columns [p0, p0+kc) of op(A) into MR-tall panels: panel r holds, for each
// p, the MR values op(A)[i0 + r·MR + 0..MR-1][p0 + p], zero past row mc.
static void pack_a(float *restrict dst, const float *a, int lda, int transpose_a, int i0, int mc, int p0, int kc) {
    for (int r = 0; r < mc; r += GEMM_MR) {
        int rows = mc - r < GEMM_MR ? mc - r : GEMM_MR;
        float *panel = dst + (size_t)r * kc;
        if (transpose_a) {
            // op(A)[i][p] = a[p·lda + i]: each p gives `rows` contiguous values.
            for (int p = 0; p < kc; p++) {
                const float *src = a + (size_t)(p0 + p) * lda + i0 + r;
                float *out = panel + (size_t)p * GEMM_MR;
                for (int i = 0; i < rows; i++) out[i] = src[i];
                for (int i = rows; i < GEMM_MR; i++) out[i] = 0.0f;
            }
        } else if (rows == GEMM_MR) {
            pack_a_panel6(panel, a + (size_t)(i0 + r) * lda + p0, lda, kc);
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
static void pack_b(float *restrict dst, const ck_gemm_b *source, int n, int p0, int kc, long j0, int nc) {
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

// C[0..rows) × [0..cols) = alpha·(A panel · B panel) + beta·C, for NV = ceil(cols/16) vectors of 16.
// `beta == 0` never reads C. Inlined into one function per NV so that the accumulators stay in registers.
__attribute__((target("avx512f"), always_inline))
static inline void micro_kernel(const int NV, int kc, const float *restrict a, const float *restrict b,
                                float *c, int ldc, int rows, int cols, float alpha, float beta) {
    __m512 acc[GEMM_MR][4];
    #pragma clang loop unroll(full)
    for (int i = 0; i < GEMM_MR; i++)
        #pragma clang loop unroll(full)
        for (int v = 0; v < 4; v++) acc[i][v] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++) {
        __m512 bv[4];
        #pragma clang loop unroll(full)
        for (int v = 0; v < 4; v++) if (v < NV) bv[v] = _mm512_load_ps(b + v * 16);
        #pragma clang loop unroll(full)
        for (int i = 0; i < GEMM_MR; i++) {
            __m512 ai = _mm512_set1_ps(a[i]);
            #pragma clang loop unroll(full)
            for (int v = 0; v < 4; v++) if (v < NV) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
        a += GEMM_MR;
        b += GEMM_NR;
    }
    __m512 alpha_v = _mm512_set1_ps(alpha), beta_v = _mm512_set1_ps(beta);
    for (int i = 0; i < rows; i++) {
        float *row = c + (size_t)i * ldc;
        #pragma clang loop unroll(full)
        for (int v = 0; v < 4; v++) {
            if (v >= NV) continue;
            int left = cols - v * 16;
            __mmask16 mask = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            __m512 result = _mm512_mul_ps(alpha_v, acc[i][v]);
            if (beta != 0.0f)
                result = _mm512_fmadd_ps(beta_v, _mm512_maskz_loadu_ps(mask, row + v * 16), result);
            _mm512_mask_storeu_ps(row + v * 16, mask, result);
        }
    }
}

// C[0..rows) × [0..cols) = alpha·tile + beta·C for a tile computed aside (row stride NR).
__attribute__((target("avx512f")))
static void store_tile_part(float *c, int ldc, const float *tile, int rows, int cols, float alpha, float beta) {
    const __m512 alpha_v = _mm512_set1_ps(alpha), beta_v = _mm512_set1_ps(beta);
    for (int i = 0; i < rows; i++) {
        for (int v = 0; v < cols; v += 16) {
            const int left = cols - v;
            const __mmask16 mask = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            __m512 result = _mm512_mul_ps(alpha_v, _mm512_maskz_loadu_ps(mask, tile + i * GEMM_NR + v));
            float *row = c + (size_t)i * ldc + v;
            if (beta != 0.0f) result = _mm512_fmadd_ps(beta_v, _mm512_maskz_loadu_ps(mask, row), result);
            _mm512_mask_storeu_ps(row, mask, result);
        }
    }
}

#define DEFINE_MICRO_KERNEL(NV)                                                                          \
    __attribute__((target("avx512f"), noinline))                                                         \
    static void micro_kernel_##NV(int kc, const float *a, const float *b, float *c, int ldc, int rows,   \
                                  int cols, float alpha, float beta) {                                   \
        micro_kernel(NV, kc, a, b, c, ldc, rows, cols, alpha, beta);                                     \
    }
DEFINE_MICRO_KERNEL(1)
DEFINE_MICRO_KERNEL(2)
DEFINE_MICRO_KERNEL(3)
DEFINE_MICRO_KERNEL(4)

typedef void (*micro_kernel_fn)(int, const float *, const float *, float *, int, int, int, float, float);
static const micro_kernel_fn micro_kernels[5] = {NULL, micro_kernel_1, micro_kernel_2, micro_kernel_3,
                                                 micro_kernel_4};

// Columns [j_begin, j_end) of C = alpha·op(A)·B + beta·C, where B's and C's columns are images of n
// columns side by side: column J is column J mod n of C_i = c + i·stride_c, i = J / n, and of B_i (or
// whatever source->pack_panel makes of it). A is packed once per block, and short images still fill
// whole tiles.
static int avx512_sgemm(int transpose_a, int m, int n, int k, float alpha, const float *a, int lda,
                        const ck_gemm_b *source, float beta, float *c, int ldc, size_t stride_c, long j_begin,
                        long j_end) {
    float *buffer = pack_buffer();
    if (!buffer) return 0;
    float *packed_a = buffer, *packed_b = buffer + (size_t)GEMM_MC * GEMM_KC;
    for (long j0 = j_begin; j0 < j_end; j0 += GEMM_NC) {
        int nc = j_end - j0 < GEMM_NC ? (int)(j_end - j0) : GEMM_NC;
        // K in equal blocks of at most KC (576 = 2 × 288, not 256 + 256 + 64): fewer, fuller passes over C.
        const int k_blocks = (k + GEMM_KC - 1) / GEMM_KC, k_step = (k + k_blocks - 1) / k_blocks;
        for (int p0 = 0; p0 < k; p0 += k_step) {
            int kc = k - p0 < k_step ? k - p0 : k_step;
            // The first K block applies the caller's beta; later blocks add to what it wrote.
            float block_beta = p0 == 0 ? beta : 1.0f;
            pack_b(packed_b, source, n, p0, kc, j0, nc);
            for (int i0 = 0; i0 < m; i0 += GEMM_MC) {
                int mc = m - i0 < GEMM_MC ? m - i0 : GEMM_MC;
                pack_a(packed_a, a, lda, transpose_a, i0, mc, p0, kc);
                // A panel outer (it stays in L1), B panels inner (streamed from L2).
                for (int r = 0; r < mc; r += GEMM_MR) {
                    int rows = mc - r < GEMM_MR ? mc - r : GEMM_MR;
                    const float *a_panel = packed_a + (size_t)r * kc;
                    for (int q = 0; q < nc; q += GEMM_NR) {
                        int cols = nc - q < GEMM_NR ? nc - q : GEMM_NR;
                        micro_kernel_fn kernel = micro_kernels[(cols + 15) / 16];
                        const float *b_panel = packed_b + (size_t)q * kc;
                        long J = j0 + q;
                        int column = (int)(J % n), image = (int)(J / n);
                        float *c_tile = c + (size_t)image * stride_c + (size_t)(i0 + r) * ldc + column;
                        if (column + cols <= n) {
                            kernel(kc, a_panel, b_panel, c_tile, ldc, rows, cols, alpha, block_beta);
                            continue;
                        }
                        // The tile spans images: compute it aside, then add each image's part.
                        float tile[GEMM_MR * GEMM_NR];
                        kernel(kc, a_panel, b_panel, tile, GEMM_NR, rows, cols, 1.0f, 0.0f);
                        for (int start = 0; start < cols;) {
                            int run = n - column < cols - start ? n - column : cols - start;
                            float *dst = c + (size_t)image * stride_c + (size_t)(i0 + r) * ldc + column;
                            store_tile_part(dst, ldc, tile + start, rows, run, alpha, block_beta);
                            start += run;
                            column = 0;
                            image++;
                        }
                    }
                }
            }
        }
    }
    return 1;
}
#endif

void ck_sgemm(int transpose_a, int transpose_b, int m, int n, int k, float alpha,
              const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
#ifdef CK_HAVE_AVX512_GEMM
    const ck_gemm_b source = {.b = b, .ldb = ldb, .transpose_b = transpose_b};
    if (k > 0 && ck_get_gemm_backend() == CK_GEMM_AVX512 &&
        avx512_sgemm(transpose_a, m, n, k, alpha, a, lda, &source, beta, c, ldc, 0, 0, n))
        return;
#endif
    openblas_sgemm(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void ck_sgemm_images(int transpose_a, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, size_t stride_b, float beta, float *c, int ldc, size_t stride_c, int count) {
    if (m <= 0 || n <= 0 || count <= 0) return;
#ifdef CK_HAVE_AVX512_GEMM
    const ck_gemm_b source = {.b = b, .ldb = ldb, .stride_b = stride_b};
    if (k > 0 && ck_get_gemm_backend() == CK_GEMM_AVX512 &&
        avx512_sgemm(transpose_a, m, n, k, alpha, a, lda, &source, beta, c, ldc, stride_c, 0, (long)n * count))
        return;
#endif
    for (int i = 0; i < count; i++)
        openblas_sgemm(transpose_a, 0, m, n, k, alpha, a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
}

int ck_sgemm_packing(int m, int n, int k, const float *a, int lda, const ck_gemm_b *source, float *c, int ldc,
                     size_t stride_c, long j_begin, long j_end) {
#ifdef CK_HAVE_AVX512_GEMM
    if (m <= 0 || n <= 0 || j_end <= j_begin) return 1;
    if (k <= 0) return 0;  // C = 0 is the caller's to write (conv2d never has an empty K)
    return ck_get_gemm_backend() == CK_GEMM_AVX512 &&
           avx512_sgemm(0, m, n, k, 1.0f, a, lda, source, 0.0f, c, ldc, stride_c, j_begin, j_end);
#else
    (void)m; (void)n; (void)k; (void)a; (void)lda; (void)source; (void)c; (void)ldc; (void)stride_c;
    (void)j_begin; (void)j_end;
    return 0;
#endif
}

