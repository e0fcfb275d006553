/* snapfs.h — directory helpers of the snapshotter (internal to daemonset/snapshotter).
 *
 * Walks use openat/fdopendir, never follow symlinks and never cross into another filesystem
 * (a mount inside a snapshot directory is left alone). Thread-safe: no shared state. */
#ifndef SL_DAEMON_SNAPFS_H
#define SL_DAEMON_SNAPFS_H

#include <stdint.h>

/* Disk usage of the tree at `path`: allocated bytes (st_blocks * 512) and inodes, each inode
 * counted once (hardlinks), the top directory included. Returns 0 or a negative errno. */
int sl_snapfs_usage(const char *path, int64_t *ret_size, int64_t *ret_inodes);

/* rm -rf `name` relative to the directory fd `dirfd` (AT_FDCWD for a path). Missing is fine.
 * Returns 0 or the first negative errno met (it keeps removing what it can). */
int sl_snapfs_rmtree(int dirfd, const char *name);

/* mkdir -p with `mode` for missing components. Returns 0 or a negative errno. */
int sl_snapfs_mkdir_p(const char *path, unsigned mode);

#endif
