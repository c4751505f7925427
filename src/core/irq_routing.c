/* The VM-wide GSI routing table (KVM_SET_GSI_ROUTING): KVM's default
 * routes for the PIC and IOAPIC kept, MSI routes added after them. */
#include "core/irq_routing.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/kvm.h>

#include "core/kvm.h"
#include "core/platform.h"

#define IRQ_PIC_PINS 8

int irq_routing_init(struct irq_routing *r, int vm_fd)
{
	int ret;

	memset(r, 0, sizeof(*r));
	r->vm_fd = vm_fd;
	ret = pthread_mutex_init(&r->lock, NULL);
	if (ret)
		return -ret;
	r->initialized = true;
	return 0;
}

int irq_routing_alloc_msi(struct irq_routing *r, uint32_t *gsi)
{
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	if (r->nmsi >= IRQ_ROUTING_MAX_MSI) {
		ret = -ENOSPC;
	} else {
		r->msi[r->nmsi] = (struct irq_msi_route){ .valid = false };
		*gsi = IRQ_ROUTING_FIRST_MSI + r->nmsi++;
	}
	pthread_mutex_unlock(&r->lock);
	return ret;
}

/* Builds and installs the table; called with the lock held. The first
 * PLATFORM_IOAPIC_PINS entries repeat what KVM_CREATE_IRQCHIP installs
 * (GSI n to IOAPIC pin n, GSIs 0-15 also to the PICs), since the ioctl
 * replaces the whole table. */
static int irq_routing_commit_locked(struct irq_routing *r)
{
	struct kvm_irq_routing *t;
	unsigned n = 0, max = PLATFORM_IOAPIC_PINS + 16 + r->nmsi;
	int ret;

	t = calloc(1, sizeof(*t) + max * sizeof(t->entries[0]));
	if (!t)
		return -ENOMEM;
	for (uint32_t gsi = 0; gsi < PLATFORM_IOAPIC_PINS; gsi++) {
		if (gsi < 2 * IRQ_PIC_PINS) {
			t->entries[n++] = (struct kvm_irq_routing_entry){
				.gsi = gsi,
				.type = KVM_IRQ_ROUTING_IRQCHIP,
				.u.irqchip = { .irqchip =
						   gsi < IRQ_PIC_PINS
						       ? KVM_IRQCHIP_PIC_MASTER
						       : KVM_IRQCHIP_PIC_SLAVE,
					       .pin = gsi % IRQ_PIC_PINS },
			};
		}
		t->entries[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi,
			.type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC,
				       .pin = gsi },
		};
	}
	for (unsigned i = 0; i < r->nmsi; i++) {
		const struct irq_msi_route *m = &r->msi[i];

		if (!m->valid)
			continue;
		t->entries[n++] = (struct kvm_irq_routing_entry){
			.gsi = IRQ_ROUTING_FIRST_MSI + i,
			.type = KVM_IRQ_ROUTING_MSI,
			.u.msi = { .address_lo = m->addr_lo,
				   .address_hi = m->addr_hi,
				   .data = m->data },
		};
	}
	t->nr = n;
	ret = kvm_ioctl(r->vm_fd, KVM_SET_GSI_ROUTING, t);
	free(t);
	return ret < 0 ? ret : 0;
}

int irq_routing_set_msi(struct irq_routing *r, uint32_t gsi, uint64_t addr,
			uint32_t data)
{
	struct irq_msi_route *m;
	int ret;

	if (gsi < IRQ_ROUTING_FIRST_MSI)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	if (gsi - IRQ_ROUTING_FIRST_MSI >= r->nmsi) {
		ret = -EINVAL;
		goto out;
	}
	m = &r->msi[gsi - IRQ_ROUTING_FIRST_MSI];
	*m = (struct irq_msi_route){ .addr_lo = (uint32_t)addr,
				     .addr_hi = (uint32_t)(addr >> 32),
				     .data = data,
				     .valid = true };
	ret = irq_routing_commit_locked(r);
out:
	pthread_mutex_unlock(&r->lock);
	return ret;
}

void irq_routing_destroy(struct irq_routing *r)
{
	if (!r->initialized)
		return;
	pthread_mutex_destroy(&r->lock);
	r->initialized = false;
}

int irq_routing_irqfd(int vm_fd, int fd, uint32_t gsi, bool assign)
{
	struct kvm_irqfd irqfd = { .fd = (uint32_t)fd,
				   .gsi = gsi,
				   .flags =
				       assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };
	int ret = kvm_ioctl(vm_fd, KVM_IRQFD, &irqfd);

	return ret < 0 ? ret : 0;
}
