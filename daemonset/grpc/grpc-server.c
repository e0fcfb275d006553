/* grpc-server.c — gRPC C-core server with one completion queue per worker (grpc-server.h). */
#include "grpc-server.h"
#include "cleanup.h"
#include "log.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tags on a worker's queue: only one operation is ever outstanding there at a time. */
#define TAG_NEW_CALL ((void *)1)
#define TAG_OP       ((void *)2)
#define TAG_SHUTDOWN ((void *)3)

struct worker {
    struct sl_grpc_server *srv;
    grpc_completion_queue *cq;
    pthread_t thread;
    bool started;
};

struct sl_grpc_server {
    grpc_server *server;
    grpc_completion_queue *shutdown_cq;
    struct worker *workers;
    int nworkers;
    const struct sl_grpc_method *methods;
    size_t nmethods;
    void *ud;
    char *socket_path;
    atomic_uint_fast64_t calls;
};

struct sl_grpc_call {
    struct worker *w;
    grpc_call *call;
    grpc_metadata_array *md;
    bool sent_initial;
    bool broken;
    grpc_byte_buffer *pending; /* last queued message, sent with the next one or the status */
};

int sl_grpc_status_from_errno(int r)
{
    switch (r < 0 ? -r : r) {
    case 0:
        return GRPC_STATUS_OK;
    case ENOENT:
        return GRPC_STATUS_NOT_FOUND;
    case EEXIST:
        return GRPC_STATUS_ALREADY_EXISTS;
    case EINVAL:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case ENOTEMPTY:
    case EBUSY:
        return GRPC_STATUS_FAILED_PRECONDITION;
    case ENOSYS:
    case EOPNOTSUPP:
        return GRPC_STATUS_UNIMPLEMENTED;
    case EAGAIN:
        return GRPC_STATUS_UNAVAILABLE;
    case ECANCELED:
        return GRPC_STATUS_CANCELLED;
    case ETIMEDOUT:
        return GRPC_STATUS_DEADLINE_EXCEEDED;
    case EACCES:
    case EPERM:
        return GRPC_STATUS_PERMISSION_DENIED;
    case ENOSPC:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    default:
        return GRPC_STATUS_UNKNOWN;
    }
}

int sl_grpc_errno_from_status(int status)
{
    switch (status) {
    case GRPC_STATUS_OK:
        return 0;
    case GRPC_STATUS_NOT_FOUND:
        return -ENOENT;
    case GRPC_STATUS_ALREADY_EXISTS:
        return -EEXIST;
    case GRPC_STATUS_INVALID_ARGUMENT:
        return -EINVAL;
    case GRPC_STATUS_FAILED_PRECONDITION:
        return -EBUSY;
    case GRPC_STATUS_UNIMPLEMENTED:
        return -EOPNOTSUPP;
    case GRPC_STATUS_UNAVAILABLE:
        return -EAGAIN;
    case GRPC_STATUS_CANCELLED:
        return -ECANCELED;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return -ETIMEDOUT;
    case GRPC_STATUS_PERMISSION_DENIED:
    case GRPC_STATUS_UNAUTHENTICATED:
        return -EACCES;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return -ENOSPC;
    default:
        return -EIO;
    }
}

/* Waits for `tag` on the worker's queue. Returns the event's success flag; false when the
 * queue shut down. */
static bool wait_tag(grpc_completion_queue *cq, void *tag)
{
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return false;
        if (ev.type == GRPC_OP_COMPLETE && ev.tag == tag)
            return ev.success != 0;
    }
}

static bool run_batch(struct sl_grpc_call *c, const grpc_op *ops, size_t n)
{
    if (grpc_call_start_batch(c->call, ops, n, TAG_OP, NULL) != GRPC_CALL_OK)
        return false;
    return wait_tag(c->w->cq, TAG_OP);
}

/* Sends the pending message, with the initial metadata the first time. */
static int flush_pending(struct sl_grpc_call *c)
{
    if (!c->pending)
        return 0;
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (!c->sent_initial) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
        c->sent_initial = true;
    }
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = c->pending;
    n++;
    bool ok = run_batch(c, ops, n);
    grpc_byte_buffer_destroy(c->pending);
    c->pending = NULL;
    if (!ok) {
        c->broken = true;
        return -ECONNRESET;
    }
    return 0;
}

int sl_grpc_call_send(struct sl_grpc_call *c, const uint8_t *msg, size_t len)
{
    if (c->broken)
        return -ECONNRESET;
    int r = flush_pending(c);
    if (r < 0)
        return r;
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)msg, len);
    c->pending = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return 0;
}

char *sl_grpc_call_metadata(struct sl_grpc_call *c, const char *key)
{
    for (size_t i = 0; i < c->md->count; i++)
        if (grpc_slice_str_cmp(c->md->metadata[i].key, key) == 0)
            return grpc_slice_to_c_string(c->md->metadata[i].value);
    return NULL;
}

static void finish_call(struct sl_grpc_call *c, int r, const char *msg)
{
    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (!c->sent_initial) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->sent_initial = true;
    }
    /* A failed call sends no message: drop whatever the handler queued. */
    if (c->pending && r >= 0) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->pending;
        n++;
    }
    grpc_slice details = grpc_slice_from_copied_string(r < 0 && msg ? msg : "");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)sl_grpc_status_from_errno(r);
    ops[n].data.send_status_from_server.status_details = r < 0 ? &details : NULL;
    n++;
    int cancelled = 0;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &cancelled;
    n++;
    (void)run_batch(c, ops, n);
    grpc_slice_unref(details);
    if (c->pending) {
        grpc_byte_buffer_destroy(c->pending);
        c->pending = NULL;
    }
}

static const struct sl_grpc_method *find_method(struct sl_grpc_server *srv, grpc_slice path)
{
    for (size_t i = 0; i < srv->nmethods; i++)
        if (grpc_slice_str_cmp(path, srv->methods[i].path) == 0)
            return &srv->methods[i];
    return NULL;
}

static void serve_call(struct worker *w, grpc_call *call, grpc_call_details *details,
                       grpc_metadata_array *md)
{
    struct sl_grpc_call c = {.w = w, .call = call, .md = md};
    grpc_byte_buffer *req = NULL;
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &req;
    if (!run_batch(&c, &op, 1)) {
        if (req)
            grpc_byte_buffer_destroy(req);
        finish_call(&c, -ECONNRESET, "call broken while reading the request");
        return;
    }
    grpc_slice body = grpc_empty_slice();
    if (req) {
        grpc_byte_buffer_reader rd;
        if (grpc_byte_buffer_reader_init(&rd, req)) {
            body = grpc_byte_buffer_reader_readall(&rd);
            grpc_byte_buffer_reader_destroy(&rd);
        }
        grpc_byte_buffer_destroy(req);
    }
    const struct sl_grpc_method *m = find_method(w->srv, details->method);
    _cleanup_error_ sl_error_t err = NULL;
    int r;
    if (!m) {
        _cleanup_free_ char *path = grpc_slice_to_c_string(details->method);
        r = sl_error_make(&err, EOPNOTSUPP, "unknown method %s", path);
    } else {
        r = m->fn(w->srv->ud, &c, GRPC_SLICE_START_PTR(body), GRPC_SLICE_LENGTH(body), &err);
        if (r < 0 && !err)
            r = sl_error_make(&err, -r, "%s", strerror(-r));
    }
    grpc_slice_unref(body);
    if (r < 0) {
        _cleanup_free_ char *path = grpc_slice_to_c_string(details->method);
        log_debug("%s: %s", path, sl_error_msg(err, r));
    }
    /* Counted before the reply goes out, so a client that saw its answer also sees the count. */
    atomic_fetch_add(&w->srv->calls, 1);
    finish_call(&c, r, r < 0 ? sl_error_msg(err, r) : NULL);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (;;) {
        grpc_call *call = NULL;
        grpc_call_details details;
        grpc_metadata_array md;
        grpc_call_details_init(&details);
        grpc_metadata_array_init(&md);
        grpc_call_error e = grpc_server_request_call(w->srv->server, &call, &details, &md, w->cq,
                                                     w->cq, TAG_NEW_CALL);
        bool ok = e == GRPC_CALL_OK && wait_tag(w->cq, TAG_NEW_CALL);
        if (ok && call)
            serve_call(w, call, &details, &md);
        if (call)
            grpc_call_unref(call);
        grpc_call_details_destroy(&details);
        grpc_metadata_array_destroy(&md);
        if (!ok)
            break; /* the server is shutting down */
    }
    return NULL;
}

uint64_t sl_grpc_server_calls(const struct sl_grpc_server *srv)
{
    return atomic_load(&((struct sl_grpc_server *)srv)->calls);
}

static void drain_destroy(grpc_completion_queue *cq)
{
    if (!cq)
        return;
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}

int sl_grpc_server_start(const char *socket_path, const struct sl_grpc_method *methods,
                         size_t nmethods, void *ud, int workers, struct sl_grpc_server **ret,
                         sl_error_t *err)
{
    if (workers < 1)
        workers = 1;
    if (strlen(socket_path) >= 100)
        return sl_error_make(err, ENAMETOOLONG, "socket path %s: too long", socket_path);
    /* A socket left by a previous run would make the bind fail; anything else is kept. */
    struct stat st;
    if (lstat(socket_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return sl_error_make(err, EEXIST, "%s exists and is not a socket", socket_path);
        unlink(socket_path);
    }
    grpc_init();
    struct sl_grpc_server *srv = sl_xcalloc(1, sizeof(*srv));
    srv->methods = methods;
    srv->nmethods = nmethods;
    srv->ud = ud;
    srv->socket_path = sl_xstrdup(socket_path);
    srv->server = grpc_server_create(NULL, NULL);
    srv->nworkers = workers;
    srv->workers = sl_xcalloc((size_t)workers, sizeof(*srv->workers));
    for (int i = 0; i < workers; i++) {
        srv->workers[i].srv = srv;
        srv->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(srv->server, srv->workers[i].cq, NULL);
    }
    srv->shutdown_cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv->server, srv->shutdown_cq, NULL);

    _cleanup_free_ char *addr = sl_xasprintf("unix:%s", socket_path);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(srv->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        int r = sl_error_make(err, EADDRINUSE, "cannot listen on %s", addr);
        grpc_server_destroy(srv->server);
        for (int i = 0; i < workers; i++)
            drain_destroy(srv->workers[i].cq);
        drain_destroy(srv->shutdown_cq);
        free(srv->workers);
        free(srv->socket_path);
        free(srv);
        grpc_shutdown();
        return r;
    }
    grpc_server_start(srv->server);
    for (int i = 0; i < workers; i++) {
        if (pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]) != 0) {
            int r = sl_error_make(err, EAGAIN, "cannot start worker threads");
            sl_grpc_server_stop(srv, 0);
            return r;
        }
        srv->workers[i].started = true;
    }
    *ret = srv;
    return 0;
}

void sl_grpc_server_stop(struct sl_grpc_server *srv, int grace_ms)
{
    if (!srv)
        return;
    grpc_server_shutdown_and_notify(srv->server, srv->shutdown_cq, TAG_SHUTDOWN);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(grace_ms, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_next(srv->shutdown_cq, deadline, NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        log_warn("calls still running after %d ms: cancelling them", grace_ms);
        grpc_server_cancel_all_calls(srv->server);
        (void)grpc_completion_queue_next(srv->shutdown_cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                         NULL);
    }
    for (int i = 0; i < srv->nworkers; i++)
        if (srv->workers[i].started)
            pthread_join(srv->workers[i].thread, NULL);
    grpc_server_destroy(srv->server);
    for (int i = 0; i < srv->nworkers; i++)
        drain_destroy(srv->workers[i].cq);
    drain_destroy(srv->shutdown_cq);
    unlink(srv->socket_path);
    free(srv->workers);
    free(srv->socket_path);
    free(srv);
    grpc_shutdown();
}
