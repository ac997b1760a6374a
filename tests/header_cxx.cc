// The public headers compile as C++ and link with C linkage.
#include <m2pt/m2pt.h>
#include <m2pt/opencl.h>

int main()
{
  const char *name = m2pt_status_string(M2PT_ERR_SHAPE);
  return (m2pt_version_number() == M2PT_VERSION_NUMBER && name[0] == 'M') ? 0 : 1;
}
