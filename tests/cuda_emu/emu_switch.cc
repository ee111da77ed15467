// The emulator's fiber switch (emu_cuda.h): saves the callee-saved registers
// and the SSE / x87 control words of the running fiber on its own stack,
// stores its stack pointer in *save_sp and resumes the fiber whose stack
// pointer is load_sp. x86-64 System V only.

#if !defined(__x86_64__)
#error "the CUDA emulator's context switch is written for x86-64"
#endif

asm(R"(
  .text
  .globl emu_switch_context
  .type emu_switch_context, @function
emu_switch_context:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch_context, .-emu_switch_context
  .section .note.GNU-stack,"",@progbits
)");
