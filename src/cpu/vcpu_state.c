/* vCPU state capture and restore through KVM's GET/SET ioctls, with the
 * KVM structures described field by field for the snapshot codec. */
#include "cpu/vcpu_state.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/kvm.h"

enum vcpu_section {
	VCPU_SEC_REGS = 1,
	VCPU_SEC_SREGS = 2,
	VCPU_SEC_EVENTS = 3,
	VCPU_SEC_DEBUGREGS = 4,
	VCPU_SEC_MP_STATE = 5,
	VCPU_SEC_LAPIC = 6,
	VCPU_SEC_XSAVE = 7,
	VCPU_SEC_XCRS = 8,
	VCPU_SEC_MSRS = 9,
	VCPU_SEC_TSC = 10,
};

static const struct state_field vcpu_regs_fields[] = {
	STATE_U64(struct kvm_regs, rax, 1),
	STATE_U64(struct kvm_regs, rbx, 1),
	STATE_U64(struct kvm_regs, rcx, 1),
	STATE_U64(struct kvm_regs, rdx, 1),
	STATE_U64(struct kvm_regs, rsi, 1),
	STATE_U64(struct kvm_regs, rdi, 1),
	STATE_U64(struct kvm_regs, rsp, 1),
	STATE_U64(struct kvm_regs, rbp, 1),
	STATE_U64(struct kvm_regs, r8, 1),
	STATE_U64(struct kvm_regs, r9, 1),
	STATE_U64(struct kvm_regs, r10, 1),
	STATE_U64(struct kvm_regs, r11, 1),
	STATE_U64(struct kvm_regs, r12, 1),
	STATE_U64(struct kvm_regs, r13, 1),
	STATE_U64(struct kvm_regs, r14, 1),
	STATE_U64(struct kvm_regs, r15, 1),
	STATE_U64(struct kvm_regs, rip, 1),
	STATE_U64(struct kvm_regs, rflags, 1),
};

static const struct state_desc vcpu_regs_desc = {
	.name = "regs",
	.version = 1,
	.min_version = 1,
	.fields = vcpu_regs_fields,
	.nfields = STATE_NFIELDS(vcpu_regs_fields),
};

/* One segment register's fields (struct kvm_segment). */
#define VCPU_SEGMENT_FIELDS(seg)                          \
	STATE_U64(struct kvm_sregs, seg.base, 1),         \
	    STATE_U32(struct kvm_sregs, seg.limit, 1),    \
	    STATE_U16(struct kvm_sregs, seg.selector, 1), \
	    STATE_U8(struct kvm_sregs, seg.type, 1),      \
	    STATE_U8(struct kvm_sregs, seg.present, 1),   \
	    STATE_U8(struct kvm_sregs, seg.dpl, 1),       \
	    STATE_U8(struct kvm_sregs, seg.db, 1),        \
	    STATE_U8(struct kvm_sregs, seg.s, 1),         \
	    STATE_U8(struct kvm_sregs, seg.l, 1),         \
	    STATE_U8(struct kvm_sregs, seg.g, 1),         \
	    STATE_U8(struct kvm_sregs, seg.avl, 1),       \
	    STATE_U8(struct kvm_sregs, seg.unusable, 1)

static const struct state_field vcpu_sregs_fields[] = {
	VCPU_SEGMENT_FIELDS(cs),
	VCPU_SEGMENT_FIELDS(ds),
	VCPU_SEGMENT_FIELDS(es),
	VCPU_SEGMENT_FIELDS(fs),
	VCPU_SEGMENT_FIELDS(gs),
	VCPU_SEGMENT_FIELDS(ss),
	VCPU_SEGMENT_FIELDS(tr),
	VCPU_SEGMENT_FIELDS(ldt),
	STATE_U64(struct kvm_sregs, gdt.base, 1),
	STATE_U16(struct kvm_sregs, gdt.limit, 1),
	STATE_U64(struct kvm_sregs, idt.base, 1),
	STATE_U16(struct kvm_sregs, idt.limit, 1),
	STATE_U64(struct kvm_sregs, cr0, 1),
	STATE_U64(struct kvm_sregs, cr2, 1),
	STATE_U64(struct kvm_sregs, cr3, 1),
	STATE_U64(struct kvm_sregs, cr4, 1),
	STATE_U64(struct kvm_sregs, cr8, 1),
	STATE_U64(struct kvm_sregs, efer, 1),
	STATE_U64(struct kvm_sregs, apic_base, 1),
	STATE_U64_ARRAY(struct kvm_sregs, interrupt_bitmap, 1),
};

static const struct state_desc vcpu_sregs_desc = {
	.name = "sregs",
	.version = 1,
	.min_version = 1,
	.fields = vcpu_sregs_fields,
	.nfields = STATE_NFIELDS(vcpu_sregs_fields),
};

static const struct state_field vcpu_events_fields[] = {
	STATE_U8(struct kvm_vcpu_events, exception.injected, 1),
	STATE_U8(struct kvm_vcpu_events, exception.nr, 1),
	STATE_U8(struct kvm_vcpu_events, exception.has_error_code, 1),
	STATE_U8(struct kvm_vcpu_events, exception.pending, 1),
	STATE_U32(struct kvm_vcpu_events, exception.error_code, 1),
	STATE_U8(struct kvm_vcpu_events, interrupt.injected, 1),
	STATE_U8(struct kvm_vcpu_events, interrupt.nr, 1),
	STATE_U8(struct kvm_vcpu_events, interrupt.soft, 1),
	STATE_U8(struct kvm_vcpu_events, interrupt.shadow, 1),
	STATE_U8(struct kvm_vcpu_events, nmi.injected, 1),
	STATE_U8(struct kvm_vcpu_events, nmi.pending, 1),
	STATE_U8(struct kvm_vcpu_events, nmi.masked, 1),
	STATE_U32(struct kvm_vcpu_events, sipi_vector, 1),
	STATE_U32(struct kvm_vcpu_events, flags, 1),
	STATE_U8(struct kvm_vcpu_events, smi.smm, 1),
	STATE_U8(struct kvm_vcpu_events, smi.pending, 1),
	STATE_U8(struct kvm_vcpu_events, smi.smm_inside_nmi, 1),
	STATE_U8(struct kvm_vcpu_events, smi.latched_init, 1),
	STATE_U8(struct kvm_vcpu_events, triple_fault.pending, 1),
	STATE_U8(struct kvm_vcpu_events, exception_has_payload, 1),
	STATE_U64(struct kvm_vcpu_events, exception_payload, 1),
};

static const struct state_desc vcpu_events_desc = {
	.name = "events",
	.version = 1,
	.min_version = 1,
	.fields = vcpu_events_fields,
	.nfields = STATE_NFIELDS(vcpu_events_fields),
};

static const struct state_field vcpu_debugregs_fields[] = {
	STATE_U64_ARRAY(struct kvm_debugregs, db, 1),
	STATE_U64(struct kvm_debugregs, dr6, 1),
	STATE_U64(struct kvm_debugregs, dr7, 1),
	STATE_U64(struct kvm_debugregs, flags, 1),
};

static const struct state_desc vcpu_debugregs_desc = {
	.name = "debugregs",
	.version = 1,
	.min_version = 1,
	.fields = vcpu_debugregs_fields,
	.nfields = STATE_NFIELDS(vcpu_debugregs_fields),
};

static int vcpu_mp_state_validate(const void *obj)
{
	const struct kvm_mp_state *mp = obj;

	/* KVM_MP_STATE_RUNNABLE .. KVM_MP_STATE_SIPI_RECEIVED on x86. */
	return mp->mp_state <= KVM_MP_STATE_SIPI_RECEIVED ? 0 : -EINVAL;
}

static const struct state_field vcpu_mp_state_fields[] = {
	STATE_U32(struct kvm_mp_state, mp_state, 1),
};

static const struct state_desc vcpu_mp_state_desc = {
	.name = "mp_state",
	.version = 1,
	.min_version = 1,
	.fields = vcpu_mp_state_fields,
	.nfields = STATE_NFIELDS(vcpu_mp_state_fields),
	.validate = vcpu_mp_state_validate,
};

/* The LAPIC register page is defined by hardware (SDM vol. 3A, 11.4.1):
 * its bytes are the architecture's layout, not the compiler's. */
static const struct state_field vcpu_lapic_fields[] = {
	STATE_ARRAY_(struct kvm_lapic_state, regs, STATE_KIND_U8, 1, 1),
};

static const struct state_desc vcpu_lapic_desc = {
	.name = "lapic",
	.version = 1,
	.min_version = 1,
	.fields = vcpu_lapic_fields,
	.nfields = STATE_NFIELDS(vcpu_lapic_fields),
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int vcpu_state_msr_list(int kvm_fd, uint32_t **list, uint32_t *n)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	struct kvm_msr_list *l;
	int ret;

	/* The first call fails with E2BIG and reports the count. */
	ret = ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe);
	if (ret < 0 && errno != E2BIG)
		return -errno;
	if (probe.nmsrs > VCPU_STATE_MAX_MSRS)
		probe.nmsrs = VCPU_STATE_MAX_MSRS;
	l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
	if (!l)
		return -ENOMEM;
	l->nmsrs = probe.nmsrs;
	ret = kvm_ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l);
	if (ret < 0) {
		free(l);
		return ret;
	}
	*list = malloc(l->nmsrs * sizeof(uint32_t) + 1);
	if (!*list) {
		free(l);
		return -ENOMEM;
	}
	memcpy(*list, l->indices, l->nmsrs * sizeof(uint32_t));
	*n = l->nmsrs;
	free(l);
	return 0;
}

uint32_t vcpu_state_xsave_size(int vm_fd)
{
	int size = kvm_cap(vm_fd, KVM_CAP_XSAVE2);

	if (size < (int)sizeof(struct kvm_xsave))
		return sizeof(struct kvm_xsave);
	return (uint32_t)size;
}

/* KVM_GET_MSRS stops at the first MSR it cannot read and returns how many
 * it did; skip that one and carry on, so one odd MSR doesn't lose the
 * rest. */
static int vcpu_state_get_msrs(int vcpu_fd, const uint32_t *idx, uint32_t n,
			       struct vcpu_state *st)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[VCPU_STATE_MAX_MSRS];
	} * buf;
	uint32_t done = 0;

	buf = calloc(1, sizeof(*buf));
	if (!buf)
		return -ENOMEM;
	if (n > VCPU_STATE_MAX_MSRS)
		n = VCPU_STATE_MAX_MSRS;
	st->nmsrs = 0;
	while (done < n) {
		int got;

		buf->hdr.nmsrs = n - done;
		for (uint32_t i = 0; i < n - done; i++)
			buf->e[i] =
			    (struct kvm_msr_entry){ .index = idx[done + i] };
		got = kvm_ioctl(vcpu_fd, KVM_GET_MSRS, buf);
		if (got < 0) {
			free(buf);
			return got;
		}
		for (int i = 0; i < got; i++)
			st->msrs[st->nmsrs++] = buf->e[i];
		done += (uint32_t)got + 1; /* skip the one that failed */
	}
	free(buf);
	return 0;
}

int vcpu_state_save(int vcpu_fd, int vm_fd, const uint32_t *msrs,
		    uint32_t nmsrs, struct vcpu_state *st)
{
	int ret, khz;

	memset(st, 0, sizeof(*st));
	st->xsave_size = vcpu_state_xsave_size(vm_fd);
	st->xsave = calloc(1, st->xsave_size);
	if (!st->xsave)
		return -ENOMEM;

	ret = kvm_ioctl(vcpu_fd, KVM_GET_REGS, &st->regs);
	if (ret >= 0)
		ret = kvm_ioctl(vcpu_fd, KVM_GET_SREGS, &st->sregs);
	if (ret >= 0)
		ret = kvm_ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &st->events);
	if (ret >= 0)
		ret = kvm_ioctl(vcpu_fd, KVM_GET_DEBUGREGS, &st->debugregs);
	if (ret >= 0)
		ret = kvm_ioctl(vcpu_fd, KVM_GET_MP_STATE, &st->mp_state);
	if (ret >= 0)
		ret = kvm_ioctl(vcpu_fd, KVM_GET_LAPIC, &st->lapic);
	if (ret >= 0)
		ret = kvm_ioctl(vcpu_fd, KVM_GET_XCRS, &st->xcrs);
	if (ret >= 0)
		ret = kvm_ioctl(vcpu_fd,
				st->xsave_size > sizeof(struct kvm_xsave)
				    ? KVM_GET_XSAVE2
				    : KVM_GET_XSAVE,
				st->xsave);
	if (ret >= 0)
		ret = vcpu_state_get_msrs(vcpu_fd, msrs, nmsrs, st);
	if (ret < 0) {
		vcpu_state_free(st);
		return ret;
	}
	khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
	st->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
	return 0;
}

int vcpu_state_restore(int vcpu_fd, const struct vcpu_state *st, char *err,
		       size_t errlen)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[VCPU_STATE_MAX_MSRS];
	} * msrs;
	struct kvm_vcpu_events events = st->events;
	int ret;

	ret = kvm_ioctl(vcpu_fd, KVM_SET_SREGS, (void *)&st->sregs);
	if (ret < 0) {
		set_err(err, errlen, "KVM_SET_SREGS: %s", strerror(-ret));
		return ret;
	}
	/* The LAPIC before the MSRs: the TSC-deadline MSR only sticks when
	 * the timer is already in TSC-deadline mode. */
	ret = kvm_ioctl(vcpu_fd, KVM_SET_LAPIC, (void *)&st->lapic);
	if (ret < 0) {
		set_err(err, errlen, "KVM_SET_LAPIC: %s", strerror(-ret));
		return ret;
	}

	msrs = calloc(1, sizeof(*msrs));
	if (!msrs)
		return -ENOMEM;
	msrs->hdr.nmsrs = st->nmsrs;
	memcpy(msrs->e, st->msrs, st->nmsrs * sizeof(st->msrs[0]));
	ret = kvm_ioctl(vcpu_fd, KVM_SET_MSRS, msrs);
	if (ret >= 0 && (uint32_t)ret < st->nmsrs) {
		set_err(err, errlen, "KVM_SET_MSRS: MSR 0x%x refused",
			st->msrs[ret].index);
		free(msrs);
		return -EINVAL;
	}
	free(msrs);
	if (ret < 0) {
		set_err(err, errlen, "KVM_SET_MSRS: %s", strerror(-ret));
		return ret;
	}

	ret = kvm_ioctl(vcpu_fd, KVM_SET_XCRS, (void *)&st->xcrs);
	if (ret < 0) {
		set_err(err, errlen, "KVM_SET_XCRS: %s", strerror(-ret));
		return ret;
	}
	ret = kvm_ioctl(vcpu_fd, KVM_SET_XSAVE, st->xsave);
	if (ret < 0) {
		set_err(err, errlen, "KVM_SET_XSAVE: %s", strerror(-ret));
		return ret;
	}
	/* Only the parts this stasis understands; KVM rejects unknown
	 * flags. */
	events.flags &= KVM_VCPUEVENT_VALID_NMI_PENDING |
			KVM_VCPUEVENT_VALID_SIPI_VECTOR |
			KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
	ret = kvm_ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, &events);
	if (ret < 0) {
		set_err(err, errlen, "KVM_SET_VCPU_EVENTS: %s", strerror(-ret));
		return ret;
	}
	ret = kvm_ioctl(vcpu_fd, KVM_SET_MP_STATE, (void *)&st->mp_state);
	if (ret < 0) {
		set_err(err, errlen, "KVM_SET_MP_STATE: %s", strerror(-ret));
		return ret;
	}
	ret = kvm_ioctl(vcpu_fd, KVM_SET_DEBUGREGS, (void *)&st->debugregs);
	if (ret < 0) {
		set_err(err, errlen, "KVM_SET_DEBUGREGS: %s", strerror(-ret));
		return ret;
	}
	ret = kvm_ioctl(vcpu_fd, KVM_SET_REGS, (void *)&st->regs);
	if (ret < 0) {
		set_err(err, errlen, "KVM_SET_REGS: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

void vcpu_state_free(struct vcpu_state *st)
{
	free(st->xsave);
	st->xsave = NULL;
	st->xsave_size = 0;
}

struct kvm_msr_entry *vcpu_state_msr(struct vcpu_state *st, uint32_t index)
{
	for (uint32_t i = 0; i < st->nmsrs; i++)
		if (st->msrs[i].index == index)
			return &st->msrs[i];
	return NULL;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* An index/value list (MSRs, XCRs): u32 count, u32 0, then
 * {u32 index, u32 0, u64 value} per entry. */
struct vcpu_pair {
	uint32_t index;
	uint64_t value;
};

static int vcpu_put_list(struct state_buf *b, uint16_t tag,
			 const struct vcpu_pair *pairs, uint32_t n)
{
	size_t len = 8 + (size_t)n * 16;
	uint8_t *p = calloc(1, len);
	int ret;

	if (!p)
		return -ENOMEM;
	put_u32(p, n);
	put_u32(p + 4, 0);
	for (uint32_t i = 0; i < n; i++) {
		put_u32(p + 8 + i * 16, pairs[i].index);
		put_u64(p + 8 + i * 16 + 8, pairs[i].value);
	}
	ret = state_buf_put(b, tag, 1, p, len);
	free(p);
	return ret;
}

int vcpu_state_encode(const struct vcpu_state *st, struct state_buf *b)
{
	uint8_t tsc[8];
	int ret;

	ret = state_buf_put_table(b, VCPU_SEC_REGS, &vcpu_regs_desc, &st->regs);
	if (!ret)
		ret = state_buf_put_table(b, VCPU_SEC_SREGS, &vcpu_sregs_desc,
					  &st->sregs);
	if (!ret)
		ret = state_buf_put_table(b, VCPU_SEC_EVENTS, &vcpu_events_desc,
					  &st->events);
	if (!ret)
		ret = state_buf_put_table(b, VCPU_SEC_DEBUGREGS,
					  &vcpu_debugregs_desc, &st->debugregs);
	if (!ret)
		ret = state_buf_put_table(b, VCPU_SEC_MP_STATE,
					  &vcpu_mp_state_desc, &st->mp_state);
	if (!ret)
		ret = state_buf_put_table(b, VCPU_SEC_LAPIC, &vcpu_lapic_desc,
					  &st->lapic);
	/* The XSAVE area's layout is the architecture's (SDM vol. 1, 13.4),
	 * so it is stored as bytes. */
	if (!ret)
		ret = state_buf_put(b, VCPU_SEC_XSAVE, 1, st->xsave,
				    st->xsave_size);
	if (!ret) {
		struct vcpu_pair xcrs[KVM_MAX_XCRS];
		uint32_t n = st->xcrs.nr_xcrs < KVM_MAX_XCRS ? st->xcrs.nr_xcrs
							     : KVM_MAX_XCRS;

		for (uint32_t i = 0; i < n; i++)
			xcrs[i] = (struct vcpu_pair){ st->xcrs.xcrs[i].xcr,
						      st->xcrs.xcrs[i].value };
		ret = vcpu_put_list(b, VCPU_SEC_XCRS, xcrs, n);
	}
	if (!ret) {
		struct vcpu_pair *msrs = calloc(st->nmsrs + 1, sizeof(*msrs));

		if (!msrs)
			return -ENOMEM;
		for (uint32_t i = 0; i < st->nmsrs; i++)
			msrs[i] = (struct vcpu_pair){ st->msrs[i].index,
						      st->msrs[i].data };
		ret = vcpu_put_list(b, VCPU_SEC_MSRS, msrs, st->nmsrs);
		free(msrs);
	}
	if (!ret) {
		put_u32(tsc, st->tsc_khz);
		put_u32(tsc + 4, 0);
		ret = state_buf_put(b, VCPU_SEC_TSC, 1, tsc, sizeof(tsc));
	}
	return ret;
}

/* Checks an index/value list section holding at most @max entries and
 * returns its count; entries are read with vcpu_list_entry(). */
static int vcpu_list_count(const struct state_section *s, uint32_t max,
			   uint32_t *n)
{
	uint32_t count;

	if (s->version != 1 || s->len < 8)
		return -EINVAL;
	count = get_u32(s->payload);
	if (count > max || get_u32(s->payload + 4) ||
	    s->len != 8 + (size_t)count * 16)
		return -EINVAL;
	for (uint32_t i = 0; i < count; i++)
		if (get_u32(s->payload + 8 + (size_t)i * 16 + 4))
			return -EINVAL;
	*n = count;
	return 0;
}

static struct vcpu_pair vcpu_list_entry(const struct state_section *s,
					uint32_t i)
{
	const uint8_t *e = s->payload + 8 + (size_t)i * 16;

	return (struct vcpu_pair){ get_u32(e), get_u64(e + 8) };
}

int vcpu_state_decode(const uint8_t *data, size_t len, struct vcpu_state *st,
		      char *err, size_t errlen)
{
	struct state_cursor c = { .data = data, .len = len };
	struct state_section s;
	unsigned seen = 0;
	int ret;

	memset(st, 0, sizeof(*st));
	while ((ret = state_cursor_next(&c, &s)) == 1) {
		if (s.tag < 1 || s.tag > VCPU_SEC_TSC) {
			set_err(err, errlen, "vCPU state: unknown section %u",
				s.tag);
			ret = -EINVAL;
			goto fail;
		}
		if (seen & (1u << s.tag)) {
			set_err(err, errlen, "vCPU state: section %u twice",
				s.tag);
			ret = -EINVAL;
			goto fail;
		}
		seen |= 1u << s.tag;
		switch (s.tag) {
		case VCPU_SEC_REGS:
			ret = state_section_decode(&vcpu_regs_desc, &s,
						   &st->regs);
			break;
		case VCPU_SEC_SREGS:
			ret = state_section_decode(&vcpu_sregs_desc, &s,
						   &st->sregs);
			break;
		case VCPU_SEC_EVENTS:
			ret = state_section_decode(&vcpu_events_desc, &s,
						   &st->events);
			break;
		case VCPU_SEC_DEBUGREGS:
			ret = state_section_decode(&vcpu_debugregs_desc, &s,
						   &st->debugregs);
			break;
		case VCPU_SEC_MP_STATE:
			ret = state_section_decode(&vcpu_mp_state_desc, &s,
						   &st->mp_state);
			break;
		case VCPU_SEC_LAPIC:
			ret = state_section_decode(&vcpu_lapic_desc, &s,
						   &st->lapic);
			break;
		case VCPU_SEC_XSAVE:
			if (s.version != 1 ||
			    s.len < sizeof(struct kvm_xsave) ||
			    s.len > VCPU_STATE_MAX_XSAVE) {
				ret = -EINVAL;
				break;
			}
			st->xsave = malloc(s.len);
			if (!st->xsave) {
				ret = -ENOMEM;
				break;
			}
			memcpy(st->xsave, s.payload, s.len);
			st->xsave_size = s.len;
			ret = 0;
			break;
		case VCPU_SEC_XCRS:
			ret = vcpu_list_count(&s, KVM_MAX_XCRS,
					      &st->xcrs.nr_xcrs);
			for (uint32_t i = 0; !ret && i < st->xcrs.nr_xcrs;
			     i++) {
				struct vcpu_pair e = vcpu_list_entry(&s, i);

				st->xcrs.xcrs[i].xcr = e.index;
				st->xcrs.xcrs[i].value = e.value;
			}
			break;
		case VCPU_SEC_MSRS:
			ret = vcpu_list_count(&s, VCPU_STATE_MAX_MSRS,
					      &st->nmsrs);
			for (uint32_t i = 0; !ret && i < st->nmsrs; i++) {
				struct vcpu_pair e = vcpu_list_entry(&s, i);

				st->msrs[i].index = e.index;
				st->msrs[i].data = e.value;
			}
			break;
		case VCPU_SEC_TSC:
			if (s.version != 1 || s.len != 8) {
				ret = -EINVAL;
				break;
			}
			st->tsc_khz = get_u32(s.payload);
			ret = 0;
			break;
		}
		if (ret) {
			set_err(err, errlen,
				"vCPU state: section %u is malformed", s.tag);
			goto fail;
		}
	}
	if (ret < 0) {
		set_err(err, errlen, "vCPU state: truncated section");
		goto fail;
	}
	for (unsigned t = 1; t <= VCPU_SEC_TSC; t++) {
		if (!(seen & (1u << t))) {
			set_err(err, errlen, "vCPU state: section %u missing",
				t);
			ret = -EINVAL;
			goto fail;
		}
	}
	return 0;
fail:
	vcpu_state_free(st);
	return ret < 0 ? ret : -EINVAL;
}
