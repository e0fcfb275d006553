#include "reference.h"
#include "cleanup.h"
#include "digest.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* One path component: [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)* over s[0..n). */
static bool valid_component(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0 || !is_lower_alnum(s[0]))
        return false;
    while (i < n) {
        while (i < n && is_lower_alnum(s[i]))
            i++;
        if (i == n)
            return true;
        if (s[i] == '.')
            i++;
        else if (s[i] == '_')
            i += (i + 1 < n && s[i + 1] == '_') ? 2 : 1;
        else if (s[i] == '-')
            while (i < n && s[i] == '-')
                i++;
        else
            return false;
        if (i >= n || !is_lower_alnum(s[i]))
            return false;
    }
    return true;
}

int sl_ref_valid_path(const char *s)
{
    if (!s || !*s)
        return 0;
    for (;;) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (!valid_component(s, n))
            return 0;
        if (!slash)
            return 1;
        s = slash + 1;
    }
}

/* Domain label: [A-Za-z0-9] | [A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]. */
static bool valid_label(const char *s, size_t n)
{
    if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '-')
            return false;
    return true;
}

int sl_ref_valid_domain(const char *s)
{
    if (!s || !*s)
        return 0;
    const char *end;
    if (*s == '[') { /* IPv6 literal, as newer distribution accepts */
        end = strchr(s, ']');
        if (!end || end == s + 1)
            return 0;
        for (const char *p = s + 1; p < end; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':')
                return 0;
        end++;
    } else {
        const char *p = s;
        end = s + strcspn(s, ":");
        for (;;) {
            const char *dot = memchr(p, '.', (size_t)(end - p));
            const char *le = dot ? dot : end;
            if (!valid_label(p, (size_t)(le - p)))
                return 0;
            if (!dot)
                break;
            p = dot + 1;
        }
    }
    if (*end == 0)
        return 1;
    if (*end != ':' || !end[1])
        return 0;
    for (const char *p = end + 1; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    return 1;
}

int sl_ref_valid_tag(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > SL_REF_TAG_MAX || !(is_alnum(s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return 0;
    return 1;
}

/* Syntactic digest check from go-digest: algorithm [a-z0-9]+([+._-][a-z0-9]+)* ':' hex{32,}. */
static bool digest_shaped(const char *s)
{
    const char *colon = strchr(s, ':');
    if (!colon || colon == s || strlen(colon + 1) < 32)
        return false;
    for (const char *p = s; p < colon; p++)
        if (!is_alnum(*p) && !strchr("+._-", *p))
            return false;
    for (const char *p = colon + 1; *p; p++)
        if (!isxdigit((unsigned char)*p))
            return false;
    return true;
}

static bool all_hex64(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

#define BAD(...) sl_error_make(err, EINVAL, "image reference `%s`: " __VA_ARGS__)

int sl_image_ref_parse(const char *s, struct sl_image_ref *ret, sl_error_t *err)
{
    *ret = (struct sl_image_ref){0};
    if (!s || !*s)
        return sl_error_make(err, EINVAL, "image reference ``: invalid reference format");
    if (strlen(s) > 4096)
        return sl_error_make(err, EINVAL, "image reference: longer than 4096 characters");
    if (all_hex64(s))
        return BAD("invalid repository name (cannot specify 64-byte hexadecimal strings)", s);

    /* The first path element is a domain only when it looks like one: it has a dot or a
     * port, is "localhost", or has uppercase letters (which a path component cannot). */
    _cleanup_free_ char *domain = NULL, *rest = NULL, *path = NULL, *tag = NULL, *dig = NULL;
    const char *slash = strchr(s, '/');
    bool has_domain = false;
    if (slash) {
        size_t n = (size_t)(slash - s);
        bool dotcolon = memchr(s, '.', n) || memchr(s, ':', n);
        bool upper = false;
        for (size_t i = 0; i < n; i++)
            upper |= isupper((unsigned char)s[i]) != 0;
        has_domain = dotcolon || (n == 9 && strncmp(s, "localhost", 9) == 0) || upper;
    }
    if (has_domain) {
        domain = sl_xstrndup(s, (size_t)(slash - s));
        rest = sl_xstrdup(slash + 1);
    } else {
        domain = sl_xstrdup(SL_DOCKER_HUB);
        rest = sl_xstrdup(s);
    }
    if (strcmp(domain, "index.docker.io") == 0) {
        free(domain);
        domain = sl_xstrdup(SL_DOCKER_HUB);
    }

    char *at = strchr(rest, '@');
    if (at) {
        *at = 0;
        dig = sl_xstrdup(at + 1);
    }
    char *colon = strrchr(rest, ':');
    if (colon && !strchr(colon, '/')) {
        *colon = 0;
        tag = sl_xstrdup(colon + 1);
    }
    for (const char *p = rest; *p; p++)
        if (isupper((unsigned char)*p))
            return BAD("invalid reference format: repository name must be lowercase", s);
    if (strcmp(domain, SL_DOCKER_HUB) == 0 && !strchr(rest, '/'))
        path = sl_xasprintf("library/%s", rest);
    else
        path = TAKE_PTR(rest);

    if (!sl_ref_valid_domain(domain))
        return BAD("invalid reference format: bad registry host `%s`", s, domain);
    if (!sl_ref_valid_path(path))
        return BAD("invalid reference format: bad repository name `%s`", s, path);
    if (strlen(domain) + 1 + strlen(path) > SL_REF_NAME_MAX)
        return BAD("repository name must not be more than %d characters", s, SL_REF_NAME_MAX);
    if (tag && !sl_ref_valid_tag(tag))
        return BAD("invalid reference format: bad tag `%s`", s, tag);
    if (dig) {
        if (!digest_shaped(dig))
            return BAD("invalid reference format: bad digest `%s`", s, dig);
        if (strncmp(dig, "sha256:", 7) != 0)
            return BAD("unsupported digest algorithm in `%s` (only sha256)", s, dig);
        if (!sl_digest_valid(dig))
            return BAD("invalid checksum digest format `%s`", s, dig);
    }
    if (!tag && !dig)
        tag = sl_xstrdup("latest");

    ret->domain = TAKE_PTR(domain);
    ret->path = TAKE_PTR(path);
    ret->tag = TAKE_PTR(tag);
    ret->digest = TAKE_PTR(dig);
    return 0;
}

char *sl_image_ref_str(const struct sl_image_ref *ref)
{
    return sl_xasprintf("%s/%s%s%s%s%s", ref->domain, ref->path, ref->tag ? ":" : "",
                        ref->tag ? ref->tag : "", ref->digest ? "@" : "",
                        ref->digest ? ref->digest : "");
}

char *sl_image_ref_name(const struct sl_image_ref *ref)
{
    return sl_xasprintf("%s/%s", ref->domain, ref->path);
}

const char *sl_image_ref_reference(const struct sl_image_ref *ref)
{
    return ref->digest ? ref->digest : ref->tag;
}

const char *sl_registry_api_host(const char *domain)
{
    if (strcmp(domain, SL_DOCKER_HUB) == 0 || strcmp(domain, "index.docker.io") == 0)
        return "registry-1.docker.io";
    return domain;
}

void sl_image_ref_copy(const struct sl_image_ref *src, struct sl_image_ref *dst)
{
    dst->domain = src->domain ? sl_xstrdup(src->domain) : NULL;
    dst->path = src->path ? sl_xstrdup(src->path) : NULL;
    dst->tag = src->tag ? sl_xstrdup(src->tag) : NULL;
    dst->digest = src->digest ? sl_xstrdup(src->digest) : NULL;
}

void sl_image_ref_free(struct sl_image_ref *ref)
{
    if (!ref)
        return;
    free(ref->domain);
    free(ref->path);
    free(ref->tag);
    free(ref->digest);
    *ref = (struct sl_image_ref){0};
}
