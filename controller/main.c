/* starlight-controller — wiring only: options, logging, metrics, the image check, the webhook
 * server, signals. */
#include "cleanup.h"
#include "controller-config.h"
#include "imagecheck.h"
#include "log.h"
#include "manager.h"
#include "metrics.h"
#include "mutate.h"
#include "webhook.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct sl_webhook *the_webhook;

static void on_signal(int sig)
{
    (void)sig;
    if (the_webhook)
        sl_webhook_stop(the_webhook);
}

int main(int argc, char **argv)
{
    struct sl_controller_config cfg = {0};
    _cleanup_error_ sl_error_t err = NULL;
    int r = sl_controller_config_parse(&cfg, argc, argv, &err);
    enum sl_log_format fmt = SL_LOG_TEXT;
    enum sl_log_level lvl = SL_LOG_INFO;
    if (r == 0 && (sl_log_parse_format(cfg.log_format, &fmt) < 0 ||
                   sl_log_parse_level(cfg.log_level, &lvl) < 0))
        r = sl_error_make(&err, EINVAL,
                          "--log-format must be text|json and --log-level error|warn|info|debug");
    bool kube = (cfg.kubeconfig && *cfg.kubeconfig) || getenv("KUBERNETES_SERVICE_HOST");
    if (r != 0) {
        if (r < 0)
            fprintf(stderr, "starlight-controller: %s\n", sl_error_msg(err, r));
        sl_controller_config_free(&cfg);
        return r < 0 ? 2 : 0;
    }
    sl_log_setup("starlight-controller", fmt, lvl);
    signal(SIGPIPE, SIG_IGN);

    _cleanup_(sl_metrics_freep) struct sl_metrics *metrics = sl_metrics_new();
    struct sl_imagecheck *check = NULL;
    if (cfg.proxy && *cfg.proxy) {
        const struct sl_imagecheck_options io = {
            .proxy_url = cfg.proxy,
            .token = cfg.proxy_token,
            .platform = cfg.platform,
            .insecure = cfg.registry_insecure,
            .timeout_ms = cfg.proxy_timeout_ms,
            .metrics = metrics,
        };
        check = sl_imagecheck_new(&io);
    } else {
        log_warn("no --proxy: every image of an opted-in Pod is treated as a Starlight image");
    }
    struct sl_manager *mgr = NULL;
    if (!kube) {
        log_info("no Kubernetes API (--kubeconfig, or in-cluster): webhook only, no "
                 "controllers, no leader election");
    } else {
        const struct sl_manager_options mo = {
            .kubeconfig = cfg.kubeconfig,
            .leader_elect = cfg.leader_elect,
            .lease_namespace = cfg.lease_namespace,
            .lease_name = cfg.lease_name,
            .identity = cfg.identity,
            .lease_duration_ms = cfg.lease_duration_ms,
            .renew_deadline_ms = cfg.renew_deadline_ms,
            .retry_period_ms = cfg.retry_period_ms,
            .prewarm = cfg.prewarm,
            .trace_jobs = cfg.trace_jobs,
            .trace_grace_ms = cfg.trace_grace_ms,
            .metrics = metrics,
        };
        r = sl_manager_start(&mo, &mgr, &err);
        if (r < 0) {
            sl_log_error_err(&err, r, "start the controllers");
            sl_imagecheck_free(check);
            sl_controller_config_free(&cfg);
            return 1;
        }
    }

    _cleanup_free_ char *waddr = NULL, *maddr = NULL;
    int wport = 0, mport = 0;
    (void)sl_parse_listen("--webhook-listen", cfg.webhook_listen, &waddr, &wport, NULL);
    (void)sl_parse_listen("--metrics-listen", cfg.metrics_listen, &maddr, &mport, NULL);
    const struct sl_webhook_config wc = {
        .listen_addr = waddr,
        .port = wport,
        .tls_cert = cfg.tls_cert,
        .tls_key = cfg.tls_key,
        .metrics_addr = maddr,
        .metrics_port = mport,
        .workers = (int)cfg.workers,
        .mutate =
            {
                .init_image = cfg.init_image,
                .init_insecure = cfg.registry_insecure,
                .opt_in_ns = (const char *const *)cfg.opt_in_namespaces.v,
                .n_opt_in_ns = cfg.opt_in_namespaces.n,
                .is_starlight = check ? sl_imagecheck_is_starlight : NULL,
                .is_starlight_ud = check,
            },
        .metrics = metrics,
        .namespace_opted_in = mgr ? sl_manager_namespace_opted_in : NULL,
        .namespace_ud = mgr,
        .status = mgr ? sl_manager_status : NULL,
        .status_ud = mgr,
    };
    struct sl_webhook *wh = NULL;
    r = sl_webhook_new(&wc, &wh, &err);
    if (r < 0) {
        sl_log_error_err(&err, r, "start the webhook");
        sl_manager_stop(mgr);
        sl_imagecheck_free(check);
        sl_controller_config_free(&cfg);
        return 1;
    }
    the_webhook = wh;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    log_info("webhook on https://%s:%d (/mutate, /mutate-namespace), metrics on http://%s:%d",
             waddr ? waddr : "0.0.0.0", sl_webhook_port(wh), maddr ? maddr : "0.0.0.0",
             sl_webhook_metrics_port(wh));
    r = sl_webhook_run(wh);
    log_info("stopping");
    the_webhook = NULL;
    sl_webhook_free(wh);
    sl_manager_stop(mgr);
    sl_imagecheck_free(check);
    sl_controller_config_free(&cfg);
    return r < 0 ? 1 : 0;
}
