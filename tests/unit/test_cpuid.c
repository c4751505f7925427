/* CPUID templates and per-vCPU topology on a synthetic supported table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cpu/cpuid.h"

static struct kvm_cpuid2 *fake_supported(void)
{
	struct kvm_cpuid2 *c =
	    calloc(1, sizeof(*c) + 16 * sizeof(struct kvm_cpuid_entry2));
	struct kvm_cpuid_entry2 e[] = {
		{ .function = 0, .eax = 0x1f },
		{ .function = 1,
		  .ebx = 0x00000800,
		  .ecx = 0x7ffafbff,
		  .edx = 0xffffffff },
		{ .function = 7,
		  .index = 0,
		  .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
		  .eax = 1,
		  .ebx = 0xffffffff,
		  .ecx = 0xffffffff,
		  .edx = 0xffffffff },
		{ .function = 7,
		  .index = 1,
		  .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
		  .eax = 0x30 },
		{ .function = 0xb,
		  .index = 0,
		  .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX },
		{ .function = 0xb,
		  .index = 1,
		  .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX },
		{ .function = 0xd,
		  .index = 0,
		  .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
		  .eax = 0xe7,
		  .ecx = 2696 },
		{ .function = 0xd,
		  .index = 1,
		  .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
		  .eax = 0xf },
		{ .function = 0xd,
		  .index = 2,
		  .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
		  .eax = 256 },
		{ .function = 0xd,
		  .index = 5,
		  .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
		  .eax = 64 },
		{ .function = 0xd,
		  .index = 7,
		  .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
		  .eax = 1024 },
		{ .function = 0x80000001,
		  .ecx = 0xffffffff,
		  .edx = 0xffffffff },
	};

	memcpy(c->entries, e, sizeof(e));
	c->nent = sizeof(e) / sizeof(e[0]);
	return c;
}

static void test_host_sets_hypervisor_only(void **state)
{
	struct kvm_cpuid2 *c = fake_supported();

	cpuid_apply_template(c, CPU_TEMPLATE_HOST);
	assert_int_equal(cpuid_find(c, 1, 0)->ecx, 0x7ffafbff | 0x80000000);
	assert_int_equal(cpuid_find(c, 7, 0)->ebx, 0xffffffff);
	assert_non_null(cpuid_find(c, 0xd, 7));
	free(c);
}

static void test_baseline_masks(void **state)
{
	struct kvm_cpuid2 *c = fake_supported();
	struct kvm_cpuid_entry2 *e;

	cpuid_apply_template(c, CPU_TEMPLATE_BASELINE);
	e = cpuid_find(c, 1, 0);
	assert_int_equal(e->ecx,
			 (0x7ffafbff | 0x80000000) & CPUID_BASELINE_1_ECX);
	assert_int_equal(e->edx, CPUID_BASELINE_1_EDX);
	e = cpuid_find(c, 7, 0);
	assert_int_equal(e->eax, 0);
	assert_int_equal(e->ebx, CPUID_BASELINE_7_EBX);
	assert_int_equal(e->ecx, 0);
	assert_int_equal(e->edx, 0);
	assert_int_equal(cpuid_find(c, 7, 1)->eax, 0);
	e = cpuid_find(c, 0x80000001, 0);
	assert_int_equal(e->ecx, CPUID_BASELINE_81_ECX);
	assert_int_equal(e->edx, CPUID_BASELINE_81_EDX);
	/* XSAVE: only x87/SSE/AVX remain, and the size matches. */
	e = cpuid_find(c, 0xd, 0);
	assert_int_equal(e->eax, 0x7);
	assert_int_equal(e->ecx, 832);
	assert_int_equal(cpuid_find(c, 0xd, 1)->eax, 1);
	assert_non_null(cpuid_find(c, 0xd, 2));
	assert_null(cpuid_find(c, 0xd, 5));
	assert_null(cpuid_find(c, 0xd, 7));
	free(c);
}

static void test_per_vcpu_ids(void **state)
{
	struct kvm_cpuid2 *base = fake_supported();

	for (unsigned id = 0; id < 4; id++) {
		struct kvm_cpuid2 *c = cpuid_for_vcpu(base, id, 4);

		assert_non_null(c);
		assert_int_equal(cpuid_find(c, 1, 0)->ebx >> 24, id);
		assert_int_equal((cpuid_find(c, 1, 0)->ebx >> 16) & 0xff, 4);
		assert_int_equal(cpuid_find(c, 0xb, 0)->edx, id);
		assert_int_equal(cpuid_find(c, 0xb, 1)->edx, id);
		assert_int_equal(cpuid_find(c, 0xb, 1)->ebx, 4);
		assert_int_equal(cpuid_find(c, 0xb, 1)->eax, 2);
		/* The low byte of EBX (brand/clflush) is untouched. */
		assert_int_equal(cpuid_find(c, 1, 0)->ebx & 0xffff, 0x0800);
		free(c);
	}
	/* The base table is not modified. */
	assert_int_equal(cpuid_find(base, 1, 0)->ebx, 0x800);
	free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_sets_hypervisor_only),
		cmocka_unit_test(test_baseline_masks),
		cmocka_unit_test(test_per_vcpu_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
