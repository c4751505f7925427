/* A vCPU's complete architectural state, read from KVM in one batch,
 * encoded as declared sections, and written back in the order KVM needs. */
#ifndef STASIS_VCPU_STATE_H
#define STASIS_VCPU_STATE_H

#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "snapshot/state.h"

#define VCPU_STATE_MAX_MSRS 512
#define VCPU_STATE_MAX_XSAVE (64u << 10)

/* Architectural MSR numbers stasis treats specially (Intel SDM vol. 4). */
#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

struct vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_vcpu_events events;
	struct kvm_debugregs debugregs;
	struct kvm_mp_state mp_state;
	struct kvm_lapic_state lapic;
	struct kvm_xcrs xcrs;
	uint32_t nmsrs;
	struct kvm_msr_entry msrs[VCPU_STATE_MAX_MSRS];
	uint32_t xsave_size;
	uint8_t *xsave; /* heap, xsave_size bytes */
	uint32_t tsc_khz;
};

/* The MSRs KVM can save (KVM_GET_MSR_INDEX_LIST), as a heap array. */
int vcpu_state_msr_list(int kvm_fd, uint32_t **list, uint32_t *n);

/* Size of the XSAVE buffer KVM uses on this host (KVM_CAP_XSAVE2). */
uint32_t vcpu_state_xsave_size(int vm_fd);

/* Reads everything from a vCPU that is not running. MSRs that KVM lists
 * but refuses to read are left out. Returns 0 or -errno; on error @st is
 * released. */
int vcpu_state_save(int vcpu_fd, int vm_fd, const uint32_t *msrs,
		    uint32_t nmsrs, struct vcpu_state *st);

/* Writes @st into a vCPU that has not run yet, or is paused, in the
 * order KVM requires: sregs, LAPIC, MSRs, XCRs, XSAVE, events, MP state,
 * debug registers, regs. Returns 0 or -errno with the failing step in
 * @err. */
int vcpu_state_restore(int vcpu_fd, const struct vcpu_state *st, char *err,
		       size_t errlen);

void vcpu_state_free(struct vcpu_state *st);

/* Encodes as sections into @b / decodes from a record payload. Decoding
 * checks every length and count; unknown sections are an error. */
int vcpu_state_encode(const struct vcpu_state *st, struct state_buf *b);
int vcpu_state_decode(const uint8_t *data, size_t len, struct vcpu_state *st,
		      char *err, size_t errlen);

/* The value of MSR @index in @st, or NULL. */
struct kvm_msr_entry *vcpu_state_msr(struct vcpu_state *st, uint32_t index);

#endif
