# containerd's config.toml as ctr-starlight install|uninstall edits it (cli/tomledit.h).
if(TARGET sl_cli_tomledit)
  sl_add_fuzzer(fuzz-containerd-config cli/fuzz-containerd-config.c LIBS sl_cli_tomledit)
endif()
