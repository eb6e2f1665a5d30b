// See cimaging.h. libjpeg reports fatal errors through error_exit, which must not return: it jumps back
// here with longjmp (the documented pattern), so a corrupt file becomes a return code, never an exit().
#include "cimaging.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf escape;
    char first_warning[JMSG_LENGTH_MAX];
    int warned;
} region_error;

static void on_error(j_common_ptr cinfo) {
    region_error *error = (region_error *)cinfo->err;
    longjmp(error->escape, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    region_error *error = (region_error *)cinfo->err;
    // A warning: keep the first one, the one libjpeg (and so TurboJPEG's error string) reports.
    if (level < 0 && !error->warned) {
        (*cinfo->err->format_message)(cinfo, error->first_warning);
        error->warned = 1;
    }
}

static void copy_message(char *message, size_t message_size, const char *text) {
    if (message && message_size > 0) {
        strncpy(message, text, message_size - 1);
        message[message_size - 1] = '\0';
    }
}

int jr_decode_region_rgbx(const unsigned char *data, size_t size, unsigned char *out, size_t out_stride,
                          int width, int height, int row_begin, int row_end, int column_begin, int column_end,
                          char *message, size_t message_size) {
    if (!data || !out || size == 0 || width <= 0 || height <= 0 || row_begin < 0 || row_end > height ||
        row_begin >= row_end || column_begin < 0 || column_end > width || column_begin >= column_end)
        return JR_UNSUPPORTED;
    struct jpeg_decompress_struct cinfo;
    region_error error;
    memset(&error, 0, sizeof error);
    cinfo.err = jpeg_std_error(&error.base);
    error.base.error_exit = on_error;
    error.base.emit_message = on_message;
    if (setjmp(error.escape)) {
        char text[JMSG_LENGTH_MAX];
        (*cinfo.err->format_message)((j_common_ptr)&cinfo, text);
        copy_message(message, message_size, text);
        jpeg_destroy_decompress(&cinfo);
        return JR_CORRUPT;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.progressive_mode || cinfo.num_components != 3 ||
        (cinfo.jpeg_color_space != JCS_YCbCr && cinfo.jpeg_color_space != JCS_RGB) ||
        (int)cinfo.image_width != width || (int)cinfo.image_height != height) {
        jpeg_destroy_decompress(&cinfo);
        return JR_UNSUPPORTED;
    }
    cinfo.out_color_space = JCS_EXT_RGBX;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&cinfo);

    // libjpeg widens the column range to whole iMCUs and says where it starts.
    JDIMENSION x_offset = (JDIMENSION)column_begin, crop_width = (JDIMENSION)(column_end - column_begin);
    if (crop_width < cinfo.output_width) jpeg_crop_scanline(&cinfo, &x_offset, &crop_width);
    else x_offset = 0;
    if (row_begin > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)row_begin);
    while ((int)cinfo.output_scanline < row_end) {
        JSAMPROW row = out + (size_t)cinfo.output_scanline * out_stride + (size_t)x_offset * 4;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) break;  // suspension cannot happen with a memory source
    }
    // Read through to the end, so that a file cut short below the region is still reported. Skipping to
    // the very end would return at once without reading, so skip to the last row and decode that one (into
    // its own place in `out`, which covers the whole image).
    if (cinfo.output_scanline + 1 < cinfo.output_height)
        jpeg_skip_scanlines(&cinfo, cinfo.output_height - 1 - cinfo.output_scanline);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = out + (size_t)cinfo.output_scanline * out_stride + (size_t)x_offset * 4;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) break;
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    if (error.warned && strstr(error.first_warning, "Premature end")) {
        copy_message(message, message_size, error.first_warning);
        return JR_TRUNCATED;
    }
    return JR_OK;
}
