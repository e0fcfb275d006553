/* delta.h — the wire format of a delta response (docs/protocol.md §3), versions 1 and 2.
 *
 * A delta body is a 32-byte prelude, a JSON header, then the payload:
 *
 *     0   8  magic "SLDELTA\n"
 *     8   4  format version, big-endian (SL_DELTA_VERSION)
 *     12  4  reserved, must be 0
 *     16  8  header length H in bytes, big-endian
 *     24  8  payload length P in bytes, big-endian
 *     32  H  header: compact UTF-8 JSON (struct sl_delta_header below)
 *     32+H P payload: the contents' gzip members, copied verbatim from the layer blobs
 *
 * Version 2 is the same but the header is one gzip member of the version-1 JSON with
 * "version": 2 and without layers[].files (derivable from the TOC tails and the contents).
 *
 * The proxy fills a struct sl_delta_header and encodes it (sl_delta_header_encode: prelude +
 * JSON, deterministic bytes for equal input); the worker decodes it (sl_delta_prelude_parse,
 * then sl_delta_header_decode). Every field is explicit: there is no zero-as-absent value,
 * optional values are JSON null, enums are strings, and the decoder rejects unknown or missing
 * keys, inconsistent offsets, bad digests and manifests or configs whose bytes do not hash to
 * their digests. The decoder treats its input as hostile (caps on sizes and counts).
 *
 * Ownership: a decoded header owns all its memory (sl_delta_header_free). For encoding the
 * caller owns the struct it fills; the encoder only reads it. No global state: thread-safe. */
#ifndef SL_DELTA_DELTA_H
#define SL_DELTA_DELTA_H

#include "cleanup.h"
#include "digest.h"
#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_DELTA_MAGIC        "SLDELTA\n"
#define SL_DELTA_VERSION      1u /* the uncompressed JSON header */
#define SL_DELTA_VERSION_2    2u /* gzip header JSON without layers[].files (docs/protocol.md §3) */
#define SL_DELTA_PRELUDE_SIZE 32
/* Media types of the answer (Content-Type); a worker asks for version 2 with Accept. */
#define SL_DELTA_MEDIA_TYPE_V1 "application/vnd.starlight.delta.v1"
#define SL_DELTA_MEDIA_TYPE_V2 "application/vnd.starlight.delta.v2"
#define SL_DELTA_MAX_HEADER    (256u << 20) /* header JSON bytes */
#define SL_DELTA_MAX_LAYERS    4096
#define SL_DELTA_MAX_ITEMS     (4u << 20)  /* files, contents or chunks in one header */
#define SL_DELTA_MAX_BLOB      (64u << 20) /* manifest, config or TOC tail bytes */
#define SL_DELTA_MAX_STRING    4096

/* A chunk of a content: bytes [blob_offset, blob_offset + compressed_size) of the layer blob
 * are one gzip member (possibly followed by surplus for blobs from other tools) inflating to
 * the file bytes [chunk_offset, chunk_offset + size) whose sha256 is `digest`. In the payload
 * they sit at payload_offset. */
struct sl_delta_chunk {
    uint64_t blob_offset;
    uint64_t compressed_size;
    uint64_t chunk_offset;
    uint64_t size;
    char digest[SL_DIGEST_STR_LEN];
    uint64_t payload_offset;
};

/* One file content (by digest) the payload carries, once, read from target layer `layer`. */
struct sl_delta_content {
    char digest[SL_DIGEST_STR_LEN];
    uint64_t size;  /* uncompressed bytes of the file */
    uint32_t layer; /* stack index of the target layer the chunks are read from */
    bool traced;    /* ordered by trace rank (else by layer and TOC order) */
    uint64_t payload_offset;
    uint64_t payload_length; /* sum of the chunks' compressed sizes */
    struct sl_delta_chunk *chunks;
    size_t n_chunks;
};

enum sl_delta_file_source {
    SL_DELTA_FILE_PAYLOAD, /* bytes in the payload, content `content` */
    SL_DELTA_FILE_HELD,    /* the worker already holds a file with this digest */
    SL_DELTA_FILE_EMPTY,   /* zero-length file: nothing to fetch */
};

/* A regular file of a layer the worker lacks: where its bytes come from. */
struct sl_delta_file {
    char *path; /* normalised TOC name (docs/format.md) */
    char digest[SL_DIGEST_STR_LEN];
    uint64_t size;
    enum sl_delta_file_source source;
    uint32_t content; /* index into contents; meaningful only for SL_DELTA_FILE_PAYLOAD */
};

/* A layer of the target image, in stack order (index 0 = bottom). */
struct sl_delta_hlayer {
    char digest[SL_DIGEST_STR_LEN]; /* compressed blob digest */
    uint64_t size;                  /* blob bytes */
    char diff_id[SL_DIGEST_STR_LEN];
    char toc_digest[SL_DIGEST_STR_LEN];
    bool held; /* the worker holds this layer: no TOC and no files listed */
    /* Layers not held: the blob's bytes [toc_offset, size) verbatim (TOC gzip member and
     * footer), so the worker rebuilds the tree with sl_toc_load and checks its digest. */
    uint64_t toc_offset;
    uint8_t *toc_tail;
    size_t toc_tail_len;
    struct sl_delta_file *files; /* every regular file, TOC order */
    size_t n_files;
};

struct sl_delta_header {
    /* Encoding: the format to write (0 or 1: version 1; 2: version 2, the files are validated
     * but not written). Decoding: the version read. A version-2 header decodes with no files
     * (n_files 0 in every layer): the worker derives them from each layer's TOC, the contents
     * and the held set (docs/protocol.md §3), and checks that every content has a file. */
    uint32_t version;
    char *reference;  /* the target as requested, normalised ("host/repo:tag" or "@digest") */
    char *repository; /* "host/path" */
    char *platform;   /* "os/arch[/variant]" */
    char digest[SL_DIGEST_STR_LEN]; /* manifest digest = sha256(manifest) */
    char *media_type;               /* manifest media type */
    uint8_t *manifest;              /* bytes exactly as the registry served them */
    size_t manifest_len;
    char config_digest[SL_DIGEST_STR_LEN]; /* = sha256(config) */
    uint8_t *config;
    size_t config_len;
    char **held_images; /* manifest digests the proxy treated as held, sorted */
    size_t n_held_images;
    char **held_layers; /* layer digests the worker declared or that came with held images */
    size_t n_held_layers;
    struct sl_delta_hlayer *layers;
    size_t n_layers;
    struct sl_delta_content *contents; /* payload order */
    size_t n_contents;
    uint64_t payload_length;
};

/* Encodes prelude + header JSON into a new buffer (*ret, *ret_len; caller frees). Validates
 * the struct like the decoder would (-EINVAL with the field named), so a proxy bug cannot
 * produce a stream its workers reject. */
int sl_delta_header_encode(const struct sl_delta_header *h, uint8_t **ret, size_t *ret_len,
                           sl_error_t *err);

/* Parses the 32-byte prelude. Returns 0 and the header and payload lengths, -EINVAL (bad magic,
 * reserved bits), -EPROTONOSUPPORT (other version) or -EFBIG (header over the cap).
 * sl_delta_prelude_parse accepts version 1 only; sl_delta_prelude_parse_v accepts 1 and 2 and
 * returns the version in *ret_version. */
int sl_delta_prelude_parse(const void *p, size_t len, uint64_t *ret_header_len,
                           uint64_t *ret_payload_len, sl_error_t *err);
int sl_delta_prelude_parse_v(const void *p, size_t len, uint64_t *ret_header_len,
                             uint64_t *ret_payload_len, uint32_t *ret_version, sl_error_t *err);

/* Decodes and validates header JSON (`len` bytes, the H bytes after the prelude). On success
 * *ret is a new header (caller frees with sl_delta_header_free). -EINVAL on anything
 * malformed or inconsistent (the error names the JSON path), -EFBIG on limits, -EBADMSG when
 * the manifest or config bytes do not match their digests. */
int sl_delta_header_decode(const char *json, size_t len, struct sl_delta_header **ret,
                           sl_error_t *err);

/* Decodes the H header bytes of a delta of format `version` (from the prelude): 1 as above; 2
 * inflates one gzip member (at most SL_DELTA_MAX_HEADER bytes, nothing after it) and decodes
 * the JSON, whose "version" must be 2 and whose layers carry no "files". */
int sl_delta_header_decode_v(const void *data, size_t len, uint32_t version,
                             struct sl_delta_header **ret, sl_error_t *err);

/* Decodes a whole head (prelude + header) of version 1 or 2; *ret_head_len is 32 + H. The
 * payload length from the prelude must equal the header's. */
int sl_delta_head_decode(const void *p, size_t len, struct sl_delta_header **ret,
                         size_t *ret_head_len, sl_error_t *err);

/* Frees a header (NULL is fine), including every string and array it points at. Use for
 * decoded headers, and for encoder-side headers built entirely with malloc'd members. */
void sl_delta_header_free(struct sl_delta_header *h);
SL_DEFINE_CLEANUP(struct sl_delta_header, sl_delta_header_free)
#define _cleanup_delta_header_ _cleanup_(sl_delta_header_freep)

const char *sl_delta_file_source_name(enum sl_delta_file_source s);

#endif
