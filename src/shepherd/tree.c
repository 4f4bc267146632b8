#define _GNU_SOURCE
#include "tree.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct proc {
    pid_t pid, ppid;
    int mark;
};

/* The parent pid from /proc/PID/stat: the field after the state, after the
 * last ')' (the command name may itself contain parentheses). */
static pid_t read_ppid(const char *pid)
{
    char path[64], buf[512];
    char *end;
    ssize_t n;
    int fd;

    if ((size_t)snprintf(path, sizeof path, "/proc/%s/stat", pid) >= sizeof path)
        return -1;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    end = strrchr(buf, ')');
    if (end == NULL || end[1] != ' ' || end[2] == '\0' || end[3] != ' ')
        return -1;
    return (pid_t)strtol(end + 4, NULL, 10);
}

int nr_signal_descendants(pid_t root, int sig)
{
    struct proc *procs = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int changed, count = 0;
    DIR *dir = opendir("/proc");

    if (dir == NULL)
        return -1;
    while ((de = readdir(dir)) != NULL) {
        pid_t ppid;
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        ppid = read_ppid(de->d_name);
        if (ppid <= 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            struct proc *grown = realloc(procs, ncap * sizeof *procs);
            if (grown == NULL)
                break; /* signal what we have; the caller rescans */
            procs = grown;
            cap = ncap;
        }
        procs[n].pid = (pid_t)strtol(de->d_name, NULL, 10);
        procs[n].ppid = ppid;
        procs[n].mark = 0;
        n++;
    }
    closedir(dir);

    /* Mark descendants of root, one generation per pass. */
    do {
        changed = 0;
        for (size_t i = 0; i < n; i++) {
            if (procs[i].mark)
                continue;
            if (procs[i].ppid == root) {
                procs[i].mark = 1;
                changed = 1;
                continue;
            }
            for (size_t j = 0; j < n; j++) {
                if (procs[j].mark && procs[j].pid == procs[i].ppid) {
                    procs[i].mark = 1;
                    changed = 1;
                    break;
                }
            }
        }
    } while (changed);

    for (size_t i = 0; i < n; i++) {
        if (procs[i].mark && kill(procs[i].pid, sig) == 0)
            count++;
    }
    free(procs);
    return count;
}
