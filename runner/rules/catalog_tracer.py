"""The tracer's rules for its former blind spots (sends, signals and reaches into another
process, fileless exec, paths that resolve into Airlock's own directories), as rows the rule
table (runner.rules.catalog) splices in after its own rules of each family: id, RuleName member,
title, Severity member, evidence. Plain data: this module imports nothing of Airlock."""

from __future__ import annotations

Row = tuple[str, str, str, str, str]

NETWORK: tuple[Row, ...] = (
    (
        "AL105",
        "UNSEEN_SOCKET_SEND",
        "Data sent on a socket the tracer never saw made",
        "HIGH",
        "tracer: sendto/sendmsg/sendmmsg without an address on a descriptor no traced call "
        "created (its destination is unknown)",
    ),
    (
        "AL106",
        "LOCAL_IPC",
        "Data sent between the model's own sockets or queues",
        "LOW",
        "tracer: sendto/sendmsg/sendmmsg on a socketpair or an unnamed Unix socket, msgsnd, "
        "mq_timedsend",
    ),
    (
        "AL107",
        "AIRLOCK_SOCKET_REACHED",
        "Airlock's own socket reached from inside",
        "HIGH",
        "tracer: a connect or send to the worker's gRPC or data-plane socket (only the host "
        "connects to them), or descriptors passed over them",
    ),
    (
        "AL108",
        "DESCRIPTOR_PASSED",
        "File descriptors passed over a socket",
        "MEDIUM",
        "tracer: sendmsg with SCM_RIGHTS on the model's own sockets (a descriptor received "
        "that way is one the tracer cannot name)",
    ),
)

PROCESS: tuple[Row, ...] = (
    (
        "AL203",
        "PROCESS_REACH",
        "Another process's memory or descriptors reached",
        "CRITICAL",
        "tracer: process_vm_readv/writev, pidfd_getfd, process_madvise (refused), or "
        "pidfd_open of a process outside the model's own",
    ),
    (
        "AL204",
        "PROCESS_HANDLE",
        "Handle opened on the model's own process",
        "LOW",
        "tracer: pidfd_open of the model's own process or one of its children",
    ),
    (
        "AL205",
        "FILELESS_EXEC",
        "Program run from memory",
        "CRITICAL",
        "tracer: execve/execveat of a memfd (directly, through /proc/self/fd or /dev/fd), or "
        "of a descriptor the tracer could not name",
    ),
)

FILES: tuple[Row, ...] = (
    (
        "AL305",
        "AIRLOCK_DIR_WRITE",
        "Write into Airlock's run or trace directory",
        "HIGH",
        "tracer: open for writing, creat, rename, unlink, link, symlink, chmod, mkdir, bind "
        "of a Unix socket, ... of a path that resolves under /airlock/run or /airlock/trace "
        "(after ., .., //, symlinks, /proc/self links, the cwd and directory descriptors), "
        "while loading or inferring",
    ),
    (
        "AL306",
        "UNRESOLVED_PATH",
        "Path or descriptor the tracer could not resolve",
        "MEDIUM",
        "tracer: a path relative to a directory descriptor or working directory no traced "
        "call made, cut, or through too many links; the tracer's bookkeeping past its caps",
    ),
    (
        "AL307",
        "IN_MEMORY_FILE",
        "In-memory file created",
        "LOW",
        "tracer: memfd_create (running one is AL205)",
    ),
)

PRIVILEGE: tuple[Row, ...] = (
    (
        "AL405",
        "TRACER_EVASION",
        "Tracer evasion attempted",
        "CRITICAL",
        "tracer: io_uring_setup/enter/register, whose operations no syscall tracer sees, and "
        "seccomp, a filter of the model's own (a user-notification listener could hold a call "
        "while its path is swapped; both refused by the tracer); a process killed by SIGSYS for "
        "a 32-bit (int 0x80) or x32 syscall, which the seccomp profile does not admit; a clone "
        "with CLONE_UNTRACED, whose child ptrace would not follow (refused by the profile, seen "
        "under a warm start's tracer)",
    ),
)
