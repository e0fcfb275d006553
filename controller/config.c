/* config.c — starlight-controller's declarative option table (controller-config.h). */
#include "controller-config.h"
#include "cleanup.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define O(field) offsetof(struct sl_controller_config, field)

static const struct sl_opt controller_opts[] = {
    {"config", SL_OPT_STR, O(config), NULL, "STARLIGHT_CONFIG", 0, "FILE",
     "YAML file with any of these options (keys are the long flag names)"},
    {"kubeconfig", SL_OPT_STR, O(kubeconfig), NULL, "KUBECONFIG", 0, "FILE",
     "Kubernetes API access (empty: in-cluster when KUBERNETES_SERVICE_HOST is set; neither: "
     "webhook only, no controllers)"},
    {"webhook-listen", SL_OPT_STR, O(webhook_listen), "0.0.0.0:8443", "STARLIGHT_WEBHOOK_LISTEN", 0,
     "ADDR:PORT", "HTTPS address of the mutating webhook (POST /mutate, /mutate-namespace)"},
    {"tls-cert", SL_OPT_STR, O(tls_cert), NULL, "STARLIGHT_TLS_CERT", 0, "FILE",
     "Webhook serving certificate (PEM chain; SAN <service>.<namespace>.svc) ..."},
    {"tls-key", SL_OPT_STR, O(tls_key), NULL, "STARLIGHT_TLS_KEY", 0, "FILE",
     "... and its PEM private key"},
    {"init-image", SL_OPT_STR, O(init_image), "starlight-c/starlight-init:" SL_VERSION,
     "STARLIGHT_INIT_IMAGE", 0, "REF", "Image of the injected starlight-init initContainer"},
    {"proxy", SL_OPT_STR, O(proxy), NULL, "STARLIGHT_PROXY", 0, "URL",
     "starlight-proxy base URL, asked whether it serves a pod's images (none: every image of "
     "an opted-in pod is warmed)"},
    {"proxy-token", SL_OPT_STR, O(proxy_token), NULL, "STARLIGHT_PROXY_TOKEN", 0, "TOKEN",
     "Bearer token for the proxy (its --auth-file)"},
    {"proxy-timeout", SL_OPT_STR, O(proxy_timeout), "2s", "STARLIGHT_PROXY_TIMEOUT", 0, "DURATION",
     "Longest wait for the proxy per admission (then the pod is let through "
     "unchanged)"},
    {"platform", SL_OPT_STR, O(platform), "linux/amd64", "STARLIGHT_PLATFORM", 0, "OS/ARCH",
     "Platform the nodes run, for the proxy question"},
    {"registry-insecure", SL_OPT_BOOL, O(registry_insecure), "false", "STARLIGHT_REGISTRY_INSECURE",
     0, NULL,
     "The proxy reaches the images' registry over plain HTTP (the proxy question and "
     "starlight-init's pulls say so)"},
    {"opt-in-namespaces", SL_OPT_STRLIST, O(opt_in_namespaces), NULL, "STARLIGHT_OPT_IN_NAMESPACES",
     0, "NS,...",
     "Every Pod of these namespaces is opted in (besides annotated Pods, /mutate-namespace "
     "calls and, with API access, namespaces labelled starlight-c.dev/provision=enabled)"},
    {"lease-namespace", SL_OPT_STR, O(lease_namespace), NULL, "POD_NAMESPACE", 0, "NS",
     "Namespace of the leader-election Lease (default: the pod's, else `default`)"},
    {"lease-name", SL_OPT_STR, O(lease_name), "starlight-controller", "STARLIGHT_LEASE_NAME", 0,
     "NAME", "Name of the leader-election Lease"},
    {"leader-elect", SL_OPT_BOOL, O(leader_elect), "true", "STARLIGHT_LEADER_ELECT", 0, NULL,
     "Run the controllers only while holding the Lease (the webhook serves on every replica)"},
    {"no-leader-elect", SL_OPT_BOOL, O(no_leader_elect), "false", NULL, 0, NULL,
     "Same as --leader-elect=false (a single replica)"},
    {"lease-duration", SL_OPT_STR, O(lease_duration), "15s", "STARLIGHT_LEASE_DURATION", 0,
     "DURATION", "How long a Lease holds without renewal"},
    {"renew-deadline", SL_OPT_STR, O(renew_deadline), "10s", "STARLIGHT_RENEW_DEADLINE", 0,
     "DURATION", "The holder steps down when it could not renew for this long"},
    {"retry-period", SL_OPT_STR, O(retry_period), "2s", "STARLIGHT_RETRY_PERIOD", 0, "DURATION",
     "Interval between acquire/renew attempts"},
    {"identity", SL_OPT_STR, O(identity), NULL, "POD_NAME", 0, "ID",
     "Holder identity in the Lease (default: POD_NAME or the host name; a random suffix is "
     "added)"},
    {"prewarm", SL_OPT_BOOL, O(prewarm), "true", "STARLIGHT_PREWARM", 0, NULL,
     "Update pre-warming: annotate nodes running an old image when a "
     "Deployment/StatefulSet/DaemonSet changes it"},
    {"trace-jobs", SL_OPT_BOOL, O(trace_jobs), "true", "STARLIGHT_TRACE_JOBS", 0, NULL,
     "Follow trace Jobs: write starlight-c.dev/trace-result and Events when they finish"},
    {"trace-grace", SL_OPT_STR, O(trace_grace), "2m", "STARLIGHT_TRACE_GRACE", 0, "DURATION",
     "How long after a trace Job completes to wait for the node's trace report before "
     "marking it Failed"},
    {"metrics-listen", SL_OPT_STR, O(metrics_listen), "0.0.0.0:8080", "STARLIGHT_METRICS_LISTEN", 0,
     "ADDR:PORT", "Plain HTTP for /metrics (Prometheus), /healthz and /readyz"},
    {"workers", SL_OPT_INT, O(workers), "4", "STARLIGHT_WORKERS", 0, "N",
     "Threads answering admission reviews", 1, 64},
    {"log-format", SL_OPT_STR, O(log_format), "text", "STARLIGHT_LOG_FORMAT", 0, "text|json",
     "Log format"},
    {"log-level", SL_OPT_STR, O(log_level), "info", "STARLIGHT_LOG_LEVEL", 0, "LEVEL",
     "error, warn, info or debug"},
};

const struct sl_cmd sl_controller_cmd = {
    .name = "starlight-controller",
    .args = "",
    .summary =
        "Starlight's cluster component (docs/kubernetes.md): a mutating admission webhook that "
        "injects\nstarlight-init into opted-in Pods (annotation starlight-c.dev/provision=true, "
        "or opted-in\nnamespaces), and, with Kubernetes API access, leader-elected controllers: "
        "update pre-warming\n(Node annotation starlight-c.dev/prewarm) and trace Job follow-up "
        "(starlight-c.dev/trace-result,\nEvents).",
    .opts = controller_opts,
    .nopts = SL_ELEMENTSOF(controller_opts),
    .config_key = "config",
    .min_args = 0,
    .max_args = 0,
    .epilog = "Example:\n  starlight-controller --tls-cert /tls/tls.crt --tls-key /tls/tls.key \\\n"
              "      --init-image ghcr.io/example/starlight-init:0.1.0 --proxy "
              "http://starlight-proxy:8090",
};

static int duration(const char *flag, const char *s, int64_t *ret, sl_error_t *err)
{
    if (sl_parse_duration_ms(s, ret) < 0 || *ret <= 0)
        return sl_error_make(err, EINVAL, "--%s `%s`: expected a positive duration (2s, 15s, 1m)",
                             flag, s ? s : "");
    return 0;
}

int sl_controller_config_parse(struct sl_controller_config *cfg, int argc, char **argv,
                               sl_error_t *err)
{
    int argi = 0;
    int r = sl_config_parse(&sl_controller_cmd, cfg, argc, argv, &argi, err);
    if (r != 0)
        return r;
    if (cfg->no_leader_elect)
        cfg->leader_elect = false;
    if (!cfg->tls_cert || !cfg->tls_key || !*cfg->tls_cert || !*cfg->tls_key)
        return sl_error_make(err, EINVAL,
                             "--tls-cert and --tls-key are required (the API server calls "
                             "webhooks over HTTPS only)");
    if (!cfg->init_image || !*cfg->init_image)
        return sl_error_make(err, EINVAL, "--init-image must not be empty");
    if ((r = duration("proxy-timeout", cfg->proxy_timeout, &cfg->proxy_timeout_ms, err)) < 0 ||
        (r = duration("lease-duration", cfg->lease_duration, &cfg->lease_duration_ms, err)) < 0 ||
        (r = duration("renew-deadline", cfg->renew_deadline, &cfg->renew_deadline_ms, err)) < 0 ||
        (r = duration("retry-period", cfg->retry_period, &cfg->retry_period_ms, err)) < 0 ||
        (r = duration("trace-grace", cfg->trace_grace, &cfg->trace_grace_ms, err)) < 0)
        return r;
    if (cfg->renew_deadline_ms >= cfg->lease_duration_ms ||
        cfg->retry_period_ms >= cfg->renew_deadline_ms)
        return sl_error_make(err, EINVAL,
                             "need --retry-period < --renew-deadline < --lease-duration");
    _cleanup_free_ char *a1 = NULL, *a2 = NULL;
    int p;
    if ((r = sl_parse_listen("--webhook-listen", cfg->webhook_listen, &a1, &p, err)) < 0 ||
        (r = sl_parse_listen("--metrics-listen", cfg->metrics_listen, &a2, &p, err)) < 0)
        return r;
    if (cfg->proxy && *cfg->proxy && strncmp(cfg->proxy, "http://", 7) != 0 &&
        strncmp(cfg->proxy, "https://", 8) != 0)
        return sl_error_make(err, EINVAL, "--proxy `%s`: expected an http:// or https:// URL",
                             cfg->proxy);
    return 0;
}

void sl_controller_config_free(struct sl_controller_config *cfg)
{
    sl_config_free(&sl_controller_cmd, cfg);
}
