/* Thin helpers over /dev/kvm: opening it, checking the capabilities stasis
 * relies on, and ioctls that retry on EINTR. */
#ifndef STASIS_KVM_H
#define STASIS_KVM_H

#include <stdbool.h>

/* Opens /dev/kvm and checks the API version. Returns the fd or -errno after
 * printing which step failed (missing device, permission, old kernel). */
int kvm_open(void);

/* Checks every capability in the required table; prints the first missing
 * one by name. Returns 0 or -ENOTSUP. */
int kvm_check_caps(int kvm_fd);

/* KVM_CHECK_EXTENSION; 0 when absent. */
int kvm_cap(int fd, long cap);

/* ioctl() that retries on EINTR; returns the ioctl result or -errno. */
int kvm_ioctl(int fd, unsigned long req, void *arg);

#endif
