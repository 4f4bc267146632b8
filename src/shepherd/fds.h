/* File descriptor helpers shared by the zygote, the shepherd and the
 * command's clone child. */
#ifndef NR_FDS_H
#define NR_FDS_H

#include <sys/types.h>

/* Close every fd >= lowfd. Raw system calls only (rawsys.h): it writes no
 * memory but its own stack, so the clone child that shares the shepherd's
 * memory may call it. */
void nr_close_from(int lowfd);

struct msghdr;

/* recvmsg() of one SOCK_SEQPACKET record, except that an end of file is
 * believed only when a second receive reports it too. Linux's receive
 * looks for a record, then for the peer's hang-up, in two steps: a peer
 * that queues its last record and closes between them gets that record
 * reported as the end of file (a non-blocking receive has that window; a
 * blocking one looks at the queue again, narrowing it without closing it).
 * The record was queued before the hang-up was recorded, so the second
 * receive finds it. Uses the C library: not for the clone child. */
ssize_t nr_recv_record(int sock, struct msghdr *msg, int flags);

#endif
