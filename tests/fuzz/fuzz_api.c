/* libFuzzer target for the control API's request-body parser: any bytes
 * must give 0 or -errno with a one-line reason, never a crash. */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[PATH_MAX], base[PATH_MAX];
	struct snap_compress compress;
	enum vm_then then;
	char err[256];
	int ret;

	err[0] = '\0';
	ret = api_parse_snapshot_request((const char *)data, size, path,
					 sizeof(path), base, &then, &compress,
					 err, sizeof(err));
	if (ret == 0) {
		/* The contract the snapshot code relies on. */
		if (!path[0] || strlen(path) >= sizeof(path) ||
		    strlen(base) >= sizeof(base) || then > VM_THEN_EXIT ||
		    !snap_codec_name(compress.codec))
			abort();
	} else if ((ret != -EINVAL && ret != -EMSGSIZE) || !err[0] ||
		   strchr(err, '\n')) {
		abort();
	}
	return 0;
}
