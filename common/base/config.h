/* config.h — one declarative option table per executable (or CLI verb).
 *
 * Each entry names a key, its type, where it lives in the plain config struct, its default,
 * its environment variable, its flag and its help. The same table drives, in precedence order,
 *     defaults < YAML file (--config) < environment < command-line flags
 * and generates `--help`. Unknown keys in the file and unknown flags are errors that name the
 * key and where it came from. Strings in the struct are owned by it: sl_config_free().
 * Not thread-safe (call at start-up). */
#ifndef SL_BASE_CONFIG_H
#define SL_BASE_CONFIG_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum sl_opt_type {
    SL_OPT_STR,     /* char * */
    SL_OPT_BOOL,    /* bool; `--flag` = true, `--flag=false` */
    SL_OPT_INT,     /* int64_t */
    SL_OPT_SIZE,    /* uint64_t; accepts K/M/G/KiB/MiB/GiB suffixes */
    SL_OPT_STRLIST, /* struct sl_strlist; flags repeat or take a comma list */
};

struct sl_strlist {
    char **v;
    size_t n;
};

struct sl_opt {
    const char *name; /* file key and long flag (--name) */
    enum sl_opt_type type;
    size_t offset; /* offsetof(struct my_config, field) */
    const char *def;
    const char *env; /* environment variable, or NULL */
    int short_flag;  /* 0 when none */
    const char *metavar;
    const char *help;
    int64_t min, max; /* bounds for INT/SIZE, checked when max > min */
};

struct sl_cmd {
    const char *name;    /* e.g. "ctr-starlight convert" */
    const char *args;    /* positional synopsis, e.g. "SRC DST" */
    const char *summary; /* one paragraph for --help */
    const struct sl_opt *opts;
    size_t nopts;
    const char *config_key; /* name of the STR option holding the YAML file path, or NULL */
    int min_args, max_args; /* positional count; max_args < 0 = unlimited */
    const char *epilog;     /* extra help text (examples), or NULL */
};

/* Parses argv[0..argc) (argv[0] is the program/verb name) into cfg. On success returns 0 and
 * sets *ret_argi to the first positional argument; returns 1 when --help or --version was
 * printed to stdout (exit 0). Errors: -EINVAL (bad flag/value/unknown key, message names the
 * source), -ENOENT/-EIO (config file). */
int sl_config_parse(const struct sl_cmd *cmd, void *cfg, int argc, char **argv, int *ret_argi,
                    sl_error_t *err);
/* Loads YAML text as if it were the config file (for tests and embedding). */
int sl_config_apply_yaml(const struct sl_cmd *cmd, void *cfg, const char *text, size_t len,
                         const char *source, sl_error_t *err);
void sl_config_help(const struct sl_cmd *cmd, FILE *out);
void sl_config_free(const struct sl_cmd *cmd, void *cfg);

/* "4MiB" → 4194304. Returns 0 or -EINVAL/-ERANGE. */
int sl_parse_size(const char *s, uint64_t *ret);
int sl_parse_int(const char *s, int64_t *ret);
int sl_parse_bool(const char *s, int *ret);
/* Go-style duration ("300ms", "30s", "5m", "1h30m", "1.5s"; a bare number is seconds) to
 * milliseconds. Returns 0, -EINVAL or -ERANGE (over ~290 million years or negative). */
int sl_parse_duration_ms(const char *s, int64_t *ret);
/* Splits "ADDR:PORT" ("[v6]:PORT" too) into a malloc'd address (NULL for 0.0.0.0 / [::] /
 * empty = every interface) and a port (digits only, 1-65535: no sign, space or port 0).
 * -EINVAL with a message naming `flag` otherwise. */
int sl_parse_listen(const char *flag, const char *s, char **ret_addr, int *ret_port,
                    sl_error_t *err);
void sl_strlist_free(struct sl_strlist *l);
void sl_strlist_add(struct sl_strlist *l, const char *s);

#endif
