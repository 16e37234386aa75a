/* The declarations cffi reads (cdef-clean: no #include, no #if, no macros).
 *
 * Python builds one struct iso_plan; iso_spawn() executes it.  Ops run in
 * order in the child, between clone3() and execve().  String and array
 * arguments are byte offsets into the plan's arena (0 means "none"; the
 * arena starts with a NUL byte so that offset 0 is never a real string).
 */

enum iso_op_kind {
    ISO_OP_SETNS = 1,        /* fd, val0 = nstype */
    ISO_OP_UNSHARE,          /* val0 = CLONE_NEW* flags */
    ISO_OP_MOUNT,            /* arg0 src, arg1 target, arg2 fstype, arg3 data, val0 MS_* */
    ISO_OP_BIND,             /* open_tree(arg0) + move_mount(arg1); flags ISO_F_RECURSIVE */
    ISO_OP_MOUNT_SETATTR,    /* arg1 target, val0 attr_set, val1 attr_clr, val2 propagation */
    ISO_OP_MKDIR,            /* arg0 path, val0 mode; ISO_F_EXIST_OK */
    ISO_OP_MKNOD,            /* arg0 path, val0 mode, val1 dev */
    ISO_OP_SYMLINK,          /* arg0 target, arg1 link path */
    ISO_OP_WRITE_FILE,       /* arg0 path, arg1 data, arg2 data length, val0 mode, val1 O_* */
    ISO_OP_PIVOT_ROOT,       /* arg0 new root; ISO_F_CHROOT_FALLBACK */
    ISO_OP_CHROOT,           /* arg0 path */
    ISO_OP_SETHOSTNAME,      /* arg0 name, arg1 length */
    ISO_OP_SETDOMAINNAME,    /* arg0 name, arg1 length */
    ISO_OP_CHDIR,            /* arg0 path, or fd >= 0 for fchdir */
    ISO_OP_UMASK,            /* val0 mask */
    ISO_OP_SETRLIMIT,        /* val0 resource, val1 soft, val2 hard */
    ISO_OP_SETSID,
    ISO_OP_SETPGID,
    ISO_OP_SETCTTY,          /* fd: the terminal, made stdio 0-2 by an earlier FDMAP */
    ISO_OP_FDMAP,            /* arg0 int32 pairs (src, dst), arg1 pair count */
    ISO_OP_CLOSE_FDS,        /* arg0 sorted int32 keep list, arg1 count */
    ISO_OP_SETGROUPS,        /* arg0 uint32 gid array, arg1 count */
    ISO_OP_SETRESGID,        /* val0 rgid, val1 egid, val2 sgid */
    ISO_OP_SETRESUID,        /* val0 ruid, val1 euid, val2 suid */
    ISO_OP_KEEPCAPS,         /* val0 0 or 1 */
    ISO_OP_CAP_BOUND,        /* val0 mask of capabilities to drop, val1 cap_last_cap */
    ISO_OP_CAPSET,           /* val0 effective, val1 permitted, val2 inheritable */
    ISO_OP_CAP_AMBIENT,      /* val0 mask of capabilities to raise, val1 cap_last_cap */
    ISO_OP_NO_NEW_PRIVS,
    ISO_OP_PDEATHSIG,        /* val0 signal */
    ISO_OP_SECCOMP,          /* arg0 struct sock_filter array, arg1 filter count, val0 flags */
    ISO_OP_LOOPBACK_UP,
    ISO_OP_EXECVE,           /* arg0 NUL-separated candidate paths, arg1 count */
    ISO_OP_EXECVEAT,         /* fd, arg0 path ("" with AT_EMPTY_PATH), val0 AT_* */
    ISO_OP_ROOT_STAGE,       /* arg0 base dir: tmpfs there, pivot to it, old root at /oldroot */
    ISO_OP_ROOT_MKDIR,       /* arg0 root, arg1 dir in it, arg2 name, arg3 link; val0 mode, val1 type */
    ISO_OP_ROOT_BIND,        /* arg0 src root, arg1 src, arg2 dst root, arg3 dst; val0 set, val1 clr */
    ISO_OP_ROOT_MOUNT,       /* arg0 fstype, arg1 source, arg2 root, arg3 dst; val0 attrs, val1/2 opts */
    ISO_OP_ROOT_MASK,        /* arg0 root, arg1 path, arg2 null device */
    ISO_OP_ROOT_CHDIR,       /* arg0 root, arg1 path */
    ISO_OP_SET_DUMPABLE,     /* val0 0 or 1 */
    ISO_OP_EXEC_GATE,        /* fd to read one byte from; arg0/arg1 exec candidates to check first */
    ISO_OP_CONSOLE,          /* fd: unix socket for the pty master; val0 rows, val1 cols, val2 bind /dev/console */
    ISO_OP_CGROUP_JOIN,      /* write "0" to each of the plan's join_fds (tasks / cgroup.procs files) */
    ISO_OP_NETNS_JOIN,       /* ISO_PLAN_NETNS_LATE: receive the new network namespace, setns into it */
    ISO_OP_FORK,             /* ISO_PLAN_FORK: fd a pid namespace to join or -1, val0 CLONE_NEW*
                                flags: fork the process that runs the rest of the plan */
    ISO_OP_KIND_MAX
};

enum iso_op_flags {
    ISO_F_RECURSIVE = 1,
    ISO_F_EXIST_OK = 2,
    ISO_F_CHROOT_FALLBACK = 4,
    ISO_F_READONLY = 8
};

enum iso_plan_flags {
    ISO_PLAN_HOLD = 1,        /* iso_spawn() returns with the child waiting; iso_release() */
    ISO_PLAN_FORK = 2,        /* the plan holds an ISO_OP_FORK: the child program forks the
                                 process that becomes the spawned one (see spawn.c) */
    ISO_PLAN_LEGACY_CLONE = 4,/* use clone(2) even where clone3(2) exists */
    ISO_PLAN_SETGROUPS_DENY = 8,
    ISO_PLAN_SYNC = 16,       /* the child waits for the parent's go-ahead */
    ISO_PLAN_TIMING = 32,     /* record phase timestamps in struct iso_child */
    ISO_PLAN_NETNS_LATE = 64, /* the new network namespace is not made at clone: a thread of
                                 the parent makes it while the child runs its first ops, and
                                 sends it to ISO_OP_NETNS_JOIN (no new user namespace) */
    ISO_PLAN_NETNS_LO = 128,  /* with ISO_PLAN_NETNS_LATE: that thread brings lo up */
    ISO_PLAN_CLOSE_FDS = 256  /* the child program inherits only keep_fds (and 0-2), so that no
                                 other fd of the caller's is open while it looks paths up */
};

enum iso_child_stage {
    ISO_STAGE_NONE = 0,
    ISO_STAGE_PIPE, ISO_STAGE_STACK, ISO_STAGE_CLONE, ISO_STAGE_UID_MAP,
    ISO_STAGE_GID_MAP, ISO_STAGE_SETGROUPS, ISO_STAGE_RELEASE,
    ISO_STAGE_REPORT, ISO_STAGE_PIDNS, ISO_STAGE_NETNS,
    ISO_STAGE_PLAN,       /* writing the plan for the child program */
    ISO_STAGE_CHILD,      /* starting the child program (execveat of the sealed helper) */
    ISO_STAGE_FORK        /* the child program ended before it forked into the pid namespace */
};

struct iso_op {
    uint32_t kind;
    uint32_t flags;
    int32_t fd;
    int32_t reserved;
    uint32_t arg0, arg1, arg2, arg3;
    uint64_t val0, val1, val2, val3;
};

struct iso_plan {
    uint64_t clone_flags;        /* CLONE_NEW* only */
    uint32_t flags;              /* ISO_PLAN_* */
    int32_t cgroup_fd;           /* cgroup v2 directory for CLONE_INTO_CGROUP, or -1 */
    const struct iso_op *ops;
    uint32_t n_ops;
    uint32_t arena_len;
    const char *arena;
    char **argv;
    char **envp;                 /* NULL: the parent's environ */
    const char *uid_map;         /* written to /proc/<pid>/uid_map by the parent, or NULL */
    const char *gid_map;
    const int32_t *join_fds;     /* tasks files (v1) ISO_OP_CGROUP_JOIN writes "0" to */
    uint32_t n_join_fds;
    int32_t netns_fd;            /* a network namespace to be born in (entered around the clone,
                                    or by ISO_OP_FORK before its fork), or -1 */
    const int32_t *keep_fds;     /* ISO_PLAN_CLOSE_FDS: every fd the ops name (sources of
                                    ISO_OP_FDMAP, namespace and cgroup fds, ...) */
    uint32_t n_keep_fds;
    uint64_t *op_times;          /* ISO_PLAN_TIMING: n_ops + 1 slots for CLOCK_MONOTONIC ns, slot 0
                                    when the child program starts, slot i + 1 after op i; filled
                                    once the child has exec'd or failed.  Else NULL. */
};

/* A report with err == 0 is not a failure: an ISO_OP_EXEC_GATE child is
 * ready and waiting for its go-ahead, after which it no longer reports. */
struct iso_report {
    int32_t step;
    int32_t kind;
    int32_t err;
    int32_t reserved;
};

struct iso_child {
    int32_t pid;
    int32_t pidfd;
    int32_t report_fd;           /* read end; -1 once consumed */
    int32_t sync_fd;             /* write end while the child is held, else -1 */
    int32_t stage;               /* on failure: the parent-side ISO_STAGE_* that failed */
    int32_t clone3_used;
    int32_t plan_fd;             /* the plan as the child program reads it (memfd), or -1 */
    int32_t helper_pid;          /* ISO_PLAN_FORK: the child program's own pid until it forked */
    struct iso_report report;
    int32_t report_len;          /* bytes read from the report pipe: 0 = exec succeeded */
    int32_t netns_sock;          /* ISO_PLAN_NETNS_LATE: our end of the socket to the child, or -1 */
    uint64_t t_start, t_cloned, t_mapped, t_released, t_done;  /* CLOCK_MONOTONIC ns */
};

int iso_spawn(const struct iso_plan *plan, struct iso_child *child);
int iso_helper_load(const char *path);
int iso_release(const struct iso_plan *plan, struct iso_child *child);
void iso_abandon(struct iso_child *child);
int iso_setns(int fd, int nstype);
int iso_unshare(int flags);

/* host.c: calls the parent makes for itself (Namespace, probe). 0 or -errno. */
enum iso_syscall {
    ISO_SYS_OPEN_TREE = 1, ISO_SYS_MOVE_MOUNT, ISO_SYS_FSOPEN, ISO_SYS_MOUNT_SETATTR,
    ISO_SYS_CLOSE_RANGE, ISO_SYS_PIDFD_OPEN, ISO_SYS_CLONE3, ISO_SYS_FSCONFIG, ISO_SYS_FSMOUNT
};
int iso_mount(const char *source, const char *target, const char *fstype, uint64_t flags,
              const char *data);
int iso_umount2(const char *target, int flags);
int iso_syscall_errno(int which, int64_t a, int64_t b, int64_t c, int64_t d, int64_t e);
int iso_set_dumpable(int on);
int iso_detached_tmpfs(const char *mode);
int iso_mount_fd_setattr(int fd, uint64_t attr_set);
int iso_open_in_root(int dirfd, const char *path, int flags);

/* bpf.c: the cgroup v2 device controller (a BPF_PROG_TYPE_CGROUP_DEVICE program).
 * Each returns -errno on failure; load returns the program fd (O_CLOEXEC). */
int iso_bpf_load_device_prog(const void *insns, uint32_t n_insns, char *log, uint32_t log_size);
int iso_bpf_attach_device_prog(int prog_fd, int cgroup_fd);
int iso_bpf_detach_device_prog(int prog_fd, int cgroup_fd);
