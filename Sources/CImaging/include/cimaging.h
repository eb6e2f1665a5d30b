// cimaging.h — the C half of the image pipeline.
//
// ci_decode_png_rgbx: PNG decoding with libpng, converted to RGB the way Pillow converts each PNG colour type.
//
// jr_decode_region_rgbx: decode only the part of a JPEG that a center crop needs, with libjpeg-turbo's libjpeg API
// (jpeg_skip_scanlines / jpeg_crop_scanline). The decoded pixels are libjpeg-turbo's, the same library and
// settings as the full decode (accurate integer IDCT, fancy upsampling), so they match it byte for byte
// away from the region's edges; callers ask for a margin around what they read.
#ifndef CIMAGING_H
#define CIMAGING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    JR_OK = 0,
    JR_CORRUPT = 1,        // libjpeg error; message says which
    JR_TRUNCATED = 2,      // the data ends early ("Premature end of JPEG file")
    JR_UNSUPPORTED = 3,    // not a sequential 3-component JPEG: decode the whole image instead
};

/// Decodes rows [row_begin, row_end) and at least columns [column_begin, column_end) of a sequential
/// (baseline or extended) 3-component JPEG as RGBX (X = 255) into `out`, laid out as the whole image:
/// pixel (x, y) at out + y·out_stride + 4x. The rest of the file is still read, so truncation anywhere is
/// reported as in a full decode; to that end the image's last row is decoded too (into its own place in
/// `out`, columns from libjpeg's widened column_begin): `out` must cover the whole image, and nothing else
/// of it is written. As with TurboJPEG, the first libjpeg warning
/// decides: a premature end is JR_TRUNCATED, other recoverable warnings are ignored (Pillow loads through them).
/// - Returns: a JR_ code; for JR_CORRUPT and JR_TRUNCATED, libjpeg's message in `message`.
int jr_decode_region_rgbx(const unsigned char *data, size_t size, unsigned char *out, size_t out_stride,
                          int width, int height, int row_begin, int row_end, int column_begin, int column_end,
                          char *message, size_t message_size);

/// Pillow's horizontal resampling pass (8-bit, 22-bit fixed-point weights) over RGBX rows, exact to its
/// integers: dst[r][x] = clip8((2^21 + Σ_t w[x][t]·src[r][starts[x] + t]) >> 22) per channel. Weights come
/// split as w = hi·2^11 + lo (0 <= lo < 2^11) and padded with zeros to `taps` (a multiple of 8) per output
/// column; they must be non-negative (Pillow's bilinear ones are), which keeps every partial sum below 2^30.
/// Reads up to 4·taps bytes from each source pixel `starts[x]` on: the caller guarantees that many readable
/// bytes. Returns 0 when the CPU lacks AVX-512BW (nothing written: the caller's own loop does the pass).
int ci_resample_horizontal_rgbx(uint8_t *dst, size_t dst_stride, const uint8_t *src, size_t src_stride, int rows,
                                int columns, const int32_t *starts, const int16_t *weights_hi,
                                const int16_t *weights_lo, int taps);

enum {
    CI_PNG_OK = 0,
    CI_PNG_CORRUPT = 1,    // libpng refused the data (bad chunk, checksum or zlib stream); message says why
    CI_PNG_TRUNCATED = 2,  // the data ends before the image does
};

/// Decodes a whole PNG (any colour type, bit depth and interlacing) as RGBX (X = 255) into `out`: pixel (x, y)
/// at out + y·out_stride + 4x, out_stride >= 4·width. The pixels are Pillow's `Image.open(…).convert("RGB")`:
/// gamma, sRGB and ICC chunks are ignored; alpha and tRNS are dropped without compositing; 16-bit colour
/// keeps its high byte, 16-bit gray is clipped to 255; 1, 2 and 4-bit gray are scaled to 0…255; a palette
/// index past the palette is black. `width` and `height` are the caller's reading of the IHDR chunk (sized
/// and limited before this call): a file that says otherwise is CI_PNG_CORRUPT.
/// - Returns: a CI_PNG_ code; for CI_PNG_CORRUPT and CI_PNG_TRUNCATED, libpng's message in `message`.
int ci_decode_png_rgbx(const unsigned char *data, size_t size, unsigned char *out, size_t out_stride,
                       int width, int height, char *message, size_t message_size);

#ifdef __cplusplus
}
#endif
#endif
