/* base64.h — standard base64 (RFC 4648 §4), the one implementation of the project: xattr
 * values in TOCs, Basic credentials, Docker config.json `auth`, binary fields of JSON
 * documents. Pure functions, thread-safe. Allocation failure aborts. */
#ifndef SL_BASE_BASE64_H
#define SL_BASE_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Encodes n bytes with padding. Returns a NUL-terminated string the caller frees; its length
 * goes to *ret_len when non-NULL. */
char *sl_base64_encode(const void *p, size_t n, size_t *ret_len);

/* Decodes `n` characters. Padding is optional, but when present it must be correct; no
 * whitespace, no characters outside the alphabet, no non-zero trailing bits. On success
 * returns 0 and a NUL-terminated buffer (the NUL is not counted in *ret_len) the caller
 * frees; -EINVAL on malformed input. */
int sl_base64_decode(const char *s, size_t n, uint8_t **ret, size_t *ret_len);

#endif
