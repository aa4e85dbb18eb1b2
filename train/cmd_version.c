/*
 * train/cmd_version.c — `osp --version`: the version, then one "name: yes|no (detail)" line for
 * each optional part osp can be built with (CUDA, cuDNN, MPI, NCCL). Compile-time facts only,
 * so it answers at once on any machine, GPU or not; what the GPU run time finds (a device,
 * libcudnn.so.9) is reported by the commands that use it.
 */
#include <stdio.h>
#include <string.h>

#include <mpi.h>
#ifdef OSP_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "core/common.h"
#include "train/cli.h"

#ifndef OSP_VERSION
#define OSP_VERSION "unknown"
#endif

int cmd_version(int argc, char **argv) {
    if (argc > 0) osp_die("--version takes no arguments (got '%s')", argv[0]);
    printf("osp %s\n", OSP_VERSION);
#ifdef OSP_HAVE_CUDA
    printf("cuda: yes (built against CUDA %d.%d)\n", CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
    printf("cudnn: yes (cuDNN 9 loaded at run time when libcudnn.so.9 is found; OSP_CUDNN_LIB=path)\n");
#else
    printf("cuda: no (built without nvcc; CPU backend only)\n");
    printf("cudnn: no (needs the CUDA backend)\n");
#endif
#ifdef OMPI_MAJOR_VERSION
    printf("mpi: yes (MPI %d.%d, Open MPI %d.%d.%d)\n", MPI_VERSION, MPI_SUBVERSION, OMPI_MAJOR_VERSION,
           OMPI_MINOR_VERSION, OMPI_RELEASE_VERSION);
#else
    printf("mpi: yes (MPI %d.%d)\n", MPI_VERSION, MPI_SUBVERSION);
#endif
    printf("nccl: no (not linked)\n");
    return 0;
}
