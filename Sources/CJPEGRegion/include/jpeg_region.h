// jpeg_region — decode only the part of a JPEG that a center crop needs, with libjpeg-turbo's libjpeg API
// (jpeg_skip_scanlines / jpeg_crop_scanline). The decoded pixels are libjpeg-turbo's, the same library and
// settings as the full decode (accurate integer IDCT, fancy upsampling), so they match it byte for byte
// away from the region's edges; callers ask for a margin around what they read.
#ifndef JPEG_REGION_H
#define JPEG_REGION_H

#include <stddef.h>

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
/// pixel (x, y) at out + y·out_stride + 4x; nothing else of `out` is written. The rest of the file is still
/// read, so truncation anywhere is reported as in a full decode. As with TurboJPEG, the first libjpeg warning
/// decides: a premature end is JR_TRUNCATED, other recoverable warnings are ignored (Pillow loads through them).
/// - Returns: a JR_ code; for JR_CORRUPT and JR_TRUNCATED, libjpeg's message in `message`.
int jr_decode_region_rgbx(const unsigned char *data, size_t size, unsigned char *out, size_t out_stride,
                          int width, int height, int row_begin, int row_end, int column_begin, int column_end,
                          char *message, size_t message_size);

#ifdef __cplusplus
}
#endif
#endif
