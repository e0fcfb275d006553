/* fuzz-proxy-auth: starlight-proxy's client authentication (proxy/server/auth.h) — the
 * htpasswd-style auth file an operator writes, and the Authorization header any client sends.
 *
 * Input: the first byte selects the parser, the rest is its input:
 *   0  an auth file (loaded through a memfd), then a few headers checked against it
 *   1  an Authorization header checked against a fixed file: user `alice` (bcrypt, cost 4,
 *      password `pw`) and the token `tok-123`
 * Invariants (abort on violation): a refused file carries a message; a header is accepted
 * only when it is a Bearer carrying the token or a Basic credential (the fixed file); the
 * known answers hold (Bearer tok-123 and Basic alice:pw pass, a wrong password fails).
 * Found: the first version shared one memfd between both files, so the fixed sl_auth reloaded
 * a fuzzed file and accepted its token (a harness bug; crash-3eac… keeps it fixed). */
#include "auth.h"
#include "cleanup.h"

#include <crypt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A file at a path (/proc/self/fd/N of a memfd): sl_auth_new takes a path. Two files: the
 * fixed one must not change under its sl_auth (which reloads a changed file). */
struct memfile {
    int fd;
    char path[64];
};

static void set_file(struct memfile *m, const void *p, size_t n)
{
    if (m->fd <= 0) {
        m->fd = memfd_create("auth", MFD_CLOEXEC);
        if (m->fd < 0)
            abort();
        snprintf(m->path, sizeof(m->path), "/proc/self/fd/%d", m->fd);
    }
    if (ftruncate(m->fd, 0) < 0 || pwrite(m->fd, p, n, 0) != (ssize_t)n)
        abort();
}

static struct memfile fixed_file, fuzzed_file;

static struct sl_auth *fixed(void)
{
    static struct sl_auth *a;
    if (a)
        return a;
    struct crypt_data cd = {0};
    const char *h = crypt_r("pw", "$2b$04$abcdefghijklmnopqrstuu", &cd);
    if (!h || h[0] == '*')
        abort();
    char text[256];
    int n = snprintf(text, sizeof(text), "# fixed\nalice:%s\n\ntoken:tok-123\n", h);
    set_file(&fixed_file, text, (size_t)n);
    sl_error_t err = NULL;
    if (sl_auth_new(fixed_file.path, &a, &err) < 0)
        abort();
    /* known answers */
    if (!sl_auth_check(a, "Bearer tok-123") || !sl_auth_check(a, "Basic YWxpY2U6cHc=") ||
        sl_auth_check(a, "Basic YWxpY2U6cHg=") || sl_auth_check(a, "Bearer tok-12"))
        abort();
    return a;
}

static void fuzz_file(const uint8_t *p, size_t n)
{
    set_file(&fuzzed_file, p, n);
    struct sl_auth *a = NULL;
    sl_error_t err = NULL;
    if (sl_auth_new(fuzzed_file.path, &a, &err) < 0) {
        if (!err)
            abort();
        sl_error_free(&err);
        return;
    }
    size_t users = 0, tokens = 0;
    sl_auth_counts(a, &users, &tokens);
    if (users + tokens > n)
        abort();
    (void)sl_auth_check(a, "Bearer x");
    (void)sl_auth_check(a, NULL);
    sl_auth_free(a);
}

static void fuzz_header(const char *h)
{
    struct sl_auth *a = fixed();
    if (!sl_auth_check(a, h))
        return;
    const char *p = h + strspn(h, " ");
    if (!(strncasecmp(p, "Bearer ", 7) == 0 && strstr(p, "tok-123")) &&
        strncasecmp(p, "Basic ", 6) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] % 2 == 0) {
        fuzz_file(data + 1, size - 1);
    } else {
        _cleanup_free_ char *h = sl_xstrndup((const char *)data + 1, size - 1);
        fuzz_header(h);
    }
    return 0;
}
