// The packed GEMM's blocking sizes and packing routines (gemm_pack.c), internal to gemm.c. One packing
// layout serves both micro-kernels (AVX-512 and AVX2 + FMA); only the instructions that fill it differ.
#ifndef CKERNELS_GEMM_PACK_H
#define CKERNELS_GEMM_PACK_H
#include "internal.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define CK_HAVE_PACKED_GEMM 1
#include <immintrin.h>
#include <stdint.h>

// Register blocking: AVX-512 keeps MR rows × NR columns of C in MR·NR/16 zmm accumulators (24 of 32), plus
// NR/16 registers for a row of the B panel; A values are broadcast from memory into the FMAs. AVX2 has 16
// ymm registers, so its kernel covers an NR-wide panel as NR/16 tiles of MR × 16 (12 accumulators, 2 for
// B, 1 broadcast), reading each tile's 16 columns out of the same NR-float panel rows.
#define GEMM_MR CK_GEMM_MR
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

// Packs rows [i0, i0+mc) × columns [p0, p0+kc) of op(A) into MR-tall panels (zero past row mc). With
// avx512 0 no AVX-512 instruction runs (the AVX2 tier).
void ck_gemm_pack_a(float *restrict dst, const float *a, int lda, int transpose_a, int i0, int mc, int p0, int kc,
                    int avx512);
// Packs rows [p0, p0+kc) × columns [j0, j0+nc) of op(B) into NR-wide panels (zero past column nc); avx512 as above.
void ck_gemm_pack_b(float *restrict dst, const ck_gemm_b *source, int n, int p0, int kc, long j0, int nc, int avx512);
#endif
#endif
