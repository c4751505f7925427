/* Paths of UNIX sockets stasis listens on (control API, virtio console and
 * network backends): one rule for a path a dead process left behind. */
#ifndef STASIS_UNIX_SOCKET_H
#define STASIS_UNIX_SOCKET_H

/* Makes @path free for bind(2) of a UNIX socket of @type (SOCK_STREAM or
 * SOCK_DGRAM): nothing is there, or a socket nobody serves any more (its
 * owner died), which is removed. Never removes anything but a socket.
 * Returns 0; -EEXIST when something other than a socket is there;
 * -EADDRINUSE when a live socket answers; -ENAMETOOLONG; other -errno. */
int unix_socket_clear_stale(const char *path, int type);

#endif
