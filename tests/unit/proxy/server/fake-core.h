/* fake-core.h — knobs of the test double of proxy/core/core.h (fake-core.c).
 *
 * Images the fake knows (the `to` of a delta request):
 *   "small"  head 1000 bytes + 3 segments (~300 KiB)     "big"   head 4096 + 64 MiB
 *   "medium" head 2000 + 4 MiB                            "slow"  like big, reads sleep
 *   "fail"   like medium, reads fail after 1 MiB          "empty" head only
 *   "missing" → -ENOENT, "busy" → -EAGAIN, "plain" → -EMEDIUMTYPE, "bad" → -EINVAL
 * Body bytes are a pure function of the response position (fake_core_byte), so tests can
 * check any range. ETag = "\"fake-<to>-<n_from>\"". */
#ifndef SL_TEST_FAKE_CORE_H
#define SL_TEST_FAKE_CORE_H

#include <stdbool.h>
#include <stdint.h>

uint8_t fake_core_byte(const char *to, uint64_t pos);
uint64_t fake_core_total(const char *to);
void fake_core_set_healthy(bool ok);
/* Segment reads running now, and payload bytes handed to sinks since start. */
int fake_core_reads_in_progress(void);
uint64_t fake_core_bytes_read(void);
/* Reads that ended because the sink refused (-ECANCELED). */
uint64_t fake_core_reads_cancelled(void);
/* Plans made and freed. */
uint64_t fake_core_plans_live(void);

#endif
