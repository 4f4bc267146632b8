#ifndef NR_SHEPHERD_H
#define NR_SHEPHERD_H

/* Run the shepherd of one command (never returns). `ctl` is its control
 * socket; the command's fds arrive with the C_SPAWN record. */
void nr_shepherd_main(int ctl) __attribute__((noreturn));

#endif
