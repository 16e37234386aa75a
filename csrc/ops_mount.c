/* Mount and filesystem ops.  Called only from child.c; async-signal-safe. */
#include "isolate.h"

int
run_op_mount(const struct iso_plan *p, const struct iso_op *op)
{
    const struct iso_op_mount *m = &op->mount;
    return mount(plan_str(p, m->source), plan_str(p, m->target), plan_str(p, m->fstype),
                 (unsigned long)m->flags, plan_str(p, m->data));
}

/* A bind mount through the new mount API (Linux 5.2): open_tree() clones the
 * tree, mount_setattr() (5.12) makes it read-only recursively in one step,
 * which mount(2) can only do with one remount per submount, then
 * move_mount() attaches it. */
int
run_op_bind(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f)
{
    unsigned rec = (op->flags & ISO_F_RECURSIVE) ? AT_RECURSIVE : 0;
    int fd = (int)syscall(__NR_open_tree, AT_FDCWD, plan_str(p, op->bind.source),
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
    if (fd < 0) {
        /* One call finds the source and copies it: a missing one is the likely failure. */
        return iso_fail(f, ISO_SUB_OPEN_SOURCE);
    }
    int sub = ISO_SUB_NONE;
    if (op->flags & ISO_F_READONLY) {
        struct iso_mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
        if (syscall(__NR_mount_setattr, fd, "", AT_EMPTY_PATH | rec, &attr, sizeof attr) < 0) {
            sub = ISO_SUB_SETATTR;
        }
    }
    if (sub == ISO_SUB_NONE && syscall(__NR_move_mount, fd, "", AT_FDCWD,
                                       plan_str(p, op->bind.target), MOVE_MOUNT_F_EMPTY_PATH) < 0) {
        sub = ISO_SUB_MOVE;
    }
    close_keep_errno(fd);
    return sub == ISO_SUB_NONE ? 0 : iso_fail(f, sub);
}

int
run_op_mount_setattr(const struct iso_plan *p, const struct iso_op *op)
{
    const struct iso_op_mount_setattr *m = &op->mount_setattr;
    struct iso_mount_attr attr = {
        .attr_set = m->attr_set, .attr_clr = m->attr_clr, .propagation = m->propagation};
    unsigned rec = (op->flags & ISO_F_RECURSIVE) ? AT_RECURSIVE : 0;
    return (int)syscall(__NR_mount_setattr, AT_FDCWD, plan_str(p, m->target), rec, &attr,
                        sizeof attr);
}

/* pivot_root(".", ".") stacks the old root on top of the new one, so it can
 * be detached without a directory for it inside the new root (pivot_root(2),
 * NOTES).  Where pivot_root cannot work (the initramfs rootfs), fall back to
 * moving the new root over / and chroot, as switch_root does. */
int
run_op_pivot_root(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f)
{
    if (chdir(plan_str(p, op->pivot_root.path)) < 0) {
        return iso_fail(f, ISO_SUB_CHDIR);
    }
    if (syscall(SYS_pivot_root, ".", ".") == 0) {
        if (umount2(".", MNT_DETACH) < 0) {
            return iso_fail(f, ISO_SUB_UMOUNT);
        }
        return chdir("/") < 0 ? iso_fail(f, ISO_SUB_CHDIR) : 0;
    }
    if (!(op->flags & ISO_F_CHROOT_FALLBACK) || errno != EINVAL) {
        return iso_fail(f, ISO_SUB_PIVOT);
    }
    if (mount(".", "/", NULL, MS_MOVE, NULL) < 0) {
        return iso_fail(f, ISO_SUB_MOUNT);
    }
    if (chroot(".") < 0 || chdir("/") < 0) {
        return iso_fail(f, ISO_SUB_CHDIR);
    }
    return 0;
}

int
run_op_mkdir(const struct iso_plan *p, const struct iso_op *op)
{
    if (mkdir(plan_str(p, op->mkdir.path), (mode_t)op->mkdir.mode) < 0) {
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
    if (mknod(plan_str(p, op->mknod.path), (mode_t)op->mknod.mode, (dev_t)op->mknod.dev) < 0) {
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
    if (symlink(plan_str(p, op->symlink.target), plan_str(p, op->symlink.link)) < 0) {
        if (errno == EEXIST && (op->flags & ISO_F_EXIST_OK)) {
            return 0;
        }
        return -1;
    }
    return 0;
}

int
run_op_write_file(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f)
{
    const struct iso_op_write_file *w = &op->write_file;
    int fd = open(plan_str(p, w->path), O_WRONLY | O_CLOEXEC | (int)w->oflags, (mode_t)w->mode);
    if (fd < 0) {
        return iso_fail(f, ISO_SUB_CREATE);
    }
    const char *data = p->arena + w->data;
    size_t len = w->len;
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            close_keep_errno(fd);
            return iso_fail(f, ISO_SUB_WRITE);
        }
        data += n;
        len -= (size_t)n;
    }
    return close(fd) < 0 ? iso_fail(f, ISO_SUB_WRITE) : 0;
}
