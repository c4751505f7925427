/* guest.h - the guest kit's interface for test-guest programs.
 * Programs run in ring 3 with IOPL 3; see docs/guest-kit.md. */
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
/* Sleeps (hlt in ring 0) until the next interrupt on this CPU. */
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

/* Port I/O; ring 3 may use it because of IOPL 3. */
static inline void guest_outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void guest_outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
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

/* Freestanding C library pieces the compiler may call. */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

#endif
