/* cpustate-check.S - loads distinctive values into the whole user register
 * file and spins with it live, re-checking it every so often, so that a
 * VMM save/restore (or interrupt path) that loses any register shows up.
 * Driven by struct cpustate_ctl in cpustate.c; offsets are pinned there. */

#define CTL_GPR 0
#define CTL_LEVEL 120
#define CTL_KMOVQ 128
#define CTL_XSAVE_MASK 136
#define CTL_AREA_QWORDS 144
#define CTL_SPIN 152
#define CTL_SPIN_LEFT 160
#define CTL_REPORT_TSC 168
#define CTL_DEADLINE 176
#define CTL_REPORTS 184
#define CTL_REPORTS_MAX 192
#define CTL_INJECT 200
#define CTL_FAIL_KIND 208
#define CTL_FAIL_INDEX 216
#define CTL_FAIL_GOT 224
#define CTL_MXCSR 232
#define CTL_K 240
#define CTL_X87 304

/* Table order of the GPRs in cpustate_ctl.gpr. */
	.Lidx_rax = 0
	.Lidx_rbx = 1
	.Lidx_rcx = 2
	.Lidx_rdx = 3
	.Lidx_rsi = 4
	.Lidx_rdi = 5
	.Lidx_rbp = 6
	.Lidx_r8 = 7
	.Lidx_r9 = 8
	.Lidx_r10 = 9
	.Lidx_r11 = 10
	.Lidx_r12 = 11
	.Lidx_r13 = 12
	.Lidx_r14 = 13
	.Lidx_r15 = 14

#define LEVEL_AVX 1
#define LEVEL_AVX512 2
#define FAIL_GPR 1
#define FAIL_AREA 2
/* Self-test states: armed by cpustate.c, fired after the first report. */
#define INJECT_GPR_ARMED 1
#define INJECT_GPR_NOW 2
#define INJECT_VEC_ARMED 4
#define INJECT_VEC_NOW 5
#define INJECT_DONE 7

#define CTL(off) cpustate_ctl + (off)(%rip)
#define GPR(i) CTL(CTL_GPR + 8 * (i))

	.section .rodata
	.balign 16
inject_bit:
	.quad 0x10, 0
report_fmt:
	.asciz "cpustate: check %lu ok\n"

	.text
/* Saves the x87/SSE/AVX/AVX-512 state to (%rdi): XSAVE with the mask in
 * the control block, or FXSAVE without XSAVE. Clobbers %rax and %rdx. */
dump_state:
	movq CTL(CTL_XSAVE_MASK), %rax
	testq %rax, %rax
	jz 1f
	movq %rax, %rdx
	shrq $32, %rdx
	xsave64 (%rdi)
	ret
1:	fxsave64 (%rdi)
	ret

/*
 * int cpustate_run(void): returns 0 after reports_max reports, 1 when a
 * register changed (fail_* tell which). The vector and x87 registers are
 * loaded once and never touched again: the checks store them with XSAVE,
 * and the report calls guest_printf, which the runtime builds without
 * vector code. The 15 GPRs are verified before each check clobbers a few
 * of them, and reloaded from the table afterwards.
 */
	.globl cpustate_run
cpustate_run:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	subq $8, %rsp

	fninit
	.irp i, 7, 6, 5, 4, 3, 2, 1, 0
	fldt CTL(CTL_X87 + 16 * \i)
	.endr
	ldmxcsr CTL(CTL_MXCSR)
	cmpq $LEVEL_AVX512, CTL(CTL_LEVEL)
	je .Lload_avx512
	cmpq $LEVEL_AVX, CTL(CTL_LEVEL)
	je .Lload_avx
	.irp i, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
	movdqu cpustate_vec + 64 * \i(%rip), %xmm\i
	.endr
	jmp .Lloaded
.Lload_avx:
	.irp i, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
	vmovdqu cpustate_vec + 64 * \i(%rip), %ymm\i
	.endr
	jmp .Lloaded
.Lload_avx512:
	.irp i, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
	vmovdqu64 cpustate_vec + 64 * \i(%rip), %zmm\i
	.endr
	/* 64-bit mask registers need AVX512BW; AVX512F has 16-bit ones. */
	cmpq $0, CTL(CTL_KMOVQ)
	je 2f
	.irp i, 0, 1, 2, 3, 4, 5, 6, 7
	kmovq CTL(CTL_K + 8 * \i), %k\i
	.endr
	jmp .Lloaded
2:	.irp i, 0, 1, 2, 3, 4, 5, 6, 7
	kmovw CTL(CTL_K + 8 * \i), %k\i
	.endr
.Lloaded:
	leaq cpustate_ref(%rip), %rdi
	call dump_state
	rdtsc
	shlq $32, %rdx
	orq %rdx, %rax
	addq CTL(CTL_REPORT_TSC), %rax
	movq %rax, CTL(CTL_DEADLINE)

.Lreload:
	movq CTL(CTL_SPIN), %rax
	movq %rax, CTL(CTL_SPIN_LEFT)
	movq GPR(0), %rax
	movq GPR(1), %rbx
	movq GPR(2), %rcx
	movq GPR(3), %rdx
	movq GPR(4), %rsi
	movq GPR(5), %rdi
	movq GPR(6), %rbp
	movq GPR(7), %r8
	movq GPR(8), %r9
	movq GPR(9), %r10
	movq GPR(10), %r11
	movq GPR(11), %r12
	movq GPR(12), %r13
	movq GPR(13), %r14
	movq GPR(14), %r15
	/* Self-test: one bit of r12 or xmm5 flipped after the first report. */
	cmpq $INJECT_GPR_NOW, CTL(CTL_INJECT)
	jne 4f
	movq $INJECT_DONE, CTL(CTL_INJECT)
	xorq $1, %r12
4:	cmpq $INJECT_VEC_NOW, CTL(CTL_INJECT)
	jne .Lspin
	movq $INJECT_DONE, CTL(CTL_INJECT)
	pxor inject_bit(%rip), %xmm5

/* All 15 GPRs are busy, so the loop counter lives in memory. */
.Lspin:
	decq CTL(CTL_SPIN_LEFT)
	jnz .Lspin

	.irp r, rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15
	cmpq GPR(.Lidx_\r), %\r
	jne .Lbad_\r
	.endr

	leaq cpustate_cur(%rip), %rdi
	call dump_state
	leaq cpustate_ref(%rip), %rsi
	leaq cpustate_cur(%rip), %rdi
	movq CTL(CTL_AREA_QWORDS), %rcx
	cld
	repe cmpsq
	jne .Lbad_area

	rdtsc
	shlq $32, %rdx
	orq %rdx, %rax
	cmpq CTL(CTL_DEADLINE), %rax
	jb .Lreload
	addq CTL(CTL_REPORT_TSC), %rax
	movq %rax, CTL(CTL_DEADLINE)
	incq CTL(CTL_REPORTS)
	leaq report_fmt(%rip), %rdi
	movq CTL(CTL_REPORTS), %rsi
	xorl %eax, %eax
	call guest_printf
	cmpq $INJECT_GPR_ARMED, CTL(CTL_INJECT)
	je 5f
	cmpq $INJECT_VEC_ARMED, CTL(CTL_INJECT)
	jne 3f
5:	incq CTL(CTL_INJECT)
3:	movq CTL(CTL_REPORTS_MAX), %rax
	testq %rax, %rax
	jz .Lreload
	cmpq CTL(CTL_REPORTS), %rax
	ja .Lreload
	xorl %eax, %eax
	jmp .Lout

.Lbad_area:
	leaq -8(%rsi), %rax
	leaq cpustate_ref(%rip), %rdx
	subq %rdx, %rax
	movq %rax, CTL(CTL_FAIL_INDEX)
	movq $FAIL_AREA, CTL(CTL_FAIL_KIND)
	movl $1, %eax
	jmp .Lout

	.irp r, rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15
.Lbad_\r:
	movq %\r, CTL(CTL_FAIL_GOT)
	movq $.Lidx_\r, CTL(CTL_FAIL_INDEX)
	jmp .Lbad_gpr
	.endr
.Lbad_gpr:
	movq $FAIL_GPR, CTL(CTL_FAIL_KIND)
	movl $1, %eax

.Lout:
	addq $8, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	ret

	.section .note.GNU-stack, "", @progbits
