/*
 * model/cuda/cudnn_lib.cuh — the library search, trace and switches of the cuDNN attention path
 * (model/cuda/cudnn_lib.cu), for model/cuda/cudnn.cu only.
 */
#ifndef OSP_CUDA_ATTN_CUDNN_LIB_CUH
#define OSP_CUDA_ATTN_CUDNN_LIB_CUH

#include <stddef.h>

/* a 0/1 environment switch: unset or empty gives dflt, "0" gives 0, anything else 1 */
int cdn_env_bool(const char *name, int dflt);
/* OSP_CUDNN_VERBOSE, read once */
int cdn_verbose(void);
/* one "osp: cudnn: ..." line on stderr under OSP_CUDNN_VERBOSE */
void cdn_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* dlopen handle of the libcudnn.so.9 to use (path when not NULL or empty, else the first found), or NULL */
void *cdn_search(const char *path);

#endif
