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

/* A new network namespace has lo, down (SIOCSIFFLAGS, netdevice(7)). */
int
run_op_loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        return -1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int saved = errno;
    close(s);
    errno = saved;
    return r;
}
