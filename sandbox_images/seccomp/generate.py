"""Generate Airlock's seccomp profiles (x86_64) as Docker seccomp JSON.

Two profiles, both deny-by-default allow-lists in the spirit of Docker's default profile:

- `airlock-strict.json`, for sandboxes without the tracer: the allow-list only. Never allowed:
  io_uring (which Docker 20.10's default still lets reach the kernel), namespaces and mounts,
  kernel modules, kexec, bpf, keyrings, perf, userfaultfd, clock changes, ptrace and the rest
  of the OBSERVED set below.
- `airlock-traced.json`, for sandboxes under strace: the allow-list plus the OBSERVED set.
  These calls are never executed: strace traces them (so the attempt is recorded) and injects
  EPERM; if the tracer is gone, strace's own filter in the worker makes them fail with ENOSYS.

`make seccomp` rewrites the files; a test checks they match this script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ALLOWED = """
accept accept4 access alarm arch_prctl bind brk capget capset chdir chmod chown clock_getres
clock_gettime clock_nanosleep close close_range connect copy_file_range creat dup dup2 dup3
epoll_create epoll_create1 epoll_ctl epoll_pwait epoll_pwait2 epoll_wait eventfd eventfd2 execve
execveat exit exit_group faccessat faccessat2 fadvise64 fallocate fanotify_mark fchdir fchmod
fchmodat fchown fchownat fcntl fdatasync fgetxattr flistxattr flock fork fremovexattr
fsetxattr fstat fstatfs fsync ftruncate futex futex_waitv futimesat getcpu getcwd getdents
getdents64 getegid geteuid getgid getgroups getitimer getpeername getpgid getpgrp getpid
getppid getpriority getrandom getresgid getresuid getrlimit get_robust_list getrusage getsid
getsockname getsockopt get_thread_area gettid gettimeofday getuid getxattr inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents
io_pgetevents ioprio_get ioprio_set io_setup io_submit kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lgetxattr link linkat listen listxattr
llistxattr lremovexattr lseek lsetxattr lstat madvise membarrier memfd_create memfd_secret
mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mprotect mq_getsetattr
mq_notify mq_open mq_timedreceive mq_timedsend mq_unlink mremap msgctl msgget msgrcv msgsnd
msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat open openat openat2
pause pidfd_getfd pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect
poll ppoll prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pwrite64 pwritev
pwritev2 read readahead readlink readlinkat readv recvfrom recvmmsg recvmsg remap_file_pages
removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_tgsigqueueinfo
sched_getaffinity sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min
sched_getscheduler sched_rr_get_interval sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop sendfile sendmmsg
sendmsg sendto setfsgid setfsuid setgid setgroups setitimer setpgid setpriority setregid
setresgid setresuid setreuid setrlimit set_robust_list setsid setsockopt set_thread_area
set_tid_address setuid setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd
signalfd4 socket socketpair splice stat statfs statx symlink symlinkat sync sync_file_range
syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime
timer_settime timerfd_create timerfd_gettime timerfd_settime times tkill truncate umask uname
unlink unlinkat utime utimensat utimes vfork vmsplice wait4 waitid waitpid write writev
""".split()

# Escape and privilege attempts: denied by the strict profile; under the tracer, let through
# to strace, which records them and injects EPERM (see runner/_tracer.py).
OBSERVED = """
mount umount2 pivot_root unshare setns bpf keyctl add_key request_key init_module
finit_module delete_module personality ptrace process_vm_readv process_vm_writev kcmp
perf_event_open userfaultfd open_by_handle_at kexec_load kexec_file_load acct swapon swapoff
reboot sethostname setdomainname chroot quotactl syslog iopl ioperm
""".split()

# Never allowed, traced or not.
FORBIDDEN = "io_uring_setup io_uring_enter io_uring_register".split()

EPERM = 1
ENOSYS = 38
# clone is allowed only without namespace flags (CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC |
# NEWUSER | NEWPID | NEWNET); clone3 hides its flags in memory, so it answers ENOSYS and libc
# falls back to clone.
CLONE_NAMESPACE_FLAGS = 0x7E020000


def profile(traced: bool) -> dict[str, object]:
    names = sorted(set(ALLOWED) | (set(OBSERVED) if traced else set()))
    assert not set(names) & set(FORBIDDEN)
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": names, "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            {"names": FORBIDDEN, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
        ],
    }


def render(traced: bool) -> str:
    return json.dumps(profile(traced), indent=1) + "\n"


def main(out_dir: Path) -> None:
    (out_dir / "airlock-strict.json").write_text(render(False))
    (out_dir / "airlock-traced.json").write_text(render(True))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
