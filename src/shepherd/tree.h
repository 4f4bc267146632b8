/* The shepherd's own children: listing them and signalling only what is
 * pinned.
 *
 * A pid number read from /proc names a process only as long as nothing can
 * reap it. The shepherd is the only reaper of its direct children and never
 * reaps between listing and signalling, so a pid listed in
 * /proc/self/task/<tid>/children stays that child's until the shepherd itself
 * waits for it; a group it leads stays its group for as long as it is
 * unreaped. Grandchildren are never signalled by number: when their parent
 * dies they are re-parented to the shepherd (a child subreaper) and the next
 * round finds them as children. */
#ifndef NR_TREE_H
#define NR_TREE_H

#include <stddef.h>
#include <sys/types.h>

/* A sorted set of pid numbers. */
struct nr_pidset {
    pid_t *v;
    size_t n, cap;
};

int nr_pidset_has(const struct nr_pidset *set, pid_t pid);
/* Returns 0, or -1 when memory ran out (the pid is then not in the set). */
int nr_pidset_add(struct nr_pidset *set, pid_t pid);
void nr_pidset_del(struct nr_pidset *set, pid_t pid);
void nr_pidset_free(struct nr_pidset *set);

/* Who got the stop's SIGTERM. `termed` holds processes that got their own,
 * and is kept exact for the shepherd's children: one is forgotten when it is
 * reaped. `groups` holds the process groups that got one as a whole; it is
 * never pruned (a stop is short, and a group number reused by a newcomer of
 * the tree within it costs that newcomer its SIGTERM, not a second one). */
struct nr_tree {
    pid_t self; /* the shepherd (single-threaded: its tid is its pid) */
    int children_fd; /* our /proc/self/task/<tid>/children, kept open (nr_tree_keep_children); -1 for none */
    struct nr_pidset termed, groups;
    struct nr_pidset listed, again; /* the listings of a round (children, or a cgroup read twice), kept to save allocations */
};

/* nr_tree_init starts with no children file; nr_tree_free keeps it open. */
void nr_tree_init(struct nr_tree *t, pid_t self);
void nr_tree_free(struct nr_tree *t);

/* Open our children file once, where /proc is our pid namespace's and shows
 * us as ourselves: each listing is then one pread of it from offset 0
 * (which makes the kernel write it anew), instead of a readlink, an open, a
 * read until end of file and a close. Without it (no such /proc), each
 * listing checks and opens what it needs, as before. */
void nr_tree_keep_children(struct nr_tree *t);

enum nr_round {
    NR_ROUND_COUNT, /* list only */
    NR_ROUND_TERM,  /* SIGTERM and SIGCONT, once per child */
    NR_ROUND_KILL,  /* SIGKILL, every round */
};

/* One round over the shepherd's direct children except `skip1` and `skip2`
 * (the command and the group anchor, which the caller handles): each child
 * and the group it leads, if it leads one, get the round's signals. Returns
 * how many children other than the skipped ones were listed, or -1 when the
 * children file cannot be trusted or read (/proc missing, a sibling pid
 * namespace's, unreadable). An ancestor namespace's /proc is used through our
 * number there (/proc/self), each child's number translated back by the
 * NSpid line of its status. A listing is a hint: a child that appears while
 * it is read may be missed until the next round, so only wait4's ECHILD
 * proves that none is left. */
int nr_children(struct nr_tree *t, pid_t skip1, pid_t skip2, enum nr_round round);

/* One round over the processes listed in `procs`, a cgroup's cgroup.procs
 * file, except `skip` (the unreaped command, which the caller handles).
 *
 * A cgroup lists processes the shepherd does not reap, so a listed number is
 * pinned differently: each listed pid is opened as a pidfd, the file is read
 * again, and only pidfds whose pid is still listed are signalled. A pid that
 * exited and went to an outsider between the first read and pidfd_open is
 * not listed by the second read (the outsider is not in the cgroup; pid
 * numbers are unique among live processes), and a pidfd that was opened on
 * a process still listed later names that process for good: if it dies
 * meanwhile, the signal fails.
 *
 * TERM: SIGTERM and SIGCONT to each process not yet termed, except members of
 * a group that got its SIGTERM as a whole (`groups`, pgid read once the pid is
 * confirmed). KILL: SIGKILL to each, every round. COUNT: no signal.
 *
 * Returns how many processes but `skip` the first read listed (pids that
 * are not in our pid namespace, listed as 0, are not counted: they cannot be
 * signalled by number), or -1 when the file cannot be read. */
int nr_cgroup_round(struct nr_tree *t, const char *procs, pid_t skip, enum nr_round round);

/* `pid` was reaped: its number may now be reused, forget it. */
void nr_tree_forget(struct nr_tree *t, pid_t pid);

#endif
