/* timm and HF BERT checkpoint names of the block's parameters. */
#include "checkpoint_naming.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

const char *const m2pt_block_norm_names[M2PT_BLOCK_NORMS] = {"norm1.weight", "norm1.bias",
                                                             "norm2.weight", "norm2.bias"};
const char *const m2pt_field_names[M2PT_FIELDS] = {"weight", "bias", "aux_weight",
                                                   "cross_modal_scale"};

static const m2pt_naming_scheme timm = {
    M2PT_NAMING_TIMM,
    {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"},
    {{"attn.qkv"}, {"attn.proj"}, {"mlp.fc1"}, {"mlp.fc2"}},
    {1, 1, 1, 1},
    1,
    "blocks",
    -1,
    -1.0f,
};

/* HF BertLayer: post-norm, the attention's LayerNorm is the block's norm1. */
static const m2pt_naming_scheme bert = {
    M2PT_NAMING_BERT,
    {"attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
     "output.LayerNorm.weight", "output.LayerNorm.bias"},
    {{"attention.self.query", "attention.self.key", "attention.self.value"},
     {"attention.output.dense"},
     {"intermediate.dense"},
     {"output.dense"}},
    {3, 1, 1, 1},
    0,
    "encoder.layer",
    1,
    1e-12f,
};

/* HF ViTLayer: pre-norm (layernorm_before, layernorm_after), eps 1e-12
 * (ViTConfig.layer_norm_eps), q, k, v separate as in BERT. */
static const m2pt_naming_scheme hf_vit = {
    M2PT_NAMING_HF_VIT,
    {"layernorm_before.weight", "layernorm_before.bias", "layernorm_after.weight",
     "layernorm_after.bias"},
    {{"attention.attention.query", "attention.attention.key", "attention.attention.value"},
     {"attention.output.dense"},
     {"intermediate.dense"},
     {"output.dense"}},
    {3, 1, 1, 1},
    2,
    "encoder.layer",
    0,
    1e-12f,
};

const m2pt_naming_scheme *m2pt_naming_scheme_of(m2pt_naming naming)
{
  return naming == M2PT_NAMING_TIMM     ? &timm
         : naming == M2PT_NAMING_BERT   ? &bert
         : naming == M2PT_NAMING_HF_VIT ? &hf_vit
                                        : NULL;
}

int m2pt_param_name(char *buf, size_t size, const char *prefix, size_t block, const char *layer,
                    const char *field)
{
  const int n = field ? snprintf(buf, size, "%s.%zu.%s.%s", prefix, block, layer, field)
                      : snprintf(buf, size, "%s.%zu.%s", prefix, block, layer);
  return n >= 0 && (size_t)n < size;
}

/* The probe of block 0: "<first part of qkv>.weight". */
static int has_block(const m2pt_safetensors *st, const m2pt_naming_scheme *s, const char *prefix,
                     size_t block)
{
  char name[512];
  size_t index;
  return m2pt_param_name(name, sizeof name, prefix, block, s->linears[M2PT_BLOCK_QKV][0],
                         "weight") &&
         m2pt_safetensors_find(st, name, &index) == M2PT_OK;
}

/* The prefixes p of names "p.0.<probe>" (at most two are collected: a second
 * means ambiguity). */
static size_t find_prefixes(const m2pt_safetensors *st, const m2pt_naming_scheme *s,
                            char found[2][256])
{
  char suffix[128];
  snprintf(suffix, sizeof suffix, ".0.%s.weight", s->linears[M2PT_BLOCK_QKV][0]);
  const size_t ls = strlen(suffix);
  size_t n = 0;
  for (size_t i = 0; i < m2pt_safetensors_count(st) && n < 2; i++) {
    m2pt_safetensors_info info;
    if (m2pt_safetensors_info_at(st, i, &info) != M2PT_OK)
      continue;
    const size_t len = strlen(info.name);
    if (len <= ls || len - ls >= 256 || strcmp(info.name + len - ls, suffix) != 0)
      continue;
    memcpy(found[n], info.name, len - ls);
    found[n][len - ls] = '\0';
    n++;
  }
  return n;
}

m2pt_status m2pt_find_block_stack(const m2pt_context *ctx, const m2pt_safetensors *st,
                                  const char *file, m2pt_naming naming, const char *prefix,
                                  const m2pt_naming_scheme **scheme, char **found_prefix,
                                  size_t *depth)
{
  const m2pt_naming_scheme *tries[3] = {&timm, &bert, &hf_vit};
  const size_t ntries = naming == M2PT_NAMING_AUTO ? 3 : 1;
  if (naming != M2PT_NAMING_AUTO)
    tries[0] = m2pt_naming_scheme_of(naming);
  for (size_t t = 0; t < ntries; t++) {
    const m2pt_naming_scheme *s = tries[t];
    char found[2][256];
    const char *p = prefix;
    if (!p) {
      const size_t n = find_prefixes(st, s, found);
      if (n == 0)
        continue;
      if (n > 1)
        return m2pt_fail(ctx, M2PT_ERR_NOT_FOUND,
                         "%s: more than one block stack (\"%s\" and \"%s\"); name the prefix", file,
                         found[0], found[1]);
      p = found[0];
    } else if (!has_block(st, s, p, 0)) {
      continue;
    }
    size_t d = 0;
    while (has_block(st, s, p, d))
      d++;
    *found_prefix = strdup(p);
    if (!*found_prefix)
      return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
    *scheme = s;
    *depth = d;
    return M2PT_OK;
  }
  const char *what = naming == M2PT_NAMING_TIMM   ? "timm"
                     : naming == M2PT_NAMING_BERT ? "BERT"
                     : naming == M2PT_NAMING_HF_VIT ? "HF ViT"
                                                  : "timm, BERT or HF ViT";
  if (prefix)
    return m2pt_fail(ctx, M2PT_ERR_NOT_FOUND, "%s: no %s blocks under \"%s\" (no \"%s.0.%s.weight\")",
                     file, what, prefix, prefix, tries[0]->linears[M2PT_BLOCK_QKV][0]);
  return m2pt_fail(ctx, M2PT_ERR_NOT_FOUND,
                   "%s: no %s block stack (no tensor named \"….0.attn.qkv.weight\", "
                   "\"….0.attention.self.query.weight\" or "
                   "\"….0.attention.attention.query.weight\")",
                   file, what);
}

int m2pt_naming_linear_index(const m2pt_naming_scheme *s, const char *layer)
{
  if (!layer)
    return -1;
  for (int i = 0; i < M2PT_BLOCK_LINEARS; i++) {
    if (!strcmp(layer, m2pt_block_linear_names[i]))
      return i;
    for (size_t p = 0; p < s->parts[i]; p++)
      if (!strcmp(layer, s->linears[i][p]))
        return i;
  }
  /* "attention.self" names BERT's q, k and v together. */
  if (s->parts[M2PT_BLOCK_QKV] > 1 &&
      (!strcmp(layer, "attention.self") || !strcmp(layer, "attention.attention")))
    return M2PT_BLOCK_QKV;
  return -1;
}

/* When `s` starts with `head` followed by '.', the rest; else NULL. */
static const char *after(const char *s, const char *head)
{
  const size_t n = strlen(head);
  return strncmp(s, head, n) == 0 && s[n] == '.' ? s + n + 1 : NULL;
}

m2pt_name_ref m2pt_classify_name(const m2pt_naming_scheme *s, const char *prefix,
                                 const char *final_norm_prefix, const char *name)
{
  m2pt_name_ref r = {M2PT_NAME_OUTSIDE, 0, -1, -1, -1, -1};
  if (final_norm_prefix) {
    const size_t n = strlen(final_norm_prefix);
    if (!strncmp(name, final_norm_prefix, n)) {
      if (!strcmp(name + n, "norm.weight") || !strcmp(name + n, "norm.bias")) {
        r.kind = M2PT_NAME_FINAL_NORM;
        r.norm = name[n + 5] == 'b';
        return r;
      }
    }
  }
  const char *rest = after(name, prefix);
  if (!rest || *rest < '0' || *rest > '9')
    return r;
  char *end;
  const unsigned long long block = strtoull(rest, &end, 10);
  if (*end != '.')
    return r;
  r.kind = M2PT_NAME_UNKNOWN;
  /* "blocks.01." is no block's name, and neither is an index past size_t:
   * both stay UNKNOWN, so loading refuses them instead of ignoring them. */
  if ((end - rest > 1 && *rest == '0') || block > (unsigned long long)(size_t)-1)
    return r;
  r.block = (size_t)block;
  rest = end + 1;
  for (int i = 0; i < M2PT_BLOCK_NORMS; i++)
    if (!strcmp(rest, s->norms[i])) {
      r.kind = M2PT_NAME_NORM;
      r.norm = i;
      return r;
    }
  for (int i = 0; i < M2PT_BLOCK_LINEARS; i++)
    for (size_t p = 0; p < s->parts[i]; p++) {
      const char *field = after(rest, s->linears[i][p]);
      if (!field)
        continue;
      for (int f = 0; f < M2PT_FIELDS; f++)
        if (!strcmp(field, m2pt_field_names[f])) {
          r.kind = M2PT_NAME_LINEAR;
          r.linear = i;
          r.part = (int)p;
          r.field = f;
          return r;
        }
    }
  return r;
}
