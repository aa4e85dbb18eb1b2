/*
 * gif.h — dependency-free image output for pixel-space samples: an animated GIF writer
 * (GIF89a, fixed 6x6x6 color-cube palette, LZW with clear codes, looping forever) and a
 * single-frame PNG writer (RGB8, zlib stream of "stored" deflate blocks, own CRC-32 and
 * Adler-32). Inputs are float frames in [-1,1] (values outside are clamped); files are
 * written atomically (temp name, fsync, rename).
 *
 * Palette: index = 36 r + 6 g + b for levels r,g,b in 0..5, level value 51 * level;
 * the channel value x in [-1,1] maps to 8 bits as round((x+1) * 127.5) and then to the
 * nearest level round(v / 51). Indices 216..255 are unused (black).
 */
#ifndef OSP_GIF_H
#define OSP_GIF_H

#include <stddef.h>
#include <stdint.h>

/* video [3,T,H,W]; upscale >= 1 (nearest neighbour); delay_cs = frame delay in 1/100 s.
 * Returns 0, or -1 with a one-line error naming the path. */
int gif_write(const char *path, const float *video, int T, int H, int W, int upscale, int delay_cs, char *err,
              size_t errlen);

/* rgb [3,H,W] -> 8-bit RGB PNG. Returns 0 or -1 with a one-line error. */
int png_write(const char *path, const float *rgb, int H, int W, int upscale, char *err, size_t errlen);

/* Palette helpers shared with tests: 8-bit channel of x in [-1,1], palette index of an
 * RGB triple in [-1,1], and the RGB (0..255) of a palette index. */
uint8_t gif_to_u8(float x);
int gif_palette_index(float r, float g, float b);
void gif_palette_rgb(int index, uint8_t rgb[3]);

/* Encode into memory (what gif_write writes). *out is malloc'd. Returns 0 / -1. */
int gif_encode(const float *video, int T, int H, int W, int upscale, int delay_cs, uint8_t **out, size_t *outlen);

#endif
