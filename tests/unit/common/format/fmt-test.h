/* fmt-test.h — helpers shared by the format unit tests: build tars with libarchive's write
 * side, run conversions over memfds, inflate blobs. */
#ifndef SL_TESTS_FMT_TEST_H
#define SL_TESTS_FMT_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fmt_compress { FMT_NONE, FMT_GZIP, FMT_ZSTD };

struct fmt_spec {
    const char *name;
    char type; /* '0' reg, '1' hardlink, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo */
    unsigned mode;
    const char *link; /* symlink/hardlink target */
    const void *data; /* reg content (NULL: `len` pseudo-random bytes) */
    size_t len;
    const char *xattr; /* one xattr name, value xattr_value */
    const char *xattr_value;
    unsigned devmajor, devminor;
    int64_t mtime;
    long mtime_nsec;
    int64_t uid, gid;
    const char *uname, *gname;
};

/* Writes a PAX tar of the specs, compressed as asked, into a new memfd (offset 0). */
int fmt_build_tar(const struct fmt_spec *specs, size_t n, enum fmt_compress c);
/* A Starlight blob of the specs (gzip tar, converted with `chunk_size` by one thread) in a new
 * memfd; -1 when building or converting fails. */
int fmt_build_blob(const struct fmt_spec *specs, size_t n, uint64_t chunk_size);
/* A memfd holding `len` bytes. */
int fmt_memfd(const void *data, size_t len);
/* Reads a whole fd from offset 0 into a malloc'ed buffer. */
uint8_t *fmt_slurp(int fd, size_t *ret_len);
/* Inflates every gzip member of buf (zlib); NULL on error. */
uint8_t *fmt_gunzip(const uint8_t *buf, size_t len, size_t *ret_len);
/* Deterministic pseudo-random bytes. */
void fmt_fill(uint8_t *p, size_t n, uint32_t seed);

#endif
