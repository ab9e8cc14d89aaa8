/*
 * pi: the example MPI job. Every rank integrates its share of 4/(1+x^2)
 * over [0,1] and says where it runs; rank 0 prints the sum.
 *
 * Build: mpicc -O2 -o pi pi.c
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int rank, size;
    long steps = 100000000L;
    char host[256];

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc > 1)
        steps = atol(argv[1]);
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';

    printf("rank %d of %d on host %s\n", rank, size, host);
    fflush(stdout);

    double h = 1.0 / (double)steps, local = 0.0, pi = 0.0;
    for (long i = rank; i < steps; i += size) {
        double x = h * ((double)i + 0.5);
        local += 4.0 / (1.0 + x * x);
    }
    local *= h;
    MPI_Reduce(&local, &pi, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0)
        printf("pi is approximately %.12f (%d ranks, %ld steps)\n", pi, size, steps);
    MPI_Finalize();
    return 0;
}
