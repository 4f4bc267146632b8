#ifndef NR_SHEPHERD_H
#define NR_SHEPHERD_H

/* Run the shepherd of one command (never returns). `ctl` is its control
 * socket; in, out, err become the command's fds 0, 1, 2. */
void nr_shepherd_main(int ctl, int in, int out, int err) __attribute__((noreturn));

#endif
