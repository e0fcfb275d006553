/* digest.h — sha256 (OpenSSL) and OCI digest strings ("sha256:<64 lowercase hex>").
 * Streaming contexts are not thread-safe; one per thread. */
#ifndef SL_BASE_DIGEST_H
#define SL_BASE_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define SL_SHA256_LEN 32
/* "sha256:" + 64 hex + NUL */
#define SL_DIGEST_STR_LEN (7 + 64 + 1)

struct sl_sha256 {
    void *ctx; /* EVP_MD_CTX */
};

void sl_sha256_init(struct sl_sha256 *s);
void sl_sha256_update(struct sl_sha256 *s, const void *p, size_t n);
/* Finishes and writes "sha256:<hex>" into out (SL_DIGEST_STR_LEN bytes). Frees the context. */
void sl_sha256_final(struct sl_sha256 *s, char out[SL_DIGEST_STR_LEN]);
/* Raw 32-byte variant. Frees the context. */
void sl_sha256_final_raw(struct sl_sha256 *s, uint8_t out[SL_SHA256_LEN]);
/* Releases a context that was not finished (safe after final). */
void sl_sha256_done(struct sl_sha256 *s);

/* One-shot digest of a buffer as "sha256:<hex>". */
void sl_sha256_str(const void *p, size_t n, char out[SL_DIGEST_STR_LEN]);

/* True when s is exactly "sha256:" followed by 64 lowercase hex digits. */
int sl_digest_valid(const char *s);
/* Converts raw bytes to lowercase hex (2n chars + NUL). */
void sl_hex(const uint8_t *p, size_t n, char *out);

#endif
