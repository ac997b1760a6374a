/* The public headers compile under -std=c11 -pedantic -Werror on their own. */
#include <m2pt/m2pt.h>
#include <m2pt/opencl.h>

int main(void)
{
  return m2pt_version_number() == M2PT_VERSION_NUMBER ? 0 : 1;
}
