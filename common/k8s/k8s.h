/* k8s.h — a small Kubernetes API client (configuration, requests, Events).
 *
 * Configuration comes from a kubeconfig (libyaml; `$KUBECONFIG` colon list merged in order, or
 * an explicit path) or from inside a Pod (service-account token, CA and namespace files plus
 * KUBERNETES_SERVICE_HOST/PORT). Requests go through common/http (libcurl), speak JSON
 * (jansson) and turn `Status` answers into error chains. List+watch lives in reflector.h,
 * leader election in lease.h.
 *
 * Error classes (negative errno) returned by every request function, from the HTTP status:
 *   400/422 -EINVAL · 401 -EACCES (after one token re-read and retry) · 403 -EPERM ·
 *   404 -ENOENT · 409 AlreadyExists -EEXIST · 409 Conflict (stale resourceVersion) -ESTALE ·
 *   410 Gone/Expired -ETIME · 415 -EPROTONOSUPPORT · 429 (after Retry-After retries) -EAGAIN ·
 *   5xx -EIO · transport errors as in http.h.
 * The error message carries the method, path, HTTP code, Status reason and message, e.g.
 * "PUT /apis/coordination.k8s.io/v1/namespaces/ns/leases/x: HTTP 409 Conflict: the object has
 * been modified".
 *
 * Thread-safety: a client may be used from any number of threads at once (the in-cluster
 * token is re-read under a lock). Configs are plain data owned by their holder. */
#ifndef SL_K8S_K8S_H
#define SL_K8S_K8S_H

#include "error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define SL_K8S_SA_DIR         "/var/run/secrets/kubernetes.io/serviceaccount"
#define SL_K8S_BODY_MAX       (64u * 1024 * 1024) /* largest JSON answer accepted */
#define SL_K8S_KUBECONFIG_MAX (4u * 1024 * 1024)  /* largest kubeconfig file accepted */
#define SL_K8S_TOKEN_RELOAD_S 60                  /* in-cluster token re-read period */
#define SL_K8S_FIELD_MANAGER  "starlight"         /* default ?fieldManager= on writes */

/* ---- configuration ---------------------------------------------------------------------- */

/* Where to reach the API server and how to authenticate. All strings owned (NULL = unset).
 * File paths are absolute (kubeconfig-relative paths are resolved against that file). */
struct sl_k8s_config {
    char *server;    /* "https://host:port" or "http://…" (no trailing slash) */
    char *namespace; /* default namespace of the context or the Pod; never NULL once loaded */
    char *ca_file, *ca_pem;
    bool insecure;    /* insecure-skip-tls-verify */
    char *token;      /* static bearer token */
    char *token_file; /* bearer token re-read every SL_K8S_TOKEN_RELOAD_S and on 401 */
    char *client_cert_file, *client_cert_pem;
    char *client_key_file, *client_key_pem;
    char *username, *password; /* basic auth (legacy kubeconfigs) */
    char *source;              /* for messages: "kubeconfig FILE (context C)" or "in-cluster" */
};

void sl_k8s_config_free(struct sl_k8s_config *c);

/* Parses one kubeconfig document (YAML or JSON) and resolves `context` (NULL = its
 * current-context) into *ret. `dir` resolves relative file paths (NULL = cwd); `name` names
 * the document in errors. Errors: -EINVAL (malformed, missing context/cluster/user, a hostile
 * document: anchors/aliases, more than 64 levels, over SL_K8S_KUBECONFIG_MAX) and -ENOTSUP
 * (exec or auth-provider credential plugins: "unsupported"). */
int sl_k8s_config_parse_kubeconfig(const char *text, size_t len, const char *dir, const char *name,
                                   const char *context, struct sl_k8s_config *ret, sl_error_t *err);

/* Reads kubeconfig files and resolves `context` (NULL = current-context). `paths` is one path
 * or a colon-separated list merged as kubectl does (the first file to name a cluster/user/
 * context or a current-context wins; missing files in a list are skipped); NULL or "" =
 * $KUBECONFIG, else ~/.kube/config. */
int sl_k8s_config_from_kubeconfig(const char *paths, const char *context, struct sl_k8s_config *ret,
                                  sl_error_t *err);

/* In-cluster configuration: server from KUBERNETES_SERVICE_HOST/PORT (an IPv6 host is
 * bracketed), token file, ca.crt and namespace from `sa_dir` (NULL = SL_K8S_SA_DIR). When
 * `sa_dir`/ca.crt is missing the system CAs are used. -ENOENT when the env is not set. */
int sl_k8s_config_in_cluster(const char *sa_dir, struct sl_k8s_config *ret, sl_error_t *err);

/* The usual choice: `kubeconfig` non-empty → that file (or colon list); else in-cluster when
 * KUBERNETES_SERVICE_HOST is set; else $KUBECONFIG or ~/.kube/config. */
int sl_k8s_config_load(const char *kubeconfig, struct sl_k8s_config *ret, sl_error_t *err);

/* ---- client ----------------------------------------------------------------------------- */

struct sl_k8s_client;

struct sl_k8s_client_options {
    const char *user_agent;    /* NULL = "starlight-c/<version>" */
    const char *field_manager; /* ?fieldManager= on create/update/patch; NULL = "starlight" */
    unsigned timeout_s;        /* per non-watch request; 0 = 30 s */
    int retries; /* retries of transport errors, 5xx and 429 (Retry-After honoured); 0 = 4 */
};

/* Copies `cfg` (and `opts`, NULL = defaults). Reads the token file once (-EACCES/-ENOENT if
 * unreadable). */
int sl_k8s_client_new(const struct sl_k8s_config *cfg, const struct sl_k8s_client_options *opts,
                      struct sl_k8s_client **ret, sl_error_t *err);
void sl_k8s_client_free(struct sl_k8s_client *c);
/* The configured default namespace (borrowed, never NULL). */
const char *sl_k8s_client_namespace(const struct sl_k8s_client *c);
/* The server URL (borrowed). */
const char *sl_k8s_client_server(const struct sl_k8s_client *c);

/* ---- paths and queries ------------------------------------------------------------------ */

/* Builds a resource path. `api_version` "v1" → /api/v1, "GROUP/VERSION" → /apis/GROUP/VERSION;
 * `ns` NULL/"" = cluster-scoped (or all namespaces); `name` NULL = the collection; `sub` an
 * optional subresource ("status"). Components are percent-encoded. Caller frees. */
char *sl_k8s_path(const char *api_version, const char *ns, const char *resource, const char *name,
                  const char *sub);

/* Builds an encoded query string from a NULL-terminated key, value, ... list (NULL or empty
 * values are skipped): {"labelSelector", "a=b", NULL} → "labelSelector=a%3Db". Caller frees. */
char *sl_k8s_query(const char *const *kv);

/* ---- requests ----------------------------------------------------------------------------- */

enum sl_k8s_patch_type {
    SL_K8S_PATCH_MERGE,     /* application/merge-patch+json (RFC 7386) */
    SL_K8S_PATCH_JSON,      /* application/json-patch+json (RFC 6902) */
    SL_K8S_PATCH_STRATEGIC, /* application/strategic-merge-patch+json */
};

/* One request. `query` NULL or already encoded (see sl_k8s_query); `content_type` NULL =
 * application/json when a body is given. On 2xx *ret (when non-NULL) gets the parsed answer
 * (NULL for an empty body); other answers become errors (see above). */
int sl_k8s_request(struct sl_k8s_client *c, const char *method, const char *path, const char *query,
                   const char *content_type, const char *body, size_t body_len, json_t **ret,
                   sl_error_t *err);

/* GET one object; -ENOENT when it does not exist. */
int sl_k8s_get(struct sl_k8s_client *c, const char *path, json_t **ret, sl_error_t *err);

/* Lists a collection page by page (limit 500, following metadata.continue; an expired continue
 * token restarts the list once). `query` adds selectors ("labelSelector=…&fieldSelector=…").
 * *ret_items gets a new array of every item (each with kind/apiVersion filled in from the
 * list), *ret_rv (optional) the list's resourceVersion. */
int sl_k8s_list(struct sl_k8s_client *c, const char *path, const char *query, json_t **ret_items,
                char **ret_rv, sl_error_t *err);

/* POST `obj` to the collection `path`; -EEXIST when the name is taken. */
int sl_k8s_create(struct sl_k8s_client *c, const char *path, const json_t *obj, json_t **ret,
                  sl_error_t *err);

/* PUT `obj` (carrying metadata.resourceVersion) to the object `path`; -ESTALE on 409 Conflict
 * (someone else changed it: GET again and retry). */
int sl_k8s_update(struct sl_k8s_client *c, const char *path, const json_t *obj, json_t **ret,
                  sl_error_t *err);

/* PATCH `patch` (JSON text) onto `path`. */
int sl_k8s_patch(struct sl_k8s_client *c, const char *path, enum sl_k8s_patch_type type,
                 const char *patch, json_t **ret, sl_error_t *err);

/* DELETE with propagationPolicy=Background; -ENOENT when already gone. */
int sl_k8s_delete(struct sl_k8s_client *c, const char *path, sl_error_t *err);

/* ---- object helpers ---------------------------------------------------------------------- */

/* metadata.<key> of an object as a string (borrowed), or NULL. */
const char *sl_k8s_meta_str(const json_t *obj, const char *key);
/* metadata.labels[key] / metadata.annotations[key] (borrowed), or NULL. */
const char *sl_k8s_label(const json_t *obj, const char *key);
const char *sl_k8s_annotation(const json_t *obj, const char *key);
/* Formats `t_us` (µs since the epoch; 0 = now) as RFC 3339: MicroTime
 * "2006-01-02T15:04:05.000000Z" when `micro`, else "2006-01-02T15:04:05Z". buf ≥ 32 bytes. */
void sl_k8s_time(long long t_us, bool micro, char *buf, size_t len);
/* The length ≤ n at which s[0..n) can be cut without splitting a UTF-8 sequence: n, or the
 * start of a multibyte character that s[0..n) holds only in part. Reads s[0..n) only. Used to
 * bound Event messages (Kubernetes rejects invalid UTF-8; jansson too). */
size_t sl_k8s_utf8_cut(const char *s, size_t n);
/* Parses RFC 3339 (with or without fraction, Z or ±hh:mm) into µs since the epoch; -EINVAL. */
int sl_k8s_time_parse(const char *s, long long *ret_us);

/* ---- Events (core/v1) ------------------------------------------------------------------- */

struct sl_k8s_event {
    /* involvedObject */
    const char *api_version, *kind, *ns, *name, *uid; /* ns also the Event's namespace */
    const char *reason;                               /* CamelCase, e.g. "StarlightPrefetched" */
    const char *message;                              /* human text (cut at 1024 bytes) */
    const char *type;                                 /* "Normal" (default) or "Warning" */
    const char *component; /* source.component, e.g. "starlight-daemon" */
    const char *host;      /* source.host (node name) or NULL */
    /* one metadata.annotations entry of the Event (machine-readable detail), or NULL */
    const char *annotation_key, *annotation_value;
};

/* On the node daemon's StarlightTraceReported Events: {"traces":N,"podTraces":N,"accesses":N,
 * "groups":N} (docs/kubernetes.md §1); the controller's trace Jobs read it. */
#define SL_K8S_TRACE_REPORT_ANNOTATION "starlight-c.dev/trace-report"

/* Records an Event. The client remembers the last 128 events it created (by object uid/name,
 * reason, message): a repeat PATCHes count+1 and lastTimestamp (merge patch) instead of creating
 * a new one, as client-go's EventRecorder does; a vanished remembered Event is created again. */
int sl_k8s_event_record(struct sl_k8s_client *c, const struct sl_k8s_event *ev, sl_error_t *err);

#endif
