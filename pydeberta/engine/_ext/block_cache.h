/* A cache of large blocks for NumPy's array data (a PyDataMem_Handler, NumPy >= 1.22).
 *
 * A forward pass allocates the same large temporaries call after call (projections, score
 * terms, the FFN's [B, N, 4C] activations). glibc hands big freed blocks back to the kernel, so
 * the next call takes a page fault for every 4 KiB it touches again: ~33,000 faults and 7% of a
 * B=8 N=128 forward of deberta-v3-base shapes. Blocks of at least PYDEBERTA_CACHE_MIN_BYTES freed
 * while this handler is in use are kept (up to PYDEBERTA_CACHE_LIMIT bytes) and handed out again
 * for a request of exactly the same size; everything else goes to malloc/free.
 *
 * Each block starts with a header holding its size, so the cache never trusts the size NumPy
 * passes to free. Blocks are 64-byte aligned; large ones are advised as huge pages, as NumPy's
 * default handler does. A mutex guards the slots (NumPy may free from any thread). */
#ifndef PYDEBERTA_BLOCK_CACHE_H
#define PYDEBERTA_BLOCK_CACHE_H

#include <numpy/ndarraytypes.h> /* PyDataMem_Handler */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PYDEBERTA_CACHE_SLOTS 256
#define PYDEBERTA_CACHE_MIN_BYTES ((size_t)1 << 16)
#define PYDEBERTA_CACHE_LIMIT ((size_t)512 << 20)
#define PYDEBERTA_HEADER 64 /* bytes before the data: the size, padded to keep 64-byte alignment */
#define PYDEBERTA_HUGE_BYTES ((size_t)1 << 22)

typedef struct {
    void *base; /* what posix_memalign returned; NULL: the slot is empty */
    size_t size; /* data bytes */
} pydeberta_block;

static pydeberta_block pydeberta_slots[PYDEBERTA_CACHE_SLOTS];
static size_t pydeberta_cached_bytes = 0;
static pthread_mutex_t pydeberta_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static void *pydeberta_data(void *base) { return (char *)base + PYDEBERTA_HEADER; }
static void *pydeberta_base(void *data) { return (char *)data - PYDEBERTA_HEADER; }
static size_t pydeberta_size(void *data) { return *(size_t *)pydeberta_base(data); }

/* A new block of `size` data bytes (not from the cache), or NULL. */
static void *pydeberta_new_block(size_t size) {
    void *base = NULL;
    if (size > SIZE_MAX - PYDEBERTA_HEADER || posix_memalign(&base, 64, size + PYDEBERTA_HEADER) != 0)
        return NULL;
    *(size_t *)base = size;
#ifdef MADV_HUGEPAGE
    if (size >= PYDEBERTA_HUGE_BYTES) {
        uintptr_t start = ((uintptr_t)base + 4095) & ~(uintptr_t)4095;
        uintptr_t end = ((uintptr_t)base + size + PYDEBERTA_HEADER) & ~(uintptr_t)4095;
        if (end > start)
            madvise((void *)start, end - start, MADV_HUGEPAGE); /* advice only: failure is harmless */
    }
#endif
    return pydeberta_data(base);
}

static void *pydeberta_cache_malloc(void *ctx, size_t size) {
    (void)ctx;
    if (size >= PYDEBERTA_CACHE_MIN_BYTES) {
        pthread_mutex_lock(&pydeberta_cache_lock);
        for (int k = 0; k < PYDEBERTA_CACHE_SLOTS; k++) {
            if (pydeberta_slots[k].base != NULL && pydeberta_slots[k].size == size) {
                void *base = pydeberta_slots[k].base;
                pydeberta_slots[k].base = NULL;
                pydeberta_cached_bytes -= size;
                pthread_mutex_unlock(&pydeberta_cache_lock);
                return pydeberta_data(base);
            }
        }
        pthread_mutex_unlock(&pydeberta_cache_lock);
    }
    return pydeberta_new_block(size);
}

static void *pydeberta_cache_calloc(void *ctx, size_t nelem, size_t elsize) {
    if (elsize != 0 && nelem > SIZE_MAX / elsize)
        return NULL;
    void *data = pydeberta_cache_malloc(ctx, nelem * elsize);
    if (data != NULL)
        memset(data, 0, nelem * elsize);
    return data;
}

static void pydeberta_cache_free(void *ctx, void *data, size_t size_hint) {
    (void)ctx;
    (void)size_hint; /* the header knows the size */
    if (data == NULL)
        return;
    size_t size = pydeberta_size(data);
    if (size >= PYDEBERTA_CACHE_MIN_BYTES) {
        pthread_mutex_lock(&pydeberta_cache_lock);
        if (pydeberta_cached_bytes + size <= PYDEBERTA_CACHE_LIMIT) {
            for (int k = 0; k < PYDEBERTA_CACHE_SLOTS; k++) {
                if (pydeberta_slots[k].base == NULL) {
                    pydeberta_slots[k].base = pydeberta_base(data);
                    pydeberta_slots[k].size = size;
                    pydeberta_cached_bytes += size;
                    pthread_mutex_unlock(&pydeberta_cache_lock);
                    return;
                }
            }
        }
        pthread_mutex_unlock(&pydeberta_cache_lock);
    }
    free(pydeberta_base(data));
}

static void *pydeberta_cache_realloc(void *ctx, void *data, size_t new_size) {
    if (data == NULL)
        return pydeberta_cache_malloc(ctx, new_size);
    void *grown = pydeberta_cache_malloc(ctx, new_size);
    if (grown == NULL)
        return NULL;
    size_t old_size = pydeberta_size(data);
    memcpy(grown, data, old_size < new_size ? old_size : new_size);
    pydeberta_cache_free(ctx, data, old_size);
    return grown;
}

static PyDataMem_Handler pydeberta_block_cache_handler = {
    "pydeberta_block_cache",
    1,
    {NULL, pydeberta_cache_malloc, pydeberta_cache_calloc, pydeberta_cache_realloc, pydeberta_cache_free},
};

/* Free every cached block; returns the bytes released. */
static size_t pydeberta_cache_clear(void) {
    size_t released = 0;
    pthread_mutex_lock(&pydeberta_cache_lock);
    for (int k = 0; k < PYDEBERTA_CACHE_SLOTS; k++) {
        if (pydeberta_slots[k].base != NULL) {
            released += pydeberta_slots[k].size;
            free(pydeberta_slots[k].base);
            pydeberta_slots[k].base = NULL;
        }
    }
    pydeberta_cached_bytes = 0;
    pthread_mutex_unlock(&pydeberta_cache_lock);
    return released;
}

static size_t pydeberta_cache_bytes(void) {
    pthread_mutex_lock(&pydeberta_cache_lock);
    size_t bytes = pydeberta_cached_bytes;
    pthread_mutex_unlock(&pydeberta_cache_lock);
    return bytes;
}

#endif
