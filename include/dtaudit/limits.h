/* dtaudit: every size cap, in one place (like sqlite's sqliteLimit.h).
 *
 * Readers treat their input as hostile: each cap below bounds what one input may make
 * the library allocate or do, and is checked before the allocation; going past it is
 * DTA_E_LIMIT (exit status 2 in the CLI) unless its comment says otherwise. The writers'
 * caps bound what convert produces.
 *
 * Conventions: DTA_MAX_<WHAT>, one per line, the unit in the comment above it, and a
 * trailing "man: LABEL" naming the item of man/dtaudit.1's LIMITS section that documents
 * it; tests/cli/limits_man.sh fails when the man page does not give the value there, or
 * when a LIMITS item has no cap here. Add a cap here, not in the file that checks it.
 * The values document behaviour and may change in any release (they are not ABI). */
#ifndef DTAUDIT_LIMITS_H
#define DTAUDIT_LIMITS_H

/* ---- the neutral model (model.c, every reader) ---- */

/* Tensors, storages, metadata entries and notes per input; also safetensors header
 * entries and an index's weight_map entries. */
#define DTA_MAX_TENSORS (4u * 1024u * 1024u) /* man: tensors per input */
/* Files per input (shards of an index, weights of a directory). */
#define DTA_MAX_FILES 100000u /* man: files per input */
/* Bytes per tensor name. */
#define DTA_MAX_NAME_LEN 4096u /* man: tensor name */
/* Dimensions per tensor; safetensors and torch files beyond it are refused. */
#define DTA_MAX_RANK 64 /* man: rank */

/* ---- safetensors (format_safetensors.c, write_safetensors.c) ---- */

/* Header bytes, as the reference implementation's MAX_HEADER_SIZE; the writer refuses to
 * produce a larger one too. */
#define DTA_MAX_SAFETENSORS_HEADER 100000000ull /* man: safetensors header */
/* Nesting of unknown JSON values skipped in a header. */
#define DTA_MAX_SAFETENSORS_DEPTH 64 /* man: safetensors header */

/* ---- JSON side files and directories (format.c, format_index.c) ---- */

/* Bytes of config.json, adapter_config.json or a sharded index. */
#define DTA_MAX_JSON_BYTES (256u * 1024u * 1024u) /* man: sharded index */
/* Bytes of a shard name in an index's weight_map (relative, no "..", no empty part;
 * DTA_E_FORMAT otherwise). */
#define DTA_MAX_SHARD_NAME 1024u /* man: sharded index */
/* An index's path is shorter than this many bytes (refused, not truncated). */
#define DTA_MAX_INDEX_PATH 4096u /* man: sharded index */
/* target_modules entries of a PEFT adapter_config.json kept (more are ignored). */
#define DTA_MAX_ADAPTER_TARGETS 65536u /* man: adapter_config.json */

/* ---- zip (zipread.c, format_torchzip.c, format_torchlegacy.c) ---- */

/* Entries per zip archive. */
#define DTA_MAX_ZIP_ENTRIES 1000000u /* man: zip archive */
/* Bytes of one pickle: a zip record (data.pkl, constants.pkl) or a legacy file's leading
 * pickles. */
#define DTA_MAX_PICKLE_BYTES (1024ull * 1024 * 1024) /* man: zip archive */
/* A compressed (deflated) record may inflate to at most DTA_MAX_INFLATE_FREE bytes plus
 * DTA_MAX_INFLATE_RATIO bytes per compressed byte (zip bombs: expansion is capped by the
 * input actually read, and records are streamed, never inflated whole except pickles). */
#define DTA_MAX_INFLATE_FREE (8u * 1024u * 1024u) /* man: zip archive */
#define DTA_MAX_INFLATE_RATIO 32u /* man: zip archive */
/* Bytes of a torch storage key (DTA_E_FORMAT past it). */
#define DTA_MAX_STORAGE_KEY 256u /* man: zip archive */

/* ---- the pickle VM (pickle.c) ---- */

#define DTA_MAX_PICKLE_OPS (256u * 1024u * 1024u)      /* opcodes per stream; man: pickle */
#define DTA_MAX_PICKLE_NODES (32u * 1024u * 1024u)     /* objects per stream; man: pickle */
#define DTA_MAX_PICKLE_STACK (1024u * 1024u)           /* stack depth; man: pickle */
#define DTA_MAX_PICKLE_MARKS (64u * 1024u)             /* nested MARKs; man: pickle */
#define DTA_MAX_PICKLE_MEMO (16u * 1024u * 1024u)      /* memo index (not count); man: pickle */
#define DTA_MAX_PICKLE_CONTAINER (64u * 1024u * 1024u) /* items per container; man: pickle */
#define DTA_MAX_PICKLE_STRING (256u * 1024u * 1024u)   /* bytes per str/bytes/long; man: pickle */
/* Distinct unsafe globals kept per stream (more are not an error, not listed). */
#define DTA_MAX_PICKLE_UNSAFE 4096u /* man: pickle */

/* ---- the torch object graph (format_torchzip.c) ---- */

#define DTA_MAX_TORCH_DEPTH 512u                    /* nested containers; man: torch objects */
#define DTA_MAX_TORCH_VISITS (64u * 1024u * 1024u)  /* node visits per graph; man: torch objects */
/* Node visits allowed per opcode of the pickle, plus a free allowance: shared
 * sub-objects nested to multiply paths ("billion laughs") stop here, with DTA_E_LIMIT. */
#define DTA_MAX_TORCH_WORK_PER_OP 8u     /* man: torch objects */
#define DTA_MAX_TORCH_WORK_FREE 65536u   /* man: torch objects */

/* ---- policy files (policy.c) ---- */

#define DTA_MAX_POLICY_BYTES (1u << 20) /* bytes of a policy file; man: policy file */
#define DTA_MAX_POLICY_RULES 4096u      /* allow entries; man: policy file */
#define DTA_MAX_POLICY_GLOB 4096u       /* bytes per allow glob; man: policy file */

/* ---- quantization configs (quant.c) ---- */

/* A "re:" ignore pattern from a quantization config is compiled only when it is at most
 * this long, has no back-reference and no repetition count over DTA_MAX_QUANT_REPEAT: the
 * constructs that make regcomp/regexec exponential; any other is refused (exit 2). */
#define DTA_MAX_QUANT_REGEX 256u  /* man: quantization config */
#define DTA_MAX_QUANT_REPEAT 16u  /* man: quantization config */

/* ---- writers and convert (write_torchzip.c, convert.c) ---- */

#define DTA_MAX_WRITE_ZIP_ENTRIES 1000000u             /* records per written archive; man: torch output */
#define DTA_MAX_WRITE_PICKLE (2048ull * 1024 * 1024)    /* bytes of the emitted data.pkl; man: torch output */
#define DTA_MAX_WRITE_DEPTH 2000u                      /* object nesting while emitting; man: torch output */
/* A non-contiguous view is gathered in memory up to this many bytes of storage; a larger
 * one is refused (DTA_E_UNSUPPORTED). */
#define DTA_MAX_GATHER_BYTES (64u << 20) /* man: non-contiguous views */
/* convert --jobs: more threads than this are clamped (each holds its own buffers). */
#define DTA_MAX_JOBS 1024u /* man: jobs */

#endif
