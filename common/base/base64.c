#include "base64.h"

#include <errno.h>
#include <stdbool.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t sl_base64_encode(const void *in, size_t n, char *out)
{
    const uint8_t *p = in;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = 0;
    return o;
}

static int val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int64_t sl_base64_decode(const char *in, size_t n, uint8_t *out)
{
    if (n % 4)
        return -EINVAL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int a = val((unsigned char)in[i]), b = val((unsigned char)in[i + 1]);
        int c = in[i + 2] == '=' ? -2 : val((unsigned char)in[i + 2]);
        int d = in[i + 3] == '=' ? -2 : val((unsigned char)in[i + 3]);
        bool last = i + 4 == n;
        if (a < 0 || b < 0 || c == -1 || d == -1 || (!last && (c == -2 || d == -2)) ||
            (c == -2 && d != -2))
            return -EINVAL;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12;
        out[o++] = (uint8_t)(v >> 16);
        if (c == -2) {
            if (b & 15)
                return -EINVAL;
            continue;
        }
        v |= (uint32_t)c << 6;
        out[o++] = (uint8_t)(v >> 8);
        if (d == -2) {
            if (c & 3)
                return -EINVAL;
            continue;
        }
        out[o++] = (uint8_t)(v | (uint32_t)d);
    }
    return (int64_t)o;
}
