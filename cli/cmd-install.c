/* ctr-starlight install / uninstall — node setup: adds the Starlight snapshotter to containerd's
 * config.toml (or k3s's config.toml.tmpl), and takes it out again. The TOML editing lives in
 * tomledit.c; this file does the file handling: read, backup, atomic replace, --dry-run. */
#include "cleanup.h"
#include "buf.h"
#include "cli.h"
#include "log.h"
#include "tomledit.h"
#include "verbs.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_CONTAINERD_CONFIG "/etc/containerd/config.toml"
#define DEFAULT_K3S_TEMPLATE      "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl"
#define DEFAULT_SNAPSHOTTER_SOCK  "/run/starlight/starlight-snapshotter.sock"
#define BACKUP_SUFFIX             ".starlight-backup"

struct install_config {
    struct sl_cli_common common;
    char *containerd_config;
    char *socket;
    bool k3s;
    bool dry_run;
};

#define O(f) offsetof(struct install_config, f)
static const struct sl_opt install_opts[] = {
    SL_CLI_COMMON_OPTS(struct install_config),
    {"containerd-config", SL_OPT_STR, O(containerd_config), NULL, NULL, 0, "PATH",
     "containerd config to edit (default: " DEFAULT_CONTAINERD_CONFIG
     ", with --k3s: " DEFAULT_K3S_TEMPLATE ")"},
    {"snapshotter-socket", SL_OPT_STR, O(socket), DEFAULT_SNAPSHOTTER_SOCK, NULL, 0, "PATH",
     "starlight-daemon's snapshotter socket (install only)"},
    {"k3s", SL_OPT_BOOL, O(k3s), "false", NULL, 0, NULL,
     "Edit k3s's config.toml.tmpl (Go template) instead of containerd's config.toml"},
    {"dry-run", SL_OPT_BOOL, O(dry_run), "false", NULL, 0, NULL,
     "Print the changes as a diff and write nothing"},
};
#undef O

static const struct sl_cmd install_cmd = {
    .name = "ctr-starlight install",
    .args = "",
    .summary = "Adds the Starlight snapshotter to containerd's config: [proxy_plugins.starlight] "
               "and, in the CRI\nplugin, snapshotter = \"starlight\" and "
               "disable_snapshot_annotations = false. Idempotent; keeps the\nrest of the file; "
               "backs it up to FILE" BACKUP_SUFFIX ". Restart containerd afterwards.",
    .opts = install_opts,
    .nopts = SL_ELEMENTSOF(install_opts),
    .config_key = "config",
    .min_args = 0,
    .max_args = 0,
    .epilog = "Exit status: 0 changed or unchanged, 1 the file could not be edited safely or "
              "written, 2 usage.",
};

static const struct sl_cmd uninstall_cmd = {
    .name = "ctr-starlight uninstall",
    .args = "",
    .summary = "Removes what `ctr-starlight install` added to containerd's config and restores "
               "the values it\nchanged (marked `# starlight-install`). A file install created is "
               "removed.",
    .opts = install_opts,
    .nopts = SL_ELEMENTSOF(install_opts),
    .config_key = "config",
    .min_args = 0,
    .max_args = 0,
};

/* Reads path; *ret = NULL when it does not exist. */
static int read_all(const char *path, char **ret, size_t *ret_len, sl_error_t *err)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    *ret = NULL;
    *ret_len = 0;
    if (!f) {
        if (errno == ENOENT)
            return 0;
        return sl_error_make(err, errno, "open %s: %s", path, strerror(errno));
    }
    struct sl_buf b;
    sl_buf_init(&b, 64u << 20);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (sl_buf_append(&b, chunk, n) < 0) {
            sl_buf_free(&b);
            return sl_error_make(err, EFBIG, "%s: too large", path);
        }
    if (ferror(f)) {
        sl_buf_free(&b);
        return sl_error_make(err, EIO, "read %s", path);
    }
    *ret = sl_buf_steal(&b, ret_len);
    if (!*ret)
        *ret = sl_xstrdup("");
    return 0;
}

static int mkdir_p(const char *dir)
{
    _cleanup_free_ char *d = sl_xstrdup(dir);
    for (char *p = d + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(d, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(d, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Writes data to path through a temp file in the same directory and rename(2). */
static int write_atomic(const char *path, const char *data, size_t len, mode_t mode,
                        sl_error_t *err)
{
    _cleanup_free_ char *copy = sl_xstrdup(path);
    const char *dir = dirname(copy);
    int r = mkdir_p(dir);
    if (r < 0)
        return sl_error_make(err, -r, "create %s: %s", dir, strerror(-r));
    _cleanup_free_ char *tmp = sl_xasprintf("%s.XXXXXX", path);
    _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return sl_error_make(err, errno, "create temp file for %s: %s", path, strerror(errno));
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            r = sl_error_make(err, errno ? errno : EIO, "write %s: %s", tmp, strerror(errno));
            unlink(tmp);
            return r;
        }
        off += (size_t)w;
    }
    if (fchmod(fd, mode) < 0 || fsync(fd) < 0 || rename(tmp, path) < 0) {
        r = sl_error_make(err, errno, "replace %s: %s", path, strerror(errno));
        unlink(tmp);
        return r;
    }
    return 0;
}

static int run(bool install, int argc, char **argv)
{
    const struct sl_cmd *cmd = install ? &install_cmd : &uninstall_cmd;
    struct install_config cfg = {0};
    int argi = 0;
    int r = sl_cli_parse(cmd, &cfg, &cfg.common, argc, argv, &argi);
    if (r != 0) {
        sl_config_free(cmd, &cfg);
        return r > 0 ? 0 : 2;
    }
    const char *verb = install ? "install" : "uninstall";
    const char *path = cfg.containerd_config && *cfg.containerd_config ? cfg.containerd_config
                       : cfg.k3s                                       ? DEFAULT_K3S_TEMPLATE
                                                                       : DEFAULT_CONTAINERD_CONFIG;
    _cleanup_error_ sl_error_t err = NULL;
    _cleanup_free_ char *old = NULL;
    _cleanup_free_ char *out = NULL;
    _cleanup_free_ char *note = NULL;
    size_t oldlen = 0, outlen = 0;
    bool changed = false;
    int code = 0;

    r = read_all(path, &old, &oldlen, &err);
    if (r < 0)
        goto fail;
    struct stat st;
    mode_t mode = old && stat(path, &st) == 0 ? (st.st_mode & 07777) : 0644;
    if (install) {
        struct sl_install_opts o = {.socket = cfg.socket, .k3s = cfg.k3s};
        r = sl_install_edit(old, oldlen, &o, &out, &outlen, &changed, &note, &err);
    } else if (old) {
        r = sl_uninstall_edit(old, oldlen, cfg.k3s, &out, &outlen, &changed, &err);
    }
    if (r < 0) {
        sl_error_wrap(&err, r, "%s", path);
        goto fail;
    }
    if (note)
        log_warn("%s: %s", path, note);
    if (!changed) {
        printf("%s: unchanged (%s)\n", path,
               install ? "Starlight is already configured"
                       : (old ? "nothing added by install" : "no such file"));
        goto out;
    }
    bool remove = !install && outlen == 0;
    if (cfg.dry_run) {
        printf("--- %s\n+++ %s (after %s)\n", old ? path : "/dev/null", remove ? "/dev/null" : path,
               verb);
        sl_toml_diff(stdout, old ? old : "", oldlen, out, outlen);
        goto out;
    }
    if (old) {
        _cleanup_free_ char *bak = sl_xasprintf("%s" BACKUP_SUFFIX, path);
        if ((r = write_atomic(bak, old, oldlen, mode, &err)) < 0)
            goto fail;
    }
    if (remove) {
        if (unlink(path) < 0) {
            r = sl_error_make(&err, errno, "remove %s: %s", path, strerror(errno));
            goto fail;
        }
        printf("%s: removed (install had created it)\n", path);
        goto out;
    }
    if ((r = write_atomic(path, out, outlen, mode, &err)) < 0)
        goto fail;
    printf("%s: %s%s\n", path, install ? (old ? "updated" : "created") : "restored",
           old ? " (previous version in " BACKUP_SUFFIX ")" : "");
    if (install)
        printf("restart containerd%s to load the Starlight snapshotter\n",
               cfg.k3s ? " (k3s: restart k3s or k3s-agent)" : "");
    goto out;
fail:
    code = sl_cli_fail(&err, r, verb);
out:
    sl_config_free(cmd, &cfg);
    return code;
}

int sl_cmd_install(int argc, char **argv)
{
    return run(true, argc, argv);
}

int sl_cmd_uninstall(int argc, char **argv)
{
    return run(false, argc, argv);
}
