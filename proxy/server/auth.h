/* auth.h — optional client authentication: HTTP Basic against an htpasswd-style file of
 * crypt(3) hashes (bcrypt `$2y$`/`$2b$`, or another strong method libxcrypt accepts: yescrypt,
 * sha512crypt; weak legacy hashes such as DES and MD5 are refused) and static Bearer tokens from
 * the same file.
 *
 * File format (docs/operations.md), one entry a line, `#` comments and blank lines ignored:
 *     alice:$2y$05$...        a Basic user (as written by `htpasswd -B`)
 *     token:s3cr3t-value      a Bearer token (the user name `token` is reserved)
 * The file is re-read when its mtime, size or inode change (checked on each request); a
 * file that fails to parse keeps the previous entries and is logged once.
 *
 * Secrets are compared in constant time; an unknown user costs one hash like a known one.
 * Verifying a password runs bcrypt (milliseconds): call sl_auth_check() from a worker thread,
 * never from the event loop. Successful (user, password) pairs are remembered (as SHA-256
 * digests) until the file changes, so keep-alive clients do not pay bcrypt per request.
 * Thread-safe. */
#ifndef SL_PROXY_AUTH_H
#define SL_PROXY_AUTH_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>

struct sl_auth;

/* Loads `path`. -ENOENT/-EACCES when it cannot be read, -EINVAL naming the line when an entry
 * is malformed or its hash is not a usable crypt(3) hash. */
int sl_auth_new(const char *path, struct sl_auth **ret, sl_error_t *err);
void sl_auth_free(struct sl_auth *a);

/* Checks the value of an Authorization header (NULL when absent). Returns true when it names
 * a known user with the right password (Basic) or a known token (Bearer). */
bool sl_auth_check(struct sl_auth *a, const char *authorization);

/* Number of users and tokens loaded (for logs and tests). */
void sl_auth_counts(struct sl_auth *a, size_t *users, size_t *tokens);

/* Equality of two byte strings whose running time depends only on blen (the secret's
 * length is not hidden, its content is). */
bool sl_auth_consttime_eq(const void *a, size_t alen, const void *b, size_t blen);

#endif
