# Deliberately broken copies of the kernels (emu_mutant in CMakeLists.txt):
# each must fail the kernel tests named by its filter.

# A split-vocab chunk that ends one vector early: the last vector of every
# chunk but the last is never read.
emu_kernel_objects(entrowatch_emu_mutant_token_chunk_gap_objects mutant_token_chunk_gap ${emu_cuda_dir}/token_entropy.cu
  MUTATE_FROM "const int64_t v_end = vectors * (chunk + 1) / splits@SEMI@"
  MUTATE_TO "const int64_t v_end = vectors * (chunk + 1) / splits - (chunk + 1 < splits)@SEMI@")
emu_mutant(token_chunk_gap "Orders/TokenKernelTest.ModelVocabularies/forward"
  entrowatch_emu_mutant_token_chunk_gap_objects entrowatch_emu_attention)

# The tensor-core kernel without the barrier after the K tile load: warps
# compute on a tile other warps have not finished writing.
emu_kernel_objects(entrowatch_emu_mutant_attention_no_load_barrier_objects mutant_attention_no_load_barrier
  ${emu_cuda_dir}/attention_entropy.cu
  MUTATE_FROM "__syncthreads()@SEMI@  // the K tile is complete"
  MUTATE_TO "")
emu_mutant(attention_no_load_barrier "Orders/AttentionKernelTest.HeadDimsAndShapes/forward"
  entrowatch_emu_token entrowatch_emu_mutant_attention_no_load_barrier_objects)

# Without the barrier before the next K tile load: a fast warp overwrites
# the tile while slower warps still read it.
emu_kernel_objects(entrowatch_emu_mutant_attention_no_reuse_barrier_objects mutant_attention_no_reuse_barrier
  ${emu_cuda_dir}/attention_entropy.cu
  MUTATE_FROM "__syncthreads()@SEMI@  // every warp is done with the previous K tile"
  MUTATE_TO "")
emu_mutant(attention_no_reuse_barrier "Orders/AttentionKernelTest.HeadDimsAndShapes/forward"
  entrowatch_emu_token entrowatch_emu_mutant_attention_no_reuse_barrier_objects)

# The causal bound shifted by one: each query sees one key too many.
emu_kernel_objects(entrowatch_emu_mutant_attention_causal_off_by_one_objects mutant_attention_causal_off_by_one
  ${emu_cuda_dir}/attention_entropy.cu
  MUTATE_FROM "const int64_t causal_offset = causal ? nk - nq + 1 : nk@SEMI@"
  MUTATE_TO "const int64_t causal_offset = causal ? nk - nq + 2 : nk@SEMI@")
emu_mutant(attention_causal_off_by_one "Orders/AttentionKernelTest.HeadDimsAndShapes/forward"
  entrowatch_emu_token entrowatch_emu_mutant_attention_causal_off_by_one_objects)
