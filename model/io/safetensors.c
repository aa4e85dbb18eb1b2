/*
 * model/io/safetensors.c — mmap reader and streaming atomic writer for safetensors checkpoints,
 * single-file or sharded (see model/io/safetensors.h for the format and the API contract).
 *
 * The reader validates every header field before it forms a pointer into the mapping, so
 * a truncated or hostile file yields a one-line error instead of an out-of-bounds read.
 */
#include "model/io/safetensors.h"
#include "core/half.h"
#include "core/common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "model/io/safetensors.c assumes a little-endian host (the format's data area is little-endian)"
#endif

/* ------------------------------------------------------------------ dtypes */

const char *st_dtype_name(st_dtype dt) {
    switch (dt) {
    case ST_F32: return "F32";
    case ST_BF16: return "BF16";
    case ST_F16: return "F16";
    }
    return "?";
}

size_t st_dtype_size(st_dtype dt) { return dt == ST_F32 ? 4 : 2; }

int st_dtype_parse(const char *s, st_dtype *out) {
    if (!strcmp(s, "F32")) *out = ST_F32;
    else if (!strcmp(s, "BF16")) *out = ST_BF16;
    else if (!strcmp(s, "F16")) *out = ST_F16;
    else return -1;
    return 0;
}

int64_t st_numel(const st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static float st_load(const unsigned char *p, st_dtype dt) {
    if (dt == ST_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p, 2);
    return dt == ST_BF16 ? half_bf16_to_f32(h) : half_f16_to_f32(h);
}

static void st_store(unsigned char *p, st_dtype dt, float f) {
    if (dt == ST_F32) {
        memcpy(p, &f, 4);
        return;
    }
    uint16_t h = dt == ST_BF16 ? half_f32_to_bf16(f) : half_f32_to_f16(f);
    memcpy(p, &h, 2);
}

void st_convert(void *dst, st_dtype dst_dt, const void *src, st_dtype src_dt, size_t n) {
    if (dst_dt == src_dt) {
        memmove(dst, src, n * st_dtype_size(dst_dt));
        return;
    }
    const unsigned char *s = src;
    unsigned char *d = dst;
    size_t ss = st_dtype_size(src_dt), ds = st_dtype_size(dst_dt);
    /* whole-model conversions are billions of elements: worth the threads */
#pragma omp parallel for schedule(static) if (n > (1u << 18))
    for (size_t i = 0; i < n; i++) st_store(d + i * ds, dst_dt, st_load(s + i * ss, src_dt));
}

/* ------------------------------------------------------------------ reader */

typedef struct {
    char *path;
    void *map;
    size_t size;
} st_file;

struct st_set {
    char *path;
    int nfiles;
    st_file *files;
    int n, cap;
    st_tensor *t;
    json_t *meta; /* "__metadata__" of the first file that has one */
};

static int st_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int st_fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static char *st_join(const char *dir, const char *name) {
    if (name[0] == '/' || !dir[0]) return strdup(name);
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = osp_malloc(n);
    snprintf(p, n, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name);
    return p;
}

static int st_ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Read a non-negative JSON integer (safetensors shapes and offsets). */
static int st_json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Validate one header entry and append it as a tensor of file `fi`. */
static int st_add_entry(st_set *s, int fi, const char *key, json_t *val, const unsigned char *data,
                        uint64_t data_size, char *err, size_t errlen) {
    const char *fp = s->files[fi].path;
    if (!json_is_object(val)) return st_fail(err, errlen, "%s: tensor %s: header entry is not an object", fp, key);
    json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape");
    json_t *jo = json_object_get(val, "data_offsets");
    if (!json_is_string(jd)) return st_fail(err, errlen, "%s: tensor %s: missing or non-string \"dtype\"", fp, key);
    if (!json_is_array(js)) return st_fail(err, errlen, "%s: tensor %s: missing or non-array \"shape\"", fp, key);
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return st_fail(err, errlen, "%s: tensor %s: missing \"data_offsets\" [begin, end]", fp, key);
    st_tensor t = {0};
    if (st_dtype_parse(json_string_value(jd), &t.dtype))
        return st_fail(err, errlen, "unknown/unsupported dtype %s for tensor %s in %s (supported: F32, BF16, F16)",
                       json_string_value(jd), key, fp);
    if (json_array_size(js) > ST_MAX_DIMS)
        return st_fail(err, errlen, "%s: tensor %s: %zu dims, at most %d supported", fp, key, json_array_size(js),
                       ST_MAX_DIMS);
    t.ndim = (int)json_array_size(js);
    uint64_t bytes = st_dtype_size(t.dtype), begin, end, span = st_dtype_size(t.dtype);
    for (int i = 0; i < t.ndim; i++) {
        uint64_t d;
        if (st_json_u64(json_array_get(js, i), &d))
            return st_fail(err, errlen, "%s: tensor %s: shape[%d] is not a non-negative integer", fp, key, i);
        /* span: the product of the non-zero dims, so an empty tensor cannot carry absurd dims either */
        if (__builtin_mul_overflow(bytes, d, &bytes) || __builtin_mul_overflow(span, d ? d : 1, &span) ||
            span > (uint64_t)INT64_MAX)
            return st_fail(err, errlen, "%s: tensor %s: shape overflows the addressable size", fp, key);
        t.shape[i] = (int64_t)d;
    }
    if (st_json_u64(json_array_get(jo, 0), &begin) || st_json_u64(json_array_get(jo, 1), &end))
        return st_fail(err, errlen, "%s: tensor %s: data_offsets are not non-negative integers", fp, key);
    if (end < begin || end > data_size)
        return st_fail(err, errlen, "%s: tensor %s: data_offsets [%llu, %llu] out of range (data area is %llu bytes)",
                       fp, key, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_size);
    if (end - begin != bytes)
        return st_fail(err, errlen, "%s: tensor %s: data_offsets span %llu bytes but %s shape needs %llu", fp, key,
                       (unsigned long long)(end - begin), st_dtype_name(t.dtype), (unsigned long long)bytes);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        st_tensor *nt = realloc(s->t, (size_t)s->cap * sizeof *nt);
        OSP_CHECK(nt, "out of memory growing the tensor list");
        s->t = nt;
    }
    t.name = strdup(key);
    OSP_CHECK(t.name, "out of memory");
    t.data = data + begin;
    t.nbytes = (size_t)bytes;
    t.file = fp;
    s->t[s->n++] = t;
    return 0;
}

/* mmap one .safetensors file and append its tensors. */
static int st_load_file(st_set *s, const char *path, char *err, size_t errlen) {
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (fstat below then refuses it) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return st_fail(err, errlen, "%s: cannot open (%s)", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return st_fail(err, errlen, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return st_fail(err, errlen, "%s: file is %zu bytes, too short for a safetensors header (needs 8+)", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return st_fail(err, errlen, "%s: mmap failed (%s)", path, strerror(errno));
    s->files = realloc(s->files, (size_t)(s->nfiles + 1) * sizeof *s->files);
    OSP_CHECK(s->files, "out of memory");
    int fi = s->nfiles++;
    s->files[fi] = (st_file){strdup(path), map, size};
    const char *fp = s->files[fi].path;

    uint64_t hlen;
    memcpy(&hlen, map, 8);
    if (hlen > size - 8)
        return st_fail(err, errlen, "%s: header length %llu runs past end of file (%zu bytes)", fp,
                       (unsigned long long)hlen, size);
    json_error_t je;
    json_t *root = json_loadb((const char *)map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return st_fail(err, errlen, "%s: malformed JSON header (%s at byte %d)", fp, je.text, je.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return st_fail(err, errlen, "%s: JSON header is not an object", fp);
    }
    const unsigned char *data = (const unsigned char *)map + 8 + hlen;
    uint64_t data_size = size - 8 - hlen;
    const char *key;
    json_t *val;
    int rc = 0;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val)) {
                rc = st_fail(err, errlen, "%s: \"__metadata__\" is not an object", fp);
                break;
            }
            if (!s->meta) s->meta = json_incref(val);
            continue;
        }
        if ((rc = st_add_entry(s, fi, key, val, data, data_size, err, errlen))) break;
    }
    json_decref(root);
    return rc;
}

static int st_cmp_tensor(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* Sort by name (st_find bisects) and refuse a name stored twice (across shards). */
static int st_sort_check(st_set *s, const char *path, char *err, size_t errlen) {
    if (s->n > 1) qsort(s->t, (size_t)s->n, sizeof *s->t, st_cmp_tensor);
    for (int i = 1; i < s->n; i++)
        if (!strcmp(s->t[i - 1].name, s->t[i].name))
            return st_fail(err, errlen, "%s: tensor %s is stored twice (in %s and %s)", path, s->t[i].name,
                           s->t[i - 1].file, s->t[i].file);
    return 0;
}

/* Load the shards named by an index's weight_map, then check the map against them. */
static int st_load_index(st_set *s, const char *path, char *err, size_t errlen) {
    json_error_t je;
    if (osp_check_regular(path, err, errlen)) return -1;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return st_fail(err, errlen, "%s: malformed JSON index (%s, line %d)", path, je.text, je.line);
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        json_decref(root);
        return st_fail(err, errlen, "%s: index has no non-empty \"weight_map\" object", path);
    }
    char *dir = strdup(path), *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    const char **shards = osp_malloc(json_object_size(wm) * sizeof *shards);
    int nsh = 0, rc = 0;
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) {
            rc = st_fail(err, errlen, "%s: weight_map entry %s is not a file name string", path, key);
            break;
        }
        int k = 0;
        while (k < nsh && strcmp(shards[k], json_string_value(val))) k++;
        if (k < nsh) continue;
        shards[nsh++] = json_string_value(val);
        char *full = st_join(dir, shards[k]);
        if (access(full, R_OK) != 0)
            rc = st_fail(err, errlen, "%s: shard %s (holding tensor %s) is missing: %s (%s)", path, shards[k], key,
                         full, strerror(errno));
        else rc = st_load_file(s, full, err, errlen);
        free(full);
        if (rc) break;
    }
    if (!rc) rc = st_sort_check(s, path, err, errlen);
    if (!rc) {
        /* every mapped key must live in the shard the map names */
        json_object_foreach(wm, key, val) {
            const st_tensor *t = st_find(s, key);
            char *full = st_join(dir, json_string_value(val));
            int ok = t && !strcmp(t->file, full);
            free(full);
            if (!ok) {
                rc = st_fail(err, errlen, "%s: weight_map puts tensor %s in %s, but that shard has no such tensor",
                             path, key, json_string_value(val));
                break;
            }
        }
    }
    free(shards);
    free(dir);
    json_decref(root);
    return rc;
}

/* Pick the checkpoint inside a model directory (see st_open). Returns a malloc'd path. */
static char *st_resolve_dir(const char *dir, char *err, size_t errlen) {
    static const char *pref[] = {"diffusion_pytorch_model.safetensors.index.json",
                                 "diffusion_pytorch_model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *p = st_join(dir, pref[i]);
        if (access(p, F_OK) == 0) return p;
        free(p);
    }
    DIR *d = opendir(dir);
    if (!d) {
        st_fail(err, errlen, "%s: cannot list directory (%s)", dir, strerror(errno));
        return NULL;
    }
    char *idx = NULL, *one = NULL;
    int nidx = 0, none = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (st_ends_with(e->d_name, ".safetensors.index.json") && nidx++ == 0) idx = strdup(e->d_name);
        if (st_ends_with(e->d_name, ".safetensors") && none++ == 0) one = strdup(e->d_name);
    }
    closedir(d);
    char *pick = nidx == 1 ? idx : none == 1 ? one : NULL, *res = pick ? st_join(dir, pick) : NULL;
    if (!res)
        st_fail(err, errlen,
                "%s: no diffusion_pytorch_model.safetensors[.index.json]; found %d *.safetensors.index.json and %d "
                "*.safetensors files (need exactly one)", dir, nidx, none);
    free(idx);
    free(one);
    return res;
}

int st_open(st_set **out, const char *path, char *err, size_t errlen) {
    *out = NULL;
    st_set *s = osp_calloc(1, sizeof *s);
    s->path = strdup(path);
    int rc;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        rc = st_fail(err, errlen, "%s: cannot open (%s)", path, strerror(errno));
    } else {
        char *file = S_ISDIR(sb.st_mode) ? st_resolve_dir(path, err, errlen) : strdup(path);
        if (!file) rc = -1;
        else if (st_ends_with(file, ".json")) rc = st_load_index(s, file, err, errlen);
        else rc = st_load_file(s, file, err, errlen);
        free(file);
    }
    if (!rc) rc = st_sort_check(s, path, err, errlen);
    if (rc) {
        /* names come from the file: keep the message on one printable line */
        for (char *c = err; err && errlen && *c; c++)
            if ((unsigned char)*c < 0x20) *c = '?';
        st_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

void st_close(st_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->t[i].name);
    for (int i = 0; i < s->nfiles; i++) {
        munmap(s->files[i].map, s->files[i].size);
        free(s->files[i].path);
    }
    json_decref(s->meta);
    free(s->t);
    free(s->files);
    free(s->path);
    free(s);
}

const char *st_path(const st_set *s) { return s->path; }
int st_count(const st_set *s) { return s->n; }
const st_tensor *st_get(const st_set *s, int i) { return i >= 0 && i < s->n ? &s->t[i] : NULL; }

const st_tensor *st_find(const st_set *s, const char *name) {
    st_tensor key = {.name = (char *)name};
    if (s->n == 0) return NULL;
    return bsearch(&key, s->t, (size_t)s->n, sizeof *s->t, st_cmp_tensor);
}

const char *st_metadata(const st_set *s, const char *key) {
    return s->meta ? json_string_value(json_object_get(s->meta, key)) : NULL;
}

int st_read_f32(const st_tensor *t, float *dst, size_t n, char *err, size_t errlen) {
    int64_t numel = st_numel(t);
    if ((int64_t)n != numel)
        return st_fail(err, errlen, "%s: tensor %s has %lld elements, caller expects %zu", t->file, t->name,
                       (long long)numel, n);
    st_convert(dst, ST_F32, t->data, t->dtype, n);
    return 0;
}

/* ------------------------------------------------------------------ writer */

typedef struct {
    char *name;
    st_dtype dt;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
    int owned;
} st_wentry;

struct st_writer {
    int n, cap;
    st_wentry *e;
};

st_writer *st_writer_init(void) { return osp_calloc(1, sizeof(st_writer)); }

static void st_writer_push(st_writer *w, const char *name, st_dtype dt, int ndim, const int64_t *shape,
                           const void *data, int owned) {
    OSP_CHECK(ndim >= 0 && ndim <= ST_MAX_DIMS, "st_writer_add: ndim must be in [0, 8]");
    OSP_CHECK(dt == ST_F32 || dt == ST_BF16 || dt == ST_F16, "st_writer_add: unsupported dtype");
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 256;
        w->e = realloc(w->e, (size_t)w->cap * sizeof *w->e);
        OSP_CHECK(w->e, "out of memory");
    }
    st_wentry e = {.name = strdup(name), .dt = dt, .ndim = ndim, .data = data, .owned = owned};
    OSP_CHECK(e.name, "out of memory");
    size_t nb = st_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        OSP_CHECK(shape[i] >= 0, "st_writer_add: negative dimension");
        e.shape[i] = shape[i];
        nb *= (size_t)shape[i];
    }
    OSP_CHECK(data || nb == 0, "st_writer_add: NULL data for a non-empty tensor");
    e.nbytes = nb;
    w->e[w->n++] = e;
}

void st_writer_add(st_writer *w, const char *name, st_dtype dt, int ndim, const int64_t *shape, const void *data) {
    st_writer_push(w, name, dt, ndim, shape, data, 0);
}

void st_writer_add_owned(st_writer *w, const char *name, st_dtype dt, int ndim, const int64_t *shape, void *data) {
    st_writer_push(w, name, dt, ndim, shape, data, 1);
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->e[i].name);
        if (w->e[i].owned) free((void *)w->e[i].data);
    }
    free(w->e);
    free(w);
}

static int st_cmp_wentry(const void *a, const void *b) {
    return strcmp(((const st_wentry *)a)->name, ((const st_wentry *)b)->name);
}

/* Sort entries by name (the data order) and refuse duplicates. */
static int st_writer_prepare(st_writer *w, const char *dest, char *err, size_t errlen) {
    if (w->n > 1) qsort(w->e, (size_t)w->n, sizeof *w->e, st_cmp_wentry);
    for (int i = 1; i < w->n; i++)
        if (!strcmp(w->e[i - 1].name, w->e[i].name))
            return st_fail(err, errlen, "%s: tensor %s added twice", dest, w->e[i].name);
    return 0;
}

static int st_write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Write entries e[0..n) as one safetensors file, atomically. meta: object or NULL. */
static int st_write_file(const char *path, const st_wentry *e, int n, json_t *meta, char *err, size_t errlen) {
    json_t *root = json_object();
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < e[i].ndim; d++) json_array_append_new(shape, json_integer(e[i].shape[d]));
        json_t *ent = json_pack("{s:s, s:o, s:[I,I]}", "dtype", st_dtype_name(e[i].dt), "shape", shape,
                                "data_offsets", (json_int_t)off, (json_int_t)(off + e[i].nbytes));
        /* a skipped key would shift every later offset: refuse instead (Jansson needs UTF-8 keys) */
        if (json_object_set_new(root, e[i].name, ent) != 0) {
            json_decref(root);
            return st_fail(err, errlen, "%s: tensor name %s is not valid UTF-8", path, e[i].name);
        }
        off += e[i].nbytes;
    }
    if (meta) json_object_set(root, "__metadata__", meta);
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    OSP_CHECK(hdr, "out of memory serializing a safetensors header");
    /* pad with spaces so the data area starts 8-byte aligned, as the reference writer does */
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
    uint64_t n64 = padded;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(hdr);
        return st_fail(err, errlen, "%s: cannot create (%s)", tmp, strerror(errno));
    }
    osp_temp_register(tmp); /* removed if osp dies or is interrupted mid-write */
    int bad = st_write_all(fd, &n64, 8) || st_write_all(fd, hdr, hlen) ||
              st_write_all(fd, "        ", padded - hlen);
    for (int i = 0; i < n && !bad; i++) bad = st_write_all(fd, e[i].data, e[i].nbytes);
    free(hdr);
    if (bad || fsync(fd) != 0) {
        int er = errno;
        close(fd);
        unlink(tmp);
        osp_temp_unregister(tmp);
        return st_fail(err, errlen, "%s: write failed (%s)", tmp, strerror(er));
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int er = errno;
        unlink(tmp);
        osp_temp_unregister(tmp);
        return st_fail(err, errlen, "%s: close/rename failed (%s)", path, strerror(er));
    }
    osp_temp_unregister(tmp);
    osp_fsync_dir_of(path);
    return 0;
}

/* Parse caller metadata (NULL or a JSON object of strings) and add "format": "pt", which
 * the Hugging Face loaders check for. */
static json_t *st_make_meta(const char *meta_json, const char *dest, char *err, size_t errlen) {
    json_t *m = json_object();
    if (meta_json) {
        json_error_t je;
        json_decref(m);
        m = json_loads(meta_json, 0, &je);
        const char *k;
        json_t *v;
        int ok = json_is_object(m);
        if (ok) json_object_foreach(m, k, v) ok &= json_is_string(v);
        if (!ok) {
            json_decref(m);
            st_fail(err, errlen, "%s: metadata must be a JSON object of string values", dest);
            return NULL;
        }
    }
    if (!json_object_get(m, "format")) json_object_set_new(m, "format", json_string("pt"));
    return m;
}

int st_writer_save(st_writer *w, const char *path, const char *metadata_json, char *err, size_t errlen) {
    if (st_writer_prepare(w, path, err, errlen)) return -1;
    json_t *meta = st_make_meta(metadata_json, path, err, errlen);
    if (!meta) return -1;
    int rc = st_write_file(path, w->e, w->n, meta, err, errlen);
    json_decref(meta);
    return rc;
}

int st_writer_save_sharded(st_writer *w, const char *dir, const char *basename, size_t max_shard_bytes, char *err,
                           size_t errlen) {
    if (st_writer_prepare(w, dir, err, errlen)) return -1;
    /* shard k holds entries [start[k], start[k+1]); 0 bytes means "no limit" */
    int *start = osp_malloc((size_t)(w->n + 2) * sizeof *start), nsh = 0;
    size_t cur = 0;
    start[0] = 0;
    for (int i = 0; i < w->n; i++) {
        if (i > start[nsh] && max_shard_bytes && cur + w->e[i].nbytes > max_shard_bytes) {
            start[++nsh] = i;
            cur = 0;
        }
        cur += w->e[i].nbytes;
    }
    start[++nsh] = w->n;
    json_t *meta = st_make_meta(NULL, dir, err, errlen), *wm = json_object();
    uint64_t total = 0;
    int rc = 0;
    for (int k = 0; k < nsh && !rc; k++) {
        char name[1024];
        snprintf(name, sizeof name, "%s-%05d-of-%05d.safetensors", basename, k + 1, nsh);
        char *full = st_join(dir, name);
        rc = st_write_file(full, w->e + start[k], start[k + 1] - start[k], meta, err, errlen);
        free(full);
        for (int i = start[k]; i < start[k + 1]; i++) {
            json_object_set_new(wm, w->e[i].name, json_string(name));
            total += w->e[i].nbytes;
        }
    }
    if (!rc) {
        json_t *idx = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", wm);
        wm = NULL;
        char *txt = json_dumps(idx, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(idx);
        OSP_CHECK(txt, "out of memory serializing the shard index");
        char iname[1024];
        snprintf(iname, sizeof iname, "%s.safetensors.index.json", basename);
        char *full = st_join(dir, iname);
        rc = osp_write_atomic(full, txt, strlen(txt), err, errlen);
        free(full);
        free(txt);
    }
    json_decref(wm);
    json_decref(meta);
    free(start);
    return rc;
}
