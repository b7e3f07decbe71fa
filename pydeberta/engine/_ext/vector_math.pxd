# Loops over arrays calling the C library's erf and exp, vectorised through glibc's libmvec where
# available (vector_math.h).
from libc.stdint cimport int64_t

cdef extern from "vector_math.h":
    const int PYDEBERTA_LIBMVEC
    void pydeberta_gelu_float(const float* x, float* y, Py_ssize_t n) noexcept nogil
    void pydeberta_gelu_double(const double* x, double* y, Py_ssize_t n) noexcept nogil
    void pydeberta_gelu_backward_float(const float* g, const float* x, float* y, Py_ssize_t n) noexcept nogil
    void pydeberta_gelu_backward_double(const double* g, const double* x, double* y, Py_ssize_t n) noexcept nogil
    void pydeberta_exp_shifted_float(float* s, Py_ssize_t n, float top) noexcept nogil
    void pydeberta_exp_shifted_double(double* s, Py_ssize_t n, double top) noexcept nogil
    float pydeberta_max_float(const float* s, Py_ssize_t n) noexcept nogil
    double pydeberta_max_double(const double* s, Py_ssize_t n) noexcept nogil
    double pydeberta_sum_float(const float* s, Py_ssize_t n) noexcept nogil
    double pydeberta_sum_double(const double* s, Py_ssize_t n) noexcept nogil
    double pydeberta_dot_float(const float* a, const float* b, Py_ssize_t n) noexcept nogil
    double pydeberta_dot_double(const double* a, const double* b, Py_ssize_t n) noexcept nogil
    double pydeberta_sum_sq_dev_float(const float* s, Py_ssize_t n, double mean) noexcept nogil
    double pydeberta_sum_sq_dev_double(const double* s, Py_ssize_t n, double mean) noexcept nogil
    void pydeberta_normalise_float(const float* s, float* y, const float* w, const float* b, Py_ssize_t n,
                                   double mean, double inv_std) noexcept nogil
    void pydeberta_normalise_double(const double* s, double* y, const double* w, const double* b, Py_ssize_t n,
                                    double mean, double inv_std) noexcept nogil
    double pydeberta_norm_sum_g_float(const float* dy, const double* w, Py_ssize_t n) noexcept nogil
    double pydeberta_norm_sum_g_double(const double* dy, const double* w, Py_ssize_t n) noexcept nogil
    double pydeberta_norm_sum_gxhat_float(const float* dy, const float* x, const double* w, Py_ssize_t n,
                                          double mean, double inv_sigma) noexcept nogil
    double pydeberta_norm_sum_gxhat_double(const double* dy, const double* x, const double* w, Py_ssize_t n,
                                           double mean, double inv_sigma) noexcept nogil
    void pydeberta_norm_dx_float(const float* dy, const float* x, const double* w, float* dx, Py_ssize_t n,
                                 double mean, double inv_sigma, double mean_g, double mean_gxhat) noexcept nogil
    void pydeberta_norm_dx_double(const double* dy, const double* x, const double* w, double* dx, Py_ssize_t n,
                                  double mean, double inv_sigma, double mean_g, double mean_gxhat) noexcept nogil
    void pydeberta_norm_params_float(const float* dy, const float* x, Py_ssize_t n, double mean, double inv_sigma,
                                     double* dweight, double* dbias) noexcept nogil
    void pydeberta_norm_params_double(const double* dy, const double* x, Py_ssize_t n, double mean, double inv_sigma,
                                      double* dweight, double* dbias) noexcept nogil
    void pydeberta_p2c_band_float(float* rel, Py_ssize_t K, const float* p2c, Py_ssize_t stride, Py_ssize_t c0,
                                  Py_ssize_t ja, Py_ssize_t jb) noexcept nogil
    void pydeberta_scores_float(float* out, const float* c2c, const float* rel, const unsigned char* visible,
                                Py_ssize_t n) noexcept nogil
    void pydeberta_scores_double(double* out, const double* c2c, const double* rel, const unsigned char* visible,
                                 Py_ssize_t n) noexcept nogil
    void pydeberta_divide_float(float* s, Py_ssize_t n, float norm) noexcept nogil
    void pydeberta_divide_double(double* s, Py_ssize_t n, double norm) noexcept nogil
    void pydeberta_softmax_backward_float(float* ds, const float* dp, const float* p, const unsigned char* visible,
                                          Py_ssize_t n, double dot) noexcept nogil
    void pydeberta_softmax_backward_double(double* ds, const double* dp, const double* p,
                                           const unsigned char* visible, Py_ssize_t n, double dot) noexcept nogil
    void pydeberta_gather_float(float* dst, const float* src, const int64_t* index, Py_ssize_t step,
                                Py_ssize_t n) noexcept nogil
    void pydeberta_gather_double(double* dst, const double* src, const int64_t* index, Py_ssize_t step,
                                 Py_ssize_t n) noexcept nogil
    void pydeberta_reverse_float(float* dst, const float* src, Py_ssize_t n) noexcept nogil
    void pydeberta_reverse_double(double* dst, const double* src, Py_ssize_t n) noexcept nogil
