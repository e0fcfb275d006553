/* k8s-internal.h — shared between the files of common/k8s only. */
#ifndef SL_K8S_INTERNAL_H
#define SL_K8S_INTERNAL_H

#include "http.h"
#include "k8s.h"

#include <stdint.h>

/* Reads a whole file (at most `max` bytes, else -EFBIG) into a NUL-terminated string. */
int sl_k8s_read_file(const char *path, size_t max, char **ret, size_t *ret_len, sl_error_t *err);

/* Streams a GET (watch): body bytes go to `sink` until the server ends the stream, the sink
 * stops it, or *cancel becomes non-zero. *ret_status gets the HTTP status; a non-2xx answer is
 * returned as an error (mapped like other requests), with *ret_status still set. */
int sl_k8s_stream(struct sl_k8s_client *c, const char *path, const char *query,
                  unsigned idle_timeout_s, sl_http_sink_fn sink, void *ud,
                  const volatile int *cancel, long *ret_status, sl_error_t *err);

/* Monotonic clock in ms; random number; sleep that wakes early when *cancel is set. */
int64_t sl_k8s_now_ms(void);
uint64_t sl_k8s_rand(void);
void sl_k8s_sleep_ms(int64_t ms, const volatile int *cancel);

/* Maps an error answer to (class, message). */
int sl_k8s_status_error(long status, const char *method, const char *path, const char *body,
                        size_t len, sl_error_t *err);

#endif
