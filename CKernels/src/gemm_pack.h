// The AVX-512 GEMM's blocking sizes and packing routines (gemm_pack.c), internal to gemm.c.
#ifndef CKERNELS_GEMM_PACK_H
#define CKERNELS_GEMM_PACK_H
#include "internal.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define CK_HAVE_AVX512_GEMM 1
#include <immintrin.h>

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

// Packs rows [i0, i0+mc) × columns [p0, p0+kc) of op(A) into MR-tall panels (zero past row mc).
void ck_gemm_pack_a(float *restrict dst, const float *a, int lda, int transpose_a, int i0, int mc, int p0, int kc);
// Packs rows [p0, p0+kc) × columns [j0, j0+nc) of op(B) into NR-wide panels (zero past column nc).
void ck_gemm_pack_b(float *restrict dst, const ck_gemm_b *source, int n, int p0, int kc, long j0, int nc);
#endif
#endif
