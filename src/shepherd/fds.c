#define _GNU_SOURCE
#include "fds.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "rawsys.h"

void nr_close_from(int lowfd)
{
    union {
        struct dirent64 align;
        char bytes[2048];
    } buf;
    struct rlimit rl;
    long n, dir, max;

#ifdef SYS_close_range
    if (nr_sys3(SYS_close_range, lowfd, ~0U, 0) == 0)
        return;
#endif
    /* Before Linux 5.9: the fds actually open, from /proc (closing while
     * listing is fine, the listing goes by fd number), else every number
     * below the soft limit. */
    dir = nr_sys4(SYS_openat, AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (dir >= 0) {
        while ((n = nr_sys3(SYS_getdents64, dir, buf.bytes, sizeof buf.bytes)) > 0) {
            for (long off = 0; off < n;) {
                struct dirent64 *d = (struct dirent64 *)(void *)(buf.bytes + off);
                long fd = 0;
                const char *p = d->d_name;
                for (; *p >= '0' && *p <= '9'; p++)
                    fd = fd * 10 + (*p - '0');
                if (*p == '\0' && p != d->d_name && fd >= lowfd && fd != dir)
                    nr_sys1(SYS_close, fd);
                off += d->d_reclen;
            }
        }
        nr_sys1(SYS_close, dir);
        if (n == 0)
            return;
    }
    max = nr_sys4(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
              ? (long)rl.rlim_cur
              : 65536;
    for (long fd = lowfd; fd < max; fd++)
        nr_sys1(SYS_close, fd);
}

ssize_t nr_recv_record(int sock, struct msghdr *msg, int flags)
{
    size_t room = msg->msg_controllen;
    ssize_t n = recvmsg(sock, msg, flags);

    if (n == 0) {
        msg->msg_controllen = room; /* the first receive set it to what came */
        n = recvmsg(sock, msg, flags);
    }
    return n;
}
