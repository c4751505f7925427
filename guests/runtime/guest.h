/* guest.h - the guest kit's interface for test-guest programs.
 * Programs run in ring 3 with IOPL 0; see docs/guest-kit.md. */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest-layout.h"

/* Exit codes passed to guest_exit(); QEMU and stasis turn code c into
 * process status (c << 1) | 1. */
#define GUEST_EXIT_OK 0
#define GUEST_EXIT_FAIL 1 /* runtime or setup failure, message printed */
#define GUEST_EXIT_MEMTEST 2
#define GUEST_EXIT_COUNTER 3
#define GUEST_EXIT_CPUSTATE 4
#define GUEST_EXIT_SMP 5
#define GUEST_EXIT_BLKTEST 6 /* blktest: on-disk data wrong */
#define GUEST_EXIT_NETTEST 7 /* nettest: frame lost, duplicated, bad */
#define GUEST_EXIT_RNGTEST 8 /* rngtest: entropy looks constant */
#define GUEST_EXIT_DEVICE                                  \
	9 /* virtio device failed (NEEDS_RESET, I/O error) \
	   */
#define GUEST_EXIT_EXCEPTION 32 /* + vector, for CPU exceptions 0..31 */
#define GUEST_EXIT_UNEXPECTED_IRQ 64

#define GUEST_CMDLINE_MAX 2048
#define GUEST_MEMMAP_MAX 128
#define GUEST_MODULES_MAX 8

/* E820 / hvm_memmap_table_entry types (ACPI 6.5 table 15.6). */
#define GUEST_MEM_RAM 1

struct guest_mem_range {
	uint64_t start;
	uint64_t size;
	uint32_t type;
};

struct guest_module {
	uint64_t start;
	uint64_t size;
};

/* What the loader handed over, copied out of its structures at start. */
struct guest_boot_info {
	unsigned int protocol; /* GUEST_BOOT_* */
	char cmdline[GUEST_CMDLINE_MAX];
	struct guest_mem_range memmap[GUEST_MEMMAP_MAX];
	unsigned int memmap_count;
	struct guest_module modules[GUEST_MODULES_MAX];
	unsigned int module_count;
	uint64_t rsdp; /* 0 when the loader gave none */
};

/* 64-bit TSS (SDM vol. 3A 8.7). */
struct guest_tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

/* Lives at the base of the CPU's ring-0 block (GUEST_KBLOCK_SIZE). */
struct guest_cpu {
	volatile uint64_t ticks; /* GUEST_CPU_TICKS: bumped by the timer */
	unsigned int index; /* 0 = boot CPU, then MADT order */
	unsigned int apic_id;
	volatile unsigned int online;
	void (*entry)(unsigned int index); /* ring-3 function of an AP */
	uint64_t user_stack; /* base of the ring-3 stack */
	struct guest_tss tss;
	/* Must follow tss: the TSS limit covers it (iomap_base). */
	uint8_t iomap[GUEST_IOMAP_BYTES + 1];
};

/* Provided by each guest program; runs in ring 3 on the boot CPU. Its
 * return is guest_exit(GUEST_EXIT_OK). */
void guest_main(void);

/* Exits QEMU or stasis through the isa-debug-exit port 0xf4. */
__attribute__((noreturn)) void guest_exit(unsigned int code);

/* Output on COM1. Whole calls are atomic against other CPUs; "\n" is
 * written as is. Formats: %d %i %u %x %X %p %s %c %% with l/ll/z, flags
 * '-' and '0', and a width. */
__attribute__((format(printf, 1, 2))) void guest_printf(const char *fmt, ...);
__attribute__((format(printf, 3, 4))) int guest_snprintf(char *buf, size_t size,
							 const char *fmt, ...);
int guest_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
void guest_puts(const char *s);

/* Boot information and key=value command-line arguments. */
const struct guest_boot_info *guest_boot(void);
const char *guest_arg(const char *key, size_t *len);
uint64_t guest_arg_u64(const char *key, uint64_t def);
bool guest_arg_is(const char *key, const char *value);

/* Bump allocator over RAM above the image, skipping boot modules. Returns
 * NULL when nothing fits. align must be a power of two. */
void *guest_alloc(uint64_t size, uint64_t align);

/* Time. guest_calibrate() measures the TSC and LAPIC timer against the
 * PIT once (about 10 ms); the others call it when needed. */
int guest_calibrate(void);
uint64_t guest_tsc_hz(void);
void guest_delay_us(uint64_t us);
static inline uint64_t guest_rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* Starts the calling CPU's LAPIC timer, periodic at hz, and enables
 * interrupts. Each tick increments that CPU's guest_cpu.ticks. */
int guest_timer_start(unsigned int hz);
uint64_t guest_ticks(void);
/* Sleeps until this CPU's tick count differs from @last and returns it.
 * Ticks only grow: a count below @last means lost or replayed state, and
 * the guest says so ("NAME: ERROR went from A to B") and exits with
 * GUEST_EXIT_COUNTER. A jump forward just means the caller fell behind. */
uint64_t guest_tick_next(const char *name, uint64_t last);
/* Sleeps until the next interrupt on this CPU: a ring-3 hlt, which the
 * #GP handler carries out as sti; hlt; cli in ring 0. */
void guest_wait_interrupt(void);

/* CPUs. guest_cpus_start() starts every other CPU the MADT lists; each
 * runs fn(index) in ring 3. Returns the number of CPUs online. */
unsigned int guest_cpus_start(void (*fn)(unsigned int index));
unsigned int guest_cpus_known(void);
struct guest_cpu *guest_cpu(unsigned int index);
static inline struct guest_cpu *guest_cpu_self(void)
{
	uintptr_t sp;

	__asm__ volatile("mov %%rsp, %0" : "=r"(sp));
	return *(struct guest_cpu **)(sp & ~(uintptr_t)(GUEST_USTACK_SIZE - 1));
}

/* A test-and-set lock; the owner never sleeps while holding it. */
struct guest_spinlock {
	volatile uint32_t locked;
};
void guest_spin_lock(struct guest_spinlock *lock);
bool guest_spin_trylock(struct guest_spinlock *lock);
void guest_spin_unlock(struct guest_spinlock *lock);

/* ACPI: a table by signature (checksummed), NULL if absent. */
const void *guest_acpi_table(const char sig[4]);

/* CPUID and the vector state the runtime enabled in XCR0. */
void guest_cpuid(uint32_t leaf, uint32_t sub, uint32_t out[4]);
uint64_t guest_xcr0(void);

/* Port I/O; ring 3 may use every port: the TSS I/O bitmap is all zero. */
static inline void guest_outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void guest_outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline void guest_outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint16_t guest_inw(uint16_t port)
{
	uint16_t v;

	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t guest_inl(uint16_t port)
{
	uint32_t v;

	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint8_t guest_inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline void guest_pause(void)
{
	__asm__ volatile("pause" ::: "memory");
}

/* Memory-mapped I/O: one access of exactly that width (every page is
 * identity-mapped and user-accessible, so BARs are reached directly). */
static inline uint8_t guest_mmio_read8(uint64_t addr)
{
	return *(volatile uint8_t *)(uintptr_t)addr;
}
static inline uint16_t guest_mmio_read16(uint64_t addr)
{
	return *(volatile uint16_t *)(uintptr_t)addr;
}
static inline uint32_t guest_mmio_read32(uint64_t addr)
{
	return *(volatile uint32_t *)(uintptr_t)addr;
}
static inline void guest_mmio_write8(uint64_t addr, uint8_t v)
{
	*(volatile uint8_t *)(uintptr_t)addr = v;
}
static inline void guest_mmio_write16(uint64_t addr, uint16_t v)
{
	*(volatile uint16_t *)(uintptr_t)addr = v;
}
static inline void guest_mmio_write32(uint64_t addr, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)addr = v;
}
/* Full fence: orders our stores before later loads (the one reordering
 * x86 does), as the virtqueue notification checks need (virtio 1.2
 * 2.7.13.4). Also a compiler barrier. */
static inline void guest_mb(void)
{
	__asm__ volatile("mfence" ::: "memory");
}
static inline void guest_barrier(void)
{
	__asm__ volatile("" ::: "memory");
}

/* Device interrupts: how many times vector GUEST_VEC_DEVICE + i has been
 * taken on the boot CPU (counted by a ring-0 stub, which also EOIs). */
extern volatile uint64_t guest_irq_counts[GUEST_DEVICE_VECTORS];

/* Routes interrupt line @line (an ISA IRQ or a GSI, through the MADT's
 * overrides) edge-triggered to a fresh device vector on this CPU; its
 * count is guest_irq_counts[*slot]. Returns 0, or -1 when no I/O APIC has
 * it or no vector is left. */
int guest_irq_route_line(unsigned int line, unsigned int *slot);

/* ------------------------------------------------------------------ PCI --
 * pci.c: bus 0 through configuration mechanism #1 (ports 0xcf8/0xcfc, PCI
 * Local Bus 3.0, 3.2.2.3.2). guest_pci_scan() sizes every BAR and gives a
 * memory BAR the firmware left at 0 an address in a hole below 4 GiB that
 * no memory-map entry and no other BAR uses. The argument pci=reassign
 * makes it ignore what firmware assigned and place every memory BAR
 * itself. */
#define GUEST_PCI_MAX_FUNCS 64
#define GUEST_PCI_BARS 6

#define GUEST_PCI_CAP_MSIX 0x11
#define GUEST_PCI_CAP_VENDOR 0x09

struct guest_pci_bar {
	uint64_t addr; /* 0 when unassigned or absent */
	uint64_t size; /* 0 when absent */
	bool io, is64;
};

struct guest_pci_dev {
	uint8_t bus, slot, func;
	uint16_t vendor, device;
	uint16_t subsys_vendor, subsys_device;
	uint32_t class_code; /* class, subclass, prog-if */
	uint8_t irq_line, irq_pin;
	struct guest_pci_bar bar[GUEST_PCI_BARS];
};

/* Scans bus 0 once (later calls return the same list). Returns the number
 * of functions found; guest_pci_dev(i) gives each. */
unsigned int guest_pci_scan(void);
struct guest_pci_dev *guest_pci_dev(unsigned int index);
uint32_t guest_pci_read32(const struct guest_pci_dev *d, unsigned int off);
uint16_t guest_pci_read16(const struct guest_pci_dev *d, unsigned int off);
uint8_t guest_pci_read8(const struct guest_pci_dev *d, unsigned int off);
void guest_pci_write32(const struct guest_pci_dev *d, unsigned int off,
		       uint32_t v);
void guest_pci_write16(const struct guest_pci_dev *d, unsigned int off,
		       uint16_t v);
/* Offset of the next capability with @id after offset @from (0: from the
 * start of the list), or 0. The walk is bounded against loops. */
unsigned int guest_pci_find_cap(const struct guest_pci_dev *d, uint8_t id,
				unsigned int from);
/* Turns on memory decode and bus mastering, and off INTx (MSI-X users). */
void guest_pci_enable(const struct guest_pci_dev *d, bool intx_off);

/* --------------------------------------------------------------- virtio --
 * virtio.c: a modern virtio-pci driver (virtio 1.2 4.1) with split
 * virtqueues (2.7). Ring 3 only; single-threaded per device. */
#define GUEST_VIRTIO_MAX_QUEUES 8
#define GUEST_VIRTIO_NO_VECTOR 0xffff
#define GUEST_VIRTQ_MAX_SEGS 8 /* buffers in one chain */

/* Device types (virtio 1.2 5). */
#define GUEST_VIRTIO_NET 1
#define GUEST_VIRTIO_BLK 2
#define GUEST_VIRTIO_CONSOLE 3
#define GUEST_VIRTIO_RNG 4

/* Transport feature bits (virtio 1.2 6). */
#define GUEST_VIRTIO_F_INDIRECT_DESC 28
#define GUEST_VIRTIO_F_EVENT_IDX 29
#define GUEST_VIRTIO_F_VERSION_1 32

/* Split-ring layouts (virtio 1.2 2.7.5, 2.7.6, 2.7.8). */
struct guest_virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
#define GUEST_VIRTQ_DESC_F_NEXT 1
#define GUEST_VIRTQ_DESC_F_WRITE 2
#define GUEST_VIRTQ_DESC_F_INDIRECT 4

struct guest_virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct guest_virtio_dev;

struct guest_virtq {
	struct guest_virtio_dev *dev;
	uint16_t index, size;
	volatile struct guest_virtq_desc *desc;
	volatile uint16_t *avail; /* flags, idx, ring[size], used_event */
	volatile uint8_t *used; /* flags, idx, ring[size], avail_event */
	uint64_t notify_addr;
	uint16_t vector; /* MSI-X table entry, or GUEST_VIRTIO_NO_VECTOR */
	unsigned int irq_slot; /* index into guest_irq_counts */
	uint16_t free_head, num_free;
	uint16_t avail_idx; /* our copy of avail->idx */
	uint16_t last_used; /* next used ring entry to look at */
	bool use_indirect;
	struct guest_virtq_desc *indirect; /* GUEST_VIRTQ_MAX_SEGS per head */
	void **tokens; /* per head: what guest_virtq_get returns */
	uint64_t kicks, kicks_skipped; /* notifications sent / suppressed */
};

/* One buffer of a chain: device-readable unless writable. */
struct guest_vbuf {
	void *addr;
	uint32_t len;
	bool writable;
};

struct guest_virtio_dev {
	struct guest_pci_dev *pci;
	uint16_t type; /* GUEST_VIRTIO_* */
	uint64_t common, isr, device_cfg, notify_base; /* MMIO addresses */
	uint32_t notify_mult, device_cfg_len;
	uint64_t offered, features; /* device's features, negotiated ones */
	unsigned int msix_cap; /* config offset, 0 without MSI-X */
	bool msix_on; /* MSI-X enabled by guest_virtio_init */
	uint64_t msix_table;
	uint16_t msix_entries;
	uint16_t config_vector;
	unsigned int config_irq_slot; /* index into guest_irq_counts */
	unsigned int nqueues; /* set up by guest_virtq_setup */
	struct guest_virtq vq[GUEST_VIRTIO_MAX_QUEUES];
	bool wait_irq; /* guest_virtq_wait sleeps for the interrupt */
	bool force_intx; /* use INTx even if MSI-X is there */
	bool intx; /* INTx routed: waits read the ISR */
	unsigned int intx_slot;
};

/* Finds the @index-th virtio device of @type (modern ID 0x1040 + type, or
 * transitional with that subsystem ID) and locates its capabilities
 * (4.1.4). Returns 0, or -1 with a line printed. */
int guest_virtio_find(uint16_t type, unsigned int index,
		      struct guest_virtio_dev *dev);
/* Resets the device and negotiates features (3.1.1): VERSION_1 is
 * required; the result is offered & (@wanted | VERSION_1). Also enables
 * MSI-X when the device has it. Returns 0 or -1 (message printed). */
int guest_virtio_init(struct guest_virtio_dev *dev, uint64_t wanted);
/* Sets up queue @q with at most @max_size entries (0: the device's size),
 * a MSI-X vector of its own when MSI-X is on, ring memory from
 * guest_alloc. Returns 0 or -1. */
int guest_virtq_setup(struct guest_virtio_dev *dev, unsigned int q,
		      uint16_t max_size);
/* Sets DRIVER_OK (3.1.1 step 8). */
void guest_virtio_driver_ok(struct guest_virtio_dev *dev);
/* Whether the device set NEEDS_RESET (or the driver saw a failure). */
bool guest_virtio_needs_reset(const struct guest_virtio_dev *dev);
bool guest_virtio_has(const struct guest_virtio_dev *dev, unsigned int bit);
/* Device configuration (4.1.4.6) by natural width; the 64-bit read
 * repeats until config_generation is stable (2.5.1). */
uint8_t guest_virtio_cfg8(const struct guest_virtio_dev *dev, unsigned int off);
uint16_t guest_virtio_cfg16(const struct guest_virtio_dev *dev,
			    unsigned int off);
uint32_t guest_virtio_cfg32(const struct guest_virtio_dev *dev,
			    unsigned int off);
uint64_t guest_virtio_cfg64(const struct guest_virtio_dev *dev,
			    unsigned int off);
/* Configuration change interrupts taken so far (4.1.5.2; with INTx,
 * every interrupt of the device's line). */
uint64_t guest_virtio_config_irqs(const struct guest_virtio_dev *dev);
/* Interrupts taken for the queue's vector so far. */
uint64_t guest_virtq_irqs(const struct guest_virtq *vq);

/* Queues a chain of @n buffers (readable ones first) and remembers @token
 * for it. Uses one indirect descriptor when negotiated, enabled and n > 1.
 * Not visible to the device before guest_virtq_kick(). Returns 0, or -1
 * when the ring is full. */
int guest_virtq_add(struct guest_virtq *vq, const struct guest_vbuf *bufs,
		    unsigned int n, void *token);
/* For tests of a device's defences: queues @n descriptors exactly as
 * given, except that each next field is an index into @descs, turned into
 * the ring slot that entry lands in (so chains may loop). Returns 0 or -1
 * when fewer than n descriptors are free. The device will probably refuse
 * the chain and set NEEDS_RESET; such descriptors are never given back. */
int guest_virtq_add_raw(struct guest_virtq *vq,
			const struct guest_virtq_desc *descs, unsigned int n,
			void *token);
/* Publishes what was added and notifies the device unless it asked not to
 * be (VIRTQ_USED_F_NO_NOTIFY or avail_event, 2.7.10). */
void guest_virtq_kick(struct guest_virtq *vq);
/* Takes the next used chain: its token, *len = bytes the device wrote.
 * NULL when none is ready. */
void *guest_virtq_get(struct guest_virtq *vq, uint32_t *len);
/* guest_virtq_get until one comes, for at most @timeout_us (0: forever),
 * polling (or sleeping for the interrupt with dev->wait_irq). NULL on
 * timeout or when the device needs a reset (the caller checks which). */
void *guest_virtq_wait(struct guest_virtq *vq, uint32_t *len,
		       uint64_t timeout_us);
/* Number of chains that can still be added. */
static inline unsigned int guest_virtq_free(const struct guest_virtq *vq)
{
	return vq->num_free;
}

/* Reads the common virtio test arguments: event_idx=0 and indirect=0
 * stop the driver asking for those features; irq=wait makes waits sleep
 * for the interrupt (MSI-X, or INTx when the device has no MSI-X) instead
 * of polling; irq=intx does so with INTx even when MSI-X is there.
 * Returns the feature bits to OR into guest_virtio_init's @wanted. */
uint64_t guest_virtio_arg_features(struct guest_virtio_dev *dev);

/* splitmix64's finaliser: every input bit affects every output bit; for
 * test patterns derived from (seed, position, generation). */
static inline uint64_t guest_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Freestanding C library pieces the compiler may call. */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

#endif
