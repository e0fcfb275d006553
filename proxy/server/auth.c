/* auth.c — Basic (crypt(3) hashes) and Bearer authentication (auth.h). */
#include "auth.h"
#include "base64.h"
#include "cleanup.h"
#include "digest.h"
#include "log.h"

#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#define AUTH_FILE_MAX   (4u << 20)
#define AUTH_LINE_MAX   4096
#define AUTH_CACHE_SIZE 64
#define AUTH_CRED_MAX   1024 /* decoded "user:password" */

struct user {
    char *name;
    char *hash;
};

struct entries {
    struct user *users;
    size_t n_users;
    uint8_t (*tokens)[SL_SHA256_LEN]; /* SHA-256 of each token: fixed-length comparisons */
    size_t n_tokens;
};

struct sl_auth {
    char *path;
    pthread_rwlock_t lock;
    struct entries e;
    struct stat st; /* identity of the loaded file */
    bool reload_failed_logged;
    /* verified (user, password, hash) digests; guarded by cache_lock */
    pthread_mutex_t cache_lock;
    uint8_t cache[AUTH_CACHE_SIZE][SL_SHA256_LEN];
    size_t cache_n, cache_next;
};

bool sl_auth_consttime_eq(const void *a, size_t alen, const void *b, size_t blen)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t diff = alen != blen;
    for (size_t i = 0; i < blen; i++)
        diff |= (uint8_t)((i < alen ? x[i] : 0) ^ y[i]);
    return diff == 0;
}

static void entries_free(struct entries *e)
{
    for (size_t i = 0; i < e->n_users; i++) {
        free(e->users[i].name);
        explicit_bzero(e->users[i].hash, strlen(e->users[i].hash));
        free(e->users[i].hash);
    }
    free(e->users);
    free(e->tokens);
    *e = (struct entries){0};
}

static void sha256_raw(const void *p, size_t n, uint8_t out[SL_SHA256_LEN])
{
    struct sl_sha256 s;
    sl_sha256_init(&s);
    sl_sha256_update(&s, p, n);
    sl_sha256_final_raw(&s, out);
}

static int parse_file(const char *path, const char *text, struct entries *ret, sl_error_t *err)
{
    struct entries e = {0};
    const char *p = text;
    for (unsigned lineno = 1; *p; lineno++) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        const char *next = nl ? nl + 1 : p + len;
        while (len > 0 && isspace((unsigned char)p[len - 1]))
            len--;
        while (len > 0 && isspace((unsigned char)*p)) {
            p++;
            len--;
        }
        if (len == 0 || *p == '#') {
            p = next;
            continue;
        }
        int r = 0;
        const char *colon = memchr(p, ':', len);
        if (len > AUTH_LINE_MAX)
            r = sl_error_make(err, EINVAL, "%s:%u: line too long", path, lineno);
        else if (!colon || colon == p || colon == p + len - 1)
            r = sl_error_make(err, EINVAL, "%s:%u: expected NAME:HASH or token:VALUE", path,
                              lineno);
        if (r < 0) {
            entries_free(&e);
            return r;
        }
        size_t nlen = (size_t)(colon - p);
        const char *val = colon + 1;
        size_t vlen = len - nlen - 1;
        if (nlen == 5 && memcmp(p, "token", 5) == 0) {
            e.tokens = sl_xrealloc(e.tokens, (e.n_tokens + 1) * sizeof(*e.tokens));
            sha256_raw(val, vlen, e.tokens[e.n_tokens++]);
        } else {
            _cleanup_free_ char *hash = sl_xstrndup(val, vlen);
            int ok = crypt_checksalt(hash);
            if (ok != CRYPT_SALT_OK) {
                entries_free(&e);
                return sl_error_make(err, EINVAL,
                                     "%s:%u: the hash of user `%.*s` is not a strong crypt(3) "
                                     "hash (bcrypt, yescrypt, sha512crypt; use `htpasswd -B`)",
                                     path, lineno, (int)nlen, p);
            }
            e.users = sl_xrealloc(e.users, (e.n_users + 1) * sizeof(*e.users));
            e.users[e.n_users].name = sl_xstrndup(p, nlen);
            e.users[e.n_users].hash = TAKE_PTR(hash);
            e.n_users++;
        }
        p = next;
    }
    *ret = e;
    return 0;
}

static int load(const char *path, struct entries *ret, struct stat *ret_st, sl_error_t *err)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return sl_error_make(err, errno, "open auth file `%s`: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) < 0)
        return sl_error_make(err, errno, "stat `%s`: %s", path, strerror(errno));
    if ((uint64_t)st.st_size > AUTH_FILE_MAX)
        return sl_error_make(err, EFBIG, "auth file `%s` is larger than %u bytes", path,
                             AUTH_FILE_MAX);
    _cleanup_free_ char *text = sl_xmalloc((size_t)st.st_size + 1);
    size_t n = fread(text, 1, (size_t)st.st_size, f);
    if (ferror(f))
        return sl_error_make(err, EIO, "read `%s`", path);
    text[n] = '\0';
    if (strlen(text) != n)
        return sl_error_make(err, EINVAL, "auth file `%s` contains a NUL byte", path);
    int r = parse_file(path, text, ret, err);
    explicit_bzero(text, n);
    if (r < 0)
        return r;
    *ret_st = st;
    return 0;
}

int sl_auth_new(const char *path, struct sl_auth **ret, sl_error_t *err)
{
    struct entries e;
    struct stat st;
    int r = load(path, &e, &st, err);
    if (r < 0)
        return r;
    struct sl_auth *a = sl_xcalloc(1, sizeof(*a));
    a->path = sl_xstrdup(path);
    a->e = e;
    a->st = st;
    pthread_rwlock_init(&a->lock, NULL);
    pthread_mutex_init(&a->cache_lock, NULL);
    *ret = a;
    return 0;
}

void sl_auth_free(struct sl_auth *a)
{
    if (!a)
        return;
    entries_free(&a->e);
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->cache_lock);
    free(a->path);
    free(a);
}

static bool same_file(const struct stat *x, const struct stat *y)
{
    return x->st_ino == y->st_ino && x->st_dev == y->st_dev && x->st_size == y->st_size &&
           x->st_mtim.tv_sec == y->st_mtim.tv_sec && x->st_mtim.tv_nsec == y->st_mtim.tv_nsec;
}

static void maybe_reload(struct sl_auth *a)
{
    struct stat st;
    if (stat(a->path, &st) < 0)
        return; /* vanished (e.g. replaced by rename): keep what we have */
    pthread_rwlock_rdlock(&a->lock);
    bool same = same_file(&st, &a->st);
    pthread_rwlock_unlock(&a->lock);
    if (same)
        return;
    pthread_rwlock_wrlock(&a->lock);
    if (!same_file(&st, &a->st)) {
        _cleanup_error_ sl_error_t err = NULL;
        struct entries e;
        struct stat nst;
        int r = load(a->path, &e, &nst, &err);
        if (r < 0) {
            if (!a->reload_failed_logged)
                log_warn("auth file not reloaded, keeping the previous entries: %s",
                         sl_error_msg(err, r));
            a->reload_failed_logged = true;
            a->st = st; /* retry only after the next change */
        } else {
            entries_free(&a->e);
            a->e = e;
            a->st = nst;
            a->reload_failed_logged = false;
            pthread_mutex_lock(&a->cache_lock);
            explicit_bzero(a->cache, sizeof(a->cache));
            a->cache_n = a->cache_next = 0;
            pthread_mutex_unlock(&a->cache_lock);
            log_info("auth file `%s` reloaded: %zu users, %zu tokens", a->path, e.n_users,
                     e.n_tokens);
        }
    }
    pthread_rwlock_unlock(&a->lock);
}

void sl_auth_counts(struct sl_auth *a, size_t *users, size_t *tokens)
{
    maybe_reload(a);
    pthread_rwlock_rdlock(&a->lock);
    *users = a->e.n_users;
    *tokens = a->e.n_tokens;
    pthread_rwlock_unlock(&a->lock);
}

static bool check_token(struct sl_auth *a, const char *token)
{
    uint8_t h[SL_SHA256_LEN];
    sha256_raw(token, strlen(token), h);
    bool ok = false;
    pthread_rwlock_rdlock(&a->lock);
    for (size_t i = 0; i < a->e.n_tokens; i++) /* no early exit */
        ok |= sl_auth_consttime_eq(h, sizeof(h), a->e.tokens[i], SL_SHA256_LEN);
    pthread_rwlock_unlock(&a->lock);
    return ok;
}

static bool cache_has(struct sl_auth *a, const uint8_t key[SL_SHA256_LEN])
{
    bool ok = false;
    pthread_mutex_lock(&a->cache_lock);
    for (size_t i = 0; i < a->cache_n; i++)
        ok |= sl_auth_consttime_eq(key, SL_SHA256_LEN, a->cache[i], SL_SHA256_LEN);
    pthread_mutex_unlock(&a->cache_lock);
    return ok;
}

static void cache_add(struct sl_auth *a, const uint8_t key[SL_SHA256_LEN])
{
    pthread_mutex_lock(&a->cache_lock);
    memcpy(a->cache[a->cache_next], key, SL_SHA256_LEN);
    a->cache_next = (a->cache_next + 1) % AUTH_CACHE_SIZE;
    if (a->cache_n < AUTH_CACHE_SIZE)
        a->cache_n++;
    pthread_mutex_unlock(&a->cache_lock);
}

static bool check_basic(struct sl_auth *a, const char *b64)
{
    size_t bl = strlen(b64), n = 0;
    if (bl > (AUTH_CRED_MAX / 3 + 1) * 4)
        return false;
    _cleanup_free_ uint8_t *dec = NULL;
    if (sl_base64_decode(b64, bl, &dec, &n) < 0 || n > AUTH_CRED_MAX)
        return false;
    char cred[AUTH_CRED_MAX + 1];
    memcpy(cred, dec, n);
    explicit_bzero(dec, n);
    cred[n] = '\0';
    char *colon = memchr(cred, ':', n);
    if (!colon || strlen(cred) != n) {
        explicit_bzero(cred, sizeof(cred));
        return false;
    }
    *colon = '\0';
    const char *user = cred, *pass = colon + 1;

    /* Copy what we need so bcrypt runs without holding the lock. */
    _cleanup_free_ char *hash = NULL;
    _cleanup_free_ char *dummy = NULL;
    pthread_rwlock_rdlock(&a->lock);
    for (size_t i = 0; i < a->e.n_users; i++) {
        const struct user *u = &a->e.users[i];
        if (sl_auth_consttime_eq(user, strlen(user), u->name, strlen(u->name)) && !hash)
            hash = sl_xstrdup(u->hash);
    }
    if (a->e.n_users > 0)
        dummy = sl_xstrdup(a->e.users[0].hash);
    pthread_rwlock_unlock(&a->lock);

    bool ok = false;
    if (hash) {
        struct sl_sha256 s;
        uint8_t key[SL_SHA256_LEN];
        sl_sha256_init(&s);
        sl_sha256_update(&s, user, strlen(user) + 1);
        sl_sha256_update(&s, pass, strlen(pass) + 1);
        sl_sha256_update(&s, hash, strlen(hash));
        sl_sha256_final_raw(&s, key);
        if (cache_has(a, key)) {
            ok = true;
        } else {
            _cleanup_free_ struct crypt_data *cd = sl_xcalloc(1, sizeof(*cd));
            const char *out = crypt_r(pass, hash, cd);
            ok = out && out[0] != '*' && sl_auth_consttime_eq(out, strlen(out), hash, strlen(hash));
            explicit_bzero(cd, sizeof(*cd));
            if (ok)
                cache_add(a, key);
        }
    } else if (dummy) {
        /* Unknown user: spend the same hash work so timing does not reveal user names. */
        _cleanup_free_ struct crypt_data *cd = sl_xcalloc(1, sizeof(*cd));
        (void)crypt_r(pass, dummy, cd);
    }
    explicit_bzero(cred, sizeof(cred));
    return ok;
}

bool sl_auth_check(struct sl_auth *a, const char *authorization)
{
    if (!authorization)
        return false;
    maybe_reload(a);
    const char *p = authorization;
    while (*p == ' ')
        p++;
    if (strncasecmp(p, "Basic ", 6) == 0) {
        p += 6;
        while (*p == ' ')
            p++;
        return check_basic(a, p);
    }
    if (strncasecmp(p, "Bearer ", 7) == 0) {
        p += 7;
        while (*p == ' ')
            p++;
        return *p && check_token(a, p);
    }
    return false;
}
