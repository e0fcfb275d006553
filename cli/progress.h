/* progress.h — progress of long CLI operations. On a terminal a status line is redrawn a few
 * times a second from a ticker thread; elsewhere nothing is drawn (the verbs log a summary).
 * Counters may be bumped from any thread. */
#ifndef SL_CLI_PROGRESS_H
#define SL_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

enum sl_progress_counter {
    SL_PROGRESS_LAYERS_TOTAL,
    SL_PROGRESS_LAYERS_DONE,
    SL_PROGRESS_DOWNLOAD_TOTAL,
    SL_PROGRESS_DOWNLOADED,
    SL_PROGRESS_CONVERTED,
    SL_PROGRESS_PUSHED,
    SL_PROGRESS_N_COUNTERS,
};

struct sl_progress;

/* `draw` false gives a progress object that only counts. `what` is copied. */
struct sl_progress *sl_progress_new(bool draw, const char *what);
void sl_progress_add(struct sl_progress *p, enum sl_progress_counter c, uint64_t n);
uint64_t sl_progress_get(struct sl_progress *p, enum sl_progress_counter c);
/* Names the current phase ("converting", "pushing"); the string must outlive the phase. */
void sl_progress_phase(struct sl_progress *p, const char *phase);
/* Draws the final line and stops drawing. */
void sl_progress_done(struct sl_progress *p);
void sl_progress_free(struct sl_progress *p);

#endif
