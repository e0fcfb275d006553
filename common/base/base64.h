/* base64.h — standard base64 (RFC 4648 §4, with padding), used for xattr values in TOCs,
 * Basic credentials and binary fields of JSON documents. Pure functions, thread-safe. */
#ifndef SL_BASE_BASE64_H
#define SL_BASE_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Bytes needed to encode n bytes, NUL included. */
#define SL_BASE64_ENCODED_SIZE(n) ((((n) + 2) / 3) * 4 + 1)

/* Encodes n bytes into out (SL_BASE64_ENCODED_SIZE(n) bytes), NUL-terminated. Returns the
 * length without the NUL. */
size_t sl_base64_encode(const void *in, size_t n, char *out);

/* Decodes `n` characters of padded base64 into out (at least n / 4 * 3 bytes). Whitespace
 * is not accepted. Returns the decoded length, or -EINVAL for malformed input (bad
 * characters, length not a multiple of 4, misplaced padding, non-zero trailing bits). */
int64_t sl_base64_decode(const char *in, size_t n, uint8_t *out);

#endif
