"""What the tracer (strace, root, inside the container) watches, and what it refuses.

The traced set is chosen so that the syscalls a model makes in its hot loop (read, mmap,
futex, ...) are not stopped: strace's `--seccomp-bpf` lets untraced calls run at full speed.
"""

from __future__ import annotations

# Privilege and escape attempts: recorded, then answered with EPERM by strace, never executed.
# The traced seccomp profile lets exactly these through to strace (sandbox_images/seccomp).
REFUSED = (
    "mount,umount2,pivot_root,unshare,setns,bpf,keyctl,add_key,request_key,init_module,"
    "finit_module,delete_module,personality,ptrace,process_vm_readv,process_vm_writev,kcmp,"
    "perf_event_open,userfaultfd,open_by_handle_at,kexec_load,kexec_file_load,acct,swapon,"
    "swapoff,reboot,sethostname,setdomainname,chroot,quotactl,syslog,iopl,ioperm"
)

TRACED = ",".join(
    [
        # Not evidence, but speed: strace 6.1 single-steps a new thread's syscalls (about 90 us
        # each) until the thread makes its first traced call. glibc calls these two in every new
        # thread's start-up, so each thread stops once and then runs at full speed.
        "set_robust_list,rseq",
        "execve,execveat,fork,vfork,clone,clone3",  # processes (exit records come regardless)
        # network: not sendmsg/recvmsg, which carry the worker's own gRPC traffic on every call
        "socket,socketpair,connect,bind,listen,sendto",
        "setuid,setgid,setreuid,setregid,setresuid,setresgid,setfsuid,setfsgid,setgroups,capset",
        "kill,tkill,tgkill,pidfd_send_signal",
        "open,openat,openat2,creat,truncate,rename,renameat,renameat2,unlink,unlinkat,mkdir,"
        "mkdirat,rmdir,link,linkat,symlink,symlinkat,chmod,fchmodat,chown,fchownat,lchown,mknod,"
        "mknodat",
        REFUSED,
    ]
)


def environment(enabled: bool) -> dict[str, str]:
    """The container's environment: the tracer's switches and nothing from the host."""
    if not enabled:
        return {"AIRLOCK_TRACE": "0"}
    return {"AIRLOCK_TRACE": "1", "AIRLOCK_TRACE_SET": TRACED, "AIRLOCK_TRACE_REFUSE": REFUSED}
