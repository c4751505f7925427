/* CPUID templates and per-vCPU topology (Intel SDM vol. 2A, CPUID). */
#include "cpu/cpuid.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "snapshot/state.h"

#define CPUID_MAX_ENTRIES 256
#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT (1u << 28)

static size_t cpuid_bytes(uint32_t nent)
{
	return sizeof(struct kvm_cpuid2) +
	       nent * sizeof(struct kvm_cpuid_entry2);
}

struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd)
{
	struct kvm_cpuid2 *c = calloc(1, cpuid_bytes(CPUID_MAX_ENTRIES));

	if (!c)
		return NULL;
	c->nent = CPUID_MAX_ENTRIES;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		int err = errno;

		free(c);
		errno = err;
		return NULL;
	}
	return c;
}

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn,
				    uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function != fn)
			continue;
		if ((e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) &&
		    e->index != idx)
			continue;
		return e;
	}
	return NULL;
}

static void cpuid_remove(struct kvm_cpuid2 *c, uint32_t i)
{
	memmove(&c->entries[i], &c->entries[i + 1],
		(c->nent - i - 1) * sizeof(c->entries[0]));
	c->nent--;
}

/* Leaf 0xD, subleaf 0: ECX is the XSAVE area size for every supported
 * component; recomputed from the components that remain (SDM 13.2). */
static void cpuid_baseline_xsave(struct kvm_cpuid2 *c)
{
	struct kvm_cpuid_entry2 *e = cpuid_find(c, 0xd, 0);
	uint32_t i = 0;

	if (e) {
		e->eax &= CPUID_BASELINE_XCR0;
		e->edx = 0;
		/* Legacy area + header, plus the AVX state when kept. */
		e->ecx = 512 + 64 + ((e->eax & 0x4) ? 256 : 0);
	}
	e = cpuid_find(c, 0xd, 1);
	if (e) {
		e->eax &= 0x1; /* XSAVEOPT only */
		e->ebx = 0;
		e->ecx = 0;
		e->edx = 0;
	}
	/* Drop the descriptions of components the template hides. */
	while (i < c->nent) {
		const struct kvm_cpuid_entry2 *x = &c->entries[i];

		if (x->function == 0xd && x->index >= 3)
			cpuid_remove(c, i);
		else
			i++;
	}
}

void cpuid_apply_template(struct kvm_cpuid2 *c, enum cpu_template t)
{
	struct kvm_cpuid_entry2 *e;

	e = cpuid_find(c, 1, 0);
	if (e)
		e->ecx |= CPUID_1_ECX_HYPERVISOR;
	if (t == CPU_TEMPLATE_HOST)
		return;

	if (e) {
		e->ecx &= CPUID_BASELINE_1_ECX;
		e->edx &= CPUID_BASELINE_1_EDX;
	}
	for (uint32_t i = 0; i < c->nent; i++) {
		e = &c->entries[i];
		if (e->function != 7)
			continue;
		if (e->index == 0) {
			e->eax = 0; /* no further subleaves */
			e->ebx &= CPUID_BASELINE_7_EBX;
		} else {
			e->eax = 0;
			e->ebx = 0;
		}
		e->ecx = 0;
		e->edx = 0;
	}
	e = cpuid_find(c, 0x80000001, 0);
	if (e) {
		e->ecx &= CPUID_BASELINE_81_ECX;
		e->edx &= CPUID_BASELINE_81_EDX;
	}
	e = cpuid_find(c, 0x80000008, 0);
	if (e)
		e->ebx = 0; /* vendor-specific speculation-control bits */
	cpuid_baseline_xsave(c);
}

static unsigned order_base_2(unsigned n)
{
	unsigned s = 0;

	while ((1u << s) < n)
		s++;
	return s;
}

struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *base, unsigned id,
				  unsigned ncpus)
{
	size_t bytes = cpuid_bytes(base->nent);
	struct kvm_cpuid2 *c = malloc(bytes);
	struct kvm_cpuid_entry2 *e;

	if (!c)
		return NULL;
	memcpy(c, base, bytes);

	e = cpuid_find(c, 1, 0);
	if (e) {
		/* EBX[31:24] initial APIC ID, [23:16] logical processors. */
		e->ebx = (e->ebx & 0xffff) | (id << 24) |
			 ((ncpus > 255 ? 255 : ncpus) << 16);
		if (ncpus > 1)
			e->edx |= CPUID_1_EDX_HTT;
		else
			e->edx &= ~CPUID_1_EDX_HTT;
	}
	/* Extended topology: level 0 = SMT (1 thread), level 1 = core. */
	for (uint32_t i = 0; i < c->nent; i++) {
		e = &c->entries[i];
		if (e->function != 0xb && e->function != 0x1f)
			continue;
		e->edx = id;
		switch (e->index) {
		case 0:
			e->eax = 0;
			e->ebx = 1;
			e->ecx = (1 << 8) | 0;
			break;
		case 1:
			e->eax = order_base_2(ncpus);
			e->ebx = ncpus;
			e->ecx = (2 << 8) | 1;
			break;
		default:
			e->eax = 0;
			e->ebx = 0;
			e->ecx = e->index;
			break;
		}
	}
	return c;
}

struct kvm_cpuid2 *cpuid_dup(const struct kvm_cpuid2 *c)
{
	size_t bytes = cpuid_bytes(c->nent);
	struct kvm_cpuid2 *d = malloc(bytes);

	if (d)
		memcpy(d, c, bytes);
	return d;
}

enum cpuid_reg { CPUID_EAX, CPUID_EBX, CPUID_ECX, CPUID_EDX };

/* Feature words a snapshot's CPUID is checked against, with the names of
 * the bits most often missing between hosts (SDM vol. 2A, table 3-8 ff). */
struct cpuid_word {
	uint32_t fn, idx;
	enum cpuid_reg reg;
	uint32_t ignore; /* bits KVM or the guest set dynamically */
	const char *names[32];
};

static const struct cpuid_word cpuid_words[] = {
	{ 1,
	  0,
	  CPUID_ECX,
	  (1u << 27) | (1u << 31),
	  { [0] = "sse3",
	    [1] = "pclmulqdq",
	    [9] = "ssse3",
	    [12] = "fma",
	    [13] = "cx16",
	    [19] = "sse4.1",
	    [20] = "sse4.2",
	    [21] = "x2apic",
	    [22] = "movbe",
	    [23] = "popcnt",
	    [24] = "tsc-deadline",
	    [25] = "aes",
	    [26] = "xsave",
	    [28] = "avx",
	    [29] = "f16c",
	    [30] = "rdrand" } },
	{ 1,
	  0,
	  CPUID_EDX,
	  0,
	  { [0] = "fpu",
	    [4] = "tsc",
	    [5] = "msr",
	    [6] = "pae",
	    [8] = "cx8",
	    [9] = "apic",
	    [15] = "cmov",
	    [23] = "mmx",
	    [24] = "fxsr",
	    [25] = "sse",
	    [26] = "sse2" } },
	{ 7,
	  0,
	  CPUID_EBX,
	  0,
	  { [0] = "fsgsbase",	 [3] = "bmi1",	      [5] = "avx2",
	    [7] = "smep",	 [8] = "bmi2",	      [9] = "erms",
	    [10] = "invpcid",	 [16] = "avx512f",    [17] = "avx512dq",
	    [18] = "rdseed",	 [19] = "adx",	      [20] = "smap",
	    [21] = "avx512ifma", [23] = "clflushopt", [24] = "clwb",
	    [26] = "avx512pf",	 [27] = "avx512er",   [28] = "avx512cd",
	    [29] = "sha",	 [30] = "avx512bw",   [31] = "avx512vl" } },
	{ 7,
	  0,
	  CPUID_ECX,
	  0,
	  { [1] = "avx512vbmi",
	    [2] = "umip",
	    [3] = "pku",
	    [4] = "ospke",
	    [6] = "avx512vbmi2",
	    [8] = "gfni",
	    [9] = "vaes",
	    [10] = "vpclmulqdq",
	    [11] = "avx512vnni",
	    [12] = "avx512bitalg",
	    [14] = "avx512vpopcntdq",
	    [22] = "rdpid" } },
	{ 7, 0, CPUID_EDX, 0, { [4] = "fsrm", [8] = "avx512vp2intersect" } },
	{ 7, 1, CPUID_EAX, 0, { [4] = "avx-vnni", [5] = "avx512bf16" } },
	{ 0xd,
	  0,
	  CPUID_EAX,
	  0,
	  { [0] = "xcr0.x87",
	    [1] = "xcr0.sse",
	    [2] = "xcr0.avx",
	    [5] = "xcr0.opmask",
	    [6] = "xcr0.zmm_hi256",
	    [7] = "xcr0.hi16_zmm",
	    [9] = "xcr0.pkru" } },
	{ 0xd,
	  1,
	  CPUID_EAX,
	  0,
	  { [0] = "xsaveopt",
	    [1] = "xsavec",
	    [2] = "xgetbv1",
	    [3] = "xsaves" } },
	{ 0x80000001,
	  0,
	  CPUID_ECX,
	  0,
	  { [0] = "lahf_lm", [5] = "abm", [8] = "3dnowprefetch" } },
	{ 0x80000001,
	  0,
	  CPUID_EDX,
	  0,
	  { [11] = "syscall",
	    [20] = "nx",
	    [26] = "pdpe1gb",
	    [27] = "rdtscp",
	    [29] = "lm" } },
};

static uint32_t cpuid_reg_value(const struct kvm_cpuid_entry2 *e,
				enum cpuid_reg r)
{
	switch (r) {
	case CPUID_EAX:
		return e->eax;
	case CPUID_EBX:
		return e->ebx;
	case CPUID_ECX:
		return e->ecx;
	case CPUID_EDX:
		return e->edx;
	}
	return 0;
}

static const char *const cpuid_reg_names[] = { "EAX", "EBX", "ECX", "EDX" };

int cpuid_check_host(const struct kvm_cpuid2 *want, struct kvm_cpuid2 *host,
		     char *err, size_t errlen)
{
	struct kvm_cpuid2 *w = cpuid_dup(want);
	struct kvm_cpuid_entry2 *we, *he;
	size_t pos = 0;
	int missing = 0;

	if (!w)
		return -ENOMEM;
	pos += (size_t)snprintf(err, errlen,
				"snapshot needs CPU features this host lacks:");
	/* Leaf 0 EBX/EDX/ECX is the vendor string. */
	we = cpuid_find(w, 0, 0);
	he = cpuid_find(host, 0, 0);
	if (we && he &&
	    (we->ebx != he->ebx || we->ecx != he->ecx || we->edx != he->edx)) {
		snprintf(err, errlen,
			 "snapshot was taken on a CPU of another vendor");
		free(w);
		return -ENOTSUP;
	}
	for (size_t i = 0; i < sizeof(cpuid_words) / sizeof(cpuid_words[0]);
	     i++) {
		const struct cpuid_word *cw = &cpuid_words[i];
		uint32_t need, have, lack;

		we = cpuid_find(w, cw->fn, cw->idx);
		if (!we)
			continue;
		he = cpuid_find(host, cw->fn, cw->idx);
		need = cpuid_reg_value(we, cw->reg) & ~cw->ignore;
		have = he ? cpuid_reg_value(he, cw->reg) : 0;
		lack = need & ~have;
		for (unsigned b = 0; b < 32; b++) {
			if (!(lack & (1u << b)))
				continue;
			missing++;
			if (pos < errlen)
				pos += (size_t)snprintf(
				    err + pos, errlen - pos,
				    " %s (CPUID.%x.%u:%s[%u])",
				    cw->names[b] ? cw->names[b] : "?", cw->fn,
				    cw->idx, cpuid_reg_names[cw->reg], b);
		}
	}
	free(w);
	return missing ? -ENOTSUP : 0;
}

static const struct state_field cpuid_entry_fields[] = {
	STATE_U32(struct kvm_cpuid_entry2, function, 1),
	STATE_U32(struct kvm_cpuid_entry2, index, 1),
	STATE_U32(struct kvm_cpuid_entry2, flags, 1),
	STATE_U32(struct kvm_cpuid_entry2, eax, 1),
	STATE_U32(struct kvm_cpuid_entry2, ebx, 1),
	STATE_U32(struct kvm_cpuid_entry2, ecx, 1),
	STATE_U32(struct kvm_cpuid_entry2, edx, 1),
};

static const struct state_desc cpuid_entry_desc = {
	.name = "cpuid_entry",
	.version = 1,
	.min_version = 1,
	.fields = cpuid_entry_fields,
	.nfields = STATE_NFIELDS(cpuid_entry_fields),
};

/* Payload: one section per entry, so a later version can grow them. */
int cpuid_encode(const struct kvm_cpuid2 *c, uint8_t **out, size_t *len)
{
	struct state_buf b = { 0 };
	int ret = 0;

	for (uint32_t i = 0; i < c->nent && !ret; i++)
		ret = state_buf_put_table(&b, 1, &cpuid_entry_desc,
					  &c->entries[i]);
	if (ret) {
		state_buf_free(&b);
		return ret;
	}
	*out = b.data;
	*len = b.len;
	return 0;
}

int cpuid_decode(const uint8_t *data, size_t len, struct kvm_cpuid2 **out)
{
	struct state_cursor cur = { .data = data, .len = len };
	struct state_section s;
	struct kvm_cpuid2 *c;
	int ret;

	c = calloc(1, cpuid_bytes(CPUID_MAX_ENTRIES));
	if (!c)
		return -ENOMEM;
	while ((ret = state_cursor_next(&cur, &s)) == 1) {
		if (s.tag != 1 || c->nent == CPUID_MAX_ENTRIES) {
			ret = -EINVAL;
			break;
		}
		ret = state_section_decode(&cpuid_entry_desc, &s,
					   &c->entries[c->nent]);
		if (ret)
			break;
		c->nent++;
	}
	if (ret < 0 || c->nent == 0) {
		free(c);
		return ret < 0 ? ret : -EINVAL;
	}
	*out = c;
	return 0;
}
