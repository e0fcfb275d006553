/* sl-readbench: read throughput of a directory tree, for the read-path benchmark
 * (bench/readpath.sh runs it inside a container, bind-mounted, statically linked).
 *
 *   sl-readbench [--random N] [--block BYTES] [--seed S] [--drop] PATH...
 *
 * Collects the regular files under each PATH (not following symlinks, not crossing into
 * /proc, /sys or /dev), then
 *   sequential: reads every file from start to end with BYTES-sized read() calls (default
 *               128 KiB), in path order;
 *   random:     N (default 20000) pread() calls of 4 KiB at offsets drawn uniformly over the
 *               concatenation of the largest files (at most 512, all open at once: a
 *               container's open-file limit is 1024), with a fixed-seed xorshift generator
 *               (the same offsets on every run and every file system), aligned to 4 KiB;
 *               with --drop, the page cache of those files is dropped first
 *               (posix_fadvise DONTNEED: unprivileged, per file), so that the reads after a
 *               cold start miss the cache instead of hitting what the sequential pass loaded.
 * Prints key=value lines: files, bytes, seq_seconds, seq_mbps, rand_ops, rand_seconds,
 * rand_iops, rand_mbps, checksum (a sum over the bytes read, so that the same tree gives the
 * same value on every file system), then root_fs and root_lowerdir: the file system type and
 * the lowerdir option of the mount at / (from /proc/self/mountinfo; "-" when unknown), so the
 * caller can tell which directories a container's overlay read from. Exit 1 on any error. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct file {
    char *path;
    uint64_t size;
    uint64_t start; /* offset of the file in the concatenation */
};

static struct file *files;
static size_t nfiles, capfiles;
static uint64_t total;

static void die(const char *what, const char *path)
{
    fprintf(stderr, "sl-readbench: %s %s: %s\n", what, path ? path : "", strerror(errno));
    exit(1);
}

static int collect(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type == FTW_D &&
        (strcmp(path, "/proc") == 0 || strcmp(path, "/sys") == 0 || strcmp(path, "/dev") == 0))
        return FTW_SKIP_SUBTREE;
    if (type != FTW_F || !S_ISREG(st->st_mode) || st->st_size == 0)
        return FTW_CONTINUE;
    if (nfiles == capfiles) {
        capfiles = capfiles ? capfiles * 2 : 1024;
        files = realloc(files, capfiles * sizeof *files);
        if (!files)
            die("out of memory", NULL);
    }
    files[nfiles].path = strdup(path);
    if (!files[nfiles].path)
        die("out of memory", NULL);
    files[nfiles].size = (uint64_t)st->st_size;
    files[nfiles].start = total;
    total += (uint64_t)st->st_size;
    nfiles++;
    return FTW_CONTINUE;
}

static int by_path(const void *a, const void *b)
{
    return strcmp(((const struct file *)a)->path, ((const struct file *)b)->path);
}

static int by_size_desc(const void *a, const void *b)
{
    uint64_t x = ((const struct file *)a)->size, y = ((const struct file *)b)->size;
    if (x != y)
        return x < y ? 1 : -1;
    return by_path(a, b);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint64_t sum_bytes(const unsigned char *b, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += b[i];
    return s;
}

/* Prints root_fs= and root_lowerdir= of the last mount at / in /proc/self/mountinfo. */
static void print_root_mount(void)
{
    char fs[64] = "-", *lower = NULL, *line = NULL;
    size_t cap = 0;
    FILE *f = fopen("/proc/self/mountinfo", "re");
    while (f && getline(&line, &cap, f) > 0) {
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS */
        char *save = NULL, *tok = strtok_r(line, " \n", &save);
        int field = 0;
        bool at_root = false, after_dash = false;
        int after = 0;
        char *type = NULL, *super = NULL;
        for (; tok; tok = strtok_r(NULL, " \n", &save), field++) {
            if (field == 4)
                at_root = strcmp(tok, "/") == 0;
            else if (field > 5 && !after_dash && strcmp(tok, "-") == 0)
                after_dash = true;
            else if (after_dash && ++after == 1)
                type = tok;
            else if (after_dash && after == 3)
                super = tok;
        }
        if (!at_root || !type)
            continue;
        snprintf(fs, sizeof fs, "%s", type);
        free(lower);
        lower = NULL;
        const char *l = super ? strstr(super, "lowerdir=") : NULL;
        if (l && (l == super || l[-1] == ','))
            lower = strndup(l + 9, strcspn(l + 9, ","));
    }
    if (f)
        fclose(f);
    free(line);
    printf("root_fs=%s\nroot_lowerdir=%s\n", fs, lower ? lower : "-");
    free(lower);
}

int main(int argc, char **argv)
{
    long ops = 20000;
    size_t block = 128 * 1024;
    uint64_t seed = 0x5eed5eed5eedULL;
    bool drop = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: sl-readbench [--random N] [--block BYTES] [--seed S] [--drop] PATH...\n"
                   "Sequential and random (4 KiB) read throughput of the files under PATH.\n"
                   "--drop: drop the page cache of the random phase's files before it.\n");
            return 0;
        } else if (i + 1 < argc && strcmp(argv[i], "--random") == 0) {
            ops = strtol(argv[++i], NULL, 10);
        } else if (i + 1 < argc && strcmp(argv[i], "--block") == 0) {
            block = (size_t)strtoull(argv[++i], NULL, 10);
        } else if (i + 1 < argc && strcmp(argv[i], "--seed") == 0) {
            seed = strtoull(argv[++i], NULL, 10) | 1;
        } else if (strcmp(argv[i], "--drop") == 0) {
            drop = true;
        } else {
            fprintf(stderr, "sl-readbench: unknown option %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (i >= argc || ops < 0 || block == 0 || block > (64u << 20)) {
        fprintf(stderr,
                "usage: sl-readbench [--random N] [--block BYTES] [--seed S] [--drop] PATH...\n");
        return 2;
    }
    for (; i < argc; i++)
        if (nftw(argv[i], collect, 64, FTW_PHYS | FTW_ACTIONRETVAL) != 0)
            die("walk", argv[i]);
    if (nfiles == 0 || total < 4096) {
        fprintf(stderr, "sl-readbench: no data under the given paths\n");
        return 1;
    }
    qsort(files, nfiles, sizeof *files, by_path);
    total = 0;
    for (size_t f = 0; f < nfiles; f++) {
        files[f].start = total;
        total += files[f].size;
    }
    unsigned char *buf = malloc(block < 4096 ? 4096 : block);
    if (!buf)
        die("out of memory", NULL);

    uint64_t check = 0, got = 0;
    double t0 = now();
    for (size_t f = 0; f < nfiles; f++) {
        int fd = open(files[f].path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            die("open", files[f].path);
        for (;;) {
            ssize_t n = read(fd, buf, block);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                die("read", files[f].path);
            if (n == 0)
                break;
            check += sum_bytes(buf, (size_t)n);
            got += (uint64_t)n;
        }
        close(fd);
    }
    double seq = now() - t0;

    /* random: the largest files, all open */
    qsort(files, nfiles, sizeof *files, by_size_desc);
    size_t nopen = nfiles < 512 ? nfiles : 512;
    uint64_t rtotal = 0;
    for (size_t f = 0; f < nopen; f++) {
        files[f].start = rtotal;
        rtotal += files[f].size;
    }
    int *fds = malloc(nopen * sizeof *fds);
    if (!fds)
        die("out of memory", NULL);
    for (size_t f = 0; f < nopen; f++) {
        fds[f] = open(files[f].path, O_RDONLY | O_CLOEXEC);
        if (fds[f] < 0)
            die("open", files[f].path);
        int e = drop ? posix_fadvise(fds[f], 0, 0, POSIX_FADV_DONTNEED) : 0;
        if (e != 0) {
            errno = e;
            die("posix_fadvise", files[f].path);
        }
    }
    uint64_t rbytes = 0;
    t0 = now();
    for (long k = 0; k < ops; k++) {
        uint64_t off = (xorshift(&seed) % rtotal) & ~(uint64_t)4095;
        size_t lo = 0, hi = nopen; /* the file holding off: last start <= off */
        while (hi - lo > 1) {
            size_t mid = (lo + hi) / 2;
            if (files[mid].start <= off)
                lo = mid;
            else
                hi = mid;
        }
        ssize_t n = pread(fds[lo], buf, 4096, (off_t)(off - files[lo].start));
        if (n < 0)
            die("pread", files[lo].path);
        check += sum_bytes(buf, (size_t)n);
        rbytes += (uint64_t)n;
    }
    double rnd = now() - t0;
    for (size_t f = 0; f < nopen; f++)
        close(fds[f]);

    printf("files=%zu\nbytes=%" PRIu64 "\nseq_seconds=%.4f\nseq_mbps=%.1f\nrand_files=%zu\n",
           nfiles, got, seq, seq > 0 ? (double)got / seq / 1e6 : 0.0, nopen);
    printf("rand_ops=%ld\nrand_seconds=%.4f\nrand_iops=%.0f\nrand_mbps=%.1f\nchecksum=%" PRIu64
           "\n",
           ops, rnd, rnd > 0 ? (double)ops / rnd : 0.0, rnd > 0 ? (double)rbytes / rnd / 1e6 : 0.0,
           check);
    print_root_mount();
    return got == total ? 0 : 1;
}
