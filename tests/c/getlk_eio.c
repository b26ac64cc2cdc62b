/* Makes F_OFD_GETLK fail with EIO while SHL_TEST_GETLK_EIO is set in the
 * environment, so that the library "cannot tell" whether a role is held.
 * Linked into a test program, or preloaded (LD_PRELOAD) into the tool or an
 * interpreter: either way the library's fcntl calls land here. Everything
 * else goes to the system call. */
#undef _FILE_OFFSET_BITS /* else <fcntl.h> renames fcntl to fcntl64 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fcntl_or_eio(int fd, int cmd, void *arg) {
  if (cmd == F_OFD_GETLK && getenv("SHL_TEST_GETLK_EIO")) {
    errno = EIO;
    return -1;
  }
  return (int)syscall(SYS_fcntl, fd, cmd, arg);
}

/* The argument is an int or a pointer; read as a pointer, as glibc does. */
int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  return fcntl_or_eio(fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  return fcntl_or_eio(fd, cmd, arg);
}
