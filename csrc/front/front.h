/* The isolate-oci front end: the program clients run (front.c), and the
 * messages it exchanges with the warm planner's worker (src/isolate/oci/warm.py
 * writes the same layouts with struct).  Python decides, C executes: the
 * worker runs the verb, and every process it would clone is cloned here, from
 * its plan, so that the container's init is this process's child (runc's
 * process tree).  Both ends run on one machine: native byte order.
 */
#ifndef ISOLATE_FRONT_H
#define ISOLATE_FRONT_H

#include "../spawn.h"

#define ISO_FRONT_VERSION 1u
#define ISO_PROG "isolate-oci"
#define ISO_MAX_FDS 250 /* SCM_MAX_FD is 253: the cwd and ours besides */
#define ISO_MAX_MSG (4u << 20)

/* Every message is one SOCK_SEQPACKET datagram: struct iso_msg, then its body. */
enum iso_msg_type {
    /* front end -> worker: struct iso_msg_request; fds: the cwd, the lifeline, then fds[] */
    ISO_MSG_REQUEST = 1,
    ISO_MSG_SPAWN,     /* worker -> front end: struct iso_msg_spawn; fds: the plan's */
    ISO_MSG_SPAWNED,   /* struct iso_msg_spawned; fd: the pidfd, if any */
    ISO_MSG_RELEASE,   /* no body */
    ISO_MSG_RELEASED,  /* struct iso_msg_spawned */
    ISO_MSG_ABANDON,   /* no body */
    ISO_MSG_ABANDONED, /* no body */
    ISO_MSG_WAIT,      /* struct iso_msg_wait */
    ISO_MSG_WAITED,    /* struct iso_msg_waited */
    ISO_MSG_EXIT,      /* struct iso_msg_exit: the last message */
    /* No body, no answer: from now on the signals runc run and exec pass on are
     * caught, and passed on to the child of the next WAIT (held until then). */
    ISO_MSG_FORWARD
};

struct iso_msg {
    uint32_t type; /* enum iso_msg_type */
    uint32_t reserved;
};

/* Then argc, then envc NUL-terminated strings (argv without argv[0]). */
struct iso_msg_request {
    uint32_t version; /* ISO_FRONT_VERSION */
    uint32_t umask;
    uint32_t argc, envc;
    uint32_t n_fds; /* fds sent after the cwd and the lifeline */
    int32_t fds[];  /* their numbers in the front end */
};

/* Then helper_len bytes (the child program's path), then wire_len bytes
 * (PackedPlan.wire: struct iso_wire_plan ...). */
struct iso_msg_spawn {
    int32_t oom_score_adj; /* the spawned process inherits it; INT32_MIN: leave ours */
    uint32_t personality;  /* personality(2) domain; 0xffffffff: leave ours */
    uint32_t helper_len, wire_len;
};

struct iso_msg_spawned {
    int32_t rc;    /* 0 or -errno of iso_spawn / iso_release */
    int32_t stage; /* enum iso_child_stage on failure */
    int32_t pid;
    int32_t clone3_used;
    int32_t held;       /* waiting for RELEASE or ABANDON */
    int32_t report_len; /* bytes of report: 0 = exec'd */
    struct iso_report report;
};

struct iso_msg_wait {
    int32_t pid; /* a child of the front end's */
    int32_t reserved;
};

struct iso_msg_waited {
    int32_t status; /* waitpid(2)'s, when err is 0 */
    int32_t err;
};

struct iso_msg_exit {
    int32_t code;
    int32_t reserved;
};

/* PackedPlan.wire's header (src/isolate/_plan.py: WIRE_HEADER).  Then, each
 * padded to 8 bytes: n_ops struct iso_op and arena_len bytes of arena (one
 * section), argv_len bytes of argc strings, envp_len bytes of envc strings,
 * uid_len and gid_len bytes of id maps, n_join int32_t fd indices, n_holes
 * struct iso_wire_hole. */
struct iso_wire_plan {
    char magic[4]; /* "ISOW" */
    uint32_t version;
    uint64_t clone_flags;
    uint32_t flags, n_ops, arena_len, argc;
    int32_t envc, uid_len, gid_len; /* -1: none (envc: the front end's environ) */
    uint32_t n_join, n_fds;
    int32_t netns, cgroup; /* fd indices, -1: none */
    uint32_t n_holes, argv_len, envp_len, total, reserved;
};

/* An int32_t fd at offset of the ops and arena (the arena follows the ops): the
 * number the fd of index got here (-1: none). */
struct iso_wire_hole {
    uint32_t offset;
    int32_t index;
};

#define ISO_WIRE_PLAN_VERSION 1u

/* front.c: print "isolate-oci: what[: strerror(err)]" and exit 1. */
_Noreturn void iso_front_die(const char *what, int err);

/* serve.c.  REQUEST: argv, environ, umask, the cwd and every fd we have; 0 or
 * -errno (nothing sent: the caller may run the verb itself).  Then serve the
 * worker: exits with EXIT's code, or returns if the planner closed the
 * connection with the REQUEST unread (the caller runs the verb). */
int iso_front_request(int sock, int argc, char **argv);
void iso_front_serve(int sock);

#endif
