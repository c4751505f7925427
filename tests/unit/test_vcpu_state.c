/* The vCPU state codec: every KVM structure survives encode/decode, and
 * malformed payloads are refused. KVM itself is exercised by the
 * integration tests. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cpu/vcpu_state.h"

/* Fills every field stasis saves with a value derived from its position,
 * so a field dropped or swapped by the codec shows up. */
static void fill(void *p, size_t n, uint8_t seed)
{
	uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(seed + i * 7);
}

static struct vcpu_state *sample(void)
{
	struct vcpu_state *st = calloc(1, sizeof(*st));

	fill(&st->regs, sizeof(st->regs), 1);
	/* Segment and event structs have padding the codec skips: set
	 * fields, not bytes. */
	st->sregs.cs = (struct kvm_segment){ .base = 0x1000,
					     .limit = 0xfffff,
					     .selector = 0x10,
					     .type = 0xb,
					     .present = 1,
					     .dpl = 3,
					     .db = 0,
					     .s = 1,
					     .l = 1,
					     .g = 1,
					     .avl = 1,
					     .unusable = 0 };
	st->sregs.tr = (struct kvm_segment){ .base = 0xfffff000,
					     .limit = 0x67,
					     .selector = 0x28,
					     .type = 0xb,
					     .present = 1 };
	st->sregs.gdt.base = 0x5000;
	st->sregs.gdt.limit = 0x3f;
	st->sregs.cr0 = 0x80050033;
	st->sregs.cr3 = 0x123000;
	st->sregs.cr4 = 0x3406f8;
	st->sregs.efer = 0xd01;
	st->sregs.apic_base = 0xfee00900;
	st->sregs.interrupt_bitmap[2] = 0x8000;
	st->events.exception.injected = 1;
	st->events.exception.nr = 14;
	st->events.exception.error_code = 0x6;
	st->events.interrupt.shadow = 1;
	st->events.nmi.masked = 1;
	st->events.sipi_vector = 0x9;
	st->events.flags = KVM_VCPUEVENT_VALID_SHADOW;
	st->events.exception_payload = 0xdeadbeef;
	st->debugregs.db[3] = 0x4444;
	st->debugregs.dr6 = 0xffff0ff0;
	st->debugregs.dr7 = 0x400;
	st->mp_state.mp_state = KVM_MP_STATE_HALTED;
	fill(st->lapic.regs, sizeof(st->lapic.regs), 3);
	st->xcrs.nr_xcrs = 1;
	st->xcrs.xcrs[0].xcr = 0;
	st->xcrs.xcrs[0].value = 0xe7;
	st->nmsrs = 3;
	st->msrs[0] =
	    (struct kvm_msr_entry){ .index = MSR_IA32_TSC, .data = 123456789 };
	st->msrs[1] =
	    (struct kvm_msr_entry){ .index = 0xc0000080, .data = 0xd01 };
	st->msrs[2] =
	    (struct kvm_msr_entry){ .index = 0x4b564d01, .data = 0x7001 };
	st->xsave_size = 4096 + 64;
	st->xsave = malloc(st->xsave_size);
	fill(st->xsave, st->xsave_size, 9);
	st->tsc_khz = 2100000;
	return st;
}

static void test_round_trip(void **state)
{
	struct vcpu_state *a = sample(), b;
	struct state_buf buf = { 0 };
	char err[128];

	assert_int_equal(vcpu_state_encode(a, &buf), 0);
	assert_int_equal(
	    vcpu_state_decode(buf.data, buf.len, &b, err, sizeof(err)), 0);
	assert_memory_equal(&a->regs, &b.regs, sizeof(b.regs));
	assert_memory_equal(&a->sregs, &b.sregs, sizeof(b.sregs));
	assert_memory_equal(&a->events, &b.events, sizeof(b.events));
	assert_memory_equal(&a->debugregs, &b.debugregs, sizeof(b.debugregs));
	assert_int_equal(b.mp_state.mp_state, KVM_MP_STATE_HALTED);
	assert_memory_equal(a->lapic.regs, b.lapic.regs, sizeof(b.lapic.regs));
	assert_int_equal(b.xcrs.nr_xcrs, 1);
	assert_true(b.xcrs.xcrs[0].value == 0xe7);
	assert_int_equal(b.nmsrs, 3);
	assert_memory_equal(a->msrs, b.msrs, 3 * sizeof(b.msrs[0]));
	assert_int_equal(b.xsave_size, a->xsave_size);
	assert_memory_equal(a->xsave, b.xsave, b.xsave_size);
	assert_int_equal(b.tsc_khz, 2100000);
	assert_true(vcpu_state_msr(&b, MSR_IA32_TSC)->data == 123456789);
	assert_null(vcpu_state_msr(&b, 0x1234));
	vcpu_state_free(&b);
	vcpu_state_free(a);
	free(a);
	state_buf_free(&buf);
}

static void test_truncated_and_flipped(void **state)
{
	struct vcpu_state *a = sample(), b;
	struct state_buf buf = { 0 };
	char err[128];

	assert_int_equal(vcpu_state_encode(a, &buf), 0);
	/* Every truncation must fail cleanly (sections go missing or a
	 * length runs past the end). */
	for (size_t n = 0; n < buf.len; n += 8)
		assert_int_not_equal(
		    vcpu_state_decode(buf.data, n, &b, err, sizeof(err)), 0);
	/* A length field pointing past the end. */
	buf.data[4] = 0xff;
	buf.data[5] = 0xff;
	assert_int_equal(
	    vcpu_state_decode(buf.data, buf.len, &b, err, sizeof(err)),
	    -EINVAL);
	vcpu_state_free(a);
	free(a);
	state_buf_free(&buf);
}

static void test_bad_values(void **state)
{
	struct vcpu_state *a = sample(), b;
	struct state_buf buf = { 0 };
	char err[128];

	/* An MP state KVM does not define. */
	a->mp_state.mp_state = 77;
	assert_int_equal(vcpu_state_encode(a, &buf), 0);
	assert_int_equal(
	    vcpu_state_decode(buf.data, buf.len, &b, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "section 5"));
	state_buf_free(&buf);

	/* More MSRs than stasis accepts. */
	a->mp_state.mp_state = 0;
	assert_int_equal(vcpu_state_encode(a, &buf), 0);
	state_buf_free(&buf);
	memset(&buf, 0, sizeof(buf));
	{
		uint8_t big[16] = { 0 };

		/* A section claiming 0xffffffff MSRs in 8 bytes. */
		big[0] = 0xff;
		big[1] = 0xff;
		big[2] = 0xff;
		big[3] = 0xff;
		assert_int_equal(state_buf_put(&buf, 9, 1, big, 8), 0);
		assert_int_equal(
		    vcpu_state_decode(buf.data, buf.len, &b, err, sizeof(err)),
		    -EINVAL);
	}
	state_buf_free(&buf);
	vcpu_state_free(a);
	free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_truncated_and_flipped),
		cmocka_unit_test(test_bad_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
