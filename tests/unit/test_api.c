/* The control API end to end: the server on a temporary socket with fake
 * VM callbacks, driven by raw HTTP and by `stasis ctl` (ctl_main). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "control/api.h"
#include "core/timings.h"
#include "http_unix.h"

#define MIB (1024ULL * 1024)

/* The VM as the server sees it: records calls, fails on demand, and can
 * hold a snapshot open (gate) or make it slow (steps). */
struct fake_vm {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool paused;
	uint64_t last_pause_ns;
	int calls_pause, calls_resume, calls_shutdown, calls_snapshot;
	int calls_migrate;
	bool migrate_auto_converge; /* the last migrate request's */
	int calls_working_set;
	bool recording; /* a working-set recording runs */
	int fail_ret; /* returned by the next callback, then cleared */
	const char *fail_msg; /* its reason, or NULL to leave @err empty */
	char snap_path[PATH_MAX];
	char tls_dir[PATH_MAX]; /* the last migration's */
	unsigned connections;
	enum vm_then snap_then;
	bool snap_live;
	bool have_last; /* GET /vm shows a last_snapshot */
	bool snap_gate, snap_started, snap_release;
	int snap_steps; /* slow snapshot: steps of 50 ms */
	bool snap_active;
	uint64_t snap_done, snap_total;
	int calls_restore;
	char restore_path[PATH_MAX];
	struct api_restore restore_req;
	struct timings timings; /* shown by the status once restored */
	bool restored;
};

struct fixture {
	char dir[64];
	char sock[128];
	struct api_server *srv;
	struct fake_vm vm;
};

static int fake_fail(struct fake_vm *vm, char *err, size_t errlen)
{
	int ret = vm->fail_ret;

	vm->fail_ret = 0;
	if (ret && vm->fail_msg)
		snprintf(err, errlen, "%s", vm->fail_msg);
	return ret;
}

static int fake_pause(void *ctx, char *err, size_t errlen)
{
	struct fake_vm *vm = ctx;
	int ret;

	pthread_mutex_lock(&vm->lock);
	vm->calls_pause++;
	ret = fake_fail(vm, err, errlen);
	if (!ret && vm->paused) {
		snprintf(err, errlen, "VM is already paused");
		ret = -EALREADY;
	} else if (!ret) {
		vm->paused = true;
		vm->last_pause_ns = 140 * 1000;
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

static int fake_resume(void *ctx, char *err, size_t errlen)
{
	struct fake_vm *vm = ctx;
	int ret;

	pthread_mutex_lock(&vm->lock);
	vm->calls_resume++;
	ret = fake_fail(vm, err, errlen);
	if (!ret && !vm->paused) {
		snprintf(err, errlen, "VM is already running");
		ret = -EALREADY;
	} else if (!ret) {
		vm->paused = false;
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

static int fake_shutdown(void *ctx, char *err, size_t errlen)
{
	struct fake_vm *vm = ctx;
	int ret;

	pthread_mutex_lock(&vm->lock);
	vm->calls_shutdown++;
	ret = fake_fail(vm, err, errlen);
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

static int fake_snapshot(void *ctx, const char *path, const char *base,
			 enum vm_then then,
			 const struct snap_compress *compress, bool live,
			 struct snapshot_stats *stats, char *err, size_t errlen)
{
	struct fake_vm *vm = ctx;
	struct timespec step = { 0, 50 * 1000 * 1000 };
	int ret, i;

	pthread_mutex_lock(&vm->lock);
	vm->calls_snapshot++;
	snprintf(vm->snap_path, sizeof(vm->snap_path), "%s", path);
	vm->snap_then = then;
	vm->snap_live = live;
	*stats = (struct snapshot_stats){ .live = live,
					  .pause_ns = 1500000,
					  .total_ns = 250000000,
					  .extra_bytes = 4096 };
	ret = fake_fail(vm, err, errlen);
	if (ret)
		goto out;
	/* As vm_snapshot: one at a time. */
	if (vm->snap_active) {
		snprintf(err, errlen, "a snapshot is already running");
		ret = -EBUSY;
		goto out;
	}
	vm->snap_active = true;
	vm->snap_total = 256 * MIB;
	vm->snap_done = vm->snap_total / 2;
	vm->snap_started = true;
	pthread_cond_broadcast(&vm->cond);
	while (vm->snap_gate && !vm->snap_release)
		pthread_cond_wait(&vm->cond, &vm->lock);
	for (i = 0; i < vm->snap_steps; i++) {
		vm->snap_done = vm->snap_total * (unsigned)i / vm->snap_steps;
		pthread_mutex_unlock(&vm->lock);
		nanosleep(&step, NULL);
		pthread_mutex_lock(&vm->lock);
	}
	vm->snap_active = false;
out:
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

/* As snapshot_wset_finish: once per recording, then 409. */
static int fake_working_set(void *ctx, char *err, size_t errlen)
{
	struct fake_vm *vm = ctx;
	int ret;

	pthread_mutex_lock(&vm->lock);
	vm->calls_working_set++;
	ret = fake_fail(vm, err, errlen);
	if (!ret && !vm->recording) {
		snprintf(err, errlen, "no working set is being recorded");
		ret = -EALREADY;
	}
	if (!ret)
		vm->recording = false;
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

static void fake_status(void *ctx, struct vm_status *st)
{
	struct fake_vm *vm = ctx;

	pthread_mutex_lock(&vm->lock);
	st->paused = vm->paused;
	st->ncpus = 2;
	st->mem_size = 256 * MIB;
	st->uptime_ns = 12345678900ULL;
	st->last_pause_ns = vm->last_pause_ns;
	st->snapshot_active = vm->snap_active;
	st->snapshot_done_bytes = vm->snap_done;
	st->snapshot_total_bytes = vm->snap_total;
	/* A snapshot in progress stands for a migration too. */
	st->migration_state = vm->snap_active ? "sending" : NULL;
	if (vm->snap_active) {
		st->migration_rounds = 3;
		st->migration_bytes_sent = 100 * MIB;
		st->migration_dirty_rate = 8 * MIB;
		st->migration_link_rate = 512 * MIB;
		st->migration_expected_downtime_ms = 12;
		st->migration_throttle_pct = 30;
	}
	/* And for a post-copy destination's report. */
	st->postcopy = (struct migrate_postcopy_stats){ .on = vm->snap_active,
							.faults = 3,
							.blocked_p50_us = 40 };
	st->timings = vm->restored ? &vm->timings : NULL;
	st->have_last_snapshot = vm->have_last;
	st->last_snapshot = (struct snapshot_stats){ .live = true,
						     .pause_ns = 2000000,
						     .total_ns = 3000000000ull,
						     .extra_bytes = 1 << 20 };
	pthread_mutex_unlock(&vm->lock);
}

static int fake_migrate(void *ctx, const struct migrate_opts *o,
			struct migrate_result *res, char *err, size_t errlen)
{
	struct fake_vm *vm = ctx;
	int ret;

	pthread_mutex_lock(&vm->lock);
	vm->calls_migrate++;
	snprintf(vm->snap_path, sizeof(vm->snap_path), "%s", o->dest);
	snprintf(vm->tls_dir, sizeof(vm->tls_dir), "%s", o->tls_dir);
	vm->connections = o->connections;
	vm->migrate_auto_converge = !o->no_auto_converge;
	ret = fake_fail(vm, err, errlen);
	*res = (struct migrate_result){ .bytes_sent = 4096,
					.total_ms = 20,
					.downtime_ms = 7,
					.rounds = 3,
					.throttle_pct =
					    o->no_auto_converge ? 0 : 40 };
	/* A post-copy one comes back with the destination's report. */
	if (o->postcopy) {
		res->postcopy = true;
		res->pc = (struct migrate_postcopy_stats){
			.on = true,
			.done = true,
			.faults = 12,
			.blocked_total_us = 3000,
			.blocked_p50_us = 150,
			.blocked_p99_us = 900,
			.blocked_max_us = 950,
		};
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

static int fake_restore(void *ctx, struct api_restore *req, char *err,
			size_t errlen)
{
	struct fake_vm *vm = ctx;
	int ret;

	pthread_mutex_lock(&vm->lock);
	vm->calls_restore++;
	ret = fake_fail(vm, err, errlen);
	if (!ret) {
		snprintf(vm->restore_path, sizeof(vm->restore_path), "%s",
			 req->path);
		vm->restore_req = *req;
		if (req->memory == API_MEMORY_DEFAULT)
			req->memory = API_MEMORY_ONDEMAND;
		vm->restored = true;
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

static const struct api_ops fake_ops = {
	.pause = fake_pause,
	.resume = fake_resume,
	.snapshot = fake_snapshot,
	.shutdown = fake_shutdown,
	.migrate = fake_migrate,
	.status = fake_status,
	.restore = fake_restore,
	.working_set = fake_working_set,
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	if (!f)
		return -1;
	pthread_mutex_init(&f->vm.lock, NULL);
	pthread_cond_init(&f->vm.cond, NULL);
	snprintf(f->dir, sizeof(f->dir), "/tmp/stasis-api-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->sock, sizeof(f->sock), "%s/api.sock", f->dir);
	if (api_server_start(&f->srv, f->sock, &fake_ops, &f->vm, err,
			     sizeof(err))) {
		fprintf(stderr, "api_server_start: %s\n", err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	api_server_stop(f->srv);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd))
		return -1;
	pthread_cond_destroy(&f->vm.cond);
	pthread_mutex_destroy(&f->vm.lock);
	free(f);
	return 0;
}

/* Test allocations: running out of memory is not a case tested here. */
static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		abort();
	return p;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sends @raw as is and reads the reply until the server closes. */
static void http_raw(const char *sock, const char *raw, size_t len,
		     struct http_reply *rep)
{
	assert_int_equal(http_unix_exchange(sock, raw, len, rep, 5000), 0);
}

static void http(const char *sock, const char *method, const char *url,
		 const char *body, struct http_reply *rep)
{
	assert_int_equal(http_unix_request(sock, method, url, body, rep, 5000),
			 0);
}

/* The reply's {"error": ...} message; fails the test if there is none. */
static void assert_error(const struct http_reply *rep, int status,
			 const char *needle)
{
	struct json_object *obj, *val;

	assert_int_equal(rep->status, status);
	assert_non_null(strstr(rep->head, "Content-Type: application/json"));
	obj = json_tokener_parse(rep->body);
	assert_non_null(obj);
	assert_true(json_object_object_get_ex(obj, "error", &val));
	assert_true(json_object_is_type(val, json_type_string));
	assert_int_equal(json_object_object_length(obj), 1);
	if (!strstr(json_object_get_string(val), needle))
		fail_msg("error \"%s\" lacks \"%s\"",
			 json_object_get_string(val), needle);
	assert_null(strchr(json_object_get_string(val), '\n'));
	json_object_put(obj);
}

static struct json_object *reply_json(const struct http_reply *rep)
{
	struct json_object *obj = json_tokener_parse(rep->body);

	assert_non_null(obj);
	return obj;
}

static const char *json_str(struct json_object *obj, const char *key)
{
	struct json_object *val;

	assert_true(json_object_object_get_ex(obj, key, &val));
	assert_true(json_object_is_type(val, json_type_string));
	return json_object_get_string(val);
}

static int64_t json_int(struct json_object *obj, const char *key)
{
	struct json_object *val;

	assert_true(json_object_object_get_ex(obj, key, &val));
	assert_true(json_object_is_type(val, json_type_int));
	return json_object_get_int64(val);
}

static bool json_is_null(struct json_object *obj, const char *key)
{
	struct json_object *val;

	return json_object_object_get_ex(obj, key, &val) && !val;
}

static void test_status(void **state)
{
	struct fixture *f = *state;
	struct json_object *obj;
	struct http_reply rep;

	http(f->sock, "GET", "/vm", NULL, &rep);
	assert_int_equal(rep.status, 200);
	assert_non_null(strstr(rep.head, "Content-Type: application/json"));
	obj = reply_json(&rep);
	assert_string_equal(json_str(obj, "state"), "running");
	assert_int_equal(json_int(obj, "vcpus"), 2);
	assert_int_equal(json_int(obj, "memory_bytes"), 256 * MIB);
	assert_int_equal(json_int(obj, "uptime_ms"), 12345);
	assert_true(json_is_null(obj, "last_pause_us"));
	assert_true(json_is_null(obj, "snapshot"));
	assert_true(json_is_null(obj, "migration"));
	assert_true(json_is_null(obj, "postcopy"));
	assert_true(json_is_null(obj, "timings")); /* booted, not restored */
	assert_true(json_is_null(obj, "last_snapshot"));
	assert_int_equal(json_object_object_length(obj), 10);
	json_object_put(obj);

	f->vm.have_last = true;
	http(f->sock, "GET", "/vm", NULL, &rep);
	obj = reply_json(&rep);
	{
		struct json_object *last, *v;

		assert_true(
		    json_object_object_get_ex(obj, "last_snapshot", &last));
		assert_true(json_object_object_get_ex(last, "live", &v));
		assert_true(json_object_get_boolean(v));
		assert_int_equal(json_int(last, "pause_us"), 2000);
		assert_int_equal(json_int(last, "total_ms"), 3000);
		assert_int_equal(json_int(last, "extra_bytes"), 1 << 20);
	}
	json_object_put(obj);
	f->vm.have_last = false;
}

static void test_pause_resume(void **state)
{
	struct fixture *f = *state;
	struct json_object *obj;
	struct http_reply rep;

	http(f->sock, "PUT", "/vm/pause", NULL, &rep);
	assert_int_equal(rep.status, 204);
	assert_string_equal(rep.body, "");
	http(f->sock, "GET", "/vm", NULL, &rep);
	obj = reply_json(&rep);
	assert_string_equal(json_str(obj, "state"), "paused");
	assert_int_equal(json_int(obj, "last_pause_us"), 140);
	json_object_put(obj);

	http(f->sock, "PUT", "/vm/pause", "{}", &rep);
	assert_error(&rep, 409, "VM is already paused");
	http(f->sock, "PUT", "/vm/resume", " {} ", &rep);
	assert_int_equal(rep.status, 204);
	http(f->sock, "PUT", "/vm/resume", NULL, &rep);
	assert_error(&rep, 409, "already running");
	assert_int_equal(f->vm.calls_pause, 2);
	assert_int_equal(f->vm.calls_resume, 2);
}

static void test_shutdown(void **state)
{
	struct fixture *f = *state;
	struct http_reply rep;

	http(f->sock, "PUT", "/vm/shutdown", NULL, &rep);
	assert_int_equal(rep.status, 202);
	assert_int_equal(f->vm.calls_shutdown, 1);
}

/* Bodies of endpoints without arguments: only nothing or {}. */
static void test_action_body_checked(void **state)
{
	struct fixture *f = *state;
	struct http_reply rep;

	http(f->sock, "PUT", "/vm/pause", "{\"force\": true}", &rep);
	assert_error(&rep, 400, "unknown key \"force\"");
	http(f->sock, "PUT", "/vm/shutdown", "now", &rep);
	assert_error(&rep, 400, "must be a JSON object");
	http(f->sock, "GET", "/vm", "{", &rep);
	assert_error(&rep, 400, "malformed JSON");
	assert_int_equal(f->vm.calls_pause, 0);
	assert_int_equal(f->vm.calls_shutdown, 0);
}

static void test_snapshot(void **state)
{
	struct fixture *f = *state;
	struct json_object *obj;
	struct http_reply rep;

	http(f->sock, "PUT", "/vm/snapshot",
	     "{\"path\": \"/tmp/vm.snap\", \"then\": \"pause\"}", &rep);
	assert_int_equal(rep.status, 200);
	obj = reply_json(&rep);
	assert_string_equal(json_str(obj, "path"), "/tmp/vm.snap");
	assert_string_equal(json_str(obj, "then"), "pause");
	json_object_put(obj);
	assert_string_equal(f->vm.snap_path, "/tmp/vm.snap");
	assert_int_equal(f->vm.snap_then, VM_THEN_PAUSE);

	http(f->sock, "PUT", "/vm/snapshot", "{\"path\": \"rel/a b.snap\"}",
	     &rep);
	assert_int_equal(rep.status, 200);
	obj = reply_json(&rep);
	assert_string_equal(json_str(obj, "then"), "resume");
	json_object_put(obj);
	assert_string_equal(f->vm.snap_path, "rel/a b.snap");
	assert_int_equal(f->vm.snap_then, VM_THEN_RESUME);

	http(f->sock, "PUT", "/vm/snapshot",
	     "{\"then\": \"exit\", \"path\": \"/x\"}", &rep);
	assert_int_equal(rep.status, 200);
	assert_int_equal(f->vm.snap_then, VM_THEN_EXIT);
	assert_false(f->vm.snap_live);

	/* --live: the flag reaches the VM and the reply says what it cost. */
	http(f->sock, "PUT", "/vm/snapshot",
	     "{\"path\": \"/x\", \"live\": true}", &rep);
	assert_int_equal(rep.status, 200);
	assert_true(f->vm.snap_live);
	obj = reply_json(&rep);
	{
		struct json_object *v;

		assert_true(json_object_object_get_ex(obj, "live", &v));
		assert_true(json_object_get_boolean(v));
		assert_true(json_object_object_get_ex(obj, "pause_us", &v));
		assert_int_equal(json_object_get_int64(v), 1500);
		assert_true(json_object_object_get_ex(obj, "total_ms", &v));
		assert_int_equal(json_object_get_int64(v), 250);
		assert_true(json_object_object_get_ex(obj, "extra_bytes", &v));
		assert_int_equal(json_object_get_int64(v), 4096);
	}
	json_object_put(obj);
	http(f->sock, "PUT", "/vm/snapshot", "{\"path\": \"/x\", \"live\": 1}",
	     &rep);
	assert_int_equal(rep.status, 400);
	assert_int_equal(f->vm.calls_snapshot, 4);
}

static void test_snapshot_bad_requests(void **state)
{
	static const struct {
		const char *body;
		const char *error;
	} cases[] = {
		{ "", "missing request body" },
		{ "   ", "missing request body" },
		{ "{", "unexpected end of input" },
		{ "{\"path\": \"/x\"", "unexpected end of input" },
		{ "{\"path\": \"/x\",}", "malformed JSON" },
		{ "{'path': '/x'}", "malformed JSON" },
		{ "{\"path\": \"/x\"} {}", "malformed JSON" },
		{ "{\"path\": \"/x\"}\n\tx", "malformed JSON" },
		{ "[\"/x\"]", "must be a JSON object" },
		{ "\"/x\"", "must be a JSON object" },
		{ "{}", "missing key \"path\"" },
		{ "{\"then\": \"pause\"}", "missing key \"path\"" },
		{ "{\"path\": 5}", "\"path\" must be a string" },
		{ "{\"path\": null}", "\"path\" must be a string" },
		{ "{\"path\": \"\"}", "\"path\" must not be empty" },
		{ "{\"path\": \"a\\u0000b\"}", "NUL" },
		{ "{\"path\\u0000\": \"a\"}", "NUL" },
		{ "{\"path\": \"/x\", \"then\": \"stop\"}",
		  "\"then\" must be" },
		{ "{\"path\": \"/x\", \"then\": 1}", "\"then\" must be" },
		{ "{\"path\": \"/x\", \"compression\": true}",
		  "unknown key \"compression\"" },
		{ "{\"path\": \"/x\", \"compress\": true}",
		  "\"compress\" must be a string" },
		{ "{\"path\": \"/x\", \"compress\": \"zstd:0\"}",
		  "bad zstd level in \"zstd:0\"" },
		{ "{\"path\": \"/x\", \"a\\nb\": 1}",
		  "unknown key \"a\\x0ab\"" },
		{ "{\"path\": \"/x\", \"a\\u00ffb\": 1}",
		  "unknown key \"a\\xc3\\xbfb\"" },
		{ "{\"path\": \"\xff\"}", "not valid UTF-8 at byte 10" },
		{ "{\"path\": [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}",
		  "malformed JSON" },
	};
	struct fixture *f = *state;
	struct http_reply rep;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		http(f->sock, "PUT", "/vm/snapshot", cases[i].body, &rep);
		assert_error(&rep, 400, cases[i].error);
	}
	assert_int_equal(f->vm.calls_snapshot, 0);
}

static void test_snapshot_path_too_long(void **state)
{
	static char body[PATH_MAX + 32];
	struct fixture *f = *state;
	struct http_reply rep;
	size_t n;

	n = (size_t)sprintf(body, "{\"path\": \"/");
	memset(body + n, 'a', PATH_MAX - 2);
	n += PATH_MAX - 2;
	strcpy(body + n, "\"}"); /* PATH_MAX - 1 bytes: fits */
	http(f->sock, "PUT", "/vm/snapshot", body, &rep);
	assert_int_equal(rep.status, 200);
	assert_int_equal(strlen(f->vm.snap_path), PATH_MAX - 1);

	strcpy(body + n, "a\"}"); /* PATH_MAX bytes: no room for the NUL */
	http(f->sock, "PUT", "/vm/snapshot", body, &rep);
	assert_error(&rep, 400, "\"path\" is longer than");
}

static void test_snapshot_failures(void **state)
{
	static const struct {
		int ret;
		const char *msg;
		int status;
		const char *error;
	} cases[] = {
		{ -ENOSPC, "no space left on /full for 256 MiB", 507,
		  "no space left on /full" },
		{ -ENOSPC, NULL, 507, "snapshot failed: No space left" },
		{ -EIO, NULL, 500, "snapshot failed: Input/output error" },
		{ -EACCES, "cannot open /x: Permission denied", 500,
		  "cannot open /x" },
		{ -EBUSY, "a snapshot is already running", 409,
		  "already running" },
		{ -EINVAL, "bad\nreason", 400, "bad\\x0areason" },
		{ -EINVAL, "bad \xff byte", 400, "bad \\xff byte" },
		{ 7, NULL, 500, "snapshot failed" },
	};
	struct fixture *f = *state;
	struct http_reply rep;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		f->vm.fail_ret = cases[i].ret;
		f->vm.fail_msg = cases[i].msg;
		http(f->sock, "PUT", "/vm/snapshot", "{\"path\": \"/full\"}",
		     &rep);
		assert_error(&rep, cases[i].status, cases[i].error);
	}
}

static void test_not_found(void **state)
{
	static const char *const urls[] = { "/", "/vm/", "/vms",
					    "/vm/pause/now", "/VM" };
	struct fixture *f = *state;
	struct http_reply rep;
	size_t i;

	for (i = 0; i < sizeof(urls) / sizeof(*urls); i++) {
		http(f->sock, "GET", urls[i], NULL, &rep);
		assert_error(&rep, 404, "no such endpoint");
	}
	http(f->sock, "PUT", "/nope", "{\"path\": \"/x\"}", &rep);
	assert_error(&rep, 404, "no such endpoint: /nope");
}

static void test_method_not_allowed(void **state)
{
	struct fixture *f = *state;
	struct http_reply rep;

	http(f->sock, "POST", "/vm", NULL, &rep);
	assert_error(&rep, 405, "method POST not allowed on /vm");
	assert_non_null(strstr(rep.head, "\r\nAllow: GET"));
	http(f->sock, "GET", "/vm/pause", NULL, &rep);
	assert_error(&rep, 405, "use PUT");
	assert_non_null(strstr(rep.head, "\r\nAllow: PUT"));
	http(f->sock, "DELETE", "/vm/snapshot", "{\"path\": \"/x\"}", &rep);
	assert_error(&rep, 405, "not allowed");
	assert_int_equal(f->vm.calls_pause, 0);
	assert_int_equal(f->vm.calls_snapshot, 0);
}

/* A chunked PUT /vm/snapshot of @n chunks of 1000 spaces, with the final
 * empty chunk if @finish. */
static char *chunked_request(size_t n, bool finish, size_t *len)
{
	static const char head[] = "PUT /vm/snapshot HTTP/1.1\r\nHost: x\r\n"
				   "Connection: close\r\n"
				   "Transfer-Encoding: chunked\r\n\r\n";
	char *raw = xmalloc(sizeof(head) + n * 1007 + 8), *p = raw;
	size_t i;

	memcpy(p, head, sizeof(head) - 1);
	p += sizeof(head) - 1;
	for (i = 0; i < n; i++) {
		memcpy(p, "3e8\r\n", 5); /* 1000 in hex */
		memset(p + 5, ' ', 1000);
		memcpy(p + 1005, "\r\n", 2);
		p += 1007;
	}
	if (finish) {
		memcpy(p, "0\r\n\r\n", 5);
		p += 5;
	}
	*len = (size_t)(p - raw);
	return raw;
}

static void test_body_too_large(void **state)
{
	struct fixture *f = *state;
	size_t big = API_BODY_MAX + 1, len;
	char *body, *raw;
	struct http_reply rep;

	/* Exactly API_BODY_MAX bytes is still accepted. */
	body = xmalloc(big + 1);
	memset(body, ' ', API_BODY_MAX);
	memcpy(body, "{\"path\": \"/x\"}", 14);
	body[API_BODY_MAX] = '\0';
	http(f->sock, "PUT", "/vm/snapshot", body, &rep);
	assert_int_equal(rep.status, 200);

	/* One more byte, declared by Content-Length. */
	body[API_BODY_MAX] = ' ';
	body[big] = '\0';
	http(f->sock, "PUT", "/vm/snapshot", body, &rep);
	assert_error(&rep, 413, "larger than 65536 bytes");

	/* Chunked: no Content-Length to refuse early, capped as it comes. */
	raw = chunked_request(big / 1000 + 1, true, &len);
	http_raw(f->sock, raw, len, &rep);
	assert_error(&rep, 413, "larger than");
	free(raw);

	/* Streaming on and on gets the connection closed. */
	raw = chunked_request(20 * big / 1000, false, &len);
	http_raw(f->sock, raw, len, &rep);
	assert_int_equal(rep.status, -1);
	free(raw);
	http(f->sock, "GET", "/vm", NULL, &rep);
	assert_int_equal(rep.status, 200);
	free(body);
	assert_int_equal(f->vm.calls_snapshot, 1);
}

/* A second server on @path, beside the fixture's. */
static int start_other(struct fixture *f, const char *path,
		       struct api_server **srv, char *err, size_t errlen)
{
	return api_server_start(srv, path, &fake_ops, &f->vm, err, errlen);
}

static void test_socket_mode(void **state)
{
	struct fixture *f = *state;
	struct stat st;

	assert_int_equal(lstat(f->sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_uid, geteuid());
}

static void test_socket_in_use(void **state)
{
	struct fixture *f = *state;
	struct api_server *other = NULL;
	struct http_reply rep;
	char err[256] = "";

	assert_int_equal(start_other(f, f->sock, &other, err, sizeof(err)),
			 -EADDRINUSE);
	assert_non_null(strstr(err, "is in use"));
	assert_non_null(strstr(err, f->sock));
	http(f->sock, "GET", "/vm", NULL, &rep);
	assert_int_equal(rep.status, 200);
}

/* A socket file left by a dead stasis is replaced. */
static void test_stale_socket_replaced(void **state)
{
	struct sockaddr_un addr;
	struct fixture *f = *state;
	struct api_server *srv;
	char path[160], err[256];
	struct http_reply rep;
	int fd;

	snprintf(path, sizeof(path), "%s/stale.sock", f->dir);
	assert_int_equal(http_unix_addr(&addr, path), 0);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(fd);
	assert_int_equal(access(path, F_OK), 0);

	assert_int_equal(start_other(f, path, &srv, err, sizeof(err)), 0);
	http(path, "GET", "/vm", NULL, &rep);
	assert_int_equal(rep.status, 200);
	api_server_stop(srv);
	assert_int_equal(access(path, F_OK), -1);
}

static void test_bad_socket_paths(void **state)
{
	struct fixture *f = *state;
	struct api_server *srv = NULL;
	char path[256], err[256];
	struct stat st;
	int fd;

	/* Never unlink something that is not a socket. */
	snprintf(path, sizeof(path), "%s/file", f->dir);
	fd = open(path, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "keep", 4), 4);
	close(fd);
	assert_int_equal(start_other(f, path, &srv, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 4);

	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[sizeof(((struct sockaddr_un *)0)->sun_path)] = '\0';
	assert_int_equal(start_other(f, path, &srv, err, sizeof(err)),
			 -ENAMETOOLONG);
	assert_non_null(strstr(err, "longer than"));

	assert_int_equal(start_other(f, "", &srv, err, sizeof(err)), -EINVAL);
	snprintf(path, sizeof(path), "%s/no/such/dir.sock", f->dir);
	assert_int_equal(start_other(f, path, &srv, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot bind"));
	assert_null(srv);
}

struct bg_request {
	const char *sock;
	const char *body;
	struct http_reply rep;
	pthread_t thread;
};

static void *bg_snapshot_main(void *arg)
{
	struct bg_request *b = arg;

	http(b->sock, "PUT", "/vm/snapshot", b->body, &b->rep);
	return NULL;
}

static void wait_snapshot_started(struct fake_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	while (!vm->snap_started)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}

static void release_snapshot(struct fake_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->snap_release = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

/* A snapshot in flight must not block status polls on other
 * connections: that is how the progress bar works. */
static void test_status_during_snapshot(void **state)
{
	struct fixture *f = *state;
	struct bg_request b = { .sock = f->sock,
				.body = "{\"path\": \"/big.snap\"}" };
	struct json_object *obj, *snap;
	struct http_reply rep;

	f->vm.snap_gate = true;
	assert_int_equal(pthread_create(&b.thread, NULL, bg_snapshot_main, &b),
			 0);
	wait_snapshot_started(&f->vm);

	http(f->sock, "GET", "/vm", NULL, &rep);
	assert_int_equal(rep.status, 200);
	obj = reply_json(&rep);
	assert_true(json_object_object_get_ex(obj, "snapshot", &snap));
	assert_non_null(snap);
	assert_int_equal(json_int(snap, "done_bytes"), 128 * MIB);
	assert_int_equal(json_int(snap, "total_bytes"), 256 * MIB);
	/* The migration the snapshot stands for: its pre-copy so far. */
	assert_true(json_object_object_get_ex(obj, "migration", &snap));
	assert_non_null(snap);
	assert_string_equal(
	    json_object_get_string(json_object_object_get(snap, "state")),
	    "sending");
	assert_int_equal(json_int(snap, "rounds"), 3);
	assert_int_equal(json_int(snap, "bytes_sent"), 100 * MIB);
	assert_int_equal(json_int(snap, "dirty_rate"), 8 * MIB);
	assert_int_equal(json_int(snap, "link_rate"), 512 * MIB);
	assert_int_equal(json_int(snap, "expected_downtime_ms"), 12);
	assert_int_equal(json_int(snap, "throttle_percent"), 30);
	json_object_put(obj);

	release_snapshot(&f->vm);
	pthread_join(b.thread, NULL);
	assert_int_equal(b.rep.status, 200);
	http(f->sock, "GET", "/vm", NULL, &rep);
	obj = reply_json(&rep);
	assert_true(json_is_null(obj, "snapshot"));
	json_object_put(obj);
}

static void *bg_stop_main(void *arg)
{
	api_server_stop(arg);
	return NULL;
}

/* Stopping while a reply is being computed (a snapshot with "then":
 * "exit") still delivers it, and new clients find no socket. */
static void test_stop_drains(void **state)
{
	struct fixture *f = *state;
	struct bg_request b = { .sock = f->sock,
				.body =
				    "{\"path\": \"/x\", \"then\": \"exit\"}" };
	struct timespec pause = { 0, 100 * 1000 * 1000 };
	pthread_t stopper;

	f->vm.snap_gate = true;
	assert_int_equal(pthread_create(&b.thread, NULL, bg_snapshot_main, &b),
			 0);
	wait_snapshot_started(&f->vm);
	assert_int_equal(pthread_create(&stopper, NULL, bg_stop_main, f->srv),
			 0);
	f->srv = NULL;
	nanosleep(&pause, NULL);
	assert_int_equal(access(f->sock, F_OK), -1);
	release_snapshot(&f->vm);
	pthread_join(b.thread, NULL);
	pthread_join(stopper, NULL);
	assert_int_equal(b.rep.status, 200);
	assert_non_null(strstr(b.rep.body, "\"then\": \"exit\""));
}

/* Another uid is refused even if the socket mode lets it connect. Needs
 * root to become someone else. */
static void test_peer_uid_refused(void **state)
{
	static const char req[] = "GET /vm HTTP/1.1\r\nHost: x\r\n"
				  "Connection: close\r\n\r\n";
	struct fixture *f = *state;
	char buf[512];
	size_t got = 0;
	ssize_t n;
	pid_t pid;
	int wstatus, fd;

	if (geteuid() != 0)
		skip();
	assert_int_equal(chmod(f->dir, 0755), 0);
	assert_int_equal(chmod(f->sock, 0666), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		/* Child: only async-signal-safe calls, no cmocka. */
		if (setgid(65534) || setuid(65534))
			_exit(10);
		fd = http_unix_connect(f->sock);
		if (fd < 0)
			_exit(11);
		if (write(fd, req, sizeof(req) - 1) != sizeof(req) - 1)
			_exit(12);
		while (got < sizeof(buf) - 1 &&
		       (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
			got += (size_t)n;
		buf[got] = '\0';
		if (strncmp(buf, "HTTP/1.1 403", 12))
			_exit(13);
		_exit(strstr(buf, "permission denied: uid 65534") ? 0 : 14);
	}
	assert_int_equal(waitpid(pid, &wstatus, 0), pid);
	assert_true(WIFEXITED(wstatus));
	assert_int_equal(WEXITSTATUS(wstatus), 0);
	assert_int_equal(f->vm.calls_pause, 0);
}

static void test_parse_snapshot_request(void **state)
{
	char path[8], base[8], err[256] = "";
	enum vm_then then = VM_THEN_EXIT;
	const char *body = "{\"path\": \"/a/b\"}";
	struct snap_compress comp = { .codec = SNAP_CODEC_ZSTD };
	bool live = true;
	char *huge;

	assert_int_equal(api_parse_snapshot_request(
			     body, strlen(body), path, sizeof(path), base,
			     &then, &comp, &live, err, sizeof(err)),
			 0);
	assert_string_equal(path, "/a/b");
	assert_int_equal(then, VM_THEN_RESUME);
	assert_int_equal(comp.codec, SNAP_COMPRESS_DEFAULT_CODEC);
	assert_string_equal(base, "");

	/* "base": the parent of an incremental snapshot, a path too. */
	body = "{\"path\": \"/a/b\", \"base\": \"/a/p\"}";
	assert_int_equal(api_parse_snapshot_request(
			     body, strlen(body), path, sizeof(path), base,
			     &then, &comp, &live, err, sizeof(err)),
			 0);
	assert_string_equal(base, "/a/p");
	body = "{\"path\": \"/a/b\", \"base\": 1}";
	assert_int_equal(api_parse_snapshot_request(
			     body, strlen(body), path, sizeof(path), base,
			     &then, &comp, &live, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "\"base\" must be a string");
	body = "{\"path\": \"/a/b\", \"base\": \"/a/b/c/d/e\"}";
	assert_int_equal(api_parse_snapshot_request(
			     body, strlen(body), path, sizeof(path), base,
			     &then, &comp, &live, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "\"base\" is longer than"));

	body = "{\"path\": \"/a\", \"compress\": \"zstd:7\"}";
	assert_int_equal(api_parse_snapshot_request(
			     body, strlen(body), path, sizeof(path), base,
			     &then, &comp, &live, err, sizeof(err)),
			 0);
	assert_int_equal(comp.codec, SNAP_CODEC_ZSTD);
	assert_int_equal(comp.level, 7);
	body = "{\"path\": \"/a\", \"compress\": \"lz4\"}";
	assert_int_equal(api_parse_snapshot_request(
			     body, strlen(body), path, sizeof(path), base,
			     &then, &comp, &live, err, sizeof(err)),
			 0);
	assert_int_equal(comp.codec, SNAP_CODEC_LZ4);
	body = "{\"path\": \"/a\", \"compress\": \"zstd:20\"}";
	assert_int_equal(api_parse_snapshot_request(
			     body, strlen(body), path, sizeof(path), base,
			     &then, &comp, &live, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err,
			    "bad zstd level in \"zstd:20\": expected 1..19");
	body = "{\"path\": \"/a\", \"compress\": \"gzip\"}";
	assert_int_equal(api_parse_snapshot_request(
			     body, strlen(body), path, sizeof(path), base,
			     &then, &comp, &live, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "unknown compression \"gzip\": expected "
				 "none, lz4, zstd or zstd:LEVEL");
	body = "{\"path\": \"/a\", \"compress\": 3}";
	assert_int_equal(api_parse_snapshot_request(
			     body, strlen(body), path, sizeof(path), base,
			     &then, &comp, &live, err, sizeof(err)),
			 -EINVAL);

	body = "{\"path\": \"/a/b/c/d\"}"; /* 8 bytes, no room for NUL */
	assert_int_equal(api_parse_snapshot_request(
			     body, strlen(body), path, sizeof(path), base,
			     &then, &comp, &live, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "\"path\" is longer than 7 bytes");

	/* The length bounds the parse, not a NUL terminator. */
	body = "{\"path\": \"/a\"}garbage";
	assert_int_equal(
	    api_parse_snapshot_request(body, 14, path, sizeof(path), base,
				       &then, &comp, &live, err, sizeof(err)),
	    0);
	assert_int_equal(
	    api_parse_snapshot_request(body, 13, path, sizeof(path), base,
				       &then, &comp, &live, err, sizeof(err)),
	    -EINVAL);

	huge = xmalloc(API_BODY_MAX + 1);
	memset(huge, ' ', API_BODY_MAX + 1);
	assert_int_equal(api_parse_snapshot_request(
			     huge, API_BODY_MAX + 1, path, sizeof(path), base,
			     &then, &comp, &live, err, sizeof(err)),
			 -EMSGSIZE);
	free(huge);
}

/* ---- stasis ctl ---- */

struct ctl_run {
	int status;
	char out[8192];
	char err[8192];
};

static void read_back(FILE *f, char *buf, size_t len)
{
	size_t n;

	rewind(f);
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/* Runs ctl_main with stdout and stderr captured; args end with NULL. */
static void run_ctl(struct ctl_run *run, ...)
{
	char *argv[16];
	FILE *out = tmpfile(), *err = tmpfile();
	int argc = 0, saved_out, saved_err;
	va_list ap;

	assert_non_null(out);
	assert_non_null(err);
	argv[argc++] = "ctl";
	va_start(ap, run);
	while (argc < 15 && (argv[argc] = va_arg(ap, char *)))
		argc++;
	va_end(ap);
	argv[argc] = NULL;

	fflush(stdout);
	fflush(stderr);
	saved_out = dup(STDOUT_FILENO);
	saved_err = dup(STDERR_FILENO);
	dup2(fileno(out), STDOUT_FILENO);
	dup2(fileno(err), STDERR_FILENO);
	run->status = ctl_main(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, STDOUT_FILENO);
	dup2(saved_err, STDERR_FILENO);
	close(saved_out);
	close(saved_err);
	read_back(out, run->out, sizeof(run->out));
	read_back(err, run->err, sizeof(run->err));
}

static void test_ctl_status(void **state)
{
	struct fixture *f = *state;
	struct json_object *obj;
	struct ctl_run run;

	run_ctl(&run, f->sock, "status", NULL);
	assert_int_equal(run.status, 0);
	assert_string_equal(run.out, "state: running\n"
				     "vcpus: 2\n"
				     "memory: 256 MiB\n"
				     "uptime: 12.3 s\n"
				     "last pause: never\n");
	assert_string_equal(run.err, "");

	f->vm.paused = true;
	f->vm.last_pause_ns = 140 * 1000;
	f->vm.snap_active = true;
	f->vm.snap_done = 64 * MIB;
	f->vm.snap_total = 256 * MIB;
	run_ctl(&run, f->sock, "status", NULL);
	assert_int_equal(run.status, 0);
	assert_string_equal(run.out, "state: paused\n"
				     "vcpus: 2\n"
				     "memory: 256 MiB\n"
				     "uptime: 12.3 s\n"
				     "last pause: 140 us\n"
				     "snapshot: 64 MiB of 256 MiB written\n"
				     "migration: sending, round 3, 100.0 MiB "
				     "sent, dirty 8.0 MiB/s, link 512.0 MiB/s, "
				     "expected downtime 12 ms, throttle 30%\n");

	f->vm.have_last = true;
	run_ctl(&run, f->sock, "status", NULL);
	assert_int_equal(run.status, 0);
	assert_non_null(strstr(run.out, "last snapshot: live, paused 2000 us, "
					"3.0 s in all, extra memory 1 MiB\n"));
	f->vm.have_last = false;

	run_ctl(&run, f->sock, "status", "--json", NULL);
	assert_int_equal(run.status, 0);
	obj = json_tokener_parse(run.out);
	assert_non_null(obj);
	assert_string_equal(json_str(obj, "state"), "paused");
	assert_int_equal(json_int(obj, "last_pause_us"), 140);
	json_object_put(obj);
}

static void test_ctl_actions(void **state)
{
	struct fixture *f = *state;
	struct ctl_run run;

	run_ctl(&run, f->sock, "pause", NULL);
	assert_int_equal(run.status, 0);
	assert_string_equal(run.out, "VM paused\n");
	run_ctl(&run, f->sock, "pause", NULL);
	assert_int_equal(run.status, 1);
	assert_string_equal(run.out, "");
	assert_string_equal(run.err, "stasis: error: VM is already paused\n");
	run_ctl(&run, f->sock, "resume", "--json", NULL);
	assert_int_equal(run.status, 0);
	assert_string_equal(run.out, "{}\n");
	run_ctl(&run, f->sock, "shutdown", NULL);
	assert_int_equal(run.status, 0);
	assert_string_equal(run.out, "VM shutting down\n");
	assert_int_equal(f->vm.calls_shutdown, 1);

	f->vm.fail_ret = -EIO;
	run_ctl(&run, f->sock, "shutdown", NULL);
	assert_int_equal(run.status, 1);
	assert_string_equal(run.err, "stasis: error: shutdown failed: "
				     "Input/output error\n");

	f->vm.recording = true;
	run_ctl(&run, f->sock, "working-set", NULL);
	assert_int_equal(run.status, 0);
	assert_string_equal(run.out, "working set written\n");
	run_ctl(&run, f->sock, "working-set", NULL);
	assert_int_equal(run.status, 1);
	assert_string_equal(run.err, "stasis: error: no working set is being "
				     "recorded\n");
}

static void test_ctl_snapshot(void **state)
{
	struct fixture *f = *state;
	char expect[PATH_MAX + 64], cwd[PATH_MAX];
	struct json_object *obj;
	struct ctl_run run;

	run_ctl(&run, f->sock, "snapshot", "/tmp/a.snap", NULL);
	assert_int_equal(run.status, 0);
	assert_string_equal(run.out, "snapshot written to /tmp/a.snap\n");
	assert_string_equal(f->vm.snap_path, "/tmp/a.snap");
	assert_int_equal(f->vm.snap_then, VM_THEN_RESUME);

	/* Relative to the caller's directory, not to stasis's. */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(f->dir), 0);
	run_ctl(&run, f->sock, "snapshot", "--then", "exit", "b.snap", NULL);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(run.status, 0);
	snprintf(expect, sizeof(expect), "%s/b.snap", f->dir);
	assert_string_equal(f->vm.snap_path, expect);
	snprintf(expect, sizeof(expect), "snapshot written to %s/b.snap\n",
		 f->dir);
	assert_string_equal(run.out, expect);
	assert_int_equal(f->vm.snap_then, VM_THEN_EXIT);

	run_ctl(&run, f->sock, "snapshot", "/c.snap", "--then=pause", "--json",
		NULL);
	assert_int_equal(run.status, 0);
	obj = json_tokener_parse(run.out);
	assert_non_null(obj);
	assert_string_equal(json_str(obj, "path"), "/c.snap");
	assert_string_equal(json_str(obj, "then"), "pause");
	json_object_put(obj);

	f->vm.fail_ret = -ENOSPC;
	f->vm.fail_msg = "no space left on device writing /full.snap";
	run_ctl(&run, f->sock, "snapshot", "/full.snap", NULL);
	assert_int_equal(run.status, 1);
	assert_string_equal(run.out, "");
	assert_string_equal(run.err, "stasis: error: no space left on device "
				     "writing /full.snap\n");
}

/* PUT /vm/migrate's body: the destination, the options built, and the
 * options of what is not built refused by name. */
static void test_parse_migrate_request(void **state)
{
	static const struct {
		const char *body;
		const char *err; /* NULL: accepted */
	} cases[] = {
		{ "{\"destination\": \"unix:/a\"}", NULL },
		{ "{\"destination\": \"tcp:h:1\", \"insecure\": true, "
		  "\"timeout_s\": 5, \"connections\": 1, \"compress\": "
		  "\"lz4\"}",
		  NULL },
		{ "", "missing request body" },
		{ "{}", "missing key \"destination\"" },
		{ "{\"destination\": 3}", "\"destination\" must be a string" },
		{ "{\"destination\": \"unix:/a\", \"timeout_s\": 0}",
		  "\"timeout_s\" must be an integer from 1 to 86400" },
		{ "{\"destination\": \"unix:/a\", \"insecure\": 1}",
		  "\"insecure\" must be true or false" },
		{ "{\"destination\": \"unix:/a\", \"connections\": 16}", NULL },
		{ "{\"destination\": \"unix:/a\", \"connections\": 0}",
		  "\"connections\" must be an integer from 1 to 16" },
		{ "{\"destination\": \"unix:/a\", \"connections\": 17}",
		  "\"connections\" must be an integer from 1 to 16" },
		{ "{\"destination\": \"unix:/a\", \"postcopy\": true}", NULL },
		{ "{\"destination\": \"unix:/a\", \"postcopy\": 1}",
		  "\"postcopy\" must be true or false" },
		{ "{\"destination\": \"unix:/a\", \"timeout_s\": 9, "
		  "\"on_timeout\": \"postcopy\"}",
		  NULL },
		{ "{\"destination\": \"unix:/a\", \"on_timeout\": \"abort\"}",
		  NULL },
		{ "{\"destination\": \"unix:/a\", \"on_timeout\": \"later\"}",
		  "\"on_timeout\" must be \"abort\" or \"postcopy\"" },
		{ "{\"destination\": \"unix:/a\", \"downtime_ms\": 30}", NULL },
		{ "{\"destination\": \"unix:/a\", \"downtime_ms\": 0}",
		  "\"downtime_ms\" must be an integer from 1 to 60000" },
		{ "{\"destination\": \"tcp:h:1\", \"tls_dir\": \"/etc/m\", "
		  "\"connections\": 4}",
		  NULL },
		{ "{\"destination\": \"tcp:h:1\", \"tls_dir\": \"rel/dir\"}",
		  "\"tls_dir\" must be an absolute path" },
		{ "{\"destination\": \"tcp:h:1\", \"tls_dir\": \"\"}",
		  "\"tls_dir\" must not be empty" },
		{ "{\"destination\": \"tcp:h:1\", \"tls_dir\": 5}",
		  "\"tls_dir\" must be a string" },
		{ "{\"destination\": \"unix:/a\", \"bogus\": 1}",
		  "unknown key \"bogus\"" },
		{ "{\"destination\": \"unix:/a\", \"auto_converge\": false}",
		  NULL },
		{ "{\"destination\": \"unix:/a\", \"auto_converge\": 0}",
		  "\"auto_converge\" must be true or false" },
	};
	struct migrate_opts o;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		int ret = api_parse_migrate_request(
		    cases[i].body, strlen(cases[i].body), &o, err, sizeof(err));

		if (!cases[i].err) {
			if (ret)
				fail_msg("'%s': %s", cases[i].body, err);
			continue;
		}
		if (ret != -EINVAL || !strstr(err, cases[i].err))
			fail_msg("'%s': %d '%s', expected '%s'", cases[i].body,
				 ret, err, cases[i].err);
	}
	assert_int_equal(api_parse_migrate_request(cases[1].body,
						   strlen(cases[1].body), &o,
						   err, sizeof(err)),
			 0);
	assert_string_equal(o.dest, "tcp:h:1");
	assert_true(o.insecure);
	assert_int_equal(o.timeout_s, 5);
	assert_int_equal(o.compress.codec, SNAP_CODEC_LZ4);
	assert_string_equal(o.tls_dir, "");
	{
		const char *b = "{\"destination\": \"tcp:h:1\", \"tls_dir\": "
				"\"/etc/m\", \"connections\": 4}";

		assert_int_equal(api_parse_migrate_request(b, strlen(b), &o,
							   err, sizeof(err)),
				 0);
		assert_string_equal(o.tls_dir, "/etc/m");
		assert_int_equal(o.connections, 4);
	}
	/* Auto-converge is on unless turned off. */
	assert_false(o.no_auto_converge);
	{
		const char *b = "{\"destination\": \"unix:/a\", "
				"\"auto_converge\": false}";

		assert_int_equal(api_parse_migrate_request(b, strlen(b), &o,
							   err, sizeof(err)),
				 0);
		assert_true(o.no_auto_converge);
	}
}

/* ctl migrate sends the destination and options, prints the result. */
static void test_ctl_migrate(void **state)
{
	struct fixture *f = *state;
	struct ctl_run run;

	run_ctl(&run, f->sock, "migrate", "unix:/tmp/m.sock", NULL);
	assert_int_equal(run.status, 0);
	assert_string_equal(run.out,
			    "migrated: 0.0 MiB sent in 20 ms, paused 7 ms, 3 "
			    "pre-copy rounds, throttled to 40%\n");
	assert_string_equal(f->vm.snap_path, "unix:/tmp/m.sock");
	assert_int_equal(f->vm.calls_migrate, 1);
	assert_string_equal(f->vm.tls_dir, "");
	assert_true(f->vm.migrate_auto_converge);
	run_ctl(&run, f->sock, "migrate", "unix:/tmp/m.sock",
		"--no-auto-converge", NULL);
	assert_int_equal(run.status, 0);
	assert_string_equal(run.out,
			    "migrated: 0.0 MiB sent in 20 ms, paused 7 ms, 3 "
			    "pre-copy rounds\n");
	assert_false(f->vm.migrate_auto_converge);
	f->vm.calls_migrate = 1;

	/* --tls-dir reaches the VM as an absolute path: ctl's relative one
	 * means nothing in the VM's directory. */
	{
		char want[PATH_MAX + 16];

		run_ctl(&run, f->sock, "migrate", "tcp:h:1", "--tls-dir",
			"certs", "--connections", "3", NULL);
		assert_int_equal(run.status, 0);
		assert_non_null(getcwd(want, PATH_MAX));
		strcat(want, "/certs");
		assert_string_equal(f->vm.tls_dir, want);
		assert_int_equal(f->vm.connections, 3);
	}
	/* Post-copy: the destination's blocked time on the same line. */
	run_ctl(&run, f->sock, "migrate", "unix:/m", "--postcopy", NULL);
	assert_int_equal(run.status, 0);
	assert_string_equal(run.out,
			    "migrated: 0.0 MiB sent in 20 ms, paused 7 ms, 3 "
			    "pre-copy rounds, throttled to 40%, post-copy: 12 "
			    "faults, blocked p50 150 us p99 900 us\n");
	run_ctl(&run, f->sock, "migrate", "unix:/m", "--on-timeout", "later",
		NULL);
	assert_int_equal(run.status, 1);
	assert_non_null(strstr(run.err, "\"on_timeout\" must be"));
	run_ctl(&run, f->sock, "migrate", "unix:/m", "--timeout-s", "x", NULL);
	assert_int_equal(run.status, 2);
	run_ctl(&run, f->sock, "migrate", NULL);
	assert_int_equal(run.status, 2);
	/* The first two, --tls-dir and --postcopy. */
	assert_int_equal(f->vm.calls_migrate, 3);

	f->vm.fail_ret = -EIO;
	f->vm.fail_msg = "cannot connect to unix:/m: Connection refused";
	run_ctl(&run, f->sock, "migrate", "unix:/m", NULL);
	assert_int_equal(run.status, 1);
	assert_string_equal(run.err, "stasis: error: cannot connect to "
				     "unix:/m: Connection refused\n");
}

/* A migrate reply carries the destination escaped by json-c, which may
 * make it several times longer than the request's 255 bytes: the reply
 * is whole all the same. */
static void test_migrate_reply_escaped(void **state)
{
	struct fixture *f = *state;
	char body[2048], want[256];
	struct json_object *obj;
	struct http_reply rep;
	size_t n;

	n = (size_t)snprintf(body, sizeof(body), "{\"destination\": \"unix:");
	strcpy(want, "unix:");
	for (int i = 0; i < 200; i++) {
		n += (size_t)snprintf(body + n, sizeof(body) - n, "\\u0001");
		strcat(want, "\x01");
	}
	snprintf(body + n, sizeof(body) - n, "\"}");
	http(f->sock, "PUT", "/vm/migrate", body, &rep);
	assert_int_equal(rep.status, 200);
	obj = reply_json(&rep);
	assert_string_equal(json_str(obj, "destination"), want);
	json_object_put(obj);
	assert_int_equal(f->vm.calls_migrate, 1);
}

/* ctl restore sends the options given and no others, with the path made
 * absolute; a refusal is one line from the server's reply. */
static void test_ctl_restore(void **state)
{
	struct fixture *f = *state;
	struct ctl_run run;

	run_ctl(&run, f->sock, "restore", "/c.snap", "--memory", "map",
		"--paused", "--clock=frozen", NULL);
	assert_int_equal(run.status, 0);
	assert_string_equal(run.out, "restored /c.snap (--memory map)\n");
	assert_string_equal(f->vm.restore_path, "/c.snap");
	assert_int_equal(f->vm.restore_req.memory, API_MEMORY_MAP);
	assert_int_equal(f->vm.restore_req.clock, API_CLOCK_FROZEN);
	assert_true(f->vm.restore_req.paused);

	run_ctl(&run, f->sock, "restore", "rel.snap", NULL);
	assert_int_equal(run.status, 0);
	assert_string_equal(run.out, "restored rel.snap (--memory ondemand)\n");
	assert_true(f->vm.restore_path[0] == '/');
	assert_false(f->vm.restore_req.paused);

	f->vm.fail_ret = -EINVAL;
	f->vm.fail_msg = "/c.snap: too big";
	run_ctl(&run, f->sock, "restore", "/c.snap", NULL);
	f->vm.fail_msg = NULL;
	assert_int_equal(run.status, 1);
	assert_string_equal(run.err, "stasis: error: /c.snap: too big\n");
}

static void test_ctl_usage(void **state)
{
	static const char *const bad[][4] = {
		{ NULL },
		{ "/s", NULL },
		{ "/s", "reboot", NULL },
		{ "/s", "snapshot", NULL },
		{ "/s", "snapshot", "/x", "/y" },
		{ "/s", "snapshot", "/x", "--then" },
		{ "/s", "snapshot", "/x", "--then=later" },
		{ "/s", "status", "--then", "exit" },
		{ "/s", "status", "--verbose", NULL },
		{ "/s", "pause", "now", NULL },
		{ "/s", "restore", NULL },
		{ "/s", "restore", "/x", "--memory" },
		{ "/s", "restore", "/x", "--memory=lazy" },
		{ "/s", "restore", "/x", "--then" },
		{ "/s", "snapshot", "/x", "--paused" },
	};
	struct ctl_run run;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		run_ctl(&run, bad[i][0], bad[i][1], bad[i][2], bad[i][3], NULL);
		assert_int_equal(run.status, 2);
		assert_string_equal(run.out, "");
		assert_non_null(strstr(run.err, "stasis: error: "));
		/* One line: the reason, nothing else. */
		assert_non_null(strchr(run.err, '\n'));
		assert_int_equal(strchr(run.err, '\n')[1], '\0');
	}
	run_ctl(&run, "--help", NULL);
	assert_int_equal(run.status, 0);
	assert_non_null(strstr(run.out, "usage: stasis ctl"));
}

static void test_ctl_no_server(void **state)
{
	struct fixture *f = *state;
	char path[160], expect[256];
	struct ctl_run run;

	snprintf(path, sizeof(path), "%s/missing.sock", f->dir);
	run_ctl(&run, path, "status", NULL);
	assert_int_equal(run.status, 6);
	snprintf(expect, sizeof(expect),
		 "stasis: error: cannot connect to %s: No such file or "
		 "directory\n",
		 path);
	assert_string_equal(run.err, expect);
	assert_string_equal(run.out, "");
}

/* A fake server that answers one connection with @reply, then closes. */
struct bad_server {
	char path[160];
	const char *reply;
	size_t len;
	int fd;
	pthread_t thread;
};

static void *bad_server_main(void *arg)
{
	struct bad_server *b = arg;
	char buf[4096];
	int c = accept(b->fd, NULL, NULL);

	if (c < 0)
		return NULL;
	/* Read the request head first, so closing does not reset it. */
	if (read(c, buf, sizeof(buf)) > 0 && b->len &&
	    write(c, b->reply, b->len) < 0)
		perror("bad_server write");
	close(c);
	return NULL;
}

static void run_bad_server(struct fixture *f, const char *reply, size_t len,
			   const char *option, struct ctl_run *run)
{
	struct sockaddr_un addr;
	struct bad_server b = { .reply = reply, .len = len };

	snprintf(b.path, sizeof(b.path), "%s/bad.sock", f->dir);
	unlink(b.path);
	assert_int_equal(http_unix_addr(&addr, b.path), 0);
	b.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(b.fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(b.fd, 1), 0);
	assert_int_equal(pthread_create(&b.thread, NULL, bad_server_main, &b),
			 0);
	run_ctl(run, b.path, "status", option, NULL);
	pthread_join(b.thread, NULL);
	close(b.fd);
}

/* ctl treats the reply as untrusted: bounded, strictly parsed. */
static void test_ctl_bad_replies(void **state)
{
	static const char json_ok[] = "HTTP/1.1 200 OK\r\n"
				      "Content-Length: 2\r\n\r\n{}";
	static const char json_trailing[] = "HTTP/1.1 200 OK\r\n"
					    "Content-Length: 4\r\n\r\n{} x";
	static const char no_head_end[] = "HTTP/1.1 200 OK\r\nX: y\r\n";
	static const char short_body[] = "HTTP/1.1 200 OK\r\n"
					 "Content-Length: 99\r\n\r\n{}";
	static const char chunked[] = "HTTP/1.1 200 OK\r\n"
				      "Transfer-Encoding: chunked\r\n\r\n"
				      "2\r\n{}\r\n0\r\n\r\n";
	static const char ctl_chars[] = "HTTP/1.1 500 Oops\r\n\r\n"
					"{\"error\": \"a\\u001b[31mb\"}";
	struct fixture *f = *state;
	struct ctl_run run;
	char *huge;

	run_bad_server(f, "garbage\r\n\r\n", 11, NULL, &run);
	assert_int_equal(run.status, 1);
	assert_non_null(strstr(run.err, "malformed reply"));

	run_bad_server(f, no_head_end, sizeof(no_head_end) - 1, NULL, &run);
	assert_int_equal(run.status, 1);
	run_bad_server(f, short_body, sizeof(short_body) - 1, NULL, &run);
	assert_int_equal(run.status, 1);
	run_bad_server(f, chunked, sizeof(chunked) - 1, NULL, &run);
	assert_int_equal(run.status, 1);

	/* Valid HTTP, but not a status object. */
	run_bad_server(f, json_ok, sizeof(json_ok) - 1, NULL, &run);
	assert_int_equal(run.status, 1);
	assert_non_null(strstr(run.err, "malformed status"));

	/* --json promises valid JSON on success. */
	run_bad_server(f, json_trailing, sizeof(json_trailing) - 1, "--json",
		       &run);
	assert_int_equal(run.status, 1);
	assert_string_equal(run.out, "");
	run_bad_server(f, json_ok, sizeof(json_ok) - 1, "--json", &run);
	assert_int_equal(run.status, 0);
	assert_string_equal(run.out, "{}\n");

	run_bad_server(f, ctl_chars, sizeof(ctl_chars) - 1, NULL, &run);
	assert_int_equal(run.status, 1);
	assert_string_equal(run.err, "stasis: error: a [31mb\n");

	huge = xmalloc(100000);
	memcpy(huge, "HTTP/1.1 200 OK\r\n", 17);
	memset(huge + 17, 'x', 100000 - 17);
	run_bad_server(f, huge, 100000, NULL, &run);
	assert_int_equal(run.status, 1);
	assert_non_null(strstr(run.err, "larger than"));
	free(huge);

	run_bad_server(f, "", 0, NULL, &run);
	assert_int_equal(run.status, 6);
	assert_non_null(strstr(run.err, "lost connection"));
}

/* On a terminal, a snapshot shows progress from status polls. */
static void test_ctl_progress_on_tty(void **state)
{
	struct fixture *f = *state;
	char buf[16384];
	int master, slave, saved_out, saved_err, flags, devnull;
	size_t got = 0;
	ssize_t n;
	int status;

	master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master < 0 || grantpt(master) || unlockpt(master))
		skip();
	slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	assert_true(slave >= 0);

	f->vm.snap_steps = 16; /* 0.8 s: several polls at 100 ms */
	fflush(stdout);
	fflush(stderr);
	devnull = open("/dev/null", O_WRONLY);
	saved_out = dup(STDOUT_FILENO);
	saved_err = dup(STDERR_FILENO);
	dup2(devnull, STDOUT_FILENO);
	dup2(slave, STDERR_FILENO);
	status = ctl_main(
	    4, (char *[]){ "ctl", f->sock, "snapshot", "/p.snap", NULL });
	dup2(saved_out, STDOUT_FILENO);
	dup2(saved_err, STDERR_FILENO);
	close(saved_out);
	close(saved_err);
	close(devnull);
	close(slave);
	assert_int_equal(status, 0);

	flags = fcntl(master, F_GETFL);
	fcntl(master, F_SETFL, flags | O_NONBLOCK);
	while (got < sizeof(buf) - 1 &&
	       (n = read(master, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	close(master);
	buf[got] = '\0';
	assert_non_null(strstr(buf, "256.0 MiB"));
	assert_non_null(strstr(buf, "MiB/s"));
	assert_non_null(strstr(buf, "%"));
	assert_non_null(strstr(buf, "\r\033[K")); /* the line is cleared */
}

/* The fields of a JSON reply body, with "a.b" for the keys of an object
 * field a, as one space-separated sorted string. */
static void reply_fields(const char *body, char *out, size_t outlen)
{
	struct json_object *obj = json_tokener_parse(body);
	const char *names[64];
	char buf[64][48];
	size_t n = 0;

	assert_non_null(obj);
	json_object_object_foreach(obj, key, val)
	{
		assert_true(n < 64);
		snprintf(buf[n], sizeof(buf[n]), "%s", key);
		n++;
		if (json_object_is_type(val, json_type_object)) {
			json_object_object_foreach(val, k2, v2)
			{
				(void)v2;
				assert_true(n < 64);
				snprintf(buf[n], sizeof(buf[n]), "%s.%s", key,
					 k2);
				n++;
			}
		}
	}
	json_object_put(obj);
	assert_true(n <= 64);
	for (size_t i = 0; i < n; i++)
		names[i] = buf[i];
	qsort(names, n, sizeof(*names), cmp_str);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		snprintf(out + strlen(out), outlen - strlen(out), "%s%s",
			 i ? " " : "", names[i]);
}

/* The declared fields, as reply_fields() prints them. */
static void declared_fields(const char *const *fields, char *out, size_t outlen)
{
	const char *names[64];
	size_t n = 0;

	for (; fields && fields[n]; n++)
		assert_true(n < 64);
	memcpy(names, fields, n * sizeof(*names));
	qsort(names, n, sizeof(*names), cmp_str);
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		snprintf(out + strlen(out), outlen - strlen(out), "%s%s",
			 i ? " " : "", names[i]);
}

/* Asks @ep for @status the way a client would get it; false when there is
 * no way to here (403 needs another uid: test_peer_uid_refused; a 500 of
 * an endpoint without a failing operation needs malloc to fail). */
static bool provoke(struct fixture *f, const struct api_endpoint *ep,
		    unsigned status, struct http_reply *rep)
{
	bool restore = !strcmp(ep->url, "/vm/restore");
	const char *body = !ep->request_keys ? NULL
			   : !strcmp(ep->url, "/vm/migrate")
			       ? "{\"destination\": \"unix:/x.sock\", "
				 "\"postcopy\": true}"
			   : restore
			       ? "{\"path\": \"/x.snap\", \"paused\": true}"
			       : "{\"path\": \"/x.snap\", \"then\": \"pause\"}";
	bool has_op = strcmp(ep->url, "/vm") != 0;
	char *big;

	pthread_mutex_lock(&f->vm.lock);
	f->vm.paused = !strcmp(ep->url, "/vm/resume");
	/* A snapshot in progress and a restore's phases show the status's
	 * nested fields. */
	f->vm.snap_active = !strcmp(ep->url, "/vm");
	f->vm.restored = !strcmp(ep->url, "/vm");
	f->vm.have_last = !strcmp(ep->url, "/vm");
	f->vm.snap_total = 256 * MIB;
	f->vm.recording = true;
	pthread_mutex_unlock(&f->vm.lock);
	switch (status) {
	case 200:
	case 202:
	case 204:
		break;
	case 400:
		body = "[1]";
		break;
	case 405:
		http(f->sock, "PATCH", ep->url, body, rep);
		return true;
	case 409:
		f->vm.fail_ret = -EBUSY;
		break;
	case 413:
		big = xmalloc(API_BODY_MAX + 2);
		memset(big, ' ', API_BODY_MAX + 1);
		big[API_BODY_MAX + 1] = '\0';
		http(f->sock, ep->method, ep->url, big, rep);
		free(big);
		return true;
	case 500:
		if (!has_op)
			return false;
		f->vm.fail_ret = -EIO;
		break;
	case 507:
		f->vm.fail_ret = -ENOSPC;
		break;
	default:
		return false;
	}
	http(f->sock, ep->method, ep->url, body, rep);
	f->vm.fail_ret = 0;
	return true;
}

/* Every endpoint of the routing table answers each status it declares,
 * with the declared fields, and nothing else: the table docs/api.yaml is
 * checked against (tests/tools/check_api_spec.py). */
/* PUT /vm/working-set ends a recording once: 204, then 409 with the
 * reason; `ctl working-set` says so in one line each time. */
static void test_working_set(void **state)
{
	struct fixture *f = *state;
	struct http_reply rep;

	f->vm.recording = true;
	http(f->sock, "PUT", "/vm/working-set", NULL, &rep);
	assert_int_equal(rep.status, 204);
	assert_int_equal(f->vm.calls_working_set, 1);
	http(f->sock, "PUT", "/vm/working-set", NULL, &rep);
	assert_error(&rep, 409, "no working set is being recorded");
	http(f->sock, "PUT", "/vm/working-set", "{\"x\": 1}", &rep);
	assert_int_equal(rep.status, 400);
	assert_int_equal(f->vm.calls_working_set, 2);
}

static void test_endpoints_as_declared(void **state)
{
	struct fixture *f = *state;
	char got[2048], want[2048];
	struct http_reply rep;
	size_t i;

	for (i = 0; api_endpoint_get(i); i++) {
		const struct api_endpoint *ep = api_endpoint_get(i);
		unsigned all[16], n = 0;

		for (const unsigned *st = ep->statuses; *st; st++)
			all[n++] = *st;
		for (const unsigned *st = api_common_statuses; *st; st++)
			all[n++] = *st;
		for (unsigned k = 0; k < n; k++) {
			if (!provoke(f, ep, all[k], &rep)) {
				if (all[k] == 403 || all[k] == 500)
					continue;
				fail_msg("%s %s: no way to get %u", ep->method,
					 ep->url, all[k]);
			}
			if (rep.status != (int)all[k])
				fail_msg("%s %s: %d, expected %u", ep->method,
					 ep->url, rep.status, all[k]);
			if (all[k] >= 300) {
				assert_error(&rep, (int)all[k], "");
				continue;
			}
			if (!ep->reply_fields) {
				assert_string_equal(rep.body, "");
				continue;
			}
			reply_fields(rep.body, got, sizeof(got));
			declared_fields(ep->reply_fields, want, sizeof(want));
			if (strcmp(got, want))
				fail_msg("%s %s: fields '%s', declared '%s'",
					 ep->method, ep->url, got, want);
		}
	}
	assert_int_equal(i, 8);
	http(f->sock, "GET", "/nowhere", NULL, &rep);
	assert_error(&rep, API_STATUS_NO_ENDPOINT, "no such endpoint");
}

/* `test_api --endpoints-json`: the declared table, for the spec check. */
static void json_strings(struct json_object *o, const char *key,
			 const char *const *v)
{
	struct json_object *a = v ? json_object_new_array() : NULL;

	for (; v && *v; v++)
		json_object_array_add(a, json_object_new_string(*v));
	json_object_object_add(o, key, a);
}

static void json_statuses(struct json_object *o, const char *key,
			  const unsigned *st)
{
	struct json_object *a = json_object_new_array();

	for (; *st; st++)
		json_object_array_add(a, json_object_new_int((int)*st));
	json_object_object_add(o, key, a);
}

static int print_endpoints(void)
{
	struct json_object *root = json_object_new_object();
	struct json_object *eps = json_object_new_array();

	json_statuses(root, "common_statuses", api_common_statuses);
	json_object_object_add(root, "no_endpoint_status",
			       json_object_new_int(API_STATUS_NO_ENDPOINT));
	for (size_t i = 0; api_endpoint_get(i); i++) {
		const struct api_endpoint *ep = api_endpoint_get(i);
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "url",
				       json_object_new_string(ep->url));
		json_object_object_add(o, "method",
				       json_object_new_string(ep->method));
		json_statuses(o, "statuses", ep->statuses);
		json_strings(o, "request_keys", ep->request_keys);
		json_strings(o, "request_required", ep->request_required);
		json_strings(o, "reply_fields", ep->reply_fields);
		json_object_array_add(eps, o);
	}
	json_object_object_add(root, "endpoints", eps);
	printf("%s\n", json_object_to_json_string_ext(
			   root, JSON_C_TO_STRING_PRETTY |
				     JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
	return 0;
}

/* ------------------------------------------------------ load and abuse -- */

#define LOAD_CLIENTS 64
/* Requests per client; STASIS_API_LOAD_REQUESTS runs a longer load. */
#define LOAD_REQUESTS 24

struct load_client {
	const char *sock;
	unsigned seed;
	int bad; /* replies that were not well formed */
	char why[160];
	int ok[4], refused[4];
};

static const char *const load_urls[] = { "/vm", "/vm/pause", "/vm/resume",
					 "/vm/snapshot" };

static void *load_client_main(void *arg)
{
	struct load_client *c = arg;
	struct http_reply *rep = xmalloc(sizeof(*rep));
	const char *env = getenv("STASIS_API_LOAD_REQUESTS");
	int n = env && atoi(env) > 0 ? atoi(env) : LOAD_REQUESTS;

	for (int i = 0; i < n; i++) {
		int k = (int)(rand_r(&c->seed) % 4);

		if (k == 0)
			http(c->sock, "GET", load_urls[k], NULL, rep);
		else if (k == 3)
			http(c->sock, "PUT", load_urls[k],
			     "{\"path\": \"/load.snap\", \"then\": \"resume\"}",
			     rep);
		else
			http(c->sock, "PUT", load_urls[k], NULL, rep);
		if (!http_reply_well_formed(rep, c->why, sizeof(c->why)))
			c->bad++;
		else if (rep->status < 300)
			c->ok[k]++;
		else
			c->refused[k]++;
	}
	free(rep);
	return NULL;
}

/* 64 clients at once, each issuing status, pause, resume and snapshot in
 * a random order: every reply arrives and is well formed, the calls the
 * VM saw are the requests made, and its state is what they left. */
static void test_concurrent_clients(void **state)
{
	struct fixture *f = *state;
	struct load_client *c = calloc(LOAD_CLIENTS, sizeof(*c));
	pthread_t t[LOAD_CLIENTS];
	int ok[4] = { 0 }, refused[4] = { 0 }, pauses, resumes;
	struct http_reply rep;

	assert_non_null(c);
	f->vm.snap_steps = 1; /* 50 ms: snapshots overlap other requests */
	for (int i = 0; i < LOAD_CLIENTS; i++) {
		c[i].sock = f->sock;
		c[i].seed = 1000u + (unsigned)i;
		assert_int_equal(
		    pthread_create(&t[i], NULL, load_client_main, &c[i]), 0);
	}
	for (int i = 0; i < LOAD_CLIENTS; i++) {
		pthread_join(t[i], NULL);
		if (c[i].bad)
			fail_msg("client %d: %d bad replies, last: %s", i,
				 c[i].bad, c[i].why);
		for (int k = 0; k < 4; k++) {
			ok[k] += c[i].ok[k];
			refused[k] += c[i].refused[k];
		}
	}
	/* Every request reached the VM or was refused by it, once. */
	assert_int_equal(f->vm.calls_pause, ok[1] + refused[1]);
	assert_int_equal(f->vm.calls_resume, ok[2] + refused[2]);
	/* A snapshot refused while another runs never reaches the VM. */
	assert_true(f->vm.calls_snapshot >= ok[3]);
	assert_int_equal(refused[0], 0);
	assert_true(ok[1] > 0 && ok[2] > 0 && ok[3] > 0);
	/* Consistent: successful pauses and resumes alternate, so the VM is
	 * paused exactly when one more pause than resume succeeded. */
	pauses = ok[1];
	resumes = ok[2];
	assert_true(pauses == resumes || pauses == resumes + 1);
	assert_int_equal(f->vm.paused, pauses == resumes + 1);
	assert_false(f->vm.snap_active);
	http(f->sock, "GET", "/vm", NULL, &rep);
	assert_int_equal(rep.status, 200);
	free(c);
}

/* Sends @raw on a new connection and leaves it open; returns the fd. */
static int hold_connection(const char *sock, const char *raw)
{
	int fd = http_unix_connect(sock);

	assert_true(fd >= 0);
	if (*raw)
		assert_int_equal(send(fd, raw, strlen(raw), MSG_NOSIGNAL),
				 (ssize_t)strlen(raw));
	return fd;
}

/* Slow-loris clients (requests half sent, and held) as many as the old
 * connection limit and more: others are still answered at once. */
static void test_slow_clients(void **state)
{
	static const char *const partial[] = {
		"",
		"GET /vm HTTP/1.1\r\n",
		"GET /vm HTTP/1.1\r\nHost: x\r\nX-Slow: a",
		"PUT /vm/snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: "
		"100\r\n"
		"\r\n{\"path\": ",
	};
	struct fixture *f = *state;
	int fds[48];
	struct http_reply rep;
	struct timespec a, b;

	for (int i = 0; i < 48; i++)
		fds[i] = hold_connection(f->sock, partial[i % 4]);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < 8; i++) {
		http(f->sock, "GET", "/vm", NULL, &rep);
		assert_int_equal(rep.status, 200);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	/* Answered, not after some client's timeout (seconds). */
	assert_true(b.tv_sec - a.tv_sec < 5);
	assert_int_equal(f->vm.calls_snapshot, 0);
	for (int i = 0; i < 48; i++)
		close(fds[i]);
}

/* Malformed HTTP: each gets an error status or is closed; the server
 * answers the next client as before. */
static void test_malformed_http(void **state)
{
	static const char *const bad[] = {
		"\r\n\r\n",
		"GARBAGE\r\n\r\n",
		"GET\r\n\r\n",
		"GET /vm\r\n\r\n",
		"GET /vm HTTP/9.9\r\nHost: x\r\n\r\n",
		"GET /vm HTTP/1.1\r\nNo colon here\r\n\r\n",
		"\xff\xfe\x00\x01 / HTTP/1.1\r\n\r\n",
		"PUT /vm/pause HTTP/1.1\r\nHost: x\r\nContent-Length: "
		"-5\r\n\r\n",
		"PUT /vm/pause HTTP/1.1\r\nHost: x\r\nContent-Length: "
		"99999999999999999999999\r\n\r\n",
		"PUT /vm/pause HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
		"chunked\r\n\r\nzz\r\n",
		"GET /vm/../vm HTTP/1.1\r\nHost: x\r\n\r\n",
	};
	struct fixture *f = *state;
	struct http_reply rep;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		http_raw(f->sock, bad[i], strlen(bad[i]), &rep);
		if (rep.status != -1 && (rep.status < 400 || rep.status > 505))
			fail_msg("request %zu: status %d", i, rep.status);
		http(f->sock, "GET", "/vm", NULL, &rep);
		assert_int_equal(rep.status, 200);
	}
	assert_int_equal(f->vm.calls_pause, 0);
}

/* A client that disconnects while its snapshot is running: the snapshot
 * completes, other clients are answered meanwhile, and the next
 * snapshot is accepted. */
static void test_disconnect_mid_snapshot(void **state)
{
	struct fixture *f = *state;
	const char *req = "PUT /vm/snapshot HTTP/1.1\r\nHost: x\r\n"
			  "Content-Length: 19\r\n\r\n{\"path\": \"/a.snap\"}";
	struct http_reply rep;
	int fd;

	f->vm.snap_gate = true;
	fd = hold_connection(f->sock, req);
	wait_snapshot_started(&f->vm);
	close(fd);
	for (int i = 0; i < 4; i++) {
		http(f->sock, "GET", "/vm", NULL, &rep);
		assert_int_equal(rep.status, 200);
		assert_non_null(strstr(rep.body, "\"snapshot\": {"));
	}
	/* Another snapshot while it runs: refused, not queued. */
	http(f->sock, "PUT", "/vm/snapshot", "{\"path\": \"/b.snap\"}", &rep);
	assert_int_equal(rep.status, 409);
	release_snapshot(&f->vm);
	/* Once done, the next one goes through. */
	for (int i = 0; i < 200; i++) {
		struct timespec ms = { 0, 10 * 1000 * 1000 };

		http(f->sock, "GET", "/vm", NULL, &rep);
		if (strstr(rep.body, "\"snapshot\": null"))
			break;
		nanosleep(&ms, NULL);
	}
	assert_non_null(strstr(rep.body, "\"snapshot\": null"));
	f->vm.snap_gate = false;
	http(f->sock, "PUT", "/vm/snapshot", "{\"path\": \"/c.snap\"}", &rep);
	assert_int_equal(rep.status, 200);
	assert_string_equal(f->vm.snap_path, "/c.snap");
}

/* PUT /vm/restore's body: every key, and each way to get one wrong. */
static void test_parse_restore_request(void **state)
{
	static const char *const bad[] = {
		"",
		"{}",
		"{\"path\": \"\"}",
		"{\"path\": 3}",
		"{\"path\": \"/a\", \"memory\": \"lazy\"}",
		"{\"path\": \"/a\", \"memory\": 1}",
		"{\"path\": \"/a\", \"clock\": \"stopped\"}",
		"{\"path\": \"/a\", \"paused\": \"yes\"}",
		"{\"path\": \"/a\", \"then\": \"pause\"}",
		"{\"path\": \"/a/very/long/path\"}",
		"[\"/a\"]",
	};
	struct api_restore r;
	char path[16], err[256];
	const char *body = "{\"path\": \"/a/b\"}";

	assert_int_equal(api_parse_restore_request(body, strlen(body), path,
						   sizeof(path), &r, err,
						   sizeof(err)),
			 0);
	assert_string_equal(path, "/a/b");
	assert_ptr_equal(r.path, path);
	assert_int_equal(r.memory, API_MEMORY_DEFAULT);
	assert_int_equal(r.clock, API_CLOCK_DEFAULT);
	assert_false(r.paused);
	body = "{\"path\": \"/a\", \"memory\": \"map\", \"clock\": "
	       "\"frozen\", \"paused\": true}";
	assert_int_equal(api_parse_restore_request(body, strlen(body), path,
						   sizeof(path), &r, err,
						   sizeof(err)),
			 0);
	assert_int_equal(r.memory, API_MEMORY_MAP);
	assert_int_equal(r.clock, API_CLOCK_FROZEN);
	assert_true(r.paused);
	assert_string_equal(api_memory_name(API_MEMORY_COPY), "copy");
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		err[0] = '\0';
		assert_int_equal(api_parse_restore_request(
				     bad[i], strlen(bad[i]), path, sizeof(path),
				     &r, err, sizeof(err)),
				 -EINVAL);
		assert_true(err[0] != '\0');
		assert_null(strchr(err, '\n'));
	}
}

/* The restore endpoint hands the parsed request to the callback and says
 * which memory mode was used; a refusal keeps the callback's reason. */
static void test_restore(void **state)
{
	struct fixture *f = *state;
	struct http_reply rep;

	http(f->sock, "PUT", "/vm/restore",
	     "{\"path\": \"/c.snap\", \"memory\": \"copy\"}", &rep);
	assert_int_equal(rep.status, 200);
	assert_string_equal(f->vm.restore_path, "/c.snap");
	assert_int_equal(f->vm.restore_req.memory, API_MEMORY_COPY);
	assert_non_null(strstr(rep.body, "\"memory\": \"copy\""));
	assert_non_null(strstr(rep.body, "\"state\": \"running\""));

	f->vm.fail_ret = -EINVAL;
	f->vm.fail_msg = "/big.snap: too big for this target";
	http(f->sock, "PUT", "/vm/restore", "{\"path\": \"/big.snap\"}", &rep);
	assert_error(&rep, 400, "too big for this target");
	f->vm.fail_msg = NULL;

	http(f->sock, "PUT", "/vm/restore", "{\"path\": \"/c.snap\", \"x\": 1}",
	     &rep);
	assert_error(&rep, 400, "unknown key");
	assert_int_equal(f->vm.calls_restore, 2);

	/* The phases once restored: microseconds since exec, null where
	 * not reached. */
	timings_init(&f->vm.timings, false);
	timings_mark(&f->vm.timings, TIMING_FILE);
	http(f->sock, "GET", "/vm", NULL, &rep);
	assert_int_equal(rep.status, 200);
	assert_non_null(strstr(rep.body, "\"timings\": {"));
	assert_non_null(strstr(rep.body, "\"first_exit_us\": null"));
	assert_null(strstr(rep.body, "\"file_us\": null"));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		T(test_endpoints_as_declared),
		T(test_status),
		T(test_pause_resume),
		T(test_shutdown),
		T(test_working_set),
		T(test_action_body_checked),
		T(test_snapshot),
		T(test_snapshot_bad_requests),
		T(test_snapshot_path_too_long),
		T(test_snapshot_failures),
		T(test_not_found),
		T(test_method_not_allowed),
		T(test_body_too_large),
		T(test_socket_mode),
		T(test_socket_in_use),
		T(test_stale_socket_replaced),
		T(test_bad_socket_paths),
		T(test_status_during_snapshot),
		T(test_stop_drains),
		T(test_peer_uid_refused),
		cmocka_unit_test(test_parse_snapshot_request),
		cmocka_unit_test(test_parse_restore_request),
		T(test_restore),
		T(test_ctl_status),
		T(test_ctl_actions),
		T(test_ctl_snapshot),
		cmocka_unit_test(test_parse_migrate_request),
		T(test_ctl_migrate),
		T(test_migrate_reply_escaped),
		T(test_ctl_usage),
		T(test_ctl_restore),
		T(test_ctl_no_server),
		T(test_ctl_bad_replies),
		T(test_ctl_progress_on_tty),
		T(test_concurrent_clients),
		T(test_slow_clients),
		T(test_malformed_http),
		T(test_disconnect_mid_snapshot),
	};

	if (argc == 2 && !strcmp(argv[1], "--endpoints-json"))
		return print_endpoints();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
