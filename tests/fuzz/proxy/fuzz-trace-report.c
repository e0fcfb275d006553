/* fuzz-trace-report: the trace document of POST /starlight/report (proxy/core/trace.h), sent
 * by daemons and `ctr-starlight report` — parsed, validated, then every group ranked.
 * Invariants (abort on violation): a parsed document respects the limits it advertises, every
 * access names an image of its group, a failure always carries an error, and ranks are
 * 0..n-1 with paths borrowed from the document. */
#include "trace.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_trace_doc *d = NULL;
    sl_error_t err = NULL;
    int r = sl_trace_parse((const char *)data, size, &d, &err);
    if (r < 0) {
        if (!err || d)
            abort();
        sl_error_free(&err);
        return 0;
    }
    if (!d || d->n_groups > SL_TRACE_MAX_GROUPS || d->n_accesses > SL_TRACE_MAX_ACCESSES)
        abort();
    size_t total = 0;
    for (size_t g = 0; g < d->n_groups; g++) {
        const struct sl_trace_group *grp = &d->groups[g];
        if (!grp->name || grp->n_images > SL_TRACE_MAX_IMAGES)
            abort();
        for (size_t a = 0; a < grp->n_accesses; a++)
            if (grp->accesses[a].image >= grp->n_images || !grp->accesses[a].path ||
                grp->accesses[a].layer >= SL_TRACE_MAX_LAYERS)
                abort();
        total += grp->n_accesses;
        struct sl_trace_ranked *rk = NULL;
        size_t n = 0;
        sl_trace_rank(grp, &rk, &n);
        if (n > grp->n_accesses)
            abort();
        for (size_t i = 0; i < n; i++)
            if (rk[i].rank != i || rk[i].image >= grp->n_images || !rk[i].path)
                abort();
        free(rk);
    }
    if (total != d->n_accesses)
        abort();
    sl_trace_doc_free(d);
    return 0;
}
