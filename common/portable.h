/*
 * portable: what streamrec assumes of the machine it is built for, in one
 * place (STYLE 15: no #if of the platform in .c files, only here).
 *
 * streamrec builds for x86-64 Linux with glibc, Debian's amd64:
 *   - model/blas.c names OpenBLAS's x86 kernel families and asks the CPU
 *     which it runs (__builtin_cpu_supports, an x86 builtin);
 *   - model/rowcodes.c and the bundled text model (model/textembed.c) pick
 *     AVX-512 or AVX2 kernels at run time when the CPU has them, and keep a
 *     portable C kernel for the others (and as the tests' reference);
 *   - model/model.c takes co-visitation logarithms four at a time from
 *     glibc's libmvec (its x86-64 vector ABI, baseline SSE2).
 * The .c files above use these without conditions; a port to another
 * architecture starts here, by giving each of them another kernel.
 */
#ifndef STREAMREC_PORTABLE_H
#define STREAMREC_PORTABLE_H

#if !defined(__x86_64__) || !defined(__GLIBC__)
#error "streamrec builds for x86-64 with glibc: common/portable.h lists what a port needs"
#endif

#include <immintrin.h>

#endif
