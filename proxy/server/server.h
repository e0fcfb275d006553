/* server.h — the HTTP server of starlight-proxy (libwebsockets, HTTP/1.1 keep-alive, optional
 * TLS) in front of the core (proxy/core/core.h).
 *
 * Threading: one event-loop thread (the caller of sl_server_run) owns every libwebsockets
 * object; it parses requests, answers what needs no core call, and hands the rest to a fixed
 * pool of worker threads (pool.h). A worker calls the core (blocking), stores the response on
 * the request, puts the request on a ready list and wakes the loop with lws_cancel_service();
 * the loop then asks for writeable callbacks of the connections on the list. Delta bodies go
 * through a bounded per-stream queue (stream.h). The loop never blocks on the database, the
 * registry or bcrypt.
 *
 * Ownership: a request is reference-counted between the loop (its connection), queued jobs
 * and the ready list; a client that disconnects cancels its stream and the last reference
 * frees everything, plan included. */
#ifndef SL_PROXY_SERVER_H
#define SL_PROXY_SERVER_H

#include "core.h"
#include "error.h"
#include "hook.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_server_config {
    const char *listen_addr; /* IP address to bind; NULL = every interface */
    int port;                /* 0 = the kernel picks (see sl_server_port) */
    const char *tls_cert;    /* PEM files; both NULL = plain HTTP */
    const char *tls_key;
    const char *auth_file;      /* NULL = no authentication (auth.h) */
    bool open_health;           /* /health-check without authentication */
    bool open_metrics;          /* /metrics without authentication */
    int workers;                /* >= 1 */
    size_t max_body;            /* request body cap (413 beyond) */
    int idle_timeout_s;         /* a client that neither sends nor reads this long is dropped */
    struct sl_hook_config hook; /* n_repos == 0: /starlight/hook/registry answers 404 */
};

struct sl_server;

/* Binds the listening socket and starts the workers. `core` is borrowed and must outlive
 * the server. Errors: -EINVAL (configuration), -EADDRINUSE/-EIO (cannot listen or TLS files
 * unusable), auth file errors (auth.h). */
int sl_server_new(const struct sl_server_config *cfg, struct sl_core *core, struct sl_server **ret,
                  sl_error_t *err);
/* The port actually listened on. */
int sl_server_port(struct sl_server *srv);
/* Runs the event loop on the calling thread until sl_server_stop(). Returns 0 or -EIO. */
int sl_server_run(struct sl_server *srv);
/* Asks the loop to return; callable from any thread and from a signal handler. */
void sl_server_stop(struct sl_server *srv);
/* Stops the workers (running jobs finish, their streams cancelled), closes every connection
 * and frees. Call after sl_server_run returned. Accepts NULL. */
void sl_server_free(struct sl_server *srv);

/* Live numbers for tests and /metrics. Thread-safe. */
struct sl_server_stats {
    size_t live_requests; /* request objects not yet freed */
    size_t streams_in_flight;
    size_t queued_chunks; /* stream chunks queued, all streams together */
    uint64_t delta_sent_bytes;
};
void sl_server_stats(struct sl_server *srv, struct sl_server_stats *ret);

#endif
