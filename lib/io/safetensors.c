/* safetensors: an 8-byte little-endian header length N, N bytes of JSON
 * ({"name": {"dtype", "shape", "data_offsets"}, ..., "__metadata__": {...}}),
 * then the tensors' bytes. The JSON is parsed by cJSON; everything it
 * describes is checked here before any tensor can be read. Files are read
 * with pread, never mapped: a checkpoint truncated under a mapping faults
 * (SIGBUS) in whatever touches it next. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "common/error.h"
#include "common/file_read.h"
#include "io_util.h"
#include "m2pt/io.h"

/* The reference implementation's limit on N. */
#define MAX_HEADER_BYTES 100000000u

static const char metadata_key[] = "__metadata__";

typedef struct st_entry {
  const char *name; /* in the cJSON tree */
  m2pt_dtype dtype;
  size_t ndim;
  size_t shape[M2PT_IO_MAX_DIMS];
  size_t numel;
  size_t nbytes;
  uint64_t begin, end; /* within the data region */
} st_entry;

struct m2pt_safetensors {
  char *label;                /* the path, or "<memory>", for messages */
  int fd;                     /* the open file; -1 for borrowed memory */
  struct stat opened;         /* the file when opened (size, modification time) */
  _Atomic(unsigned char *) *copies; /* a file's tensors handed out by _raw, made on demand */
  const unsigned char *bytes; /* borrowed memory: all of it; a file: its first bytes, while
                                 open parses them */
  size_t size;                /* of the whole file */
  size_t data_start;          /* 8 + N */
  char *header;               /* NUL-terminated copy that cJSON parsed */
  cJSON *root;
  st_entry *entries;          /* in data order */
  size_t count;
  const st_entry **by_name;   /* entries sorted by name */
  const char **meta_keys;
  const char **meta_values;
  size_t meta_count;
};

/* ---- reader ------------------------------------------------------------ */

/* Names come from the file: %.200s keeps messages readable. */
#define BAD_TENSOR(st, name, what) \
  m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: tensor \"%.200s\": %s", (st)->label, (name), (what))

/* A JSON number that is a non-negative integer every reader keeps exactly. */
static int json_uint(const cJSON *item, uint64_t *out)
{
  if (!cJSON_IsNumber(item))
    return 0;
  const double d = item->valuedouble;
  if (!(d >= 0.0 && d <= M2PT_IO_MAX_EXACT))
    return 0;
  const uint64_t u = (uint64_t)d;
  if ((double)u != d)
    return 0;
  *out = u;
  return 1;
}

static int dtype_from_string(const char *s, m2pt_dtype *out)
{
  for (unsigned i = 0; m2pt_dtype_name((m2pt_dtype)i); i++)
    if (strcmp(s, m2pt_dtype_name((m2pt_dtype)i)) == 0) {
      *out = (m2pt_dtype)i;
      return 1;
    }
  return 0;
}

static m2pt_status parse_entry(const m2pt_safetensors *st, const cJSON *item, st_entry *e)
{
  const char *name = item->string;
  e->name = name;
  if (!cJSON_IsObject(item))
    return BAD_TENSOR(st, name, "entry is not an object");
  const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
  for (const cJSON *f = item->child; f; f = f->next) {
    const cJSON **slot = strcmp(f->string, "dtype") == 0          ? &dtype
                         : strcmp(f->string, "shape") == 0        ? &shape
                         : strcmp(f->string, "data_offsets") == 0 ? &offsets
                                                                  : NULL;
    if (!slot)
      return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: tensor \"%.200s\": unknown field \"%.200s\"",
                              st->label, name, f->string);
    if (*slot)
      return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: tensor \"%.200s\": field \"%s\" repeated",
                              st->label, name, f->string);
    *slot = f;
  }

  if (!dtype)
    return BAD_TENSOR(st, name, "no dtype");
  if (!cJSON_IsString(dtype))
    return BAD_TENSOR(st, name, "dtype is not a string");
  if (!dtype_from_string(dtype->valuestring, &e->dtype))
    return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: tensor \"%.200s\": unknown dtype \"%.40s\"",
                            st->label, name, dtype->valuestring);

  if (!shape)
    return BAD_TENSOR(st, name, "no shape");
  if (!cJSON_IsArray(shape))
    return BAD_TENSOR(st, name, "shape is not an array");
  e->ndim = 0;
  e->numel = 1;
  for (const cJSON *d = shape->child; d; d = d->next) {
    if (e->ndim == M2PT_IO_MAX_DIMS)
      return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: tensor \"%.200s\": more than %d dimensions",
                              st->label, name, M2PT_IO_MAX_DIMS);
    uint64_t extent;
    if (!json_uint(d, &extent) || extent > SIZE_MAX)
      return BAD_TENSOR(st, name,
                        "shape holds something other than a non-negative integer ≤ 2^53");
    e->shape[e->ndim++] = (size_t)extent;
    if (!m2pt_mul_size(e->numel, (size_t)extent, &e->numel))
      return BAD_TENSOR(st, name, "element count overflows");
  }
  if (!m2pt_mul_size(e->numel, m2pt_dtype_size(e->dtype), &e->nbytes))
    return BAD_TENSOR(st, name, "byte size overflows");

  if (!offsets)
    return BAD_TENSOR(st, name, "no data_offsets");
  if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2)
    return BAD_TENSOR(st, name, "data_offsets is not an array of two integers");
  if (!json_uint(offsets->child, &e->begin) || !json_uint(offsets->child->next, &e->end))
    return BAD_TENSOR(st, name,
                      "data_offsets holds something other than a non-negative integer ≤ 2^53");
  if (e->begin > e->end)
    return m2pt_fail_thread(M2PT_ERR_FORMAT,
                            "%s: tensor \"%.200s\": data_offsets begin %llu > end %llu", st->label,
                            name, (unsigned long long)e->begin, (unsigned long long)e->end);
  if (e->end - e->begin != e->nbytes)
    return m2pt_fail_thread(M2PT_ERR_FORMAT,
                            "%s: tensor \"%.200s\": data_offsets span %llu bytes, but %zu elements "
                            "of %s take %zu",
                            st->label, name, (unsigned long long)(e->end - e->begin), e->numel,
                            m2pt_dtype_name(e->dtype), e->nbytes);
  return M2PT_OK;
}

static m2pt_status parse_metadata(m2pt_safetensors *st, const cJSON *meta)
{
  if (!cJSON_IsObject(meta))
    return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: __metadata__ is not an object", st->label);
  const size_t n = (size_t)cJSON_GetArraySize(meta);
  if (n == 0)
    return M2PT_OK;
  st->meta_keys = malloc(n * sizeof *st->meta_keys);
  st->meta_values = malloc(n * sizeof *st->meta_values);
  if (!st->meta_keys || !st->meta_values)
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory", st->label);
  for (const cJSON *m = meta->child; m; m = m->next) {
    if (!cJSON_IsString(m))
      return m2pt_fail_thread(M2PT_ERR_FORMAT,
                              "%s: __metadata__ value of \"%.200s\" is not a string", st->label,
                              m->string);
    /* cJSON keeps repeated keys; which one would count is undefined. Metadata
     * is small, so a quadratic check is fine. */
    for (size_t k = 0; k < st->meta_count; k++)
      if (strcmp(st->meta_keys[k], m->string) == 0)
        return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: __metadata__ key \"%.200s\" repeated",
                                st->label, m->string);
    st->meta_keys[st->meta_count] = m->string;
    st->meta_values[st->meta_count] = m->valuestring;
    st->meta_count++;
  }
  return M2PT_OK;
}

static int by_offset(const void *pa, const void *pb)
{
  const st_entry *a = pa, *b = pb;
  if (a->begin != b->begin)
    return a->begin < b->begin ? -1 : 1;
  if (a->end != b->end)
    return a->end < b->end ? -1 : 1;
  return strcmp(a->name, b->name);
}

static int compare_names(const void *pa, const void *pb)
{
  return strcmp((*(const st_entry *const *)pa)->name, (*(const st_entry *const *)pb)->name);
}

static m2pt_status parse(m2pt_safetensors *st)
{
  if (st->size < 8)
    return m2pt_fail_thread(M2PT_ERR_FORMAT,
                            "%s: %zu bytes, shorter than the 8-byte header length", st->label,
                            st->size);
  const uint64_t n = m2pt_load_le64(st->bytes);
  if (n > MAX_HEADER_BYTES)
    return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: header length %llu exceeds the limit of %u",
                            st->label, (unsigned long long)n, MAX_HEADER_BYTES);
  if (n > st->size - 8)
    return m2pt_fail_thread(M2PT_ERR_FORMAT,
                            "%s: header length %llu runs past the end of the file (%zu bytes)",
                            st->label, (unsigned long long)n, st->size);
  const size_t hlen = (size_t)n;
  const unsigned char *h = st->bytes + 8;
  st->data_start = 8 + hlen;
  if (hlen == 0 || h[0] != '{')
    return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: header does not start with '{'", st->label);
  /* JSON allows control characters only as whitespace between tokens; cJSON
   * would take them inside strings. */
  for (size_t i = 0; i < hlen; i++)
    if (h[i] < 0x20 && h[i] != '\t' && h[i] != '\n' && h[i] != '\r')
      return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: header holds control byte 0x%02x at %zu",
                              st->label, h[i], i);
  if (!m2pt_utf8_valid(h, hlen))
    return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: header is not valid UTF-8", st->label);

  /* cJSON parses a NUL-terminated copy of the header (not of the data), so no
   * read of its can leave the buffer whatever the input. */
  st->header = malloc(hlen + 1);
  if (!st->header)
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory for a %zu-byte header",
                            st->label, hlen);
  memcpy(st->header, h, hlen);
  st->header[hlen] = '\0';
  const char *end = NULL;
  st->root = cJSON_ParseWithLengthOpts(st->header, hlen, &end, 0);
  if (!st->root)
    return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu)",
                            st->label, end ? (size_t)(end - st->header) : (size_t)0);
  for (const char *p = end; p < st->header + hlen; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
      return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: bytes after the JSON header at %zu",
                              st->label, (size_t)(p - st->header));
  if (!cJSON_IsObject(st->root))
    return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: header is not a JSON object", st->label);

  const size_t items = (size_t)cJSON_GetArraySize(st->root);
  if (items) {
    st->entries = calloc(items, sizeof *st->entries);
    if (!st->entries)
      return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory", st->label);
  }
  int have_meta = 0;
  for (const cJSON *item = st->root->child; item; item = item->next) {
    if (strcmp(item->string, metadata_key) == 0) {
      if (have_meta)
        return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: __metadata__ repeated", st->label);
      have_meta = 1;
      M2PT_TRY(parse_metadata(st, item));
      continue;
    }
    M2PT_TRY(parse_entry(st, item, &st->entries[st->count]));
    st->count++;
  }

  /* In data order the tensors must tile the data region exactly. */
  const size_t data_size = st->size - st->data_start;
  if (st->count)
    qsort(st->entries, st->count, sizeof *st->entries, by_offset);
  uint64_t at = 0;
  for (size_t i = 0; i < st->count; i++) {
    const st_entry *e = &st->entries[i];
    if (e->begin != at)
      return m2pt_fail_thread(M2PT_ERR_FORMAT,
                              "%s: tensor \"%.200s\": data_offsets [%llu, %llu] %s the previous "
                              "tensor's end %llu",
                              st->label, e->name, (unsigned long long)e->begin,
                              (unsigned long long)e->end,
                              e->begin < at ? "overlap" : "leave a gap after",
                              (unsigned long long)at);
    if (e->end > data_size)
      return m2pt_fail_thread(M2PT_ERR_FORMAT,
                              "%s: tensor \"%.200s\": data_offsets end %llu beyond the %zu-byte "
                              "data region",
                              st->label, e->name, (unsigned long long)e->end, data_size);
    at = e->end;
  }
  if (at != data_size)
    return m2pt_fail_thread(M2PT_ERR_FORMAT,
                            "%s: the tensors cover %llu of the %zu data bytes (trailing bytes)",
                            st->label, (unsigned long long)at, data_size);

  if (st->count) {
    st->by_name = malloc(st->count * sizeof *st->by_name);
    if (!st->by_name)
      return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory", st->label);
    for (size_t i = 0; i < st->count; i++)
      st->by_name[i] = &st->entries[i];
    qsort(st->by_name, st->count, sizeof *st->by_name, compare_names);
    /* cJSON keeps repeated keys: a name given twice is ambiguous. */
    for (size_t i = 1; i < st->count; i++) {
      const char *name = st->by_name[i]->name;
      if (strcmp(st->by_name[i - 1]->name, name) == 0)
        return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: tensor \"%.200s\" appears twice", st->label,
                                name);
    }
  }
  return M2PT_OK;
}

static m2pt_status open_common(m2pt_safetensors *st, m2pt_safetensors **out)
{
  const m2pt_status s = parse(st);
  if (s != M2PT_OK) {
    m2pt_safetensors_close(st);
    return s;
  }
  *out = st;
  return M2PT_OK;
}

static m2pt_safetensors *alloc_reader(const char *label)
{
  m2pt_safetensors *st = calloc(1, sizeof *st);
  if (!st)
    return NULL;
  st->fd = -1;
  st->label = malloc(strlen(label) + 1);
  if (!st->label) {
    free(st);
    return NULL;
  }
  strcpy(st->label, label);
  return st;
}

/* Reads what parse() looks at into *front: the header length and as much of
 * the header as the file holds, up to MAX_HEADER_BYTES (parse() refuses
 * longer ones, and files under 8 bytes before reading anything). */
static m2pt_status read_front(m2pt_safetensors *st, unsigned char **front)
{
  if (st->size < 8)
    return M2PT_OK;
  unsigned char len[8];
  int r = m2pt_read_at(st->fd, len, sizeof len, 0);
  if (r == 0) {
    const uint64_t hlen = m2pt_load_le64(len);
    const uint64_t most = st->size - 8 < MAX_HEADER_BYTES ? st->size - 8 : MAX_HEADER_BYTES;
    const size_t n = 8 + (size_t)(hlen < most ? hlen : most);
    if (!(*front = malloc(n)))
      return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory for a %zu-byte header",
                              st->label, n);
    r = m2pt_read_at(st->fd, *front, n, 0);
  }
  if (r < 0)
    return m2pt_fail_thread(M2PT_ERR_IO, "%s: cannot read: %s", st->label, strerror(errno));
  if (r > 0)
    return m2pt_fail_thread(M2PT_ERR_IO, "%s: shrank while it was being opened", st->label);
  st->bytes = *front;
  return M2PT_OK;
}

m2pt_status m2pt_safetensors_open(const char *path, m2pt_safetensors **out)
{
  M2PT_REQUIRE_THREAD(out, "m2pt_safetensors_open: st is NULL");
  *out = NULL;
  M2PT_REQUIRE_THREAD(path, "m2pt_safetensors_open: path is NULL");
  m2pt_safetensors *st = alloc_reader(path);
  if (!st)
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  const m2pt_status opened = m2pt_open_input(path, UINT64_MAX, &st->opened, &st->fd);
  if (opened != M2PT_OK) {
    m2pt_safetensors_close(st);
    return opened;
  }
  st->size = (size_t)st->opened.st_size;
  unsigned char *front = NULL;
  m2pt_status s = read_front(st, &front);
  if (s == M2PT_OK)
    s = parse(st);
  /* parse() kept what it needs (the header's copy, cJSON's tree). */
  free(front);
  st->bytes = NULL;
  if (s == M2PT_OK && st->count &&
      !(st->copies = calloc(st->count, sizeof *st->copies)))
    s = m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  if (s != M2PT_OK) {
    m2pt_safetensors_close(st);
    return s;
  }
  *out = st;
  return M2PT_OK;
}

m2pt_status m2pt_safetensors_open_memory(const void *data, size_t size, m2pt_safetensors **out)
{
  M2PT_REQUIRE_THREAD(out, "m2pt_safetensors_open_memory: st is NULL");
  *out = NULL;
  M2PT_REQUIRE_THREAD(data || size == 0, "m2pt_safetensors_open_memory: data is NULL");
  m2pt_safetensors *st = alloc_reader("<memory>");
  if (!st)
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "<memory>: out of memory");
  st->bytes = data;
  st->size = size;
  return open_common(st, out);
}

void m2pt_safetensors_close(m2pt_safetensors *st)
{
  if (!st)
    return;
  free(st->by_name);
  free(st->entries);
  free(st->meta_keys);
  free(st->meta_values);
  cJSON_Delete(st->root);
  free(st->header);
  for (size_t i = 0; st->copies && i < st->count; i++)
    free(atomic_load(&st->copies[i]));
  free(st->copies);
  if (st->fd >= 0)
    close(st->fd);
  free(st->label);
  free(st);
}

size_t m2pt_safetensors_count(const m2pt_safetensors *st)
{
  return st ? st->count : 0;
}

static m2pt_status check_index(const m2pt_safetensors *st, size_t index, const char *fn)
{
  M2PT_REQUIRE_THREAD(st, "%s: st is NULL", fn);
  M2PT_REQUIRE_THREAD(index < st->count, "%s: %s: index %zu out of range (%zu tensors)", fn,
                      st->label, index, st->count);
  return M2PT_OK;
}

m2pt_status m2pt_safetensors_info_at(const m2pt_safetensors *st, size_t index,
                                     m2pt_safetensors_info *info)
{
  M2PT_TRY(check_index(st, index, "m2pt_safetensors_info_at"));
  M2PT_REQUIRE_THREAD(info, "m2pt_safetensors_info_at: info is NULL");
  const st_entry *e = &st->entries[index];
  memset(info, 0, sizeof *info);
  info->name = e->name;
  info->dtype = e->dtype;
  info->ndim = e->ndim;
  memcpy(info->shape, e->shape, sizeof info->shape);
  info->numel = e->numel;
  info->nbytes = e->nbytes;
  info->offset = st->data_start + e->begin;
  return M2PT_OK;
}

m2pt_status m2pt_safetensors_find(const m2pt_safetensors *st, const char *name, size_t *index)
{
  M2PT_REQUIRE_THREAD(st && name && index, "m2pt_safetensors_find: NULL argument");
  size_t lo = 0, hi = st->count;
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    const int c = strcmp(st->by_name[mid]->name, name);
    if (c == 0) {
      *index = (size_t)(st->by_name[mid] - st->entries);
      return M2PT_OK;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return m2pt_fail_thread(M2PT_ERR_NOT_FOUND, "%s: no tensor \"%.200s\"", st->label, name);
}

/* Copies tensor e's bytes to dst: from memory, or read from the file, which
 * must still be as it was when opened. */
static m2pt_status read_bytes(const m2pt_safetensors *st, const st_entry *e, void *dst)
{
  const uint64_t at = st->data_start + e->begin;
  if (st->fd < 0) {
    if (e->nbytes)
      memcpy(dst, st->bytes + at, e->nbytes);
    return M2PT_OK;
  }
  const int r = m2pt_read_at(st->fd, dst, e->nbytes, at);
  if (r < 0)
    return m2pt_fail_thread(M2PT_ERR_IO, "%s: cannot read tensor \"%.200s\": %s", st->label,
                            e->name, strerror(errno));
  /* Checked after the read, so that a change during it counts too. */
  if (r > 0 || !m2pt_file_unchanged(st->fd, &st->opened)) {
    struct stat now;
    const long long size = fstat(st->fd, &now) == 0 ? (long long)now.st_size : -1;
    return m2pt_fail_thread(M2PT_ERR_IO,
                            "%s: the file changed after it was opened (%lld bytes then, %lld now); "
                            "cannot read tensor \"%.200s\"",
                            st->label, (long long)st->opened.st_size, size, e->name);
  }
  return M2PT_OK;
}

/* A read of `n` elements (or bytes, for `bytes`) of tensor `index` into dst. */
static m2pt_status check_read(const m2pt_safetensors *st, size_t index, const void *dst,
                              size_t n, int bytes, const char *fn)
{
  M2PT_TRY(check_index(st, index, fn));
  const st_entry *e = &st->entries[index];
  const size_t want = bytes ? e->nbytes : e->numel;
  M2PT_REQUIRE_THREAD(n == want, "%s: %s: tensor \"%.200s\" has %zu %s, %s is %zu", fn, st->label,
                      e->name, want, bytes ? "bytes" : "elements", bytes ? "nbytes" : "count", n);
  M2PT_REQUIRE_THREAD(dst || n == 0, "%s: dst is NULL", fn);
  return M2PT_OK;
}

m2pt_status m2pt_safetensors_read_f32(const m2pt_safetensors *st, size_t index, float *dst,
                                      size_t count)
{
  M2PT_TRY(check_read(st, index, dst, count, 0, "m2pt_safetensors_read_f32"));
  const st_entry *e = &st->entries[index];
  if (e->dtype != M2PT_DTYPE_F32 && e->dtype != M2PT_DTYPE_F16 && e->dtype != M2PT_DTYPE_BF16)
    return m2pt_fail_thread(M2PT_ERR_UNSUPPORTED,
                            "%s: tensor \"%.200s\" is %s; only F32, F16 and BF16 convert to f32",
                            st->label, e->name, m2pt_dtype_name(e->dtype));
  const unsigned char *src = st->fd < 0 ? st->bytes + st->data_start + e->begin : NULL;
  if (!src) {
    /* A file is read into dst itself: 16-bit values into its upper half,
     * then widened from the front, where writing element i (bytes 4i..4i+3)
     * never reaches the source of element i + 1 (from byte 2·count + 2i + 2). */
    unsigned char *into = (unsigned char *)dst + (e->dtype == M2PT_DTYPE_F32 ? 0 : 2 * count);
    M2PT_TRY(read_bytes(st, e, into));
    src = into;
  }
  if (e->dtype == M2PT_DTYPE_F32)
    m2pt_load_f32_le(dst, src, count);
  else if (e->dtype == M2PT_DTYPE_F16)
    for (size_t i = 0; i < count; i++)
      dst[i] = m2pt_f16_to_f32(m2pt_load_le16(src + 2 * i));
  else
    for (size_t i = 0; i < count; i++)
      dst[i] = m2pt_bf16_to_f32(m2pt_load_le16(src + 2 * i));
  return M2PT_OK;
}

m2pt_status m2pt_safetensors_read_raw(const m2pt_safetensors *st, size_t index, void *dst,
                                      size_t nbytes)
{
  M2PT_TRY(check_read(st, index, dst, nbytes, 1, "m2pt_safetensors_read_raw"));
  return read_bytes(st, &st->entries[index], dst);
}

m2pt_status m2pt_safetensors_raw(const m2pt_safetensors *st, size_t index, const void **data,
                                 size_t *nbytes)
{
  M2PT_TRY(check_index(st, index, "m2pt_safetensors_raw"));
  M2PT_REQUIRE_THREAD(data && nbytes, "m2pt_safetensors_raw: NULL argument");
  const st_entry *e = &st->entries[index];
  if (st->fd < 0) {
    *data = st->bytes + st->data_start + e->begin;
    *nbytes = e->nbytes;
    return M2PT_OK;
  }
  unsigned char *copy = atomic_load(&st->copies[index]);
  if (!copy) {
    unsigned char *fresh = malloc(e->nbytes ? e->nbytes : 1);
    if (!fresh)
      return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory for tensor \"%.200s\"",
                              st->label, e->name);
    const m2pt_status s = read_bytes(st, e, fresh);
    if (s != M2PT_OK) {
      free(fresh);
      return s;
    }
    /* Readers may be shared between threads: the first copy stored wins. */
    if (atomic_compare_exchange_strong(&st->copies[index], &copy, fresh))
      copy = fresh;
    else
      free(fresh);
  }
  *data = copy;
  *nbytes = e->nbytes;
  return M2PT_OK;
}

size_t m2pt_safetensors_metadata_count(const m2pt_safetensors *st)
{
  return st ? st->meta_count : 0;
}

m2pt_status m2pt_safetensors_metadata_at(const m2pt_safetensors *st, size_t index,
                                         const char **key, const char **value)
{
  M2PT_REQUIRE_THREAD(st && key && value, "m2pt_safetensors_metadata_at: NULL argument");
  M2PT_REQUIRE_THREAD(index < st->meta_count,
                      "m2pt_safetensors_metadata_at: %s: index %zu out of range (%zu entries)",
                      st->label, index, st->meta_count);
  *key = st->meta_keys[index];
  *value = st->meta_values[index];
  return M2PT_OK;
}

m2pt_status m2pt_safetensors_metadata(const m2pt_safetensors *st, const char *key,
                                      const char **value)
{
  M2PT_REQUIRE_THREAD(st && key && value, "m2pt_safetensors_metadata: NULL argument");
  for (size_t i = 0; i < st->meta_count; i++)
    if (strcmp(st->meta_keys[i], key) == 0) {
      *value = st->meta_values[i];
      return M2PT_OK;
    }
  return m2pt_fail_thread(M2PT_ERR_NOT_FOUND, "%s: no metadata key \"%.200s\"", st->label, key);
}

/* ---- writer ------------------------------------------------------------ */

typedef struct w_entry {
  char *name;
  m2pt_dtype dtype;
  size_t ndim;
  size_t shape[M2PT_IO_MAX_DIMS];
  const void *data;
  size_t nbytes;
} w_entry;

struct m2pt_safetensors_writer {
  char *path;
  w_entry *entries;
  size_t count, capacity;
  char **meta; /* key, value, key, value, ... */
  size_t meta_count, meta_capacity;
  int finished;
};

m2pt_status m2pt_safetensors_writer_create(const char *path, m2pt_safetensors_writer **out)
{
  M2PT_REQUIRE_THREAD(out, "m2pt_safetensors_writer_create: w is NULL");
  *out = NULL;
  M2PT_REQUIRE_THREAD(path && path[0], "m2pt_safetensors_writer_create: path is NULL or empty");
  m2pt_safetensors_writer *w = calloc(1, sizeof *w);
  if (!w || !(w->path = strdup(path))) {
    free(w);
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  *out = w;
  return M2PT_OK;
}

void m2pt_safetensors_writer_destroy(m2pt_safetensors_writer *w)
{
  if (!w)
    return;
  for (size_t i = 0; i < w->count; i++)
    free(w->entries[i].name);
  for (size_t i = 0; i < 2 * w->meta_count; i++)
    free(w->meta[i]);
  free(w->entries);
  free(w->meta);
  free(w->path);
  free(w);
}

static int valid_text(const char *s)
{
  return m2pt_utf8_valid((const unsigned char *)s, strlen(s));
}

m2pt_status m2pt_safetensors_writer_add(m2pt_safetensors_writer *w, const char *name,
                                        m2pt_dtype dtype, size_t ndim, const size_t *shape,
                                        const void *data, size_t nbytes)
{
  static const char fn[] = "m2pt_safetensors_writer_add";
  M2PT_REQUIRE_THREAD(w && name, "%s: NULL argument", fn);
  if (w->finished)
    return m2pt_fail_thread(M2PT_ERR_INVALID_STATE, "%s: %s: already finished", fn, w->path);
  M2PT_REQUIRE_THREAD(valid_text(name), "%s: %s: tensor name is not valid UTF-8", fn, w->path);
  M2PT_REQUIRE_THREAD(strcmp(name, metadata_key) != 0,
                      "%s: %s: \"__metadata__\" is not a tensor name", fn, w->path);
  M2PT_REQUIRE_THREAD(m2pt_dtype_size(dtype) != 0, "%s: %s: tensor \"%.200s\": unknown dtype %d",
                      fn, w->path, name, (int)dtype);
  M2PT_REQUIRE_THREAD(ndim <= M2PT_IO_MAX_DIMS,
                      "%s: %s: tensor \"%.200s\": %zu dimensions, at most %d", fn, w->path, name,
                      ndim, M2PT_IO_MAX_DIMS);
  M2PT_REQUIRE_THREAD(shape || ndim == 0, "%s: %s: tensor \"%.200s\": shape is NULL", fn,
                      w->path, name);
  size_t numel = 1, size;
  for (size_t d = 0; d < ndim; d++) {
    M2PT_REQUIRE_THREAD((double)shape[d] <= M2PT_IO_MAX_EXACT &&
                           m2pt_mul_size(numel, shape[d], &numel),
                        "%s: %s: tensor \"%.200s\": shape overflows", fn, w->path, name);
  }
  M2PT_REQUIRE_THREAD(m2pt_mul_size(numel, m2pt_dtype_size(dtype), &size) &&
                         (double)size <= M2PT_IO_MAX_EXACT,
                      "%s: %s: tensor \"%.200s\": byte size overflows", fn, w->path, name);
  M2PT_REQUIRE_THREAD(nbytes == size,
                      "%s: %s: tensor \"%.200s\": %zu elements of %s take %zu bytes, nbytes is %zu",
                      fn, w->path, name, numel, m2pt_dtype_name(dtype), size, nbytes);
  M2PT_REQUIRE_THREAD(data || nbytes == 0, "%s: %s: tensor \"%.200s\": data is NULL", fn,
                      w->path, name);
  for (size_t i = 0; i < w->count; i++)
    M2PT_REQUIRE_THREAD(strcmp(w->entries[i].name, name) != 0,
                        "%s: %s: tensor \"%.200s\" added twice", fn, w->path, name);

  if (w->count == w->capacity) {
    const size_t cap = w->capacity ? 2 * w->capacity : 16;
    w_entry *grown = realloc(w->entries, cap * sizeof *grown);
    if (!grown)
      return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: %s: out of memory", fn, w->path);
    w->entries = grown;
    w->capacity = cap;
  }
  w_entry *e = &w->entries[w->count];
  memset(e, 0, sizeof *e);
  if (!(e->name = strdup(name)))
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: %s: out of memory", fn, w->path);
  e->dtype = dtype;
  e->ndim = ndim;
  for (size_t d = 0; d < ndim; d++)
    e->shape[d] = shape[d];
  e->data = data;
  e->nbytes = nbytes;
  w->count++;
  return M2PT_OK;
}

m2pt_status m2pt_safetensors_writer_metadata(m2pt_safetensors_writer *w, const char *key,
                                             const char *value)
{
  static const char fn[] = "m2pt_safetensors_writer_metadata";
  M2PT_REQUIRE_THREAD(w && key && value, "%s: NULL argument", fn);
  if (w->finished)
    return m2pt_fail_thread(M2PT_ERR_INVALID_STATE, "%s: %s: already finished", fn, w->path);
  M2PT_REQUIRE_THREAD(valid_text(key) && valid_text(value), "%s: %s: not valid UTF-8", fn,
                      w->path);
  for (size_t i = 0; i < w->meta_count; i++)
    M2PT_REQUIRE_THREAD(strcmp(w->meta[2 * i], key) != 0, "%s: %s: key \"%.200s\" added twice",
                        fn, w->path, key);
  if (w->meta_count == w->meta_capacity) {
    const size_t cap = w->meta_capacity ? 2 * w->meta_capacity : 8;
    char **grown = realloc(w->meta, 2 * cap * sizeof *grown);
    if (!grown)
      return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: %s: out of memory", fn, w->path);
    w->meta = grown;
    w->meta_capacity = cap;
  }
  char *k = strdup(key), *v = strdup(value);
  if (!k || !v) {
    free(k);
    free(v);
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: %s: out of memory", fn, w->path);
  }
  w->meta[2 * w->meta_count] = k;
  w->meta[2 * w->meta_count + 1] = v;
  w->meta_count++;
  return M2PT_OK;
}

/* A growing string for the JSON header. */
typedef struct text {
  char *buf;
  size_t len, cap;
  int failed;
} text;

static void put(text *t, const char *s, size_t n)
{
  if (t->failed)
    return;
  if (t->len + n + 1 > t->cap) {
    size_t cap = t->cap ? t->cap : 256;
    while (cap < t->len + n + 1)
      cap *= 2;
    char *grown = realloc(t->buf, cap);
    if (!grown) {
      t->failed = 1;
      return;
    }
    t->buf = grown;
    t->cap = cap;
  }
  memcpy(t->buf + t->len, s, n);
  t->len += n;
  t->buf[t->len] = '\0';
}

static void puts_(text *t, const char *s)
{
  put(t, s, strlen(s));
}

static void put_uint(text *t, uint64_t v)
{
  char digits[24];
  const int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
  put(t, digits, (size_t)n);
}

/* A JSON string, escaped the way serde_json escapes it. */
static void put_json_string(text *t, const char *s)
{
  put(t, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    switch (*p) {
    case '"': puts_(t, "\\\""); break;
    case '\\': puts_(t, "\\\\"); break;
    case '\b': puts_(t, "\\b"); break;
    case '\f': puts_(t, "\\f"); break;
    case '\n': puts_(t, "\\n"); break;
    case '\r': puts_(t, "\\r"); break;
    case '\t': puts_(t, "\\t"); break;
    default:
      if (*p < 0x20) {
        snprintf(esc, sizeof esc, "\\u%04x", *p);
        puts_(t, esc);
      } else {
        put(t, (const char *)p, 1);
      }
    }
  }
  put(t, "\"", 1);
}

/* The reference layout: dtypes in its order, larger elements first (so each
 * tensor starts at a multiple of its element size), then names. */
static int write_order(const void *pa, const void *pb)
{
  const w_entry *a = *(const w_entry *const *)pa, *b = *(const w_entry *const *)pb;
  const int ra = m2pt_dtype_rank(a->dtype), rb = m2pt_dtype_rank(b->dtype);
  if (ra != rb)
    return ra > rb ? -1 : 1;
  return strcmp(a->name, b->name);
}

m2pt_status m2pt_safetensors_writer_finish(m2pt_safetensors_writer *w)
{
  M2PT_REQUIRE_THREAD(w, "m2pt_safetensors_writer_finish: w is NULL");
  if (w->finished)
    return m2pt_fail_thread(M2PT_ERR_INVALID_STATE, "m2pt_safetensors_writer_finish: %s: "
                            "already finished", w->path);
  const w_entry **order = malloc((w->count ? w->count : 1) * sizeof *order);
  m2pt_chunk *chunks = malloc((w->count + 1) * sizeof *chunks);
  text t = {0};
  m2pt_status s = M2PT_OK;
  if (!order || !chunks) {
    s = m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory", w->path);
    goto done;
  }
  for (size_t i = 0; i < w->count; i++)
    order[i] = &w->entries[i];
  if (w->count)
    qsort(order, w->count, sizeof *order, write_order);

  put(&t, "\0\0\0\0\0\0\0\0{", 9); /* the length goes in front once known */
  const char *sep = "";
  if (w->meta_count) {
    puts_(&t, "\"__metadata__\":{");
    for (size_t i = 0; i < w->meta_count; i++) {
      puts_(&t, sep);
      put_json_string(&t, w->meta[2 * i]);
      puts_(&t, ":");
      put_json_string(&t, w->meta[2 * i + 1]);
      sep = ",";
    }
    puts_(&t, "}");
    sep = ",";
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < w->count; i++) {
    const w_entry *e = order[i];
    puts_(&t, sep);
    sep = ",";
    put_json_string(&t, e->name);
    puts_(&t, ":{\"dtype\":\"");
    puts_(&t, m2pt_dtype_name(e->dtype));
    puts_(&t, "\",\"shape\":[");
    for (size_t d = 0; d < e->ndim; d++) {
      if (d)
        puts_(&t, ",");
      put_uint(&t, e->shape[d]);
    }
    puts_(&t, "],\"data_offsets\":[");
    put_uint(&t, offset);
    puts_(&t, ",");
    if ((double)offset + (double)e->nbytes > M2PT_IO_MAX_EXACT) {
      s = m2pt_fail_thread(M2PT_ERR_INVALID_ARGUMENT, "%s: the tensors exceed 2^53 bytes",
                           w->path);
      goto done;
    }
    offset += e->nbytes;
    put_uint(&t, offset);
    puts_(&t, "]}");
    chunks[i + 1].data = e->data;
    chunks[i + 1].size = e->nbytes;
  }
  puts_(&t, "}");
  while (!t.failed && t.len % 8 != 0)
    puts_(&t, " ");
  if (t.failed) {
    s = m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory for the header", w->path);
    goto done;
  }
  const uint64_t hlen = t.len - 8;
  for (int i = 0; i < 8; i++)
    t.buf[i] = (char)(unsigned char)(hlen >> (8 * i));
  chunks[0].data = t.buf;
  chunks[0].size = t.len;
  s = m2pt_write_output(w->path, chunks, w->count + 1);
  if (s == M2PT_OK)
    w->finished = 1;
done:
  free(t.buf);
  free(chunks);
  free(order);
  return s;
}
