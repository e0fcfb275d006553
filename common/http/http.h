/* http.h — a small HTTP client over libcurl (the only module that links libcurl).
 *
 * One call, sl_http_perform(), runs one logical request: it retries transient failures
 * (connection errors, 5xx, 429) with exponential backoff and jitter, honouring Retry-After,
 * and follows redirects itself so that the `Authorization` value is sent only to the host
 * (scheme, host and port) of the original URL — blob storage redirects never see registry
 * credentials. TLS peers are verified unless the caller turns it off.
 *
 * Response bodies of 2xx answers go to a capped sl_buf or to a streaming sink; bodies of
 * other answers are kept (capped at SL_HTTP_ERROR_BODY_MAX) in the response for error
 * messages. A body is never delivered twice: once a sink has seen bytes, a failure is not
 * retried.
 *
 * Thread-safety: sl_http_perform() may be called from any number of threads at once. Each
 * thread keeps one curl easy handle (so connections are reused per thread); the only global
 * state is curl_global_init, run once. Requests and responses are not shared. */
#ifndef SL_HTTP_HTTP_H
#define SL_HTTP_HTTP_H

#include "buf.h"
#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SL_HTTP_ERROR_BODY_MAX  (64 * 1024)
#define SL_HTTP_HEADERS_MAX     (64 * 1024) /* total bytes of captured response headers */
#define SL_HTTP_MAX_REDIRECTS   10
#define SL_HTTP_DEFAULT_RETRIES 4
#define SL_HTTP_RETRY_AFTER_CAP 30000 /* ms; a longer Retry-After is clamped */
#define SL_HTTP_SINK_STOP       1     /* sink return: end the transfer early, successfully */

/* Receives response body bytes of a 2xx answer. Returns 0 to continue, SL_HTTP_SINK_STOP to
 * end the transfer successfully, or a negative errno to abort it (returned by perform). */
typedef int (*sl_http_sink_fn)(void *userdata, const void *data, size_t len);
/* Produces request body bytes: fills up to `len` bytes at body offset `offset` (requests may
 * be replayed on retry, so the offset can go back to 0). Returns the count (0 only at the
 * end) or a negative errno. */
typedef ssize_t (*sl_http_source_fn)(void *userdata, int64_t offset, void *buf, size_t len);

/* Per-client settings; a NULL pointer means all defaults. Plain data, caller-owned. */
struct sl_http_options {
    const char *user_agent; /* default "starlight-c/<version>" */
    int retries; /* extra attempts after the first; 0 = SL_HTTP_DEFAULT_RETRIES, < 0 = none */
    unsigned backoff_ms;         /* first backoff; 0 = 200 ms, doubling, with jitter */
    unsigned backoff_max_ms;     /* 0 = 5000 ms */
    unsigned retry_after_max_ms; /* 0 = SL_HTTP_RETRY_AFTER_CAP */
    unsigned connect_timeout_s;  /* 0 = 10 s */
    unsigned low_speed_time_s;   /* abort when < 1 byte/s for this long; 0 = 30 s */
    unsigned timeout_s;          /* whole-transfer limit; 0 = none */
    bool tls_no_verify;          /* turn off TLS peer/host verification (never default) */
    /* TLS material (Kubernetes API servers): trust anchors instead of the system store, and a
     * client certificate. Each is a file path or PEM text in memory; NULL = unused. */
    const char *ca_file, *ca_pem;
    const char *client_cert_file, *client_cert_pem;
    const char *client_key_file, *client_key_pem;
};

struct sl_http_header {
    char *name;  /* as received */
    char *value; /* trimmed */
};

struct sl_http_headers {
    struct sl_http_header *v;
    size_t n;
};

/* First value of header `name` (case-insensitive), or NULL. */
const char *sl_http_headers_get(const struct sl_http_headers *h, const char *name);
/* All values of `name` joined with ", " (HTTP list semantics); caller frees; NULL if none. */
char *sl_http_headers_join(const struct sl_http_headers *h, const char *name);
void sl_http_headers_free(struct sl_http_headers *h);

struct sl_http_request {
    const char *method; /* NULL = "GET"; "HEAD" sends no body and reads none */
    const char *url;
    const char *const *headers; /* NULL or NULL-terminated "Name: value" strings */
    const char *authorization;  /* value of Authorization, sent to the origin host only */

    /* Body (at most one of data / fd / source; body_len is its exact size). */
    const void *body;
    int body_fd; /* read with pread from body_offset; -1 when unused */
    int64_t body_offset;
    sl_http_source_fn body_source;
    void *body_userdata;
    int64_t body_len;
    bool has_body; /* send a body (possibly empty) even when body/body_fd/source are unset */

    /* Range: bytes range_first..range_last (inclusive; range_last < 0 = to the end). */
    bool has_range;
    int64_t range_first, range_last;

    /* Where a 2xx body goes: a sink, a capped buffer, or nowhere (both NULL). on_headers, when
     * set, is called with sink_userdata once per attempt before the first byte of a 2xx body
     * (a sink learns whether it gets a 206 or a 200); a negative return aborts. */
    sl_http_sink_fn sink;
    int (*on_headers)(void *userdata, long status, const struct sl_http_headers *headers);
    void *sink_userdata;
    struct sl_buf *body_buf;

    int retries;      /* < 0: take it from opts; 0: no retry (non-idempotent calls) */
    bool no_redirect; /* return 3xx answers to the caller */
    /* Receive buffer for the body (curl's CURLOPT_BUFFERSIZE, at most 512 KiB): bigger pieces
     * per sink call for bulk downloads; 0 = curl's default (16 KiB). */
    size_t recv_buffer;

    /* Connect to this unix socket instead of the URL's host (the URL still gives the path and
     * Host header, e.g. "http://localhost/v1/status"); NULL = TCP. */
    const char *unix_socket_path;

    /* Non-NULL: the transfer ends with -ECANCELED soon (within about a second, even while
     * idle) after *cancel becomes non-zero (long-running watch streams). */
    const volatile int *cancel;
};

static inline void sl_http_request_init(struct sl_http_request *r)
{
    *r = (struct sl_http_request){.body_fd = -1, .retries = -1};
}

struct sl_http_response {
    long status;                    /* final HTTP status */
    struct sl_http_headers headers; /* headers of the final answer */
    struct sl_buf error_body;       /* body of a non-2xx final answer (capped) */
    char *url;                      /* URL of the final answer (after redirects) */
    int attempts;                   /* attempts made for the final URL */
    int64_t body_bytes;             /* 2xx body bytes delivered */
    bool stopped;                   /* the sink ended the transfer early */
};

void sl_http_response_free(struct sl_http_response *resp);

/* Runs `req`. Returns 0 when an HTTP answer arrived (any status: check resp->status), or a
 * negative errno when none did after the retries: -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH,
 * -EIO (transport), -EFBIG (body_buf cap), -ELOOP (too many redirects), -EINVAL (bad URL),
 * or the sink's/source's own error. `resp` must be zeroed by the caller and is filled (and
 * must be freed) in every case. */
int sl_http_perform(const struct sl_http_options *opts, const struct sl_http_request *req,
                    struct sl_http_response *resp, sl_error_t *err);

/* Sink helper: userdata is a struct sl_buf *. */
int sl_http_sink_buf(void *userdata, const void *data, size_t len);

/* Sink helper filling a caller's fixed buffer: userdata is a struct sl_http_mem_sink; more
 * bytes than `left` fail with -EIO. After the transfer `left` > 0 means a short answer. */
struct sl_http_mem_sink {
    uint8_t *p;
    size_t left;
};
int sl_http_sink_mem(void *userdata, const void *data, size_t len);

/* Parses "bytes FIRST-LAST/TOTAL" (TOTAL may be "*", giving -1). Returns 0 or -EINVAL. */
int sl_http_parse_content_range(const char *v, int64_t *first, int64_t *last, int64_t *total);
/* Parses one range of a Range request header ("bytes=A-B", "bytes=A-", "bytes=-N") against a
 * resource of `size` bytes into an inclusive [first, last]. Returns 0, -EINVAL (malformed or
 * several ranges) or -ERANGE (unsatisfiable). */
int sl_http_parse_range(const char *v, int64_t size, int64_t *first, int64_t *last);
/* Parses Retry-After (delta-seconds or an HTTP date) into milliseconds from now (>= 0).
 * Returns 0 or -EINVAL. */
int sl_http_parse_retry_after(const char *v, int64_t *ret_ms);

/* URL helpers (libcurl's URL parser). All return 0 or -EINVAL; results are caller-owned. */
/* Resolves `ref` (absolute, or relative like an upload Location) against `base`. */
int sl_http_url_resolve(const char *base, const char *ref, char **ret);
/* Appends "key=value" (both percent-encoded) to the query of `url`. */
int sl_http_url_add_query(const char *url, const char *key, const char *value, char **ret);
/* "scheme://host:port" with the default port made explicit, for same-origin checks. */
int sl_http_url_origin(const char *url, char **ret);
/* Percent-encodes s for a query component; caller frees. */
char *sl_http_escape(const char *s);

#endif
