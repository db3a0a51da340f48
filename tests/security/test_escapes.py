"""Escape attempts against the container tier, each judged by evidence on the
host (a file's hash, a canary, /proc of host processes, a mount table, a
listener's accept count), and each evidence check shown to detect the escape
in a control run: against a sandbox weakened on purpose (cbrun --weaken), or,
where the kernel itself refuses the action even then, the same action done
by an unconfined process on the host. So no test can pass vacuously.

Every attempt goes through conftest.judge() and every control through
conftest.control(): the figures are printed at the end of the run."""
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

from battery import INIT, control, drop_named_cgroup_hierarchy, judge, sandbox_pids
from test_container_isolation import DENIED, PROBE_C  # noqa: F401  (reused probe)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def host_run(*argv, timeout=30):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


# ---- cgroup v1 release_agent (CVE-2022-0492) ----

def v1_release_agents():
    """release_agent of every cgroup v1 hierarchy mounted in the host's mount
    namespace (including any a control run mounted), by mount point."""
    agents = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup":
                p = os.path.join(fields[4], "release_agent")
                if os.path.exists(p):
                    with open(p) as a:
                        agents[fields[4]] = a.read()
    return agents


def release_agent_escaped(before, canary):
    after = v1_release_agents()
    changed = [m for m, v in after.items() if before.get(m, "") != v]
    return bool(changed) or os.path.exists(canary)


def test_cgroup_v1_release_agent(rt, tmp_path):
    if not any(v1_release_agents()):
        pytest.skip("no cgroup v1 hierarchy on this host")
    canary = str(tmp_path / "pwned")
    agent = tmp_path / "agent.sh"
    agent.write_text(f"#!/bin/sh\ntouch {canary}\n")
    agent.chmod(0o755)
    attack = (
        "mkdir -p /tmp/cg; "
        "for o in memory rdma pids cpu freezer none,name=systemd none,name=cbx; do "
        "  mount -t cgroup -o $o cgroup /tmp/cg 2>/dev/null || continue; "
        f"  echo {agent} > /tmp/cg/release_agent; mkdir -p /tmp/cg/x; "
        "  echo 1 > /tmp/cg/x/notify_on_release; sh -c 'echo $$ > /tmp/cg/x/cgroup.procs'; "
        "  rmdir /tmp/cg/x; umount /tmp/cg; done; "
        f"for h in /sys/fs/cgroup/*; do echo {agent} > $h/release_agent; done; true")
    before = v1_release_agents()
    for weaken in (None, "all"):
        sid = rt.sandbox(f"sb_ra_{weaken or 'std'}", *(("--weaken", weaken) if weaken else ()))
        for uid in (0, 1000):
            rt.sh(sid, attack, uid=uid)
            time.sleep(0.3)  # the kernel runs a release agent asynchronously
            assert not judge(f"release_agent/{weaken or 'std'}/{uid}",
                             release_agent_escaped(before, canary))
    # Control: an unconfined host process does the same on a private named
    # hierarchy it mounts itself (no host hierarchy is touched): the same
    # check must see both the changed release_agent and the canary.
    mnt = tmp_path / "cg"
    mnt.mkdir()
    name = "cbtest" + uuid.uuid4().hex[:8]
    r = host_run("mount", "-t", "cgroup", "-o", f"none,name={name}", "cgroup", str(mnt))
    if r.returncode != 0:
        pytest.skip(f"cannot mount a private v1 hierarchy for the control: {r.stderr}")
    try:
        (mnt / "release_agent").write_text(str(agent))
        (mnt / "x").mkdir()
        (mnt / "x" / "notify_on_release").write_text("1")
        host_run("sh", "-c", f"echo $$ > {mnt}/x/cgroup.procs")
        for _ in range(50):
            if os.path.exists(canary):
                break
            time.sleep(0.05)
        assert control("release_agent", release_agent_escaped(before, canary))
    finally:
        if (mnt / "x").exists():
            os.rmdir(mnt / "x")
        host_run("umount", str(mnt))
        # The hierarchy outlives an umount that came too soon after the
        # rmdir: make sure the host does not keep it.
        assert drop_named_cgroup_hierarchy(name), f"cgroup hierarchy {name} left on the host"


# ---- /proc/self/exe overwrite of a host binary (CVE-2019-5736) ----

def test_proc_exe_overwrite(rt, probe, tmp_path):
    victim = str(tmp_path / "cellbox-init-copy")
    shutil.copy(INIT, victim)
    os.chmod(victim, 0o755)
    rt.init = victim  # init is exec'd from this host file: /proc/1/exe inside
    digest = sha(victim)
    for weaken in (None, "all"):
        sid = rt.sandbox(f"sb_exe_{weaken or 'std'}", *(("--weaken", weaken) if weaken else ()))
        p = rt.put(sid, probe, "probe")
        for uid in (0, 1000):
            rt.sh(sid, f"{p} exe-overwrite /proc/1/exe 0.5; "
                       f"echo PWNED >> /proc/1/exe; cp /bin/true /proc/1/exe; true", uid=uid)
            assert not judge(f"proc-exe/{weaken or 'std'}/{uid}", sha(victim) != digest)
    # Control: the same reopen-after-exit trick by an unconfined host process
    # against a binary it runs from a copy it owns.
    target = str(tmp_path / "sleep-copy")
    shutil.copy("/bin/sleep", target)
    before = sha(target)
    victim_proc = subprocess.Popen([target, "0.3"])
    host_run(probe, "exe-overwrite", f"/proc/{victim_proc.pid}/exe", "5")
    victim_proc.wait()
    assert control("proc-exe", sha(target) != before)


# ---- fds and working directories outside the root (CVE-2024-21626) ----

def mount_id(path):
    fd = os.open(path, os.O_PATH)
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("mnt_id:"):
                    return int(line.split()[1])
    finally:
        os.close(fd)
    raise AssertionError("no mnt_id")


def outside_refs(init, allowed=()):
    """(pid, what, target) for every fd, cwd or root of a process in init's
    pid namespace that lies on a mount its own mount namespace does not have
    (i.e. on the host's side). allowed: (pid, fd) pairs with a reason."""
    found = []
    for pid in sandbox_pids(init):
        try:
            with open(f"/proc/{pid}/mountinfo") as f:
                mine = {int(line.split()[0]) for line in f}
            refs = [("cwd", f"/proc/{pid}/cwd"), ("root", f"/proc/{pid}/root")]
            for fd in os.listdir(f"/proc/{pid}/fd"):
                refs.append((f"fd{fd}", f"/proc/{pid}/fd/{fd}"))
            for what, link in refs:
                target = os.readlink(link)
                if not target.startswith("/") or (pid, what) in allowed:
                    continue  # sockets, pipes, anon inodes: no path
                if what.startswith("fd"):
                    with open(f"/proc/{pid}/fdinfo/{what[2:]}") as f:
                        mid = int([x for x in f if x.startswith("mnt_id:")][0].split()[1])
                else:
                    mid = mount_id(link)
                if mid not in mine:
                    found.append((pid, what, target))
        except (FileNotFoundError, ProcessLookupError):
            continue  # the process exited meanwhile
    return found


def test_no_fd_or_cwd_outside_root(rt, tmp_path):
    sid = rt.sandbox("sb_fds")
    init = rt.pid(sid)
    rt.sh(sid, "cd /tmp && (sleep 20 </dev/null >/dev/null 2>&1 &); "
               "cd /workspace && (exec 7</etc/hostname; sleep 20 7</etc/hostname &) ; true")
    rt.sh(sid, "sleep 20 </dev/null >/dev/null 2>&1 &", uid=1000)
    time.sleep(0.3)
    # init's stdin is the host's /dev/null and its stdout/stderr the host's
    # init.log (the daemon reads it); nothing else may reach outside, and the
    # sandbox must not be able to write through those three.
    allowed = {(init, "fd0"), (init, "fd1"), (init, "fd2")}
    leaks = outside_refs(init, allowed)
    assert not judge("fd-cwd-leak", bool(leaks)), leaks
    log = os.path.join(rt.state, "sandboxes", sid, "init.log")
    for uid in (0, 1000):
        rt.sh(sid, "echo PWNED-LOG > /proc/1/fd/1; echo PWNED-LOG >> /proc/1/fd/2; "
                   "echo PWNED-LOG > /proc/1/fd/0; true", uid=uid)
    text = open(log, errors="replace").read() if os.path.exists(log) else ""
    assert not judge("init-log-write", "PWNED-LOG" in text)
    # Control: a process put into the sandbox's namespaces the way a careless
    # runtime would (an inherited host directory fd) is found by the check.
    hostdir = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    leaked = subprocess.Popen(["nsenter", "-t", str(init), "-U", "-m", "-p",
                               "--preserve-credentials", "sleep", "5"], pass_fds=[hostdir])
    try:
        time.sleep(0.5)
        assert control("fd-cwd-leak", bool(outside_refs(init, allowed)))
    finally:
        os.close(hostdir)
        leaked.kill()
        leaked.wait()


# ---- ptrace of cellbox-init ----

def tracer_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return 0


def ptrace_seen(rt, sid, probe_path, uid):
    init = rt.pid(sid)
    t = threading.Thread(target=rt.sh, args=(sid, f"{probe_path} ptrace 1 2", uid))
    t.start()
    seen = False
    end = time.time() + 1.5
    while time.time() < end and not seen:
        seen = tracer_of(init) != 0
        time.sleep(0.02)
    t.join()
    return seen


def test_ptrace_of_init(rt, probe):
    sid = rt.sandbox("sb_ptrace")
    p = rt.put(sid, probe, "probe")
    for uid in (0, 1000):
        assert not judge(f"ptrace-init/{uid}", ptrace_seen(rt, sid, p, uid))
    # Control: with every capability kept (CAP_SYS_PTRACE) init's
    # non-dumpable flag no longer protects it, and the host sees a tracer.
    weak = rt.sandbox("sb_ptrace_weak", "--weaken", "caps")
    p = rt.put(weak, probe, "probe")
    assert control("ptrace-init", ptrace_seen(rt, weak, p, 0))


# ---- device nodes via mknod ----

def device_nodes(tree):
    """Block or character devices under tree, overlay whiteouts (0:0) aside.
    Only the tree's own file system: /dev, /proc, /sys and the read-only
    host binds are other mounts (where /dev/null legitimately lives)."""
    found = []
    root_dev = os.lstat(tree).st_dev
    for dirpath, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(dirpath, d)).st_dev == root_dev]
        for n in files + dirs:
            st = os.lstat(os.path.join(dirpath, n))
            if (os.path.stat.S_ISBLK(st.st_mode) or os.path.stat.S_ISCHR(st.st_mode)) \
                    and st.st_rdev != 0:
                found.append(os.path.join(dirpath, n))
    return found


def test_mknod_devices(rt, probe):
    for weaken in (None, "all"):
        sid = rt.sandbox(f"sb_mknod_{weaken or 'std'}", *(("--weaken", weaken) if weaken else ()))
        p = rt.put(sid, probe, "probe")
        for uid in (0, 1000):
            rt.sh(sid, f"{p} mknod /workspace; {p} mknod /tmp; mknod /workspace/sda b 8 0; "
                       "mknod /tmp/mem c 1 1; true", uid=uid)
        assert not judge(f"mknod/{weaken or 'std'}", bool(device_nodes(rt.upper(sid))))
    # Control: the same scan of the same path finds the device nodes that
    # are there on purpose (/dev/null etc., bound into the sandbox's /dev):
    # a node reachable through /proc/<init>/root is seen.
    assert control("mknod", bool(device_nodes(os.path.join(rt.upper(sid), "dev"))))


# ---- raw and packet sockets ----

def host_ipv4():
    r = host_run("ip", "-4", "-o", "addr", "show", "scope", "global")
    for line in r.stdout.splitlines():
        return line.split()[3].split("/")[0]
    return None


class UdpListener:
    def __init__(self):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("0.0.0.0", 0))
        self.s.settimeout(0.2)
        self.port = self.s.getsockname()[1]

    def drain(self, secs=0.5):
        got = b""
        end = time.time() + secs
        while time.time() < end:
            try:
                got += self.s.recv(4096)
            except socket.timeout:
                pass
        return got

    def close(self):
        self.s.close()


def send_markers(marker, port, secs):
    """Host traffic a sniffer could see: UDP on loopback and the host IP."""
    end = time.time() + secs
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        while time.time() < end:
            for ip in ("127.0.0.1", host_ipv4() or "127.0.0.1"):
                s.sendto(marker.encode(), (ip, port))
            time.sleep(0.05)


def raw_escape(run_probe, capture_file, listener):
    """Send with a raw socket to host addresses and sniff host traffic;
    True when the host listener received the sandbox's marker or the
    capture (read by the host) holds the host's marker."""
    out_marker = "RAWOUT-" + uuid.uuid4().hex
    in_marker = "SNIFF-" + uuid.uuid4().hex
    sink = UdpListener()
    try:
        sniffer = threading.Thread(target=run_probe, args=("sniff", "2", "CAPTURE"))
        sniffer.start()
        time.sleep(0.3)
        send_markers(in_marker, sink.port, 1.2)
        sniffer.join()
        for ip in ("127.0.0.1", host_ipv4() or "127.0.0.1"):
            run_probe("rawsend", ip, str(listener.port), out_marker)
        got = listener.drain()
        sink.drain(0.1)
    finally:
        sink.close()
    captured = open(capture_file, "rb").read() if os.path.exists(capture_file) else b""
    return out_marker.encode() in got or in_marker.encode() in captured


def test_raw_and_packet_sockets(rt, probe, tmp_path):
    listener = UdpListener()
    try:
        sid = rt.sandbox("sb_raw")
        p = rt.put(sid, probe, "probe")
        cap_inside = os.path.join(rt.upper(sid), "workspace", "capture")

        def inside(*args):
            args = ["/workspace/capture" if a == "CAPTURE" else a for a in args]
            rt.sh(sid, " ".join([p, *args]) + "; true")
        assert not judge("raw-packet", raw_escape(inside, cap_inside, listener))
        # Control: the same probe unconfined on the host sends to the
        # listener and captures the host's marker.
        cap_host = str(tmp_path / "capture")

        def outside(*args):
            host_run(probe, *[cap_host if a == "CAPTURE" else a for a in args])
        assert control("raw-packet", raw_escape(outside, cap_host, listener))
    finally:
        listener.close()


# ---- the daemon's unix socket, another sandbox's control socket ----

class UnixListener:
    def __init__(self, path=None, abstract=None):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.bind(path if path else "\0" + abstract)
        self.s.listen(16)
        self.s.settimeout(0.1)

    def accepted(self):
        n = 0
        while True:
            try:
                c, _ = self.s.accept()
                c.close()
                n += 1
            except socket.timeout:
                return n

    def close(self):
        self.s.close()


def test_unix_sockets_unreachable(rt, probe, tmp_path):
    os.chmod(tmp_path, 0o755)
    daemon_sock = str(tmp_path / "cellboxd.sock")  # stands for the daemon's socket
    name = "cellbox-test-" + uuid.uuid4().hex[:8]
    listeners = [UnixListener(path=daemon_sock), UnixListener(abstract=name)]
    os.chmod(daemon_sock, 0o777)
    try:
        other = rt.sandbox("sb_sock_b")
        other_sock = os.path.join(rt.state, "sandboxes", other, "init.sock")
        sid = rt.sandbox("sb_sock_a")
        p = rt.put(sid, probe, "probe")
        targets = [daemon_sock, "@" + name, other_sock, "/proc/1/root" + daemon_sock,
                   "../../../../.." + daemon_sock]
        for uid in (0, 1000):
            rt.sh(sid, "; ".join(f"{p} connect {t} M" for t in targets) + "; true", uid=uid)
        assert not judge("unix-sockets", sum(lst.accepted() for lst in listeners) > 0)
        assert rt.sh(other, "echo alive").stdout.strip() == "alive"
        for t in targets[:2]:  # control: an unconfined host process reaches both
            host_run(probe, "connect", t, "M")
        assert control("unix-sockets", all(lst.accepted() > 0 for lst in listeners))
    finally:
        for lst in listeners:
            lst.close()


# ---- another sandbox's files ----

def test_other_sandbox_files(rt, tmp_path):
    secret = "SECRET-" + uuid.uuid4().hex
    victim = rt.sandbox("sb_victim")
    rt.sh(victim, f"echo {secret} > /workspace/secret; sleep 30 </dev/null >/dev/null 2>&1 &")
    victim_file = os.path.join(rt.upper(victim), "workspace", "secret")
    vpid = rt.pid(victim)
    paths = [victim_file, f"/proc/{vpid}/root/workspace/secret",
             "/proc/1/root" + victim_file, "../../../../../.." + victim_file,
             os.path.join(rt.state, "sandboxes", victim, "rootfs", "workspace", "secret")]
    script = "; ".join(f"cat {q} >> LOOT 2>/dev/null" for q in paths) + \
        "; for r in /proc/[0-9]*/root; do cat $r/workspace/secret >> LOOT 2>/dev/null; done; true"
    thief = rt.sandbox("sb_thief")
    loot = os.path.join(rt.upper(thief), "workspace", "loot")
    for uid in (0, 1000):
        rt.sh(thief, script.replace("LOOT", "/workspace/loot"), uid=uid)
    got = open(loot).read() if os.path.exists(loot) else ""
    assert not judge("other-sandbox-files", secret in got)
    # Control: the same reads by an unconfined host process find the secret.
    host_loot = str(tmp_path / "loot")
    host_run("sh", "-c", script.replace("LOOT", host_loot))
    assert control("other-sandbox-files", secret in open(host_loot).read())


# ---- mount / remount revealing the host ----

def mount_table(init):
    with open(f"/proc/{init}/mountinfo") as f:
        return sorted(" ".join(line.split()[3:]) for line in f)


def test_mount_and_remount(rt):
    attack = ("mkdir -p /tmp/m; mount -t tmpfs none /tmp/m; mount -t proc proc /tmp/m; "
              "mount --bind / /tmp/m; mount -o remount,rw /usr; mount -o remount,rw,bind /usr; "
              "mount --make-shared /; mount -t sysfs sys /tmp/m; mount -t devpts devpts /tmp/m; "
              "mount -o remount,rw /sys; umount -l /proc/sys; umount -l /dev; true")
    sid = rt.sandbox("sb_mount")
    init = rt.pid(sid)
    before = mount_table(init)
    for uid in (0, 1000):
        rt.sh(sid, attack, uid=uid)
    assert not judge("mount-remount", mount_table(init) != before)
    # Control: without the seccomp filter and with all capabilities, root in
    # the sandbox can mount (within its namespaces), and the host sees it.
    weak = rt.sandbox("sb_mount_weak", "--weaken", "all")
    winit = rt.pid(weak)
    wbefore = mount_table(winit)
    rt.sh(weak, attack)
    assert control("mount-remount", mount_table(winit) != wbefore)


# ---- nested user namespaces to regain capabilities ----

def user_namespaces(init):
    seen = set()
    for pid in sandbox_pids(init):
        try:
            seen.add(os.readlink(f"/proc/{pid}/ns/user"))
        except OSError:
            pass
    return seen


def nested_userns_seen(rt, sid, probe_path, uid):
    init = rt.pid(sid)
    base = user_namespaces(init)
    t = threading.Thread(target=rt.sh, args=(sid, f"{probe_path} userns 2; "
                                                  "unshare -U -r true; true", uid))
    t.start()
    seen = False
    end = time.time() + 1.5
    while time.time() < end and not seen:
        seen = user_namespaces(init) != base
        time.sleep(0.02)
    t.join()
    return seen


def test_nested_user_namespace(rt, probe):
    sid = rt.sandbox("sb_userns")
    p = rt.put(sid, probe, "probe")
    for uid in (0, 1000):
        assert not judge(f"nested-userns/{uid}", nested_userns_seen(rt, sid, p, uid))
    weak = rt.sandbox("sb_userns_weak", "--weaken", "seccomp")
    p = rt.put(weak, probe, "probe")
    assert control("nested-userns", nested_userns_seen(rt, weak, p, 0))


# ---- open_by_handle_at ("shocker") ----

def test_open_by_handle_at(rt, probe, tmp_path):
    secret = "SHOCKER-" + uuid.uuid4().hex
    # On the same file system as the host binds (/usr), as in the exploit.
    d = tempfile.mkdtemp(prefix="cb-shock-", dir="/var/tmp")
    if os.stat(d).st_dev != os.stat("/usr").st_dev:
        os.rmdir(d)
        pytest.skip("/var/tmp and /usr are on different file systems here (scripts/vm.sh's "
                    "guest): the exploit and its control need one")
    try:
        target = os.path.join(d, "secret")
        with open(target, "w") as f:
            f.write(secret)
        os.chmod(target, 0o644)
        htype, hexbytes = host_run(probe, "handle", target).stdout.split()
        for weaken in (None, "all"):
            sid = rt.sandbox(f"sb_shock_{weaken or 'std'}", *(("--weaken", weaken) if weaken else ()))
            p = rt.put(sid, probe, "probe")
            out = os.path.join(rt.upper(sid), "workspace", "out")
            rt.sh(sid, f"{p} shocker /usr {htype} {hexbytes} /workspace/out; true")
            got = open(out).read() if os.path.exists(out) else ""
            assert not judge(f"open_by_handle_at/{weaken or 'std'}", secret in got)
        host_out = str(tmp_path / "out")
        host_run(probe, "shocker", "/usr", htype, hexbytes, host_out)
        got = open(host_out).read() if os.path.exists(host_out) else ""
        assert control("open_by_handle_at", secret in got)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- denied syscalls on every entry point (x86_64, i386, x32) ----

I386_X32_DENIED = ["io_uring_setup", "bpf", "perf_event_open", "userfaultfd", "keyctl", "mount",
                   "unshare", "open_by_handle_at", "add_key", "init_module", "kexec_load"]


def abi_results(rt, sid, probe_path):
    r = rt.sh(sid, f"{probe_path} abi")
    return dict(line.split() for line in r.stdout.splitlines())


def test_syscalls_denied_on_all_abis(rt, probe):
    sid = rt.sandbox("sb_abi")
    got = abi_results(rt, sid, rt.put(sid, probe, "probe"))
    for name in I386_X32_DENIED + ["getpid"]:
        # the whole i386 entry point is refused by the filter (EPERM); x32
        # numbers are refused by the filter or unknown to this kernel.
        assert not judge(f"i386/{name}", int(got[f"i386_{name}"]) != 1), got
        assert not judge(f"x32/{name}", int(got[f"x32_{name}"]) not in (1, 38)), got
    weak = rt.sandbox("sb_abi_weak", "--weaken", "seccomp")
    got = abi_results(rt, weak, rt.put(weak, probe, "probe"))
    # Control: with no filter, i386 getpid reaches the kernel (returns a pid).
    assert control("i386-abi", int(got["i386_getpid"]) == 0)


def test_x86_64_probe_detects_unfiltered_calls(rt, tmp_path):
    """Control of test_container_isolation's syscall probe: without the
    filter the calls the kernel allows in a user namespace stop failing with
    EPERM, so the probe's EPERM really is the filter's."""
    src, out = str(tmp_path / "probe.c"), str(tmp_path / "probe")
    with open(src, "w") as f:
        f.write(PROBE_C)
    subprocess.run(["gcc", "-static", "-O1", "-o", out, src], check=True, capture_output=True)
    weak = rt.sandbox("sb_probe_weak", "--weaken", "seccomp")
    r = rt.sh(weak, rt.put(weak, out, "probe"))
    got = dict(line.split() for line in r.stdout.splitlines())
    reachable = [n for n in ("io_uring_setup", "keyctl", "userfaultfd", "unshare_user",
                             "ioctl_TIOCSTI", "fsopen", "setns") if int(got[n]) != 1]
    assert control("x86_64-probe", len(reachable) >= 3), got
