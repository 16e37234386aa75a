/* Root filesystem ops: building a new root whose mount targets are resolved
 * inside it.  Called only from child.c; async-signal-safe (no malloc, no
 * stdio), return -1 with errno set and the failing part (and, for a batched
 * op, entry) in the struct iso_fault.
 *
 * Every target is opened with openat2(root, path, RESOLVE_IN_ROOT |
 * RESOLVE_NO_MAGICLINKS) as an O_PATH fd and mounted onto through that fd
 * (move_mount MOVE_MOUNT_T_EMPTY_PATH), so a symlink planted in an image at
 * a mount target resolves inside the image, never out of it: the class of
 * runc's CVE-2021-30465, where the check was done on a path string.
 */
#include "isolate.h"

#include <linux/openat2.h>

/* Close fd (if open), record the failing part, return -1; errno is kept. */
static int
fail_closing(struct iso_fault *f, int substep, int fd)
{
    close_keep_errno(fd);
    return iso_fail(f, substep);
}

/* A root the plan names (a path as the child sees it), as an O_PATH fd. */
static int
open_root(const char *root)
{
    return open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/* path inside the root open as rfd; rfd -1: the path as is, relative to the
 * current root and cwd (sources the caller names on the host, whose own
 * symlinks are the caller's). */
static int
open_beneath(int rfd, const char *path, uint64_t oflags)
{
    if (rfd < 0) {
        return open(path, (int)oflags | O_CLOEXEC);
    }
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = oflags | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(__NR_openat2, rfd, path, &how, sizeof how);
}

/* path inside root (root NULL: as is).  A failure is the root's
 * (ISO_SUB_OPEN_ROOT) or the path's (`what`). */
static int
open_in_root(const char *root, const char *path, uint64_t oflags, struct iso_fault *f, int what)
{
    int rfd = -1;
    if (root != NULL && (rfd = open_root(root)) < 0) {
        return iso_fail(f, ISO_SUB_OPEN_ROOT);
    }
    int fd = open_beneath(rfd, path, oflags);
    if (fd < 0) {
        return fail_closing(f, what, rfd);
    }
    close_keep_errno(rfd);
    return fd;
}

/* Attach the detached mount mfd on the place the O_PATH fd tfd names. */
static int
move_onto(int mfd, int tfd, struct iso_fault *f)
{
    if (syscall(__NR_move_mount, mfd, "", tfd, "",
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
        return iso_fail(f, ISO_SUB_MOVE);
    }
    return 0;
}

/* A copy of the mount tree fd is (or is in), detached and close-on-exec. */
static int
clone_tree(int fd, unsigned rec, struct iso_fault *f)
{
    int mfd = (int)syscall(__NR_open_tree, fd, "",
                           AT_EMPTY_PATH | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
    return mfd < 0 ? iso_fail(f, ISO_SUB_CLONE) : mfd;
}

/* mount tmpfs on base, then pivot_root into it with the old root kept at
 * /oldroot, so that sources stay reachable as /oldroot/<host path> while the
 * new root is built at /newroot (bubblewrap's layout).  With
 * ISO_F_CHROOT_FALLBACK there is no pivot (the initramfs rootfs cannot be
 * pivoted away from): a recursive clone of the old root, taken before the
 * tmpfs covers base, is attached at base/oldroot instead. */
int
run_op_root_stage(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f)
{
    const char *base = plan_str(p, op->root_stage.base);
    int tree = -1;
    if (op->flags & ISO_F_CHROOT_FALLBACK) {
        tree = (int)syscall(__NR_open_tree, AT_FDCWD, "/",
                            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (tree < 0) {
            return iso_fail(f, ISO_SUB_CLONE);
        }
    }
    if (mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0) {
        return fail_closing(f, ISO_SUB_MOUNT, tree);
    }
    if (chdir(base) < 0) {
        return fail_closing(f, ISO_SUB_CHDIR, tree);
    }
    if (mkdir("newroot", 0755) < 0 || mkdir("oldroot", 0755) < 0) {
        return fail_closing(f, ISO_SUB_MKDIR, tree);
    }
    if (tree >= 0) {
        if (syscall(__NR_move_mount, tree, "", AT_FDCWD, "oldroot", MOVE_MOUNT_F_EMPTY_PATH) < 0) {
            return fail_closing(f, ISO_SUB_MOVE, tree);
        }
        close(tree);
        return 0;
    }
    if (syscall(SYS_pivot_root, ".", "oldroot") < 0) {
        return iso_fail(f, ISO_SUB_PIVOT);
    }
    return chdir("/") < 0 ? iso_fail(f, ISO_SUB_CHDIR) : 0;
}

/* Create name in dfd with the len bytes at data; it must not exist yet
 * (O_EXCL, which also never follows a symlink). */
static int
write_entry(int dfd, const char *name, mode_t mode, const char *data, size_t len,
            struct iso_fault *f)
{
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        return iso_fail(f, ISO_SUB_CREATE);
    }
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail_closing(f, ISO_SUB_WRITE, fd);
        }
        data += n;
        len -= (size_t)n;
    }
    return close(fd) < 0 ? iso_fail(f, ISO_SUB_WRITE) : 0;
}

/* One entry named name (a single component) in dfd, of an iso_entry_type
 * but CONTENTS (write_entry): link is a symlink's target, or a device's
 * dev_t as eight bytes little-endian.  An existing entry of any type is left
 * alone: a later open resolves it, inside the root. */
static int
make_entry(int dfd, const char *name, unsigned type, mode_t mode, const char *link,
           struct iso_fault *f)
{
    int rc;
    switch (type) {
    case ISO_ENTRY_FILE:
        rc = mknodat(dfd, name, S_IFREG | mode, 0);
        break;
    case ISO_ENTRY_CHARDEV: {
        uint64_t dev = 0;
        for (int i = 7; i >= 0; i--) {
            dev = dev << 8 | (unsigned char)link[i];
        }
        rc = mknodat(dfd, name, S_IFCHR | mode, (dev_t)dev);
        break;
    }
    case ISO_ENTRY_SYMLINK:
        rc = symlinkat(link, dfd, name);
        break;
    default:
        rc = mkdirat(dfd, name, mode);
        break;
    }
    if (rc < 0 && errno != EEXIST) {
        return iso_fail(f, ISO_SUB_CREATE);
    }
    return 0;
}

/* Create name in the directory dir, resolved inside root. */
int
run_op_root_mkdir(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f)
{
    const struct iso_op_root_mkdir *m = &op->root_mkdir;
    int dfd = open_in_root(plan_str(p, m->root), plan_str(p, m->dir), O_PATH | O_DIRECTORY, f,
                           ISO_SUB_OPEN_DIR);
    if (dfd < 0) {
        return -1;
    }
    int rc = make_entry(dfd, plan_str(p, m->name), (unsigned)m->type, (mode_t)m->mode,
                        plan_str(p, m->link), f);
    close_keep_errno(dfd);
    return rc;
}

/* The entries packed by _plan_root.py (api.h: struct iso_op_root_mkdirs),
 * made through one directory fd: a fresh root's mount points cost a
 * syscall each. */
int
run_op_root_mkdirs(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f)
{
    const struct iso_op_root_mkdirs *m = &op->root_mkdirs;
    int dfd = open_in_root(plan_str(p, m->root), plan_str(p, m->dir), O_PATH | O_DIRECTORY, f,
                           ISO_SUB_OPEN_DIR);
    if (dfd < 0) {
        return -1;
    }
    const char *e = p->arena + m->entries;
    int rc = 0;
    for (uint64_t i = 0; i < m->count && rc == 0; i++) {
        unsigned type = (unsigned char)e[0];
        mode_t mode = (mode_t)((unsigned char)e[1] | ((unsigned)(unsigned char)e[2] << 8));
        const char *name = e + 3;
        const char *rest = name + strlen(name) + 1;
        f->entry = (int32_t)i;
        if (type == ISO_ENTRY_CONTENTS) {
            const unsigned char *l = (const unsigned char *)rest;
            size_t len = (size_t)l[0] | (size_t)l[1] << 8 | (size_t)l[2] << 16 | (size_t)l[3] << 24;
            rc = write_entry(dfd, name, mode, rest + 4, len, f);
            e = rest + 4 + len;
        }
        else if (type == ISO_ENTRY_CHARDEV) {
            rc = make_entry(dfd, name, type, mode, rest, f);
            e = rest + 8;
        }
        else {
            rc = make_entry(dfd, name, type, mode, rest, f);
            e = rest + strlen(rest) + 1;
        }
    }
    close_keep_errno(dfd);
    return rc;
}

/* A bind the parent prepared (isolate/_idmount.py): mfd is its detached
 * clone of the source, its attributes set, idmapped with this child's own
 * user namespace where the filesystem allows.  The parent made it in the
 * initial user namespace because mount_setattr(MOUNT_ATTR_IDMAP) needs
 * CAP_SYS_ADMIN in the filesystem's user namespace, which this child, born
 * in its own, never holds; attaching a detached mount only needs it here. */
static int
attach_prepared(int mfd, int tfd_root, const char *target, struct iso_fault *f)
{
    int tfd = open_beneath(tfd_root, target, O_PATH);
    if (tfd < 0) {
        return iso_fail(f, ISO_SUB_OPEN_TARGET);
    }
    int rc = move_onto(mfd, tfd, f);
    close_keep_errno(tfd);
    close_keep_errno(mfd);
    return rc;
}

/* One bind of source (inside the root open as sfd_root) onto target (inside
 * tfd_root); a root fd of -1 takes the path as is.  same: source and target
 * name one place (a path made read-only where it is), so the source fd is
 * the target too.  op->fd >= 0: a mount the parent prepared instead
 * (attach_prepared).  open_tree() clones the source, mount_setattr() applies
 * attr_set/attr_clr (and read-only) recursively, move_mount() attaches it. */
static int
bind_one(const struct iso_op *op, uint64_t attr_set, uint64_t attr_clr, int sfd_root,
         const char *source, int tfd_root, const char *target, int same, struct iso_fault *f)
{
    unsigned rec = (op->flags & ISO_F_RECURSIVE) ? AT_RECURSIVE : 0;
    if (op->fd >= 0 && !same) {
        return attach_prepared(op->fd, tfd_root, target, f);
    }
    int sfd = open_beneath(sfd_root, source, O_PATH);
    if (sfd < 0) {
        return iso_fail(f, ISO_SUB_OPEN_SOURCE);
    }
    int mfd = clone_tree(sfd, rec, f);
    if (mfd < 0) {
        close_keep_errno(sfd);
        return -1;
    }
    int tfd = same ? sfd : -1;
    if (!same) {
        close(sfd);
    }
    int rc = 0;
    struct iso_mount_attr attr = {.attr_set = attr_set, .attr_clr = attr_clr};
    if (op->flags & ISO_F_READONLY) {
        attr.attr_set |= MOUNT_ATTR_RDONLY;
    }
    if ((attr.attr_set || attr.attr_clr) &&
        syscall(__NR_mount_setattr, mfd, "", AT_EMPTY_PATH | rec, &attr, sizeof attr) < 0) {
        rc = iso_fail(f, ISO_SUB_SETATTR);
    }
    if (rc == 0 && tfd < 0 && (tfd = open_beneath(tfd_root, target, O_PATH)) < 0) {
        rc = iso_fail(f, ISO_SUB_OPEN_TARGET);
    }
    if (rc == 0) {
        rc = move_onto(mfd, tfd, f);
    }
    close_keep_errno(tfd);
    close_keep_errno(mfd);
    return rc;
}

/* The roots of a bind, open (-1 for a root of NULL: paths as they are). */
static int
open_roots(const char *sroot, const char *troot, int *sfd, int *tfd, struct iso_fault *f)
{
    *sfd = *tfd = -1;
    if ((sroot != NULL && (*sfd = open_root(sroot)) < 0) ||
        (troot != NULL && (*tfd = open_root(troot)) < 0)) {
        return fail_closing(f, ISO_SUB_OPEN_ROOT, *sfd);
    }
    return 0;
}

/* ISO_F_EXIST_OK: a missing source or target (or root) is skipped. */
static int
skip_missing(const struct iso_op *op, int rc)
{
    return rc < 0 && errno == ENOENT && (op->flags & ISO_F_EXIST_OK) ? 0 : rc;
}

static int
same_path(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* Bind source (inside root src_root) onto target (inside root root). */
int
run_op_root_bind(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f)
{
    const struct iso_op_root_bind *b = &op->root_bind;
    const char *sroot = plan_str(p, b->src_root), *troot = plan_str(p, b->root);
    const char *source = plan_str(p, b->source), *target = plan_str(p, b->target);
    int sfd, tfd;
    if (open_roots(sroot, troot, &sfd, &tfd, f) < 0) {
        return skip_missing(op, -1);
    }
    int same = same_path(sroot, troot) && same_path(source, target);
    int rc =
        skip_missing(op, bind_one(op, b->attr_set, b->attr_clr, sfd, source, tfd, target, same, f));
    close_keep_errno(tfd);
    close_keep_errno(sfd);
    return rc;
}

/* count binds with the same roots and flags, their (source NUL, target NUL)
 * pairs packed at pairs, both roots opened once. */
int
run_op_root_binds(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f)
{
    const struct iso_op_root_binds *b = &op->root_binds;
    const char *sroot = plan_str(p, b->src_root), *troot = plan_str(p, b->root);
    int sfd, tfd;
    if (open_roots(sroot, troot, &sfd, &tfd, f) < 0) {
        return skip_missing(op, -1);
    }
    int same_root = same_path(sroot, troot), rc = 0;
    const char *e = p->arena + b->pairs;
    for (uint64_t i = 0; i < b->count && rc == 0; i++) {
        const char *source = e, *target = source + strlen(source) + 1;
        e = target + strlen(target) + 1;
        f->entry = (int32_t)i;
        rc = skip_missing(op, bind_one(op, b->attr_set, b->attr_clr, sfd, source, tfd, target,
                                       same_root && strcmp(source, target) == 0, f));
    }
    close_keep_errno(tfd);
    close_keep_errno(sfd);
    return rc;
}

/* A new filesystem through fsopen/fsconfig/fsmount (Linux 5.2).  Each of the
 * n_opts options at opts is a type byte ('s' string, 'f' flag), the key and
 * NUL, the value and NUL: packed by _plan.py so that nothing here has to
 * split or copy a string. */
static int
fs_new(const char *fstype, const char *source, uint64_t attrs, const char *opts, uint64_t n_opts,
       struct iso_fault *f)
{
    int fs = (int)syscall(__NR_fsopen, fstype, FSOPEN_CLOEXEC);
    if (fs < 0) {
        return iso_fail(f, ISO_SUB_FSOPEN);
    }
    const char *o = opts;
    for (uint64_t i = 0; i < n_opts && o != NULL; i++) {
        char type = o[0];
        const char *key = o + 1;
        const char *val = key + strlen(key) + 1;
        long rc = type == 'f' ? syscall(__NR_fsconfig, fs, FSCONFIG_SET_FLAG, key, NULL, 0)
                              : syscall(__NR_fsconfig, fs, FSCONFIG_SET_STRING, key, val, 0);
        if (rc < 0) {
            return fail_closing(f, ISO_SUB_FSCONFIG, fs);
        }
        o = val + strlen(val) + 1;
    }
    if (source != NULL &&
        syscall(__NR_fsconfig, fs, FSCONFIG_SET_STRING, "source", source, 0) < 0) {
        return fail_closing(f, ISO_SUB_FSCONFIG, fs);
    }
    if (syscall(__NR_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        return fail_closing(f, ISO_SUB_FSCREATE, fs);
    }
    int mfd = (int)syscall(__NR_fsmount, fs, FSMOUNT_CLOEXEC, (unsigned)attrs);
    if (mfd < 0) {
        return fail_closing(f, ISO_SUB_FSMOUNT, fs);
    }
    close(fs);
    return mfd;
}

/* A new filesystem attached to a target resolved inside the root.  fd >= 0:
 * a detached tree the parent keeps (a RootFS's shared read-only root) is
 * attached instead, as a clone: the tree itself must stay the parent's. */
int
run_op_root_mount(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f)
{
    const struct iso_op_root_mount *m = &op->root_mount;
    int mfd;
    if (op->fd >= 0) {
        mfd = clone_tree(op->fd, 0, f);
    }
    else {
        mfd = fs_new(plan_str(p, m->fstype), plan_str(p, m->source), m->attrs,
                     m->options ? p->arena + m->options : NULL, m->n_options, f);
    }
    if (mfd < 0) {
        return -1;
    }
    int tfd =
        open_in_root(plan_str(p, m->root), plan_str(p, m->target), O_PATH, f, ISO_SUB_OPEN_TARGET);
    int rc = tfd < 0 ? -1 : move_onto(mfd, tfd, f);
    close_keep_errno(tfd);
    close_keep_errno(mfd);
    return skip_missing(op, rc);
}

/* Hide path (inside the root open as rfd), as the OCI default masked paths
 * are hidden: a directory gets an empty read-only tmpfs, anything else a
 * clone of the null device open as nfd.  A missing path is nothing to hide.
 * *empty is the first such tmpfs, once attached (else -1): later
 * directories get a clone of it, one superblock for all (read-only, so
 * nothing is shared but emptiness). */
static int
mask_one(int rfd, const char *path, int nfd, int *empty, struct iso_fault *f)
{
    int tfd = open_beneath(rfd, path, O_PATH);
    if (tfd < 0) {
        return errno == ENOENT ? 0 : iso_fail(f, ISO_SUB_OPEN_TARGET);
    }
    struct stat st;
    if (fstat(tfd, &st) < 0) {
        return fail_closing(f, ISO_SUB_STAT_TARGET, tfd);
    }
    int mfd, dir = S_ISDIR(st.st_mode);
    if (dir && *empty >= 0) {
        mfd = clone_tree(*empty, 0, f);
    }
    else if (dir) {
        mfd = fs_new("tmpfs", "tmpfs",
                     MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                     NULL, 0, f);
    }
    else {
        mfd = clone_tree(nfd, 0, f);
    }
    if (mfd < 0) {
        close_keep_errno(tfd);
        return -1;
    }
    int rc = move_onto(mfd, tfd, f);
    close_keep_errno(tfd);
    if (rc == 0 && dir && *empty < 0) {
        *empty = mfd; /* now attached: open_tree() can clone it */
    }
    else {
        close_keep_errno(mfd);
    }
    return rc;
}

/* Hide each of the n NUL-terminated paths at paths, inside root (see
 * mask_one).  null: the null device, a path resolved inside null_root, or
 * inside root when null_root is NULL; never as is, and once open it must be
 * the character device 1:3 (else ENODEV): an image whose /dev is a symlink
 * must not turn "the new root's dev/null" into a host file, bound read-write
 * over /proc/keys (the class of runc's CVE-2025-31133).  Checked on the fd
 * that is cloned: no window for a swap.  empty >= 0: the empty read-only
 * tmpfs to clone for directories, kept by the parent (a RootFS's shared
 * one), instead of a new one.  batched: report each path as an entry. */
static int
mask_all(const char *root, const char *paths, uint64_t n, const char *null, const char *null_root,
         int empty, int batched, struct iso_fault *f)
{
    int rfd = -1, nrfd = -1;
    if (root != NULL && (rfd = open_root(root)) < 0) {
        return errno == ENOENT ? 0 : iso_fail(f, ISO_SUB_OPEN_ROOT);
    }
    if (null_root != NULL && (nrfd = open_root(null_root)) < 0) {
        return fail_closing(f, ISO_SUB_OPEN_ROOT, rfd);
    }
    int nfd = open_beneath(null_root != NULL ? nrfd : rfd, null, O_PATH);
    close_keep_errno(nrfd);
    struct stat st;
    if (nfd < 0 || fstat(nfd, &st) < 0) {
        close_keep_errno(nfd);
        return fail_closing(f, ISO_SUB_OPEN_NULL, rfd);
    }
    if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3)) {
        errno = ENODEV;
        close_keep_errno(nfd);
        return fail_closing(f, ISO_SUB_CHECK_NULL, rfd);
    }
    int rc = 0, tmpfs = empty;
    const char *path = paths;
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        if (batched) {
            f->entry = (int32_t)i;
        }
        rc = mask_one(rfd, path, nfd, &tmpfs, f);
        path += strlen(path) + 1;
    }
    if (tmpfs != empty) {
        close_keep_errno(tmpfs);
    }
    close_keep_errno(nfd);
    close_keep_errno(rfd);
    return rc;
}

int
run_op_root_mask(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f)
{
    const struct iso_op_root_mask *m = &op->root_mask;
    return mask_all(plan_str(p, m->root), plan_str(p, m->path), 1, plan_str(p, m->null),
                    plan_str(p, m->null_root), op->fd, 0, f);
}

int
run_op_root_masks(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f)
{
    const struct iso_op_root_masks *m = &op->root_masks;
    return mask_all(plan_str(p, m->root), p->arena + m->paths, m->count, plan_str(p, m->null),
                    plan_str(p, m->null_root), op->fd, 1, f);
}

/* chdir to path resolved inside root ("/" once the root is switched): a cwd
 * such as /proc/self/fd/N naming a leaked host directory is refused
 * (RESOLVE_NO_MAGICLINKS), the class of runc's CVE-2024-21626. */
int
run_op_root_chdir(const struct iso_plan *p, const struct iso_op *op, struct iso_fault *f)
{
    const struct iso_op_root_chdir *c = &op->root_chdir;
    int fd = open_in_root(plan_str(p, c->root), plan_str(p, c->path), O_PATH | O_DIRECTORY, f,
                          ISO_SUB_OPEN_DIR);
    if (fd < 0) {
        return -1;
    }
    int rc = fchdir(fd) < 0 ? iso_fail(f, ISO_SUB_CHDIR) : 0;
    close_keep_errno(fd);
    return rc;
}
