/* The op loop of the child program (init.c), from its start to execve.
 *
 * This runs in a process of its own: the spawn's clone exec'd our sealed
 * helper before any op (spawn.c), so nothing here shares the caller's memory,
 * and what the ops change (credentials, dumpability, cgroup) is the child's
 * alone.  Still async-signal-safe in style: raw system calls (nolibc.c), no
 * malloc or stdio, and only iso_child_fail reports.
 */
#include "isolate.h"

_Noreturn void
iso_child_fail(int fd, int32_t step, int32_t kind, int err, const struct iso_fault *at)
{
    /* No strerror here: the parent looks the message up. */
    struct iso_report r = {.step = step, .kind = kind, .err = err, .entry = -1};
    if (at != NULL) {
        r.entry = at->entry;
        r.substep = at->substep;
    }
    ssize_t n;
    do {
        n = write(fd, &r, sizeof r);
    } while (n < 0 && errno == EINTR);
    _exit(127);
}

/* PR_SET_PDEATHSIG only fires for a parent that dies after the prctl.  The
 * parent may already be gone, and getppid() says nothing in a new pid
 * namespace (it returns 0), so ask the report pipe instead: its read end
 * lives only in the parent, and a pipe with no reader polls POLLERR. */
static int
run_op_pdeathsig(const struct iso_op *op, int report_fd)
{
    if (prctl(PR_SET_PDEATHSIG, (unsigned long)op->pdeathsig.signal, 0, 0, 0) < 0) {
        return -1;
    }
    struct pollfd pfd = {.fd = report_fd, .events = POLLOUT};
    if (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR)) {
        _exit(127);
    }
    return 0;
}

static int
run_op_exec(const struct iso_plan *p, const struct iso_op *op)
{
    const char *path = plan_str(p, op->execve.paths);
    char **envp = p->envp;
    int saved = 0;
    for (uint32_t i = 0; i < op->execve.n_paths && path != NULL; i++) {
        execve(path, p->argv, envp);
        /* Like CPython's exec_array: remember the first error that is not
         * "no such file here", and try the next candidate. */
        if (errno != ENOENT && errno != ENOTDIR && saved == 0) {
            saved = errno;
        }
        path += strlen(path) + 1;
    }
    errno = saved ? saved : ENOENT;
    return -1;
}

/* Close every fd marked close-on-exec except `keep`: a child held at the
 * gate must not hold the parent's locks and files until its execve (CLOSE_FDS
 * only marks them).  Walks /proc/self/fd with getdents64 (no malloc); where
 * /proc is not mounted, the first 4096 fds. */
static void
close_cloexec_fds(int keep)
{
    int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        for (int fd = 3; fd < 4096; fd++) {
            int fl = fcntl(fd, F_GETFD);
            if (fd != keep && fl >= 0 && (fl & FD_CLOEXEC)) {
                close(fd);
            }
        }
        return;
    }
    char buf[4096];
    long n;
    while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
        for (long off = 0; off < n;) {
            struct iso_dirent64 {
                uint64_t ino;
                int64_t off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *d = (struct iso_dirent64 *)(buf + off);
            off += d->reclen;
            int fd = 0;
            const char *c = d->name;
            if (*c < '0' || *c > '9') {
                continue;
            }
            for (; *c >= '0' && *c <= '9'; c++) {
                fd = fd * 10 + (*c - '0');
            }
            if (fd < 3 || fd == keep || fd == dir) {
                continue;
            }
            int fl = fcntl(fd, F_GETFD);
            if (fl >= 0 && (fl & FD_CLOEXEC)) {
                close(fd);
            }
        }
    }
    close(dir);
}

/* The OCI create/start split (runc's exec fifo): check that the program
 * exists and is executable, tell the parent the container is ready (a report
 * with err 0), then wait for one byte on op->fd, written by a later, unrelated
 * process (`isolate-oci start`).  The report pipe is closed: the parent that
 * read "ready" may be long gone when exec fails, so that failure only shows
 * as exit status 127. */
static int
run_op_exec_gate(const struct iso_plan *p, const struct iso_op *op, int32_t step,
                 struct iso_child_args *a)
{
    const char *path = plan_str(p, op->exec_gate.paths);
    int found = op->exec_gate.n_paths == 0, saved = 0;
    for (uint32_t i = 0; i < op->exec_gate.n_paths && path != NULL && !found; i++) {
        if (access(path, X_OK) == 0) {
            found = 1;
        }
        else if (errno != ENOENT && errno != ENOTDIR && saved == 0) {
            saved = errno;
        }
        path += strlen(path) + 1;
    }
    if (!found) {
        errno = saved ? saved : ENOENT;
        return -1;
    }
    struct iso_report r = {.step = step, .kind = (int32_t)op->kind, .entry = -1};
    ssize_t n;
    do {
        n = write(a->report_fd, &r, sizeof r);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof r) {
        return -1;
    }
    close(a->report_fd);
    a->report_fd = -1;
    close_cloexec_fds(op->fd);
    char go;
    do {
        n = read(op->fd, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) {
        _exit(127); /* nobody can hear a report any more */
    }
    close(op->fd);
    return 0;
}

/* ISO_PLAN_NETNS_LATE: the parent's thread sends the new network namespace
 * (SCM_RIGHTS, with a 0 errno) or the errno that stopped it making one.  On
 * that errno the child makes the namespace itself, as a clone would have:
 * the thread may have failed for want of a thread or of /proc (the caller's
 * mount namespace need not have one), and a refusal the child meets too
 * (EPERM, ENOSPC) is reported with the child's own errno. */
static int
run_op_netns_join(const struct iso_plan *p, struct iso_child_args *a)
{
    int32_t err = 0;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {.iov_base = &err, .iov_len = sizeof err};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.buf;
    m.msg_controllen = sizeof ctl.buf;
    ssize_t n;
    do {
        n = recvmsg(a->netns_sock, &m, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    int saved = errno;
    close(a->netns_sock);
    a->netns_sock = -1;
    if (n < 0) {
        errno = saved;
        return -1;
    }
    int fd = -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int))) {
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
    }
    if (n != (ssize_t)sizeof err || (err == 0 && fd < 0)) {
        close_keep_errno(fd);
        /* EOF: the parent is gone. */
        errno = n != (ssize_t)sizeof err ? ECONNRESET : EBADMSG;
        return -1;
    }
    if (err != 0) {
        close_keep_errno(fd);
        if (iso_netns_enter_new(!!(p->flags & ISO_PLAN_NETNS_LO)) < 0) {
            return -1;
        }
        a->netns_joined = 1;
        return 0;
    }
    int r = setns(fd, CLONE_NEWNET);
    close_keep_errno(fd);
    if (r == 0) {
        a->netns_joined = 1;
    }
    return r;
}

/* Wait for the parent's go-ahead (its id maps are written).  EOF: the parent
 * gave up, and nobody would hear a report. */
int
iso_child_wait_go(struct iso_child_args *a)
{
    char go;
    ssize_t n;
    do {
        n = read(a->sync_fd, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) {
        _exit(127);
    }
    close(a->sync_fd);
    a->sync_fd = -1;
    /* Not dumpable from here to execve (which resets it): what already runs
     * in a namespace we join must not ptrace us or open our /proc files.  Not
     * before the maps: an unprivileged parent could no longer write them. */
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* ISO_PLAN_FORK: the process the spawn returns is forked here, by the child
 * program, with the plan's new namespaces (clone_flags), in its cgroup v2
 * directory, and in the pid namespace op->fd if it is >= 0, entered first
 * (and the plan's network namespace, before any new user namespace exists).
 * CLONE_PARENT makes it the spawning thread's child; this process tells the
 * parent its pid (a report with err 0) and leaves, and it runs the rest of
 * the plan.  Two reasons to fork rather than clone from the caller:
 * - a new user namespace: the child program's execve in a user namespace
 *   whose maps are not written yet drops every capability; a process forked
 *   into it keeps them while the parent writes its maps;
 * - a joined pid namespace (an exec into a running container): whatever runs
 *   there sees a process that enters at once; it must already run this
 *   program, whose cmdline and exe show nothing of the caller's. */
static int
run_op_fork(const struct iso_op *op, int32_t step, struct iso_child_args *a)
{
    if (op->fd >= 0 && setns(op->fd, CLONE_NEWPID) < 0) {
        return -1;
    }
    if (a->netns_fd >= 0 && setns(a->netns_fd, CLONE_NEWNET) < 0) {
        return -1;
    }
    struct iso_clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags =
        CLONE_PARENT | op->fork.clone_flags; /* exit_signal 0: CLONE_PARENT takes the parent's */
    if (a->cgroup_fd >= 0) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)a->cgroup_fd;
    }
    long pid = syscall(__NR_clone3, &ca, sizeof ca);
    if (pid < 0 && errno == ENOSYS && a->cgroup_fd < 0 && !(op->fork.clone_flags & CLONE_NEWTIME)) {
        pid = syscall(SYS_clone, (unsigned long)(CLONE_PARENT | op->fork.clone_flags), 0, 0, 0, 0);
    }
    if (pid < 0) {
        return -1;
    }
    if (pid > 0) {
        struct iso_report r = {
            .step = step, .kind = (int32_t)op->kind, .pid = (int32_t)pid, .entry = -1};
        ssize_t n;
        do {
            n = write(a->report_fd, &r, sizeof r);
        } while (n < 0 && errno == EINTR);
        _exit(n == (ssize_t)sizeof r ? 0 : 127);
    }
    if (a->sync_fd >= 0) {
        return iso_child_wait_go(a);
    }
    return 0;
}

static int
run_op_seccomp(const struct iso_plan *p, const struct iso_op *op)
{
    struct sock_fprog prog;
    prog.len = (unsigned short)op->seccomp.len;
    prog.filter = (struct sock_filter *)(uintptr_t)(p->arena + op->seccomp.filter);
    if (op->seccomp.flags != 0) {
        return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, (unsigned)op->seccomp.flags,
                            &prog);
    }
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

static int
run_op(const struct iso_plan *p, const struct iso_op *op, int32_t step, struct iso_child_args *a)
{
    struct iso_fault *f = &a->fault;
    if ((p->flags & ISO_PLAN_NETNS_LATE) && !a->netns_joined &&
        (op->kind == ISO_OP_EXECVE || op->kind == ISO_OP_EXECVEAT ||
         op->kind == ISO_OP_EXEC_GATE)) {
        /* Never run the program in the caller's network namespace. */
        errno = EINVAL;
        return -1;
    }
    switch (op->kind) {
    case ISO_OP_SETNS:
        return setns(op->fd, (int)op->setns.nstype);
    case ISO_OP_UNSHARE:
        return unshare((int)op->unshare.clone_flags);
    case ISO_OP_MOUNT:
        return run_op_mount(p, op);
    case ISO_OP_BIND:
        return run_op_bind(p, op, f);
    case ISO_OP_MOUNT_SETATTR:
        return run_op_mount_setattr(p, op);
    case ISO_OP_MKDIR:
        return run_op_mkdir(p, op);
    case ISO_OP_MKNOD:
        return run_op_mknod(p, op);
    case ISO_OP_SYMLINK:
        return run_op_symlink(p, op);
    case ISO_OP_WRITE_FILE:
        return run_op_write_file(p, op, f);
    case ISO_OP_PIVOT_ROOT:
        return run_op_pivot_root(p, op, f);
    case ISO_OP_CHROOT:
        if (chroot(plan_str(p, op->chroot.path)) < 0) {
            return -1;
        }
        return chdir("/");
    case ISO_OP_SETHOSTNAME:
        return sethostname(plan_str(p, op->sethostname.name), op->sethostname.len);
    case ISO_OP_SETDOMAINNAME:
        return setdomainname(plan_str(p, op->setdomainname.name), op->setdomainname.len);
    case ISO_OP_CHDIR:
        return op->fd >= 0 ? fchdir(op->fd) : chdir(plan_str(p, op->chdir.path));
    case ISO_OP_UMASK:
        umask((mode_t)op->umask.mask);
        return 0;
    case ISO_OP_SETRLIMIT: {
        struct rlimit rl = {.rlim_cur = op->setrlimit.soft, .rlim_max = op->setrlimit.hard};
        return setrlimit((int)op->setrlimit.resource, &rl);
    }
    case ISO_OP_SETSID:
        return setsid() < 0 ? -1 : 0;
    case ISO_OP_SETPGID:
        return setpgid(0, 0);
    case ISO_OP_SETCTTY:
        return ioctl(op->fd, TIOCSCTTY, 0);
    case ISO_OP_FDMAP: {
        /* The report pipe must survive the map: move it above every target. */
        const int32_t *pairs = (const int32_t *)(uintptr_t)(p->arena + op->fdmap.pairs);
        int hi = a->report_fd;
        for (uint32_t i = 0; i < 2 * op->fdmap.n_pairs; i++) {
            if (pairs[i] >= hi) {
                hi = pairs[i] + 1;
            }
        }
        if (hi > a->report_fd) {
            int moved = fcntl(a->report_fd, F_DUPFD_CLOEXEC, hi);
            if (moved < 0) {
                return -1;
            }
            close(a->report_fd);
            a->report_fd = moved;
        }
        return run_op_fdmap(p, op);
    }
    case ISO_OP_CLOSE_FDS:
        return run_op_close_fds(p, op);
    case ISO_OP_SETGROUPS:
        return (int)syscall(SYS_setgroups, (size_t)op->setgroups.n_gids,
                            (const gid_t *)(uintptr_t)plan_str(p, op->setgroups.gids));
    case ISO_OP_SETRESGID:
        return (int)syscall(SYS_setresgid, (gid_t)op->setresgid.real,
                            (gid_t)op->setresgid.effective, (gid_t)op->setresgid.saved);
    case ISO_OP_SETRESUID:
        return (int)syscall(SYS_setresuid, (uid_t)op->setresuid.real,
                            (uid_t)op->setresuid.effective, (uid_t)op->setresuid.saved);
    case ISO_OP_KEEPCAPS:
        return prctl(PR_SET_KEEPCAPS, (unsigned long)op->keepcaps.on, 0, 0, 0);
    case ISO_OP_CAP_BOUND:
    case ISO_OP_CAPSET:
    case ISO_OP_CAP_AMBIENT:
        return run_op_caps(op);
    case ISO_OP_NO_NEW_PRIVS:
        return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    case ISO_OP_PDEATHSIG:
        return run_op_pdeathsig(op, a->report_fd);
    case ISO_OP_SECCOMP:
        return run_op_seccomp(p, op);
    case ISO_OP_LOOPBACK_UP:
        return iso_loopback_up();
    case ISO_OP_EXECVE:
        return run_op_exec(p, op);
    case ISO_OP_EXECVEAT: {
        const char *path = plan_str(p, op->execveat.path);
        return (int)syscall(SYS_execveat, op->fd, path ? path : "", p->argv, p->envp,
                            (int)op->execveat.at_flags);
    }
    case ISO_OP_ROOT_STAGE:
        return run_op_root_stage(p, op, f);
    case ISO_OP_ROOT_MKDIR:
        return run_op_root_mkdir(p, op, f);
    case ISO_OP_ROOT_MKDIRS:
        return run_op_root_mkdirs(p, op, f);
    case ISO_OP_ROOT_BIND:
        return run_op_root_bind(p, op, f);
    case ISO_OP_ROOT_BINDS:
        return run_op_root_binds(p, op, f);
    case ISO_OP_ROOT_MOUNT:
        return run_op_root_mount(p, op, f);
    case ISO_OP_ROOT_MASK:
        return run_op_root_mask(p, op, f);
    case ISO_OP_ROOT_MASKS:
        return run_op_root_masks(p, op, f);
    case ISO_OP_ROOT_CHDIR:
        return run_op_root_chdir(p, op, f);
    case ISO_OP_SET_DUMPABLE:
        return prctl(PR_SET_DUMPABLE, (unsigned long)op->set_dumpable.on, 0, 0, 0);
    case ISO_OP_EXEC_GATE:
        return run_op_exec_gate(p, op, step, a);
    case ISO_OP_CONSOLE:
        return run_op_console(op);
    case ISO_OP_CGROUP_JOIN:
        return run_op_cgroup_join(p);
    case ISO_OP_NETNS_JOIN:
        return run_op_netns_join(p, a);
    case ISO_OP_FORK:
        return run_op_fork(op, step, a);
    default:
        errno = EINVAL;
        return -1;
    }
}

_Noreturn void
iso_child_run(struct iso_child_args *a)
{
    const struct iso_plan *p = a->plan;
    for (uint32_t i = 0; i < p->n_ops; i++) {
        a->fault.entry = -1;
        a->fault.substep = ISO_SUB_NONE;
        if (run_op(p, &p->ops[i], (int32_t)i, a) < 0) {
            iso_child_fail(a->report_fd, (int32_t)i, (int32_t)p->ops[i].kind, errno, &a->fault);
        }
        if (a->times != NULL && i + 1 < p->n_ops) {
            a->times[i + 1] = iso_now_ns(); /* the last op is execve: the parent stamps its end */
        }
    }
    /* A plan must end in execve. */
    iso_child_fail(a->report_fd, (int32_t)p->n_ops, 0, EINVAL, NULL);
}
