/* Filling device buffers. A kernel rather than clEnqueueFillBuffer: oclgrind
 * 21.10 does not count a fill as initialising memory, so every later read
 * would be reported as uninitialised, hiding real reports. */

__kernel void m2pt_fill(__global float *dst, const float value, const ulong n)
{
  const size_t i = get_global_id(0);
  if (i < n)
    dst[i] = value;
}
