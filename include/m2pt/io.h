/* Checkpoint files: safetensors and .npy readers and writers.
 *
 * These calls parse untrusted input. Every malformed file is rejected with a
 * status and a message in m2pt_last_error(NULL) (per thread; no context is
 * involved) that names the file and, where there is one, the tensor. A failed
 * call returns no object and leaks nothing. None of them needs an OpenCL
 * device. */
#ifndef M2PT_IO_H
#define M2PT_IO_H

#include <stddef.h>
#include <stdint.h>

#include "export.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most dimensions a checkpoint tensor or .npy array may have here. */
#define M2PT_IO_MAX_DIMS 8

/* Element types of safetensors files (their "dtype" strings). Only F32, F16
 * and BF16 convert to f32; the others can be listed, copied verbatim and
 * written back, so a checkpoint holding e.g. an I64 position-id buffer still
 * opens. Values are only ever appended. */
typedef enum m2pt_dtype {
  M2PT_DTYPE_F32 = 0,
  M2PT_DTYPE_F16,
  M2PT_DTYPE_BF16,
  M2PT_DTYPE_F64,
  M2PT_DTYPE_I64,
  M2PT_DTYPE_I32,
  M2PT_DTYPE_I16,
  M2PT_DTYPE_I8,
  M2PT_DTYPE_U64,
  M2PT_DTYPE_U32,
  M2PT_DTYPE_U16,
  M2PT_DTYPE_U8,
  M2PT_DTYPE_BOOL,
  M2PT_DTYPE_F8_E4M3,
  M2PT_DTYPE_F8_E5M2,
  M2PT_DTYPE_F8_E8M0,
} m2pt_dtype;

/* Bytes per element (1, 2, 4 or 8); 0 for a value outside the enum. */
M2PT_API size_t m2pt_dtype_size(m2pt_dtype dtype);

/* The safetensors name ("F32", "BF16", ...); NULL outside the enum. Static. */
M2PT_API const char *m2pt_dtype_name(m2pt_dtype dtype);

/* Frees memory the library allocated for the caller (the data of the
 * m2pt_npy_read* calls). Accepts NULL. */
M2PT_API void m2pt_free(void *ptr);

/* ---- safetensors reader ------------------------------------------------ */

/* An open safetensors file: an 8-byte little-endian header length N, N bytes
 * of JSON, then the data region. Read-only; may be shared between threads.
 * (Opens on several threads at once are safe except that cJSON records its
 * last parse error in a global, which m2pt never reads: thread sanitizers
 * may report that race.) */
typedef struct m2pt_safetensors m2pt_safetensors;

/* One tensor of an open file. */
typedef struct m2pt_safetensors_info {
  const char *name;       /* valid until m2pt_safetensors_close */
  m2pt_dtype dtype;
  size_t ndim;            /* 0 (a scalar) to M2PT_IO_MAX_DIMS */
  size_t shape[M2PT_IO_MAX_DIMS]; /* entries past ndim are 0 */
  size_t numel;           /* product of the shape; 1 for a scalar, 0 if a dimension is 0 */
  size_t nbytes;          /* numel · m2pt_dtype_size(dtype) */
  uint64_t offset;        /* where the tensor's bytes start, from the start of the file */
} m2pt_safetensors_info;

/* Opens and validates a safetensors file. Only the header is read; the file
 * stays open (one close-on-exec descriptor) and each tensor is read from it
 * when asked for, never mapped, so a file truncated under a reader cannot
 * fault (SIGBUS) in the caller. Every read compares the file's size and
 * modification time with those at open: a file truncated, extended or
 * rewritten in place since then fails the read with M2PT_ERR_IO naming the
 * file. A new file renamed over the path (as m2pt's writers replace files)
 * does not matter: the reader goes on reading the file it opened.
 * A FIFO or device at `path` is refused without waiting for a writer.
 * Validation is strict: the header (at most 100,000,000 bytes, as in the
 * reference implementation) must be UTF-8 JSON starting with '{', optionally
 * padded with trailing whitespace; every entry an object with exactly
 * "dtype" (a known dtype string), "shape" (at most M2PT_IO_MAX_DIMS
 * non-negative integers) and "data_offsets" ([begin, end], integers,
 * begin ≤ end); end − begin = numel · dtype size (overflow-checked); the
 * tensors, in offset order, cover the data region exactly (no overlap, gap
 * or trailing byte); names unique; "__metadata__", if present, an object of
 * unique string keys with string values. Numbers are integers up to 2^53.
 * On success the caller owns *st and closes it with m2pt_safetensors_close;
 * on failure *st is NULL.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL), M2PT_ERR_IO (cannot open, stat
 * or read; not a regular file), M2PT_ERR_FORMAT (any violation above),
 * M2PT_ERR_OUT_OF_MEMORY. */
M2PT_API m2pt_status m2pt_safetensors_open(const char *path, m2pt_safetensors **st);

/* Like m2pt_safetensors_open on `size` bytes at `data`, which the caller
 * keeps alive and unchanged until m2pt_safetensors_close (nothing is copied).
 * Messages call the file "<memory>". */
M2PT_API m2pt_status m2pt_safetensors_open_memory(const void *data, size_t size,
                                                  m2pt_safetensors **st);

/* Closes the file and frees everything, the copies m2pt_safetensors_raw
 * handed out included. Accepts NULL. */
M2PT_API void m2pt_safetensors_close(m2pt_safetensors *st);

/* Number of tensors (0 for NULL). */
M2PT_API size_t m2pt_safetensors_count(const m2pt_safetensors *st);

/* Describes tensor `index` (0 ≤ index < count). Indices follow the order of
 * the tensors' data in the file.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, index out of range). */
M2PT_API m2pt_status m2pt_safetensors_info_at(const m2pt_safetensors *st, size_t index,
                                              m2pt_safetensors_info *info);

/* Finds a tensor by exact name (binary search) and writes its index.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL), M2PT_ERR_NOT_FOUND. */
M2PT_API m2pt_status m2pt_safetensors_find(const m2pt_safetensors *st, const char *name,
                                           size_t *index);

/* Converts tensor `index` to f32 into dst: F32 as is, F16 and BF16 exactly
 * (subnormals, infinities and NaN payloads kept). `count` must equal the
 * tensor's numel; dst may be NULL only when it is 0. The file's bytes need no
 * alignment. A file is read straight into dst (16-bit values converted in
 * place), so reading a whole checkpoint once costs no memory beside the
 * copies. On failure dst's contents are unspecified.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, index out of range, count ≠
 * numel), M2PT_ERR_UNSUPPORTED (a dtype other than F32, F16, BF16),
 * M2PT_ERR_IO (cannot read; the file changed after open). */
M2PT_API m2pt_status m2pt_safetensors_read_f32(const m2pt_safetensors *st, size_t index,
                                               float *dst, size_t count);

/* Copies the tensor's raw little-endian bytes, for verbatim copying, into
 * dst. `nbytes` must equal the tensor's nbytes; dst may be NULL only when it
 * is 0. On failure dst's contents are unspecified.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, index out of range, nbytes ≠ the
 * tensor's), M2PT_ERR_IO (cannot read; the file changed after open). */
M2PT_API m2pt_status m2pt_safetensors_read_raw(const m2pt_safetensors *st, size_t index,
                                               void *dst, size_t nbytes);

/* The tensor's raw little-endian bytes: *data is valid until close (may be
 * unaligned; never NULL, even when *nbytes is 0). For open_memory it points
 * into the caller's buffer. For a file it points to a copy the reader makes
 * on the first call for that tensor and keeps until close (later calls,
 * from any thread, return the same copy), so handing out every tensor holds
 * the whole file in memory: m2pt_safetensors_read_raw into memory of the
 * caller's costs nothing beyond it.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, index out of range), and for a
 * file M2PT_ERR_IO (cannot read; the file changed after open),
 * M2PT_ERR_OUT_OF_MEMORY. */
M2PT_API m2pt_status m2pt_safetensors_raw(const m2pt_safetensors *st, size_t index,
                                          const void **data, size_t *nbytes);

/* Number of "__metadata__" entries (0 for NULL or none). */
M2PT_API size_t m2pt_safetensors_metadata_count(const m2pt_safetensors *st);

/* Metadata entry `index` in file order; the strings live until close.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, index out of range). */
M2PT_API m2pt_status m2pt_safetensors_metadata_at(const m2pt_safetensors *st, size_t index,
                                                  const char **key, const char **value);

/* The metadata value of `key`; it lives until close.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL), M2PT_ERR_NOT_FOUND. */
M2PT_API m2pt_status m2pt_safetensors_metadata(const m2pt_safetensors *st, const char *key,
                                               const char **value);

/* ---- safetensors writer ------------------------------------------------ */

/* Collects tensors and metadata, then writes a whole file at once. */
typedef struct m2pt_safetensors_writer m2pt_safetensors_writer;

/* Starts a file at `path`; nothing touches the disk before finish.
 * On failure *w is NULL.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL or empty path), M2PT_ERR_OUT_OF_MEMORY. */
M2PT_API m2pt_status m2pt_safetensors_writer_create(const char *path,
                                                    m2pt_safetensors_writer **w);

/* Adds a tensor. The name is copied; `data` (nbytes bytes, little-endian, in
 * the given dtype, written verbatim) is only borrowed: the caller keeps it
 * alive and unchanged until finish returns. ndim 0 is a scalar.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL w or name, NULL shape with ndim > 0,
 * NULL data with nbytes > 0, name "__metadata__", a duplicate name, an
 * unknown dtype, ndim > M2PT_IO_MAX_DIMS, a size that overflows or exceeds
 * 2^53, nbytes ≠ numel · dtype size), M2PT_ERR_INVALID_STATE (after finish),
 * M2PT_ERR_OUT_OF_MEMORY. A rejected call leaves the writer as it was. */
M2PT_API m2pt_status m2pt_safetensors_writer_add(m2pt_safetensors_writer *w, const char *name,
                                                 m2pt_dtype dtype, size_t ndim,
                                                 const size_t *shape, const void *data,
                                                 size_t nbytes);

/* Adds a "__metadata__" string pair (both copied).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, duplicate key),
 * M2PT_ERR_INVALID_STATE (after finish), M2PT_ERR_OUT_OF_MEMORY. */
M2PT_API m2pt_status m2pt_safetensors_writer_metadata(m2pt_safetensors_writer *w,
                                                      const char *key, const char *value);

/* Writes the file byte for byte as the reference implementation (Python
 * safetensors 0.8) does: "__metadata__" first, then tensors ordered by dtype
 * as it orders them (U64, I64, F64, F32, U32, I32, BF16, F16, U16, I16, the
 * F8s, I8, U8, BOOL: larger elements first, so each tensor's data is aligned
 * to its element size), then by name; contiguous offsets; compact JSON padded
 * with spaces to a multiple of 8 bytes. `path` is written as an output file
 * (see "Output files" below): readers of a regular file see the old file or
 * the whole new one, never a part. On failure no temporary file is left and
 * a replaced regular file is untouched (one written in place, see below, may
 * be partly written); finish may be called again.
 * The writer must still be destroyed.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL), M2PT_ERR_INVALID_STATE (finished
 * already), M2PT_ERR_IO, M2PT_ERR_OUT_OF_MEMORY. */
M2PT_API m2pt_status m2pt_safetensors_writer_finish(m2pt_safetensors_writer *w);

/* Frees the writer; without a successful finish nothing is written.
 * Accepts NULL. */
M2PT_API void m2pt_safetensors_writer_destroy(m2pt_safetensors_writer *w);

/* ---- .npy -------------------------------------------------------------- */

/* Reads a .npy file of format version 1.0 or 2.0 holding a little-endian f32
 * ('<f4') C-order array of 1 to M2PT_IO_MAX_DIMS dimensions. The header dict
 * must have exactly the keys 'descr', 'fortran_order' and 'shape', and the
 * data must be exactly numel · 4 bytes (no truncation, no trailing bytes).
 * On success *data is a malloc'd array of numel floats (free it with
 * m2pt_free; never NULL, even for numel 0), *ndim the number of dimensions
 * and shape[0..ndim) the extents (shape holds M2PT_IO_MAX_DIMS entries; the
 * rest are set to 0). On failure *data is NULL.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL), M2PT_ERR_IO, M2PT_ERR_FORMAT
 * (malformed), M2PT_ERR_UNSUPPORTED (well-formed but another dtype, Fortran
 * order, 0 or more than M2PT_IO_MAX_DIMS dimensions, another format version),
 * M2PT_ERR_OUT_OF_MEMORY. */
M2PT_API m2pt_status m2pt_npy_read(const char *path, float **data, size_t *ndim,
                                   size_t shape[M2PT_IO_MAX_DIMS]);

/* m2pt_npy_read on `size` bytes in memory (messages say "<memory>"). */
M2PT_API m2pt_status m2pt_npy_read_memory(const void *bytes, size_t size, float **data,
                                          size_t *ndim, size_t shape[M2PT_IO_MAX_DIMS]);

/* Writes a '<f4' C-order array of 1 to M2PT_IO_MAX_DIMS dimensions as
 * format 1.0 (2.0 only if the header would not fit 1.0), header padded to 64
 * bytes as numpy does, as an output file (see "Output files" below).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, ndim out of range, size overflow),
 * M2PT_ERR_IO, M2PT_ERR_OUT_OF_MEMORY. */
M2PT_API m2pt_status m2pt_npy_write(const char *path, const float *data, size_t ndim,
                                    const size_t *shape);

/* An array read by m2pt_npy_read_any. */
typedef struct m2pt_npy_array {
  m2pt_dtype dtype; /* F32 '<f4', I64 '<i8', I32 '<i4', I8 '|i1', U8 '|u1' or BOOL '|b1' */
  size_t ndim;      /* 1 to M2PT_IO_MAX_DIMS */
  size_t shape[M2PT_IO_MAX_DIMS]; /* entries past ndim are 0 */
  size_t numel;     /* product of the shape */
  void *data;       /* numel elements of dtype in host byte order (bool: bytes 0 or 1);
                       malloc'd, free with m2pt_free; never NULL after success */
} m2pt_npy_array;

/* Reads a .npy file holding any of the dtypes listed in m2pt_npy_array, as
 * numpy writes them on a little-endian machine, under the same rules as
 * m2pt_npy_read (format 1.0 or 2.0, C order, 1 to M2PT_IO_MAX_DIMS
 * dimensions, the exact header dict, exactly numel · element size bytes of
 * data). A '|b1' byte other than 0 or 1 is malformed. On success the caller
 * owns out->data; on failure *out is zeroed (data NULL).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL), M2PT_ERR_IO, M2PT_ERR_FORMAT
 * (malformed), M2PT_ERR_UNSUPPORTED (well-formed but another dtype, a
 * big-endian one such as '>i8' included, Fortran order, 0 or more than
 * M2PT_IO_MAX_DIMS dimensions, another format version),
 * M2PT_ERR_OUT_OF_MEMORY. */
M2PT_API m2pt_status m2pt_npy_read_any(const char *path, m2pt_npy_array *out);

/* m2pt_npy_read_any on `size` bytes in memory (messages say "<memory>"). */
M2PT_API m2pt_status m2pt_npy_read_any_memory(const void *bytes, size_t size,
                                              m2pt_npy_array *out);

/* Reads a .npy file of integers ('<i8', '<i4', '|i1', '|u1', or '|b1' as 0
 * and 1: every integer dtype m2pt_npy_read_any reads, not '<f4'), widening
 * each element exactly to int64: token ids and masks whatever integer type
 * the user saved them as. Outputs, rules and errors as m2pt_npy_read (*data
 * is a malloc'd array of numel int64 values, free it with m2pt_free; NULL
 * on failure). */
M2PT_API m2pt_status m2pt_npy_read_i64(const char *path, int64_t **data, size_t *ndim,
                                       size_t shape[M2PT_IO_MAX_DIMS]);

/* m2pt_npy_read_i64 on `size` bytes in memory (messages say "<memory>"). */
M2PT_API m2pt_status m2pt_npy_read_i64_memory(const void *bytes, size_t size, int64_t **data,
                                              size_t *ndim, size_t shape[M2PT_IO_MAX_DIMS]);

/* m2pt_npy_write for int64 values: a '<i8' array, laid out as np.save
 * writes it. Errors as m2pt_npy_write. */
M2PT_API m2pt_status m2pt_npy_write_i64(const char *path, const int64_t *data, size_t ndim,
                                        const size_t *shape);

/* ---- output files ------------------------------------------------------ */

/* Every writer here treats its path as cp does. A regular file (new, or
 * replaced with its mode kept, and its owner where the process may) is
 * written to an unnamed temporary file in its directory (Linux O_TMPFILE),
 * synced and renamed over it, so a process killed at any moment leaves the
 * old file or the new one, whole, and no temporary. A symlink is written
 * through: its target is replaced, or created if missing. A character or
 * block device or a FIFO is written straight into (opening a FIFO waits for
 * a reader, as cp does; a device or pipe that cannot sync is no failure). A
 * regular file with several hard links is rewritten in place so that every
 * link sees the new contents; so is an existing file that may be written but
 * not replaced (its directory is not writable, another user's file in a
 * sticky directory, a bind-mounted file). Those cases are not crash-atomic
 * (running out of space still leaves the old contents where the filesystem
 * can reserve space). Replacing keeps mode and owner, not ACLs or extended
 * attributes. A directory, a socket, a missing directory or a file this
 * process may not write is refused with M2PT_ERR_IO and a message naming the
 * path.
 * Where the filesystem has no O_TMPFILE (or M2PT_IO_TMPFILE=off), the
 * temporary file is named ".m2pt-tmp.<16 hex digits>.<6 letters or digits>";
 * such a file left by a killed process is removed by the next write of the
 * same target from a later process. */

/* Removes the named temporary files this process is writing right now (none
 * where O_TMPFILE is used). Async-signal-safe: for handlers of SIGTERM, SIGINT
 * or SIGHUP that then end the process (e.g. re-raising the signal with its
 * default action); a write it interrupts fails if the process goes on. */
M2PT_API void m2pt_io_remove_temporaries(void);

#ifdef __cplusplus
}
#endif

#endif
