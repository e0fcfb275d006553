/* pool.h — a fixed pool of worker threads with a FIFO job queue.
 *
 * The event loop never blocks: it submits jobs here, and the jobs (which may block on the
 * database or the registry through the core) report back through the server's wake-up path.
 * Thread-safe: sl_pool_submit() may be called from any thread. */
#ifndef SL_PROXY_POOL_H
#define SL_PROXY_POOL_H

#include "error.h"

#include <stddef.h>

typedef void (*sl_pool_fn)(void *arg);

struct sl_pool;

/* Starts `n` (>= 1) threads. */
int sl_pool_new(size_t n, struct sl_pool **ret, sl_error_t *err);
/* Queues run(arg). If the pool is stopped before the job runs, drop(arg) is called instead
 * (from the stopping thread) so the job can release what it holds. */
void sl_pool_submit(struct sl_pool *p, sl_pool_fn run, sl_pool_fn drop, void *arg);
/* Jobs waiting (not yet running). */
size_t sl_pool_queued(struct sl_pool *p);
/* Jobs running now. */
size_t sl_pool_busy(struct sl_pool *p);
/* Stops: running jobs finish, queued jobs are dropped, threads are joined. Accepts NULL. */
void sl_pool_free(struct sl_pool *p);

#endif
