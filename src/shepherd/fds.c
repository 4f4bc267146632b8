#define _GNU_SOURCE
#include "fds.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

void nr_close_from(int lowfd)
{
    union {
        struct dirent64 align;
        char bytes[4096];
    } buf;
    struct rlimit rl;
    long n, max;
    int dir;

#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0U) == 0)
        return;
#endif
    /* Before Linux 5.9: the fds actually open, from /proc (closing while
     * listing is fine, the listing goes by fd number), else every number
     * below the soft limit. */
    dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        while ((n = syscall(SYS_getdents64, dir, buf.bytes, sizeof buf.bytes)) > 0) {
            for (long off = 0; off < n;) {
                struct dirent64 *d = (struct dirent64 *)(void *)(buf.bytes + off);
                int fd = 0;
                const char *p = d->d_name;
                for (; *p >= '0' && *p <= '9'; p++)
                    fd = fd * 10 + (*p - '0');
                if (*p == '\0' && p != d->d_name && fd >= lowfd && fd != dir)
                    close(fd);
                off += d->d_reclen;
            }
        }
        close(dir);
        if (n == 0)
            return;
    }
    max = (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) ? (long)rl.rlim_cur : 65536;
    for (long fd = lowfd; fd < max; fd++)
        close((int)fd);
}
