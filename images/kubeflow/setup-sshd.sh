#!/bin/sh
# mpi-operator's sshd set-up, as its build/base image makes it, for the
# Kubeflow-style images (images/kubeflow/Dockerfile, style.Dockerfile):
#   - sshd and ssh on port 2222, StrictModes off, host key checking off;
#   - sshd may bind a port below 1024 as mpiuser (CAP_NET_BIND_SERVICE).
# Needs openssh-server, openssh-client and libcap2-bin; runs as root at
# build time.
set -eu
mkdir -p /var/run/sshd
sed -i 's/[ #]\(.*StrictHostKeyChecking \).*/ \1no/g' /etc/ssh/ssh_config
echo '    UserKnownHostsFile /dev/null' >>/etc/ssh/ssh_config
sed -i 's/[ #]\(.*Port \).*/ \12222/g' /etc/ssh/ssh_config
sed -i 's/#\(StrictModes \).*/\1no/g' /etc/ssh/sshd_config
sed -i 's/#\(Port \).*/\12222/g' /etc/ssh/sshd_config
setcap CAP_NET_BIND_SERVICE=+eip /usr/sbin/sshd
