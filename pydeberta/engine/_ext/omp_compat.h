/* OpenMP when the compiler has it, serial stand-ins when it does not.
 *
 * setup.py compiles with -fopenmp when a test program builds with it; otherwise _OPENMP is not
 * defined, Cython's prange runs serially, and these stubs answer for the OpenMP runtime. */
#ifndef PYDEBERTA_OMP_COMPAT_H
#define PYDEBERTA_OMP_COMPAT_H

#ifdef _OPENMP
#include <omp.h>
#define PYDEBERTA_OPENMP 1
#else
#define PYDEBERTA_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline void omp_set_num_threads(int n) { (void)n; }
#endif

#endif
