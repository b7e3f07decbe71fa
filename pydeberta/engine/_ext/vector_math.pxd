# Loops over arrays calling the C library's erf and exp, vectorised through glibc's libmvec where
# available (vector_math.h).
from libc.stdint cimport int64_t

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
    void pydeberta_p2c_band_float(float* rel, Py_ssize_t K, const float* p2c, Py_ssize_t stride, Py_ssize_t c0,
                                  Py_ssize_t ja, Py_ssize_t jb) noexcept nogil
    void pydeberta_scores_float(float* out, const float* c2c, const float* rel, const unsigned char* visible,
                                Py_ssize_t n) noexcept nogil
    void pydeberta_scores_double(double* out, const double* c2c, const double* rel, const unsigned char* visible,
                                 Py_ssize_t n) noexcept nogil
    void pydeberta_divide_float(float* s, Py_ssize_t n, float norm) noexcept nogil
    void pydeberta_divide_double(double* s, Py_ssize_t n, double norm) noexcept nogil
    void pydeberta_gather_float(float* dst, const float* src, const int64_t* index, Py_ssize_t step,
                                Py_ssize_t n) noexcept nogil
    void pydeberta_gather_double(double* dst, const double* src, const int64_t* index, Py_ssize_t step,
                                 Py_ssize_t n) noexcept nogil
    void pydeberta_reverse_float(float* dst, const float* src, Py_ssize_t n) noexcept nogil
    void pydeberta_reverse_double(double* dst, const double* src, Py_ssize_t n) noexcept nogil
