/* fuzz-format-convert: the layer converter (sl_format_convert, common/format/format.h) over
 * hostile registry layers — tar, gzip- or zstd-compressed tar, as a registry serves them —
 * read through libarchive, written as a Starlight blob.
 *
 * Input: the layer bytes (through a memfd). One compression thread, 512-byte chunks, level 1.
 * Invariants (abort on violation): a failure carries a message; a converted blob has the size
 * the result reports, and its footer and TOC load back (sl_toc_load) with the TOC digest the
 * result reports and one listed (not synthesized) TOC entry per copied entry at most. */
#include "format.h"
#include "toc.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int in_fd = -1, out_fd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (in_fd < 0) {
        in_fd = memfd_create("layer-in", MFD_CLOEXEC);
        out_fd = memfd_create("layer-out", MFD_CLOEXEC);
        if (in_fd < 0 || out_fd < 0)
            abort();
    }
    if (ftruncate(in_fd, 0) < 0 || ftruncate(out_fd, 0) < 0 ||
        pwrite(in_fd, data, size, 0) != (ssize_t)size || lseek(in_fd, 0, SEEK_SET) != 0 ||
        lseek(out_fd, 0, SEEK_SET) != 0)
        abort();
    struct sl_format_options o = {.chunk_size = SL_FORMAT_MIN_CHUNK_SIZE, .level = 1, .threads = 1};
    struct sl_format_result res;
    sl_error_t err = NULL;
    int r = sl_format_convert(in_fd, out_fd, &o, &res, &err);
    if (r < 0) {
        if (!err)
            abort();
        sl_error_free(&err);
        return 0;
    }
    struct stat st;
    if (fstat(out_fd, &st) < 0 || (uint64_t)st.st_size != res.blob_size)
        abort();
    struct sl_toc *toc = NULL;
    if (sl_toc_load(sl_toc_pread_fd, &out_fd, res.blob_size, res.toc_digest, &toc, &err) < 0)
        abort();
    size_t listed = 0; /* entries not synthesized (implicit parents and the root are) */
    for (size_t i = 0; i < sl_toc_count(toc); i++)
        listed += !sl_toc_entry_at(toc, i)->synthesized;
    if (listed > res.entries)
        abort();
    sl_toc_free(toc);
    return 0;
}
