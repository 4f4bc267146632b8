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

struct nr_tree {
    pid_t self;    /* the shepherd (single-threaded: its tid is its pid) */
    pid_t *termed; /* children already sent SIGTERM, sorted */
    size_t nterm, cap;
};

void nr_tree_init(struct nr_tree *t, pid_t self);

enum nr_round {
    NR_ROUND_COUNT, /* list only */
    NR_ROUND_TERM,  /* SIGTERM and SIGCONT, once per child */
    NR_ROUND_KILL,  /* SIGKILL, every round */
};

/* One round over the shepherd's direct children except `skip1` and `skip2`
 * (the command and the group anchor, which the caller handles): each child
 * and the group it leads, if it leads one, get the round's signals. Returns
 * how many children other than the skipped ones were listed, or -1 when the
 * children file cannot be trusted or read (/proc missing, another pid
 * namespace's, unreadable). A listing is a hint: a child that appears while
 * it is read may be missed until the next round, so only wait4's ECHILD
 * proves that none is left. */
int nr_children(struct nr_tree *t, pid_t skip1, pid_t skip2, enum nr_round round);

/* `pid` was reaped: its number may now be reused, forget it. */
void nr_tree_forget(struct nr_tree *t, pid_t pid);

#endif
