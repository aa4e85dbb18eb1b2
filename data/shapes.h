/*
 * shapes.h — the built-in synthetic "shapes" video world used by the demo and the tests:
 * one shape (square, circle, triangle) of a pure color on black, moving left, right, up
 * or down at constant speed, with a prompt such as "red circle moving left" and a fixed
 * word-embedding table standing in for a text encoder.
 *
 * Videos are pixel space, C=3 (RGB), values in [-1,1], background -1. A frame is SxS
 * (default 32), T frames (default 8). Shape side ~ 0.34 S (11 px at 32). By default
 * the shape sweeps from one edge to the other over the clip ((S - side)/(T - 1) px per
 * frame, 3 px at 32x32x8), so the direction fixes its place along the motion in every
 * frame and only the place across the motion is random; a slower speed (shapes_render)
 * also starts it anywhere along the motion. Edges are antialiased with 4x4 supersampling.
 *
 * Text embedding: vocabulary (in this order, index v)
 *   red green blue yellow magenta cyan white square circle triangle moving left right up down
 * Word v's vector has Dt entries; entry d = N(0,1) / sqrt(Dt), where the normal is drawn by
 * Box-Muller from splitmix64 of (SHAPES_EMB_SEED, v, d) (exact recipe in shapes.c). A
 * prompt's embedding is the sequence of its word vectors (case-insensitive, split on
 * spaces), zero-padded to L rows; text_len = number of words.
 *
 * Held-out split: of the 7x3x4 = 84 (color, shape, direction) combinations, the 12 with
 * i = 0..11: (color i mod 7, shape i mod 3, direction i mod 4) are never used for training;
 * the val file holds only those. Every (color, shape), (color, direction) pair is
 * held out at most once and each (shape, direction) pair exactly once, so every color,
 * shape, direction and pairwise combination still appears in training.
 *
 * Files written by shapes_synth (dataset.h format, at the root):
 *   latents [N,3,T,S,S] f32, text [N,L,Dt] f32, text_len [N] i32, prompts [N] strings,
 *   labels [N,3] i32 (color, shape, direction), root attributes world="shapes", frames,
 *   size, speed (pixels per frame), text_len, text_dim, seed. Train samples cycle through the 72 training
 *   combinations (sample i uses combination i mod 72), val samples through the 12 held-out
 *   ones, so every combination is equally frequent.
 */
#ifndef OSP_SHAPES_H
#define OSP_SHAPES_H

#include <stddef.h>
#include <stdint.h>

enum { SHAPES_NCOLORS = 7, SHAPES_NSHAPES = 3, SHAPES_NDIRS = 4, SHAPES_NHELDOUT = 12, SHAPES_NVOCAB = 15 };
enum { SHAPES_LEFT = 0, SHAPES_RIGHT = 1, SHAPES_UP = 2, SHAPES_DOWN = 3 };

#define SHAPES_EMB_SEED 0x05E5EED5ull

extern const char *const shapes_color_names[SHAPES_NCOLORS];    /* red green blue yellow magenta cyan white */
extern const char *const shapes_shape_names[SHAPES_NSHAPES];    /* square circle triangle */
extern const char *const shapes_dir_names[SHAPES_NDIRS];        /* left right up down */
extern const float shapes_color_rgb[SHAPES_NCOLORS][3];         /* in [-1,1] */

/* Write the train file (num samples of training combinations) and, when val_path is not
 * NULL and num_val > 0, the val file (held-out combinations). frames >= 1, size >= 8,
 * text_len >= 4, text_dim >= 1. Returns 0, or -1 with a one-line error. */
int shapes_synth(const char *train_path, const char *val_path, int num, int num_val, int frames, int size,
                 double speed, int text_len, int text_dim, uint64_t seed, char *err, size_t errlen);

/* The val file name the CLI derives from --out: "x_train.h5" -> "x_val.h5", "x.h5" -> "x_val.h5",
 * anything else -> path + "_val.h5". */
void shapes_val_path(const char *train_path, char *out, size_t outlen);

/* Render one clip into video[3,T,S,S]. The shape (side round(0.34 S)) moves `speed` pixels per
 * frame; <= 0 (the default of `osp data synth`) or anything faster means edge to edge,
 * (S - side)/(T - 1). Its position across the motion, and along it for slower speeds, comes from
 * `seed` (any value). */
/* The speed shapes_render uses for `speed` (see below). */
double shapes_speed(int frames, int size, double speed);
void shapes_render(float *video, int color, int shape, int dir, int frames, int size, double speed, uint64_t seed);

/* Prompt text "color shape moving direction" into buf. */
void shapes_prompt(int color, int shape, int dir, char *buf, size_t buflen);

/* Embed a prompt: out[text_len*text_dim] (zero-padded), *len_out = number of words.
 * Returns 0; -1 if a word is not in the vocabulary; -2 if there are more than text_len
 * words (out then holds the first text_len). */
int shapes_embed_prompt(const char *prompt, int text_len, int text_dim, float *out, int *len_out);

/* Vector of vocabulary word v (0..SHAPES_NVOCAB-1) into out[text_dim]. */
void shapes_word_vector(int v, int text_dim, float *out);
int shapes_word_index(const char *word); /* -1 if unknown; case-insensitive */

/* The 12 held-out combinations as prompts (static strings), and as indices. */
int shapes_heldout_prompts(const char *const **out);
void shapes_heldout_combo(int i, int *color, int *shape, int *dir);
int shapes_is_heldout(int color, int shape, int dir);

/* Parse "color shape moving direction" (case-insensitive, "moving" optional) into
 * indices. Returns 0, or -1 if any part is missing or unknown. */
int shapes_parse_prompt(const char *prompt, int *color, int *shape, int *dir);

#endif
