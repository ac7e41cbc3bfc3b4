// The WebGPU API types (GPUDevice, GPUBufferUsage, ...) for src/core/gpu: the `webgpu` package provides the
// runtime, @webgpu/types (its dependency) the declarations.
/// <reference types="@webgpu/types" />
