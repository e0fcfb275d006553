/* request.h — what the control API parses (control.h), free of sockets and daemon state:
 * the request head, query arguments, one parser per JSON body kind, and the proxy profile
 * file ROOT/proxies.json.
 *
 * Bytes in; a parsed struct of owned copies, or a negative errno with a message naming the
 * field out (-EINVAL malformed, -EFBIG over a cap). The handlers in control.c call these, the
 * unit test (test-control-request.c) and the fuzz targets fuzz-control-request and
 * fuzz-proxies-file drive them directly. Every `_clear` accepts a zeroed or cleared struct.
 * Thread-safe (no shared state). */
#ifndef SL_DAEMON_CONTROL_REQUEST_H
#define SL_DAEMON_CONTROL_REQUEST_H

#include "error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SL_CONTROL_MAX_BODY          (1u << 20) /* request body bytes */
#define SL_CONTROL_MAX_TARGET        2048       /* request target bytes */
#define SL_CONTROL_MAX_PROFILES      64         /* proxy profiles */
#define SL_CONTROL_MAX_NAME          128        /* profile name bytes */
#define SL_CONTROL_MAX_FIELD         4096       /* ref, URL, credential, … bytes */
#define SL_CONTROL_MAX_PROFILES_FILE (1u << 20)

/* The request head: `data` holds the request line and the header lines up to the blank line
 * (the "\r\n\r\n" included or not; no NUL bytes). Accepts "METHOD TARGET HTTP/1.x" with an
 * upper-case method of 1 to 7 letters and an origin-form target (starts with `/`, at most
 * SL_CONTROL_MAX_TARGET bytes, no control bytes); Content-Length must be decimal, equal when
 * repeated and at most `max_body` (-EFBIG); Transfer-Encoding is refused (no chunked bodies). */
struct sl_control_head {
    char method[8];
    char *target; /* path and query, as sent */
    uint64_t content_length;
};
int sl_control_parse_head(const char *data, size_t len, uint64_t max_body,
                          struct sl_control_head *ret, sl_error_t *err);
void sl_control_head_clear(struct sl_control_head *h);

/* The value of query argument `key` in `target` ("/path?k=v&…"), percent-decoded (`+` is a
 * space). 1 and *ret (caller frees) when found, 0 when absent; -EINVAL when the value has a
 * bad %-escape or decodes to a NUL byte, or when `key` is repeated. */
int sl_control_query(const char *target, const char *key, char **ret, sl_error_t *err);

/* POST /v1/pull: {ref, platform?, namespace?, proxy?, insecure?}. `ref` must be non-empty;
 * absent optional strings stay NULL. */
struct sl_control_pull_req {
    char *ref, *platform, *ns, *proxy;
    bool insecure;
};
int sl_control_parse_pull(const char *body, size_t len, struct sl_control_pull_req *ret,
                          sl_error_t *err);
void sl_control_pull_req_clear(struct sl_control_pull_req *p);

/* A proxy profile: the body of POST /v1/proxies, and one entry of proxies.json. `name` is 1
 * to SL_CONTROL_MAX_NAME bytes without `/` or "://"; `url` starts with http:// or https://;
 * `user` ("USER:PASS", sent as Basic) and `token` (sent as Bearer) are optional (NULL). */
struct sl_control_profile {
    char *name, *url, *user, *token;
};
int sl_control_parse_profile(const char *body, size_t len, struct sl_control_profile *ret,
                             sl_error_t *err);
void sl_control_profile_clear(struct sl_control_profile *p);

/* POST /v1/optimizer: {enable, group?} (unknown keys refused). */
struct sl_control_optimizer_req {
    bool enable;
    char *group; /* NULL when absent */
};
int sl_control_parse_optimizer(const char *body, size_t len, struct sl_control_optimizer_req *ret,
                               sl_error_t *err);
void sl_control_optimizer_req_clear(struct sl_control_optimizer_req *o);

/* POST /v1/report: an empty body or {proxy?} (unknown keys refused). *ret_proxy: the profile
 * name or URL (caller frees), NULL when absent. */
int sl_control_parse_report(const char *body, size_t len, char **ret_proxy, sl_error_t *err);

/* POST /v1/gc: an empty body or {grace?} with grace an integer >= 0 (seconds; unknown keys
 * refused). *ret_grace_s: -1 when absent (the daemon's default). */
int sl_control_parse_gc(const char *body, size_t len, int64_t *ret_grace_s, sl_error_t *err);

/* ROOT/proxies.json: {"proxies": [PROFILE, …]}, each entry checked as POST /v1/proxies checks
 * its body, names unique, at most SL_CONTROL_MAX_PROFILES. Errors name the file's JSON path
 * ("proxies.json: .proxies[2].url: …"). */
struct sl_control_profiles {
    struct sl_control_profile *v;
    size_t n;
};
int sl_control_parse_profiles(const char *data, size_t len, struct sl_control_profiles *ret,
                              sl_error_t *err);
/* The index of profile `name`, or -1. */
ssize_t sl_control_profiles_find(const struct sl_control_profiles *p, const char *name);
/* Adds a copy of `e`, replacing the profile of the same name. -EFBIG past the cap. */
int sl_control_profiles_put(struct sl_control_profiles *p, const struct sl_control_profile *e,
                            sl_error_t *err);
/* The file's document (what sl_control_parse_profiles reads back). */
json_t *sl_control_profiles_json(const struct sl_control_profiles *p);
void sl_control_profiles_clear(struct sl_control_profiles *p);

#endif
