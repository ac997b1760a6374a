/* Resolving a context's options at creation (context_options.c). */
#ifndef M2PT_CORE_CONTEXT_OPTIONS_H
#define M2PT_CORE_CONTEXT_OPTIONS_H

#include "m2pt/context.h"
#include "quirks.h"

/* The caller's options (NULL: the defaults) into *o, as far as their
 * struct_size reaches, rejecting values the header does not define; `fn`
 * names the public call in the message (left in m2pt_last_error(NULL)).
 * Errors: M2PT_ERR_INVALID_ARGUMENT, M2PT_ERR_UNSUPPORTED (a newer struct). */
m2pt_status m2pt_context_options_read(const m2pt_context_options *options, const char *fn,
                                      m2pt_context_options *o);

/* The cache directory for a cache_dir option (NULL: $M2PT_CACHE_DIR, else
 * $XDG_CACHE_HOME/m2pt, else ~/.cache/m2pt); NULL when it is "off" or no
 * home is known. The caller frees it. */
char *m2pt_cache_dir_resolve(const char *option);

/* Whether program binaries are cached on disk for these options (NULL: the
 * defaults) on a device with these quirks. */
int m2pt_binary_cache_wanted(const m2pt_context_options *opts, const m2pt_quirks *quirks);

/* Fills ctx->base_build_options, the options every program of the context
 * is built with, from its device and quirks. */
void m2pt_base_build_options_set(m2pt_context *ctx);

#endif
