/* The parent's side of a spawn, one idea per file:
 *
 *   spawn.c   iso_spawn(): pipes, id maps, the report protocol
 *   clone.c   the vfork clone (and its assembly trampoline) that execs the
 *             child program
 *   wire.c    the plan as the child program reads it (struct iso_wire, a memfd)
 *   helper.c  the child program itself, kept in a sealed memfd
 *
 * Declarations shared by these files only: neither cffi nor the child program
 * sees them.
 */
#ifndef ISOLATE_SPAWN_H
#define ISOLATE_SPAWN_H

#include "isolate.h"

/* helper.c: the sealed memfd of the child program, if iso_helper_load() ran
 * and the fd is still ours; else -1. */
int iso_helper_get(void);

/* wire.c */
#define ISO_WIRE_TIMES_OFF ((sizeof(struct iso_wire) + 7) & ~(size_t)7)

/* Whether the clone makes a new user namespace (then it carries its
 * capabilities across the child program's execve: clone.c, carry_caps). */
static inline int
iso_makes_user_ns(const struct iso_plan *p)
{
    return (p->clone_flags & CLONE_NEWUSER) && !(p->flags & ISO_PLAN_FORK);
}

int iso_write_all(int fd, const void *buf, size_t len);
int iso_wire_write(const struct iso_plan *p, int sync_rd, int netns_sock, uint64_t sigmask);
void iso_wire_read_times(const struct iso_plan *p, int plan_fd);

/* clone.c.  What the clone needs to exec the child program; on the parent's
 * stack (the parent is stopped until the execveat). */
struct iso_start {
    const struct iso_plan *plan;
    int helper_fd, plan_fd, report_fd, sync_rd, netns_sock;
    int carry_caps;
};

void *iso_clone_stack(void);
pid_t iso_clone(const struct iso_plan *plan, struct iso_child *c, struct iso_start *s, void *stack);

#endif
