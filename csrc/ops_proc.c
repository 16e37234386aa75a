/* Process-state ops: fds, capabilities, network.  Called only from child.c. */
#include "isolate.h"

/* Map src -> dst for every pair, in two phases so that overlapping pairs
 * (0 -> 1 and 1 -> 0) work: first duplicate every source above all of them,
 * then dup3 each copy onto its target (without O_CLOEXEC). */
int
run_op_fdmap(const struct iso_plan *p, const struct iso_op *op)
{
    const int32_t *pairs = (const int32_t *)(uintptr_t)(p->arena + op->arg0);
    uint32_t n = op->arg1;
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
    const int32_t *keep = (const int32_t *)(uintptr_t)(p->arena + op->arg0);
    unsigned start = 0;
    for (uint32_t i = 0; i < op->arg1; i++) {
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
run_op_cgroup_join(const struct iso_plan *p, const struct iso_op *op)
{
    (void)op;
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
run_op_caps(const struct iso_plan *p, const struct iso_op *op)
{
    (void)p;
    switch (op->kind) {
    case ISO_OP_CAP_BOUND:
        for (unsigned cap = 0; cap <= (unsigned)op->val1 && cap < 64; cap++) {
            if ((op->val0 >> cap) & 1) {
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
            data[i].effective = (uint32_t)(op->val0 >> (32 * i));
            data[i].permitted = (uint32_t)(op->val1 >> (32 * i));
            data[i].inheritable = (uint32_t)(op->val2 >> (32 * i));
        }
        return (int)syscall(SYS_capset, &hdr, data);
    }
    case ISO_OP_CAP_AMBIENT:
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) {
            return -1;
        }
        for (unsigned cap = 0; cap <= (unsigned)op->val1 && cap < 64; cap++) {
            if (((op->val0 >> cap) & 1) &&
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
 * and stdio, in a new session.  val2: also bind the slave onto /dev/console. */
int
run_op_console(const struct iso_plan *p, const struct iso_op *op)
{
    (void)p;
    int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) {
        return -1;
    }
    int unlock = 0;
    unsigned ptn = 0;
    if (ioctl(m, TIOCSPTLCK, &unlock) < 0 || ioctl(m, TIOCGPTN, &ptn) < 0) {
        close_keep_errno(m);
        return -1;
    }
    if (op->val0 != 0 || op->val1 != 0) {
        struct winsize ws = {.ws_row = (unsigned short)op->val0, .ws_col = (unsigned short)op->val1};
        if (ioctl(m, TIOCSWINSZ, &ws) < 0) {
            close_keep_errno(m);
            return -1;
        }
    }
    int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    if (s < 0) {
        close_keep_errno(m);
        return -1;
    }
    if (iso_send_fd(op->fd, "/dev/ptmx", sizeof "/dev/ptmx" - 1, m) < 0) {
        close_keep_errno(s);
        close_keep_errno(m);
        return -1;
    }
    close(m);
    close(op->fd);
    if (op->val2) {
        char pts[32] = "/dev/pts/";
        /* the slave's name without snprintf (not async-signal-safe everywhere) */
        char digits[12];
        int k = 0;
        do {
            digits[k++] = (char)('0' + ptn % 10);
            ptn /= 10;
        } while (ptn && k < (int)sizeof digits);
        size_t at = strlen(pts);
        while (k > 0) {
            pts[at++] = digits[--k];
        }
        pts[at] = 0;
        int f = open("/dev/console", O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (f >= 0) {
            close(f);
        }
        if (mount(pts, "/dev/console", NULL, MS_BIND, NULL) < 0) {
            close_keep_errno(s);
            return -1;
        }
    }
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
