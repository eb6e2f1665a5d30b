// gemm.c — the matrix product under every convolution and linear layer.
//
// Three implementations behind ck_sgemm:
//   - our own packed GEMM with an AVX-512 micro-kernel, chosen at run time by cpuid. OpenBLAS picks its
//     kernels from OPENBLAS_CORETYPE, which a machine may pin to AVX2 (this workplace does); the CPU's
//     own width then goes unused. Ours depends on the CPU alone;
//   - the same packed GEMM with an AVX2 + FMA micro-kernel, on CPUs without AVX-512 (x86-64-v3 is the
//     build floor, so it is always available on x86-64). It lets the convolutions lower their input straight
//     into the packed panels (implicit GEMM) on that tier too;
//   - OpenBLAS (cblas_sgemm), single-threaded per call: when ck_set_gemm_backend(CK_GEMM_OPENBLAS) or
//     RESNETFUSION_GEMM=openblas asks for it, and whenever a packing buffer cannot be allocated.
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
// Backend choice: gemm_backend.c; packing: gemm_pack.c.
// The reference twins ck_sgemm_ref and ck_sgemm_images_ref are in CKernelsReference/gemm_ref.c.
#include "gemm_pack.h"
#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

static void openblas_sgemm(int transpose_a, int transpose_b, int m, int n, int k, float alpha,
                           const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
                transpose_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

#ifdef CK_HAVE_PACKED_GEMM

static pthread_key_t pack_key;
static pthread_once_t pack_key_once = PTHREAD_ONCE_INIT;

static void make_pack_key(void) { pthread_key_create(&pack_key, free); }

// ck_gemm_simulate_missing_packing_buffers: 1 makes every thread's buffer missing, as if out of memory.
static _Atomic int packing_buffers_missing = 0;

void ck_gemm_simulate_missing_packing_buffers(int missing) { packing_buffers_missing = missing != 0; }

// This thread's packing buffer: the A block, then the B block, 64-byte aligned. NULL when out of memory.
static float *pack_buffer(void) {
    if (packing_buffers_missing) return NULL;
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

// The tile's share of a ck_gemm_epilogue: bias from the tile's first row, residual at the tile's position (NULL
// when the K block is not the last one, or nothing is added).
typedef struct {
    const float *bias;
    const float *residual;
    int relu;
} tile_epilogue;

// relu?(result + (bias + residual)) for one vector of row i, as ck_conv_apply_epilogue computes it (max(0, v) keeps
// NaN and −0, as its v < 0 ? 0 : v does); residual_row is NULL or that row's residual at the same columns.
__attribute__((target("avx512f"), always_inline))
static inline __m512 epilogue_avx512(__m512 result, const tile_epilogue *e, int i, const float *residual_row,
                                     __mmask16 mask) {
    const float b = e->bias ? e->bias[i] : 0.0f;
    if (residual_row) result = _mm512_add_ps(result, _mm512_add_ps(_mm512_set1_ps(b), _mm512_maskz_loadu_ps(mask, residual_row)));
    else if (b != 0.0f) result = _mm512_add_ps(result, _mm512_set1_ps(b));
    return e->relu ? _mm512_max_ps(_mm512_setzero_ps(), result) : result;
}

// C[0..rows) × [0..cols) = alpha·(A panel · B panel) + beta·C, then the epilogue when e is not NULL, for NV =
// ceil(cols/16) vectors of 16. `beta == 0` never reads C. Inlined into one function per NV so that the
// accumulators stay in registers.
__attribute__((target("avx512f"), always_inline))
static inline void micro_kernel(const int NV, int kc, const float *restrict a, const float *restrict b,
                                float *c, int ldc, int rows, int cols, float alpha, float beta,
                                const tile_epilogue *e) {
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
            if (e) result = epilogue_avx512(result, e, i, e->residual ? e->residual + (size_t)i * ldc + v * 16 : NULL, mask);
            _mm512_mask_storeu_ps(row + v * 16, mask, result);
        }
    }
}

// C[0..rows) × [0..cols) = alpha·tile + beta·C for a tile computed aside (row stride NR), then the epilogue.
__attribute__((target("avx512f")))
static void store_tile_part(float *c, int ldc, const float *tile, int rows, int cols, float alpha, float beta,
                            const tile_epilogue *e) {
    const __m512 alpha_v = _mm512_set1_ps(alpha), beta_v = _mm512_set1_ps(beta);
    for (int i = 0; i < rows; i++) {
        for (int v = 0; v < cols; v += 16) {
            const int left = cols - v;
            const __mmask16 mask = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            __m512 result = _mm512_mul_ps(alpha_v, _mm512_maskz_loadu_ps(mask, tile + i * GEMM_NR + v));
            float *row = c + (size_t)i * ldc + v;
            if (beta != 0.0f) result = _mm512_fmadd_ps(beta_v, _mm512_maskz_loadu_ps(mask, row), result);
            if (e) result = epilogue_avx512(result, e, i, e->residual ? e->residual + (size_t)i * ldc + v : NULL, mask);
            _mm512_mask_storeu_ps(row, mask, result);
        }
    }
}

#define DEFINE_MICRO_KERNEL(NV)                                                                          \
    __attribute__((target("avx512f"), noinline))                                                         \
    static void micro_kernel_##NV(int kc, const float *a, const float *b, float *c, int ldc, int rows,   \
                                  int cols, float alpha, float beta, const tile_epilogue *e) {           \
        micro_kernel(NV, kc, a, b, c, ldc, rows, cols, alpha, beta, e);                                  \
    }
DEFINE_MICRO_KERNEL(1)
DEFINE_MICRO_KERNEL(2)
DEFINE_MICRO_KERNEL(3)
DEFINE_MICRO_KERNEL(4)

typedef void (*micro_kernel_fn)(int, const float *, const float *, float *, int, int, int, float, float,
                                const tile_epilogue *);
static const micro_kernel_fn micro_kernels[5] = {NULL, micro_kernel_1, micro_kernel_2, micro_kernel_3,
                                                 micro_kernel_4};

// ------------------------------------------------------------------------ AVX2 + FMA micro-kernel
// The first `count` (0..8) lanes of a ymm mask, for the partial columns of an edge tile.
static inline __m256i avx2_lanes_below(int count) {
    static const int32_t table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(table + 8 - count));
}

// epilogue_avx512 with AVX2 only; mask selects the lanes of a partial vector (all lanes otherwise).
__attribute__((always_inline))
static inline __m256 epilogue_avx2(__m256 result, const tile_epilogue *e, int i, const float *residual_row,
                                   __m256i mask) {
    const float b = e->bias ? e->bias[i] : 0.0f;
    if (residual_row) result = _mm256_add_ps(result, _mm256_add_ps(_mm256_set1_ps(b), _mm256_maskload_ps(residual_row, mask)));
    else if (b != 0.0f) result = _mm256_add_ps(result, _mm256_set1_ps(b));
    return e->relu ? _mm256_max_ps(_mm256_setzero_ps(), result) : result;
}

// C[0..rows) × [0..cols) = alpha·(A panel · B columns) + beta·C, then the epilogue when e is not NULL, for one
// MR × 8·NV tile (NV = 1 or 2; cols <= 8·NV) whose B columns are the first 8·NV of each NR-float row at b.
// 6 × 2 accumulators, 2 B vectors and one broadcast: 15 of the 16 ymm registers. `beta == 0` never reads C.
__attribute__((always_inline))
static inline void avx2_tile(const int NV, int kc, const float *restrict a, const float *restrict b, float *c,
                             int ldc, int rows, int cols, float alpha, float beta, const tile_epilogue *e) {
    __m256 acc[GEMM_MR][2];
    #pragma clang loop unroll(full)
    for (int i = 0; i < GEMM_MR; i++)
        #pragma clang loop unroll(full)
        for (int v = 0; v < 2; v++) acc[i][v] = _mm256_setzero_ps();
    #pragma clang loop unroll_count(4)
    for (int p = 0; p < kc; p++) {
        __m256 bv[2];
        #pragma clang loop unroll(full)
        for (int v = 0; v < 2; v++) if (v < NV) bv[v] = _mm256_load_ps(b + v * 8);
        #pragma clang loop unroll(full)
        for (int i = 0; i < GEMM_MR; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i);
            #pragma clang loop unroll(full)
            for (int v = 0; v < 2; v++) if (v < NV) acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
        }
        a += GEMM_MR;
        b += GEMM_NR;
    }
    const __m256 alpha_v = _mm256_set1_ps(alpha), beta_v = _mm256_set1_ps(beta);
    for (int i = 0; i < rows; i++) {
        float *row = c + (size_t)i * ldc;
        #pragma clang loop unroll(full)
        for (int v = 0; v < 2; v++) {
            if (v >= NV) continue;
            const int left = cols - v * 8;
            __m256 result = _mm256_mul_ps(alpha_v, acc[i][v]);
            const float *residual_row = e && e->residual ? e->residual + (size_t)i * ldc + v * 8 : NULL;
            if (left >= 8) {
                if (beta != 0.0f) result = _mm256_fmadd_ps(beta_v, _mm256_loadu_ps(row + v * 8), result);
                if (e) result = epilogue_avx2(result, e, i, residual_row, _mm256_set1_epi32(-1));
                _mm256_storeu_ps(row + v * 8, result);
            } else if (left > 0) {
                const __m256i mask = avx2_lanes_below(left);
                if (beta != 0.0f) result = _mm256_fmadd_ps(beta_v, _mm256_maskload_ps(row + v * 8, mask), result);
                if (e) result = epilogue_avx2(result, e, i, residual_row, mask);
                _mm256_maskstore_ps(row + v * 8, mask, result);
            }
        }
    }
}

__attribute__((noinline))
static void avx2_tile_8(int kc, const float *a, const float *b, float *c, int ldc, int rows, int cols, float alpha,
                        float beta, const tile_epilogue *e) {
    avx2_tile(1, kc, a, b, c, ldc, rows, cols, alpha, beta, e);
}

__attribute__((noinline))
static void avx2_tile_16(int kc, const float *a, const float *b, float *c, int ldc, int rows, int cols, float alpha,
                         float beta, const tile_epilogue *e) {
    avx2_tile(2, kc, a, b, c, ldc, rows, cols, alpha, beta, e);
}

// The epilogue of the tile q columns further right.
static inline const tile_epilogue *shifted(const tile_epilogue *e, int q, tile_epilogue *storage) {
    if (!e || !e->residual) return e;
    *storage = *e;
    storage->residual += q;
    return storage;
}

// One packed A panel times one NR-wide packed B panel, as tiles of 16 columns (8 for a last run of at
// most 8): the A panel (MR × KC, 6 KB) stays in L1 across the tiles, and each tile's B rows are one
// 64-byte line of every NR-float panel row.
static void avx2_panel_kernel(int kc, const float *a, const float *b, float *c, int ldc, int rows, int cols,
                              float alpha, float beta, const tile_epilogue *e) {
    tile_epilogue storage;
    int q = 0;
    for (; q + 16 <= cols; q += 16)
        avx2_tile_16(kc, a, b + q, c + q, ldc, rows, 16, alpha, beta, shifted(e, q, &storage));
    if (q < cols) {
        if (cols - q > 8) avx2_tile_16(kc, a, b + q, c + q, ldc, rows, cols - q, alpha, beta, shifted(e, q, &storage));
        else avx2_tile_8(kc, a, b + q, c + q, ldc, rows, cols - q, alpha, beta, shifted(e, q, &storage));
    }
}

// store_tile_part with AVX2 only.
static void store_tile_part_avx2(float *c, int ldc, const float *tile, int rows, int cols, float alpha, float beta,
                                 const tile_epilogue *e) {
    const __m256 alpha_v = _mm256_set1_ps(alpha), beta_v = _mm256_set1_ps(beta);
    for (int i = 0; i < rows; i++) {
        for (int v = 0; v < cols; v += 8) {
            const __m256i mask = avx2_lanes_below(cols - v < 8 ? cols - v : 8);
            __m256 result = _mm256_mul_ps(alpha_v, _mm256_maskload_ps(tile + i * GEMM_NR + v, mask));
            float *row = c + (size_t)i * ldc + v;
            if (beta != 0.0f) result = _mm256_fmadd_ps(beta_v, _mm256_maskload_ps(row, mask), result);
            if (e) result = epilogue_avx2(result, e, i, e->residual ? e->residual + (size_t)i * ldc + v : NULL, mask);
            _mm256_maskstore_ps(row, mask, result);
        }
    }
}

// K in equal blocks of at most KC (576 = 2 × 288, not 256 + 256 + 64): fewer, fuller passes over C.
static int k_block_step(int k) {
    const int k_blocks = (k + GEMM_KC - 1) / GEMM_KC;
    return (k + k_blocks - 1) / k_blocks;
}

// Rows of A as packed: whole MR-tall panels (MC is a multiple of MR, so every block but the last is whole too).
static size_t padded_rows(int m) { return ((size_t)m + GEMM_MR - 1) / GEMM_MR * GEMM_MR; }

size_t ck_gemm_packed_a_floats(int m, int k) {
    if (m <= 0 || k <= 0) return 0;
    return ck_mul_size(padded_rows(m), (size_t)k);
}

// Block (i0, p0) of a prepacked A: the K blocks one after another, each padded_rows(m) × kc, its row blocks in
// order inside it.
static const float *prepacked_block(const float *packed, int m, int i0, int p0, int kc) {
    return packed + (size_t)p0 * padded_rows(m) + (size_t)i0 * kc;
}

void ck_gemm_prepack_a(float *packed, const float *a, int lda, int m, int k, int backend, int part, int parts) {
    const int k_step = k_block_step(k);
    int block = 0;
    for (int p0 = 0; p0 < k; p0 += k_step) {
        const int kc = k - p0 < k_step ? k - p0 : k_step;
        for (int i0 = 0; i0 < m; i0 += GEMM_MC, block++) {
            if (block % parts != part) continue;
            const int mc = m - i0 < GEMM_MC ? m - i0 : GEMM_MC;
            ck_gemm_pack_a((float *)prepacked_block(packed, m, i0, p0, kc), a, lda, 0, i0, mc, p0, kc,
                           backend == CK_GEMM_AVX512);
        }
    }
}

// Columns [j_begin, j_end) of C = alpha·op(A)·B + beta·C, where B's and C's columns are images of n
// columns side by side: column J is column J mod n of C_i = c + i·stride_c, i = J / n, and of B_i (or
// whatever source->pack_panel makes of it). A is packed once per block, or was packed for the whole product
// beforehand (prepacked_a, ck_gemm_prepack_a; then op(A) = A), and short images still fill whole tiles.
// avx512 picks the micro-kernel and packing instructions; 0 runs no AVX-512 instruction.
static int packed_sgemm(int avx512, int transpose_a, int m, int n, int k, float alpha, const float *a, int lda,
                        const float *prepacked_a, const ck_gemm_b *source, float beta, float *c, int ldc,
                        size_t stride_c, long j_begin, long j_end, const ck_gemm_epilogue *epilogue) {
    float *buffer = pack_buffer();
    if (!buffer) return 0;
    if (epilogue && !epilogue->bias && !epilogue->residual && !epilogue->relu) epilogue = NULL;
    float *packed_a = buffer, *packed_b = buffer + (size_t)GEMM_MC * GEMM_KC;
    for (long j0 = j_begin; j0 < j_end; j0 += GEMM_NC) {
        int nc = j_end - j0 < GEMM_NC ? (int)(j_end - j0) : GEMM_NC;
        const int k_step = k_block_step(k);
        for (int p0 = 0; p0 < k; p0 += k_step) {
            int kc = k - p0 < k_step ? k - p0 : k_step;
            // The first K block applies the caller's beta; later blocks add to what it wrote; the last one stores
            // through the epilogue.
            float block_beta = p0 == 0 ? beta : 1.0f;
            const ck_gemm_epilogue *block_epilogue = p0 + kc >= k ? epilogue : NULL;
            ck_gemm_pack_b(packed_b, source, n, p0, kc, j0, nc, avx512);
            for (int i0 = 0; i0 < m; i0 += GEMM_MC) {
                int mc = m - i0 < GEMM_MC ? m - i0 : GEMM_MC;
                const float *a_block = packed_a;
                if (prepacked_a) a_block = prepacked_block(prepacked_a, m, i0, p0, kc);
                else ck_gemm_pack_a(packed_a, a, lda, transpose_a, i0, mc, p0, kc, avx512);
                // A panel outer (it stays in L1), B panels inner (streamed from L2).
                for (int r = 0; r < mc; r += GEMM_MR) {
                    int rows = mc - r < GEMM_MR ? mc - r : GEMM_MR;
                    const float *a_panel = a_block + (size_t)r * kc;
                    for (int q = 0; q < nc; q += GEMM_NR) {
                        int cols = nc - q < GEMM_NR ? nc - q : GEMM_NR;
                        micro_kernel_fn kernel = avx512 ? micro_kernels[(cols + 15) / 16] : avx2_panel_kernel;
                        const float *b_panel = packed_b + (size_t)q * kc;
                        long J = j0 + q;
                        int column = (int)(J % n), image = (int)(J / n);
                        const size_t at = (size_t)image * stride_c + (size_t)(i0 + r) * ldc + column;
                        tile_epilogue tile_e;
                        const tile_epilogue *e = NULL;
                        if (block_epilogue) {
                            tile_e = (tile_epilogue){block_epilogue->bias ? block_epilogue->bias + i0 + r : NULL,
                                                     block_epilogue->residual ? block_epilogue->residual + at : NULL,
                                                     block_epilogue->relu};
                            e = &tile_e;
                        }
                        if (column + cols <= n) {
                            kernel(kc, a_panel, b_panel, c + at, ldc, rows, cols, alpha, block_beta, e);
                            continue;
                        }
                        // The tile spans images: compute it aside, then add each image's part.
                        _Alignas(64) float tile[GEMM_MR * GEMM_NR];
                        kernel(kc, a_panel, b_panel, tile, GEMM_NR, rows, cols, 1.0f, 0.0f, NULL);
                        for (int start = 0; start < cols;) {
                            int run = n - column < cols - start ? n - column : cols - start;
                            const size_t part = (size_t)image * stride_c + (size_t)(i0 + r) * ldc + column;
                            if (e) tile_e.residual = block_epilogue->residual ? block_epilogue->residual + part : NULL;
                            if (avx512) store_tile_part(c + part, ldc, tile + start, rows, run, alpha, block_beta, e);
                            else store_tile_part_avx2(c + part, ldc, tile + start, rows, run, alpha, block_beta, e);
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
#ifdef CK_HAVE_PACKED_GEMM
    const ck_gemm_b source = {.b = b, .ldb = ldb, .transpose_b = transpose_b};
    const int backend = ck_get_gemm_backend();
    if (k > 0 && backend != CK_GEMM_OPENBLAS &&
        packed_sgemm(backend == CK_GEMM_AVX512, transpose_a, m, n, k, alpha, a, lda, NULL, &source, beta, c, ldc, 0, 0, n,
                     NULL))
        return;
#endif
    openblas_sgemm(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void ck_sgemm_images(int transpose_a, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, size_t stride_b, float beta, float *c, int ldc, size_t stride_c, int count) {
    if (m <= 0 || n <= 0 || count <= 0) return;
#ifdef CK_HAVE_PACKED_GEMM
    const ck_gemm_b source = {.b = b, .ldb = ldb, .stride_b = stride_b};
    const int backend = ck_get_gemm_backend();
    if (k > 0 && backend != CK_GEMM_OPENBLAS &&
        packed_sgemm(backend == CK_GEMM_AVX512, transpose_a, m, n, k, alpha, a, lda, NULL, &source, beta, c, ldc,
                     stride_c, 0, (long)n * count, NULL))
        return;
#endif
    for (int i = 0; i < count; i++)
        openblas_sgemm(transpose_a, 0, m, n, k, alpha, a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
}

int ck_gemm_packing_ready(int backend) {
#ifdef CK_HAVE_PACKED_GEMM
    return (backend == CK_GEMM_AVX512 || backend == CK_GEMM_AVX2) && pack_buffer() != NULL;
#else
    (void)backend;
    return 0;
#endif
}

int ck_sgemm_packing(int backend, int m, int n, int k, const float *a, int lda, const float *packed_a,
                     const ck_gemm_b *source, float *c, int ldc, size_t stride_c, long j_begin, long j_end,
                     const ck_gemm_epilogue *epilogue) {
#ifdef CK_HAVE_PACKED_GEMM
    if (backend != CK_GEMM_AVX512 && backend != CK_GEMM_AVX2) return 0;
    if (m <= 0 || n <= 0 || j_end <= j_begin) return 1;
    if (k <= 0) return 0;  // C = 0 is the caller's to write (conv2d never has an empty K)
    return packed_sgemm(backend == CK_GEMM_AVX512, 0, m, n, k, 1.0f, a, lda, packed_a, source, 0.0f, c, ldc, stride_c,
                        j_begin, j_end, epilogue);
#else
    (void)backend; (void)m; (void)n; (void)k; (void)a; (void)lda; (void)packed_a; (void)source; (void)c; (void)ldc;
    (void)stride_c; (void)j_begin; (void)j_end; (void)epilogue;
    return 0;
#endif
}

