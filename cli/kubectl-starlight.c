/* kubectl-starlight — the kubectl plugin (`kubectl starlight ...`, docs/kubernetes.md §11):
 *
 *   trace IMAGE [--node N] [--duration 30s] [--group G] [--wait]   create a trace Job (the
 *       same Job as manifests/trace-job.yaml), optionally follow it until the controller
 *       writes starlight-c.dev/trace-result, and print what was recorded and reported
 *   status [NODE]   per node: Starlight pods, pre-warm requests and what was pre-warmed
 *
 * Talks to the API server with common/k8s (the kubeconfig kubectl uses: --kubeconfig,
 * $KUBECONFIG, ~/.kube/config; in-cluster inside a Pod). */
#include "cleanup.h"
#include "config.h"
#include "json.h"
#include "k8s.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

struct common {
    char *kubeconfig;
    char *ns;
    char *log_level;
};

#define COMMON_OPTS(type)                                                                          \
    {"kubeconfig",                                                                                 \
     SL_OPT_STR,                                                                                   \
     offsetof(type, c.kubeconfig),                                                                 \
     NULL,                                                                                         \
     NULL,                                                                                         \
     0,                                                                                            \
     "FILE",                                                                                       \
     "kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster)"},                          \
        {"namespace",                                                                              \
         SL_OPT_STR,                                                                               \
         offsetof(type, c.ns),                                                                     \
         NULL,                                                                                     \
         NULL,                                                                                     \
         'n',                                                                                      \
         "NS",                                                                                     \
         "Namespace (default: the context's)"},                                                    \
    {                                                                                              \
        "log-level", SL_OPT_STR, offsetof(type, c.log_level), "warn", NULL, 0, "LEVEL",            \
            "error, warn, info or debug"                                                           \
    }

struct trace_cfg {
    struct common c;
    char *node;
    char *duration;
    char *group;
    bool wait;
    char *timeout;
};

static const struct sl_opt trace_opts[] = {
    COMMON_OPTS(struct trace_cfg),
    {"node", SL_OPT_STR, offsetof(struct trace_cfg, node), NULL, NULL, 0, "NODE",
     "Run the trace on this node (nodeSelector kubernetes.io/hostname; default: any)"},
    {"duration", SL_OPT_STR, offsetof(struct trace_cfg, duration), "30s", NULL, 0, "DURATION",
     "How long to record after the container starts"},
    {"group", SL_OPT_STR, offsetof(struct trace_cfg, group), "default", NULL, 0, "G",
     "Trace group (images of one group rank on one timeline)"},
    {"wait", SL_OPT_BOOL, offsetof(struct trace_cfg, wait), "false", NULL, 0, NULL,
     "Follow the Job until its outcome is written, print it; exit 1 unless Reported"},
    {"timeout", SL_OPT_STR, offsetof(struct trace_cfg, timeout), "10m", NULL, 0, "DURATION",
     "With --wait: give up after this long"},
};

static const struct sl_cmd trace_cmd = {
    .name = "kubectl starlight trace",
    .args = "IMAGE",
    .summary = "Creates a trace Job: a Pod running IMAGE with starlight-c.dev/trace=true, whose "
               "node daemon records\nthe container's startup file accesses for --duration and "
               "reports them to the proxy; the\ncontroller then writes the outcome on the Job "
               "(annotation starlight-c.dev/trace-result, Events).\nThe next deploy of IMAGE "
               "receives the traced files first.",
    .opts = trace_opts,
    .nopts = SL_ELEMENTSOF(trace_opts),
    .min_args = 1,
    .max_args = 1,
    .epilog = "Example:\n  kubectl starlight trace registry.example.com/redis:7.0-starlight "
              "--node worker-1 --duration 20s --wait",
};

struct status_cfg {
    struct common c;
};

static const struct sl_opt status_opts[] = {COMMON_OPTS(struct status_cfg)};

static const struct sl_cmd status_cmd = {
    .name = "kubectl starlight status",
    .args = "[NODE]",
    .summary = "Shows, per node (or for NODE): the Starlight pods it runs (label "
               "starlight-c.dev/provision=true),\nthe pre-warm requests the controller left "
               "(starlight-c.dev/prewarm) and the images its daemon\npre-warmed "
               "(starlight-c.dev/prewarmed).",
    .opts = status_opts,
    .nopts = SL_ELEMENTSOF(status_opts),
    .min_args = 0,
    .max_args = 1,
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(const struct common *c, struct sl_k8s_client **ret, sl_error_t *err)
{
    enum sl_log_level lvl;
    if (sl_log_parse_level(c->log_level, &lvl) < 0)
        return sl_error_make(err, EINVAL, "--log-level: error, warn, info or debug");
    sl_log_setup("kubectl-starlight", SL_LOG_TEXT, lvl);
    struct sl_k8s_config kc = {0};
    int r = sl_k8s_config_load(c->kubeconfig, &kc, err);
    if (r >= 0) {
        const struct sl_k8s_client_options co = {.field_manager = "kubectl-starlight"};
        r = sl_k8s_client_new(&kc, &co, ret, err);
    }
    sl_k8s_config_free(&kc);
    return r;
}

/* The trace Job (manifests/trace-job.yaml as JSON). */
static json_t *trace_job(const char *name, const char *image, const char *node,
                         const char *duration, const char *group, int64_t deadline_s)
{
    json_t *tmpl_spec = json_pack("{s:s,s:[{s:s,s:s}]}", "restartPolicy", "Never", "containers",
                                  "name", "app", "image", image);
    if (node && *node)
        json_object_set_new(tmpl_spec, "nodeSelector",
                            json_pack("{s:s}", "kubernetes.io/hostname", node));
    return json_pack(
        "{s:s,s:s,s:{s:s,s:{s:s,s:s}},s:{s:i,s:I,s:i,s:{s:{s:{s:s,s:s},s:{s:s,s:s,s:s,s:s}},s:o}}}",
        "apiVersion", "batch/v1", "kind", "Job", "metadata", "name", name, "labels",
        "starlight-c.dev/trace", "true", "app.kubernetes.io/managed-by", "kubectl-starlight",
        "spec", "backoffLimit", 0, "activeDeadlineSeconds", (json_int_t)deadline_s,
        "ttlSecondsAfterFinished", 3600, "template", "metadata", "labels",
        "starlight-c.dev/provision", "true", "starlight-c.dev/trace", "true", "annotations",
        "starlight-c.dev/provision", "true", "starlight-c.dev/trace", "true",
        "starlight-c.dev/trace-duration", duration, "starlight-c.dev/trace-group", group, "spec",
        tmpl_spec);
}

/* "registry:5000/library/redis:7.0-sl" → "starlight-trace-redis-1a2b3c" (DNS-1123). */
static char *job_name(const char *image)
{
    const char *base = strrchr(image, '/');
    base = base ? base + 1 : image;
    char part[24];
    size_t n = 0;
    for (const char *p = base; *p && *p != ':' && *p != '@' && n < sizeof(part) - 1; p++)
        part[n++] = isalnum((unsigned char)*p) ? (char)tolower((unsigned char)*p) : '-';
    while (n > 0 && part[n - 1] == '-')
        n--;
    part[n] = 0;
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
        rnd = (uint32_t)time(NULL) ^ (uint32_t)getpid();
    return sl_xasprintf("starlight-trace-%s%s%06x", part, n ? "-" : "", rnd & 0xffffff);
}

static int cmd_trace(int argc, char **argv)
{
    struct trace_cfg cfg = {0};
    _cleanup_error_ sl_error_t err = NULL;
    int argi = 0;
    int r = sl_config_parse(&trace_cmd, &cfg, argc, argv, &argi, &err);
    int64_t dur_ms = 0, timeout_ms = 0;
    if (r == 0 && (sl_parse_duration_ms(cfg.duration, &dur_ms) < 0 || dur_ms <= 0))
        r = sl_error_make(&err, EINVAL, "--duration `%s`: expected a duration (30s, 2m)",
                          cfg.duration);
    if (r == 0 && (sl_parse_duration_ms(cfg.timeout, &timeout_ms) < 0 || timeout_ms <= 0))
        r = sl_error_make(&err, EINVAL, "--timeout `%s`: expected a duration", cfg.timeout);
    if (r == 0 && (!cfg.group || !*cfg.group || strlen(cfg.group) > 256))
        r = sl_error_make(&err, EINVAL, "--group: 1 to 256 bytes");
    struct sl_k8s_client *c = NULL;
    if (r == 0)
        r = setup(&cfg.c, &c, &err);
    if (r != 0) {
        if (r < 0)
            fprintf(stderr, "kubectl starlight trace: %s\n", sl_error_msg(err, r));
        sl_config_free(&trace_cmd, &cfg);
        return r < 0 ? 2 : 0;
    }
    const char *image = argv[argi];
    const char *ns = cfg.c.ns && *cfg.c.ns ? cfg.c.ns : sl_k8s_client_namespace(c);
    _cleanup_free_ char *name = job_name(image);
    /* the Pod must outlive the recording: a long-running app ends at the deadline */
    json_t *job = trace_job(name, image, cfg.node, cfg.duration, cfg.group, dur_ms / 1000 + 60);
    _cleanup_free_ char *coll = sl_k8s_path("batch/v1", ns, "jobs", NULL, NULL);
    _cleanup_free_ char *path = sl_k8s_path("batch/v1", ns, "jobs", name, NULL);
    r = sl_k8s_create(c, coll, job, NULL, &err);
    json_decref(job);
    int code = 0;
    if (r < 0) {
        fprintf(stderr, "kubectl starlight trace: create the Job: %s\n", sl_error_msg(err, r));
        code = 1;
        goto out;
    }
    printf("job.batch/%s created (namespace %s): tracing %s for %s%s%s\n", name, ns, image,
           cfg.duration, cfg.node ? " on node " : "", cfg.node ? cfg.node : "");
    fflush(stdout);
    if (!cfg.wait)
        goto out;
    int64_t deadline = mono_ms() + timeout_ms;
    const char *last_state = "";
    for (;;) {
        json_t *obj = NULL;
        sl_error_free(&err);
        r = sl_k8s_get(c, path, &obj, &err);
        if (r < 0) {
            fprintf(stderr, "kubectl starlight trace: %s\n", sl_error_msg(err, r));
            code = 1;
            break;
        }
        const char *res = sl_k8s_annotation(obj, "starlight-c.dev/trace-result");
        const json_t *st = json_object_get(obj, "status");
        const char *state =
            json_integer_value(json_object_get(st, "active")) > 0 ? "running" : "pending";
        if (strcmp(state, last_state) != 0) {
            printf("job.batch/%s: %s\n", name, state);
            fflush(stdout);
            last_state = state;
        }
        if (res) {
            json_t *j = NULL;
            const char *phase = NULL;
            if (sl_json_parse(res, strlen(res), 1u << 20, "trace-result", &j, NULL) >= 0)
                phase = json_string_value(json_object_get(j, "phase"));
            printf("job.batch/%s: %s: %lld accesses recorded and reported%s%s\n", name,
                   phase ? phase : "?",
                   (long long)json_integer_value(json_object_get(j, "accesses")),
                   json_string_value(json_object_get(j, "message")) ? " — " : "",
                   json_string_value(json_object_get(j, "message"))
                       ? json_string_value(json_object_get(j, "message"))
                       : "");
            code = phase && strcmp(phase, "Reported") == 0 ? 0 : 1;
            json_decref(j);
            json_decref(obj);
            break;
        }
        json_decref(obj);
        if (mono_ms() > deadline) {
            fprintf(stderr,
                    "kubectl starlight trace: no outcome after %s (is "
                    "starlight-controller running?)\n",
                    cfg.timeout);
            code = 1;
            break;
        }
        usleep(1000 * 1000);
    }
out:
    sl_k8s_client_free(c);
    sl_config_free(&trace_cmd, &cfg);
    return code;
}

static int count_on(const json_t *pods, const char *node)
{
    int n = 0;
    size_t i;
    const json_t *p;
    json_array_foreach((json_t *)pods, i, p)
    {
        const char *nn = json_string_value(json_object_get(json_object_get(p, "spec"), "nodeName"));
        n += nn && strcmp(nn, node) == 0;
    }
    return n;
}

static int cmd_status(int argc, char **argv)
{
    struct status_cfg cfg = {0};
    _cleanup_error_ sl_error_t err = NULL;
    int argi = 0;
    int r = sl_config_parse(&status_cmd, &cfg, argc, argv, &argi, &err);
    struct sl_k8s_client *c = NULL;
    if (r == 0)
        r = setup(&cfg.c, &c, &err);
    if (r != 0) {
        if (r < 0)
            fprintf(stderr, "kubectl starlight status: %s\n", sl_error_msg(err, r));
        sl_config_free(&status_cmd, &cfg);
        return r < 0 ? 2 : 0;
    }
    const char *only = argi < argc ? argv[argi] : NULL;
    json_t *nodes = NULL, *pods = NULL;
    _cleanup_free_ char *npath = sl_k8s_path("v1", NULL, "nodes", NULL, NULL);
    _cleanup_free_ char *ppath = sl_k8s_path("v1", NULL, "pods", NULL, NULL);
    _cleanup_free_ char *q = sl_k8s_query(
        (const char *const[]){"labelSelector", "starlight-c.dev/provision=true", NULL});
    if (only) {
        _cleanup_free_ char *p1 = sl_k8s_path("v1", NULL, "nodes", only, NULL);
        json_t *n = NULL;
        r = sl_k8s_get(c, p1, &n, &err);
        if (r >= 0)
            nodes = json_pack("[o]", n);
    } else {
        r = sl_k8s_list(c, npath, NULL, &nodes, NULL, &err);
    }
    if (r >= 0)
        r = sl_k8s_list(c, ppath, q, &pods, NULL, &err);
    int code = 0;
    if (r < 0) {
        fprintf(stderr, "kubectl starlight status: %s\n", sl_error_msg(err, r));
        code = 1;
    } else {
        printf("%-24s %-6s %s\n", "NODE", "PODS", "PRE-WARM (from -> to: done?)");
        size_t i;
        const json_t *n;
        json_array_foreach(nodes, i, n)
        {
            const char *name = sl_k8s_meta_str(n, "name");
            if (!name)
                continue;
            printf("%-24s %-6d", name, count_on(pods, name));
            const char *pw = sl_k8s_annotation(n, "starlight-c.dev/prewarm");
            const char *done = sl_k8s_annotation(n, "starlight-c.dev/prewarmed");
            json_t *l = pw ? json_loads(pw, 0, NULL) : NULL;
            json_t *d = done ? json_loads(done, 0, NULL) : NULL;
            size_t k;
            const json_t *e;
            bool any = false;
            json_array_foreach(l, k, e)
            {
                const char *to = json_string_value(json_object_get(e, "to"));
                const char *from = json_string_value(json_object_get(e, "from"));
                if (!to)
                    continue;
                bool ok = false;
                size_t m;
                const json_t *x;
                json_array_foreach(d, m, x) ok =
                    ok || (json_string_value(x) && strcmp(json_string_value(x), to) == 0);
                printf("%s %s -> %s: %s", any ? "," : "", from ? from : "?", to,
                       ok ? "pre-warmed" : "pending");
                any = true;
            }
            printf("%s\n", any ? "" : " -");
            json_decref(l);
            json_decref(d);
        }
    }
    json_decref(nodes);
    json_decref(pods);
    sl_k8s_client_free(c);
    sl_config_free(&status_cmd, &cfg);
    return code;
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: kubectl starlight COMMAND [OPTIONS]\n\n"
               "Starlight's kubectl plugin (docs/kubernetes.md).\n\n"
               "Commands:\n"
               "  trace IMAGE [--node N] [--duration 30s] [--group G] [--wait]\n"
               "                 record IMAGE's startup file accesses in a trace Job\n"
               "  status [NODE]  Starlight pods and pre-warming per node\n\n"
               "`kubectl starlight COMMAND --help` for the options of a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("kubectl-starlight %s\n", SL_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "trace") == 0)
        return cmd_trace(argc - 1, argv + 1);
    if (strcmp(argv[1], "status") == 0)
        return cmd_status(argc - 1, argv + 1);
    fprintf(stderr, "kubectl starlight: unknown command `%s`\n\n", argv[1]);
    usage(stderr);
    return 2;
}
