# Parsers of layer bytes: footer, TOC member and TOC JSON (hostile registry data).
sl_add_fuzzer(fuzz-toc format/fuzz-toc.c LIBS sl_format)
