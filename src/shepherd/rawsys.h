/* System calls that touch nothing but registers.
 *
 * The command's clone child shares the shepherd's memory (CLONE_VM) while the
 * shepherd goes on with its loop. It must not write anything the shepherd
 * uses -- and the C library's wrappers write errno, which lives in the
 * shepherd's thread-local storage. nr_sys makes the system call directly and
 * returns the result, or -errno, writing no memory at all.
 *
 * Where no such inline version is written (NR_RAW_SYSCALLS undefined), the
 * child falls back to the C library and the shepherd must wait for it
 * (CLONE_VFORK), as it would for posix_spawn. */
#ifndef NR_RAWSYS_H
#define NR_RAWSYS_H

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define NR_RAW_SYSCALLS 1
static inline long nr_sys(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
#define NR_RAW_SYSCALLS 1
static inline long nr_sys(long n, long a, long b, long c, long d, long e, long f)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
}
#else
static inline long nr_sys(long n, long a, long b, long c, long d, long e, long f)
{
    long ret = syscall(n, a, b, c, d, e, f);
    return ret < 0 ? -errno : ret;
}
#endif

#if defined(__x86_64__)
/* clone3(args, size) whose child runs fn(arg) and exits with its result.
 * Returns the child's pid to the caller, or -errno.
 *
 * A child made with a new stack starts right after the system call, on that
 * stack, with the caller's registers: it must not return into the caller's C
 * code, whose frame is not on its stack. So the child's whole path is here:
 * it calls fn with the stack the kernel gave it (16-byte aligned by the
 * caller, so fn sees the ABI's alignment after the call pushes its return
 * address) and exits with what fn returns. fn and arg ride in callee-saved
 * registers, which the system call preserves. Written for x86-64 only, where
 * it is built and tested; elsewhere NR_HAVE_CLONE3_RUN is undefined and the
 * caller does without. */
#define NR_HAVE_CLONE3_RUN 1
static inline long nr_clone3_run(void *args, unsigned long size, int (*fn)(void *), void *arg)
{
    register long rax __asm__("rax") = SYS_clone3;
    register long rdi __asm__("rdi") = (long)args;
    register long rsi __asm__("rsi") = (long)size;
    register long r12 __asm__("r12") = (long)fn;
    register long r13 __asm__("r13") = (long)arg;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "xor %%ebp, %%ebp\n\t" /* the child: no caller frame to unwind to */
                     "mov %%r13, %%rdi\n\t"
                     "call *%%r12\n\t"
                     "mov %%eax, %%edi\n\t"
                     "mov $60, %%eax\n\t" /* SYS_exit */
                     "syscall\n\t"
                     "hlt\n"
                     "1:"
                     : "+r"(rax)
                     : "r"(rdi), "r"(rsi), "r"(r12), "r"(r13)
                     : "rcx", "r11", "memory", "cc");
    return rax;
}
#endif

#define nr_sys0(n) nr_sys((n), 0, 0, 0, 0, 0, 0)
#define nr_sys1(n, a) nr_sys((n), (long)(a), 0, 0, 0, 0, 0)
#define nr_sys2(n, a, b) nr_sys((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define nr_sys3(n, a, b, c) nr_sys((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define nr_sys4(n, a, b, c, d) nr_sys((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

#endif
