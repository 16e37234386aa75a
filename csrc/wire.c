/* The plan as the child program reads it: struct iso_wire (isolate.h) in a
 * memfd the parent writes and the child program maps.  Parent side only. */
#include "spawn.h"

#include <stdlib.h>

int
iso_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

extern char **environ;

static size_t
align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static size_t
strings_len(char *const *v, uint32_t *count)
{
    size_t len = 0;
    uint32_t n = 0;
    for (; v != NULL && v[n] != NULL; n++) {
        len += strlen(v[n]) + 1;
    }
    *count = n;
    return len;
}

static char *
put_strings(char *at, char *const *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        size_t l = strlen(v[i]) + 1;
        memcpy(at, v[i], l);
        at += l;
    }
    return at;
}

/* The plan in a new memfd (close-on-exec; the clone clears that for the
 * child program).  envp NULL: this process's environment, now.  Returns the
 * fd, or -1 with errno set. */
int
iso_wire_write(const struct iso_plan *p, int sync_rd, int netns_sock, uint64_t sigmask)
{
    char **envp = p->envp ? p->envp : environ;
    struct iso_wire w;
    memset(&w, 0, sizeof w);
    w.magic = ISO_WIRE_MAGIC;
    w.version = ISO_WIRE_VERSION;
    w.flags = p->flags;
    size_t off = ISO_WIRE_TIMES_OFF;
    if (p->flags & ISO_PLAN_TIMING) {
        w.times_off = (uint32_t)off;
        off += ((size_t)p->n_ops + 1) * sizeof(uint64_t);
    }
    w.n_ops = p->n_ops;
    w.ops_off = (uint32_t)off;
    off += (size_t)p->n_ops * sizeof(struct iso_op);
    w.n_join_fds = p->n_join_fds;
    w.join_fds_off = (uint32_t)off;
    off += (size_t)p->n_join_fds * 4;
    w.n_keep_fds = p->n_keep_fds;
    w.keep_fds_off = (uint32_t)off;
    off = align8(off + (size_t)p->n_keep_fds * 4);
    size_t argv_len = strings_len(p->argv, &w.argc);
    size_t envp_len = strings_len(envp, &w.envc);
    w.ptrs_off = (uint32_t)off;
    off += ((size_t)w.argc + w.envc + 2) * sizeof(char *);
    w.arena_off = (uint32_t)off;
    w.arena_len = p->arena_len;
    off += p->arena_len;
    w.argv_off = (uint32_t)off;
    off += argv_len;
    w.envp_off = (uint32_t)off;
    off += envp_len;
    if (off > UINT32_MAX / 2) {
        errno = E2BIG;
        return -1;
    }
    w.size = (uint32_t)off;
    w.report_fd = -1; /* given on the command line */
    w.sync_fd = sync_rd;
    w.netns_sock = netns_sock;
    w.netns_fd = (p->flags & ISO_PLAN_FORK) ? p->netns_fd : -1;
    w.cgroup_fd = (p->flags & ISO_PLAN_FORK) ? p->cgroup_fd : -1;
    w.sigmask = sigmask;
    if (iso_makes_user_ns(p)) {
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
        struct __user_cap_data_struct d[2];
        if (syscall(SYS_capget, &h, d) < 0) {
            return -1;
        }
        w.caps_carried = 1;
        w.inheritable = (uint64_t)d[1].inheritable << 32 | d[0].inheritable;
    }

    char *buf = calloc(1, off);
    if (buf == NULL) {
        return -1;
    }
    memcpy(buf, &w, sizeof w);
    if (p->n_ops) {
        memcpy(buf + w.ops_off, p->ops, (size_t)p->n_ops * sizeof(struct iso_op));
    }
    if (p->n_join_fds) {
        memcpy(buf + w.join_fds_off, p->join_fds, (size_t)p->n_join_fds * 4);
    }
    if (p->n_keep_fds) {
        memcpy(buf + w.keep_fds_off, p->keep_fds, (size_t)p->n_keep_fds * 4);
    }
    memcpy(buf + w.arena_off, p->arena, p->arena_len);
    put_strings(buf + w.argv_off, p->argv, w.argc);
    put_strings(buf + w.envp_off, envp, w.envc);

    int fd = (int)syscall(__NR_memfd_create, "isolate-plan", MFD_CLOEXEC);
    if (fd < 0 || iso_write_all(fd, buf, off) < 0) {
        int saved = errno;
        free(buf);
        if (fd >= 0) {
            close(fd);
        }
        errno = saved;
        return -1;
    }
    free(buf);
    return fd;
}

/* ISO_PLAN_TIMING: copy the child program's stamps into plan->op_times. */
void
iso_wire_read_times(const struct iso_plan *p, int plan_fd)
{
    if (p->op_times != NULL && plan_fd >= 0) {
        size_t len = ((size_t)p->n_ops + 1) * sizeof(uint64_t);
        if (pread(plan_fd, p->op_times, len, (off_t)ISO_WIRE_TIMES_OFF) != (ssize_t)len) {
            memset(p->op_times, 0, len);
        }
    }
}
