/* kubeconfig.c — kubeconfig (libyaml) and in-cluster configuration.
 *
 * A kubeconfig is turned into a jansson tree first (scalars stay strings), with the hostile-
 * input limits applied there: no anchors or aliases (billion laughs), bounded depth, bounded
 * size, no duplicate keys. Resolution then reads only the handful of fields we support. */
#include "k8s.h"
#include "k8s-internal.h"

#include "base64.h"
#include "buf.h"
#include "cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define YAML_MAX_DEPTH 64

void sl_k8s_config_free(struct sl_k8s_config *c)
{
    if (!c)
        return;
    free(c->server);
    free(c->namespace);
    free(c->ca_file);
    free(c->ca_pem);
    free(c->token);
    free(c->token_file);
    free(c->client_cert_file);
    free(c->client_cert_pem);
    free(c->client_key_file);
    free(c->client_key_pem);
    free(c->username);
    free(c->password);
    free(c->source);
    *c = (struct sl_k8s_config){0};
}

/* ---- YAML → JSON ---------------------------------------------------------------------------- */

struct yframe {
    json_t *node;
    char *key; /* pending mapping key (mappings only) */
};

static int yaml_to_json(const char *text, size_t len, const char *name, json_t **ret,
                        sl_error_t *err)
{
    yaml_parser_t p;
    yaml_event_t ev;
    struct yframe st[YAML_MAX_DEPTH + 1];
    int depth = 0, r = 0, docs = 0;
    json_t *root = NULL;
    bool done = false;

    if (len > SL_K8S_KUBECONFIG_MAX)
        return sl_error_make(err, EINVAL, "%s: larger than %u bytes", name, SL_K8S_KUBECONFIG_MAX);
    if (!yaml_parser_initialize(&p))
        return sl_error_make(err, ENOMEM, "%s: cannot initialise the YAML parser", name);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    while (!done) {
        if (!yaml_parser_parse(&p, &ev)) {
            r = sl_error_make(err, EINVAL, "%s: YAML error at line %zu: %s", name,
                              p.problem_mark.line + 1, p.problem ? p.problem : "malformed");
            break;
        }
        json_t *val = NULL;
        const char *anchor = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1)
                r = sl_error_make(err, EINVAL, "%s: more than one YAML document", name);
            break;
        case YAML_ALIAS_EVENT:
            r = sl_error_make(err, EINVAL, "%s: line %zu: YAML aliases are not accepted", name,
                              ev.start_mark.line + 1);
            break;
        case YAML_SCALAR_EVENT:
            anchor = (const char *)ev.data.scalar.anchor;
            val = json_stringn((const char *)ev.data.scalar.value, ev.data.scalar.length);
            if (!val)
                r = sl_error_make(err, EINVAL, "%s: line %zu: scalar is not valid UTF-8", name,
                                  ev.start_mark.line + 1);
            break;
        case YAML_SEQUENCE_START_EVENT:
            anchor = (const char *)ev.data.sequence_start.anchor;
            val = json_array();
            break;
        case YAML_MAPPING_START_EVENT:
            anchor = (const char *)ev.data.mapping_start.anchor;
            val = json_object();
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0) {
                free(st[depth - 1].key);
                depth--;
                val = NULL;
                /* the finished container was already attached to its parent */
            }
            break;
        default:
            break;
        }
        if (r == 0 && anchor)
            r = sl_error_make(err, EINVAL, "%s: line %zu: YAML anchors are not accepted", name,
                              ev.start_mark.line + 1);
        if (r == 0 && val) {
            bool container = json_is_object(val) || json_is_array(val);
            if (depth == 0) {
                if (root)
                    r = sl_error_make(err, EINVAL, "%s: several top-level values", name);
                else
                    root = json_incref(val);
            } else {
                struct yframe *f = &st[depth - 1];
                if (json_is_array(f->node)) {
                    json_array_append(f->node, val);
                } else if (!f->key) {
                    if (!json_is_string(val))
                        r = sl_error_make(err, EINVAL, "%s: line %zu: mapping keys must be scalars",
                                          name, ev.start_mark.line + 1);
                    else
                        f->key = sl_xstrdup(json_string_value(val));
                    container = false;
                } else {
                    if (json_object_get(f->node, f->key))
                        r = sl_error_make(err, EINVAL, "%s: line %zu: duplicate key `%s`", name,
                                          ev.start_mark.line + 1, f->key);
                    else
                        json_object_set(f->node, f->key, val);
                    free(f->key);
                    f->key = NULL;
                }
            }
            if (r == 0 && container) {
                if (depth >= YAML_MAX_DEPTH)
                    r = sl_error_make(err, EINVAL, "%s: nested deeper than %d levels", name,
                                      YAML_MAX_DEPTH);
                else
                    st[depth++] = (struct yframe){.node = val};
            }
        }
        json_decref(val);
        yaml_event_delete(&ev);
        if (r < 0)
            break;
    }
    for (int i = 0; i < depth; i++)
        free(st[i].key);
    yaml_parser_delete(&p);
    if (r < 0) {
        json_decref(root);
        return r;
    }
    *ret = root ? root : json_object(); /* an empty file is an empty config */
    return 0;
}

/* ---- resolution ----------------------------------------------------------------------------- */

static const char *jstr(const json_t *o, const char *k)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, k) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Finds the entry named `name` in the list `key` (clusters/users/contexts) and returns its
 * inner object (`inner`), with "_dir" of the entry kept alongside. */
static json_t *named(const json_t *root, const char *key, const char *inner, const char *name,
                     const char **ret_dir)
{
    const json_t *arr = json_object_get(root, key);
    size_t i;
    json_t *e;
    if (!json_is_array(arr))
        return NULL;
    json_array_foreach(arr, i, e)
    {
        const char *n = jstr(e, "name");
        if (n && strcmp(n, name) == 0) {
            json_t *in = json_object_get(e, inner);
            if (ret_dir)
                *ret_dir = jstr(e, "_dir");
            return json_is_object(in) ? in : NULL;
        }
    }
    return NULL;
}

static char *resolve_path(const char *dir, const char *p)
{
    if (p[0] == '/' || !dir || !dir[0])
        return sl_xstrdup(p);
    return sl_xasprintf("%s/%s", dir, p);
}

static int decode_data(const char *what, const char *b64, char **ret, sl_error_t *err)
{
    uint8_t *d = NULL;
    size_t n = 0;
    /* kubeconfig writers sometimes wrap base64; drop whitespace first */
    _cleanup_free_ char *clean = sl_xmalloc(strlen(b64) + 1);
    size_t k = 0;
    for (const char *s = b64; *s; s++)
        if (*s != '\n' && *s != '\r' && *s != ' ' && *s != '\t')
            clean[k++] = *s;
    clean[k] = 0;
    if (sl_base64_decode(clean, k, &d, &n) < 0)
        return sl_error_make(err, EINVAL, "%s: not valid base64", what);
    if (memchr(d, 0, n)) {
        free(d);
        return sl_error_make(err, EINVAL, "%s: decoded data holds a NUL byte (expected PEM)", what);
    }
    *ret = (char *)d;
    return 0;
}

static int resolve(const json_t *root, const char *name, const char *context,
                   struct sl_k8s_config *ret, sl_error_t *err)
{
    struct sl_k8s_config c = {0};
    const char *cur = context && context[0] ? context : jstr(root, "current-context");
    const char *cdir = NULL, *udir = NULL;
    int r;

    if (!json_is_object(root))
        return sl_error_make(err, EINVAL, "%s: not a mapping", name);
    if (!cur || !cur[0])
        return sl_error_make(err, EINVAL, "%s: no current-context (and none given)", name);
    json_t *ctx = named(root, "contexts", "context", cur, NULL);
    if (!ctx)
        return sl_error_make(err, EINVAL, "%s: context `%s` not found", name, cur);
    const char *cl_name = jstr(ctx, "cluster"), *u_name = jstr(ctx, "user");
    if (!cl_name)
        return sl_error_make(err, EINVAL, "%s: context `%s` names no cluster", name, cur);
    json_t *cl = named(root, "clusters", "cluster", cl_name, &cdir);
    if (!cl)
        return sl_error_make(err, EINVAL, "%s: cluster `%s` not found", name, cl_name);
    json_t *u = NULL;
    if (u_name && u_name[0]) {
        u = named(root, "users", "user", u_name, &udir);
        if (!u)
            return sl_error_make(err, EINVAL, "%s: user `%s` not found", name, u_name);
    }
    if (u && (json_object_get(u, "exec") || json_object_get(u, "auth-provider")))
        return sl_error_make(err, ENOTSUP,
                             "%s: user `%s` uses a credential plugin (exec/auth-provider): "
                             "unsupported; use a token, token file or client certificate",
                             name, u_name);

    const char *server = jstr(cl, "server");
    if (!server || !server[0])
        return sl_error_make(err, EINVAL, "%s: cluster `%s` has no server", name, cl_name);
    if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0) {
        return sl_error_make(err, EINVAL, "%s: cluster `%s`: server `%s` is not an http(s) URL",
                             name, cl_name, server);
    }
    c.server = sl_xstrdup(server);
    size_t sl = strlen(c.server);
    while (sl > 0 && c.server[sl - 1] == '/')
        c.server[--sl] = 0;
    const char *v;
    if ((v = jstr(cl, "certificate-authority-data")) && v[0]) {
        if ((r = decode_data("certificate-authority-data", v, &c.ca_pem, err)) < 0)
            goto fail;
    } else if ((v = jstr(cl, "certificate-authority")) && v[0]) {
        c.ca_file = resolve_path(cdir, v);
    }
    v = jstr(cl, "insecure-skip-tls-verify");
    c.insecure = v && strcmp(v, "true") == 0;
    if (u) {
        if ((v = jstr(u, "token")) && v[0])
            c.token = sl_xstrdup(v);
        else if (((v = jstr(u, "tokenFile")) || (v = jstr(u, "token-file"))) && v[0])
            c.token_file = resolve_path(udir, v);
        if ((v = jstr(u, "client-certificate-data")) && v[0]) {
            if ((r = decode_data("client-certificate-data", v, &c.client_cert_pem, err)) < 0)
                goto fail;
        } else if ((v = jstr(u, "client-certificate")) && v[0]) {
            c.client_cert_file = resolve_path(udir, v);
        }
        if ((v = jstr(u, "client-key-data")) && v[0]) {
            if ((r = decode_data("client-key-data", v, &c.client_key_pem, err)) < 0)
                goto fail;
        } else if ((v = jstr(u, "client-key")) && v[0]) {
            c.client_key_file = resolve_path(udir, v);
        }
        if (!!(c.client_cert_pem || c.client_cert_file) !=
            !!(c.client_key_pem || c.client_key_file)) {
            r = sl_error_make(err, EINVAL, "%s: user `%s`: a client certificate needs its key",
                              name, u_name);
            goto fail;
        }
        if ((v = jstr(u, "username")) && v[0]) {
            c.username = sl_xstrdup(v);
            c.password = sl_xstrdup(jstr(u, "password") ? jstr(u, "password") : "");
        }
    }
    v = jstr(ctx, "namespace");
    c.namespace = sl_xstrdup(v && v[0] ? v : "default");
    c.source = sl_xasprintf("kubeconfig %s (context %s)", name, cur);
    *ret = c;
    return 0;
fail:
    sl_k8s_config_free(&c);
    return r;
}

/* Adds the named entries of `doc` that `into` lacks (first definition wins), noting each
 * entry's directory for relative paths. */
static void merge(json_t *into, json_t *doc, const char *dir)
{
    static const char *const lists[] = {"clusters", "users", "contexts"};
    const char *cur = jstr(doc, "current-context");
    if (cur && cur[0] && !jstr(into, "current-context"))
        json_object_set_new(into, "current-context", json_string(cur));
    for (size_t k = 0; k < SL_ELEMENTSOF(lists); k++) {
        json_t *src = json_object_get(doc, lists[k]);
        if (!json_is_array(src))
            continue;
        json_t *dst = json_object_get(into, lists[k]);
        if (!dst) {
            dst = json_array();
            json_object_set_new(into, lists[k], dst);
        }
        size_t i, j;
        json_t *e, *d;
        json_array_foreach(src, i, e)
        {
            const char *n = jstr(e, "name");
            bool seen = false;
            if (!n)
                continue;
            json_array_foreach(dst, j, d) if (strcmp(jstr(d, "name"), n) == 0) seen = true;
            if (seen)
                continue;
            json_t *copy = json_deep_copy(e);
            if (dir && json_is_object(copy))
                json_object_set_new(copy, "_dir", json_string(dir));
            json_array_append_new(dst, copy);
        }
    }
}

static int parse_doc(const char *text, size_t len, const char *name, json_t **ret, sl_error_t *err)
{
    json_t *doc = NULL;
    int r = yaml_to_json(text, len, name, &doc, err);
    if (r < 0)
        return r;
    if (!json_is_object(doc)) {
        json_decref(doc);
        return sl_error_make(err, EINVAL, "%s: top level is not a mapping", name);
    }
    *ret = doc;
    return 0;
}

int sl_k8s_config_parse_kubeconfig(const char *text, size_t len, const char *dir, const char *name,
                                   const char *context, struct sl_k8s_config *ret, sl_error_t *err)
{
    json_t *doc = NULL;
    const char *nm = name ? name : "kubeconfig";
    int r = parse_doc(text, len, nm, &doc, err);
    if (r < 0)
        return r;
    json_t *merged = json_object();
    merge(merged, doc, dir);
    r = resolve(merged, nm, context, ret, err);
    json_decref(merged);
    json_decref(doc);
    return r;
}

int sl_k8s_read_file(const char *path, size_t max, char **ret, size_t *ret_len, sl_error_t *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sl_error_make(err, errno, "open %s: %s", path, strerror(errno));
    struct sl_buf b;
    sl_buf_init(&b, max);
    for (;;) {
        char *tail, extra;
        size_t want = SL_MIN((size_t)4096, max - b.len);
        if (want == 0 || sl_buf_reserve(&b, want, &tail) < 0) {
            /* at the cap: one more byte means the file is too large */
            if (want == 0 && read(fd, &extra, 1) == 0)
                break;
            sl_buf_free(&b);
            return sl_error_make(err, EFBIG, "%s: larger than %zu bytes", path, max);
        }
        ssize_t n = read(fd, tail, want);
        if (n < 0) {
            int e = errno;
            sl_buf_free(&b);
            return sl_error_make(err, e, "read %s: %s", path, strerror(e));
        }
        if (n == 0)
            break;
        b.len += (size_t)n;
        b.data[b.len] = 0;
    }
    size_t n = b.len;
    char *d = sl_buf_steal(&b, NULL);
    *ret = d ? d : sl_xstrdup("");
    if (ret_len)
        *ret_len = n;
    return 0;
}

int sl_k8s_config_from_kubeconfig(const char *paths, const char *context, struct sl_k8s_config *ret,
                                  sl_error_t *err)
{
    _cleanup_free_ char *list = NULL;
    if (paths && paths[0])
        list = sl_xstrdup(paths);
    else if (getenv("KUBECONFIG") && getenv("KUBECONFIG")[0])
        list = sl_xstrdup(getenv("KUBECONFIG"));
    else if (getenv("HOME"))
        list = sl_xasprintf("%s/.kube/config", getenv("HOME"));
    else
        return sl_error_make(err, ENOENT, "no kubeconfig: KUBECONFIG and HOME are unset");
    bool several = strchr(list, ':') != NULL;
    json_t *merged = json_object();
    int r = 0, files = 0;
    char *save = NULL;
    for (char *p = strtok_r(list, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        r = sl_k8s_read_file(p, SL_K8S_KUBECONFIG_MAX, &text, &len, err);
        if (r == -ENOENT && several) {
            sl_error_free(err);
            r = 0;
            continue;
        }
        if (r < 0)
            goto out;
        json_t *doc = NULL;
        r = parse_doc(text, len, p, &doc, err);
        if (r < 0)
            goto out;
        _cleanup_free_ char *dcopy = sl_xstrdup(p);
        merge(merged, doc, dirname(dcopy));
        json_decref(doc);
        files++;
    }
    if (files == 0) {
        r = sl_error_make(err, ENOENT, "no kubeconfig file found in `%s`", list);
        goto out;
    }
    {
        _cleanup_free_ char *nm =
            sl_xstrdup(paths && paths[0]                                 ? paths
                       : getenv("KUBECONFIG") && getenv("KUBECONFIG")[0] ? getenv("KUBECONFIG")
                                                                         : "~/.kube/config");
        r = resolve(merged, nm, context, ret, err);
    }
out:
    json_decref(merged);
    return r;
}

/* ---- in-cluster ------------------------------------------------------------------------------ */

int sl_k8s_config_in_cluster(const char *sa_dir, struct sl_k8s_config *ret, sl_error_t *err)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    const char *dir = sa_dir && sa_dir[0] ? sa_dir : SL_K8S_SA_DIR;
    struct sl_k8s_config c = {0};
    if (!host || !host[0])
        return sl_error_make(err, ENOENT, "not in a cluster: KUBERNETES_SERVICE_HOST is not set");
    if (!port || !port[0])
        port = "443";
    for (const char *s = port; *s; s++)
        if (*s < '0' || *s > '9')
            return sl_error_make(err, EINVAL, "KUBERNETES_SERVICE_PORT `%s` is not a port", port);
    if (strpbrk(host, "/@?# "))
        return sl_error_make(err, EINVAL, "KUBERNETES_SERVICE_HOST `%s` is not a host", host);
    if (strchr(host, ':') && host[0] != '[')
        c.server = sl_xasprintf("https://[%s]:%s", host, port);
    else
        c.server = sl_xasprintf("https://%s:%s", host, port);
    c.token_file = sl_xasprintf("%s/token", dir);
    _cleanup_free_ char *ca = sl_xasprintf("%s/ca.crt", dir);
    if (access(ca, R_OK) == 0)
        c.ca_file = TAKE_PTR(ca);
    _cleanup_free_ char *nsf = sl_xasprintf("%s/namespace", dir), *ns = NULL;
    if (sl_k8s_read_file(nsf, 256, &ns, NULL, NULL) == 0) {
        ns[strcspn(ns, " \t\r\n")] = 0;
        if (ns[0])
            c.namespace = TAKE_PTR(ns);
    }
    if (!c.namespace)
        c.namespace = sl_xstrdup("default");
    c.source = sl_xasprintf("in-cluster (%s)", dir);
    *ret = c;
    return 0;
}

int sl_k8s_config_load(const char *kubeconfig, struct sl_k8s_config *ret, sl_error_t *err)
{
    if (kubeconfig && kubeconfig[0])
        return sl_k8s_config_from_kubeconfig(kubeconfig, NULL, ret, err);
    const char *h = getenv("KUBERNETES_SERVICE_HOST");
    if (h && h[0])
        return sl_k8s_config_in_cluster(NULL, ret, err);
    return sl_k8s_config_from_kubeconfig(NULL, NULL, ret, err);
}
