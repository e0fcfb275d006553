/* sl-k8s-tool — drives common/k8s from scripts (e2e k8s-apiserver): requests, a reflector that
 * prints what it sees, Events and Lease leader election. Output is line-oriented for grep. */
#include "k8s.h"
#include "lease.h"
#include "reflector.h"

#include "cleanup.h"
#include "json.h"
#include "log.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal;

static void on_signal(int s)
{
    (void)s;
    stop_signal = 1;
}

static void usage(FILE *f)
{
    fputs("usage: sl-k8s-tool [--kubeconfig FILE] [--context C] [--sa-dir DIR] COMMAND ...\n"
          "  get PATH                       print the object as JSON\n"
          "  list PATH [-l SEL] [-f SEL]    print `ns/name rv` per item, then `rv RV`\n"
          "  create PATH JSON               POST (JSON text, or @FILE)\n"
          "  update PATH JSON               PUT (409 Conflict prints `conflict`, exit 3)\n"
          "  patch PATH JSON [--type merge|json|strategic]\n"
          "  delete PATH\n"
          "  watch PATH [-l SEL] [-f SEL] [--events N] [--timeout S] [--watch-timeout S]\n"
          "        [--resume-rv RV]  (start by watching from RV: a restarted client)\n"
          "        run a reflector; print `ADDED|MODIFIED|DELETED ns/name rv` per callback and\n"
          "        `synced N` after each list; stop after N callbacks or S seconds (then print\n"
          "        `stats ...`)\n"
          "  event NS KIND NAME UID REASON MESSAGE [Normal|Warning] [--events N]\n"
          "        record an Event (N times: one Event whose count is N)\n"
          "  lease NS NAME IDENTITY [--duration-ms D] [--renew-ms R] [--retry-ms P] [--hold S]\n"
          "        elect; print `leading`/`stopped`/`leader X`; release on SIGTERM/SIGINT\n"
          "In-cluster mode (no --kubeconfig, KUBERNETES_SERVICE_HOST set) reads --sa-dir.\n",
          f);
}

struct watch_state {
    long events, limit;
};

static void print_obj(const char *what, const json_t *o, struct watch_state *w)
{
    const char *ns = sl_k8s_meta_str(o, "namespace"), *name = sl_k8s_meta_str(o, "name");
    printf("%s %s%s%s %s\n", what, ns ? ns : "", ns ? "/" : "", name ? name : "?",
           sl_k8s_meta_str(o, "resourceVersion") ? sl_k8s_meta_str(o, "resourceVersion") : "-");
    fflush(stdout);
    w->events++;
}

static void w_add(void *ud, const json_t *o)
{
    print_obj("ADDED", o, ud);
}
static void w_upd(void *ud, const json_t *a, const json_t *o)
{
    (void)a;
    print_obj("MODIFIED", o, ud);
}
static void w_del(void *ud, const json_t *o)
{
    print_obj("DELETED", o, ud);
}
static void w_sync(void *ud)
{
    (void)ud;
    printf("synced\n");
    fflush(stdout);
}

static void l_start(void *ud)
{
    (void)ud;
    printf("leading\n");
    fflush(stdout);
}
static void l_stop(void *ud)
{
    (void)ud;
    printf("stopped\n");
    fflush(stdout);
}
static void l_new(void *ud, const char *id)
{
    (void)ud;
    printf("leader %s\n", id[0] ? id : "-");
    fflush(stdout);
}

static char *body_arg(const char *a)
{
    if (a[0] != '@')
        return sl_xstrdup(a);
    FILE *f = fopen(a + 1, "re");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0;
    ssize_t got = getdelim(&buf, &n, '\0', f);
    fclose(f);
    if (got < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static int print_json(json_t *j)
{
    if (j) {
        _cleanup_free_ char *s = sl_json_dump(j, NULL);
        printf("%s\n", s);
        json_decref(j);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *kubeconfig = NULL, *context = NULL, *sa_dir = NULL, *label = NULL, *field = NULL,
               *ptype = "merge", *resume_rv = NULL;
    long events = 0, timeout = 60, wtimeout = 0, duration_ms = 0, renew_ms = 0, retry_ms = 0,
         hold = 0;
    static const struct option opts[] = {
        {"kubeconfig", required_argument, NULL, 'k'},
        {"context", required_argument, NULL, 'c'},
        {"sa-dir", required_argument, NULL, 's'},
        {"selector", required_argument, NULL, 'l'},
        {"field-selector", required_argument, NULL, 'f'},
        {"type", required_argument, NULL, 't'},
        {"events", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 'T'},
        {"watch-timeout", required_argument, NULL, 'W'},
        {"duration-ms", required_argument, NULL, 'D'},
        {"renew-ms", required_argument, NULL, 'R'},
        {"retry-ms", required_argument, NULL, 'P'},
        {"hold", required_argument, NULL, 'H'},
        {"resume-rv", required_argument, NULL, 'r'},
        {"debug", no_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int ch;
    enum sl_log_level lvl = SL_LOG_WARN;
    while ((ch = getopt_long(argc, argv, "k:c:s:l:f:t:n:T:W:D:R:P:H:r:dh", opts, NULL)) != -1) {
        switch (ch) {
        case 'k':
            kubeconfig = optarg;
            break;
        case 'c':
            context = optarg;
            break;
        case 's':
            sa_dir = optarg;
            break;
        case 'l':
            label = optarg;
            break;
        case 'f':
            field = optarg;
            break;
        case 't':
            ptype = optarg;
            break;
        case 'n':
            events = atol(optarg);
            break;
        case 'T':
            timeout = atol(optarg);
            break;
        case 'W':
            wtimeout = atol(optarg);
            break;
        case 'D':
            duration_ms = atol(optarg);
            break;
        case 'R':
            renew_ms = atol(optarg);
            break;
        case 'P':
            retry_ms = atol(optarg);
            break;
        case 'H':
            hold = atol(optarg);
            break;
        case 'r':
            resume_rv = optarg;
            break;
        case 'd':
            lvl = SL_LOG_DEBUG;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    sl_log_setup("sl-k8s-tool", SL_LOG_TEXT, lvl);
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    /* GNU getopt permutes: options may come before or after the command's arguments */
    const char *cmd = argv[optind];
    char **pos = argv + optind + 1;
    int npos = argc - optind - 1;
    struct sl_k8s_config cfg = {0};
    sl_error_t err = NULL;
    int r;
    if (kubeconfig && kubeconfig[0])
        r = sl_k8s_config_from_kubeconfig(kubeconfig, context, &cfg, &err);
    else if (getenv("KUBERNETES_SERVICE_HOST"))
        r = sl_k8s_config_in_cluster(sa_dir, &cfg, &err);
    else
        r = sl_k8s_config_from_kubeconfig(NULL, context, &cfg, &err);
    if (r < 0) {
        fprintf(stderr, "sl-k8s-tool: %s\n", sl_error_msg(err, r));
        return 1;
    }
    struct sl_k8s_client *c = NULL;
    struct sl_k8s_client_options co = {.field_manager = "sl-k8s-tool"};
    r = sl_k8s_client_new(&cfg, &co, &c, &err);
    sl_k8s_config_free(&cfg);
    if (r < 0) {
        fprintf(stderr, "sl-k8s-tool: %s\n", sl_error_msg(err, r));
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    json_t *out = NULL;
    r = -EINVAL;
    if (strcmp(cmd, "get") == 0 && npos == 1) {
        r = sl_k8s_get(c, pos[0], &out, &err);
        if (r == 0)
            print_json(out);
    } else if (strcmp(cmd, "list") == 0 && npos == 1) {
        const char *kv[] = {"labelSelector", label, "fieldSelector", field, NULL};
        _cleanup_free_ char *q = sl_k8s_query(kv), *rv = NULL;
        r = sl_k8s_list(c, pos[0], q, &out, &rv, &err);
        if (r == 0) {
            size_t i;
            json_t *it;
            json_array_foreach(out, i, it)
            {
                const char *ns = sl_k8s_meta_str(it, "namespace");
                printf("%s%s%s %s\n", ns ? ns : "", ns ? "/" : "", sl_k8s_meta_str(it, "name"),
                       sl_k8s_meta_str(it, "resourceVersion"));
            }
            printf("rv %s\n", rv ? rv : "-");
            json_decref(out);
        }
    } else if ((strcmp(cmd, "create") == 0 || strcmp(cmd, "update") == 0) && npos == 2) {
        _cleanup_free_ char *b = body_arg(pos[1]);
        json_t *obj = NULL;
        r = b ? sl_json_parse(b, strlen(b), 1 << 24, "body", &obj, &err)
              : sl_error_make(&err, ENOENT, "cannot read %s", pos[1]);
        if (r == 0) {
            r = cmd[0] == 'c' ? sl_k8s_create(c, pos[0], obj, &out, &err)
                              : sl_k8s_update(c, pos[0], obj, &out, &err);
            json_decref(obj);
            if (r == 0)
                print_json(out);
            else if (r == -ESTALE)
                printf("conflict\n");
            else if (r == -EEXIST)
                printf("exists\n");
        }
    } else if (strcmp(cmd, "patch") == 0 && npos == 2) {
        enum sl_k8s_patch_type t = strcmp(ptype, "json") == 0        ? SL_K8S_PATCH_JSON
                                   : strcmp(ptype, "strategic") == 0 ? SL_K8S_PATCH_STRATEGIC
                                                                     : SL_K8S_PATCH_MERGE;
        _cleanup_free_ char *b = body_arg(pos[1]);
        r = sl_k8s_patch(c, pos[0], t, b ? b : "", &out, &err);
        if (r == 0)
            print_json(out);
    } else if (strcmp(cmd, "delete") == 0 && npos == 1) {
        r = sl_k8s_delete(c, pos[0], &err);
    } else if (strcmp(cmd, "event") == 0 && npos >= 6) {
        r = 0;
        struct sl_k8s_event ev = {.kind = pos[1],
                                  .ns = pos[0],
                                  .name = pos[2],
                                  .uid = pos[3][0] ? pos[3] : NULL,
                                  .reason = pos[4],
                                  .message = pos[5],
                                  .type = npos > 6 ? pos[6] : NULL,
                                  .component = "sl-k8s-tool"};
        /* --events N: record it N times (repeats bump the count of one Event) */
        for (long i = 0; i < (events > 0 ? events : 1) && r >= 0; i++)
            r = sl_k8s_event_record(c, &ev, &err);
    } else if (strcmp(cmd, "watch") == 0 && npos == 1) {
        struct watch_state w = {.limit = events};
        struct sl_k8s_reflector_options ro = {.path = pos[0],
                                              .label_selector = label,
                                              .field_selector = field,
                                              .timeout_min_s = (unsigned)wtimeout,
                                              .timeout_max_s = (unsigned)wtimeout,
                                              .backoff_ms = 200,
                                              .backoff_max_ms = 2000,
                                              .resume_rv = resume_rv};
        struct sl_k8s_reflector_callbacks cb = {.on_add = w_add,
                                                .on_update = w_upd,
                                                .on_delete = w_del,
                                                .on_synced = w_sync,
                                                .userdata = &w};
        struct sl_k8s_reflector *rf = NULL;
        r = sl_k8s_reflector_new(c, &ro, &cb, &rf, &err);
        if (r == 0)
            r = sl_k8s_reflector_start(rf, &err);
        if (r == 0) {
            time_t end = time(NULL) + timeout;
            while (!stop_signal && time(NULL) < end && !(events > 0 && w.events >= events))
                usleep(20000);
            sl_k8s_reflector_stop(rf);
            struct sl_k8s_reflector_stats st;
            sl_k8s_reflector_stats(rf, &st);
            _cleanup_free_ char *rv = sl_k8s_reflector_resource_version(rf);
            printf("stats lists=%llu relists_410=%llu watches=%llu events=%llu bookmarks=%llu "
                   "errors=%llu synthesized_deletes=%llu cached=%zu rv=%s\n",
                   (unsigned long long)st.lists, (unsigned long long)st.relists_410,
                   (unsigned long long)st.watches, (unsigned long long)st.events,
                   (unsigned long long)st.bookmarks, (unsigned long long)st.errors,
                   (unsigned long long)st.synthesized_deletes, sl_k8s_reflector_size(rf),
                   rv ? rv : "-");
            if (events > 0 && w.events < events)
                r = sl_error_make(&err, ETIMEDOUT, "saw %ld of %ld callbacks", w.events, events);
        }
        sl_k8s_reflector_free(rf);
    } else if (strcmp(cmd, "lease") == 0 && npos == 3) {
        struct sl_k8s_lease_options lo = {.ns = pos[0],
                                          .name = pos[1],
                                          .identity = pos[2],
                                          .lease_duration_ms = (unsigned)duration_ms,
                                          .renew_deadline_ms = (unsigned)renew_ms,
                                          .retry_period_ms = (unsigned)retry_ms,
                                          .on_started_leading = l_start,
                                          .on_stopped_leading = l_stop,
                                          .on_new_leader = l_new};
        struct sl_k8s_lease *l = NULL;
        r = sl_k8s_lease_new(c, &lo, &l, &err);
        if (r == 0)
            r = sl_k8s_lease_start(l, &err);
        if (r == 0) {
            time_t end = hold > 0 ? time(NULL) + hold : 0;
            while (!stop_signal && (!end || time(NULL) < end))
                usleep(20000);
            sl_k8s_lease_stop(l);
            printf("exit\n");
        }
        sl_k8s_lease_free(l);
    } else {
        usage(stderr);
        sl_k8s_client_free(c);
        return 2;
    }
    sl_k8s_client_free(c);
    if (r < 0) {
        fprintf(stderr, "sl-k8s-tool: %s\n", sl_error_msg(err, r));
        sl_error_free(&err);
        return r == -ESTALE ? 3 : r == -ENOENT ? 4 : r == -EEXIST ? 5 : 1;
    }
    return 0;
}
