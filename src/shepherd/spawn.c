/* netrunner-spawn: starts the zygote so that it shares the interpreter's cwd,
 * root and umask (CLONE_FS; docs/decisions/0006-call-time-attributes.md).
 *
 * posix_spawn cannot ask for CLONE_FS, and the clone must be made by the
 * interpreter itself, so this is a tiny shared object loaded into it with
 * ctypes, once, to start the zygote. It needs no C library: raw system calls
 * only (rawsys.h), no libc symbol, no dynamic dependency, so it runs wherever
 * the statically linked shepherd does.
 *
 * The child is made as posix_spawn makes it: CLONE_VM | CLONE_VFORK (no copy
 * of the interpreter's memory; the calling thread waits until the exec), with
 * every signal blocked across the clone so that no handler of the interpreter
 * runs in the child, which then resets every disposition to the default and
 * unblocks them -- but for the terminal's stop signals, which it ignores
 * until it is in a process group of its own: a Ctrl-Z typed in that moment
 * reaches it as a member of the interpreter's group, and would stop it
 * before its exec, with the interpreter waiting for that exec in an
 * uninterruptible sleep (the zygote puts them back to the default). It
 * writes nothing but its own stack and, on failure, the errno slot of the
 * request, which the caller reads once the clone returns.
 *
 * Where this cannot be done (an architecture without nr_clone3_run, clone3
 * refused by a seccomp profile or missing), nr_spawn_zygote returns -ENOSYS
 * or -EPERM, and the caller starts the zygote as before, without sharing. */
#define _GNU_SOURCE
#include "rawsys.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define EXPORT __attribute__((visibility("default")))

struct request {
    const char *path;
    char *const *argv;
    char *const *envp;
    int null_fd;
    int sock_fd;
    volatile int error; /* written by the child before it exits; 0 if it execs */
};

/* linux/sched.h's struct clone_args up to `stack_size`: what is asked for
 * here (CLONE_ARGS_SIZE_VER0), without depending on the headers' version. */
struct nr_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

/* The kernel's struct sigaction on x86-64 and aarch64. */
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

#ifdef NR_HAVE_CLONE3_RUN
static int child(void *arg)
{
    struct request *r = arg;
    struct kernel_sigaction dfl = {SIG_DFL, 0, NULL, 0}, ign = {SIG_IGN, 0, NULL, 0};
    uint64_t none = 0;
    long e;
    int sig;

    /* Handlers would run the interpreter's code in our shared memory: back
     * to the default, every one but the stop signals (ignored until the
     * exec, see above). */
    for (sig = 1; sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            nr_sys4(SYS_rt_sigaction, sig, sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU ? &ign : &dfl, 0,
                    sizeof(uint64_t));
    nr_sys2(SYS_setpgid, 0, 0);
    if ((e = nr_sys3(SYS_dup3, r->null_fd, 0, 0)) < 0 || (e = nr_sys3(SYS_dup3, r->null_fd, 1, 0)) < 0)
        goto fail;
    /* Fd 3 is the control socket; dup3 onto itself fails, so clear its
     * close-on-exec flag instead when it is there already. */
    e = r->sock_fd == 3 ? nr_sys3(SYS_fcntl, 3, F_SETFD, 0) : nr_sys3(SYS_dup3, r->sock_fd, 3, 0);
    if (e < 0)
        goto fail;
    nr_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &none, 0, sizeof none);
    e = nr_sys3(SYS_execve, r->path, r->argv, r->envp);
fail:
    r->error = (int)-e;
    return 127;
}
#endif

/* Start `path` with `argv` and `envp` as a child of the caller that shares
 * its cwd, root and umask: fds 0 and 1 on `null_fd`, fd 3 on `sock_fd` (and,
 * as under posix_spawn, any fd of the interpreter not marked close-on-exec,
 * which the zygote closes first thing), in a process group of its own,
 * every signal at its default and unblocked. Returns its pid, or -errno:
 * -ENOSYS or -EPERM when it cannot be made this way. */
EXPORT long nr_spawn_zygote(const char *path, char *const argv[], char *const envp[], int null_fd, int sock_fd)
{
#ifdef NR_HAVE_CLONE3_RUN
    struct request r = {path, argv, envp, null_fd, sock_fd, 0};
    const unsigned long size = 64 * 1024;
    uint64_t all = ~(uint64_t)0, old;
    long pid;
    int st;
    char *stack = (char *)nr_sys(SYS_mmap, 0, (long)size, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);

    if ((unsigned long)stack > -4096UL)
        return (long)stack;
    {
        struct nr_clone_args ca = {
            .flags = CLONE_VM | CLONE_VFORK | CLONE_FS,
            .exit_signal = SIGCHLD,
            .stack = (uint64_t)(uintptr_t)stack,
            .stack_size = size,
        };
        nr_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof all);
        pid = nr_clone3_run(&ca, sizeof ca, child, &r);
        nr_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &old, 0, sizeof old);
    }
    nr_sys2(SYS_munmap, stack, size);
    if (pid > 0 && r.error != 0) { /* it did not exec: reap it, say why */
        while (nr_sys4(SYS_wait4, pid, &st, __WALL, 0) == -EINTR)
            ;
        return -r.error;
    }
    return pid;
#else
    (void)path, (void)argv, (void)envp, (void)null_fd, (void)sock_fd;
    return -ENOSYS;
#endif
}
