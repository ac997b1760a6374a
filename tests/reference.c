#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_gemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, double alpha,
              const float *a, size_t lda, const float *b, size_t ldb, double beta, double *c,
              size_t ldc)
{
  for (size_t i = 0; i < m; i++)
    for (size_t j = 0; j < n; j++) {
      double acc = 0.0;
      for (size_t p = 0; p < k; p++) {
        const double av = trans_a ? a[p * lda + i] : a[i * lda + p];
        const double bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
        acc += av * bv;
      }
      c[i * ldc + j] = alpha * acc + (beta != 0.0 ? beta * c[i * ldc + j] : 0.0);
    }
}

void ref_linear(const float *x, size_t rows, size_t in, size_t out, const float *w,
                const float *w_aux, double scale, const float *b, const float *b_aux, double *y)
{
  for (size_t r = 0; r < rows; r++)
    for (size_t o = 0; o < out; o++) {
      double acc = 0.0;
      for (size_t i = 0; i < in; i++) {
        const double weight = (double)w[o * in + i] + (w_aux ? scale * w_aux[o * in + i] : 0.0);
        acc += (double)x[r * in + i] * weight;
      }
      acc += b ? b[o] : 0.0;
      acc += b_aux ? scale * b_aux[o] : 0.0;
      y[r * out + o] = acc;
    }
}

void ref_linear_backward(const float *x, const float *dy, size_t rows, size_t in, size_t out,
                         const float *w, const float *w_aux, double scale, const float *b_aux,
                         double *dx, double *dw, double *db, double *dw_aux, double *db_aux,
                         double *dscale, double *dscale_abs)
{
  for (size_t r = 0; dx && r < rows; r++)
    for (size_t i = 0; i < in; i++) {
      double acc = 0.0;
      for (size_t o = 0; o < out; o++) {
        const double weight = (double)w[o * in + i] + (w_aux ? scale * w_aux[o * in + i] : 0.0);
        acc += (double)dy[r * out + o] * weight;
      }
      dx[r * in + i] = acc;
    }
  double sum = 0.0, sum_abs = 0.0;
  for (size_t o = 0; o < out; o++) {
    double bias = 0.0;
    for (size_t r = 0; r < rows; r++)
      bias += dy[r * out + o];
    if (db)
      db[o] = bias;
    if (db_aux)
      db_aux[o] = scale * bias;
    if (b_aux) {
      sum += bias * b_aux[o];
      sum_abs += fabs(bias * b_aux[o]);
    }
    for (size_t i = 0; i < in; i++) {
      double g = 0.0;
      for (size_t r = 0; r < rows; r++)
        g += (double)dy[r * out + o] * x[r * in + i];
      if (dw)
        dw[o * in + i] = g;
      if (dw_aux)
        dw_aux[o * in + i] = scale * g;
      if (w_aux) {
        sum += g * w_aux[o * in + i];
        sum_abs += fabs(g * w_aux[o * in + i]);
      }
    }
  }
  if (dscale)
    *dscale = sum;
  if (dscale_abs)
    *dscale_abs = sum_abs;
}

/* A row's mean and 1/sqrt(biased variance + eps), as LayerNorm uses them. */
static void row_stats(const double *xr, size_t dim, double eps, double *mean_out,
                      double *rstd_out)
{
  double mean = 0.0, var = 0.0;
  for (size_t i = 0; i < dim; i++)
    mean += xr[i];
  mean /= (double)dim;
  for (size_t i = 0; i < dim; i++)
    var += (xr[i] - mean) * (xr[i] - mean);
  *mean_out = mean;
  *rstd_out = 1.0 / sqrt(var / (double)dim + eps);
}

void ref_layer_norm(const double *x, size_t rows, size_t dim, const float *weight,
                    const float *bias, double eps, double *y)
{
  for (size_t r = 0; r < rows; r++) {
    const double *xr = x + r * dim;
    double mean, rstd;
    row_stats(xr, dim, eps, &mean, &rstd);
    for (size_t i = 0; i < dim; i++)
      y[r * dim + i] = (xr[i] - mean) * rstd * weight[i] + (bias ? bias[i] : 0.0);
  }
}

void ref_layer_norm_backward(const double *dy, const double *x, size_t rows, size_t dim,
                             const float *weight, double eps, double *dx, double *dweight,
                             double *dbias)
{
  for (size_t i = 0; i < dim; i++) {
    if (dweight)
      dweight[i] = 0.0;
    if (dbias)
      dbias[i] = 0.0;
  }
  for (size_t r = 0; r < rows; r++) {
    const double *xr = x + r * dim, *dyr = dy + r * dim;
    double mean, rstd;
    row_stats(xr, dim, eps, &mean, &rstd);
    double mean_g = 0.0, mean_gx = 0.0;
    for (size_t i = 0; i < dim; i++) {
      const double xhat = (xr[i] - mean) * rstd, g = dyr[i] * weight[i];
      mean_g += g;
      mean_gx += g * xhat;
      if (dweight)
        dweight[i] += dyr[i] * xhat;
      if (dbias)
        dbias[i] += dyr[i];
    }
    mean_g /= (double)dim;
    mean_gx /= (double)dim;
    if (dx)
      for (size_t i = 0; i < dim; i++)
        dx[r * dim + i] =
            rstd * (dyr[i] * weight[i] - mean_g - (xr[i] - mean) * rstd * mean_gx);
  }
}

double ref_gelu_grad(double x, int tanh_form)
{
  const double pi = 3.14159265358979323846;
  if (tanh_form) {
    const double k = sqrt(2.0 / pi), t = tanh(k * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x);
  }
  return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * pi);
}

double ref_gelu(double x, int tanh_form)
{
  if (tanh_form)
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
  return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
}

void ref_softmax(const double *x, size_t rows, size_t cols, double scale, const float *mask,
                 size_t rows_per_group, double *y)
{
  for (size_t r = 0; r < rows; r++) {
    const float *keep = mask ? mask + (r / rows_per_group) * cols : NULL;
    double max = -INFINITY, sum = 0.0;
    for (size_t j = 0; j < cols; j++)
      if (!keep || keep[j] != 0.0f)
        max = fmax(max, scale * x[r * cols + j]);
    for (size_t j = 0; j < cols; j++)
      if (!keep || keep[j] != 0.0f)
        sum += exp(scale * x[r * cols + j] - max);
    for (size_t j = 0; j < cols; j++)
      y[r * cols + j] = (keep && keep[j] == 0.0f) || sum == 0.0
                            ? 0.0
                            : exp(scale * x[r * cols + j] - max) / sum;
  }
}

void ref_softmax_backward(const double *dy, const double *y, size_t rows, size_t cols,
                          double scale, const float *mask, size_t rows_per_group, double *dx)
{
  for (size_t r = 0; r < rows; r++) {
    const float *keep = mask ? mask + (r / rows_per_group) * cols : NULL;
    double dot = 0.0;
    for (size_t j = 0; j < cols; j++)
      if (!keep || keep[j] != 0.0f)
        dot += dy[r * cols + j] * y[r * cols + j];
    for (size_t j = 0; j < cols; j++)
      dx[r * cols + j] = keep && keep[j] == 0.0f
                             ? 0.0
                             : scale * y[r * cols + j] * (dy[r * cols + j] - dot);
  }
}

double ref_cross_entropy(const double *logits, const int64_t *labels, size_t batch,
                         size_t classes, double eps, double *dlogits)
{
  double total = 0.0;
  for (size_t b = 0; b < batch; b++) {
    const double *x = logits + b * classes;
    double m = -INFINITY, s = 0.0;
    for (size_t c = 0; c < classes; c++)
      m = fmax(m, x[c]);
    for (size_t c = 0; c < classes; c++)
      s += exp(x[c] - m);
    const double lse = m + log(s);
    for (size_t c = 0; c < classes; c++) {
      const double t = (c == (size_t)labels[b] ? 1.0 - eps : 0.0) + eps / (double)classes;
      total += t * (lse - x[c]);
      if (dlogits)
        dlogits[b * classes + c] = (exp(x[c] - lse) - t) / (double)batch;
    }
  }
  return total / (double)batch;
}

double ref_mse(const double *y, const double *t, size_t n, double *dy)
{
  double total = 0.0;
  for (size_t i = 0; i < n; i++) {
    total += (y[i] - t[i]) * (y[i] - t[i]);
    if (dy)
      dy[i] = 2.0 * (y[i] - t[i]) / (double)n;
  }
  return total / (double)n;
}

void ref_attention(const double *qkv, size_t batch, size_t tokens, size_t heads,
                   size_t dim_head, const float *mask, double *out)
{
  const size_t hd = heads * dim_head, row = 3 * hd;
  double *scores = malloc(tokens * sizeof *scores), *p = malloc(tokens * sizeof *p);
  for (size_t b = 0; b < batch; b++)
    for (size_t h = 0; h < heads; h++)
      for (size_t i = 0; i < tokens; i++) {
        const double *q = qkv + (b * tokens + i) * row + h * dim_head;
        for (size_t j = 0; j < tokens; j++) {
          const double *k = qkv + (b * tokens + j) * row + hd + h * dim_head;
          double dot = 0.0;
          for (size_t d = 0; d < dim_head; d++)
            dot += q[d] * k[d];
          scores[j] = dot;
        }
        ref_softmax(scores, 1, tokens, 1.0 / sqrt((double)dim_head),
                    mask ? mask + b * tokens : NULL, 1, p);
        double *o = out + (b * tokens + i) * hd + h * dim_head;
        for (size_t d = 0; d < dim_head; d++) {
          double acc = 0.0;
          for (size_t j = 0; j < tokens; j++)
            acc += p[j] * qkv[(b * tokens + j) * row + 2 * hd + h * dim_head + d];
          o[d] = acc;
        }
      }
  free(scores);
  free(p);
}

/* Per batch row and head, from P = softmax(s·Q·Kᵀ + mask): dV = Pᵀ·dO,
 * dP = dO·Vᵀ, dX = s·P ⊙ (dP − rowsum(dP ⊙ P)) = ∂L/∂(Q·Kᵀ) (softmax's
 * backward with the scale), dQ = dX·K, dK = dXᵀ·Q. */
void ref_attention_backward(const double *qkv, const double *dout, size_t batch, size_t tokens,
                            size_t heads, size_t dim_head, const float *mask, double *dqkv)
{
  const size_t n = tokens, hd = heads * dim_head, row = 3 * hd;
  const double scale = 1.0 / sqrt((double)dim_head);
  double *scores = malloc(n * n * sizeof *scores), *p = malloc(n * n * sizeof *p);
  double *dp = malloc(n * n * sizeof *dp), *dx = malloc(n * n * sizeof *dx);
  for (size_t b = 0; b < batch; b++)
    for (size_t h = 0; h < heads; h++) {
      const double *base = qkv + b * n * row + h * dim_head;
      const double *go = dout + b * n * hd + h * dim_head;
      double *gbase = dqkv + b * n * row + h * dim_head;
      for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
          double dot = 0.0, dpv = 0.0;
          for (size_t d = 0; d < dim_head; d++) {
            dot += base[i * row + d] * base[j * row + hd + d];
            dpv += go[i * hd + d] * base[j * row + 2 * hd + d];
          }
          scores[i * n + j] = dot;
          dp[i * n + j] = dpv;
        }
      const float *keep = mask ? mask + b * n : NULL;
      ref_softmax(scores, n, n, scale, keep, n, p);
      ref_softmax_backward(dp, p, n, n, scale, keep, n, dx);
      for (size_t t = 0; t < n; t++)
        for (size_t d = 0; d < dim_head; d++) {
          double gq = 0.0, gk = 0.0, gv = 0.0;
          for (size_t u = 0; u < n; u++) {
            gq += dx[t * n + u] * base[u * row + hd + d];
            gk += dx[u * n + t] * base[u * row + d];
            gv += p[u * n + t] * go[u * hd + d];
          }
          gbase[t * row + d] = gq;
          gbase[t * row + hd + d] = gk;
          gbase[t * row + 2 * hd + d] = gv;
        }
    }
  free(scores);
  free(p);
  free(dp);
  free(dx);
}

/* y = x·(W + λ·W_aux)ᵀ + b on double rows. */
void ref_dense(const double *x, size_t rows, size_t in, size_t out, const float *w,
               const float *aux, double scale, const float *b, double *y)
{
  for (size_t r = 0; r < rows; r++)
    for (size_t o = 0; o < out; o++) {
      double acc = b ? b[o] : 0.0;
      for (size_t i = 0; i < in; i++)
        acc += x[r * in + i] * ((double)w[o * in + i] + (aux ? scale * aux[o * in + i] : 0.0));
      y[r * out + o] = acc;
    }
}

void ref_block(const ref_block_params *p, const float *x, size_t batch, size_t tokens,
               const float *mask, double *y)
{
  const size_t n = batch * tokens * p->dim;
  double *xd = malloc(n * sizeof *xd);
  for (size_t i = 0; i < n; i++)
    xd[i] = x[i];
  ref_block_d(p, xd, batch, tokens, mask, y);
  free(xd);
}

void ref_block_d(const ref_block_params *p, const double *xd, size_t batch, size_t tokens,
                 const float *mask, double *y)
{
  const size_t rows = batch * tokens, dim = p->dim, hd = p->heads * p->dim_head;
  double *t = malloc(rows * dim * sizeof *t);
  double *qkv = malloc(rows * 3 * hd * sizeof *qkv), *a = malloc(rows * hd * sizeof *a);
  double *h = malloc(rows * dim * sizeof *h), *hid = malloc(rows * p->hidden * sizeof *hid);
  /* Attention branch on LN1(x) (pre-norm) or x (post-norm). */
  if (p->post_norm)
    memcpy(t, xd, rows * dim * sizeof *t);
  else
    ref_layer_norm(xd, rows, dim, p->norm1_w, p->norm1_b, p->eps, t);
  ref_dense(t, rows, dim, 3 * hd, p->qkv_w, p->qkv_aux, p->qkv_scale, p->qkv_b, qkv);
  ref_attention(qkv, batch, tokens, p->heads, p->dim_head, mask, a);
  ref_dense(a, rows, hd, dim, p->proj_w, p->proj_aux, p->proj_scale, p->proj_b, h);
  for (size_t i = 0; i < rows * dim; i++)
    h[i] = (p->keep_attn ? p->keep_attn[i / (tokens * dim)] * h[i] : h[i]) + xd[i];
  if (p->post_norm) {
    ref_layer_norm(h, rows, dim, p->norm1_w, p->norm1_b, p->eps, t);
    memcpy(h, t, rows * dim * sizeof *h);
  } else {
    ref_layer_norm(h, rows, dim, p->norm2_w, p->norm2_b, p->eps, t);
  }
  /* FFN branch on LN2(h) (pre-norm) or h (post-norm). */
  ref_dense(t, rows, dim, p->hidden, p->fc1_w, p->fc1_aux, p->fc1_scale, p->fc1_b, hid);
  for (size_t i = 0; i < rows * p->hidden; i++)
    hid[i] = ref_gelu(hid[i], p->gelu_tanh);
  ref_dense(hid, rows, p->hidden, dim, p->fc2_w, p->fc2_aux, p->fc2_scale, p->fc2_b, y);
  for (size_t i = 0; i < rows * dim; i++)
    y[i] = (p->keep_ffn ? p->keep_ffn[i / (tokens * dim)] * y[i] : y[i]) + h[i];
  if (p->post_norm) {
    memcpy(t, y, rows * dim * sizeof *t);
    ref_layer_norm(t, rows, dim, p->norm2_w, p->norm2_b, p->eps, y);
  }
  free(t);
  free(qkv);
  free(a);
  free(h);
  free(hid);
}

void ref_bert_gather(const int *ids, const int *types, size_t batch, size_t tokens, size_t dim,
                     const float *word, const float *pos, const float *type, double *y)
{
  for (size_t r = 0; r < batch * tokens; r++)
    for (size_t d = 0; d < dim; d++)
      y[r * dim + d] = (double)word[(size_t)ids[r] * dim + d] + pos[(r % tokens) * dim + d] +
                       (types ? type[(size_t)types[r] * dim + d] : 0.0);
}

void ref_patch_embed(const float *pixels, size_t batch, size_t channels, size_t height,
                     size_t width, size_t p, size_t dim, const float *weight, const float *bias,
                     const float *cls, const float *pos, double *y)
{
  const size_t gh = height / p, gw = width / p, pre = cls ? 1 : 0, n = pre + gh * gw;
  for (size_t b = 0; b < batch; b++)
    for (size_t t = 0; t < n; t++)
      for (size_t d = 0; d < dim; d++) {
        double v;
        if (t < pre) {
          v = cls[d];
        } else {
          const size_t g = t - pre, gy = g / gw, gx = g % gw;
          v = bias ? bias[d] : 0.0;
          for (size_t c = 0; c < channels; c++)
            for (size_t py = 0; py < p; py++)
              for (size_t px = 0; px < p; px++)
                v += (double)weight[((d * channels + c) * p + py) * p + px] *
                     pixels[((b * channels + c) * height + gy * p + py) * width + gx * p + px];
        }
        y[(b * n + t) * dim + d] = v + (pos ? pos[t * dim + d] : 0.0);
      }
}

void ref_pool(const float *x, size_t batch, size_t tokens, size_t dim, const float *mask,
              int token, size_t first, int normalize, double *y)
{
  for (size_t b = 0; b < batch; b++) {
    double ss = 0.0;
    for (size_t d = 0; d < dim; d++) {
      double v = 0.0;
      if (token) {
        v = x[(b * tokens + first) * dim + d];
      } else {
        double sum = 0.0, count = 0.0;
        for (size_t n = first; n < tokens; n++) {
          const double m = mask ? mask[b * tokens + n] : 1.0;
          sum += m * x[(b * tokens + n) * dim + d];
          count += m;
        }
        v = sum / (count > 1e-9 ? count : 1e-9);
      }
      y[b * dim + d] = v;
      ss += v * v;
    }
    if (normalize) {
      const double norm = sqrt(ss) > 1e-12 ? sqrt(ss) : 1e-12;
      for (size_t d = 0; d < dim; d++)
        y[b * dim + d] /= norm;
    }
  }
}

/* dtable[key[r]] += src[r] over rows, table [table_rows][dim]. */
static void scatter(const int *keys, size_t rows, size_t dim, const double *src,
                    size_t table_rows, double *table)
{
  memset(table, 0, table_rows * dim * sizeof *table);
  for (size_t r = 0; r < rows; r++)
    for (size_t d = 0; d < dim; d++)
      table[(size_t)keys[r] * dim + d] += src[r * dim + d];
}

void ref_bert_gather_backward(const int *ids, const int *types, size_t batch, size_t tokens,
                              size_t dim, const double *dsum, size_t vocab, size_t npos,
                              size_t ntypes, double *dword, double *dpos, double *dtype)
{
  const size_t rows = batch * tokens;
  int *keys = calloc(rows, sizeof *keys);
  if (dword)
    scatter(ids, rows, dim, dsum, vocab, dword);
  for (size_t r = 0; r < rows; r++)
    keys[r] = (int)(r % tokens);
  if (dpos)
    scatter(keys, rows, dim, dsum, npos, dpos);
  for (size_t r = 0; r < rows; r++)
    keys[r] = types ? types[r] : 0;
  if (dtype)
    scatter(keys, rows, dim, dsum, ntypes, dtype);
  free(keys);
}

void ref_patch_embed_backward(const float *pixels, size_t batch, size_t channels, size_t height,
                              size_t width, size_t p, size_t dim, const float *weight,
                              int has_cls, const double *dy, double *dpixels, double *dweight,
                              double *dbias, double *dcls, double *dpos)
{
  const size_t gw = width / p, grid = (height / p) * gw, pre = has_cls ? 1 : 0, n = pre + grid;
  const size_t kdim = channels * p * p;
  if (dpixels)
    memset(dpixels, 0, batch * channels * height * width * sizeof *dpixels);
  if (dweight)
    memset(dweight, 0, dim * kdim * sizeof *dweight);
  if (dbias)
    memset(dbias, 0, dim * sizeof *dbias);
  if (dcls)
    memset(dcls, 0, dim * sizeof *dcls);
  if (dpos)
    memset(dpos, 0, n * dim * sizeof *dpos);
  for (size_t b = 0; b < batch; b++)
    for (size_t t = 0; t < n; t++)
      for (size_t d = 0; d < dim; d++) {
        const double g = dy[(b * n + t) * dim + d];
        if (dpos)
          dpos[t * dim + d] += g;
        if (t < pre) {
          if (dcls)
            dcls[d] += g;
          continue;
        }
        if (dbias)
          dbias[d] += g;
        const size_t q = t - pre, gy = q / gw, gx = q % gw;
        for (size_t c = 0; c < channels; c++)
          for (size_t py = 0; py < p; py++)
            for (size_t px = 0; px < p; px++) {
              const size_t wi = ((d * channels + c) * p + py) * p + px;
              const size_t pi = ((b * channels + c) * height + gy * p + py) * width + gx * p + px;
              if (dweight)
                dweight[wi] += g * pixels[pi];
              if (dpixels)
                dpixels[pi] += g * weight[wi];
            }
      }
}

void ref_pool_backward(const double *x, size_t batch, size_t tokens, size_t dim,
                       const float *mask, int token, size_t first, int normalize,
                       const double *dy, double *dx)
{
  double *u = calloc(dim, sizeof *u), *g = calloc(dim, sizeof *g);
  for (size_t b = 0; b < batch; b++) {
    double count = 0.0;
    for (size_t n = first; n < tokens; n++)
      count += mask ? mask[b * tokens + n] : 1.0;
    const double div = count > 1e-9 ? count : 1e-9;
    double ss = 0.0, dot = 0.0;
    for (size_t d = 0; d < dim; d++) {
      u[d] = 0.0;
      if (token)
        u[d] = x[(b * tokens + first) * dim + d];
      else
        for (size_t n = first; n < tokens; n++)
          u[d] += (mask ? mask[b * tokens + n] : 1.0) * x[(b * tokens + n) * dim + d] / div;
      ss += u[d] * u[d];
      dot += u[d] * dy[b * dim + d];
    }
    const double norm = sqrt(ss);
    for (size_t d = 0; d < dim; d++) {
      g[d] = dy[b * dim + d];
      if (normalize)
        g[d] = norm > 1e-12 ? (g[d] - u[d] * dot / ss) / norm : g[d] / 1e-12;
    }
    for (size_t n = 0; n < tokens; n++)
      for (size_t d = 0; d < dim; d++) {
        double v = 0.0;
        if (token)
          v = n == first ? g[d] : 0.0;
        else if (n >= first)
          v = (mask ? mask[b * tokens + n] : 1.0) * g[d] / div;
        dx[(b * tokens + n) * dim + d] = v;
      }
  }
  free(u);
  free(g);
}
