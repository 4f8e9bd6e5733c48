"""What the tracer (strace, root, inside the container) watches, and what it refuses.

strace's `--seccomp-bpf` stops only the syscalls named here; the rest (read, mmap, futex, the
model's hot loop) run at full speed. The seccomp profile decides what reaches strace at all: a
syscall the profile denies with an errno leaves no record, so every call a model has no business
making is let through to strace (the `refused` families, `OBSERVED` in
sandbox_images/seccomp/generate.py, which a test holds equal to REFUSED) and strace records it and
answers EPERM without running it.

Each family below is a row of FAMILIES (a test holds the two in step):

family         why traced                                 event kind             rules
-------------  -----------------------------------------  ---------------------  ------------------
speed          a new thread stops once, then runs untraced  -                    -
process        processes, threads, programs run           process.exec/.fork     AL201 AL202 AL205
descriptors    what a descriptor or relative path names   - (bookkeeping only)   -
memfd          in-memory files (fileless exec)            file.memfd             AL307
network        sockets and where they go                  net.socket/.connect/   AL101-AL104 AL107
                                                          .bind/.listen/.lookup  AL305
send           data sent on any socket, to its address    net.sendto/.sendmsg/   AL101 AL102
               or to its connect's destination            .sendmmsg/.lookup      AL104-AL108
ipc            data sent through kernel message queues    net.ipc                AL106
identity       privilege changes                          priv.setid             AL401
signal         another process signalled                  signal.send            AL403
reach          a handle on a process (pidfd)              process.reach/.handle  AL203 AL204
files          files written, sensitive reads, probes     file.write/.probe/     AL301-AL306
                                                          .sensitive_read/
                                                          .unresolved
modify         files changed (rename, unlink, chmod, ...) file.modify            AL301 AL302 AL305
reach-refused  another process's memory or descriptors    process.reach          AL203
evasion        io_uring: calls the tracer would not see;  priv.evasion           AL405
               seccomp: a filter of the model's own (and
               SIGSYS exits: another ABI's calls)
escape         privilege and escape (mount, unshare, ...) priv.escape            AL402

The last three are refused: recorded, answered EPERM, never run.

Not traced, by design: read/write/writev/splice/sendfile on a socket (hot, and a socket that
reaches anything was connected, which is traced), recvmsg (the worker's own traffic; a
descriptor received with SCM_RIGHTS was sent by a traced sendmsg), close (on every file's path;
see runner.telemetry.procstate). The worker's own sockets (bound under /airlock/run in the
startup phase, and the connections accepted on them) are baseline; everything else is the model's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    syscalls: tuple[str, ...]
    refused: bool = False  # recorded, then answered with EPERM by strace, never executed


def _family(name: str, names: str, refused: bool = False) -> Family:
    return Family(name, tuple(n.strip() for n in names.split(",")), refused)


FAMILIES: tuple[Family, ...] = (
    # Not evidence, but speed: strace 6.1 single-steps a new thread's syscalls (about 90 us
    # each) until the thread makes its first traced call. glibc calls these two in every new
    # thread's start-up, so each thread stops once and then runs at full speed.
    _family("speed", "set_robust_list,rseq"),
    _family("process", "execve,execveat,fork,vfork,clone,clone3"),
    _family("descriptors", "dup,dup2,dup3,fcntl,accept,accept4,socketpair,chdir,fchdir"),
    _family("memfd", "memfd_create"),
    _family("network", "socket,connect,bind,listen"),
    _family("send", "sendto,sendmsg,sendmmsg"),
    _family("ipc", "msgsnd,mq_timedsend"),
    _family(
        "identity",
        "setuid,setgid,setreuid,setregid,setresuid,setresgid,setfsuid,setfsgid,setgroups,capset",
    ),
    _family("signal", "kill,tkill,tgkill,rt_sigqueueinfo,rt_tgsigqueueinfo,pidfd_send_signal"),
    _family("reach", "pidfd_open"),
    _family("files", "open,openat,openat2,creat"),
    _family(
        "modify",
        "truncate,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,rmdir,link,linkat,"
        "symlink,symlinkat,chmod,fchmod,fchmodat,chown,fchown,fchownat,lchown,mknod,mknodat,"
        "setxattr,lsetxattr,fsetxattr,removexattr,lremovexattr,fremovexattr,utime,utimes,"
        "utimensat,futimesat",
    ),
    _family(
        "reach-refused",
        "pidfd_getfd,process_vm_readv,process_vm_writev,process_madvise",
        refused=True,
    ),
    _family("evasion", "io_uring_setup,io_uring_enter,io_uring_register,seccomp", refused=True),
    _family(
        "escape",
        "mount,umount2,pivot_root,unshare,setns,bpf,keyctl,add_key,request_key,init_module,"
        "finit_module,delete_module,personality,ptrace,kcmp,perf_event_open,userfaultfd,"
        "open_by_handle_at,kexec_load,kexec_file_load,acct,swapon,swapoff,reboot,sethostname,"
        "setdomainname,chroot,quotactl,quotactl_fd,syslog,iopl,ioperm,fsopen,fsconfig,fsmount,"
        "fspick,move_mount,open_tree,mount_setattr,settimeofday,clock_settime",
        refused=True,
    ),
)


def _names(refused_only: bool) -> tuple[str, ...]:
    return tuple(s for f in FAMILIES if f.refused or not refused_only for s in tuple(f.syscalls))


REFUSED = ",".join(_names(refused_only=True))
TRACED = ",".join(_names(refused_only=False))
FAMILY_OF = {s: f.name for f in FAMILIES for s in f.syscalls}


def environment(enabled: bool) -> dict[str, str]:
    """The container's environment: the tracer's switches and nothing from the host."""
    if not enabled:
        return {"AIRLOCK_TRACE": "0"}
    return {"AIRLOCK_TRACE": "1", "AIRLOCK_TRACE_SET": TRACED, "AIRLOCK_TRACE_REFUSE": REFUSED}
