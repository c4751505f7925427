/* libFuzzer target: a migration stream as a destination receives it
 * (frames through mig_recv until one is refused), and the address parser.
 * Any input must end in a clean refusal, never a crash or an overread. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrate/channel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[MIG_DATA_MAX];
	struct mig_chan c = { .idle_ms = 1000 };
	struct mig_addr a;
	struct mig_frame f;
	char err[512], *s;
	int sv[2];

	/* The first line, as an address. */
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	mig_addr_parse(s, &a, err, sizeof(err));
	free(s);

	/* The whole input fits a socket buffer: written, then closed, so
	 * that the receiver meets the end and never waits. */
	if (size > 100000 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv))
		return 0;
	if (write(sv[0], data, size) != (ssize_t)size) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	close(sv[0]);
	c.fd = sv[1];
	while (!mig_recv(&c, &f, buf, sizeof(buf), err, sizeof(err)))
		;
	close(sv[1]);
	return 0;
}
