/* libFuzzer target for the split virtqueue: a driver that wrote arbitrary
 * bytes into guest memory and the queue registers. virtq_pop/virtq_push and
 * the chain copies must only ever touch guest RAM, and fail with -EIO. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/virtio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LOW_SIZE 0x10000u /* RAM [0, 64 KiB) */
#define HIGH_SIZE 0x4000u /* RAM [4 GiB, 4 GiB + 16 KiB) */
#define HEADER 16
#define MAX_POPS 64

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* Header: [0] queue size (log2, or raw from [14..15] when bit 7 is set),
 * [1] flags (event idx, indirect, rings in high RAM), [2..3] last_avail,
 * [4..5] used_idx, [6..7] [8..9] [10..11] desc/avail/used offsets, [12..13]
 * signalled index. Then the guest memory image: low RAM, then high RAM. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct virtq_chain chain;
	struct guest_mem mem = { .memfd = -1 };
	struct virtq vq = { 0 };
	uint8_t *ram;
	gpa_t base;
	size_t img;

	if (size < HEADER)
		return 0;
	/* Exactly the RAM size, so ASan catches any access beyond it. */
	ram = aligned_alloc(4096, LOW_SIZE + HIGH_SIZE);
	if (!ram)
		return 0;
	memset(ram, 0, LOW_SIZE + HIGH_SIZE);
	img = size - HEADER;
	if (img > LOW_SIZE + HIGH_SIZE)
		img = LOW_SIZE + HIGH_SIZE;
	memcpy(ram, data + HEADER, img);
	guest_mem_wrap(&mem, ram, LOW_SIZE, HIGH_SIZE);

	vq.mem = &mem;
	vq.size =
	    data[0] & 0x80 ? le16(data + 14) : (uint16_t)(1u << (data[0] % 11));
	vq.event_idx = data[1] & 1;
	vq.indirect = data[1] & 2;
	base = data[1] & 4 ? GUEST_MEM_HIGH_BASE : 0;
	vq.last_avail = le16(data + 2);
	vq.used_idx = le16(data + 4);
	vq.desc_gpa = base + le16(data + 6);
	vq.avail_gpa = base + le16(data + 8);
	vq.used_gpa = base + le16(data + 10);
	vq.signalled_used = le16(data + 12);
	vq.signalled_used_valid = data[1] & 8;
	vq.enabled = true;

	(void)virtq_check(&vq);
	(void)virtq_empty(&vq);
	for (int i = 0; i < MAX_POPS; i++) {
		uint8_t buf[64];
		int ret = virtq_pop(&vq, &chain);

		if (ret < 0 && ret != -EIO)
			abort(); /* the contract: 1, 0 or -EIO */
		if (ret <= 0)
			break;
		if (chain.nout + chain.nin > VIRTQ_MAX_CHAIN)
			abort();
		virtq_chain_read(&chain, (size_t)i, buf, sizeof(buf));
		virtq_chain_write(&chain, (size_t)i * 3, buf, sizeof(buf));
		virtq_push(&vq, chain.head, (uint32_t)chain.in_len);
		(void)virtq_needs_interrupt(&vq);
		virtq_set_notify(&vq, i & 1);
	}
	free(ram);
	return 0;
}
