// Q4_0 without workgroup memory, for software adapters (lib/legacy_direct.wgsl); rounding rule in lib/q4_0_block.wgsl.
// #include "legacy_direct.wgsl"
// #include "q4_0_block.wgsl"
