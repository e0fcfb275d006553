/* fuzz-containerd-config: containerd's config.toml as `ctr-starlight install|uninstall` edits
 * it (cli/tomledit.h) — a file on the node that other tools and people write.
 *
 * Input: the first byte's low bit selects k3s template mode, the rest is the file.
 * Invariants (abort on violation): a parsed document renders back to the same bytes; a
 * failure carries an error; install then uninstall gives back the original bytes when the
 * file held no line of a previous install and is not blank. */
#include "tomledit.h"

#include <stdint.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool k3s = data[0] & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    struct sl_toml_doc *doc = NULL;
    sl_error_t err = NULL;
    int r = sl_toml_parse(text, len, k3s ? SL_TOML_TEMPLATE : 0, &doc, &err);
    if (r < 0) {
        if (!err)
            abort();
        sl_error_free(&err);
    } else {
        size_t n = 0;
        char *out = sl_toml_render(doc, &n);
        if (!out || n != len || memcmp(out, text, len) != 0)
            abort();
        free(out);
        char *v = NULL;
        if (sl_toml_get(doc, "plugins.\"io.containerd.grpc.v1.cri\".containerd", "snapshotter",
                        &v) == 1 &&
            !v)
            abort();
        free(v);
        sl_toml_free(doc);
    }

    struct sl_install_opts o = {.socket = "/run/starlight/starlight-snapshotter.sock", .k3s = k3s};
    char *edited = NULL, *note = NULL;
    size_t elen = 0;
    bool changed = false;
    r = sl_install_edit(text, len, &o, &edited, &elen, &changed, &note, &err);
    if (r < 0) {
        if (!err)
            abort();
        sl_error_free(&err);
        return 0;
    }
    char *back = NULL;
    size_t blen = 0;
    bool changed2 = false;
    r = sl_uninstall_edit(edited, elen, k3s, &back, &blen, &changed2, &err);
    if (r < 0 && !err)
        abort();
    /* A file of blank lines only comes back empty ("created by install": removable). */
    bool blank = true;
    for (size_t i = 0; i < len && blank; i++)
        blank = text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r';
    if (r == 0 && !blank && !memmem(text, len, "starlight-install", 17) &&
        (blen != len || memcmp(back, text, len) != 0))
        abort();
    sl_error_free(&err);
    free(back);
    free(edited);
    free(note);
    return 0;
}
