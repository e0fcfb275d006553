/* fuzz-config: the YAML config files of every executable (common/base/config.h, --config),
 * read with the real option tables of starlight-daemon, starlight-proxy and
 * starlight-controller, and a table with one option of each type; then the scalar parsers
 * (sizes, integers, booleans, durations) on the same text.
 *
 * Input: the first byte selects the table, the rest is the file. Invariants (abort on
 * violation): a failure carries an error naming its source; bounded options stay in bounds. */
#include "config.h"
#include "controller-config.h"
#include "daemon-config.h"
#include "proxy-config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct every {
    char *config;
    char *s;
    bool b;
    int64_t i;
    uint64_t z;
    struct sl_strlist l;
    char *nested;
};

#define E(field) offsetof(struct every, field)
static const struct sl_opt every_opts[] = {
    {"config", SL_OPT_STR, E(config), NULL, NULL, 0, "FILE", "file"},
    {"s", SL_OPT_STR, E(s), "x", NULL, 0, "S", "string"},
    {"b", SL_OPT_BOOL, E(b), "false", NULL, 0, NULL, "bool"},
    {"i", SL_OPT_INT, E(i), "1", NULL, 0, "N", "int", -5, 1000},
    {"z", SL_OPT_SIZE, E(z), "1MiB", NULL, 0, "SIZE", "size", 0, 1 << 30},
    {"l", SL_OPT_STRLIST, E(l), NULL, NULL, 0, "A,B", "list"},
    {"a.b", SL_OPT_STR, E(nested), NULL, NULL, 0, "S", "nested key"},
};
static const struct sl_cmd every_cmd = {
    .name = "fuzz",
    .opts = every_opts,
    .nopts = sizeof(every_opts) / sizeof(every_opts[0]),
    .config_key = "config",
};

static void one(const struct sl_cmd *cmd, void *cfg, const char *text, size_t len)
{
    sl_error_t err = NULL;
    int r = sl_config_apply_yaml(cmd, cfg, text, len, "config file `fuzz`", &err);
    if (r < 0 && (!err || !strstr(sl_error_msg(err, r), "fuzz")))
        abort();
    sl_error_free(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 4) {
    case 0: {
        struct sl_daemon_config c = {0};
        one(&sl_daemon_cmd, &c, text, len);
        sl_config_free(&sl_daemon_cmd, &c);
        break;
    }
    case 1: {
        struct sl_proxy_config c = {0};
        one(&sl_proxy_cmd, &c, text, len);
        if (c.listen) {
            char *addr = NULL;
            int port = 0;
            sl_error_t err = NULL;
            if (sl_parse_listen("--listen", c.listen, &addr, &port, &err) == 0 &&
                (port < 0 || port > 65535))
                abort();
            free(addr);
            sl_error_free(&err);
        }
        sl_config_free(&sl_proxy_cmd, &c);
        break;
    }
    case 2: {
        struct sl_controller_config c = {0};
        one(&sl_controller_cmd, &c, text, len);
        sl_config_free(&sl_controller_cmd, &c);
        break;
    }
    default: {
        struct every c = {.i = 1};
        one(&every_cmd, &c, text, len);
        if (c.i < -5 || c.i > 1000 || c.z > (1u << 30))
            abort();
        sl_config_free(&every_cmd, &c);
        break;
    }
    }
    /* The scalar parsers, on the text as one NUL-terminated string. */
    char *s = malloc(len + 1);
    if (!s)
        abort();
    memcpy(s, text, len);
    s[len] = '\0';
    int64_t i;
    uint64_t z;
    int b;
    (void)sl_parse_int(s, &i);
    (void)sl_parse_size(s, &z);
    (void)sl_parse_bool(s, &b);
    if (sl_parse_duration_ms(s, &i) == 0 && i < 0)
        abort();
    free(s);
    return 0;
}
