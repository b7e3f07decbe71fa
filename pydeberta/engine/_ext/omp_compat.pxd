# OpenMP runtime calls that also compile without OpenMP (see omp_compat.h).
cdef extern from "omp_compat.h":
    const int PYDEBERTA_OPENMP
    int omp_get_max_threads() noexcept nogil
    void omp_set_num_threads(int n) noexcept nogil
