/* Forced into every source of lib/common and lib/io (-include, see
 * lib/meson.build): these layers use no OpenCL, and OpenCL's headers are
 * system headers that any file could include without opencl_dep. Poisoned
 * names make such an include, or any OpenCL type or call, fail the build. */
#pragma GCC poison cl_int cl_uint cl_mem cl_context cl_device_id cl_platform_id
#pragma GCC poison cl_command_queue cl_program cl_kernel cl_event
