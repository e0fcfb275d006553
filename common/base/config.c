#include "config.h"
#include "cleanup.h"

#include <ctype.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#define CONFIG_FILE_MAX (1u << 20)

int sl_parse_int(const char *s, int64_t *ret)
{
    if (!s || !*s)
        return -EINVAL;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno == ERANGE)
        return -ERANGE;
    if (*end)
        return -EINVAL;
    *ret = v;
    return 0;
}

int sl_parse_size(const char *s, uint64_t *ret)
{
    if (!s || !*s || *s == '-')
        return -EINVAL;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE || end == s)
        return errno == ERANGE ? -ERANGE : -EINVAL;
    static const struct {
        const char *suffix;
        uint64_t mul;
    } units[] = {
        {"", 1},           {"B", 1},           {"K", 1000},         {"KB", 1000},
        {"KiB", 1 << 10},  {"M", 1000000},     {"MB", 1000000},     {"MiB", 1 << 20},
        {"G", 1000000000}, {"GB", 1000000000}, {"GiB", 1ULL << 30}, {"TiB", 1ULL << 40},
    };
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < SL_ELEMENTSOF(units); i++)
        if (strcasecmp(end, units[i].suffix) == 0) {
            if (v > UINT64_MAX / units[i].mul)
                return -ERANGE;
            *ret = v * units[i].mul;
            return 0;
        }
    return -EINVAL;
}

int sl_parse_listen(const char *flag, const char *s, char **ret_addr, int *ret_port,
                    sl_error_t *err)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon || colon[1] == '\0')
        return sl_error_make(err, EINVAL, "%s `%s`: expected ADDR:PORT", flag, s ? s : "");
    /* digits only (strtol alone takes " 80" and "+80"); 1-65535: port 0 would bind a random
     * port nobody can reach */
    char *end = NULL;
    errno = 0;
    long port = colon[1] >= '0' && colon[1] <= '9' ? strtol(colon + 1, &end, 10) : -1;
    if (errno || port < 1 || port > 65535 || *end)
        return sl_error_make(err, EINVAL, "%s `%s`: bad port (expected 1-65535)", flag, s);
    const char *a = s;
    size_t alen = (size_t)(colon - s);
    if (alen >= 2 && a[0] == '[' && a[alen - 1] == ']') {
        a++;
        alen -= 2;
    } else if (memchr(a, ':', alen)) {
        return sl_error_make(err, EINVAL, "%s `%s`: write IPv6 addresses as [ADDR]:PORT", flag, s);
    }
    if (alen == 0 || (alen == 7 && memcmp(a, "0.0.0.0", 7) == 0) ||
        (alen == 2 && memcmp(a, "::", 2) == 0))
        *ret_addr = NULL;
    else
        *ret_addr = sl_xstrndup(a, alen);
    *ret_port = (int)port;
    return 0;
}

int sl_parse_duration_ms(const char *s, int64_t *ret)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -EINVAL;
    static const struct {
        const char *unit;
        double ms;
    } units[] = {{"ms", 1}, {"s", 1e3}, {"m", 60e3}, {"h", 3600e3}};
    double total = 0;
    const char *p = s;
    char *end = NULL;
    errno = 0;
    double v = strtod(p, &end);
    if (end == p || errno || v < 0)
        return -EINVAL;
    if (!*end) { /* a bare number: seconds */
        total = v * 1e3;
    } else {
        while (*p) {
            errno = 0;
            v = strtod(p, &end);
            if (end == p || errno || v < 0 || !isalpha((unsigned char)*end))
                return -EINVAL;
            size_t n = 0;
            while (isalpha((unsigned char)end[n]))
                n++;
            size_t i = 0;
            while (i < SL_ELEMENTSOF(units) &&
                   (strlen(units[i].unit) != n || strncmp(end, units[i].unit, n) != 0))
                i++;
            if (i == SL_ELEMENTSOF(units))
                return -EINVAL;
            total += v * units[i].ms;
            p = end + n;
        }
    }
    if (total > 9.2e18)
        return -ERANGE;
    *ret = (int64_t)(total + 0.5);
    return 0;
}

int sl_parse_bool(const char *s, int *ret)
{
    static const char *const yes[] = {"1", "true", "yes", "on", "y"};
    static const char *const no[] = {"0", "false", "no", "off", "n"};
    for (size_t i = 0; i < SL_ELEMENTSOF(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *ret = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *ret = 0;
            return 0;
        }
    }
    return -EINVAL;
}

void sl_strlist_add(struct sl_strlist *l, const char *s)
{
    l->v = sl_xrealloc(l->v, (l->n + 2) * sizeof(char *));
    l->v[l->n++] = sl_xstrdup(s);
    l->v[l->n] = NULL;
}

void sl_strlist_free(struct sl_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Sets one option from text. `source` names where the value came from for error messages. */
static int set_value(const struct sl_opt *o, void *cfg, const char *value, bool append,
                     const char *source, sl_error_t *err)
{
    char *field = (char *)cfg + o->offset;
    int r;
    switch (o->type) {
    case SL_OPT_STR: {
        char **p = (char **)field;
        free(*p);
        *p = value ? sl_xstrdup(value) : NULL;
        return 0;
    }
    case SL_OPT_BOOL: {
        int b;
        if (sl_parse_bool(value, &b) < 0)
            return sl_error_make(err, EINVAL, "`%s` in %s: expected true or false, got \"%s\"",
                                 o->name, source, value);
        *(bool *)field = b;
        return 0;
    }
    case SL_OPT_INT: {
        int64_t v;
        r = sl_parse_int(value, &v);
        if (r < 0)
            return sl_error_make(err, EINVAL, "`%s` in %s: expected an integer, got \"%s\"",
                                 o->name, source, value);
        if (o->max > o->min && (v < o->min || v > o->max))
            return sl_error_make(err, ERANGE,
                                 "`%s` in %s: %" PRId64 " is outside [%" PRId64 ", %" PRId64 "]",
                                 o->name, source, v, o->min, o->max);
        *(int64_t *)field = v;
        return 0;
    }
    case SL_OPT_SIZE: {
        uint64_t v;
        r = sl_parse_size(value, &v);
        if (r < 0)
            return sl_error_make(err, EINVAL,
                                 "`%s` in %s: expected a size such as 4MiB, got \"%s\"", o->name,
                                 source, value);
        if (o->max > o->min && (v < (uint64_t)o->min || v > (uint64_t)o->max))
            return sl_error_make(err, ERANGE,
                                 "`%s` in %s: %" PRIu64 " is outside [%" PRId64 ", %" PRId64 "]",
                                 o->name, source, v, o->min, o->max);
        *(uint64_t *)field = v;
        return 0;
    }
    case SL_OPT_STRLIST: {
        struct sl_strlist *l = (struct sl_strlist *)field;
        if (!append)
            sl_strlist_free(l);
        _cleanup_free_ char *copy = sl_xstrdup(value);
        char *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
            if (*t)
                sl_strlist_add(l, t);
        return 0;
    }
    }
    return -EINVAL;
}

static const struct sl_opt *find_opt(const struct sl_cmd *cmd, const char *name)
{
    for (size_t i = 0; i < cmd->nopts; i++)
        if (strcmp(cmd->opts[i].name, name) == 0)
            return &cmd->opts[i];
    return NULL;
}

/* Deepest nesting of mappings accepted: option names have a few dotted parts, and a deeper
 * (or self-referencing, through a YAML alias) document must fail instead of recursing. */
#define SL_CONFIG_MAX_DEPTH 16

static int yaml_apply_node(const struct sl_cmd *cmd, void *cfg, yaml_document_t *doc,
                           yaml_node_t *map, const char *prefix, const char *source, int depth,
                           sl_error_t *err)
{
    if (depth > SL_CONFIG_MAX_DEPTH)
        return sl_error_make(err, EINVAL, "%s: mappings nested deeper than %d levels (`%s`)",
                             source, SL_CONFIG_MAX_DEPTH, prefix ? prefix : "");
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = yaml_document_get_node(doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(doc, pr->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE)
            return sl_error_make(err, EINVAL, "%s: keys must be plain strings", source);
        _cleanup_free_ char *key = prefix
                                       ? sl_xasprintf("%s.%s", prefix, (char *)k->data.scalar.value)
                                       : sl_xstrdup((char *)k->data.scalar.value);
        const struct sl_opt *o = find_opt(cmd, key);
        if (!o && v->type == YAML_MAPPING_NODE) {
            int r = yaml_apply_node(cmd, cfg, doc, v, key, source, depth + 1, err);
            if (r < 0)
                return r;
            continue;
        }
        if (!o || (cmd->config_key && strcmp(key, cmd->config_key) == 0))
            return sl_error_make(err, EINVAL, "unknown key `%s` in %s (line %zu)", key, source,
                                 k->start_mark.line + 1);
        _cleanup_free_ char *where = sl_xasprintf("%s (line %zu)", source, k->start_mark.line + 1);
        if (v->type == YAML_SCALAR_NODE) {
            int r = set_value(o, cfg, (char *)v->data.scalar.value, false, where, err);
            if (r < 0)
                return r;
        } else if (v->type == YAML_SEQUENCE_NODE && o->type == SL_OPT_STRLIST) {
            sl_strlist_free((struct sl_strlist *)((char *)cfg + o->offset));
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++) {
                yaml_node_t *e = yaml_document_get_node(doc, *it);
                if (!e || e->type != YAML_SCALAR_NODE)
                    return sl_error_make(err, EINVAL, "`%s` in %s: list items must be strings", key,
                                         where);
                sl_strlist_add((struct sl_strlist *)((char *)cfg + o->offset),
                               (char *)e->data.scalar.value);
            }
        } else {
            return sl_error_make(err, EINVAL, "`%s` in %s: expected a single value", key, where);
        }
    }
    return 0;
}

int sl_config_apply_yaml(const struct sl_cmd *cmd, void *cfg, const char *text, size_t len,
                         const char *source, sl_error_t *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        abort();
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int r = sl_error_make(err, EINVAL, "%s: YAML error at line %zu: %s", source,
                              parser.problem_mark.line + 1,
                              parser.problem ? parser.problem : "unknown");
        yaml_parser_delete(&parser);
        return r;
    }
    int r = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE)
        r = yaml_apply_node(cmd, cfg, &doc, root, NULL, source, 0, err);
    else if (root && !(root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0))
        r = sl_error_make(err, EINVAL, "%s: the top level must be a mapping of keys", source);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return r;
}

static int load_file(const struct sl_cmd *cmd, void *cfg, const char *path, sl_error_t *err)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return sl_error_make(err, errno, "config file `%s`: %s", path, strerror(errno));
    _cleanup_free_ char *text = sl_xmalloc(CONFIG_FILE_MAX + 1);
    size_t n = fread(text, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f))
        return sl_error_make(err, EIO, "config file `%s`: read error", path);
    if (n > CONFIG_FILE_MAX)
        return sl_error_make(err, EFBIG, "config file `%s`: larger than %u bytes", path,
                             CONFIG_FILE_MAX);
    _cleanup_free_ char *source = sl_xasprintf("config file `%s`", path);
    return sl_config_apply_yaml(cmd, cfg, text, n, source, err);
}

static const char *type_metavar(const struct sl_opt *o)
{
    if (o->metavar)
        return o->metavar;
    switch (o->type) {
    case SL_OPT_INT:
        return "N";
    case SL_OPT_SIZE:
        return "SIZE";
    case SL_OPT_STRLIST:
        return "LIST";
    default:
        return "VALUE";
    }
}

void sl_config_help(const struct sl_cmd *cmd, FILE *out)
{
    fprintf(out, "Usage: %s [OPTIONS]%s%s\n\n", cmd->name, cmd->args ? " " : "",
            cmd->args ? cmd->args : "");
    if (cmd->summary)
        fprintf(out, "%s\n\n", cmd->summary);
    fprintf(out, "Options (defaults < config file < environment < flags):\n");
    for (size_t i = 0; i < cmd->nopts; i++) {
        const struct sl_opt *o = &cmd->opts[i];
        char lhs[96];
        if (o->type == SL_OPT_BOOL)
            snprintf(lhs, sizeof(lhs), "%c%c%s--%s", o->short_flag ? '-' : ' ',
                     o->short_flag ? o->short_flag : ' ', o->short_flag ? ", " : "  ", o->name);
        else
            snprintf(lhs, sizeof(lhs), "%c%c%s--%s %s", o->short_flag ? '-' : ' ',
                     o->short_flag ? o->short_flag : ' ', o->short_flag ? ", " : "  ", o->name,
                     type_metavar(o));
        fprintf(out, "  %-34s %s", lhs, o->help ? o->help : "");
        if (o->def && *o->def)
            fprintf(out, " [default: %s]", o->def);
        if (o->env)
            fprintf(out, " [env: %s]", o->env);
        fputc('\n', out);
    }
    fprintf(out, "  %-34s %s\n", "-h, --help", "Show this help and exit");
    fprintf(out, "  %-34s %s\n", "    --version", "Show the version and exit");
    if (cmd->epilog)
        fprintf(out, "\n%s\n", cmd->epilog);
}

struct pending {
    const struct sl_opt *o;
    const char *value;
};

int sl_config_parse(const struct sl_cmd *cmd, void *cfg, int argc, char **argv, int *ret_argi,
                    sl_error_t *err)
{
    int r;
    /* 1. defaults */
    for (size_t i = 0; i < cmd->nopts; i++) {
        const struct sl_opt *o = &cmd->opts[i];
        if (o->def) {
            r = set_value(o, cfg, o->def, false, "the built-in defaults", err);
            if (r < 0)
                return r;
        }
    }

    /* 2. collect flags (applied last, after file and environment) */
    _cleanup_free_ struct option *lopts = sl_xcalloc(cmd->nopts + 3, sizeof(struct option));
    _cleanup_free_ char *shorts = sl_xcalloc(cmd->nopts * 2 + 4, 1);
    size_t ns = 0;
    shorts[ns++] = ':';
    shorts[ns++] = 'h';
    for (size_t i = 0; i < cmd->nopts; i++) {
        const struct sl_opt *o = &cmd->opts[i];
        lopts[i].name = o->name;
        lopts[i].has_arg = o->type == SL_OPT_BOOL ? optional_argument : required_argument;
        lopts[i].val = 1000 + (int)i;
        if (o->short_flag) {
            shorts[ns++] = (char)o->short_flag;
            if (o->type != SL_OPT_BOOL)
                shorts[ns++] = ':';
        }
    }
    lopts[cmd->nopts] = (struct option){"help", no_argument, NULL, 'h'};
    lopts[cmd->nopts + 1] = (struct option){"version", no_argument, NULL, 999};

    _cleanup_free_ struct pending *pend = sl_xcalloc((size_t)argc + 1, sizeof(*pend));
    size_t np = 0;
    optind = 0; /* full re-initialisation of GNU getopt */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, shorts, lopts, NULL)) != -1) {
        if (c == 'h') {
            sl_config_help(cmd, stdout);
            return 1;
        }
        if (c == 999) {
            printf("%s %s\n", cmd->name, SL_VERSION);
            return 1;
        }
        if (c == '?')
            return sl_error_make(err, EINVAL, "%s: unknown option `%s` (see --help)", cmd->name,
                                 argv[optind - 1]);
        if (c == ':')
            return sl_error_make(err, EINVAL, "%s: option `%s` needs a value", cmd->name,
                                 argv[optind - 1]);
        const struct sl_opt *o = NULL;
        if (c >= 1000)
            o = &cmd->opts[c - 1000];
        else
            for (size_t i = 0; i < cmd->nopts; i++)
                if (cmd->opts[i].short_flag == c)
                    o = &cmd->opts[i];
        if (!o)
            return sl_error_make(err, EINVAL, "%s: unexpected option", cmd->name);
        pend[np++] = (struct pending){o, optarg ? optarg : (o->type == SL_OPT_BOOL ? "true" : "")};
    }
    int argi = optind;
    int npos = argc - argi;
    if (npos < cmd->min_args || (cmd->max_args >= 0 && npos > cmd->max_args))
        return sl_error_make(err, EINVAL, "%s: expected %s%s (see --help)", cmd->name,
                             cmd->args ? cmd->args : "no arguments",
                             npos < cmd->min_args ? "" : ", got extra arguments");

    /* 3. config file: from a flag, else the environment, else the default */
    if (cmd->config_key) {
        const struct sl_opt *co = find_opt(cmd, cmd->config_key);
        const char *path = NULL;
        for (size_t i = 0; i < np; i++)
            if (pend[i].o == co)
                path = pend[i].value;
        if (!path && co && co->env)
            path = getenv(co->env);
        bool explicit_path = path != NULL;
        if (!path && co)
            path = co->def;
        if (path && *path) {
            struct stat st;
            if (explicit_path || stat(path, &st) == 0) {
                r = load_file(cmd, cfg, path, err);
                if (r < 0)
                    return r;
            }
            set_value(co, cfg, path, false, "flags", NULL);
        }
    }

    /* 4. environment */
    for (size_t i = 0; i < cmd->nopts; i++) {
        const struct sl_opt *o = &cmd->opts[i];
        const char *v = o->env ? getenv(o->env) : NULL;
        if (v && (!cmd->config_key || strcmp(o->name, cmd->config_key) != 0)) {
            _cleanup_free_ char *src = sl_xasprintf("environment variable %s", o->env);
            r = set_value(o, cfg, v, false, src, err);
            if (r < 0)
                return r;
        }
    }

    /* 5. flags; a repeated list flag appends */
    bool *seen = sl_xcalloc(cmd->nopts ? cmd->nopts : 1, sizeof(bool));
    for (size_t i = 0; i < np; i++) {
        size_t idx = (size_t)(pend[i].o - cmd->opts);
        _cleanup_free_ char *src = sl_xasprintf("flag --%s", pend[i].o->name);
        r = set_value(pend[i].o, cfg, pend[i].value, seen[idx], src, err);
        seen[idx] = true;
        if (r < 0) {
            free(seen);
            return r;
        }
    }
    free(seen);
    *ret_argi = argi;
    return 0;
}

void sl_config_free(const struct sl_cmd *cmd, void *cfg)
{
    for (size_t i = 0; i < cmd->nopts; i++) {
        char *field = (char *)cfg + cmd->opts[i].offset;
        if (cmd->opts[i].type == SL_OPT_STR) {
            free(*(char **)field);
            *(char **)field = NULL;
        } else if (cmd->opts[i].type == SL_OPT_STRLIST) {
            sl_strlist_free((struct sl_strlist *)field);
        }
    }
}
