/* .npy, format versions 1.0 and 2.0: "\x93NUMPY", major, minor, a header
 * length (2 bytes little-endian in 1.0, 4 in 2.0), an ASCII Python dict
 * literal padded with spaces and ended by '\n', then the raw array. Only
 * {'descr': D, 'fortran_order': False, 'shape': (...)} is accepted, D one of
 * the little-endian descrs in `types` below spelled as numpy spells them; the
 * dict is parsed here by hand, strictly: the grammar numpy writes, nothing
 * Python-general. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "io_util.h"
#include "m2pt/io.h"

static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* The element types read here, as np.save writes their descr on a
 * little-endian machine (one-byte types with '|': no byte order). */
static const struct npy_type {
  const char *descr;
  m2pt_dtype dtype;
} types[] = {
  {"<f4", M2PT_DTYPE_F32}, {"<i8", M2PT_DTYPE_I64}, {"<i4", M2PT_DTYPE_I32},
  {"|i1", M2PT_DTYPE_I8},  {"|u1", M2PT_DTYPE_U8},  {"|b1", M2PT_DTYPE_BOOL},
};
#define N_TYPES (sizeof types / sizeof types[0])

/* Sets of dtypes a reader accepts, one bit per m2pt_dtype. */
#define BIT(dtype) (1u << (dtype))
#define ACCEPT_F32 BIT(M2PT_DTYPE_F32)
#define ACCEPT_INT                                                                            \
  (BIT(M2PT_DTYPE_I64) | BIT(M2PT_DTYPE_I32) | BIT(M2PT_DTYPE_I8) | BIT(M2PT_DTYPE_U8) |       \
   BIT(M2PT_DTYPE_BOOL))
#define ACCEPT_ANY (ACCEPT_F32 | ACCEPT_INT)

typedef struct cursor {
  const char *label;
  const unsigned char *p, *end;
} cursor;

static void skip_spaces(cursor *c)
{
  while (c->p < c->end && *c->p == ' ')
    c->p++;
}

static int accept(cursor *c, char ch)
{
  skip_spaces(c);
  if (c->p < c->end && *c->p == (unsigned char)ch) {
    c->p++;
    return 1;
  }
  return 0;
}

static int accept_word(cursor *c, const char *word)
{
  const size_t n = strlen(word);
  skip_spaces(c);
  if ((size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0) {
    c->p += n;
    return 1;
  }
  return 0;
}

/* A quoted string without escapes: 'abc' or "abc". */
static int string_literal(cursor *c, const unsigned char **s, size_t *n)
{
  skip_spaces(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
    return 0;
  const unsigned char quote = *c->p++;
  const unsigned char *start = c->p;
  while (c->p < c->end && *c->p != quote) {
    if (*c->p == '\\' || *c->p < 0x20 || *c->p >= 0x7F)
      return 0;
    c->p++;
  }
  if (c->p >= c->end)
    return 0;
  *s = start;
  *n = (size_t)(c->p - start);
  c->p++;
  return 1;
}

static int literal_is(const unsigned char *s, size_t n, const char *want)
{
  return n == strlen(want) && memcmp(s, want, n) == 0;
}

/* A decimal integer as Python writes it: no sign, no leading zeros. */
static int integer(cursor *c, size_t *out)
{
  skip_spaces(c);
  if (c->p >= c->end || *c->p < '0' || *c->p > '9')
    return 0;
  if (*c->p == '0' && c->end - c->p > 1 && c->p[1] >= '0' && c->p[1] <= '9')
    return 0;
  size_t v = 0;
  while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
    const size_t digit = (size_t)(*c->p - '0');
    if (v > (SIZE_MAX - digit) / 10)
      return 0;
    v = v * 10 + digit;
    c->p++;
  }
  *out = v;
  return 1;
}

#define BAD(c, what) m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: .npy header: %s", (c)->label, (what))
#define UNSUPPORTED(c, what) \
  m2pt_fail_thread(M2PT_ERR_UNSUPPORTED, "%s: .npy header: %s", (c)->label, (what))

/* (), (n,), (n, m), (n, m,) ... */
static m2pt_status parse_shape(cursor *c, size_t *ndim, size_t *shape)
{
  if (!accept(c, '('))
    return BAD(c, "shape is not a tuple");
  *ndim = 0;
  if (accept(c, ')'))
    return UNSUPPORTED(c, "0-d arrays are not supported");
  for (;;) {
    size_t extent;
    if (!integer(c, &extent))
      return BAD(c, "shape holds something other than a non-negative integer");
    if (*ndim == M2PT_IO_MAX_DIMS)
      return m2pt_fail_thread(M2PT_ERR_UNSUPPORTED, "%s: .npy header: more than %d dimensions",
                              c->label, M2PT_IO_MAX_DIMS);
    shape[(*ndim)++] = extent;
    if (accept(c, ')')) {
      /* (n) is an integer in Python, not a tuple */
      return *ndim == 1 ? BAD(c, "shape (n) is not a tuple; numpy writes (n,)") : M2PT_OK;
    }
    if (!accept(c, ','))
      return BAD(c, "shape tuple is malformed");
    if (accept(c, ')'))
      return M2PT_OK;
  }
}

/* The accepted descrs, quoted, for messages: "'<f4'", "'<i8', '<i4', ...". */
static void accepted_list(unsigned allowed, char *buf, size_t size)
{
  size_t len = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < N_TYPES; i++)
    if (allowed & BIT(types[i].dtype)) {
      const int n = snprintf(buf + len, size - len, "%s'%s'", len ? ", " : "", types[i].descr);
      if (n < 0 || (size_t)n >= size - len)
        return;
      len += (size_t)n;
    }
}

/* Maps the descr string (n bytes at v) to its dtype when `allowed` holds it;
 * anything else is M2PT_ERR_UNSUPPORTED saying what this reader reads. */
static m2pt_status check_descr(cursor *c, const unsigned char *v, size_t n, unsigned allowed,
                               m2pt_dtype *dtype)
{
  for (size_t i = 0; i < N_TYPES; i++)
    if (literal_is(v, n, types[i].descr) && (allowed & BIT(types[i].dtype))) {
      *dtype = types[i].dtype;
      return M2PT_OK;
    }
  char list[64];
  accepted_list(allowed, list, sizeof list);
  const int shown = (int)(n < 40 ? n : 40);
  /* A big-endian array of a type read here: say how to fix it, since numpy
   * keeps '>' through most operations and the user may not know. */
  if (n == 3 && v[0] == '>')
    for (size_t i = 0; i < N_TYPES; i++)
      if (types[i].descr[0] == '<' && memcmp(v + 1, types[i].descr + 1, 2) == 0)
        return m2pt_fail_thread(M2PT_ERR_UNSUPPORTED,
                                "%s: .npy dtype '%.*s' is big-endian, which is not supported "
                                "(only %s; convert with a.astype('%s'))",
                                c->label, shown, (const char *)v, list, types[i].descr);
  return m2pt_fail_thread(M2PT_ERR_UNSUPPORTED, "%s: .npy dtype '%.*s' is not supported; only %s",
                          c->label, shown, (const char *)v, list);
}

static m2pt_status parse_header(cursor *c, unsigned allowed, m2pt_dtype *dtype, size_t *ndim,
                                size_t *shape)
{
  /* The header ends with '\n' after the padding. */
  if (c->p == c->end || c->end[-1] != '\n')
    return BAD(c, "does not end with a newline");
  c->end--;
  if (!accept(c, '{'))
    return BAD(c, "is not a dict");
  int have_descr = 0, have_order = 0, have_shape = 0;
  for (;;) {
    if (accept(c, '}'))
      break;
    const unsigned char *key;
    size_t key_len;
    if (!string_literal(c, &key, &key_len))
      return BAD(c, "dict key is not a plain string");
    if (!accept(c, ':'))
      return BAD(c, "missing ':' after a key");
    if (literal_is(key, key_len, "descr")) {
      if (have_descr++)
        return BAD(c, "'descr' repeated");
      const unsigned char *v;
      size_t n;
      skip_spaces(c);
      if (c->p < c->end && *c->p == '[')
        return UNSUPPORTED(c, "structured dtypes are not supported");
      if (!string_literal(c, &v, &n))
        return BAD(c, "'descr' is not a string");
      M2PT_TRY(check_descr(c, v, n, allowed, dtype));
    } else if (literal_is(key, key_len, "fortran_order")) {
      if (have_order++)
        return BAD(c, "'fortran_order' repeated");
      if (accept_word(c, "True"))
        return UNSUPPORTED(c, "Fortran-order arrays are not supported");
      if (!accept_word(c, "False"))
        return BAD(c, "'fortran_order' is neither True nor False");
    } else if (literal_is(key, key_len, "shape")) {
      if (have_shape++)
        return BAD(c, "'shape' repeated");
      M2PT_TRY(parse_shape(c, ndim, shape));
    } else {
      return BAD(c, "unknown key (only 'descr', 'fortran_order' and 'shape')");
    }
    if (accept(c, '}'))
      break;
    if (!accept(c, ','))
      return BAD(c, "missing ',' between entries");
  }
  if (!have_descr || !have_order || !have_shape)
    return BAD(c, "needs 'descr', 'fortran_order' and 'shape'");
  skip_spaces(c);
  if (c->p != c->end)
    return BAD(c, "bytes other than space padding after the dict");
  return M2PT_OK;
}

/* What a reader wants: the dtypes it accepts, and whether integers are
 * widened to int64 (m2pt_npy_read_i64) or kept as the file has them. */
typedef struct request {
  unsigned allowed;
  int widen_i64;
} request;

/* Converts numel little-endian elements of `dtype` at src into dst, host
 * order: as they are, or every integer widened to int64. A |b1 byte other
 * than 0 or 1 (numpy never writes one) fails. */
static m2pt_status decode(const char *label, m2pt_dtype dtype, const unsigned char *src,
                          size_t numel, int widen_i64, void *dst)
{
  unsigned char *bytes = dst;
  int64_t *wide = dst;
  switch (dtype) {
  case M2PT_DTYPE_F32:
    m2pt_load_f32_le(dst, src, numel);
    break;
  case M2PT_DTYPE_I64: /* the same whether widened or not */
    for (size_t i = 0; i < numel; i++) {
      const uint64_t u = m2pt_load_le64(src + 8 * i);
      memcpy(bytes + 8 * i, &u, 8); /* two's complement, bit for bit */
    }
    break;
  case M2PT_DTYPE_I32:
    for (size_t i = 0; i < numel; i++) {
      const uint32_t u = m2pt_load_le32(src + 4 * i);
      int32_t v;
      memcpy(&v, &u, 4);
      if (widen_i64)
        wide[i] = v;
      else
        memcpy(bytes + 4 * i, &v, 4);
    }
    break;
  default: /* one byte: I8, U8, BOOL */
    for (size_t i = 0; i < numel; i++)
      if (dtype == M2PT_DTYPE_BOOL && src[i] > 1)
        return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: .npy bool element %zu is byte %u, not 0 or 1",
                                label, i, (unsigned)src[i]);
    if (!widen_i64) {
      if (numel)
        memcpy(dst, src, numel);
    } else if (dtype == M2PT_DTYPE_I8) {
      for (size_t i = 0; i < numel; i++)
        wide[i] = (int64_t)src[i] - (src[i] & 0x80 ? 256 : 0); /* two's complement */
    } else {
      for (size_t i = 0; i < numel; i++)
        wide[i] = src[i];
    }
    break;
  }
  return M2PT_OK;
}

/* Parses and validates a whole file; on success out->data is malloc'd. */
static m2pt_status parse(const char *label, const unsigned char *b, size_t size, request req,
                         m2pt_npy_array *out)
{
  if (size < 10 || memcmp(b, magic, sizeof magic) != 0)
    return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", label);
  const unsigned major = b[6], minor = b[7];
  size_t hlen, prefix;
  if (major == 1 && minor == 0) {
    hlen = m2pt_load_le16(b + 8);
    prefix = 10;
  } else if (major == 2 && minor == 0) {
    if (size < 12)
      return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: .npy file truncated in its preamble", label);
    hlen = m2pt_load_le32(b + 8);
    prefix = 12;
  } else {
    return m2pt_fail_thread(M2PT_ERR_UNSUPPORTED,
                            "%s: .npy format version %u.%u is not supported (1.0 and 2.0 are)",
                            label, major, minor);
  }
  if (hlen > size - prefix)
    return m2pt_fail_thread(M2PT_ERR_FORMAT,
                            "%s: .npy header length %zu runs past the end of the file (%zu bytes)",
                            label, hlen, size);
  cursor c = {label, b + prefix, b + prefix + hlen};
  size_t dims[M2PT_IO_MAX_DIMS] = {0}, n = 0;
  m2pt_dtype dtype = M2PT_DTYPE_F32;
  M2PT_TRY(parse_header(&c, req.allowed, &dtype, &n, dims));

  const size_t elem = m2pt_dtype_size(dtype);
  size_t numel = 1, bytes, out_bytes;
  for (size_t d = 0; d < n; d++)
    if (!m2pt_mul_size(numel, dims[d], &numel))
      return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: .npy shape overflows", label);
  if (!m2pt_mul_size(numel, elem, &bytes) ||
      !m2pt_mul_size(numel, req.widen_i64 ? sizeof(int64_t) : elem, &out_bytes))
    return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: .npy shape overflows", label);
  const size_t have = size - prefix - hlen;
  if (have != bytes)
    return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: .npy data is %zu bytes, the shape needs %zu (%s)",
                            label, have, bytes, have < bytes ? "truncated" : "trailing bytes");
  void *data = malloc(out_bytes ? out_bytes : 1);
  if (!data)
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu bytes", label,
                            out_bytes);
  const m2pt_status s = decode(label, dtype, b + prefix + hlen, numel, req.widen_i64, data);
  if (s != M2PT_OK) {
    free(data);
    return s;
  }
  out->dtype = req.widen_i64 ? M2PT_DTYPE_I64 : dtype;
  out->ndim = n;
  memcpy(out->shape, dims, sizeof dims);
  out->numel = numel;
  out->data = data;
  return M2PT_OK;
}

/* Reads `path` (or, with path NULL, the `size` bytes at `bytes`) into *out. */
static m2pt_status read_npy(const char *path, const void *bytes, size_t size, request req,
                            m2pt_npy_array *out)
{
  if (!path)
    return parse("<memory>", bytes, size, req, out);
  unsigned char *file;
  size_t file_size;
  M2PT_TRY(m2pt_read_file(path, UINT64_MAX, &file, &file_size));
  const m2pt_status s = parse(path, file, file_size, req, out);
  free(file);
  return s;
}

/* Checks the arguments every reader shares: `memory` says whether the input
 * is bytes (NULL only when size is 0) or a path (not NULL). */
static m2pt_status check_source(const char *fn, int memory, const char *path, const void *bytes,
                                size_t size)
{
  if (memory)
    M2PT_REQUIRE_THREAD(bytes || size == 0, "%s: bytes is NULL", fn);
  else
    M2PT_REQUIRE_THREAD(path, "%s: path is NULL", fn);
  return M2PT_OK;
}

/* The f32 and int64 readers: the same parse, its result spread over the
 * classic (data, ndim, shape) outputs. *data is set to NULL first. */
static m2pt_status read_flat(const char *fn, int memory, const char *path, const void *bytes,
                             size_t size, request req, void **data, size_t *ndim, size_t *shape)
{
  *data = NULL;
  M2PT_REQUIRE_THREAD(ndim && shape, "%s: NULL argument", fn);
  M2PT_TRY(check_source(fn, memory, path, bytes, size));
  m2pt_npy_array a;
  M2PT_TRY(read_npy(memory ? NULL : path, bytes, size, req, &a));
  *data = a.data;
  *ndim = a.ndim;
  memcpy(shape, a.shape, sizeof a.shape);
  return M2PT_OK;
}

static const request want_f32 = {ACCEPT_F32, 0};
static const request want_i64 = {ACCEPT_INT, 1};

m2pt_status m2pt_npy_read_memory(const void *bytes, size_t size, float **data, size_t *ndim,
                                 size_t shape[M2PT_IO_MAX_DIMS])
{
  M2PT_REQUIRE_THREAD(data, "m2pt_npy_read_memory: NULL argument");
  void *out;
  const m2pt_status s =
    read_flat("m2pt_npy_read_memory", 1, NULL, bytes, size, want_f32, &out, ndim, shape);
  *data = out;
  return s;
}

m2pt_status m2pt_npy_read(const char *path, float **data, size_t *ndim,
                          size_t shape[M2PT_IO_MAX_DIMS])
{
  M2PT_REQUIRE_THREAD(data, "m2pt_npy_read: NULL argument");
  void *out;
  const m2pt_status s = read_flat("m2pt_npy_read", 0, path, NULL, 0, want_f32, &out, ndim, shape);
  *data = out;
  return s;
}

m2pt_status m2pt_npy_read_i64_memory(const void *bytes, size_t size, int64_t **data, size_t *ndim,
                                     size_t shape[M2PT_IO_MAX_DIMS])
{
  M2PT_REQUIRE_THREAD(data, "m2pt_npy_read_i64_memory: NULL argument");
  void *out;
  const m2pt_status s =
    read_flat("m2pt_npy_read_i64_memory", 1, NULL, bytes, size, want_i64, &out, ndim, shape);
  *data = out;
  return s;
}

m2pt_status m2pt_npy_read_i64(const char *path, int64_t **data, size_t *ndim,
                              size_t shape[M2PT_IO_MAX_DIMS])
{
  M2PT_REQUIRE_THREAD(data, "m2pt_npy_read_i64: NULL argument");
  void *out;
  const m2pt_status s =
    read_flat("m2pt_npy_read_i64", 0, path, NULL, 0, want_i64, &out, ndim, shape);
  *data = out;
  return s;
}

/* m2pt_npy_read_any and its _memory twin: *out zeroed first. */
static m2pt_status read_whole(const char *fn, int memory, const char *path, const void *bytes,
                              size_t size, m2pt_npy_array *out)
{
  M2PT_REQUIRE_THREAD(out, "%s: NULL argument", fn);
  memset(out, 0, sizeof *out);
  M2PT_TRY(check_source(fn, memory, path, bytes, size));
  const request want_any = {ACCEPT_ANY, 0};
  return read_npy(memory ? NULL : path, bytes, size, want_any, out);
}

m2pt_status m2pt_npy_read_any(const char *path, m2pt_npy_array *out)
{
  return read_whole("m2pt_npy_read_any", 0, path, NULL, 0, out);
}

m2pt_status m2pt_npy_read_any_memory(const void *bytes, size_t size, m2pt_npy_array *out)
{
  return read_whole("m2pt_npy_read_any_memory", 1, NULL, bytes, size, out);
}

/* Writes a C-order array of `elem`-byte elements (host order, `descr` their
 * little-endian numpy name) as np.save does. */
static m2pt_status write_array(const char *fn, const char *path, const char *descr, size_t elem,
                               const void *data, size_t ndim, const size_t *shape)
{
  M2PT_REQUIRE_THREAD(path && path[0] && shape, "%s: NULL argument", fn);
  M2PT_REQUIRE_THREAD(ndim >= 1 && ndim <= M2PT_IO_MAX_DIMS, "%s: %s: ndim %zu not in 1..%d", fn,
                      path, ndim, M2PT_IO_MAX_DIMS);
  size_t numel = 1, bytes;
  for (size_t d = 0; d < ndim; d++)
    M2PT_REQUIRE_THREAD(m2pt_mul_size(numel, shape[d], &numel), "%s: %s: shape overflows", fn,
                        path);
  M2PT_REQUIRE_THREAD(m2pt_mul_size(numel, elem, &bytes), "%s: %s: shape overflows", fn,
                      path);
  M2PT_REQUIRE_THREAD(data || numel == 0, "%s: %s: data is NULL", fn, path);

  /* numpy's own layout: the dict as repr() writes it, space padding so the
   * array starts at a multiple of 64 bytes, then '\n'. */
  char dict[64 + M2PT_IO_MAX_DIMS * 24];
  int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     descr);
  for (size_t d = 0; d < ndim; d++)
    len += snprintf(dict + len, sizeof dict - (size_t)len, "%s%zu", d ? ", " : "", shape[d]);
  len += snprintf(dict + len, sizeof dict - (size_t)len, "%s), }", ndim == 1 ? "," : "");
  /* Version 1.0 holds header lengths up to 65535; with at most 8 dimensions
   * ours always fit, but 2.0 is the rule past that. */
  size_t prefix = 10, hlen = (size_t)len + 1;
  hlen += (64 - (prefix + hlen) % 64) % 64;
  if (hlen > 65535) {
    prefix = 12;
    hlen = (size_t)len + 1;
    hlen += (64 - (prefix + hlen) % 64) % 64;
  }
  unsigned char *head = malloc(prefix + hlen);
  if (!head)
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  memcpy(head, magic, sizeof magic);
  head[6] = prefix == 10 ? 1 : 2;
  head[7] = 0;
  for (size_t i = 0; i < prefix - 8; i++)
    head[8 + i] = (unsigned char)(hlen >> (8 * i));
  memset(head + prefix, ' ', hlen);
  memcpy(head + prefix, dict, (size_t)len);
  head[prefix + hlen - 1] = '\n';

  m2pt_chunk chunks[2] = {{head, prefix + hlen}, {data, bytes}};
#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
  unsigned char *swapped = malloc(bytes ? bytes : 1);
  if (!swapped) {
    free(head);
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  for (size_t i = 0; i < numel; i++)
    for (size_t k = 0; k < elem; k++)
      swapped[elem * i + k] = ((const unsigned char *)data)[elem * i + elem - 1 - k];
  chunks[1].data = swapped;
#endif
  const m2pt_status s = m2pt_write_output(path, chunks, 2);
#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
  free(swapped);
#endif
  free(head);
  return s;
}

m2pt_status m2pt_npy_write(const char *path, const float *data, size_t ndim, const size_t *shape)
{
  return write_array("m2pt_npy_write", path, "<f4", sizeof *data, data, ndim, shape);
}

m2pt_status m2pt_npy_write_i64(const char *path, const int64_t *data, size_t ndim,
                               const size_t *shape)
{
  return write_array("m2pt_npy_write_i64", path, "<i8", sizeof *data, data, ndim, shape);
}
