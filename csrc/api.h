/* The declarations cffi reads (cdef-clean: no #include, no #if, no macros).
 *
 * Python builds one struct iso_plan; iso_spawn() executes it.  Ops run in
 * order in the child, between clone3() and execve().  String and array
 * arguments are byte offsets into the plan's arena (0 means "none"; the
 * arena starts with a NUL byte so that offset 0 is never a real string).
 */

enum iso_op_kind {
    ISO_OP_SETNS = 1,     /* struct iso_op_setns; fd: the namespace */
    ISO_OP_UNSHARE,       /* struct iso_op_unshare */
    ISO_OP_MOUNT,         /* struct iso_op_mount */
    ISO_OP_BIND,          /* struct iso_op_bind: open_tree(source) + move_mount(target) */
    ISO_OP_MOUNT_SETATTR, /* struct iso_op_mount_setattr */
    ISO_OP_MKDIR,         /* struct iso_op_mkdir; ISO_F_EXIST_OK */
    ISO_OP_MKNOD,         /* struct iso_op_mknod; ISO_F_EXIST_OK */
    ISO_OP_SYMLINK,       /* struct iso_op_symlink; ISO_F_EXIST_OK */
    ISO_OP_WRITE_FILE,    /* struct iso_op_write_file */
    ISO_OP_PIVOT_ROOT,    /* struct iso_op_path: the new root; ISO_F_CHROOT_FALLBACK */
    ISO_OP_CHROOT,        /* struct iso_op_path */
    ISO_OP_SETHOSTNAME,   /* struct iso_op_name */
    ISO_OP_SETDOMAINNAME, /* struct iso_op_name */
    ISO_OP_CHDIR,         /* struct iso_op_path, or fd >= 0 for fchdir */
    ISO_OP_UMASK,         /* struct iso_op_umask */
    ISO_OP_SETRLIMIT,     /* struct iso_op_setrlimit */
    ISO_OP_SETSID,        /* no slots */
    ISO_OP_SETPGID,       /* no slots */
    ISO_OP_SETCTTY,       /* fd: the terminal, made stdio 0-2 by an earlier FDMAP */
    ISO_OP_FDMAP,         /* struct iso_op_fdmap */
    ISO_OP_CLOSE_FDS,     /* struct iso_op_close_fds */
    ISO_OP_SETGROUPS,     /* struct iso_op_setgroups */
    ISO_OP_SETRESGID,     /* struct iso_op_setresid */
    ISO_OP_SETRESUID,     /* struct iso_op_setresid */
    ISO_OP_KEEPCAPS,      /* struct iso_op_switch */
    ISO_OP_CAP_BOUND,     /* struct iso_op_cap_mask: the capabilities to drop */
    ISO_OP_CAPSET,        /* struct iso_op_capset */
    ISO_OP_CAP_AMBIENT,   /* struct iso_op_cap_mask: the capabilities to raise */
    ISO_OP_NO_NEW_PRIVS,  /* no slots */
    ISO_OP_PDEATHSIG,     /* struct iso_op_pdeathsig */
    ISO_OP_SECCOMP,       /* struct iso_op_seccomp */
    ISO_OP_LOOPBACK_UP,   /* no slots */
    ISO_OP_EXECVE,        /* struct iso_op_exec */
    ISO_OP_EXECVEAT,      /* struct iso_op_execveat; fd: the program */
    ISO_OP_ROOT_STAGE,    /* struct iso_op_root_stage; ISO_F_CHROOT_FALLBACK */
    ISO_OP_ROOT_MKDIR,    /* struct iso_op_root_mkdir */
    ISO_OP_ROOT_BIND,     /* struct iso_op_root_bind; ISO_F_RECURSIVE, _READONLY, _EXIST_OK */
    ISO_OP_ROOT_MOUNT,    /* struct iso_op_root_mount; ISO_F_EXIST_OK; fd: a tree to clone */
    ISO_OP_ROOT_MASK,     /* struct iso_op_root_mask */
    ISO_OP_ROOT_CHDIR,    /* struct iso_op_root_chdir */
    ISO_OP_SET_DUMPABLE,  /* struct iso_op_switch */
    ISO_OP_EXEC_GATE,     /* struct iso_op_exec: checked first; fd: read one byte from it */
    ISO_OP_CONSOLE,       /* struct iso_op_console; fd: the unix socket for the pty master */
    ISO_OP_CGROUP_JOIN,   /* no slots: write "0" to each of the plan's join_fds */
    /* No slots: ISO_PLAN_NETNS_LATE, receive the new network namespace, setns into it. */
    ISO_OP_NETNS_JOIN,
    /* struct iso_op_fork; ISO_PLAN_FORK; fd: a pid namespace to join or -1.  Forks the
     * process that runs the rest of the plan. */
    ISO_OP_FORK,
    /* Batched ops: one op for many entries of one kind, each reported by its
     * index (struct iso_report.entry) when it fails. */
    ISO_OP_ROOT_MKDIRS, /* struct iso_op_root_mkdirs */
    ISO_OP_ROOT_BINDS,  /* struct iso_op_root_binds; flags as ISO_OP_ROOT_BIND */
    ISO_OP_ROOT_MASKS,  /* struct iso_op_root_masks; fd: an empty tmpfs to clone, or -1 */
    ISO_OP_KIND_MAX
};

/* What an ISO_OP_ROOT_MKDIR or ISO_OP_ROOT_MKDIRS entry makes.  A name that
 * exists already, of any type, is left alone, but for CONTENTS: there it
 * fails (EEXIST). */
enum iso_entry_type {
    ISO_ENTRY_DIR = 0,
    ISO_ENTRY_FILE = 1,     /* an empty regular file (a mount point) */
    ISO_ENTRY_SYMLINK = 2,  /* link: its target */
    ISO_ENTRY_CONTENTS = 3, /* a new regular file with contents: it must not exist (mkdirs only) */
    ISO_ENTRY_CHARDEV = 4   /* a character device (mkdirs only) */
};

/* The part of an op that failed (struct iso_report.substep). */
enum iso_substep {
    ISO_SUB_NONE = 0,    /* the op is one system call, or the part is not told */
    ISO_SUB_OPEN_ROOT,   /* open a root the paths are resolved in */
    ISO_SUB_OPEN_SOURCE, /* open the source of a bind */
    ISO_SUB_CLONE,       /* open_tree(OPEN_TREE_CLONE): copy the mount */
    ISO_SUB_SETATTR,     /* mount_setattr() on the copy */
    ISO_SUB_OPEN_TARGET, /* open the place to mount on */
    ISO_SUB_MOVE,        /* move_mount(): attach it there */
    ISO_SUB_OPEN_DIR,    /* open the directory the entries are made in */
    ISO_SUB_CREATE,      /* mkdirat, mknodat, symlinkat or openat(O_CREAT | O_EXCL) */
    ISO_SUB_WRITE,       /* write a new file's contents */
    ISO_SUB_FSOPEN,      /* fsopen(): the filesystem type */
    ISO_SUB_FSCONFIG,    /* fsconfig(): a mount option, or the source */
    ISO_SUB_FSCREATE,    /* fsconfig(FSCONFIG_CMD_CREATE): make the superblock */
    ISO_SUB_FSMOUNT,     /* fsmount() */
    ISO_SUB_OPEN_NULL,   /* open the null device */
    ISO_SUB_CHECK_NULL,  /* the null device is not the character device 1:3 (ENODEV) */
    ISO_SUB_STAT_TARGET, /* fstat() of the target */
    ISO_SUB_MOUNT,       /* mount(2) */
    ISO_SUB_MKDIR,       /* mkdir(2) */
    ISO_SUB_PIVOT,       /* pivot_root(2) */
    ISO_SUB_CHDIR,       /* chdir(2) or fchdir(2) */
    ISO_SUB_UMOUNT,      /* umount2(2) */
    ISO_SUB_MAX
};

/* Each kind's slots.  An op is a 16-byte head (struct iso_op) and 48 bytes
 * of slots: four uint32_t, then four uint64_t.  A uint32_t slot holds an
 * arena offset (a string or an array; 0 = none) or a small count.  Every
 * layout below has that shape, its unused slots named by their place
 * (_a0-_a3, _v0-_v3), so that each slot means one thing per kind. */
struct iso_op_setns {
    uint32_t _a[4];
    uint64_t nstype, _v1, _v2, _v3;
};
struct iso_op_unshare {
    uint32_t _a[4];
    uint64_t clone_flags, _v1, _v2, _v3;
};
/* mount(2); flags: MS_* */
struct iso_op_mount {
    uint32_t source, target, fstype, data;
    uint64_t flags, _v1, _v2, _v3;
};
struct iso_op_bind {
    uint32_t source, target, _a2, _a3;
    uint64_t _v[4];
};
/* mount_setattr(2); ISO_F_RECURSIVE */
struct iso_op_mount_setattr {
    uint32_t _a0, target, _a2, _a3;
    uint64_t attr_set, attr_clr, propagation, _v3;
};
struct iso_op_mkdir {
    uint32_t path, _a1, _a2, _a3;
    uint64_t mode, _v1, _v2, _v3;
};
struct iso_op_mknod {
    uint32_t path, _a1, _a2, _a3;
    uint64_t mode, dev, _v2, _v3;
};
struct iso_op_symlink {
    uint32_t target, link, _a2, _a3;
    uint64_t _v[4];
};
/* data: len bytes; oflags: O_* besides O_WRONLY (O_CREAT, O_TRUNC ...) */
struct iso_op_write_file {
    uint32_t path, data, len, _a3;
    uint64_t mode, oflags, _v2, _v3;
};
struct iso_op_path {
    uint32_t path, _a1, _a2, _a3;
    uint64_t _v[4];
};
struct iso_op_name {
    uint32_t name, len, _a2, _a3;
    uint64_t _v[4];
};
struct iso_op_umask {
    uint32_t _a[4];
    uint64_t mask, _v1, _v2, _v3;
};
struct iso_op_setrlimit {
    uint32_t _a[4];
    uint64_t resource, soft, hard, _v3;
};
/* pairs: n_pairs of int32_t (source, target) */
struct iso_op_fdmap {
    uint32_t pairs, n_pairs, _a2, _a3;
    uint64_t _v[4];
};
/* keep: n_keep int32_t, sorted */
struct iso_op_close_fds {
    uint32_t keep, n_keep, _a2, _a3;
    uint64_t _v[4];
};
/* gids: n_gids uint32_t */
struct iso_op_setgroups {
    uint32_t gids, n_gids, _a2, _a3;
    uint64_t _v[4];
};
struct iso_op_setresid {
    uint32_t _a[4];
    uint64_t real, effective, saved, _v3;
};
/* on: 0 or 1 */
struct iso_op_switch {
    uint32_t _a[4];
    uint64_t on, _v1, _v2, _v3;
};
/* mask: bit n for capability n, up to last_cap */
struct iso_op_cap_mask {
    uint32_t _a[4];
    uint64_t mask, last_cap, _v2, _v3;
};
struct iso_op_capset {
    uint32_t _a[4];
    uint64_t effective, permitted, inheritable, _v3;
};
struct iso_op_pdeathsig {
    uint32_t _a[4];
    uint64_t signal, _v1, _v2, _v3;
};
/* filter: len struct sock_filter; flags: seccomp(2)'s, 0 = prctl(2) */
struct iso_op_seccomp {
    uint32_t filter, len, _a2, _a3;
    uint64_t flags, _v1, _v2, _v3;
};
/* paths: n_paths NUL-terminated candidates, tried in order */
struct iso_op_exec {
    uint32_t paths, n_paths, _a2, _a3;
    uint64_t _v[4];
};
/* path 0: "" (with AT_EMPTY_PATH in at_flags) */
struct iso_op_execveat {
    uint32_t path, _a1, _a2, _a3;
    uint64_t at_flags, _v1, _v2, _v3;
};
/* bind_console: also bind the terminal on /dev/console */
struct iso_op_console {
    uint32_t _a[4];
    uint64_t rows, cols, bind_console, _v3;
};
/* clone_flags: CLONE_NEW* for the fork */
struct iso_op_fork {
    uint32_t _a[4];
    uint64_t clone_flags, _v1, _v2, _v3;
};

/* The root ops (ops_root.c) resolve every path inside a root directory,
 * itself a path (0: the path is taken as is). */
struct iso_op_root_stage {
    uint32_t base, _a1, _a2, _a3;
    uint64_t _v[4];
};
/* name (one component) in dir; type: ISO_ENTRY_DIR, _FILE or _SYMLINK (link:
 * its target) */
struct iso_op_root_mkdir {
    uint32_t root, dir, name, link;
    uint64_t mode, type, _v2, _v3;
};
/* source inside src_root onto target inside root */
struct iso_op_root_bind {
    uint32_t src_root, source, root, target;
    uint64_t attr_set, attr_clr, _v2, _v3;
};
/* A new fstype (fsopen ... fsmount), or with fd >= 0 a clone of that tree;
 * attrs: MOUNT_ATTR_*; options: n_options of (type 's' or 'f', key NUL,
 * value NUL). */
struct iso_op_root_mount {
    uint32_t fstype, source, root, target;
    uint64_t attrs, options, n_options, _v3;
};
/* null: the null device, inside null_root (0: inside root) */
struct iso_op_root_mask {
    uint32_t root, path, null, null_root;
    uint64_t _v[4];
};
struct iso_op_root_chdir {
    uint32_t root, path, _a2, _a3;
    uint64_t _v[4];
};
/* count entries in dir, each: type (uint8_t), mode (uint16_t LE), name NUL,
 * then by type: DIR and FILE a NUL; SYMLINK the target and NUL; CONTENTS
 * their length (uint32_t LE) and the bytes; CHARDEV its dev_t (uint64_t LE). */
struct iso_op_root_mkdirs {
    uint32_t root, dir, entries, _a3;
    uint64_t _v0, _v1, count, _v3;
};
/* pairs: count of (source NUL, target NUL) */
struct iso_op_root_binds {
    uint32_t src_root, pairs, root, _a3;
    uint64_t attr_set, attr_clr, count, _v3;
};
/* paths: count of NUL-terminated paths */
struct iso_op_root_masks {
    uint32_t root, paths, null, null_root;
    uint64_t _v0, _v1, count, _v3;
};

enum iso_op_flags {
    ISO_F_RECURSIVE = 1,
    ISO_F_EXIST_OK = 2,
    ISO_F_CHROOT_FALLBACK = 4,
    ISO_F_READONLY = 8
};

enum iso_plan_flags {
    ISO_PLAN_HOLD = 1, /* iso_spawn() returns with the child waiting; iso_release() */
    /* The plan holds an ISO_OP_FORK: the child program forks the process that
     * becomes the spawned one (see child.c). */
    ISO_PLAN_FORK = 2,
    ISO_PLAN_LEGACY_CLONE = 4, /* use clone(2) even where clone3(2) exists */
    ISO_PLAN_SETGROUPS_DENY = 8,
    ISO_PLAN_SYNC = 16,   /* the child waits for the parent's go-ahead */
    ISO_PLAN_TIMING = 32, /* record phase timestamps in struct iso_child */
    /* The new network namespace is not made at clone: a thread of the parent
     * makes it while the child runs its first ops, and sends it to
     * ISO_OP_NETNS_JOIN (no new user namespace). */
    ISO_PLAN_NETNS_LATE = 64,
    ISO_PLAN_NETNS_LO = 128, /* with ISO_PLAN_NETNS_LATE: that thread brings lo up */
    /* The child program inherits only keep_fds (and 0-2), so that no other fd
     * of the caller's is open while it looks paths up. */
    ISO_PLAN_CLOSE_FDS = 256
};

enum iso_child_stage {
    ISO_STAGE_NONE = 0,
    ISO_STAGE_PIPE,
    ISO_STAGE_STACK,
    ISO_STAGE_CLONE,
    ISO_STAGE_UID_MAP,
    ISO_STAGE_GID_MAP,
    ISO_STAGE_SETGROUPS,
    ISO_STAGE_RELEASE,
    ISO_STAGE_REPORT,
    ISO_STAGE_PIDNS,
    ISO_STAGE_NETNS,
    ISO_STAGE_PLAN,  /* writing the plan for the child program */
    ISO_STAGE_CHILD, /* starting the child program (execveat of the sealed helper) */
    ISO_STAGE_FORK   /* the child program ended before it forked into the pid namespace */
};

struct iso_op {
    uint32_t kind;  /* enum iso_op_kind: which member of the union below */
    uint32_t flags; /* enum iso_op_flags */
    int32_t fd;     /* an fd the op uses (borrowed from the caller), or -1 */
    int32_t reserved;
    union {
        struct iso_op_setns setns;
        struct iso_op_unshare unshare;
        struct iso_op_mount mount;
        struct iso_op_bind bind;
        struct iso_op_mount_setattr mount_setattr;
        struct iso_op_mkdir mkdir;
        struct iso_op_mknod mknod;
        struct iso_op_symlink symlink;
        struct iso_op_write_file write_file;
        struct iso_op_path pivot_root, chroot, chdir;
        struct iso_op_name sethostname, setdomainname;
        struct iso_op_umask umask;
        struct iso_op_setrlimit setrlimit;
        struct iso_op_fdmap fdmap;
        struct iso_op_close_fds close_fds;
        struct iso_op_setgroups setgroups;
        struct iso_op_setresid setresgid, setresuid;
        struct iso_op_switch keepcaps, set_dumpable;
        struct iso_op_cap_mask cap_bound, cap_ambient;
        struct iso_op_capset capset;
        struct iso_op_pdeathsig pdeathsig;
        struct iso_op_seccomp seccomp;
        struct iso_op_exec execve, exec_gate;
        struct iso_op_execveat execveat;
        struct iso_op_console console;
        struct iso_op_fork fork;
        struct iso_op_root_stage root_stage;
        struct iso_op_root_mkdir root_mkdir;
        struct iso_op_root_bind root_bind;
        struct iso_op_root_mount root_mount;
        struct iso_op_root_mask root_mask;
        struct iso_op_root_chdir root_chdir;
        struct iso_op_root_mkdirs root_mkdirs;
        struct iso_op_root_binds root_binds;
        struct iso_op_root_masks root_masks;
    };
};

struct iso_plan {
    uint64_t clone_flags; /* CLONE_NEW* only */
    uint32_t flags;       /* ISO_PLAN_* */
    int32_t cgroup_fd;    /* cgroup v2 directory for CLONE_INTO_CGROUP, or -1 */
    const struct iso_op *ops;
    uint32_t n_ops;
    uint32_t arena_len;
    const char *arena;
    char **argv;
    char **envp;         /* NULL: the parent's environ */
    const char *uid_map; /* written to /proc/<pid>/uid_map by the parent, or NULL */
    const char *gid_map;
    const int32_t *join_fds; /* tasks files (v1) ISO_OP_CGROUP_JOIN writes "0" to */
    uint32_t n_join_fds;
    /* A network namespace to be born in (entered around the clone, or by
     * ISO_OP_FORK before its fork), or -1. */
    int32_t netns_fd;
    /* ISO_PLAN_CLOSE_FDS: every fd the ops name (sources of ISO_OP_FDMAP,
     * namespace and cgroup fds, ...). */
    const int32_t *keep_fds;
    uint32_t n_keep_fds;
    /* ISO_PLAN_TIMING: n_ops + 1 slots for CLOCK_MONOTONIC ns, slot 0 when the
     * child program starts, slot i + 1 after op i; filled once the child has
     * exec'd or failed.  Else NULL. */
    uint64_t *op_times;
};

/* What the child writes on its report pipe, in one write(2) (< PIPE_BUF, so
 * never torn).  err 0 is not a failure: an ISO_OP_EXEC_GATE child is ready
 * and waiting for its go-ahead, or ISO_OP_FORK forked pid. */
struct iso_report {
    int32_t step;    /* the op's index; -1: the child program did not start */
    int32_t kind;    /* its enum iso_op_kind */
    int32_t err;     /* errno */
    int32_t pid;     /* ISO_OP_FORK: the forked process, else 0 */
    int32_t entry;   /* batched ops: the failing entry's index, else -1 */
    int32_t substep; /* enum iso_substep: the failing part of the op */
    int32_t reserved[2];
};

struct iso_child {
    int32_t pid;
    int32_t pidfd;
    int32_t report_fd; /* read end; -1 once consumed */
    int32_t sync_fd;   /* write end while the child is held, else -1 */
    int32_t stage;     /* on failure: the parent-side ISO_STAGE_* that failed */
    int32_t clone3_used;
    int32_t plan_fd;    /* the plan as the child program reads it (memfd), or -1 */
    int32_t helper_pid; /* ISO_PLAN_FORK: the child program's own pid until it forked */
    struct iso_report report;
    int32_t report_len; /* bytes read from the report pipe: 0 = exec succeeded */
    int32_t netns_sock; /* ISO_PLAN_NETNS_LATE: our end of the socket to the child, or -1 */
    uint64_t t_start, t_cloned, t_mapped, t_released, t_done; /* CLOCK_MONOTONIC ns */
};

int iso_spawn(const struct iso_plan *plan, struct iso_child *child);
int iso_helper_load(const char *path);
int iso_release(const struct iso_plan *plan, struct iso_child *child);
void iso_abandon(struct iso_child *child);
int iso_setns(int fd, int nstype);
int iso_unshare(int flags);

/* net.c: a new network namespace with lo up (lo_up 1), made by the calling
 * thread: an fd on it (O_CLOEXEC), or -errno.  home >= 0: the thread then
 * goes back to that network namespace.  The child program and the late
 * network namespace's thread make theirs the same way. */
int iso_netns_new(int lo_up, int home);

/* host.c: calls the parent makes for itself (Namespace, probe). 0 or -errno. */
enum iso_syscall {
    ISO_SYS_OPEN_TREE = 1,
    ISO_SYS_MOVE_MOUNT,
    ISO_SYS_FSOPEN,
    ISO_SYS_MOUNT_SETATTR,
    ISO_SYS_CLOSE_RANGE,
    ISO_SYS_PIDFD_OPEN,
    ISO_SYS_CLONE3,
    ISO_SYS_FSCONFIG,
    ISO_SYS_FSMOUNT
};
int iso_mount(const char *source, const char *target, const char *fstype, uint64_t flags,
              const char *data);
int iso_umount2(const char *target, int flags);
int iso_syscall_errno(int which, int64_t a, int64_t b, int64_t c, int64_t d, int64_t e);
int iso_set_dumpable(int on);
int iso_detached_tmpfs(const char *mode, const char *size, const char *source, uint64_t attrs);
int iso_mount_fd_setattr(int fd, uint64_t attr_set);
int iso_clone_tree(const char *path, int recursive, uint64_t attr_set, uint64_t attr_clr);
int iso_mount_fd_idmap(int fd, int userns_fd, int recursive);
int iso_open_in_root(int dirfd, const char *path, int flags);
/* What iso_net_config does (a mask). */
enum iso_net_what {
    ISO_NET_ADDRESS = 1, /* the address, its prefix, and the default route (gateway 0: none) */
    ISO_NET_UP = 2       /* the interface up, and the namespace's ip_unprivileged_port_start 0
                          * and ping_group_range every group (Docker's) */
};
/* The interface `name` of the network namespace `netns_fd` given the IPv4 `address`
 * (host byte order) with `prefix` and a default route through `gateway`, and brought
 * up, as `what` says; done by a thread of its own, so no thread of the caller ever
 * changes namespace.  0 or -errno. */
int iso_net_config(int netns_fd, const char *name, uint32_t address, uint32_t prefix,
                   uint32_t gateway, uint32_t what);

/* bpf.c: the cgroup v2 device controller (a BPF_PROG_TYPE_CGROUP_DEVICE program).
 * Each returns -errno on failure; load returns the program fd (O_CLOEXEC). */
int iso_bpf_load_device_prog(const void *insns, uint32_t n_insns, char *log, uint32_t log_size);
int iso_bpf_attach_device_prog(int prog_fd, int cgroup_fd);
int iso_bpf_detach_device_prog(int prog_fd, int cgroup_fd);
