/*
 * model/cuda/cudnn.cu — optional cuDNN fused attention (flash forward and backward) for the CUDA
 * backend, through cuDNN 9's C backend API loaded at run time with dlopen: the build never needs
 * cuDNN, and a machine without it, or a cuDNN that declines a shape, keeps osp's own kernels
 * (model/cuda/attn_fwd.cu / model/cuda/attn_bwd.cu). Nothing here stops training: every failure returns -1.
 *
 * Served: attention whose q rows each have their own kv row (Rkv == R: self-attention, and
 * cross-attention when Rkv == R), head dim 64 or 128, with or without a key mask; the hooks at
 * the top of cuda_attn_fwd / cuda_attn_bwd check that. A key mask (padded Skiparse
 * subsequences): the forward of a padded self-attention runs with cuDNN's padding mask (per-row
 * lengths up to the last valid key; Skiparse puts the padding at the end of each subsequence, so
 * it is skipped, not computed); masked keys inside a row's span, and every masked key in the
 * backward, are zeroed, and the forward's output and lse are corrected for the exactly known
 * share the zero keys add (model/cuda/cudnn_conv.cu); calls where that share is large go to
 * osp's kernels. fp32 q/k/v/o/dO are converted to
 * bf16 in scratch keeping osp's token-major layout: [R, N, H*d] is the cuDNN tensor
 * [b = R, h = H, s = N, d] with strides (N*H*d, d, H*d, 1) (BSHD), so nothing is transposed.
 * cuDNN's softmax stats are fp32 [b, h, s_q, 1] with strides (H*Nq, Nq, 1, 1) and hold the
 * natural-log log-sum-exp of the scaled scores: osp's lse [R, H, Nq] in layout and meaning, so
 * cuDNN writes (forward) and reads (backward) lse in place.
 *
 * Graphs (a plan is built once per (R, Nq, Nk, H, d, direction) and cached; a shape cuDNN
 * declines is remembered and not retried):
 *  - forward: one CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR (Q, K, V -> O, Stats; scale by
 *    value). It is what cudnn-frontend's AUTO lowering emits for a plain bf16 training SDPA on a
 *    cuDNN >= 9.13.1 (its "unified" node, which also takes the literal K, not K^T). cuDNN >= 9.13.
 *  - backward: the primitive graph cudnn-frontend lowers SDPA backward to on Hopper (its
 *    composite backward node), which the fused flash-backward engine recognises:
 *        sum   = rowsum(dO * O) * 1                      (non-virtual fp32 [b,h,sq,1], workspace)
 *        P     = exp(Q K^T * scale - Stats)
 *        dV    = P^T dO
 *        dS    = (dO V^T - sum) * P * scale
 *        dK    = dS^T Q
 *        dQacc = dS K                                     (non-virtual fp32 [b,h,sq,d], workspace)
 *        dQ    = identity(dQacc)
 *    K^T / V^T are strided views of the same K / V buffers, P^T / dS^T virtual bf16 reshapes.
 *    (The native CUDNN_BACKEND_OPERATION_SDPA_BWD_DESCRIPTOR of cuDNN >= 9.17 is not used: the
 *    frontend does not emit it for Hopper and public reports find engines for it on Blackwell
 *    only.) Both graphs finalize and run on an H200 with cuDNN 9.14 and 9.19 (notes/cuda.md).
 * Engine configs come from heuristics mode A; the first config that finalizes into an execution
 * plan is kept. dQ/dK/dV come back bf16 and are added to the caller's fp32 buffers (the backward
 * contract accumulates). cuDNN's backward accumulates dQ with atomics: unlike osp's own backward
 * its dQ is not bit-reproducible run to run (dK, dV are; attn osp restores all three).
 *
 * Options of the instance (model/cuda/backend.h; read per call; the environment variable that
 * overrides each at init in brackets):
 *   attn [OSP_ATTN_IMPL]  auto   (default) cuDNN where it serves the call, osp's kernels otherwise
 *                       | cudnn  stop with a message when cuDNN declines a call it should serve
 *                       | osp    never cuDNN
 *   cudnn_lib [OSP_CUDNN_LIB]  path of the libcudnn.so.9 to load; else "libcudnn.so.9" through the
 *                       loader path, else the pip wheel (nvidia-cudnn-cu13/-cu12: site-packages/
 *                       nvidia/cudnn/lib) of a python next to each $PATH entry, of ~/.local or /usr.
 *   cudnn_pad [OSP_CUDNN_PAD]  off: no padding mask in the forward (every padded key computed,
 *                       zeroed and corrected for, as the backward does), for A/B comparisons
 *   deterministic [OSP_DETERMINISTIC]  the backward runs osp's kernels (bit-reproducible; from
 *                       train.deterministic: true), the forward stays on cuDNN
 * and a trace, read once: OSP_CUDNN_VERBOSE = 1 prints every step (library search, descriptor
 * finalizes, engine-config count, the config kept, workspace) and each failure, once, with
 * cuDNN's status string and cudnnGetLastErrorString.
 *
 * State: the library and its functions are the process's (loaded once); the handle, the plan
 * cache, the latest failure and the call counters belong to the instance (struct cdn_state).
 */
#include "model/cuda/attn.cuh"
#include "model/cuda/cudnn.h"
#include "model/cuda/cudnn_api.cuh"
#include "model/cuda/cudnn_conv.cuh"
#include "model/cuda/cudnn_lib.cuh"

#include <dlfcn.h>
#include <link.h>
#include <string.h>

/* ------------------------------------------------------------------ the library */

typedef void *cdn_desc; /* cudnnBackendDescriptor_t */

/* the library, once per process */
static struct {
    int tried, ok;
    void *lib; /* dlopen handle */
    size_t version;
    size_t (*GetVersion)(void);
    const char *(*GetErrorString)(int);
    void (*GetLastErrorString)(char *, size_t);
    int (*Create)(void **);
    int (*Destroy)(void *);
    int (*SetStream)(void *, cudaStream_t);
    int (*CreateDescriptor)(int, cdn_desc *);
    int (*DestroyDescriptor)(cdn_desc);
    int (*SetAttribute)(cdn_desc, int, int, int64_t, const void *);
    int (*GetAttribute)(cdn_desc, int, int, int64_t, int64_t *, void *);
    int (*Finalize)(cdn_desc);
    int (*Execute)(void *, cdn_desc, cdn_desc);
    char why[640]; /* why loading failed */
} cdn;

/* one cached execution plan (struct cdn_plan, with the plans below) */
typedef struct cdn_plan cdn_plan;
#define CDN_MAX_PLANS 32

/* what one instance keeps (osp_cuda_inst->cdn, made on first use) */
struct cdn_state {
    int tried, ok;
    void *handle;      /* cudnnHandle_t, of the instance's device */
    char why[640];     /* the latest failure, for attn=cudnn's message and the test */
    int64_t calls[2];  /* calls served: forward, backward */
    int64_t calls_pad; /* forward calls served with per-row lengths */
    cdn_plan *plans;   /* [CDN_MAX_PLANS] */
    int nplans, evict;
};

static cdn_state *cds(void) {
    osp_cuda_instance *in = osp_cuda_inst;
    if (!in->cdn) in->cdn = (cdn_state *)osp_calloc(1, sizeof(cdn_state));
    return in->cdn;
}

/* Record (and under OSP_CUDNN_VERBOSE print) a failed call: which, status, cuDNN's last error. */
static void cdn_fail(const char *what, int st) {
    char last[384] = "";
    if (cdn.GetLastErrorString) cdn.GetLastErrorString(last, sizeof last);
    last[strcspn(last, "\r\n")] = 0;
    const char *s = cdn.GetErrorString ? cdn.GetErrorString(st) : NULL;
    char *why = cds()->why;
    snprintf(why, sizeof cds()->why, "%s: %s (%d)%s%s", what, s ? s : "status", st, *last ? " | " : "", last);
    cdn_note("FAILED %s", why);
}

/* Load libcudnn once per process (path: the first instance's cudnn_lib option, "" = search) and
 * resolve the functions. 1 when usable, else 0 with the reason in cdn.why. */
static int cdn_lib_load(const char *path) {
    if (cdn.tried) return cdn.ok;
    cdn.tried = 1;
    if (!cdn.lib) cdn.lib = cdn_search(path);
    if (!cdn.lib) {
        snprintf(cdn.why, sizeof cdn.why, "libcudnn.so.9 not found (set OSP_CUDNN_LIB to its path)");
        cdn_note("%s", cdn.why);
        return 0;
    }
#define CDN_SYM(field, name)                                                                  \
    do {                                                                                      \
        *(void **)&cdn.field = dlsym(cdn.lib, name);                                          \
        if (!cdn.field) {                                                                     \
            snprintf(cdn.why, sizeof cdn.why, "libcudnn has no %s (cuDNN 9 is needed)", name); \
            cdn_note("%s", cdn.why);                                                          \
            return 0;                                                                         \
        }                                                                                     \
    } while (0)
    CDN_SYM(GetVersion, "cudnnGetVersion");
    CDN_SYM(GetErrorString, "cudnnGetErrorString");
    CDN_SYM(GetLastErrorString, "cudnnGetLastErrorString");
    CDN_SYM(Create, "cudnnCreate");
    CDN_SYM(Destroy, "cudnnDestroy");
    CDN_SYM(SetStream, "cudnnSetStream");
    CDN_SYM(CreateDescriptor, "cudnnBackendCreateDescriptor");
    CDN_SYM(DestroyDescriptor, "cudnnBackendDestroyDescriptor");
    CDN_SYM(SetAttribute, "cudnnBackendSetAttribute");
    CDN_SYM(GetAttribute, "cudnnBackendGetAttribute");
    CDN_SYM(Finalize, "cudnnBackendFinalize");
    CDN_SYM(Execute, "cudnnBackendExecute");
#undef CDN_SYM
    cdn.version = cdn.GetVersion();
    struct link_map *lm = NULL;
    if (cdn_verbose() && dlinfo(cdn.lib, RTLD_DI_LINKMAP, &lm) == 0 && lm)
        cdn_note("loaded %s", lm->l_name);
    cdn_note("cuDNN version %zu", cdn.version);
    if (cdn.version < 90000 || cdn.version >= 100000) {
        snprintf(cdn.why, sizeof cdn.why, "cuDNN %zu found, the backend API used here is cuDNN 9's", cdn.version);
        cdn_note("%s", cdn.why);
        return 0;
    }
    cdn.ok = 1;
    return 1;
}

/* The library, then the instance's handle (created once per instance). 1 when usable. */
static int cdn_load(void) {
    cdn_state *s = cds();
    if (s->tried) return s->ok;
    s->tried = 1;
    if (!cdn_lib_load(osp_cuda_inst->opt.cudnn_lib)) {
        snprintf(s->why, sizeof s->why, "%s", cdn.why);
        return 0;
    }
    int st = cdn.Create(&s->handle);
    if (st) {
        cdn_fail("cudnnCreate", st);
        s->handle = NULL;
        return 0;
    }
    s->ok = 1;
    return 1;
}

/* ------------------------------------------------------------------ plans */

enum { CDN_FWD = 0, CDN_BWD = 1 };
enum { G_NONE = 0, G_FWD_SDPA, G_BWD_COMPOSITE, G_FWD_SDPA_PAD };
static const char *cdn_graph_name[] = {"none", "SDPA_FWD operation", "composite backward graph",
                                       "SDPA_FWD operation with sequence lengths"};

/* tensor uids; the virtual intermediates of the composite graph count from 100 */
enum { U_Q = 1, U_K, U_V, U_O, U_DO, U_STATS, U_SCALE, U_ONE, U_DQ, U_DK, U_DV, U_SUM, U_DQACC, U_SEQ_Q, U_SEQ_KV };

struct cdn_plan {
    int64_t R, Nq, Nk;
    int H, d, dir;
    int pad;        /* forward with per-row sequence lengths (cuDNN's padding mask) */
    int graph;      /* the graph that serves it; G_NONE: cuDNN declined this shape */
    cdn_desc plan;  /* the execution plan */
    int64_t ws;     /* its workspace, bytes */
    cdn_desc *keep; /* every descriptor made for it (destroyed with it: the plan refers to them) */
    int nkeep, capkeep;
};

static void cdn_plan_release(cdn_plan *p) {
    if (p->plan) cdn.DestroyDescriptor(p->plan);
    for (int i = p->nkeep - 1; i >= 0; i--) cdn.DestroyDescriptor(p->keep[i]);
    free(p->keep);
    memset(p, 0, sizeof *p);
}

/* One graph being built. Failures are sticky: after the first, every helper does nothing, so a
 * builder is a plain sequence of calls checked once at the end. */
typedef struct {
    cdn_plan *p;
    int failed;
    cdn_desc ops[24];
    int nops;
} cdn_build;

static cdn_desc cb_new(cdn_build *b, int type, const char *what) {
    if (b->failed) return NULL;
    cdn_desc d = NULL;
    int st = cdn.CreateDescriptor(type, &d);
    if (st) {
        cdn_fail(what, st);
        b->failed = 1;
        return NULL;
    }
    cdn_plan *p = b->p;
    if (p->nkeep == p->capkeep) {
        p->capkeep = p->capkeep ? 2 * p->capkeep : 64;
        p->keep = (cdn_desc *)realloc(p->keep, sizeof(cdn_desc) * (size_t)p->capkeep);
        OSP_CHECK(p->keep, "out of host memory");
    }
    p->keep[p->nkeep++] = d;
    return d;
}

static void cb_set(cdn_build *b, cdn_desc d, int attr, int type, int64_t n, const void *v, const char *what) {
    if (b->failed) return;
    int st = cdn.SetAttribute(d, attr, type, n, v);
    if (st) {
        char w[320];
        snprintf(w, sizeof w, "%s: cudnnBackendSetAttribute(attribute %d)", what, attr);
        cdn_fail(w, st);
        b->failed = 1;
    }
}

static void cb_fin(cdn_build *b, cdn_desc d, const char *what) {
    if (b->failed) return;
    int st = cdn.Finalize(d);
    if (st) {
        char w[320];
        snprintf(w, sizeof w, "%s: cudnnBackendFinalize", what);
        cdn_fail(w, st);
        b->failed = 1;
        return;
    }
    cdn_note("  finalized %s", what);
}

static cdn_desc cb_tensor(cdn_build *b, const char *name, int64_t uid, int dtype, const int64_t dim[4],
                          const int64_t str[4], bool virt, bool by_value) {
    cdn_desc t = cb_new(b, CDN_TENSOR, name);
    const int64_t align = 16;
    char what[224];
    snprintf(what, sizeof what, "tensor %s (uid %lld, [%lld,%lld,%lld,%lld] strides [%lld,%lld,%lld,%lld]%s%s)",
             name, (long long)uid, (long long)dim[0], (long long)dim[1], (long long)dim[2], (long long)dim[3],
             (long long)str[0], (long long)str[1], (long long)str[2], (long long)str[3], virt ? ", virtual" : "",
             by_value ? ", by value" : "");
    cb_set(b, t, CDN_A_T_DTYPE, CDN_T_DATA_TYPE, 1, &dtype, what);
    cb_set(b, t, CDN_A_T_DIMS, CDN_T_INT64, 4, dim, what);
    cb_set(b, t, CDN_A_T_STRIDES, CDN_T_INT64, 4, str, what);
    cb_set(b, t, CDN_A_T_UID, CDN_T_INT64, 1, &uid, what);
    cb_set(b, t, CDN_A_T_ALIGN, CDN_T_INT64, 1, &align, what);
    cb_set(b, t, CDN_A_T_VIRTUAL, CDN_T_BOOLEAN, 1, &virt, what);
    if (by_value) cb_set(b, t, CDN_A_T_BY_VALUE, CDN_T_BOOLEAN, 1, &by_value, what);
    cb_fin(b, t, what);
    return t;
}

static void cb_op(cdn_build *b, cdn_desc op, const char *what) {
    cb_fin(b, op, what);
    if (b->failed) return;
    OSP_CHECK(b->nops < (int)(sizeof b->ops / sizeof b->ops[0]), "too many operations in a cuDNN graph");
    b->ops[b->nops++] = op;
}

/* An operation whose attributes are all descriptors (matmul, reduction, reshape, SDPA): created,
 * each attrs[i] set to descs[i], finalized and added to the graph. */
static void cb_op_descs(cdn_build *b, const char *name, int kind, int n, const int *attrs, const cdn_desc *descs) {
    cdn_desc op = cb_new(b, kind, name);
    for (int i = 0; i < n; i++) cb_set(b, op, attrs[i], CDN_T_DESC, 1, &descs[i], name);
    cb_op(b, op, name);
}

/* y = x <mode> bin (bin NULL for unary modes), fp32 math, as cudnn-frontend's pointwise node */
static void cb_pw(cdn_build *b, const char *name, int mode, cdn_desc x, cdn_desc bin, cdn_desc y) {
    const int prec = CDN_F32;
    const float one = 1.0f;
    cdn_desc pw = cb_new(b, CDN_POINTWISE, name);
    cb_set(b, pw, CDN_A_PW_MODE, CDN_T_POINTWISE_MODE, 1, &mode, name);
    cb_set(b, pw, CDN_A_PW_MATH_PREC, CDN_T_DATA_TYPE, 1, &prec, name);
    cb_fin(b, pw, name);
    cdn_desc op = cb_new(b, CDN_OP_POINTWISE, name);
    cb_set(b, op, CDN_A_OPPW_DESC, CDN_T_DESC, 1, &pw, name);
    cb_set(b, op, CDN_A_OPPW_X, CDN_T_DESC, 1, &x, name);
    if (bin) cb_set(b, op, CDN_A_OPPW_B, CDN_T_DESC, 1, &bin, name);
    cb_set(b, op, CDN_A_OPPW_Y, CDN_T_DESC, 1, &y, name);
    cb_set(b, op, CDN_A_OPPW_ALPHA1, CDN_T_FLOAT, 1, &one, name);
    if (bin) cb_set(b, op, CDN_A_OPPW_ALPHA2, CDN_T_FLOAT, 1, &one, name);
    cb_op(b, op, name);
}

/* c = a b (batched over the two leading dims), fp32 accumulation */
static void cb_mm(cdn_build *b, const char *name, cdn_desc a, cdn_desc bm, cdn_desc c) {
    const int comp = CDN_F32;
    cdn_desc mm = cb_new(b, CDN_MATMUL, name);
    cb_set(b, mm, CDN_A_MM_COMP, CDN_T_DATA_TYPE, 1, &comp, name);
    cb_fin(b, mm, name);
    const int attrs[4] = {CDN_A_OPMM_A, CDN_A_OPMM_B, CDN_A_OPMM_C, CDN_A_OPMM_DESC};
    const cdn_desc descs[4] = {a, bm, c, mm};
    cb_op_descs(b, name, CDN_OP_MATMUL, 4, attrs, descs);
}

/* y = sum of x over the dims where y has extent 1 */
static void cb_sum(cdn_build *b, const char *name, cdn_desc x, cdn_desc y) {
    const int red = CDN_RED_ADD, comp = CDN_F32;
    cdn_desc rd = cb_new(b, CDN_REDUCTION, name);
    cb_set(b, rd, CDN_A_RED_OP, CDN_T_REDUCTION_OP, 1, &red, name);
    cb_set(b, rd, CDN_A_RED_COMP, CDN_T_DATA_TYPE, 1, &comp, name);
    cb_fin(b, rd, name);
    const int attrs[3] = {CDN_A_OPRED_X, CDN_A_OPRED_Y, CDN_A_OPRED_DESC};
    const cdn_desc descs[3] = {x, y, rd};
    cb_op_descs(b, name, CDN_OP_REDUCTION, 3, attrs, descs);
}

static void cb_reshape(cdn_build *b, const char *name, cdn_desc x, cdn_desc y) {
    const int attrs[2] = {CDN_A_RESHAPE_X, CDN_A_RESHAPE_Y};
    const cdn_desc descs[2] = {x, y};
    cb_op_descs(b, name, CDN_OP_RESHAPE, 2, attrs, descs);
}

/* With pad, two int32 [R,1,1,1] tensors give each row's query and key count: cuDNN attends over
 * the first seq_len_kv keys only and leaves queries past seq_len_q alone (its padding mask), so
 * the padding at the end of a Skiparse subsequence costs nothing. */
static void cdn_graph_fwd_sdpa(cdn_build *b, int64_t R, int64_t Nq, int64_t Nk, int64_t H, int64_t d, int pad) {
    const int64_t dq[4] = {R, H, Nq, d}, sq[4] = {Nq * H * d, d, H * d, 1};
    const int64_t dk[4] = {R, H, Nk, d}, sk[4] = {Nk * H * d, d, H * d, 1};
    const int64_t dst[4] = {R, H, Nq, 1}, sst[4] = {H * Nq, Nq, 1, 1}, one[4] = {1, 1, 1, 1};
    cdn_desc Q = cb_tensor(b, "Q", U_Q, CDN_BF16, dq, sq, false, false);
    cdn_desc K = cb_tensor(b, "K", U_K, CDN_BF16, dk, sk, false, false);
    cdn_desc V = cb_tensor(b, "V", U_V, CDN_BF16, dk, sk, false, false);
    cdn_desc O = cb_tensor(b, "O", U_O, CDN_BF16, dq, sq, false, false);
    cdn_desc S = cb_tensor(b, "Stats", U_STATS, CDN_F32, dst, sst, false, false);
    cdn_desc A = cb_tensor(b, "scale", U_SCALE, CDN_F32, one, one, false, true);
    const int64_t dl[4] = {R, 1, 1, 1}, sl[4] = {1, 1, 1, 1};
    cdn_desc LQ = pad ? cb_tensor(b, "seq_len_q", U_SEQ_Q, CDN_INT32, dl, sl, false, false) : NULL;
    cdn_desc LK = pad ? cb_tensor(b, "seq_len_kv", U_SEQ_KV, CDN_INT32, dl, sl, false, false) : NULL;
    const int attrs[8] = {CDN_A_FWD_Q,     CDN_A_FWD_K,     CDN_A_FWD_V,    CDN_A_FWD_O,
                          CDN_A_FWD_STATS, CDN_A_FWD_SCALE, CDN_A_FWD_SEQ_Q, CDN_A_FWD_SEQ_KV};
    const cdn_desc descs[8] = {Q, K, V, O, S, A, LQ, LK};
    cb_op_descs(b, cdn_graph_name[pad ? G_FWD_SDPA_PAD : G_FWD_SDPA], CDN_OP_SDPA_FWD, pad ? 8 : 6, attrs, descs);
}

/* The composite backward (file header). Virtual intermediates are fp32 (cudnn-frontend's
 * intermediate type), the two transposed reshapes (P^T, dS^T) bf16 as the frontend sets them. */
static void cdn_graph_bwd_composite(cdn_build *b, int64_t R, int64_t Nq, int64_t Nk, int64_t H, int64_t d) {
    const int64_t dq[4] = {R, H, Nq, d}, sq[4] = {Nq * H * d, d, H * d, 1};
    const int64_t dk[4] = {R, H, Nk, d}, sk[4] = {Nk * H * d, d, H * d, 1};
    const int64_t dkt[4] = {R, H, d, Nk}, skt[4] = {Nk * H * d, d, 1, H * d}; /* K^T, V^T: views of K, V */
    const int64_t drow[4] = {R, H, Nq, 1}, srow[4] = {H * Nq, Nq, 1, 1}, one[4] = {1, 1, 1, 1};
    const int64_t dpk[4] = {R, H, Nq, d}, spk[4] = {H * Nq * d, Nq * d, d, 1};        /* packed BHSD */
    const int64_t ds[4] = {R, H, Nq, Nk}, ss[4] = {H * Nq * Nk, Nq * Nk, Nk, 1};      /* scores */
    const int64_t dst[4] = {R, H, Nk, Nq}, sst[4] = {H * Nq * Nk, Nq * Nk, 1, Nk};    /* scores^T */
    cdn_desc Q = cb_tensor(b, "Q", U_Q, CDN_BF16, dq, sq, false, false);
    cdn_desc KT = cb_tensor(b, "K^T", U_K, CDN_BF16, dkt, skt, false, false);
    cdn_desc VT = cb_tensor(b, "V^T", U_V, CDN_BF16, dkt, skt, false, false);
    cdn_desc O = cb_tensor(b, "O", U_O, CDN_BF16, dq, sq, false, false);
    cdn_desc dO = cb_tensor(b, "dO", U_DO, CDN_BF16, dq, sq, false, false);
    cdn_desc Stats = cb_tensor(b, "Stats", U_STATS, CDN_F32, drow, srow, false, false);
    cdn_desc scale = cb_tensor(b, "scale", U_SCALE, CDN_F32, one, one, false, true);
    cdn_desc unit = cb_tensor(b, "one", U_ONE, CDN_F32, one, one, false, true);
    cdn_desc dQ = cb_tensor(b, "dQ", U_DQ, CDN_BF16, dq, sq, false, false);
    cdn_desc dK = cb_tensor(b, "dK", U_DK, CDN_BF16, dk, sk, false, false);
    cdn_desc dV = cb_tensor(b, "dV", U_DV, CDN_BF16, dk, sk, false, false);
    cdn_desc sum = cb_tensor(b, "softmax_sum", U_SUM, CDN_F32, drow, srow, false, false);
    cdn_desc dQacc = cb_tensor(b, "dQ_accum", U_DQACC, CDN_F32, dpk, spk, false, false);
    cdn_desc dOO = cb_tensor(b, "dO*O", 100, CDN_F32, dpk, spk, true, false);
    cdn_desc rsum = cb_tensor(b, "rowsum(dO*O)", 101, CDN_F32, drow, srow, true, false);
    cdn_desc Sr = cb_tensor(b, "S", 102, CDN_F32, ds, ss, true, false);
    cdn_desc Ss = cb_tensor(b, "S*scale", 103, CDN_F32, ds, ss, true, false);
    cdn_desc Sm = cb_tensor(b, "S*scale-Stats", 104, CDN_F32, ds, ss, true, false);
    cdn_desc P = cb_tensor(b, "P", 105, CDN_F32, ds, ss, true, false);
    cdn_desc PT = cb_tensor(b, "P^T", 106, CDN_BF16, dst, sst, true, false);
    cdn_desc dP = cb_tensor(b, "dP", 107, CDN_F32, ds, ss, true, false);
    cdn_desc dPs = cb_tensor(b, "dP-sum", 108, CDN_F32, ds, ss, true, false);
    cdn_desc dPp = cb_tensor(b, "(dP-sum)*P", 109, CDN_F32, ds, ss, true, false);
    cdn_desc dS = cb_tensor(b, "dS", 110, CDN_F32, ds, ss, true, false);
    cdn_desc dST = cb_tensor(b, "dS^T", 111, CDN_BF16, dst, sst, true, false);
    const int64_t skk[4] = {Nk * H * d, d, H * d, 1};
    cdn_desc Kr = cb_tensor(b, "K (reshaped K^T)", 112, CDN_F32, dk, skk, true, false);

    cb_pw(b, "dO*O", CDN_PW_MUL, dO, O, dOO);
    cb_sum(b, "rowsum(dO*O)", dOO, rsum);
    cb_pw(b, "softmax_sum = rowsum*1", CDN_PW_MUL, rsum, unit, sum);
    cb_mm(b, "S = Q K^T", Q, KT, Sr);
    cb_pw(b, "S*scale", CDN_PW_MUL, Sr, scale, Ss);
    cb_pw(b, "S*scale-Stats", CDN_PW_SUB, Ss, Stats, Sm);
    cb_pw(b, "P = exp", CDN_PW_EXP, Sm, NULL, P);
    cb_reshape(b, "P^T", P, PT);
    cb_mm(b, "dV = P^T dO", PT, dO, dV);
    cb_mm(b, "dP = dO V^T", dO, VT, dP);
    cb_pw(b, "dP-softmax_sum", CDN_PW_SUB, dP, sum, dPs);
    cb_pw(b, "(dP-sum)*P", CDN_PW_MUL, dPs, P, dPp);
    cb_pw(b, "dS = *scale", CDN_PW_MUL, dPp, scale, dS);
    cb_reshape(b, "dS^T", dS, dST);
    cb_mm(b, "dK = dS^T Q", dST, Q, dK);
    cb_reshape(b, "K from K^T", KT, Kr);
    cb_mm(b, "dQ_accum = dS K", dS, Kr, dQacc);
    cb_pw(b, "dQ = identity(dQ_accum)", CDN_PW_IDENTITY, dQacc, NULL, dQ);
}

/* Operation graph -> heuristics (mode A) -> the first engine config that finalizes into a plan. */
static int cb_plan(cdn_build *b) {
    cdn_desc g = cb_new(b, CDN_OPGRAPH, "operation graph");
    cb_set(b, g, CDN_A_GRAPH_HANDLE, CDN_T_HANDLE, 1, &cds()->handle, "operation graph");
    cb_set(b, g, CDN_A_GRAPH_OPS, CDN_T_DESC, b->nops, b->ops, "operation graph");
    cb_fin(b, g, "operation graph");
    const int mode = CDN_HEUR_A;
    cdn_desc h = cb_new(b, CDN_ENGINEHEUR, "engine heuristics");
    cb_set(b, h, CDN_A_HEUR_GRAPH, CDN_T_DESC, 1, &g, "engine heuristics");
    cb_set(b, h, CDN_A_HEUR_MODE, CDN_T_HEUR_MODE, 1, &mode, "engine heuristics");
    cb_fin(b, h, "engine heuristics (mode A)");
    if (b->failed) return -1;
    int64_t n = 0, got = 0;
    int st = cdn.GetAttribute(h, CDN_A_HEUR_RESULTS, CDN_T_DESC, 0, &n, NULL);
    if (st) {
        cdn_fail("engine heuristics: count of results", st);
        return -1;
    }
    cdn_note("  heuristics offer %lld engine config(s)", (long long)n);
    if (n <= 0) {
        snprintf(cds()->why, sizeof cds()->why, "heuristics mode A offer no engine config for this graph");
        return -1;
    }
    cdn_desc cfg[32];
    if (n > 32) n = 32;
    for (int64_t i = 0; i < n; i++) cfg[i] = cb_new(b, CDN_ENGINECFG, "engine config");
    if (b->failed) return -1;
    st = cdn.GetAttribute(h, CDN_A_HEUR_RESULTS, CDN_T_DESC, n, &got, cfg);
    if (st) {
        cdn_fail("engine heuristics: results", st);
        return -1;
    }
    for (int64_t i = 0; i < got; i++) {
        cdn_desc plan = NULL;
        if ((st = cdn.CreateDescriptor(CDN_PLAN, &plan))) {
            cdn_fail("execution plan: create", st);
            return -1;
        }
        char what[64];
        snprintf(what, sizeof what, "execution plan of engine config %lld", (long long)i);
        if ((st = cdn.SetAttribute(plan, CDN_A_PLAN_HANDLE, CDN_T_HANDLE, 1, &cds()->handle)) ||
            (st = cdn.SetAttribute(plan, CDN_A_PLAN_CFG, CDN_T_DESC, 1, &cfg[i])) || (st = cdn.Finalize(plan))) {
            cdn_fail(what, st);
            cdn.DestroyDescriptor(plan);
            continue;
        }
        int64_t ws = 0, cnt = 0, engine = -1;
        if ((st = cdn.GetAttribute(plan, CDN_A_PLAN_WS, CDN_T_INT64, 1, &cnt, &ws))) {
            cdn_fail("execution plan: workspace size", st);
            cdn.DestroyDescriptor(plan);
            continue;
        }
        cdn_desc eng = NULL;
        if (cdn_verbose() && cdn.CreateDescriptor(CDN_ENGINE, &eng) == 0) {
            if (cdn.GetAttribute(cfg[i], CDN_A_CFG_ENGINE, CDN_T_DESC, 1, &cnt, &eng) == 0)
                cdn.GetAttribute(eng, CDN_A_ENGINE_INDEX, CDN_T_INT64, 1, &cnt, &engine);
            cdn.DestroyDescriptor(eng);
        }
        cdn_note("  kept engine config %lld of %lld (engine global index %lld), workspace %lld bytes", (long long)i,
                 (long long)got, (long long)engine, (long long)ws);
        b->p->plan = plan;
        b->p->ws = ws;
        return 0;
    }
    return -1;
}

/* The cached plan of a shape (built on first use), or NULL when cuDNN declines it. */
static cdn_plan *cdn_plan_get(int dir, int64_t R, int64_t Nq, int64_t Nk, int H, int d, int pad) {
    cdn_state *s = cds();
    if (!s->plans) s->plans = (cdn_plan *)osp_calloc(CDN_MAX_PLANS, sizeof(cdn_plan));
    for (int i = 0; i < s->nplans; i++) {
        cdn_plan *p = &s->plans[i];
        if (p->dir == dir && p->R == R && p->Nq == Nq && p->Nk == Nk && p->H == H && p->d == d && p->pad == pad)
            return p->graph != G_NONE ? p : NULL;
    }
    cdn_plan *p;
    if (s->nplans < CDN_MAX_PLANS) {
        p = &s->plans[s->nplans++];
    } else { /* full: replace the oldest entry (shapes change rarely in training) */
        p = &s->plans[s->evict];
        s->evict = (s->evict + 1) % CDN_MAX_PLANS;
        CUDA_CHECK(cudaStreamSynchronize(osp_cuda_inst->stream)); /* its last execution has finished */
        cdn_plan_release(p);
    }
    p->R = R, p->Nq = Nq, p->Nk = Nk, p->H = H, p->d = d, p->dir = dir, p->pad = pad;
    const int graph = dir == CDN_FWD ? (pad ? G_FWD_SDPA_PAD : G_FWD_SDPA) : G_BWD_COMPOSITE;
    if (graph != G_BWD_COMPOSITE && cdn.version < 91300) {
        snprintf(s->why, sizeof s->why, "cuDNN %zu has no SDPA_FWD operation (9.13 or later)", cdn.version);
        cdn_note("%s", s->why);
        return NULL; /* p->graph stays G_NONE: declined */
    }
    cdn_note("%s R=%lld Nq=%lld Nk=%lld H=%d d=%d: building the %s", dir == CDN_FWD ? "forward" : "backward",
             (long long)R, (long long)Nq, (long long)Nk, H, d, cdn_graph_name[graph]);
    cdn_build b;
    memset(&b, 0, sizeof b);
    b.p = p;
    if (graph != G_BWD_COMPOSITE) cdn_graph_fwd_sdpa(&b, R, Nq, Nk, H, d, pad);
    else cdn_graph_bwd_composite(&b, R, Nq, Nk, H, d);
    if (!b.failed && cb_plan(&b) == 0) {
        p->graph = graph;
        return p;
    }
    cdn_note("the %s was declined: %s", cdn_graph_name[graph], s->why);
    return NULL; /* the key stays cached with G_NONE (not retried); its descriptors go at free */
}

/* One execution: a variant pack per call (the pointers change), on osp's stream. */
static int cdn_execute(cdn_plan *p, int n, const int64_t *uids, void *const *ptrs, void *ws) {
    void *handle = cds()->handle;
    int st = cdn.SetStream(handle, osp_cuda_inst->stream);
    if (st) {
        cdn_fail("cudnnSetStream", st);
        return -1;
    }
    cdn_desc vp = NULL;
    if ((st = cdn.CreateDescriptor(CDN_VARPACK, &vp))) {
        cdn_fail("variant pack: create", st);
        return -1;
    }
    if ((st = cdn.SetAttribute(vp, CDN_A_VP_UIDS, CDN_T_INT64, n, uids)) ||
        (st = cdn.SetAttribute(vp, CDN_A_VP_PTRS, CDN_T_VOID_PTR, n, ptrs)) ||
        (st = cdn.SetAttribute(vp, CDN_A_VP_WS, CDN_T_VOID_PTR, 1, &ws)) || (st = cdn.Finalize(vp))) {
        cdn_fail("variant pack", st);
        cdn.DestroyDescriptor(vp);
        return -1;
    }
    st = cdn.Execute(handle, p->plan, vp);
    cdn.DestroyDescriptor(vp);
    if (st) {
        char w[96];
        snprintf(w, sizeof w, "cudnnBackendExecute (%s)", cdn_graph_name[p->graph]);
        cdn_fail(w, st);
        p->graph = G_NONE; /* not again for this shape */
        return -1;
    }
    CUDA_LAUNCH_CHECK();
    return 0;
}

static size_t cdn_round(size_t x) { return (x + 255) & ~(size_t)255; }

/* ------------------------------------------------------------------ entry points */

/* the option cudnn_pad off (OSP_CUDNN_PAD=0) turns the padding-mask forward off (A/B comparisons) */
static int cdn_pad_enabled(void) { return osp_cuda_inst->opt.cudnn_pad; }

/* The shapes cuDNN's flash engines take here; the hooks route only d = 64 and 128. */
static int cdn_shape_ok(int64_t R, int64_t Nq, int64_t Nk, int H, int d) {
    return R > 0 && Nq > 0 && Nk > 0 && H > 0 && d > 0 && d % 8 == 0 && d <= 128 && !(Nq == 1 && Nk == 1);
}

/* The forward on bf16 operands in osp's token-major layout (k, v with masked rows zeroed). ob
 * receives cuDNN's output; the result goes to o32 (fp32) or, when o32 is NULL, stays in ob
 * (bf16), corrected for the masked keys either way.
 * Self-attention over a padded layout (kvalid, Nq == Nk) runs with cuDNN's padding mask when it
 * takes it: each row attends over its keys up to the last valid one (len), queries past that
 * are padding and skipped. With Skiparse's layout (skiparse.h) the padding is exactly that
 * tail, so it costs nothing; masked keys inside the span (other masks) are still zeroed and
 * corrected for as without lengths. */
static int cdn_fwd_core(float *o32, bf16 *ob, float *lse, const bf16 *qb, const bf16 *kb, const bf16 *vb,
                        const uint8_t *kvalid, int64_t R, int64_t Nq, int64_t Nk, int H, int d) {
    const int want_pad = kvalid && Nq == Nk && cdn_pad_enabled();
    cdn_plan *p = want_pad ? cdn_plan_get(CDN_FWD, R, Nq, Nk, H, d, 1) : NULL;
    const int pad = p != NULL;
    if (!p) p = cdn_plan_get(CDN_FWD, R, Nq, Nk, H, d, 0);
    if (!p) return -1;
    const int64_t nq = R * Nq * H * d, nst = R * H * Nq;
    /* lse serves as the stats tensor when aligned as declared (16 bytes), else a scratch copy */
    const bool direct = ((uintptr_t)lse & 15) == 0;
    size_t wsb = cdn_round((size_t)p->ws);
    const size_t stb = direct ? 0 : cdn_round(sizeof(float) * (size_t)nst), rb = cdn_round(sizeof(float) * (size_t)R);
    char *ws = (char *)osp_cuda_scratch(SCRATCH_CUDNN_WS, wsb + stb + 2 * rb + 256);
    float *stats = direct ? lse : (float *)(ws + wsb), *nmask = (float *)(ws + wsb + stb);
    int *len = (int *)(ws + wsb + stb + rb);
    int *d_flag = kvalid ? cdn_flag_clear() : NULL;
    /* masked-key counts (within each row's span when it has a length) before the run: len is an input */
    if (kvalid) cdn_count_masked(nmask, pad ? len : NULL, d_flag, kvalid, R, Nk);
    float scale = 1.0f / sqrtf((float)d); /* by value: cuDNN reads it on the host during execute */
    const int64_t uids[8] = {U_Q, U_K, U_V, U_O, U_STATS, U_SCALE, U_SEQ_Q, U_SEQ_KV};
    void *const ptrs[8] = {(void *)qb, (void *)kb, (void *)vb, ob, stats, &scale, len, len};
    if (cdn_execute(p, pad ? 8 : 6, uids, ptrs, p->ws > 0 ? ws : NULL)) return -1;
    if (!direct) CUDA_CHECK(cudaMemcpyAsync(lse, stats, sizeof(float) * (size_t)nst, cudaMemcpyDeviceToDevice,
                                            osp_cuda_inst->stream));
    if (!kvalid) {
        if (o32) cdn_to_f32(o32, ob, nq);
    } else { /* take the masked keys' share back out (see cdn_to_bf16_masked_kernel) */
        /* Nq == Nk (self-attention of a padded layout): the key mask is the query mask, and
         * ops.h leaves the outputs of padding queries unspecified (finite) */
        cdn_fix_masked(o32, ob, lse, nmask, pad ? len : NULL, Nq == Nk ? kvalid : NULL, d_flag, R, Nq, H, d);
        if (cdn_flag_read(d_flag)) {
            snprintf(cds()->why, sizeof cds()->why,
                     "masked keys carry over 99%% of a softmax sum: osp's masked kernel");
            cdn_note("%s", cds()->why);
            return -1;
        }
    }
    cds()->calls[CDN_FWD]++;
    cds()->calls_pad += pad;
    return 0;
}

extern "C" int attn_cudnn_fwd(float *o, float *lse, const float *q, const float *k, const float *v,
                              const uint8_t *kvalid, int64_t R, int64_t Nq, int64_t Nk, int H, int d) {
    if (!cdn_shape_ok(R, Nq, Nk, H, d) || !cdn_load()) return -1;
    const int64_t nq = R * Nq * H * d, nk = R * Nk * H * d;
    bf16 *qb = (bf16 *)osp_cuda_scratch(SCRATCH_ATTN, sizeof(bf16) * (size_t)(2 * nq + 2 * nk));
    bf16 *ob = qb + nq, *kb = ob + nq, *vb = kb + nk; /* d % 8 == 0: every part 16-byte aligned */
    cuda_to_bf16(qb, q, nq);
    cdn_to_bf16_masked(kb, k, kvalid, (int64_t)H * d, nk);
    cdn_to_bf16_masked(vb, v, kvalid, (int64_t)H * d, nk);
    return cdn_fwd_core(o, ob, lse, qb, kb, vb, kvalid, R, Nq, Nk, H, d);
}

extern "C" int attn_cudnn_fwd16(uint16_t *o, float *lse, const uint16_t *q, uint16_t *k, uint16_t *v,
                                const uint8_t *kvalid, int64_t R, int64_t Nq, int64_t Nk, int H, int d) {
    if (!cdn_shape_ok(R, Nq, Nk, H, d) || !cdn_load()) return -1;
    const int64_t nk = R * Nk * H * d;
    cdn_zero_masked(k, kvalid, (int64_t)H * d, nk);
    cdn_zero_masked(v, kvalid, (int64_t)H * d, nk);
    return cdn_fwd_core(NULL, (bf16 *)o, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, kvalid, R, Nq, Nk,
                        H, d);
}

/* rows without any valid key have lse = -inf: osp's kernel handles those; 0 = none */
static int cdn_bwd_declines(const uint8_t *kvalid, int64_t R, int64_t Nk) {
    if (!kvalid) return 0;
    float *nmask = (float *)osp_cuda_scratch(SCRATCH_ATTN2, sizeof(float) * (size_t)R);
    int *d_flag = cdn_flag_clear();
    cdn_count_masked(nmask, NULL, d_flag, kvalid, R, Nk);
    return cdn_flag_read(d_flag);
}

/* The backward on bf16 operands (k, v with masked rows zeroed); dq, dk, dv come back bf16 in
 * dqb, dkb, dvb and are added to the caller's fp32 gradients. */
static int cdn_bwd_core(float *dq, float *dk, float *dv, bf16 *dqb, bf16 *dkb, bf16 *dvb, const bf16 *dob,
                        const bf16 *ob, const float *lse, const bf16 *qb, const bf16 *kb, const bf16 *vb,
                        const uint8_t *kvalid, int64_t R, int64_t Nq, int64_t Nk, int H, int d) {
    cdn_plan *p = cdn_plan_get(CDN_BWD, R, Nq, Nk, H, d, 0);
    if (!p) return -1;
    const int64_t nq = R * Nq * H * d, nk = R * Nk * H * d, nst = R * H * Nq;
    /* workspace: cuDNN's, the graph's softmax_sum and dQ_accum, then stats if lse is not 16-byte
     * aligned */
    const bool direct = ((uintptr_t)lse & 15) == 0;
    const size_t wsb = cdn_round((size_t)p->ws), sumb = cdn_round(sizeof(float) * (size_t)nst);
    const size_t accb = cdn_round(sizeof(float) * (size_t)nq), stb = direct ? 0 : sumb;
    char *ws = (char *)osp_cuda_scratch(SCRATCH_CUDNN_WS, wsb + sumb + accb + stb + 256);
    float *sum = (float *)(ws + wsb), *acc = (float *)(ws + wsb + sumb);
    float *stats = direct ? (float *)lse : (float *)(ws + wsb + sumb + accb);
    if (!direct) CUDA_CHECK(cudaMemcpyAsync(stats, lse, sizeof(float) * (size_t)nst, cudaMemcpyDeviceToDevice,
                                            osp_cuda_inst->stream));
    /* cuDNN < 9.6 expected the caller to zero dQ_accum (cudnn-frontend did so); later ones do it */
    if (cdn.version < 90600) CUDA_CHECK(cudaMemsetAsync(acc, 0, accb, osp_cuda_inst->stream));
    float scale = 1.0f / sqrtf((float)d), one = 1.0f;
    const int64_t uids[13] = {U_Q, U_K, U_V, U_O, U_DO, U_STATS, U_SCALE, U_DQ, U_DK, U_DV, U_ONE, U_SUM, U_DQACC};
    void *const ptrs[13] = {(void *)qb, (void *)kb, (void *)vb, (void *)ob, (void *)dob, stats, &scale,
                            dqb, dkb, dvb, &one, sum, acc};
    if (cdn_execute(p, 13, uids, ptrs, ws)) return -1;
    cdn_add(dq, dqb, nq);
    cdn_add_masked(dk, dkb, kvalid, (int64_t)H * d, nk); /* a masked key's gradient is 0 */
    cdn_add_masked(dv, dvb, kvalid, (int64_t)H * d, nk);
    cds()->calls[CDN_BWD]++;
    return 0;
}

extern "C" int attn_cudnn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *o, const float *lse,
                              const float *q, const float *k, const float *v, const uint8_t *kvalid, int64_t R,
                              int64_t Nq, int64_t Nk, int H, int d) {
    if (!cdn_shape_ok(R, Nq, Nk, H, d) || !cdn_load()) return -1;
    if (!dq && !dk && !dv) return 0;
    if (cdn_bwd_declines(kvalid, R, Nk)) return -1;
    const int64_t nq = R * Nq * H * d, nk = R * Nk * H * d;
    bf16 *qb = (bf16 *)osp_cuda_scratch(SCRATCH_ATTN, sizeof(bf16) * (size_t)(4 * nq + 4 * nk));
    bf16 *ob = qb + nq, *dob = ob + nq, *dqb = dob + nq, *kb = dqb + nq, *vb = kb + nk, *dkb = vb + nk,
         *dvb = dkb + nk;
    cuda_to_bf16(qb, q, nq);
    cuda_to_bf16(ob, o, nq);
    cuda_to_bf16(dob, dout, nq);
    cdn_to_bf16_masked(kb, k, kvalid, (int64_t)H * d, nk);
    cdn_to_bf16_masked(vb, v, kvalid, (int64_t)H * d, nk);
    return cdn_bwd_core(dq, dk, dv, dqb, dkb, dvb, dob, ob, lse, qb, kb, vb, kvalid, R, Nq, Nk, H, d);
}

extern "C" int attn_cudnn_bwd16(float *dq, float *dk, float *dv, const float *dout, const uint16_t *o,
                                const float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                const uint8_t *kvalid, int64_t R, int64_t Nq, int64_t Nk, int H, int d) {
    if (!cdn_shape_ok(R, Nq, Nk, H, d) || !cdn_load()) return -1;
    if (!dq && !dk && !dv) return 0;
    if (cdn_bwd_declines(kvalid, R, Nk)) return -1;
    const int64_t nq = R * Nq * H * d, nk = R * Nk * H * d;
    bf16 *dob = (bf16 *)osp_cuda_scratch(SCRATCH_ATTN, sizeof(bf16) * (size_t)(2 * nq + 2 * nk));
    bf16 *dqb = dob + nq, *dkb = dqb + nq, *dvb = dkb + nk;
    cuda_to_bf16(dob, dout, nq); /* k, v: masked rows zeroed by attn_cudnn_fwd16 (ops.h contract) */
    return cdn_bwd_core(dq, dk, dv, dqb, dkb, dvb, dob, (const bf16 *)o, lse, (const bf16 *)q, (const bf16 *)k,
                        (const bf16 *)v, kvalid, R, Nq, Nk, H, d);
}

extern "C" int attn_cudnn_enabled(void) { return osp_cuda_inst->opt.attn != OSP_CUDA_ATTN_OSP; }

/* The backward too, unless the option deterministic is on (train.deterministic): cuDNN's dQ is
 * accumulated with atomics, so bit-exact resume needs osp's own backward. The forward has no
 * atomics and stays on cuDNN; its lse means what osp's backward expects. */
extern "C" int attn_cudnn_bwd_enabled(void) { return attn_cudnn_enabled() && !osp_cuda_inst->opt.deterministic; }

extern "C" void attn_cudnn_declined(const char *what, int64_t R, int64_t Nq, int64_t Nk, int H, int d) {
    if (osp_cuda_inst->opt.attn != OSP_CUDA_ATTN_CUDNN) return;
    const char *why = cds()->why;
    osp_die("attention %s R=%lld Nq=%lld Nk=%lld H=%d d=%d: attention implementation cudnn (cuda.attention / "
            "OSP_ATTN_IMPL) but cuDNN did not serve it: %s (OSP_CUDNN_VERBOSE=1 prints every step; auto falls back "
            "to osp's kernels)",
            what, (long long)R, (long long)Nq, (long long)Nk, H, d, why[0] ? why : "unknown reason");
}

/* The hooks below answer without an instance too (bench on the CPU of a CUDA build): nothing
 * loaded, nothing served. */
extern "C" int attn_cudnn_available(void) { return osp_cuda_inst ? cdn_load() : 0; }

extern "C" const char *attn_cudnn_status(void) { return osp_cuda_inst ? cds()->why : ""; }

extern "C" int64_t attn_cudnn_calls(int bwd) { return osp_cuda_inst ? cds()->calls[bwd ? CDN_BWD : CDN_FWD] : 0; }

extern "C" int64_t attn_cudnn_calls_padded(void) { return osp_cuda_inst ? cds()->calls_pad : 0; }

extern "C" void attn_cudnn_free(void) {
    osp_cuda_instance *in = osp_cuda_inst;
    cdn_state *s = in ? in->cdn : NULL;
    if (!s) return;
    if (s->ok) CUDA_CHECK(cudaStreamSynchronize(in->stream)); /* no plan in flight */
    for (int i = 0; i < s->nplans; i++) cdn_plan_release(&s->plans[i]);
    if (s->handle) cdn.Destroy(s->handle);
    free(s->plans);
    free(s);
    in->cdn = NULL; /* the library stays loaded; a later call makes a new handle */
}
