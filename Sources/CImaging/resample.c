// The horizontal pass of Pillow's resampler on RGBX rows (see cimaging.h), with AVX-512BW.
//
// One output pixel reads 8 source pixels per step: 32 bytes widened to 16-bit and permuted so that each
// 128-bit lane holds two taps of the four channels side by side, [R_t R_t+1 G_t G_t+1 B_t B_t+1 X_t X_t+1];
// vpmaddwd against [w_t w_t+1] × 4 then gives the four channels' two-tap sums in one instruction. Pillow's
// weights need 23 bits, so they come split in two 16-bit halves (hi·2^11 + lo): two multiply-adds per step,
// recombined exactly in 32-bit. Four output pixels are finished together: their lane sums are reduced by
// two rounds of 128-bit shuffles, shifted, saturated and stored as 16 bytes.
#include "cimaging.h"
#include "cpu_features.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

__attribute__((target("avx512f,avx512bw")))
static inline __m512i pixel_sums(const uint8_t *row, int32_t start, const int16_t *hi, const int16_t *lo, int taps,
                                 __m512i order) {
    __m512i sum_hi = _mm512_setzero_si512(), sum_lo = _mm512_setzero_si512();
    for (int t = 0; t < taps; t += 8) {
        const __m256i bytes = _mm256_loadu_si256((const __m256i *)(row + (size_t)(start + t) * 4));
        const __m512i pairs = _mm512_permutexvar_epi16(order, _mm512_cvtepu8_epi16(bytes));
        // Weights of taps t..t+7 as [w_t w_t+1] × 4 channels per lane.
        const __m128i w_hi = _mm_loadu_si128((const __m128i *)(hi + t)), w_lo = _mm_loadu_si128((const __m128i *)(lo + t));
        const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        const __m512i weights_hi = _mm512_permutexvar_epi32(spread, _mm512_castsi128_si512(w_hi));
        const __m512i weights_lo = _mm512_permutexvar_epi32(spread, _mm512_castsi128_si512(w_lo));
        sum_hi = _mm512_add_epi32(sum_hi, _mm512_madd_epi16(pairs, weights_hi));
        sum_lo = _mm512_add_epi32(sum_lo, _mm512_madd_epi16(pairs, weights_lo));
    }
    // Per lane: Σ px·(hi·2^11 + lo), below 2^30 for non-negative weights.
    return _mm512_add_epi32(_mm512_slli_epi32(sum_hi, 11), sum_lo);
}

__attribute__((target("avx512f,avx512bw")))
static void resample_rows(uint8_t *dst, size_t dst_stride, const uint8_t *src, size_t src_stride, int rows, int columns,
                          const int32_t *starts, const int16_t *weights_hi, const int16_t *weights_lo, int taps) {
    // 16-bit lane 8L + 2c + p takes channel c of pixel 2L + p (input lane 4·(2L + p) + c).
    int16_t order_table[32];
    for (int lane = 0; lane < 4; lane++)
        for (int c = 0; c < 4; c++)
            for (int p = 0; p < 2; p++) order_table[8 * lane + 2 * c + p] = (int16_t)(4 * (2 * lane + p) + c);
    const __m512i order = _mm512_loadu_si512(order_table);
    const __m512i bias = _mm512_set1_epi32(1 << 21);
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = src + (size_t)r * src_stride;
        uint8_t *out = dst + (size_t)r * dst_stride;
        int x = 0;
        for (; x + 4 <= columns; x += 4) {
            __m512i s[4];
            for (int i = 0; i < 4; i++)
                s[i] = pixel_sums(row, starts[x + i], weights_hi + (size_t)(x + i) * taps,
                                  weights_lo + (size_t)(x + i) * taps, taps, order);
            // Sum each pixel's four lanes: [s0 s1 s2 s3] lane totals in lanes 0..3.
            const __m512i a = _mm512_add_epi32(_mm512_shuffle_i32x4(s[0], s[1], 0x44), _mm512_shuffle_i32x4(s[0], s[1], 0xEE));
            const __m512i b = _mm512_add_epi32(_mm512_shuffle_i32x4(s[2], s[3], 0x44), _mm512_shuffle_i32x4(s[2], s[3], 0xEE));
            const __m512i total = _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, 0x88), _mm512_shuffle_i32x4(a, b, 0xDD));
            const __m512i shifted = _mm512_srai_epi32(_mm512_add_epi32(total, bias), 22);
            // Sums are non-negative: unsigned saturation is Pillow's clip8.
            _mm_storeu_si128((__m128i *)(out + (size_t)x * 4), _mm512_cvtusepi32_epi8(shifted));
        }
        for (; x < columns; x++) {
            const __m512i s = pixel_sums(row, starts[x], weights_hi + (size_t)x * taps, weights_lo + (size_t)x * taps,
                                         taps, order);
            const __m128i lanes = _mm_add_epi32(_mm_add_epi32(_mm512_extracti32x4_epi32(s, 0), _mm512_extracti32x4_epi32(s, 1)),
                                                _mm_add_epi32(_mm512_extracti32x4_epi32(s, 2), _mm512_extracti32x4_epi32(s, 3)));
            const __m128i shifted = _mm_srai_epi32(_mm_add_epi32(lanes, _mm_set1_epi32(1 << 21)), 22);
            int32_t v[4];
            _mm_storeu_si128((__m128i *)v, shifted);
            for (int c = 0; c < 4; c++) out[(size_t)x * 4 + c] = (uint8_t)(v[c] > 255 ? 255 : v[c]);
        }
    }
}
#endif

int ci_resample_horizontal_rgbx(uint8_t *dst, size_t dst_stride, const uint8_t *src, size_t src_stride, int rows,
                                int columns, const int32_t *starts, const int16_t *weights_hi,
                                const int16_t *weights_lo, int taps) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    // cpu_features applies RESNETFUSION_ISA=avx2 too: then the caller's AVX2 Swift loop runs.
    const int supported = (cpu_features() & CPU_FEATURE_AVX512BW) != 0;
    if (!supported || taps <= 0 || taps % 8 != 0) return 0;
    resample_rows(dst, dst_stride, src, src_stride, rows, columns, starts, weights_hi, weights_lo, taps);
    return 1;
#else
    (void)dst; (void)dst_stride; (void)src; (void)src_stride; (void)rows; (void)columns; (void)starts;
    (void)weights_hi; (void)weights_lo; (void)taps;
    return 0;
#endif
}
