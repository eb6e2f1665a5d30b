// Max pooling (with argmax for backward, AVX-512 rows for 3-wide stride-2 windows) and global average
// pooling, OpenMP over (n, c) planes; the shape checks the reference twins share. Twins: CKernelsReference/pool_ref.c.
#include "internal.h"
#include <math.h>
#include <stdint.h>

typedef struct { int N, C, H, W, P, Q; } pool_dims;

static int pool_check(const ck_pool2d_shape *s, pool_dims *d) {
    if (!s) return CK_ERR_NULL_POINTER;
    if (s->batch <= 0 || s->channels <= 0 || s->in_height <= 0 || s->in_width <= 0 ||
        s->kernel_height <= 0 || s->kernel_width <= 0 || s->stride_height <= 0 || s->stride_width <= 0 ||
        s->pad_height < 0 || s->pad_width < 0 ||
        2 * s->pad_height > s->kernel_height || 2 * s->pad_width > s->kernel_width)
        return CK_ERR_BAD_SIZE;
    long ph = (long)s->in_height + 2L * s->pad_height - s->kernel_height;
    long pw = (long)s->in_width + 2L * s->pad_width - s->kernel_width;
    if (ph < 0 || pw < 0) return CK_ERR_BAD_SIZE;
    d->N = s->batch; d->C = s->channels; d->H = s->in_height; d->W = s->in_width;
    d->P = (int)(ph / s->stride_height + 1);
    d->Q = (int)(pw / s->stride_width + 1);
    // Plane indices are int and argmax is int32: both products must fit.
    if ((long long)d->N * d->C > INT32_MAX || (long long)d->H * d->W > INT32_MAX) return CK_ERR_BAD_SIZE;
    if (!ck_mul_size(ck_mul_size((size_t)d->N * d->C, (size_t)d->H), (size_t)d->W)) return CK_ERR_BAD_SIZE;
    return CK_OK;
}

int ck_pool2d_check_shape(const ck_pool2d_shape *shape) {
    pool_dims d;
    return pool_check(shape, &d);
}

int ck_pool2d_output_height(const ck_pool2d_shape *shape) {
    pool_dims d;
    return pool_check(shape, &d) == CK_OK ? d.P : 0;
}

int ck_pool2d_output_width(const ck_pool2d_shape *shape) {
    pool_dims d;
    return pool_check(shape, &d) == CK_OK ? d.Q : 0;
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#define CK_HAVE_AVX512_POOL 1

// Output columns [q0, q1) of one output row of a 3-wide, stride-2 window whose columns all lie inside the
// row (2q − pad >= 0 and 2q − pad + 2 < W), 16 at a time: the window's three columns are the even, odd and
// next-even lanes of 33 consecutive inputs. Same rule as the scalar loop, value by value in the same
// order: take v when v > best, or when v is NaN and best is not (the first NaN stays).
__attribute__((target("avx512f")))
static void maxpool_row_3wide_stride2(float *y, int32_t *argmax, const float *x, int W, int hs, int he, int pad,
                                      int q0, int q1) {
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i even = _mm512_add_epi32(lanes, lanes), odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int q = q0; q < q1; q += 16) {
        const int count = q1 - q < 16 ? q1 - q : 16;
        const __mmask16 out_mask = (__mmask16)((1u << count) - 1);
        const int w0 = 2 * q - pad;  // first window column of lane 0
        // Inputs w0 .. w0 + 2·count used; masked loads read no further.
        const int span = 2 * count + 1;
        const __mmask16 low_mask = span >= 16 ? 0xFFFF : (__mmask16)((1u << span) - 1);
        const __mmask16 high_mask = span - 16 >= 16 ? 0xFFFF : span > 16 ? (__mmask16)((1u << (span - 16)) - 1) : 0;
        const __mmask16 low1_mask = span - 1 >= 16 ? 0xFFFF : (__mmask16)((1u << (span - 1)) - 1);
        const __mmask16 high1_mask = span - 17 >= 16 ? 0xFFFF : span > 17 ? (__mmask16)((1u << (span - 17)) - 1) : 0;
        __m512 best = _mm512_set1_ps(-INFINITY);
        __m512i best_index = _mm512_add_epi32(_mm512_set1_epi32(hs * W + w0), even);
        for (int h = hs; h < he; h++) {
            const float *row = x + (size_t)h * W + w0;
            const __m512 a = _mm512_maskz_loadu_ps(low_mask, row), b = _mm512_maskz_loadu_ps(high_mask, row + 16);
            const __m512 a1 = _mm512_maskz_loadu_ps(low1_mask, row + 1), b1 = _mm512_maskz_loadu_ps(high1_mask, row + 17);
            const __m512 column[3] = {_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b),
                                      _mm512_permutex2var_ps(a1, odd, b1)};
            const __m512i first = _mm512_add_epi32(_mm512_set1_epi32(h * W + w0), even);
            for (int k = 0; k < 3; k++) {
                const __m512 v = column[k];
                const __mmask16 take = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) |
                                       (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q));
                best = _mm512_mask_mov_ps(best, take, v);
                best_index = _mm512_mask_mov_epi32(best_index, take, _mm512_add_epi32(first, _mm512_set1_epi32(k)));
            }
        }
        _mm512_mask_storeu_ps(y + q, out_mask, best);
        if (argmax) _mm512_mask_storeu_epi32(argmax + q, out_mask, best_index);
    }
}
#endif

// One (n, c) plane. A later value wins only if strictly greater, and a NaN ends the window, so NaN
// propagates as in PyTorch. (PyTorch's argmax points at a window's last NaN, ours at its first: stopping
// early keeps this loop 2.5x faster, and a NaN activation has no meaningful gradient route anyway.)
static void maxpool_plane(float *y, int32_t *argmax, const float *x, const ck_pool2d_shape *s, const pool_dims *d,
                          int vector_rows) {
    // Columns whose whole window lies inside the row go to the vector loop when it applies (ResNet's 3x3/2).
    int vq0 = 0, vq1 = 0;
    if (vector_rows) {
        vq0 = (s->pad_width + 1) / 2;                       // 2q − pad >= 0
        vq1 = (d->W - 3 + s->pad_width) / 2 + 1;            // 2q − pad + 2 <= W − 1
        if (vq1 > d->Q) vq1 = d->Q;
        if (vq1 < vq0) vq1 = vq0;
    }
    for (int p = 0; p < d->P; p++) {
        const int h0 = p * s->stride_height - s->pad_height;
        const int hs = h0 < 0 ? 0 : h0;
        const int he = h0 + s->kernel_height < d->H ? h0 + s->kernel_height : d->H;
#ifdef CK_HAVE_AVX512_POOL
        if (vq1 > vq0)
            maxpool_row_3wide_stride2(y + (size_t)p * d->Q, argmax ? argmax + (size_t)p * d->Q : NULL, x, d->W, hs, he, s->pad_width,
                                      vq0, vq1);
#endif
        for (int q = 0; q < d->Q; q++) {
            if (q == vq0 && vq1 > vq0) q = vq1;
            if (q >= d->Q) break;
            const int w0 = q * s->stride_width - s->pad_width;
            const int ws = w0 < 0 ? 0 : w0;
            const int we = w0 + s->kernel_width < d->W ? w0 + s->kernel_width : d->W;
            float best = -INFINITY;
            int32_t best_index = hs * d->W + ws;
            for (int h = hs; h < he; h++)
                for (int w = ws; w < we; w++) {
                    const float v = x[h * d->W + w];
                    if (v > best || isnan(v)) { best = v; best_index = h * d->W + w; if (isnan(v)) goto done; }
                }
        done:
            y[(size_t)p * d->Q + q] = best;
            if (argmax) argmax[(size_t)p * d->Q + q] = best_index;
        }
    }
}

int ck_maxpool2d_forward_f32(float *y, int32_t *argmax, const float *x, const ck_pool2d_shape *shape) {
    pool_dims d;
    int status = pool_check(shape, &d);
    if (status != CK_OK) return status;
    CK_REQUIRE(y && x, CK_ERR_NULL_POINTER);
    ck_ensure_threads();
    const int planes = d.N * d.C;
    const size_t in_plane = (size_t)d.H * d.W, out_plane = (size_t)d.P * d.Q;
#ifdef CK_HAVE_AVX512_POOL
    const int vector_rows = shape->kernel_width == 3 && shape->stride_width == 2 && ck_cpu_has_avx512();
#else
    const int vector_rows = 0;
#endif
    #pragma omp parallel for schedule(static) num_threads(ck_get_num_threads())
    for (int plane = 0; plane < planes; plane++)
        maxpool_plane(y + plane * out_plane, argmax ? argmax + plane * out_plane : NULL, x + plane * in_plane,
                      shape, &d, vector_rows);
    return CK_OK;
}

int ck_maxpool2d_backward_f32(float *dx, const float *dy, const int32_t *argmax, const ck_pool2d_shape *shape) {
    pool_dims d;
    int status = pool_check(shape, &d);
    if (status != CK_OK) return status;
    CK_REQUIRE(dx && dy && argmax, CK_ERR_NULL_POINTER);
    ck_ensure_threads();
    const int planes = d.N * d.C;
    const size_t in_plane = (size_t)d.H * d.W, out_plane = (size_t)d.P * d.Q;
    #pragma omp parallel for schedule(static) num_threads(ck_get_num_threads())
    for (int plane = 0; plane < planes; plane++) {
        float *dxp = dx + plane * in_plane;
        const float *dyp = dy + plane * out_plane;
        const int32_t *ap = argmax + plane * out_plane;
        memset(dxp, 0, sizeof(float) * in_plane);
        for (size_t i = 0; i < out_plane; i++)
            if (ap[i] >= 0 && (size_t)ap[i] < in_plane) dxp[ap[i]] += dyp[i];
    }
    return CK_OK;
}

int ck_global_avgpool_check_sizes(int batch, int channels, int spatial) {
    if (batch <= 0 || channels <= 0 || spatial <= 0) return CK_ERR_BAD_SIZE;
    if ((long long)batch * channels > INT32_MAX) return CK_ERR_BAD_SIZE;
    if (!ck_mul_size(ck_mul_size((size_t)batch, (size_t)channels), (size_t)spatial)) return CK_ERR_BAD_SIZE;
    return CK_OK;
}

int ck_global_avgpool_forward_f32(float *y, const float *x, int batch, int channels, int spatial) {
    int status = ck_global_avgpool_check_sizes(batch, channels, spatial);
    if (status != CK_OK) return status;
    CK_REQUIRE(y && x, CK_ERR_NULL_POINTER);
    ck_ensure_threads();
    const int planes = batch * channels;
    #pragma omp parallel for schedule(static) num_threads(ck_get_num_threads())
    for (int plane = 0; plane < planes; plane++) {
        const float *in = x + (size_t)plane * spatial;
        float sum = 0.0f;
        #pragma omp simd reduction(+ : sum)
        for (int i = 0; i < spatial; i++) sum += in[i];
        y[plane] = sum / (float)spatial;
    }
    return CK_OK;
}

int ck_global_avgpool_backward_f32(float *dx, const float *dy, int batch, int channels, int spatial) {
    int status = ck_global_avgpool_check_sizes(batch, channels, spatial);
    if (status != CK_OK) return status;
    CK_REQUIRE(dx && dy, CK_ERR_NULL_POINTER);
    ck_ensure_threads();
    const int planes = batch * channels;
    #pragma omp parallel for schedule(static) num_threads(ck_get_num_threads())
    for (int plane = 0; plane < planes; plane++) {
        const float g = dy[plane] / (float)spatial;
        float *out = dx + (size_t)plane * spatial;
        for (int i = 0; i < spatial; i++) out[i] = g;
    }
    return CK_OK;
}

