/* Mount and filesystem ops.  Called only from child.c; async-signal-safe. */
#include "isolate.h"

int
run_op_mount(const struct iso_plan *p, const struct iso_op *op)
{
    return mount(plan_str(p, op->arg0), plan_str(p, op->arg1), plan_str(p, op->arg2),
                 (unsigned long)op->val0, plan_str(p, op->arg3));
}

/* A bind mount through the new mount API (Linux 5.2): open_tree() clones the
 * tree, mount_setattr() (5.12) makes it read-only recursively in one step,
 * which mount(2) can only do with one remount per submount, then
 * move_mount() attaches it. */
int
run_op_bind(const struct iso_plan *p, const struct iso_op *op)
{
    unsigned rec = (op->flags & ISO_F_RECURSIVE) ? AT_RECURSIVE : 0;
    int fd = (int)syscall(__NR_open_tree, AT_FDCWD, plan_str(p, op->arg0),
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
    if (fd < 0) {
        return -1;
    }
    if (op->flags & ISO_F_READONLY) {
        struct iso_mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
        if (syscall(__NR_mount_setattr, fd, "", AT_EMPTY_PATH | rec, &attr, sizeof attr) < 0) {
            goto fail;
        }
    }
    if (syscall(__NR_move_mount, fd, "", AT_FDCWD, plan_str(p, op->arg1),
                MOVE_MOUNT_F_EMPTY_PATH) < 0) {
        goto fail;
    }
    close(fd);
    return 0;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int
run_op_mount_setattr(const struct iso_plan *p, const struct iso_op *op)
{
    struct iso_mount_attr attr = {
        .attr_set = op->val0, .attr_clr = op->val1, .propagation = op->val2};
    unsigned rec = (op->flags & ISO_F_RECURSIVE) ? AT_RECURSIVE : 0;
    return (int)syscall(__NR_mount_setattr, AT_FDCWD, plan_str(p, op->arg1), rec, &attr,
                        sizeof attr);
}

/* pivot_root(".", ".") stacks the old root on top of the new one, so it can
 * be detached without a directory for it inside the new root (pivot_root(2),
 * NOTES).  Where pivot_root cannot work (the initramfs rootfs), fall back to
 * moving the new root over / and chroot, as switch_root does. */
int
run_op_pivot_root(const struct iso_plan *p, const struct iso_op *op)
{
    const char *new_root = plan_str(p, op->arg0);
    if (chdir(new_root) < 0) {
        return -1;
    }
    if (syscall(SYS_pivot_root, ".", ".") == 0) {
        if (umount2(".", MNT_DETACH) < 0) {
            return -1;
        }
        return chdir("/");
    }
    if (!(op->flags & ISO_F_CHROOT_FALLBACK) || errno != EINVAL) {
        return -1;
    }
    if (mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0) {
        return -1;
    }
    return chdir("/");
}

int
run_op_mkdir(const struct iso_plan *p, const struct iso_op *op)
{
    if (mkdir(plan_str(p, op->arg0), (mode_t)op->val0) < 0) {
        if (errno == EEXIST && (op->flags & ISO_F_EXIST_OK)) {
            return 0;
        }
        return -1;
    }
    return 0;
}

int
run_op_mknod(const struct iso_plan *p, const struct iso_op *op)
{
    if (mknod(plan_str(p, op->arg0), (mode_t)op->val0, (dev_t)op->val1) < 0) {
        if (errno == EEXIST && (op->flags & ISO_F_EXIST_OK)) {
            return 0;
        }
        return -1;
    }
    return 0;
}

int
run_op_symlink(const struct iso_plan *p, const struct iso_op *op)
{
    if (symlink(plan_str(p, op->arg0), plan_str(p, op->arg1)) < 0) {
        if (errno == EEXIST && (op->flags & ISO_F_EXIST_OK)) {
            return 0;
        }
        return -1;
    }
    return 0;
}

int
run_op_write_file(const struct iso_plan *p, const struct iso_op *op)
{
    int fd = open(plan_str(p, op->arg0), O_WRONLY | O_CLOEXEC | (int)op->val1, (mode_t)op->val0);
    if (fd < 0) {
        return -1;
    }
    const char *data = p->arena + op->arg1;
    size_t len = op->arg2;
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            int saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return close(fd);
}
