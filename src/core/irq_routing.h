/* The VM's GSI routing table. KVM_SET_GSI_ROUTING replaces the whole
 * table, so one owner keeps it: the default IOAPIC/PIC routes of GSIs
 * 0-23 and the MSI routes devices add from GSI 24 up. */
#ifndef STASIS_IRQ_ROUTING_H
#define STASIS_IRQ_ROUTING_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define IRQ_ROUTING_FIRST_MSI 24 /* after the IOAPIC's pins */
#define IRQ_ROUTING_MAX_MSI 256

struct irq_msi_route {
	uint32_t addr_lo, addr_hi, data;
	bool valid; /* false: allocated, routes nowhere yet */
};

struct irq_routing {
	pthread_mutex_t lock;
	bool initialized;
	int vm_fd;
	unsigned nmsi; /* GSIs IRQ_ROUTING_FIRST_MSI + [0, nmsi) handed out */
	struct irq_msi_route msi[IRQ_ROUTING_MAX_MSI];
};

/* Takes ownership of @vm_fd's routing table (not of the fd). No ioctl is
 * made until the first MSI route is set, so KVM's own defaults stay until
 * then. Returns 0 or -errno. */
int irq_routing_init(struct irq_routing *r, int vm_fd);

/* Hands out the next free GSI for an MSI route. Allocation is
 * deterministic (in call order), so a VM built from the same config gets
 * the same GSIs. Returns 0 or -ENOSPC. */
int irq_routing_alloc_msi(struct irq_routing *r, uint32_t *gsi);

/* Points MSI GSI @gsi at @addr/@data and commits the whole table with
 * KVM_SET_GSI_ROUTING. Returns 0, -EINVAL for a GSI not handed out, or the
 * ioctl's -errno. */
int irq_routing_set_msi(struct irq_routing *r, uint32_t gsi, uint64_t addr,
			uint32_t data);

/* Safe on a zeroed struct. */
void irq_routing_destroy(struct irq_routing *r);

/* KVM_IRQFD: @fd's writes inject @gsi (assign) or no longer do. Returns 0
 * or -errno. */
int irq_routing_irqfd(int vm_fd, int fd, uint32_t gsi, bool assign);

#endif
