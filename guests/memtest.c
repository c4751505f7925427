/* memtest.c - fills RAM above the image with an address-derived pattern
 * and verifies it from ring 3, pass after pass; or, in touch mode, fills
 * once and idles so a benchmark sees a known amount of dirtied memory.
 * Arguments: mib=N (16), seed=S (1), passes=P (0 = forever), delay_ms=D
 * (0, pause between passes; with smp=1, CPU 0's), mode=touch or touch=N (fill N
 * MiB, then print a heartbeat every second, or every beat_ms=B ms from 1 to
 * 1000, without writing more; dirty=M dirty_at=S: S seconds after the fill,
 * invert the first M MiB once and print "memtest:
 * dirtied M MiB"), inject=1
 * (self-test: flip one word after filling, so verification must fail),
 * mode=text (fill with lines of words and numbers, like logs or page
 * cache text, instead of the pattern that no codec can shrink; verified
 * the same way), smp=1 (every CPU the MADT lists takes an equal slice of
 * the region and, pass after pass, rewrites it with that pass's pattern
 * and verifies it; CPU 0 prints each of its passes with every CPU's pass
 * count, so memory that keeps changing on all CPUs is what a snapshot
 * catches; with tick_hz=N as well, CPU 0 writes nothing and prints
 * "counter: T" once per tick of its N Hz timer, as counter.c does, while
 * the other CPUs share the region and rewrite it in 1 MiB steps, each
 * step checking the last pass's pattern before it writes and checks the
 * next, rate_mib=R pacing them to about R MiB/s in all on their own
 * timers, and CPU 0 printing each second "memtest: second S wrote W MiB
 * (M MiB, cpus=K passes=0,a,...)"; with touch=N they fill it once and
 * halt, CPU 0 printing "memtest: touched N MiB": a benchmark's guest
 * that shows its own gap across a migration at a set dirtying rate),
 * mode=gen (generations, for live snapshots: every CPU, with
 * smp=1, or CPU 0 alone, sweeps its slice of pages in order, pass g
 * writing g into each page's first word and a tag of g and the page's
 * address into its last, after checking that the page still holds
 * generation g - 1 with its tag; a snapshot holds one instant exactly
 * when, for each CPU, the pages before its cursor hold g and the rest
 * g - 1, which is what the restored guest then finds page by page: a page
 * from later than the saved registers reads g where g - 1 is due, one
 * from earlier reads g - 2, a torn page a wrong tag; CPU 0 prints
 * "memtest: gen N ok (cpus=K gens=a,b,...)" every 256 of its passes),
 * reread=1 (fill once, then, for each byte that arrives on COM1,
 * verify every word, or only the last reread_mib=K MiB, and print the time
 * that pass took: a benchmark's measure of how fast a restored guest gets
 * its working set back). */
#include "guest.h"

#define MIB (1ull << 20)
#define MAX_EXTENTS 64
#define TOUCH_HZ 10

struct extent {
	uint64_t *start;
	uint64_t words;
};

struct memtest {
	struct extent ext[MAX_EXTENTS];
	unsigned int count;
	uint64_t seed;
	uint64_t words; /* in all extents */
	volatile uint64_t passes[GUEST_MAX_CPUS]; /* smp=1: each CPU's */
};

/* xorshift64 (Marsaglia 2003) of a mix of seed and address: every word
 * differs from its neighbours and from other seeds. */
static uint64_t pattern(uint64_t seed, const uint64_t *addr)
{
	uint64_t x = (seed ^ (uint64_t)addr) * 0x9e3779b97f4a7c15ull;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

/* RAM in 1 MiB pieces from the runtime's allocator, merged when
 * adjacent; the region may span holes in the memory map. Pieces below
 * @above are taken and left alone, so a test can put the region high
 * without filling the RAM under it. */
static bool memtest_reserve(struct memtest *t, uint64_t mib, uint64_t above)
{
	while (mib) {
		uint64_t *p = guest_alloc(MIB, MIB);
		struct extent *last = t->count ? &t->ext[t->count - 1] : NULL;

		if (!p)
			return false;
		if ((uint64_t)p < above)
			continue;
		mib--;
		if (last && last->start + last->words == p) {
			last->words += MIB / 8;
			continue;
		}
		if (t->count == MAX_EXTENTS)
			return false;
		t->ext[t->count++] = (struct extent){ p, MIB / 8 };
	}
	return true;
}

/* Words for mode=text, as in kernel logs and source files. */
static const char *const text_words[32] = {
	"the",	   "page",   "cache", "inode",	 "dentry", "kworker", "sched",
	"irq",	   "memory", "block", "request", "queue",  "device",  "driver",
	"mount",   "file",   "write", "read",	 "return", "static",  "struct",
	"int",	   "error",  "value", "buffer",	 "kernel", "module",  "task",
	"process", "signal", "timer", "lock",
};

/* The next line of text from generator state *@x into @buf (at most 96
 * bytes): five to twelve words, a number, a newline. Returns its length. */
static unsigned int text_line(uint64_t *x, char *buf)
{
	unsigned int n = 0, words;
	uint64_t v;

	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	v = *x;
	words = 5 + (unsigned int)(v & 7);
	v >>= 3;
	for (unsigned int w = 0; w < words; w++, v >>= 5) {
		const char *s = text_words[v & 31];

		while (*s)
			buf[n++] = *s++;
		buf[n++] = ' ';
	}
	v = *x % 100000;
	for (uint64_t d = 10000; d; d /= 10)
		buf[n++] = (char)('0' + v / d % 10);
	buf[n++] = '\n';
	return n;
}

/* Writes (or, with @check, compares) the text stream over every extent
 * in order. */
static void memtest_text(const struct memtest *t, bool check)
{
	uint64_t x = t->seed * 0x9e3779b97f4a7c15ull | 1;
	unsigned int len = 0, at = 0;
	char line[96];

	for (unsigned int e = 0; e < t->count; e++) {
		volatile char *p = (volatile char *)t->ext[e].start;

		for (uint64_t i = 0; i < t->ext[e].words * 8; i++) {
			if (at == len) {
				len = text_line(&x, line);
				at = 0;
			}
			if (!check) {
				p[i] = line[at++];
			} else if (p[i] != line[at++]) {
				guest_printf(
				    "memtest: MISMATCH at 0x%lx "
				    "(text) expected 0x%x got 0x%x\n",
				    (uint64_t)&p[i],
				    (unsigned int)(uint8_t)line[at - 1],
				    (unsigned int)(uint8_t)p[i]);
				guest_exit(GUEST_EXIT_MEMTEST);
			}
		}
	}
}

/* Words [lo, hi) of the region, counted across extents, filled with
 * @seed's pattern or checked against it (the first wrong word ends the
 * guest with a MISMATCH line). */
static void memtest_range(const struct memtest *t, uint64_t lo, uint64_t hi,
			  uint64_t seed, bool fill)
{
	uint64_t base = 0;

	for (unsigned int e = 0; e < t->count; e++) {
		volatile uint64_t *p = t->ext[e].start;
		uint64_t from = lo > base ? lo - base : 0;
		uint64_t to =
		    hi - base < t->ext[e].words ? hi - base : t->ext[e].words;

		for (uint64_t i = from; hi > base && i < to; i++) {
			uint64_t want = pattern(seed, (uint64_t *)&p[i]);
			uint64_t got;

			if (fill) {
				p[i] = want;
				continue;
			}
			got = p[i];
			if (got != want) {
				guest_printf("memtest: MISMATCH at 0x%lx "
					     "expected 0x%016lx got 0x%016lx\n",
					     (uint64_t)&p[i], want, got);
				guest_exit(GUEST_EXIT_MEMTEST);
			}
		}
		base += t->ext[e].words;
	}
}

static struct memtest t;

/* smp=1: one pass of CPU @index over its slice, with the pattern of its
 * next pass number; returns that number. */
static uint64_t memtest_slice_pass(unsigned int index)
{
	/* Set before any AP starts, and fixed from then on. */
	unsigned int n = guest_cpus_known();
	uint64_t lo = t.words * index / n;
	uint64_t hi = t.words * (index + 1) / n;
	uint64_t pass = t.passes[index] + 1;
	uint64_t seed = t.seed + pass * 0x9e3779b9ull + index;

	memtest_range(&t, lo, hi, seed, true);
	memtest_range(&t, lo, hi, seed, false);
	t.passes[index] = pass;
	return pass;
}

static void memtest_ap(unsigned int index)
{
	for (;;)
		memtest_slice_pass(index);
}

#define COM1_DATA 0x3f8
#define COM1_LSR 0x3fd
#define LSR_DR 0x01

/* reread=1: "memtest: ready K", then, once a byte is on COM1, a timed
 * pass over every word: "memtest: reread N MiB in U us (pass K)". The
 * snapshot is taken while it waits, so the pass after a restore is the
 * guest's first touch of its memory. */
static void memtest_reread(uint64_t mib, uint64_t part)
{
	uint64_t hz = guest_tsc_hz();
	uint64_t lo = part && part < mib ? t.words - part * (MIB / 8) : 0;

	for (uint64_t k = 1;; k++) {
		uint64_t t0;

		guest_printf("memtest: ready %lu\n", k);
		while (!(guest_inb(COM1_LSR) & LSR_DR))
			guest_delay_us(200);
		(void)guest_inb(COM1_DATA);
		t0 = guest_rdtsc();
		memtest_range(&t, lo, t.words, t.seed, false);
		guest_printf("memtest: reread %lu MiB in %lu us (pass %lu)\n",
			     (uint64_t)((t.words - lo) / (MIB / 8)),
			     hz ? (guest_rdtsc() - t0) /
				      (hz / 1000000 ? hz / 1000000 : 1)
				: 0,
			     k);
	}
}

static void idle_ticks(uint64_t n)
{
	uint64_t end = guest_ticks() + n;

	while (guest_ticks() < end)
		guest_wait_interrupt();
}

/* dirty=M: inverts the first @mib MiB of the region, so every page of it
 * changes. */
static void memtest_dirty(struct memtest *m, uint64_t mib)
{
	uint64_t left = mib * MIB / 8;

	for (unsigned int e = 0; e < m->count && left; e++) {
		uint64_t n = m->ext[e].words < left ? m->ext[e].words : left;

		for (uint64_t i = 0; i < n; i++)
			m->ext[e].start[i] = ~m->ext[e].start[i];
		left -= n;
	}
}

/* CPU 0's line after its pass @pass: "memtest: WHAT N ok (M MiB, cpus=K
 * COUNTS=a,b,...)" with every CPU's count; with passes=P, the guest is
 * done once every CPU has made P. */
static void memtest_report(const char *what, const char *counts, uint64_t pass,
			   uint64_t mib, unsigned int n, uint64_t passes)
{
	char line[96 + GUEST_MAX_CPUS * 21];
	uint64_t c[GUEST_MAX_CPUS];
	unsigned int i, done = 0;
	size_t len;

	/* One reading of the counts for the line and the decision, so that
	 * the last line printed shows every CPU done. */
	for (i = 0; i < n; i++) {
		c[i] = t.passes[i];
		done += passes && c[i] >= passes;
	}
	len = guest_snprintf(line, sizeof(line),
			     "memtest: %s %lu ok (%lu MiB, cpus=%u %s=", what,
			     pass, mib, n, counts);
	for (i = 0; i < n && len < sizeof(line); i++)
		len += guest_snprintf(line + len, sizeof(line) - len, "%s%lu",
				      i ? "," : "", c[i]);
	if (len < sizeof(line))
		guest_snprintf(line + len, sizeof(line) - len, ")\n");
	guest_puts(line);
	if (passes && done == n)
		guest_exit(GUEST_EXIT_OK);
}

/* Starts every other CPU in @fn; all of them or the guest fails. */
static unsigned int memtest_cpus_start(void (*fn)(unsigned int index))
{
	unsigned int n = guest_cpus_start(fn);

	if (n != guest_cpus_known()) {
		guest_printf("memtest: ERROR %u of %u cpus started\n", n,
			     guest_cpus_known());
		guest_exit(GUEST_EXIT_FAIL);
	}
	return n;
}

/* smp=1: CPU 0 prints "pass N ok (M MiB, cpus=K passes=a,b,...)", and
 * with delay_ms=D waits D ms after each of its passes (one CPU then
 * dirties its slice at a known rate, a benchmark's steady writer). */
static void memtest_smp(uint64_t mib, uint64_t passes, uint64_t delay_ms,
			uint64_t hz)
{
	unsigned int n = memtest_cpus_start(memtest_ap);

	for (;;) {
		uint64_t pass = memtest_slice_pass(0);

		memtest_report("pass", "passes", pass, mib, n, passes);
		if (delay_ms)
			idle_ticks((delay_ms * hz + 999) / 1000);
	}
}

/* smp=1 tick_hz=N: CPU 0 is a tick counter (as counter.c, one
 * "counter: T" line per tick), so a benchmark sees the guest's own gap
 * across a pause; every other CPU is a writer over its slice of the
 * region, paced to rate_mib=R MiB/s in all when R is set. */
#define PACE_HZ 250
#define MAX_TICK_HZ 10000

struct tick {
	uint64_t rate; /* MiB/s over all writers; 0 = unpaced */
	bool touch; /* fill once, then write no more */
	volatile uint64_t written[GUEST_MAX_CPUS]; /* MiB, each writer's */
};

static struct tick tk;

/* Writer @w's slice in whole MiB of the region: [*lo, *hi). */
static void tick_slice(unsigned int w, uint64_t *lo, uint64_t *hi)
{
	/* Set before any AP starts, and fixed from then on. */
	uint64_t writers = guest_cpus_known() - 1;
	uint64_t mib = t.words / (MIB / 8);

	*lo = mib * w / writers;
	*hi = mib * (w + 1) / writers;
}

/* One MiB step of a writer: the previous pass's pattern must still be
 * there (a page a migration lost or tore shows here, long after it was
 * written), then the next pass's pattern is written and read back. */
static void tick_step(unsigned int index, uint64_t m, uint64_t pass)
{
	uint64_t lo = m * (MIB / 8), hi = lo + MIB / 8;

	if (pass > 1)
		memtest_range(&t, lo, hi,
			      t.seed + (pass - 1) * 0x9e3779b9ull + index,
			      false);
	memtest_range(&t, lo, hi, t.seed + pass * 0x9e3779b9ull + index, true);
	memtest_range(&t, lo, hi, t.seed + pass * 0x9e3779b9ull + index, false);
}

/* A writer (CPU @index >= 1). Paced: its share of the rate is due at
 * one MiB every PACE_HZ * writers / rate ticks of its own timer, and
 * it sleeps when ahead; more than a second behind (a pause, a busy
 * host), the schedule starts again from now rather than catching up
 * in a burst. */
static void tick_writer(unsigned int index)
{
	uint64_t lo, hi, start = 0, done = 0;

	tick_slice(index - 1, &lo, &hi);
	if (tk.rate && !tk.touch) {
		if (guest_timer_start(PACE_HZ)) {
			guest_printf("memtest: ERROR cpu %u has no timer\n",
				     index);
			guest_exit(GUEST_EXIT_FAIL);
		}
		start = guest_ticks();
	}
	for (uint64_t pass = 1;; pass++) {
		for (uint64_t m = lo; m < hi; m++) {
			if (tk.rate && !tk.touch) {
				uint64_t due =
				    start + done * PACE_HZ *
						(guest_cpus_known() - 1) /
						tk.rate;

				if (guest_ticks() > due + PACE_HZ) {
					start = guest_ticks();
					done = 0;
				}
				while (guest_ticks() < due)
					guest_wait_interrupt();
			}
			tick_step(index, m, pass);
			done++;
			tk.written[index]++;
		}
		t.passes[index] = pass;
		/* touch: the region is filled; no timer runs here, so the
		 * CPU halts for good. */
		while (tk.touch)
			guest_wait_interrupt();
	}
}

/* CPU 0: "counter: T" every tick; "memtest: touched N MiB" once every
 * writer has filled its slice (touch), or each second "memtest: second
 * S wrote W MiB (M MiB, cpus=K passes=0,a,...)" with the MiB all
 * writers wrote in that second. passes=P ends the guest once every
 * writer has made P passes. */
static void memtest_tick(uint64_t mib, uint64_t passes, uint64_t hz)
{
	char line[96 + GUEST_MAX_CPUS * 21];
	uint64_t last = 0, now, next, before = 0, second = 0;
	unsigned int n, i;
	bool touched = false;

	n = memtest_cpus_start(tick_writer);
	if (n < 2 || mib < n - 1) {
		guest_printf("memtest: ERROR tick_hz needs 2 or more cpus and "
			     "a MiB for each writer (%u cpus, %lu MiB)\n",
			     n, mib);
		guest_exit(GUEST_EXIT_FAIL);
	}
	if (guest_timer_start((unsigned int)hz))
		guest_exit(GUEST_EXIT_FAIL);
	next = guest_ticks() + hz;
	for (;;) {
		uint64_t sum = 0, min = ~0ull;
		size_t len;

		now = guest_tick_next("memtest", last);
		last = now;
		guest_printf("counter: %lu\n", now);
		for (i = 1; i < n; i++) {
			sum += tk.written[i];
			min = t.passes[i] < min ? t.passes[i] : min;
		}
		if (tk.touch && !touched && min >= 1) {
			guest_printf("memtest: touched %lu MiB\n", mib);
			touched = true;
		}
		if (passes && min >= passes)
			guest_exit(GUEST_EXIT_OK);
		if (tk.touch || now < next)
			continue;
		next = now + hz;
		len = guest_snprintf(line, sizeof(line),
				     "memtest: second %lu wrote %lu MiB (%lu "
				     "MiB, cpus=%u passes=",
				     ++second, sum - before, mib, n);
		before = sum;
		for (i = 0; i < n && len < sizeof(line); i++)
			len += guest_snprintf(line + len, sizeof(line) - len,
					      "%s%lu", i ? "," : "",
					      (uint64_t)t.passes[i]);
		if (len < sizeof(line))
			guest_snprintf(line + len, sizeof(line) - len, ")\n");
		guest_puts(line);
	}
}

/* mode=gen: the tag a page's last word holds for generation @g. */
static uint64_t gen_tag(uint64_t g, const volatile uint64_t *page)
{
	return pattern(g * 0x2545f4914f6cdd1dull + 1, (const uint64_t *)page);
}

#define GEN_PAGE_WORDS 512
#define GEN_PRINT_EVERY 256

/* mode=gen: the pages of CPU @index's slice, counted across extents:
 * [lo, hi) in 4 KiB pages of the whole region. */
/* smp=1: set before any AP starts; the CPU count is known once they are
 * being started (guest_cpus_start sets it first). */
static bool gen_smp;

static void gen_slice(unsigned int index, uint64_t *lo, uint64_t *hi)
{
	unsigned int n = gen_smp ? guest_cpus_known() : 1;
	uint64_t pages = t.words / GEN_PAGE_WORDS;

	*lo = pages * index / n;
	*hi = pages * (index + 1) / n;
}

/* The page @i of the region (extents are 1 MiB multiples, so no page
 * spans two). */
static volatile uint64_t *gen_page(uint64_t i)
{
	uint64_t w = i * GEN_PAGE_WORDS;

	for (unsigned int e = 0; e < t.count; e++) {
		if (w < t.ext[e].words)
			return t.ext[e].start + w;
		w -= t.ext[e].words;
	}
	return 0;
}

/* One pass of CPU @index: checks generation g - 1 and writes g into each
 * page of its slice, in order. */
static uint64_t gen_pass(unsigned int index)
{
	uint64_t g = t.passes[index] + 1, lo, hi;

	gen_slice(index, &lo, &hi);
	for (uint64_t i = lo; i < hi; i++) {
		volatile uint64_t *p = gen_page(i);
		uint64_t first = p[0], last = p[GEN_PAGE_WORDS - 1];

		if (first != g - 1 || last != gen_tag(g - 1, p)) {
			guest_printf("memtest: MISMATCH gen at 0x%lx cpu %u: "
				     "expected generation %lu, page holds "
				     "%lu (tag %s)\n",
				     (uint64_t)p, index, g - 1, first,
				     last == gen_tag(first, p) ? "ok" : "bad");
			guest_exit(GUEST_EXIT_MEMTEST);
		}
		p[0] = g;
		p[GEN_PAGE_WORDS - 1] = gen_tag(g, p);
	}
	t.passes[index] = g;
	return g;
}

/* Generation 0: every page gets its tag (the region starts zero, so the
 * first words already read 0). */
static void gen_init(unsigned int index)
{
	uint64_t lo, hi;

	gen_slice(index, &lo, &hi);
	for (uint64_t i = lo; i < hi; i++) {
		volatile uint64_t *p = gen_page(i);

		p[0] = 0;
		p[GEN_PAGE_WORDS - 1] = gen_tag(0, p);
	}
}

static void gen_ap(unsigned int index)
{
	gen_init(index);
	for (;;)
		gen_pass(index);
}

static void memtest_gen(uint64_t mib, uint64_t passes)
{
	bool smp = guest_arg_u64("smp", 0) != 0;
	unsigned int n = 1;

	if (smp) {
		gen_smp = true;
		n = memtest_cpus_start(gen_ap);
	}
	gen_init(0);
	for (;;) {
		uint64_t g = gen_pass(0);

		if (g % GEN_PRINT_EVERY)
			continue;
		memtest_report("gen", "gens", g, mib, n, passes);
	}
}

void guest_main(void)
{
	uint64_t touch = guest_arg_u64("touch", 0);
	bool touch_mode = touch || guest_arg_is("mode", "touch");
	bool text = guest_arg_is("mode", "text");
	uint64_t mib = touch ? touch : guest_arg_u64("mib", 16);
	uint64_t passes = guest_arg_u64("passes", 0);
	uint64_t delay_ms = guest_arg_u64("delay_ms", 0);
	uint64_t beat_ms = guest_arg_u64("beat_ms", 1000);
	uint64_t tick_hz = guest_arg_u64("tick_hz", 0);
	/* Fast heartbeats (a benchmark's first output after a restore)
	 * need a faster timer; one tick per beat then. */
	uint64_t hz = beat_ms && beat_ms < 100 ? 1000 / beat_ms : TOUCH_HZ;
	uint64_t pass, beat;

	t.seed = guest_arg_u64("seed", 1);
	guest_printf("memtest: start\n");
	if (!mib || !memtest_reserve(&t, mib, guest_arg_u64("above", 0))) {
		guest_printf("memtest: ERROR cannot get %lu MiB of RAM\n", mib);
		guest_exit(GUEST_EXIT_FAIL);
	}
	if (!beat_ms || beat_ms > 1000) {
		guest_printf("memtest: ERROR beat_ms=%lu is not 1..1000\n",
			     beat_ms);
		guest_exit(GUEST_EXIT_FAIL);
	}
	tk.rate = guest_arg_u64("rate_mib", 0);
	tk.touch = touch_mode;
	if ((tick_hz || tk.rate) &&
	    (!guest_arg_u64("smp", 0) || !tick_hz || tick_hz > MAX_TICK_HZ ||
	     text || guest_arg_is("mode", "gen"))) {
		guest_printf("memtest: ERROR tick_hz=%lu rate_mib=%lu need "
			     "smp=1, tick_hz 1..%u, the plain pattern\n",
			     tick_hz, tk.rate, MAX_TICK_HZ);
		guest_exit(GUEST_EXIT_FAIL);
	}
	if (!tick_hz && (touch_mode || delay_ms) && guest_timer_start(hz))
		guest_exit(GUEST_EXIT_FAIL);
	for (unsigned int e = 0; e < t.count; e++) {
		t.words += t.ext[e].words;
		/* Where the allocator put the region, for tests that need
		 * it in a given place (above 4 GiB, say). */
		if (guest_arg_u64("ranges", 0))
			guest_printf(
			    "memtest: range 0x%lx 0x%lx\n",
			    (uint64_t)t.ext[e].start,
			    (uint64_t)(t.ext[e].start + t.ext[e].words));
	}
	if (tick_hz)
		memtest_tick(mib, passes, tick_hz);
	if (guest_arg_is("mode", "gen"))
		memtest_gen(mib, passes);
	if (guest_arg_u64("smp", 0))
		memtest_smp(mib, passes, delay_ms, hz);
	if (text)
		memtest_text(&t, false);
	else
		memtest_range(&t, 0, t.words, t.seed, true);
	if (guest_arg_u64("inject", 0))
		t.ext[0].start[12345 % t.ext[0].words] ^= 0x100;
	if (guest_arg_u64("reread", 0))
		memtest_reread(mib, guest_arg_u64("reread_mib", 0));

	if (touch_mode) {
		uint64_t dirty = guest_arg_u64("dirty", 0);
		uint64_t dirty_at =
		    guest_ticks() + guest_arg_u64("dirty_at", 0) * hz;

		guest_printf("memtest: touched %lu MiB\n", mib);
		for (beat = 1;; beat++) {
			/* An increment's worth of writes, after the
			 * benchmark has saved the parent. */
			if (dirty && guest_ticks() >= dirty_at) {
				memtest_dirty(&t, dirty);
				guest_printf("memtest: dirtied %lu MiB\n",
					     dirty);
				dirty = 0;
			}
			idle_ticks(hz * beat_ms / 1000 ? hz * beat_ms / 1000
						       : 1);
			guest_printf("memtest: idle %lu\n", beat);
		}
	}
	for (pass = 1; !passes || pass <= passes; pass++) {
		if (text)
			memtest_text(&t, true);
		else
			memtest_range(&t, 0, t.words, t.seed, false);
		guest_printf("memtest: pass %lu ok (%lu MiB)\n", pass, mib);
		if (delay_ms)
			idle_ticks((delay_ms * hz + 999) / 1000);
	}
	guest_exit(GUEST_EXIT_OK);
}
