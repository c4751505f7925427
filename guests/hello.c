/* hello.c - the smallest guest: one line, exit 0. Used to measure boot
 * time to the first serial byte. */
#include "guest.h"

void guest_main(void)
{
	guest_printf("hello from the stasis guest kit\n");
	guest_exit(GUEST_EXIT_OK);
}
