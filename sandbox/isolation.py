"""Linux facilities the standard library does not wrap: namespaces, prctl, Landlock, uid plans.

Every function here either works or reports why not; none of them raises for a missing
kernel feature, so the pool can say what is in force instead of failing to start.
"""

from __future__ import annotations

import ctypes
import os
import stat
import struct

CLONE_NEWNET = 0x40000000

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_CHILD_SUBREAPER = 36

# Landlock (the syscall numbers are the same on every architecture).
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_REMOVE_DIR = 1 << 4
_FS_REMOVE_FILE = 1 << 5
_FS_MAKE_ALL = sum(1 << bit for bit in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1

#: Children of worker N run as uid/gid UID_BASE + pid(worker N): unique while the worker lives.
UID_BASE = 1 << 30
_PID_SPAN = 1 << 22  # the kernel's largest pid_max

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _arg(value: int | bytes | None) -> ctypes.c_long | ctypes.c_char_p | ctypes.c_void_p:
    """Variadic C arguments must be full-width longs or pointers, never default ints."""
    if value is None:
        return ctypes.c_void_p(None)
    if isinstance(value, bytes):
        return ctypes.c_char_p(value)
    return ctypes.c_long(value)


def _syscall(number: int, *args: int | bytes | None) -> int:
    return int(_libc.syscall(_arg(number), *(_arg(a) for a in args)))


def _prctl(option: int, value: int) -> int:
    return int(_libc.prctl(ctypes.c_int(option), _arg(value), _arg(0), _arg(0), _arg(0)))


def _errno_text() -> str:
    err = ctypes.get_errno()
    return f"{os.strerror(err)} (errno {err})"


def enter_network_namespace() -> str | None:
    """Move this process into a new, empty network namespace; None on success, else why not."""
    if _libc.unshare(ctypes.c_int(CLONE_NEWNET)) != 0:
        return f"unshare(CLONE_NEWNET) failed: {_errno_text()}"
    return None


CLONE_NEWIPC = 0x08000000
_IPC_SYSCTLS = (("shmmni", "0"), ("msgmni", "0"), ("sem", "0 0 0 0"))


def enter_ipc_namespace() -> str | None:
    """A private System V IPC namespace with SysV IPC switched off: no shared-memory segment,
    message queue or semaphore set can be created in it (they would outlive every process and
    every limit, be shared between calls, and be visible to the host), and POSIX message queues
    made in it are its own and go with it. Needs CAP_SYS_ADMIN. None on success, else why not."""
    if _libc.unshare(ctypes.c_int(CLONE_NEWIPC)) != 0:
        return f"unshare(CLONE_NEWIPC) failed: {_errno_text()}"
    try:
        for name, value in _IPC_SYSCTLS:  # per IPC namespace: the host's values stay
            with open(f"/proc/sys/kernel/{name}", "w", encoding="ascii") as fh:
                fh.write(value)
    except OSError as exc:
        return f"SysV IPC limits of the new IPC namespace not set: {exc}"
    return None


def set_child_subreaper(enabled: bool = True) -> None:
    """Orphaned descendants get reparented to this process, so it can kill and reap them
    (or, when not ``enabled``, to the nearest subreaper above it, as for any process)."""
    _prctl(_PR_SET_CHILD_SUBREAPER, int(enabled))


def set_parent_death_signal(signum: int) -> None:
    """Receive ``signum`` when the parent dies (cleared by fork and by uid changes)."""
    _prctl(_PR_SET_PDEATHSIG, signum)


def set_process_name(name: str) -> None:
    """The name ps and top show (15 bytes at most), so each sandbox role is recognisable."""
    _libc.prctl(ctypes.c_int(_PR_SET_NAME), ctypes.c_char_p(name.encode()[:15]), _arg(0), _arg(0), _arg(0))


def trim_heap() -> None:
    """Give free malloc memory back to the kernel (fork copies page tables of what is mapped)."""
    try:
        _libc.malloc_trim(_arg(0))
    except AttributeError:  # not glibc
        pass


def set_no_new_privs() -> None:
    """No exec can ever grant privileges again (set-uid binaries stop working); Landlock needs it."""
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)


# A seccomp filter refusing socket(AF_UNIX, ...): the network namespace already leaves a child
# no network and scopes abstract Unix sockets, but a socket *file* (a 0777 one in /tmp, a
# service's in /run) is reachable from any namespace, and Landlock does not cover connecting
# to one. socketpair(), which makes connected pairs without a name, stays allowed.
_AUDIT_ARCH_AND_SOCKET_NR = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}
_X32_SYSCALL_BIT = 0x40000000
_AF_UNIX = 1
_EACCES = 13
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_SECCOMP_RET_ALLOW, _SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
_LD_ABS_W, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, ..., BPF_RET|K


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def unix_socket_filter_supported() -> bool:
    """Whether ``deny_unix_sockets`` knows this machine's architecture."""
    return os.uname().machine in _AUDIT_ARCH_AND_SOCKET_NR


def unix_socket_filter() -> "_SockFprog | None":
    """The seccomp program ``deny_unix_sockets`` installs, built ahead (by the worker, once:
    a job process then only installs it). None when the architecture is not known."""
    arch_nr = _AUDIT_ARCH_AND_SOCKET_NR.get(os.uname().machine)
    if arch_nr is None:
        return None
    arch, socket_nr = arch_nr
    deny = _SECCOMP_RET_ERRNO | _EACCES
    program = [
        (_LD_ABS_W, 0, 0, 4),  # seccomp_data.arch
        (_JEQ_K, 1, 0, arch),
        (_RET_K, 0, 0, deny),  # another architecture's numbers: refuse
        (_LD_ABS_W, 0, 0, 0),  # seccomp_data.nr
        (_JGE_K, 0, 1, _X32_SYSCALL_BIT),
        (_RET_K, 0, 0, deny),  # x32 calls: refuse
        (_JEQ_K, 0, 3, socket_nr),
        (_LD_ABS_W, 0, 0, 16),  # seccomp_data.args[0], low half (little-endian)
        (_JEQ_K, 0, 1, _AF_UNIX),
        (_RET_K, 0, 0, deny),
        (_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
    ]
    filters = (_SockFilter * len(program))(*(_SockFilter(*f) for f in program))
    return _SockFprog(len(program), filters)  # which keeps the array alive (its _objects)


def deny_unix_sockets(prog: "_SockFprog | None" = None) -> str | None:
    """From now on, in this process and all it forks, ``socket(AF_UNIX, ...)`` fails with
    EACCES; every other call is untouched (a call made for another architecture, or through
    the x32 ABI, fails too). ``prog``: the filter ``unix_socket_filter`` built (built here if
    not given). Needs no_new_privs. None on success, else why not."""
    if prog is None:
        prog = unix_socket_filter()
        if prog is None:
            return f"no seccomp filter for {os.uname().machine}"
    if _libc.prctl(ctypes.c_int(_PR_SET_SECCOMP), ctypes.c_ulong(_SECCOMP_MODE_FILTER), ctypes.byref(prog),
                   _arg(0), _arg(0)) != 0:
        return f"seccomp filter not installed: {_errno_text()}"
    return None


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is unavailable."""
    version = _syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, _LANDLOCK_CREATE_RULESET_VERSION)
    return max(int(version), 0)


#: Besides the interpreter's own directories, what a child may read (where present): the shared
#: libraries and the dynamic loader (libc, numpy's OpenBLAS, the locale archive), the loader's
#: index of them (without it a library not loaded yet is searched for in the default
#: directories only, and one in /usr/local/lib is not found), time zone data, /proc (a private
#: one as root: only the child's own processes), and two devices (/dev/null is read and written:
#: ``landlock_ruleset``). Nothing else of /etc.
SYSTEM_READABLE = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache",
                   "/usr/share/zoneinfo", "/proc", "/dev/zero", "/dev/urandom")


def readable_paths(interpreter: list[str], hidden: tuple[str, ...]) -> tuple[str, ...]:
    """The read allow-list for ``landlock_ruleset``: ``interpreter`` (the installation's
    directories) and ``SYSTEM_READABLE``, at their real locations (a rule holds the inode a
    path leads to, so a symlinked venv is allowed where it really is), those that exist, none
    inside another, and none of ``hidden`` (the sandbox package's parent: on the worker's
    sys.path for its own imports, it may hold the build's database)."""
    hidden_real = {os.path.realpath(p) for p in hidden}
    real = {os.path.realpath(p) for p in [*interpreter, *SYSTEM_READABLE] if os.path.exists(p)} - hidden_real
    return tuple(sorted(p for p in real if not any(p.startswith(other.rstrip("/") + "/") for other in real)))


def landlock_ruleset(abi: int, writable_dir: str, readable: tuple[str, ...], deny_tcp: bool) -> int:
    """A Landlock ruleset fd: reading and executing only beneath ``readable`` (see
    ``readable_paths``), reading and writing only beneath ``writable_dir`` and /dev/null.
    Anything else, /etc, /home, /tmp, the build's database, fails with EACCES (PermissionError)
    whatever the file's mode, and nothing in ``writable_dir`` can be executed.

    From ABI 6 on, signals to processes outside the domain and abstract unix sockets are
    scoped too; from ABI 4 on, ``deny_tcp`` forbids TCP bind/connect as a second line behind
    the network namespace. A rule holds the directory itself (its inode), not its name.
    Raises OSError.
    """
    if abi < 1:
        raise OSError("Landlock not available")
    read = _FS_READ_FILE | _FS_READ_DIR
    write = _FS_WRITE_FILE | _FS_REMOVE_DIR | _FS_REMOVE_FILE | _FS_MAKE_ALL
    if abi >= 2:
        write |= _FS_REFER
    if abi >= 3:
        write |= _FS_TRUNCATE
    handled = _FS_EXECUTE | read | write
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if deny_tcp and abi >= 4 else 0
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0
    if abi >= 6:
        attr = struct.pack("=QQQ", handled, net, scoped)
    elif abi >= 4:
        attr = struct.pack("=QQ", handled, net)
    else:
        attr = struct.pack("=Q", handled)
    ruleset = _syscall(_SYS_LANDLOCK_CREATE_RULESET, attr, len(attr), 0)
    if ruleset < 0:
        raise OSError(f"landlock_create_ruleset failed: {_errno_text()}")
    try:
        for path in readable:
            try:
                _add_path_rule(ruleset, path, _FS_EXECUTE | read)
            except (FileNotFoundError, PermissionError):  # gone, or out of this uid's reach: nothing to allow
                continue
        _add_path_rule(ruleset, writable_dir, read | write)
        _add_path_rule(ruleset, os.devnull, _FS_READ_FILE | _FS_WRITE_FILE | (_FS_TRUNCATE if abi >= 3 else 0))
    except OSError:
        os.close(ruleset)
        raise
    return ruleset


def _add_path_rule(ruleset: int, path: str, allowed: int) -> None:
    """Allow ``allowed`` beneath ``path``; for a file, only the rights that apply to files."""
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            allowed &= _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE
        rule = struct.pack("=Qi", allowed, fd)
        if _syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH, rule, 0) != 0:
            raise OSError(f"landlock_add_rule({path}) failed: {_errno_text()}")
    finally:
        os.close(fd)


def enforce_ruleset(ruleset: int) -> None:
    """Put this process (and its future children) under ``ruleset``; domains only narrow.
    Needs no_new_privs. Raises OSError."""
    if _syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
        raise OSError(f"landlock_restrict_self failed: {_errno_text()}")


def worker_uid(worker_pid: int) -> int | None:
    """The uid the children of this worker run as, or None if the uid range is not mapped."""
    uid = UID_BASE + worker_pid
    try:
        with open("/proc/self/uid_map", encoding="ascii") as fh:
            ranges = [tuple(int(x) for x in line.split()) for line in fh if line.strip()]
    except OSError:
        return None
    lo, hi = UID_BASE, UID_BASE + _PID_SPAN
    if any(inside <= lo and hi <= inside + count for inside, _outside, count in ranges):
        return uid
    return None


def drop_privileges(uid: int) -> None:
    """Become ``uid``/``uid`` with no supplementary groups, irrevocably (real, effective, saved)."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def kill_all_of_uid(uid: int) -> None:
    """SIGKILL every process running as ``uid``, atomically with respect to fork.

    A short-lived helper takes on the uid and calls kill(-1): the kernel signals all processes
    the caller may signal (those of its uid) in one pass under the task-list lock, so a fork
    bomb cannot outrun it. The caller must be privileged and must reap its own children after.
    """
    pid = os.fork()
    if pid == 0:
        try:
            drop_privileges(uid)
            try:
                os.kill(-1, 9)
            except ProcessLookupError:
                pass
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def reap_children() -> bool:
    """Reap every exited child; True while some child is still running."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def kill_children() -> None:
    """SIGKILL this process's children (found in /proc); their children then come to us."""
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
            if int(stat[stat.rindex(b")") + 2 :].split()[1]) == me:
                os.kill(int(entry.name), 9)
        except (OSError, ValueError, IndexError):
            continue


def remove_tree(root: str) -> None:
    """Delete ``root`` and everything under it, restoring permissions a child may have removed.

    Iterative, so a hostile tree thousands of levels deep cannot exhaust the recursion limit.
    Raises OSError when something cannot be removed (too-long paths, a mount point).
    """
    stack = [root]
    while stack:
        path = stack[-1]
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            stack.pop()
            continue
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(path)
            stack.pop()
            continue
        if info.st_mode & 0o700 != 0o700:
            os.chmod(path, 0o700)
        with os.scandir(path) as entries:
            children = [entry.path for entry in entries]
        if children:
            stack.extend(children)
        else:
            os.rmdir(path)
            stack.pop()


_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_BIND = 4096
_MS_MOVE = 8192
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MNT_DETACH = 2
CLONE_NEWNS = 0x00020000


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def c(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    if _libc.mount(c(source), c(target), c(fstype), ctypes.c_ulong(flags), c(data)) != 0:
        raise OSError(ctypes.get_errno(), f"mount {source} -> {target}: {_errno_text()}")


def first_blocked(path: str) -> tuple[str, str] | None:
    """(ancestor that other users cannot traverse, the entry below it on the way to ``path``)."""
    parts = [p for p in os.path.realpath(path).split("/") if p]
    current = "/"
    for part in parts:
        try:
            mode = os.stat(current).st_mode
        except OSError:
            return None
        if not mode & 0o001:
            return current, part
        current = os.path.join(current, part)
    return None


def enter_mount_namespace() -> str | None:
    """A private mount namespace: mounts made from now on are invisible outside and vanish
    with the last process in it. None on success, else why not."""
    if _libc.unshare(ctypes.c_int(CLONE_NEWNS)) != 0:
        return f"unshare(CLONE_NEWNS) failed: {_errno_text()}"
    try:
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    except OSError as exc:
        return str(exc)
    return None


def mount_private_proc() -> str | None:
    """A /proc of this mount namespace's own, where a process sees only the processes of its
    own uid (``hidepid=invisible``): a child no longer reads other processes' command lines
    (an API key passed as an argument) or environments, nor learns what runs on the machine.
    Root (the worker) still sees every process. None on success, else why not."""
    try:
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "hidepid=invisible")
    except OSError as exc:
        return str(exc)
    return None


def mount_private_tmpfs(path: str, uid: int, size_bytes: int, inodes: int) -> None:
    """A size-capped tmpfs at ``path`` owned by ``uid``, mode 0700 (inside the mount namespace)."""
    options = f"mode=0700,uid={uid},gid={uid},size={size_bytes},nr_inodes={inodes}"
    _mount("tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV, options)


def unmount(path: str) -> None:
    """Detach the mount at ``path`` (lazily, so busy files cannot keep it)."""
    if _libc.umount2(os.fsencode(path), ctypes.c_int(_MNT_DETACH)) != 0:
        raise OSError(ctypes.get_errno(), f"umount {path}: {_errno_text()}")


def expose_to_other_users(paths: list[str], staging_root: str) -> tuple[list[str], str | None]:
    """Make ``paths`` reachable for an unprivileged uid (inside a private mount namespace).

    When the interpreter lives under a directory other users cannot enter (pyenv in /root,
    mode 0700), mount a small root-owned tmpfs (mode 0755) over each such directory and move
    back only the entries on the way to ``paths``. Everything else there stays hidden from
    the children. Returns (directories covered, problem or None).
    """
    blocked: dict[str, set[str]] = {}
    for path in paths:
        hit = first_blocked(path)
        if hit is not None:
            blocked.setdefault(hit[0], set()).add(hit[1])
    if not blocked:
        return [], None
    try:
        for directory in sorted(blocked, key=len):
            staged = []
            for name in sorted(blocked[directory]):
                source = os.path.join(directory, name)
                # Named per process: the pool starts its workers side by side, all staging
                # in the same directory (one name for all made every few starts fail).
                stage = os.path.join(staging_root, f".stage-{os.getpid()}-{len(staged)}")
                if os.path.isdir(source):
                    os.mkdir(stage)
                else:
                    open(stage, "x").close()
                _mount(source, stage, None, _MS_BIND | _MS_REC)
                staged.append((name, stage, os.path.isdir(source)))
            _mount("tmpfs", directory, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=64k")
            for name, stage, is_dir in staged:
                target = os.path.join(directory, name)
                if is_dir:
                    os.mkdir(target)
                else:
                    open(target, "x").close()
                _mount(stage, target, None, _MS_MOVE)
                (os.rmdir if is_dir else os.unlink)(stage)
    except OSError as exc:
        return [], str(exc)
    return sorted(blocked), None
