#include "cli.h"
#include "cleanup.h"
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

int sl_cli_parse(const struct sl_cmd *cmd, void *cfg, struct sl_cli_common *common, int argc,
                 char **argv, int *ret_argi)
{
    _cleanup_error_ sl_error_t err = NULL;
    int r = sl_config_parse(cmd, cfg, argc, argv, ret_argi, &err);
    if (r != 0) {
        if (r < 0)
            fprintf(stderr, "%s: %s\n", cmd->name, sl_error_msg(err, r));
        return r;
    }
    enum sl_log_format fmt;
    enum sl_log_level lvl;
    if (sl_log_parse_format(common->log_format, &fmt) < 0) {
        fprintf(stderr, "%s: --log-format must be text or json, not \"%s\"\n", cmd->name,
                common->log_format);
        return -EINVAL;
    }
    if (sl_log_parse_level(common->log_level, &lvl) < 0) {
        fprintf(stderr, "%s: --log-level must be error, warn, info or debug, not \"%s\"\n",
                cmd->name, common->log_level);
        return -EINVAL;
    }
    sl_log_setup("ctr-starlight", fmt, lvl);
    return 0;
}

int sl_cli_fail(sl_error_t *err, int r, const char *context)
{
    sl_log_error_err(err, r, "%s", context);
    return 1;
}

const char *sl_cli_host_platform(void)
{
#if defined(__x86_64__)
    return "linux/amd64";
#elif defined(__aarch64__)
    return "linux/arm64";
#elif defined(__arm__)
    return "linux/arm/v7";
#elif defined(__s390x__)
    return "linux/s390x";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return "linux/ppc64le";
#elif defined(__riscv) && __riscv_xlen == 64
    return "linux/riscv64";
#else
    return "linux/unknown";
#endif
}
