/* libFuzzer target for the control API's request-body parsers (PUT
 * /vm/snapshot, PUT /vm/restore): any bytes must give 0 or -errno with a
 * one-line reason, never a crash. */
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
	struct api_restore req;
	enum vm_then then;
	bool live;
	char err[256];
	int ret;

	err[0] = '\0';
	ret = api_parse_snapshot_request((const char *)data, size, path,
					 sizeof(path), base, &then, &compress,
					 &live, err, sizeof(err));
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

	err[0] = '\0';
	ret = api_parse_restore_request((const char *)data, size, path,
					sizeof(path), &req, err, sizeof(err));
	if (ret == 0) {
		if (req.path != path || !path[0] ||
		    strlen(path) >= sizeof(path) ||
		    req.memory > API_MEMORY_COPY ||
		    req.clock > API_CLOCK_FROZEN)
			abort();
	} else if ((ret != -EINVAL && ret != -EMSGSIZE) || !err[0] ||
		   strchr(err, '\n')) {
		abort();
	}
	return 0;
}
