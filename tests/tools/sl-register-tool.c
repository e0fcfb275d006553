/* sl-register-tool — drives daemonset/containerd (image registration in containerd) for the
 * e2e scenario tests/e2e/register, with the Starlight side served in-process.
 *
 *   sl-register-tool serve --root DIR --socket SOCK BLOB...
 *       The node daemon's Starlight side in one process: imports every Starlight blob into a
 *       store (DIR/store), publishes it on the FUSE fs (DIR/mnt) and serves containerd's
 *       snapshots API on SOCK over a snapshotter (DIR/snap) whose lowerdir hook is the fs —
 *       the same libraries and wiring as starlight-daemon. Prints "layer DIGEST DIR" per
 *       blob, then "ready"; SIGTERM/SIGINT stop it.
 *
 *   sl-register-tool register --containerd SOCK --namespace NS --name REF
 *                             --manifest FILE --config FILE [--index FILE]
 *                             [--snapshotter NAME] [--plain-layer I]...
 *       Registers the image (manifest and config of converted Starlight layers) in
 *       containerd with sl_ctrd_register_image. --plain-layer marks layer I as not served by
 *       FUSE (registration must refuse it). Prints "registered REF" or the error chain; exit
 *       status 0, 1 (failure) or 3 (-EOPNOTSUPP).
 *
 *   sl-register-tool chain DIFFID...      prints the chain IDs, one a line */
#include "ctrd.h"
#include "fs.h"
#include "grpc-server.h"
#include "json.h"
#include "log.h"
#include "snapshots-service.h"
#include "snapshotter.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_BLOBS  64
#define MAX_BYTES  (16u << 20)
#define MAX_LAYERS 128

static int fail(sl_error_t *err, int r, const char *what)
{
    fprintf(stderr, "sl-register-tool: %s: %s\n", what, sl_error_msg(*err, r));
    sl_error_free(err);
    return r == -EOPNOTSUPP ? 3 : 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: sl-register-tool serve --root DIR --socket SOCK BLOB...\n"
                    "       sl-register-tool register --containerd SOCK --namespace NS --name REF\n"
                    "           --manifest FILE --config FILE [--index FILE] [--snapshotter NAME]\n"
                    "           [--plain-layer I]...\n"
                    "       sl-register-tool chain DIFFID...\n");
    return 2;
}

/* ------------------------------------------------------------------ serve */

static int cmd_serve(int argc, char **argv)
{
    const char *root = NULL, *sock = NULL;
    int i = 0;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--root") == 0)
            root = argv[i + 1];
        else if (strcmp(argv[i], "--socket") == 0)
            sock = argv[i + 1];
        else
            return usage();
    }
    if (!root || !sock || i == argc || argc - i > MAX_BLOBS)
        return usage();

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    sl_error_t err = NULL;
    if (mkdir(root, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "sl-register-tool: mkdir %s: %s\n", root, strerror(errno));
        return 1;
    }
    _cleanup_free_ char *store_dir = sl_xasprintf("%s/store", root);
    _cleanup_free_ char *mnt = sl_xasprintf("%s/mnt", root);
    _cleanup_free_ char *snap_dir = sl_xasprintf("%s/snap", root);
    _cleanup_store_ struct sl_store *store = NULL;
    int r = sl_store_open(store_dir, NULL, &store, &err);
    if (r < 0)
        return fail(&err, r, "open store");
    _cleanup_fs_ struct sl_fs *fs = NULL;
    r = sl_fs_new(store, NULL, &fs, &err);
    if (r >= 0)
        r = sl_fs_mount(fs, mnt, &err);
    if (r < 0)
        return fail(&err, r, "mount");
    for (; i < argc; i++) {
        _cleanup_close_ int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "sl-register-tool: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        char digest[SL_DIGEST_STR_LEN];
        struct sl_toc *toc = NULL;
        r = sl_store_import_blob(store, fd, NULL, false, digest, &toc, &err);
        if (r < 0)
            return fail(&err, r, argv[i]);
        r = sl_fs_add_layer(fs, digest, toc, 0, &err);
        if (r == -EEXIST) /* the same layer twice (features' base is busybox) */
            sl_error_free(&err);
        else if (r < 0)
            return fail(&err, r, argv[i]);
        _cleanup_free_ char *dir = NULL;
        r = sl_fs_layer_dir(fs, digest, &dir, &err);
        if (r < 0)
            return fail(&err, r, argv[i]);
        printf("layer %s %s\n", digest, dir);
    }

    struct sl_snap_hooks hooks = {.ud = fs, .lowerdir = sl_fs_lowerdir};
    struct sl_snap *snap = NULL;
    r = sl_snap_open(snap_dir, &hooks, &snap, &err);
    if (r < 0)
        return fail(&err, r, "open snapshotter");
    size_t nmethods = 0;
    const struct sl_grpc_method *methods = sl_snapshots_service_methods(&nmethods);
    struct sl_grpc_server *srv = NULL;
    r = sl_grpc_server_start(sock, methods, nmethods, snap, 4, &srv, &err);
    if (r < 0) {
        sl_snap_close(snap);
        return fail(&err, r, "start the snapshotter service");
    }
    printf("ready\n");
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    sl_grpc_server_stop(srv, 5000);
    sl_snap_close(snap);
    return 0; /* fs (unmount) then store freed by their cleanups */
}

/* ------------------------------------------------------------------ register */

static int read_file(const char *path, uint8_t **ret, size_t *ret_len, sl_error_t *err)
{
    _cleanup_fclose_ FILE *f = fopen(path, "rbe");
    if (!f)
        return sl_error_make(err, errno, "open %s", path);
    uint8_t *buf = sl_xmalloc(MAX_BYTES);
    size_t n = fread(buf, 1, MAX_BYTES, f);
    if (n == MAX_BYTES || ferror(f)) {
        free(buf);
        return sl_error_make(err, EFBIG, "read %s (at most %u bytes)", path, MAX_BYTES);
    }
    *ret = buf;
    *ret_len = n;
    return 0;
}

static int cmd_register(int argc, char **argv)
{
    const char *sock = NULL, *ns = NULL, *name = NULL, *mpath = NULL, *cpath = NULL;
    const char *ipath = NULL, *snapshotter = "starlight";
    bool plain[MAX_LAYERS] = {false};
    for (int i = 0; i < argc; i += 2) {
        if (i + 1 >= argc)
            return usage();
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--containerd") == 0)
            sock = v;
        else if (strcmp(a, "--namespace") == 0)
            ns = v;
        else if (strcmp(a, "--name") == 0)
            name = v;
        else if (strcmp(a, "--manifest") == 0)
            mpath = v;
        else if (strcmp(a, "--config") == 0)
            cpath = v;
        else if (strcmp(a, "--index") == 0)
            ipath = v;
        else if (strcmp(a, "--snapshotter") == 0)
            snapshotter = v;
        else if (strcmp(a, "--plain-layer") == 0 && atoi(v) >= 0 && atoi(v) < MAX_LAYERS)
            plain[atoi(v)] = true;
        else
            return usage();
    }
    if (!sock || !ns || !name || !mpath || !cpath)
        return usage();

    sl_error_t err = NULL;
    _cleanup_free_ uint8_t *mbytes = NULL, *cbytes = NULL, *ibytes = NULL;
    size_t mlen = 0, clen = 0, ilen = 0;
    int r = read_file(mpath, &mbytes, &mlen, &err);
    if (r >= 0)
        r = read_file(cpath, &cbytes, &clen, &err);
    if (r >= 0 && ipath)
        r = read_file(ipath, &ibytes, &ilen, &err);
    if (r < 0)
        return fail(&err, r, "read");
    json_t *man = NULL, *cfg = NULL, *idx = NULL;
    r = sl_json_parse((const char *)mbytes, mlen, MAX_BYTES, "manifest", &man, &err);
    if (r >= 0)
        r = sl_json_parse((const char *)cbytes, clen, MAX_BYTES, "config", &cfg, &err);
    if (r >= 0 && ibytes)
        r = sl_json_parse((const char *)ibytes, ilen, MAX_BYTES, "index", &idx, &err);
    json_t *layers = NULL, *rootfs = NULL, *diffs = NULL;
    if (r >= 0)
        r = sl_json_get_arr(man, "layers", "manifest", &layers, &err);
    if (r >= 0)
        r = sl_json_get_obj(cfg, "rootfs", "config", &rootfs, &err);
    if (r >= 0)
        r = sl_json_get_arr(rootfs, "diff_ids", "config.rootfs", &diffs, &err);
    if (r >= 0 &&
        (json_array_size(layers) != json_array_size(diffs) || json_array_size(layers) > MAX_LAYERS))
        r = sl_error_make(&err, EINVAL, "%zu layers, %zu diff_ids", json_array_size(layers),
                          json_array_size(diffs));
    const char *mtype = "application/vnd.oci.image.manifest.v1+json";
    const char *itype = "application/vnd.oci.image.index.v1+json";
    if (r >= 0)
        r = sl_json_opt_str(man, "mediaType", "manifest", &mtype, &err);
    if (r >= 0 && idx)
        r = sl_json_opt_str(idx, "mediaType", "index", &itype, &err);
    struct sl_ctrd_layer ls[MAX_LAYERS];
    size_t n = json_array_size(layers);
    for (size_t k = 0; r >= 0 && k < n; k++) {
        json_t *l = json_array_get(layers, k);
        ls[k] = (struct sl_ctrd_layer){.starlight = !plain[k]};
        r = sl_json_get_str(l, "digest", "layer", &ls[k].digest, &err);
        if (r >= 0)
            r = sl_json_get_i64(l, "size", "layer", &ls[k].size, &err);
        if (r >= 0)
            r = sl_json_get_str(l, "mediaType", "layer", &ls[k].media_type, &err);
        ls[k].diff_id = json_string_value(json_array_get(diffs, k));
    }
    if (r < 0) {
        json_decref(man), json_decref(cfg), json_decref(idx);
        return fail(&err, r, "parse");
    }
    char mdig[SL_DIGEST_STR_LEN], cdig[SL_DIGEST_STR_LEN], idig[SL_DIGEST_STR_LEN];
    sl_sha256_str(mbytes, mlen, mdig);
    sl_sha256_str(cbytes, clen, cdig);
    if (ibytes)
        sl_sha256_str(ibytes, ilen, idig);
    struct sl_ctrd_image img = {
        .name = name,
        .manifest = mbytes,
        .manifest_len = mlen,
        .manifest_media_type = mtype,
        .manifest_digest = mdig,
        .config = cbytes,
        .config_len = clen,
        .config_digest = cdig,
        .index = ibytes,
        .index_len = ilen,
        .index_media_type = itype,
        .index_digest = ibytes ? idig : NULL,
        .layers = ls,
        .n_layers = n,
    };
    _cleanup_ctrd_ struct sl_ctrd *c = NULL;
    r = sl_ctrd_new(sock, snapshotter, &c, &err);
    if (r >= 0)
        r = sl_ctrd_register_image(c, ns, &img, &err);
    json_decref(man), json_decref(cfg), json_decref(idx);
    if (r < 0)
        return fail(&err, r, "register");
    printf("registered %s %s\n", name, ibytes ? idig : mdig);
    return 0;
}

static int cmd_chain(int argc, char **argv)
{
    if (argc < 1 || argc > MAX_LAYERS)
        return usage();
    char(*out)[SL_DIGEST_STR_LEN] = sl_xcalloc((size_t)argc, sizeof(*out));
    sl_error_t err = NULL;
    int r = sl_ctrd_chain_ids((const char *const *)argv, (size_t)argc, out, &err);
    for (int i = 0; r >= 0 && i < argc; i++)
        printf("%s\n", out[i]);
    free(out);
    return r < 0 ? fail(&err, r, "chain") : 0;
}

int main(int argc, char **argv)
{
    sl_log_setup("sl-register-tool", SL_LOG_TEXT, SL_LOG_WARN);
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    if (strcmp(argv[1], "register") == 0)
        return cmd_register(argc - 2, argv + 2);
    if (strcmp(argv[1], "chain") == 0)
        return cmd_chain(argc - 2, argv + 2);
    return usage();
}
