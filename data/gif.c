/*
 * gif.c — animated GIF (fixed 216-color cube, LZW) and stored-deflate PNG writers for
 * float frames in [-1,1]. No zlib: GIF needs only LZW, and a PNG may legally carry its
 * pixels in uncompressed deflate blocks, which keeps this file small and dependency-free.
 */
#include "data/gif.h"

#include <pthread.h>
#include <string.h>

#include "core/common.h"

/* ------------------------------------------------------------------ palette */

uint8_t gif_to_u8(float x) {
    float v = (x + 1.0f) * 127.5f;
    if (!(v > 0.0f)) return 0; /* also NaN */
    if (v >= 255.0f) return 255;
    return (uint8_t)(v + 0.5f);
}

static int level6(float x) { return (gif_to_u8(x) + 25) / 51; }

int gif_palette_index(float r, float g, float b) { return 36 * level6(r) + 6 * level6(g) + level6(b); }

void gif_palette_rgb(int index, uint8_t rgb[3]) {
    if (index < 0 || index >= 216) {
        rgb[0] = rgb[1] = rgb[2] = 0;
        return;
    }
    rgb[0] = (uint8_t)(51 * (index / 36));
    rgb[1] = (uint8_t)(51 * ((index / 6) % 6));
    rgb[2] = (uint8_t)(51 * (index % 6));
}

/* ------------------------------------------------------------------ byte buffer */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf_t;

static void put(buf_t *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        OSP_CHECK(q != NULL, "out of memory growing an image buffer");
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put8(buf_t *b, unsigned v) { uint8_t c = (uint8_t)v; put(b, &c, 1); }
static void put16le(buf_t *b, unsigned v) { put8(b, v & 255), put8(b, (v >> 8) & 255); }
static void put32be(buf_t *b, uint32_t v) { put8(b, v >> 24), put8(b, (v >> 16) & 255), put8(b, (v >> 8) & 255), put8(b, v & 255); }

/* ------------------------------------------------------------------ LZW */

typedef struct {
    buf_t *out;
    uint8_t block[255];
    int nblock;
    uint32_t acc;
    int nacc;
} bitw_t;

/* GIF data is cut into sub-blocks of at most 255 bytes, each prefixed by its length */
static void bitw_byte(bitw_t *w, uint8_t c) {
    w->block[w->nblock++] = c;
    if (w->nblock == 255) {
        put8(w->out, 255);
        put(w->out, w->block, 255);
        w->nblock = 0;
    }
}

static void bitw_code(bitw_t *w, int code, int size) { /* LSB first */
    w->acc |= (uint32_t)code << w->nacc;
    w->nacc += size;
    while (w->nacc >= 8) {
        bitw_byte(w, (uint8_t)(w->acc & 255));
        w->acc >>= 8;
        w->nacc -= 8;
    }
}

static void bitw_flush(bitw_t *w) {
    if (w->nacc > 0) bitw_byte(w, (uint8_t)(w->acc & 255));
    w->acc = 0, w->nacc = 0;
    if (w->nblock) {
        put8(w->out, (unsigned)w->nblock);
        put(w->out, w->block, (size_t)w->nblock);
    }
    put8(w->out, 0); /* block terminator */
}

/* Encode 8-bit indices with LZW (min code size 8). The dictionary is a trie stored as
 * child[code*256 + byte] (0 = absent: real children are always >= 258). The code width
 * grows when the code just assigned equals 2^width, which is exactly when the decoder,
 * one entry behind, will widen; the table is reset with a clear code when full. */
static void lzw_encode(buf_t *out, const uint8_t *px, size_t n, uint16_t *child) {
    const int clear = 256, eoi = 257;
    bitw_t w = {.out = out};
    int size = 9, next = 258;
    put8(out, 8);
    memset(child, 0, 4096 * 256 * sizeof *child);
    bitw_code(&w, clear, size);
    int prefix = px[0];
    for (size_t i = 1; i < n; i++) {
        int k = px[i], c = child[prefix * 256 + k];
        if (c) {
            prefix = c;
            continue;
        }
        bitw_code(&w, prefix, size);
        if (next < 4096) {
            child[prefix * 256 + k] = (uint16_t)next;
            if (next == (1 << size)) size++;
            next++;
        } else {
            bitw_code(&w, clear, size);
            memset(child, 0, 4096 * 256 * sizeof *child);
            size = 9, next = 258;
        }
        prefix = k;
    }
    bitw_code(&w, prefix, size);
    /* the decoder adds one more entry on reading that code and may widen before EOI */
    if (next < 4096 && next == (1 << size)) size++;
    bitw_code(&w, eoi, size);
    bitw_flush(&w);
}

/* ------------------------------------------------------------------ GIF */

int gif_encode(const float *video, int T, int H, int W, int upscale, int delay_cs, uint8_t **out, size_t *outlen) {
    *out = NULL, *outlen = 0;
    if (T < 1 || H < 1 || W < 1 || upscale < 1 || (int64_t)H * upscale > 65535 || (int64_t)W * upscale > 65535)
        return -1;
    const int OH = H * upscale, OW = W * upscale;
    const size_t plane = (size_t)H * W, chan = (size_t)T * plane;
    buf_t b = {0};
    put(&b, "GIF89a", 6);
    put16le(&b, (unsigned)OW), put16le(&b, (unsigned)OH);
    put8(&b, 0xF7); /* global table, 8-bit color resolution, 256 entries */
    put8(&b, 0), put8(&b, 0);
    for (int i = 0; i < 256; i++) {
        uint8_t rgb[3];
        gif_palette_rgb(i, rgb);
        put(&b, rgb, 3);
    }
    put(&b, "\x21\xFF\x0BNETSCAPE2.0\x03\x01\x00\x00\x00", 19); /* loop forever */
    uint8_t *idx = osp_malloc((size_t)OH * OW);
    uint16_t *child = osp_malloc(4096 * 256 * sizeof *child);
    for (int t = 0; t < T; t++) {
        for (int y = 0; y < OH; y++)
            for (int x = 0; x < OW; x++) {
                size_t s = (size_t)t * plane + (size_t)(y / upscale) * W + (size_t)(x / upscale);
                idx[(size_t)y * OW + x] = (uint8_t)gif_palette_index(video[s], video[chan + s], video[2 * chan + s]);
            }
        put(&b, "\x21\xF9\x04\x04", 4); /* graphic control: disposal "leave in place" */
        put16le(&b, (unsigned)(delay_cs < 0 ? 0 : delay_cs));
        put8(&b, 0), put8(&b, 0);
        put8(&b, 0x2C);
        put16le(&b, 0), put16le(&b, 0), put16le(&b, (unsigned)OW), put16le(&b, (unsigned)OH);
        put8(&b, 0);
        lzw_encode(&b, idx, (size_t)OH * OW, child);
    }
    put8(&b, 0x3B);
    free(child);
    free(idx);
    *out = b.p, *outlen = b.n;
    return 0;
}

int gif_write(const char *path, const float *video, int T, int H, int W, int upscale, int delay_cs, char *err,
              size_t errlen) {
    uint8_t *data;
    size_t n;
    if (gif_encode(video, T, H, W, upscale, delay_cs, &data, &n) != 0) {
        snprintf(err, errlen, "%s: bad GIF shape (T=%d H=%d W=%d upscale=%d; sides up to 65535)", path, T, H, W,
                 upscale);
        return -1;
    }
    int rc = osp_write_atomic(path, data, n, err, errlen);
    free(data);
    return rc;
}

/* ------------------------------------------------------------------ PNG */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 255] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void png_chunk(buf_t *b, const char *type, const uint8_t *data, size_t n) {
    put32be(b, (uint32_t)n);
    size_t start = b->n;
    put(b, type, 4);
    if (n) put(b, data, n);
    put32be(b, crc32_of(b->p + start, n + 4));
}

int png_write(const char *path, const float *rgb, int H, int W, int upscale, char *err, size_t errlen) {
    if (H < 1 || W < 1 || upscale < 1 || (int64_t)H * upscale > (1 << 20) || (int64_t)W * upscale > (1 << 20)) {
        snprintf(err, errlen, "%s: bad PNG shape (H=%d W=%d upscale=%d)", path, H, W, upscale);
        return -1;
    }
    pthread_once(&crc_once, crc_init);
    const int OH = H * upscale, OW = W * upscale;
    const size_t plane = (size_t)H * W, rowb = 1 + 3 * (size_t)OW, raw_n = rowb * OH;
    uint8_t *raw = osp_malloc(raw_n);
    for (int y = 0; y < OH; y++) {
        uint8_t *r = raw + (size_t)y * rowb;
        r[0] = 0; /* filter: none */
        for (int x = 0; x < OW; x++) {
            size_t s = (size_t)(y / upscale) * W + (size_t)(x / upscale);
            for (int c = 0; c < 3; c++) r[1 + 3 * x + c] = gif_to_u8(rgb[c * plane + s]);
        }
    }
    /* zlib stream: header, stored deflate blocks of <= 65535 bytes, Adler-32 */
    buf_t z = {0};
    put8(&z, 0x78), put8(&z, 0x01);
    for (size_t off = 0; off < raw_n || off == 0;) {
        size_t n = raw_n - off > 65535 ? 65535 : raw_n - off;
        put8(&z, off + n == raw_n ? 1 : 0);
        put16le(&z, (unsigned)n), put16le(&z, (unsigned)(~n & 0xFFFF));
        put(&z, raw + off, n);
        off += n;
        if (n == 0) break;
    }
    uint32_t a = 1, bsum = 0;
    for (size_t i = 0; i < raw_n; i++) a = (a + raw[i]) % 65521, bsum = (bsum + a) % 65521;
    put32be(&z, (bsum << 16) | a);
    free(raw);
    buf_t b = {0};
    put(&b, "\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[13] = {0};
    for (int i = 0; i < 4; i++) ihdr[i] = (uint8_t)((uint32_t)OW >> (24 - 8 * i)), ihdr[4 + i] = (uint8_t)((uint32_t)OH >> (24 - 8 * i));
    ihdr[8] = 8, ihdr[9] = 2; /* 8-bit RGB, deflate, no filter method extras, no interlace */
    png_chunk(&b, "IHDR", ihdr, 13);
    png_chunk(&b, "IDAT", z.p, z.n);
    png_chunk(&b, "IEND", NULL, 0);
    free(z.p);
    int rc = osp_write_atomic(path, b.p, b.n, err, errlen);
    free(b.p);
    return rc;
}
