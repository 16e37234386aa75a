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

_Static_assert(sizeof(struct iso_report) == 16, "ABI: iso_report is one atomic pipe write");
_Static_assert(sizeof(struct iso_op) == 64, "ABI: iso_op is packed by _plan.py");

/* child.c: runs in the new process, never returns. */
struct iso_child_args {
    const struct iso_plan *plan;
    int report_fd;        /* write end */
    int report_rd;        /* the parent's read end, closed first thing */
    int sync_fd;          /* read end, or -1 */
    int sync_wr;          /* the parent's write end, closed first thing */
    int netns_sock;       /* ISO_PLAN_NETNS_LATE: where the network namespace arrives, or -1 */
    int netns_peer;       /* the parent's end of that socket, closed first thing */
    int netns_joined;     /* ISO_OP_NETNS_JOIN done: execve may run */
    sigset_t sigmask;     /* the calling thread's mask, restored before execve */
};

int iso_child_main(void *arg);

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

/* ops_*.c: called only from child.c.  Return -1 with errno set on failure. */
int run_op_mount(const struct iso_plan *p, const struct iso_op *op);
int run_op_bind(const struct iso_plan *p, const struct iso_op *op);
int run_op_mount_setattr(const struct iso_plan *p, const struct iso_op *op);
int run_op_pivot_root(const struct iso_plan *p, const struct iso_op *op);
int run_op_mkdir(const struct iso_plan *p, const struct iso_op *op);
int run_op_mknod(const struct iso_plan *p, const struct iso_op *op);
int run_op_symlink(const struct iso_plan *p, const struct iso_op *op);
int run_op_write_file(const struct iso_plan *p, const struct iso_op *op);
int run_op_fdmap(const struct iso_plan *p, const struct iso_op *op);
int run_op_close_fds(const struct iso_plan *p, const struct iso_op *op);
int run_op_cgroup_join(const struct iso_plan *p, const struct iso_op *op);
int run_op_caps(const struct iso_plan *p, const struct iso_op *op);
int run_op_loopback_up(void);
int run_op_console(const struct iso_plan *p, const struct iso_op *op);
int iso_send_fd(int sock, const void *data, size_t len, int fd);
int run_op_root_stage(const struct iso_plan *p, const struct iso_op *op);
int run_op_root_mkdir(const struct iso_plan *p, const struct iso_op *op);
int run_op_root_bind(const struct iso_plan *p, const struct iso_op *op);
int run_op_root_mount(const struct iso_plan *p, const struct iso_op *op);
int run_op_root_mask(const struct iso_plan *p, const struct iso_op *op);
int run_op_root_chdir(const struct iso_plan *p, const struct iso_op *op);
int run_op_set_dumpable(const struct iso_op *op);

static inline const char *
plan_str(const struct iso_plan *p, uint32_t off)
{
    return off ? p->arena + off : NULL;
}

#endif
