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

#define nr_sys0(n) nr_sys((n), 0, 0, 0, 0, 0, 0)
#define nr_sys1(n, a) nr_sys((n), (long)(a), 0, 0, 0, 0, 0)
#define nr_sys2(n, a, b) nr_sys((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define nr_sys3(n, a, b, c) nr_sys((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define nr_sys4(n, a, b, c, d) nr_sys((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

#endif
