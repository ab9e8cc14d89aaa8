# Kubeflow style on top of another MPI image: mpi-operator's sshd set-up
# (setup-sshd.sh), mpiuser's ~/.sshd_config, and the examples copied into
# /home/mpiuser, as images/kubeflow/Dockerfile makes them for Debian's MPIs.
# The base must hold openssh-server, openssh-client, the user mpiuser and
# /opt/mpi-examples (images/pip/Dockerfile makes such images).
#
# Build context: the repository root.
#
#   buildah build -f images/kubeflow/style.Dockerfile \
#     --build-arg BASE=mpijob/intel:latest -t mpijob/kubeflow-intel:latest .
ARG BASE=mpijob/intel:latest

FROM ${BASE}
LABEL org.opencontainers.image.description="Kubeflow-style MPI image: OpenSSH configured for mpi-operator's pod contract, on top of another MPI image."
COPY images/kubeflow/setup-sshd.sh images/kubeflow/sshd_config /tmp/kubeflow/
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libcap2-bin \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && sh /tmp/kubeflow/setup-sshd.sh \
    && install -m 0644 /tmp/kubeflow/sshd_config /home/mpiuser/.sshd_config \
    && cp -r /opt/mpi-examples/. /home/mpiuser/ \
    && chown -R mpiuser:mpiuser /home/mpiuser \
    && rm -rf /tmp/kubeflow
WORKDIR /home/mpiuser
