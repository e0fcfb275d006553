/* lws.h — libwebsockets server setup shared by starlight-proxy's server and
 * starlight-controller's webhook: libwebsockets log lines through common/base log, the
 * listening part of a vhost (address, port, idle timeout, TLS files) and the service loop. */
#ifndef SL_LWS_H
#define SL_LWS_H

#include <libwebsockets.h>

#include <stdatomic.h>
#include <stdbool.h>

/* Routes libwebsockets' log lines to log.h: errors at warn level until sl_lws_started(), then
 * (mostly hostile or broken clients: oversized headers, bad requests) at debug level, so they
 * cannot flood; notices too when the log level is debug. Call before creating the context. */
void sl_lws_log_setup(void);
/* Start-up is over: later libwebsockets errors go to the debug level. */
void sl_lws_started(void);

/* Fills the listening fields of `info` (zeroed by the caller beforehand): `name`, `addr` (NULL
 * = every address; an IPv4 address binds IPv4 only), `port`, `protocols`, keep-alive and idle
 * timeout `idle_s`, HTTP/1.1 only, and TLS with `cert`/`key` when `cert` is set. */
void sl_lws_listen_info(struct lws_context_creation_info *info, const char *name, const char *addr,
                        int port, const struct lws_protocols *protocols, int idle_s,
                        const char *cert, const char *key);

/* Services `ctx` until *stop is set (and lws_cancel_service wakes the loop): 0, or -EIO when
 * the service fails. */
int sl_lws_run(struct lws_context *ctx, const atomic_bool *stop);
/* Sets *stop and wakes the loop of `ctx` (may be NULL); any thread. */
void sl_lws_stop(struct lws_context *ctx, atomic_bool *stop);

#endif
