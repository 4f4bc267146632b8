/* File descriptor helpers shared by the zygote, the shepherd and the
 * command's clone child. */
#ifndef NR_FDS_H
#define NR_FDS_H

/* Close every fd >= lowfd. Raw system calls only (rawsys.h): it writes no
 * memory but its own stack, so the clone child that shares the shepherd's
 * memory may call it. */
void nr_close_from(int lowfd);

#endif
