/* Every .c file in csrc/ includes this: system headers, then the API cffi sees. */
#ifndef ISOLATE_H
#define ISOLATE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <net/if.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "api.h"
#include "syscalls.h"

_Static_assert(sizeof(struct iso_report) == 32 && sizeof(struct iso_report) <= PIPE_BUF,
               "ABI: iso_report is one atomic pipe write, unpacked by _plan.py");
_Static_assert(sizeof(struct iso_op) == 64 && offsetof(struct iso_op, setns) == 16,
               "ABI: iso_op is packed by _plan.py");

/* Every slot layout (api.h) is four uint32_t and four uint64_t: a slot has
 * the same place in each. */
#define ISO_LAYOUT(name) \
    _Static_assert(sizeof(struct iso_op_##name) == 48, "ABI: iso_op_" #name " is 48 bytes")
ISO_LAYOUT(setns);
ISO_LAYOUT(unshare);
ISO_LAYOUT(mount);
ISO_LAYOUT(bind);
ISO_LAYOUT(mount_setattr);
ISO_LAYOUT(mkdir);
ISO_LAYOUT(mknod);
ISO_LAYOUT(symlink);
ISO_LAYOUT(write_file);
ISO_LAYOUT(path);
ISO_LAYOUT(name);
ISO_LAYOUT(umask);
ISO_LAYOUT(setrlimit);
ISO_LAYOUT(fdmap);
ISO_LAYOUT(close_fds);
ISO_LAYOUT(setgroups);
ISO_LAYOUT(setresid);
ISO_LAYOUT(switch);
ISO_LAYOUT(cap_mask);
ISO_LAYOUT(capset);
ISO_LAYOUT(pdeathsig);
ISO_LAYOUT(seccomp);
ISO_LAYOUT(exec);
ISO_LAYOUT(execveat);
ISO_LAYOUT(console);
ISO_LAYOUT(fork);
ISO_LAYOUT(root_stage);
ISO_LAYOUT(root_mkdir);
ISO_LAYOUT(root_bind);
ISO_LAYOUT(root_mount);
ISO_LAYOUT(root_mask);
ISO_LAYOUT(root_chdir);
ISO_LAYOUT(root_mkdirs);
ISO_LAYOUT(root_binds);
ISO_LAYOUT(root_masks);
#undef ISO_LAYOUT

/* The plan as the child program reads it: one memfd the parent writes and
 * the child maps (MAP_SHARED: with ISO_PLAN_TIMING the child stores its
 * stamps there).  Every *_off is a byte offset from the start; strings are
 * NUL-terminated and packed back to back.  Python never sees this layout. */
#define ISO_WIRE_MAGIC 0x64696f73u /* "sodi" */
#define ISO_WIRE_VERSION 1u

struct iso_wire {
    uint32_t magic, version, size, flags; /* size: the whole blob; flags: ISO_PLAN_* */
    uint32_t n_ops, ops_off;              /* struct iso_op[n_ops] */
    uint32_t arena_len, arena_off;
    uint32_t argc, argv_off;           /* argc strings */
    uint32_t envc, envp_off;           /* envc strings */
    uint32_t ptrs_off;                 /* (argc + 1 + envc + 1) pointer slots the child fills */
    uint32_t n_join_fds, join_fds_off; /* int32_t[n_join_fds] */
    /* int32_t[n_keep_fds]: the plan's fds, made close-on-exec again by the child */
    uint32_t n_keep_fds, keep_fds_off;
    uint32_t times_off;                     /* ISO_PLAN_TIMING: uint64_t[n_ops + 1], else 0 */
    int32_t report_fd, sync_fd, netns_sock; /* the child's ends, or -1 */
    int32_t netns_fd, cgroup_fd;            /* for ISO_OP_FORK's fork, or -1 */
    /* The clone raised every capability as ambient to carry it across the
     * child program's execve (clone.c: carry_caps); undone first thing. */
    int32_t caps_carried;
    uint64_t inheritable; /* then the inheritable set is this again */
    uint64_t sigmask;     /* the spawning thread's mask (signals 1-64) */
};

/* Where in an op a failure happened: struct iso_report's entry and substep.
 * The ops that have parts fill it in as they fail; iso_child_run() resets
 * it before each op. */
struct iso_fault {
    int32_t entry;   /* a batched op's entry, or -1 */
    int32_t substep; /* enum iso_substep */
};

/* Record the part of the op that failed; returns -1, errno untouched. */
static inline int
iso_fail(struct iso_fault *f, int substep)
{
    f->substep = substep;
    return -1;
}

/* The running child's own state (child.c).  Lives on the child program's stack. */
struct iso_child_args {
    const struct iso_plan *plan;
    int report_fd;          /* write end */
    int sync_fd;            /* read end, or -1 */
    int netns_sock;         /* ISO_PLAN_NETNS_LATE: where the network namespace arrives, or -1 */
    int netns_joined;       /* ISO_OP_NETNS_JOIN done: execve may run */
    int netns_fd;           /* ISO_OP_FORK: the network namespace to fork into, or -1 */
    int cgroup_fd;          /* ISO_OP_FORK: born into this cgroup v2 directory, or -1 */
    uint64_t *times;        /* ISO_PLAN_TIMING: the wire's stamps, else NULL */
    struct iso_fault fault; /* the running op's */
};

/* child.c: the op loop of the child program, from its start to execve.
 * Never returns.  iso_child_fail reports (at may be NULL) and exits. */
_Noreturn void iso_child_run(struct iso_child_args *a);
_Noreturn void iso_child_fail(int fd, int32_t step, int32_t kind, int err,
                              const struct iso_fault *at);
int iso_child_wait_go(struct iso_child_args *a);

static inline uint64_t
iso_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Close fd without losing the errno of the failure being reported. */
static inline void
close_keep_errno(int fd)
{
    if (fd >= 0) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
}

/* ops_*.c: called only from child.c, in the child program.  Return -1 with
 * errno set; those given a struct iso_fault record the failing part there. */
int run_op_mount(const struct iso_plan *p, const struct iso_op *op);
int run_op_bind(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f);
int run_op_mount_setattr(const struct iso_plan *p, const struct iso_op *op);
int run_op_pivot_root(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f);
int run_op_mkdir(const struct iso_plan *p, const struct iso_op *op);
int run_op_mknod(const struct iso_plan *p, const struct iso_op *op);
int run_op_symlink(const struct iso_plan *p, const struct iso_op *op);
int run_op_write_file(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f);
int run_op_fdmap(const struct iso_plan *p, const struct iso_op *op);
int run_op_close_fds(const struct iso_plan *p, const struct iso_op *op);
int run_op_cgroup_join(const struct iso_plan *p);
int run_op_caps(const struct iso_op *op);
int run_op_console(const struct iso_op *op);
int run_op_root_stage(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f);
int run_op_root_mkdir(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f);
int run_op_root_mkdirs(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f);
int run_op_root_bind(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f);
int run_op_root_binds(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f);
int run_op_root_mount(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f);
int run_op_root_mask(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f);
int run_op_root_masks(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f);
int run_op_root_chdir(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f);

/* net.c: used by both the parent (the late network namespace's thread) and the child. */
int iso_loopback_up(void);
int iso_netns_enter_new(int lo);
int iso_send_fd(int sock, const void *data, size_t len, int fd);

static inline const char *
plan_str(const struct iso_plan *p, uint32_t off)
{
    return off ? p->arena + off : NULL;
}

#endif
