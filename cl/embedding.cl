/* The model's front and back ends: BERT's embedding gather, ViT's patch
 * embedding around one GEMM (im2col, then class token and positions), token
 * and masked-mean pooling, L2 normalization and tanh. Every reduction runs
 * in a fixed order in one work-item: deterministic, no atomics. */

/* Every kernel of this program is built with the options of one op: the
 * others' switches default to 0. */
#ifndef HAS_TYPES
#  define HAS_TYPES 0
#endif
#ifndef PREFIX
#  define PREFIX 0
#endif
#ifndef HAS_BIAS
#  define HAS_BIAS 0
#endif
#ifndef HAS_POS
#  define HAS_POS 0
#endif
#ifndef TOKEN
#  define TOKEN 0
#endif
#ifndef HAS_MASK
#  define HAS_MASK 0
#endif

/* y[r][d] = word[ids[r]][d] + pos[r % tokens][d] (+ type[ids[rows + r]][d]):
 * HF BertEmbeddings before its LayerNorm, with position ids 0 … N−1
 * (BertEmbeddings' default position_ids buffer). Ids were checked on the
 * host, so every index is inside its table. Global size dim × rows. */
__kernel void m2pt_bert_embed(__global const int *ids, __global const float *word,
                              __global const float *pos, __global const float *type,
                              __global float *y, const uint tokens, const uint dim,
                              const uint rows)
{
  const size_t d = get_global_id(0), r = get_global_id(1);
  if (d >= dim || r >= rows)
    return;
  float v = word[(size_t)ids[r] * dim + d] + pos[(r % tokens) * dim + d];
#if HAS_TYPES
  v += type[(size_t)ids[rows + r] * dim + d];
#endif
  y[r * dim + d] = v;
}

/* The stride = kernel Conv2d as a reshape: row b·G + gy·gw + gx of `patches`
 * is patch (gy, gx) of image b flattened as [C][P][P], the layout of the
 * Conv2d weight [D][C][P][P] seen as [D][C·P·P], so one GEMM
 * patches · Wᵀ is the convolution. Global size C·P·P × B·G. */
__kernel void m2pt_im2col(__global const float *pixels, __global float *patches,
                          const uint channels, const uint height, const uint width,
                          const uint patch, const uint gw, const uint grid, const uint rows)
{
  const size_t k = get_global_id(0), r = get_global_id(1);
  const size_t pp = (size_t)patch * patch, kdim = channels * pp;
  if (k >= kdim || r >= rows)
    return;
  /* Remainders written as x − (x/y)·y: a div with its rem becomes LLVM's
   * `freeze`, which Oclgrind cannot run. */
  const size_t b = r / grid, g = r - b * grid, gy = g / gw, gx = g - gy * gw;
  const size_t c = k / pp, kp = k - c * pp, py = kp / patch, px = kp - py * patch;
  patches[r * kdim + k] =
      pixels[((b * channels + c) * height + gy * patch + py) * width + gx * patch + px];
}

/* y[b][t][d] for t < PREFIX + G: the class token (PREFIX 1) then the patches
 * (GEMM output + conv bias), plus the position embedding of t (timm's
 * _pos_embed and HF ViTEmbeddings both prepend cls, then add positions).
 * Global size dim × B·(PREFIX + G). */
__kernel void m2pt_patch_assemble(__global const float *patch_out, __global const float *bias,
                                  __global const float *cls, __global const float *pos,
                                  __global float *y, const uint grid, const uint dim,
                                  const uint rows)
{
  const size_t d = get_global_id(0), r = get_global_id(1), n = grid + PREFIX;
  if (d >= dim || r >= rows)
    return;
  const size_t b = r / n, t = r - b * n; /* no div + rem pair: see m2pt_im2col */
  float v;
#if PREFIX
  if (t == 0)
    v = cls[d];
  else
#endif
  {
    v = patch_out[(b * grid + t - PREFIX) * dim + d];
#if HAS_BIAS
    v += bias[d];
#endif
  }
#if HAS_POS
  v += pos[t * dim + d];
#endif
  y[r * dim + d] = v;
}

/* y[b][d] = x[b][first][d] (TOKEN), or the mean of x[b][n][d] over tokens
 * n ≥ first, weighted by mask[b][n] when HAS_MASK, divided by
 * max(Σ mask, 1e-9) as sentence-transformers' mean pooling clamps it (an
 * all-padding row gives zeros). Global size dim × batch. */
__kernel void m2pt_pool(__global const float *x, __global const float *mask, __global float *y,
                        const uint tokens, const uint dim, const uint batch, const uint first)
{
  const size_t d = get_global_id(0), b = get_global_id(1);
  if (d >= dim || b >= batch)
    return;
  const size_t base = b * (size_t)tokens * dim + d;
#if TOKEN
  y[b * dim + d] = x[base + (size_t)first * dim];
#else
  float sum = 0.0f, count = 0.0f;
  for (uint n = first; n < tokens; n++) {
#  if HAS_MASK
    const float m = mask[b * tokens + n];
    sum = fma(m, x[base + (size_t)n * dim], sum);
    count += m;
#  else
    sum += x[base + (size_t)n * dim];
    count += 1.0f;
#  endif
  }
  y[b * dim + d] = sum / fmax(count, 1e-9f);
#endif
}

/* x[r] /= max(‖x[r]‖₂, 1e-12), PyTorch's F.normalize(p=2); a zero row stays
 * zero. One work-item per row, in order. */
__kernel void m2pt_l2_normalize(__global float *x, const uint dim, const uint rows)
{
  const size_t r = get_global_id(0);
  if (r >= rows)
    return;
  __global float *row = x + r * dim;
  float ss = 0.0f;
  for (uint d = 0; d < dim; d++)
    ss = fma(row[d], row[d], ss);
  const float inv = 1.0f / fmax(sqrt(ss), 1e-12f);
  for (uint d = 0; d < dim; d++)
    row[d] *= inv;
}

/* x = tanh(x): BertPooler's activation. */
__kernel void m2pt_tanh(__global float *x, const ulong n)
{
  const size_t i = get_global_id(0);
  if (i < n)
    x[i] = tanh(x[i]);
}

/* ---- backward (issue 12) ---- */

/* dy = dy·(1 − y²), y = tanh(x) the forward's output: BertPooler's backward. */
__kernel void m2pt_tanh_backward(__global const float *y, __global float *dy, const ulong n)
{
  const size_t i = get_global_id(0);
  if (i < n)
    dy[i] *= 1.0f - y[i] * y[i];
}

/* dtable[v][d] = Σ src[r][d] over the rows r whose id is v, ascending r:
 * the scatter-add of a gather without atomics. The host sorted the rows by
 * id (index: offsets [table_rows + 1] at `offsets`, then row numbers at
 * `list`), so one work-item owns one output element and its sum has one
 * order on every device and every run; a row no id names gets 0.
 * Global size dim × table_rows. */
__kernel void m2pt_scatter_rows(__global const float *src, __global const int *index,
                                __global float *dtable, const uint offsets, const uint list,
                                const uint dim, const uint table_rows)
{
  const size_t d = get_global_id(0), v = get_global_id(1);
  if (d >= dim || v >= table_rows)
    return;
  const int begin = index[offsets + v], end = index[offsets + v + 1];
  float sum = 0.0f;
  for (int j = begin; j < end; j++)
    sum += src[(size_t)index[list + j] * dim + d];
  dtable[v * dim + d] = sum;
}

/* out[t][d] = Σ_b dy[b][first + t][d], b ascending: the gradient of a
 * parameter broadcast over the batch (class token, position embeddings).
 * dy is [batch][tokens][dim]. Global size dim × count. */
__kernel void m2pt_batch_sum(__global const float *dy, __global float *out, const uint first,
                             const uint count, const uint tokens, const uint dim,
                             const uint batch)
{
  const size_t d = get_global_id(0), t = get_global_id(1);
  if (d >= dim || t >= count)
    return;
  float sum = 0.0f;
  for (uint b = 0; b < batch; b++)
    sum += dy[((size_t)b * tokens + first + t) * dim + d];
  out[t * dim + d] = sum;
}

/* dpatch[b·G + g][d] = dy[b][prefix + g][d]: the patch rows of dy without
 * the class token, laid out as the forward's GEMM output. Global size
 * dim × B·G. */
__kernel void m2pt_patch_rows(__global const float *dy, __global float *dpatch,
                              const uint prefix, const uint grid, const uint dim,
                              const uint rows)
{
  const size_t d = get_global_id(0), r = get_global_id(1);
  if (d >= dim || r >= rows)
    return;
  const size_t b = r / grid, g = r - b * grid; /* no div + rem pair: see m2pt_im2col */
  dpatch[r * dim + d] = dy[(b * (grid + prefix) + prefix + g) * dim + d];
}

/* The inverse of m2pt_im2col: with stride = kernel the patches do not
 * overlap, so every pixel comes from exactly one element and col2im is a
 * plain scatter (no sums). Global size C·P·P × B·G. */
__kernel void m2pt_col2im(__global const float *patches, __global float *pixels,
                          const uint channels, const uint height, const uint width,
                          const uint patch, const uint gw, const uint grid, const uint rows)
{
  const size_t k = get_global_id(0), r = get_global_id(1);
  const size_t pp = (size_t)patch * patch, kdim = channels * pp;
  if (k >= kdim || r >= rows)
    return;
  const size_t b = r / grid, g = r - b * grid, gy = g / gw, gx = g - gy * gw;
  const size_t c = k / pp, kp = k - c * pp, py = kp / patch, px = kp - py * patch;
  pixels[((b * channels + c) * height + gy * patch + py) * width + gx * patch + px] =
      patches[r * kdim + k];
}

/* The backward of m2pt_l2_normalize from the un-normalized rows u and the
 * upstream dy: with n = ‖u‖ > 1e-12, y = u/n and du = (dy − u·(u·dy)/n²)/n;
 * below the clamp n is the constant 1e-12 and du = dy/1e-12, as PyTorch's
 * clamp_min passes it. One work-item per row, in order. */
__kernel void m2pt_l2_normalize_backward(__global const float *u, __global const float *dy,
                                         __global float *du, const uint dim, const uint rows)
{
  const size_t r = get_global_id(0);
  if (r >= rows)
    return;
  __global const float *ur = u + r * dim, *gr = dy + r * dim;
  float ss = 0.0f, dot = 0.0f;
  for (uint d = 0; d < dim; d++) {
    ss = fma(ur[d], ur[d], ss);
    dot = fma(ur[d], gr[d], dot);
  }
  const float norm = sqrt(ss);
  if (norm > 1e-12f) {
    const float inv = 1.0f / norm, proj = dot * inv * inv;
    for (uint d = 0; d < dim; d++)
      du[r * dim + d] = (gr[d] - ur[d] * proj) * inv;
  } else {
    for (uint d = 0; d < dim; d++)
      du[r * dim + d] = gr[d] / 1e-12f;
  }
}

/* dx[b][n][d] of m2pt_pool from dy [batch][dim]: TOKEN puts dy[b] on token
 * `first` and zeros elsewhere; the mean gives mask[b][n]·dy[b]/max(Σ mask,
 * 1e-9) to tokens n ≥ first, the count summed in the forward's order so it
 * is the same float. Global size dim × batch·tokens. */
__kernel void m2pt_pool_backward(__global const float *dy, __global const float *mask,
                                 __global float *dx, const uint tokens, const uint dim,
                                 const uint batch, const uint first)
{
  const size_t d = get_global_id(0), r = get_global_id(1);
  if (d >= dim || r >= (size_t)batch * tokens)
    return;
  const size_t b = r / tokens, n = r - b * tokens;
  float v = 0.0f;
#if TOKEN
  if (n == first)
    v = dy[b * dim + d];
#else
  if (n >= first) {
#  if HAS_MASK
    float count = 0.0f;
    for (uint i = first; i < tokens; i++)
      count += mask[b * tokens + i];
    v = mask[r] * dy[b * dim + d] / fmax(count, 1e-9f);
#  else
    v = dy[b * dim + d] / fmax((float)(tokens - first), 1e-9f);
#  endif
  }
#endif
  dx[r * dim + d] = v;
}
