/* auth.h — registry authentication: WWW-Authenticate challenges, Docker config.json
 * credentials, Bearer token fetch and a per-scope token cache.
 *
 * Flow (used by registry.c): a request answered 401 carries challenges; for Basic the
 * credentials from config.json are sent; for Bearer a token is fetched from the realm
 * (GET realm?service=S&scope=A&scope=B, with Basic credentials when there are some),
 * cached per scope set until it expires, and the request retried with it.
 *
 * Parsers are pure and thread-safe. The token cache is mutex-protected and may be shared by
 * threads. */
#ifndef SL_REGISTRY_AUTH_H
#define SL_REGISTRY_AUTH_H

#include "error.h"
#include "http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_AUTH_HEADER_MAX     8192 /* longest WWW-Authenticate we parse */
#define SL_AUTH_MAX_CHALLENGES 16
#define SL_AUTH_MAX_PARAMS     32
#define SL_AUTH_TOKEN_MAX      (64 * 1024) /* token response body cap */
#define SL_DOCKER_CONFIG_MAX   (1024 * 1024)

enum sl_auth_scheme {
    SL_AUTH_OTHER = 0,
    SL_AUTH_BASIC,
    SL_AUTH_BEARER,
};

struct sl_auth_param {
    char *name; /* lowercased */
    char *value;
};

struct sl_auth_challenge {
    enum sl_auth_scheme scheme;
    char *scheme_name; /* as written */
    struct sl_auth_param *params;
    size_t n_params;
};

struct sl_auth_challenges {
    struct sl_auth_challenge *v;
    size_t n;
};

/* Parses one header value holding one or more challenges (RFC 7235: auth-param lists with
 * tokens or quoted strings with backslash escapes; token68 accepted and ignored). Several
 * WWW-Authenticate headers are joined with ", " before the call. Returns 0, or -EINVAL with
 * a message (malformed, more than SL_AUTH_MAX_* items, longer than SL_AUTH_HEADER_MAX). */
int sl_auth_parse_challenges(const char *header, struct sl_auth_challenges *ret, sl_error_t *err);
void sl_auth_challenges_free(struct sl_auth_challenges *c);
/* Parameter value (name case-insensitive) or NULL; borrowed. */
const char *sl_auth_challenge_param(const struct sl_auth_challenge *c, const char *name);
/* First challenge of `scheme`, or NULL. */
const struct sl_auth_challenge *sl_auth_find(const struct sl_auth_challenges *c,
                                             enum sl_auth_scheme scheme);

struct sl_auth_creds {
    char *username;
    char *password;
    char *identity_token; /* OAuth2 refresh token from `docker login` (kept, not yet used) */
};

void sl_auth_creds_free(struct sl_auth_creds *c);

/* Looks up credentials for registry `host` (as written in references: "docker.io",
 * "127.0.0.1:5000") in a Docker config.json document: `auths.<key>.auth` (base64 of
 * user:password) or `username`/`password`. Keys match after dropping an http(s):// prefix
 * and any path, so "https://index.docker.io/v1/" matches docker.io. Returns 1 and fills
 * *ret when found, 0 when not, -EINVAL on a malformed document or auth field. */
int sl_auth_parse_docker_config(const char *data, size_t len, const char *host,
                                struct sl_auth_creds *ret, sl_error_t *err);
/* Same from a file: `path`, else $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
 * A missing default file is "no credentials" (0); a missing explicit path is -ENOENT. */
int sl_auth_load_docker_config(const char *path, const char *host, struct sl_auth_creds *ret,
                               sl_error_t *err);

/* "Basic base64(user:password)"; caller frees. */
char *sl_auth_basic_header(const struct sl_auth_creds *c);

/* Parses a token endpoint answer: `token` or `access_token` (string), optional `expires_in`
 * (seconds; default 60). Returns 0 or -EINVAL. */
int sl_auth_parse_token_response(const char *data, size_t len, char **ret_token,
                                 int64_t *ret_expires_in, sl_error_t *err);
/* Fetches a Bearer token for `scopes` from challenge `c` (realm required, service
 * optional). `creds` may be NULL (anonymous). Returns 0, -EACCES (401/403 from the token
 * server), -EPROTO (bad answer) or a transport error. */
int sl_auth_fetch_token(const struct sl_http_options *hopts, const struct sl_auth_challenge *c,
                        const char *const *scopes, size_t n_scopes,
                        const struct sl_auth_creds *creds, char **ret_token,
                        int64_t *ret_expires_in, sl_error_t *err);

/* Token cache keyed by an opaque string (realm + service + scopes). Thread-safe. */
struct sl_token_cache;
struct sl_token_cache *sl_token_cache_new(void);
void sl_token_cache_free(struct sl_token_cache *c);
/* Returns a copy of a live token (caller frees) or NULL. */
char *sl_token_cache_get(struct sl_token_cache *c, const char *key);
/* Stores `token` for expires_in seconds (a little less, so it never expires in flight). */
void sl_token_cache_put(struct sl_token_cache *c, const char *key, const char *token,
                        int64_t expires_in);

#endif
