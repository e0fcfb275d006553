/* fuzz-www-authenticate: WWW-Authenticate challenge parsing, plus the token endpoint answer
 * and Docker config.json parsers that sit on the same auth path. The first byte selects. */
#include "auth.h"
#include "base64.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 16384)
        return 0;
    char *s = malloc(size);
    memcpy(s, data + 1, size - 1);
    s[size - 1] = 0;
    sl_error_t err = NULL;
    switch (data[0] % 4) {
    default: {
        struct sl_auth_challenges c;
        if (sl_auth_parse_challenges(s, &c, &err) == 0) {
            if (c.n == 0)
                abort();
            for (size_t i = 0; i < c.n; i++) {
                if (!c.v[i].scheme_name)
                    abort();
                (void)sl_auth_challenge_param(&c.v[i], "realm");
            }
            sl_auth_challenges_free(&c);
        }
        break;
    }
    case 2: {
        char *tok = NULL;
        int64_t exp = 0;
        if (sl_auth_parse_token_response((const char *)data + 1, size - 1, &tok, &exp, &err) == 0) {
            if (!tok || !*tok || exp <= 0)
                abort();
            free(tok);
        }
        break;
    }
    case 3: {
        struct sl_auth_creds c;
        if (sl_auth_parse_docker_config((const char *)data + 1, size - 1, "127.0.0.1:5000", &c,
                                        &err) > 0)
            sl_auth_creds_free(&c);
        uint8_t *d = NULL;
        size_t n;
        if (sl_base64_decode(s, strlen(s), &d, &n) == 0)
            free(d);
        break;
    }
    }
    sl_error_free(&err);
    free(s);
    return 0;
}
