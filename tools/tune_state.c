/* m2pt-tune's search state (saved after every candidate, so a run resumes
 * where one stopped) and the store it writes for the winner. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/file_write.h"
#include "tune.h"

const char *const tune_outcome_names[TUNE_OUTCOMES] = {"ok", "pruned", "failed", "wrong",
                                                       "crashed"};

/* ---- state file ---- */

static cJSON *candidate_json(const candidate *c, size_t shapes)
{
  cJSON *o = cJSON_CreateObject();
  if (!o)
    return NULL;
  const m2pt_tuning_kernel k = c->kind == KIND_DIRECT ? M2PT_TK_DIRECT : M2PT_TK_XGEMM;
  cJSON *values = cJSON_AddArrayToObject(o, "values");
  cJSON *ms = cJSON_AddArrayToObject(o, "ms");
  cJSON_AddStringToObject(o, "kind", c->kind == KIND_DIRECT ? "direct" : "indirect");
  cJSON_AddStringToObject(o, "outcome", tune_outcome_names[c->outcome]);
  if (isfinite(c->total_ms))
    cJSON_AddNumberToObject(o, "total_ms", c->total_ms);
  const size_t *v = m2pt_tuning_values_const(&c->t, k);
  for (size_t i = 0; values && i < m2pt_tuning_param_count(k); i++)
    cJSON_AddItemToArray(values, cJSON_CreateNumber((double)v[i]));
  for (size_t i = 0; ms && c->outcome == OUT_OK && i < shapes; i++)
    cJSON_AddItemToArray(ms, cJSON_CreateNumber(c->ms[i]));
  return o;
}

static int candidate_from_json(const cJSON *o, size_t shapes, candidate *c)
{
  memset(c, 0, sizeof *c);
  const cJSON *kind_item = cJSON_GetObjectItemCaseSensitive(o, "kind");
  const cJSON *values = cJSON_GetObjectItemCaseSensitive(o, "values");
  const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "ms");
  const cJSON *out = cJSON_GetObjectItemCaseSensitive(o, "outcome");
  const cJSON *total = cJSON_GetObjectItemCaseSensitive(o, "total_ms");
  if (!cJSON_IsString(kind_item) || !cJSON_IsArray(values))
    return -1;
  c->kind = strcmp(kind_item->valuestring, "direct") == 0 ? KIND_DIRECT : KIND_INDIRECT;
  const m2pt_tuning_kernel k = c->kind == KIND_DIRECT ? M2PT_TK_DIRECT : M2PT_TK_XGEMM;
  if ((size_t)cJSON_GetArraySize(values) != m2pt_tuning_param_count(k))
    return -1;
  size_t *v = m2pt_tuning_values(&c->t, k);
  size_t i = 0;
  for (const cJSON *e = values->child; e; e = e->next, i++) {
    if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble <= 65536))
      return -1;
    v[i] = (size_t)e->valuedouble;
  }
  tune_set_path(c);
  c->outcome = OUT_FAILED;
  for (int j = 0; j < (int)TUNE_OUTCOMES; j++)
    if (cJSON_IsString(out) && strcmp(out->valuestring, tune_outcome_names[j]) == 0)
      c->outcome = (outcome)j;
  c->total_ms = INFINITY;
  if (c->outcome == OUT_OK) {
    if (!cJSON_IsNumber(total) || !cJSON_IsArray(ms) || (size_t)cJSON_GetArraySize(ms) != shapes)
      return -1;
    c->total_ms = total->valuedouble;
    i = 0;
    for (const cJSON *e = ms->child; e; e = e->next, i++)
      c->ms[i] = cJSON_IsNumber(e) ? e->valuedouble : INFINITY;
  }
  return 0;
}

/* Writes the state atomically (m2pt_replace_file). */
int tune_save_state(const search *st)
{
  cJSON *root = cJSON_CreateObject();
  if (!root)
    return -1;
  cJSON_AddStringToObject(root, "format", "m2pt-tune-search");
  cJSON_AddNumberToObject(root, "version", 1);
  cJSON_AddStringToObject(root, "shapes", st->shapes_text);
  cJSON_AddNumberToObject(root, "seed", (double)st->seed);
  cJSON_AddNumberToObject(root, "budget_s", st->budget_s);
  cJSON_AddNumberToObject(root, "spent_s", st->spent_s);
  cJSON_AddNumberToObject(root, "next", (double)st->next);
  cJSON *base = cJSON_AddArrayToObject(root, "baseline_ms");
  for (size_t i = 0; base && st->have_baseline && i < st->shape_count; i++)
    cJSON_AddItemToArray(base, cJSON_CreateNumber(st->baseline_ms[i]));
  if (st->have_pending)
    cJSON_AddItemToObject(root, "pending", candidate_json(&st->pending, st->shape_count));
  cJSON *tried = cJSON_AddArrayToObject(root, "tried");
  for (size_t i = 0; tried && i < st->tried_count; i++)
    cJSON_AddItemToArray(tried, candidate_json(&st->tried[i], st->shape_count));
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  if (!text)
    return -1;
  char dir[4200];
  snprintf(dir, sizeof dir, "%s", st->state_path);
  char *slash = strrchr(dir, '/');
  if (slash) {
    *slash = '\0';
    if (m2pt_make_dirs(dir) != M2PT_OK) {
      free(text);
      return -1;
    }
  }
  const m2pt_chunk chunk = {text, strlen(text)};
  const m2pt_status s = m2pt_replace_file(st->state_path, &chunk, 1);
  free(text);
  return s == M2PT_OK ? 0 : -1;
}

static void update_best(search *st)
{
  st->best = -1;
  for (size_t i = 0; i < st->tried_count; i++)
    if (st->tried[i].outcome == OUT_OK &&
        (st->best < 0 || st->tried[i].total_ms < st->tried[st->best].total_ms))
      st->best = (long)i;
}

int tune_add_tried(search *st, const candidate *c)
{
  if (st->tried_count == MAX_TRIED)
    return -1;
  st->tried[st->tried_count++] = *c;
  update_best(st);
  return 0;
}

/* Loads a saved search for the same shapes and seed; 0 when one was loaded. */
int tune_load_state(search *st, double charge_s)
{
  int missing;
  char why[256];
  char *text = m2pt_tuning_read_text(st->state_path, (size_t)64 << 20, &missing, why, sizeof why);
  if (!text && missing)
    return -1;
  cJSON *root = text ? cJSON_Parse(text) : NULL;
  free(text);
  int rc = -1;
  const cJSON *shapes = cJSON_GetObjectItemCaseSensitive(root, "shapes");
  const cJSON *seed = cJSON_GetObjectItemCaseSensitive(root, "seed");
  const cJSON *base = cJSON_GetObjectItemCaseSensitive(root, "baseline_ms");
  const cJSON *tried = cJSON_GetObjectItemCaseSensitive(root, "tried");
  const cJSON *pending = cJSON_GetObjectItemCaseSensitive(root, "pending");
  if (!root || !cJSON_IsString(shapes) || strcmp(shapes->valuestring, st->shapes_text) != 0 ||
      !cJSON_IsNumber(seed) || !(seed->valuedouble >= 0.0 && seed->valuedouble <= 0x1p52) ||
      (unsigned long long)seed->valuedouble != st->seed ||
      !cJSON_IsArray(base) || (size_t)cJSON_GetArraySize(base) != st->shape_count ||
      !cJSON_IsArray(tried)) {
    fprintf(stderr, "m2pt-tune: %s is for other shapes or seed, or unreadable: starting afresh\n",
            st->state_path);
    goto done;
  }
  size_t i = 0;
  for (const cJSON *e = base->child; e; e = e->next, i++)
    st->baseline_ms[i] = cJSON_IsNumber(e) ? e->valuedouble : INFINITY;
  st->have_baseline = 1;
  st->spent_s = fmax(0.0, cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(root, "spent_s")));
  const double next = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(root, "next"));
  st->next = isfinite(next) && next > 0 && next < 1e12 ? (size_t)next : 0;
  st->tried_count = 0;
  for (const cJSON *e = tried->child; e; e = e->next) {
    candidate c;
    if (candidate_from_json(e, st->shape_count, &c) == 0 && st->tried_count < MAX_TRIED)
      st->tried[st->tried_count++] = c;
  }
  if (cJSON_IsObject(pending)) {
    candidate c;
    if (candidate_from_json(pending, st->shape_count, &c) == 0) {
      char text_c[512];
      tune_describe(&c, text_c, sizeof text_c);
      fprintf(stderr, "m2pt-tune: the last run died while measuring %s; skipping it\n", text_c);
      c.outcome = OUT_CRASHED;
      c.total_ms = INFINITY;
      st->spent_s += charge_s;
      if (st->tried_count < MAX_TRIED)
        st->tried[st->tried_count++] = c;
    }
  }
  update_best(st);
  rc = 0;
done:
  cJSON_Delete(root);
  return rc;
}

/* ---- the result ---- */

static void iso_date(char *buf, size_t size)
{
  const time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The store for the best candidate: its kernel and the routine setting
 * that sends the tuned shapes its way while leaving CLBlast's choice for
 * sizes the search did not measure as close to its default as it can. */
static void best_tuning(const search *st, m2pt_tuning *t)
{
  const candidate *best = &st->tried[st->best];
  *t = best->t;
  double lo = INFINITY, hi = 0.0;
  for (size_t i = 0; i < st->shape_count; i++) {
    const double mnk = (double)st->shapes[i].rows * (double)st->shapes[i].in *
                       (double)st->shapes[i].out;
    lo = fmin(lo, mnk);
    hi = fmax(hi, mnk);
  }
  /* CLBlast's default XGEMM_MIN_INDIRECT_SIZE for devices it does not know. */
  const size_t clblast_default = 832;
  if (best->kind == KIND_DIRECT) {
    /* direct when m·n·k < size³: above the largest tuned shape */
    size_t size = (size_t)ceil(cbrt(hi)) + 1;
    t->min_indirect = size > clblast_default ? size : clblast_default;
  } else {
    size_t size = (size_t)floor(cbrt(lo));
    while (size > 1 && (double)size * size * size > lo)
      size--;
    t->min_indirect = size < clblast_default ? size : clblast_default;
  }
}

double tune_baseline_total(const search *st)
{
  double base = 0.0;
  for (size_t i = 0; i < st->shape_count; i++)
    base += st->baseline_ms[i];
  return base;
}

/* The best candidate when it beats CLBlast's defaults, else NULL: only a
 * winner is stored. */
const candidate *tune_winner(const search *st)
{
  if (st->best < 0 || !st->have_baseline)
    return NULL;
  const candidate *best = &st->tried[st->best];
  return best->total_ms < tune_baseline_total(st) ? best : NULL;
}

int tune_write_store(const search *st, const m2pt_device_info *info)
{
  const candidate *best = tune_winner(st);
  if (!best)
    return 0;
  const double base = tune_baseline_total(st);
  m2pt_tuning t;
  best_tuning(st, &t);
  m2pt_tuning_provenance prov;
  memset(&prov, 0, sizeof prov);
  iso_date(prov.date, sizeof prov.date);
  snprintf(prov.m2pt_version, sizeof prov.m2pt_version, "%s", m2pt_version_string());
  snprintf(prov.tool, sizeof prov.tool, "m2pt-tune");
  snprintf(prov.shapes, sizeof prov.shapes, "%s", st->shapes_text);
  prov.budget_s = st->budget_s;
  prov.spent_s = st->spent_s;
  prov.candidates = (unsigned)st->tried_count;
  prov.gflops_before = tune_total_flops(st) / (base * 1e6);
  prov.gflops_after = tune_total_flops(st) / (best->total_ms * 1e6);
  if (m2pt_tuning_store_write(st->store_path, info, &t, &prov) != M2PT_OK) {
    fprintf(stderr, "m2pt-tune: cannot write the store: %s\n", m2pt_last_error(NULL));
    return -1;
  }
  return 0;
}

/* The defaults' figures per shape and in all, and the winner's beside them
 * when there is one: without one there is no "after" to show. */
