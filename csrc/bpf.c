/* bpf(2) for the cgroup v2 device controller: load a BPF_PROG_TYPE_CGROUP_DEVICE
 * program and attach it to a cgroup directory.
 *
 * Python assembles the program (isolate/cgroup/devices.py); C only makes the
 * two syscalls, because glibc has no bpf() wrapper.  Parent-side code: it
 * never runs in a child.
 */

#include "isolate.h"

#include <linux/bpf.h>

int
iso_bpf_load_device_prog(const void *insns, uint32_t n_insns, char *log, uint32_t log_size)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.insn_cnt = n_insns;
    /* The license only gates GPL-only helpers, and this program calls none. */
    attr.license = (uint64_t)(uintptr_t) "Apache-2.0";
    if (log != NULL && log_size > 0) {
        log[0] = '\0';
        attr.log_buf = (uint64_t)(uintptr_t)log;
        attr.log_size = log_size;
        attr.log_level = 1;
    }
    long fd = syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
    if (fd < 0 && errno == ENOSPC && log != NULL) {
        /* The verifier log did not fit: load again without it rather than fail. */
        attr.log_buf = 0;
        attr.log_size = 0;
        attr.log_level = 0;
        fd = syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
    }
    if (fd < 0) {
        return -errno;
    }
    /* BPF_PROG_LOAD has no O_CLOEXEC flag: set it before anything can fork. */
    if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0) {
        int err = errno;
        close((int)fd);
        return -err;
    }
    return (int)fd;
}

int
iso_bpf_attach_device_prog(int prog_fd, int cgroup_fd)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (uint32_t)cgroup_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    /* ALLOW_MULTI: programs an ancestor attached keep running too, so a
     * container manager's own device policy still applies (runc does the same). */
    attr.attach_flags = BPF_F_ALLOW_MULTI;
    if (syscall(__NR_bpf, BPF_PROG_ATTACH, &attr, sizeof attr) < 0) {
        return -errno;
    }
    return 0;
}

int
iso_bpf_detach_device_prog(int prog_fd, int cgroup_fd)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (uint32_t)cgroup_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    if (syscall(__NR_bpf, BPF_PROG_DETACH, &attr, sizeof attr) < 0) {
        return -errno;
    }
    return 0;
}
