// See cimaging.h. libpng reports fatal errors through its error callback, which must not return: it jumps back
// here with longjmp, so a corrupt or truncated file becomes a return code, never an abort.
//
// libpng is asked for the stored samples only (sub-byte samples unpacked to one byte, 16-bit samples cut to
// their high byte where Pillow does the same); no gamma, background or alpha transform runs. The conversion
// to RGB is done here, with Pillow's rules for each PNG colour type, so the pixels are `convert("RGB")`'s.
#include "cimaging.h"

#include <setjmp.h>
#include <string.h>

#include <png.h>

typedef struct {
    const unsigned char *data;
    size_t size;
    size_t position;
    int ran_out;  // libpng asked for bytes past the end of the file
    char message[256];
    jmp_buf escape;
} png_source;

static void copy_text(char *destination, size_t destination_size, const char *text) {
    if (destination && destination_size > 0) {
        strncpy(destination, text, destination_size - 1);
        destination[destination_size - 1] = '\0';
    }
}

static void on_png_error(png_structp png, png_const_charp text) {
    png_source *source = (png_source *)png_get_error_ptr(png);
    copy_text(source->message, sizeof source->message, text ? text : "unknown libpng error");
    longjmp(source->escape, 1);
}

// Warnings are what libpng reads through (an unusual ICC profile, a palette index past the palette, extra
// compressed data); Pillow reads those files too.
static void on_png_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

static void read_from_memory(png_structp png, png_bytep out, size_t count) {
    png_source *source = (png_source *)png_get_io_ptr(png);
    if (count > source->size - source->position) {
        source->ran_out = 1;
        png_error(png, "the data ends before the image does");
    }
    memcpy(out, source->data + source->position, count);
    source->position += count;
}

// How the samples libpng hands back (after unpacking and 16-bit cutting) become RGB.
typedef enum {
    GRAY_SCALED,   // one byte 0…2^depth − 1, scaled to 0…255 (bit replication, as Pillow's L;2 and L;4 unpackers)
    GRAY_16,       // two bytes, big-endian; Pillow's I;16 → RGB clips the value to 255
    GRAY_ALPHA,    // gray, alpha: alpha dropped
    RGB,           // R G B
    RGB_ALPHA,     // R G B A: alpha dropped, not composited
    PALETTE,       // one index byte, looked up; an index past the palette is black, as in Pillow
} sample_layout;

static void row_to_rgbx(unsigned char *row, int width, sample_layout layout, int gray_scale,
                        const unsigned char palette[256][3]) {
    // Each pixel takes at most 4 bytes before and exactly 4 after, so going from the last pixel to the first
    // reads every input pixel before anything overwrites it.
    for (int x = width - 1; x >= 0; x--) {
        unsigned char r, g, b;
        switch (layout) {
        case GRAY_SCALED: r = g = b = (unsigned char)(row[x] * gray_scale); break;
        case GRAY_16: r = g = b = row[2 * x] ? 255 : row[2 * x + 1]; break;
        case GRAY_ALPHA: r = g = b = row[2 * x]; break;
        case RGB: r = row[3 * x]; g = row[3 * x + 1]; b = row[3 * x + 2]; break;
        case RGB_ALPHA: r = row[4 * x]; g = row[4 * x + 1]; b = row[4 * x + 2]; break;
        case PALETTE:
        default: r = palette[row[x]][0]; g = palette[row[x]][1]; b = palette[row[x]][2]; break;
        }
        unsigned char *pixel = row + 4 * (size_t)x;
        pixel[0] = r;
        pixel[1] = g;
        pixel[2] = b;
        pixel[3] = 255;
    }
}

int ci_decode_png_rgbx(const unsigned char *data, size_t size, unsigned char *out, size_t out_stride, int width,
                       int height, char *message, size_t message_size) {
    if (!data || !out || width <= 0 || height <= 0 || out_stride / 4 < (size_t)width) {
        copy_text(message, message_size, "invalid arguments");
        return CI_PNG_CORRUPT;
    }
    png_source source;
    memset(&source, 0, sizeof source);
    source.data = data;
    source.size = size;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &source, on_png_error, on_png_warning);
    if (!png) {
        copy_text(message, message_size, "libpng could not start (out of memory)");
        return CI_PNG_CORRUPT;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        copy_text(message, message_size, "libpng could not start (out of memory)");
        return CI_PNG_CORRUPT;
    }
    // png and info are not assigned after this point, so they hold their values after the longjmp.
    if (setjmp(source.escape)) {
        png_destroy_read_struct(&png, &info, NULL);
        copy_text(message, message_size, source.message);
        return source.ran_out ? CI_PNG_TRUNCATED : CI_PNG_CORRUPT;
    }
    png_set_read_fn(png, &source, read_from_memory);
    // A bad checksum in any chunk is an error (libpng would skip an ancillary chunk's with a warning). The
    // caller has applied its own pixel limit, so libpng's default 1,000,000-pixel side limit is lifted.
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);

    png_uint_32 stored_width = 0, stored_height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &stored_width, &stored_height, &bit_depth, &color_type, &interlace, NULL, NULL);
    if (stored_width != (png_uint_32)width || stored_height != (png_uint_32)height)
        png_error(png, "image size differs from the header read before");

    unsigned char palette[256][3];
    memset(palette, 0, sizeof palette);
    sample_layout layout;
    int gray_scale = 1;
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
        if (bit_depth == 16) {
            layout = GRAY_16;
        } else {
            layout = GRAY_SCALED;
            gray_scale = 255 / ((1 << bit_depth) - 1);
        }
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: layout = GRAY_ALPHA; break;
    case PNG_COLOR_TYPE_RGB: layout = RGB; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: layout = RGB_ALPHA; break;
    case PNG_COLOR_TYPE_PALETTE: {
        layout = PALETTE;
        png_colorp entries = NULL;
        int count = 0;
        if (png_get_PLTE(png, info, &entries, &count) != PNG_INFO_PLTE || !entries)
            png_error(png, "palette image without a PLTE chunk");
        for (int i = 0; i < count && i < 256; i++) {
            palette[i][0] = entries[i].red;
            palette[i][1] = entries[i].green;
            palette[i][2] = entries[i].blue;
        }
        break;
    }
    default: png_error(png, "unknown colour type");
    }
    if (bit_depth < 8) png_set_packing(png);
    // Pillow keeps only the high byte of 16-bit colour and gray+alpha samples (RGB;16B, RGBA;16B, LA;16B);
    // 16-bit gray alone is kept whole (mode I;16) and clipped when converted, so row_to_rgbx sees both bytes.
    if (bit_depth == 16 && layout != GRAY_16) png_set_strip_16(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) > (size_t)width * 4) png_error(png, "unexpected row size");

    // Rows are read straight into their place in `out` (an interlaced image pass after pass, libpng filling
    // in each pass's pixels) and expanded to RGBX where they lie once they are complete.
    for (int pass = 0; pass < passes; pass++)
        for (int y = 0; y < height; y++) png_read_row(png, out + (size_t)y * out_stride, NULL);
    for (int y = 0; y < height; y++) row_to_rgbx(out + (size_t)y * out_stride, width, layout, gray_scale, palette);
    // Like Pillow, stop after the image data: chunks after it (and a missing IEND) do not matter.
    png_destroy_read_struct(&png, &info, NULL);
    return CI_PNG_OK;
}
