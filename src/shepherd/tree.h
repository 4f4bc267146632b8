/* The process tree below the shepherd: finding and signalling it. */
#ifndef NR_TREE_H
#define NR_TREE_H

#include <sys/types.h>

/* Send `sig` to every live descendant of `root`, found by scanning /proc
 * (so processes that left the process group with setsid are found too).
 * Returns how many were signalled, or -1 if /proc could not be read. */
int nr_signal_descendants(pid_t root, int sig);

#endif
