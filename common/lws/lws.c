/* lws.c — libwebsockets server setup (see lws.h). */
#include "lws.h"
#include "log.h"

#include <errno.h>
#include <string.h>

static atomic_bool started;

static void log_line(int level, const char *line)
{
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        n--;
    if ((level & LLL_ERR) && !atomic_load(&started))
        log_warn("libwebsockets: %.*s", (int)n, line);
    else
        log_debug("libwebsockets: %.*s", (int)n, line);
}

void sl_lws_log_setup(void)
{
    lws_set_log_level(LLL_ERR | LLL_WARN | (sl_log_get_level() >= SL_LOG_DEBUG ? LLL_NOTICE : 0),
                      log_line);
}

void sl_lws_started(void)
{
    atomic_store(&started, true);
}

void sl_lws_listen_info(struct lws_context_creation_info *info, const char *name, const char *addr,
                        int port, const struct lws_protocols *protocols, int idle_s,
                        const char *cert, const char *key)
{
    info->vhost_name = name;
    info->iface = addr;
    info->port = port;
    info->protocols = protocols;
    info->keepalive_timeout = idle_s;
    info->timeout_secs = (unsigned)idle_s;
    info->alpn = "http/1.1";
    if (addr && !strchr(addr, ':'))
        info->options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (cert) {
        info->options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info->ssl_cert_filepath = cert;
        info->ssl_private_key_filepath = key;
    }
}

int sl_lws_run(struct lws_context *ctx, const atomic_bool *stop)
{
    while (!atomic_load(stop))
        if (lws_service(ctx, 0) < 0)
            return -EIO;
    return 0;
}

void sl_lws_stop(struct lws_context *ctx, atomic_bool *stop)
{
    atomic_store(stop, true);
    if (ctx)
        lws_cancel_service(ctx);
}
