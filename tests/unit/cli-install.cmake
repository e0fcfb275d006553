# cli/tomledit.c: the containerd config edits of `ctr-starlight install|uninstall` on realistic
# files (containerd's default config, k3s's, comments, quoted keys, v3), idempotence, and the
# byte-identical uninstall round trip.
if(TARGET sl_cli_tomledit)
  sl_add_unit_test(test-cli-tomledit SOURCES cli/test-tomledit.c LIBS sl_cli_tomledit sl_base)
endif()
