/* pool.c — worker threads (pool.h). */
#include "pool.h"
#include "cleanup.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

struct job {
    struct job *next;
    sl_pool_fn run;
    sl_pool_fn drop;
    void *arg;
};

struct sl_pool {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    struct job *head, *tail;
    size_t queued;
    size_t busy;
    bool stopping;
    pthread_t *threads;
    size_t n_threads;
};

static void *worker_main(void *arg)
{
    struct sl_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cv, &p->lock);
        if (p->stopping)
            break;
        struct job *j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        p->busy++;
        pthread_mutex_unlock(&p->lock);
        j->run(j->arg);
        free(j);
        pthread_mutex_lock(&p->lock);
        p->busy--;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int sl_pool_new(size_t n, struct sl_pool **ret, sl_error_t *err)
{
    struct sl_pool *p = sl_xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = sl_xcalloc(n ? n : 1, sizeof(*p->threads));
    for (size_t i = 0; i < (n ? n : 1); i++) {
        int r = pthread_create(&p->threads[i], NULL, worker_main, p);
        if (r != 0) {
            sl_pool_free(p);
            return sl_error_make(err, r, "start worker thread %zu: %s", i, strerror(r));
        }
        p->n_threads++;
    }
    *ret = p;
    return 0;
}

void sl_pool_submit(struct sl_pool *p, sl_pool_fn run, sl_pool_fn drop, void *arg)
{
    struct job *j = sl_xcalloc(1, sizeof(*j));
    j->run = run;
    j->drop = drop;
    j->arg = arg;
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        pthread_mutex_unlock(&p->lock);
        if (drop)
            drop(arg);
        free(j);
        return;
    }
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->queued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->lock);
}

size_t sl_pool_queued(struct sl_pool *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->queued;
    pthread_mutex_unlock(&p->lock);
    return n;
}

size_t sl_pool_busy(struct sl_pool *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->busy;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void sl_pool_free(struct sl_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    struct job *pending = p->head;
    p->head = p->tail = NULL;
    p->queued = 0;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    while (pending) {
        struct job *next = pending->next;
        if (pending->drop)
            pending->drop(pending->arg);
        free(pending);
        pending = next;
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}
