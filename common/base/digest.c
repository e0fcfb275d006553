#include "digest.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

void sl_sha256_init(struct sl_sha256 *s)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1)
        abort();
    s->ctx = c;
}

void sl_sha256_update(struct sl_sha256 *s, const void *p, size_t n)
{
    if (n && EVP_DigestUpdate(s->ctx, p, n) != 1)
        abort();
}

void sl_sha256_final_raw(struct sl_sha256 *s, uint8_t out[SL_SHA256_LEN])
{
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(s->ctx, out, &len) != 1 || len != SL_SHA256_LEN)
        abort();
    sl_sha256_done(s);
}

void sl_hex(const uint8_t *p, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[p[i] >> 4];
        out[2 * i + 1] = hx[p[i] & 15];
    }
    out[2 * n] = 0;
}

void sl_sha256_final(struct sl_sha256 *s, char out[SL_DIGEST_STR_LEN])
{
    uint8_t raw[SL_SHA256_LEN];
    sl_sha256_final_raw(s, raw);
    memcpy(out, "sha256:", 7);
    sl_hex(raw, SL_SHA256_LEN, out + 7);
}

void sl_sha256_done(struct sl_sha256 *s)
{
    if (s->ctx)
        EVP_MD_CTX_free(s->ctx);
    s->ctx = NULL;
}

void sl_sha256_str(const void *p, size_t n, char out[SL_DIGEST_STR_LEN])
{
    struct sl_sha256 s;
    sl_sha256_init(&s);
    sl_sha256_update(&s, p, n);
    sl_sha256_final(&s, out);
}

int sl_digest_valid(const char *s)
{
    if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != 71)
        return 0;
    for (const char *p = s + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}
