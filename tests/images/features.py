#!/usr/bin/env python3
"""Layers of the `features` test image: every tar feature a layer reader must get right.

  python3 features.py OUTDIR    writes OUTDIR/{base,lower,upper}.tar

base   the busybox layer (byte-identical to the busybox image's layer)
lower  /data with files that the upper layer deletes, hides or replaces, plus hardlinks,
       symlinks, xattrs, an empty file, multi-chunk files, a char device, a fifo, owners/modes,
       long and non-ASCII names
upper  whiteouts (.wh.NAME for a file and a directory), an opaque directory (.wh..wh..opq),
       a replaced file, a hardlink pair across directories, and /check.sh which verifies the
       merged view inside a container and prints OK
"""
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oci  # noqa: E402

MIB = 1 << 20


def prng(seed, size):
    """Deterministic pseudo-random bytes (SHAKE-256 of a seed)."""
    return hashlib.shake_256(seed.encode()).digest(size)


LONG_NAME = "long-" + "n" * 150 + ".txt"


def lower(path):
    big = prng("starlight-c features big.bin", 9 * MIB)
    exact = prng("starlight-c features exact-4m.bin", 4 * MIB)
    L = oci.Layer(path)
    L.dir("data")
    L.file("data/deleted.txt", "deleted by a whiteout in the upper layer\n")
    L.dir("data/gone-dir")
    L.file("data/gone-dir/a.txt", "a whole directory removed by the upper layer\n")
    L.dir("data/gone-dir/sub")
    L.file("data/gone-dir/sub/b.txt", "b\n")
    L.dir("data/opaque")
    L.file("data/opaque/old1.txt", "hidden by the opaque directory above\n")
    L.dir("data/opaque/sub")
    L.file("data/opaque/sub/old2.txt", "hidden too\n")
    L.file("data/replaced.txt", "old content\n")
    L.file("data/empty", b"")
    L.file("data/big.bin", big)  # 9 MiB: three 4 MiB chunks, the last one partial
    L.file("data/exact-4m.bin", exact)  # exactly one chunk
    L.file("data/hardlink-a", "shared by two names\n", mode=0o640)
    L.hardlink("data/hardlink-b", "data/hardlink-a", mode=0o640)
    L.symlink("data/link-rel", "replaced.txt")
    L.symlink("data/link-abs", "/data/big.bin")
    L.symlink("data/link-dir", "opaque")
    L.symlink("data/link-dangling", "does-not-exist")
    L.file("data/xattr.txt", "carries user xattrs\n",
           xattrs={"user.starlight": b"test-value", "user.second": b"2"})
    L.chardev("data/chardev", 1, 3)
    L.fifo("data/fifo")
    L.file("data/owned.txt", "owned by 1000:1000, mode 0640\n", mode=0o640, uid=1000, gid=1000)
    L.dir("data/private", mode=0o700, uid=1000, gid=1000)
    L.file("data/setuid", "#!/bin/sh\necho setuid\n", mode=0o4755)
    L.dir("data/long")
    L.file("data/long/" + LONG_NAME, "a name longer than 100 bytes\n")
    L.file("data/unicode-\u00e9\u00e8.txt", "non-ASCII name\n")
    L.dir("data/many")
    for i in range(64):
        L.file("data/many/file-%02d.txt" % i, "small file %d\n" % i)
    L.close()
    return {
        "big": hashlib.sha256(big).hexdigest(),
        "exact": hashlib.sha256(exact).hexdigest(),
    }


CHECK = r"""#!/bin/sh
# Verifies the merged view of the features image; prints OK or the failed checks.
fails=0
check() {
    name=$1
    shift
    if ! "$@"; then
        echo "FAIL: $name"
        fails=$((fails + 1))
    fi
}
eq() { [ "$1" = "$2" ]; }
check "file whiteout" test ! -e /data/deleted.txt
check "directory whiteout" test ! -e /data/gone-dir
check "opaque dir holds only upper content" eq "$(ls -A /data/opaque)" "new.txt"
check "opaque dir new file" eq "$(cat /data/opaque/new.txt)" "upper"
check "replaced file" eq "$(cat /data/replaced.txt)" "new content"
check "empty file" eq "$(stat -c %s /data/empty)" 0
check "hardlink shares inode" eq "$(stat -c %i /data/hardlink-a)" "$(stat -c %i /data/hardlink-b)"
check "hardlink count" eq "$(stat -c %h /data/hardlink-a)" 2
check "hardlink content" eq "$(cat /data/hardlink-b)" "shared by two names"
check "upper hardlink" eq "$(stat -c %i /data/upper/one)" "$(stat -c %i /data/upper/sub/two)"
check "relative symlink" eq "$(readlink /data/link-rel)" "replaced.txt"
check "relative symlink follows" eq "$(cat /data/link-rel)" "new content"
check "absolute symlink" eq "$(readlink /data/link-abs)" "/data/big.bin"
check "directory symlink" eq "$(ls /data/link-dir/)" "new.txt"
check "dangling symlink" test -L /data/link-dangling -a ! -e /data/link-dangling
check "big file size" eq "$(stat -c %s /data/big.bin)" 9437184
check "big file sha256" eq "$(sha256sum /data/big.bin | cut -d' ' -f1)" "@BIG@"
check "4 MiB file sha256" eq "$(sha256sum /data/exact-4m.bin | cut -d' ' -f1)" "@EXACT@"
check "char device" test -c /data/chardev
check "char device numbers" eq "$(stat -c '%t:%T' /data/chardev)" "1:3"
check "fifo" test -p /data/fifo
check "owner and mode" eq "$(stat -c '%u:%g %a' /data/owned.txt)" "1000:1000 640"
check "private dir" eq "$(stat -c '%u:%g %a' /data/private)" "1000:1000 700"
check "setuid bit" eq "$(stat -c %a /data/setuid)" 4755
check "long name" test -f "/data/long/@LONG@"
check "non-ASCII name" test -f "/data/unicode-éè.txt"
check "many small files" eq "$(ls /data/many | wc -l)" 64
check "xattr file present" eq "$(cat /data/xattr.txt)" "carries user xattrs"
check "busybox base" eq "$(echo hi | cat)" "hi"
if [ "$fails" -eq 0 ]; then
    echo OK
else
    echo "$fails checks failed"
    exit 1
fi
"""


def upper(path, sums):
    L = oci.Layer(path)
    L.dir("data")
    L.file("data/.wh.deleted.txt", b"")
    L.file("data/.wh.gone-dir", b"")
    L.dir("data/opaque")
    L.file("data/opaque/.wh..wh..opq", b"")
    L.file("data/opaque/new.txt", "upper\n")
    L.file("data/replaced.txt", "new content\n")
    L.dir("data/upper")
    L.dir("data/upper/sub")
    L.file("data/upper/one", "hardlink pair in the upper layer\n")
    L.hardlink("data/upper/sub/two", "data/upper/one")
    script = (CHECK.replace("@BIG@", sums["big"]).replace("@EXACT@", sums["exact"])
              .replace("@LONG@", LONG_NAME))
    L.file("check.sh", script, mode=0o755)
    L.close()


def main():
    out = sys.argv[1]
    oci.busybox_layer(os.path.join(out, "base.tar"))
    sums = lower(os.path.join(out, "lower.tar"))
    upper(os.path.join(out, "upper.tar"), sums)


if __name__ == "__main__":
    main()
