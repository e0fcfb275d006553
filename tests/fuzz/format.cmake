# Parsers of layer bytes: footer, TOC member and TOC JSON (hostile registry data).
sl_add_fuzzer(fuzz-toc format/fuzz-toc.c LIBS sl_format)
# One chunk's gzip member (truncated, concatenated garbage, size and digest lies).
sl_add_fuzzer(fuzz-chunk-decode format/fuzz-chunk-decode.c LIBS sl_format)
# The layer converter over hostile registry layers (tar / gzip / zstd through libarchive): what
# starlight-proxy runs on every layer it converts.
sl_add_fuzzer(fuzz-format-convert format/fuzz-format-convert.c LIBS sl_format)
