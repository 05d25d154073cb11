/// What Linux says about each x86-64 syscall, by number (from
/// <asm/unistd_64.h> and the kernel's handlers): its name, whether it can
/// make the caller wait, whether what it writes may be the program's
/// output, and how it restarts after a signal. `SyscallTable` joins these
/// facts with detrec's handler for each number into one description; every
/// list the run loop needs (names for reports and `detrec dump`, which
/// calls restart, which flush the trace) comes from here.
public enum SyscallNames {
    public static func name(_ number: UInt64) -> String {
        if number == TimestampCounter.rdtscNumber { return "rdtsc" }
        if number == TimestampCounter.rdtscpNumber { return "rdtscp" }
        if number == Ptrace.stopNumber { return "ptrace-stop" }
        // What Linux runs for it (SyscallNumber): RAX's low 32 bits.
        return linux(SyscallNumber.dispatched(number))?.name ?? "syscall_\(number)"
    }

    /// Linux's facts for `number`; nil for a number x86-64 does not use.
    public static func linux(_ number: UInt64) -> LinuxSyscall? {
        number < UInt64(table.count) ? table[Int(number)] : nil
    }

    /// The highest number plus one: every number below is listed (some unused).
    public static var count: Int { table.count }

    private static func L(_ name: String, waits: LinuxSyscall.Waits = .no, output: Bool = false,
                          restart: LinuxSyscall.Restart = .never, note: String = "") -> LinuxSyscall {
        LinuxSyscall(name: name, waits: waits, producesOutput: output, restart: restart, note: note)
    }

    static let table: [LinuxSyscall?] = [
        L("read", waits: .yes, restart: .withSARestart),                // 0
        L("write", waits: .yes, output: true, restart: .withSARestart), // 1
        L("open", waits: .specialFiles, restart: .withSARestart),       // 2
        L("close"),                                                     // 3
        L("stat"),                                                      // 4
        L("fstat"),                                                     // 5
        L("lstat"),                                                     // 6
        L("poll", waits: .yes, restart: .restartBlock, note: "without a timeout: restarts unless a handler runs"), // 7
        L("lseek"),                                                     // 8
        L("mmap"),                                                      // 9
        L("mprotect"),                                                  // 10
        L("munmap"),                                                    // 11
        L("brk"),                                                       // 12
        L("rt_sigaction"),                                              // 13
        L("rt_sigprocmask"),                                            // 14
        L("rt_sigreturn"),                                              // 15
        L("ioctl", waits: .specialFiles, restart: .withSARestart),      // 16
        L("pread64", waits: .yes, restart: .withSARestart),             // 17
        L("pwrite64", waits: .yes, output: true, restart: .withSARestart), // 18
        L("readv", waits: .yes, restart: .withSARestart),               // 19
        L("writev", waits: .yes, output: true, restart: .withSARestart), // 20
        L("access"),                                                    // 21
        L("pipe"),                                                      // 22
        L("select", waits: .yes, restart: .unlessHandled),              // 23
        L("sched_yield"),                                               // 24
        L("mremap"),                                                    // 25
        L("msync"),                                                     // 26
        L("mincore"),                                                   // 27
        L("madvise"),                                                   // 28
        L("shmget"),                                                    // 29
        L("shmat"),                                                     // 30
        L("shmctl"),                                                    // 31
        L("dup"),                                                       // 32
        L("dup2"),                                                      // 33
        L("pause", waits: .yes, restart: .unlessHandled),               // 34
        L("nanosleep", waits: .yes, restart: .restartBlock),            // 35
        L("getitimer"),                                                 // 36
        L("alarm"),                                                     // 37
        L("setitimer"),                                                 // 38
        L("getpid"),                                                    // 39
        L("sendfile", waits: .yes, output: true, restart: .withSARestart), // 40
        L("socket"),                                                    // 41
        L("connect", waits: .yes, restart: .withSARestart),             // 42
        L("accept", waits: .yes, restart: .withSARestart),              // 43
        L("sendto", waits: .yes, output: true, restart: .withSARestart), // 44
        L("recvfrom", waits: .yes, restart: .withSARestart),            // 45
        L("sendmsg", waits: .yes, output: true, restart: .withSARestart), // 46
        L("recvmsg", waits: .yes, restart: .withSARestart),             // 47
        L("shutdown"),                                                  // 48
        L("bind"),                                                      // 49
        L("listen"),                                                    // 50
        L("getsockname"),                                               // 51
        L("getpeername"),                                               // 52
        L("socketpair"),                                                // 53
        L("setsockopt"),                                                // 54
        L("getsockopt"),                                                // 55
        L("clone"),                                                     // 56
        L("fork"),                                                      // 57
        L("vfork"),                                                     // 58
        L("execve"),                                                    // 59
        L("exit"),                                                      // 60
        L("wait4", waits: .yes, restart: .withSARestart),               // 61
        L("kill"),                                                      // 62
        L("uname"),                                                     // 63
        L("semget"),                                                    // 64
        L("semop", waits: .yes),                                        // 65
        L("semctl"),                                                    // 66
        L("shmdt"),                                                     // 67
        L("msgget"),                                                    // 68
        L("msgsnd", waits: .yes, restart: .unlessHandled),              // 69
        L("msgrcv", waits: .yes, restart: .unlessHandled),              // 70
        L("msgctl"),                                                    // 71
        L("fcntl", waits: .specialFiles, restart: .withSARestart),      // 72
        L("flock", waits: .specialFiles, restart: .withSARestart),      // 73
        L("fsync"),                                                     // 74
        L("fdatasync"),                                                 // 75
        L("truncate"),                                                  // 76
        L("ftruncate"),                                                 // 77
        L("getdents"),                                                  // 78
        L("getcwd"),                                                    // 79
        L("chdir"),                                                     // 80
        L("fchdir"),                                                    // 81
        L("rename"),                                                    // 82
        L("mkdir"),                                                     // 83
        L("rmdir"),                                                     // 84
        L("creat", waits: .specialFiles, restart: .withSARestart),      // 85
        L("link"),                                                      // 86
        L("unlink"),                                                    // 87
        L("symlink"),                                                   // 88
        L("readlink"),                                                  // 89
        L("chmod"),                                                     // 90
        L("fchmod"),                                                    // 91
        L("chown"),                                                     // 92
        L("fchown"),                                                    // 93
        L("lchown"),                                                    // 94
        L("umask"),                                                     // 95
        L("gettimeofday"),                                              // 96
        L("getrlimit"),                                                 // 97
        L("getrusage"),                                                 // 98
        L("sysinfo"),                                                   // 99
        L("times"),                                                     // 100
        L("ptrace"),                                                    // 101
        L("getuid"),                                                    // 102
        L("syslog"),                                                    // 103
        L("getgid"),                                                    // 104
        L("setuid"),                                                    // 105
        L("setgid"),                                                    // 106
        L("geteuid"),                                                   // 107
        L("getegid"),                                                   // 108
        L("setpgid"),                                                   // 109
        L("getppid"),                                                   // 110
        L("getpgrp"),                                                   // 111
        L("setsid"),                                                    // 112
        L("setreuid"),                                                  // 113
        L("setregid"),                                                  // 114
        L("getgroups"),                                                 // 115
        L("setgroups"),                                                 // 116
        L("setresuid"),                                                 // 117
        L("getresuid"),                                                 // 118
        L("setresgid"),                                                 // 119
        L("getresgid"),                                                 // 120
        L("getpgid"),                                                   // 121
        L("setfsuid"),                                                  // 122
        L("setfsgid"),                                                  // 123
        L("getsid"),                                                    // 124
        L("capget"),                                                    // 125
        L("capset"),                                                    // 126
        L("rt_sigpending"),                                             // 127
        L("rt_sigtimedwait", waits: .yes),                              // 128
        L("rt_sigqueueinfo"),                                           // 129
        L("rt_sigsuspend", waits: .yes, restart: .unlessHandled),       // 130
        L("sigaltstack"),                                               // 131
        L("utime"),                                                     // 132
        L("mknod"),                                                     // 133
        L("uselib"),                                                    // 134
        L("personality"),                                               // 135
        L("ustat"),                                                     // 136
        L("statfs"),                                                    // 137
        L("fstatfs"),                                                   // 138
        L("sysfs"),                                                     // 139
        L("getpriority"),                                               // 140
        L("setpriority"),                                               // 141
        L("sched_setparam"),                                            // 142
        L("sched_getparam"),                                            // 143
        L("sched_setscheduler"),                                        // 144
        L("sched_getscheduler"),                                        // 145
        L("sched_get_priority_max"),                                    // 146
        L("sched_get_priority_min"),                                    // 147
        L("sched_rr_get_interval"),                                     // 148
        L("mlock"),                                                     // 149
        L("munlock"),                                                   // 150
        L("mlockall"),                                                  // 151
        L("munlockall"),                                                // 152
        L("vhangup"),                                                   // 153
        L("modify_ldt"),                                                // 154
        L("pivot_root"),                                                // 155
        L("_sysctl"),                                                   // 156
        L("prctl"),                                                     // 157
        L("arch_prctl"),                                                // 158
        L("adjtimex"),                                                  // 159
        L("setrlimit"),                                                 // 160
        L("chroot"),                                                    // 161
        L("sync"),                                                      // 162
        L("acct"),                                                      // 163
        L("settimeofday"),                                              // 164
        L("mount"),                                                     // 165
        L("umount2"),                                                   // 166
        L("swapon"),                                                    // 167
        L("swapoff"),                                                   // 168
        L("reboot"),                                                    // 169
        L("sethostname"),                                               // 170
        L("setdomainname"),                                             // 171
        L("iopl"),                                                      // 172
        L("ioperm"),                                                    // 173
        L("create_module"),                                             // 174
        L("init_module"),                                               // 175
        L("delete_module"),                                             // 176
        L("get_kernel_syms"),                                           // 177
        L("query_module"),                                              // 178
        L("quotactl"),                                                  // 179
        L("nfsservctl"),                                                // 180
        L("getpmsg"),                                                   // 181
        L("putpmsg"),                                                   // 182
        L("afs_syscall"),                                               // 183
        L("tuxcall"),                                                   // 184
        L("security"),                                                  // 185
        L("gettid"),                                                    // 186
        L("readahead"),                                                 // 187
        L("setxattr"),                                                  // 188
        L("lsetxattr"),                                                 // 189
        L("fsetxattr"),                                                 // 190
        L("getxattr"),                                                  // 191
        L("lgetxattr"),                                                 // 192
        L("fgetxattr"),                                                 // 193
        L("listxattr"),                                                 // 194
        L("llistxattr"),                                                // 195
        L("flistxattr"),                                                // 196
        L("removexattr"),                                               // 197
        L("lremovexattr"),                                              // 198
        L("fremovexattr"),                                              // 199
        L("tkill"),                                                     // 200
        L("time"),                                                      // 201
        L("futex", waits: .yes, restart: .withSARestart, note: "a timed wait restarts through restart_block"), // 202
        L("sched_setaffinity"),                                         // 203
        L("sched_getaffinity"),                                         // 204
        L("set_thread_area"),                                           // 205
        L("io_setup"),                                                  // 206
        L("io_destroy"),                                                // 207
        L("io_getevents", waits: .yes),                                 // 208
        L("io_submit"),                                                 // 209
        L("io_cancel"),                                                 // 210
        L("get_thread_area"),                                           // 211
        L("lookup_dcookie"),                                            // 212
        L("epoll_create"),                                              // 213
        L("epoll_ctl_old"),                                             // 214
        L("epoll_wait_old"),                                            // 215
        L("remap_file_pages"),                                          // 216
        L("getdents64"),                                                // 217
        L("set_tid_address"),                                           // 218
        L("restart_syscall"),                                           // 219
        L("semtimedop", waits: .yes),                                   // 220
        L("fadvise64"),                                                 // 221
        L("timer_create"),                                              // 222
        L("timer_settime"),                                             // 223
        L("timer_gettime"),                                             // 224
        L("timer_getoverrun"),                                          // 225
        L("timer_delete"),                                              // 226
        L("clock_settime"),                                             // 227
        L("clock_gettime"),                                             // 228
        L("clock_getres"),                                              // 229
        L("clock_nanosleep", waits: .yes, restart: .restartBlock, note: "TIMER_ABSTIME: restarts unless a handler runs"), // 230
        L("exit_group"),                                                // 231
        L("epoll_wait", waits: .yes),                                   // 232
        L("epoll_ctl"),                                                 // 233
        L("tgkill"),                                                    // 234
        L("utimes"),                                                    // 235
        L("vserver"),                                                   // 236
        L("mbind"),                                                     // 237
        L("set_mempolicy"),                                             // 238
        L("get_mempolicy"),                                             // 239
        L("mq_open"),                                                   // 240
        L("mq_unlink"),                                                 // 241
        L("mq_timedsend", waits: .yes, restart: .withSARestart),        // 242
        L("mq_timedreceive", waits: .yes, restart: .withSARestart),     // 243
        L("mq_notify"),                                                 // 244
        L("mq_getsetattr"),                                             // 245
        L("kexec_load"),                                                // 246
        L("waitid", waits: .yes, restart: .withSARestart),              // 247
        L("add_key"),                                                   // 248
        L("request_key"),                                               // 249
        L("keyctl"),                                                    // 250
        L("ioprio_set"),                                                // 251
        L("ioprio_get"),                                                // 252
        L("inotify_init"),                                              // 253
        L("inotify_add_watch"),                                         // 254
        L("inotify_rm_watch"),                                          // 255
        L("migrate_pages"),                                             // 256
        L("openat", waits: .specialFiles, restart: .withSARestart),     // 257
        L("mkdirat"),                                                   // 258
        L("mknodat"),                                                   // 259
        L("fchownat"),                                                  // 260
        L("futimesat"),                                                 // 261
        L("newfstatat"),                                                // 262
        L("unlinkat"),                                                  // 263
        L("renameat"),                                                  // 264
        L("linkat"),                                                    // 265
        L("symlinkat"),                                                 // 266
        L("readlinkat"),                                                // 267
        L("fchmodat"),                                                  // 268
        L("faccessat"),                                                 // 269
        L("pselect6", waits: .yes, restart: .unlessHandled),            // 270
        L("ppoll", waits: .yes, restart: .unlessHandled),               // 271
        L("unshare"),                                                   // 272
        L("set_robust_list"),                                           // 273
        L("get_robust_list"),                                           // 274
        L("splice", waits: .yes, output: true, restart: .withSARestart), // 275
        L("tee", waits: .yes, output: true, restart: .withSARestart),   // 276
        L("sync_file_range"),                                           // 277
        L("vmsplice", waits: .yes, output: true, restart: .withSARestart), // 278
        L("move_pages"),                                                // 279
        L("utimensat"),                                                 // 280
        L("epoll_pwait", waits: .yes),                                  // 281
        L("signalfd"),                                                  // 282
        L("timerfd_create"),                                            // 283
        L("eventfd"),                                                   // 284
        L("fallocate"),                                                 // 285
        L("timerfd_settime"),                                           // 286
        L("timerfd_gettime"),                                           // 287
        L("accept4", waits: .yes, restart: .withSARestart),             // 288
        L("signalfd4"),                                                 // 289
        L("eventfd2"),                                                  // 290
        L("epoll_create1"),                                             // 291
        L("dup3"),                                                      // 292
        L("pipe2"),                                                     // 293
        L("inotify_init1"),                                             // 294
        L("preadv", waits: .yes, restart: .withSARestart),              // 295
        L("pwritev", waits: .yes, output: true, restart: .withSARestart), // 296
        L("rt_tgsigqueueinfo"),                                         // 297
        L("perf_event_open"),                                           // 298
        L("recvmmsg", waits: .yes, restart: .withSARestart),            // 299
        L("fanotify_init"),                                             // 300
        L("fanotify_mark"),                                             // 301
        L("prlimit64"),                                                 // 302
        L("name_to_handle_at"),                                         // 303
        L("open_by_handle_at"),                                         // 304
        L("clock_adjtime"),                                             // 305
        L("syncfs"),                                                    // 306
        L("sendmmsg", waits: .yes, output: true, restart: .withSARestart), // 307
        L("setns"),                                                     // 308
        L("getcpu"),                                                    // 309
        L("process_vm_readv"),                                          // 310
        L("process_vm_writev"),                                         // 311
        L("kcmp"),                                                      // 312
        L("finit_module"),                                              // 313
        L("sched_setattr"),                                             // 314
        L("sched_getattr"),                                             // 315
        L("renameat2"),                                                 // 316
        L("seccomp"),                                                   // 317
        L("getrandom"),                                                 // 318
        L("memfd_create"),                                              // 319
        L("kexec_file_load"),                                           // 320
        L("bpf"),                                                       // 321
        L("execveat"),                                                  // 322
        L("userfaultfd"),                                               // 323
        L("membarrier"),                                                // 324
        L("mlock2"),                                                    // 325
        L("copy_file_range", waits: .yes, restart: .withSARestart),     // 326
        L("preadv2", waits: .yes, restart: .withSARestart),             // 327
        L("pwritev2", waits: .yes, output: true, restart: .withSARestart), // 328
        L("pkey_mprotect"),                                             // 329
        L("pkey_alloc"),                                                // 330
        L("pkey_free"),                                                 // 331
        L("statx"),                                                     // 332
        L("io_pgetevents", waits: .yes),                                // 333
        L("rseq"),                                                      // 334
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        nil,
        L("pidfd_send_signal"),                                         // 424
        L("io_uring_setup"),                                            // 425
        L("io_uring_enter"),                                            // 426
        L("io_uring_register"),                                         // 427
        L("open_tree"),                                                 // 428
        L("move_mount"),                                                // 429
        L("fsopen"),                                                    // 430
        L("fsconfig"),                                                  // 431
        L("fsmount"),                                                   // 432
        L("fspick"),                                                    // 433
        L("pidfd_open"),                                                // 434
        L("clone3"),                                                    // 435
        L("close_range"),                                               // 436
        L("openat2", waits: .specialFiles, restart: .withSARestart),    // 437
        L("pidfd_getfd"),                                               // 438
        L("faccessat2"),                                                // 439
        L("process_madvise"),                                           // 440
        L("epoll_pwait2", waits: .yes),                                 // 441
        L("mount_setattr"),                                             // 442
        L("quotactl_fd"),                                               // 443
        L("landlock_create_ruleset"),                                   // 444
        L("landlock_add_rule"),                                         // 445
        L("landlock_restrict_self"),                                    // 446
        L("memfd_secret"),                                              // 447
        L("process_mrelease"),                                          // 448
        L("futex_waitv", waits: .yes, restart: .withSARestart),         // 449
        L("set_mempolicy_home_node"),                                   // 450
    ]
}

/// One syscall as Linux defines it, independent of how detrec serves it.
public struct LinuxSyscall: Equatable, Sendable {
    /// Whether the call can make its caller wait for something outside it
    /// (another thread or process, a device, the clock).
    public enum Waits: Equatable, Sendable {
        case no
        /// It may wait by its nature (read of a pipe, poll, a sleep, wait4).
        case yes
        /// Only on special files (open of a FIFO, a lock, a tty ioctl):
        /// the trace is not flushed before each one.
        case specialFiles
    }

    /// What a signal that interrupts the call does to it (the kernel's
    /// -ERESTART* codes; see kernel/signal.c, arch/x86/kernel/signal.c).
    public enum Restart: Equatable, Sendable {
        /// It fails with EINTR.
        case never
        /// ERESTARTSYS: it runs again after a handler with SA_RESTART, or
        /// when no handler runs; EINTR after a handler without SA_RESTART.
        case withSARestart
        /// ERESTARTNOHAND: it runs again only when no handler runs (the
        /// signal was ignored or stopped and continued the process).
        case unlessHandled
        /// ERESTART_RESTARTBLOCK: as `unlessHandled`, and it resumes
        /// through restart_syscall with the time it had left.
        case restartBlock
    }

    public var name: String
    public var waits: Waits
    /// What it writes may be what the user sees (the trace is flushed after).
    public var producesOutput: Bool
    public var restart: Restart
    /// A detail of Linux's behaviour worth a line in docs/syscalls.md.
    public var note: String
}
