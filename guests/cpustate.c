/* cpustate.c - sets up and reports on the register-file check in
 * cpustate-check.S: GPRs, x87, MXCSR, XMM, YMM upper halves and, with
 * AVX-512F, ZMM0-31 and k0-k7 stay loaded while the timer interrupts.
 * Arguments: checks=N (0 = forever), hz=N (100; 0 = no timer),
 * interval_ms=N (500, between reports), spin=N (200000 loop iterations
 * between checks), seed=S, inject=gpr|xmm (self-test: flip a bit of r12
 * or xmm5 after the first report, which must be caught). */
#include "guest.h"

#define AREA_MAX 8192
#define LEVEL_SSE 0
#define LEVEL_AVX 1
#define LEVEL_AVX512 2
#define FAIL_GPR 1
#define INJECT_GPR_ARMED 1
#define INJECT_VEC_ARMED 4
#define MXCSR_VALUE 0xdf95 /* FZ, RC=up, all masked, IE|ZE|UE set */
#define XCR0_AVX 0x4ull
#define XCR0_AVX512 0xe0ull

/* Shared with cpustate-check.S; the offsets are pinned below. */
struct cpustate_ctl {
	uint64_t gpr[15]; /* rax rbx rcx rdx rsi rdi rbp r8..r15 */
	uint64_t level;
	uint64_t kmovq;
	uint64_t xsave_mask;
	uint64_t area_qwords;
	uint64_t spin;
	uint64_t spin_left;
	uint64_t report_tsc;
	uint64_t deadline;
	uint64_t reports;
	uint64_t reports_max;
	uint64_t inject;
	uint64_t fail_kind;
	uint64_t fail_index;
	uint64_t fail_got;
	uint64_t mxcsr;
	uint64_t k[8];
	uint8_t x87[8][16];
};

_Static_assert(offsetof(struct cpustate_ctl, level) == 120, "CTL_LEVEL");
_Static_assert(offsetof(struct cpustate_ctl, fail_got) == 224, "CTL_FAIL_GOT");
_Static_assert(offsetof(struct cpustate_ctl, mxcsr) == 232, "CTL_MXCSR");
_Static_assert(offsetof(struct cpustate_ctl, k) == 240, "CTL_K");
_Static_assert(offsetof(struct cpustate_ctl, x87) == 304, "CTL_X87");

struct cpustate_ctl cpustate_ctl;
uint8_t cpustate_vec[32 * 64] __attribute__((aligned(64)));
uint8_t cpustate_ref[AREA_MAX] __attribute__((aligned(64)));
uint8_t cpustate_cur[AREA_MAX] __attribute__((aligned(64)));

int cpustate_run(void);

static const char *const gpr_names[15] = {
	"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8",
	"r9",  "r10", "r11", "r12", "r13", "r14", "r15",
};

/* A 64-bit finaliser (murmur3's fmix64 constants): distinct, dense bit
 * patterns from small inputs. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static void values_fill(uint64_t seed)
{
	struct cpustate_ctl *c = &cpustate_ctl;
	unsigned int i;

	for (i = 0; i < 15; i++)
		c->gpr[i] = mix(seed * 0x1000 + i);
	for (i = 0; i < sizeof(cpustate_vec) / 8; i++) {
		uint64_t v = mix(seed * 0x1000 + 0x100 + i);

		memcpy(&cpustate_vec[8 * i], &v, 8);
	}
	for (i = 0; i < 8; i++) {
		/* Normal extended-precision numbers: explicit integer bit set,
		 * exponent 0x3fff + i (SDM vol. 1 4.2.2). */
		uint64_t mant = mix(seed * 0x1000 + 0x900 + i) | (1ull << 63);
		uint16_t exp = 0x3fff + i;

		c->k[i] = mix(seed * 0x1000 + 0x800 + i);
		memcpy(c->x87[i], &mant, 8);
		memcpy(c->x87[i] + 8, &exp, 2);
	}
	c->mxcsr = MXCSR_VALUE;
}

/* Which register a byte offset of the XSAVE/FXSAVE image belongs to
 * (SDM vol. 1 10.5.1 for the legacy area, 13.4-13.5 for the rest). */
static void area_name(uint64_t off, char *buf, size_t size)
{
	static const struct {
		unsigned int component;
		const char *fmt;
		unsigned int stride;
		unsigned int first;
	} parts[] = {
		{ 2, "ymm%u.hi", 16, 0 },
		{ 5, "k%u", 8, 0 },
		{ 6, "zmm%u.hi256", 32, 0 },
		{ 7, "zmm%u", 64, 16 },
	};
	uint32_t r[4];
	unsigned int i;

	if (off < 24)
		guest_snprintf(buf, size, "x87-control");
	else if (off < 32)
		guest_snprintf(buf, size, "mxcsr");
	else if (off < 160)
		guest_snprintf(buf, size, "st%lu", (off - 32) / 16);
	else if (off < 416)
		guest_snprintf(buf, size, "xmm%lu", (off - 160) / 16);
	else if (off < 512)
		guest_snprintf(buf, size, "fxsave-reserved");
	else if (off < 576)
		guest_snprintf(buf, size, "xsave-header");
	else
		guest_snprintf(buf, size, "xsave+0x%lx", off);
	for (i = 0; off >= 576 && i < sizeof(parts) / sizeof(parts[0]); i++) {
		guest_cpuid(0xd, parts[i].component, r);
		if (off >= r[1] && off < (uint64_t)r[1] + r[0])
			guest_snprintf(buf, size, parts[i].fmt,
				       parts[i].first +
					   (unsigned int)(off - r[1]) /
					       parts[i].stride);
	}
}

static void report_corruption(void)
{
	const struct cpustate_ctl *c = &cpustate_ctl;
	uint64_t off = c->fail_index & ~7ull, want, got;
	char name[32];

	if (c->fail_kind == FAIL_GPR) {
		guest_printf("cpustate: CORRUPT %s expected 0x%016lx got "
			     "0x%016lx after %lu checks\n",
			     gpr_names[c->fail_index], c->gpr[c->fail_index],
			     c->fail_got, c->reports);
		return;
	}
	memcpy(&want, cpustate_ref + off, 8);
	memcpy(&got, cpustate_cur + off, 8);
	area_name(off, name, sizeof(name));
	guest_printf("cpustate: CORRUPT %s (xsave offset 0x%lx) expected "
		     "0x%016lx got 0x%016lx after %lu checks\n",
		     name, off, want, got, c->reports);
}

/* Picks what to load from CPUID and the XCR0 the runtime set. */
static const char *state_select(void)
{
	struct cpustate_ctl *c = &cpustate_ctl;
	uint64_t xcr0 = guest_xcr0();
	uint32_t r[4];

	c->level = LEVEL_SSE;
	c->xsave_mask = xcr0;
	guest_cpuid(0xd, 0, r);
	c->area_qwords = xcr0 ? r[1] / 8 : 512 / 8;
	if (c->area_qwords * 8 > AREA_MAX) {
		guest_printf("cpustate: ERROR xsave area %u too big\n", r[1]);
		guest_exit(GUEST_EXIT_FAIL);
	}
	if (!(xcr0 & XCR0_AVX))
		return xcr0 ? "sse+xsave" : "sse";
	c->level = LEVEL_AVX;
	if ((xcr0 & XCR0_AVX512) != XCR0_AVX512)
		return "avx";
	c->level = LEVEL_AVX512;
	guest_cpuid(7, 0, r);
	c->kmovq = !!(r[1] & (1u << 30)); /* AVX512BW */
	return "avx512";
}

void guest_main(void)
{
	struct cpustate_ctl *c = &cpustate_ctl;
	uint64_t hz = guest_arg_u64("hz", 100);
	const char *state;

	guest_printf("cpustate: start\n");
	values_fill(guest_arg_u64("seed", 1));
	state = state_select();
	c->reports_max = guest_arg_u64("checks", 0);
	c->spin = guest_arg_u64("spin", 200000);
	if (guest_arg_is("inject", "gpr"))
		c->inject = INJECT_GPR_ARMED;
	else if (guest_arg_is("inject", "xmm"))
		c->inject = INJECT_VEC_ARMED;
	if (!c->spin)
		c->spin = 1;
	c->report_tsc =
	    guest_tsc_hz() / 1000 * guest_arg_u64("interval_ms", 500);
	if (hz && guest_timer_start(hz))
		guest_exit(GUEST_EXIT_FAIL);
	guest_printf("cpustate: state=%s xcr0=0x%lx hz=%lu\n", state,
		     c->xsave_mask, hz);
	if (cpustate_run()) {
		report_corruption();
		guest_exit(GUEST_EXIT_CPUSTATE);
	}
	guest_exit(GUEST_EXIT_OK);
}
