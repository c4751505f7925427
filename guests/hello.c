/* hello.c - the smallest guest: one line, exit 0. Used to measure boot
 * time to the first serial byte.
 * Argument: end=poweroff|reset ends through the hardware-reduced ACPI
 * sleep control or reset register (ports 0x600 / 0x602 of stasis's FADT)
 * instead of the debug-exit port; other VMMs have no such ports. */
#include "guest.h"

/* ACPI 6.4, 4.8.3.7: SLP_TYP in bits 4:2, SLP_EN is bit 5; S5 is the
 * type stasis's DSDT gives \_S5. */
#define ACPI_SLEEP_CTL 0x600
#define ACPI_RESET 0x602
#define ACPI_SLP_EN (1u << 5)
#define ACPI_S5_TYP 5u

void guest_main(void)
{
	guest_printf("hello from the stasis guest kit\n");
	if (guest_arg_is("end", "poweroff"))
		guest_outb(ACPI_SLEEP_CTL, (ACPI_S5_TYP << 2) | ACPI_SLP_EN);
	else if (guest_arg_is("end", "reset"))
		guest_outb(ACPI_RESET, 1);
	guest_exit(GUEST_EXIT_OK);
}
