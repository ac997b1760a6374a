/* .npy, format versions 1.0 and 2.0: "\x93NUMPY", major, minor, a header
 * length (2 bytes little-endian in 1.0, 4 in 2.0), an ASCII Python dict
 * literal padded with spaces and ended by '\n', then the raw array. Only
 * {'descr': '<f4', 'fortran_order': False, 'shape': (...)} is accepted; the
 * dict is parsed here by hand, strictly: the grammar numpy writes, nothing
 * Python-general. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "io_util.h"
#include "m2pt/io.h"

static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

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

static m2pt_status parse_header(cursor *c, size_t *ndim, size_t *shape)
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
        return UNSUPPORTED(c, "structured dtypes are not supported; only '<f4'");
      if (!string_literal(c, &v, &n))
        return BAD(c, "'descr' is not a string");
      if (!literal_is(v, n, "<f4"))
        return m2pt_fail_thread(M2PT_ERR_UNSUPPORTED,
                                "%s: .npy dtype '%.*s' is not supported; only '<f4' (little-endian "
                                "float32)",
                                c->label, (int)(n < 40 ? n : 40), (const char *)v);
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

static m2pt_status parse(const char *label, const unsigned char *b, size_t size, float **data,
                         size_t *ndim, size_t *shape)
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
  M2PT_TRY(parse_header(&c, &n, dims));

  size_t numel = 1, bytes;
  for (size_t d = 0; d < n; d++)
    if (!m2pt_mul_size(numel, dims[d], &numel))
      return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: .npy shape overflows", label);
  if (!m2pt_mul_size(numel, sizeof(float), &bytes))
    return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: .npy shape overflows", label);
  const size_t have = size - prefix - hlen;
  if (have != bytes)
    return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s: .npy data is %zu bytes, the shape needs %zu (%s)",
                            label, have, bytes, have < bytes ? "truncated" : "trailing bytes");
  float *out = malloc(bytes ? bytes : 1);
  if (!out)
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu bytes", label,
                            bytes);
  m2pt_load_f32_le(out, b + prefix + hlen, numel);
  *data = out;
  *ndim = n;
  memcpy(shape, dims, sizeof dims);
  return M2PT_OK;
}

static m2pt_status check_outputs(const char *fn, float **data, size_t *ndim, size_t *shape)
{
  M2PT_REQUIRE_THREAD(data && ndim && shape, "%s: NULL argument", fn);
  *data = NULL;
  return M2PT_OK;
}

m2pt_status m2pt_npy_read_memory(const void *bytes, size_t size, float **data, size_t *ndim,
                                 size_t shape[M2PT_IO_MAX_DIMS])
{
  M2PT_TRY(check_outputs("m2pt_npy_read_memory", data, ndim, shape));
  M2PT_REQUIRE_THREAD(bytes || size == 0, "m2pt_npy_read_memory: bytes is NULL");
  return parse("<memory>", bytes, size, data, ndim, shape);
}

m2pt_status m2pt_npy_read(const char *path, float **data, size_t *ndim,
                          size_t shape[M2PT_IO_MAX_DIMS])
{
  M2PT_TRY(check_outputs("m2pt_npy_read", data, ndim, shape));
  M2PT_REQUIRE_THREAD(path, "m2pt_npy_read: path is NULL");
  unsigned char *bytes;
  size_t size;
  M2PT_TRY(m2pt_read_file(path, UINT64_MAX, &bytes, &size));
  const m2pt_status s = parse(path, bytes, size, data, ndim, shape);
  free(bytes);
  return s;
}

m2pt_status m2pt_npy_write(const char *path, const float *data, size_t ndim, const size_t *shape)
{
  static const char fn[] = "m2pt_npy_write";
  M2PT_REQUIRE_THREAD(path && path[0] && shape, "%s: NULL argument", fn);
  M2PT_REQUIRE_THREAD(ndim >= 1 && ndim <= M2PT_IO_MAX_DIMS, "%s: %s: ndim %zu not in 1..%d", fn,
                      path, ndim, M2PT_IO_MAX_DIMS);
  size_t numel = 1, bytes;
  for (size_t d = 0; d < ndim; d++)
    M2PT_REQUIRE_THREAD(m2pt_mul_size(numel, shape[d], &numel), "%s: %s: shape overflows", fn,
                        path);
  M2PT_REQUIRE_THREAD(m2pt_mul_size(numel, sizeof(float), &bytes), "%s: %s: shape overflows", fn,
                      path);
  M2PT_REQUIRE_THREAD(data || numel == 0, "%s: %s: data is NULL", fn, path);

  /* numpy's own layout: the dict as repr() writes it, space padding so the
   * array starts at a multiple of 64 bytes, then '\n'. */
  char dict[64 + M2PT_IO_MAX_DIMS * 24];
  int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
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
  for (size_t i = 0; i < numel; i++) {
    uint32_t u;
    memcpy(&u, &data[i], 4);
    for (int k = 0; k < 4; k++)
      swapped[4 * i + k] = (unsigned char)(u >> (8 * k));
  }
  chunks[1].data = swapped;
#endif
  const m2pt_status s = m2pt_write_output(path, chunks, 2);
#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
  free(swapped);
#endif
  free(head);
  return s;
}
