# common/format: converter round trips, TOC reader validation.
sl_add_unit_test(test-writer
  SOURCES common/format/test-writer.c common/format/fmt-test.c
  LIBS sl_format PkgConfig::ARCHIVE PkgConfig::ZLIB Threads::Threads)
sl_add_unit_test(test-toc
  SOURCES common/format/test-toc.c common/format/fmt-test.c
  LIBS sl_format PkgConfig::ARCHIVE PkgConfig::ZLIB)
sl_add_unit_test(test-writer-threads
  SOURCES common/format/test-writer-threads.c common/format/fmt-test.c
  LIBS sl_format PkgConfig::ARCHIVE PkgConfig::ZLIB Threads::Threads)
