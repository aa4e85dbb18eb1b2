/*
 * probe.h — an automatic prompt-adherence probe for generated shapes-world videos
 * (shapes.h): it reads back the color, motion direction and shape of the one object in
 * a clip, so sampling can be scored against the prompt without a human looking.
 *
 * Method: "lit" pixels are those whose largest channel is > 0 (the background is -1).
 *  - color: the mean RGB of all lit pixels of all frames, nearest (Euclidean) of the 7
 *    pure colors; its confidence is 1 - d_nearest / d_second.
 *  - direction: least-squares slopes (px/frame) of the lit-pixel centroid's x and y over
 *    the frames that have lit pixels; the larger |slope| decides the axis and its sign
 *    the direction (y grows downwards). Confidence (|major| - |minor|) / (|major| + |minor|),
 *    scaled down when |major| < 0.5 px/frame.
 *  - shape: median over frames of the fill ratio lit / bounding-box area: square ~1,
 *    circle ~pi/4, triangle ~1/2 (thresholds 0.89 and 0.64).
 * Video layout [3,T,H,W], values in [-1,1].
 */
#ifndef OSP_PROBE_H
#define OSP_PROBE_H

/* Color (0..6, shapes_color_names order) and direction (SHAPES_LEFT..SHAPES_DOWN) with
 * confidence = min of the two confidences in [0,1]. Returns 0 when both were determined;
 * -1 otherwise (no lit pixel: color -1; fewer than 2 lit frames: direction -1), with
 * *confidence 0. */
int probe_video(const float *video, int T, int H, int W, int *color, int *direction, float *confidence);

/* Shape (0..2, shapes_shape_names order) from the fill ratio. Returns 0 or -1 (nothing lit). */
int probe_shape(const float *video, int T, int H, int W, int *shape, float *confidence);

/* Prompt helpers: parse "red circle moving left" into indices (0 / -1), and names. */
int probe_parse_prompt(const char *prompt, int *color, int *shape, int *direction);
const char *probe_color_name(int color);
const char *probe_shape_name(int shape);
const char *probe_direction_name(int direction);

#endif
