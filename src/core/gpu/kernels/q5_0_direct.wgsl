// Q5_0 without workgroup memory, for software adapters (lib/legacy_direct.wgsl); rounding rule in lib/q5_0_block.wgsl.
// #include "legacy_direct.wgsl"
// #include "q5_0_block.wgsl"
