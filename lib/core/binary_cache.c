#include "binary_cache.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* For XXH3_state_t on the stack. */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "common/error.h"
#include "common/file_read.h"
#include "common/file_write.h"
#include "context_impl.h"
#include "m2pt/version.h"

/* Format 2 added the key: an entry copied or renamed over another's name is
 * another program, whole and well-formed, that the driver would build
 * without complaint. Format 1 entries fail the magic and are rebuilt. */
static const char cache_magic[8] = {'M', '2', 'P', 'T', 'B', 'I', 'N', '2'};
#define KEY_AT 8
#define SIZE_AT (KEY_AT + M2PT_CACHE_KEY_CHARS - 1)
#define HASH_AT (SIZE_AT + 8)
#define HEADER_BYTES (HASH_AT + 8) /* magic, key (hex), u64 payload size, u64 XXH3-64 */
/* Program binaries run from kilobytes to a few megabytes (PoCL keeps LLVM
 * bitcode and the compiled kernels); anything much larger is not ours. */
#define MAX_ENTRY_BYTES ((uint64_t)256 << 20)

static void hash_field(XXH3_state_t *state, const void *data, size_t length)
{
  /* Length first, so ("ab","c") and ("a","bc") differ. */
  const uint64_t len = length;
  XXH3_128bits_update(state, &len, sizeof len);
  XXH3_128bits_update(state, data, length);
}

static void hash_string(XXH3_state_t *state, const char *s)
{
  hash_field(state, s, strlen(s));
}

void m2pt_binary_cache_key(const m2pt_context *ctx, const char *source, size_t length,
                           const char *options, char key[M2PT_CACHE_KEY_CHARS])
{
  XXH3_state_t state;
  XXH3_INITSTATE(&state);
  XXH3_128bits_reset(&state);
  hash_string(&state, M2PT_VERSION_STRING);
  hash_string(&state, ctx->info.platform_name);
  hash_string(&state, ctx->info.platform_version);
  hash_string(&state, ctx->info.name);
  hash_string(&state, ctx->info.vendor);
  hash_string(&state, ctx->info.device_version);
  hash_string(&state, ctx->info.driver_version);
  hash_field(&state, source, length);
  hash_string(&state, options);
  const XXH128_hash_t h = XXH3_128bits_digest(&state);
  snprintf(key, M2PT_CACHE_KEY_CHARS, "%016llx%016llx", (unsigned long long)h.high64,
           (unsigned long long)h.low64);
}

void m2pt_binary_cache_path(const char *dir, const char *key, char *buf, size_t size)
{
  const int n = snprintf(buf, size, "%s/%s.bin", dir, key);
  if (n < 0 || (size_t)n >= size)
    buf[0] = '\0';
}

static void put_u64(unsigned char *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

m2pt_cache_lookup m2pt_binary_cache_read(const char *dir, const char *key,
                                         unsigned char **data, size_t *size)
{
  char path[4096];
  m2pt_binary_cache_path(dir, key, path, sizeof path);
  if (!path[0] || strlen(key) != M2PT_CACHE_KEY_CHARS - 1)
    return M2PT_CACHE_MISS;
  struct stat st;
  const int fd = m2pt_open_regular(path, MAX_ENTRY_BYTES, &st);
  if (fd < 0) /* a FIFO, a directory, a huge file: the writer renames over it */
    return errno == ENOENT ? M2PT_CACHE_MISS : M2PT_CACHE_CORRUPT;
  m2pt_cache_lookup result = M2PT_CACHE_CORRUPT;
  unsigned char header[HEADER_BYTES];
  unsigned char *payload = NULL;
  if (m2pt_read_at(fd, header, sizeof header, 0) != 0 ||
      memcmp(header, cache_magic, sizeof cache_magic) != 0 ||
      memcmp(header + KEY_AT, key, M2PT_CACHE_KEY_CHARS - 1) != 0)
    goto done;
  const uint64_t length = get_u64(header + SIZE_AT);
  /* The file must hold exactly the header and the announced payload. */
  if (length == 0 || (uint64_t)st.st_size != HEADER_BYTES + length)
    goto done;
  payload = malloc((size_t)length);
  if (!payload || m2pt_read_at(fd, payload, (size_t)length, HEADER_BYTES) != 0)
    goto done;
  if (XXH3_64bits(payload, (size_t)length) != get_u64(header + HASH_AT))
    goto done;
  *data = payload;
  *size = (size_t)length;
  payload = NULL;
  result = M2PT_CACHE_HIT;
done:
  free(payload);
  close(fd);
  return result;
}

m2pt_status m2pt_binary_cache_write(const char *dir, const char *key,
                                    const unsigned char *data, size_t size)
{
  char path[4096];
  m2pt_binary_cache_path(dir, key, path, sizeof path);
  if (!path[0])
    return m2pt_fail_thread(M2PT_ERR_IO, "%s: the cache directory's name is too long", dir);
  if (strlen(key) != M2PT_CACHE_KEY_CHARS - 1 || size == 0)
    return m2pt_fail_thread(M2PT_ERR_INVALID_ARGUMENT, "%s: a bad key or an empty binary", path);
  M2PT_TRY(m2pt_make_dirs(dir));
  unsigned char header[HEADER_BYTES];
  memcpy(header, cache_magic, sizeof cache_magic);
  memcpy(header + KEY_AT, key, M2PT_CACHE_KEY_CHARS - 1);
  put_u64(header + SIZE_AT, size);
  put_u64(header + HASH_AT, XXH3_64bits(data, size));
  /* Concurrent writers of one entry each rename a complete file; the last
   * one wins. */
  const m2pt_chunk chunks[2] = {{header, sizeof header}, {data, size}};
  return m2pt_replace_file(path, chunks, 2);
}
