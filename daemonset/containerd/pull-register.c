/* pull-register.c — see pull-register.h. */
#include "pull-register.h"

#include "cleanup.h"
#include "log.h"
#include "manifest.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

struct sl_pull_registrar {
    char *socket;
    char *snapshotter;
    pthread_mutex_t lock; /* guards ctrd's creation only, never held across a call */
    struct sl_ctrd *ctrd;
};

struct sl_pull_registrar *sl_pull_registrar_new(const char *containerd_socket,
                                                const char *snapshotter_name)
{
    struct sl_pull_registrar *r = sl_xcalloc(1, sizeof(*r));
    r->socket = sl_xstrdup(containerd_socket ? containerd_socket : "");
    r->snapshotter = sl_xstrdup(snapshotter_name ? snapshotter_name : "starlight");
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void sl_pull_registrar_free(struct sl_pull_registrar *r)
{
    if (!r)
        return;
    sl_ctrd_free(r->ctrd);
    pthread_mutex_destroy(&r->lock);
    free(r->socket);
    free(r->snapshotter);
    free(r);
}

int sl_pull_registrar_image(const struct sl_delta_header *h, struct sl_ctrd_layer *layers,
                            struct sl_ctrd_image *img, struct sl_manifest **ret_manifest,
                            sl_error_t *err)
{
    _cleanup_(sl_manifest_freep) struct sl_manifest *m = NULL;
    int r = sl_manifest_parse(h->manifest, h->manifest_len, h->media_type, &m, err);
    if (r < 0)
        return sl_error_wrap(err, r, "manifest of %s", h->reference);
    if (sl_manifest_kind_is_index(m->kind))
        return sl_error_make(err, EINVAL, "%s: the header's manifest is an index", h->reference);
    if (m->n_layers != h->n_layers)
        return sl_error_make(err, EINVAL, "%s: manifest has %zu layers, header %zu", h->reference,
                             m->n_layers, h->n_layers);
    if (strcmp(m->config.digest, h->config_digest) != 0)
        return sl_error_make(err, EINVAL, "%s: manifest config %s, header %s", h->reference,
                             m->config.digest, h->config_digest);
    for (size_t i = 0; i < h->n_layers; i++) {
        const struct sl_descriptor *d = &m->layers[i];
        const struct sl_delta_hlayer *l = &h->layers[i];
        if (strcmp(d->digest, l->digest) != 0 || d->size < 0 || (uint64_t)d->size != l->size)
            return sl_error_make(err, EINVAL, "%s: layer %zu is %s (%lld bytes) in the manifest",
                                 h->reference, i, d->digest, (long long)d->size);
        layers[i] = (struct sl_ctrd_layer){
            .digest = l->digest,
            .size = d->size,
            .media_type = d->media_type,
            .diff_id = l->diff_id,
            .starlight = true,
        };
    }
    *img = (struct sl_ctrd_image){
        .name = h->reference,
        .manifest = h->manifest,
        .manifest_len = h->manifest_len,
        .manifest_media_type = h->media_type,
        .manifest_digest = h->digest,
        .config = h->config,
        .config_len = h->config_len,
        .config_digest = h->config_digest,
        .layers = layers,
        .n_layers = h->n_layers,
    };
    *ret_manifest = m;
    m = NULL;
    return 0;
}

static int get_ctrd(struct sl_pull_registrar *r, struct sl_ctrd **ret, sl_error_t *err)
{
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    if (!r->ctrd)
        rc = sl_ctrd_new(r->socket, r->snapshotter, &r->ctrd, err);
    *ret = r->ctrd;
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* A clear error when nothing listens (gRPC would say "unavailable" after its backoff). */
static int check_socket(const char *path, sl_error_t *err)
{
    if (strncmp(path, "unix:", 5) == 0)
        path += 5;
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return sl_error_make(err, ECONNREFUSED,
                             "containerd is not running (no socket at %s): start it, then pull "
                             "again (the layers are kept)",
                             path);
    return 0;
}

int sl_pull_registrar_hook(void *ud, const struct sl_delta_header *h, const char *ns,
                           int (*gate)(void *gate_ud, sl_error_t *err), void *gate_ud,
                           sl_error_t *err)
{
    struct sl_pull_registrar *reg = ud;
    size_t n = h->n_layers ? h->n_layers : 1;
    _cleanup_free_ struct sl_ctrd_layer *layers = sl_xcalloc(n, sizeof(*layers));
    struct sl_ctrd_image img;
    _cleanup_(sl_manifest_freep) struct sl_manifest *m = NULL;
    int r = sl_pull_registrar_image(h, layers, &img, &m, err);
    if (r < 0)
        return r;
    img.before_image = gate;
    img.before_image_ud = gate_ud;
    r = check_socket(reg->socket, err);
    if (r < 0)
        return r;
    struct sl_ctrd *c = NULL;
    r = get_ctrd(reg, &c, err);
    if (r < 0)
        return r;
    r = sl_ctrd_register_image(c, ns && *ns ? ns : "default", &img, err);
    if (r < 0)
        return sl_error_wrap(err, r, "containerd at %s, namespace %s", reg->socket,
                             ns && *ns ? ns : "default");
    log_info("registered %s (%s, %zu layers) in containerd namespace %s", h->reference, h->digest,
             h->n_layers, ns && *ns ? ns : "default");
    return 0;
}
