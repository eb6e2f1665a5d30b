// Reference matrix products: C = alpha·op(A)·op(B) + beta·C with double sums, one image or several.
#include "reference.h"

void ck_sgemm_ref(int transpose_a, int transpose_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double sum = 0;
            for (int p = 0; p < k; p++) {
                float av = transpose_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                float bv = transpose_b ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                sum += (double)av * bv;
            }
            float *cij = c + (size_t)i * ldc + j;
            // As in BLAS, beta == 0 overwrites C without reading it (C may hold NaN).
            *cij = (float)(alpha * sum) + (beta == 0.0f ? 0.0f : beta * *cij);
        }
    }
}

void ck_sgemm_images_ref(int transpose_a, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                         int ldb, size_t stride_b, float beta, float *c, int ldc, size_t stride_c, int count) {
    for (int i = 0; i < count; i++)
        ck_sgemm_ref(transpose_a, 0, m, n, k, alpha, a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
}
