#include "fmt-test.h"
#include "format.h"

#include <archive.h>
#include <archive_entry.h>
#include <zlib.h>

#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void fmt_fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        /* half the bytes compressible, half not */
        p[i] = (i / 4096) % 2 ? (uint8_t)x : (uint8_t)('a' + (i % 7));
    }
}

int fmt_memfd(const void *data, size_t len)
{
    int fd = memfd_create("fmt-test", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (len && write(fd, data, len) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    lseek(fd, 0, SEEK_SET);
    return fd;
}

int fmt_build_tar(const struct fmt_spec *specs, size_t n, enum fmt_compress c)
{
    int fd = memfd_create("fmt-tar", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    /* libarchive's writer converts names through the locale; the converter itself does not
     * depend on it (it reads the UTF-8 forms). */
    setlocale(LC_ALL, "C.UTF-8");
    struct archive *a = archive_write_new();
    archive_write_set_format_pax(a);
    if (c == FMT_GZIP)
        archive_write_add_filter_gzip(a);
    else if (c == FMT_ZSTD)
        archive_write_add_filter_zstd(a);
    if (archive_write_open_fd(a, fd) != ARCHIVE_OK)
        abort();
    for (size_t i = 0; i < n; i++) {
        const struct fmt_spec *s = &specs[i];
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname_utf8(e, s->name);
        archive_entry_set_perm(e, s->mode ? s->mode : (s->type == '5' ? 0755 : 0644));
        archive_entry_set_uid(e, s->uid);
        archive_entry_set_gid(e, s->gid);
        if (s->uname)
            archive_entry_set_uname_utf8(e, s->uname);
        if (s->gname)
            archive_entry_set_gname_utf8(e, s->gname);
        archive_entry_set_mtime(e, s->mtime ? s->mtime : 1700000000, s->mtime_nsec);
        if (s->xattr)
            archive_entry_xattr_add_entry(e, s->xattr, s->xattr_value, strlen(s->xattr_value));
        uint8_t *buf = NULL;
        size_t len = 0;
        switch (s->type) {
        case '0':
            archive_entry_set_filetype(e, AE_IFREG);
            len = s->len;
            buf = malloc(len ? len : 1);
            if (s->data)
                memcpy(buf, s->data, len);
            else
                fmt_fill(buf, len, (uint32_t)i);
            archive_entry_set_size(e, (la_int64_t)len);
            break;
        case '1':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink_utf8(e, s->link);
            archive_entry_set_size(e, 0);
            break;
        case '2':
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink_utf8(e, s->link);
            break;
        case '3':
        case '4':
            archive_entry_set_filetype(e, s->type == '3' ? AE_IFCHR : AE_IFBLK);
            archive_entry_set_rdevmajor(e, s->devmajor);
            archive_entry_set_rdevminor(e, s->devminor);
            break;
        case '5':
            archive_entry_set_filetype(e, AE_IFDIR);
            break;
        case '6':
            archive_entry_set_filetype(e, AE_IFIFO);
            break;
        default:
            abort();
        }
        if (archive_write_header(a, e) != ARCHIVE_OK)
            abort();
        if (len && archive_write_data(a, buf, len) != (la_ssize_t)len)
            abort();
        free(buf);
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

uint8_t *fmt_slurp(int fd, size_t *ret_len)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return NULL;
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    if (pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
        free(buf);
        return NULL;
    }
    *ret_len = (size_t)st.st_size;
    return buf;
}

uint8_t *fmt_gunzip(const uint8_t *in, size_t n, size_t *ret_len)
{
    z_stream zs = {0};
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
        return NULL;
    size_t cap = n * 4 + 4096, len = 0;
    uint8_t *out = malloc(cap);
    zs.next_in = (uint8_t *)in;
    zs.avail_in = (uInt)n;
    for (;;) {
        if (len == cap) {
            cap *= 2;
            out = realloc(out, cap);
        }
        zs.next_out = out + len;
        zs.avail_out = (uInt)(cap - len);
        int z = inflate(&zs, Z_NO_FLUSH);
        len = cap - zs.avail_out;
        if (z == Z_STREAM_END) {
            if (zs.avail_in == 0)
                break;
            inflateReset(&zs);
            continue;
        }
        if (z != Z_OK && !(z == Z_BUF_ERROR && zs.avail_out == 0)) {
            free(out);
            inflateEnd(&zs);
            return NULL;
        }
    }
    inflateEnd(&zs);
    *ret_len = len;
    return out;
}

int fmt_build_blob(const struct fmt_spec *specs, size_t n, uint64_t chunk_size)
{
    int tar = fmt_build_tar(specs, n, FMT_GZIP);
    if (tar < 0)
        return -1;
    int fd = memfd_create("blob", MFD_CLOEXEC);
    struct sl_format_options o = {.chunk_size = chunk_size, .threads = 1};
    struct sl_format_result res;
    sl_error_t err = NULL;
    int r = fd >= 0 ? sl_format_convert(tar, fd, &o, &res, &err) : -1;
    sl_error_free(&err);
    close(tar);
    if (r < 0 && fd >= 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}
