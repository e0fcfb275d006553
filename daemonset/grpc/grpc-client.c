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
