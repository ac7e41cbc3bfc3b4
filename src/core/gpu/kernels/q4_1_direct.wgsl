// Q4_1 without workgroup memory, for software adapters (lib/legacy_direct.wgsl); rounding rule in lib/q4_1_block.wgsl.
// #include "legacy_direct.wgsl"
// #include "q4_1_block.wgsl"
