/* Checkpoint files: safetensors and .npy round trips, files written by
 * Python's numpy and safetensors, and one test per rejected malformation
 * (each built in memory and as a file in a temporary directory). */
/* mknod, makedev and flock are not POSIX. */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/io_util.h"

#include "test_util.h"

#ifndef M2PT_IO_DATA
#  error "M2PT_IO_DATA must name tests/data/io"
#endif
/* main() enters tests/data/io (test_enter_data_dir), so its files are
 * relative. */
#define IO_DATA "."

static int make_tmp_dir(void **state)
{
  (void)state;
  return test_tmp_dir_make("m2pt-io");
}

static int remove_tmp_dir(void **state)
{
  (void)state;
  return test_tmp_dir_remove();
}

static int file_exists(const char *path)
{
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* Files in the temporary directory whose name starts with `prefix`. */
static int count_files(const char *prefix)
{
  DIR *d = opendir(test_tmp_dir());
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
      n++;
  closedir(d);
  return n;
}

static uint32_t f32_bits(float f)
{
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static int message_has(const char *needle)
{
  return strstr(m2pt_last_error(NULL), needle) != NULL;
}

#define assert_message_has(needle)                                                  \
  do {                                                                              \
    if (!message_has(needle)) {                                                     \
      print_error("message \"%s\" lacks \"%s\"\n", m2pt_last_error(NULL), (needle)); \
      fail();                                                                       \
    }                                                                               \
  } while (0)

/* ---- dtypes and conversions -------------------------------------------- */

static void dtype_names(void **state)
{
  (void)state;
  assert_int_equal(m2pt_dtype_size(M2PT_DTYPE_F32), 4);
  assert_int_equal(m2pt_dtype_size(M2PT_DTYPE_F16), 2);
  assert_int_equal(m2pt_dtype_size(M2PT_DTYPE_BF16), 2);
  assert_int_equal(m2pt_dtype_size(M2PT_DTYPE_I64), 8);
  assert_int_equal(m2pt_dtype_size(M2PT_DTYPE_BOOL), 1);
  assert_int_equal(m2pt_dtype_size((m2pt_dtype)999), 0);
  assert_int_equal(m2pt_dtype_size((m2pt_dtype)-1), 0);
  assert_string_equal(m2pt_dtype_name(M2PT_DTYPE_BF16), "BF16");
  assert_string_equal(m2pt_dtype_name(M2PT_DTYPE_F8_E8M0), "F8_E8M0");
  assert_null(m2pt_dtype_name((m2pt_dtype)999));
  assert_string_equal(m2pt_status_string(M2PT_ERR_NOT_FOUND), "M2PT_ERR_NOT_FOUND");
  m2pt_free(NULL);
}

/* Writes one-dimensional tensors to `name` in the temporary directory and
 * opens the result. */
static m2pt_safetensors *write_and_open(const char *name, size_t n, const char *const *names,
                                        const m2pt_dtype *dtypes, const size_t *counts,
                                        const void *const *data)
{
  const char *path = test_tmp_path(name);
  m2pt_safetensors_writer *w = NULL;
  assert_ok(NULL, m2pt_safetensors_writer_create(path, &w));
  for (size_t i = 0; i < n; i++)
    assert_ok(NULL, m2pt_safetensors_writer_add(w, names[i], dtypes[i], 1, &counts[i], data[i],
                                                counts[i] * m2pt_dtype_size(dtypes[i])));
  assert_ok(NULL, m2pt_safetensors_writer_finish(w));
  m2pt_safetensors_writer_destroy(w);
  m2pt_safetensors *st = NULL;
  assert_ok(NULL, m2pt_safetensors_open(path, &st));
  return st;
}

static void read_by_name(const m2pt_safetensors *st, const char *name, float *dst, size_t n)
{
  size_t index;
  assert_ok(NULL, m2pt_safetensors_find(st, name, &index));
  assert_ok(NULL, m2pt_safetensors_read_f32(st, index, dst, n));
}

/* Known bit patterns, F16 and BF16 to f32 (subnormals, infinities, NaNs). */
static void half_conversions(void **state)
{
  (void)state;
  static const uint16_t f16[] = {
    0x0000, 0x8000, 0x3C00, 0xC000, 0x3555, 0x7BFF, 0x0400, /* 0 -0 1 -2 ~1/3 max min-normal */
    0x0001, 0x03FF, 0x8001,                                 /* subnormals */
    0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE01,                 /* ±inf, qNaN, sNaN, -qNaN */
  };
  static const uint32_t f16_want[] = {
    0x00000000, 0x80000000, 0x3F800000, 0xC0000000, 0x3EAAA000, 0x477FE000, 0x38800000,
    0x33800000, 0x387FC000, 0xB3800000,
    0x7F800000, 0xFF800000, 0x7FC00000, 0x7F802000, 0xFFC02000,
  };
  static const uint16_t bf16[] = {0x0000, 0x8000, 0x3F80, 0x4049, 0x0001, 0x7F80, 0xFF80,
                                  0x7FC1, 0x7F7F};
  enum { NF = sizeof f16 / sizeof f16[0], NB = sizeof bf16 / sizeof bf16[0] };
  const char *names[] = {"f16", "bf16"};
  const m2pt_dtype dtypes[] = {M2PT_DTYPE_F16, M2PT_DTYPE_BF16};
  const size_t counts[] = {NF, NB};
  const void *data[] = {f16, bf16};
  m2pt_safetensors *st = write_and_open("half.safetensors", 2, names, dtypes, counts, data);

  float got[NF];
  read_by_name(st, "f16", got, NF);
  for (size_t i = 0; i < NF; i++)
    if (f32_bits(got[i]) != f16_want[i]) {
      print_error("F16 0x%04x -> 0x%08x, want 0x%08x\n", f16[i], f32_bits(got[i]), f16_want[i]);
      fail();
    }
  assert_true(got[7] == 0x1p-24f && got[8] == 1023 * 0x1p-24f && got[5] == 65504.0f);
  assert_true(isinf(got[10]) && got[10] > 0 && isnan(got[12]) && signbit(got[1]));

  read_by_name(st, "bf16", got, NB);
  for (size_t i = 0; i < NB; i++)
    assert_int_equal(f32_bits(got[i]), (uint32_t)bf16[i] << 16);
  assert_true(got[2] == 1.0f && got[3] == 3.140625f && got[4] == 0x1p-133f);
  m2pt_safetensors_close(st);
}

/* ---- safetensors round trips --------------------------------------------- */

static const char *first_bytes_header(const unsigned char *file, size_t size, size_t *hlen)
{
  assert_true(size >= 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = (n << 8) | file[i];
  assert_true(n <= size - 8);
  *hlen = (size_t)n;
  return (const char *)file + 8;
}

static void safetensors_round_trip(void **state)
{
  (void)state;
  /* Values exactly representable in F16 and BF16: small multiples of 1/8. */
  float f32[2 * 3 * 5];
  test_fill(f32, 30, 7);
  uint16_t f16[6], bf16[7];
  float f16_val[6], bf16_val[7];
  for (int i = 0; i < 6; i++) {
    f16_val[i] = (float)(i - 3) * 0.125f;
    const uint32_t b = f32_bits(f16_val[i]);
    /* f32 → f16 for these normal values (and 0): rebias the exponent. */
    f16[i] = b == 0 ? 0
                    : (uint16_t)(((b >> 16) & 0x8000u) | ((((b >> 23) & 0xFFu) - 112u) << 10) |
                                 ((b >> 13) & 0x3FFu));
  }
  for (int i = 0; i < 7; i++) {
    bf16_val[i] = (float)(i * i) - 10.5f;
    bf16[i] = (uint16_t)(f32_bits(bf16_val[i]) >> 16);
  }
  const float scalar = 0.25f;
  const int64_t ids[4] = {0, 1, 2, -3};

  const char *path = test_tmp_path("round.safetensors");
  m2pt_safetensors_writer *w = NULL;
  assert_ok(NULL, m2pt_safetensors_writer_create(path, &w));
  const size_t s3[3] = {2, 3, 5}, s2[2] = {2, 3}, s1[1] = {7}, s0[2] = {0, 3}, sid[2] = {1, 4};
  /* Added in an order unlike the file's, so the writer's ordering shows. */
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "half", M2PT_DTYPE_F16, 2, s2, f16, sizeof f16));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "w.weight", M2PT_DTYPE_F32, 3, s3, f32,
                                              sizeof f32));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "brain", M2PT_DTYPE_BF16, 1, s1, bf16,
                                              sizeof bf16));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "scale", M2PT_DTYPE_F32, 0, NULL, &scalar, 4));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "empty", M2PT_DTYPE_F32, 2, s0, NULL, 0));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "ids", M2PT_DTYPE_I64, 2, sid, ids, sizeof ids));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "quote\"d\\name\n", M2PT_DTYPE_F32, 0, NULL,
                                              &scalar, 4));
  assert_ok(NULL, m2pt_safetensors_writer_metadata(w, "format", "pt"));
  assert_ok(NULL, m2pt_safetensors_writer_metadata(w, "note", "λ = 0, \"quoted\"\t"));
  assert_ok(NULL, m2pt_safetensors_writer_finish(w));
  m2pt_safetensors_writer_destroy(w);

  /* Header padded with spaces to a multiple of 8; the data follow. */
  size_t size, hlen;
  unsigned char *file = test_read_file(path, &size);
  const char *header = first_bytes_header(file, size, &hlen);
  assert_int_equal(hlen % 8, 0);
  assert_int_equal(header[0], '{');
  assert_int_equal(size, 8 + hlen + sizeof f32 + sizeof f16 + sizeof bf16 + 8 + sizeof ids);

  m2pt_safetensors *st = NULL;
  assert_ok(NULL, m2pt_safetensors_open(path, &st));
  assert_int_equal(m2pt_safetensors_count(st), 7);
  /* Data order: I64, then F32 by name (empty, quote..., scale, w.weight), BF16, F16. */
  static const char *const order[] = {"ids", "empty", "quote\"d\\name\n", "scale", "w.weight",
                                      "brain", "half"};
  uint64_t next = 8 + hlen;
  for (size_t i = 0; i < 7; i++) {
    m2pt_safetensors_info info;
    assert_ok(NULL, m2pt_safetensors_info_at(st, i, &info));
    assert_string_equal(info.name, order[i]);
    assert_int_equal(info.offset, next);
    assert_int_equal(info.offset % m2pt_dtype_size(info.dtype), 0); /* aligned */
    assert_int_equal(info.nbytes, info.numel * m2pt_dtype_size(info.dtype));
    next += info.nbytes;
    size_t found;
    assert_ok(NULL, m2pt_safetensors_find(st, order[i], &found));
    assert_int_equal(found, i);
    const void *raw;
    size_t nbytes;
    assert_ok(NULL, m2pt_safetensors_raw(st, i, &raw, &nbytes));
    assert_non_null(raw);
    assert_int_equal(nbytes, info.nbytes);
    const void *again;
    assert_ok(NULL, m2pt_safetensors_raw(st, i, &again, &nbytes));
    assert_ptr_equal(again, raw); /* one copy a tensor, kept until close */
    unsigned char copy[128];
    assert_true(nbytes <= sizeof copy);
    assert_ok(NULL, m2pt_safetensors_read_raw(st, i, nbytes ? copy : NULL, nbytes));
    if (nbytes) {
      assert_memory_equal(raw, file + info.offset, nbytes);
      assert_memory_equal(copy, file + info.offset, nbytes);
    }
  }
  assert_int_equal(next, size);

  m2pt_safetensors_info info;
  assert_ok(NULL, m2pt_safetensors_info_at(st, 4, &info));
  assert_int_equal(info.dtype, M2PT_DTYPE_F32);
  assert_int_equal(info.ndim, 3);
  assert_int_equal(info.shape[0], 2);
  assert_int_equal(info.shape[1], 3);
  assert_int_equal(info.shape[2], 5);
  assert_int_equal(info.shape[3], 0);
  assert_int_equal(info.numel, 30);
  assert_ok(NULL, m2pt_safetensors_info_at(st, 3, &info)); /* the scalar */
  assert_int_equal(info.ndim, 0);
  assert_int_equal(info.numel, 1);
  assert_ok(NULL, m2pt_safetensors_info_at(st, 1, &info)); /* [0, 3] */
  assert_int_equal(info.ndim, 2);
  assert_int_equal(info.numel, 0);
  assert_int_equal(info.nbytes, 0);

  float got[30];
  read_by_name(st, "w.weight", got, 30);
  assert_memory_equal(got, f32, sizeof f32);
  read_by_name(st, "half", got, 6);
  assert_memory_equal(got, f16_val, sizeof f16_val);
  read_by_name(st, "brain", got, 7);
  assert_memory_equal(got, bf16_val, sizeof bf16_val);
  read_by_name(st, "scale", got, 1);
  assert_true(got[0] == 0.25f);
  read_by_name(st, "empty", NULL, 0);
  size_t index;
  assert_ok(NULL, m2pt_safetensors_find(st, "ids", &index));
  assert_status(NULL, m2pt_safetensors_read_f32(st, index, got, 4), M2PT_ERR_UNSUPPORTED);
  assert_message_has("I64");
  const void *raw;
  size_t nbytes;
  assert_ok(NULL, m2pt_safetensors_raw(st, index, &raw, &nbytes));
  assert_memory_equal(raw, ids, sizeof ids); /* little-endian host */

  /* Metadata: file order, lookup, absence. */
  assert_int_equal(m2pt_safetensors_metadata_count(st), 2);
  const char *key, *value;
  assert_ok(NULL, m2pt_safetensors_metadata_at(st, 0, &key, &value));
  assert_string_equal(key, "format");
  assert_string_equal(value, "pt");
  assert_ok(NULL, m2pt_safetensors_metadata_at(st, 1, &key, &value));
  assert_string_equal(key, "note");
  assert_string_equal(value, "λ = 0, \"quoted\"\t");
  assert_ok(NULL, m2pt_safetensors_metadata(st, "note", &value));
  assert_string_equal(value, "λ = 0, \"quoted\"\t");
  assert_status(NULL, m2pt_safetensors_metadata(st, "missing", &value), M2PT_ERR_NOT_FOUND);
  assert_message_has("missing");
  assert_status(NULL, m2pt_safetensors_metadata_at(st, 2, &key, &value),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_find(st, "w.bias", &index), M2PT_ERR_NOT_FOUND);
  assert_message_has("w.bias");
  assert_message_has(path);

  /* The same bytes through open_memory. */
  m2pt_safetensors *mem = NULL;
  assert_ok(NULL, m2pt_safetensors_open_memory(file, size, &mem));
  assert_int_equal(m2pt_safetensors_count(mem), 7);
  read_by_name(mem, "half", got, 6);
  assert_memory_equal(got, f16_val, sizeof f16_val);
  m2pt_safetensors_close(mem);
  m2pt_safetensors_close(st);
  free(file);
}

/* The tensors of tools/make_io_fixtures.py: v(i) = (i - 5) / 4. */
static float fixture_value(size_t i)
{
  return ((float)i - 5.0f) / 4.0f;
}

static void reference_safetensors(void **state)
{
  (void)state;
  m2pt_safetensors *st = NULL;
  assert_ok(NULL, m2pt_safetensors_open(IO_DATA "/reference.safetensors", &st));
  assert_int_equal(m2pt_safetensors_count(st), 5);
  const char *value;
  assert_ok(NULL, m2pt_safetensors_metadata(st, "format", &value));
  assert_string_equal(value, "pt");

  static const struct {
    const char *name;
    m2pt_dtype dtype;
    size_t ndim, shape0, shape1;
  } want[] = {
    {"blocks.0.attn.qkv.weight", M2PT_DTYPE_F32, 2, 3, 4},
    {"blocks.0.mlp.fc1.weight", M2PT_DTYPE_F16, 2, 2, 3},
    {"blocks.0.mlp.fc1.bias", M2PT_DTYPE_BF16, 1, 5, 0},
  };
  float got[12];
  for (size_t k = 0; k < 3; k++) {
    size_t index;
    m2pt_safetensors_info info;
    assert_ok(NULL, m2pt_safetensors_find(st, want[k].name, &index));
    assert_ok(NULL, m2pt_safetensors_info_at(st, index, &info));
    assert_int_equal(info.dtype, want[k].dtype);
    assert_int_equal(info.ndim, want[k].ndim);
    assert_int_equal(info.shape[0], want[k].shape0);
    assert_int_equal(info.shape[1], want[k].shape1);
    assert_ok(NULL, m2pt_safetensors_read_f32(st, index, got, info.numel));
    for (size_t i = 0; i < info.numel; i++)
      assert_true(got[i] == fixture_value(i));
  }
  read_by_name(st, "blocks.0.attn.qkv.cross_modal_scale", got, 1);
  assert_true(got[0] == 0.5f);
  size_t index;
  const void *raw;
  size_t nbytes;
  assert_ok(NULL, m2pt_safetensors_find(st, "embeddings.position_ids", &index));
  assert_ok(NULL, m2pt_safetensors_raw(st, index, &raw, &nbytes));
  assert_int_equal(nbytes, 32);
  int64_t ids[4];
  memcpy(ids, raw, sizeof ids);
  for (int i = 0; i < 4; i++)
    assert_int_equal(ids[i], i);
  m2pt_safetensors_close(st);
}

/* Our writer lays out the fixture's tensors byte for byte as the reference
 * implementation did. */
static void writer_matches_reference(void **state)
{
  (void)state;
  float qkv[12], scale = 0.5f;
  uint16_t fc1_w[6], fc1_b[5];
  int64_t ids[4] = {0, 1, 2, 3};
  for (size_t i = 0; i < 12; i++)
    qkv[i] = fixture_value(i);
  for (size_t i = 0; i < 6; i++) { /* (i - 5) / 4 in binary16, by hand */
    static const uint16_t h[6] = {0xBD00, 0xBC00, 0xBA00, 0xB800, 0xB400, 0x0000};
    fc1_w[i] = h[i];
  }
  for (size_t i = 0; i < 5; i++)
    fc1_b[i] = (uint16_t)(f32_bits(fixture_value(i)) >> 16);
  const size_t s_qkv[2] = {3, 4}, s_one[1] = {1}, s_w[2] = {2, 3}, s_b[1] = {5}, s_ids[2] = {1, 4};
  const char *path = test_tmp_path("mine.safetensors");
  m2pt_safetensors_writer *w = NULL;
  assert_ok(NULL, m2pt_safetensors_writer_create(path, &w));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "blocks.0.mlp.fc1.weight", M2PT_DTYPE_F16, 2,
                                              s_w, fc1_w, sizeof fc1_w));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "blocks.0.attn.qkv.weight", M2PT_DTYPE_F32, 2,
                                              s_qkv, qkv, sizeof qkv));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "embeddings.position_ids", M2PT_DTYPE_I64, 2,
                                              s_ids, ids, sizeof ids));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "blocks.0.mlp.fc1.bias", M2PT_DTYPE_BF16, 1,
                                              s_b, fc1_b, sizeof fc1_b));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "blocks.0.attn.qkv.cross_modal_scale",
                                              M2PT_DTYPE_F32, 1, s_one, &scale, 4));
  assert_ok(NULL, m2pt_safetensors_writer_metadata(w, "format", "pt"));
  assert_ok(NULL, m2pt_safetensors_writer_finish(w));
  m2pt_safetensors_writer_destroy(w);

  size_t n_mine, n_ref;
  unsigned char *mine = test_read_file(path, &n_mine);
  unsigned char *ref = test_read_file(IO_DATA "/reference.safetensors", &n_ref);
  assert_int_equal(n_mine, n_ref);
  assert_memory_equal(mine, ref, n_ref);
  free(mine);
  free(ref);
}

/* ---- safetensors writer: rejections and atomicity ------------------------ */

static void writer_rejects(void **state)
{
  (void)state;
  const char *path = test_tmp_path("rejects.safetensors");
  const float data[6] = {1, 2, 3, 4, 5, 6};
  const size_t s23[2] = {2, 3}, s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 6};
  const size_t huge[2] = {SIZE_MAX / 2, 4}, big[1] = {(size_t)1 << 62};
  m2pt_safetensors_writer *w = NULL;

  assert_status(NULL, m2pt_safetensors_writer_create(path, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_writer_create(NULL, &w), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(w);
  assert_status(NULL, m2pt_safetensors_writer_create("", &w), M2PT_ERR_INVALID_ARGUMENT);
  assert_ok(NULL, m2pt_safetensors_writer_create(path, &w));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "a", M2PT_DTYPE_F32, 2, s23, data, 24));

#define REJECT(call, what)                                       \
  do {                                                           \
    assert_status(NULL, (call), M2PT_ERR_INVALID_ARGUMENT);      \
    assert_message_has(what);                                    \
  } while (0)
  REJECT(m2pt_safetensors_writer_add(w, "a", M2PT_DTYPE_F32, 2, s23, data, 24), "twice");
  REJECT(m2pt_safetensors_writer_add(w, "b", M2PT_DTYPE_F32, 2, s23, data, 20), "nbytes is 20");
  REJECT(m2pt_safetensors_writer_add(w, "b", M2PT_DTYPE_F16, 2, s23, data, 24), "take 12 bytes");
  REJECT(m2pt_safetensors_writer_add(w, "b", (m2pt_dtype)99, 2, s23, data, 24), "unknown dtype");
  REJECT(m2pt_safetensors_writer_add(w, "b", M2PT_DTYPE_F32, 9, s9, data, 24), "9 dimensions");
  REJECT(m2pt_safetensors_writer_add(w, "b", M2PT_DTYPE_F32, 2, NULL, data, 24), "shape is NULL");
  REJECT(m2pt_safetensors_writer_add(w, "b", M2PT_DTYPE_F32, 2, huge, data, 24), "overflows");
  REJECT(m2pt_safetensors_writer_add(w, "b", M2PT_DTYPE_F32, 1, big, data, 24), "overflows");
  REJECT(m2pt_safetensors_writer_add(w, "b", M2PT_DTYPE_F32, 2, s23, NULL, 24), "data is NULL");
  REJECT(m2pt_safetensors_writer_add(w, "__metadata__", M2PT_DTYPE_F32, 2, s23, data, 24),
         "__metadata__");
  REJECT(m2pt_safetensors_writer_add(w, "bad\xff", M2PT_DTYPE_F32, 2, s23, data, 24), "UTF-8");
  REJECT(m2pt_safetensors_writer_add(w, NULL, M2PT_DTYPE_F32, 2, s23, data, 24), "NULL");
  REJECT(m2pt_safetensors_writer_add(NULL, "b", M2PT_DTYPE_F32, 2, s23, data, 24), "NULL");
  assert_ok(NULL, m2pt_safetensors_writer_metadata(w, "k", "v"));
  REJECT(m2pt_safetensors_writer_metadata(w, "k", "other"), "twice");
  REJECT(m2pt_safetensors_writer_metadata(w, "k2", "\xc0\x80"), "UTF-8");
  REJECT(m2pt_safetensors_writer_metadata(w, "k2", NULL), "NULL");
#undef REJECT

  /* Nothing rejected reached the writer. */
  assert_ok(NULL, m2pt_safetensors_writer_finish(w));
  assert_status(NULL, m2pt_safetensors_writer_finish(w), M2PT_ERR_INVALID_STATE);
  assert_status(NULL, m2pt_safetensors_writer_add(w, "c", M2PT_DTYPE_F32, 2, s23, data, 24),
                M2PT_ERR_INVALID_STATE);
  assert_status(NULL, m2pt_safetensors_writer_metadata(w, "k3", "v"), M2PT_ERR_INVALID_STATE);
  m2pt_safetensors_writer_destroy(w);
  m2pt_safetensors_writer_destroy(NULL);

  m2pt_safetensors *st = NULL;
  assert_ok(NULL, m2pt_safetensors_open(path, &st));
  assert_int_equal(m2pt_safetensors_count(st), 1);
  assert_int_equal(m2pt_safetensors_metadata_count(st), 1);
  m2pt_safetensors_close(st);
}

static void writer_is_atomic(void **state)
{
  (void)state;
  const float one = 1.0f, two[2] = {2.0f, 2.0f};
  const size_t s1 = 1, s2 = 2;
  const char *path = test_tmp_path("atomic.safetensors");

  /* Destroyed without finish: nothing on disk. */
  m2pt_safetensors_writer *w = NULL;
  assert_ok(NULL, m2pt_safetensors_writer_create(path, &w));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "x", M2PT_DTYPE_F32, 1, &s1, &one, 4));
  m2pt_safetensors_writer_destroy(w);
  assert_false(file_exists(path));

  /* A directory that does not exist: M2PT_ERR_IO naming the file; a later
   * finish may still succeed elsewhere. */
  char missing[1024];
  snprintf(missing, sizeof missing, "%s/no/such/dir/x.safetensors", test_tmp_dir());
  assert_ok(NULL, m2pt_safetensors_writer_create(missing, &w));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "x", M2PT_DTYPE_F32, 1, &s1, &one, 4));
  assert_status(NULL, m2pt_safetensors_writer_finish(w), M2PT_ERR_IO);
  assert_message_has("no/such/dir/x.safetensors");
  assert_status(NULL, m2pt_safetensors_writer_finish(w), M2PT_ERR_IO); /* retry allowed */
  m2pt_safetensors_writer_destroy(w);

  /* Replacing an existing file: the new one whole, no temporary left. */
  test_write_file(path, "old contents", 12);
  assert_ok(NULL, m2pt_safetensors_writer_create(path, &w));
  assert_ok(NULL, m2pt_safetensors_writer_add(w, "y", M2PT_DTYPE_F32, 1, &s2, two, 8));
  assert_ok(NULL, m2pt_safetensors_writer_finish(w));
  m2pt_safetensors_writer_destroy(w);
  assert_int_equal(count_files("atomic.safetensors"), 1);
  m2pt_safetensors *st = NULL;
  assert_ok(NULL, m2pt_safetensors_open(path, &st));
  float got[2];
  read_by_name(st, "y", got, 2);
  assert_true(got[0] == 2.0f && got[1] == 2.0f);
  m2pt_safetensors_close(st);

  /* An empty file (no tensors) is valid. */
  const char *empty = test_tmp_path("empty.safetensors");
  assert_ok(NULL, m2pt_safetensors_writer_create(empty, &w));
  assert_ok(NULL, m2pt_safetensors_writer_finish(w));
  m2pt_safetensors_writer_destroy(w);
  assert_ok(NULL, m2pt_safetensors_open(empty, &st));
  assert_int_equal(m2pt_safetensors_count(st), 0);
  m2pt_safetensors_close(st);
}

/* ---- output files: written as cp writes them ----------------------------- */

typedef char path_buf[1024];

/* A fresh directory `name` under the temporary one. */
static void make_dir(path_buf dir, const char *name)
{
  snprintf(dir, sizeof(path_buf), "%s/%s", test_tmp_dir(), name);
  assert_int_equal(mkdir(dir, 0755), 0);
}

static void join(path_buf out, const char *dir, const char *name)
{
  const int n = snprintf(out, sizeof(path_buf), "%s/%s", dir, name);
  assert_true(n > 0 && (size_t)n < sizeof(path_buf));
}

/* Writes a small .npy holding `v`. */
static m2pt_status put(const char *path, float v)
{
  const float x[4] = {v, v, v, v};
  const size_t shape[1] = {4};
  return m2pt_npy_write(path, x, 1, shape);
}

/* The value put() wrote to `path`. */
static float got(const char *path)
{
  float *data = NULL;
  size_t ndim, shape[M2PT_IO_MAX_DIMS];
  assert_ok(NULL, m2pt_npy_read(path, &data, &ndim, shape));
  const float v = data[0];
  m2pt_free(data);
  return v;
}

/* Entries of `dir` besides . and ..: a temporary file left behind shows. */
static int entries(const char *dir)
{
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return n;
}

static mode_t file_type(const char *path)
{
  struct stat sb;
  assert_int_equal(lstat(path, &sb), 0);
  return sb.st_mode & S_IFMT;
}

static void output_through_symlinks(void **state)
{
  (void)state;
  path_buf dir, sub, target, link1, link2, link3, created;
  make_dir(dir, "out-links");
  join(sub, dir, "sub");
  assert_int_equal(mkdir(sub, 0755), 0);
  join(target, dir, "target.npy");
  join(link1, dir, "link1.npy");
  join(link2, dir, "link2.npy");
  join(link3, dir, "link3.npy");
  join(created, sub, "created.npy");

  /* The target is replaced; the link stays a link. */
  assert_ok(NULL, put(target, 1.0f));
  assert_int_equal(symlink("target.npy", link1), 0);
  assert_ok(NULL, put(link1, 2.0f));
  assert_int_equal(file_type(link1), S_IFLNK);
  assert_true(got(target) == 2.0f);

  /* A dangling link, relative to its own directory, creates its target;
   * a chain of links leads there too. */
  assert_int_equal(symlink("sub/created.npy", link2), 0);
  assert_ok(NULL, put(link2, 3.0f));
  assert_int_equal(file_type(link2), S_IFLNK);
  assert_int_equal(file_type(created), S_IFREG);
  assert_true(got(created) == 3.0f);
  assert_int_equal(symlink(link2, link3), 0);
  assert_ok(NULL, put(link3, 4.0f));
  assert_int_equal(file_type(link3), S_IFLNK);
  assert_true(got(created) == 4.0f);

  /* No temporary left beside the links or the targets. */
  assert_int_equal(entries(dir), 5);
  assert_int_equal(entries(sub), 1);
}

static void output_keeps_mode_owner_and_links(void **state)
{
  (void)state;
  path_buf dir, fresh, private, shared, other;
  make_dir(dir, "out-attrs");
  join(fresh, dir, "fresh.npy");
  join(private, dir, "private.npy");
  join(shared, dir, "shared.npy");
  join(other, dir, "other-name.npy");

  /* A new file: 0666 less the umask, as cp creates it. */
  const mode_t mask = umask(027);
  assert_ok(NULL, put(fresh, 1.0f));
  umask(mask);
  struct stat sb;
  assert_int_equal(stat(fresh, &sb), 0);
  assert_int_equal(sb.st_mode & 07777, 0640);

  /* A replaced file keeps its mode, and its owner where we may set it. */
  assert_ok(NULL, put(private, 1.0f));
  assert_int_equal(chmod(private, 0600), 0);
  const int root = geteuid() == 0;
  if (root)
    assert_int_equal(chown(private, 1234, 5678), 0);
  assert_ok(NULL, put(private, 2.0f));
  assert_int_equal(stat(private, &sb), 0);
  assert_int_equal(sb.st_mode & 07777, 0600);
  if (root) {
    assert_int_equal(sb.st_uid, 1234);
    assert_int_equal(sb.st_gid, 5678);
  }
  assert_true(got(private) == 2.0f);

  /* Hard links stay linked and all see the new contents, shorter or longer. */
  assert_ok(NULL, put(shared, 1.0f));
  assert_int_equal(link(shared, other), 0);
  const float wide[64] = {5.0f};
  const size_t s64 = 64;
  assert_ok(NULL, m2pt_npy_write(shared, wide, 1, &s64));
  assert_ok(NULL, put(shared, 6.0f));
  struct stat a, b;
  assert_int_equal(stat(shared, &a), 0);
  assert_int_equal(stat(other, &b), 0);
  assert_true(a.st_ino == b.st_ino && a.st_nlink == 2);
  assert_true(got(other) == 6.0f);
  assert_int_equal(entries(dir), 4);
}

/* A reader process takes what the writer sends down a FIFO. */
static void output_into_fifo(void **state)
{
  (void)state;
  path_buf dir, fifo, ref;
  make_dir(dir, "out-fifo");
  join(fifo, dir, "fifo");
  join(ref, dir, "ref.npy");
  assert_ok(NULL, put(ref, 7.0f));
  size_t ref_size;
  unsigned char *want = test_read_file(ref, &ref_size);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  const pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    alarm(60); /* a writer that replaced the FIFO would leave it waiting */
    const int fd = open(fifo, O_RDONLY);
    unsigned char buf[4096];
    size_t n = 0;
    for (ssize_t r; fd >= 0 && (r = read(fd, buf + n, sizeof buf - n)) > 0;)
      n += (size_t)r;
    _exit(n == ref_size && memcmp(buf, want, n) == 0 ? 0 : 1);
  }
  alarm(60); /* a reader that never opened the FIFO would leave us waiting */
  assert_ok(NULL, put(fifo, 7.0f));
  alarm(0);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(file_type(fifo), S_IFIFO);
  assert_int_equal(entries(dir), 2);
  free(want);
}

/* A full device (/dev/full's numbers, made privately so that a broken writer
 * can only replace our node) fails with ENOSPC and stays a device. */
static void output_into_full_device(void **state)
{
  (void)state;
  path_buf dir, full;
  make_dir(dir, "out-full");
  join(full, dir, "full");
  int fd = -1;
  if (mknod(full, S_IFCHR | 0666, makedev(1, 7)) == 0)
    fd = open(full, O_WRONLY);
  if (fd < 0) {
    unlink(full);
    /* Without privilege no writer can replace /dev/full itself. */
    if (geteuid() == 0 || file_type("/dev/full") != S_IFCHR)
      skip();
    strcpy(full, "/dev/full");
  } else {
    close(fd);
  }
  assert_status(NULL, put(full, 1.0f), M2PT_ERR_IO);
  assert_message_has(full);
  assert_message_has("No space left on device");
  assert_int_equal(file_type(full), S_IFCHR);
  assert_int_equal(entries(dir), strcmp(full, "/dev/full") ? 1 : 0);
}

static void output_refusals(void **state)
{
  (void)state;
  path_buf dir, sub, sock, missing, readonly;
  make_dir(dir, "out-refused");
  join(sub, dir, "a-directory");
  join(sock, dir, "a-socket");
  join(missing, dir, "no/such/dir/x.npy");
  join(readonly, dir, "read-only.npy");
  assert_int_equal(mkdir(sub, 0755), 0);
  assert_status(NULL, put(sub, 1.0f), M2PT_ERR_IO);
  assert_message_has(sub);
  assert_message_has("it is a directory");
  assert_int_equal(file_type(sub), S_IFDIR);

  const int s = socket(AF_UNIX, SOCK_STREAM, 0);
  assert_true(s >= 0);
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  assert_true(strlen(sock) < sizeof addr.sun_path);
  strcpy(addr.sun_path, sock);
  assert_int_equal(bind(s, (const struct sockaddr *)&addr, sizeof addr), 0);
  assert_status(NULL, put(sock, 1.0f), M2PT_ERR_IO);
  assert_message_has(sock);
  assert_message_has("socket");
  assert_int_equal(file_type(sock), S_IFSOCK);
  close(s);

  assert_status(NULL, put(missing, 1.0f), M2PT_ERR_IO);
  assert_message_has(missing);
  assert_message_has("No such file or directory");

  /* A file we may not write stays as it is (root may write anything). */
  assert_ok(NULL, put(readonly, 1.0f));
  assert_int_equal(chmod(readonly, 0444), 0);
  if (geteuid() != 0) {
    assert_status(NULL, put(readonly, 2.0f), M2PT_ERR_IO);
    assert_message_has("Permission denied");
    assert_true(got(readonly) == 1.0f);
  }
  assert_int_equal(entries(dir), 3);
}

/* File names up to NAME_MAX work: the temporary's name does not grow with
 * the target's. */
static void output_long_names(void **state)
{
  (void)state;
  path_buf dir, path;
  make_dir(dir, "out-long");
  for (size_t len = 245; len <= 255; len += 5) {
    char name[256];
    memset(name, 'n', len);
    memcpy(name + len - 4, ".npy", 5);
    join(path, dir, name);
    assert_ok(NULL, put(path, (float)len));
    assert_ok(NULL, put(path, (float)len + 1.0f)); /* and replacing it */
    assert_true(got(path) == (float)len + 1.0f);
  }
  assert_int_equal(entries(dir), 3);
}

/* A file that may be written in a directory that may not (no temporary can
 * be made beside it) is written in place, as cp writes it. Root may write
 * any directory, so as root a child process of another user tries it. */
static void output_in_place_where_no_temporary(void **state)
{
  (void)state;
  path_buf dir, file;
  make_dir(dir, "out-in-place");
  join(file, dir, "writable.npy");
  assert_ok(NULL, put(file, 1.0f));
  const uid_t nobody = 65534;
  if (geteuid() != 0) {
    assert_int_equal(chmod(dir, 0555), 0);
    const m2pt_status s = put(file, 2.0f);
    assert_int_equal(chmod(dir, 0755), 0);
    assert_ok(NULL, s);
  } else {
    assert_int_equal(chown(file, nobody, nobody), 0);
    assert_int_equal(chmod(test_tmp_dir(), 0755), 0); /* mkdtemp's 0700 keeps the child out */
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      if (setgid(nobody) != 0 || setuid(nobody) != 0)
        _exit(2);
      if (access(file, W_OK) != 0) /* a TMPDIR the other user cannot reach */
        _exit(77);
      _exit(put(file, 2.0f) == M2PT_OK ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(chmod(test_tmp_dir(), 0700), 0);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77)
      skip();
    assert_int_equal(WEXITSTATUS(status), 0);
    struct stat sb;
    assert_int_equal(stat(file, &sb), 0);
    assert_int_equal(sb.st_uid, nobody);
  }
  assert_true(got(file) == 2.0f);
  assert_int_equal(entries(dir), 1);
}

/* Undoes output_named_temporary's setting even when an assert left early. */
static int named_temporary_teardown(void **state)
{
  (void)state;
  return unsetenv("M2PT_IO_TMPFILE");
}

/* Without O_TMPFILE (forced here) the temporary is named; it is gone once
 * written, whatever the output is. */
static void output_named_temporary(void **state)
{
  (void)state;
  path_buf dir, plain, link1;
  make_dir(dir, "out-named");
  join(plain, dir, "plain.npy");
  join(link1, dir, "link.npy");
  assert_int_equal(setenv("M2PT_IO_TMPFILE", "off", 1), 0);
  assert_ok(NULL, put(plain, 1.0f));
  assert_int_equal(chmod(plain, 0600), 0);
  assert_int_equal(symlink("plain.npy", link1), 0);
  assert_ok(NULL, put(link1, 2.0f));
  unsetenv("M2PT_IO_TMPFILE");
  struct stat sb;
  assert_int_equal(stat(plain, &sb), 0);
  assert_int_equal(sb.st_mode & 07777, 0600);
  assert_true(got(plain) == 2.0f);
  assert_int_equal(file_type(link1), S_IFLNK);
  assert_int_equal(entries(dir), 2);
}

/* A named temporary of the same target, older than this process and not
 * locked by a live writer, is removed by the next write; nothing else is. */
static void output_removes_stale_temporaries(void **state)
{
  (void)state;
  path_buf dir, target, path;
  make_dir(dir, "out-stale");
  join(target, dir, "t.npy");
  char ours[M2PT_TEMP_NAME_SIZE], theirs[M2PT_TEMP_NAME_SIZE];
  m2pt_temp_name("t.npy", ours);
  m2pt_temp_name("u.npy", theirs);
  const size_t x = strlen(ours) - 6;
  static const struct {
    const char *suffix;
    int mine, old, kind; /* kind: 0 file, 1 file locked by a live writer, 2 FIFO */
    int removed;
  } cases[] = {
    {"stale1", 1, 1, 0, 1},
    {"Stale2", 1, 1, 0, 1},
    {"fresh1", 1, 0, 0, 0},
    {"locked", 1, 1, 1, 0},
    {"afifo1", 1, 1, 2, 0},
    {"other1", 0, 1, 0, 0},
    {"bad-12", 1, 1, 0, 0},
    {"short", 1, 1, 0, 0},
  };
  enum { N = sizeof cases / sizeof cases[0] };
  char names[N][M2PT_TEMP_NAME_SIZE];
  int locked = -1;
  for (int i = 0; i < N; i++) {
    strcpy(names[i], cases[i].mine ? ours : theirs);
    strcpy(names[i] + x, cases[i].suffix);
    join(path, dir, names[i]);
    if (cases[i].kind == 2) {
      assert_int_equal(mkfifo(path, 0600), 0);
    } else {
      test_write_file(path, "partial", 7);
      if (cases[i].kind == 1) {
        locked = open(path, O_RDONLY);
        assert_int_equal(flock(locked, LOCK_EX), 0);
      }
    }
    if (cases[i].old) {
      const struct timespec when[2] = {{1000000000, 0}, {1000000000, 0}}; /* 2001 */
      assert_int_equal(utimensat(AT_FDCWD, path, when, AT_SYMLINK_NOFOLLOW), 0);
    }
  }
  /* A user's files that only look alike. */
  join(path, dir, ".m2pt-tmp.notours");
  test_write_file(path, "mine", 4);
  assert_ok(NULL, put(target, 1.0f));
  for (int i = 0; i < N; i++) {
    join(path, dir, names[i]);
    if (file_exists(path) == cases[i].removed) {
      print_error("%s: %s\n", names[i], cases[i].removed ? "kept" : "removed");
      fail();
    }
  }
  close(locked);
  assert_int_equal(entries(dir), N - 2 + 2);
}

/* ---- safetensors reader: hostile input ----------------------------------- */

/* 8-byte little-endian length, the header, then `data` bytes of a pattern. */
static unsigned char *st_file(const char *header, uint64_t claimed, size_t data, size_t *size)
{
  const size_t hlen = strlen(header);
  *size = 8 + hlen + data;
  unsigned char *b = test_alloc(*size);
  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)(claimed >> (8 * i));
  memcpy(b + 8, header, hlen);
  for (size_t i = 0; i < data; i++)
    b[8 + hlen + i] = (unsigned char)(i * 37 + 1);
  return b;
}

/* Opens the bytes from memory and from a file; both must give `want` and,
 * on failure, no object and a message containing `needle`. */
static void expect_open(const unsigned char *bytes, size_t size, m2pt_status want,
                        const char *needle, const char *what)
{
  static char sentinel;
  m2pt_safetensors *st = (m2pt_safetensors *)(void *)&sentinel; /* must be reset to NULL */
  const m2pt_status got = m2pt_safetensors_open_memory(bytes, size, &st);
  if (got != want || (want != M2PT_OK && (st || !message_has(needle)))) {
    print_error("%s (memory): %s, want %s: %s\n", what, m2pt_status_string(got),
                m2pt_status_string(want), m2pt_last_error(NULL));
    fail();
  }
  m2pt_safetensors_close(st);

  const char *path = test_tmp_path("hostile.safetensors");
  test_write_file(path, bytes, size);
  st = (m2pt_safetensors *)(void *)&sentinel;
  const m2pt_status got_file = m2pt_safetensors_open(path, &st);
  if (got_file != want ||
      (want != M2PT_OK && (st || !message_has(needle) || !message_has(path)))) {
    print_error("%s (file): %s, want %s: %s\n", what, m2pt_status_string(got_file),
                m2pt_status_string(want), m2pt_last_error(NULL));
    fail();
  }
  m2pt_safetensors_close(st);
}

static void expect_header(const char *header, size_t data, m2pt_status want, const char *needle)
{
  size_t size;
  unsigned char *b = st_file(header, strlen(header), data, &size);
  expect_open(b, size, want, needle, header);
  free(b);
}

static void reader_rejects_framing(void **state)
{
  (void)state;
  size_t size;
  unsigned char *b;
  /* Shorter than the 8-byte length. */
  const unsigned char five[5] = {1, 0, 0, 0, 0};
  expect_open(five, 5, M2PT_ERR_FORMAT, "shorter than the 8-byte", "5 bytes");
  expect_open(five, 0, M2PT_ERR_FORMAT, "shorter than the 8-byte", "0 bytes");
  /* Header length beyond the file, absurdly large, or zero. */
  b = st_file("{}", 3, 0, &size);
  expect_open(b, size, M2PT_ERR_FORMAT, "runs past the end", "length + 1");
  free(b);
  b = st_file("{}", (uint64_t)1 << 63, 0, &size);
  expect_open(b, size, M2PT_ERR_FORMAT, "exceeds the limit", "2^63");
  free(b);
  b = st_file("{}", 100000001, 0, &size);
  expect_open(b, size, M2PT_ERR_FORMAT, "exceeds the limit", "100000001");
  free(b);
  b = st_file("", 0, 0, &size);
  expect_open(b, size, M2PT_ERR_FORMAT, "does not start with '{'", "empty header");
  free(b);
}

static void reader_rejects_json(void **state)
{
  (void)state;
  expect_header("{\"a\":", 0, M2PT_ERR_FORMAT, "not valid JSON");
  expect_header("{\"a\" 1}", 0, M2PT_ERR_FORMAT, "not valid JSON");
  expect_header("[]", 0, M2PT_ERR_FORMAT, "does not start with '{'");
  expect_header(" {}", 0, M2PT_ERR_FORMAT, "does not start with '{'");
  expect_header("\"text\"", 0, M2PT_ERR_FORMAT, "does not start with '{'");
  expect_header("{} {}", 0, M2PT_ERR_FORMAT, "bytes after the JSON header");
  expect_header("{}x", 0, M2PT_ERR_FORMAT, "bytes after the JSON header");
  expect_header("{\"\xff\":{}}", 0, M2PT_ERR_FORMAT, "UTF-8");
  expect_header("{\"\xed\xa0\x80\":{}}", 0, M2PT_ERR_FORMAT, "UTF-8"); /* a surrogate */
  expect_header("{\"a\x01\":{}}", 0, M2PT_ERR_FORMAT, "control byte");
  /* Accepted: trailing whitespace padding, and no tensors at all. */
  expect_header("{}      ", 0, M2PT_OK, "");
  expect_header("{}\n\t\r ", 0, M2PT_OK, "");
  expect_header("{}", 0, M2PT_OK, "");
  /* ...but no data without a tensor to own it. */
  expect_header("{}", 4, M2PT_ERR_FORMAT, "trailing bytes");
}

#define T(body) "{\"t\":" body "}"
#define F32_4(off) "{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":" off "}"

static void reader_rejects_entries(void **state)
{
  (void)state;
  /* Entry not an object. */
  expect_header(T("5"), 0, M2PT_ERR_FORMAT, "tensor \"t\": entry is not an object");
  expect_header(T("[]"), 0, M2PT_ERR_FORMAT, "entry is not an object");
  expect_header(T("\"F32\""), 0, M2PT_ERR_FORMAT, "entry is not an object");
  /* dtype: missing, ill-typed, unknown. */
  expect_header(T("{\"shape\":[4],\"data_offsets\":[0,16]}"), 16, M2PT_ERR_FORMAT, "no dtype");
  expect_header(T("{\"dtype\":4,\"shape\":[4],\"data_offsets\":[0,16]}"), 16, M2PT_ERR_FORMAT,
                "dtype is not a string");
  expect_header(T("{\"dtype\":\"F33\",\"shape\":[4],\"data_offsets\":[0,16]}"), 16,
                M2PT_ERR_FORMAT, "unknown dtype \"F33\"");
  expect_header(T("{\"dtype\":\"f32\",\"shape\":[4],\"data_offsets\":[0,16]}"), 16,
                M2PT_ERR_FORMAT, "unknown dtype");
  /* shape: missing, ill-typed, negative, non-integer, too many dimensions. */
  expect_header(T("{\"dtype\":\"F32\",\"data_offsets\":[0,16]}"), 16, M2PT_ERR_FORMAT,
                "no shape");
  expect_header(T("{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}"), 16,
                M2PT_ERR_FORMAT, "shape is not an array");
  expect_header(T("{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}"), 16,
                M2PT_ERR_FORMAT, "shape holds");
  expect_header(T("{\"dtype\":\"F32\",\"shape\":[4.5],\"data_offsets\":[0,18]}"), 18,
                M2PT_ERR_FORMAT, "shape holds");
  expect_header(T("{\"dtype\":\"F32\",\"shape\":[\"4\"],\"data_offsets\":[0,16]}"), 16,
                M2PT_ERR_FORMAT, "shape holds");
  expect_header(T("{\"dtype\":\"F32\",\"shape\":[[4]],\"data_offsets\":[0,16]}"), 16,
                M2PT_ERR_FORMAT, "shape holds");
  expect_header(T("{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,16]}"), 16,
                M2PT_ERR_FORMAT, "shape holds");
  expect_header(T("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,4],\"data_offsets\":[0,16]}"),
                16, M2PT_ERR_FORMAT, "more than 8 dimensions");
  /* data_offsets: missing, ill-typed, wrong length, negative, non-integer. */
  expect_header(T("{\"dtype\":\"F32\",\"shape\":[4]}"), 16, M2PT_ERR_FORMAT, "no data_offsets");
  expect_header(T(F32_4("16")), 16, M2PT_ERR_FORMAT, "not an array of two");
  expect_header(T(F32_4("[0,8,16]")), 16, M2PT_ERR_FORMAT, "not an array of two");
  expect_header(T(F32_4("[16]")), 16, M2PT_ERR_FORMAT, "not an array of two");
  expect_header(T(F32_4("[-16,0]")), 16, M2PT_ERR_FORMAT, "data_offsets holds");
  expect_header(T(F32_4("[0,16.5]")), 16, M2PT_ERR_FORMAT, "data_offsets holds");
  expect_header(T(F32_4("[0,\"16\"]")), 16, M2PT_ERR_FORMAT, "data_offsets holds");
  expect_header(T(F32_4("[0,null]")), 16, M2PT_ERR_FORMAT, "data_offsets holds");
  expect_header(T(F32_4("[0,18014398509481984]")), 16, M2PT_ERR_FORMAT, "data_offsets holds");
  /* begin > end. */
  expect_header(T(F32_4("[16,0]")), 16, M2PT_ERR_FORMAT, "begin 16 > end 0");
  /* Unknown and repeated fields. */
  expect_header(T("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16],\"x\":1}"), 16,
                M2PT_ERR_FORMAT, "unknown field \"x\"");
  expect_header(T("{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,16]}"),
                16, M2PT_ERR_FORMAT, "field \"dtype\" repeated");
  /* Integral numbers in other spellings are still integers. */
  expect_header(T("{\"dtype\":\"F32\",\"shape\":[4.0],\"data_offsets\":[0,1.6e1]}"), 16, M2PT_OK,
                "");
}

static void reader_rejects_sizes(void **state)
{
  (void)state;
  /* shape × dtype size ≠ byte length. */
  expect_header(T(F32_4("[0,12]")), 12, M2PT_ERR_FORMAT, "span 12 bytes, but 4 elements of F32");
  expect_header(T("{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,16]}"), 16,
                M2PT_ERR_FORMAT, "take 8");
  expect_header(T("{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]}"), 0, M2PT_ERR_FORMAT,
                "1 elements of F32 take 4");
  /* Overflows: the element count (2^52 · 2^52), the byte size (2^31 · 2^31 · 4). */
  expect_header(T("{\"dtype\":\"F32\",\"shape\":[4503599627370496,4503599627370496],"
                  "\"data_offsets\":[0,0]}"),
                0, M2PT_ERR_FORMAT, "element count overflows");
  expect_header(T("{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],"
                  "\"data_offsets\":[0,0]}"),
                0, M2PT_ERR_FORMAT, "byte size overflows");
  expect_header(T("{\"dtype\":\"F64\",\"shape\":[1073741824,2147483648],"
                  "\"data_offsets\":[0,0]}"),
                0, M2PT_ERR_FORMAT, "byte size overflows");
  /* A dimension of 0 makes any other extent harmless. */
  expect_header(T("{\"dtype\":\"F32\",\"shape\":[0,9007199254740992],\"data_offsets\":[0,0]}"),
                0, M2PT_OK, "");
}

static void reader_rejects_layout(void **state)
{
  (void)state;
  /* Offsets out of bounds. */
  expect_header(T(F32_4("[0,16]")), 12, M2PT_ERR_FORMAT, "beyond the 12-byte data region");
  expect_header(T(F32_4("[8,24]")), 16, M2PT_ERR_FORMAT, "leave a gap");
  /* Overlap, gap, not starting at 0, trailing bytes. */
  expect_header("{\"a\":" F32_4("[0,16]") ",\"b\":" F32_4("[8,24]") "}", 24, M2PT_ERR_FORMAT,
                "overlap");
  expect_header("{\"a\":" F32_4("[0,16]") ",\"b\":" F32_4("[0,16]") "}", 16, M2PT_ERR_FORMAT,
                "overlap");
  expect_header("{\"a\":" F32_4("[0,16]") ",\"b\":" F32_4("[20,36]") "}", 36, M2PT_ERR_FORMAT,
                "leave a gap");
  expect_header(T(F32_4("[4,20]")), 20, M2PT_ERR_FORMAT, "leave a gap");
  expect_header(T(F32_4("[0,16]")), 17, M2PT_ERR_FORMAT, "cover 16 of the 17 data bytes");
  /* Out-of-order keys are fine: the data order decides. Zero-size tensors
   * may share an offset. */
  expect_header("{\"b\":" F32_4("[16,32]") ",\"a\":" F32_4("[0,16]") "}", 32, M2PT_OK, "");
  expect_header("{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                "\"y\":{\"dtype\":\"BOOL\",\"shape\":[0,2],\"data_offsets\":[0,0]},"
                "\"a\":" F32_4("[0,16]") "}",
                16, M2PT_OK, "");

  /* Indices follow the data, not the JSON. */
  size_t size;
  unsigned char *b = st_file("{\"b\":" F32_4("[16,32]") ",\"a\":" F32_4("[0,16]") "}",
                             strlen("{\"b\":" F32_4("[16,32]") ",\"a\":" F32_4("[0,16]") "}"),
                             32, &size);
  m2pt_safetensors *st = NULL;
  assert_ok(NULL, m2pt_safetensors_open_memory(b, size, &st));
  m2pt_safetensors_info info;
  assert_ok(NULL, m2pt_safetensors_info_at(st, 0, &info));
  assert_string_equal(info.name, "a");
  assert_ok(NULL, m2pt_safetensors_info_at(st, 1, &info));
  assert_string_equal(info.name, "b");
  m2pt_safetensors_close(st);
  free(b);
}

static void reader_rejects_names_and_metadata(void **state)
{
  (void)state;
  /* Duplicate names (cJSON keeps both). */
  expect_header("{\"a\":" F32_4("[0,16]") ",\"a\":" F32_4("[16,32]") "}", 32, M2PT_ERR_FORMAT,
                "tensor \"a\" appears twice");
  /* Metadata: not an object, non-string values, repeated keys, twice. */
  expect_header("{\"__metadata__\":[]}", 0, M2PT_ERR_FORMAT, "__metadata__ is not an object");
  expect_header("{\"__metadata__\":\"x\"}", 0, M2PT_ERR_FORMAT, "__metadata__ is not an object");
  expect_header("{\"__metadata__\":{\"k\":1}}", 0, M2PT_ERR_FORMAT,
                "value of \"k\" is not a string");
  expect_header("{\"__metadata__\":{\"k\":null}}", 0, M2PT_ERR_FORMAT, "not a string");
  expect_header("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, M2PT_ERR_FORMAT,
                "not a string");
  expect_header("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, M2PT_ERR_FORMAT,
                "key \"k\" repeated");
  expect_header("{\"__metadata__\":{},\"__metadata__\":{}}", 0, M2PT_ERR_FORMAT,
                "__metadata__ repeated");
  expect_header("{\"__metadata__\":{\"k\":\"v\"}," "\"t\":" F32_4("[0,16]") "}", 16, M2PT_OK, "");
  expect_header("{\"__metadata__\":{}}", 0, M2PT_OK, "");
}

#undef T
#undef F32_4

static void reader_bad_arguments(void **state)
{
  (void)state;
  m2pt_safetensors *st = (m2pt_safetensors *)&st;
  assert_status(NULL, m2pt_safetensors_open(NULL, &st), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(st);
  assert_status(NULL, m2pt_safetensors_open("x", NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_open_memory(NULL, 8, &st), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_open(test_tmp_path("does-not-exist"), &st), M2PT_ERR_IO);
  assert_null(st);
  assert_message_has("does-not-exist");
  assert_status(NULL, m2pt_safetensors_open(test_tmp_dir(), &st), M2PT_ERR_IO);
  assert_message_has("not a regular file");
  /* A FIFO is refused, not waited on for a writer (alarm: a hang fails). */
  const char *fifo = test_tmp_path("fifo");
  assert_int_equal(mkfifo(fifo, 0600), 0);
  alarm(60);
  assert_status(NULL, m2pt_safetensors_open(fifo, &st), M2PT_ERR_IO);
  assert_message_has("not a regular file");
  float *npy_data;
  size_t npy_ndim, npy_shape[M2PT_IO_MAX_DIMS];
  assert_status(NULL, m2pt_npy_read(fifo, &npy_data, &npy_ndim, npy_shape), M2PT_ERR_IO);
  assert_message_has("not a regular file");
  alarm(0);
  unlink(fifo);
  assert_int_equal(m2pt_safetensors_count(NULL), 0);
  assert_int_equal(m2pt_safetensors_metadata_count(NULL), 0);
  m2pt_safetensors_close(NULL);

  assert_ok(NULL, m2pt_safetensors_open(IO_DATA "/reference.safetensors", &st));
  m2pt_safetensors_info info;
  float buf[12];
  size_t index;
  const void *raw;
  size_t nbytes;
  const char *k, *v;
  assert_status(NULL, m2pt_safetensors_info_at(st, 5, &info), M2PT_ERR_INVALID_ARGUMENT);
  assert_message_has("index 5 out of range");
  assert_status(NULL, m2pt_safetensors_info_at(st, 0, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_info_at(NULL, 0, &info), M2PT_ERR_INVALID_ARGUMENT);
  assert_ok(NULL, m2pt_safetensors_find(st, "blocks.0.attn.qkv.weight", &index));
  assert_status(NULL, m2pt_safetensors_read_f32(st, index, buf, 11), M2PT_ERR_INVALID_ARGUMENT);
  assert_message_has("has 12 elements, count is 11");
  assert_status(NULL, m2pt_safetensors_read_f32(st, index, NULL, 12), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_read_f32(st, 99, buf, 12), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_find(st, NULL, &index), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_find(st, "x", NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_raw(st, 0, NULL, &nbytes), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_raw(st, 5, &raw, &nbytes), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_read_raw(st, 5, buf, 48), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_read_raw(NULL, 0, buf, 48), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_read_raw(st, index, buf, 47), M2PT_ERR_INVALID_ARGUMENT);
  assert_message_has("has 48 bytes, nbytes is 47");
  assert_status(NULL, m2pt_safetensors_read_raw(st, index, NULL, 48), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_metadata(st, NULL, &v), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_safetensors_metadata_at(NULL, 0, &k, &v), M2PT_ERR_INVALID_ARGUMENT);
  /* Still usable after every rejected call. */
  assert_ok(NULL, m2pt_safetensors_read_f32(st, index, buf, 12));
  assert_true(buf[11] == fixture_value(11));
  m2pt_safetensors_close(st);
}

/* Resident pages of this process, in bytes (0 when /proc is missing). */
static size_t resident_bytes(void)
{
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f)
    return 0;
  unsigned long total = 0, resident = 0;
  const int n = fscanf(f, "%lu %lu", &total, &resident);
  fclose(f);
  return n == 2 ? (size_t)resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

/* A 256 MiB checkpoint opens without reading its data: only the header is
 * read (the file is sparse, so it costs no disk either). */
static void open_reads_only_the_header(void **state)
{
  (void)state;
  enum { ROWS = 16384, COLS = 4096 }; /* F32: 256 MiB */
  char header[256];
  const int hlen = snprintf(header, sizeof header,
                            "{\"big\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":"
                            "[0,%zu]}}  ",
                            ROWS, COLS, (size_t)ROWS * COLS * 4);
  const char *path = test_tmp_path("big.safetensors");
  size_t size;
  unsigned char *b = st_file(header, (uint64_t)hlen, 0, &size);
  test_write_file(path, b, size);
  free(b);
  assert_int_equal(truncate(path, (off_t)(size + (size_t)ROWS * COLS * 4)), 0);

  const size_t before = resident_bytes();
  m2pt_safetensors *st = NULL;
  assert_ok(NULL, m2pt_safetensors_open(path, &st));
  const size_t after = resident_bytes();
  if (before && after > before + (16u << 20)) {
    print_error("open grew the resident set by %zu bytes\n", after - before);
    fail();
  }
  m2pt_safetensors_info info;
  assert_ok(NULL, m2pt_safetensors_info_at(st, 0, &info));
  assert_int_equal(info.nbytes, (size_t)ROWS * COLS * 4);
  m2pt_safetensors_close(st);
  unlink(path);
}

/* ---- safetensors reader: a file that changes while it is open ------------ */

typedef enum change {
  SHRINK_TO_ZERO,
  SHRINK_INTO_HEADER,
  SHRINK_INTO_DATA,
  GROW,
  REWRITE_SAME_SIZE,
  CHANGES
} change;

static int apply_change(const char *path, change c, size_t header_end, size_t size)
{
  if (c == SHRINK_TO_ZERO || c == SHRINK_INTO_HEADER || c == SHRINK_INTO_DATA) {
    const size_t keep = c == SHRINK_TO_ZERO ? 0 : c == SHRINK_INTO_HEADER ? header_end / 2
                                                                          : header_end + 100;
    return truncate(path, (off_t)keep);
  }
  FILE *f = fopen(path, c == GROW ? "ab" : "r+b");
  if (!f)
    return -1;
  if (c == REWRITE_SAME_SIZE)
    fseek(f, (long)(size - 4), SEEK_SET);
  const int ok = fwrite("\1\2\3\4", 1, 4, f) == 4;
  return fclose(f) == 0 && ok ? 0 : -1;
}

/* Run in a child: opens `path`, changes the file, then reads every tensor.
 * Each read must fail with M2PT_ERR_IO naming the file. Returns the exit
 * status: 0 when they all did. */
static int read_after_change(const char *path, change c)
{
  m2pt_safetensors *st = NULL;
  if (m2pt_safetensors_open(path, &st) != M2PT_OK)
    return 10;
  m2pt_safetensors_info first;
  if (m2pt_safetensors_info_at(st, 0, &first) != M2PT_OK)
    return 11;
  struct stat sb;
  if (stat(path, &sb) != 0 || apply_change(path, c, (size_t)first.offset, (size_t)sb.st_size))
    return 12;
  for (size_t i = 0; i < m2pt_safetensors_count(st); i++) {
    m2pt_safetensors_info info;
    m2pt_safetensors_info_at(st, i, &info);
    m2pt_status got;
    if (info.dtype == M2PT_DTYPE_I64) {
      const void *raw;
      size_t nbytes;
      got = m2pt_safetensors_raw(st, i, &raw, &nbytes);
      /* Use the bytes, as a caller would (ids 0..63 sum to 2016). */
      int64_t sum = 0, id;
      for (size_t k = 0; got == M2PT_OK && k < nbytes / 8; k++) {
        memcpy(&id, (const unsigned char *)raw + 8 * k, 8);
        sum += id;
      }
      if (got == M2PT_OK && sum != 2016)
        return 13;
    } else {
      float *dst = malloc(info.numel * sizeof *dst);
      got = m2pt_safetensors_read_f32(st, i, dst, info.numel);
      free(dst);
    }
    void *copy = malloc(info.nbytes);
    const m2pt_status got_raw = m2pt_safetensors_read_raw(st, i, copy, info.nbytes);
    const int named = message_has(path);
    free(copy);
    if (got != M2PT_ERR_IO || got_raw != M2PT_ERR_IO)
      return 20 + (int)i;
    if (!named)
      return 40;
  }
  m2pt_safetensors_close(st);
  return 0;
}

/* A checkpoint truncated, extended or rewritten after it was opened: every
 * later read fails with M2PT_ERR_IO naming the file; none faults (a mapping
 * whose file shrinks raises SIGBUS). Each case runs in a child, so a signal
 * is reported instead of ending the suite. */
static void changed_file_fails_cleanly(void **state)
{
  (void)state;
  enum { N = 4096 };
  float *f32 = test_alloc(N * sizeof *f32);
  uint16_t half[N];
  int64_t ids[64];
  test_fill(f32, N, 11);
  for (size_t i = 0; i < N; i++)
    half[i] = (uint16_t)(0x3C00u + (i % 512));
  for (size_t i = 0; i < 64; i++)
    ids[i] = (int64_t)i;
  static const char *const names[CHANGES] = {"to zero", "into the header", "into the data",
                                             "grown", "rewritten"};
  for (int c = 0; c < CHANGES; c++) {
    const char *path = test_tmp_path("changing.safetensors");
    m2pt_safetensors_writer *w = NULL;
    const size_t s1 = N, sid = 64;
    assert_ok(NULL, m2pt_safetensors_writer_create(path, &w));
    assert_ok(NULL, m2pt_safetensors_writer_add(w, "w", M2PT_DTYPE_F32, 1, &s1, f32, N * 4));
    assert_ok(NULL, m2pt_safetensors_writer_add(w, "h", M2PT_DTYPE_F16, 1, &s1, half, N * 2));
    assert_ok(NULL, m2pt_safetensors_writer_add(w, "b", M2PT_DTYPE_BF16, 1, &s1, half, N * 2));
    assert_ok(NULL, m2pt_safetensors_writer_add(w, "ids", M2PT_DTYPE_I64, 1, &sid, ids,
                                                sizeof ids));
    assert_ok(NULL, m2pt_safetensors_writer_finish(w));
    m2pt_safetensors_writer_destroy(w);
    /* Timestamps have the kernel's tick as resolution: date the file back so
     * a rewrite right after it shows in the modification time. */
    struct timespec past[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    assert_int_equal(utimensat(AT_FDCWD, path, past, 0), 0);

    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      /* cmocka's handlers would carry on with the suite in the child. */
      signal(SIGBUS, SIG_DFL);
      signal(SIGSEGV, SIG_DFL);
      _exit(read_after_change(path, (change)c));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
      print_error("file %s: the reader was killed by signal %d\n", names[c], WTERMSIG(status));
      fail();
    }
    if (WEXITSTATUS(status) != 0) {
      print_error("file %s: the reader's check %d failed\n", names[c], WEXITSTATUS(status));
      fail();
    }
    unlink(path);
  }
  free(f32);
}

/* ---- .npy --------------------------------------------------------------- */

static void expect_npy_values(const char *path, size_t ndim, const size_t *shape,
                              const float *want)
{
  float *data = NULL;
  size_t got_ndim = 0, got_shape[M2PT_IO_MAX_DIMS];
  assert_ok(NULL, m2pt_npy_read(path, &data, &got_ndim, got_shape));
  assert_non_null(data);
  assert_int_equal(got_ndim, ndim);
  size_t numel = 1;
  for (size_t d = 0; d < ndim; d++) {
    assert_int_equal(got_shape[d], shape[d]);
    numel *= shape[d];
  }
  for (size_t d = ndim; d < M2PT_IO_MAX_DIMS; d++)
    assert_int_equal(got_shape[d], 0);
  if (numel)
    assert_memory_equal(data, want, numel * sizeof *want);
  m2pt_free(data);
}

static void npy_round_trip_v1(void **state)
{
  (void)state;
  float values[256];
  test_fill(values, 256, 11);
  values[0] = -0.0f;
  values[1] = INFINITY;
  values[2] = 0x1p-149f;
  static const struct {
    size_t ndim;
    size_t shape[8];
  } cases[] = {
    {1, {256}},
    {2, {16, 16}},
    {3, {4, 8, 8}},
    {8, {2, 2, 2, 2, 2, 2, 2, 2}},
    {2, {3, 0}},
    {1, {1}},
  };
  const char *path = test_tmp_path("v1.npy");
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    assert_ok(NULL, m2pt_npy_write(path, values, cases[k].ndim, cases[k].shape));
    expect_npy_values(path, cases[k].ndim, cases[k].shape, values);
    /* numpy's layout: magic, version 1.0, data at a multiple of 64. */
    size_t size;
    unsigned char *b = test_read_file(path, &size);
    assert_memory_equal(b, "\x93NUMPY\x01\x00", 8);
    const size_t hlen = (size_t)(b[8] | b[9] << 8);
    assert_int_equal((10 + hlen) % 64, 0);
    assert_int_equal(b[10 + hlen - 1], '\n');
    free(b);
  }
  assert_int_equal(count_files("v1.npy"), 1); /* no temporary left */
  /* The exact header numpy writes for the same array. */
  const size_t shape[3] = {2, 3, 4};
  assert_ok(NULL, m2pt_npy_write(path, values, 3, shape));
  size_t size;
  unsigned char *b = test_read_file(path, &size);
  static const char want[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }";
  assert_memory_equal(b + 10, want, sizeof want - 1);
  free(b);
}

/* Rewrites a version 1.0 file as 2.0 (4-byte header length, same dict). */
static unsigned char *to_v2(const unsigned char *v1, size_t size, size_t *out_size)
{
  const size_t hlen = (size_t)(v1[8] | v1[9] << 8);
  const size_t dict = hlen - 1; /* without '\n' */
  size_t hlen2 = dict + 1;
  hlen2 += (64 - (12 + hlen2) % 64) % 64;
  *out_size = 12 + hlen2 + (size - 10 - hlen);
  unsigned char *b = test_alloc(*out_size);
  memcpy(b, "\x93NUMPY\x02\x00", 8);
  for (int i = 0; i < 4; i++)
    b[8 + i] = (unsigned char)(hlen2 >> (8 * i));
  memcpy(b + 12, v1 + 10, dict);
  memset(b + 12 + dict, ' ', hlen2 - dict);
  b[12 + hlen2 - 1] = '\n';
  memcpy(b + 12 + hlen2, v1 + 10 + hlen, size - 10 - hlen);
  return b;
}

static void npy_round_trip_v2(void **state)
{
  (void)state;
  float values[60];
  test_fill(values, 60, 5);
  const size_t shape[3] = {3, 4, 5};
  const char *path = test_tmp_path("v2src.npy");
  assert_ok(NULL, m2pt_npy_write(path, values, 3, shape));
  size_t size, size2;
  unsigned char *v1 = test_read_file(path, &size);
  unsigned char *v2 = to_v2(v1, size, &size2);
  const char *path2 = test_tmp_path("v2.npy");
  test_write_file(path2, v2, size2);
  expect_npy_values(path2, 3, shape, values);

  float *data = NULL;
  size_t ndim, got[M2PT_IO_MAX_DIMS];
  assert_ok(NULL, m2pt_npy_read_memory(v2, size2, &data, &ndim, got));
  assert_int_equal(ndim, 3);
  assert_memory_equal(data, values, sizeof values);
  m2pt_free(data);
  free(v1);
  free(v2);
}

static void npy_reference_files(void **state)
{
  (void)state;
  float want[24];
  for (int i = 0; i < 24; i++)
    want[i] = (float)i * 0.5f;
  const size_t s1[3] = {2, 3, 4};
  expect_npy_values(IO_DATA "/reference_v1.npy", 3, s1, want);
  for (int i = 0; i < 6; i++)
    want[i] = (float)i * -1.5f;
  const size_t s2[1] = {6};
  expect_npy_values(IO_DATA "/reference_v2.npy", 1, s2, want);

  float *data = (float *)&data;
  size_t ndim, shape[M2PT_IO_MAX_DIMS];
  assert_status(NULL, m2pt_npy_read(IO_DATA "/fortran.npy", &data, &ndim, shape),
                M2PT_ERR_UNSUPPORTED);
  assert_null(data);
  assert_message_has("Fortran");
  assert_message_has("fortran.npy");
  assert_status(NULL, m2pt_npy_read(IO_DATA "/float64.npy", &data, &ndim, shape),
                M2PT_ERR_UNSUPPORTED);
  assert_message_has("'<f8'");
  assert_status(NULL, m2pt_npy_read(IO_DATA "/bigendian.npy", &data, &ndim, shape),
                M2PT_ERR_UNSUPPORTED);
  assert_message_has("'>f4'");
  assert_null(data);
}

/* A .npy file with the given version bytes and header dict (padded and
 * newline-ended as numpy does, unless raw), followed by `data` bytes. */
static unsigned char *npy_file(int major, const char *dict, int raw, size_t data, size_t *size)
{
  const size_t prefix = major == 1 ? 10 : 12;
  size_t hlen = strlen(dict);
  if (!raw) {
    hlen += 1;
    hlen += (64 - (prefix + hlen) % 64) % 64;
  }
  *size = prefix + hlen + data;
  unsigned char *b = test_alloc(*size);
  memcpy(b, "\x93NUMPY", 6);
  b[6] = (unsigned char)major;
  b[7] = 0;
  for (size_t i = 0; i < prefix - 8; i++)
    b[8 + i] = (unsigned char)(hlen >> (8 * i));
  memset(b + prefix, ' ', hlen);
  memcpy(b + prefix, dict, strlen(dict));
  if (!raw)
    b[prefix + hlen - 1] = '\n';
  memset(b + prefix + hlen, 0, data);
  return b;
}

static void expect_npy(const unsigned char *b, size_t size, m2pt_status want, const char *needle,
                       const char *what)
{
  float *data = (float *)&data;
  size_t ndim, shape[M2PT_IO_MAX_DIMS];
  const m2pt_status got = m2pt_npy_read_memory(b, size, &data, &ndim, shape);
  if (got != want || (want != M2PT_OK && (data || !message_has(needle)))) {
    print_error("%s (memory): %s, want %s: %s\n", what, m2pt_status_string(got),
                m2pt_status_string(want), m2pt_last_error(NULL));
    fail();
  }
  m2pt_free(data);
  const char *path = test_tmp_path("hostile.npy");
  test_write_file(path, b, size);
  data = (float *)&data;
  const m2pt_status got_file = m2pt_npy_read(path, &data, &ndim, shape);
  if (got_file != want ||
      (want != M2PT_OK && (data || !message_has(needle) || !message_has(path)))) {
    print_error("%s (file): %s, want %s: %s\n", what, m2pt_status_string(got_file),
                m2pt_status_string(want), m2pt_last_error(NULL));
    fail();
  }
  m2pt_free(data);
}

static void expect_dict(const char *dict, size_t data, m2pt_status want, const char *needle)
{
  size_t size;
  unsigned char *b = npy_file(1, dict, 0, data, &size);
  expect_npy(b, size, want, needle, dict);
  free(b);
}

#define D(shape) "{'descr': '<f4', 'fortran_order': False, 'shape': " shape ", }"

static void npy_rejects(void **state)
{
  (void)state;
  size_t size;
  unsigned char *b;
  /* Framing: magic, version, header length, newline. */
  expect_npy((const unsigned char *)"\x93NUMPY\x01", 7, M2PT_ERR_FORMAT, "magic", "7 bytes");
  expect_npy((const unsigned char *)"", 0, M2PT_ERR_FORMAT, "magic", "empty");
  b = npy_file(1, D("(2,)"), 0, 8, &size);
  b[1] = 'n';
  expect_npy(b, size, M2PT_ERR_FORMAT, "magic", "bad magic");
  b[1] = 'N';
  b[6] = 3;
  expect_npy(b, size, M2PT_ERR_UNSUPPORTED, "version 3.0", "version 3");
  b[6] = 1;
  b[7] = 1;
  expect_npy(b, size, M2PT_ERR_UNSUPPORTED, "version 1.1", "version 1.1");
  b[7] = 0;
  b[8] = 0xFF;
  b[9] = 0xFF;
  expect_npy(b, size, M2PT_ERR_FORMAT, "runs past the end", "header length");
  free(b);
  b = npy_file(2, D("(2,)"), 0, 8, &size);
  expect_npy(b, 11, M2PT_ERR_FORMAT, "truncated in its preamble", "v2 preamble");
  free(b);
  b = npy_file(1, D("(2,)"), 1, 8, &size);
  expect_npy(b, size, M2PT_ERR_FORMAT, "newline", "no newline");
  free(b);
  /* Data: truncated, trailing. */
  expect_dict(D("(2, 3)"), 24, M2PT_OK, "");
  expect_dict(D("(2, 3)"), 20, M2PT_ERR_FORMAT, "truncated");
  expect_dict(D("(2, 3)"), 0, M2PT_ERR_FORMAT, "truncated");
  expect_dict(D("(2, 3)"), 28, M2PT_ERR_FORMAT, "trailing bytes");
  expect_dict(D("(0,)"), 0, M2PT_OK, "");
  /* Unsupported but well-formed. */
  expect_dict("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16,
              M2PT_ERR_UNSUPPORTED, "'<f8'");
  expect_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", 2,
              M2PT_ERR_UNSUPPORTED, "'|u1'");
  expect_dict("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8,
              M2PT_ERR_UNSUPPORTED, "structured");
  expect_dict("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24,
              M2PT_ERR_UNSUPPORTED, "Fortran");
  expect_dict(D("()"), 4, M2PT_ERR_UNSUPPORTED, "0-d");
  expect_dict(D("(1, 1, 1, 1, 1, 1, 1, 1, 1)"), 4, M2PT_ERR_UNSUPPORTED, "more than 8");
  /* Malformed dicts. */
  expect_dict("['descr', '<f4']", 8, M2PT_ERR_FORMAT, "not a dict");
  expect_dict("{'descr': '<f4', 'shape': (2,), }", 8, M2PT_ERR_FORMAT, "needs 'descr'");
  expect_dict("{'descr': '<f4', 'fortran_order': False, }", 8, M2PT_ERR_FORMAT, "needs");
  expect_dict("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8,
              M2PT_ERR_FORMAT, "'descr' repeated");
  expect_dict("{'descr': '<f4', 'fortran_order': False, 'fortran_order': False, 'shape': (2,)}",
              8, M2PT_ERR_FORMAT, "'fortran_order' repeated");
  expect_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'shape': (2,)}", 8,
              M2PT_ERR_FORMAT, "'shape' repeated");
  expect_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8,
              M2PT_ERR_FORMAT, "unknown key");
  expect_dict("{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}", 8, M2PT_ERR_FORMAT,
              "missing ','");
  expect_dict("{'descr' '<f4', 'fortran_order': False, 'shape': (2,)}", 8, M2PT_ERR_FORMAT,
              "missing ':'");
  expect_dict("{descr: '<f4', 'fortran_order': False, 'shape': (2,)}", 8, M2PT_ERR_FORMAT,
              "plain string");
  expect_dict("{'des\\x63r': '<f4', 'fortran_order': False, 'shape': (2,)}", 8, M2PT_ERR_FORMAT,
              "plain string");
  expect_dict("{'descr': 4, 'fortran_order': False, 'shape': (2,)}", 8, M2PT_ERR_FORMAT,
              "'descr' is not a string");
  expect_dict("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", 8, M2PT_ERR_FORMAT,
              "neither True nor False");
  expect_dict("{'descr': '<f4', 'fortran_order': Falsehood, 'shape': (2,)}", 8, M2PT_ERR_FORMAT,
              "missing ','");
  expect_dict(D("(2)"), 8, M2PT_ERR_FORMAT, "not a tuple");
  expect_dict(D("[2]"), 8, M2PT_ERR_FORMAT, "not a tuple");
  expect_dict(D("(-2,)"), 8, M2PT_ERR_FORMAT, "non-negative integer");
  expect_dict(D("(02,)"), 8, M2PT_ERR_FORMAT, "non-negative integer");
  expect_dict(D("(2.0,)"), 8, M2PT_ERR_FORMAT, "malformed");
  expect_dict(D("(2,,)"), 8, M2PT_ERR_FORMAT, "non-negative integer");
  expect_dict(D("(2 3)"), 24, M2PT_ERR_FORMAT, "malformed");
  expect_dict(D("(99999999999999999999999,)"), 8, M2PT_ERR_FORMAT, "non-negative integer");
  expect_dict(D("(4294967296, 4294967296, 4294967296)"), 8, M2PT_ERR_FORMAT, "overflows");
  expect_dict(D("(4611686018427387904,)"), 8, M2PT_ERR_FORMAT, "overflows");
  expect_dict(D("(2,)") "x", 8, M2PT_ERR_FORMAT, "after the dict");
  expect_dict(D("(2,)") "}", 8, M2PT_ERR_FORMAT, "after the dict");
  expect_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8, M2PT_OK, "");
  expect_dict("{\"descr\": \"<f4\", \"shape\": (2,), \"fortran_order\": False}", 8, M2PT_OK,
              "");
  /* A newline inside the dict (before the final one) is not padding. */
  expect_dict(D("(2,)") "\n", 8, M2PT_ERR_FORMAT, "after the dict");
}

#undef D

static void npy_bad_arguments(void **state)
{
  (void)state;
  float *data = (float *)&data, v[4] = {0};
  size_t ndim, shape[M2PT_IO_MAX_DIMS];
  const size_t s1[1] = {4}, s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 4};
  const size_t huge[2] = {SIZE_MAX / 2, 4};
  assert_status(NULL, m2pt_npy_read(NULL, &data, &ndim, shape), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(data);
  assert_status(NULL, m2pt_npy_read("x", NULL, &ndim, shape), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_read("x", &data, NULL, shape), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_read_memory(NULL, 4, &data, &ndim, shape),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_read(test_tmp_path("missing.npy"), &data, &ndim, shape), M2PT_ERR_IO);
  assert_message_has("missing.npy");
  assert_status(NULL, m2pt_npy_read(test_tmp_dir(), &data, &ndim, shape), M2PT_ERR_IO);

  const char *path = test_tmp_path("w.npy");
  assert_status(NULL, m2pt_npy_write(NULL, v, 1, s1), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_write(path, v, 1, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_write(path, v, 0, s1), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_write(path, v, 9, s9), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_write(path, NULL, 1, s1), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_write(path, v, 2, huge), M2PT_ERR_INVALID_ARGUMENT);
  assert_false(file_exists(path));
  char missing[1024];
  snprintf(missing, sizeof missing, "%s/no/dir/w.npy", test_tmp_dir());
  assert_status(NULL, m2pt_npy_write(missing, v, 1, s1), M2PT_ERR_IO);
  assert_message_has("no/dir/w.npy");
}

/* ---- integer .npy --------------------------------------------------------- */

/* Reads `path` with m2pt_npy_read_any and m2pt_npy_read_i64 and checks both
 * against the expected dtype, shape and values (want: the values widened). */
static void expect_int_file(const char *path, m2pt_dtype dtype, size_t ndim, const size_t *shape,
                            const int64_t *want)
{
  m2pt_npy_array a;
  assert_ok(NULL, m2pt_npy_read_any(path, &a));
  assert_int_equal(a.dtype, dtype);
  assert_int_equal(a.ndim, ndim);
  size_t numel = 1;
  for (size_t d = 0; d < ndim; d++) {
    assert_int_equal(a.shape[d], shape[d]);
    numel *= shape[d];
  }
  for (size_t d = ndim; d < M2PT_IO_MAX_DIMS; d++)
    assert_int_equal(a.shape[d], 0);
  assert_int_equal(a.numel, numel);
  assert_non_null(a.data);
  for (size_t i = 0; i < numel; i++) {
    int64_t v;
    switch (dtype) {
    case M2PT_DTYPE_I64: v = ((const int64_t *)a.data)[i]; break;
    case M2PT_DTYPE_I32: v = ((const int32_t *)a.data)[i]; break;
    case M2PT_DTYPE_I8: v = ((const int8_t *)a.data)[i]; break;
    default: v = ((const uint8_t *)a.data)[i]; break; /* U8, BOOL */
    }
    assert_true(v == want[i]);
  }
  m2pt_free(a.data);

  int64_t *wide = NULL;
  size_t got_ndim = 0, got_shape[M2PT_IO_MAX_DIMS];
  assert_ok(NULL, m2pt_npy_read_i64(path, &wide, &got_ndim, got_shape));
  assert_int_equal(got_ndim, ndim);
  assert_memory_equal(got_shape, a.shape, sizeof got_shape);
  if (numel)
    assert_memory_equal(wide, want, numel * sizeof *want);
  m2pt_free(wide);
}

/* Files np.save wrote (tools/make_io_fixtures.py). */
static void npy_int_reference_files(void **state)
{
  (void)state;
  const int64_t ids[10] = {0,           1,           -1,        INT32_MAX, INT32_MIN,
                           1LL << 40, -(1LL << 40), INT64_MAX, INT64_MIN, 101};
  const size_t s25[2] = {2, 5}, s5[1] = {5}, s23[2] = {2, 3}, s3[1] = {3}, s22[2] = {2, 2};
  expect_int_file(IO_DATA "/ids_i8.npy", M2PT_DTYPE_I64, 2, s25, ids);
  expect_int_file(IO_DATA "/ids_i4_v2.npy", M2PT_DTYPE_I32, 1, s5, ids);
  const int64_t i1[6] = {1, 0, -128, 127, -1, 0}, u1[3] = {0, 1, 255}, b1[4] = {1, 0, 0, 1};
  expect_int_file(IO_DATA "/mask_i1.npy", M2PT_DTYPE_I8, 2, s23, i1);
  expect_int_file(IO_DATA "/mask_u1.npy", M2PT_DTYPE_U8, 1, s3, u1);
  expect_int_file(IO_DATA "/mask_b1.npy", M2PT_DTYPE_BOOL, 2, s22, b1);

  /* read_any reads f32 too; the f32 and int64 readers keep to their kinds. */
  m2pt_npy_array a;
  assert_ok(NULL, m2pt_npy_read_any(IO_DATA "/reference_v1.npy", &a));
  assert_int_equal(a.dtype, M2PT_DTYPE_F32);
  assert_int_equal(a.numel, 24);
  assert_true(((const float *)a.data)[3] == 1.5f);
  m2pt_free(a.data);
  int64_t *wide = (int64_t *)&wide;
  size_t ndim, shape[M2PT_IO_MAX_DIMS];
  assert_status(NULL, m2pt_npy_read_i64(IO_DATA "/reference_v1.npy", &wide, &ndim, shape),
                M2PT_ERR_UNSUPPORTED);
  assert_null(wide);
  assert_message_has("'<f4'");
  assert_message_has("reference_v1.npy");
  float *f = (float *)&f;
  assert_status(NULL, m2pt_npy_read(IO_DATA "/ids_i8.npy", &f, &ndim, shape),
                M2PT_ERR_UNSUPPORTED);
  assert_null(f);
  assert_message_has("'<i8'");

  /* Big-endian: refused, saying so and how to convert. */
  assert_status(NULL, m2pt_npy_read_i64(IO_DATA "/bigendian_i8.npy", &wide, &ndim, shape),
                M2PT_ERR_UNSUPPORTED);
  assert_null(wide);
  assert_message_has("bigendian_i8.npy");
  assert_message_has("'>i8' is big-endian");
  assert_message_has("astype('<i8')");
  memset(&a, 0xAB, sizeof a);
  assert_status(NULL, m2pt_npy_read_any(IO_DATA "/bigendian_i8.npy", &a), M2PT_ERR_UNSUPPORTED);
  assert_null(a.data);
  assert_int_equal(a.ndim, 0);
  assert_message_has("big-endian");
  assert_status(NULL, m2pt_npy_read_any(IO_DATA "/float64.npy", &a), M2PT_ERR_UNSUPPORTED);
  assert_message_has("'<f8'");
  assert_status(NULL, m2pt_npy_read_any(IO_DATA "/fortran.npy", &a), M2PT_ERR_UNSUPPORTED);
  assert_message_has("Fortran");
}

static void npy_i64_round_trip(void **state)
{
  (void)state;
  int64_t values[256];
  for (int i = 0; i < 256; i++)
    values[i] = (int64_t)((uint64_t)i * 0x9E3779B97F4A7C15u); /* both signs, all bytes */
  values[0] = INT64_MIN;
  values[1] = INT64_MAX;
  static const struct {
    size_t ndim;
    size_t shape[8];
  } cases[] = {
    {1, {256}}, {2, {16, 16}}, {8, {2, 2, 2, 2, 2, 2, 2, 2}}, {2, {3, 0}}, {1, {1}},
  };
  const char *path = test_tmp_path("i64.npy");
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    assert_ok(NULL, m2pt_npy_write_i64(path, values, cases[k].ndim, cases[k].shape));
    expect_int_file(path, M2PT_DTYPE_I64, cases[k].ndim, cases[k].shape, values);
    size_t size;
    unsigned char *b = test_read_file(path, &size);
    assert_memory_equal(b, "\x93NUMPY\x01\x00", 8);
    assert_int_equal((10 + (size_t)(b[8] | b[9] << 8)) % 64, 0);
    free(b);
  }
  assert_int_equal(count_files("i64.npy"), 1);
  /* Byte for byte what np.save wrote for the same array. */
  const int64_t ids[10] = {0,           1,           -1,        INT32_MAX, INT32_MIN,
                           1LL << 40, -(1LL << 40), INT64_MAX, INT64_MIN, 101};
  const size_t shape[2] = {2, 5};
  assert_ok(NULL, m2pt_npy_write_i64(path, ids, 2, shape));
  size_t size, ref_size;
  unsigned char *ours = test_read_file(path, &size);
  unsigned char *ref = test_read_file(IO_DATA "/ids_i8.npy", &ref_size);
  assert_int_equal(size, ref_size);
  assert_memory_equal(ours, ref, size);
  free(ours);
  free(ref);
  /* Version 2.0 of the same file reads the same. */
  unsigned char *v1 = test_read_file(path, &size);
  size_t size2;
  unsigned char *v2 = to_v2(v1, size, &size2);
  int64_t *data = NULL;
  size_t ndim, got[M2PT_IO_MAX_DIMS];
  assert_ok(NULL, m2pt_npy_read_i64_memory(v2, size2, &data, &ndim, got));
  assert_int_equal(ndim, 2);
  assert_memory_equal(data, ids, sizeof ids);
  m2pt_free(data);
  m2pt_npy_array a;
  assert_ok(NULL, m2pt_npy_read_any_memory(v2, size2, &a));
  assert_int_equal(a.dtype, M2PT_DTYPE_I64);
  assert_memory_equal(a.data, ids, sizeof ids);
  m2pt_free(a.data);
  free(v1);
  free(v2);
}

/* Like expect_npy, for the integer readers: read_any and read_i64, from
 * memory and from a file, all four must agree. */
static void expect_int_npy(const unsigned char *b, size_t size, m2pt_status want,
                           const char *needle, const char *what)
{
  const char *path = test_tmp_path("hostile-int.npy");
  test_write_file(path, b, size);
  for (int k = 0; k < 4; k++) {
    m2pt_status got;
    void *data;
    if (k < 2) {
      m2pt_npy_array a;
      memset(&a, 0xAB, sizeof a);
      got = k ? m2pt_npy_read_any(path, &a) : m2pt_npy_read_any_memory(b, size, &a);
      data = a.data;
      if (got != M2PT_OK && (a.ndim || a.numel || a.shape[0]))
        data = &a; /* a failure must zero the whole struct */
    } else {
      int64_t *d = (int64_t *)&d;
      size_t ndim, shape[M2PT_IO_MAX_DIMS];
      got = k == 3 ? m2pt_npy_read_i64(path, &d, &ndim, shape)
                   : m2pt_npy_read_i64_memory(b, size, &d, &ndim, shape);
      data = d;
    }
    const int from_file = k & 1;
    if (got != want ||
        (want != M2PT_OK &&
         (data || !message_has(needle) || (from_file && !message_has(path))))) {
      print_error("%s (%s, %s): %s, want %s: %s\n", what, k < 2 ? "read_any" : "read_i64",
                  from_file ? "file" : "memory", m2pt_status_string(got),
                  m2pt_status_string(want), m2pt_last_error(NULL));
      fail();
    }
    if (got == M2PT_OK)
      m2pt_free(data);
  }
}

static void expect_int_dict(const char *dict, size_t data, m2pt_status want, const char *needle)
{
  size_t size;
  unsigned char *b = npy_file(1, dict, 0, data, &size);
  expect_int_npy(b, size, want, needle, dict);
  free(b);
}

#define DT(descr, shape) "{'descr': '" descr "', 'fortran_order': False, 'shape': " shape ", }"

static void npy_int_rejects(void **state)
{
  (void)state;
  /* Exact data length for each element size. */
  expect_int_dict(DT("<i8", "(2, 3)"), 48, M2PT_OK, "");
  expect_int_dict(DT("<i8", "(2, 3)"), 47, M2PT_ERR_FORMAT, "truncated");
  expect_int_dict(DT("<i8", "(2, 3)"), 24, M2PT_ERR_FORMAT, "truncated");
  expect_int_dict(DT("<i8", "(2, 3)"), 56, M2PT_ERR_FORMAT, "trailing bytes");
  expect_int_dict(DT("<i4", "(2, 3)"), 24, M2PT_OK, "");
  expect_int_dict(DT("<i4", "(2, 3)"), 48, M2PT_ERR_FORMAT, "trailing bytes");
  expect_int_dict(DT("<i4", "(2, 3)"), 23, M2PT_ERR_FORMAT, "truncated");
  expect_int_dict(DT("|u1", "(5,)"), 5, M2PT_OK, "");
  expect_int_dict(DT("|u1", "(5,)"), 6, M2PT_ERR_FORMAT, "trailing bytes");
  expect_int_dict(DT("|i1", "(5,)"), 4, M2PT_ERR_FORMAT, "truncated");
  expect_int_dict(DT("|b1", "(0,)"), 0, M2PT_OK, "");
  expect_int_dict(DT("<i8", "(0, 7)"), 0, M2PT_OK, "");
  expect_int_dict(DT("<i8", "(2305843009213693952,)"), 8, M2PT_ERR_FORMAT, "overflows");
  /* Types numpy writes that are not read here, and spellings numpy does not
   * write ('<i1': one-byte types carry '|'). */
  static const char *const others[] = {"<i2", "<u2", "<u4", "<u8", "<f8", "<f2", "<c8",
                                       "<i1", "<u1", "<b1", "|i4", "=i8", "i8", "<i8 ",
                                       "<M8[ns]", "|S3", "<U3", "|O", "|V8"};
  char dict[128];
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
    char quoted[16];
    snprintf(dict, sizeof dict, DT("%s", "(2,)"), others[i]);
    snprintf(quoted, sizeof quoted, "'%s'", others[i]);
    expect_int_dict(dict, 16, M2PT_ERR_UNSUPPORTED, quoted);
  }
  expect_int_dict(DT("<i2", "(2,)"), 4, M2PT_ERR_UNSUPPORTED,
                  "'<i8', '<i4', '|i1', '|u1', '|b1'");
  /* Big-endian twins of each multi-byte type read here. */
  expect_int_dict(DT(">i8", "(2,)"), 16, M2PT_ERR_UNSUPPORTED, "astype('<i8')");
  expect_int_dict(DT(">i4", "(2,)"), 8, M2PT_ERR_UNSUPPORTED, "astype('<i4')");
  expect_int_dict(DT(">f4", "(2,)"), 8, M2PT_ERR_UNSUPPORTED, "astype('<f4')");
  expect_int_dict(DT(">i2", "(2,)"), 4, M2PT_ERR_UNSUPPORTED, "is not supported");
  /* The rest of the header as strictly as for f32. */
  expect_int_dict("{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }", 48,
                  M2PT_ERR_UNSUPPORTED, "Fortran");
  expect_int_dict(DT("<i8", "()"), 8, M2PT_ERR_UNSUPPORTED, "0-d");
  expect_int_dict(DT("|b1", "(1, 1, 1, 1, 1, 1, 1, 1, 1)"), 1, M2PT_ERR_UNSUPPORTED,
                  "more than 8");
  expect_int_dict(DT("<i8", "(2)"), 16, M2PT_ERR_FORMAT, "not a tuple");
  expect_int_dict("{'descr': '<i8', 'shape': (2,), }", 16, M2PT_ERR_FORMAT, "needs");
  expect_int_dict("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), 'x': 1}", 16,
                  M2PT_ERR_FORMAT, "unknown key");
  expect_int_dict(DT("<i8", "(2,)") "x", 16, M2PT_ERR_FORMAT, "after the dict");

  /* Bool bytes other than 0 and 1 are malformed; the others take any byte. */
  size_t size;
  unsigned char *b = npy_file(1, DT("|b1", "(4,)"), 0, 4, &size);
  b[size - 4] = 1;
  expect_int_npy(b, size, M2PT_OK, "", "bool 1");
  b[size - 2] = 2;
  expect_int_npy(b, size, M2PT_ERR_FORMAT, "bool element 2 is byte 2", "bool 2");
  b[size - 2] = 0xFF;
  expect_int_npy(b, size, M2PT_ERR_FORMAT, "not 0 or 1", "bool 255");
  free(b);
}

#undef DT

static void npy_int_bad_arguments(void **state)
{
  (void)state;
  int64_t *data = (int64_t *)&data, v[4] = {0};
  size_t ndim, shape[M2PT_IO_MAX_DIMS];
  const size_t s1[1] = {4}, s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 4};
  const size_t huge[2] = {SIZE_MAX / 4, 4};
  assert_status(NULL, m2pt_npy_read_i64(NULL, &data, &ndim, shape), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(data);
  assert_status(NULL, m2pt_npy_read_i64("x", NULL, &ndim, shape), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_read_i64("x", &data, NULL, shape), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_read_i64("x", &data, &ndim, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_read_i64_memory(NULL, 4, &data, &ndim, shape),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_read_i64(test_tmp_path("missing.npy"), &data, &ndim, shape),
                M2PT_ERR_IO);
  assert_message_has("missing.npy");
  m2pt_npy_array a;
  memset(&a, 0xAB, sizeof a);
  assert_status(NULL, m2pt_npy_read_any(NULL, &a), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(a.data);
  assert_status(NULL, m2pt_npy_read_any("x", NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_read_any_memory(NULL, 4, &a), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_read_any_memory("", 0, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_read_any(test_tmp_dir(), &a), M2PT_ERR_IO);
  assert_null(a.data);

  const char *path = test_tmp_path("w64.npy");
  assert_status(NULL, m2pt_npy_write_i64(NULL, v, 1, s1), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_write_i64(path, v, 1, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_write_i64(path, v, 0, s1), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_write_i64(path, v, 9, s9), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_write_i64(path, NULL, 1, s1), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_npy_write_i64(path, v, 2, huge), M2PT_ERR_INVALID_ARGUMENT);
  assert_false(file_exists(path));
}

/* Inputs the fuzzers once found troublesome (tests/data/io/regress-*):
 * each must be handled without a crash, a leak or a sanitizer report. */
static void fuzz_regressions(void **state)
{
  (void)state;
  DIR *d = opendir(IO_DATA);
  assert_non_null(d);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, "regress-", 8) != 0)
      continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", IO_DATA, e->d_name);
    size_t size;
    unsigned char *b = test_read_file(path, &size);
    m2pt_safetensors *st = NULL;
    if (m2pt_safetensors_open_memory(b, size, &st) == M2PT_OK) {
      for (size_t i = 0; i < m2pt_safetensors_count(st); i++) {
        m2pt_safetensors_info info;
        assert_ok(NULL, m2pt_safetensors_info_at(st, i, &info));
        float *f = test_alloc(info.numel * sizeof *f);
        m2pt_safetensors_read_f32(st, i, f, info.numel);
        free(f);
      }
      m2pt_safetensors_close(st);
    }
    float *data = NULL;
    size_t ndim, shape[M2PT_IO_MAX_DIMS];
    if (m2pt_npy_read_memory(b, size, &data, &ndim, shape) == M2PT_OK)
      m2pt_free(data);
    int64_t *ids = NULL;
    if (m2pt_npy_read_i64_memory(b, size, &ids, &ndim, shape) == M2PT_OK)
      m2pt_free(ids);
    m2pt_npy_array a;
    if (m2pt_npy_read_any_memory(b, size, &a) == M2PT_OK)
      m2pt_free(a.data);
    free(b);
  }
  closedir(d);
}

int main(int argc, char **argv)
{
  if (test_enter_data_dir(argc, argv, M2PT_IO_DATA) != 0)
    return 1;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(dtype_names),
    cmocka_unit_test(half_conversions),
    cmocka_unit_test(safetensors_round_trip),
    cmocka_unit_test(reference_safetensors),
    cmocka_unit_test(writer_matches_reference),
    cmocka_unit_test(writer_rejects),
    cmocka_unit_test(writer_is_atomic),
    cmocka_unit_test(output_through_symlinks),
    cmocka_unit_test(output_keeps_mode_owner_and_links),
    cmocka_unit_test(output_into_fifo),
    cmocka_unit_test(output_into_full_device),
    cmocka_unit_test(output_refusals),
    cmocka_unit_test(output_long_names),
    cmocka_unit_test(output_in_place_where_no_temporary),
    cmocka_unit_test_teardown(output_named_temporary, named_temporary_teardown),
    cmocka_unit_test(output_removes_stale_temporaries),
    cmocka_unit_test(reader_rejects_framing),
    cmocka_unit_test(reader_rejects_json),
    cmocka_unit_test(reader_rejects_entries),
    cmocka_unit_test(reader_rejects_sizes),
    cmocka_unit_test(reader_rejects_layout),
    cmocka_unit_test(reader_rejects_names_and_metadata),
    cmocka_unit_test(reader_bad_arguments),
    cmocka_unit_test(open_reads_only_the_header),
    cmocka_unit_test(changed_file_fails_cleanly),
    cmocka_unit_test(npy_round_trip_v1),
    cmocka_unit_test(npy_round_trip_v2),
    cmocka_unit_test(npy_reference_files),
    cmocka_unit_test(npy_rejects),
    cmocka_unit_test(npy_bad_arguments),
    cmocka_unit_test(npy_int_reference_files),
    cmocka_unit_test(npy_i64_round_trip),
    cmocka_unit_test(npy_int_rejects),
    cmocka_unit_test(npy_int_bad_arguments),
    cmocka_unit_test(fuzz_regressions),
  };
  return cmocka_run_group_tests(tests, make_tmp_dir, remove_tmp_dir);
}
