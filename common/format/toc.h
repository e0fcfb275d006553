/* toc.h — reading Starlight / eStargz layer blobs: footer, TOC index, chunks.
 *
 * A blob is a concatenation of gzip members (docs/format.md). Its last 51 bytes (47 for the
 * legacy stargz footer) point at the member holding the tar entry `stargz.index.json`, the
 * TOC. sl_toc_load() reads footer and TOC through a read-at callback (pread on a file, an HTTP
 * Range read later), validates every field against the blob and builds an index: names
 * normalised, implicit parent directories synthesized, chunk lists per regular file,
 * hardlinks resolved, link counts computed (the original's `initFields`).
 *
 * Everything read here is hostile: the TOC is capped (SL_TOC_MAX_JSON bytes,
 * SL_TOC_MAX_ENTRIES entries), offsets must lie inside the blob and before the TOC, chunk
 * lists must tile their file exactly, digests must be well-formed. Duplicate names follow tar
 * extraction: the later entry wins (a directory seen twice keeps its children and takes the
 * later metadata; a directory with children replaced by a non-directory is rejected).
 *
 * Errors: -EINVAL malformed or inconsistent TOC/footer, -EFBIG limits exceeded, -EBADMSG digest
 * mismatch or corrupt compressed data, -EIO (or the callback's class) on read failures.
 * Thread-safety: a loaded struct sl_toc is immutable and may be read from any thread; the
 * functions keep no global state. */
#ifndef SL_FORMAT_TOC_H
#define SL_FORMAT_TOC_H

#include "cleanup.h"
#include "digest.h"
#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_TOC_TAR_NAME           "stargz.index.json"
#define SL_TOC_FOOTER_SIZE        51           /* eStargz footer */
#define SL_TOC_LEGACY_FOOTER_SIZE 47           /* stargz footer */
#define SL_TOC_MAX_JSON           (64u << 20)  /* uncompressed TOC JSON bytes */
#define SL_TOC_MAX_ENTRIES        (1u << 21)   /* TOC entries, chunks included */
#define SL_TOC_MAX_CHUNK          (256u << 20) /* uncompressed bytes of one chunk */
#define SL_TOC_MAX_NAME           4096         /* bytes of a name or link target */
#define SL_TOC_MAX_XATTR_VALUE    (64u << 10)

/* Reads exactly `len` bytes at `off` into buf. Returns 0, or a negative errno (and *err) on
 * failure; a short read is a failure. Called from the loading thread only. */
typedef int (*sl_toc_read_at_fn)(void *ud, void *buf, size_t len, uint64_t off, sl_error_t *err);

/* A read-at callback over a file descriptor: `ud` points at an int fd. */
int sl_toc_pread_fd(void *ud, void *buf, size_t len, uint64_t off, sl_error_t *err);

enum sl_toc_type {
    SL_TOC_DIR,
    SL_TOC_REG,
    SL_TOC_SYMLINK,
    SL_TOC_HARDLINK,
    SL_TOC_CHAR,
    SL_TOC_BLOCK,
    SL_TOC_FIFO,
};

/* One chunk of a regular file: the gzip member at [offset, offset+compressed_size) of the blob
 * inflates to (at least) `size` bytes, the file's bytes [chunk_offset, chunk_offset+size). */
struct sl_toc_chunk {
    uint64_t offset;
    uint64_t compressed_size; /* from `compressedSize`, or derived from the next member */
    uint64_t chunk_offset;
    uint64_t size;
    bool compressed_size_derived;
    char digest[SL_DIGEST_STR_LEN]; /* chunkDigest, always present */
};

struct sl_toc_xattr {
    const char *name;
    const uint8_t *value; /* decoded bytes */
    size_t len;
};

struct sl_toc_entry {
    const char *name; /* normalised: no leading "/" or "./", root is "" */
    const char *base; /* last component ("" for the root) */
    enum sl_toc_type type;
    uint64_t size; /* regular files: logical size; 0 otherwise */
    int64_t mtime; /* seconds since the epoch (0 when absent) */
    uint32_t mode; /* permission bits with setuid/setgid/sticky (07777) */
    uint32_t uid, gid;
    const char *user_name;  /* NULL when unknown (back-filled from the first uid occurrence) */
    const char *group_name; /* likewise */
    const char *link_name;  /* symlink target verbatim; hardlink target normalised; else NULL */
    uint32_t dev_major, dev_minor;
    uint32_t num_link; /* dirs: 2 + subdirs; regs: 1 + hardlinks to it */
    bool has_digest;
    char digest[SL_DIGEST_STR_LEN]; /* regular files: sha256 of the content */
    bool synthesized;               /* implicit parent directory not listed in the TOC */
    const struct sl_toc_xattr *xattrs;
    size_t n_xattrs;
    const struct sl_toc_chunk *chunks; /* regular files: chunks in file order */
    size_t n_chunks;
    const struct sl_toc_entry *parent; /* NULL for the root */
    const struct sl_toc_entry *link;   /* hardlinks: the resolved target (never a hardlink) */
    const struct sl_toc_entry *const *children; /* dirs: sorted by base name (strcmp) */
    size_t n_children;
};

struct sl_toc;

/* Parses a footer. `tail` holds the last `len` bytes of the blob (len >= 51 recommended; 47 is
 * enough for the legacy form). Accepts the 51-byte eStargz footer and the 47-byte legacy
 * stargz footer. On success stores the TOC member offset and the footer length. */
int sl_toc_parse_footer(const void *tail, size_t len, uint64_t *ret_toc_offset,
                        size_t *ret_footer_size, sl_error_t *err);

/* Writes the 51-byte eStargz footer pointing at `toc_offset` into out. */
void sl_toc_make_footer(uint64_t toc_offset, uint8_t out[SL_TOC_FOOTER_SIZE]);

/* Parses and validates TOC JSON (`len` bytes) for a blob whose TOC member starts at
 * `toc_offset` (chunk members must end at or before it). Returns the index in *ret (caller
 * frees with sl_toc_free). The TOC digest of the result is sha256(json). */
int sl_toc_parse_json(const char *json, size_t len, uint64_t toc_offset, struct sl_toc **ret,
                      sl_error_t *err);

/* Reads footer and TOC of a blob of `blob_size` bytes and parses it as above. When
 * `expected_toc_digest` is non-NULL the TOC JSON must hash to it (-EBADMSG otherwise). */
int sl_toc_load(sl_toc_read_at_fn read_at, void *ud, uint64_t blob_size,
                const char *expected_toc_digest, struct sl_toc **ret, sl_error_t *err);

/* Frees an index (NULL is fine). */
void sl_toc_free(struct sl_toc *toc);
SL_DEFINE_CLEANUP(struct sl_toc, sl_toc_free)
#define _cleanup_toc_ _cleanup_(sl_toc_freep)

/* "sha256:..." of the TOC JSON bytes. */
const char *sl_toc_digest(const struct sl_toc *toc);
/* Blob offset of the TOC member. */
uint64_t sl_toc_offset(const struct sl_toc *toc);
const struct sl_toc_entry *sl_toc_root(const struct sl_toc *toc);
/* Entries in TOC order (root first, synthesized parents before their first child; entries
 * superseded by a later duplicate are not listed). */
size_t sl_toc_count(const struct sl_toc *toc);
const struct sl_toc_entry *sl_toc_entry_at(const struct sl_toc *toc, size_t i);
/* Looks up a path (normalised first, so "/a/./b" finds "a/b"). NULL when absent or invalid. */
const struct sl_toc_entry *sl_toc_find(const struct sl_toc *toc, const char *path);
/* Counters. */
size_t sl_toc_regular_files(const struct sl_toc *toc);
size_t sl_toc_chunks(const struct sl_toc *toc);

/* Normalises a tar path: drops leading "/" and "./", empty and "." components, resolves "..".
 * Writes the result (at most strlen(path) bytes + NUL) to out. Returns 0, or -EINVAL when ".."
 * would leave the root. "" is the root. */
int sl_toc_path_normalize(const char *path, char *out);

/* Inflates one chunk's gzip member bytes (`comp`, `comp_len`; for blobs written by other tools
 * the range may hold more than the chunk, the surplus is ignored) into out (chunk->size bytes)
 * and checks chunkDigest. Returns 0, -EBADMSG on corrupt data or digest mismatch. */
int sl_toc_chunk_decode(const void *comp, size_t comp_len, const struct sl_toc_chunk *chunk,
                        void *out, sl_error_t *err);

/* Reads the member of `chunk` through read_at and decodes it as above. */
int sl_toc_read_chunk(sl_toc_read_at_fn read_at, void *ud, const struct sl_toc_chunk *chunk,
                      void *out, sl_error_t *err);

const char *sl_toc_type_name(enum sl_toc_type t);

#endif
