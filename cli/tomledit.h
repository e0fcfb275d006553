/* tomledit.h — a small line-oriented TOML editor for containerd's config.toml, and the node
 * setup edits of `ctr-starlight install|uninstall` built on it.
 *
 * The editor keeps the file as its original lines and changes only the lines it must: a value
 * replaced in place (indentation and trailing comment kept), a key inserted after the last key
 * of its table, a missing table appended after its closest relative. It understands [table] and
 * [[array]] headers with dotted and quoted names, `key = value` lines with dotted/quoted keys,
 * and values spanning lines (arrays, multi-line strings). Anything else (a line it cannot
 * classify, an unterminated string, a table defined through dotted keys or an inline table that
 * it would have to edit) makes it refuse with -EINVAL rather than guess. Lines starting with
 * `{{` are accepted as opaque Go-template lines only with SL_TOML_TEMPLATE (k3s's
 * config.toml.tmpl).
 *
 * Every line install adds ends with the comment `# starlight-install`; every line it changes
 * ends with `# starlight-install was: <original line>`. Uninstall deletes the former and
 * restores the latter, so install + uninstall gives back the original bytes.
 *
 * Documents are not thread-safe; distinct documents are independent. */
#ifndef SL_CLI_TOMLEDIT_H
#define SL_CLI_TOMLEDIT_H

#include "cleanup.h"
#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define SL_TOML_MARK     "# starlight-install"
#define SL_TOML_MARK_WAS "# starlight-install was: "

enum {
    SL_TOML_TEMPLATE = 1 << 0, /* accept `{{ ... }}` lines (k3s config.toml.tmpl) */
};

struct sl_toml_doc;

/* Parses `text` (not NUL-terminated necessarily). Errors: -EINVAL with the line number. */
int sl_toml_parse(const char *text, size_t len, unsigned flags, struct sl_toml_doc **ret,
                  sl_error_t *err);
void sl_toml_free(struct sl_toml_doc *doc);
SL_DEFINE_CLEANUP(struct sl_toml_doc, sl_toml_free)
#define _cleanup_toml_ _cleanup_(sl_toml_freep)

/* The document as text (malloc'd, NUL-terminated, length in *ret_len when non-NULL). */
char *sl_toml_render(const struct sl_toml_doc *doc, size_t *ret_len);

/* Looks up `key` (a TOML key, may be dotted) in table `table` (TOML dotted table name, "" for
 * the root). Returns 1 and the decoded value (strings unquoted, others as written) in *ret,
 * or 0 when absent. Values spanning lines are returned as written. */
int sl_toml_get(const struct sl_toml_doc *doc, const char *table, const char *key, char **ret);

/* Sets `key` in `table` to `value` (TOML text, e.g. "\"starlight\"" or "false"), marking the
 * line. Creates the table when missing. *changed is set to true when the document changed.
 * Errors: -EINVAL when the table or key cannot be edited safely. */
int sl_toml_set(struct sl_toml_doc *doc, const char *table, const char *key, const char *value,
                bool *changed, sl_error_t *err);

/* Removes every line marked as added and restores every line marked as changed. */
void sl_toml_unmark(struct sl_toml_doc *doc, bool *changed);

/* True when the document has any `{{` template line (k3s). */
bool sl_toml_has_template(const struct sl_toml_doc *doc);

/* --- containerd node setup --- */

struct sl_install_opts {
    const char *socket; /* snapshotter socket for proxy_plugins.starlight */
    bool k3s;           /* text is k3s's config.toml.tmpl */
};

/* Applies the Starlight settings to a containerd config (text == NULL: the file is missing, a
 * minimal version-2 config is made). Version 2 (containerd 1.6/1.7) and 3 (containerd 2.x) are
 * understood; version 1 or unknown versions are refused (-ENOTSUP). *ret is the new text
 * (malloc'd), *changed whether it differs. Warnings for the user go to *ret_note (malloc'd or
 * NULL). */
int sl_install_edit(const char *text, size_t len, const struct sl_install_opts *opts, char **ret,
                    size_t *ret_len, bool *changed, char **ret_note, sl_error_t *err);

/* Undoes sl_install_edit on `text`. *ret_len is 0 when nothing but install's lines were left
 * (the file was created by install and can be removed). */
int sl_uninstall_edit(const char *text, size_t len, bool k3s, char **ret, size_t *ret_len,
                      bool *changed, sl_error_t *err);

/* Writes a line diff of a → b (unified-style hunks without context) to `out`. */
void sl_toml_diff(FILE *out, const char *a, size_t alen, const char *b, size_t blen);

#endif
