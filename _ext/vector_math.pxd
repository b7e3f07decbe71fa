# Loops over arrays calling the C library's erf and exp, vectorised through glibc's libmvec where
# available (vector_math.h).
cdef extern from "vector_math.h":
    const int PYDEBERTA_LIBMVEC
    void pydeberta_gelu_float(const float* x, float* y, Py_ssize_t n) noexcept nogil
    void pydeberta_gelu_double(const double* x, double* y, Py_ssize_t n) noexcept nogil
    void pydeberta_exp_shifted_float(float* s, Py_ssize_t n, float top) noexcept nogil
    void pydeberta_exp_shifted_double(double* s, Py_ssize_t n, double top) noexcept nogil
    float pydeberta_max_float(const float* s, Py_ssize_t n) noexcept nogil
    double pydeberta_max_double(const double* s, Py_ssize_t n) noexcept nogil
    double pydeberta_sum_float(const float* s, Py_ssize_t n) noexcept nogil
    double pydeberta_sum_double(const double* s, Py_ssize_t n) noexcept nogil
    double pydeberta_sum_sq_dev_float(const float* s, Py_ssize_t n, double mean) noexcept nogil
    double pydeberta_sum_sq_dev_double(const double* s, Py_ssize_t n, double mean) noexcept nogil
    void pydeberta_normalise_float(const float* s, float* y, const float* w, const float* b, Py_ssize_t n,
                                   double mean, double inv_std) noexcept nogil
    void pydeberta_normalise_double(const double* s, double* y, const double* w, const double* b, Py_ssize_t n,
                                    double mean, double inv_std) noexcept nogil
