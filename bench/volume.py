"""A cellboxd for the Python benchmarks whose state lives on a journaled
ext4 volume of its own, as bench_runtime's does (bench_runtime.c,
bench_base): the build host's /tmp is ext4 without a journal, where every
new inode skips those freed in the last minutes, so figures taken there
depended on the runs before them (docs/operations.md, "Benchmarks").

The volume is a sparse image, loop-mounted in a mount namespace that only
the daemon (and the sandboxes it clones from it) sees: nothing is mounted
on the host, and the mount, its loop device and the image (unlinked once
mounted) go when the last process using them exits. The mount point, an
empty directory in the host's namespace, is removed after the daemon.

If the volume cannot be made (no mkfs.ext4, no loop devices, no unshare),
the daemon's state goes under /tmp as before, and it says so."""
import os
import shutil
import subprocess
import tempfile

from cellboxd import Daemon


# Made once per daemon, inside its namespace, before cellboxd runs: mount
# the image (autoclear loop device), unlink it, exec the daemon.
_WRAPPER = 'mount -o loop,noinit_itable "$1" "$2" && rm -f "$1" && shift 2 && exec "$@"'


def make_volume(size="64G"):
    """A fresh image and an empty mount point: (dir, image, mnt) or None."""
    d = tempfile.mkdtemp(prefix="cb-bench-api-vol-", dir="/tmp")
    os.chmod(d, 0o711)  # sandboxes' unprivileged roots traverse it
    img, mnt = os.path.join(d, "vol.img"), os.path.join(d, "mnt")
    try:
        subprocess.run(["truncate", "-s", size, img], check=True)
        # lazy_itable_init: no inode-table zeroing up front or during the run
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,nodiscard", img],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.mkdir(mnt)
        os.chmod(mnt, 0o711)
    except (OSError, subprocess.CalledProcessError):
        shutil.rmtree(d, ignore_errors=True)
        return None
    return d, img, mnt


class VolumeDaemon(Daemon):
    """Daemon(...) with its state on a journaled volume of its own."""

    def __init__(self, **kw):
        self.vol = None if kw.pop("state_on_tmp", False) else make_volume()
        if self.vol:
            kw["state_dir"] = os.path.join(self.vol[2], "state")
        super().__init__(**kw)

    def args(self):
        a = super().args()
        if not self.vol:
            return a
        return (["unshare", "--mount", "--propagation", "private", "sh", "-c", _WRAPPER, "sh",
                 self.vol[1], self.vol[2]] + a)

    def start(self, timeout=20):
        try:
            return super().start(timeout)
        except (RuntimeError, OSError) as e:
            if not self.vol:
                raise
            # No unshare, or the volume's mount failed in the wrapper: say
            # so, use /tmp.
            print("bench: no volume of its own (%s): state under /tmp"
                  % (self.log()[-300:].strip() or e))
            self._drop_volume()
            self.state_dir = os.path.join(self.tmp, "state")
            return super().start(timeout)

    def stop(self):
        super().stop()
        self._drop_volume()

    def _drop_volume(self):
        if self.vol:
            shutil.rmtree(self.vol[0], ignore_errors=True)  # mount point (empty here) and dir
            self.vol = None
