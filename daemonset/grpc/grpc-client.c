/* grpc-client.c — unary calls with a pluck completion queue per call (grpc-client.h). */
#include "grpc-client.h"
#include "cleanup.h"
#include "grpc-server.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdbool.h>
#include <string.h>

struct sl_grpc_client {
    grpc_channel *channel;
    char *target;
};

int sl_grpc_client_new(const char *target, struct sl_grpc_client **ret, sl_error_t *err)
{
    grpc_init();
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    if (!ch) {
        grpc_shutdown();
        return sl_error_make(err, EINVAL, "gRPC channel to %s", target);
    }
    struct sl_grpc_client *c = sl_xcalloc(1, sizeof(*c));
    c->channel = ch;
    c->target = sl_xstrdup(target);
    *ret = c;
    return 0;
}

void sl_grpc_client_free(struct sl_grpc_client *c)
{
    if (!c)
        return;
    grpc_channel_destroy(c->channel);
    free(c->target);
    free(c);
    grpc_shutdown();
}

int sl_grpc_client_unary(struct sl_grpc_client *c, const char *method, const char *ns,
                         const uint8_t *req, size_t len, int timeout_ms, uint8_t **ret_resp,
                         size_t *ret_len, sl_error_t *err)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    grpc_slice mslice = grpc_slice_from_copied_string(method);
    grpc_call *call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                               mslice, NULL, deadline, NULL);
    grpc_slice_unref(mslice);

    grpc_metadata md;
    memset(&md, 0, sizeof(md));
    if (ns) {
        md.key = grpc_slice_from_static_string("containerd-namespace");
        md.value = grpc_slice_from_copied_string(ns);
    }
    grpc_slice body = grpc_slice_from_copied_buffer((const char *)req, len);
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    grpc_byte_buffer *recv = NULL;
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = ns ? 1 : 0;
    ops[0].data.send_initial_metadata.metadata = ns ? &md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;

    int r = 0;
    void *tag = (void *)1;
    if (grpc_call_start_batch(call, ops, 6, tag, NULL) != GRPC_CALL_OK) {
        r = sl_error_make(err, EIO, "%s: cannot start the call", method);
    } else {
        grpc_event ev =
            grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
            r = sl_error_make(err, EIO, "%s: call failed", method);
        } else if (status != GRPC_STATUS_OK) {
            _cleanup_free_ char *msg = grpc_slice_to_c_string(details);
            int e = sl_grpc_errno_from_status(status);
            r = sl_error_make(err, -e, "%s on %s: %s (gRPC status %d)", method, c->target, msg,
                              (int)status);
        } else {
            size_t n = 0;
            uint8_t *out = NULL;
            if (recv) {
                grpc_byte_buffer_reader rd;
                if (grpc_byte_buffer_reader_init(&rd, recv)) {
                    grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
                    n = GRPC_SLICE_LENGTH(s);
                    out = sl_xmalloc(n ? n : 1);
                    memcpy(out, GRPC_SLICE_START_PTR(s), n);
                    grpc_slice_unref(s);
                    grpc_byte_buffer_reader_destroy(&rd);
                }
            }
            *ret_resp = out ? out : sl_xcalloc(1, 1);
            *ret_len = n;
        }
    }
    if (ns)
        grpc_slice_unref(md.value);
    grpc_byte_buffer_destroy(send);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return r;
}

/* ------------------------------------------------------------------ streams */

struct sl_grpc_stream {
    struct sl_grpc_client *client;
    char *method;
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata *md;
    size_t nmd;
    bool md_sent, md_received, closed, finished, ended;
};

/* Runs one batch and waits for it; returns 1 when it succeeded, 0 when the call failed
 * (the status tells why), -EIO when the batch could not start. */
static int stream_batch(struct sl_grpc_stream *s, grpc_op *ops, size_t n)
{
    void *tag = (void *)s;
    if (grpc_call_start_batch(s->call, ops, n, tag, NULL) != GRPC_CALL_OK)
        return -EIO;
    /* The call's deadline bounds every batch: on expiry the core fails it. */
    grpc_event ev =
        grpc_completion_queue_pluck(s->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success ? 1 : 0;
}

/* Adds SEND_INITIAL_METADATA to `ops` the first time. */
static size_t stream_add_md(struct sl_grpc_stream *s, grpc_op *ops)
{
    if (s->md_sent)
        return 0;
    s->md_sent = true;
    memset(ops, 0, sizeof(*ops));
    ops->op = GRPC_OP_SEND_INITIAL_METADATA;
    ops->data.send_initial_metadata.count = s->nmd;
    ops->data.send_initial_metadata.metadata = s->nmd ? s->md : NULL;
    return 1;
}

int sl_grpc_stream_open(struct sl_grpc_client *c, const char *method, const struct sl_grpc_md *md,
                        size_t nmd, int timeout_ms, struct sl_grpc_stream **ret, sl_error_t *err)
{
    (void)err;
    struct sl_grpc_stream *s = sl_xcalloc(1, sizeof(*s));
    s->client = c;
    s->method = sl_xstrdup(method);
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    grpc_slice mslice = grpc_slice_from_copied_string(method);
    s->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, mslice,
                                       NULL, deadline, NULL);
    grpc_slice_unref(mslice);
    s->nmd = 0;
    s->md = sl_xcalloc(nmd ? nmd : 1, sizeof(*s->md));
    for (size_t i = 0; i < nmd; i++) {
        if (!md[i].key || !md[i].value)
            continue;
        s->md[s->nmd].key = grpc_slice_from_copied_string(md[i].key);
        s->md[s->nmd].value = grpc_slice_from_copied_string(md[i].value);
        s->nmd++;
    }
    *ret = s;
    return 0;
}

int sl_grpc_stream_send(struct sl_grpc_stream *s, const uint8_t *msg, size_t len, sl_error_t *err)
{
    if (s->closed || s->finished)
        return sl_error_make(err, EINVAL, "%s: send after close", s->method);
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    size_t n = stream_add_md(s, ops);
    grpc_slice body = grpc_slice_from_copied_buffer((const char *)msg, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = bb;
    int r = stream_batch(s, ops, n + 1);
    grpc_byte_buffer_destroy(bb);
    if (r < 0)
        return sl_error_make(err, EIO, "%s: cannot start a send", s->method);
    if (r == 0)
        return sl_error_make(err, EPIPE, "%s: the call ended before a send", s->method);
    return 0;
}

int sl_grpc_stream_recv(struct sl_grpc_stream *s, uint8_t **ret_msg, size_t *ret_len,
                        sl_error_t *err)
{
    if (s->finished)
        return sl_error_make(err, EINVAL, "%s: recv after finish", s->method);
    if (s->ended)
        return 0;
    grpc_metadata_array initial;
    grpc_metadata_array_init(&initial);
    grpc_byte_buffer *recv = NULL;
    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    size_t n = stream_add_md(s, ops);
    if (!s->md_received) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n].data.recv_initial_metadata.recv_initial_metadata = &initial;
        n++;
        s->md_received = true;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &recv;
    n++;
    int r = stream_batch(s, ops, n);
    grpc_metadata_array_destroy(&initial);
    if (r < 0)
        return sl_error_make(err, EIO, "%s: cannot start a receive", s->method);
    if (!recv) { /* end of the server's messages, or the call failed: finish tells */
        s->ended = true;
        return 0;
    }
    size_t len = 0;
    uint8_t *out = NULL;
    grpc_byte_buffer_reader rd;
    if (grpc_byte_buffer_reader_init(&rd, recv)) {
        grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
        len = GRPC_SLICE_LENGTH(sl);
        out = sl_xmalloc(len ? len : 1);
        memcpy(out, GRPC_SLICE_START_PTR(sl), len);
        grpc_slice_unref(sl);
        grpc_byte_buffer_reader_destroy(&rd);
    }
    grpc_byte_buffer_destroy(recv);
    if (!out)
        return sl_error_make(err, EIO, "%s: unreadable message", s->method);
    *ret_msg = out;
    *ret_len = len;
    return 1;
}

int sl_grpc_stream_finish(struct sl_grpc_stream *s, sl_error_t *err)
{
    if (s->finished)
        return sl_error_make(err, EINVAL, "%s: finished twice", s->method);
    if (!s->closed) {
        grpc_op ops[2];
        memset(ops, 0, sizeof(ops));
        size_t n = stream_add_md(s, ops);
        ops[n].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        s->closed = true;
        (void)stream_batch(s, ops, n + 1); /* a failure shows in the status */
    }
    while (!s->ended) {
        _cleanup_free_ uint8_t *msg = NULL;
        size_t len = 0;
        if (sl_grpc_stream_recv(s, &msg, &len, NULL) <= 0)
            break;
    }
    grpc_metadata_array trailing;
    grpc_metadata_array_init(&trailing);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &trailing;
    op.data.recv_status_on_client.status = &status;
    op.data.recv_status_on_client.status_details = &details;
    int r = stream_batch(s, &op, 1);
    s->finished = true;
    if (r <= 0) {
        r = sl_error_make(err, EIO, "%s: no status", s->method);
    } else if (status != GRPC_STATUS_OK) {
        _cleanup_free_ char *msg = grpc_slice_to_c_string(details);
        r = sl_error_make(err, -sl_grpc_errno_from_status(status), "%s on %s: %s (gRPC status %d)",
                          s->method, s->client->target, msg, (int)status);
    } else {
        r = 0;
    }
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&trailing);
    return r;
}

void sl_grpc_stream_free(struct sl_grpc_stream *s)
{
    if (!s)
        return;
    if (!s->finished) {
        grpc_call_cancel(s->call, NULL);
        sl_grpc_stream_finish(s, NULL);
    }
    grpc_call_unref(s->call);
    grpc_completion_queue_shutdown(s->cq);
    while (
        grpc_completion_queue_pluck(s->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
        GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(s->cq);
    for (size_t i = 0; i < s->nmd; i++) {
        grpc_slice_unref(s->md[i].key);
        grpc_slice_unref(s->md[i].value);
    }
    free(s->md);
    free(s->method);
    free(s);
}

int sl_grpc_client_unary_md(struct sl_grpc_client *c, const char *method,
                            const struct sl_grpc_md *md, size_t nmd, const uint8_t *req, size_t len,
                            int timeout_ms, uint8_t **ret_resp, size_t *ret_len, sl_error_t *err)
{
    struct sl_grpc_stream *s = NULL;
    int r = sl_grpc_stream_open(c, method, md, nmd, timeout_ms, &s, err);
    if (r < 0)
        return r;
    _cleanup_free_ uint8_t *resp = NULL;
    size_t n = 0;
    int got = 0;
    r = sl_grpc_stream_send(s, req, len, NULL); /* on failure the status says why */
    if (r == 0) {
        grpc_op op;
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        s->closed = true;
        (void)stream_batch(s, &op, 1);
        got = sl_grpc_stream_recv(s, &resp, &n, NULL);
    }
    r = sl_grpc_stream_finish(s, err);
    sl_grpc_stream_free(s);
    if (r < 0)
        return r;
    if (got <= 0)
        return sl_error_make(err, EIO, "%s: no response message", method);
    *ret_resp = TAKE_PTR(resp);
    *ret_len = n;
    return 0;
}
