/* The split virtqueue walk (virtio 1.2, 2.7) over a fake guest memory laid
 * out like stasis's: low RAM, a hole, RAM again at 4 GiB. Normal chains,
 * indirect tables, event index, index wrap-around, and every way a
 * malicious driver can break the rules. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "virtio/virtio.h"

#define LOW_SIZE (1u << 20) /* RAM [0, 1 MiB) */
#define HIGH_SIZE (1u << 20) /* RAM [4 GiB, 4 GiB + 1 MiB) */
#define HIGH GUEST_MEM_HIGH_BASE

#define QSIZE 16
#define DESC_GPA 0x1000
#define AVAIL_GPA 0x2000
#define USED_GPA 0x3000
#define INDIRECT_GPA 0x8000
#define DATA_GPA 0x10000

struct tq {
	struct guest_mem mem;
	uint8_t *buf; /* LOW_SIZE + HIGH_SIZE bytes, the two regions */
	struct virtq vq;
	uint16_t avail_idx; /* driver side */
};

static int setup(void **state)
{
	struct tq *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	t->buf = aligned_alloc(4096, LOW_SIZE + HIGH_SIZE);
	assert_non_null(t->buf);
	memset(t->buf, 0, LOW_SIZE + HIGH_SIZE);
	/* Like guest_mem_init: the regions are adjacent in host memory, so
	 * a buffer that crosses the end of low RAM would reach real bytes
	 * if the walk did not check each region. */
	guest_mem_wrap(&t->mem, t->buf, LOW_SIZE, HIGH_SIZE);
	t->vq = (struct virtq){ .size = QSIZE,
				.enabled = true,
				.desc_gpa = DESC_GPA,
				.avail_gpa = AVAIL_GPA,
				.used_gpa = USED_GPA,
				.mem = &t->mem };
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct tq *t = *state;

	free(t->buf);
	free(t);
	return 0;
}

static uint8_t *host(struct tq *t, gpa_t gpa)
{
	return gpa >= HIGH ? t->buf + LOW_SIZE + (gpa - HIGH) : t->buf + gpa;
}

static void put16(struct tq *t, gpa_t gpa, uint16_t v)
{
	memcpy(host(t, gpa), &v, 2);
}

static uint16_t get16(struct tq *t, gpa_t gpa)
{
	uint16_t v;

	memcpy(&v, host(t, gpa), 2);
	return v;
}

static uint32_t get32(struct tq *t, gpa_t gpa)
{
	uint32_t v;

	memcpy(&v, host(t, gpa), 4);
	return v;
}

static void set_desc_at(struct tq *t, gpa_t table, unsigned i, uint64_t addr,
			uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = host(t, table + 16ull * i);

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void set_desc(struct tq *t, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	set_desc_at(t, t->vq.desc_gpa, i, addr, len, flags, next);
}

/* The driver makes chain @head available (2.7.13). */
static void add_avail(struct tq *t, uint16_t head)
{
	put16(t, t->vq.avail_gpa + 4 + 2 * (t->avail_idx % t->vq.size), head);
	t->avail_idx++;
	put16(t, t->vq.avail_gpa + 2, t->avail_idx);
}

static uint16_t used_idx(struct tq *t)
{
	return get16(t, t->vq.used_gpa + 2);
}

static void used_elem(struct tq *t, unsigned slot, uint32_t *id, uint32_t *len)
{
	*id = get32(t, t->vq.used_gpa + 4 + 8 * slot);
	*len = get32(t, t->vq.used_gpa + 8 + 8 * slot);
}

/* One chain with @flags on a single 16-byte buffer at @addr, @len long. */
static int pop_one(struct tq *t, uint64_t addr, uint32_t len, uint16_t flags)
{
	struct virtq_chain c;

	set_desc(t, 0, addr, len, flags, 0);
	add_avail(t, 0);
	return virtq_pop(&t->vq, &c);
}

/* ------------------------------------------------------------- normal -- */

static void test_normal_chain(void **state)
{
	struct tq *t = *state;
	struct virtq_chain c;
	uint32_t id, len;

	assert_int_equal(virtq_check(&t->vq), 0);
	assert_true(virtq_empty(&t->vq));
	assert_int_equal(virtq_pop(&t->vq, &c), 0);

	set_desc(t, 3, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 7);
	set_desc(t, 7, DATA_GPA + 0x100, 512, VIRTQ_DESC_F_NEXT, 1);
	set_desc(t, 1, HIGH + 0x200, 1, VIRTQ_DESC_F_WRITE, 0);
	add_avail(t, 3);
	assert_false(virtq_empty(&t->vq));

	assert_int_equal(virtq_pop(&t->vq, &c), 1);
	assert_int_equal(c.head, 3);
	assert_int_equal(c.nout, 2);
	assert_int_equal(c.nin, 1);
	assert_int_equal(c.out_len, 528);
	assert_int_equal(c.in_len, 1);
	assert_ptr_equal(c.iov[0].iov_base, host(t, DATA_GPA));
	assert_int_equal(c.iov[1].iov_len, 512);
	assert_ptr_equal(c.iov[2].iov_base, host(t, HIGH + 0x200));
	assert_int_equal(t->vq.last_avail, 1);
	assert_true(virtq_empty(&t->vq));
	assert_int_equal(virtq_pop(&t->vq, &c), 0);

	virtq_push(&t->vq, 3, 1);
	assert_int_equal(used_idx(t), 1);
	used_elem(t, 0, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, 1);
}

static void test_chain_copy(void **state)
{
	struct tq *t = *state;
	struct virtq_chain c;
	uint8_t out[8], in[6] = "abcdef";

	memcpy(host(t, DATA_GPA), "0123", 4);
	memcpy(host(t, DATA_GPA + 0x100), "4567", 4);
	set_desc(t, 0, DATA_GPA, 4, VIRTQ_DESC_F_NEXT, 1);
	set_desc(t, 1, DATA_GPA + 0x100, 4, VIRTQ_DESC_F_NEXT, 2);
	set_desc(t, 2, DATA_GPA + 0x200, 2,
		 VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
	set_desc(t, 3, DATA_GPA + 0x300, 3, VIRTQ_DESC_F_WRITE, 0);
	add_avail(t, 0);
	assert_int_equal(virtq_pop(&t->vq, &c), 1);

	/* Reads span both readable buffers and stop at their end. */
	assert_int_equal(virtq_chain_read(&c, 2, out, sizeof(out)), 6);
	assert_memory_equal(out, "234567", 6);
	assert_int_equal(virtq_chain_read(&c, 8, out, 1), 0);
	/* Writes go to the writable part only. */
	assert_int_equal(virtq_chain_write(&c, 1, in, sizeof(in)), 4);
	assert_memory_equal(host(t, DATA_GPA + 0x201), "a", 1);
	assert_memory_equal(host(t, DATA_GPA + 0x300), "bcd", 3);
	assert_memory_equal(host(t, DATA_GPA), "0123", 4);
}

static void test_zero_length_skipped(void **state)
{
	struct tq *t = *state;
	struct virtq_chain c;

	/* A zero-length buffer touches nothing, wherever it points. */
	set_desc(t, 0, 0x80000000ull, 0, VIRTQ_DESC_F_NEXT, 1);
	set_desc(t, 1, DATA_GPA, 8, VIRTQ_DESC_F_WRITE, 0);
	add_avail(t, 0);
	assert_int_equal(virtq_pop(&t->vq, &c), 1);
	assert_int_equal(c.nout, 0);
	assert_int_equal(c.nin, 1);
}

static void test_indirect(void **state)
{
	struct tq *t = *state;
	struct virtq_chain c;

	t->vq.indirect = true;
	set_desc_at(t, INDIRECT_GPA, 0, DATA_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	set_desc_at(t, INDIRECT_GPA, 2, DATA_GPA + 16, 32, VIRTQ_DESC_F_NEXT,
		    1);
	set_desc_at(t, INDIRECT_GPA, 1, HIGH, 64, VIRTQ_DESC_F_WRITE, 0);
	set_desc(t, 5, INDIRECT_GPA, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	add_avail(t, 5);
	assert_int_equal(virtq_pop(&t->vq, &c), 1);
	assert_int_equal(c.head, 5);
	assert_int_equal(c.nout, 2);
	assert_int_equal(c.nin, 1);
	assert_int_equal(c.out_len, 48);
	assert_int_equal(c.in_len, 64);
	assert_ptr_equal(c.iov[2].iov_base, host(t, HIGH));
}

static void test_indirect_needs_feature(void **state)
{
	struct tq *t = *state;

	set_desc_at(t, INDIRECT_GPA, 0, DATA_GPA, 16, 0, 0);
	assert_int_equal(pop_one(t, INDIRECT_GPA, 16, VIRTQ_DESC_F_INDIRECT),
			 -EIO);
}

/* -------------------------------------------------- interrupts, notify -- */

static void test_event_idx(void **state)
{
	struct tq *t = *state;
	gpa_t used_event = AVAIL_GPA + 4 + 2 * QSIZE;

	t->vq.event_idx = true;
	virtq_push(&t->vq, 0, 0);
	assert_true(virtq_needs_interrupt(&t->vq)); /* first one always */
	assert_false(virtq_needs_interrupt(&t->vq)); /* nothing new */

	/* 2.7.10: interrupt only once used idx passes used_event. */
	put16(t, used_event, 4);
	virtq_push(&t->vq, 0, 0); /* used idx 2 */
	assert_false(virtq_needs_interrupt(&t->vq));
	virtq_push(&t->vq, 0, 0); /* 3 */
	virtq_push(&t->vq, 0, 0); /* 4 */
	assert_false(virtq_needs_interrupt(&t->vq));
	virtq_push(&t->vq, 0, 0); /* 5: entry 4 written */
	assert_true(virtq_needs_interrupt(&t->vq));
	virtq_push(&t->vq, 0, 0);
	assert_false(virtq_needs_interrupt(&t->vq));

	/* The flag is ignored with event idx. */
	put16(t, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
	put16(t, used_event, 6);
	virtq_push(&t->vq, 0, 0);
	assert_true(virtq_needs_interrupt(&t->vq));
}

static void test_event_idx_wraps(void **state)
{
	struct tq *t = *state;

	t->vq.event_idx = true;
	t->vq.used_idx = 0xfffe;
	t->vq.signalled_used = 0xfffe;
	t->vq.signalled_used_valid = true;
	put16(t, AVAIL_GPA + 4 + 2 * QSIZE, 0xffff);
	virtq_push(&t->vq, 0, 0); /* 0xffff */
	assert_false(virtq_needs_interrupt(&t->vq));
	virtq_push(&t->vq, 0, 0); /* 0x0000: entry 0xffff is written */
	assert_true(virtq_needs_interrupt(&t->vq));
	assert_int_equal(used_idx(t), 0);
}

static void test_no_interrupt_flag(void **state)
{
	struct tq *t = *state;

	put16(t, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
	virtq_push(&t->vq, 0, 0);
	assert_false(virtq_needs_interrupt(&t->vq));
	put16(t, AVAIL_GPA, 0);
	virtq_push(&t->vq, 0, 0);
	assert_true(virtq_needs_interrupt(&t->vq));
	assert_false(virtq_needs_interrupt(&t->vq));
}

static void test_set_notify(void **state)
{
	struct tq *t = *state;
	gpa_t avail_event = USED_GPA + 4 + 8 * QSIZE;

	virtq_set_notify(&t->vq, false);
	assert_int_equal(get16(t, USED_GPA), VIRTQ_USED_F_NO_NOTIFY);
	virtq_set_notify(&t->vq, true);
	assert_int_equal(get16(t, USED_GPA), 0);

	t->vq.event_idx = true;
	t->vq.last_avail = 42;
	virtq_set_notify(&t->vq, true);
	assert_int_equal(get16(t, avail_event), 42);
	assert_int_equal(get16(t, USED_GPA), 0);
}

static void test_index_wraparound(void **state)
{
	struct tq *t = *state;
	struct virtq_chain c;
	uint32_t id, len;

	t->avail_idx = 0xfffe;
	t->vq.last_avail = 0xfffe;
	t->vq.used_idx = 0xfffe;
	for (uint16_t i = 0; i < 4; i++) {
		set_desc(t, i, DATA_GPA + 64 * i, 64, VIRTQ_DESC_F_WRITE, 0);
		add_avail(t, i);
	}
	assert_int_equal(get16(t, AVAIL_GPA + 2), 2);
	for (uint16_t i = 0; i < 4; i++) {
		assert_int_equal(virtq_pop(&t->vq, &c), 1);
		assert_int_equal(c.head, i);
		virtq_push(&t->vq, c.head, 10 + i);
	}
	assert_int_equal(virtq_pop(&t->vq, &c), 0);
	assert_int_equal(t->vq.last_avail, 2);
	assert_int_equal(used_idx(t), 2);
	/* Entry 0xffff sits in ring slot 15, entry 0x10000 in slot 0. */
	used_elem(t, 15, &id, &len);
	assert_int_equal(id, 1);
	assert_int_equal(len, 11);
	used_elem(t, 0, &id, &len);
	assert_int_equal(id, 2);
}

/* ---------------------------------------------------------- malicious -- */

static void test_loop(void **state)
{
	struct tq *t = *state;
	struct virtq_chain c;

	set_desc(t, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc(t, 1, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
	add_avail(t, 0);
	assert_int_equal(virtq_pop(&t->vq, &c), -EIO);
}

static void test_self_loop_indirect(void **state)
{
	struct tq *t = *state;

	t->vq.indirect = true;
	set_desc_at(t, INDIRECT_GPA, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc_at(t, INDIRECT_GPA, 1, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	assert_int_equal(pop_one(t, INDIRECT_GPA, 32, VIRTQ_DESC_F_INDIRECT),
			 -EIO);
}

static void test_out_of_range(void **state)
{
	struct tq *t = *state;
	static const struct {
		uint64_t addr;
		uint32_t len;
	} bad[] = {
		{ HIGH + HIGH_SIZE, 1 }, /* past the end of RAM */
		{ HIGH + HIGH_SIZE - 8, 16 }, /* crossing the end */
		{ 0x80000000ull, 16 }, /* in the hole below 4 GiB */
		{ LOW_SIZE - 8, 16 }, /* low RAM into the hole */
		{ HIGH - 8, 16 }, /* the hole into high RAM */
		{ 0, 0xffffffffu }, /* huge length */
		{ UINT64_MAX - 7, 16 }, /* wraps around */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t->vq.last_avail = t->avail_idx;
		assert_int_equal(pop_one(t, bad[i].addr, bad[i].len, 0), -EIO);
		t->vq.last_avail = t->avail_idx;
		assert_int_equal(
		    pop_one(t, bad[i].addr, bad[i].len, VIRTQ_DESC_F_WRITE),
		    -EIO);
	}
	t->vq.last_avail = t->avail_idx;
	assert_int_equal(pop_one(t, HIGH + HIGH_SIZE - 16, 16, 0), 1);
}

static void test_bad_queue(void **state)
{
	struct tq *t = *state;
	struct virtq_chain c;
	static const uint16_t sizes[] = { 0, 3, 100, VIRTQ_MAX_SIZE * 2 };
	struct virtq ok = t->vq;

	set_desc(t, 0, DATA_GPA, 8, 0, 0);
	add_avail(t, 0);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		t->vq.size = sizes[i];
		assert_int_equal(virtq_check(&t->vq), -EINVAL);
		assert_int_equal(virtq_pop(&t->vq, &c), -EIO);
	}
	t->vq = ok;
	t->vq.desc_gpa = DESC_GPA + 8; /* 2.7: 16-byte aligned */
	assert_int_equal(virtq_check(&t->vq), -EINVAL);
	assert_int_equal(virtq_pop(&t->vq, &c), -EIO);
	t->vq = ok;
	t->vq.used_gpa = USED_GPA + 2; /* 4-byte aligned */
	assert_int_equal(virtq_check(&t->vq), -EINVAL);
	t->vq = ok;
	t->vq.avail_gpa = AVAIL_GPA + 1;
	assert_int_equal(virtq_check(&t->vq), -EINVAL);
	t->vq = ok;
	t->vq.used_gpa = 0xa0000000ull; /* the hole */
	assert_int_equal(virtq_check(&t->vq), -EINVAL);
	assert_int_equal(virtq_pop(&t->vq, &c), -EIO);
	virtq_push(&t->vq, 0, 0); /* must not write anywhere */
	assert_false(virtq_needs_interrupt(&t->vq));
	t->vq = ok;
	t->vq.desc_gpa = LOW_SIZE - 16 * 8; /* table runs out of RAM */
	assert_int_equal(virtq_check(&t->vq), -EINVAL);
	t->vq = ok;
	assert_int_equal(virtq_check(&t->vq), 0);
	assert_int_equal(virtq_pop(&t->vq, &c), 1);
}

static void test_avail_jump(void **state)
{
	struct tq *t = *state;
	struct virtq_chain c;

	set_desc(t, 0, DATA_GPA, 8, 0, 0);
	/* Exactly size outstanding is legal. */
	put16(t, AVAIL_GPA + 2, QSIZE);
	assert_int_equal(virtq_pop(&t->vq, &c), 1);
	t->vq.last_avail = 0;
	put16(t, AVAIL_GPA + 2, QSIZE + 1);
	assert_int_equal(virtq_pop(&t->vq, &c), -EIO);
	put16(t, AVAIL_GPA + 2, 0xffff); /* "backwards" */
	assert_int_equal(virtq_pop(&t->vq, &c), -EIO);
}

static void test_bad_indices(void **state)
{
	struct tq *t = *state;
	struct virtq_chain c;

	add_avail(t, QSIZE); /* head out of range */
	assert_int_equal(virtq_pop(&t->vq, &c), -EIO);
	t->vq.last_avail = t->avail_idx;
	set_desc(t, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, QSIZE);
	add_avail(t, 0); /* next out of range */
	assert_int_equal(virtq_pop(&t->vq, &c), -EIO);
}

static void test_readable_after_writable(void **state)
{
	struct tq *t = *state;
	struct virtq_chain c;

	set_desc(t, 0, DATA_GPA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(t, 1, DATA_GPA + 8, 8, 0, 0);
	add_avail(t, 0);
	assert_int_equal(virtq_pop(&t->vq, &c), -EIO);
}

static void test_bad_indirect(void **state)
{
	struct tq *t = *state;

	t->vq.indirect = true;
	/* Nested: an indirect descriptor inside the indirect table. */
	set_desc_at(t, INDIRECT_GPA, 0, INDIRECT_GPA + 0x100, 16,
		    VIRTQ_DESC_F_INDIRECT, 0);
	set_desc_at(t, INDIRECT_GPA + 0x100, 0, DATA_GPA, 8, 0, 0);
	assert_int_equal(pop_one(t, INDIRECT_GPA, 16, VIRTQ_DESC_F_INDIRECT),
			 -EIO);
	/* Zero-length and partial tables. */
	t->vq.last_avail = t->avail_idx;
	assert_int_equal(pop_one(t, INDIRECT_GPA, 0, VIRTQ_DESC_F_INDIRECT),
			 -EIO);
	t->vq.last_avail = t->avail_idx;
	assert_int_equal(pop_one(t, INDIRECT_GPA, 24, VIRTQ_DESC_F_INDIRECT),
			 -EIO);
	/* INDIRECT with NEXT (2.7.5.3.1). */
	t->vq.last_avail = t->avail_idx;
	set_desc_at(t, INDIRECT_GPA, 0, DATA_GPA, 8, 0, 0);
	assert_int_equal(pop_one(t, INDIRECT_GPA, 16,
				 VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT),
			 -EIO);
	/* The table itself outside RAM or in the hole. */
	t->vq.last_avail = t->avail_idx;
	assert_int_equal(pop_one(t, 0xb0000000ull, 16, VIRTQ_DESC_F_INDIRECT),
			 -EIO);
	t->vq.last_avail = t->avail_idx;
	assert_int_equal(pop_one(t, LOW_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT),
			 -EIO);
	/* And the good table pops. */
	t->vq.last_avail = t->avail_idx;
	assert_int_equal(pop_one(t, INDIRECT_GPA, 16, VIRTQ_DESC_F_INDIRECT),
			 1);
}

static void test_chain_too_long(void **state)
{
	struct tq *t = *state;
	struct virtq_chain *c = malloc(sizeof(*c));
	unsigned n;

	assert_non_null(c);
	/* A queue of 512: chains of VIRTQ_MAX_CHAIN pop, one more fails. */
	t->vq.size = 512;
	t->vq.avail_gpa = 0x4000;
	t->vq.used_gpa = 0x5000;
	assert_int_equal(virtq_check(&t->vq), 0);
	for (int extra = 0; extra <= 1; extra++) {
		n = VIRTQ_MAX_CHAIN + extra;
		for (unsigned i = 0; i < n; i++)
			set_desc(t, i, DATA_GPA + i, 1,
				 i + 1 < n ? VIRTQ_DESC_F_NEXT : 0,
				 (uint16_t)(i + 1));
		add_avail(t, 0);
		assert_int_equal(virtq_pop(&t->vq, c), extra ? -EIO : 1);
		if (!extra)
			assert_int_equal(c->nout, VIRTQ_MAX_CHAIN);
	}

	/* An indirect table longer than VIRTQ_MAX_CHAIN. */
	t->vq.indirect = true;
	t->vq.last_avail = t->avail_idx;
	n = VIRTQ_MAX_CHAIN + 1;
	for (unsigned i = 0; i < n; i++)
		set_desc_at(t, INDIRECT_GPA, i, DATA_GPA, 1,
			    i + 1 < n ? VIRTQ_DESC_F_NEXT : 0,
			    (uint16_t)(i + 1));
	set_desc(t, 0, INDIRECT_GPA, 16 * n, VIRTQ_DESC_F_INDIRECT, 0);
	add_avail(t, 0);
	assert_int_equal(virtq_pop(&t->vq, c), -EIO);
	free(c);
}

/* The dirty log sees nothing the device writes (KVM logs vCPU writes
 * only): the writable buffers and the used ring are marked for it, the
 * readable buffers are not. */
static void test_device_writes_marked(void **state)
{
	struct tq *t = *state;
	uint64_t dirty[LOW_SIZE / 4096 / 64] = { 0 };
	struct virtq_chain c;

	t->mem.regions[0].dirty = dirty;
	set_desc(t, 0, DATA_GPA, 4, VIRTQ_DESC_F_NEXT, 1);
	set_desc(t, 1, DATA_GPA + 0x5000, 0x1800, VIRTQ_DESC_F_WRITE, 0);
	add_avail(t, 0);
	assert_int_equal(virtq_pop(&t->vq, &c), 1);
	virtq_chain_mark_written(&t->vq, &c);
	virtq_push(&t->vq, c.head, 1);
	t->mem.regions[0].dirty = NULL;

	/* DATA_GPA + 0x5000..0x67ff: pages 0x15 and 0x16; the used ring at
	 * 0x3000: page 3; the readable buffer (page 0x10) is not marked. */
	assert_int_equal(dirty[0],
			 (1ull << 0x15) | (1ull << 0x16) | (1ull << 3));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_device_writes_marked,
						setup, teardown),
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_normal_chain),
		T(test_chain_copy),
		T(test_zero_length_skipped),
		T(test_indirect),
		T(test_indirect_needs_feature),
		T(test_event_idx),
		T(test_event_idx_wraps),
		T(test_no_interrupt_flag),
		T(test_set_notify),
		T(test_index_wraparound),
		T(test_loop),
		T(test_self_loop_indirect),
		T(test_out_of_range),
		T(test_bad_queue),
		T(test_avail_jump),
		T(test_bad_indices),
		T(test_readable_after_writable),
		T(test_bad_indirect),
		T(test_chain_too_long),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
