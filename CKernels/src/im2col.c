// im2col / col2im: the lowering that turns a convolution into one matrix product.
//
// The column matrix of one image has C·R·S rows, row (c, r, s), and P·Q columns, column (p, q):
// col[(c·R + r)·S + s][p·Q + q] = x[c][p·stride_h − pad_h + r][q·stride_w − pad_w + s], 0 outside.
#include "im2col.h"

// Writes columns [column_begin, column_end) of the column matrix into col, whose rows are
// (column_end − column_begin) long. Splitting by columns lets threads share one image.
void ck_im2col_columns(float *col, const float *x, const ck_conv2d_shape *s, int Q,
                       int column_begin, int column_end) {
    const int H = s->in_height, W = s->in_width, R = s->kernel_height, S = s->kernel_width;
    const int sh = s->stride_height, sw = s->stride_width, ph = s->pad_height, pw = s->pad_width;
    const int width = column_end - column_begin;
    const int rows = s->in_channels * R * S;
    for (int row = 0; row < rows; row++) {
        const int kw = row % S, kh = (row / S) % R, c = row / (R * S);
        const float *plane = x + (size_t)c * H * W;
        float *out = col + (size_t)row * width;
        int j = column_begin;
        while (j < column_end) {
            const int p = j / Q, q0 = j % Q;
            const int q1 = (Q < q0 + (column_end - j)) ? Q : q0 + (column_end - j);
            const int ih = p * sh - ph + kh;
            float *dst = out + (j - column_begin);
            if (ih < 0 || ih >= H) {
                memset(dst, 0, sizeof(float) * (size_t)(q1 - q0));
            } else {
                const float *src_row = plane + (size_t)ih * W;
                if (sw == 1) {
                    // Valid q satisfy 0 <= q - pw + kw < W.
                    int lo = pw - kw, hi = W + pw - kw;
                    if (lo < q0) lo = q0;
                    if (hi > q1) hi = q1;
                    if (hi < lo) hi = lo;
                    for (int q = q0; q < lo && q < q1; q++) dst[q - q0] = 0.0f;
                    if (hi > lo) memcpy(dst + (lo - q0), src_row + (lo - pw + kw), sizeof(float) * (size_t)(hi - lo));
                    for (int q = (hi > q0 ? hi : q0); q < q1; q++) dst[q - q0] = 0.0f;
                } else {
                    for (int q = q0; q < q1; q++) {
                        const int iw = q * sw - pw + kw;
                        dst[q - q0] = (iw >= 0 && iw < W) ? src_row[iw] : 0.0f;
                    }
                }
            }
            j += q1 - q0;
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
                        for (int q = 0; q < Q; q++) {
                            const int iw = q * sw - pw + kw;
                            if (iw >= 0 && iw < W) dst_row[iw] += src_row[q];
                        }
                    }
                }
            }
        }
    }
}
