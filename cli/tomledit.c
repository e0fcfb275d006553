/* tomledit.c — line-oriented TOML editing for containerd's config (see tomledit.h).
 *
 * The document is a vector of lines. Every edit changes the line vector and then re-renders and
 * re-parses the whole document: the parser is the single source of truth for what a line is,
 * and an edit that produced something the parser refuses is caught before it reaches a file. */
#include "tomledit.h"

#include "buf.h"
#include "cleanup.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct path {
    char **seg;
    size_t n;
};

enum line_kind { L_BLANK, L_COMMENT, L_TABLE, L_ARRAY_TABLE, L_KEY, L_CONT, L_TEMPLATE };

struct line {
    char *text; /* without the newline */
    size_t len;
    bool nl;
    enum line_kind kind;
    struct path path; /* L_TABLE/L_ARRAY_TABLE: table; L_KEY: full path (table + key) */
    bool in_array;    /* under a [[...]] table: never edited */
    size_t vstart, vend;
    bool multiline; /* L_KEY whose value continues on the next lines */
    long comment;   /* offset of the trailing comment, or -1 */
};

struct sl_toml_doc {
    struct line *l;
    size_t n;
    unsigned flags;
};

static void path_free(struct path *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->seg[i]);
    free(p->seg);
    p->seg = NULL;
    p->n = 0;
}

static void path_push(struct path *p, char *s)
{
    p->seg = sl_xrealloc(p->seg, (p->n + 1) * sizeof(*p->seg));
    p->seg[p->n++] = s;
}

static void path_copy(struct path *dst, const struct path *src)
{
    for (size_t i = 0; i < src->n; i++)
        path_push(dst, sl_xstrdup(src->seg[i]));
}

/* Is a a prefix of b (a->n <= b->n)? */
static bool path_prefix(const struct path *a, const struct path *b)
{
    if (a->n > b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->seg[i], b->seg[i]) != 0)
            return false;
    return true;
}

static bool path_eq(const struct path *a, const struct path *b)
{
    return a->n == b->n && path_prefix(a, b);
}

static void lines_free(struct line *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(l[i].text);
        path_free(&l[i].path);
    }
    free(l);
}

void sl_toml_free(struct sl_toml_doc *doc)
{
    if (!doc)
        return;
    lines_free(doc->l, doc->n);
    free(doc);
}

static void skip_ws(const char *s, size_t len, size_t *i)
{
    while (*i < len && (s[*i] == ' ' || s[*i] == '\t'))
        (*i)++;
}

static bool bare_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* Decodes a single-line basic ("...") or literal ('...') string starting at s[*i]. */
static int parse_string(const char *s, size_t len, size_t *i, char **ret)
{
    char q = s[*i];
    struct sl_buf b;
    sl_buf_init(&b, 1 << 16);
    for (size_t p = *i + 1; p < len; p++) {
        char c = s[p];
        if (c == '\n' || c == '\r')
            break;
        if (c == q) {
            *ret = sl_buf_steal(&b, NULL);
            if (!*ret) /* "" or '': an empty buffer steals as NULL */
                *ret = sl_xstrdup("");
            *i = p + 1;
            return 0;
        }
        if (c == '\\' && q == '"') {
            if (++p >= len)
                break;
            static const char from[] = "\"\\btnfr", to[] = "\"\\\b\t\n\f\r";
            const char *f = memchr(from, s[p], sizeof(from) - 1);
            if (!f) /* \uXXXX and friends: never in containerd keys; refuse */
                break;
            c = to[f - from];
        }
        sl_buf_append(&b, &c, 1);
    }
    sl_buf_free(&b);
    return -EINVAL;
}

static int parse_key(const char *s, size_t len, size_t *i, struct path *ret)
{
    for (;;) {
        skip_ws(s, len, i);
        if (*i >= len)
            return -EINVAL;
        char *seg = NULL;
        if (s[*i] == '"' || s[*i] == '\'') {
            if (parse_string(s, len, i, &seg) < 0)
                return -EINVAL;
        } else {
            size_t st = *i;
            while (*i < len && bare_char(s[*i]))
                (*i)++;
            if (*i == st)
                return -EINVAL;
            seg = sl_xstrndup(s + st, *i - st);
        }
        path_push(ret, seg);
        skip_ws(s, len, i);
        if (*i < len && s[*i] == '.') {
            (*i)++;
            continue;
        }
        return 0;
    }
}

/* Scans a value starting at s[*i], possibly over several lines. On success *i is just past
 * the value (trailing blanks excluded). */
static int scan_value(const char *s, size_t len, size_t *i)
{
    size_t p = *i;
    int depth = 0;
    size_t end = p;
    while (p < len) {
        char c = s[p];
        if (depth == 0 && (c == '\n' || c == '#' || c == '\r'))
            break;
        if (c == '"' || c == '\'') {
            bool multi = p + 2 < len && s[p + 1] == c && s[p + 2] == c;
            if (multi) {
                p += 3;
                for (;;) {
                    if (p + 2 >= len)
                        return -EINVAL;
                    if (c == '"' && s[p] == '\\') {
                        p += 2;
                        continue;
                    }
                    if (s[p] == c && s[p + 1] == c && s[p + 2] == c)
                        break;
                    p++;
                }
                p += 3;
                while (p < len && s[p] == c) /* up to two quotes may close the content */
                    p++;
            } else {
                p++;
                while (p < len && s[p] != c) {
                    if (s[p] == '\n')
                        return -EINVAL;
                    if (c == '"' && s[p] == '\\')
                        p++;
                    p++;
                }
                if (p >= len)
                    return -EINVAL;
                p++;
            }
            end = p;
            continue;
        }
        if (c == '[' || c == '{')
            depth++;
        else if (c == ']' || c == '}') {
            if (--depth < 0)
                return -EINVAL;
        } else if (c == '#') { /* comment inside a multi-line array */
            while (p < len && s[p] != '\n')
                p++;
            continue;
        }
        p++;
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            end = p;
    }
    if (depth != 0 || end == *i)
        return -EINVAL;
    *i = end;
    return 0;
}

/* After a header or value: blanks, then a comment or the end of the line. */
static int line_tail(const char *s, size_t len, size_t *i, long *ret_comment)
{
    skip_ws(s, len, i);
    *ret_comment = -1;
    if (*i < len && s[*i] == '#') {
        *ret_comment = (long)*i;
        while (*i < len && s[*i] != '\n')
            (*i)++;
    }
    if (*i < len && s[*i] == '\r')
        (*i)++;
    if (*i < len && s[*i] != '\n')
        return -EINVAL;
    return 0;
}

static void doc_push(struct sl_toml_doc *doc, struct line *ln)
{
    doc->l = sl_xrealloc(doc->l, (doc->n + 1) * sizeof(*doc->l));
    doc->l[doc->n++] = *ln;
}

int sl_toml_parse(const char *text, size_t len, unsigned flags, struct sl_toml_doc **ret,
                  sl_error_t *err)
{
    _cleanup_toml_ struct sl_toml_doc *doc = sl_xcalloc(1, sizeof(*doc));
    doc->flags = flags;
    struct path table = {0};
    bool table_in_array = false;
    struct path arrays[64];
    size_t narrays = 0;
    size_t lineno = 1, p = 0;
    int r = 0;

    /* TOML allows no NUL byte; lines are kept as C strings, so one would cut them short. */
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        for (const char *q = text; q < nul; q++)
            lineno += *q == '\n';
        return sl_error_make(err, EINVAL, "line %zu: NUL byte", lineno);
    }

    while (p < len) {
        size_t st = p, i = p;
        const char *eol = memchr(text + p, '\n', len - p);
        size_t lend = eol ? (size_t)(eol - text) : len;
        struct line ln = {.comment = -1};
        skip_ws(text, len, &i);
        size_t nlines = 1;
        if (i >= lend || (text[i] == '\r' && i + 1 == lend)) {
            ln.kind = L_BLANK;
        } else if (text[i] == '#') {
            ln.kind = L_COMMENT;
            ln.comment = (long)(i - st);
        } else if (text[i] == '{' && i + 1 < len && text[i + 1] == '{') {
            if (!(flags & SL_TOML_TEMPLATE)) {
                r = sl_error_make(err, EINVAL, "line %zu: Go template outside a .tmpl file",
                                  lineno);
                goto fail;
            }
            ln.kind = L_TEMPLATE;
        } else if (text[i] == '[') {
            bool arr = i + 1 < len && text[i + 1] == '[';
            i += arr ? 2 : 1;
            path_free(&table);
            if (parse_key(text, lend, &i, &table) < 0 || i >= lend || text[i] != ']' ||
                (arr && (i + 1 >= lend || text[i + 1] != ']'))) {
                r = sl_error_make(err, EINVAL, "line %zu: cannot parse table header", lineno);
                goto fail;
            }
            i += arr ? 2 : 1;
            long c;
            if (line_tail(text, len, &i, &c) < 0) {
                r = sl_error_make(err, EINVAL, "line %zu: text after table header", lineno);
                goto fail;
            }
            ln.comment = c < 0 ? -1 : c - (long)st;
            ln.kind = arr ? L_ARRAY_TABLE : L_TABLE;
            table_in_array = arr;
            for (size_t a = 0; a < narrays && !table_in_array; a++)
                table_in_array = path_prefix(&arrays[a], &table);
            if (arr && narrays < SL_ELEMENTSOF(arrays)) {
                arrays[narrays] = (struct path){0};
                path_copy(&arrays[narrays++], &table);
            } else if (arr) {
                r = sl_error_make(err, EINVAL, "line %zu: too many array tables", lineno);
                goto fail;
            }
            ln.in_array = table_in_array;
            path_copy(&ln.path, &table);
        } else {
            path_copy(&ln.path, &table);
            if (parse_key(text, lend, &i, &ln.path) < 0 || i >= lend || text[i] != '=') {
                path_free(&ln.path);
                r = sl_error_make(err, EINVAL, "line %zu: expected `key = value`", lineno);
                goto fail;
            }
            i++;
            skip_ws(text, len, &i);
            ln.vstart = i - st;
            if (scan_value(text, len, &i) < 0) {
                path_free(&ln.path);
                r = sl_error_make(err, EINVAL, "line %zu: cannot parse the value", lineno);
                goto fail;
            }
            ln.vend = i - st;
            long c;
            if (line_tail(text, len, &i, &c) < 0) {
                path_free(&ln.path);
                r = sl_error_make(err, EINVAL, "line %zu: text after the value", lineno);
                goto fail;
            }
            ln.comment = c < 0 ? -1 : c - (long)st;
            ln.kind = L_KEY;
            ln.in_array = table_in_array;
            /* The value may have spanned lines: find where this logical line ends. */
            for (size_t q = st; q < i; q++)
                if (text[q] == '\n')
                    nlines++;
            ln.multiline = nlines > 1;
        }
        /* Emit the physical lines: the first carries the meaning, the rest are L_CONT. */
        for (size_t k = 0; k < nlines; k++) {
            const char *e = memchr(text + p, '\n', len - p);
            size_t le = e ? (size_t)(e - text) : len;
            struct line out = k == 0 ? ln : (struct line){.kind = L_CONT, .comment = -1};
            out.text = sl_xstrndup(text + p, le - p);
            out.len = le - p;
            /* a value spanning lines has its comment on a later physical line, not this one */
            if (out.comment >= (long)out.len)
                out.comment = -1;
            out.nl = e != NULL;
            doc_push(doc, &out);
            p = e ? le + 1 : len;
            lineno++;
        }
    }
    path_free(&table);
    for (size_t a = 0; a < narrays; a++)
        path_free(&arrays[a]);
    *ret = TAKE_PTR(doc);
    return 0;
fail:
    path_free(&table);
    for (size_t a = 0; a < narrays; a++)
        path_free(&arrays[a]);
    return r;
}

char *sl_toml_render(const struct sl_toml_doc *doc, size_t *ret_len)
{
    struct sl_buf b;
    sl_buf_init(&b, SIZE_MAX);
    for (size_t i = 0; i < doc->n; i++) {
        sl_buf_append(&b, doc->l[i].text, doc->l[i].len);
        if (doc->l[i].nl)
            sl_buf_append(&b, "\n", 1);
    }
    size_t n = 0;
    char *s = sl_buf_steal(&b, &n);
    if (!s)
        s = sl_xstrdup("");
    if (ret_len)
        *ret_len = n;
    return s;
}

/* Re-parses the document after an edit. */
static int reparse(struct sl_toml_doc *doc, sl_error_t *err)
{
    size_t len;
    _cleanup_free_ char *s = sl_toml_render(doc, &len);
    struct sl_toml_doc *nd = NULL;
    int r = sl_toml_parse(s, len, doc->flags, &nd, err);
    if (r < 0)
        return sl_error_wrap(err, -EIO, "internal: edit produced unparsable TOML");
    lines_free(doc->l, doc->n);
    doc->l = nd->l;
    doc->n = nd->n;
    free(nd);
    return 0;
}

static int parse_name(const char *name, struct path *ret)
{
    size_t i = 0, len = strlen(name);
    if (len == 0)
        return 0;
    if (parse_key(name, len, &i, ret) < 0 || i != len)
        return -EINVAL;
    return 0;
}

/* Decoded value: strings unquoted, everything else as written. */
static char *decode_value(const char *s, size_t len)
{
    if (len >= 2 && (s[0] == '"' || s[0] == '\'') && !(len >= 3 && s[1] == s[0] && s[2] == s[0])) {
        size_t i = 0;
        char *out = NULL;
        if (parse_string(s, len, &i, &out) == 0 && i == len)
            return out;
        free(out); /* a string followed by more text: returned as written */
    }
    return sl_xstrndup(s, len);
}

static long find_key(const struct sl_toml_doc *doc, const struct path *full)
{
    for (size_t i = 0; i < doc->n; i++)
        if (doc->l[i].kind == L_KEY && !doc->l[i].in_array && path_eq(&doc->l[i].path, full))
            return (long)i;
    return -1;
}

int sl_toml_get(const struct sl_toml_doc *doc, const char *table, const char *key, char **ret)
{
    struct path full = {0};
    if (parse_name(table, &full) < 0 || parse_name(key, &full) < 0) {
        path_free(&full);
        return 0;
    }
    long k = find_key(doc, &full);
    path_free(&full);
    if (k < 0)
        return 0;
    const struct line *l = &doc->l[k];
    if (l->multiline)
        *ret = sl_xstrndup(l->text + l->vstart, l->len - l->vstart);
    else
        *ret = decode_value(l->text + l->vstart, l->vend - l->vstart);
    return 1;
}

bool sl_toml_has_template(const struct sl_toml_doc *doc)
{
    for (size_t i = 0; i < doc->n; i++)
        if (doc->l[i].kind == L_TEMPLATE)
            return true;
    return false;
}

static void insert_lines(struct sl_toml_doc *doc, size_t at, char **texts, size_t n)
{
    bool nl = true;
    if (at == doc->n && doc->n > 0 && !doc->l[doc->n - 1].nl) {
        /* The file had no final newline: keep it that way (uninstall restores it). */
        doc->l[doc->n - 1].nl = true;
        nl = false;
    }
    doc->l = sl_xrealloc(doc->l, (doc->n + n) * sizeof(*doc->l));
    memmove(doc->l + at + n, doc->l + at, (doc->n - at) * sizeof(*doc->l));
    for (size_t i = 0; i < n; i++) {
        doc->l[at + i] = (struct line){.text = texts[i],
                                       .len = strlen(texts[i]),
                                       .nl = true,
                                       .kind = L_COMMENT,
                                       .comment = -1};
    }
    if (!nl)
        doc->l[at + n - 1].nl = false;
    doc->n += n;
}

static char *indent_of(const struct line *l)
{
    size_t i = 0;
    skip_ws(l->text, l->len, &i);
    return sl_xstrndup(l->text, i);
}

/* Index just past the last header/key/continuation line of the block headed by line h
 * (h = -1: the root block). */
static size_t block_end(const struct sl_toml_doc *doc, long h)
{
    size_t last = (size_t)(h + 1);
    for (size_t i = (size_t)(h + 1); i < doc->n; i++) {
        enum line_kind k = doc->l[i].kind;
        if (k == L_TABLE || k == L_ARRAY_TABLE || k == L_TEMPLATE)
            break;
        if (k == L_KEY || k == L_CONT)
            last = i + 1;
    }
    return last;
}

static int set_impl(struct sl_toml_doc *doc, const struct path *tp, const struct path *full,
                    const char *tname, const char *key, const char *value, bool *changed,
                    sl_error_t *err)
{
    /* Refuse what a line editor would get wrong. */
    for (size_t i = 0; i < doc->n; i++) {
        const struct line *l = &doc->l[i];
        if (l->kind == L_KEY && !l->in_array && !path_eq(&l->path, full) &&
            (path_prefix(&l->path, full) || path_prefix(full, &l->path)))
            return sl_error_make(err, EINVAL,
                                 "line %zu: `%s` in [%s] is defined through a dotted key or an "
                                 "inline table; edit it by hand",
                                 i + 1, key, tname);
        if ((l->kind == L_TABLE || l->kind == L_ARRAY_TABLE) && path_prefix(full, &l->path))
            return sl_error_make(err, EINVAL, "line %zu: `%s` in [%s] is a table", i + 1, key,
                                 tname);
        if (l->kind == L_ARRAY_TABLE && path_prefix(&l->path, tp))
            return sl_error_make(err, EINVAL, "line %zu: [%s] is inside an array of tables", i + 1,
                                 tname);
    }

    long k = find_key(doc, full);
    if (k >= 0) {
        struct line *l = &doc->l[k];
        if (l->multiline)
            return sl_error_make(err, EINVAL, "line %ld: `%s` spans lines; edit it by hand", k + 1,
                                 key);
        _cleanup_free_ char *cur = decode_value(l->text + l->vstart, l->vend - l->vstart);
        _cleanup_free_ char *want = decode_value(value, strlen(value));
        if (strcmp(cur, want) == 0)
            return 0;
        const char *comment = l->comment >= 0 ? l->text + l->comment : "";
        bool ours = strstr(comment, SL_TOML_MARK_WAS) || strcmp(comment, SL_TOML_MARK) == 0;
        struct sl_buf b;
        sl_buf_init(&b, SIZE_MAX);
        sl_buf_append(&b, l->text, l->vstart);
        sl_buf_puts(&b, value);
        sl_buf_append(&b, l->text + l->vend, l->len - l->vend);
        if (!ours) {
            sl_buf_puts(&b, " " SL_TOML_MARK_WAS);
            sl_buf_append(&b, l->text, l->len);
        }
        free(l->text);
        l->text = sl_buf_steal(&b, NULL);
        l->len = strlen(l->text);
        *changed = true;
        return reparse(doc, err);
    }

    /* Missing key: find its table. */
    long h = -2;
    if (tp->n == 0)
        h = -1;
    for (size_t i = 0; i < doc->n && h == -2; i++)
        if (doc->l[i].kind == L_TABLE && path_eq(&doc->l[i].path, tp))
            h = (long)i;
    if (h != -2) {
        size_t at = block_end(doc, h);
        _cleanup_free_ char *ind = NULL;
        for (size_t i = (size_t)(h + 1); i < at; i++)
            if (doc->l[i].kind == L_KEY) {
                free(ind);
                ind = indent_of(&doc->l[i]);
            }
        if (!ind) {
            if (h >= 0) {
                _cleanup_free_ char *hi = indent_of(&doc->l[h]);
                ind = sl_xasprintf("%s  ", hi);
            } else
                ind = sl_xstrdup("");
        }
        char *t = NULL;
        t = sl_xasprintf("%s%s = %s " SL_TOML_MARK, ind, key, value);
        insert_lines(doc, at, &t, 1);
        *changed = true;
        return reparse(doc, err);
    }

    /* Missing table. If keys elsewhere define it through dotted keys, a new header would
     * define it twice. */
    for (size_t i = 0; i < doc->n; i++)
        if (doc->l[i].kind == L_KEY && !doc->l[i].in_array && path_prefix(tp, &doc->l[i].path))
            return sl_error_make(err, EINVAL,
                                 "line %zu: [%s] is defined through a dotted key; edit it by hand",
                                 i + 1, tname);
    /* Place it after the last table that shares the longest prefix with it. */
    long best = -1;
    size_t best_len = 0;
    for (size_t i = 0; i < doc->n; i++) {
        const struct line *l = &doc->l[i];
        if (l->kind != L_TABLE || l->in_array)
            continue;
        size_t c = 0;
        while (c < l->path.n && c < tp->n && strcmp(l->path.seg[c], tp->seg[c]) == 0)
            c++;
        if (c >= 1 && c >= best_len) {
            best = (long)i;
            best_len = c;
        }
    }
    size_t at = best >= 0 ? block_end(doc, best) : doc->n;
    if (best < 0 && doc->n > 0 && doc->l[doc->n - 1].kind == L_CONT)
        at = doc->n;
    _cleanup_free_ char *hi = best >= 0 ? indent_of(&doc->l[best]) : sl_xstrdup("");
    char *t[2] = {NULL, NULL};
    t[0] = sl_xasprintf("%s[%s] " SL_TOML_MARK, hi, tname);
    t[1] = sl_xasprintf("%s  %s = %s " SL_TOML_MARK, hi, key, value);
    insert_lines(doc, at, t, 2);
    *changed = true;
    return reparse(doc, err);
}

int sl_toml_set(struct sl_toml_doc *doc, const char *table, const char *key, const char *value,
                bool *changed, sl_error_t *err)
{
    struct path tp = {0}, full = {0};
    int r;
    if (parse_name(table, &tp) < 0 || parse_name(table, &full) < 0 || parse_name(key, &full) < 0)
        r = sl_error_make(err, EINVAL, "bad TOML name [%s] %s", table, key);
    else
        r = set_impl(doc, &tp, &full, table, key, value, changed, err);
    path_free(&tp);
    path_free(&full);
    return r;
}

void sl_toml_unmark(struct sl_toml_doc *doc, bool *changed)
{
    size_t o = 0;
    for (size_t i = 0; i < doc->n; i++) {
        struct line *l = &doc->l[i];
        const char *c = NULL;
        if (l->kind == L_TEMPLATE || l->kind == L_CONT) {
            size_t ml = strlen(" " SL_TOML_MARK);
            if (l->kind == L_TEMPLATE && l->len >= ml &&
                memcmp(l->text + l->len - ml, " " SL_TOML_MARK, ml) == 0)
                c = SL_TOML_MARK;
        } else if (l->comment >= 0) {
            c = l->text + l->comment;
        }
        const char *was = c ? strstr(c, SL_TOML_MARK_WAS) : NULL;
        if (was) {
            char *orig = sl_xstrdup(was + strlen(SL_TOML_MARK_WAS));
            free(l->text);
            l->text = orig;
            l->len = strlen(orig);
            *changed = true;
        } else if (c && strcmp(c, SL_TOML_MARK) == 0) {
            if (!l->nl && o > 0)
                doc->l[o - 1].nl = false;
            free(l->text);
            path_free(&l->path);
            *changed = true;
            continue;
        }
        doc->l[o++] = *l;
    }
    doc->n = o;
}

/* --- containerd node setup --- */

static char *toml_quote(const char *s)
{
    struct sl_buf b;
    sl_buf_init(&b, SIZE_MAX);
    sl_buf_puts(&b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            sl_buf_puts(&b, "\\");
        sl_buf_append(&b, s, 1);
    }
    sl_buf_puts(&b, "\"");
    return sl_buf_steal(&b, NULL);
}

static bool doc_has_content(const struct sl_toml_doc *doc)
{
    for (size_t i = 0; i < doc->n; i++)
        if (doc->l[i].kind != L_BLANK && doc->l[i].kind != L_COMMENT)
            return true;
    return false;
}

int sl_install_edit(const char *text, size_t len, const struct sl_install_opts *opts, char **ret,
                    size_t *ret_len, bool *changed, char **ret_note, sl_error_t *err)
{
    *changed = false;
    *ret_note = NULL;
    bool created = text == NULL;
    if (created) {
        text = opts->k3s ? "{{ template \"base\" . }} " SL_TOML_MARK "\n"
                         : "version = 2 " SL_TOML_MARK "\n";
        len = strlen(text);
    }
    _cleanup_toml_ struct sl_toml_doc *doc = NULL;
    int r = sl_toml_parse(text, len, opts->k3s ? SL_TOML_TEMPLATE : 0, &doc, err);
    if (r < 0)
        return r;

    _cleanup_free_ char *ver = NULL;
    const char *cri = NULL;
    bool base_tmpl = false;
    if (sl_toml_get(doc, "", "version", &ver) > 0) {
        if (strcmp(ver, "2") == 0)
            cri = "plugins.\"io.containerd.grpc.v1.cri\".containerd";
        else if (strcmp(ver, "3") == 0)
            cri = "plugins.\"io.containerd.cri.v1.images\"";
        else
            return sl_error_make(err, ENOTSUP,
                                 "config `version = %s` is not supported (2: containerd 1.6/1.7, "
                                 "3: containerd 2.x)",
                                 ver);
    } else if (sl_toml_has_template(doc)) {
        base_tmpl = true; /* {{ template "base" . }}: version and CRI tables come from k3s */
    } else if (!doc_has_content(doc)) {
        r = sl_toml_set(doc, "", "version", "2", changed, err);
        if (r < 0)
            return r;
        cri = "plugins.\"io.containerd.grpc.v1.cri\".containerd";
    } else {
        return sl_error_make(err, ENOTSUP,
                             "config has no `version` line, so containerd reads it as version 1; "
                             "run `containerd config migrate` or add `version = 2` first");
    }

    _cleanup_free_ char *addr = toml_quote(opts->socket);
    const char *pp = "proxy_plugins.starlight";
    if ((r = sl_toml_set(doc, pp, "type", "\"snapshot\"", changed, err)) < 0 ||
        (r = sl_toml_set(doc, pp, "address", addr, changed, err)) < 0)
        return r;
    if (cri &&
        ((r = sl_toml_set(doc, cri, "snapshotter", "\"starlight\"", changed, err)) < 0 ||
         (r = sl_toml_set(doc, cri, "disable_snapshot_annotations", "false", changed, err)) < 0))
        return r;
    if (base_tmpl)
        *ret_note = sl_xstrdup(
            "the template uses k3s's base template, which already defines the CRI tables: only "
            "[proxy_plugins.starlight] was added. To make starlight the CRI snapshotter, replace "
            "the `{{ template \"base\" . }}` line with a copy of k3s's generated config.toml and "
            "run install again");
    if (created)
        *changed = true;
    *ret = sl_toml_render(doc, ret_len);
    return 0;
}

int sl_uninstall_edit(const char *text, size_t len, bool k3s, char **ret, size_t *ret_len,
                      bool *changed, sl_error_t *err)
{
    *changed = false;
    _cleanup_toml_ struct sl_toml_doc *doc = NULL;
    int r = sl_toml_parse(text, len, k3s ? SL_TOML_TEMPLATE : 0, &doc, err);
    if (r < 0)
        return r;
    sl_toml_unmark(doc, changed);
    *ret = sl_toml_render(doc, ret_len);
    bool empty = true;
    for (size_t i = 0; i < *ret_len && empty; i++)
        empty = (*ret)[i] == ' ' || (*ret)[i] == '\n' || (*ret)[i] == '\t' || (*ret)[i] == '\r';
    if (empty && *changed)
        *ret_len = 0;
    return 0;
}

struct span {
    const char *p;
    size_t n;
};

static size_t split_lines(const char *s, size_t len, struct span **ret)
{
    size_t n = 0;
    struct span *v = NULL;
    for (size_t p = 0; p < len;) {
        const char *e = memchr(s + p, '\n', len - p);
        size_t le = e ? (size_t)(e - s) : len;
        v = sl_xrealloc(v, (n + 1) * sizeof(*v));
        v[n++] = (struct span){s + p, le - p};
        p = le + 1;
    }
    *ret = v;
    return n;
}

static bool span_eq(struct span a, struct span b)
{
    return a.n == b.n && memcmp(a.p, b.p, a.n) == 0;
}

void sl_toml_diff(FILE *out, const char *a, size_t alen, const char *b, size_t blen)
{
    _cleanup_free_ struct span *x = NULL;
    _cleanup_free_ struct span *y = NULL;
    size_t n = split_lines(a, alen, &x), m = split_lines(b, blen, &y);
    /* LCS table: config files are a few hundred lines. */
    _cleanup_free_ unsigned *t = sl_xcalloc((n + 1) * (m + 1), sizeof(unsigned));
#define T(i, j) t[(i) * (m + 1) + (j)]
    for (size_t i = n; i-- > 0;)
        for (size_t j = m; j-- > 0;)
            T(i, j) = span_eq(x[i], y[j]) ? T(i + 1, j + 1) + 1 : SL_MAX(T(i + 1, j), T(i, j + 1));
    size_t i = 0, j = 0;
    bool in_hunk = false;
    while (i < n || j < m) {
        if (i < n && j < m && span_eq(x[i], y[j])) {
            i++, j++;
            in_hunk = false;
            continue;
        }
        if (!in_hunk) {
            fprintf(out, "@@ line %zu @@\n", i + 1);
            in_hunk = true;
        }
        if (i < n && (j == m || T(i + 1, j) >= T(i, j + 1))) {
            fprintf(out, "-%.*s\n", (int)x[i].n, x[i].p);
            i++;
        } else {
            fprintf(out, "+%.*s\n", (int)y[j].n, y[j].p);
            j++;
        }
    }
#undef T
}
