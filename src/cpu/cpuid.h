/* CPUID as the guest sees it: KVM's supported set, narrowed by a template,
 * then given each vCPU's APIC ID and the VM's topology. */
#ifndef STASIS_CPUID_H
#define STASIS_CPUID_H

#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "core/config.h"

/* KVM_GET_SUPPORTED_CPUID into a heap copy (free()), or NULL with errno. */
struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd);

/* The entry for leaf @fn, subleaf @idx (subleaf ignored for leaves that
 * KVM does not mark as indexed), or NULL. */
struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn,
				    uint32_t idx);

/* Narrows @c to template @t. CPU_TEMPLATE_HOST only sets the hypervisor bit;
 * CPU_TEMPLATE_BASELINE masks feature words and XSAVE components to the
 * set documented in docs/cpu.md so that a snapshot moves between hosts. */
void cpuid_apply_template(struct kvm_cpuid2 *c, enum cpu_template t);

/* A heap copy of @base for vCPU @id out of @ncpus: APIC IDs in leaves 1,
 * 0xB and 0x1F, and a flat topology of @ncpus single-thread cores. */
struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *base, unsigned id,
				  unsigned ncpus);

/* A heap copy of @c (free()). */
struct kvm_cpuid2 *cpuid_dup(const struct kvm_cpuid2 *c);

/* Checks that every feature @want exposes (leaves 1, 7, 0xD and
 * 0x80000001) is in @host, KVM's supported set, and that the vendor
 * matches. Returns 0 or -ENOTSUP naming each missing feature in @err. */
int cpuid_check_host(const struct kvm_cpuid2 *want, struct kvm_cpuid2 *host,
		     char *err, size_t errlen);

/* Encodes @c as a record payload / decodes one (heap result). */
int cpuid_encode(const struct kvm_cpuid2 *c, uint8_t **out, size_t *len);
int cpuid_decode(const uint8_t *data, size_t len, struct kvm_cpuid2 **out);

/* Baseline masks, exported for tests and docs. */
#define CPUID_BASELINE_1_ECX 0xfff83203u
#define CPUID_BASELINE_1_EDX 0x178bfbffu
#define CPUID_BASELINE_7_EBX 0x000003a9u
#define CPUID_BASELINE_81_ECX 0x00000121u
#define CPUID_BASELINE_81_EDX 0x28100800u
#define CPUID_BASELINE_XCR0 0x7u /* x87, SSE, AVX */

#endif
