// im2col / col2im: the lowering that turns a convolution into one matrix product.
//
// The column matrix of one image has C·R·S rows, row (c, r, s), and P·Q columns, column (p, q):
// col[(c·R + r)·S + s][p·Q + q] = x[c][p·stride_h − pad_h + r][q·stride_w − pad_w + s], 0 outside.
#include "im2col.h"
#include <immintrin.h>

// Writes columns [column_begin, column_end) of the column matrix into col, whose rows are
// (column_end − column_begin) long. Splitting by columns lets threads share one image.
void ck_im2col_columns(float *col, size_t ld, const float *x, const ck_conv2d_shape *s, int Q,
                       int column_begin, int column_end) {
    const int H = s->in_height, W = s->in_width, R = s->kernel_height, S = s->kernel_width;
    const int sh = s->stride_height, sw = s->stride_width, ph = s->pad_height, pw = s->pad_width;
    const int rows = s->in_channels * R * S;
    for (int row = 0; row < rows; row++) {
        const int kw = row % S, kh = (row / S) % R, c = row / (R * S);
        const float *plane = x + (size_t)c * H * W;
        float *out = col + (size_t)row * ld;
        // Output columns q whose input column q·sw − pw + kw lies in [0, W): [valid_lo, valid_hi), the same on
        // every output row, so worked out once per row of col (on layer4's 7x7 outputs, dividing it out per
        // output row had cost more than the copying).
        const int valid_lo = pw - kw > 0 ? (pw - kw + sw - 1) / sw : 0;
        const int valid_hi = (W - 1 + pw - kw) >= 0 ? (W - 1 + pw - kw) / sw + 1 : 0;
        int p = column_begin / Q, q0 = column_begin % Q;
        for (int j = column_begin; j < column_end; p++, q0 = 0) {
            const int q1 = (Q < q0 + (column_end - j)) ? Q : q0 + (column_end - j);
            const int ih = p * sh - ph + kh;
            float *dst = out + (j - column_begin);  // dst[q − q0] is output column q of this output row
            j += q1 - q0;
            if (ih < 0 || ih >= H) {
                memset(dst, 0, sizeof(float) * (size_t)(q1 - q0));
                continue;
            }
            const float *src_row = plane + (size_t)ih * W;
            const int lo = valid_lo > q0 ? (valid_lo < q1 ? valid_lo : q1) : q0;
            const int hi = valid_hi < q1 ? (valid_hi > lo ? valid_hi : lo) : q1;
            for (int q = q0; q < lo; q++) dst[q - q0] = 0.0f;
            if (sw == 1) {
                if (hi > lo) memcpy(dst + (lo - q0), src_row + (lo - pw + kw), sizeof(float) * (size_t)(hi - lo));
            } else {
                int q = lo;
                if (sw == 2) {  // 8 at a time: the even elements of two loads, all 16 inside the row
                    for (; q + 8 <= hi && 2 * q - pw + kw + 16 <= W; q += 8) {
                        const float *src = src_row + (2 * q - pw + kw);
                        const __m256 even = _mm256_shuffle_ps(_mm256_loadu_ps(src), _mm256_loadu_ps(src + 8),
                                                              _MM_SHUFFLE(2, 0, 2, 0));
                        _mm256_storeu_ps(dst + (q - q0), _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even),
                                                                                         _MM_SHUFFLE(3, 1, 2, 0))));
                    }
                }
                // No test per element: a loop that vectorizes (per element with the test it had been a third of a
                // stride-2 layer's backward-weight, perf).
                for (; q < hi; q++) dst[q - q0] = src_row[q * sw - pw + kw];
            }
            for (int q = hi; q < q1; q++) dst[q - q0] = 0.0f;
        }
    }
}

// Adds rows [(channel_begin·R·S), (channel_end·R·S)) of a full-width column matrix back into the image
// channels [channel_begin, channel_end) of dx, which the caller zeroed. Channels never share pixels, so
// threads may own disjoint channel ranges.
void ck_col2im_channels(float *dx, const float *col, const ck_conv2d_shape *s, int P, int Q,
                        int channel_begin, int channel_end) {
    const int H = s->in_height, W = s->in_width, R = s->kernel_height, S = s->kernel_width;
    const int sh = s->stride_height, sw = s->stride_width, ph = s->pad_height, pw = s->pad_width;
    const size_t PQ = (size_t)P * Q;
    for (int c = channel_begin; c < channel_end; c++) {
        float *plane = dx + (size_t)c * H * W;
        for (int kh = 0; kh < R; kh++) {
            for (int kw = 0; kw < S; kw++) {
                const float *src = col + ((size_t)(c - channel_begin) * R * S + (size_t)kh * S + kw) * PQ;
                for (int p = 0; p < P; p++) {
                    const int ih = p * sh - ph + kh;
                    if (ih < 0 || ih >= H) continue;
                    float *dst_row = plane + (size_t)ih * W;
                    const float *src_row = src + (size_t)p * Q;
                    if (sw == 1) {
                        int lo = pw - kw, hi = W + pw - kw;
                        if (lo < 0) lo = 0;
                        if (hi > Q) hi = Q;
                        for (int q = lo; q < hi; q++) dst_row[q - pw + kw] += src_row[q];
                    } else {
                        // Valid q satisfy 0 <= q·sw − pw + kw < W: [lo, hi), a loop with no test (as in im2col).
                        const int lo = pw - kw > 0 ? (pw - kw + sw - 1) / sw : 0;
                        int hi = (W - 1 + pw - kw) >= 0 ? (W - 1 + pw - kw) / sw + 1 : 0;
                        if (hi > Q) hi = Q;
                        int q = lo;
                        if (sw == 2) {  // 8 at a time into the even elements of 16 (the odd ones gain +0)
                            for (; q + 8 <= hi && 2 * q - pw + kw + 16 <= W; q += 8) {
                                float *dst = dst_row + (2 * q - pw + kw);
                                const __m256 v = _mm256_castpd_ps(_mm256_permute4x64_pd(
                                    _mm256_castps_pd(_mm256_loadu_ps(src_row + q)), _MM_SHUFFLE(3, 1, 2, 0)));
                                _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst),
                                                                    _mm256_unpacklo_ps(v, _mm256_setzero_ps())));
                                _mm256_storeu_ps(dst + 8, _mm256_add_ps(_mm256_loadu_ps(dst + 8),
                                                                        _mm256_unpackhi_ps(v, _mm256_setzero_ps())));
                            }
                        }
                        for (; q < hi; q++) dst_row[q * sw - pw + kw] += src_row[q];
                    }
                }
            }
        }
    }
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))

// The column matrix row after (c, kh, kw).
static inline void next_row(int *c, int *kh, int *kw, int R, int S) {
    if (++*kw == S) {
        *kw = 0;
        if (++*kh == R) { *kh = 0; ++*c; }
    }
}

// A panel's columns run along output rows, possibly over several rows and images: one segment per
// (image, output row) piece. Returns the segment count; zeroes the panel's columns past cols.
typedef struct { const float *image; int oh, ow0, run, start; } panel_segment;
static int panel_segments(const ck_im2col_panel *ctx, float *panel, int kc, long j0, int cols,
                          panel_segment segments[CK_GEMM_NR]) {
    const ck_conv2d_shape *s = ctx->shape;
    const int C = s->in_channels, H = s->in_height, W = s->in_width;
    const int Q = ctx->Q;
    const long PQ = (long)ctx->P * Q;
    if (cols < CK_GEMM_NR)
        for (int p = 0; p < kc; p++) memset(panel + (size_t)p * CK_GEMM_NR + cols, 0, sizeof(float) * (CK_GEMM_NR - cols));
    int segment_count = 0;
    for (int start = 0; start < cols;) {
        const long J = j0 + start;
        const int n = (int)(J / PQ), pixel = (int)(J % PQ), oh = pixel / Q, ow0 = pixel % Q;
        const int run = Q - ow0 < cols - start ? Q - ow0 : cols - start;
        segments[segment_count].image = ctx->x + (size_t)n * C * H * W;
        segments[segment_count].oh = oh;
        segments[segment_count].ow0 = ow0;
        segments[segment_count].run = run;
        segments[segment_count].start = start;
        segment_count++;
        start += run;
    }
    return segment_count;
}

// One packed GEMM panel straight from the images: what ck_im2col_columns would write, but only the
// CK_GEMM_NR columns and kc rows the micro-kernel is about to use, so the column matrix never exists.
// Only called by the AVX-512 GEMM backend (ck_im2col_pack_panel_avx2 is the AVX2 backend's).
__attribute__((target("avx512f")))
void ck_im2col_pack_panel(const void *context, float *panel, int p0, int kc, long j0, int cols) {
    const ck_im2col_panel *ctx = context;
    const ck_conv2d_shape *s = ctx->shape;
    const int H = s->in_height, W = s->in_width, R = s->kernel_height, S = s->kernel_width;
    const int sh = s->stride_height, sw = s->stride_width, ph = s->pad_height, pw = s->pad_width;
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    panel_segment segments[CK_GEMM_NR];
    const int segment_count = panel_segments(ctx, panel, kc, j0, cols, segments);
    // Segment by segment (its source rows stay hot), rows (c, kh, kw) in order: counted rather than divided
    // out per row.
    for (int g = 0; g < segment_count; g++) {
        const int run = segments[g].run, ow0 = segments[g].ow0;
        int kw = p0 % S, kh = (p0 / S) % R, c = p0 / (R * S);
        for (int p = 0; p < kc; p++, next_row(&c, &kh, &kw, R, S)) {
            float *dst = panel + (size_t)p * CK_GEMM_NR + segments[g].start;
            const int ih = segments[g].oh * sh - ph + kh;
            if (ih < 0 || ih >= H) {
                memset(dst, 0, sizeof(float) * (size_t)run);
                continue;
            }
            const float *src_row = segments[g].image + ((size_t)c * H + ih) * W;
            for (int v = 0; v < run; v += 16) {
                const int len = run - v < 16 ? run - v : 16;
                const __mmask16 in_run = (__mmask16)((1u << len) - 1);
                const int iw0 = (ow0 + v) * sw - pw + kw;  // input column of lane 0
                __m512 values;
                if (sw == 1) {
                    // Lanes whose input column lies in [0, W): a contiguous range [lo, hi).
                    const int lo = iw0 < 0 ? -iw0 : 0, hi = W - iw0;
                    if (hi <= lo || lo >= 16) {
                        values = _mm512_setzero_ps();
                    } else {
                        const int top = hi < 16 ? hi : 16;
                        const __mmask16 valid = (__mmask16)(((1u << top) - 1) & ~((1u << lo) - 1)) & in_run;
                        // Left padding: the expanding load places src_row[0..] in lanes lo.. without
                        // forming an address before the row.
                        values = lo > 0 ? _mm512_maskz_expandloadu_ps(valid, src_row)
                                        : _mm512_maskz_loadu_ps(valid, src_row + iw0);
                    }
                } else if (sw == 2 && iw0 >= 0 && iw0 + 31 < W) {
                    // Inside the row: two loads and the even lanes of the pair.
                    const __m512i even = _mm512_add_epi32(lanes, lanes);
                    values = _mm512_permutex2var_ps(_mm512_loadu_ps(src_row + iw0), even, _mm512_loadu_ps(src_row + iw0 + 16));
                } else {
                    const __m512i iw = _mm512_add_epi32(_mm512_set1_epi32(iw0), _mm512_mullo_epi32(lanes, _mm512_set1_epi32(sw)));
                    const __mmask16 valid = _mm512_cmpge_epi32_mask(iw, _mm512_setzero_si512()) &
                                            _mm512_cmplt_epi32_mask(iw, _mm512_set1_epi32(W)) & in_run;
                    values = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, iw, src_row, 4);
                }
                _mm512_mask_storeu_ps(dst + v, in_run, values);
            }
        }
    }
}

// ck_im2col_pack_panel with AVX2 only (the AVX2 GEMM backend): the same panel. Stride 1 copies each row's
// in-bounds run with memcpy between zeroed borders; other strides read element by element (AVX2 has no
// masked gather worth its latency on a handful of lanes).
void ck_im2col_pack_panel_avx2(const void *context, float *panel, int p0, int kc, long j0, int cols) {
    const ck_im2col_panel *ctx = context;
    const ck_conv2d_shape *s = ctx->shape;
    const int H = s->in_height, W = s->in_width, R = s->kernel_height, S = s->kernel_width;
    const int sh = s->stride_height, sw = s->stride_width, ph = s->pad_height, pw = s->pad_width;
    panel_segment segments[CK_GEMM_NR];
    const int segment_count = panel_segments(ctx, panel, kc, j0, cols, segments);
    for (int g = 0; g < segment_count; g++) {
        const int run = segments[g].run, ow0 = segments[g].ow0;
        int kw = p0 % S, kh = (p0 / S) % R, c = p0 / (R * S);
        for (int p = 0; p < kc; p++, next_row(&c, &kh, &kw, R, S)) {
            float *dst = panel + (size_t)p * CK_GEMM_NR + segments[g].start;
            const int ih = segments[g].oh * sh - ph + kh;
            if (ih < 0 || ih >= H) {
                memset(dst, 0, sizeof(float) * (size_t)run);
                continue;
            }
            const float *src_row = segments[g].image + ((size_t)c * H + ih) * W;
            const int iw0 = ow0 * sw - pw + kw;  // input column of the segment's first output
            if (sw == 1) {
                // Outputs [lo, hi) of the run read inside the row.
                int lo = iw0 < 0 ? -iw0 : 0, hi = W - iw0;
                if (lo > run) lo = run;
                if (hi > run) hi = run;
                if (hi < lo) hi = lo;
                if (lo > 0) memset(dst, 0, sizeof(float) * (size_t)lo);
                if (hi > lo) memcpy(dst + lo, src_row + iw0 + lo, sizeof(float) * (size_t)(hi - lo));
                if (run > hi) memset(dst + hi, 0, sizeof(float) * (size_t)(run - hi));
            } else {
                for (int v = 0; v < run; v++) {
                    const int iw = iw0 + v * sw;
                    dst[v] = iw >= 0 && iw < W ? src_row[iw] : 0.0f;
                }
            }
        }
    }
}
#endif
