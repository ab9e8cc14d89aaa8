"""pi with mpi4py: the Python twin of pi.c, for images whose MPI and
mpi4py come from pip. Every rank integrates its share of 4/(1+x^2) over
[0,1] and says where it runs; rank 0 prints the sum.

Run: mpirun ... python3 pi.py [STEPS]
"""
import os
import socket
import sys

from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
# One write per line, so that lines from different ranks never interleave.
os.write(1, f"rank {rank} of {size} on host {socket.gethostname()}\n".encode())

h = 1.0 / steps
local = h * sum(4.0 / (1.0 + (h * (i + 0.5)) ** 2) for i in range(rank, steps, size))
pi = comm.reduce(local, op=MPI.SUM, root=0)
if rank == 0:
    library = MPI.Get_library_version().splitlines()[0].strip()
    os.write(1, f"pi is approximately {pi:.12f} ({size} ranks, {steps} steps) [{library}]\n".encode())
