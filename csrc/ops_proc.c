/* Process-state ops: fds, capabilities, network.  Called only from child.c. */
#include "isolate.h"

#include <linux/openat2.h>

/* Map src -> dst for every pair, in two phases so that overlapping pairs
 * (0 -> 1 and 1 -> 0) work: first duplicate every source above all of them,
 * then dup3 each copy onto its target (without O_CLOEXEC). */
int
run_op_fdmap(const struct iso_plan *p, const struct iso_op *op)
{
    const int32_t *pairs = (const int32_t *)(uintptr_t)(p->arena + op->fdmap.pairs);
    uint32_t n = op->fdmap.n_pairs;
    int tmp[n > 0 ? n : 1];
    int hi = 3;
    for (uint32_t i = 0; i < 2 * n; i++) {
        if (pairs[i] >= hi) {
            hi = pairs[i] + 1;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        tmp[i] = fcntl(pairs[2 * i], F_DUPFD_CLOEXEC, hi);
        if (tmp[i] < 0) {
            return -1;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        if (dup3(tmp[i], pairs[2 * i + 1], 0) < 0) {
            return -1;
        }
        close(tmp[i]);
    }
    return 0;
}

static int
cloexec_range(unsigned first, unsigned last)
{
    if (syscall(__NR_close_range, first, last, CLOSE_RANGE_CLOEXEC) == 0) {
        return 0;
    }
    if (errno != ENOSYS && errno != EINVAL) {
        return -1;
    }
    /* Before Linux 5.11: mark them one by one, up to the fd limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        return -1;
    }
    if (last >= rl.rlim_cur) {
        last = rl.rlim_cur ? (unsigned)rl.rlim_cur - 1 : 0;
    }
    for (unsigned fd = first; fd <= last && fd >= first; fd++) {
        fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    }
    return 0;
}

/* Mark every fd not in the sorted keep list close-on-exec.  Not closed
 * outright: the report pipe (already O_CLOEXEC) must live until execve. */
int
run_op_close_fds(const struct iso_plan *p, const struct iso_op *op)
{
    const int32_t *keep = (const int32_t *)(uintptr_t)(p->arena + op->close_fds.keep);
    unsigned start = 0;
    for (uint32_t i = 0; i < op->close_fds.n_keep; i++) {
        unsigned k = (unsigned)keep[i];
        if (k > start && cloexec_range(start, k - 1) < 0) {
            return -1;
        }
        start = k + 1;
    }
    return cloexec_range(start, ~0U);
}

/* Join a cgroup: write "0" (the writer itself) to each of the plan's
 * join_fds, the group's tasks file in every v1 hierarchy.  The parent writing
 * our pid instead would take the kernel's global threadgroup lock for
 * writing, which waits for an RCU grace period: 5-15 ms per spawn.  A thread
 * moving itself through "tasks" skips that lock (cgroup_procs_write_start).
 * The fds live in the plan, not the op: a cached plan serves every group of
 * the same shape. */
int
run_op_cgroup_join(const struct iso_plan *p)
{
    for (uint32_t i = 0; i < p->n_join_fds; i++) {
        ssize_t n;
        do {
            n = write(p->join_fds[i], "0", 1);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            return -1;
        }
    }
    return 0;
}

int
run_op_caps(const struct iso_op *op)
{
    switch (op->kind) {
    case ISO_OP_CAP_BOUND:
        for (unsigned cap = 0; cap <= (unsigned)op->cap_bound.last_cap && cap < 64; cap++) {
            if ((op->cap_bound.mask >> cap) & 1) {
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
                    return -1;
                }
            }
        }
        return 0;
    case ISO_OP_CAPSET: {
        struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
        struct __user_cap_data_struct data[2];
        for (int i = 0; i < 2; i++) {
            data[i].effective = (uint32_t)(op->capset.effective >> (32 * i));
            data[i].permitted = (uint32_t)(op->capset.permitted >> (32 * i));
            data[i].inheritable = (uint32_t)(op->capset.inheritable >> (32 * i));
        }
        return (int)syscall(SYS_capset, &hdr, data);
    }
    case ISO_OP_CAP_AMBIENT:
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) {
            return -1;
        }
        for (unsigned cap = 0; cap <= (unsigned)op->cap_ambient.last_cap && cap < 64; cap++) {
            if (((op->cap_ambient.mask >> cap) & 1) &&
                prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) {
                return -1;
            }
        }
        return 0;
    default:
        errno = EINVAL;
        return -1;
    }
}

/* A terminal from the container's own devpts (OCI process.terminal): open
 * /dev/ptmx as the container sees it, send the master over the unix socket
 * op->fd with SCM_RIGHTS (what runc sends to --console-socket: the message
 * is "/dev/ptmx"), and make the slave this process's controlling terminal
 * and stdio, in a new session.  bind_console: also bind the slave onto
 * /dev/console.
 *
 * This runs inside the container's root, where a running container (exec)
 * may have replaced any path: dev/ptmx and dev/console are resolved inside
 * "/" without magic links (a /proc/self/fd/N of ours would lead out), the
 * master must be the ptmx device 5:2, and the bind's source is the slave's
 * own fd (TIOCGPTPEER), never the path /dev/pts/N (runc's CVE-2025-52565),
 * onto a regular file or character device opened without following a
 * symlink.  Failures of the checks give ENODEV. */
int
run_op_console(const struct iso_op *op)
{
    const struct iso_op_console *con = &op->console;
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) {
        return -1;
    }
    how.flags = O_RDWR | O_NOCTTY | O_CLOEXEC;
    int m = (int)syscall(__NR_openat2, root, "dev/ptmx", &how, sizeof how);
    struct stat st;
    if (m < 0 || fstat(m, &st) < 0) {
        close_keep_errno(m);
        close_keep_errno(root);
        return -1;
    }
    if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(5, 2)) {
        errno = ENODEV;
        close_keep_errno(m);
        close_keep_errno(root);
        return -1;
    }
    int unlock = 0;
    if (ioctl(m, TIOCSPTLCK, &unlock) < 0) {
        close_keep_errno(m);
        close_keep_errno(root);
        return -1;
    }
    if (con->rows != 0 || con->cols != 0) {
        struct winsize ws = {.ws_row = (unsigned short)con->rows,
                             .ws_col = (unsigned short)con->cols};
        if (ioctl(m, TIOCSWINSZ, &ws) < 0) {
            close_keep_errno(m);
            close_keep_errno(root);
            return -1;
        }
    }
    int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    if (s < 0) {
        close_keep_errno(m);
        close_keep_errno(root);
        return -1;
    }
    if (iso_send_fd(op->fd, "/dev/ptmx", sizeof "/dev/ptmx" - 1, m) < 0) {
        close_keep_errno(s);
        close_keep_errno(m);
        close_keep_errno(root);
        return -1;
    }
    close(m);
    close(op->fd);
    if (con->bind_console) {
        int rc = -1, mfd = -1, tfd = -1;
        how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
        int dev = (int)syscall(__NR_openat2, root, "dev", &how, sizeof how);
        if (dev >= 0 && mknodat(dev, "console", S_IFREG | 0600, 0) < 0 && errno != EEXIST) {
            goto bound;
        }
        if (dev >= 0) {
            tfd = openat(dev, "console", O_PATH | O_NOFOLLOW | O_CLOEXEC);
        }
        if (tfd < 0 || fstat(tfd, &st) < 0) {
            goto bound;
        }
        if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
            errno = ENODEV;
            goto bound;
        }
        mfd = (int)syscall(__NR_open_tree, s, "",
                           AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (mfd >= 0) {
            rc = (int)syscall(__NR_move_mount, mfd, "", tfd, "",
                              MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
        }
    bound:
        close_keep_errno(mfd);
        close_keep_errno(tfd);
        close_keep_errno(dev);
        if (rc < 0) {
            close_keep_errno(s);
            close_keep_errno(root);
            return -1;
        }
    }
    close(root);
    if (setsid() < 0 || ioctl(s, TIOCSCTTY, 0) < 0) {
        close_keep_errno(s);
        return -1;
    }
    for (int fd = 0; fd < 3; fd++) {
        if (dup2(s, fd) < 0) {
            close_keep_errno(s);
            return -1;
        }
    }
    if (s > 2) {
        close(s);
    }
    return 0;
}
